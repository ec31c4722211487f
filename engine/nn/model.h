/* The transformer models of the engine: every family of nn/arch.h (GPT-2,
 * llama, qwen2, mistral, qwen3, gemma3_text), as causal LMs or sequence classifiers, trained in
 * full, with LoRA adapters, or head-only. Workload: CPU training at small batch (B x T up to a few
 * thousand tokens) where the GEMMs (OpenBLAS) dominate.
 *
 * Parameters live in one allocation, gradients in another, activations in a
 * third (STYLE.md 11); shapes are fixed at model_new(). Every tensor is exposed
 * in a table under its Hugging Face name and in its HF storage layout (GPT-2's
 * Conv1D weights are [in,out], nn.Linear weights [out,in]), so loading and
 * saving safetensors is a copy by name, and the PyTorch parity tests compare
 * tensors by name. LoRA tensors carry PEFT names
 * ("base_model.model.<module>.lora_A.weight" [r,in], "...lora_B.weight" [out,r]).
 * The model never prints and never exits; functions return 0 or FT_E*. */
#ifndef FT_MODEL_H
#define FT_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "ft_err.h"
#include "nn/arch.h"

typedef enum { FT_TASK_CAUSAL_LM = 1, FT_TASK_CLASSIFY = 2 } ft_task;
typedef enum { FT_METHOD_FULL = 1, FT_METHOD_LORA = 2, FT_METHOD_HEAD = 3 } ft_method;

#define FT_MAX_LABELS 256
#define FT_MAX_LAYERS 1024 /* config.json's num_hidden_layers is read up to this */
#define FT_NAME_MAX 128

typedef struct {
  const ft_arch *arch;   /* the family's description (nn/arch.h); NULL: found by model_type */
  char model_type[32];   /* config.json "model_type": a row of nn/arch.c */
  int vocab_size;        /* V */
  int hidden_size;       /* C */
  int n_layer;           /* L */
  int n_head;            /* NH */
  int n_kv_head;         /* NKV (== NH for GPT-2) */
  int head_dim;          /* HD (C / NH unless config says otherwise) */
  int intermediate_size; /* FF (4C for GPT-2) */
  int max_position;      /* maxT */
  float norm_eps;        /* layer_norm_epsilon / rms_norm_eps */
  float rope_theta;      /* RoPE families only */
  ft_rope_scaling rope_scaling; /* kind FT_ROPE_DEFAULT: none (sliding layers: never applied) */
  /* arch->sliding_layers: layer l with sliding[l] = 1 sees only the last
   * sliding_window keys (its own included) and uses RoPE base
   * rope_local_theta; the others attend fully with rope_theta */
  int sliding_window;
  float rope_local_theta;
  unsigned char sliding[FT_MAX_LAYERS];
  float attn_scalar; /* scores scaled by attn_scalar^-0.5; 0: head_dim (query_pre_attn_scalar) */
  int tie_embeddings;    /* lm_head shares the token embedding */
  int attention_bias;    /* q/k/v biases (and the output's when arch->o_bias) */
  int mlp_bias;          /* GPT-2: 1 */
  float final_softcap;   /* LM logits = cap * tanh(logits / cap) (final_logit_softcapping);
                            0: off. Only where arch->logit_softcap. */
  int bos_token_id, eos_token_id, pad_token_id; /* -1 when absent */
  /* classification */
  int num_labels;                      /* 0 for causal LM */
  char id2label[FT_MAX_LABELS][64];    /* label names, index = class id */
} ft_config;

typedef struct {
  int r;            /* rank */
  float alpha;      /* scale = alpha / r */
  float dropout;    /* applied to the LoRA input path in training */
  unsigned targets; /* bit set of FT_LORA_* modules */
} ft_lora;

/* one bit per module slot of nn/arch.h */
enum {
  FT_LORA_Q = 1u << FT_MOD_Q, FT_LORA_K = 1u << FT_MOD_K, FT_LORA_V = 1u << FT_MOD_V,
  FT_LORA_O = 1u << FT_MOD_O, FT_LORA_GATE = 1u << FT_MOD_GATE, FT_LORA_UP = 1u << FT_MOD_UP,
  FT_LORA_DOWN = 1u << FT_MOD_DOWN,
  /* GPT-2 module names */
  FT_LORA_C_ATTN = 1u << FT_MOD_QKV, FT_LORA_ATTN_C_PROJ = 1u << FT_MOD_ATTN_OUT,
  FT_LORA_C_FC = 1u << FT_MOD_FC, FT_LORA_MLP_C_PROJ = 1u << FT_MOD_MLP_OUT,
};
/* target_modules names become these bits through arch_lora_bits (nn/arch.h). */

typedef struct {
  char name[FT_NAME_MAX]; /* HF / PEFT name */
  int ndim;
  int shape[4];
  size_t numel;
  float *w;      /* into the parameter block */
  float *g;      /* into the gradient block; NULL when frozen */
  int trainable; /* 1 for tensors the method trains */
  int saved;     /* 0 for tensors not written to model.safetensors (tied lm_head) */
} ft_param;
/* A tied lm_head is an alias: w is the embedding's storage, g is NULL and
 * trainable 0 (its gradient accumulates into the embedding's g), so walking
 * the table over trainable tensors visits the shared tensor once. */

/* One training or evaluation batch. Right padding: row b holds lens[b] valid
 * tokens, the rest is ignored (masked out of attention and the loss). */
typedef struct {
  int B, T;
  const int32_t *tokens;  /* (B,T) */
  const int32_t *targets; /* (B,T) next-token id to predict at each position, -1 = no loss; LM only */
  const int32_t *labels;  /* (B) class ids; classification only */
  const int32_t *lens;    /* (B) valid length of each row, 1..T */
  /* Packed rows (several examples in one row), or NULL for one example per
   * row. A token attends only to earlier tokens of its own segment, and its
   * position (wpe / RoPE) counts from its segment's start. Within lens[b],
   * seg must not decrease (a segment is one run of tokens) and pos must be
   * below n_positions (GPT-2) or the model's T (Llama), else FT_EINVALID;
   * past lens[b] both are ignored. Either may be NULL on its own. */
  const int32_t *pos; /* (B,T) position of each token within its example */
  const int32_t *seg; /* (B,T) segment number of each token within its row */
} ft_batch;

typedef struct ft_model ft_model;

/* Makes a model for batches of at most B x T tokens. task and method fix which
 * tensors exist and which are trainable; lora may be NULL unless method is
 * LORA. training=0 allocates no gradients (inference/eval only). Weights are
 * zero until loaded or initialised. On failure *out is NULL. Caller frees with
 * model_free. */
int model_new(ft_model **out, const ft_config *cfg, ft_task task, ft_method method,
              const ft_lora *lora, int B, int T, int training, ft_error *err);
void model_free(ft_model *m);

const ft_config *model_config(const ft_model *m);
ft_param *model_params(ft_model *m, size_t *n);       /* the whole table */
ft_param *model_param(ft_model *m, const char *name); /* by HF name, NULL if none */
size_t model_num_trainable(const ft_model *m);        /* elements */
size_t model_activation_bytes(const ft_model *m);     /* the activation block, as sized */

/* Random initialisation of every tensor, as HF does for the architecture
 * (normal(0, 0.02), residual projections scaled for GPT-2, norms at 1, biases
 * 0), from seed. LoRA: A Kaiming-uniform, B zero; head: normal(0, 0.02). */
void model_init_random(ft_model *m, uint64_t seed);
/* Re-initialises only LoRA tensors and the classification head (after the
 * base weights were loaded). */
void model_init_trainable(ft_model *m, uint64_t seed);

/* Forward pass; *loss gets the mean loss over trained tokens (LM) or rows
 * (classification). With training set, activations are kept for backward and
 * dropout uses rng_seed. Returns FT_ESHAPE if batch exceeds B x T. */
int model_forward(ft_model *m, const ft_batch *b, int training, uint64_t rng_seed, float *loss);
/* After model_forward(training=1): accumulates (+=) d(scale * loss)/dparam
 * into the gradients of the trainable tensors. A causal LM computes its
 * head's logits again for it, chunk by chunk. */
int model_backward(ft_model *m, float scale);
/* model_forward(training=1) then model_backward(scale), with the LM head's
 * forward and backward fused (each chunk of logits made once): what a
 * training step runs. */
int model_forward_backward(ft_model *m, const ft_batch *b, uint64_t rng_seed, float scale,
                           float *loss);
void model_zero_grad(ft_model *m);

/* Classification: the logits of the last forward, (B,num_labels); valid
 * until the next forward. NULL for a causal LM, whose (B,T,V) logits never
 * exist at once (the head runs in chunks of rows, nn/layers.h lm_head_xent). */
const float *model_logits(const ft_model *m);
/* Causal LM, the last forward's log p(target) of every row (B*T): NaN where
 * the row has no target (-1 or padding). Valid until the next forward. */
const float *model_target_logprobs(const ft_model *m);
/* Causal LM, for tools and tests that need a few rows' full logits: rows
 * row0..row0+n-1 of the last forward's B*T (row-major (B,T)) into out
 * (n,V), softcapped as the loss sees them; rows t >= lens[b] are zero.
 * FT_EINVALID for a classifier or rows outside the batch. */
int model_lm_logits(const ft_model *m, int row0, int n, float *out);
/* Per-batch statistics of the last forward: number of trained tokens (LM) or
 * rows (classification) and how many were predicted right (argmax). */
void model_last_counts(const ft_model *m, long *n_trained, long *n_correct);

/* Merges LoRA into the base weights (W += scale * B A) in place. The adapters
 * stay in the table but are no longer applied (nor trained) by this model. */
void model_merge_lora(ft_model *m);
#endif
