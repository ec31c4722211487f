# Non-finite losses through the daemon, with the worker's test hook
# FT_TEST_INJECT_NAN=FROM[:COUNT] (inherited from the daemon by the local
# worker): a few bad steps are skipped and counted and the job succeeds;
# five in a row fail it with nonfinite_loss, its last good checkpoint kept
# and listed.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
job_body() { # FILE-ID
  jq -nc --arg f "$1" '{model:"tiny", training_file:$f, seed:3, adapter:{type:"full"},
    method:{type:"supervised", supervised:{hyperparameters:{n_epochs:3, batch_size:4,
    learning_rate:0.001, max_seq_len:64}}}, data:{packing:false, validation_split:0},
    checkpoints:{every_steps:2, keep:2}}'
}

# steps 4 and 5 non-finite: skipped, counted, the job goes on
FT_TEST_INJECT_NAN=4:2 start_daemon --workers 1 || exit 1
fid=$(upload "$FT_SRC/examples/capitals.jsonl")
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(job_body "$fid")"
job=$(jget .id)
check_eq "two skipped steps: the job still succeeds" "$(wait_job "$job" succeeded 120)" succeeded
api GET "/v1/fine_tuning/jobs/$job/events?limit=100"
check_eq "each skipped step is told" \
  "$(jq '[.data[] | select((.message // "") | test("skipped: the loss or gradient is not finite"))] | length' <<<"$BODY")" 2
steps=$(jq -r '[.data[] | select(.type=="metrics") | .data.step] | sort | map(tostring) | join(" ")' <<<"$BODY")
check "skipped steps report no metrics ($steps)" bash -c "! grep -qw 4 <<<'$steps' && ! grep -qw 5 <<<'$steps'"
stop_daemon

# from step 6 on every step is non-finite: five in a row fail the job
FT_TEST_INJECT_NAN=6 start_daemon --workers 1 || exit 1
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(job_body "$fid")"
job=$(jget .id)
check_eq "five non-finite steps in a row fail the job" "$(wait_job "$job" failed 120)" failed
api GET "/v1/fine_tuning/jobs/$job"
check_eq "error code nonfinite_loss" "$(jget .error.code)" nonfinite_loss
check "the message says five in a row" grep -q "5 steps in a row" <<<"$(jget .error.message)"
api GET "/v1/fine_tuning/jobs/$job/checkpoints"
last=$(jq -r '[.data[].step_number] | max // 0' <<<"$BODY")
check_eq "the last good checkpoint (step 4) is kept and listed" "$last" 4
ck=$(jq -r '.data[] | select(.step_number == 4) | .fine_tuned_model_checkpoint' <<<"$BODY")
api GET "/v1/models/$ck"
check_eq "and it can be used as a model" "$CODE" 200
stop_daemon
T_DONE=1
