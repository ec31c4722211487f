/* parity_dump: runs the engine on one Hugging Face model directory and one
 * batch and writes what the PyTorch parity test (tests/parity/test_parity.py)
 * compares, as a safetensors file of F32 tensors:
 *   logits (B,T,V) or (B,num_labels), loss (1), n_trained (1),
 *   grad.<name> for every trainable tensor after one forward + backward
 *   (scale 1; aliases such as a tied lm_head are written once, under the
 *   first name), and with --adamw-steps K: losses (K), grad_norms (K, before
 *   clipping) and final.<name> after K steps of forward, backward, clip,
 *   AdamW step, zero grad on the same batch.
 * The model directory holds config.json and model.safetensors, read with the
 * engine's own hfdir functions, and optionally lora.safetensors with PEFT
 * names, copied over the LoRA tensors (so both sides start from the same
 * non-zero B). --alloc BxT allocates the model for a larger batch than the
 * one run (a short last batch). The batch file holds I32 tensors tokens (B,T), lens (B) and
 * targets (B,T) or labels (B), and optionally pos and seg (B,T) for packed rows
 * (ft_batch.pos/.seg). --save-reload DIR also writes the model with
 * hf_save_model to DIR (a LoRA model merged first with model_merge_lora),
 * loads it back into a fresh full model and writes the inference logits of
 * both as logits_before / logits_reloaded.
 * A test tool: it prints errors to stderr and exits 1. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/hfdir.h"
#include "nn/model.h"
#include "train/optim.h"
#include "formats/safetensors.h"

static void die(const char *what, const ft_error *e) {
  fprintf(stderr, "parity_dump: %s: %s%s%s\n", what,
          e->message[0] ? e->message : ft_err_message(e->code), e->param[0] ? " at " : "",
          e->param);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "parity_dump: out of memory\n");
    exit(1);
  }
  return p;
}

/* ---- the batch: a minimal reader of I32 safetensors tensors (the engine's
 * reader takes floats only) */

typedef struct {
  int32_t *data;
  int ndim;
  int64_t shape[4];
  size_t numel;
} i32_tensor;

static int read_i32(const char *path, const char *name, i32_tensor *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "parity_dump: %s: %s\n", path, strerror(errno));
    exit(1);
  }
  uint64_t hlen = 0;
  if (fread(&hlen, 8, 1, f) != 1 || hlen > (1u << 24)) goto bad;
  char *h = xmalloc(hlen + 1);
  if (fread(h, 1, hlen, f) != hlen) goto bad;
  h[hlen] = 0;
  json_error_t je;
  json_t *root = json_loads(h, 0, &je);
  free(h);
  if (!root) goto bad;
  json_t *t = json_object_get(root, name);
  if (!t) {
    json_decref(root);
    fclose(f);
    return -1;
  }
  const char *dtype = json_string_value(json_object_get(t, "dtype"));
  json_t *shape = json_object_get(t, "shape"), *offs = json_object_get(t, "data_offsets");
  if (!dtype || strcmp(dtype, "I32") != 0 || !json_is_array(shape) ||
      json_array_size(shape) > 4 || json_array_size(offs) != 2)
    goto bad;
  out->ndim = (int)json_array_size(shape);
  out->numel = 1;
  for (int i = 0; i < out->ndim; i++) {
    out->shape[i] = json_integer_value(json_array_get(shape, i));
    out->numel *= (size_t)out->shape[i];
  }
  long b0 = (long)json_integer_value(json_array_get(offs, 0));
  long b1 = (long)json_integer_value(json_array_get(offs, 1));
  json_decref(root);
  if ((size_t)(b1 - b0) != out->numel * 4) goto bad;
  out->data = xmalloc(out->numel * 4);
  if (fseek(f, (long)(8 + hlen) + b0, SEEK_SET) != 0 ||
      fread(out->data, 4, out->numel, f) != out->numel)
    goto bad;
  fclose(f);
  return 0;
bad:
  fprintf(stderr, "parity_dump: %s: bad I32 tensor %s\n", path, name);
  exit(1);
}

/* ---- the output file */

typedef struct {
  st_out *t;
  size_t n, cap;
} outset;

/* Adds a copy of data under name. */
static void out_add(outset *o, const char *name, const float *data, int ndim,
                    const int64_t *shape) {
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 64;
    o->t = realloc(o->t, o->cap * sizeof *o->t);
    if (!o->t) exit(1);
  }
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) numel *= (size_t)shape[i];
  float *copy = xmalloc(numel * sizeof *copy);
  memcpy(copy, data, numel * sizeof *copy);
  st_out *t = &o->t[o->n++];
  memset(t, 0, sizeof *t);
  t->name = strdup(name);
  t->data = copy;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
}

static void out_scalars(outset *o, const char *name, const float *v, int n) {
  int64_t shape[1] = {n};
  out_add(o, name, v, 1, shape);
}

/* Writes every trainable tensor (weights or gradients) under prefix.<name>,
 * each distinct tensor once. */
static void out_params(outset *o, ft_model *m, const char *prefix, int grads) {
  size_t n = 0;
  ft_param *ps = model_params(m, &n);
  for (size_t i = 0; i < n; i++) {
    ft_param *p = &ps[i];
    if (!p->trainable || !p->g) continue;
    int alias = 0;
    for (size_t j = 0; j < i; j++)
      if (ps[j].trainable && ps[j].w == p->w) alias = 1;
    if (alias) continue;
    char name[FT_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s.%s", prefix, p->name);
    int64_t shape[4];
    for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
    out_add(o, name, grads ? p->g : p->w, p->ndim, shape);
  }
}

/* ---- model setup */

typedef struct {
  const char *model_dir, *batch_path, *out_path, *save_dir;
  ft_task task;
  ft_method method;
  ft_lora lora;
  char targets[256];
  int steps;
  float lr, wd, clip;
  int alloc_B, alloc_T; /* model_new's B x T; 0: the batch's */
  float softcap;        /* > 0: final_logit_softcapping forced on the family (a test-only copy
                           of its row with logit_softcap set) */
} opts;

static void usage(void) {
  fprintf(stderr,
          "usage: parity_dump MODEL_DIR BATCH.safetensors OUT.safetensors [--task lm|cls]\n"
          "         [--method full|lora|head] [--lora-r N --lora-alpha A --lora-targets "
          "q_proj,v_proj]\n"
          "         [--adamw-steps K --lr X --wd Y --clip Z] [--save-reload DIR]\n"
          "         [--alloc BxT]   (model allocated for BxT, larger than the batch)\n"
          "         [--softcap CAP] (final_logit_softcapping forced on, whatever the family)\n");
  exit(2);
}

static void parse_args(int argc, char **argv, opts *o) {
  memset(o, 0, sizeof *o);
  o->task = FT_TASK_CAUSAL_LM;
  o->method = FT_METHOD_FULL;
  o->lora.r = 8;
  o->lora.alpha = 16;
  snprintf(o->targets, sizeof o->targets, "q_proj,v_proj");
  o->lr = 1e-3f;
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') {
      if (pos == 0) o->model_dir = a;
      else if (pos == 1) o->batch_path = a;
      else if (pos == 2) o->out_path = a;
      else usage();
      pos++;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--task")) {
      if (!strcmp(v, "lm")) o->task = FT_TASK_CAUSAL_LM;
      else if (!strcmp(v, "cls")) o->task = FT_TASK_CLASSIFY;
      else usage();
    } else if (!strcmp(a, "--method")) {
      if (!strcmp(v, "full")) o->method = FT_METHOD_FULL;
      else if (!strcmp(v, "lora")) o->method = FT_METHOD_LORA;
      else if (!strcmp(v, "head")) o->method = FT_METHOD_HEAD;
      else usage();
    } else if (!strcmp(a, "--lora-r")) {
      o->lora.r = atoi(v);
    } else if (!strcmp(a, "--lora-alpha")) {
      o->lora.alpha = strtof(v, NULL);
    } else if (!strcmp(a, "--lora-targets")) {
      snprintf(o->targets, sizeof o->targets, "%s", v);
    } else if (!strcmp(a, "--adamw-steps")) {
      o->steps = atoi(v);
    } else if (!strcmp(a, "--lr")) {
      o->lr = strtof(v, NULL);
    } else if (!strcmp(a, "--wd")) {
      o->wd = strtof(v, NULL);
    } else if (!strcmp(a, "--clip")) {
      o->clip = strtof(v, NULL);
    } else if (!strcmp(a, "--alloc")) {
      if (sscanf(v, "%dx%d", &o->alloc_B, &o->alloc_T) != 2) usage();
    } else if (!strcmp(a, "--softcap")) {
      o->softcap = strtof(v, NULL);
    } else if (!strcmp(a, "--save-reload")) {
      o->save_dir = v;
    } else {
      usage();
    }
  }
  if (pos != 3 || (o->softcap > 0 && o->save_dir)) usage(); /* the forced cap is not saved */
}

static void set_lora_targets(opts *o, const ft_arch *arch) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", o->targets);
  o->lora.targets = 0;
  o->lora.dropout = 0.0f;
  for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
    unsigned bit = arch_lora_bits(arch, s);
    if (!bit) {
      fprintf(stderr, "parity_dump: unknown LoRA target %s\n", s);
      exit(1);
    }
    o->lora.targets |= bit;
  }
}

/* Copies every tensor of path (PEFT names) into the model's tensor of the
 * same name; a name the model lacks is an error. */
static void load_extra(ft_model *m, const char *path) {
  ft_error err = {0};
  st_file *f = NULL;
  if (st_open(&f, path, &err)) die(path, &err);
  for (size_t i = 0; i < st_count(f); i++) {
    const st_tensor *t = st_at(f, i);
    ft_param *p = model_param(m, t->name);
    if (!p) {
      fprintf(stderr, "parity_dump: %s: the model has no tensor %s\n", path, t->name);
      exit(1);
    }
    if (st_read_f32(f, t, p->w, p->numel, &err)) die(t->name, &err);
  }
  st_close(f);
}

static ft_model *load_model(const opts *o, const ft_config *cfg, int B, int T,
                            const char *dir) {
  ft_error err = {0};
  ft_model *m = NULL;
  if (model_new(&m, cfg, o->task, o->method, o->method == FT_METHOD_LORA ? &o->lora : NULL, B,
                T, 1, &err))
    die("model_new", &err);
  int head_missing = 0;
  if (hf_load_weights(m, dir, &head_missing, &err)) die("hf_load_weights", &err);
  if (o->task == FT_TASK_CLASSIFY && head_missing) {
    fprintf(stderr, "parity_dump: %s/model.safetensors has no score.weight\n", dir);
    exit(1);
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/lora.safetensors", dir);
  if (o->method == FT_METHOD_LORA && access(path, R_OK) == 0) load_extra(m, path);
  return m;
}

static size_t logits_numel(const ft_config *cfg, ft_task task, int B, int T) {
  return task == FT_TASK_CAUSAL_LM ? (size_t)B * T * cfg->vocab_size
                                   : (size_t)B * cfg->num_labels;
}

/* The last forward's full logits, malloc'd: an LM's through model_lm_logits
 * (the training path never holds them all), a classifier's as they are. */
static float *full_logits(const ft_model *m, ft_task task, int B, int T) {
  size_t n = logits_numel(model_config(m), task, B, T);
  float *out = xmalloc(n * sizeof *out);
  if (task == FT_TASK_CLASSIFY)
    memcpy(out, model_logits(m), n * sizeof *out);
  else if (model_lm_logits(m, 0, B * T, out))
    die("model_lm_logits", &(ft_error){.code = FT_EINVALID});
  return out;
}

static void out_logits(outset *out, const char *name, const float *logits,
                       const ft_config *cfg, ft_task task, int B, int T) {
  if (task == FT_TASK_CAUSAL_LM) {
    int64_t shape[3] = {B, T, cfg->vocab_size};
    out_add(out, name, logits, 3, shape);
  } else {
    int64_t shape[2] = {B, cfg->num_labels};
    out_add(out, name, logits, 2, shape);
  }
}

int main(int argc, char **argv) {
  opts o;
  parse_args(argc, argv, &o);
  ft_error err = {0};

  i32_tensor tokens, targets, lens, labels;
  if (read_i32(o.batch_path, "tokens", &tokens) || tokens.ndim != 2 ||
      read_i32(o.batch_path, "lens", &lens) || lens.numel != (size_t)tokens.shape[0]) {
    fprintf(stderr, "parity_dump: %s needs tokens (B,T) and lens (B)\n", o.batch_path);
    return 1;
  }
  int B = (int)tokens.shape[0], T = (int)tokens.shape[1];
  int have_targets = read_i32(o.batch_path, "targets", &targets) == 0;
  int have_labels = read_i32(o.batch_path, "labels", &labels) == 0;
  i32_tensor pos, seg;
  int have_pos = read_i32(o.batch_path, "pos", &pos) == 0;
  int have_seg = read_i32(o.batch_path, "seg", &seg) == 0;
  if ((have_pos && pos.numel != tokens.numel) || (have_seg && seg.numel != tokens.numel)) {
    fprintf(stderr, "parity_dump: %s: pos and seg must be (B,T) like tokens\n", o.batch_path);
    return 1;
  }
  if (o.task == FT_TASK_CAUSAL_LM ? !have_targets : !have_labels) {
    fprintf(stderr, "parity_dump: %s lacks %s\n", o.batch_path,
            o.task == FT_TASK_CAUSAL_LM ? "targets" : "labels");
    return 1;
  }
  ft_batch batch = {.B = B,
                    .T = T,
                    .tokens = tokens.data,
                    .targets = o.task == FT_TASK_CAUSAL_LM ? targets.data : NULL,
                    .labels = o.task == FT_TASK_CLASSIFY ? labels.data : NULL,
                    .lens = lens.data,
                    .pos = have_pos ? pos.data : NULL,
                    .seg = have_seg ? seg.data : NULL};

  ft_config cfg;
  if (hf_config_load(&cfg, o.model_dir, &err)) die("hf_config_load", &err);
  static ft_arch capped; /* the family's row with the flag set, for this process only */
  if (o.softcap > 0) {
    capped = *cfg.arch;
    capped.logit_softcap = 1;
    cfg.arch = &capped;
    cfg.final_softcap = o.softcap;
  }
  if (o.method == FT_METHOD_LORA) set_lora_targets(&o, cfg.arch);
  ft_model *m = load_model(&o, &cfg, o.alloc_B ? o.alloc_B : B, o.alloc_T ? o.alloc_T : T,
                           o.model_dir);
  const ft_config *mc = model_config(m);

  outset out = {0};
  /* one forward + backward */
  float loss = 0;
  model_zero_grad(m);
  int rc = model_forward(m, &batch, 1, 0, &loss);
  if (rc) die("model_forward", &(ft_error){.code = rc});
  float *lg = full_logits(m, o.task, B, T);
  out_logits(&out, "logits", lg, mc, o.task, B, T);
  free(lg);
  out_scalars(&out, "loss", &loss, 1);
  long n_trained = 0, n_correct = 0;
  model_last_counts(m, &n_trained, &n_correct);
  float counts[2] = {(float)n_trained, (float)n_correct};
  out_scalars(&out, "counts", counts, 2);
  rc = model_backward(m, 1.0f);
  if (rc) die("model_backward", &(ft_error){.code = rc});
  out_params(&out, m, "grad", 1);

  /* K AdamW steps on the same batch, as training runs them (the LM head's
   * forward and backward fused) */
  if (o.steps > 0) {
    optim *opt = NULL;
    if (optim_new(&opt, m, o.wd, &err)) die("optim_new", &err);
    float *losses = xmalloc((size_t)o.steps * sizeof *losses);
    float *norms = xmalloc((size_t)o.steps * sizeof *norms);
    for (int k = 0; k < o.steps; k++) {
      model_zero_grad(m);
      rc = model_forward_backward(m, &batch, (uint64_t)k, 1.0f, &losses[k]);
      if (rc) die("step", &(ft_error){.code = rc});
      norms[k] = optim_clip_grad_norm(opt, o.clip);
      optim_step(opt, o.lr);
    }
    model_zero_grad(m);
    out_scalars(&out, "losses", losses, o.steps);
    out_scalars(&out, "grad_norms", norms, o.steps);
    out_params(&out, m, "final", 0);
    free(losses);
    free(norms);
    optim_free(opt);
  }

  /* save with the engine's writer, load back, compare inference logits */
  if (o.save_dir) {
    float l0 = 0, l1 = 0;
    if ((rc = model_forward(m, &batch, 0, 0, &l0))) die("model_forward", &(ft_error){.code = rc});
    float *before = full_logits(m, o.task, B, T);
    if (o.method == FT_METHOD_LORA) model_merge_lora(m);
    if (hf_save_model(m, o.task, NULL, o.save_dir, &err)) die("hf_save_model", &err);
    ft_config cfg2;
    if (hf_config_load(&cfg2, o.save_dir, &err)) die("hf_config_load (saved)", &err);
    ft_model *m2 = NULL;
    if (model_new(&m2, &cfg2, o.task, FT_METHOD_FULL, NULL, B, T, 0, &err))
      die("model_new (saved)", &err);
    if (hf_load_weights(m2, o.save_dir, NULL, &err)) die("hf_load_weights (saved)", &err);
    if ((rc = model_forward(m2, &batch, 0, 0, &l1)))
      die("model_forward (saved)", &(ft_error){.code = rc});
    out_logits(&out, "logits_before", before, mc, o.task, B, T);
    float *after = full_logits(m2, o.task, B, T);
    out_logits(&out, "logits_reloaded", after, mc, o.task, B, T);
    free(after);
    float ls[2] = {l0, l1};
    out_scalars(&out, "loss_before_reloaded", ls, 2);
    free(before);
    model_free(m2);
  }

  if (st_write_f32(o.out_path, out.t, out.n, NULL, &err)) die(o.out_path, &err);
  for (size_t i = 0; i < out.n; i++) {
    free((void *)out.t[i].name);
    free((void *)out.t[i].data);
  }
  free(out.t);
  model_free(m);
  free(tokens.data);
  free(lens.data);
  if (have_targets) free(targets.data);
  if (have_labels) free(labels.data);
  if (have_pos) free(pos.data);
  if (have_seg) free(seg.data);
  return 0;
}
