/* `finetuned-worker train`: fine-tunes a model from files on the command line,
 * with no daemon, through the same train_run as daemon jobs. stdout carries
 * only JSON lines, one per optimizer step and a final {"done":true,...}, or a
 * single {"error":{...}} line (exit 1), so scripts and tests can parse it; the
 * engine's events and checkpoints are logged on stderr. SIGINT/SIGTERM ask
 * the engine to pause: it writes a checkpoint and stops after the step. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/ckpt.h"
#include "ft_log.h"
#include "train/spec.h"
#include "worker.h"

static volatile sig_atomic_t g_stop;

static void on_sig(int sig) { g_stop = 1; }

static void print_line(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(7));
  json_decref(j);
  if (!s) return;
  fputs(s, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  free(s);
}

static int print_error(const ft_error *e) {
  int code = e->code ? e->code : FT_EINTERNAL;
  print_line(json_pack("{s:{s:s, s:s, s:s?}}", "error", "code", ft_err_code(code), "message",
                       e->message[0] ? e->message : ft_err_message(code), "param",
                       e->param[0] ? e->param : NULL));
  return 1;
}

static int cli_step(void *ud, const ft_step_metrics *m) {
  print_line(worker_metrics_json(m));
  return g_stop ? FT_EPAUSED : 0;
}

static void cli_event(void *ud, const char *level, const char *message, const char *data_json) {
  ft_log_level l = level && !strcmp(level, "error")  ? FT_LOG_ERROR
                   : level && !strcmp(level, "warn") ? FT_LOG_WARN
                                                     : FT_LOG_INFO;
  ft_log(l, "msg=\"%s\"%s%s", message ? message : "", data_json ? " data=" : "",
         data_json ? data_json : "");
}

static void cli_checkpoint(void *ud, const ft_ckpt_info *ci) {
  char kept[256] = "";
  for (size_t i = 0, o = 0; i < ci->n_kept && o < sizeof kept - 24; i++)
    o += (size_t)snprintf(kept + o, sizeof kept - o, "%s%ld", i ? "," : "", ci->kept[i]);
  FT_INFO("msg=\"checkpoint\" step=%ld path=%s best=%d kept=%s", ci->step, ci->path, ci->best,
          kept);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: finetuned-worker train --model DIR --train FILE.jsonl [--valid FILE]\n"
          "         [--test FILE] --spec SPEC.json --out DIR [--ckpt-dir DIR] [--resume CKPT]\n"
          "         [--max-steps N] [--metrics-csv FILE]\n"
          "\n"
          "Fine-tunes the Hugging Face model directory DIR on FILE as SPEC.json says (the\n"
          "body of POST /v1/fine_tuning/jobs; \"model\" and \"training_file\" may be left\n"
          "out) and writes the result to --out (which must not exist or be empty).\n"
          "  --valid FILE     validation data (default: the spec's data.validation_split)\n"
          "  --test FILE      test data, evaluated once at the end (default: data.test_split)\n"
          "  --metrics-csv F  the per-step metrics CSV (default: OUT.metrics.csv)\n"
          "  --ckpt-dir DIR   where ckpt-<step>/ directories go (default: OUT.ckpt)\n"
          "  --resume CKPT    resume from a ckpt-<step> directory; \"latest\": the newest intact\n"
          "                   one in the checkpoint directory (a torn or corrupt one is passed\n"
          "                   over), or a fresh start when there is none\n"
          "  --max-steps N    stop (as if paused, with a checkpoint) after N steps\n"
          "stdout: one JSON object per line: each step's metrics, then {\"done\":true,...}\n"
          "with the result (best_step, early_stopped, test_metrics, result_csv, ...);\n"
          "on an error a single {\"error\":{\"code\",\"message\",\"param\"}} line and exit 1.\n"
          "SIGINT/SIGTERM pause: a checkpoint is written and the run stops.\n"
          "Test hook: FT_TEST_INJECT_NAN=FROM[:COUNT] makes those steps' loss non-finite.\n");
}

static const char *base_name(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  static char buf[256];
  size_t start = n;
  while (start > 0 && path[start - 1] != '/') start--;
  size_t len = n - start < sizeof buf - 1 ? n - start : sizeof buf - 1;
  memcpy(buf, path + start, len);
  buf[len] = 0;
  return buf;
}

int worker_train_cli(int argc, char **argv) {
  const char *model = NULL, *train = NULL, *valid = NULL, *spec_path = NULL, *out = NULL;
  const char *ckpt = NULL, *resume = NULL, *test = NULL, *csv = NULL;
  long max_steps = 0;
  ft_error e = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    const char **dst = !strcmp(a, "--model")         ? &model
                       : !strcmp(a, "--train")       ? &train
                       : !strcmp(a, "--valid")       ? &valid
                       : !strcmp(a, "--spec")        ? &spec_path
                       : !strcmp(a, "--out")         ? &out
                       : !strcmp(a, "--ckpt-dir")    ? &ckpt
                       : !strcmp(a, "--resume")      ? &resume
                       : !strcmp(a, "--test")        ? &test
                       : !strcmp(a, "--metrics-csv") ? &csv
                                                     : NULL;
    int is_max = !strcmp(a, "--max-steps");
    if (!dst && !is_max) {
      usage(stderr);
      ft_error_set(&e, FT_EINVALID, a, "unknown option %s", a);
      return print_error(&e);
    }
    if (i + 1 >= argc) {
      ft_error_set(&e, FT_EINVALID, a, "%s needs a value", a);
      return print_error(&e);
    }
    const char *v = argv[++i];
    if (is_max) {
      char *end;
      max_steps = strtol(v, &end, 10);
      if (*end || end == v || max_steps < 0) {
        ft_error_set(&e, FT_ERANGE, "--max-steps", "--max-steps must be a number >= 0");
        return print_error(&e);
      }
    } else {
      *dst = v;
    }
  }
  const char *missing = !model       ? "--model"
                        : !train     ? "--train"
                        : !spec_path ? "--spec"
                        : !out       ? "--out"
                                     : NULL;
  if (missing) {
    usage(stderr);
    ft_error_set(&e, FT_EMISSING, missing, "%s is required", missing);
    return print_error(&e);
  }

  json_error_t je;
  json_t *body = json_load_file(spec_path, JSON_REJECT_DUPLICATES, &je);
  if (!body) {
    ft_error_set(&e, FT_EJSON, "--spec", "%s: line %d: %s", spec_path, je.line, je.text);
    return print_error(&e);
  }
  if (!json_is_object(body)) {
    json_decref(body);
    ft_error_set(&e, FT_ETYPE, "--spec", "%s: the spec must be a JSON object", spec_path);
    return print_error(&e);
  }
  /* The daemon's ids mean nothing here: fill them in when left out. */
  if (!json_object_get(body, "model"))
    json_object_set_new(body, "model", json_string(base_name(model)));
  if (!json_object_get(body, "training_file"))
    json_object_set_new(body, "training_file", json_string("file-000000000000000000000000"));
  ft_spec spec;
  int rc = spec_parse(body, &spec, &e);
  json_decref(body);
  if (rc) {
    if (!e.code) ft_error_set(&e, rc, NULL, NULL);
    return print_error(&e);
  }

  char ckpt_buf[4096];
  if (!ckpt) {
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    snprintf(ckpt_buf, sizeof ckpt_buf, "%.*s.ckpt", (int)n, out);
    ckpt = ckpt_buf;
  }
  char resume_buf[4096];
  if (resume && !strcmp(resume, "latest")) {
    ft_error le = {0};
    int lr = ckpt_latest(ckpt, resume_buf, sizeof resume_buf, &le);
    if (lr && lr != FT_ENOT_FOUND) return print_error(&le);
    resume = lr ? NULL : resume_buf;
    if (resume) FT_INFO("msg=\"resuming from the latest checkpoint\" path=%s", resume);
  }
  char csv_buf[4096];
  if (!csv) {
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    snprintf(csv_buf, sizeof csv_buf, "%.*s.metrics.csv", (int)n, out);
    csv = csv_buf;
  }
  ft_train_opts o = {.spec = &spec,
                     .model_dir = model,
                     .train_path = train,
                     .valid_path = valid,
                     .out_dir = out,
                     .ckpt_dir = ckpt,
                     .resume_from = resume,
                     .max_steps = max_steps,
                     .test_path = test,
                     .metrics_csv = csv};
  worker_test_hooks(&o);
  ft_train_hooks h = {NULL, cli_step, cli_event, cli_checkpoint};
  ft_train_result res;
  memset(&res, 0, sizeof res);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sig;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  rc = train_run(&o, &h, &res, &e);
  if (rc && rc != FT_EPAUSED && rc != FT_ECANCELLED) {
    json_decref(res.test_metrics);
    if (!e.code) ft_error_set(&e, rc, NULL, NULL);
    return print_error(&e);
  }
  int stopped = res.stopped ? res.stopped : rc;
  json_t *done = worker_result_json(&res, csv);
  json_decref(res.test_metrics);
  json_object_set_new(done, "done", json_true());
  if (stopped == FT_EPAUSED || stopped == FT_ECANCELLED)
    json_object_set_new(done, "stopped",
                        json_string(stopped == FT_EPAUSED ? "paused" : "cancelled"));
  json_object_set_new(done, "out_dir", json_string(out));
  json_object_set_new(done, "ckpt_dir", json_string(ckpt));
  print_line(done);
  return 0;
}
