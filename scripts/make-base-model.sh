#!/usr/bin/env bash
# Pretrains a small base model of our own from scratch, end to end:
#   1. text: scripts/fetch-datasets.sh (brown, wordnet, quiz by default; see
#      docs/datasets.md for sources and licences), or --text FILEs, flattened
#      into one {"text"} JSONL corpus (prompt+completion and chat messages
#      joined);
#   2. a byte-level BPE tokenizer on it: finetuned train-tokenizer (8192);
#   3. a random Llama model with that tokenizer: finetuned init-model
#      (preset llama-base-8m, ~7.9M parameters), imported into the daemon's
#      data dir as NAME-init (finetuned import-model);
#   4. a full-parameter "text" job on it through the daemon's HTTP API
#      (upload, POST /v1/fine_tuning/jobs) with a token budget
#      (hyperparameters.token_budget), followed over the SSE event stream;
#   5. the result downloaded (GET /v1/models/{id}/content) and registered as
#      the base model NAME (finetuned import-model);
#   6. with --ship DIR, a copy with float16 weights (finetuned convert-model)
#      and the run's summary.json written to DIR: how models/base-8m/ in the
#      repository was made (its README.md gives the exact command and figures).
# The daemon must be running on this machine (import-model writes into its
# --data-dir). Writes WORK/summary.json: job id, models, steps, trained
# tokens, first and last validation perplexity.
#
#   scripts/make-base-model.sh --url http://127.0.0.1:8080 --data-dir var [options]
#     --name NAME       base model to register (default base-8m); the random
#                       start is NAME-init
#     --preset P        init-model preset (default llama-base-8m)
#     --vocab N         tokenizer vocabulary (default 8192)
#     --tokens N        token budget (default 7000000)
#     --seq N           max_seq_len (default 512)
#     --batch N         batch size (default 8)
#     --lr X            learning rate (default 0.0015)
#     --datasets "A B"  fetch-datasets.sh names (default "brown wordnet quiz")
#     --max N           fetch-datasets.sh --max (examples per dataset; default
#                       1000000: all of them)
#     --text FILE       train on FILE (JSONL or plain text) instead; repeatable
#     --work DIR        working directory (default var/pretrain/NAME)
#     --api-key KEY     or $FINETUNED_API_KEY
#     --ship DIR        also write the result with float16 weights to DIR
#     --stop-at-step N  take the checkpoint of step N (a multiple of the
#                       checkpoint interval, a tenth of the planned steps) as
#                       the result, and pause the job there (models/base-8m
#                       is step 1190 of the default 1717); every checkpoint
#                       is kept meanwhile (about ten)
#     --quick           a test-sized run (put it first: later options override it):
#                       preset tiny, vocab 512, 40000 tokens,
#                       seq 64, batch 8, lr 0.003
# Needs curl, jq, tar. Exits non-zero when any step fails.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FT_BIN:-$ROOT/build/bin}
URL="" DATA="" NAME=base-8m PRESET=llama-base-8m VOCAB=8192 TOKENS=7000000 SEQ=512 BATCH=8
LR=0.0015 DATASETS="brown wordnet quiz" MAX=1000000 WORK="" SHIP="" STOP="" KEY=${FINETUNED_API_KEY:-}
texts=()
quick=0
die() { echo "make-base-model: $*" >&2; exit 1; }
log() { echo "make-base-model: $*" >&2; }
while [ $# -gt 0 ]; do
  case $1 in
    --url) URL=${2:?}; shift 2 ;;
    --data-dir) DATA=${2:?}; shift 2 ;;
    --name) NAME=${2:?}; shift 2 ;;
    --preset) PRESET=${2:?}; shift 2 ;;
    --vocab) VOCAB=${2:?}; shift 2 ;;
    --tokens) TOKENS=${2:?}; shift 2 ;;
    --seq) SEQ=${2:?}; shift 2 ;;
    --batch) BATCH=${2:?}; shift 2 ;;
    --lr) LR=${2:?}; shift 2 ;;
    --datasets) DATASETS=${2:?}; shift 2 ;;
    --max) MAX=${2:?}; shift 2 ;;
    --text) texts+=("${2:?}"); shift 2 ;;
    --work) WORK=${2:?}; shift 2 ;;
    --api-key) KEY=${2:?}; shift 2 ;;
    --ship) SHIP=${2:?}; shift 2 ;;
    --stop-at-step) STOP=${2:?}; shift 2 ;;
    --quick) quick=1; PRESET=tiny VOCAB=512 TOKENS=40000 SEQ=64 BATCH=8 LR=0.003 MAX=""; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

[ -n "$URL" ] || die "--url is required"
[ -n "$DATA" ] || die "--data-dir is required (the running daemon's data directory)"
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--name: letters, digits, . _ - only"
for v in VOCAB TOKENS SEQ BATCH ${STOP:+STOP}; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} wants a positive integer"; done
[ -d "$DATA/models" ] || die "$DATA/models does not exist: is $DATA the daemon's data dir?"
[ ! -e "$DATA/models/$NAME" ] || die "model $NAME exists already in $DATA/models"
[ ! -e "$DATA/models/$NAME-init" ] || die "model $NAME-init exists already in $DATA/models"
[ -z "$SHIP" ] || [ ! -e "$SHIP" ] || die "--ship $SHIP exists already"
every=$((TOKENS / (BATCH * SEQ) / 10)); [ "$every" -ge 1 ] || every=1 # evaluations, checkpoints
[ -z "$STOP" ] || [ $((STOP % every)) = 0 ] ||
  die "--stop-at-step $STOP: not a checkpoint step (every $every steps)"
command -v jq >/dev/null || die "jq is required"
WORK=${WORK:-$ROOT/var/pretrain/$NAME}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
auth=()
[ -z "$KEY" ] || auth=(-H "Authorization: Bearer $KEY")
api() { curl -sS --fail-with-body "${auth[@]+"${auth[@]}"}" "$@"; }

# ---- 1. text
corpus=$WORK/corpus.jsonl
if [ ${#texts[@]} -eq 0 ]; then
  max=(); [ -z "$MAX" ] || max=(--max "$MAX")
  # shellcheck disable=SC2086
  "$ROOT/scripts/fetch-datasets.sh" --out "$WORK/datasets" ${max[@]+"${max[@]}"} $DATASETS >&2 ||
    die "fetch-datasets.sh failed"
  for f in brown fortunes wordnet-defs quiz; do
    [ -f "$WORK/datasets/$f.jsonl" ] && texts+=("$WORK/datasets/$f.jsonl")
  done
  [ ${#texts[@]} -gt 0 ] || die "no text dataset among: $DATASETS (brown, wordnet, quiz, fortunes)"
fi
: >"$corpus"
for f in "${texts[@]}"; do
  [ -f "$f" ] || die "no such file: $f"
  if [ "$(head -c 4096 "$f" | tr -d ' \t\r\n' | head -c 1)" = "{" ]; then
    jq -c 'select(type == "object") | {text: ([.text, .prompt, .completion,
      (.messages // [] | map(.content // "") | join("\n"))] | map(select(type == "string" and
      . != "")) | join(""))} | select(.text != "")' "$f" >>"$corpus" || die "$f: not JSONL"
  else # plain text: paragraphs (blank-line separated) become examples
    jq -Rsc 'split("\n\n")[] | select(test("\\S")) | {text: .}' "$f" >>"$corpus" || die "$f: unreadable"
  fi
done
log "corpus: $(wc -l <"$corpus") examples, $(wc -c <"$corpus") bytes in $corpus"

# ---- 2. tokenizer
rm -rf "$WORK/tokenizer" "$WORK/init" "$WORK/final"
"$BIN/finetuned" train-tokenizer --vocab-size "$VOCAB" --out "$WORK/tokenizer" "$corpus" >&2 ||
  die "train-tokenizer failed"

# ---- 3. random model, imported as NAME-init
"$BIN/finetuned" init-model --arch llama --preset "$PRESET" --tokenizer "$WORK/tokenizer" \
  --out "$WORK/init" --seed 1 >&2 || die "init-model failed"
"$BIN/finetuned" import-model --data-dir "$DATA" --name "$NAME-init" "$WORK/init" >&2 ||
  die "import-model $NAME-init failed"

# ---- 4. the job
fid=$(api "$URL/v1/files" -F purpose=fine-tune -F "file=@$corpus" | jq -r .id) ||
  die "upload failed"
[ -n "$fid" ] && [ "$fid" != null ] || die "upload gave no file id"
# --stop-at-step keeps every checkpoint (about ten), so that step's is there
# however late it is seen
keep=2; [ -z "$STOP" ] || keep=12
body=$(jq -nc --arg m "$NAME-init" --arg f "$fid" --argjson tb "$TOKENS" --argjson b "$BATCH" \
  --argjson k "$keep" \
  --argjson s "$SEQ" --argjson lr "$LR" --argjson e "$every" '{model:$m, training_file:$f,
  suffix:"base", adapter:{type:"full"}, method:{type:"supervised", supervised:{hyperparameters:{
  token_budget:$tb, batch_size:$b, max_seq_len:$s, learning_rate:$lr, lr_scheduler:"cosine",
  warmup_ratio:0.05, weight_decay:0.1}}}, data:{validation_split:0.05},
  evaluation:{eval_every_steps:$e, eval_samples:64}, checkpoints:{every_steps:$e, keep:$k}}')
job=$(api "$URL/v1/fine_tuning/jobs" -H 'Content-Type: application/json' -d "$body" | jq -r .id) ||
  die "job creation failed"
log "job $job: $TOKENS tokens on $NAME-init"
# the event stream replays everything and ends when the job does
follow() {
  api -N "$URL/v1/fine_tuning/jobs/$job/events?stream=true" | sed -un 's/^data: {/{/p' |
    tee "$WORK/events.jsonl" | jq --unbuffered -r 'select(.type == "metrics") | .data |
      select(.valid_perplexity != null or .step == .total_steps) |
      "step \(.step)/\(.total_steps) tokens \(.trained_tokens) train_loss \(.train_loss)" +
      " valid_perplexity \(.valid_perplexity // "-")"' >&2 || true
}
status=""
if [ -n "$STOP" ]; then
  follow &
  fpid=$!
  ck=""
  while :; do
    status=$(api "$URL/v1/fine_tuning/jobs/$job" | jq -r .status)
    ck=$(api "$URL/v1/fine_tuning/jobs/$job/checkpoints?limit=100" | jq -r --argjson s "$STOP" \
      '.data[] | select(.step_number == $s) | .fine_tuned_model_checkpoint')
    [ -n "$ck" ] && break
    case $status in succeeded | failed | cancelled) die "job $job ended $status before step $STOP" ;; esac
    sleep 2
  done
  case $status in succeeded | failed | cancelled | paused) ;; # (a short job may be over already)
    *)
      api -X POST "$URL/v1/fine_tuning/jobs/$job/pause" >/dev/null || die "cannot pause job $job"
      for _ in $(seq 1 600); do
        status=$(api "$URL/v1/fine_tuning/jobs/$job" | jq -r .status)
        case $status in paused | succeeded | failed | cancelled) break ;; esac
        sleep 1
      done ;;
  esac
  pkill -f "jobs/$job/events" 2>/dev/null || true # the stream's curl: the pipeline then ends
  kill "$fpid" 2>/dev/null || true
  wait "$fpid" 2>/dev/null || true
  log "job $job $status; the result is its checkpoint $ck"
  ft=$ck
  j=$(api "$URL/v1/fine_tuning/jobs/$job/checkpoints?limit=100" | jq -c --argjson s "$STOP" \
    '.data[] | select(.step_number == $s) | {steps_completed: .step_number,
     total_steps: .metrics.total_steps, trained_tokens: .metrics.trained_tokens}')
else
  follow
  for _ in $(seq 1 600); do
    j=$(api "$URL/v1/fine_tuning/jobs/$job")
    status=$(jq -r .status <<<"$j")
    case $status in succeeded | failed | cancelled) break ;; esac
    sleep 1
  done
  [ "$status" = succeeded ] || die "job $job ended $status: $(jq -c .error <<<"$j")"
  ft=$(jq -r .fine_tuned_model <<<"$j")
fi

# ---- 5. the result as the base model NAME
mkdir -p "$WORK/final"
api "$URL/v1/models/$ft/content" | tar -x -C "$WORK/final" || die "downloading $ft failed"
src=$WORK/final
[ -f "$src/config.json" ] || src=$(dirname "$(find "$WORK/final" -name config.json | head -1)")
"$BIN/finetuned" import-model --data-dir "$DATA" --name "$NAME" "$src" >&2 ||
  die "import-model $NAME failed"

jq -s --arg job "$job" --arg ft "$ft" --arg name "$NAME" --argjson j "$j" '
  [.[] | select(.type == "metrics") | .data] as $m |
  [$m[] | select(.step <= $j.steps_completed)] as $m |
  [$m[] | select(.valid_perplexity != null) | .valid_perplexity] as $p |
  {job: $job, fine_tuned_model: $ft, model: $name, init_model: ($name + "-init"),
   steps: $j.steps_completed, total_steps: $j.total_steps, trained_tokens: $j.trained_tokens,
   first_valid_perplexity: $p[0], last_valid_perplexity: $p[-1],
   final_valid_perplexity: ([$m[] | select(.full_valid_perplexity != null) |
     .full_valid_perplexity] | last)}' "$WORK/events.jsonl" >"$WORK/summary.json"
log "registered $NAME ($(jq -c . "$WORK/summary.json"))"
if [ -n "$SHIP" ]; then
  "$BIN/finetuned" convert-model --dtype f16 --out "$SHIP" "$src" >&2 || die "convert-model failed"
  cp "$WORK/summary.json" "$SHIP/summary.json"
  log "wrote $SHIP (float16 weights)"
fi
[ "$quick" = 1 ] && log "(quick run: a test of the recipe, not a useful model)"
cat "$WORK/summary.json"
