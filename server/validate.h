/* The daemon's validating_files phase: a job is created in status
 * validating_files, and one background thread prepares its data exactly as
 * the worker will (engine/data/data.h data_prepare with the ft_data_job of
 * train_data_job, the model's tokenizer and chat family), then moves it to
 * queued with the data sets' statistics ("datasets"), or to failed with
 * invalid_training_file / invalid_validation_file naming the line. A job
 * whose model is a checkpoint id ("…:ckpt-step-N") first has that checkpoint
 * materialised into models/ (model_id_materialise). Jobs found in
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
#endif
