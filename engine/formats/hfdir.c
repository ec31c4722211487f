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
#include "ft_json.h"

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

/* Is word in the comma-separated list? */
static int in_list(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *p = list; p && *p;) {
    const char *e = strchr(p, ',');
    size_t k = e ? (size_t)(e - p) : strlen(p);
    if (k == n && !strncmp(p, word, n)) return 1;
    p = e ? e + 1 : NULL;
  }
  return 0;
}

/* Each boolean of the list must have the value want (absent: its default,
 * which is want). */
static int cfg_switches(const json_t *root, const char *list, int want, ft_error *err) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list ? list : "");
  for (char *save, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
    int v = want, rc = cfg_bool(root, k, want, &v, err);
    if (rc) return rc;
    if (v != want)
      return CFG_ERR(FT_EUNSUPPORTED, k, "%s=%s is not supported", k, v ? "true" : "false");
  }
  return 0;
}

/* A number of the rope_scaling object (named rope_scaling.<key> in errors). */
static int rope_num(const json_t *rs, const char *obj, const char *key, int required, double def,
                    float *out, ft_error *err) {
  char f[96];
  snprintf(f, sizeof f, "%s.%s", obj, key);
  const json_t *v = json_object_get(rs, key);
  if (!v || json_is_null(v)) {
    if (required) return CFG_ERR(FT_EFORMAT, f, "missing required field '%s'", f);
    *out = (float)def;
    return 0;
  }
  if (!json_is_number(v)) return CFG_ERR(FT_EFORMAT, f, "'%s' must be a number", f);
  double x = json_number_value(v);
  if (!(x > 0 && x < 1e9)) return CFG_ERR(FT_EFORMAT, f, "'%s' = %g must be positive", f, x);
  *out = (float)x;
  return 0;
}

/* rope_scaling (transformers 4) or rope_parameters (transformers 5, which
 * also holds rope_theta): the types nn/layers.c computes exactly, with
 * exactly the keys they need; any other type or key is refused by name,
 * since it would change the positions' meaning. */
static int parse_rope(ft_config *c, const ft_arch *a, const json_t *root, ft_error *err) {
  static const char *const names[] = {"default", "linear", "llama3"};
  double theta_def = a->rope_theta_default > 0 ? a->rope_theta_default : 10000.0;
  double local_def = a->rope_local_default;
  c->rope_scaling.kind = FT_ROPE_DEFAULT;
  const json_t *rs = NULL;
  const char *obj = NULL;
  char objbuf[64];
  for (int k = 0; k < 2; k++) {
    const char *key = k ? "rope_parameters" : "rope_scaling";
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) continue;
    if (!json_is_object(v)) return CFG_ERR(FT_EFORMAT, key, "'%s' must be an object", key);
    if (rs) continue; /* rope_scaling wins; transformers 5 writes both the same */
    const json_t *full = json_object_get(v, "full_attention");
    const json_t *local = json_object_get(v, "sliding_attention");
    if (k && a->sliding_layers && (full || local)) {
      /* transformers 5's per-layer-type form: {"full_attention": {...},
       * "sliding_attention": {...}}; the local one is plain RoPE */
      const char *lk;
      json_t *lv;
      json_object_foreach((json_t *)v, lk, lv) {
        snprintf(objbuf, sizeof objbuf, "rope_parameters.%s", lk);
        if (strcmp(lk, "full_attention") && strcmp(lk, "sliding_attention"))
          return CFG_ERR(FT_EUNSUPPORTED, objbuf,
                         "'%s' is not a layer type (full_attention, "
                         "sliding_attention)",
                         objbuf);
        if (!json_is_null(lv) && !json_is_object(lv))
          return CFG_ERR(FT_EFORMAT, objbuf, "'%s' must be an object", objbuf);
      }
      if (json_is_object(local)) {
        const char *lk2;
        json_t *lv2;
        json_object_foreach((json_t *)local, lk2, lv2) {
          snprintf(objbuf, sizeof objbuf, "rope_parameters.sliding_attention.%s", lk2);
          if (!in_list("rope_type,type,rope_theta", lk2))
            return CFG_ERR(FT_EUNSUPPORTED, objbuf, "'%s' is not supported", objbuf);
          if (strcmp(lk2, "rope_theta") &&
              (!json_is_string(lv2) || strcmp(json_string_value(lv2), "default")))
            return CFG_ERR(FT_EUNSUPPORTED, objbuf,
                           "'%s' must be \"default\" (sliding layers use plain RoPE)", objbuf);
        }
        const json_t *t = json_object_get(local, "rope_theta");
        if (json_is_number(t)) local_def = json_number_value(t);
      }
      if (!json_is_object(full)) continue;
      rs = full;
      obj = "rope_parameters.full_attention";
      continue;
    }
    rs = v;
    obj = key;
  }
  int rc;
  if (a->sliding_layers &&
      (rc = cfg_num(root, a->k_rope_local, local_def, 1, 1e12, &c->rope_local_theta, err)))
    return rc;
  if (rs) {
    char f[96];
    const char *rt, *legacy;
    snprintf(f, sizeof f, "%s.rope_type", obj);
    rc = cfg_str(rs, "rope_type", &rt, err);
    if (!rc) rc = cfg_str(rs, "type", &legacy, err);
    if (rc) return rc;
    if (!rt) rt = legacy ? legacy : "default";
    int kind = -1;
    for (int i = 0; i < 3; i++)
      if (!strcmp(rt, names[i])) kind = i;
    if (kind < 0 || (kind != FT_ROPE_DEFAULT && !(a->rope_scalings & (1u << kind))))
      return CFG_ERR(FT_EUNSUPPORTED, f, "'%s' = '%s' is not supported for %s (%s)", f, rt,
                     a->model_type,
                     a->rope_scalings ? "default, linear, llama3" : "default only");
    const char *known = kind == FT_ROPE_LLAMA3 ? "rope_type,type,rope_theta,factor,low_freq_factor,"
                                                 "high_freq_factor,original_max_position_embeddings"
                        : kind == FT_ROPE_LINEAR ? "rope_type,type,rope_theta,factor"
                                                 : "rope_type,type,rope_theta";
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rs, k, v) {
      if (in_list(known, k)) continue;
      snprintf(f, sizeof f, "%s.%s", obj, k);
      return CFG_ERR(FT_EUNSUPPORTED, f, "'%s' is not supported with rope_type '%s'", f, rt);
    }
    const json_t *t = json_object_get(rs, "rope_theta");
    if (json_is_number(t)) theta_def = json_number_value(t);
    ft_rope_scaling *r = &c->rope_scaling;
    r->kind = kind;
    if (kind != FT_ROPE_DEFAULT && (rc = rope_num(rs, obj, "factor", 1, 1, &r->factor, err)))
      return rc;
    if (kind == FT_ROPE_LLAMA3) {
      float om;
      if ((rc = rope_num(rs, obj, "low_freq_factor", 1, 1, &r->low_freq, err)) ||
          (rc = rope_num(rs, obj, "high_freq_factor", 1, 4, &r->high_freq, err)) ||
          (rc = rope_num(rs, obj, "original_max_position_embeddings", 1, 8192, &om, err)))
        return rc;
      r->orig_max_pos = (int)om;
      if (!(r->high_freq > r->low_freq)) {
        snprintf(f, sizeof f, "%s.high_freq_factor", obj);
        return CFG_ERR(FT_EFORMAT, f, "'%s' must exceed low_freq_factor", f);
      }
    }
  }
  return cfg_num(root, "rope_theta", theta_def, 1, 1e12, &c->rope_theta, err);
}

/* Families with sliding layers (arch->sliding_layers): which layers slide,
 * from layer_types ("sliding_attention" / "full_attention", one per layer)
 * or, in configs older than transformers 4.53, sliding_window_pattern
 * (layer i is full when (i+1) % pattern == 0), and the window. */
static int parse_layer_types(ft_config *c, const ft_arch *a, const json_t *root, ft_error *err) {
  int rc =
      cfg_int(root, "sliding_window", 0, a->window_default, 1, 1 << 24, &c->sliding_window, err);
  if (rc) return rc;
  const json_t *lt = json_object_get(root, "layer_types"), *v;
  if (lt && !json_is_null(lt)) {
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layer)
      return CFG_ERR(FT_EFORMAT, "layer_types", "'layer_types' must be a list of %d layer types",
                     c->n_layer);
    size_t i;
    json_array_foreach(lt, i, v) {
      const char *t = json_string_value(v);
      if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention")))
        return CFG_ERR(FT_EUNSUPPORTED, "layer_types",
                       "layer_types[%zu] is not \"sliding_attention\" or \"full_attention\"", i);
      c->sliding[i] = !strcmp(t, "sliding_attention");
    }
    return 0;
  }
  int pattern;
  if ((rc = cfg_int(root, "sliding_window_pattern", 0, a->pattern_default, 1, 1 << 20, &pattern,
                    err)))
    return rc;
  for (int l = 0; l < c->n_layer; l++) c->sliding[l] = (l + 1) % pattern != 0;
  return 0;
}

/* Every field by the family's key names (nn/arch.c), with the defaults
 * transformers' config class of the family has. */
static int parse_arch(ft_config *c, const ft_arch *a, const json_t *root, ft_error *err) {
  int rc;
  c->arch = a;
  if ((rc = cfg_int(root, "vocab_size", 1, 0, 1, 1 << 22, &c->vocab_size, err)) ||
      (rc = cfg_int(root, a->k_hidden, 1, 0, 1, 1 << 16, &c->hidden_size, err)) ||
      (rc = cfg_int(root, a->k_layers, 1, 0, 1, 1024, &c->n_layer, err)) ||
      (rc = cfg_int(root, a->k_heads, 1, 0, 1, 1024, &c->n_head, err)) ||
      (rc = cfg_int(root, a->k_maxpos, 1, 0, 1, 1 << 24, &c->max_position, err)) ||
      (rc = cfg_num(root, a->k_eps, a->eps_default, 0, 1, &c->norm_eps, err)))
    return rc;
  /* an MLP width of 4C may be left out only where the config class says so (GPT-2's n_inner) */
  int ffn_optional = !a->gated_mlp;
  if ((rc = cfg_int(root, a->k_ffn, !ffn_optional, 4L * c->hidden_size, 1, 1 << 20,
                    &c->intermediate_size, err)))
    return rc;
  if (a->fused_qkv) {
    c->n_kv_head = c->n_head;
  } else if ((rc = cfg_int(root, "num_key_value_heads", 0, c->n_head, 1, c->n_head, &c->n_kv_head,
                           err))) {
    return rc;
  }
  if (c->n_head % c->n_kv_head)
    return CFG_ERR(FT_EFORMAT, "num_key_value_heads",
                   "num_attention_heads %d is not a multiple of num_key_value_heads %d", c->n_head,
                   c->n_kv_head);
  const json_t *hd = a->fused_qkv ? NULL : json_object_get(root, "head_dim");
  if ((!hd || json_is_null(hd)) && !a->head_dim_default && c->hidden_size % c->n_head)
    return CFG_ERR(FT_EFORMAT, a->k_heads, "%s %d is not a multiple of %s %d", a->k_hidden,
                   c->hidden_size, a->k_heads, c->n_head);
  c->head_dim = a->head_dim_default ? a->head_dim_default : c->hidden_size / c->n_head;
  if (!a->fused_qkv &&
      (rc = cfg_int(root, "head_dim", 0, c->head_dim, 2, 1 << 12, &c->head_dim, err)))
    return rc;
  if (a->pos == FT_POS_ROPE) {
    if (c->head_dim % 2)
      return CFG_ERR(FT_EFORMAT, "head_dim", "head_dim %d is odd (RoPE needs pairs)", c->head_dim);
    if ((rc = parse_rope(c, a, root, err))) return rc;
  } else {
    const json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs))
      return CFG_ERR(FT_EUNSUPPORTED, "rope_scaling", "%s has no RoPE to scale", a->model_type);
  }

  const char *act;
  if ((rc = cfg_str(root, a->k_act, &act, err))) return rc;
  if (act && !in_list(a->acts_ok, act))
    return CFG_ERR(FT_EUNSUPPORTED, a->k_act, "%s '%s' is not supported (%s)", a->k_act, act,
                   a->acts_ok);
  if ((rc = cfg_switches(root, a->false_keys, 0, err)) ||
      (rc = cfg_switches(root, a->true_keys, 1, err)))
    return rc;

  if ((rc = cfg_bool(root, "tie_word_embeddings", a->tie_default, &c->tie_embeddings, err)))
    return rc;
  if (!c->tie_embeddings && !a->untied_ok)
    return CFG_ERR(FT_EUNSUPPORTED, "tie_word_embeddings",
                   "an untied lm_head is not supported for %s", a->model_type);
  c->attention_bias = a->qkv_bias;
  if (a->bias_key && (rc = cfg_bool(root, "attention_bias", a->qkv_bias, &c->attention_bias, err)))
    return rc;
  c->mlp_bias = a->mlp_bias;

  if (a->k_attn_scalar && (rc = cfg_num(root, a->k_attn_scalar, a->attn_scalar_default, 1e-6, 1e9,
                                        &c->attn_scalar, err)))
    return rc;
  /* logits = cap * tanh(logits / cap), where the family may carry it.
   * attn_logit_softcapping is not read: HF's Gemma 3 attention ignores it. */
  const json_t *sc = json_object_get(root, "final_logit_softcapping");
  c->final_softcap = 0.0f;
  if (sc && !json_is_null(sc)) {
    if (!a->logit_softcap)
      return CFG_ERR(FT_EUNSUPPORTED, "final_logit_softcapping",
                     "final_logit_softcapping is not supported for %s (only null)", a->model_type);
    if ((rc = cfg_num(root, "final_logit_softcapping", 0, 0, 1e30, &c->final_softcap, err)))
      return rc;
    if (!(c->final_softcap > 0.0f))
      return CFG_ERR(FT_EFORMAT, "final_logit_softcapping",
                     "'final_logit_softcapping' must be positive (or null)");
  }
  if (a->sliding_layers) return parse_layer_types(c, a, root, err);

  /* Attention over every earlier position only: a sliding window no
   * sequence can reach is full attention, per-layer types must all be full. */
  int use_sw = 1;
  if (a->sliding_switch && (rc = cfg_bool(root, "use_sliding_window", 0, &use_sw, err))) return rc;
  if (use_sw && a->sliding_refused)
    return CFG_ERR(FT_EUNSUPPORTED, "use_sliding_window",
                   "use_sliding_window=true is not supported for %s", a->model_type);
  const json_t *sw = json_object_get(root, "sliding_window");
  if (use_sw && a->pos == FT_POS_ROPE && sw && !json_is_null(sw)) {
    if (!json_is_integer(sw))
      return CFG_ERR(FT_EFORMAT, "sliding_window", "'sliding_window' must be an integer");
    if (json_integer_value(sw) < c->max_position)
      return CFG_ERR(FT_EUNSUPPORTED, "sliding_window",
                     "sliding_window %lld shorter than max_position_embeddings %d is not supported",
                     (long long)json_integer_value(sw), c->max_position);
  }
  const json_t *lt = json_object_get(root, "layer_types"), *v;
  size_t i;
  if (lt && !json_is_null(lt) && !json_is_array(lt))
    return CFG_ERR(FT_EFORMAT, "layer_types", "'layer_types' must be a list");
  json_array_foreach(lt, i, v) {
    if (!json_is_string(v) || strcmp(json_string_value(v), "full_attention"))
      return CFG_ERR(FT_EUNSUPPORTED, "layer_types",
                     "layer_types[%zu] is not \"full_attention\" (only full attention is supported)",
                     i);
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
  const ft_arch *fam = arch_find(mt);
  const json_t *vision = json_object_get(root, "vision_config");
  if (!fam && vision && !json_is_null(vision))
    return CFG_ERR(FT_EUNSUPPORTED, "vision_config",
                   "model_type '%s' with a vision_config (an image-text model) is not supported; "
                   "text-only models only (gemma3_text for Gemma 3)",
                   mt);
  if (!fam) {
    char known[256];
    arch_list(known, sizeof known);
    return CFG_ERR(FT_EUNSUPPORTED, "model_type", "model_type '%s' is not supported (%s)", mt,
                   known);
  }
  if ((rc = parse_arch(cfg, fam, root, err))) return rc;
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


/* Writes the booleans of a comma-separated list as value. */
static void set_switches(json_t *j, const char *list, int value) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list ? list : "");
  for (char *save, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save))
    json_object_set_new(j, k, json_boolean(value));
}

int hf_config_to_json(const ft_config *c, ft_task task, json_t **out, ft_error *err) {
  *out = NULL;
  const ft_arch *a = c->arch ? c->arch : arch_find(c->model_type);
  if (!a || (c->model_type[0] && strcmp(c->model_type, a->model_type)))
    return ft_error_set(err, FT_EINVALID, "model_type", "model_type '%s' does not match the arch",
                        c->model_type);
  const char *mt = a->model_type;
  char archname[96];
  if (task == FT_TASK_CLASSIFY)
    snprintf(archname, sizeof archname, "%sForSequenceClassification",
             a->hf_cls ? a->hf_cls : a->hf_class);
  else
    snprintf(archname, sizeof archname, "%s%s", a->hf_class, a->hf_lm);
  if (!a->bias_key && (c->attention_bias != 0) != (a->qkv_bias != 0))
    return ft_error_set(err, FT_EINVALID, "attention_bias", "%s cannot express attention_bias=%d",
                        mt, c->attention_bias);

  json_t *j =
      json_pack("{s:[s], s:s, s:i, s:s, s:f}", "architectures", archname, "model_type", mt,
                "vocab_size", c->vocab_size, "torch_dtype", "float32", "initializer_range", 0.02);
  if (!j) return ft_error_set(err, FT_ENOMEM, NULL, NULL);
  json_object_set_new(j, a->k_hidden, json_integer(c->hidden_size));
  json_object_set_new(j, a->k_layers, json_integer(c->n_layer));
  json_object_set_new(j, a->k_heads, json_integer(c->n_head));
  json_object_set_new(j, a->k_maxpos, json_integer(c->max_position));
  json_object_set_new(j, a->k_eps, ft_json_float(c->norm_eps));
  char act[32]; /* the first accepted value */
  snprintf(act, sizeof act, "%.*s", (int)strcspn(a->acts_ok, ","), a->acts_ok);
  json_object_set_new(j, a->k_act, json_string(act));
  json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_embeddings));
  set_switches(j, a->false_keys, 0);
  set_switches(j, a->true_keys, 1);
  if (a->fused_qkv) { /* GPT2Config: n_ctx too, n_inner null for 4C */
    json_object_set_new(j, "n_ctx", json_integer(c->max_position));
    json_object_set_new(j, a->k_ffn,
                        c->intermediate_size == 4 * c->hidden_size
                            ? json_null()
                            : json_integer(c->intermediate_size));
  } else {
    json_object_set_new(j, a->k_ffn, json_integer(c->intermediate_size));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(j, "head_dim", json_integer(c->head_dim));
    json_object_set_new(j, "attention_dropout", json_real(0.0));
  }
  if (a->pos == FT_POS_ROPE) {
    const ft_rope_scaling *r = &c->rope_scaling;
    json_object_set_new(j, "rope_theta", ft_json_float(c->rope_theta));
    json_t *rs = json_null();
    if (r->kind == FT_ROPE_LINEAR)
      rs = json_pack("{s:s, s:o}", "rope_type", "linear", "factor", ft_json_float(r->factor));
    else if (r->kind == FT_ROPE_LLAMA3)
      rs = json_pack("{s:s, s:o, s:o, s:o, s:i}", "rope_type", "llama3", "factor",
                     ft_json_float(r->factor), "low_freq_factor", ft_json_float(r->low_freq),
                     "high_freq_factor", ft_json_float(r->high_freq), "original_max_position_embeddings",
                     r->orig_max_pos);
    json_object_set_new(j, "rope_scaling", rs);
    json_object_set_new(j, "sliding_window",
                        a->sliding_layers ? json_integer(c->sliding_window) : json_null());
  }
  if (a->k_attn_scalar) json_object_set_new(j, a->k_attn_scalar, ft_json_float(c->attn_scalar));
  if (a->sliding_layers) {
    json_t *lt = json_array();
    for (int l = 0; l < c->n_layer; l++)
      json_array_append_new(lt,
                            json_string(c->sliding[l] ? "sliding_attention" : "full_attention"));
    json_object_set_new(j, "layer_types", lt);
    json_object_set_new(j, a->k_rope_local, ft_json_float(c->rope_local_theta));
    json_object_set_new(j, "final_logit_softcapping", json_null());
    json_object_set_new(j, "attn_logit_softcapping", json_null());
  }
  if (a->bias_key) json_object_set_new(j, "attention_bias", json_boolean(c->attention_bias));
  if (a->logit_softcap)
    json_object_set_new(j, "final_logit_softcapping",
                        c->final_softcap > 0.0f ? ft_json_float(c->final_softcap) : json_null());
  else if (c->final_softcap > 0.0f) {
    json_decref(j);
    return ft_error_set(err, FT_EINVALID, "final_logit_softcapping",
                        "%s cannot express final_logit_softcapping", mt);
  }
  if (a->sliding_switch) json_object_set_new(j, "use_sliding_window", json_false());
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
  char buf[128];
  snprintf(buf, sizeof buf, "%s", c->arch->ignored ? c->arch->ignored : "");
  for (char *save, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save))
    if (ends_with(name, k)) return 1;
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
    size_t tl = strlen(c->arch->trunk); /* a bare trunk's names (the original "gpt2" repo's) */
    if (!t && !strncmp(p->name, c->arch->trunk, tl)) t = shards_find(&s, p->name + tl, &which);
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

int hf_save_peft(ft_model *m, const ft_lora *lora, const char *base_model_name, const char *out_dir,
                 ft_error *err) {
  const ft_config *c = model_config(m);
  if (!lora || lora->r < 1) return ft_error_set(err, FT_EINVALID, "lora", "no LoRA configuration");
  int classify = model_param(m, "score.weight") != NULL;
  char targets[256], path[PATH_MAX];
  arch_lora_names(c->arch, lora->targets, targets, sizeof targets);
  json_t *tm = json_array();
  for (char *save, *tok = strtok_r(targets, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    json_array_append_new(tm, json_string(tok));
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:b, s:s, s:b, s:b, s:b, s:b, s:n, s:n}", "peft_type",
      "LORA", "task_type", classify ? "SEQ_CLS" : "CAUSAL_LM", "base_model_name_or_path",
      base_model_name ? base_model_name : "", "r", lora->r, "lora_alpha", ft_json_float(lora->alpha),
      "lora_dropout", ft_json_float(lora->dropout), "target_modules", tm, "fan_in_fan_out",
      c->arch->conv1d, "bias", "none", "inference_mode", 1, "init_lora_weights", 1,
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
