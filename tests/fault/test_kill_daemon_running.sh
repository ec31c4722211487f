# kill -9 of the daemon while a job trains: its worker loses the connection
# and stops; after a restart the job's lease runs out, the job is leased
# again and resumes from its last checkpoint, and it succeeds exactly once.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
start_daemon --workers 1 --lease-ms 2000 --heartbeat-ms 500 || exit 1
start_ckpt_job 9
job=$JOB
check_eq "job created" "$CODE" 200
wait_ckpt "$job" 10 0; ck=$CK
check "a checkpoint exists before the kill ($ck)" test "$ck" -ge 10
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=""
# the orphaned worker notices the lost connection and exits by itself
for _ in $(seq 1 100); do
  pgrep -f "finetuned-worker --connect unix:$T_DIR/data/" >/dev/null || break
  sleep 0.1
done
worker_gone() { ! pgrep -f "finetuned-worker --connect unix:$T_DIR/data/" >/dev/null; }
check "orphaned worker exited" worker_gone
check_eq "integrity_check" "$(sqlite3 "$T_DIR/data/finetuned.db" 'PRAGMA integrity_check')" ok
start_daemon --workers 1 --lease-ms 2000 --heartbeat-ms 500 || exit 1
check_eq "job leased again and succeeds" "$(wait_job "$job" succeeded 240)" succeeded
api GET "/v1/fine_tuning/jobs/$job"
check_eq "second attempt" "$(jget .attempt)" 2
api GET "/v1/fine_tuning/jobs/$job/events?limit=100"
steps=$(jq -r '[.data[] | select(.type=="metrics") | .data.step] | reverse | map(tostring) | join(" ")' <<<"$BODY")
restart=$(first_repeat "$steps")
check "resumed from a checkpoint, not from step 1 (restart at ${restart:-none})" \
  test "${restart:-1}" -gt 1 -o -z "$restart"
check_eq "exactly one fine-tuned model" "$(ls "$T_DIR/data/models" | grep -c "^ft:.*:$job\$")" 1
T_DONE=1
