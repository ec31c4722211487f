/* Graceful shutdown of `finetuned serve` (SIGTERM/SIGINT).
 *
 * The sequence, run by main on its signal-waiting thread:
 *   1. systemd is told STOPPING=1 (main), the HTTP listener stops taking
 *      connections (refused) and new requests on open connections get 503
 *      (http_quiesce); SSE streams end;
 *   2. the pool stops handing out jobs and tells every busy worker to pause:
 *      the worker checkpoints at its next step boundary and says "paused",
 *      and the job goes back to "queued" with resume_from at that checkpoint,
 *      no attempt counted as lost (store_job_interrupt);
 *   3. main waits until no job is held and no request is in flight, at most
 *      the drain timeout; jobs still running then are queued again the same
 *      way (they resume from their last checkpoint) when the pool stops;
 *   4. the HTTP server, the pool (local workers get SIGTERM; they are idle)
 *      and the store are closed, and the daemon exits 0.
 * A second SIGTERM/SIGINT during the drain cuts it short: the daemon stops at
 * once and exits 1; running jobs are then left as after a crash (their lease
 * expires after the restart and they resume from their last checkpoint). */
#ifndef FT_SHUTDOWN_H
#define FT_SHUTDOWN_H
#include <signal.h>

#include "app.h"

#define SHUTDOWN_DEFAULT_DRAIN_MS 30000

/* Steps 1 to 3 above. signals: the set main waits on (a second one ends the
 * drain). Returns 0 when drained or timed out, 1 when cut short by a second
 * signal. httpd and app->pool may be NULL. */
struct MHD_Daemon;
int shutdown_drain(ft_app *app, struct MHD_Daemon *httpd, const sigset_t *signals,
                   int timeout_ms);
#endif
