# Early stopping end to end with a real worker, on a dataset built to
# overfit: the validation set asks for the completion the training set never
# gives, so the validation loss turns up once the model learns the training
# completion; the job stops early, before its planned end, and reports the
# best step (before the last) and its metric.
. "${FT_SRC:-.}/tests/lib.sh"

start_daemon --workers 1 || exit 1
if tiny_model tiny; then ok "init-model tiny"; else bad "init-model tiny"; fi
jq_ok() { jq -e "$1" >/dev/null; }
job() { api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$1"; }

# ---- early stopping on a dataset built to overfit: the validation set
# asks for the completion the training set never gives
: >"$T_DIR/of_train.jsonl"
: >"$T_DIR/of_valid.jsonl"
for i in $(seq 1 24); do
  echo "{\"prompt\":\"item $i colour:\",\"completion\":\" red\"}" >>"$T_DIR/of_train.jsonl"
  echo "{\"prompt\":\"item $i colour:\",\"completion\":\" blue\"}" >>"$T_DIR/of_valid.jsonl"
done
otf=$(upload "$T_DIR/of_train.jsonl")
ovf=$(upload "$T_DIR/of_valid.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$otf\",\"validation_file\":\"$ovf\",\"seed\":1,
  \"adapter\":{\"type\":\"full\"},
  \"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":20,\"batch_size\":4,
    \"learning_rate\":0.01,\"max_seq_len\":32}}},
  \"evaluation\":{\"eval_every_steps\":2,\"early_stopping\":{\"metric\":\"valid_loss\",\"patience\":3}}}"
check_eq "overfitting job created" "$CODE" 200
jid4=$(jget .id)
check_eq "overfitting job succeeded" "$(wait_job "$jid4" succeeded 40)" succeeded
api GET "/v1/fine_tuning/jobs/$jid4"
check_eq "early_stopped" "$(jget .early_stopped)" true
check "stopped before the planned end" jq_ok '.steps_completed < .total_steps' <<<"$BODY"
check "best_step before the last step" jq_ok '.best_step > 0 and .best_step < .steps_completed' <<<"$BODY"
check "best_metric is a number" jq_ok '.best_metric | type == "number"' <<<"$BODY"
T_DONE=1
