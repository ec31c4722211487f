/* The job spec parser (see spec.h). Input is a request body from anyone, so
 * every object is walked key by key against the list of fields it may hold
 * (unknown: FT_EUNKNOWN_FIELD), every value is type-checked (FT_ETYPE) and
 * range-checked (FT_ERANGE), and errors carry the dotted path of the field.
 * null means "not given" for optional fields, as in the OpenAI API. "auto"
 * is allowed where OpenAI allows it (n_epochs, batch_size,
 * learning_rate_multiplier) and for our learning_rate and lr_scheduler; it is
 * resolved here, after the adapter is known, so spec_to_json never writes it.
 * Defaults: seed 42, adapter lora (r 8, alpha 16), n_epochs 3, batch_size 8,
 * learning_rate 1e-4 (lora) / 2e-5 (full) / 1e-3 (head), cosine schedule;
 * data: validation_split 0.1 without a validation_file (else 0), test_split
 * 0, truncation "truncate", clean and packing on; evaluation: eval_samples 64,
 * early_stopping.metric valid_loss. Evaluation and early stopping need a
 * validation_file or a validation_split > 0. hyperparameters.token_budget
 * (pretraining) replaces n_epochs: giving both is refused, and spec_to_json
 * then writes token_budget and no n_epochs. */
#include "train/spec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_json.h"

#define MAX_METADATA 16

/* ---- field helpers ---- */

static void join(char *buf, size_t size, const char *path, const char *key) {
  if (path[0])
    snprintf(buf, size, "%s.%s", path, key);
  else
    snprintf(buf, size, "%s", key);
}

/* Refuses every key of obj not in allowed (NULL-terminated). */
static int only_keys(const json_t *obj, const char *path, const char *const *allowed,
                     ft_error *err) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    int ok = 0;
    for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, key) == 0;
    if (!ok) {
      char p[256];
      join(p, sizeof p, path, key);
      return ft_error_set(err, FT_EUNKNOWN_FIELD, p, "unknown field '%s'", p);
    }
  }
  return 0;
}

/* The object at obj[key]: NULL (absent or null) or an object; else FT_ETYPE. */
static int get_obj(const json_t *obj, const char *path, const char *key, const json_t **out,
                   ft_error *err) {
  const json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  char p[256];
  join(p, sizeof p, path, key);
  if (!json_is_object(v)) return ft_error_set(err, FT_ETYPE, p, "'%s' must be an object", p);
  *out = v;
  return 0;
}

static int is_auto(const json_t *v) {
  return json_is_string(v) && !strcmp(json_string_value(v), "auto");
}

/* An integer in [lo, hi]. *given is 0 when absent/null (or "auto" if
 * allow_auto; then *was_auto is 1); out is untouched then. */
static int get_int(const json_t *obj, const char *path, const char *key, long long lo, long long hi,
                   int allow_auto, long long *out, int *was_auto, ft_error *err) {
  const json_t *v = json_object_get(obj, key);
  if (was_auto) *was_auto = 0;
  if (!v || json_is_null(v)) return 0;
  char p[256];
  join(p, sizeof p, path, key);
  if (allow_auto && is_auto(v)) {
    *was_auto = 1;
    return 0;
  }
  if (!json_is_integer(v))
    return ft_error_set(err, FT_ETYPE, p, "'%s' must be an integer%s", p,
                        allow_auto ? " or \"auto\"" : "");
  long long x = json_integer_value(v);
  if (x < lo || x > hi)
    return ft_error_set(err, FT_ERANGE, p, "'%s' must be between %lld and %lld (got %lld)", p, lo,
                        hi, x);
  *out = x;
  return 0;
}

/* A number; range [lo, hi], or (lo, hi] when lo_open. */
static int get_num(const json_t *obj, const char *path, const char *key, double lo, int lo_open,
                   double hi, int hi_open, int allow_auto, double *out, int *was_auto,
                   ft_error *err) {
  const json_t *v = json_object_get(obj, key);
  if (was_auto) *was_auto = 0;
  if (!v || json_is_null(v)) return 0;
  char p[256];
  join(p, sizeof p, path, key);
  if (allow_auto && is_auto(v)) {
    *was_auto = 1;
    return 0;
  }
  if (!json_is_number(v))
    return ft_error_set(err, FT_ETYPE, p, "'%s' must be a number%s", p,
                        allow_auto ? " or \"auto\"" : "");
  double x = json_number_value(v);
  /* the value is kept as a float: check it as rounded too, or 0.9999999999999999
   * passes [0, 1) and is stored as 1, 1e-320 passes (0, 1] and is stored as 0
   * (fuzz/regressions/spec) */
  float xf = (float)x;
  if (!isfinite(x) || (lo_open ? x <= lo : x < lo) || (hi_open ? x >= hi : x > hi) ||
      (lo_open ? xf <= lo : xf < lo) || (hi_open ? xf >= hi : xf > hi))
    return ft_error_set(err, FT_ERANGE, p, "'%s' must be in %c%g, %g%c (got %g)", p,
                        lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', x);
  *out = x;
  return 0;
}

/* A string; NULL when absent/null. */
static int get_str(const json_t *obj, const char *path, const char *key, const char **out,
                   ft_error *err) {
  const json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  if (!json_is_string(v)) {
    char p[256];
    join(p, sizeof p, path, key);
    return ft_error_set(err, FT_ETYPE, p, "'%s' must be a string", p);
  }
  *out = json_string_value(v);
  return 0;
}

/* A string out of a fixed set; returns its index in *idx, -1 when absent. */
static int get_enum(const json_t *obj, const char *path, const char *key, const char *const *names,
                    int *idx, ft_error *err) {
  const char *s;
  int rc = get_str(obj, path, key, &s, err);
  *idx = -1;
  if (rc || !s) return rc;
  for (int i = 0; names[i]; i++)
    if (!strcmp(names[i], s)) {
      *idx = i;
      return 0;
    }
  char p[256], list[256] = "";
  join(p, sizeof p, path, key);
  for (int i = 0; names[i]; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
  return ft_error_set(err, FT_ERANGE, p, "'%s' must be one of %s (got \"%s\")", p, list, s);
}

/* ---- sections ---- */

typedef struct {
  int lr_auto, lr_given, lr_mult_given;
  double lr, lr_mult;
} lr_state;

static int parse_hparams(const json_t *h, const char *path, ft_spec *s, lr_state *lr,
                         ft_error *err) {
  static const char *const keys[] = {"n_epochs",
                                     "batch_size",
                                     "learning_rate",
                                     "learning_rate_multiplier",
                                     "lr_scheduler",
                                     "warmup_ratio",
                                     "weight_decay",
                                     "max_grad_norm",
                                     "gradient_accumulation_steps",
                                     "max_seq_len",
                                     "train_on_inputs",
                                     "token_budget",
                                     NULL};
  static const char *const scheds[] = {"constant", "linear", "cosine", "auto", NULL};
  int rc = only_keys(h, path, keys, err), a;
  long long i;
  double x;
  if (rc) return rc;
  i = s->n_epochs;
  if ((rc = get_int(h, path, "n_epochs", 1, 1000, 1, &i, &a, err))) return rc;
  s->n_epochs = (int)i;
  const json_t *ne = json_object_get(h, "n_epochs");
  int epochs_given = ne && !json_is_null(ne) && !a;
  i = 0;
  if ((rc = get_int(h, path, "token_budget", 1, 1000000000000LL, 0, &i, NULL, err))) return rc;
  s->token_budget = i;
  if (s->token_budget > 0 && epochs_given) {
    char p[256];
    join(p, sizeof p, path, "token_budget");
    return ft_error_set(err, FT_EINVALID, p,
                        "give n_epochs or token_budget, not both (a token budget repeats the "
                        "data as often as it needs)");
  }
  i = s->batch_size;
  if ((rc = get_int(h, path, "batch_size", 1, 1024, 1, &i, &a, err))) return rc;
  s->batch_size = (int)i;

  lr->lr_given =
      json_object_get(h, "learning_rate") && !json_is_null(json_object_get(h, "learning_rate"));
  lr->lr_mult_given = json_object_get(h, "learning_rate_multiplier") &&
                      !json_is_null(json_object_get(h, "learning_rate_multiplier"));
  if (lr->lr_given && lr->lr_mult_given) {
    char p[256];
    join(p, sizeof p, path, "learning_rate_multiplier");
    return ft_error_set(err, FT_EINVALID, p,
                        "give learning_rate or learning_rate_multiplier, not both");
  }
  if ((rc = get_num(h, path, "learning_rate", 0, 1, 1, 0, 1, &lr->lr, &lr->lr_auto, err)))
    return rc;
  if (lr->lr_auto) lr->lr_given = 0;
  int mult_auto;
  if ((rc = get_num(h, path, "learning_rate_multiplier", 0, 1, 1000, 0, 1, &lr->lr_mult, &mult_auto,
                    err)))
    return rc;
  if (mult_auto) lr->lr_mult_given = 0;

  int e;
  if ((rc = get_enum(h, path, "lr_scheduler", scheds, &e, err))) return rc;
  if (e >= 0 && e < 3) s->lr_scheduler = (ft_sched)e; /* the enum's order */

  x = s->warmup_ratio;
  if ((rc = get_num(h, path, "warmup_ratio", 0, 0, 1, 1, 0, &x, NULL, err))) return rc;
  s->warmup_ratio = (float)x;
  x = s->weight_decay;
  if ((rc = get_num(h, path, "weight_decay", 0, 0, 1, 0, 0, &x, NULL, err))) return rc;
  s->weight_decay = (float)x;
  x = s->max_grad_norm;
  if ((rc = get_num(h, path, "max_grad_norm", 0, 0, 1e6, 0, 0, &x, NULL, err))) return rc;
  s->max_grad_norm = (float)x;
  i = s->grad_accum;
  if ((rc = get_int(h, path, "gradient_accumulation_steps", 1, 1024, 0, &i, NULL, err))) return rc;
  s->grad_accum = (int)i;
  i = s->max_seq_len;
  if ((rc = get_int(h, path, "max_seq_len", 8, 32768, 0, &i, NULL, err))) return rc;
  s->max_seq_len = (int)i;
  const json_t *t = json_object_get(h, "train_on_inputs");
  if (t && !json_is_null(t)) {
    if (!json_is_boolean(t)) {
      char p[256];
      join(p, sizeof p, path, "train_on_inputs");
      return ft_error_set(err, FT_ETYPE, p, "'%s' must be true or false", p);
    }
    s->train_on_inputs = json_is_true(t);
  }
  return 0;
}

static int parse_method(const json_t *body, ft_spec *s, lr_state *lr, ft_error *err) {
  const json_t *m, *legacy = json_object_get(body, "hyperparameters");
  int rc = get_obj(body, "", "method", &m, err);
  if (rc) return rc;
  if (legacy && !json_is_null(legacy)) { /* OpenAI's deprecated top-level form */
    if (m)
      return ft_error_set(err, FT_EINVALID, "hyperparameters",
                          "give 'method' or the deprecated 'hyperparameters', not both");
    if (!json_is_object(legacy))
      return ft_error_set(err, FT_ETYPE, "hyperparameters", "'hyperparameters' must be an object");
    return parse_hparams(legacy, "hyperparameters", s, lr, err);
  }
  if (!m) return 0;
  static const char *const keys[] = {"type", "supervised",    "classification",
                                     "dpo",  "reinforcement", NULL};
  static const char *const types[] = {"supervised", "classification", "dpo", "reinforcement", NULL};
  if ((rc = only_keys(m, "method", keys, err))) return rc;
  int t;
  if ((rc = get_enum(m, "method", "type", types, &t, err))) return rc;
  if (t < 0) return ft_error_set(err, FT_EMISSING, "method.type", "'method.type' is required");
  if (t >= 2)
    return ft_error_set(err, FT_EUNSUPPORTED, "method.type",
                        "method '%s' is not supported (supervised, classification)", types[t]);
  s->task = t == 0 ? FT_TASK_CAUSAL_LM : FT_TASK_CLASSIFY;
  for (int i = 0; i < 4; i++) /* only the section of the chosen type */
    if (i != t && json_object_get(m, types[i])) {
      char p[64];
      snprintf(p, sizeof p, "method.%s", types[i]);
      return ft_error_set(err, FT_EINVALID, p, "'%s' does not go with method.type \"%s\"", p,
                          types[t]);
    }
  char path[64];
  snprintf(path, sizeof path, "method.%s", types[t]);
  const json_t *sec, *h;
  if ((rc = get_obj(m, "method", types[t], &sec, err)) || !sec) return rc;
  static const char *const sec_keys[] = {"hyperparameters", NULL};
  if ((rc = only_keys(sec, path, sec_keys, err)) ||
      (rc = get_obj(sec, path, "hyperparameters", &h, err)) || !h)
    return rc;
  char hpath[96];
  snprintf(hpath, sizeof hpath, "%s.hyperparameters", path);
  return parse_hparams(h, hpath, s, lr, err);
}

/* The bits a module name has in any family (the model's family is checked
 * later, in spec_check_model); 0: no family knows it. */
static unsigned known_target(const char *name) {
  unsigned bits = 0;
  for (size_t i = 0; arch_at(i); i++) bits |= arch_lora_bits(arch_at(i), name);
  return bits;
}

static int parse_adapter(const json_t *body, ft_spec *s, ft_error *err) {
  const json_t *a;
  int rc = get_obj(body, "", "adapter", &a, err);
  if (rc || !a) return rc;
  static const char *const keys[] = {"type", "r", "alpha", "dropout", "target_modules", NULL};
  static const char *const types[] = {"full", "lora", "head", NULL};
  if ((rc = only_keys(a, "adapter", keys, err))) return rc;
  int t;
  if ((rc = get_enum(a, "adapter", "type", types, &t, err))) return rc;
  if (t >= 0) s->method = t == 0 ? FT_METHOD_FULL : t == 1 ? FT_METHOD_LORA : FT_METHOD_HEAD;
  if (s->method != FT_METHOD_LORA) {
    for (int i = 1; keys[i]; i++) {
      const json_t *v = json_object_get(a, keys[i]);
      if (v && !json_is_null(v)) {
        char p[64];
        snprintf(p, sizeof p, "adapter.%s", keys[i]);
        return ft_error_set(err, FT_EINVALID, p, "'%s' applies only to adapter type \"lora\"", p);
      }
    }
    return 0;
  }
  long long r = s->lora.r;
  double alpha = s->lora.alpha, dropout = s->lora.dropout;
  if ((rc = get_int(a, "adapter", "r", 1, 256, 0, &r, NULL, err)) ||
      (rc = get_num(a, "adapter", "alpha", 0, 1, 1e4, 0, 0, &alpha, NULL, err)) ||
      (rc = get_num(a, "adapter", "dropout", 0, 0, 1, 1, 0, &dropout, NULL, err)))
    return rc;
  s->lora.r = (int)r;
  s->lora.alpha = (float)alpha;
  s->lora.dropout = (float)dropout;
  const json_t *tm = json_object_get(a, "target_modules");
  if (!tm || json_is_null(tm)) return 0;
  if (is_auto(tm)) return 0; /* the arch's default */
  if (json_is_string(tm) && !strcmp(json_string_value(tm), "all-linear")) {
    snprintf(s->lora_targets, sizeof s->lora_targets, "all-linear");
    return 0;
  }
  if (!json_is_array(tm))
    return ft_error_set(
        err, FT_ETYPE, "adapter.target_modules",
        "'adapter.target_modules' must be a list of module names or \"all-linear\"");
  if (json_array_size(tm) == 0)
    return ft_error_set(err, FT_ERANGE, "adapter.target_modules",
                        "'adapter.target_modules' is empty");
  size_t i;
  const json_t *v;
  size_t o = 0;
  json_array_foreach(tm, i, v) {
    const char *name = json_string_value(v);
    char p[64];
    snprintf(p, sizeof p, "adapter.target_modules[%zu]", i);
    if (!name) return ft_error_set(err, FT_ETYPE, p, "'%s' must be a string", p);
    if (!known_target(name))
      return ft_error_set(
          err, FT_ERANGE, p,
          "unknown LoRA target module '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, "
          "up_proj, down_proj; GPT-2: c_attn, c_proj, c_fc)",
          name);
    int n = snprintf(s->lora_targets + o, sizeof s->lora_targets - o, "%s%s", o ? "," : "", name);
    if (n < 0 || (size_t)n >= sizeof s->lora_targets - o)
      return ft_error_set(err, FT_ERANGE, "adapter.target_modules", "too many target modules");
    o += (size_t)n;
    s->lora.targets |= known_target(name);
  }
  return 0;
}

/* A boolean at obj[key]; out untouched when absent/null. */
static int get_bool(const json_t *obj, const char *path, const char *key, int *out, ft_error *err) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_boolean(v)) {
    char p[256];
    join(p, sizeof p, path, key);
    return ft_error_set(err, FT_ETYPE, p, "'%s' must be true or false", p);
  }
  *out = json_is_true(v);
  return 0;
}

/* "data": {"validation_split", "test_split", "truncation", "clean", "packing"}.
 * *vsplit_given says whether validation_split was given (its default depends
 * on validation_file). */
static int parse_data(const json_t *body, ft_spec *s, int *vsplit_given, ft_error *err) {
  const json_t *d;
  int rc = get_obj(body, "", "data", &d, err);
  *vsplit_given = 0;
  if (rc || !d) return rc;
  static const char *const keys[] = {"validation_split", "test_split", "truncation", "clean",
                                     "packing",          NULL};
  static const char *const truncs[] = {"truncate", "drop", NULL};
  if ((rc = only_keys(d, "data", keys, err))) return rc;
  double x = -1;
  if ((rc = get_num(d, "data", "validation_split", 0, 0, 0.5, 0, 0, &x, NULL, err))) return rc;
  if (x >= 0) {
    s->validation_split = (float)x;
    *vsplit_given = 1;
  }
  x = s->test_split;
  if ((rc = get_num(d, "data", "test_split", 0, 0, 0.5, 0, 0, &x, NULL, err))) return rc;
  s->test_split = (float)x;
  int t;
  if ((rc = get_enum(d, "data", "truncation", truncs, &t, err))) return rc;
  if (t >= 0) s->drop_long = t == 1;
  if ((rc = get_bool(d, "data", "clean", &s->clean, err)) ||
      (rc = get_bool(d, "data", "packing", &s->packing, err)))
    return rc;
  return 0;
}

static const char *const es_metrics[] = {"valid_loss", "valid_mean_token_accuracy",
                                         "valid_accuracy", "valid_f1_macro", NULL};

static int parse_evaluation(const json_t *body, ft_spec *s, ft_error *err) {
  const json_t *e, *es;
  int rc = get_obj(body, "", "evaluation", &e, err);
  if (rc || !e) return rc;
  static const char *const keys[] = {"eval_every_steps", "eval_samples", "early_stopping", NULL};
  static const char *const es_keys[] = {"metric", "patience", "min_delta", NULL};
  long long i = s->eval_every_steps, ns = s->eval_samples;
  if ((rc = only_keys(e, "evaluation", keys, err)) ||
      (rc = get_int(e, "evaluation", "eval_every_steps", 0, 1000000000, 0, &i, NULL, err)) ||
      (rc = get_int(e, "evaluation", "eval_samples", 1, 100000, 0, &ns, NULL, err)) ||
      (rc = get_obj(e, "evaluation", "early_stopping", &es, err)))
    return rc;
  s->eval_every_steps = (int)i;
  s->eval_samples = (int)ns;
  if (!es) return 0;
  i = s->es_patience;
  double d = s->es_min_delta;
  int mi;
  if ((rc = only_keys(es, "evaluation.early_stopping", es_keys, err)) ||
      (rc = get_enum(es, "evaluation.early_stopping", "metric", es_metrics, &mi, err)) ||
      (rc = get_int(es, "evaluation.early_stopping", "patience", 0, 1000, 0, &i, NULL, err)) ||
      (rc = get_num(es, "evaluation.early_stopping", "min_delta", 0, 0, 1e6, 0, 0, &d, NULL, err)))
    return rc;
  if (mi >= 0) snprintf(s->es_metric, sizeof s->es_metric, "%s", es_metrics[mi]);
  s->es_patience = (int)i;
  s->es_min_delta = (float)d;
  return 0;
}

static int parse_checkpoints(const json_t *body, ft_spec *s, ft_error *err) {
  const json_t *c;
  int rc = get_obj(body, "", "checkpoints", &c, err);
  if (rc || !c) return rc;
  static const char *const keys[] = {"every_steps", "keep", NULL};
  long long every = s->ckpt_every_steps, keep = s->ckpt_keep;
  if ((rc = only_keys(c, "checkpoints", keys, err)) ||
      (rc = get_int(c, "checkpoints", "every_steps", 0, 1000000000, 0, &every, NULL, err)) ||
      (rc = get_int(c, "checkpoints", "keep", 1, 100, 0, &keep, NULL, err)))
    return rc;
  s->ckpt_every_steps = (int)every;
  s->ckpt_keep = (int)keep;
  return 0;
}

/* File ids go into paths on the server: letters, digits, '-', '_', '.', not
 * starting with '.'. */
static int check_file_id(const char *v, const char *field, char *dst, size_t size, ft_error *err) {
  size_t n = strlen(v);
  if (n == 0 || n >= size)
    return ft_error_set(err, FT_ERANGE, field, "'%s' must be a file id of 1..%zu characters", field,
                        size - 1);
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_' || (c == '.' && i > 0);
    if (!ok) return ft_error_set(err, FT_ERANGE, field, "'%s' is not a valid file id", field);
  }
  memcpy(dst, v, n + 1);
  return 0;
}

static int parse_top(const json_t *body, ft_spec *s, ft_error *err) {
  static const char *const keys[] = {"model",
                                     "training_file",
                                     "validation_file",
                                     "test_file",
                                     "suffix",
                                     "seed",
                                     "metadata",
                                     "method",
                                     "hyperparameters",
                                     "adapter",
                                     "data",
                                     "evaluation",
                                     "checkpoints",
                                     NULL};
  int rc = only_keys(body, "", keys, err);
  if (rc) return rc;
  const char *v;
  if ((rc = get_str(body, "", "model", &v, err))) return rc;
  if (!v) return ft_error_set(err, FT_EMISSING, "model", "'model' is required");
  size_t n = strlen(v);
  if (n == 0 || n >= sizeof s->model)
    return ft_error_set(err, FT_ERANGE, "model", "'model' must be 1..%zu characters",
                        sizeof s->model - 1);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
      return ft_error_set(err, FT_ERANGE, "model", "'model' contains a control character");
  memcpy(s->model, v, n + 1);

  if ((rc = get_str(body, "", "training_file", &v, err))) return rc;
  if (!v) return ft_error_set(err, FT_EMISSING, "training_file", "'training_file' is required");
  if ((rc = check_file_id(v, "training_file", s->training_file, sizeof s->training_file, err)))
    return rc;
  if ((rc = get_str(body, "", "validation_file", &v, err))) return rc;
  if (v && (rc = check_file_id(v, "validation_file", s->validation_file, sizeof s->validation_file,
                               err)))
    return rc;
  if ((rc = get_str(body, "", "test_file", &v, err))) return rc;
  if (v && (rc = check_file_id(v, "test_file", s->test_file, sizeof s->test_file, err))) return rc;

  if ((rc = get_str(body, "", "suffix", &v, err))) return rc;
  if (v) {
    n = strlen(v);
    if (n > 40)
      return ft_error_set(err, FT_ERANGE, "suffix", "'suffix' is longer than 40 characters");
    for (size_t i = 0; i < n; i++) {
      char c = v[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_'))
        return ft_error_set(err, FT_ERANGE, "suffix",
                            "'suffix' may hold only letters, digits, '-' and '_'");
    }
    memcpy(s->suffix, v, n + 1);
  }

  long long seed = (long long)s->seed;
  if ((rc = get_int(body, "", "seed", 0, 2147483647LL, 0, &seed, NULL, err))) return rc;
  s->seed = (uint64_t)seed;

  /* metadata: checked, not kept (the server stores the body's object) */
  const json_t *md;
  if ((rc = get_obj(body, "", "metadata", &md, err))) return rc;
  if (md) {
    if (json_object_size(md) > MAX_METADATA)
      return ft_error_set(err, FT_ERANGE, "metadata", "'metadata' holds at most %d keys",
                          MAX_METADATA);
    const char *k;
    json_t *mv;
    json_object_foreach((json_t *)md, k, mv) {
      char p[256];
      join(p, sizeof p, "metadata", k);
      if (strlen(k) > 64)
        return ft_error_set(err, FT_ERANGE, "metadata", "metadata keys are at most 64 characters");
      if (!json_is_string(mv)) return ft_error_set(err, FT_ETYPE, p, "'%s' must be a string", p);
      if (json_string_length(mv) > 512)
        return ft_error_set(err, FT_ERANGE, p, "'%s' is longer than 512 characters", p);
    }
  }
  return 0;
}

int spec_parse(const json_t *body, ft_spec *out, ft_error *err) {
  ft_spec s;
  memset(&s, 0, sizeof s);
  s.seed = 42;
  s.task = FT_TASK_CAUSAL_LM;
  s.n_epochs = 3;
  s.batch_size = 8;
  s.lr_scheduler = FT_SCHED_COSINE;
  s.warmup_ratio = 0.05f;
  s.weight_decay = 0.0f;
  s.max_grad_norm = 1.0f;
  s.grad_accum = 1;
  s.max_seq_len = 512;
  s.method = FT_METHOD_LORA;
  s.lora = (ft_lora){.r = 8, .alpha = 16.0f, .dropout = 0.0f, .targets = 0};
  s.ckpt_keep = 3;
  s.clean = 1;
  s.packing = 1;
  s.eval_samples = 64;
  snprintf(s.es_metric, sizeof s.es_metric, "valid_loss");
  if (!json_is_object(body))
    return ft_error_set(err, FT_ETYPE, NULL, "the job spec must be a JSON object");
  lr_state lr = {0};
  int rc, vsplit_given;
  if ((rc = parse_top(body, &s, err)) || (rc = parse_method(body, &s, &lr, err)) ||
      (rc = parse_adapter(body, &s, err)) || (rc = parse_data(body, &s, &vsplit_given, err)) ||
      (rc = parse_evaluation(body, &s, err)) || (rc = parse_checkpoints(body, &s, err)))
    return rc;

  double base = s.method == FT_METHOD_LORA ? 1e-4 : s.method == FT_METHOD_FULL ? 2e-5 : 1e-3;
  double lrv = lr.lr_given ? lr.lr : lr.lr_mult_given ? base * lr.lr_mult : base;
  if (lrv > 1.0) /* only a multiplier can get here */
    return ft_error_set(err, FT_ERANGE, "learning_rate_multiplier",
                        "learning_rate_multiplier makes the learning rate %g, above 1", lrv);
  s.learning_rate = (float)lrv;

  if (s.validation_file[0] && vsplit_given && s.validation_split > 0)
    return ft_error_set(err, FT_EINVALID, "data.validation_split",
                        "'data.validation_split' must be 0 (or left out) with a validation_file");
  if (!vsplit_given) s.validation_split = s.validation_file[0] ? 0.0f : 0.1f;
  if (s.test_file[0] && s.test_split > 0)
    return ft_error_set(err, FT_EINVALID, "data.test_split",
                        "'data.test_split' must be 0 (or left out) with a test_file");
  if (s.validation_split + s.test_split >= 0.9f)
    return ft_error_set(err, FT_ERANGE, "data.test_split",
                        "'data.validation_split' + 'data.test_split' must be below 0.9");
  if (s.task != FT_TASK_CLASSIFY &&
      (!strcmp(s.es_metric, "valid_accuracy") || !strcmp(s.es_metric, "valid_f1_macro")))
    return ft_error_set(err, FT_EINVALID, "evaluation.early_stopping.metric",
                        "early stopping on %s needs method.type \"classification\"", s.es_metric);
  if (!s.validation_file[0] && s.validation_split <= 0) {
    if (s.eval_every_steps > 0)
      return ft_error_set(err, FT_EINVALID, "evaluation.eval_every_steps",
                          "'evaluation.eval_every_steps' needs a validation_file or "
                          "data.validation_split > 0");
    if (s.es_patience > 0)
      return ft_error_set(err, FT_EINVALID, "evaluation.early_stopping.patience",
                          "early stopping needs a validation_file or data.validation_split > 0");
  }
  *out = s;
  return 0;
}


int spec_check_model(ft_spec *s, const ft_config *cfg, ft_error *err) {
  if (s->max_seq_len > cfg->max_position) s->max_seq_len = cfg->max_position;
  if (s->method == FT_METHOD_HEAD && s->task == FT_TASK_CAUSAL_LM && cfg->tie_embeddings)
    return ft_error_set(err, FT_EINVALID, "adapter.type",
                        "adapter type \"head\" on a causal LM needs an untied lm_head; this "
                        "model ties it to the embeddings");
  const ft_arch *a = cfg->arch ? cfg->arch : arch_find(cfg->model_type);
  if (!a) return ft_error_set(err, FT_EUNSUPPORTED, "model", "unknown model family");
  if (s->method != FT_METHOD_LORA) return 0;
  if (!s->lora_targets[0]) snprintf(s->lora_targets, sizeof s->lora_targets, "%s", a->lora_default);
  unsigned bits = 0;
  if (!strcmp(s->lora_targets, "all-linear")) {
    bits = arch_lora_all(a);
  } else {
    char buf[sizeof s->lora_targets];
    snprintf(buf, sizeof buf, "%s", s->lora_targets);
    int i = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), i++) {
      unsigned b = arch_lora_bits(a, t);
      if (!b) {
        char p[64];
        snprintf(p, sizeof p, "adapter.target_modules[%d]", i);
        return ft_error_set(err, FT_ERANGE, p, "'%s' is not a module of %s models (try %s)", t,
                            a->model_type, a->lora_default);
      }
      bits |= b;
    }
  }
  s->lora.targets = bits;
  return 0;
}


json_t *spec_to_json(const ft_spec *s) {
  static const char *const scheds[] = {"constant", "linear", "cosine"};
  const char *type = s->task == FT_TASK_CLASSIFY ? "classification" : "supervised";
  json_t *h =
      json_pack("{s:i, s:i, s:o, s:s, s:o, s:o, s:o, s:i, s:i, s:b}", "n_epochs", s->n_epochs,
                "batch_size", s->batch_size, "learning_rate", ft_json_float(s->learning_rate),
                "lr_scheduler", scheds[s->lr_scheduler % 3], "warmup_ratio",
                ft_json_float(s->warmup_ratio), "weight_decay", ft_json_float(s->weight_decay), "max_grad_norm",
                ft_json_float(s->max_grad_norm), "gradient_accumulation_steps", s->grad_accum,
                "max_seq_len", s->max_seq_len, "train_on_inputs", s->train_on_inputs);
  if (h && s->token_budget > 0) { /* the budget replaces n_epochs */
    json_object_del(h, "n_epochs");
    json_object_set_new(h, "token_budget", json_integer((json_int_t)s->token_budget));
  }
  json_t *adapter;
  if (s->method == FT_METHOD_LORA) {
    adapter = json_pack("{s:s, s:i, s:o, s:o}", "type", "lora", "r", s->lora.r, "alpha",
                        ft_json_float(s->lora.alpha), "dropout", ft_json_float(s->lora.dropout));
    if (adapter && s->lora_targets[0]) {
      json_t *tm;
      if (!strcmp(s->lora_targets, "all-linear")) {
        tm = json_string("all-linear");
      } else {
        char buf[sizeof s->lora_targets];
        snprintf(buf, sizeof buf, "%s", s->lora_targets);
        tm = json_array();
        for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
          json_array_append_new(tm, json_string(t));
      }
      json_object_set_new(adapter, "target_modules", tm);
    }
  } else {
    adapter = json_pack("{s:s}", "type", s->method == FT_METHOD_FULL ? "full" : "head");
  }
  json_t *j = json_pack(
      "{s:s, s:s, s:s?, s:s?, s:s?, s:I, s:{s:s, s:{s:o}}, s:o, s:{s:i, s:i, s:{s:s, s:i, s:o}},"
      " s:{s:i, s:i}}",
      "model", s->model, "training_file", s->training_file, "validation_file",
      s->validation_file[0] ? s->validation_file : NULL, "test_file",
      s->test_file[0] ? s->test_file : NULL, "suffix", s->suffix[0] ? s->suffix : NULL, "seed",
      (json_int_t)s->seed, "method", "type", type, type, "hyperparameters", h, "adapter", adapter,
      "evaluation", "eval_every_steps", s->eval_every_steps, "eval_samples", s->eval_samples,
      "early_stopping", "metric", s->es_metric[0] ? s->es_metric : "valid_loss", "patience",
      s->es_patience, "min_delta", ft_json_float(s->es_min_delta), "checkpoints", "every_steps",
      s->ckpt_every_steps, "keep", s->ckpt_keep);
  if (j)
    json_object_set_new(
        j, "data",
        json_pack("{s:o, s:o, s:s, s:b, s:b}", "validation_split", ft_json_float(s->validation_split),
                  "test_split", ft_json_float(s->test_split), "truncation",
                  s->drop_long ? "drop" : "truncate", "clean", s->clean, "packing", s->packing));
  return j;
}
