"""The PyTorch side of bench/infer: single-stream greedy generation with an
HF-style KV cache (per layer, keys and values of past positions kept
unrepeated and grown with torch.cat each step, as transformers' DynamicCache;
GQA's repeat_kv applied after the cache) over tests/parity/ref.py's modules
in float32, loaded with the same model directory's weights as the engine, 2
threads, torch.inference_mode. The prompt is the same LCG sequence as
tests/tools/bench_infer.c, so the greedy ids can be compared. Prefill runs the
whole prompt in one pass and computes the lm_head on its last position only
(transformers' generate with logits_to_keep=1).
Prints one JSON object: ttft_ms (median), decode_tok_per_s (median, tokens
after the first), ids (the greedy ids of the last run).
    torch_decode.py MODEL_DIR [--prompt 128 --gen 64 --runs 3 --threads 2 --label plain]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import ref  # noqa: E402


def attend(q, k, v, start):
    """q (1,NH,T,HD) at positions start.., k/v (1,NH,start+T,HD)"""
    T, S = q.shape[2], k.shape[2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if T > 1:
        i = torch.arange(start, start + T)[:, None]
        j = torch.arange(S)[None, :]
        att = att.masked_fill(j > i, float("-inf"))
    return F.softmax(att, dim=-1) @ v


def step_gpt2(m, ids, past, start):
    t, c = m.transformer, m.c
    T = ids.shape[1]
    x = t.wte(ids) + t.wpe(torch.arange(start, start + T))[None]
    for li, blk in enumerate(t.h):
        h = blk.ln_1(x)
        q, k, v = blk.attn.c_attn(h).split(c.C, dim=2)
        sh = lambda z: z.view(1, T, c.NH, c.HD).transpose(1, 2)
        q, k, v = sh(q), sh(k), sh(v)
        if past[li] is not None:
            k = torch.cat((past[li][0], k), dim=2)
            v = torch.cat((past[li][1], v), dim=2)
        past[li] = (k, v)
        y = attend(q, k, v, start).transpose(1, 2).reshape(1, T, c.C)
        x = x + blk.attn.c_proj(y)
        x = x + blk.mlp(blk.ln_2(x))
    h = t.ln_f(x[:, -1:])
    return F.linear(h, t.wte.weight)[0, -1]


def step_llama(m, ids, past, start, cos, sin):
    mm, c = m.model, m.c
    T = ids.shape[1]
    cs, sn = cos[start:start + T], sin[start:start + T]
    x = mm.embed_tokens(ids)
    rep = c.NH // c.NKV
    for li, layer in enumerate(mm.layers):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        q = a.q_proj(h).view(1, T, c.NH, c.HD).transpose(1, 2)
        k = a.k_proj(h).view(1, T, c.NKV, c.HD).transpose(1, 2)
        v = a.v_proj(h).view(1, T, c.NKV, c.HD).transpose(1, 2)
        q = q * cs + ref.rotate_half(q) * sn
        k = k * cs + ref.rotate_half(k) * sn
        if past[li] is not None:
            k = torch.cat((past[li][0], k), dim=2)
            v = torch.cat((past[li][1], v), dim=2)
        past[li] = (k, v)
        kr, vr = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = attend(q, kr, vr, start).transpose(1, 2).reshape(1, T, c.NH * c.HD)
        x = x + a.o_proj(y)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    h = mm.norm(x[:, -1:])
    w = mm.embed_tokens.weight if c.tie else m.lm_head.weight
    return F.linear(h, w)[0, -1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default="plain")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.dir, "config.json")) as f:
        cfgd = json.load(f)
    c = ref.Config(cfgd)
    model = ref.Model(c, "lm", torch.float32)
    w = ref.load_safetensors(os.path.join(a.dir, "model.safetensors"))
    model.load(w, strict=False)
    del w
    model.eval()
    s, prompt = 12345, []
    for _ in range(a.prompt):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        prompt.append((s >> 8) % (c.V - 1))
    cos = sin = None
    if c.arch != "gpt2":
        cos, sin = ref.rope_cos_sin(a.prompt + a.gen, c.HD, c.theta, torch.float32)

    def step(ids, past, start):
        if c.arch == "gpt2":
            return step_gpt2(model, ids, past, start)
        return step_llama(model, ids, past, start, cos, sin)

    ttft, rate, ids = [], [], []
    with torch.inference_mode():
        for r in range(-1, a.runs):
            past = [None] * c.L
            t0 = time.perf_counter()
            logits = step(torch.tensor([prompt]), past, 0)
            tok = int(torch.argmax(logits))
            t1 = time.perf_counter()
            ids = [tok]
            for i in range(1, a.gen):
                logits = step(torch.tensor([[tok]]), past, a.prompt + i - 1)
                tok = int(torch.argmax(logits))
                ids.append(tok)
            t2 = time.perf_counter()
            if r >= 0:
                ttft.append((t1 - t0) * 1e3)
                rate.append((a.gen - 1) / (t2 - t1))
    ttft.sort()
    rate.sort()
    print(json.dumps({"side": "pytorch", "label": a.label, "torch": torch.__version__,
                      "prompt": a.prompt, "gen": a.gen, "runs": a.runs,
                      "ttft_ms": ttft[len(ttft) // 2], "decode_tok_per_s": rate[len(rate) // 2],
                      "decode_tok_per_s_best": rate[-1], "ids": ids}))


if __name__ == "__main__":
    main()
