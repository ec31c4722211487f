/* The daemon's SQLite store: files, jobs, events, checkpoints, API keys.
 * The daemon is the only process that opens the database; every write goes
 * through one connection, guarded by one mutex, inside BEGIN IMMEDIATE. WAL
 * mode; the numbered migrations of schema/ (embedded at build time) are
 * applied at open. Objects go in and out as jansson objects in the API's own
 * shapes (the OpenAI fine-tuning API's), so handlers pass them straight out.
 * Times are Unix seconds; ids are "file-…", "ftjob-…", "ftevent-…",
 * "ftckpt-…" with 24 random hex digits from the OS.
 *
 * Thread use: MHD threads and the libuv loop thread both call in; every
 * function is safe to call from any thread. Returns 0 or FT_E*; a returned
 * json_t* is a new reference the caller releases with json_decref.
 *
 * Lists: *list is {"object":"list","data":[…],"has_more":bool}, newest first
 * (files, jobs, events, checkpoints). after is the id of the last object of
 * the previous page or NULL; an unknown after (or one of another tenant or
 * job) is FT_ENOT_FOUND, which the API reports with param "after". limit
 * 1..100 (checked by the caller). */
#ifndef FT_STORE_H
#define FT_STORE_H
#include <jansson.h>
#include <stdint.h>

#include "ft_err.h"

typedef struct store store;

/* ---- the store ----------------------------------------------------------- */

int store_open(store **out, const char *db_path, ft_error *err);
void store_close(store *s);
int64_t store_now(void); /* Unix seconds */
/* "prefix-" + 24 hex digits from getrandom(2) into buf (>= 64 bytes) */
void store_new_id(const char *prefix, char *buf, size_t n);
/* Called after every job status change is recorded, with the store's lock
 * held (so it must not call the store): from is "" for a new job, reason the
 * status event's message. The daemon logs transitions with it (obs.h), so the
 * store depends on nothing above it. NULL (the default): nothing is called.
 * Set it before other threads use s. */
typedef void (*store_transition_fn)(const char *job_id, const char *from, const char *to,
                                    const char *reason);
void store_set_transition_hook(store *s, store_transition_fn fn);
/* Cheap liveness check of the database (a read of schema_migrations); 0 or
 * FT_EDB. */
int store_ping(store *s);
/* Wakes every store_events_wait and store_job_next_validating at once
 * (shutdown): they return at once from then on. */
void store_wake_all(store *s);

/* ---- files ----------------------------------------------------------------
 * A row for an upload already durable at files/<id>. */

/* A file row with its owner (NULL: "default"). status is "processed" or
 * "error" (it failed validation: status_details, one line, names the first
 * bad line); validation is the report of engine/data/dsval.h or NULL. */
int store_file_insert_tenant(store *s, const char *tenant, const char *id, int64_t bytes,
                             const char *filename, const char *purpose, const char *status,
                             const char *status_details, const json_t *validation,
                             json_t **file);
/* The same, owned by "default" and stored as "processed". */
int store_file_insert(store *s, const char *id, int64_t bytes, const char *filename,
                      const char *purpose, json_t **file);
int store_file_get(store *s, const char *id, json_t **file); /* FT_ENOT_FOUND */
/* The files of one tenant (NULL: all). */
int store_file_list_tenant(store *s, const char *tenant, const char *after, int limit,
                           json_t **list);
int store_file_list(store *s, const char *after, int limit, json_t **list); /* all */
/* Deletes the row; FT_ENOT_FOUND, or FT_EBAD_STATE (err names the job) while
 * a job that is not terminal uses the file. The caller removes the bytes. */
int store_file_delete(store *s, const char *id, ft_error *err);

/* ---- jobs: creation, reads and the user's actions (api_*.c) -------------- */

/* A job to create, already validated (spec_parse/spec_check_model). */
typedef struct {
  const char *model, *training_file, *validation_file /* or NULL */, *suffix /* or NULL */;
  const char *test_file;      /* or NULL */
  uint64_t seed;
  const json_t *spec;         /* resolved spec (spec_to_json) */
  const json_t *metadata;     /* object or NULL */
  const json_t *parent_model; /* lineage {"model","job"} when model is fine-tuned, or NULL */
  int queued;                 /* 1: insert as queued (its files need no validation: tests) */
  const char *tenant;         /* owner (auth.h); NULL: "default" */
} store_job_new;
/* Inserts a job in validating_files (queued with j->queued) and its "Job
 * created" event in one transaction, after checking (in it) that the files
 * exist (else FT_EINVALID naming training_file/validation_file/test_file).
 * *job is the job object. */
int store_job_insert(store *s, const store_job_new *j, json_t **job, ft_error *err);
int store_job_get(store *s, const char *id, json_t **job); /* FT_ENOT_FOUND */
/* The jobs of one tenant (NULL: all). */
int store_job_list_tenant(store *s, const char *tenant, const char *after, int limit,
                          json_t **list);
/* User actions. cancel: queued|paused|running|pausing|validating_files ->
 * cancelled; pause: running -> pausing, queued -> paused; resume: paused ->
 * queued. FT_ENOT_FOUND, or FT_EBAD_STATE (err says the status) when not
 * allowed. Append a status event; *job (may be NULL) is the job after. */
int store_job_cancel(store *s, const char *id, json_t **job, ft_error *err);
int store_job_pause(store *s, const char *id, json_t **job, ft_error *err);
int store_job_resume(store *s, const char *id, json_t **job, ft_error *err);
/* The job's status into buf ("" and FT_ENOT_FOUND if none). */
int store_job_status(store *s, const char *id, char *buf, size_t n);
/* True for succeeded/failed/cancelled. */
int store_status_terminal(const char *status);
/* Jobs per status as {"queued":n,…} with every status present. */
int store_job_counts(store *s, json_t **counts);
/* Jobs of tenant waiting to run (validating_files or queued). */
int store_jobs_waiting(store *s, const char *tenant, int *n);
/* Whether a job that is not terminal uses model_id as its base: *n jobs. */
int store_jobs_using_model(store *s, const char *model_id, int *n);
/* The job that produced fine-tuned model_id: {"job":id,"parent":model} or
 * FT_ENOT_FOUND. */
int store_model_origin(store *s, const char *model_id, json_t **origin);

/* ---- jobs: leases, for the worker pool (pool.c, shutdown.c) -------------- */

/* Moves the oldest queued job to running, attempt += 1, leased to worker_id
 * until now + lease_ms. *job is the job object (as GET returns it) plus
 * "attempt", "spec" (the resolved spec) and "resume_from" (path of the latest
 * checkpoint or null); NULL when the queue is empty. */
int store_job_claim(store *s, const char *worker_id, int lease_ms, json_t **job);
/* Renews the lease. FT_EBAD_STATE if (job, attempt) is not the running or
 * pausing attempt (stale: the worker must stop). */
int store_job_heartbeat(store *s, const char *job_id, int attempt, int lease_ms);
/* What the pool should tell the worker running (job, attempt): 0 nothing,
 * 1 cancel (job was cancelled), 2 pause (job is pausing). FT_EBAD_STATE
 * when the attempt is stale (another attempt, or the job is queued, paused,
 * failed or succeeded: e.g. its lease expired): the worker lost its lease. */
int store_job_control(store *s, const char *job_id, int attempt, int *what);
/* Ends an attempt. status: "succeeded" (model_id/model_path set: the daemon
 * has already moved the output into models/) or "failed" (err set), from
 * running or pausing; "paused" only from pausing; "cancelled" is only a
 * worker's acknowledgement of the user's cancel: 0 and no change when the
 * job is already cancelled at this attempt (a worker never cancels a job).
 * Refused (FT_EBAD_STATE) for a stale attempt or any other status. Appends a
 * status event when the status changes. Counts in result ("steps",
 * "trained_tokens") are read only when they are JSON integers. */
int store_job_finish(store *s, const char *job_id, int attempt, const char *status,
                     const ft_error *err, const char *model_id, const char *model_path,
                     const json_t *result);
/* Expired leases: running jobs go back to queued, or fail with worker_lost
 * when this is the max_attempts-th lease of the job that ran out (attempts
 * that ended in a pause do not count); pausing jobs become paused. Returns
 * how many jobs changed in *n. */
int store_jobs_expire(store *s, int max_attempts, int *n);
/* The daemon is stopping and ends (job, attempt) itself: a running job goes
 * back to queued (resume_from stays its latest checkpoint, which a worker's
 * pause has just written) and a pausing one becomes paused, with no lost
 * attempt counted and a status event (data: reason "shutdown", step,
 * resume_step). step: where the worker stopped, or -1 if it did not stop
 * (the drain timed out). FT_EBAD_STATE for a stale attempt or another
 * status (e.g. cancelled meanwhile). */
int store_job_interrupt(store *s, const char *job_id, int attempt, long step);

/* ---- jobs: file validation (validate.c) ----------------------------------
 * A job is created in validating_files; the validator prepares its data as
 * the worker will, then moves it to queued (with the data sets' statistics)
 * or failed. */

/* Blocks until a job in validating_files comes after list position
 * *after_n (0 at first: every such job), then its id into id and its
 * position into *after_n; FT_ENOT_FOUND after timeout_ms, FT_ECANCELLED once
 * store_wake_all was called. Any job insert wakes it. */
int store_job_next_validating(store *s, int64_t *after_n, char *id, size_t n, int timeout_ms);
/* The job object plus spec, resume_from, worker and result (as claim). */
int store_job_get_internal(store *s, const char *id, json_t **job);
/* validating_files -> queued with datasets ({"training","validation","test"});
 * FT_EBAD_STATE when the job is not validating_files (cancelled meanwhile). */
int store_job_validated(store *s, const char *id, const json_t *datasets);
/* validating_files -> failed with err (its code, param and message). */
int store_job_invalid(store *s, const char *id, const ft_error *err);

/* ---- events ---------------------------------------------------------------- */

/* Appends an event (level "info"|"warn"|"error", type "message"|"metrics"|
 * "status"...). Wakes store_events_wait. *seq may be NULL. */
int store_event_append(store *s, const char *job_id, const char *level, const char *type,
                       const char *message, const json_t *data, int64_t *seq);
/* A worker's event (type "message") for (job, attempt): recorded only while
 * that attempt is the job's and the job is running or pausing, else
 * FT_EBAD_STATE (stale: the worker lost its lease). data may be NULL. */
int store_job_event(store *s, const char *job_id, int attempt, const char *level,
                    const char *message, const json_t *data);
/* Records one step's metrics: updates steps_completed / total_steps /
 * trained_tokens / epochs on the job and appends a "metrics" event whose data
 * is the metrics object. The counts are read only when JSON integers (step
 * must be one: else FT_EINVALID); the pool checks their range. FT_EBAD_STATE
 * for a stale attempt. Renews the lease. */
int store_job_metrics(store *s, const char *job_id, int attempt, const json_t *metrics,
                      int lease_ms);
/* Events of a job (FT_ENOT_FOUND if no such job). list: newest first. */
int store_events_list(store *s, const char *job_id, const char *after, int limit,
                      json_t **list);
/* For SSE: up to max events with seq > after_seq, oldest first, as an array
 * of {"seq":n,"event":{…}}; *status gets the job's status (buf of >= 24). */
int store_events_since(store *s, const char *job_id, int64_t after_seq, int max,
                       json_t **events, char *status, size_t status_n);
/* Blocks until the job has an event with seq > after_seq, the job is
 * terminal or paused, timeout_ms passes, or store_wake_all is called. */
void store_events_wait(store *s, const char *job_id, int64_t after_seq, int timeout_ms);

/* ---- checkpoints ------------------------------------------------------------ */

/* Records a complete checkpoint of (job, attempt) at step, at path, with the
 * step's metrics; it becomes the job's resume point. */
int store_checkpoint_add(store *s, const char *job_id, int attempt, long step, const char *path,
                         const json_t *metrics);
/* Drops the rows of job_id's checkpoints whose step is not in kept (an array
 * of integers: the steps still on disk). Not an array: nothing changes. */
int store_checkpoints_prune(store *s, const char *job_id, const json_t *kept);
/* The checkpoint of job_id at step still on disk: {"path", "created_at",
 * "model" (the job's base), "spec" (the job's resolved spec), "suffix"};
 * FT_ENOT_FOUND. */
int store_checkpoint_find(store *s, const char *job_id, long step, json_t **ckpt);
/* Checkpoints of a job (FT_ENOT_FOUND if no such job). list: newest first. */
int store_checkpoints_list(store *s, const char *job_id, const char *after, int limit,
                           json_t **list);
/* The model ids ("ft:…:ckpt-step-N") of every recorded checkpoint (those
 * still on disk), oldest first. */
int store_checkpoint_model_ids(store *s, json_t **ids);

/* ---- API keys and tenants (auth.c) -----------------------------------------
 * Keys are stored by the hex SHA-256 of the whole key; names and tenants are
 * checked by the caller (auth_name_ok). A tenant argument of NULL means every
 * tenant (admin keys); files and jobs without one belong to "default". */
#define STORE_TENANT_MAX 64
#define STORE_DEFAULT_TENANT "default" /* the owner of what has no tenant */
/* FT_EBAD_STATE (err names "name") when a key has that name already. */
int store_key_insert(store *s, const char *id, const char *name, const char *tenant, int admin,
                     const char *hash, const char *prefix, ft_error *err);
/* Every key, oldest first, without hashes: [{id,name,tenant,admin,prefix,
 * created_at,revoked_at}]. */
int store_key_list(store *s, json_t **keys);
/* Revokes the key whose id or name is id_or_name (a revoked key stays
 * revoked); *key (may be NULL) is the key after. FT_ENOT_FOUND. */
int store_key_revoke(store *s, const char *id_or_name, json_t **key);
/* The working key with that hash: its id, tenant and admin flag;
 * FT_ENOT_FOUND for an unknown or revoked key. */
int store_key_find(store *s, const char *hash, char *id, size_t id_n, char *tenant,
                   size_t tenant_n, int *admin);
/* How many keys were ever created (revoked ones count: once keys are in use
 * they stay required). */
int store_key_count(store *s, int *n);
/* The tenant of a file or job ("file" or "job"); FT_ENOT_FOUND. */
int store_tenant_of(store *s, const char *kind, const char *id, char *tenant, size_t n);
#endif
