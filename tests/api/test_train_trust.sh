# Trustworthy training end to end with a real worker: a job goes
# validating_files -> queued -> running -> succeeded with datasets whose
# counts match the file, test metrics from a test split, the latest metrics,
# the per-step metrics CSV as a downloadable result file, and checkpoints in
# OpenAI's shape (only those still on disk); a checkpoint id and a
# fine-tuned model id continue training with their lineage in parent_model.
# (Early stopping: test_early_stop.sh.)
. "${FT_SRC:-.}/tests/lib.sh"

start_daemon --workers 1 || exit 1
if tiny_model tiny; then ok "init-model tiny"; else bad "init-model tiny"; fi
jq_ok() { jq -e "$1" >/dev/null; }
job() { api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$1"; }
hp='"hyperparameters":{"n_epochs":3,"batch_size":4,"learning_rate":0.001,"max_seq_len":64}'

# ---- a job with a test split and checkpoints every 2 steps (keep 2)
fid=$(upload "$FT_SRC/examples/capitals.jsonl")
nlines=$(grep -c . "$FT_SRC/examples/capitals.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$fid\",\"seed\":3,\"adapter\":{\"type\":\"full\"},
  \"method\":{\"type\":\"supervised\",\"supervised\":{$hp}},
  \"data\":{\"validation_split\":0.1,\"test_split\":0.2},\"evaluation\":{\"eval_every_steps\":2},
  \"checkpoints\":{\"every_steps\":2,\"keep\":2}}"
check_eq "created in validating_files" "$CODE $(jget .status)" "200 validating_files"
jid=$(jget .id)
eta=""
for _ in $(seq 1 200); do # while running: an estimated finish from the step rate
  api GET "/v1/fine_tuning/jobs/$jid"
  if [ "$(jget .status)" = running ] && jq -e '.metrics.step >= 3 and .steps_completed < .total_steps' \
    <<<"$BODY" >/dev/null; then
    eta=$(jget .estimated_finish)
    break
  fi
  sleep 0.05
done
check "estimated_finish while running" test "${eta:-null}" != null -a "${eta:-0}" -ge "$(($(date +%s) - 2))"
check_eq "job succeeded" "$(wait_job "$jid" succeeded 40)" succeeded
api GET "/v1/fine_tuning/jobs/$jid"
job1=$BODY
ftm=$(jget .fine_tuned_model)
steps=$(jget .steps_completed)
api GET "/v1/fine_tuning/jobs/$jid/events?limit=100"
check_eq "status path validating_files -> queued -> running -> succeeded" \
  "$(jget '[.data[] | select(.type == "status") | .data.status] | reverse | join(" ")')" \
  "validating_files queued running succeeded"
BODY=$job1
check_eq "datasets: training file, validation and test splits" \
  "$(jget '[.datasets.training.source, .datasets.validation.source, .datasets.test.source] | join(" ")')" \
  "file split split"
check_eq "datasets: the three sets hold the file's examples" \
  "$(jget '.datasets.training.examples + .datasets.validation.examples + .datasets.test.examples + .datasets.training.duplicates + .datasets.training.empty')" \
  "$nlines"
check "test metrics from the test split" jq_ok '.test_metrics.test_loss | type == "number"' <<<"$BODY"
check_eq "epochs_completed" "$(jget .epochs_completed)" 3
check_eq "metrics: the latest step" "$(jget .metrics.step)" "$steps"
check_eq "no estimated_finish once finished" "$(jget .estimated_finish)" null
check_eq "not early stopped" "$(jget .early_stopped)" false
check_eq "a base model has no parent_model" "$(jget .parent_model)" null

# the metrics CSV: a result file, downloadable, one row per step
check_eq "one result file" "$(jget '.result_files | length')" 1
rfid=$(jget '.result_files[0]')
api GET "/v1/files/$rfid"
check_eq "result file purpose" "$CODE $(jget .purpose)" "200 fine-tune-results"
csv=$(curl -s "$URL/v1/files/$rfid/content")
check_eq "CSV: a header and one row per step" "$(($(grep -c . <<<"$csv") - 1))" "$steps"
check_eq "CSV: steps 1..N in order" "$(tail -n +2 <<<"$csv" | cut -d, -f1 | tr '\n' ' ')" \
  "$(seq 1 "$steps" | tr '\n' ' ')"

# checkpoints: OpenAI's shape, only those still on disk
api GET "/v1/fine_tuning/jobs/$jid/checkpoints"
ckpts=$BODY
check "checkpoint objects" jq_ok '.data | length >= 1 and all(.[]; .object == "fine_tuning.job.checkpoint" and (.id | startswith("ftckpt-")) and (.metrics | type) == "object")' <<<"$ckpts"
check "only the kept checkpoints are listed (keep 2, plus the best)" jq_ok '.data | length <= 3' <<<"$ckpts"
check "checkpoint names are the model's id plus the step" jq -e --arg m "$ftm" \
  'all(.data[]; .fine_tuned_model_checkpoint == ($m + ":ckpt-step-" + (.step_number | tostring)))' <<<"$ckpts"
ck=$(jq -r '.data[-1].fine_tuned_model_checkpoint' <<<"$ckpts")
ckstep=$(jq -r '.data[-1].step_number' <<<"$ckpts")
check "every listed checkpoint is on disk" test "$(jq -r '.data | length' <<<"$ckpts")" = \
  "$(ls -d "$T_DIR"/data/jobs/"$jid"/checkpoints/ckpt-* 2>/dev/null | wc -l)"
api GET "/v1/models/$ck"
check_eq "a checkpoint id is a model" "$CODE $(jget .job) $(jget .step)" "200 $jid $ckstep"
gone=2
while jq -e --argjson s "$gone" 'any(.data[]; .step_number == $s)' <<<"$ckpts" >/dev/null; do
  gone=$((gone + 2))
done
job "{\"model\":\"$ftm:ckpt-step-$gone\",\"training_file\":\"$fid\"}"
check_eq "a pruned checkpoint is 400 naming model" "$CODE $(jget .error.param)" "400 model"
job "{\"model\":\"$ftm:ckpt-step-99999\",\"training_file\":\"$fid\"}"
check_eq "a checkpoint that does not exist is 400 naming model" "$CODE $(jget .error.param)" "400 model"

# ---- continue training from a checkpoint
job "{\"model\":\"$ck\",\"training_file\":\"$fid\",\"adapter\":{\"type\":\"full\"},
  \"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":1,\"batch_size\":4,\"max_seq_len\":64}}}}"
check_eq "job on a checkpoint created" "$CODE $(jget .parent_model.job) $(jget .parent_model.model)" \
  "200 $jid $ck"
jid2=$(jget .id)
check_eq "job on a checkpoint succeeded" "$(wait_job "$jid2" succeeded 40)" succeeded
api GET "/v1/fine_tuning/jobs/$jid2"
check_eq "its lineage" "$(jget .parent_model.job) $(jget .parent_model.step)" "$jid $ckstep"
check "the checkpoint was materialised as a model" test -f "$T_DIR/data/models/$ck/config.json"
api GET "/v1/models"
check "models list the new model" jq -e --arg m "$(curl -s "$URL/v1/fine_tuning/jobs/$jid2" | jq -r .fine_tuned_model)" \
  'any(.data[]; .id == $m)' <<<"$BODY"

# ---- continue training from a fine-tuned model
job "{\"model\":\"$ftm\",\"training_file\":\"$fid\",\"suffix\":\"more\",\"adapter\":{\"type\":\"full\"},
  \"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":1,\"batch_size\":4,\"max_seq_len\":64}}}}"
check_eq "job on a fine-tuned model: lineage" "$CODE $(jget .parent_model.model) $(jget .parent_model.job)" \
  "200 $ftm $jid"
jid3=$(jget .id)
check_eq "job on a fine-tuned model succeeded" "$(wait_job "$jid3" succeeded 40)" succeeded

T_DONE=1
