/* The daemon's validating_files phase: a job is created in status
 * validating_files, and one background thread prepares its data exactly as
 * the worker will (engine/data.h data_prepare with the ft_data_job of
 * train_data_job, the model's tokenizer and chat family), then moves it to
 * queued with the data sets' statistics ("datasets"), or to failed with
 * invalid_training_file / invalid_validation_file naming the line. A job
 * whose model is a checkpoint id ("…:ckpt-step-N") first has that checkpoint
 * materialised into models/ (train_export_checkpoint). Jobs found in
 * validating_files at start are validated again. */
#ifndef FT_VALIDATE_H
#define FT_VALIDATE_H
#include "ft_err.h"
#include "pool.h"
#include "store.h"

typedef struct validator validator;

/* Starts the thread. p (may be NULL) is told when a job becomes queued. */
int validate_start(validator **out, store *s, pool *p, const char *data_dir, ft_error *err);
/* Stops the thread (after the job it is on, if any) and frees v. */
void validate_stop(validator *v);

/* "…:ckpt-step-N" model ids: the producing job's id into job (>= 64 bytes)
 * and N into *step, returning 1; 0 when id is not a checkpoint id. */
int validate_ckpt_id(const char *id, char *job, size_t job_n, long *step);
/* models/<id> for a checkpoint id: the base model of the checkpoint's job
 * with its trained tensors applied (train_export_checkpoint), written once
 * to a temp dir and renamed in, so racing callers (the validation thread,
 * serving, export) are harmless. 0 when it exists or was made;
 * FT_ENOT_FOUND for an unknown or pruned checkpoint (param "model"). */
int validate_materialise(store *s, const char *data_dir, const char *id, ft_error *err);
#endif
