"""The PyTorch side of bench/run: the same training step as
tests/tools/bench_train.c (forward + backward + clip_grad_norm_ + AdamW on a
fixed random batch, every row full length, every token trained) on the same
model shapes, with tests/parity/ref.py's HF-equivalent modules in float32,
on 2 threads. Prints one JSON object with the same fields as bench_train
(tokens_per_s, step_s = median timed step, gflops with the same FLOP formula,
peak_gflops from a 3072^3 torch.mm in the same process, frac_peak,
peak_rss_mb = ru_maxrss after training, before the matmul buffers).
Run with /usr/bin/python3 (Debian's PyTorch):
    torch_step.py gpt2|smollm full|lora [--B 4 --T 256 --warmup 1 --steps 3 --label plain]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import ref  # noqa: E402

SHAPES = {
    "gpt2": {"model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12,
             "n_head": 12, "n_positions": 1024, "layer_norm_epsilon": 1e-5,
             "tie_word_embeddings": True},
    "smollm": {"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
               "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
               "intermediate_size": 1536, "max_position_embeddings": 2048,
               "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True},
}


def matmul_params(c):
    if c.arch == "gpt2":
        per = c.C * 3 * c.C + c.C * c.C + 2 * c.C * c.FF
    else:
        per = 2 * c.C * c.NH * c.HD + 2 * c.C * c.NKV * c.HD + 3 * c.C * c.FF
    return c.L * per + c.V * c.C


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(SHAPES))
    ap.add_argument("method", choices=["full", "lora"])
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default="plain")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    c = ref.Config(SHAPES[a.model])
    model = ref.Model(c, "lm", torch.float32)
    with torch.no_grad():  # HF-style init: normal(0, 0.02), norms 1, biases 0
        for n, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            elif n.endswith(".bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    if a.method == "lora":
        model.add_lora(["c_attn"] if c.arch == "gpt2" else ["q_proj", "v_proj"], 8, 16.0)
    model.set_trainable(a.method)
    tr = model.trainable()
    params = [p for _, p in tr]
    opt = ref.adamw(tr, 1e-4, 0.0)

    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, c.V, (a.B, a.T), generator=g)
    targets = torch.roll(tokens, -1, dims=1)
    lens = torch.full((a.B,), a.T, dtype=torch.long)

    times = []
    loss = torch.zeros(())
    for k in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        logits = model(tokens, lens)
        loss = model.loss(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if k >= a.warmup:
            times.append(time.perf_counter() - t0)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    del logits
    times.sort()
    step_s = times[len(times) // 2]
    tok = a.B * a.T
    N = matmul_params(c)
    flops = (4.0 if a.method == "lora" else 6.0) * N * tok + 12.0 * c.L * a.B * a.T * a.T * c.C
    gflops = flops / step_s / 1e9

    n = 3072
    x = torch.rand(n, n)
    y = torch.rand(n, n)
    best = 1e30
    with torch.no_grad():
        for _ in range(4):
            t0 = time.perf_counter()
            torch.mm(x, y)
            best = min(best, time.perf_counter() - t0)
    peak = 2.0 * n ** 3 / best / 1e9
    nparams = sum(p.numel() for nm, p in model.named_parameters() if ".lora_" not in nm)
    print(json.dumps({
        "side": "pytorch-" + a.label, "model": a.model, "method": a.method, "B": a.B, "T": a.T,
        "steps": a.steps, "step_s": step_s, "tokens_per_s": tok / step_s, "gflops": gflops,
        "peak_gflops": peak, "frac_peak": gflops / peak, "peak_rss_mb": rss_mb,
        "params": nparams, "trainable": sum(p.numel() for p in params), "matmul_params": N,
        "last_loss": float(loss), "threads": torch.get_num_threads(),
        "flop_formula": ("4" if a.method == "lora" else "6") + "*N*B*T + 12*L*B*T^2*C"}))


if __name__ == "__main__":
    main()
