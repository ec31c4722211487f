# The daemon's structured log on stderr (what journald keeps): one line per
# HTTP request (method, route pattern, status, bytes_in, duration_ms, remote)
# and one per job status transition (job, from, to, reason), each a
# timestamp, a level and key=value pairs that parse back, quotes escaped.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
start_daemon --workers 1 || exit 1
LOG=$T_DIR/daemon.log

# parses every line with msg="request" or msg="job transition" into JSON
# objects (one per line), failing on any line that is not key=value pairs
kv() {
  /usr/bin/python3 -c '
import json, re, sys
pair = re.compile(r"\s*([a-z_]+)=(\"(?:[^\"\\\\]|\\\\.)*\"|[^\s\"]+)")
for line in open(sys.argv[1]):
    if "msg=\"request\"" not in line and "msg=\"job transition\"" not in line:
        continue
    head, rest = line.rstrip("\n").split(" ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", head), line
    out, i = {}, 0
    while i < len(rest):
        m = pair.match(rest, i)
        assert m, "not key=value at %d: %r" % (i, line)
        v = m.group(2)
        out[m.group(1)] = json.loads(v) if v.startswith("\"") else v
        i = m.end()
    print(json.dumps(out))
' "$1"
}

api GET /v1/files/file-nosuchfile
check_eq "unknown file 404" "$CODE" 404
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d '{"model": '
check_eq "bad JSON 400" "$CODE" 400
fid=$(upload "$FT_SRC/examples/capitals.jsonl")
body=$(jq -nc --arg f "$fid" '{model:"tiny", training_file:$f, seed:1, method:{type:"supervised",
  supervised:{hyperparameters:{n_epochs:1, batch_size:4, learning_rate:0.001, max_seq_len:64}}}}')
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
job=$(jget .id)
check_eq "job created" "$CODE" 200
check_eq "job succeeds" "$(wait_job "$job" succeeded)" succeeded
# a second job cancelled before it runs: pause the queue by cancelling at once
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
job2=$(jget .id)
api POST "/v1/fine_tuning/jobs/$job2/cancel"
check_eq "cancel 200" "$CODE" 200
sleep 0.3

kv "$LOG" >"$T_DIR/lines.jsonl" 2>"$T_DIR/kv.err"
check "every request and transition line is key=value pairs" test ! -s "$T_DIR/kv.err"
cat "$T_DIR/kv.err" >&2

req() { jq -c "select(.msg==\"request\" and .route==\"$1\" and .status==\"$2\" and .method==\"$3\")" \
  "$T_DIR/lines.jsonl" | head -1; }
line=$(req "/v1/files/{file_id}" 404 GET)
check "a 404 logs its route pattern, not the URL" test -n "$line"
check "request line has duration_ms, bytes_in and remote" jq -e \
  '(.duration_ms|tonumber) >= 0 and .bytes_in == "0" and (.remote|test("^127\\.0\\.0\\.1:[0-9]+$"))
   and .level == "info"' <<<"$line"
line=$(req "/v1/fine_tuning/jobs" 400 POST)
check_eq "bad JSON request: its body bytes" "$(jq -r .bytes_in <<<"$line")" 10
line=$(req "/v1/files" 200 POST)
size=$(stat -c %s "$FT_SRC/examples/capitals.jsonl")
check "upload: bytes_in counts the multipart body (> $size)" test "$(jq -r .bytes_in <<<"$line")" -gt "$size"
check "no info line for a successful /healthz probe" \
  test -z "$(jq -c 'select(.msg=="request" and .route=="/healthz")' "$T_DIR/lines.jsonl")"

transitions() { jq -r "select(.msg==\"job transition\" and .job==\"$1\") | \"\(.from)>\(.to)\"" \
  "$T_DIR/lines.jsonl" | tr '\n' ' '; }
check_eq "the job's transitions, in order" "$(transitions "$job")" \
  "none>validating_files validating_files>queued queued>running running>succeeded "
check "the cancelled job's last transition" bash -c "[[ '$(transitions "$job2")' == *'>cancelled ' ]]"
check "a transition has its reason" jq -se --arg j "$job" \
  '[.[] | select(.msg=="job transition" and .job==$j and .to=="succeeded")] | length == 1
   and (.[0].reason | length > 0)' "$T_DIR/lines.jsonl"
T_DONE=1
