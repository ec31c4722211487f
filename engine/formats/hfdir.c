/* Hugging Face model directories (see hfdir.h). config.json is parsed field
 * by field with the defaults transformers' config classes use, so a config
 * that omits an optional field means what it means to transformers. Weights
 * are matched by name against the model's parameter table; the table is the
 * authority on which tensors exist and their shapes, the checkpoint must
 * supply them. Written files are small JSON plus one safetensors file, each
 * written to a temp name, fsynced and renamed. */
#include "formats/hfdir.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "ft_fs.h"

/* ---- files ---- */

int hf_write_json(const char *path, const json_t *j, ft_error *err) {
  /* 9 significant digits: every float the engine holds survives the trip */
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
  if (!s) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  size_t n = strlen(s);
  s[n] = '\n'; /* replaces the NUL; length passed explicitly */
  int rc = ft_write_atomic(path, s, n + 1, 0644, err);
  free(s);
  return rc;
}

static int is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static const char *tokenizer_files[] = {
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "added_tokens.json",
    "tokenizer.model",
};

int hf_copy_tokenizer(const char *src_dir, const char *dst_dir, ft_error *err) {
  for (size_t i = 0; i < sizeof tokenizer_files / sizeof *tokenizer_files; i++) {
    char src[PATH_MAX], dst[PATH_MAX];
    int rc = ft_path_join(src, sizeof src, src_dir, tokenizer_files[i], err);
    if (!rc) rc = ft_path_join(dst, sizeof dst, dst_dir, tokenizer_files[i], err);
    if (rc) return rc;
    if (!is_file(src)) continue;
    if ((rc = ft_copy_file(src, dst, 0644, err))) return rc;
  }
  return 0;
}

/* ---- config.json ---- */

#define CFG_ERR(code, field, ...) ft_error_set(err, code, field, "config.json: " __VA_ARGS__)

/* An integer field; absent or null gives def, or an error when required. */
static int cfg_int(const json_t *root, const char *key, int required, long def, long lo, long hi,
                   int *out, ft_error *err) {
  const json_t *v = json_object_get(root, key);
  long x = def;
  if (!v || json_is_null(v)) {
    if (required) return CFG_ERR(FT_EFORMAT, key, "missing required field '%s'", key);
  } else if (!json_is_integer(v)) {
    return CFG_ERR(FT_EFORMAT, key, "'%s' must be an integer", key);
  } else {
    x = (long)json_integer_value(v);
  }
  if (x < lo || x > hi)
    return CFG_ERR(FT_EFORMAT, key, "'%s' = %ld is out of range [%ld, %ld]", key, x, lo, hi);
  *out = (int)x;
  return 0;
}

static int cfg_num(const json_t *root, const char *key, double def, double lo, double hi,
                   float *out, ft_error *err) {
  const json_t *v = json_object_get(root, key);
  double x = def;
  if (v && !json_is_null(v)) {
    if (!json_is_number(v)) return CFG_ERR(FT_EFORMAT, key, "'%s' must be a number", key);
    x = json_number_value(v);
  }
  if (!(x >= lo && x <= hi))
    return CFG_ERR(FT_EFORMAT, key, "'%s' = %g is out of range [%g, %g]", key, x, lo, hi);
  *out = (float)x;
  return 0;
}

static int cfg_bool(const json_t *root, const char *key, int def, int *out, ft_error *err) {
  const json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) {
    *out = def;
    return 0;
  }
  if (!json_is_boolean(v)) return CFG_ERR(FT_EFORMAT, key, "'%s' must be true or false", key);
  *out = json_is_true(v);
  return 0;
}

/* Optional string; NULL when absent or null. */
static int cfg_str(const json_t *root, const char *key, const char **out, ft_error *err) {
  const json_t *v = json_object_get(root, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) return CFG_ERR(FT_EFORMAT, key, "'%s' must be a string", key);
  *out = json_string_value(v);
  return 0;
}

/* bos/eos/pad: an integer, a list (the first is used), or absent/null = -1. */
static int cfg_token(const json_t *root, const char *key, int vocab, int *out, ft_error *err) {
  const json_t *v = json_object_get(root, key);
  if (json_is_array(v)) v = json_array_get(v, 0);
  *out = -1;
  if (!v || json_is_null(v)) return 0;
  if (!json_is_integer(v)) return CFG_ERR(FT_EFORMAT, key, "'%s' must be an integer", key);
  json_int_t x = json_integer_value(v);
  if (x >= vocab)
    return CFG_ERR(FT_EFORMAT, key, "'%s' = %lld is not below vocab_size", key, (long long)x);
  *out = x < 0 ? -1 : (int)x;
  return 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int parse_labels(ft_config *cfg, const json_t *root, ft_error *err) {
  const char *pt;
  int rc = cfg_str(root, "problem_type", &pt, err);
  if (rc) return rc;
  if (pt && strcmp(pt, "single_label_classification") != 0)
    return CFG_ERR(FT_EUNSUPPORTED, "problem_type",
                   "problem_type '%s' is not supported (single_label_classification only)", pt);
  const json_t *id2label = json_object_get(root, "id2label");
  if (id2label && !json_is_null(id2label)) {
    if (!json_is_object(id2label) || json_object_size(id2label) == 0)
      return CFG_ERR(FT_EFORMAT, "id2label", "'id2label' must be a non-empty object");
    size_t n = json_object_size(id2label);
    if (n > FT_MAX_LABELS)
      return CFG_ERR(FT_EUNSUPPORTED, "id2label", "%zu labels; at most %d are supported", n,
                     FT_MAX_LABELS);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)id2label, k, v) {
      char *end;
      errno = 0;
      long id = strtol(k, &end, 10);
      if (!*k || *end || errno || id < 0 || (size_t)id >= n || k[0] == '+' || (k[0] == '0' && k[1]))
        return CFG_ERR(FT_EFORMAT, "id2label", "id2label key '%s' is not a class id in 0..%zu", k,
                       n - 1);
      if (!json_is_string(v) || json_string_length(v) == 0 ||
          json_string_length(v) >= sizeof cfg->id2label[0])
        return CFG_ERR(FT_EFORMAT, "id2label", "id2label[%s] must be a label name of 1..%zu bytes",
                       k, sizeof cfg->id2label[0] - 1);
      snprintf(cfg->id2label[id], sizeof cfg->id2label[id], "%s", json_string_value(v));
    }
    cfg->num_labels = (int)n; /* n distinct keys in 0..n-1: every id is there */
    const json_t *nl = json_object_get(root, "num_labels");
    if (json_is_integer(nl) && json_integer_value(nl) != (json_int_t)n)
      return CFG_ERR(FT_EFORMAT, "num_labels", "num_labels %lld disagrees with id2label (%zu)",
                     (long long)json_integer_value(nl), n);
    return 0;
  }
  rc = cfg_int(root, "num_labels", 0, 2, 1, FT_MAX_LABELS, &cfg->num_labels, err);
  if (rc) return rc;
  for (int i = 0; i < cfg->num_labels; i++)
    snprintf(cfg->id2label[i], sizeof cfg->id2label[i], "LABEL_%d", i);
  return 0;
}

static int parse_gpt2(ft_config *c, const json_t *root, ft_error *err) {
  int rc;
  c->arch = FT_ARCH_GPT2;
  if ((rc = cfg_int(root, "vocab_size", 1, 0, 1, 1 << 22, &c->vocab_size, err)) ||
      (rc = cfg_int(root, "n_embd", 1, 0, 1, 1 << 16, &c->hidden_size, err)) ||
      (rc = cfg_int(root, "n_layer", 1, 0, 1, 1024, &c->n_layer, err)) ||
      (rc = cfg_int(root, "n_head", 1, 0, 1, 1024, &c->n_head, err)) ||
      (rc = cfg_int(root, "n_positions", 1, 0, 1, 1 << 20, &c->max_position, err)) ||
      (rc = cfg_int(root, "n_inner", 0, 4L * c->hidden_size, 1, 1 << 20, &c->intermediate_size,
                    err)) ||
      (rc = cfg_num(root, "layer_norm_epsilon", 1e-5, 0, 1, &c->norm_eps, err)))
    return rc;
  if (c->hidden_size % c->n_head)
    return CFG_ERR(FT_EFORMAT, "n_head", "n_embd %d is not a multiple of n_head %d", c->hidden_size,
                   c->n_head);
  c->n_kv_head = c->n_head;
  c->head_dim = c->hidden_size / c->n_head;
  c->attention_bias = 1;
  c->mlp_bias = 1;
  c->tie_embeddings = 1;
  const char *act;
  if ((rc = cfg_str(root, "activation_function", &act, err))) return rc;
  if (act && strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh"))
    return CFG_ERR(FT_EUNSUPPORTED, "activation_function",
                   "activation_function '%s' is not supported (gelu_new, gelu_pytorch_tanh)", act);
  /* switches that change the computation away from GPT-2's */
  int tie, inv_idx, scale, cross;
  if ((rc = cfg_bool(root, "tie_word_embeddings", 1, &tie, err)) ||
      (rc = cfg_bool(root, "scale_attn_by_inverse_layer_idx", 0, &inv_idx, err)) ||
      (rc = cfg_bool(root, "scale_attn_weights", 1, &scale, err)) ||
      (rc = cfg_bool(root, "add_cross_attention", 0, &cross, err)))
    return rc;
  if (!tie)
    return CFG_ERR(FT_EUNSUPPORTED, "tie_word_embeddings",
                   "untied GPT-2 embeddings are not supported");
  if (inv_idx)
    return CFG_ERR(FT_EUNSUPPORTED, "scale_attn_by_inverse_layer_idx",
                   "scale_attn_by_inverse_layer_idx is not supported");
  if (!scale)
    return CFG_ERR(FT_EUNSUPPORTED, "scale_attn_weights",
                   "scale_attn_weights=false is not supported");
  if (cross)
    return CFG_ERR(FT_EUNSUPPORTED, "add_cross_attention", "cross-attention is not supported");
  return 0;
}

static int parse_llama(ft_config *c, const json_t *root, const char *mt, ft_error *err) {
  int rc;
  c->arch = FT_ARCH_LLAMA;
  if ((rc = cfg_int(root, "vocab_size", 1, 0, 1, 1 << 22, &c->vocab_size, err)) ||
      (rc = cfg_int(root, "hidden_size", 1, 0, 1, 1 << 16, &c->hidden_size, err)) ||
      (rc = cfg_int(root, "num_hidden_layers", 1, 0, 1, 1024, &c->n_layer, err)) ||
      (rc = cfg_int(root, "num_attention_heads", 1, 0, 1, 1024, &c->n_head, err)) ||
      (rc = cfg_int(root, "num_key_value_heads", 0, c->n_head, 1, c->n_head, &c->n_kv_head, err)) ||
      (rc = cfg_int(root, "intermediate_size", 1, 0, 1, 1 << 20, &c->intermediate_size, err)) ||
      (rc = cfg_int(root, "max_position_embeddings", 1, 0, 1, 1 << 24, &c->max_position, err)) ||
      (rc = cfg_num(root, "rms_norm_eps", 1e-6, 0, 1, &c->norm_eps, err)))
    return rc;
  if (c->n_head % c->n_kv_head)
    return CFG_ERR(FT_EFORMAT, "num_key_value_heads",
                   "num_attention_heads %d is not a multiple of num_key_value_heads %d", c->n_head,
                   c->n_kv_head);
  const json_t *hd = json_object_get(root, "head_dim");
  if ((!hd || json_is_null(hd)) && c->hidden_size % c->n_head)
    return CFG_ERR(FT_EFORMAT, "num_attention_heads",
                   "hidden_size %d is not a multiple of num_attention_heads %d", c->hidden_size,
                   c->n_head);
  if ((rc =
           cfg_int(root, "head_dim", 0, c->hidden_size / c->n_head, 2, 1 << 12, &c->head_dim, err)))
    return rc;
  if (c->head_dim % 2)
    return CFG_ERR(FT_EFORMAT, "head_dim", "head_dim %d is odd (RoPE needs pairs)", c->head_dim);

  /* RoPE: plain only. transformers 5 keeps theta in rope_parameters. */
  const json_t *rs = json_object_get(root, "rope_scaling");
  if (rs && !json_is_null(rs))
    return CFG_ERR(FT_EUNSUPPORTED, "rope_scaling",
                   "rope_scaling is not supported (plain RoPE only)");
  const json_t *rp = json_object_get(root, "rope_parameters");
  double theta_def = 10000.0;
  if (rp && !json_is_null(rp)) {
    if (!json_is_object(rp))
      return CFG_ERR(FT_EFORMAT, "rope_parameters", "'rope_parameters' must be an object");
    const char *rt;
    if ((rc = cfg_str(rp, "rope_type", &rt, err))) return rc;
    if (rt && strcmp(rt, "default"))
      return CFG_ERR(FT_EUNSUPPORTED, "rope_parameters.rope_type",
                     "rope_type '%s' is not supported (plain RoPE only)", rt);
    const json_t *t = json_object_get(rp, "rope_theta");
    if (json_is_number(t)) theta_def = json_number_value(t);
  }
  if ((rc = cfg_num(root, "rope_theta", theta_def, 1, 1e12, &c->rope_theta, err))) return rc;

  const char *act;
  if ((rc = cfg_str(root, "hidden_act", &act, err))) return rc;
  if (act && strcmp(act, "silu") && strcmp(act, "swish"))
    return CFG_ERR(FT_EUNSUPPORTED, "hidden_act", "hidden_act '%s' is not supported (silu)", act);

  int is_qwen2 = strcmp(mt, "qwen2") == 0, is_llama = strcmp(mt, "llama") == 0;
  if ((rc = cfg_bool(root, "tie_word_embeddings", 0, &c->tie_embeddings, err))) return rc;
  c->attention_bias = is_qwen2;
  if (is_llama && (rc = cfg_bool(root, "attention_bias", 0, &c->attention_bias, err))) return rc;
  if ((rc = cfg_bool(root, "mlp_bias", 0, &c->mlp_bias, err))) return rc;
  if (c->mlp_bias) return CFG_ERR(FT_EUNSUPPORTED, "mlp_bias", "mlp_bias=true is not supported");

  /* A sliding window no sequence can reach is full attention. */
  int use_sw = 1;
  if (is_qwen2 && (rc = cfg_bool(root, "use_sliding_window", 0, &use_sw, err))) return rc;
  const json_t *sw = json_object_get(root, "sliding_window");
  if (use_sw && sw && !json_is_null(sw)) {
    if (!json_is_integer(sw))
      return CFG_ERR(FT_EFORMAT, "sliding_window", "'sliding_window' must be an integer");
    if (json_integer_value(sw) < c->max_position)
      return CFG_ERR(FT_EUNSUPPORTED, "sliding_window",
                     "sliding_window %lld shorter than max_position_embeddings %d is not supported",
                     (long long)json_integer_value(sw), c->max_position);
  }
  return 0;
}

int hf_config_parse(ft_config *cfg, const json_t *root, ft_error *err) {
  memset(cfg, 0, sizeof *cfg);
  if (!json_is_object(root)) return CFG_ERR(FT_EFORMAT, NULL, "not a JSON object");
  const char *mt;
  int rc = cfg_str(root, "model_type", &mt, err);
  if (rc) return rc;
  if (!mt) return CFG_ERR(FT_EFORMAT, "model_type", "missing required field 'model_type'");
  if (strcmp(mt, "gpt2") == 0)
    rc = parse_gpt2(cfg, root, err);
  else if (!strcmp(mt, "llama") || !strcmp(mt, "qwen2") || !strcmp(mt, "mistral"))
    rc = parse_llama(cfg, root, mt, err);
  else
    return CFG_ERR(FT_EUNSUPPORTED, "model_type",
                   "model_type '%s' is not supported (gpt2, llama, qwen2, mistral)", mt);
  if (rc) return rc;
  snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
  if ((rc = cfg_token(root, "bos_token_id", cfg->vocab_size, &cfg->bos_token_id, err)) ||
      (rc = cfg_token(root, "eos_token_id", cfg->vocab_size, &cfg->eos_token_id, err)) ||
      (rc = cfg_token(root, "pad_token_id", cfg->vocab_size, &cfg->pad_token_id, err)))
    return rc;

  const json_t *archs = json_object_get(root, "architectures"), *a;
  size_t i;
  int classify = 0;
  if (archs && !json_is_null(archs) && !json_is_array(archs))
    return CFG_ERR(FT_EFORMAT, "architectures", "'architectures' must be a list");
  json_array_foreach(archs, i, a) {
    if (!json_is_string(a))
      return CFG_ERR(FT_EFORMAT, "architectures", "'architectures' must hold strings");
    if (ends_with(json_string_value(a), "ForSequenceClassification")) classify = 1;
  }
  return classify ? parse_labels(cfg, root, err) : 0;
}

int hf_config_load(ft_config *cfg, const char *dir, ft_error *err) {
  char path[PATH_MAX];
  int rc = ft_path_join(path, sizeof path, dir, "config.json", err);
  if (rc) return rc;
  if (!is_file(path))
    return ft_error_set(err, FT_EFORMAT, "config.json", "the model directory has no config.json");
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return ft_error_set(err, FT_EFORMAT, "config.json", "config.json: line %d: %s", je.line,
                        je.text);
  rc = hf_config_parse(cfg, root, err);
  json_decref(root);
  return rc;
}

/* The shortest decimal that reads back as the same float, so config.json
 * says 1e-05 rather than 9.99999975e-06. */
static json_t *real_of(float f) {
  char buf[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, (double)f);
    if (strtof(buf, NULL) == f) break;
  }
  return json_real(strtod(buf, NULL));
}

static const char *arch_prefix(const char *mt) {
  if (!strcmp(mt, "gpt2")) return "GPT2";
  if (!strcmp(mt, "qwen2")) return "Qwen2";
  if (!strcmp(mt, "mistral")) return "Mistral";
  return "Llama";
}

int hf_config_to_json(const ft_config *c, ft_task task, json_t **out, ft_error *err) {
  *out = NULL;
  const char *mt = c->model_type[0] ? c->model_type : c->arch == FT_ARCH_GPT2 ? "gpt2" : "llama";
  int gpt2 = c->arch == FT_ARCH_GPT2;
  if (gpt2 != (strcmp(mt, "gpt2") == 0))
    return ft_error_set(err, FT_EINVALID, "model_type", "model_type '%s' does not match the arch",
                        mt);
  char archname[96];
  const char *head = gpt2 ? "LMHeadModel" : "ForCausalLM";
  if (task == FT_TASK_CLASSIFY) head = "ForSequenceClassification";
  snprintf(archname, sizeof archname, "%s%s", arch_prefix(mt), head);

  json_t *j =
      json_pack("{s:[s], s:s, s:i, s:s, s:f}", "architectures", archname, "model_type", mt,
                "vocab_size", c->vocab_size, "torch_dtype", "float32", "initializer_range", 0.02);
  if (!j) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  if (gpt2) {
    json_object_set_new(j, "activation_function", json_string("gelu_new"));
    json_object_set_new(j, "n_embd", json_integer(c->hidden_size));
    json_object_set_new(j, "n_layer", json_integer(c->n_layer));
    json_object_set_new(j, "n_head", json_integer(c->n_head));
    json_object_set_new(j, "n_positions", json_integer(c->max_position));
    json_object_set_new(j, "n_ctx", json_integer(c->max_position));
    json_object_set_new(j, "n_inner",
                        c->intermediate_size == 4 * c->hidden_size
                            ? json_null()
                            : json_integer(c->intermediate_size));
    json_object_set_new(j, "layer_norm_epsilon", real_of(c->norm_eps));
    json_object_set_new(j, "tie_word_embeddings", json_true());
  } else {
    json_object_set_new(j, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(j, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(j, "head_dim", json_integer(c->head_dim));
    json_object_set_new(j, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "max_position_embeddings", json_integer(c->max_position));
    json_object_set_new(j, "rms_norm_eps", real_of(c->norm_eps));
    json_object_set_new(j, "rope_theta", real_of(c->rope_theta));
    json_object_set_new(j, "rope_scaling", json_null());
    json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(j, "attention_dropout", json_real(0.0));
    if (!strcmp(mt, "llama")) {
      json_object_set_new(j, "attention_bias", json_boolean(c->attention_bias));
      json_object_set_new(j, "mlp_bias", json_false());
    } else if (!strcmp(mt, "qwen2")) {
      json_object_set_new(j, "use_sliding_window", json_false());
      json_object_set_new(j, "sliding_window", json_null());
    } else {
      json_object_set_new(j, "sliding_window", json_null());
    }
    if ((!strcmp(mt, "qwen2")) != (c->attention_bias != 0) && strcmp(mt, "llama")) {
      json_decref(j);
      return ft_error_set(err, FT_EINVALID, "attention_bias", "%s cannot express attention_bias=%d",
                          mt, c->attention_bias);
    }
  }
  if (c->bos_token_id >= 0) json_object_set_new(j, "bos_token_id", json_integer(c->bos_token_id));
  if (c->eos_token_id >= 0) json_object_set_new(j, "eos_token_id", json_integer(c->eos_token_id));
  if (c->pad_token_id >= 0) json_object_set_new(j, "pad_token_id", json_integer(c->pad_token_id));
  if (task == FT_TASK_CLASSIFY) {
    if (c->num_labels < 1 || c->num_labels > FT_MAX_LABELS) {
      json_decref(j);
      return ft_error_set(err, FT_EINVALID, "num_labels", "a classifier needs 1..%d labels",
                          FT_MAX_LABELS);
    }
    json_t *id2 = json_object(), *l2id = json_object();
    json_object_set_new(j, "id2label", id2);
    json_object_set_new(j, "label2id", l2id);
    json_object_set_new(j, "problem_type", json_string("single_label_classification"));
    for (int i = 0; i < c->num_labels; i++) {
      char key[16];
      snprintf(key, sizeof key, "%d", i);
      const char *name = c->id2label[i];
      if (!name[0] || json_object_get(l2id, name)) {
        json_decref(j);
        return ft_error_set(err, FT_EINVALID, "id2label", "label %d ('%s') is empty or a duplicate",
                            i, name);
      }
      json_object_set_new(id2, key, json_string(name));
      json_object_set_new(l2id, name, json_integer(i));
    }
  }
  *out = j;
  return 0;
}

int hf_config_save(const ft_config *cfg, ft_task task, const char *dir, ft_error *err) {
  char path[PATH_MAX];
  json_t *j;
  int rc = ft_path_join(path, sizeof path, dir, "config.json", err);
  if (!rc) rc = hf_config_to_json(cfg, task, &j, err);
  if (rc) return rc;
  rc = hf_write_json(path, j, err);
  json_decref(j);
  return rc;
}

/* ---- weights ---- */

static int is_lora_name(const char *name) {
  return strncmp(name, "base_model.model.", 17) == 0 || strstr(name, ".lora_A.") ||
         strstr(name, ".lora_B.");
}
static int is_head_name(const char *name) { return strncmp(name, "score.", 6) == 0; }

#define MAX_SHARDS 256
#define PARAM_DIMS ((int)(sizeof((ft_param *)0)->shape / sizeof(int)))

typedef struct {
  st_file *f[MAX_SHARDS];
  unsigned char *used[MAX_SHARDS];
  int n;
} shards;

static void shards_close(shards *s) {
  for (int i = 0; i < s->n; i++) {
    st_close(s->f[i]);
    free(s->used[i]);
  }
  s->n = 0;
}

static int shard_add(shards *s, const char *path, ft_error *err) {
  if (s->n == MAX_SHARDS)
    return ft_error_set(err, FT_EUNSUPPORTED, NULL, "more than %d shards", MAX_SHARDS);
  st_file *f;
  int rc = st_open(&f, path, err);
  if (rc == FT_ENOT_FOUND)
    rc = ft_error_set(err, FT_EFORMAT, NULL, "missing weights file %s", path);
  if (rc) return rc;
  s->used[s->n] = calloc(st_count(f) + 1, 1);
  s->f[s->n++] = f;
  return s->used[s->n - 1] ? 0 : ft_error_set(err, FT_ENOMEM, NULL, NULL);
}

static int shards_open(shards *s, const char *dir, ft_error *err) {
  char path[PATH_MAX];
  int rc = ft_path_join(path, sizeof path, dir, "model.safetensors", err);
  if (rc) return rc;
  if (is_file(path)) return shard_add(s, path, err);
  if ((rc = ft_path_join(path, sizeof path, dir, "model.safetensors.index.json", err))) return rc;
  if (is_file(path)) {
    json_error_t je;
    json_t *idx = json_load_file(path, 0, &je);
    const json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm)) {
      json_decref(idx);
      return ft_error_set(err, FT_EFORMAT, "model.safetensors.index.json",
                          "model.safetensors.index.json: no weight_map object");
    }
    const char *k;
    json_t *v, *seen = json_object();
    json_object_foreach((json_t *)wm, k, v) {
      const char *fn = json_string_value(v);
      if (!fn || strchr(fn, '/') || fn[0] == '.' || !ends_with(fn, ".safetensors")) {
        rc = ft_error_set(err, FT_EFORMAT, k,
                          "model.safetensors.index.json: bad shard name for '%s'", k);
        break;
      }
      if (json_object_get(seen, fn)) continue;
      json_object_set_new(seen, fn, json_true());
      if ((rc = ft_path_join(path, sizeof path, dir, fn, err)) || (rc = shard_add(s, path, err)))
        break;
    }
    json_decref(seen);
    json_decref(idx);
    return rc;
  }
  if ((rc = ft_path_join(path, sizeof path, dir, "pytorch_model.bin", err))) return rc;
  if (is_file(path))
    return ft_error_set(
        err, FT_EUNSUPPORTED, "pytorch_model.bin",
        "pytorch_model.bin weights are not supported; convert to model.safetensors");
  return ft_error_set(err, FT_EFORMAT, "model.safetensors",
                      "the model directory has no model.safetensors");
}

static const st_tensor *shards_find(shards *s, const char *name, int *which) {
  for (int i = 0; i < s->n; i++) {
    const st_tensor *t = st_find(s->f[i], name);
    if (t) {
      *which = i;
      return t;
    }
  }
  return NULL;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
  size_t o = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < ndim && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (o < size) snprintf(buf + o, size - o, "]");
}

/* Checkpoint tensors a model legitimately leaves unused. */
static int ignorable(const ft_config *c, ft_model *m, const char *name) {
  if (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"))
    return c->arch == FT_ARCH_GPT2;
  if (ends_with(name, "rotary_emb.inv_freq")) return 1;
  if (!strcmp(name, "lm_head.weight")) { /* tied, or a classifier from a causal LM */
    const ft_param *p = model_param(m, name);
    return !p || !p->saved;
  }
  if (is_head_name(name)) return model_param(m, "score.weight") == NULL;
  return 0;
}

int hf_load_weights(ft_model *m, const char *dir, int *head_missing, ft_error *err) {
  const ft_config *c = model_config(m);
  if (head_missing) *head_missing = 0;
  shards s = {.n = 0};
  int rc = shards_open(&s, dir, err);
  size_t np;
  ft_param *ps = model_params(m, &np);
  for (size_t i = 0; !rc && i < np; i++) {
    ft_param *p = &ps[i];
    if (!p->saved || is_lora_name(p->name)) continue;
    int which = 0;
    const st_tensor *t = shards_find(&s, p->name, &which);
    if (!t && c->arch == FT_ARCH_GPT2 && !strncmp(p->name, "transformer.", 12))
      t = shards_find(&s, p->name + 12, &which); /* the original "gpt2" repo's names */
    if (!t && c->arch == FT_ARCH_LLAMA && !strncmp(p->name, "model.", 6))
      t = shards_find(&s, p->name + 6, &which); /* a bare LlamaModel's names */
    if (!t) {
      if (is_head_name(p->name)) {
        if (head_missing) *head_missing = 1;
        continue;
      }
      rc = ft_error_set(err, FT_EFORMAT, p->name, "the checkpoint has no tensor '%s'", p->name);
      break;
    }
    int same = t->ndim == p->ndim;
    int64_t want[ST_MAX_DIMS];
    for (int d = 0; d < p->ndim && d < PARAM_DIMS; d++) {
      want[d] = p->shape[d];
      same = same && t->shape[d] == p->shape[d];
    }
    if (!same) {
      char a[96], b[96];
      shape_str(a, sizeof a, t->ndim, t->shape);
      shape_str(b, sizeof b, p->ndim, want);
      rc = ft_error_set(
          err, FT_ESHAPE, p->name,
          "tensor '%s' has shape %s in the checkpoint; the model (config.json) needs %s", p->name,
          a, b);
      break;
    }
    rc = st_read_f32(s.f[which], t, p->w, p->numel, err);
    s.used[which][st_index(s.f[which], t)] = 1;
  }
  for (int k = 0; !rc && k < s.n; k++)
    for (size_t i = 0; !rc && i < st_count(s.f[k]); i++) {
      const char *name = st_at(s.f[k], i)->name;
      if (!s.used[k][i] && !ignorable(c, m, name))
        rc = ft_error_set(err, FT_EFORMAT, name,
                          "the checkpoint has a tensor '%s' the model does not use "
                          "(config.json does not match the weights?)",
                          name);
    }
  shards_close(&s);
  return rc;
}

/* Writes the chosen tensors of m to path. peft_head: rename score.* as PEFT
 * saves a modules_to_save module. */
static int save_tensors(ft_model *m, const char *path, int lora, ft_error *err) {
  size_t np, n = 0;
  ft_param *ps = model_params(m, &np);
  st_out *o = calloc(np ? np : 1, sizeof *o);
  char(*names)[FT_NAME_MAX + 32] = calloc(np ? np : 1, sizeof *names);
  if (!o || !names) {
    free(o);
    free(names);
    return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  }
  for (size_t i = 0; i < np; i++) {
    ft_param *p = &ps[i];
    if (lora) {
      if (is_lora_name(p->name))
        snprintf(names[n], sizeof names[n], "%s", p->name);
      else if (is_head_name(p->name))
        snprintf(names[n], sizeof names[n], "base_model.model.%s", p->name);
      else
        continue;
    } else {
      if (!p->saved || is_lora_name(p->name)) continue;
      snprintf(names[n], sizeof names[n], "%s", p->name);
    }
    o[n].name = names[n];
    o[n].data = p->w;
    o[n].ndim = p->ndim;
    for (int d = 0; d < p->ndim && d < PARAM_DIMS; d++) o[n].shape[d] = p->shape[d];
    n++;
  }
  int rc = 0;
  if (lora && n == 0)
    rc = ft_error_set(err, FT_EINVALID, NULL, "the model has no LoRA tensors to save");
  if (!rc) rc = st_write_f32(path, o, n, NULL, err);
  free(o);
  free(names);
  return rc;
}

int hf_save_model(ft_model *m, ft_task task, const char *tokenizer_src_dir, const char *out_dir,
                  ft_error *err) {
  char path[PATH_MAX];
  int rc;
  if ((rc = ft_mkdir_p(out_dir, 0755, err)) ||
      (rc = hf_config_save(model_config(m), task, out_dir, err)) ||
      (rc = ft_path_join(path, sizeof path, out_dir, "model.safetensors", err)) ||
      (rc = save_tensors(m, path, 0, err)))
    return rc;
  if (tokenizer_src_dir && strcmp(tokenizer_src_dir, out_dir) != 0)
    rc = hf_copy_tokenizer(tokenizer_src_dir, out_dir, err);
  return rc;
}

void hf_lora_target_names(ft_arch arch, unsigned t, char *buf, size_t size) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {
      {FT_LORA_Q, "q_proj"},       {FT_LORA_K, "k_proj"},       {FT_LORA_V, "v_proj"},
      {FT_LORA_O, "o_proj"},       {FT_LORA_GATE, "gate_proj"}, {FT_LORA_UP, "up_proj"},
      {FT_LORA_DOWN, "down_proj"}, {FT_LORA_C_ATTN, "c_attn"},  {FT_LORA_C_FC, "c_fc"},
  };
  size_t o = 0;
  buf[0] = 0;
#define ADD_(s) o += (size_t)snprintf(buf + o, o < size ? size - o : 0, "%s%s", o ? "," : "", s)
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (t & names[i].bit) ADD_(names[i].name);
  unsigned both = FT_LORA_ATTN_C_PROJ | FT_LORA_MLP_C_PROJ;
  if ((t & both) == both)
    ADD_("c_proj");
  else if (t & FT_LORA_ATTN_C_PROJ)
    ADD_("attn.c_proj");
  else if (t & FT_LORA_MLP_C_PROJ)
    ADD_("mlp.c_proj");
#undef ADD_
  (void)arch;
}

int hf_save_peft(ft_model *m, const ft_lora *lora, const char *base_model_name, const char *out_dir,
                 ft_error *err) {
  const ft_config *c = model_config(m);
  if (!lora || lora->r < 1) return ft_error_set(err, FT_EINVALID, "lora", "no LoRA configuration");
  int classify = model_param(m, "score.weight") != NULL;
  char targets[256], path[PATH_MAX];
  hf_lora_target_names(c->arch, lora->targets, targets, sizeof targets);
  json_t *tm = json_array();
  for (char *save, *tok = strtok_r(targets, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    json_array_append_new(tm, json_string(tok));
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:b, s:s, s:b, s:b, s:b, s:b, s:n, s:n}", "peft_type",
      "LORA", "task_type", classify ? "SEQ_CLS" : "CAUSAL_LM", "base_model_name_or_path",
      base_model_name ? base_model_name : "", "r", lora->r, "lora_alpha", real_of(lora->alpha),
      "lora_dropout", real_of(lora->dropout), "target_modules", tm, "fan_in_fan_out",
      c->arch == FT_ARCH_GPT2, "bias", "none", "inference_mode", 1, "init_lora_weights", 1,
      "use_rslora", 0, "use_dora", 0, "revision", "layers_to_transform");
  if (!j) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  json_object_set_new(j, "modules_to_save", classify ? json_pack("[s]", "score") : json_null());
  int rc;
  if (!(rc = ft_mkdir_p(out_dir, 0755, err)) &&
      !(rc = ft_path_join(path, sizeof path, out_dir, "adapter_model.safetensors", err)) &&
      !(rc = save_tensors(m, path, 1, err)) &&
      !(rc = ft_path_join(path, sizeof path, out_dir, "adapter_config.json", err)))
    rc = hf_write_json(path, j, err);
  json_decref(j);
  return rc;
}
