# kill -9 of the worker in the middle of a job: the daemon restarts the
# worker, the job's next attempt resumes from its last checkpoint, the job
# finishes exactly once, and its step counter never goes back to the start.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
start_daemon --workers 1 || exit 1
start_ckpt_job 5
job=$JOB
check_eq "job created" "$CODE" 200
# kill between checkpoints, so the next attempt must redo some steps
wait_ckpt "$job" 10 2; ck=$CK
check "a checkpoint exists before the kill ($ck)" test "$ck" -ge 10
wpid=$(pgrep -f "finetuned-worker --connect unix:$T_DIR/data/" | head -1)
check "worker process found" test -n "$wpid"
kill -9 "$wpid"
killed_at=$(curl -s "$URL/v1/fine_tuning/jobs/$job" | jq -r .steps_completed)

check_eq "job still succeeds" "$(wait_job "$job" succeeded 240)" succeeded
api GET "/v1/fine_tuning/jobs/$job"
check_eq "second attempt ran it" "$(jget .attempt)" 2
total=$(jget .total_steps)
check_eq "all steps completed" "$(jget .steps_completed)" "$total"
api GET "/v1/fine_tuning/jobs/$job/events?limit=100"
# chronological metrics steps: after the kill the next attempt restarts at the
# checkpoint's step + 1, never at 1
steps=$(jq -r '[.data[] | select(.type=="metrics") | .data.step] | reverse | map(tostring) | join(" ")' <<<"$BODY")
restart=$(first_repeat "$steps")
check "steps resumed after a checkpoint, not from 1 (restart at ${restart:-none}, killed at $killed_at)" \
  test "${restart:-0}" -gt 1
check "restart point is not after the kill" test "${restart:-99999}" -le "$killed_at"
check "restart point is a checkpoint + 1" test $(( (${restart:-1} - 1) % 5 )) -eq 0
check_eq "exactly one fine-tuned model" \
  "$(ls "$T_DIR/data/models" | grep -c "^ft:.*:$job\$")" 1
check "a new worker was started" test -n "$(pgrep -f "finetuned-worker --connect unix:$T_DIR/data/")"
T_DONE=1
