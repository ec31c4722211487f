/* One description per model family (STYLE.md 15): everything that differs
 * between gpt2, llama, qwen2, mistral, qwen3, gemma3_text ... as data, in one table row
 * per config.json model_type. The config reader (formats/hfdir.c), the
 * model (nn/model.c), inference (infer/infer.c), the GGUF exporter
 * (formats/gguf.c), the init presets (nn/init.c) and the job spec's LoRA
 * targets (train/spec.c) read the row and branch on its properties
 * (has_qk_norm, gated_mlp, pos ...), never on a family's name. Adding a
 * family is one row here (plus, when it brings a new op, one forward and
 * backward pair in nn/layers.c with its finite-difference test); see
 * docs/architecture.md, "How to add a model family". Rows are static and
 * never freed; an ft_config points at its row. */
#ifndef FT_ARCH_H
#define FT_ARCH_H
#include <stddef.h>

typedef enum {
  FT_NORM_LAYER = 1,  /* LayerNorm with bias (GPT-2) */
  FT_NORM_RMS = 2,    /* w * x * rsqrt(mean(x^2) + eps) (Llama) */
  FT_NORM_RMS_1P = 3, /* x * rsqrt(mean(x^2) + eps) * (1 + w) (Gemma; weights init 0) */
} ft_norm_kind;

typedef enum { FT_ACT_GELU_TANH = 1, FT_ACT_SILU = 2 } ft_act_kind;
typedef enum { FT_POS_LEARNED = 1, FT_POS_ROPE = 2 } ft_pos_kind;

/* rope_scaling.rope_type values the engine computes exactly (bit set in
 * ft_arch.rope_scalings; FT_ROPE_DEFAULT = plain RoPE, always accepted) */
typedef enum { FT_ROPE_DEFAULT = 0, FT_ROPE_LINEAR = 1, FT_ROPE_LLAMA3 = 2 } ft_rope_kind;

/* A config's rope_scaling (HF modeling_rope_utils): LINEAR divides every
 * frequency by factor; LLAMA3 (Llama 3.1+) divides those whose wavelength
 * exceeds orig_max_pos / low_freq by factor, keeps those below
 * orig_max_pos / high_freq, and interpolates between. */
typedef struct {
  int kind; /* ft_rope_kind */
  float factor, low_freq, high_freq;
  int orig_max_pos;
} ft_rope_scaling;

/* The linear modules of a layer, one slot each, in the bit order of the
 * FT_LORA_* masks (model.h). A family uses some of them. */
enum {
  FT_MOD_Q, FT_MOD_K, FT_MOD_V, FT_MOD_O, FT_MOD_GATE, FT_MOD_UP, FT_MOD_DOWN,
  FT_MOD_QKV,      /* fused q/k/v, C -> 3C (GPT-2 attn.c_attn) */
  FT_MOD_ATTN_OUT, /* GPT-2 attn.c_proj (the role of o_proj) */
  FT_MOD_FC,       /* GPT-2 mlp.c_fc (the role of up_proj, ungated) */
  FT_MOD_MLP_OUT,  /* GPT-2 mlp.c_proj (the role of down_proj) */
  FT_MOD_N
};

typedef struct {
  const char *path; /* under a layer, as HF names it ("self_attn.q_proj"); NULL: not in the family */
  const char *peft; /* PEFT target_modules name ("q_proj"; GPT-2's two c_proj share "c_proj") */
  const char *gguf; /* llama.cpp tensor base name ("attn_q") */
  int gguf_permute; /* 1: rows permuted by n_head, 2: by n_kv_head (when gguf_permute_qk) */
} ft_arch_mod;

/* A preset shape for `init-model` (vocab and special ids come from the
 * tokenizer). head_dim 0: hidden / heads. rope_* as ft_config's. For
 * families with sliding layers: window (keys a sliding layer sees), pattern
 * (layer i is full when (i+1) % pattern == 0, HF's sliding_window_pattern),
 * local_theta (rope_local_base_freq) and attn_scalar (query_pre_attn_scalar). */
typedef struct {
  const char *name;
  int L, C, NH, NKV, HD, FF, maxT, tie;
  float eps, theta;
  ft_rope_scaling rope;
  int window, pattern;
  float local_theta, attn_scalar;
} ft_preset;

typedef struct ft_arch {
  const char *model_type; /* config.json "model_type" */
  const char *hf_class;   /* "Llama": LlamaForCausalLM / LlamaForSequenceClassification */
  const char *hf_lm;      /* the causal-LM class suffix ("ForCausalLM", GPT-2 "LMHeadModel") */
  const char *hf_cls; /* the classifier's prefix when not hf_class ("Gemma3Text"); NULL: hf_class */

  /* the computation */
  ft_norm_kind norm;
  ft_act_kind act;
  int gated_mlp;    /* act(gate) * up (SwiGLU) rather than act(fc) */
  int fused_qkv;    /* one FT_MOD_QKV instead of q/k/v */
  int conv1d;       /* weights stored [in,out] (GPT-2 Conv1D) */
  int qkv_bias;     /* q/k/v biases when config.json does not say (qwen2: always) */
  int bias_key;     /* config.json "attention_bias" is read (and written) */
  int o_bias;       /* the attention output has a bias whenever q/k/v have one */
  int mlp_bias;     /* the MLP has biases (GPT-2) */
  int has_qk_norm;  /* per-head RMSNorm of q and k before RoPE (q_norm/k_norm, [head_dim]) */
  int post_norms;   /* the attention's and the MLP's outputs are normed before their residual
                       add (norm_attn_out, norm_mlp_out; Gemma's sandwich norms) */
  int embed_scale;  /* token embeddings are multiplied by sqrt(hidden) (Gemma) */
  int sliding_layers; /* per-layer sliding window: config.json layer_types (or the older
                         sliding_window_pattern) picks the layers, sliding_window their
                         window, k_rope_local their RoPE base (without rope_scaling) */
  ft_pos_kind pos;
  unsigned rope_scalings; /* 1u << ft_rope_kind accepted in rope_scaling */
  int tie_default;        /* tie_word_embeddings when config.json does not say */
  int untied_ok;          /* 0: an untied lm_head is refused (GPT-2) */
  int sliding_switch;     /* "use_sliding_window" decides whether sliding_window applies */
  int sliding_refused;    /* use_sliding_window=true refused outright (qwen3) */
  int add_bos;            /* training data and prompts start with the tokenizer's BOS */
  int scaled_proj_init;   /* output projections init with std 0.02/sqrt(2L) (GPT-2) */
  int embed_pad_zero;     /* the pad token's embedding row starts at zero (nn.Embedding padding_idx) */
  int logit_softcap;      /* final_logit_softcapping may be set (ft_config.final_softcap) */

  /* config.json keys */
  const char *k_hidden, *k_layers, *k_heads, *k_ffn, *k_maxpos, *k_eps, *k_act;
  const char *k_attn_scalar; /* scores scaled by this key's value^-0.5 (query_pre_attn_scalar);
                                NULL: head_dim^-0.5 */
  const char *k_rope_local;  /* sliding layers' RoPE base (rope_local_base_freq), sliding_layers */
  double rope_theta_default, rope_local_default, attn_scalar_default; /* 0: 10000 / none */
  int window_default, pattern_default; /* sliding_window, sliding_window_pattern defaults */
  double eps_default;
  int head_dim_default; /* head_dim when config.json does not say; 0: hidden / heads */
  const char *acts_ok;  /* accepted k_act values, comma-separated; the first is written */
  const char *false_keys; /* booleans that must be false (comma-separated) */
  const char *true_keys;  /* booleans that must be true (absent = true) */

  /* Hugging Face tensor names */
  const char *trunk;  /* prefix of the trunk's tensors, "model." (a bare model omits it) */
  const char *layers; /* "model.layers": layer l is "<layers>.<l>." */
  const char *embed, *pos_embed, *final_norm; /* full paths without ".weight"; pos_embed NULL for RoPE */
  const char *norm1, *norm2;                  /* under a layer */
  const char *q_norm, *k_norm;                /* under a layer, when has_qk_norm */
  const char *norm_attn_out, *norm_mlp_out;   /* under a layer, when post_norms */
  const char *ignored; /* name suffixes of checkpoint buffers the model does not use */
  int norms_last;      /* HF declares a layer's norms after its modules (the table's order) */
  ft_arch_mod mods[FT_MOD_N];
  const char *lora_default; /* target_modules when the job does not say */

  /* llama.cpp GGUF */
  const char *gguf_arch;
  int gguf_permute_qk; /* Q/K rows permuted to GGML's interleaved RoPE (llama) */
  int gguf_tied_output; /* a tied lm_head is written as output.weight too (GPT-2) */
  const char *gguf_embed, *gguf_pos_embed, *gguf_final_norm, *gguf_norm1, *gguf_norm2;
  const char *gguf_q_norm, *gguf_k_norm;
  const char *gguf_norm_attn_out, *gguf_norm_mlp_out;
  int gguf_norm_shift; /* norm weights are written as 1 + w (llama.cpp's Gemma norms are w * x) */

  const ft_preset *presets; /* NULL-name terminated */
} ft_arch;

/* The row of a config.json model_type; NULL if none. */
const ft_arch *arch_find(const char *model_type);
/* Row i of the table (0..), NULL past the end. */
const ft_arch *arch_at(size_t i);
/* "gpt2, llama, ..." into buf. */
void arch_list(char *buf, size_t size);

/* Slots of a role: the attention output, the MLP's input(s) and output;
 * gate is -1 for an ungated MLP. */
int arch_attn_out(const ft_arch *a);
int arch_mlp_up(const ft_arch *a);
int arch_mlp_gate(const ft_arch *a);
int arch_mlp_down(const ft_arch *a);

/* in and out features of module slot i for hidden C, q/k/v widths QD
 * (heads x head_dim), KD (kv heads x head_dim) and MLP width FF */
void arch_mod_dims(int i, int C, int QD, int KD, int FF, int *in, int *out);

/* FT_LORA_* bits (model.h) a target_modules name selects in this family:
 * a PEFT short name ("q_proj", GPT-2 "c_proj" = both c_proj's) or a module
 * path ("self_attn.q_proj", "mlp.c_proj"); 0 if the family has none. */
unsigned arch_lora_bits(const ft_arch *a, const char *name);
/* Every FT_LORA_* bit of the family ("all-linear"). */
unsigned arch_lora_all(const ft_arch *a);
/* The target_modules names PEFT matches for bits, comma-joined into buf
 * (a short name shared by modules not all selected is written as its path). */
void arch_lora_names(const ft_arch *a, unsigned bits, char *buf, size_t size);
#endif
