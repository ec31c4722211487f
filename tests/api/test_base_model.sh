#!/usr/bin/env bash
# The base model shipped in models/base-8m: what scripts/run.sh
# registers as the default. Checks that the files are what the model card
# (models/base-8m/README.md) and summary.json say (checksum, float16,
# parameter count, its own 8192-token tokenizer), that it really is
# pretrained (its per-token loss on English it never saw is far below that of
# the same architecture freshly initialised, which is about ln 8192 = 9.0),
# and that it serves completions and can be fine-tuned as a classifier.
source "$(dirname "$0")/../lib.sh"
M=$FT_SRC/models/base-8m
check "models/base-8m exists" test -f "$M/config.json"
start_daemon || exit 1
"$FT_BIN/finetuned" import-model --data-dir "$T_DIR/data" --name base-8m "$M" >/dev/null
check_eq "import-model accepts it" "$?" 0
"$FT_BIN/finetuned" init-model --arch llama --preset llama-base-8m --tokenizer "$M" \
  --out "$T_DIR/data/models/random-8m" --seed 1 >/dev/null
check_eq "a random model of the same preset" "$?" 0

want=$(sed -n 's/.*sha256 `\([0-9a-f]\{64\}\)`.*/\1/p' "$M/README.md" | head -1)
got=$(sha256sum "$M/model.safetensors" | cut -d' ' -f1)
check_eq "the weights' sha256 is the one in the model card" "$got" "$want"
check_eq "float16 weights" "$(jq -r .torch_dtype "$M/config.json")" float16
check "under 25 MB" test "$(stat -c %s "$M/model.safetensors")" -lt 25000000
check_eq "a tokenizer of 8192" "$(jq '.model.vocab | length' "$M/tokenizer.json")" 8192
check_eq "config vocab_size agrees" "$(jq .vocab_size "$M/config.json")" 8192
check "summary.json: step 1190 of 1717, the figures of the model card" jq -e '.steps == 1190 and
  .total_steps == 1717 and .trained_tokens == 4851566 and .final_valid_perplexity < 70' "$M/summary.json"
check "the model card gives the same step and tokens" grep -q "step 1190.*4,851,566" "$M/README.md"

api GET /v1/models/base-8m
check_eq "listed as a llama causal LM" "$(jget '.architecture + " " + .task')" "llama causal_lm"

# mean negative log-likelihood per token of text that is in none of the
# corpora (written for this test), scored with echo + logprobs
TEXT='The old bridge over the river was closed for repairs, so the children walked the long way to school through the park. Their teacher said that the new library would open in the spring, and everyone hoped it would have more books about ships and the sea.'
nll() {
  api POST /v1/completions -H 'Content-Type: application/json' -d "$(jq -nc --arg m "$1" \
    --arg p "$TEXT" '{model:$m, prompt:$p, max_tokens:0, echo:true, logprobs:1}')"
  jq '.choices[0].logprobs.token_logprobs | map(select(. != null)) | -(add / length)' <<<"$BODY"
}
pre=$(nll base-8m)
rnd=$(nll random-8m)
check "the random model is near ln 8192 = 9.0 nats/token ($rnd)" jq -en "$rnd > 8 and $rnd < 10"
check "the base model is pretrained: under 5.5 nats/token ($pre)" jq -en "$pre < 5.5"
check "pretrained beats random by over 3 nats/token ($pre vs $rnd)" jq -en "$rnd - $pre > 3"

api POST /v1/completions -H 'Content-Type: application/json' \
  -d '{"model":"base-8m","prompt":"The history of the","max_tokens":12,"temperature":0}'
check_eq "it serves a completion" "$CODE" 200
check "the completion has text" test -n "$(jget '.choices[0].text')"

# a short classification fine-tune on it through the API, then classify
python3 - "$T_DIR/cls.jsonl" <<'PY'
import json, sys
pos = ["a lovely sunny day in the park", "the dinner was wonderful and warm",
       "we had a great time at the beach", "the music was beautiful tonight",
       "she smiled and thanked him kindly", "the garden is full of bright flowers"]
neg = ["the train was late and the room was cold", "he lost his keys and missed the bus",
       "the food was awful and the service slow", "it rained all week and the roof leaked",
       "the meeting was long and pointless", "the car broke down on the highway"]
with open(sys.argv[1], "w") as f:
    for i, end in enumerate(["", "!", " today", " again"]):
        for t in pos: f.write(json.dumps({"text": t + end, "label": "good"}) + "\n")
        for t in neg: f.write(json.dumps({"text": t + end, "label": "bad"}) + "\n")
PY
fid=$(upload "$T_DIR/cls.jsonl")
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(jq -nc --arg f "$fid" '{
  model:"base-8m", training_file:$f, seed:1, adapter:{type:"full"}, data:{test_split:0.2},
  method:{type:"classification", classification:{hyperparameters:{n_epochs:3, batch_size:8,
  learning_rate:0.0005, max_seq_len:32}}}}')"
check_eq "a classification job on base-8m" "$CODE" 200
job=$(jget .id)
check_eq "it succeeds" "$(wait_job "$job" succeeded 300)" succeeded
api GET "/v1/fine_tuning/jobs/$job"
check "it reports test accuracy" jq -e '(.test_metrics.test_accuracy | type) == "number"' <<<"$BODY"
model=$(jget .fine_tuned_model)
api POST /v1/classifications -H 'Content-Type: application/json' \
  -d '{"model":"'"$model"'","input":["what a wonderful evening","the pipe burst again"]}'
check_eq "the fine-tuned classifier answers" "$CODE" 200
check_eq "with the two labels" "$(jget '.labels | sort | join(",")')" "bad,good"
T_DONE=1
