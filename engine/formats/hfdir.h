/* Hugging Face model directories (DESIGN.md 5): config.json read into an
 * ft_config and written back in the shape transformers loads, weights from
 * model.safetensors (or a sharded model.safetensors.index.json) copied into
 * the model's parameter table by HF name, a trained model written back as
 * an HF directory, and a LoRA result as a PEFT adapter directory. Model
 * directories come from users, so config.json is checked field by field and
 * anything the engine cannot run exactly (rope_scaling, a short sliding
 * window, another activation) is refused with FT_EUNSUPPORTED naming the
 * field, rather than loaded wrongly. Every file is written atomically. */
#ifndef FT_HFDIR_H
#define FT_HFDIR_H
#include <jansson.h>
#include <stddef.h>

#include "ft_err.h"
#include "nn/model.h"

/* Parses a config.json object. model_type: a row of nn/arch.c (gpt2, llama,
 * qwen2, mistral, qwen3); others FT_EUNSUPPORTED (param "model_type"). RoPE
 * scaling: rope_type linear and llama3 where the family accepts them;
 * another type or an unknown key of rope_scaling is FT_EUNSUPPORTED naming
 * it ("rope_scaling.rope_type"). cfg->arch points at the family's row. A missing required field or a
 * wrong type is FT_EFORMAT naming the field, an unsupported feature
 * FT_EUNSUPPORTED naming it. cfg->num_labels > 0 only when "architectures"
 * names a *ForSequenceClassification model (labels from id2label, else
 * num_labels as LABEL_<i>); 0 for causal LMs. */
int hf_config_parse(ft_config *cfg, const json_t *root, ft_error *err);
/* Reads <dir>/config.json and parses it. */
int hf_config_load(ft_config *cfg, const char *dir, ft_error *err);
/* The config.json transformers would write for cfg and task (architectures
 * the family's <hf_class>ForCausalLM (GPT2LMHeadModel) or the *ForSequenceClassification with id2label/label2id, torch_dtype
 * float32). FT_EINVALID for a classifier without labels or duplicate label
 * names. *out is a new reference. */
int hf_config_to_json(const ft_config *cfg, ft_task task, json_t **out, ft_error *err);
int hf_config_save(const ft_config *cfg, ft_task task, const char *dir, ft_error *err);

/* Loads the base weights of dir into m by name: every tensor with saved != 0
 * except LoRA tensors must be in the checkpoint with the same shape (missing:
 * FT_EFORMAT, other shape: FT_ESHAPE, both naming the tensor); F32/F16/BF16
 * are converted. Names may lack the family's trunk prefix ("transformer.", "model.").
 * The classification head (score.*) may be absent (a causal-LM checkpoint):
 * it then keeps its current values and *head_missing (if not NULL) is set to
 * 1, else 0. Tensors of the checkpoint the model does not use are FT_EFORMAT
 * (a config/weights mismatch), except GPT-2's attn.bias/attn.masked_bias
 * buffers, rotary_emb.inv_freq, lm_head.weight when tied or when the model
 * is a classifier, and score.* when the model has no head. */
int hf_load_weights(ft_model *m, const char *dir, int *head_missing, ft_error *err);

/* Writes out_dir (created if missing) as an HF model directory: config.json,
 * model.safetensors with every tensor with saved != 0 that is not a LoRA
 * tensor (for LoRA, merge first with model_merge_lora), and the tokenizer
 * files found in tokenizer_src_dir (NULL: none copied). */
int hf_save_model(ft_model *m, ft_task task, const char *tokenizer_src_dir, const char *out_dir,
                  ft_error *err);

/* Writes out_dir (created if missing) as a PEFT LoRA adapter: adapter_config.json
 * and adapter_model.safetensors with the LoRA tensors under their PEFT names
 * and, for a classifier, the head as PEFT saves a modules_to_save module
 * ("base_model.model.score.weight"). lora gives r, alpha, dropout and the
 * targets (the model does not keep them). FT_EINVALID if m has no LoRA tensors. */
int hf_save_peft(ft_model *m, const ft_lora *lora, const char *base_model_name, const char *out_dir,
                 ft_error *err);

/* (The target_modules names of a FT_LORA_* bit set: arch_lora_names, nn/arch.h.) */

/* Copies the tokenizer files present in src_dir (tokenizer.json, vocab.json,
 * merges.txt, tokenizer_config.json, special_tokens_map.json,
 * generation_config.json, added_tokens.json, tokenizer.model) into dst_dir. */
int hf_copy_tokenizer(const char *src_dir, const char *dst_dir, ft_error *err);

/* j as a JSON file the way Hugging Face writes them (indented, sorted keys),
 * atomically (ft_write_atomic). */
int hf_write_json(const char *path, const json_t *j, ft_error *err);
#endif
