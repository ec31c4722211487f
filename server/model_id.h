/* Model ids and what they name. A model id is a directory name under
 * <data>/models: a base model ("tiny", "base-8m"), a fine-tuned model
 * ("ft:<base>:<suffix>:ftjob-<24 hex>") or a checkpoint of a job
 * ("ft:…:ftjob-…:ckpt-step-N"), which is exported into models/ the first
 * time it is used. The parsers here are the only ones; every place that
 * turns an id into a directory (serving, export, the validation thread, job
 * creation) goes through model_id_resolve or model_id_materialise. Tenants:
 * a base model is everyone's, a fine-tuned model or checkpoint its job's. */
#ifndef FT_MODEL_ID_H
#define FT_MODEL_ID_H
#include <stddef.h>

#include "ft_err.h"
#include "store.h"

#define MODEL_ID_MAX 255 /* bytes: a directory name */

/* Whether id can name a directory under models/: 1..MODEL_ID_MAX bytes, no
 * path separators, no leading dot, no control characters. */
int model_id_ok(const char *id);
/* A checkpoint id ("ft:…:ftjob-…:ckpt-step-N"): the producing job's id into
 * job (>= 31 bytes) and N into *step, returning 1; 0 when it is not one. */
int model_id_ckpt(const char *id, char *job, size_t job_n, long *step);
/* A fine-tuned model id ("ft:…:ftjob-<24 hex>"): the job id into job (>= 31
 * bytes), returning 1; 0 when it is not one. */
int model_id_job(const char *id, char *job, size_t job_n);

/* Whether a caller of tenant viewer (NULL: an admin, who sees every tenant)
 * may see model id: a base model is everyone's; a fine-tuned model or a
 * checkpoint is its job's tenant's ("default" when no job made it). Does not
 * check that the model exists. */
int model_id_visible(store *s, const char *id, const char *viewer);

/* models/<id> for a checkpoint id: the base model of the checkpoint's job
 * with its trained tensors applied (train_export_checkpoint), written once
 * to a temp dir and renamed in, so racing callers (the validation thread,
 * serving, export) are harmless. 0 when it exists or was made;
 * FT_ENOT_FOUND for an unknown or pruned checkpoint (param "model"). */
int model_id_materialise(store *s, const char *data_dir, const char *id, ft_error *err);

/* models/<id> into dir, once its config.json is there: a checkpoint id is
 * materialised on first use; a model whose job has not succeeded is
 * FT_EBAD_STATE (409); an unknown one, or one viewer may not see,
 * FT_ENOT_FOUND (404). param names the field in err ("model", "models[1]"). */
int model_id_resolve(store *s, const char *data_dir, const char *viewer, const char *param,
                     const char *id, char *dir, size_t n, ft_error *err);
#endif
