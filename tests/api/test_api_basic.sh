# The HTTP API without workers, black box against a real daemon on a free
# port: uploads (multipart and raw) and their failure modes (traversal names,
# invalid UTF-8, over the cap, wrong media type), file listing, download and
# deletion; job creation errors naming the field; job creation, pause,
# resume and cancel of a queued job; events as a page and as SSE; models;
# the 404/405 envelopes; metrics; and the daemon still up after all of it.
source "$(dirname "$0")/../lib.sh"
jq_ok() { jq -e "$@" >/dev/null; }

start_daemon --workers 0 || exit 1
D=$T_DIR/data

# ---- operations
api GET /healthz
check_eq "healthz" "$CODE $(jget .status)" "200 ok"
api GET /readyz
check_eq "readyz" "$CODE $(jget .database)" "200 ok"

# ---- uploads
printf '{"text":"hello"}\n{"text":"w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80"}\n' >"$T_DIR/small.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl"
check_eq "multipart upload" "$CODE" 200
fid=$(jget .id)
check "file id has the file- prefix" test "${fid#file-}" != "$fid"
check_eq "file object" "$(jget '[.object,.bytes,.filename,.purpose,.status] | join(" ")')" \
  "file $(stat -c %s "$T_DIR/small.jsonl") small.jsonl fine-tune processed"

api POST "/v1/files?filename=raw.jsonl" -H 'Content-Type: application/jsonl' \
  --data-binary "@$T_DIR/small.jsonl"
check_eq "raw jsonl upload" "$CODE $(jget .filename)" "200 raw.jsonl"
rid=$(jget .id)
printf 'text,label\nhi,a\n' >"$T_DIR/small.csv"
api POST /v1/files -H 'Content-Type: text/csv' --data-binary "@$T_DIR/small.csv"
check_eq "raw csv upload gets a default name" "$CODE $(jget .filename)" "200 upload.csv"
api POST /v1/files -H 'Content-Type: application/x-ndjson' --data-binary "@$T_DIR/small.jsonl"
check_eq "raw ndjson upload" "$CODE" 200

# multi-byte characters across many chunk boundaries stay valid
for _ in $(seq 1 3000); do printf '{"text":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 caf\xc3\xa9 \xe2\x88\x91"}\n'; done >"$T_DIR/utf8.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/utf8.jsonl"
check_eq "large UTF-8 upload" "$CODE $(jget .bytes)" "200 $(stat -c %s "$T_DIR/utf8.jsonl")"
uid=$(jget .id)
check "stored bytes are the uploaded bytes" cmp -s "$T_DIR/utf8.jsonl" "$D/files/$uid"

api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl;filename=../evil.jsonl"
check_eq "traversal filename is refused" "$CODE $(jget .error.param)" "400 file"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl;filename=a/b.jsonl"
check_eq "slash in filename is refused" "$CODE $(jget .error.param)" "400 file"
api POST "/v1/files?filename=..%2Fx.jsonl" -H 'Content-Type: application/jsonl' \
  --data-binary "@$T_DIR/small.jsonl"
check_eq "raw traversal filename is refused" "$CODE $(jget .error.param)" "400 filename"
# content that is not UTF-8 is stored with status error and an invalid_utf8
# error naming its line (tests/api/test_upload_validation.sh has more); these
# are deleted again so the counts below see only the good files
utf8_err() { # FILE CURL-ARGS...: uploads, prints "status line:code", deletes
  local f=$1; shift
  api POST "/v1/files" "$@" --data-binary "@$f"
  echo "$CODE $(jget .status) $(jget '.validation.errors[0] | "\(.line):\(.code)"')"
  curl -s -X DELETE "$URL/v1/files/$(jget .id)" >/dev/null
}
printf '{"text":"ok"}\n{"text":"bad \xff here"}\n' >"$T_DIR/bad.jsonl"
check_eq "invalid UTF-8 is an error on its line" \
  "$(utf8_err "$T_DIR/bad.jsonl" -H 'Content-Type: application/jsonl')" "200 error 2:invalid_utf8"
printf '{"text":"cut \xe2\x82' >"$T_DIR/cut.jsonl"
check_eq "truncated UTF-8 at the end is an error on the last line" \
  "$(utf8_err "$T_DIR/cut.jsonl" -H 'Content-Type: application/jsonl')" "200 error 1:invalid_utf8"
printf '\xc0\xaf\n' >"$T_DIR/overlong.jsonl"
check_eq "overlong UTF-8 is an error" \
  "$(utf8_err "$T_DIR/overlong.jsonl" -H 'Content-Type: application/jsonl')" "200 error 1:invalid_utf8"
api POST /v1/files -H 'Content-Type: application/jsonl' -H 'Content-Length: 99999999999' -d x
check_eq "Content-Length over the cap is 413" "$CODE $(jget .error.code)" "413 request_too_large"
api POST /v1/files -H 'Content-Type: application/json' -d '{}'
check_eq "unsupported media type" "$CODE" 415
api POST /v1/files -F "file=@$T_DIR/small.jsonl"
check_eq "purpose is required" "$CODE $(jget .error.param)" "400 purpose"
api POST /v1/files -F purpose=assistants -F "file=@$T_DIR/small.jsonl"
check_eq "purpose must be fine-tune" "$CODE $(jget .error.param)" "400 purpose"
api POST /v1/files -F purpose=fine-tune
check_eq "file is required" "$CODE $(jget .error.param)" "400 file"
api POST /v1/files -F purpose=fine-tune -F extra=1 -F "file=@$T_DIR/small.jsonl"
check_eq "unknown form field is named" "$CODE $(jget .error.param)" "400 extra"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl" -F "file=@$T_DIR/small.jsonl"
check_eq "a second file part is refused" "$CODE $(jget .error.param)" "400 file"
printf '' >"$T_DIR/empty.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl" -F "file=@$T_DIR/empty.jsonl"
check_eq "a second, empty file part is refused" "$CODE $(jget .error.param)" "400 file"
api POST /v1/files -F purpose=fine-tune -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl"
check_eq "a second purpose part is refused" "$CODE $(jget .error.param)" "400 purpose"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl" -F purpose=
check_eq "a second, empty purpose part is refused" "$CODE $(jget .error.param)" "400 purpose"
: >"$T_DIR/empty.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/empty.jsonl"
check_eq "empty file is refused" "$CODE" 400
check_eq "failed uploads leave no temp files" "$(ls -A "$D/files" | grep -c '^\.tmp')" 0
check_eq "failed uploads leave no files" "$(ls "$D/files" | wc -l)" 5

# ---- listing, download, deletion
api GET /v1/files
check_eq "list" "$CODE $(jget .object) $(jget '.data | length') $(jget .has_more)" "200 list 5 false"
check_eq "list is newest first" "$(jget '.data[0].id')" "$uid"
api GET "/v1/files?limit=2"
check_eq "limit 2" "$(jget '.data | length') $(jget .has_more)" "2 true"
after=$(jget '.data[1].id')
api GET "/v1/files?limit=100&after=$after"
check_eq "after continues the list" "$(jget '.data | length') $(jget .has_more)" "3 false"
api GET "/v1/files?limit=0"
check_eq "limit 0 is refused" "$CODE $(jget .error.param)" "400 limit"
api GET "/v1/files?limit=abc"
check_eq "limit abc is refused" "$CODE" 400
api GET "/v1/files/$fid"
check_eq "get file" "$CODE $(jget .id)" "200 $fid"
curl -s "$URL/v1/files/$fid/content" -o "$T_DIR/down.jsonl"
check "content is the uploaded bytes" cmp -s "$T_DIR/small.jsonl" "$T_DIR/down.jsonl"
api DELETE "/v1/files/$rid"
check_eq "delete file" "$CODE $(jget .deleted) $(jget .object)" "200 true file"
api GET "/v1/files/$rid"
check_eq "deleted file is gone" "$CODE $(jget .error.code)" "404 not_found"
check "deleted file's bytes are gone" test ! -e "$D/files/$rid"
api DELETE "/v1/files/$rid"
check_eq "second delete is 404" "$CODE" 404
api GET "/v1/files/..%2Ffinetuned.db/content"
check_eq "traversal in an id is 404" "$CODE" 404

# ---- job creation errors
job() { api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$1"; }
job "{\"model\":\"tiny\",\"training_file\":\"$fid\",\"bogus\":1}"
check_eq "unknown field is named" "$CODE $(jget .error.code) $(jget .error.param)" \
  "400 unknown_parameter bogus"
job "{\"model\":5,\"training_file\":\"$fid\"}"
check_eq "wrong type is named" "$CODE $(jget .error.code) $(jget .error.param)" "400 invalid_type model"
job '{"model":"tiny"}'
check_eq "missing training_file" "$CODE $(jget .error.param)" "400 training_file"
job '{"model":"tiny","training_file":"file-000000000000000000000000"}'
check_eq "unknown training_file" "$CODE $(jget .error.param)" "400 training_file"
job "{\"model\":\"no-such-model\",\"training_file\":\"$fid\"}"
check_eq "unknown model" "$CODE $(jget .error.param)" "400 model"
job "{\"model\":\"../models\",\"training_file\":\"$fid\"}"
check_eq "model path traversal" "$CODE $(jget .error.param)" "400 model"
for m in .. . .hidden a/b; do
  job "{\"model\":\"$m\",\"training_file\":\"$fid\"}"
  check_eq "model name '$m' is refused" "$CODE $(jget .error.param)" "400 model"
done
long=$(printf 'm%.0s' $(seq 1 220))
job "{\"model\":\"$long\",\"training_file\":\"$fid\"}"
check_eq "a model whose fine-tuned id would pass 255 bytes is refused" \
  "$CODE $(jget .error.param)" "400 model"
check "the refusal says why" grep -q 'too long' <<<"$(jget .error.message)"
job '{"model":'
check_eq "malformed JSON" "$CODE $(jget .error.code)" "400 invalid_json"
job '{"model":"a","model":"b"}'
check_eq "duplicate keys" "$CODE $(jget .error.code)" "400 invalid_json"
job '[]'
check_eq "non-object body" "$CODE" 400
api POST /v1/fine_tuning/jobs --data-binary $'{"model":"\xff"}'
check_eq "invalid UTF-8 in JSON" "$CODE $(jget .error.code)" "400 invalid_utf8"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$T_DIR/huge.json"
api POST /v1/fine_tuning/jobs --data-binary "@$T_DIR/huge.json"
check_eq "JSON body over 1 MiB" "$CODE" 413
job "{\"model\":\"tiny\",\"training_file\":\"$fid\",\"metadata\":{\"k\":1}}"
check_eq "metadata values are strings" "$CODE $(jget .error.param)" "400 metadata"

# ---- a job on a real (tiny, random) model
if tiny_model tiny; then ok "init-model tiny"; else bad "init-model tiny (engine not ready?)"; fi
fid=$(upload "$FT_SRC/examples/capitals.jsonl") # (enough examples to pass validating_files)
job "{\"model\":\"tiny\",\"training_file\":\"$fid\",\"suffix\":\"basic\",\"seed\":3,\"metadata\":{\"team\":\"x\"},
     \"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":2}}}}"
check_eq "create job: validating_files" "$CODE $(jget .object) $(jget .status)" \
  "200 fine_tuning.job validating_files"
jid=$(jget .id)
check_eq "job fields" "$(jget '[.model,.training_file,.hyperparameters.n_epochs,.metadata.team,.user_provided_suffix,.seed] | map(tostring) | join(" ")')" \
  "tiny $fid 2 x basic 3"
check_eq "the files are validated, then the job is queued" "$(wait_job "$jid" queued 20)" queued
check "resolved spec: adapter and batch size filled in" jq_ok '.adapter.type != null and (.hyperparameters.batch_size | type) == "number"' <<<"$BODY"
api DELETE "/v1/files/$fid"
check_eq "a file in use cannot be deleted" "$CODE" 409
api GET "/v1/fine_tuning/jobs/$jid"
check_eq "get job" "$CODE $(jget .id)" "200 $jid"
api GET "/v1/fine_tuning/jobs?limit=5"
check_eq "list jobs" "$CODE $(jget '.data[0].id')" "200 $jid"
api POST "/v1/fine_tuning/jobs/$jid/pause"
check_eq "pause a queued job" "$CODE $(jget .status)" "200 paused"
api POST "/v1/fine_tuning/jobs/$jid/pause"
check_eq "pause a paused job is 409" "$CODE $(jget .error.code)" "409 invalid_state"
api POST "/v1/fine_tuning/jobs/$jid/resume"
check_eq "resume" "$CODE $(jget .status)" "200 queued"
api POST "/v1/fine_tuning/jobs/$jid/cancel"
check_eq "cancel a queued job" "$CODE $(jget .status)" "200 cancelled"
check "cancelled job has finished_at" jq_ok '.finished_at > 0' <<<"$BODY"
api POST "/v1/fine_tuning/jobs/$jid/cancel"
check_eq "cancel again is 409" "$CODE $(jget .error.code)" "409 invalid_state"
api POST "/v1/fine_tuning/jobs/$jid/resume"
check_eq "resume a cancelled job is 409" "$CODE" 409
api POST /v1/fine_tuning/jobs/ftjob-000000000000000000000000/cancel
check_eq "cancel an unknown job is 404" "$CODE" 404

# ---- events
api GET "/v1/fine_tuning/jobs/$jid/events"
check_eq "events newest first" "$(jget '[.data[].message] | join(",")')" \
  "Job cancelled,Job resumed,Job paused,Files validated; the job is queued,Job created"
check_eq "event object" "$(jget '.data[0].object')" "fine_tuning.job.event"
api GET "/v1/fine_tuning/jobs/$jid/events?limit=1"
check_eq "events limit" "$(jget '.data | length') $(jget .has_more)" "1 true"
sse=$(timeout 10 curl -sN "$URL/v1/fine_tuning/jobs/$jid/events?stream=true")
check_eq "SSE replays every event oldest first" \
  "$(grep '^data: {' <<<"$sse" | sed 's/^data: //' | jq -r .message | tr '\n' ,)" \
  "Job created,Files validated; the job is queued,Job paused,Job resumed,Job cancelled,"
check "SSE ends with [DONE]" test "$(grep '^data:' <<<"$sse" | tail -1)" == "data: [DONE]"
check_eq "SSE event: lines carry the type" "$(grep -c '^event: status' <<<"$sse")" 5
second=$(grep '^id: ' <<<"$sse" | sed -n 2p | cut -d' ' -f2)
tail_sse=$(timeout 10 curl -sN -H "Last-Event-ID: $second" "$URL/v1/fine_tuning/jobs/$jid/events?stream=true")
check_eq "Last-Event-ID resumes after that event" "$(grep -c '^id: ' <<<"$tail_sse")" 3
for bad in 99999999999999999999 5x +5 -1 abc; do
  api GET "/v1/fine_tuning/jobs/$jid/events?stream=true" -H "Last-Event-ID: $bad"
  check_eq "Last-Event-ID '$bad' is refused" "$CODE $(jget .error.param)" "400 Last-Event-ID"
done
api GET "/v1/fine_tuning/jobs/$jid/checkpoints"
check_eq "no checkpoints" "$CODE $(jget '.data | length')" "200 0"

# ---- models
api GET /v1/models
check "models list has tiny, owned by finetuned" jq_ok 'any(.data[]; .id == "tiny" and .owned_by == "finetuned")' <<<"$BODY"
api GET /v1/models/tiny
check_eq "get model" "$CODE $(jget .object)" "200 model"
api DELETE /v1/models/tiny
check_eq "a base model cannot be deleted" "$CODE" 403
api GET /v1/models/tiny/files/config.json
check_eq "download config.json" "$CODE $(jget .model_type)" "200 gpt2"
api GET /v1/models/tiny/files/finetuned.db
check_eq "files outside the allow-list are 404" "$CODE" 404
api GET /v1/models/nope
check_eq "unknown model is 404" "$CODE" 404

# ---- envelopes
api GET /v1/nothing-here
check_eq "unknown route" "$CODE $(jget .error.code) $(jget .error.type)" "404 unknown_url invalid_request_error"
check "envelope has message and param" jq_ok '.error | has("message") and has("param")' <<<"$BODY"
hdrs=$(curl -s -D - -o /dev/null -X PUT "$URL/v1/files")
check "405 for a known path with a wrong method" grep -q '^HTTP/1.1 405' <<<"$hdrs"
check "405 carries Allow" grep -qi '^Allow: .*GET' <<<"$hdrs"
api DELETE /v1/fine_tuning/jobs
check_eq "405 envelope" "$CODE $(jget .error.code)" "405 method_not_allowed"
api GET "/v1/fine_tuning/jobs/$jid/events?stream=maybe"
check_eq "bad stream value" "$CODE" 400

# ---- metrics, garbage, still up
api GET /metrics
check "metrics count jobs by status" grep -q '^finetuned_jobs{status="cancelled"} 1$' <<<"$BODY"
check "metrics count responses by status" grep -q '^finetuned_http_requests_total{method="[A-Z]*",route="[^"]*",status="400"} [1-9]' <<<"$BODY"
check "metrics show workers" grep -q '^finetuned_workers_connected 0$' <<<"$BODY"
port=${URL##*:}
{ exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GARBAGE \x01\x02 HTTP/9.9\r\n\r\n' >&3 && timeout 2 cat <&3 >/dev/null; exec 3<&-; } 2>/dev/null
{ exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\nContent-Length: 50\r\n\r\n--zz\r\n' >&3; exec 3<&-; } 2>/dev/null
check "daemon still up" curl -sf "$URL/healthz" -o /dev/null
check_eq "an aborted upload leaves no temp file" "$(sleep 0.3; ls -A "$D/files" | grep -c '^\.tmp')" 0

# ---- restart with a small cap: data survives, chunked uploads are cut off
stop_daemon
start_daemon --workers 0 --max-upload-bytes 1000 || exit 1
api GET "/v1/files/$uid"
check_eq "files survive a restart" "$CODE" 200
head -c 200000 /dev/zero | tr '\0' 'a' >"$T_DIR/over.jsonl"
api POST /v1/files -H 'Content-Type: application/jsonl' -H 'Transfer-Encoding: chunked' \
  --data-binary "@$T_DIR/over.jsonl"
check_eq "chunked upload over the cap is 413" "$CODE" 413
check_eq "the cut-off upload left nothing" "$(ls -A "$D/files" | grep -c '^\.tmp')" 0
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl"
gone=$(jget .id)
rm -f "$D/files/$gone"
api GET "/v1/files/$gone/content"
check_eq "content whose bytes are gone is 404" "$CODE $(jget .error.code)" "404 not_found"
check "daemon still up at the end" curl -sf "$URL/healthz" -o /dev/null
T_DONE=1
