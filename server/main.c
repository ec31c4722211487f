/* finetuned: the daemon's entry point and its maintenance commands.
 *   serve         open the store, start the worker pool and the HTTP API,
 *                 run until SIGTERM/SIGINT (systemd: Type=notify)
 *   import-model  copy a Hugging Face model directory into <data>/models/NAME
 *   init-model    write a randomly initialised model directory (tests, demos)
 *   train-tokenizer  learn a byte-level BPE tokenizer from text (engine/tok/bpe_train.h)
 *   export-gguf   write a model directory or its LoRA adapter as GGUF (llama.cpp)
 * The only place that exits (STYLE.md 7). Signals are blocked in every thread
 * and taken synchronously here with sigwait, so no handler runs in the middle
 * of a library call. Shutdown: first a drain (shutdown.h: no new
 * connections, running jobs paused at a checkpoint and queued again, requests
 * in flight finished), then the HTTP server (no handler can call into the
 * pool any more), then the pool (workers stop), then the store. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "tok/bpe_train.h" /* train-tokenizer */
#include "datadir.h"
#include "ft_fs.h"
#include "ft_log.h"
#include "formats/gguf.h"
#include "formats/hfdir.h"
#include "http.h"
#include "infer_pool.h"
#include "nn/init.h"
#include "model_id.h"
#include "obs.h"
#include "pool.h"
#include "formats/safetensors.h"
#include "shutdown.h"
#include "store.h"
#include "validate.h"
#ifdef FT_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void serve_usage(FILE *f);

static void usage(FILE *f) {
  fprintf(f,
          "usage: finetuned COMMAND [OPTIONS]\n"
          "\n"
          "finetuned serve [OPTIONS]\n"
          "  Runs the fine-tuning job server: HTTP API, job queue and worker pool.\n");
  serve_usage(f);
  fprintf(f,
          "\n"
          "finetuned import-model [--data-dir DIR] --name NAME PATH\n"
          "  Checks the Hugging Face model directory PATH (config.json) and copies it into\n"
          "  DIR/models/NAME atomically. NAME must not start with \"ft:\" or \".\".\n"
          "\n"
          "finetuned convert-model --dtype f16|bf16|f32 --out DIR PATH\n"
          "  Copies the model directory PATH to DIR (which must not exist) with its weights\n"
          "  stored as DTYPE (half the size in f16/bf16; loading converts back to f32).\n"
          "\n"
          "finetuned init-model --arch gpt2|llama --preset NAME --tokenizer PATH --out DIR\n"
          "                     [--seed N]\n"
          "  Writes a randomly initialised model of a preset size (e.g. tiny) with the\n"
          "  tokenizer found at PATH into DIR.\n"
          "\n"
          "finetuned train-tokenizer --vocab-size N --out DIR [--min-frequency K] FILE...\n"
          "  Learns a byte-level BPE tokenizer (GPT-2 style, with <|endoftext|>,\n"
          "  <|im_start|>, <|im_end|> and a ChatML chat template) from JSONL (\"text\",\n"
          "  prompt/completion, messages) or plain text FILEs; writes DIR/tokenizer.json and\n"
          "  DIR/tokenizer_config.json (use with init-model --tokenizer DIR). K default 2.\n"
          "\n"
          "finetuned export-gguf --model DIR --out FILE [--type f32|f16] [--adapter]\n"
          "  Writes the model directory DIR as a GGUF file for llama.cpp / Ollama (default\n"
          "  f16); with --adapter, its LoRA adapter (DIR/adapter/ or DIR itself) instead.\n"
          "\n"
          "finetuned keys create [--data-dir DIR] --name NAME [--tenant T] [--admin]\n"
          "finetuned keys list [--data-dir DIR]\n"
          "finetuned keys revoke [--data-dir DIR] ID|NAME\n"
          "  API keys: create prints a key once (only its hash is stored); its tenant\n"
          "  defaults to \"default\" (the open mode's); an admin key sees every tenant's.\n"
          "\n"
          "finetuned --help | --version\n");
}

/* ---- options ------------------------------------------------------------- */

/* The settings of `finetuned serve`; a number is -1 and a string NULL until
 * an option sets it, and cmd_serve applies the defaults. */
typedef struct {
  char *data_dir, *listen, *worker_listen, *worker_token, *worker_exe, *log_level;
  long long workers, lease_ms, heartbeat_ms, max_attempts, max_upload;
  long long drain_timeout_ms;                               /* graceful shutdown */
  long long infer_cache_mb, infer_concurrency, infer_queue; /* serving (infer_pool.h) */
  char *tls_cert, *tls_key;                                 /* PEM files */
  /* keys and limits (auth.h) */
  long long rate_limit, rate_burst, max_waiting_jobs, max_connections, max_per_ip, conn_timeout,
      max_header_bytes;
} serve_opts;

typedef enum {
  OPT_STR,    /* a string field */
  OPT_NUM,    /* a long long field in lo..hi */
  OPT_CONFIG, /* --config: the command line only */
  OPT_NOTE,   /* not an option: a paragraph of the usage */
} opt_kind;

/* The one table of serve's options: each is --NAME on the command line and
 * NAME (or NAME with '_' for '-') in the config file, and prints its usage
 * from here; a '\n' in help starts a continuation line. */
typedef struct {
  const char *name, *arg;
  opt_kind kind;
  size_t field; /* offsetof(serve_opts, …) */
  long long lo, hi;
  const char *help;
} serve_option;

#define STR_OPT(name, arg, field, help) \
  { name, arg, OPT_STR, offsetof(serve_opts, field), 0, 0, help }
#define NUM_OPT(name, arg, field, lo, hi, help) \
  { name, arg, OPT_NUM, offsetof(serve_opts, field), lo, hi, help }

static const serve_option serve_options[] = {
    STR_OPT("data-dir", "DIR", data_dir,
            "data directory (database, files, models, jobs); default\n"
            "$STATE_DIRECTORY (systemd) if set, else ./var"),
    STR_OPT("listen", "HOST:PORT", listen,
            "HTTP address; default 127.0.0.1:8080. Port 0 picks a\n"
            "free port; the port is written to DIR/finetuned.port"),
    NUM_OPT("workers", "N", workers, 0, 256, "local workers to spawn and supervise; default 1"),
    STR_OPT("worker-listen", "HOST:PORT", worker_listen,
            "also accept remote workers over TCP here"),
    STR_OPT("worker-token", "T", worker_token,
            "shared secret workers must present (required for TCP);\n"
            "better given in the config file than on the command line"),
    NUM_OPT("max-upload-bytes", "N", max_upload, 1, LLONG_MAX,
            "largest accepted upload; default 536870912 (512 MiB)"),
    NUM_OPT("lease-ms", "N", lease_ms, 100, 3600000, "job lease length; default 30000"),
    NUM_OPT("heartbeat-ms", "N", heartbeat_ms, 10, 600000,
            "worker heartbeat interval; default 2000"),
    NUM_OPT("max-attempts", "N", max_attempts, 1, 100,
            "leases a job may lose (its worker vanished) before it\n"
            "fails with worker_lost; default 3"),
    NUM_OPT("drain-timeout-ms", "N", drain_timeout_ms, 0, 600000,
            "on SIGTERM/SIGINT, how long to wait for running jobs to\n"
            "pause at a checkpoint and requests to finish; default\n"
            "30000 (systemd's TimeoutStopSec is 60 s)"),
    NUM_OPT("infer-cache-mb", "N", infer_cache_mb, 1, 1 << 24,
            "memory for models loaded for serving (completions,\n"
            "classifications), least recently used evicted; default\n"
            "a quarter of physical memory"),
    NUM_OPT("infer-concurrency", "N", infer_concurrency, 1, 256,
            "inference requests run at once; default 2"),
    NUM_OPT("infer-queue", "N", infer_queue, 0, 4096,
            "requests that may wait for a slot (up to 10 s) before\n"
            "429 with Retry-After; default 4"),
    STR_OPT("worker-exe", "PATH", worker_exe,
            "worker executable; default finetuned-worker next to\n"
            "this executable"),
    STR_OPT("log-level", "LEVEL", log_level, "debug, info, warn or error; default info"),
    STR_OPT("tls-cert", "FILE", tls_cert, "serve HTTPS with this PEM certificate (chain); needs"),
    STR_OPT("tls-key", "FILE", tls_key, "its PEM private key (unencrypted); read at start"),
    NUM_OPT("rate-limit", "N", rate_limit, 0, 1000000,
            "requests per second per API key (token bucket); 0: no\n"
            "limit; default 50"),
    NUM_OPT("rate-burst", "N", rate_burst, 1, 1000000,
            "requests a key may send at once; default 100"),
    NUM_OPT("max-waiting-jobs", "N", max_waiting_jobs, 0, 1000000,
            "jobs per tenant waiting to run (validating_files or\n"
            "queued); 0: no cap; default 100"),
    NUM_OPT("max-connections", "N", max_connections, 1, 100000,
            "open HTTP connections; default 512"),
    NUM_OPT("max-connections-per-ip", "N", max_per_ip, 1, 100000, "default 128"),
    NUM_OPT("connection-timeout", "S", conn_timeout, 1, 86400,
            "idle HTTP connection timeout in seconds; default 120"),
    NUM_OPT("max-header-bytes", "N", max_header_bytes, 8192, 16 << 20,
            "memory per connection for the request line and\n"
            "headers (larger: 431); default 65536"),
    {NULL, NULL, OPT_NOTE, 0, 0, 0,
     "API keys: listening on loopback with no key created, the API is open (tenant\n"
     "\"default\"); anywhere else, or once a key exists, every request but /healthz\n"
     "and /readyz needs \"Authorization: Bearer KEY\" (see finetuned keys)."},
    {"config", "FILE", OPT_CONFIG, 0, 0, 0,
     "read options from FILE: lines \"name = value\" with the\n"
     "option names above (without --), '#' comments;\n"
     "command-line options win"},
};
#define N_SERVE_OPTIONS (sizeof serve_options / sizeof serve_options[0])
#undef STR_OPT
#undef NUM_OPT

#define USAGE_COLUMN 26 /* where the help text of an option starts */

/* The serve section of the usage, from the table. */
static void serve_usage(FILE *f) {
  for (size_t i = 0; i < N_SERVE_OPTIONS; i++) {
    const serve_option *so = &serve_options[i];
    int indent = 2; /* of the help's continuation lines */
    if (so->kind == OPT_NOTE) {
      fprintf(f, "  ");
    } else {
      int n = fprintf(f, "  --%s %s", so->name, so->arg);
      fprintf(f, "%*s", n + 2 > USAGE_COLUMN ? 2 : USAGE_COLUMN - n, "");
      indent = USAGE_COLUMN;
    }
    for (const char *h = so->help;;) {
      const char *nl = strchr(h, '\n');
      if (!nl) {
        fprintf(f, "%s\n", h);
        break;
      }
      fprintf(f, "%.*s\n%*s", (int)(nl - h), h, indent, "");
      h = nl + 1;
    }
  }
}

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static const serve_option *serve_option_find(const char *name) {
  for (size_t i = 0; i < N_SERVE_OPTIONS; i++)
    if (serve_options[i].name && !strcmp(serve_options[i].name, name)) return &serve_options[i];
  return NULL;
}

static void serve_opts_init(serve_opts *o) {
  memset(o, 0, sizeof *o);
  for (size_t i = 0; i < N_SERVE_OPTIONS; i++)
    if (serve_options[i].kind == OPT_NUM) *(long long *)((char *)o + serve_options[i].field) = -1;
}

static void serve_opts_free(serve_opts *o) {
  for (size_t i = 0; i < N_SERVE_OPTIONS; i++)
    if (serve_options[i].kind == OPT_STR) {
      char **str = (char **)((char *)o + serve_options[i].field);
      free(*str);
      *str = NULL;
    }
}

/* Sets one option by name (from the command line or the config file);
 * from_file options never override ones already set. Returns 0 or -1. */
static int set_opt(serve_opts *o, const char *name, const char *val, int from_file) {
  const serve_option *so = serve_option_find(name);
  if (!so || (so->kind != OPT_STR && so->kind != OPT_NUM)) {
    fprintf(stderr, "finetuned: unknown option \"%s\"\n", name);
    return -1;
  }
  if (so->kind == OPT_STR) {
    char **str = (char **)((char *)o + so->field);
    if (!from_file || !*str) {
      free(*str);
      *str = strdup(val);
    }
    return 0;
  }
  long long *num = (long long *)((char *)o + so->field);
  char *end;
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (!*val || *end || errno || v < so->lo || v > so->hi) {
    if (so->hi == LLONG_MAX)
      fprintf(stderr, "finetuned: --%s wants an integer of at least %lld, got \"%s\"\n", name,
              so->lo, val);
    else
      fprintf(stderr, "finetuned: --%s wants an integer from %lld to %lld, got \"%s\"\n", name,
              so->lo, so->hi, val);
    return -1;
  }
  if (!from_file || *num < 0) *num = v;
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = 0;
  return s;
}

static int load_config(serve_opts *o, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "finetuned: cannot read config %s: %s\n", path, strerror(errno));
    return -1;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    char *s = trim(line);
    if (!*s || *s == '#') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      fprintf(stderr, "finetuned: %s:%d: expected \"name = value\"\n", path, lineno);
      rc = -1;
      break;
    }
    *eq = 0;
    char *name = trim(s), *val = trim(eq + 1);
    size_t vl = strlen(val);
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val[vl - 1] = 0, val++;
    for (char *p = name; *p; p++)
      if (*p == '_') *p = '-';
    if (set_opt(o, name, val, 1)) {
      fprintf(stderr, "finetuned: %s:%d: bad line\n", path, lineno);
      rc = -1;
    }
  }
  fclose(f);
  return rc;
}

/* ---- directories ---------------------------------------------------------- */

/* Removes what a crash can leave behind: partial uploads, half-copied or
 * half-deleted model directories. */
static void clean_leftovers(const char *data_dir) {
  static const struct {
    const char *sub, *prefix;
  } spots[] = {{"files", ".tmp-"}, {"models", ".tmp-"}, {"models", ".deleting-"}};
  for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (ft_pathf(dir, sizeof dir, "%s/%s", data_dir, spots[i].sub)) continue;
    DIR *d = opendir(dir);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d)))
      if (!strncmp(e->d_name, spots[i].prefix, strlen(spots[i].prefix)) &&
          !ft_pathf(path, sizeof path, "%s/%s", dir, e->d_name)) {
        FT_INFO("msg=\"removing leftover\" path=\"%s\"", path);
        ft_rmtree(path, NULL);
      }
    closedir(d);
  }
}

static int write_port_file(const char *data_dir, int port) {
  char path[PATH_MAX], text[16];
  if (ft_pathf(path, sizeof path, "%s/finetuned.port", data_dir)) return -1;
  int n = snprintf(text, sizeof text, "%d\n", port);
  return ft_write_atomic(path, text, (size_t)n, 0644, NULL) ? -1 : 0;
}

static char *default_worker_exe(const char *argv0) {
  char self[PATH_MAX], out[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0)
    self[n] = 0;
  else
    snprintf(self, sizeof self, "%s", argv0);
  if (ft_pathf(out, sizeof out, "%s/finetuned-worker", dirname(self))) return NULL;
  return strdup(out);
}

static void notify(const char *state) {
#ifdef FT_HAVE_SYSTEMD
  sd_notify(0, state);
#else
  (void)state;
#endif
}

/* ---- TLS ------------------------------------------------------------------ */

/* Reads a PEM file (at most 1 MiB) into a new NUL-terminated string; NULL and
 * a message on stderr when it cannot be read or holds no PEM block. */
static char *read_pem(const char *path, const char *what) {
  char *buf;
  if (ft_read_file(path, 1u << 20, &buf, NULL, NULL)) {
    if (errno == EFBIG || errno == ENOMEM)
      fprintf(stderr, "finetuned: the TLS %s %s is %s\n", what, path,
              errno == EFBIG ? "over 1 MiB" : "not readable: out of memory");
    else
      fprintf(stderr, "finetuned: cannot read the TLS %s %s: %s\n", what, path, strerror(errno));
    return NULL;
  }
  if (!strstr(buf, "-----BEGIN ")) {
    fprintf(stderr, "finetuned: the TLS %s %s is not a PEM file\n", what, path);
    free(buf);
    return NULL;
  }
  return buf;
}

/* ---- serve ---------------------------------------------------------------- */

static int cmd_serve(int argc, char **argv, const char *argv0) {
  serve_opts o;
  serve_opts_init(&o);
  struct option longopts[N_SERVE_OPTIONS + 2]; /* (+ --help and the terminator) */
  size_t nlong = 0;
  for (size_t i = 0; i < N_SERVE_OPTIONS; i++)
    if (serve_options[i].name)
      longopts[nlong++] = (struct option){serve_options[i].name, required_argument, 0, 0};
  longopts[nlong++] = (struct option){"help", no_argument, 0, 'h'};
  longopts[nlong] = (struct option){0, 0, 0, 0};
  const char *config = NULL;
  int c, idx, rc = 1;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
    if (c == 'h') {
      usage(stdout);
      return 0;
    }
    if (c != 0) {
      usage(stderr);
      return 2;
    }
    if (!strcmp(longopts[idx].name, "config"))
      config = optarg;
    else if (set_opt(&o, longopts[idx].name, optarg, 0))
      return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "finetuned serve: unexpected argument \"%s\"\n", argv[optind]);
    return 2;
  }
  if (config && load_config(&o, config)) return 2;
  if (o.log_level) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    int l = -1;
    for (int i = 0; i < 4; i++)
      if (!strcmp(o.log_level, names[i])) l = i;
    if (l < 0) {
      fprintf(stderr, "finetuned: --log-level wants debug, info, warn or error\n");
      return 2;
    }
    ft_log_set_level((ft_log_level)l);
  }

  ft_error err = {0};
  char *data_dir = datadir_resolve(o.data_dir, &err);
  if (!data_dir) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    return 1;
  }
  const char *subdirs[] = {"files", "models", "jobs"};
  for (int i = 0; i < 3; i++) {
    char p[PATH_MAX];
    ft_pathf(p, sizeof p, "%s/%s", data_dir, subdirs[i]);
    if (ft_mkdir_p(p, 0750, NULL)) {
      fprintf(stderr, "finetuned: cannot create %s: %s\n", p, strerror(errno));
      free(data_dir);
      return 1;
    }
  }
  clean_leftovers(data_dir);

  /* Block the stop signals before any thread exists, so every thread
   * inherits the mask and only sigwait below sees them. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);

  store *st = NULL;
  pool *pl = NULL;
  validator *vd = NULL;
  struct MHD_Daemon *httpd = NULL;
  char *tls_cert_pem = NULL, *tls_key_pem = NULL; /* TLS */
  char db[PATH_MAX];
  ft_pathf(db, sizeof db, "%s/finetuned.db", data_dir);
  if (store_open(&st, db, &err)) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    goto out;
  }
  store_set_transition_hook(st, obs_job_transition); /* one log line per transition */
  /* API keys (auth.h): open only on loopback while no key was ever made */
  int n_keys = 0, loopback = auth_listen_is_loopback(o.listen ? o.listen : "127.0.0.1:8080");
  if (store_key_count(st, &n_keys)) {
    fprintf(stderr, "finetuned: cannot read the API keys from %s\n", db);
    goto out;
  }
  if (!loopback && n_keys == 0) {
    fprintf(stderr,
            "finetuned: refusing to listen on %s without API keys: create one with "
            "`finetuned keys create --data-dir %s --name NAME`, or listen on 127.0.0.1\n",
            o.listen, data_dir);
    goto out;
  }
  if (n_keys == 0)
    FT_WARN(
        "msg=\"no API keys: the API is open to anyone on this machine (tenant "
        "default); create keys with finetuned keys create\"");
  char *worker_exe = o.worker_exe ? strdup(o.worker_exe) : default_worker_exe(argv0);
  pool_opts po = {.data_dir = data_dir,
                  .worker_exe = worker_exe,
                  .n_workers = o.workers >= 0 ? (int)o.workers : 1,
                  .worker_listen = o.worker_listen,
                  .worker_token = o.worker_token,
                  .lease_ms = o.lease_ms > 0 ? (int)o.lease_ms : 30000,
                  .heartbeat_ms = o.heartbeat_ms > 0 ? (int)o.heartbeat_ms : 2000,
                  .max_attempts = o.max_attempts > 0 ? (int)o.max_attempts : 3};
  rc = pool_start(&pl, st, &po, &err);
  free(worker_exe);
  if (rc) {
    fprintf(stderr, "finetuned: worker pool: %s\n", err.message);
    rc = 1;
    goto out;
  }
  /* jobs in validating_files (new ones, and any a restart interrupted) */
  if (validate_start(&vd, st, pl, data_dir, &err)) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    rc = 1;
    goto out;
  }
  rc = 1;
  static ft_app app;
  /* ---- serving (infer_pool.h) ---- */
  infer_pool *ip = NULL;
  infer_pool_opts ipo = {
      .cache_bytes = o.infer_cache_mb > 0 ? (size_t)o.infer_cache_mb << 20
                                          : infer_pool_default_cache_bytes(),
      .concurrency =
          o.infer_concurrency > 0 ? (int)o.infer_concurrency : INFER_POOL_DEFAULT_CONCURRENCY,
      .queue = o.infer_queue >= 0 ? (int)o.infer_queue : INFER_POOL_DEFAULT_QUEUE,
      .wait_ms = INFER_POOL_DEFAULT_WAIT_MS};
  if (infer_pool_new(&ip, &ipo, &err)) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    goto out;
  }
  app.infer = ip;
  app.store = st;
  app.pool = pl;
  app.data_dir = data_dir;
  app.max_upload_bytes = o.max_upload > 0 ? (uint64_t)o.max_upload : HTTP_DEFAULT_UPLOAD_MAX;
  /* keys and limits (auth.h) */
  app.auth_open_allowed = loopback;
  app.gate = auth_request;
  long long rate = o.rate_limit >= 0 ? o.rate_limit : 50;
  if (rate > 0 && !(app.limiter = auth_limiter_new(
                        (double)rate, (double)(o.rate_burst > 0 ? o.rate_burst : 2 * rate)))) {
    fprintf(stderr, "finetuned: out of memory\n");
    goto out;
  }
  app.max_waiting_jobs = o.max_waiting_jobs >= 0 ? (int)o.max_waiting_jobs : 100;
  app.max_connections = o.max_connections > 0 ? (unsigned)o.max_connections : 512;
  app.max_per_ip = o.max_per_ip > 0 ? (unsigned)o.max_per_ip : 128;
  app.conn_timeout_s = o.conn_timeout > 0 ? (unsigned)o.conn_timeout : 120;
  app.conn_memory = o.max_header_bytes > 0 ? (size_t)o.max_header_bytes : (size_t)(64u << 10);
  atomic_store(&app.stopping, 0);
  /* TLS: both files or neither */
  if (!o.tls_cert != !o.tls_key) {
    fprintf(stderr, "finetuned: --tls-cert and --tls-key go together\n");
    goto out;
  }
  if (o.tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
    fprintf(stderr, "finetuned: this libmicrohttpd was built without TLS (GnuTLS)\n");
    goto out;
  }
  if (o.tls_cert && (!(tls_cert_pem = read_pem(o.tls_cert, "certificate")) ||
                     !(tls_key_pem = read_pem(o.tls_key, "key"))))
    goto out;
  app.tls_cert_pem = tls_cert_pem;
  app.tls_key_pem = tls_key_pem;
  const char *listen = o.listen ? o.listen : "127.0.0.1:8080";
  int port = 0;
  if (http_start(&httpd, &app, listen, &port, &err)) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    goto out;
  }
  char host[256];
  snprintf(host, sizeof host, "%.*s", (int)(strrchr(listen, ':') - listen), listen);
  if (write_port_file(data_dir, port))
    FT_WARN("msg=\"cannot write the port file\" err=\"%s\"", strerror(errno));
  fprintf(stderr, "listening on %s://%s:%d\n", tls_cert_pem ? "https" : "http", host, port);
  FT_INFO("msg=\"ready\" data_dir=\"%s\" port=%d workers=%d", data_dir, port, po.n_workers);
  notify("READY=1\nSTATUS=serving");

  int sig = 0;
  while (sigwait(&stop, &sig) != 0) {
  }
  FT_INFO("msg=\"stopping\" signal=%d", sig);
  notify("STOPPING=1");
  /* graceful: a second signal cuts it short (exit 1) */
  int drain_ms = o.drain_timeout_ms >= 0 ? (int)o.drain_timeout_ms : SHUTDOWN_DEFAULT_DRAIN_MS;
  rc = shutdown_drain(&app, httpd, &stop, drain_ms);
out:
  atomic_store(&app.stopping, 1);
  if (st) store_wake_all(st);
  http_stop(httpd);
  infer_pool_free(app.infer); /* (after the last request) */
  app.infer = NULL;
  validate_stop(vd);
  if (pl) pool_stop(pl);
  store_close(st);
  auth_limiter_free(app.limiter);
  app.limiter = NULL;
  if (httpd) {
    char path[PATH_MAX];
    ft_pathf(path, sizeof path, "%s/finetuned.port", data_dir);
    unlink(path);
  }
  free(data_dir);
  serve_opts_free(&o);
  if (tls_key_pem) explicit_bzero(tls_key_pem, strlen(tls_key_pem));
  free(tls_cert_pem), free(tls_key_pem);
  return rc;
}

/* ---- import-model --------------------------------------------------------- */

/* Copies the directory tree src into dst (which exists), following symlinks
 * (Hugging Face caches link files to blobs), regular files and dirs only. */
static int copy_tree(const char *src, const char *dst, int depth) {
  if (depth > 8) return -1;
  DIR *d = opendir(src);
  if (!d) return -1;
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, ".git")) continue;
    char s[PATH_MAX], t[PATH_MAX];
    if (ft_pathf(s, sizeof s, "%s/%s", src, e->d_name) ||
        ft_pathf(t, sizeof t, "%s/%s", dst, e->d_name)) {
      rc = -1;
      break;
    }
    struct stat sb;
    if (stat(s, &sb)) continue; /* dangling link */
    if (S_ISDIR(sb.st_mode)) {
      rc = mkdir(t, 0750) || copy_tree(s, t, depth + 1) || ft_fsync_dir(t, NULL) ? -1 : 0;
    } else if (S_ISREG(sb.st_mode)) {
      rc = ft_copy_file(s, t, 0640, NULL) ? -1 : 0;
    }
  }
  closedir(d);
  return rc;
}

/* Parses a command's two string options (longopts[0] and [1], then --help)
 * into *a and *b; returns -1 to go on, else the exit code. */
static int two_options(int argc, char **argv, const struct option *longopts, const char **a,
                       const char **b) {
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == longopts[0].val)
      *a = optarg;
    else if (c == longopts[1].val)
      *b = optarg;
    else if (c == 'h') {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  return -1;
}

/* Whether dir holds a config.json the engine can use (says why on stderr). */
static int model_dir_ok(const char *dir) {
  ft_config *cfg = calloc(1, sizeof *cfg);
  ft_error err = {0};
  int ok = cfg && !hf_config_load(cfg, dir, &err);
  if (!ok)
    fprintf(stderr, "finetuned: %s is not a usable model directory: %s\n", dir,
            cfg ? err.message : "out of memory");
  free(cfg);
  return ok;
}

static int cmd_import(int argc, char **argv) {
  static const struct option longopts[] = {{"data-dir", required_argument, 0, 'd'},
                                           {"name", required_argument, 0, 'n'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *data_opt = NULL, *name = NULL;
  int rc = two_options(argc, argv, longopts, &data_opt, &name);
  if (rc >= 0) return rc;
  if (!name || optind != argc - 1) {
    fprintf(stderr, "usage: finetuned import-model [--data-dir DIR] --name NAME PATH\n");
    return 2;
  }
  const char *src = argv[optind];
  if (!model_id_ok(name) || !strncmp(name, "ft:", 3) || strlen(name) > 128) {
    fprintf(stderr,
            "finetuned: bad model name \"%s\" (no '/', no leading '.' or \"ft:\", at "
            "most 128 bytes)\n",
            name);
    return 2;
  }
  if (!model_dir_ok(src)) return 1;
  ft_error err = {0};
  char *data_dir = datadir_resolve(data_opt, &err);
  if (!data_dir) {
    fprintf(stderr, "finetuned: %s\n", err.message);
    return 1;
  }
  char models[PATH_MAX], dst[PATH_MAX], tmp[PATH_MAX], tag[64];
  rc = 1;
  store_new_id(".tmp-import", tag, sizeof tag);
  if (ft_pathf(models, sizeof models, "%s/models", data_dir) ||
      ft_pathf(dst, sizeof dst, "%s/%s", models, name) ||
      ft_pathf(tmp, sizeof tmp, "%s/%s", models, tag) || ft_mkdir_p(models, 0750, NULL)) {
    fprintf(stderr, "finetuned: cannot create %s/models\n", data_dir);
    goto out;
  }
  struct stat sb;
  if (lstat(dst, &sb) == 0) {
    fprintf(stderr, "finetuned: model %s already exists (%s)\n", name, dst);
    goto out;
  }
  if (mkdir(tmp, 0750) || copy_tree(src, tmp, 0) || ft_fsync_dir(tmp, NULL)) {
    fprintf(stderr, "finetuned: copying %s: %s\n", src, strerror(errno));
    ft_rmtree(tmp, NULL);
    goto out;
  }
  /* rename fails if dst appeared meanwhile (a non-empty directory) */
  if (rename(tmp, dst) || ft_fsync_dir(models, NULL)) {
    fprintf(stderr, "finetuned: installing %s: %s\n", dst, strerror(errno));
    ft_rmtree(tmp, NULL);
    goto out;
  }
  printf("imported %s into %s\n", name, dst);
  rc = 0;
out:
  free(data_dir);
  return rc;
}

/* ---- convert-model ---------------------------------------------------------- */

static int cmd_convert(int argc, char **argv) {
  static const struct option longopts[] = {{"dtype", required_argument, 0, 't'},
                                           {"out", required_argument, 0, 'o'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  static const char *const names[] = {"f32", "f16", "bf16"};
  static const char *const torch_names[] = {"float32", "float16", "bfloat16"};
  const char *dtype = NULL, *out = NULL;
  int d = -1, rc = two_options(argc, argv, longopts, &dtype, &out);
  if (rc >= 0) return rc;
  for (int i = 0; dtype && i < 3; i++)
    if (!strcmp(dtype, names[i])) d = i;
  if (d < 0 || !out || optind != argc - 1) {
    fprintf(stderr, "usage: finetuned convert-model --dtype f16|bf16|f32 --out DIR PATH\n");
    return 2;
  }
  const char *src = argv[optind];
  char srcw[PATH_MAX], tmp[PATH_MAX], tmpw[PATH_MAX], cfgp[PATH_MAX];
  ft_error err = {0};
  struct stat sb;
  rc = 1;
  if (!model_dir_ok(src)) return 1;
  if (ft_pathf(srcw, sizeof srcw, "%s/model.safetensors", src) ||
      ft_pathf(tmp, sizeof tmp, "%s.tmp-convert", out) ||
      ft_pathf(tmpw, sizeof tmpw, "%s/model.safetensors", tmp) ||
      ft_pathf(cfgp, sizeof cfgp, "%s/config.json", tmp)) {
    fprintf(stderr, "finetuned: path too long\n");
    return 1;
  }
  if (stat(srcw, &sb)) {
    fprintf(stderr, "finetuned: %s: %s (only single-file weights are converted)\n", srcw,
            strerror(errno));
    return 1;
  }
  if (lstat(out, &sb) == 0) {
    fprintf(stderr, "finetuned: %s already exists\n", out);
    return 1;
  }
  ft_rmtree(tmp, NULL);
  if (mkdir(tmp, 0755) || copy_tree(src, tmp, 0)) {
    fprintf(stderr, "finetuned: copying %s: %s\n", src, strerror(errno));
    goto out;
  }
  if (st_convert(srcw, tmpw, (st_dtype)d, &err)) {
    fprintf(stderr, "finetuned: converting %s: %s\n", srcw, err.message);
    goto out;
  }
  json_error_t je;
  json_t *cj = json_load_file(cfgp, 0, &je);
  if (!cj || json_object_set_new(cj, "torch_dtype", json_string(torch_names[d])) ||
      hf_write_json(cfgp, cj, &err)) {
    fprintf(stderr, "finetuned: rewriting %s: %s\n", cfgp, cj ? err.message : je.text);
    json_decref(cj);
    goto out;
  }
  json_decref(cj);
  if (ft_fsync_dir(tmp, NULL) || rename(tmp, out)) {
    fprintf(stderr, "finetuned: installing %s: %s\n", out, strerror(errno));
    goto out;
  }
  printf("wrote %s with %s weights\n", out, names[d]);
  rc = 0;
out:
  if (rc) ft_rmtree(tmp, NULL);
  return rc;
}

/* ---- init-model ----------------------------------------------------------- */

static int cmd_init(int argc, char **argv) {
  static const struct option longopts[] = {{"arch", required_argument, 0, 'a'},
                                           {"preset", required_argument, 0, 'p'},
                                           {"tokenizer", required_argument, 0, 't'},
                                           {"out", required_argument, 0, 'o'},
                                           {"seed", required_argument, 0, 's'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *arch = NULL, *preset = NULL, *tok = NULL, *out = NULL;
  long seed = 0;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
      case 'a':
        arch = optarg;
        break;
      case 'p':
        preset = optarg;
        break;
      case 't':
        tok = optarg;
        break;
      case 'o':
        out = optarg;
        break;
      case 's':
        if (parse_long(optarg, 0, LONG_MAX, &seed)) {
          fprintf(stderr, "finetuned: --seed wants a non-negative integer\n");
          return 2;
        }
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (!arch || !preset || !tok || !out || optind != argc) {
    fprintf(stderr,
            "usage: finetuned init-model --arch gpt2|llama --preset NAME --tokenizer PATH "
            "--out DIR [--seed N]\n");
    return 2;
  }
  ft_error err = {0};
  if (model_init_dir(arch, preset, tok, out, (uint64_t)seed, &err)) {
    fprintf(stderr, "finetuned: init-model: %s\n", err.message);
    return 1;
  }
  printf("wrote %s %s model to %s\n", arch, preset, out);
  return 0;
}

/* ---- export-gguf (engine/formats/gguf.h) ------------------------------------------ */

static int cmd_export_gguf(int argc, char **argv) {
  static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                           {"out", required_argument, 0, 'o'},
                                           {"type", required_argument, 0, 't'},
                                           {"adapter", no_argument, 0, 'a'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *model = NULL, *out = NULL, *type = "f16";
  int adapter = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
      case 'm':
        model = optarg;
        break;
      case 'o':
        out = optarg;
        break;
      case 't':
        type = optarg;
        break;
      case 'a':
        adapter = 1;
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (!model || !out || optind != argc || (strcmp(type, "f16") && strcmp(type, "f32"))) {
    fprintf(stderr, "usage: finetuned export-gguf --model DIR --out FILE [--type f32|f16] "
                    "[--adapter]\n");
    return 2;
  }
  ft_error err = {0};
  int f16 = !strcmp(type, "f16"), rc;
  if (adapter) {
    char adir[PATH_MAX], probe[PATH_MAX];
    if (snprintf(adir, sizeof adir, "%s/adapter", model) >= (int)sizeof adir ||
        snprintf(probe, sizeof probe, "%s/adapter/adapter_config.json", model) >=
            (int)sizeof probe ||
        access(probe, F_OK))
      snprintf(adir, sizeof adir, "%s", model);
    rc = gguf_export_adapter(model, adir, out, f16, NULL, &err);
  } else {
    rc = gguf_export_model(model, out, f16, NULL, &err);
  }
  if (rc) {
    fprintf(stderr, "finetuned: export-gguf: %s\n", err.message);
    return 1;
  }
  printf("wrote %s %s to %s\n", adapter ? "LoRA adapter" : "model", type, out);
  return 0;
}

/* ---- train-tokenizer (engine/tok/bpe_train.h) -------------------------------- */

static int cmd_train_tokenizer(int argc, char **argv) {
  static const struct option longopts[] = {{"vocab-size", required_argument, 0, 'v'},
                                           {"out", required_argument, 0, 'o'},
                                           {"min-frequency", required_argument, 0, 'm'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *out = NULL;
  long vocab = 0, minf = 2;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 'o') {
      out = optarg;
    } else if (c == 'v' || c == 'm') {
      if (parse_long(optarg, c == 'v' ? 259 : 1, c == 'v' ? 1 << 20 : INT32_MAX,
                     c == 'v' ? &vocab : &minf)) {
        fprintf(stderr, "finetuned: %s wants an integer %s\n",
                c == 'v' ? "--vocab-size" : "--min-frequency",
                c == 'v' ? "259..1048576" : ">= 1");
        return 2;
      }
    } else if (c == 'h') {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!out || !vocab || optind >= argc) {
    fprintf(stderr, "usage: finetuned train-tokenizer --vocab-size N --out DIR "
                    "[--min-frequency K] FILE...\n");
    return 2;
  }
  bpe_train_opts o = {.vocab_size = (int)vocab, .min_frequency = (int)minf};
  ft_error err = {0};
  if (bpe_train_files((const char *const *)(argv + optind), (size_t)(argc - optind), &o, out,
                      &err)) {
    fprintf(stderr, "finetuned: train-tokenizer: %s\n", err.message);
    return 1;
  }
  printf("wrote tokenizer to %s\n", out);
  return 0;
}

/* ---- end train-tokenizer ---- */

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("finetuned 0.1\n");
    return 0;
  }
  if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1, argv[0]);
  if (!strcmp(cmd, "import-model")) return cmd_import(argc - 1, argv + 1);
  if (!strcmp(cmd, "init-model")) return cmd_init(argc - 1, argv + 1);
  if (!strcmp(cmd, "convert-model")) return cmd_convert(argc - 1, argv + 1);
  if (!strcmp(cmd, "train-tokenizer")) return cmd_train_tokenizer(argc - 1, argv + 1);
  if (!strcmp(cmd, "export-gguf")) return cmd_export_gguf(argc - 1, argv + 1);
  if (!strcmp(cmd, "keys")) return auth_cmd_keys(argc - 1, argv + 1);
  fprintf(stderr, "finetuned: unknown command \"%s\"\n\n", cmd);
  usage(stderr);
  return 2;
}
