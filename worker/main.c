/* finetuned-worker: runs fine-tuning jobs for a finetuned daemon (--connect),
 * or one run from files on the command line (train). Only this file exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_log.h"
#include "worker.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: finetuned-worker --connect unix:PATH|tcp:HOST:PORT [--token T] [--id NAME] [--once]\n"
      "       finetuned-worker train --help\n"
      "\n"
      "Connects to a finetuned daemon, claims jobs one at a time and runs them.\n"
      "  --connect ADDR  the daemon's worker socket (DATA_DIR/worker.sock) or its\n"
      "                  --worker-listen address\n"
      "  --token T       the daemon's worker token (required over TCP); also read from\n"
      "                  FINETUNED_WORKER_TOKEN\n"
      "  --id NAME       the name the daemon shows for this worker (default HOST-PID)\n"
      "  --once          exit after one job\n"
      "Exits 1 when the daemon connection is lost (a supervisor restarts it), 0 on\n"
      "SIGTERM/SIGINT or after --once.\n");
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "train")) return worker_train_cli(argc - 1, argv + 1);
  worker_opts o = {0};
  o.token = getenv("FINETUNED_WORKER_TOKEN");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--once")) {
      o.once = 1;
    } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
      ft_log_set_level(FT_LOG_DEBUG);
    } else if ((!strcmp(a, "--connect") || !strcmp(a, "--token") || !strcmp(a, "--id")) &&
               i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(a, "--connect"))
        o.connect = v;
      else if (!strcmp(a, "--token"))
        o.token = v;
      else
        o.id = v;
    } else {
      fprintf(stderr, "finetuned-worker: bad argument: %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!o.connect) {
    fprintf(stderr, "finetuned-worker: --connect is required\n");
    usage(stderr);
    return 2;
  }
  return worker_run(&o);
}
