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
# the second attempt resumed from a checkpoint R (every 5 steps, or an
# epoch end) taken before the kill, and its steps start at R + 1: a repeat
# of the steps R+1.. the first attempt ran after R, or none when the kill
# landed right after checkpoint R
resumed=$(jq -r '[.data[] | select((.message // "") | test("resumed from .* at step")) | .message][0] // ""' <<<"$BODY")
R=$(sed -n 's/.* at step \([0-9]*\).*/\1/p' <<<"$resumed")
check "the second attempt resumed from a checkpoint ($resumed)" test "${R:-0}" -ge 10
check "the checkpoint is not after the kill (R=${R:-none}, killed at $killed_at)" \
  test "${R:-99999}" -le "$killed_at"
steps=$(jq -r '[.data[] | select(.type=="metrics") | .data.step] | reverse | map(tostring) | join(" ")' <<<"$BODY")
restart=$(first_repeat "$steps")
check "steps resumed at R + 1, never from 1 (restart at ${restart:-none}, R=${R:-none})" \
  test "${restart:-$((${R:-0} + 1))}" -eq "$((${R:-0} + 1))"
check_eq "every step reported once after the restart" \
  "$(tr ' ' '\n' <<<"$steps" | sort -n | uniq | wc -l)" "$total"
check_eq "exactly one fine-tuned model" \
  "$(ls "$T_DIR/data/models" | grep -c "^ft:.*:$job\$")" 1
check "a new worker was started" test -n "$(pgrep -f "finetuned-worker --connect unix:$T_DIR/data/")"
T_DONE=1
