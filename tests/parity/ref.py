"""PyTorch reference models for the parity tests and the benchmark.

The modules mirror Hugging Face's classes closely enough that
named_parameters() yields the exact HF tensor names and storage layouts:
GPT2LMHeadModel / GPT2ForSequenceClassification ("transformer.h.0.attn.c_attn.
weight" as Conv1D [in,out]) and LlamaForCausalLM / LlamaForSequenceClassification
(also qwen2: q/k/v bias; llama's attention_bias (q/k/v/o) and mlp_bias;
mistral is llama here; an explicit head_dim; qwen3 (Qwen3Attention): q_norm /
k_norm, an RMSNorm over head_dim of each head of q and k before RoPE, weights
[head_dim], attention_bias on q/k/v/o, Qwen3Config's head_dim 128 default;
rope_scaling "linear" (inv_freq / factor) and "llama3" (modeling_rope_utils'
_compute_llama3_parameters: wavelengths above original_max_position_embeddings
/ low_freq_factor divided by factor, below .../high_freq_factor kept, the
band between interpolated); gemma3_text (Gemma3ForCausalLM /
Gemma3TextForSequenceClassification, modeling_gemma3.py): embeddings times
sqrt(hidden), Gemma3RMSNorm x * rsqrt(mean(x^2)+eps) * (1 + w) everywhere
(weights stored around 0), four norms per layer (input, post_attention on the
attention's output, pre_feedforward, post_feedforward on the MLP's output),
q/k norms, gelu_pytorch_tanh gated MLP, scores scaled by
query_pre_attn_scalar^-0.5, layer_types (or sliding_window_pattern: layer i
full when (i+1) % pattern == 0) choosing sliding layers that see keys
j > i - sliding_window and use RoPE base rope_local_base_freq without
scaling, the global layers rope_theta with rope_scaling), plus LoRA adapters named as
PEFT saves them ("base_model.model.<module>.lora_A.weight" [r,in], lora_B
[out,r], scale alpha/r). Semantics follow HF: gelu_new (tanh), LayerNorm,
learned positions, tied lm_head; RMSNorm computed as x * rsqrt(mean(x^2)+eps)
* w, RoPE with rotate_half and inv_freq = theta^(-2i/d), repeat_kv for GQA,
SwiGLU. Batches are right-padded: row b has lens[b] valid tokens, keys past
lens[b] are masked, classification pools the logits at lens[b]-1 (HF pools at
the last non-pad token), and the LM loss is cross-entropy with ignore_index -1
over the already shifted targets, mean over trained tokens. Packed rows (the
engine's ft_batch.pos/.seg) are given as position_ids (B,T), the wpe index or
RoPE angle of each token, and segment ids (B,T): the mask becomes
block-diagonal causal (a token sees earlier tokens of its own segment only).

Runs under /usr/bin/python3 (Debian's PyTorch 1.13). No transformers and no
safetensors package is needed: save_safetensors/load_safetensors write and read
the format by hand. dtype is chosen by the caller: float64 for parity (so the
reference's own rounding is negligible next to the engine's float32), float32
for the benchmark.
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors

_ST_DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64",
              np.dtype("int32"): "I32", np.dtype("int64"): "I64",
              np.dtype("float16"): "F16"}
_ST_NP = {v: k for k, v in _ST_DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """tensors: {name: np.ndarray or torch.Tensor}; written in the given dtype
    (float64 torch tensors should be converted by the caller)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data section, as the Rust writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """{name: np.ndarray} (copies), F32/F64/I32/I64/F16 only."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = d["data_offsets"]
        dt = _ST_NP[d["dtype"]].newbyteorder("<")
        out[name] = np.frombuffer(data[base + b0:base + b1], dtype=dt).reshape(d["shape"]).copy()
    return out


# ---------------------------------------------------------------- config


class Config:
    """The subset of an HF config.json the engine reads."""

    def __init__(self, d):
        self.raw = dict(d)
        mt = d["model_type"]
        self.model_type = mt
        self.arch = "gpt2" if mt == "gpt2" else "llama"
        # Gemma2ForCausalLM: logits = tanh(logits / cap) * cap (None: off)
        self.softcap = d.get("final_logit_softcapping")
        self.gemma = mt == "gemma3_text"
        if mt == "gpt2":
            self.C = d["n_embd"]
            self.L = d["n_layer"]
            self.NH = d["n_head"]
            self.NKV = self.NH
            self.FF = d.get("n_inner") or 4 * self.C
            self.maxT = d["n_positions"]
            self.eps = d.get("layer_norm_epsilon", 1e-5)
            self.tie = d.get("tie_word_embeddings", True)
            self.attn_bias = True
            self.o_bias = True
        else:
            self.C = d["hidden_size"]
            self.L = d["num_hidden_layers"]
            self.NH = d["num_attention_heads"]
            self.NKV = d.get("num_key_value_heads", self.NH)
            self.FF = d["intermediate_size"]
            self.maxT = d["max_position_embeddings"]
            self.eps = d.get("rms_norm_eps", 1e-6)
            self.theta = d.get("rope_theta", 10000.0)
            self.tie = d.get("tie_word_embeddings", self.gemma)  # Llama/Qwen2: False, Gemma3: True
            if mt == "qwen2":  # Qwen2Attention: q/k/v bias always, o_proj none
                self.attn_bias, self.o_bias = True, False
            else:              # Llama/Qwen3Attention: attention_bias on q/k/v and o
                self.attn_bias = d.get("attention_bias", False)
                self.o_bias = self.attn_bias
            self.mlp_bias = mt == "llama" and d.get("mlp_bias", False)  # LlamaMLP only
            self.qk_norm = mt in ("qwen3", "gemma3_text")
            self.rope_scaling = d.get("rope_scaling")
            if self.gemma:  # Gemma3TextConfig's defaults
                self.theta = d.get("rope_theta", 1000000.0)
                self.local_theta = d.get("rope_local_base_freq", 10000.0)
                self.attn_scalar = d.get("query_pre_attn_scalar", 256)
                self.window = d.get("sliding_window", 4096)
                pattern = d.get("sliding_window_pattern", 6)
                types = d.get("layer_types") or [
                    "sliding_attention" if (i + 1) % pattern else "full_attention"
                    for i in range(self.L)]
                self.sliding = [t == "sliding_attention" for t in types]
        self.V = d["vocab_size"]
        self.HD = d.get("head_dim") or {"qwen3": 128, "gemma3_text": 256}.get(mt, self.C // self.NH)
        if "id2label" in d:
            self.num_labels = len(d["id2label"])
        else:
            self.num_labels = d.get("num_labels", 2)


# ---------------------------------------------------------------- layers


class LoraMixin:
    """PEFT LoRA on a Linear or Conv1D: y = base(x) + (alpha/r) * B(A(x)).
    lora_A is nn.Linear(in, r) ([r,in]), lora_B nn.Linear(r, out) ([out,r]),
    no biases, no dropout (the parity runs use dropout 0)."""

    def add_lora(self, r, alpha, dtype):
        self.lora_A = nn.Linear(self.in_features, r, bias=False, dtype=dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, dtype=dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_scale = alpha / r

    def lora_out(self, x, y):
        if getattr(self, "lora_A", None) is not None:
            y = y + self.lora_scale * self.lora_B(self.lora_A(x))
        return y


class Linear(nn.Module, LoraMixin):
    """nn.Linear: weight [out,in]."""

    def __init__(self, fin, fout, bias, dtype):
        super().__init__()
        self.in_features, self.out_features = fin, fout
        self.weight = nn.Parameter(torch.empty(fout, fin, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(fout, dtype=dtype)) if bias else None

    def forward(self, x):
        return self.lora_out(x, F.linear(x, self.weight, self.bias))


class Conv1D(nn.Module, LoraMixin):
    """transformers.pytorch_utils.Conv1D: weight [in,out], y = x W + b."""

    def __init__(self, fin, fout, dtype):
        super().__init__()
        self.in_features, self.out_features = fin, fout
        self.weight = nn.Parameter(torch.empty(fin, fout, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(fout, dtype=dtype))

    def forward(self, x):
        y = torch.addmm(self.bias, x.reshape(-1, self.in_features), self.weight)
        return self.lora_out(x, y.view(*x.shape[:-1], self.out_features))


class RMSNorm(nn.Module):
    def __init__(self, C, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class GemmaRMSNorm(nn.Module):
    """Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), w stored around 0."""

    def __init__(self, C, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(C, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(var + self.eps)) * (1.0 + self.weight)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attention(q, k, v, lens, seg=None, scale=None, window=None):
    """q (B,NH,T,HD), k/v (B,NH,T,HD) after repeat_kv; causal + key mask
    (keys j >= lens[b] masked), and with seg (B,T) keys of another segment
    masked; scores times scale (default HD^-0.5); with a window only keys
    j > i - window (HF's sliding_window_overlay). Returns (B,T,NH*HD)."""
    B, NH, T, HD = q.shape
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD) if scale is None else scale)
    i = torch.arange(T)
    mask = (i[None, :] <= i[:, None])[None, :, :] & (i[None, None, :] < lens[:, None, None])
    if window is not None:  # padded queries keep their keys (a row of -inf is NaN)
        pad_q = i[None, :, None] >= lens[:, None, None]
        mask = mask & ((i[None, :] > i[:, None] - window)[None, :, :] | pad_q)
    if seg is not None:  # padded queries (i >= lens) keep a key, so no row is all -inf
        pad_q = i[None, :, None] >= lens[:, None, None]
        mask = mask & ((seg[:, :, None] == seg[:, None, :]) | pad_q)
    att = att.masked_fill(~mask[:, None, :, :], float("-inf"))
    att = F.softmax(att, dim=-1)
    y = att @ v
    return y.transpose(1, 2).reshape(B, T, NH * HD)


# ---------------------------------------------------------------- GPT-2


class GPT2Attn(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c_attn = Conv1D(c.C, 3 * c.C, dtype)
        self.c_proj = Conv1D(c.C, c.C, dtype)
        self.NH = c.NH

    def forward(self, x, lens, seg=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        sh = lambda t: t.view(B, T, self.NH, C // self.NH).transpose(1, 2)
        return self.c_proj(attention(sh(q), sh(k), sh(v), lens, seg))


class GPT2MLP(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c_fc = Conv1D(c.C, c.FF, dtype)
        self.c_proj = Conv1D(c.FF, c.C, dtype)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.C, eps=c.eps, dtype=dtype)
        self.attn = GPT2Attn(c, dtype)
        self.ln_2 = nn.LayerNorm(c.C, eps=c.eps, dtype=dtype)
        self.mlp = GPT2MLP(c, dtype)

    def forward(self, x, lens, seg=None):
        x = x + self.attn(self.ln_1(x), lens, seg)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.wte = nn.Embedding(c.V, c.C, dtype=dtype)
        self.wpe = nn.Embedding(c.maxT, c.C, dtype=dtype)
        self.h = nn.ModuleList([GPT2Block(c, dtype) for _ in range(c.L)])
        self.ln_f = nn.LayerNorm(c.C, eps=c.eps, dtype=dtype)

    def forward(self, tokens, lens, pos=None, seg=None):
        T = tokens.shape[1]
        x = self.wte(tokens) + (self.wpe(torch.arange(T))[None] if pos is None else self.wpe(pos))
        for blk in self.h:
            x = blk(x, lens, seg)
        return self.ln_f(x)


# ---------------------------------------------------------------- Llama / Qwen2


def rope_inv_freq(HD, theta, scaling=None):
    """inv_freq of plain RoPE, rescaled as rope_scaling says (float64)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.int64).to(torch.float64) / HD))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        long_ = wavelen > old / lo                     # low frequencies: divided by factor
        short = wavelen < old / hi                     # high frequencies: kept
        smooth = (old / wavelen - lo) / (hi - lo)      # the band between: interpolated
        mid = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        inv_freq = torch.where(long_, inv_freq / factor, torch.where(short, inv_freq, mid))
    else:
        assert kind == "default", kind
    return inv_freq


def rope_cos_sin(T, HD, theta, dtype, scaling=None):
    inv_freq = rope_inv_freq(HD, theta, scaling)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaAttn(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c = c
        self.q_proj = Linear(c.C, c.NH * c.HD, c.attn_bias, dtype)
        self.k_proj = Linear(c.C, c.NKV * c.HD, c.attn_bias, dtype)
        self.v_proj = Linear(c.C, c.NKV * c.HD, c.attn_bias, dtype)
        self.o_proj = Linear(c.NH * c.HD, c.C, c.o_bias, dtype)
        if c.qk_norm:  # Qwen3, Gemma 3: per-head RMSNorm of q and k, over head_dim
            norm = GemmaRMSNorm if c.gemma else RMSNorm
            self.q_norm = norm(c.HD, c.eps, dtype)
            self.k_norm = norm(c.HD, c.eps, dtype)
        self.scale = c.attn_scalar ** -0.5 if c.gemma else None
        self.window = None

    def forward(self, x, lens, cos, sin, seg=None):
        c = self.c
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, c.NH, c.HD)
        k = self.k_proj(x).view(B, T, c.NKV, c.HD)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.NKV, c.HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = c.NH // c.NKV  # repeat_kv: query head h reads kv head h // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        return self.o_proj(attention(q, k, v, lens, seg, self.scale, self.window))


class LlamaMLP(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.gate_proj = Linear(c.C, c.FF, c.mlp_bias, dtype)
        self.up_proj = Linear(c.C, c.FF, c.mlp_bias, dtype)
        self.down_proj = Linear(c.FF, c.C, c.mlp_bias, dtype)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(c.C, c.eps, dtype)
        self.self_attn = LlamaAttn(c, dtype)
        self.post_attention_layernorm = RMSNorm(c.C, c.eps, dtype)
        self.mlp = LlamaMLP(c, dtype)

    def forward(self, x, lens, cos, sin, seg=None):
        x = x + self.self_attn(self.input_layernorm(x), lens, cos, sin, seg)
        return x + self.mlp(self.post_attention_layernorm(x))


class GemmaMLP(nn.Module):
    """Gemma3MLP: down(gelu_pytorch_tanh(gate(x)) * up(x))."""

    def __init__(self, c, dtype):
        super().__init__()
        self.gate_proj = Linear(c.C, c.FF, False, dtype)
        self.up_proj = Linear(c.C, c.FF, False, dtype)
        self.down_proj = Linear(c.FF, c.C, False, dtype)

    def forward(self, x):
        return self.down_proj(gelu_new(self.gate_proj(x)) * self.up_proj(x))


class GemmaLayer(nn.Module):
    """Gemma3DecoderLayer: the attention's and the MLP's outputs are normed
    before their residual adds."""

    def __init__(self, c, dtype, sliding):
        super().__init__()
        self.self_attn = LlamaAttn(c, dtype)
        self.self_attn.window = c.window if sliding else None
        self.mlp = GemmaMLP(c, dtype)
        self.input_layernorm = GemmaRMSNorm(c.C, c.eps, dtype)
        self.post_attention_layernorm = GemmaRMSNorm(c.C, c.eps, dtype)
        self.pre_feedforward_layernorm = GemmaRMSNorm(c.C, c.eps, dtype)
        self.post_feedforward_layernorm = GemmaRMSNorm(c.C, c.eps, dtype)
        self.sliding = sliding

    def forward(self, x, lens, cos, sin, seg=None):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), lens, cos,
                                                             sin, seg))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class LlamaModel(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.V, c.C, dtype=dtype)
        if c.gemma:
            self.layers = nn.ModuleList([GemmaLayer(c, dtype, c.sliding[i]) for i in range(c.L)])
            self.norm = GemmaRMSNorm(c.C, c.eps, dtype)
        else:
            self.layers = nn.ModuleList([LlamaLayer(c, dtype) for _ in range(c.L)])
            self.norm = RMSNorm(c.C, c.eps, dtype)

    def forward(self, tokens, lens, pos=None, seg=None):
        T = tokens.shape[1]
        dt = self.embed_tokens.weight.dtype
        n = T if pos is None else int(pos.max()) + 1

        def tables(theta, scaling):
            cos, sin = rope_cos_sin(n, self.c.HD, theta, dt, scaling)
            if pos is not None:  # position_ids: (B,1,T,HD), broadcast over heads
                cos, sin = cos[pos][:, None], sin[pos][:, None]
            return cos, sin

        glob = tables(self.c.theta, self.c.rope_scaling)
        x = self.embed_tokens(tokens)
        if self.c.gemma:  # Gemma3TextScaledWordEmbedding; sliding layers: their own base, unscaled
            x = x * torch.tensor(self.c.C ** 0.5, dtype=dt)
            local = tables(self.c.local_theta, None)
        for layer in self.layers:
            cos, sin = local if getattr(layer, "sliding", False) else glob
            x = layer(x, lens, cos, sin, seg)
        return self.norm(x)


# ---------------------------------------------------------------- heads


class Model(nn.Module):
    """<Arch>ForCausalLM (task "lm") or <Arch>ForSequenceClassification
    (task "cls"). The trunk is "transformer" (GPT-2) or "model" (llama)."""

    def __init__(self, c, task, dtype=torch.float64):
        super().__init__()
        self.c, self.task = c, task
        if c.arch == "gpt2":
            self.transformer = GPT2Model(c, dtype)
        else:
            self.model = LlamaModel(c, dtype)
        if task == "lm":
            if not c.tie:
                self.lm_head = Linear(c.C, c.V, False, dtype)
        else:
            self.score = Linear(c.C, c.num_labels, False, dtype)

    def trunk(self):
        return self.transformer if self.c.arch == "gpt2" else self.model

    def embedding_weight(self):
        t = self.trunk()
        return t.wte.weight if self.c.arch == "gpt2" else t.embed_tokens.weight

    def forward(self, tokens, lens, pos=None, seg=None):
        """LM: logits (B,T,V); cls: pooled logits (B,num_labels). pos, seg:
        (B,T) position and segment ids of packed rows, or None."""
        h = self.trunk()(tokens, lens, pos, seg)
        if self.task == "lm":
            if self.c.tie:
                logits = F.linear(h, self.embedding_weight())
            else:
                logits = self.lm_head(h)
            if self.c.softcap is not None:  # as Gemma2ForCausalLM.forward
                logits = logits / self.c.softcap
                logits = torch.tanh(logits)
                logits = logits * self.c.softcap
            return logits
        logits = self.score(h)  # HF scores every position, then pools
        return logits[torch.arange(h.shape[0]), lens - 1]

    def loss(self, logits, targets=None, labels=None):
        if self.task == "lm":
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=-1)
        return F.cross_entropy(logits, labels)

    # ---- weights by HF name

    def hf_state(self):
        """{hf name: tensor} of the base weights as model.safetensors holds
        them (no lora, no tied lm_head)."""
        return {n: p for n, p in self.named_parameters() if ".lora_" not in n}

    def lora_state(self):
        """{PEFT name: tensor} of the LoRA tensors."""
        return {"base_model.model." + n: p for n, p in self.named_parameters() if ".lora_" in n}

    def load(self, tensors, strict=True):
        """Copies {hf or PEFT name: array} into the parameters."""
        named = dict(self.named_parameters())
        for n, p in named.items():
            key = ("base_model.model." + n) if ".lora_" in n else n
            if key in tensors:
                with torch.no_grad():
                    p.copy_(torch.as_tensor(np.asarray(tensors[key])).to(p.dtype).view_as(p))
            elif strict:
                raise KeyError(key)

    def add_lora(self, targets, r, alpha):
        """targets: PEFT target_modules names (last path component), e.g.
        q_proj,v_proj or c_attn,c_fc; for GPT-2 "c_proj" means both c_proj."""
        dtype = self.embedding_weight().dtype
        hit = 0
        for name, mod in self.trunk().named_modules():
            if isinstance(mod, (Linear, Conv1D)) and name.split(".")[-1] in targets:
                mod.add_lora(r, alpha, dtype)
                hit += 1
        assert hit, "no LoRA target matched"

    def set_trainable(self, method):
        """full: everything; lora: LoRA tensors (+ score for cls, as PEFT's
        SEQ_CLS modules_to_save); head: the score (cls) or lm_head."""
        for n, p in self.named_parameters():
            if method == "full":
                p.requires_grad_(True)
            elif method == "lora":
                p.requires_grad_(".lora_" in n or n.startswith("score."))
            else:
                p.requires_grad_(n.startswith("score.") or n.startswith("lm_head."))

    def trainable(self):
        """[(engine name, param)]: PEFT names for LoRA tensors, HF names else."""
        out = []
        for n, p in self.named_parameters():
            if p.requires_grad:
                out.append((("base_model.model." + n) if ".lora_" in n else n, p))
        return out


def adamw(model_trainable, lr, wd, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.AdamW with the engine's convention: weight decay on
    tensors of 2+ dims only (no decay on biases and norm weights)."""
    decay = [p for _, p in model_trainable if p.dim() >= 2]
    nodecay = [p for _, p in model_trainable if p.dim() < 2]
    groups = [g for g in ({"params": decay, "weight_decay": wd},
                          {"params": nodecay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def random_weights(model, seed, std=0.08):
    """Deterministic float32 weights (numpy RNG) for every tensor of model, by
    name: matrices normal(0, std), norm weights 1 + normal(0, 0.1), biases
    normal(0, 0.02), LoRA A normal(0, 0.1) and B normal(0, 0.05) (non-zero, so
    the B path is tested from step 0). Returns {engine name: float32 array}."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, p in model.named_parameters():
        shape = tuple(p.shape)
        last = n.split(".")[-2] if n.endswith(".weight") else ""
        if ".lora_A" in n:
            a = rng.normal(0, 0.1, shape)
        elif ".lora_B" in n:
            a = rng.normal(0, 0.05, shape)
        elif n.endswith(".bias"):
            a = rng.normal(0, 0.02, shape)
        elif p.dim() == 1:  # norm weight: around 1, or around 0 for Gemma's x * (1 + w)
            a = (0.0 if model.c.raw.get("model_type") == "gemma3_text" else 1.0) + \
                rng.normal(0, 0.1, shape)
        elif last in ("wte", "wpe", "embed_tokens"):
            a = rng.normal(0, 0.2, shape)
        else:
            a = rng.normal(0, std, shape)
        key = ("base_model.model." + n) if ".lora_" in n else n
        out[key] = a.astype(np.float32)
    return out
