# Graceful shutdown. SIGTERM with nothing to do: the daemon exits
# 0 at once. SIGTERM while a job trains and an upload is in flight: new
# connections are refused, the upload completes, the job pauses at a
# checkpoint and goes back to queued (not paused, no attempt lost), the daemon
# exits 0 within the drain timeout; after a restart the job resumes from that
# checkpoint and every step runs exactly once. A second SIGTERM during a drain
# stops the daemon at once (exit 1).
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
db="$T_DIR/data/finetuned.db"
DRAIN_MS=15000
ms_now() { date +%s%3N; }
# stop_with SIGNAL: signals the daemon and waits for it; sets ST (exit status), MS
stop_with() {
  local t0
  t0=$(ms_now)
  kill "-$1" "$DAEMON_PID"
  wait "$DAEMON_PID"
  ST=$?
  MS=$(($(ms_now) - t0))
  DAEMON_PID=""
}
worker_gone() { ! pgrep -f "finetuned-worker --connect unix:$T_DIR/data/" >/dev/null; }
refused() { # curl exit 7: could not connect
  curl -s -o /dev/null --max-time 2 "$URL/healthz"
  [ $? = 7 ]
}
sql() { sqlite3 "$db" "$1"; }
# slow_upload RATE: uploads $T_DIR/slow.jsonl at RATE in the background; the
# HTTP status goes to $T_DIR/up.code and the body to $T_DIR/up.json
slow_upload() {
  curl -s --limit-rate "$1" "$URL/v1/files" -F purpose=fine-tune -F "file=@$T_DIR/slow.jsonl" \
    -o "$T_DIR/up.json" -w '%{http_code}' >"$T_DIR/up.code" 2>/dev/null &
  UPLOAD_PID=$!
}
for _ in $(seq 1 80); do cat "$FT_SRC/examples/capitals.jsonl"; done >"$T_DIR/slow.jsonl"

# --- idle
start_daemon --workers 1 || exit 1
stop_with TERM
check_eq "idle SIGTERM: exit status" "$ST" 0
check "idle SIGTERM: exits promptly ($MS ms)" test "$MS" -lt 3000
check "idle SIGTERM: local worker stopped" worker_gone

# --- a job training, an upload in flight
start_daemon --workers 1 --drain-timeout-ms $DRAIN_MS || exit 1
start_ckpt_job 11 # 80 steps, a checkpoint every 5
job=$JOB
check_eq "job created" "$CODE" 200
[ "$CODE" = 200 ] || exit 1
wait_ckpt "$job" 5 1
ck=$CK
check "running with a checkpoint before the signal (step $ck)" test "${ck:-0}" -ge 5
[ "${ck:-0}" -ge 5 ] || exit 1
slow_upload 100K # ~320 KB: about 3 s
sleep 0.5
stop_pid=$DAEMON_PID
t0=$(ms_now)
kill -TERM "$stop_pid"
sleep 0.3
check "draining: new connections are refused" refused
check "draining: the daemon waits for the upload in flight" kill -0 "$stop_pid"
wait "$stop_pid"
ST=$?
MS=$(($(ms_now) - t0))
DAEMON_PID=""
check_eq "SIGTERM: exit status" "$ST" 0
check "SIGTERM: exits within the drain timeout ($MS ms < $DRAIN_MS)" test "$MS" -lt $DRAIN_MS
wait "$UPLOAD_PID"
check_eq "the upload in flight completed" "$(cat "$T_DIR/up.code")" 200
up_id=$(jq -r .id "$T_DIR/up.json")
check "SIGTERM: local worker stopped" worker_gone
check_eq "job row: queued, no attempt lost" "$(sql "SELECT status, lost, attempt FROM jobs WHERE id = '$job'")" "queued|0|1"
rs=$(sql "SELECT c.step FROM checkpoints c JOIN jobs j ON j.id = c.job_id WHERE j.id = '$job' AND c.path = j.resume_from")
done_steps=$(sql "SELECT steps_completed FROM jobs WHERE id = '$job'")
check "resume_from is a checkpoint after the one seen before the signal ($rs >= $ck)" test "${rs:-0}" -ge "$ck"
check_eq "that checkpoint is at the last step run" "$rs" "$done_steps"
total=$(sql "SELECT total_steps FROM jobs WHERE id = '$job'")
check "the job was stopped before its end ($done_steps < $total)" test "$done_steps" -lt "$total"
check_eq "a status event says the shutdown queued it, resuming at step $rs" \
  "$(sql "SELECT json_extract(data, '\$.status') || ' ' || json_extract(data, '\$.resume_step') FROM events
          WHERE job_id = '$job' AND type = 'status' AND json_extract(data, '\$.reason') = 'shutdown'")" "queued $rs"
check_eq "never shown as paused" \
  "$(sql "SELECT count(*) FROM events WHERE job_id = '$job' AND json_extract(data, '\$.status') IN ('paused', 'pausing')")" 0

start_daemon --workers 1 --drain-timeout-ms $DRAIN_MS || exit 1
check_eq "after the restart the job succeeds" "$(wait_job "$job" succeeded 120)" succeeded
started=$(sql "SELECT message FROM events WHERE job_id = '$job' AND type = 'status' AND
               json_extract(data, '\$.status') = 'running' ORDER BY seq DESC LIMIT 1")
check "an event says it resumed from the checkpoint ($started)" grep -q "attempt 2.*resuming" <<<"$started"
steps=$(sql "SELECT group_concat(s, ' ') FROM (SELECT json_extract(data, '\$.step') AS s FROM events
             WHERE job_id = '$job' AND type = 'metrics' ORDER BY seq)")
check_eq "every step reported exactly once (first repeat: $(first_repeat "$steps"))" "$steps" "$(seq -s ' ' 1 "$total")"
check_eq "still no attempt lost" "$(sql "SELECT lost FROM jobs WHERE id = '$job'")" 0
api GET "/v1/files/$up_id"
check_eq "the file uploaded during the drain is there" "$CODE" 200

# --- a second signal (here SIGINT) cuts the drain short
slow_upload 20K # ~320 KB: about 16 s
sleep 0.5
stop_pid=$DAEMON_PID
kill -TERM "$stop_pid"
sleep 0.5
check "draining while the slow upload runs" kill -0 "$stop_pid"
stop_with INT
check_eq "second signal: exit status" "$ST" 1
check "second signal: exits at once ($MS ms)" test "$MS" -lt 3000
kill "$UPLOAD_PID" 2>/dev/null
wait "$UPLOAD_PID" 2>/dev/null
check "second signal: local worker stopped" worker_gone

# --- a drain that times out (0 ms): the job still running is queued again
# all the same, without a lost attempt, to resume from its last checkpoint
start_daemon --workers 1 --drain-timeout-ms 0 || exit 1
start_ckpt_job 12
job=$JOB
wait_ckpt "$job" 5 0
stop_with TERM
check_eq "timed-out drain: exit status" "$ST" 0
check_eq "timed-out drain: job queued, no attempt lost" \
  "$(sql "SELECT status, lost FROM jobs WHERE id = '$job'")" "queued|0"
check "timed-out drain: logged" grep -q "drain timed out" "$T_DIR/daemon.log"
# (the worker may still have paused in the moment before the stop: step may be set)
check_eq "timed-out drain: the event names the checkpoint it resumes from" \
  "$(sql "SELECT json_extract(data, '\$.resume_step') FROM events
          WHERE job_id = '$job' AND json_extract(data, '\$.reason') = 'shutdown'")" \
  "$(sql "SELECT c.step FROM checkpoints c JOIN jobs j ON j.id = c.job_id
          WHERE j.id = '$job' AND c.path = j.resume_from")"
T_DONE=1
