/* The daemon's HTTP routes: the one table (tests/api/test_routes_openapi.py
 * compares it with openapi.yaml, both ways). One line per route:
 *   X(METHOD, "pattern", handler, BODY)
 * where a "{name}" segment matches one non-empty path segment (a capture,
 * r->params[i] in order), and BODY says how http.c treats the request body:
 *   HTTP_BODY_NONE    ignored (discarded, still capped at 1 MiB)
 *   HTTP_BODY_JSON    buffered up to 1 MiB, then the handler runs once
 *   HTTP_BODY_STREAM  the handler runs for every chunk (r->phase says which)
 * Keep each X( on one line: the route test reads this file with a regex. */
#ifndef FT_ROUTES_H
#define FT_ROUTES_H

#define FT_ROUTES(X)                                                                           \
  X(GET, "/healthz", api_healthz, HTTP_BODY_NONE)                                              \
  X(GET, "/readyz", api_readyz, HTTP_BODY_NONE)                                                \
  X(GET, "/metrics", api_metrics, HTTP_BODY_NONE)                                              \
  X(POST, "/v1/files", api_files_create, HTTP_BODY_STREAM)                                     \
  X(GET, "/v1/files", api_files_list, HTTP_BODY_NONE)                                          \
  X(GET, "/v1/files/{file_id}", api_files_get, HTTP_BODY_NONE)                                 \
  X(DELETE, "/v1/files/{file_id}", api_files_delete, HTTP_BODY_NONE)                           \
  X(GET, "/v1/files/{file_id}/content", api_files_content, HTTP_BODY_NONE)                     \
  X(POST, "/v1/fine_tuning/jobs", api_jobs_create, HTTP_BODY_JSON)                             \
  X(GET, "/v1/fine_tuning/jobs", api_jobs_list, HTTP_BODY_NONE)                                \
  X(GET, "/v1/fine_tuning/jobs/{fine_tuning_job_id}", api_jobs_get, HTTP_BODY_NONE)            \
  X(POST, "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", api_jobs_cancel, HTTP_BODY_NONE) \
  X(POST, "/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause", api_jobs_pause, HTTP_BODY_NONE)   \
  X(POST, "/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume", api_jobs_resume, HTTP_BODY_NONE) \
  X(GET, "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", api_jobs_events, HTTP_BODY_NONE)  \
  X(GET, "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", api_jobs_checkpoints,        \
    HTTP_BODY_NONE)                                                                            \
  X(GET, "/v1/models", api_models_list, HTTP_BODY_NONE)                                        \
  X(GET, "/v1/models/{model}", api_models_get, HTTP_BODY_NONE)                                 \
  X(DELETE, "/v1/models/{model}", api_models_delete, HTTP_BODY_NONE)                           \
  X(GET, "/v1/models/{model}/files/{name}", api_models_file, HTTP_BODY_NONE)                   \
  X(GET, "/v1/models/{model}/content", api_models_content, HTTP_BODY_NONE)                     \
  X(GET, "/v1/models/{model}/gguf", api_models_gguf, HTTP_BODY_NONE)                           \
  X(POST, "/v1/completions", api_completions, HTTP_BODY_JSON)                                  \
  X(POST, "/v1/chat/completions", api_chat_completions, HTTP_BODY_JSON)                        \
  X(POST, "/v1/classifications", api_classifications, HTTP_BODY_JSON)
#endif
