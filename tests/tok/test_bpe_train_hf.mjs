// A tokenizer trained by `finetuned train-tokenizer` (engine/tok/bpe_train.c)
// loads in Hugging Face's tokenizers (npm "tokenizers") and encodes like our
// engine (engine/tok/tok.c through tests/tools/tokcli): the same ids for texts
// with unicode, whitespace runs, numbers and the special tokens, the same
// decodes, and decode(encode(x)) == x. Trained on the repository's docs
// (plain text) plus a JSONL file of text, prompt/completion and messages
// written here. Ends with "N passed, N failed"; exits non-zero on failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const src = process.env.FT_SRC || process.cwd();
const nm = process.env.FT_NODE_MODULES || path.join(src, '.deps/node_modules');
const bin = process.env.FT_BIN || path.join(process.env.FT_BUILD || path.join(src, 'build'), 'bin');
const require = createRequire(path.join(nm, 'x.js'));
const hf = require('tokenizers');

let passed = 0, failed = 0;
function check(ok, what) {
  if (ok) passed++;
  else { failed++; console.error('FAIL ' + what); }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ft-bpe-'));
const jsonl = path.join(tmp, 'train.jsonl');
const lines = [];
for (let i = 0; i < 300; i++) {
  lines.push(JSON.stringify({ text: `Example ${i}: the numbers ${i * 37} and ${i * 1.5} — naïve café, 日本語 ${i % 7}.` }));
  lines.push(JSON.stringify({ prompt: `Define: word${i % 13}\n`, completion: ` a thing of kind ${i % 5}<|endoftext|>` }));
  lines.push(JSON.stringify({ messages: [{ role: 'user', content: `Hi there ${i}!` }, { role: 'assistant', content: `Hello    again\t${i}\n\nok` }] }));
}
fs.writeFileSync(jsonl, lines.join('\n') + '\n');
const docs = ['README.md', 'docs/architecture.md', 'docs/datasets.md']
  .map((f) => path.join(src, f)).filter((f) => fs.existsSync(f));
const out = path.join(tmp, 'tok');
const vocabSize = 1200;
const tr = spawnSync(path.join(bin, 'finetuned'),
  ['train-tokenizer', '--vocab-size', String(vocabSize), '--out', out, jsonl, ...docs], { encoding: 'utf8' });
check(tr.status === 0, `train-tokenizer failed: ${tr.stderr}`);
if (tr.status !== 0) { console.log(`${passed} passed, ${failed} failed`); process.exit(1); }

const file = path.join(out, 'tokenizer.json');
const j = JSON.parse(fs.readFileSync(file, 'utf8'));
check(j.model.type === 'BPE' && j.pre_tokenizer.type === 'ByteLevel' && j.decoder.type === 'ByteLevel',
  'tokenizer.json is a byte-level BPE');
check(Object.keys(j.model.vocab).length === vocabSize, `vocab has ${Object.keys(j.model.vocab).length} entries, want ${vocabSize}`);
check(j.model.merges.length === vocabSize - 259, `merges ${j.model.merges.length}`);
const cfg = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8'));
check(cfg.eos_token === '<|endoftext|>' && /<\|im_start\|>/.test(cfg.chat_template), 'tokenizer_config.json: eos and ChatML template');

const ref = hf.Tokenizer.fromFile(file);
for (const s of ['<|endoftext|>', '<|im_start|>', '<|im_end|>'])
  check(ref.tokenToId(s) === j.model.vocab[s], `HF id of ${s}: ${ref.tokenToId(s)} vs ${j.model.vocab[s]}`);

const texts = [
  '', ' ', '  ', '\t', '\n\n\n', 'Hello world', ' Hello', 'Hello  world   ', 'a\tb\t\tc',
  'line1\nline2\r\nline3\r', '    indented\n        more', 'café naïve résumé Ångström',
  'cafe\u0301 nai\u0308ve', '日本語のテキストです。', '中文测试，标点符号！', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁',
  '👨‍👩‍👧‍👦 family 🇫🇷', 'مرحبا بالعالم', 'Ελληνικά Русский текст', 'नमस्ते दुनिया',
  '1234567890', '3.14159 2,718 1e-10', '000123 99999999999999999', '12,345,678.90 $1.5M 50%',
  "It's I'LL they're we've I'm you'd DON'T", 'def foo(x):\n    return x * 2  # comment\n',
  '<|endoftext|>', 'Hello<|endoftext|>world', 'a <|endoftext|> b<|endoftext|><|endoftext|>',
  '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n', '<|im_start', '<|endoftext',
  'a\u00A0b\u3000c\u2028d\u2009e', 'zero\u200Bwidth', 'a\u0000b\u0001c\u007F',
  ' '.repeat(100) + 'x', 'x' + ' '.repeat(37), '\n'.repeat(20) + 'end', 'a'.repeat(500),
  'Example 12: the numbers 444 and 18 — naïve café, 日本語 5.', 'Define: word3\n a thing of kind 2',
];
const r = spawnSync(path.join(bin, 'tokcli'), ['encode', out], {
  input: texts.map((t) => JSON.stringify(t)).join('\n') + '\n', encoding: 'utf8', maxBuffer: 1 << 26,
});
check(r.status === 0, `tokcli failed: ${r.stderr}`);
const got = r.status === 0 ? r.stdout.trim().split('\n').map((l) => JSON.parse(l)) : [];
const show = (s) => JSON.stringify(s.length > 60 ? s.slice(0, 60) + '...' : s);
let merged = 0;
for (let i = 0; i < texts.length; i++) {
  const x = texts[i];
  const want = (await ref.encode(x, null, { addSpecialTokens: false })).getIds();
  const g = got[i] || {};
  check(Array.isArray(g.ids) && g.ids.length === want.length && g.ids.every((v, k) => v === want[k]),
    `text ${i} ${show(x)}: ours ${JSON.stringify((g.ids || []).slice(0, 30))} hf ${JSON.stringify(want.slice(0, 30))}`);
  const hfText = await ref.decode(want, false);
  check(hfText === x, `text ${i} ${show(x)}: HF round trip gave ${show(hfText)}`);
  check(g.text === x, `text ${i} ${show(x)}: our round trip gave ${show(g.text || '')}`);
  if (want.length < Buffer.byteLength(x)) merged++;
}
// the merges are used: most texts take fewer tokens than bytes
check(merged > texts.length / 2, `only ${merged} of ${texts.length} texts were compressed`);

// the same input gives the same tokenizer, byte for byte
const out2 = path.join(tmp, 'tok2');
const tr2 = spawnSync(path.join(bin, 'finetuned'),
  ['train-tokenizer', '--vocab-size', String(vocabSize), '--out', out2, jsonl, ...docs], { encoding: 'utf8' });
check(tr2.status === 0 && fs.readFileSync(path.join(out2, 'tokenizer.json'), 'utf8') === fs.readFileSync(file, 'utf8'),
  'a second run writes the same tokenizer.json');

fs.rmSync(tmp, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
