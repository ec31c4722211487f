/* Models API: the model directories under <data>/models (DESIGN.md 5) as
 * OpenAI model objects, deletion of fine-tuned ones, and download of a
 * model's files. The directory is the truth, not the database: a model is a
 * subdirectory with a config.json (base models come from `finetuned
 * import-model` or `init-model`; fine-tuned ones, named "ft:…", from the
 * pool when a job succeeds). Names starting with "." are work in progress
 * (temp copies, deletions) and never listed. Downloads are served from the
 * file descriptor (sendfile), never read into memory.
 * Tenants (auth.h): base models are everyone's; a fine-tuned model or a
 * checkpoint is its job's tenant's, and to anyone else it does not exist
 * (404 on every route, absent from the list). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "ft_fs.h"
#include "ft_log.h"
#include "formats/hfdir.h"
#include "http.h"
#include "infer_pool.h"
#include "model_id.h"
#include "store.h"

/* The files of a model directory that can be downloaded. The adapter files
 * may sit in an adapter/ subdirectory beside the merged weights. */
static const char *const downloadable[] = {
    "config.json", "model.safetensors",     "tokenizer.json",      "vocab.json",
    "merges.txt",  "tokenizer_config.json", "adapter_config.json", "adapter_model.safetensors",
    NULL};

static int is_fine_tuned(const char *id) { return !strncmp(id, "ft:", 3); }

/* A checkpoint id ("…:ckpt-step-N") whose checkpoint is still on disk, as a
 * model object with its job, that job's model (parent) and the step; NULL
 * when it is not one. */
static void describe_model(json_t *m, ft_app *app, const char *id);

/* Whether models/<id>/config.json is a file (mtime into *mtime if not NULL). */
static int has_model_dir(ft_app *app, const char *id, time_t *mtime) {
  char path[PATH_MAX];
  struct stat sb;
  if (!model_id_ok(id) ||
      ft_pathf(path, sizeof path, "%s/models/%s/config.json", app->data_dir, id) ||
      stat(path, &sb) || !S_ISREG(sb.st_mode))
    return 0;
  if (mtime) *mtime = sb.st_mtime;
  return 1;
}

static json_t *ckpt_model_json(ft_app *app, const char *id) {
  char job[64];
  long step = 0;
  json_t *ck = NULL;
  if (!model_id_ckpt(id, job, sizeof job, &step) ||
      store_checkpoint_find(app->store, job, step, &ck))
    return NULL;
  json_t *m = json_pack("{s:s, s:s, s:O, s:s, s:s, s:O, s:I}", "id", id, "object", "model",
                        "created", json_object_get(ck, "created_at"), "owned_by", "user", "job",
                        job, "parent", json_object_get(ck, "model"), "step", (json_int_t)step);
  /* what it is: the job's fine-tuned model when there is one (the same
   * architecture, task and labels), else the job's base model, a
   * classifier when the job trains one (its labels known once it ends) */
  char ft[600];
  const char *last = strrchr(id, ':');
  snprintf(ft, sizeof ft, "%.*s", last ? (int)(last - id) : 0, id);
  if (m && ft[0] && has_model_dir(app, ft, NULL)) {
    describe_model(m, app, ft);
  } else if (m) {
    describe_model(m, app, json_string_value(json_object_get(ck, "model")));
    json_t *method = json_object_get(json_object_get(ck, "spec"), "method");
    const char *type = json_string_value(json_object_get(method, "type"));
    if (type && !strcmp(type, "classification")) {
      json_object_set_new(m, "task", json_string("classification"));
      json_object_set_new(m, "labels", json_null());
    }
  }
  json_decref(ck);
  return m;
}

/* What config.json says: "architecture" (model_type), "task" (causal_lm or
 * classification), "labels" (classifiers) and "context_length"; nulls for a
 * config the engine cannot read. */
static void describe_model(json_t *m, ft_app *app, const char *id) {
  char dir[PATH_MAX];
  ft_config *cfg = calloc(1, sizeof *cfg);
  ft_error e = {0};
  if (!cfg || ft_pathf(dir, sizeof dir, "%s/models/%s", app->data_dir, id) ||
      hf_config_load(cfg, dir, &e)) {
    json_object_set_new(m, "architecture", json_null());
    json_object_set_new(m, "task", json_null());
    json_object_set_new(m, "labels", json_null());
    json_object_set_new(m, "context_length", json_null());
    free(cfg);
    return;
  }
  json_t *labels = json_null();
  if (cfg->num_labels > 0) {
    labels = json_array();
    for (int i = 0; i < cfg->num_labels; i++)
      json_array_append_new(labels, json_string(cfg->id2label[i]));
  }
  json_object_set_new(m, "architecture", json_string(cfg->model_type));
  json_object_set_new(m, "task",
                      json_string(cfg->num_labels > 0 ? "classification" : "causal_lm"));
  json_object_set_new(m, "labels", labels);
  json_object_set_new(m, "context_length", json_integer(cfg->max_position));
  free(cfg);
}

/* The model object for id, or NULL if models/<id>/config.json is missing. */
static json_t *model_json(ft_app *app, const char *id) {
  time_t mtime;
  if (!has_model_dir(app, id, &mtime)) return ckpt_model_json(app, id);
  json_t *m =
      json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created",
                (json_int_t)mtime, "owned_by", is_fine_tuned(id) ? "user" : "finetuned");
  if (m) describe_model(m, app, id);
  json_t *ck = NULL;
  if (m && is_fine_tuned(id) && (ck = ckpt_model_json(app, id)) != NULL) {
    /* a checkpoint materialised as a model: its lineage */
    json_object_set(m, "job", json_object_get(ck, "job"));
    json_object_set(m, "parent", json_object_get(ck, "parent"));
    json_object_set(m, "step", json_object_get(ck, "step"));
    json_decref(ck);
  } else if (m && is_fine_tuned(id)) {
    json_t *origin = NULL;
    if (store_model_origin(app->store, id, &origin) == 0) {
      json_object_update(m, origin);
    } else {
      json_object_set_new(m, "job", json_null());
      json_object_set_new(m, "parent", json_null());
    }
    json_decref(origin);
  }
  return m;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

enum MHD_Result api_models_list(http_req *r) {
  char dir[PATH_MAX];
  ft_pathf(dir, sizeof dir, "%s/models", r->app->data_dir);
  DIR *d = opendir(dir);
  json_t *data = json_array();
  if (d) {
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!model_id_ok(e->d_name)) continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 32;
        char **nn = realloc(names, cap * sizeof *names);
        if (!nn) break;
        names = nn;
      }
      names[n] = strdup(e->d_name);
      if (names[n]) n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
      json_t *m = auth_model_visible(r, names[i]) ? model_json(r->app, names[i]) : NULL;
      if (m) json_array_append_new(data, m);
      free(names[i]);
    }
    free(names);
  }
  /* then the checkpoints still on disk that are not directories yet */
  json_t *ids = NULL, *v;
  size_t i;
  if (store_checkpoint_model_ids(r->app->store, &ids) == 0) {
    json_array_foreach(ids, i, v) {
      const char *id = json_string_value(v);
      if (has_model_dir(r->app, id, NULL)) continue; /* listed above */
      json_t *m = auth_model_visible(r, id) ? ckpt_model_json(r->app, id) : NULL;
      if (m) json_array_append_new(data, m);
    }
  }
  json_decref(ids);
  return http_reply_json(
      r, 200, json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", 0));
}

enum MHD_Result api_models_get(http_req *r) {
  if (auth_model_or_reply(r, r->params[0], "model")) return MHD_YES;
  json_t *m = model_json(r->app, r->params[0]);
  if (!m) return http_fail(r, FT_ENOT_FOUND, "model", "no such model: %s", r->params[0]);
  return http_reply_json(r, 200, m);
}

enum MHD_Result api_models_delete(http_req *r) {
  const char *id = r->params[0];
  if (auth_model_or_reply(r, id, "model")) return MHD_YES;
  json_t *m = model_json(r->app, id);
  if (!m) return http_fail(r, FT_ENOT_FOUND, "model", "no such model: %s", id);
  json_decref(m);
  if (!is_fine_tuned(id))
    return http_fail(r, FT_EFORBIDDEN, "model",
                     "%s is a base model; only fine-tuned models (ft:…) can be deleted", id);
  int users = 0;
  int rc = store_jobs_using_model(r->app->store, id, &users);
  if (rc) return http_fail(r, rc, NULL, NULL);
  if (users)
    return http_fail(r, FT_EBAD_STATE, "model", "%d unfinished job(s) fine-tune %s", users, id);
  /* Rename out of sight first (atomic: the model is gone for every reader at
   * once), then remove the files. */
  char from[PATH_MAX], to[PATH_MAX], tag[64];
  store_new_id(".deleting", tag, sizeof tag);
  if (ft_pathf(from, sizeof from, "%s/models/%s", r->app->data_dir, id) ||
      ft_pathf(to, sizeof to, "%s/models/%s", r->app->data_dir, tag))
    return http_fail(r, FT_EIO, NULL, "path too long");
  if (rename(from, to)) {
    if (errno == ENOENT) return http_fail(r, FT_ENOT_FOUND, "model", "no such model: %s", id);
    return http_fail(r, FT_EIO, NULL, "cannot delete %s: %s", id, strerror(errno));
  }
  if (r->app->infer && infer_pool_forget(r->app->infer, from))
    FT_INFO("msg=\"deleted model dropped from the inference cache\" id=%s", id);
  if (ft_rmtree(to, NULL))
    FT_WARN("msg=\"model files left behind\" path=\"%s\" err=\"%s\"", to, strerror(errno));
  FT_INFO("msg=\"model deleted\" id=%s", id);
  return http_reply_json(r, 200,
                         json_pack("{s:s, s:s, s:b}", "id", id, "object", "model", "deleted", 1));
}

enum MHD_Result api_models_file(http_req *r) {
  const char *id = r->params[0], *name = r->params[1];
  if (auth_model_or_reply(r, id, "model")) return MHD_YES;
  char dir[PATH_MAX];
  ft_error e = {0};
  /* (a checkpoint id is exported on first use, as for serving and export) */
  if (model_id_resolve(r->app->store, r->app->data_dir, auth_tenant(r), "model", id, dir,
                       sizeof dir, &e))
    return http_fail_err(r, &e);
  int allowed = 0;
  for (int i = 0; downloadable[i]; i++) allowed |= !strcmp(name, downloadable[i]);
  if (!allowed) return http_fail(r, FT_ENOT_FOUND, "name", "no downloadable file named %s", name);
  char path[PATH_MAX];
  int fd = -1;
  if (!ft_pathf(path, sizeof path, "%s/%s", dir, name))
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && !strncmp(name, "adapter_", 8) &&
      !ft_pathf(path, sizeof path, "%s/adapter/%s", dir, name))
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    if (fd >= 0) close(fd);
    return http_fail(r, FT_ENOT_FOUND, "name", "model %s has no file %s", id, name);
  }
  struct MHD_Response *resp = MHD_create_response_from_fd((size_t)sb.st_size, fd);
  if (!resp) {
    close(fd);
    return http_fail(r, FT_ENOMEM, NULL, NULL);
  }
  size_t nl = strlen(name);
  const char *ct = nl > 5 && !strcmp(name + nl - 5, ".json")  ? "application/json"
                   : nl > 4 && !strcmp(name + nl - 4, ".txt") ? "text/plain; charset=utf-8"
                                                              : "application/octet-stream";
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
  r->replied = 1;
  return http_queue(r->conn, 200, resp);
}
