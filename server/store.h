/* The daemon's SQLite store: files, jobs, events, checkpoints and models.
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
 * json_t* is a new reference the caller releases with json_decref. */
#ifndef FT_STORE_H
#define FT_STORE_H
#include <jansson.h>
#include <stdint.h>

#include "ft_err.h"

typedef struct store store;

int store_open(store **out, const char *db_path, ft_error *err);
void store_close(store *s);
int64_t store_now(void); /* Unix seconds */
/* "prefix-" + 24 hex digits from getrandom(2) into buf (>= 64 bytes) */
void store_new_id(const char *prefix, char *buf, size_t n);

/* ---- jobs: the parts the worker pool (pool.c) uses ---------------------- */

/* Moves the oldest queued job to running, attempt += 1, leased to worker_id
 * until now + lease_ms. *job is the job object (as GET returns it) plus
 * "attempt", "spec" (the resolved spec) and "resume_from" (path of the latest
 * checkpoint or null); NULL when the queue is empty. */
int store_job_claim(store *s, const char *worker_id, int lease_ms, json_t **job);
/* Renews the lease. FT_EBAD_STATE if (job, attempt) is not the running or
 * pausing attempt (stale: the worker must stop). */
int store_job_heartbeat(store *s, const char *job_id, int attempt, int lease_ms);
/* Records one step's metrics: updates steps_completed / total_steps /
 * trained_tokens / epochs on the job and appends a "metrics" event whose data
 * is the metrics object. FT_EBAD_STATE for a stale attempt. Renews the lease. */
int store_job_metrics(store *s, const char *job_id, int attempt, const json_t *metrics,
                      int lease_ms);
/* Appends an event (level "info"|"warn"|"error", type "message"|"metrics"|
 * "status"...). Wakes store_events_wait. *seq may be NULL. */
int store_event_append(store *s, const char *job_id, const char *level, const char *type,
                       const char *message, const json_t *data, int64_t *seq);
/* Records a complete checkpoint of (job, attempt) at step, at path, with the
 * step's metrics; it becomes the job's resume point. */
int store_checkpoint_add(store *s, const char *job_id, int attempt, long step, const char *path,
                         const json_t *metrics);
/* Ends an attempt. status: "succeeded" (model_id/model_path set: the daemon
 * has already moved the output into models/), "failed" (err set),
 * "cancelled", or "paused". Refused (FT_EBAD_STATE) for a stale attempt or a
 * job already terminal. Appends a status event. */
int store_job_finish(store *s, const char *job_id, int attempt, const char *status,
                     const ft_error *err, const char *model_id, const char *model_path,
                     const json_t *result);
/* Expired leases: running jobs go back to queued (or fail with worker_lost
 * once attempt >= max_attempts); pausing jobs become paused. Returns how many
 * jobs changed in *n. */
int store_jobs_expire(store *s, int max_attempts, int *n);
/* What the pool should tell the worker running (job, attempt): 0 nothing,
 * 1 cancel (job was cancelled), 2 pause (job is pausing). */
int store_job_control(store *s, const char *job_id, int attempt, int *what);

/* ---- events for SSE ------------------------------------------------------ */
/* Blocks until the job has an event with seq > after_seq, the job is
 * terminal, or timeout_ms passes. */
void store_events_wait(store *s, const char *job_id, int64_t after_seq, int timeout_ms);
#endif
