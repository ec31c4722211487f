/* Model ids (model_id.h): parsing by hand, since the formats are fixed and
 * short, and resolution to directories under <data>/models. Workload: one
 * resolution per serving or export request and per job created, a stat or
 * two each; exporting a checkpoint happens once per checkpoint id, in the
 * thread that first asks for it, and costs a model load and save. */
#include "model_id.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ft_fs.h"
#include "ft_log.h"
#include "train/spec.h"
#include "train/train.h"


int model_id_ok(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > MODEL_ID_MAX || id[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') return 0;
  }
  return 1;
}

int model_id_ckpt(const char *id, char *job, size_t job_n, long *step) {
  const char *k = strstr(id, ":ckpt-step-");
  if (!k || strncmp(id, "ft:", 3)) return 0;
  while (strstr(k + 1, ":ckpt-step-")) k = strstr(k + 1, ":ckpt-step-");
  const char *num = k + strlen(":ckpt-step-");
  char *end;
  errno = 0;
  long n = strtol(num, &end, 10);
  if (*num < '0' || *num > '9' || *end || errno || n < 0) return 0;
  /* the job id is the last ':' component before the suffix */
  const char *j = k;
  while (j > id && j[-1] != ':') j--;
  size_t len = (size_t)(k - j);
  if (len != 30 || strncmp(j, "ftjob-", 6) || len >= job_n) return 0;
  memcpy(job, j, len);
  job[len] = 0;
  *step = n;
  return 1;
}

int model_id_job(const char *id, char *job, size_t job_n) {
  if (strncmp(id, "ft:", 3)) return 0;
  const char *j = strrchr(id, ':');
  if (!j || strncmp(j + 1, "ftjob-", 6) || strlen(j + 1) != 30 || job_n <= 30) return 0;
  memcpy(job, j + 1, 31);
  return 1;
}

int model_id_visible(store *s, const char *id, const char *viewer) {
  if (!viewer || strncmp(id, "ft:", 3)) return 1;
  char job[64] = "";
  long step;
  json_t *origin = NULL;
  if (!model_id_ckpt(id, job, sizeof job, &step)) {
    /* the store's record of the model, else the job its name ends with */
    if (store_model_origin(s, id, &origin) == 0)
      snprintf(job, sizeof job, "%s", json_string_value(json_object_get(origin, "job")));
    json_decref(origin);
    const char *last = strrchr(id, ':');
    if (!job[0] && last && !strncmp(last + 1, "ftjob-", 6))
      snprintf(job, sizeof job, "%s", last + 1);
  }
  char tenant[STORE_TENANT_MAX + 1] = STORE_DEFAULT_TENANT;
  if (job[0] && store_tenant_of(s, "job", job, tenant, sizeof tenant))
    snprintf(tenant, sizeof tenant, "%s", STORE_DEFAULT_TENANT);
  return !strcmp(tenant, viewer);
}

int model_id_materialise(store *st, const char *data_dir, const char *id, ft_error *err) {
  char dir[PATH_MAX], cfg[PATH_MAX + 16], job[64];
  long step = 0;
  struct stat sb;
  if (snprintf(dir, sizeof dir, "%s/models/%s", data_dir, id) >= (int)sizeof dir)
    return ft_error_set(err, FT_EINVALID, "model", "model id too long");
  snprintf(cfg, sizeof cfg, "%s/config.json", dir);
  if (stat(cfg, &sb) == 0) return 0; /* done before */
  if (!model_id_ckpt(id, job, sizeof job, &step))
    return ft_error_set(err, FT_EINVALID, "model", "unknown model \"%.200s\"", id);
  json_t *ck = NULL;
  int rc = store_checkpoint_find(st, job, step, &ck);
  if (rc == FT_ENOT_FOUND)
    return ft_error_set(err, FT_ENOT_FOUND, "model",
                        "no such model: %.200s (the checkpoint does not exist or was pruned)", id);
  if (rc) return ft_error_set(err, rc, NULL, "cannot read checkpoint %.200s", id);
  ft_spec *pspec = calloc(1, sizeof *pspec);
  char base[PATH_MAX], tmp[PATH_MAX], tag[64];
  store_new_id(".tmp-ckpt", tag, sizeof tag);
  snprintf(base, sizeof base, "%s/models/%s", data_dir,
           json_string_value(json_object_get(ck, "model")));
  snprintf(tmp, sizeof tmp, "%s/models/%s", data_dir, tag);
  const char *path = json_string_value(json_object_get(ck, "path"));
  if (!pspec)
    rc = ft_error_set(err, FT_ENOMEM, NULL, NULL);
  else if ((rc = spec_parse(json_object_get(ck, "spec"), pspec, err)) == 0)
    rc = train_export_checkpoint(pspec, base, path, tmp, err);
  if (!rc && rename(tmp, dir) && errno != EEXIST && errno != ENOTEMPTY)
    rc = ft_error_set(err, FT_EIO, "model", "cannot move checkpoint %.200s into models/: %s", id,
                      strerror(errno));
  if (rc) {
    char m[sizeof err->message], param[sizeof err->param];
    snprintf(m, sizeof m, "%s", err->message[0] ? err->message : ft_err_message(rc));
    snprintf(param, sizeof param, "%s", err->param[0] ? err->param : "model");
    ft_error_set(err, rc, param, "cannot use checkpoint %.120s: %s", id, m);
  }
  ft_rmtree(tmp, NULL); /* (gone after a successful rename) */
  if (!rc) FT_INFO("msg=\"checkpoint materialised as a model\" model=%s from=%s", id, path);
  free(pspec);
  json_decref(ck);
  return rc;
}

int model_id_resolve(store *s, const char *data_dir, const char *viewer, const char *param,
                     const char *id, char *dir, size_t n, ft_error *err) {
  char cfg[PATH_MAX], job[64];
  struct stat sb;
  long step;
  if (!model_id_ok(id) || !model_id_visible(s, id, viewer) ||
      snprintf(dir, n, "%s/models/%s", data_dir, id) >= (int)n ||
      snprintf(cfg, sizeof cfg, "%s/config.json", dir) >= (int)sizeof cfg)
    return ft_error_set(err, FT_ENOT_FOUND, param, "no such model: %.200s", id);
  if (stat(cfg, &sb) == 0 && S_ISREG(sb.st_mode)) return 0;
  if (model_id_ckpt(id, job, sizeof job, &step)) {
    int rc = model_id_materialise(s, data_dir, id, err);
    if (rc) {
      snprintf(err->param, sizeof err->param, "%s", param);
      return rc;
    }
    return 0;
  }
  if (model_id_job(id, job, sizeof job)) {
    char status[32];
    if (store_job_status(s, job, status, sizeof status) == 0 && strcmp(status, "succeeded")) {
      if (!store_status_terminal(status))
        return ft_error_set(err, FT_EBAD_STATE, param,
                            "model %.200s is not ready: its fine-tuning job %s is %s", id, job,
                            status);
      return ft_error_set(err, FT_ENOT_FOUND, param,
                          "no such model: %.200s (its fine-tuning job %s is %s)", id, job, status);
    }
  }
  return ft_error_set(err, FT_ENOT_FOUND, param, "no such model: %.200s", id);
}
