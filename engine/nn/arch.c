/* The model families (see arch.h): one row each. Every fact about a family
 * lives in its row; a consumer that needs to know something about a family
 * reads a field here, so a new row is all a family needs unless it brings a
 * new op. */
#include "nn/arch.h"

#include <stdio.h>
#include <string.h>

/* ---- init-model presets ---- */

static const ft_preset gpt2_presets[] = {
    {"tiny", 2, 64, 4, 4, 0, 256, 256, 1, 1e-5f, 0, {0, 0, 0, 0, 0}, 0, 0, 0, 0},
    {"small-test", 4, 128, 4, 4, 0, 512, 512, 1, 1e-5f, 0, {0, 0, 0, 0, 0}, 0, 0, 0, 0},
    {"gpt2-small", 12, 768, 12, 12, 0, 3072, 1024, 1, 1e-5f, 0, {0, 0, 0, 0, 0}, 0, 0, 0, 0},
    {.name = NULL},
};

#define LLAMA_PRESETS                                                               \
  {"tiny", 2, 64, 4, 2, 0, 172, 256, 0, 1e-5f, 10000.0f, {0, 0, 0, 0, 0}, 0, 0, 0, 0},            \
      {"llama-test", 4, 128, 4, 2, 0, 344, 512, 1, 1e-5f, 10000.0f, {0, 0, 0, 0, 0}, 0, 0, 0, 0}, \
      {"smollm-135m", 30, 576, 9, 3, 0, 1536, 2048, 1, 1e-5f, 10000.0f, {0, 0, 0, 0, 0}, 0, 0, 0, 0}, \
      /* pretraining from scratch (scripts/make-base-model.sh): ~7.9M parameters at an \
         8192 vocabulary (2.1M of them the tied embedding) */                       \
      {"llama-base-8m", 8, 256, 8, 4, 0, 688, 512, 1, 1e-5f, 10000.0f, {0, 0, 0, 0, 0}, 0, 0, 0, 0}

static const ft_preset llama_presets[] = {
    LLAMA_PRESETS,
    /* meta-llama/Llama-3.2-1B's shape (rope_scaling llama3) */
    {"llama-3.2-1b", 16, 2048, 32, 8, 64, 8192, 131072, 1, 1e-5f, 500000.0f, {FT_ROPE_LLAMA3, 32.0f,
     1.0f, 4.0f, 8192}, 0, 0, 0, 0},
    {.name = NULL},
};

static const ft_preset llama_like_presets[] = {
    LLAMA_PRESETS,
    {.name = NULL},
};

static const ft_preset qwen3_presets[] = {
    /* head_dim 32 != 64 / 4, as Qwen3's own head_dim differs from hidden / heads */
    {"tiny", 2, 64, 4, 2, 32, 172, 256, 1, 1e-6f, 1000000.0f, {0, 0, 0, 0, 0}, 0, 0, 0, 0},
    /* Qwen/Qwen3-0.6B's shape */
    {"qwen3-0.6b", 28, 1024, 16, 8, 128, 3072, 40960, 1, 1e-6f, 1000000.0f, {0, 0, 0, 0, 0}, 0, 0, 0, 0},
    {.name = NULL},
};

/* Gemma 3 text models: sliding window 512 on five layers in six (pattern 6),
 * RoPE base 1e6 on the global layers and 1e4 on the local ones, scores scaled
 * by query_pre_attn_scalar^-0.5, context 32768. The shapes are
 * google/gemma-3-270m's and google/gemma-3-1b-pt's config.json (as quoted in
 * public test fixtures: hidden 640 / 1152, 18 / 26 layers, 4 heads, 1 kv
 * head, head_dim 256, MLP 2048 / 6912, rope_scaling null). tiny: a window
 * and pattern short enough that a short sequence crosses them, head_dim
 * 32 != 64 / 4 as Gemma's 256 != hidden / heads. */
static const ft_preset gemma3_presets[] = {
    {"tiny", 4, 64, 4, 1, 32, 128, 256, 1, 1e-6f, 1000000.0f, {0, 0, 0, 0, 0}, 8, 2, 10000.0f,
     32.0f},
    {"gemma-3-270m", 18, 640, 4, 1, 256, 2048, 32768, 1, 1e-6f, 1000000.0f, {0, 0, 0, 0, 0}, 512,
     6, 10000.0f, 256.0f},
    {"gemma-3-1b", 26, 1152, 4, 1, 256, 6912, 32768, 1, 1e-6f, 1000000.0f, {0, 0, 0, 0, 0}, 512,
     6, 10000.0f, 256.0f},
    {.name = NULL},
};

/* ---- the families ---- */

#define LLAMA_MODS                                                               \
  {                                                                              \
    [FT_MOD_Q] = {"self_attn.q_proj", "q_proj", "attn_q", 1},                    \
    [FT_MOD_K] = {"self_attn.k_proj", "k_proj", "attn_k", 2},                    \
    [FT_MOD_V] = {"self_attn.v_proj", "v_proj", "attn_v", 0},                    \
    [FT_MOD_O] = {"self_attn.o_proj", "o_proj", "attn_output", 0},               \
    [FT_MOD_GATE] = {"mlp.gate_proj", "gate_proj", "ffn_gate", 0},               \
    [FT_MOD_UP] = {"mlp.up_proj", "up_proj", "ffn_up", 0},                       \
    [FT_MOD_DOWN] = {"mlp.down_proj", "down_proj", "ffn_down", 0},               \
  }

/* the layout of the Llama-style families (Gemma's too): names, keys, a gated MLP */
#define LLAMA_LAYOUT                                                                             \
  .hf_lm = "ForCausalLM", .gated_mlp = 1, .pos = FT_POS_ROPE, .untied_ok = 1, .add_bos = 1,      \
  .embed_pad_zero = 1, .k_hidden = "hidden_size", .k_layers = "num_hidden_layers",               \
  .k_heads = "num_attention_heads", .k_ffn = "intermediate_size",                                \
  .k_maxpos = "max_position_embeddings", .k_eps = "rms_norm_eps", .eps_default = 1e-6,           \
  .trunk = "model.", .layers = "model.layers", .embed = "model.embed_tokens",                    \
  .final_norm = "model.norm", .norm1 = "input_layernorm", .norms_last = 1, .mods = LLAMA_MODS,   \
  .lora_default = "q_proj,v_proj", .gguf_embed = "token_embd", .gguf_final_norm = "output_norm", \
  .gguf_norm1 = "attn_norm", .gguf_norm2 = "ffn_norm"

/* what the Llama-style families share; each row names its differences */
#define LLAMA_COMMON                                                            \
  LLAMA_LAYOUT, .norm = FT_NORM_RMS, .act = FT_ACT_SILU, .k_act = "hidden_act", \
                .acts_ok = "silu,swish", .norm2 = "post_attention_layernorm"

static const ft_arch archs[] = {
    {
        .model_type = "gpt2",
        .hf_class = "GPT2",
        .hf_lm = "LMHeadModel",
        .norm = FT_NORM_LAYER,
        .act = FT_ACT_GELU_TANH,
        .fused_qkv = 1,
        .conv1d = 1,
        .qkv_bias = 1,
        .o_bias = 1,
        .mlp_bias = 1,
        .pos = FT_POS_LEARNED,
        .tie_default = 1,
        .scaled_proj_init = 1,
        .k_hidden = "n_embd",
        .k_layers = "n_layer",
        .k_heads = "n_head",
        .k_ffn = "n_inner",
        .k_maxpos = "n_positions",
        .k_eps = "layer_norm_epsilon",
        .k_act = "activation_function",
        .eps_default = 1e-5,
        .acts_ok = "gelu_new,gelu_pytorch_tanh",
        .false_keys = "scale_attn_by_inverse_layer_idx,add_cross_attention",
        .true_keys = "scale_attn_weights",
        .trunk = "transformer.",
        .layers = "transformer.h",
        .embed = "transformer.wte",
        .pos_embed = "transformer.wpe",
        .final_norm = "transformer.ln_f",
        .norm1 = "ln_1",
        .norm2 = "ln_2",
        .ignored = ".attn.bias,.attn.masked_bias",
        .mods =
            {
                [FT_MOD_QKV] = {"attn.c_attn", "c_attn", "attn_qkv", 0},
                [FT_MOD_ATTN_OUT] = {"attn.c_proj", "c_proj", "attn_output", 0},
                [FT_MOD_FC] = {"mlp.c_fc", "c_fc", "ffn_up", 0},
                [FT_MOD_MLP_OUT] = {"mlp.c_proj", "c_proj", "ffn_down", 0},
            },
        .lora_default = "c_attn",
        .gguf_arch = "gpt2",
        .gguf_tied_output = 1,
        .gguf_embed = "token_embd",
        .gguf_pos_embed = "position_embd",
        .gguf_final_norm = "output_norm",
        .gguf_norm1 = "attn_norm",
        .gguf_norm2 = "ffn_norm",
        .presets = gpt2_presets,
    },
    {
        LLAMA_COMMON,
        .model_type = "llama",
        .hf_class = "Llama",
        .bias_key = 1,
        .o_bias = 1,
        .rope_scalings = 1u << FT_ROPE_LINEAR | 1u << FT_ROPE_LLAMA3,
        .false_keys = "mlp_bias",
        .gguf_arch = "llama",
        .gguf_permute_qk = 1,
        .presets = llama_presets,
    },
    {
        LLAMA_COMMON,
        .model_type = "qwen2",
        .hf_class = "Qwen2",
        .qkv_bias = 1,
        .sliding_switch = 1,
        .gguf_arch = "qwen2",
        .presets = llama_like_presets,
    },
    {
        LLAMA_COMMON,
        .model_type = "mistral",
        .hf_class = "Mistral",
        .gguf_arch = "llama",
        .gguf_permute_qk = 1,
        .presets = llama_like_presets,
    },
    {
        LLAMA_COMMON,
        .model_type = "qwen3",
        .hf_class = "Qwen3",
        .bias_key = 1,
        .o_bias = 1,
        .has_qk_norm = 1,
        .head_dim_default = 128, /* Qwen3Config's */
        .sliding_switch = 1,
        .sliding_refused = 1,
        .q_norm = "self_attn.q_norm",
        .k_norm = "self_attn.k_norm",
        .gguf_arch = "qwen3",
        .gguf_q_norm = "attn_q_norm",
        .gguf_k_norm = "attn_k_norm",
        .presets = qwen3_presets,
    },
    {
        /* Gemma 3 text (Gemma3ForCausalLM, Gemma3TextForSequenceClassification).
         * attn_logit_softcapping is not read: HF's Gemma 3 attention never
         * applies it (Gemma 2 did). */
        LLAMA_LAYOUT,
        .model_type = "gemma3_text",
        .hf_class = "Gemma3",
        .hf_cls = "Gemma3Text",
        .norm = FT_NORM_RMS_1P,
        .act = FT_ACT_GELU_TANH,
        .bias_key = 1,
        .o_bias = 1,
        .has_qk_norm = 1,
        .post_norms = 1,
        .embed_scale = 1,
        .sliding_layers = 1,
        .tie_default = 1,
        .k_act = "hidden_activation",
        .acts_ok = "gelu_pytorch_tanh,gelu_new",
        .k_attn_scalar = "query_pre_attn_scalar",
        .k_rope_local = "rope_local_base_freq",
        .rope_theta_default = 1000000.0,
        .rope_local_default = 10000.0,
        .attn_scalar_default = 256.0,
        .window_default = 4096,
        .pattern_default = 6,
        .head_dim_default = 256, /* Gemma3TextConfig's */
        .rope_scalings = 1u << FT_ROPE_LINEAR,
        .false_keys = "use_bidirectional_attention",
        .q_norm = "self_attn.q_norm",
        .k_norm = "self_attn.k_norm",
        /* Gemma's post_attention_layernorm norms the attention's output; the
         * MLP's input norm is pre_feedforward_layernorm */
        .norm2 = "pre_feedforward_layernorm",
        .norm_attn_out = "post_attention_layernorm",
        .norm_mlp_out = "post_feedforward_layernorm",
        .gguf_arch = "gemma3",
        .gguf_q_norm = "attn_q_norm",
        .gguf_k_norm = "attn_k_norm",
        .gguf_norm_attn_out = "post_attention_norm",
        .gguf_norm_mlp_out = "post_ffw_norm",
        .gguf_norm_shift = 1,
        .presets = gemma3_presets,
    },
};

#define N_ARCHS (sizeof archs / sizeof *archs)

const ft_arch *arch_find(const char *model_type) {
  for (size_t i = 0; model_type && i < N_ARCHS; i++)
    if (!strcmp(archs[i].model_type, model_type)) return &archs[i];
  return NULL;
}

const ft_arch *arch_at(size_t i) { return i < N_ARCHS ? &archs[i] : NULL; }

void arch_list(char *buf, size_t size) {
  size_t o = 0;
  buf[0] = 0;
  for (size_t i = 0; i < N_ARCHS && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", archs[i].model_type);
}

int arch_attn_out(const ft_arch *a) { return a->fused_qkv ? FT_MOD_ATTN_OUT : FT_MOD_O; }
int arch_mlp_up(const ft_arch *a) { return a->gated_mlp ? FT_MOD_UP : FT_MOD_FC; }
int arch_mlp_gate(const ft_arch *a) { return a->gated_mlp ? FT_MOD_GATE : -1; }
int arch_mlp_down(const ft_arch *a) { return a->gated_mlp ? FT_MOD_DOWN : FT_MOD_MLP_OUT; }

void arch_mod_dims(int i, int C, int QD, int KD, int FF, int *in, int *out) {
  static const char in_k[FT_MOD_N] = {'C', 'C', 'C', 'Q', 'C', 'C', 'F', 'C', 'C', 'C', 'F'};
  int outs[FT_MOD_N] = {QD, KD, KD, C, FF, FF, C, 3 * C, C, FF, C};
  *in = in_k[i] == 'C' ? C : in_k[i] == 'Q' ? QD : FF;
  *out = outs[i];
}

unsigned arch_lora_bits(const ft_arch *a, const char *name) {
  unsigned bits = 0;
  if (!a || !name) return 0;
  for (int i = 0; i < FT_MOD_N; i++) {
    const ft_arch_mod *m = &a->mods[i];
    if (m->path && (!strcmp(name, m->peft) || !strcmp(name, m->path))) bits |= 1u << i;
  }
  return bits;
}

unsigned arch_lora_all(const ft_arch *a) {
  unsigned bits = 0;
  for (int i = 0; i < FT_MOD_N; i++)
    if (a->mods[i].path) bits |= 1u << i;
  return bits;
}

void arch_lora_names(const ft_arch *a, unsigned bits, char *buf, size_t size) {
  size_t o = 0;
  unsigned done = 0;
  buf[0] = 0;
  for (int i = 0; i < FT_MOD_N; i++) {
    const ft_arch_mod *m = &a->mods[i];
    if (!m->path || !(bits & (1u << i)) || (done & (1u << i))) continue;
    unsigned same = arch_lora_bits(a, m->peft); /* every module answering to the short name */
    const char *name = (bits & same) == same ? m->peft : m->path;
    if (name == m->peft) done |= same;
    o += (size_t)snprintf(buf + o, o < size ? size - o : 0, "%s%s", o ? "," : "", name);
  }
}
