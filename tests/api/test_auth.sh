# API keys and request limits, black box: the open loopback mode
# and its warning; `finetuned keys create|list|revoke` (the key printed once,
# only its SHA-256 stored); once a key exists every route but /healthz and
# /readyz answers 401 without a working key, before reading any body; a
# revoked key stops at once; refusing to listen beyond loopback without keys;
# the per-key rate limit (429 + Retry-After); the cap on waiting jobs per
# tenant; JSON nesting and size caps; header size and per-IP connection
# limits. Tenant isolation is tests/api/test_tenants.py.
source "$(dirname "$0")/../lib.sh"
jq_ok() { jq -e "$@" >/dev/null; }
D=$T_DIR/data
printf '{"text":"hello"}\n{"text":"world"}\n' >"$T_DIR/small.jsonl"

# ---- open mode: loopback, no keys
start_daemon --workers 0 || exit 1
api GET /v1/files
check_eq "open mode: no key needed" "$CODE" 200
api GET /v1/files -H 'Authorization: Bearer sk-anything'
check_eq "open mode: any Authorization is ignored (OpenAI clients send one)" "$CODE" 200
check "open mode warns in the log" grep -q 'no API keys' "$T_DIR/daemon.log"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/small.jsonl"
open_fid=$(jget .id)

# ---- keys create while the daemon runs
K1=$(make_key alice --tenant acme)
check "keys create prints an ftk- key" grep -Eq '^ftk-[0-9A-Za-z]{40}$' <<<"$K1"
K2=$(make_key bob)
check "two keys differ" test "$K1" != "$K2"
"$FT_BIN/finetuned" keys create --data-dir "$D" --name alice >/dev/null 2>"$T_DIR/dup.err"
check_eq "a second key named alice is refused" "$? $(grep -c 'exists already' "$T_DIR/dup.err")" "1 1"
"$FT_BIN/finetuned" keys create --data-dir "$D" --name '../x' >/dev/null 2>&1
check_eq "a bad key name is a usage error" "$?" 2
"$FT_BIN/finetuned" keys create --data-dir "$D" --name x --tenant 'a b' >/dev/null 2>&1
check_eq "a bad tenant is a usage error" "$?" 2
KA=$(make_key root --admin)
# only the hash is stored: the key's SHA-256 (sha256sum, not our code) is in
# the database, the key itself nowhere in the data dir
want_hash=$(printf '%s' "$K1" | sha256sum | cut -d' ' -f1)
got_hash=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select hash from api_keys where name='alice'\").fetchone()[0])" "$D/finetuned.db")
check_eq "the stored hash is sha256(key)" "$got_hash" "$want_hash"
check "the key itself is not in the data dir" bash -c "! grep -rqF -- '$K1' '$D'"
"$FT_BIN/finetuned" keys list --data-dir "$D" >"$T_DIR/list.txt"
check "keys list shows names and tenants" grep -Eq 'alice +acme +no' "$T_DIR/list.txt"
check "keys list shows the admin key" grep -Eq 'root +default +yes' "$T_DIR/list.txt"
check "a key's tenant defaults to default" grep -Eq 'bob +default +no' "$T_DIR/list.txt"
check "keys list shows no secret" bash -c "! grep -qF -- '${K1:4}' '$T_DIR/list.txt'"

# ---- keys are now required
api GET /v1/files
check_eq "no key: 401 invalid_api_key" "$CODE $(jget .error.code) $(jget .error.type)" \
  "401 invalid_api_key authentication_error"
hdr=$(curl -s -D - -o /dev/null "$URL/v1/files" | tr -d '\r')
check "401 says WWW-Authenticate: Bearer" grep -qi '^WWW-Authenticate: Bearer' <<<"$hdr"
api GET /v1/files -H "Authorization: Bearer ftk-${K1:4:39}x"
check_eq "an unknown key: 401" "$CODE $(jget .error.code)" "401 invalid_api_key"
api GET /v1/files -H "Authorization: Basic $(printf 'a:b' | base64)"
check_eq "another scheme: 401" "$CODE" 401
api GET /v1/files -H "Authorization: Bearer $K1"
check_eq "a working key: 200" "$CODE" 200
api GET /v1/files -H "Authorization: bearer $K1"
check_eq "the scheme is case-insensitive" "$CODE" 200
api GET /healthz
check_eq "/healthz stays open" "$CODE" 200
api GET /readyz
check_eq "/readyz stays open" "$CODE" 200
api GET /metrics
check_eq "/metrics needs a key" "$CODE" 401
api GET /metrics -H "Authorization: Bearer $K2"
check_eq "/metrics with any tenant's key" "$CODE" 200
api GET /v1/nothing/here
check_eq "an unknown URL without a key is 401, not 404" "$CODE" 401
api GET /v1/nothing/here -H "Authorization: Bearer $K1"
check_eq "an unknown URL with a key is 404" "$CODE" 404
api GET "/v1/files/$open_fid" -H "Authorization: Bearer $KA"
check_eq "rows from the open mode belong to tenant default: an admin sees them" "$CODE" 200
api GET "/v1/files/$open_fid" -H "Authorization: Bearer $K2"
check_eq "and so does a key of tenant default" "$CODE" 200
api GET "/v1/files/$open_fid" -H "Authorization: Bearer $K1"
check_eq "and tenant acme does not" "$CODE" 404

# auth comes before the body: a 50 MB upload without a key is answered 401
# and nothing reaches files/
head -c 50000000 /dev/zero | tr '\0' 'a' >"$T_DIR/big.jsonl"
before=$(ls -A "$D/files" | wc -l)
t0=$(date +%s%N)
api POST /v1/files -H 'Content-Type: application/jsonl' -H 'Expect: 100-continue' \
  --data-binary "@$T_DIR/big.jsonl"
t1=$(date +%s%N)
check_eq "upload without a key: 401" "$CODE" 401
check_eq "no file or temp file was made" "$(ls -A "$D/files" | wc -l)" "$before"
check "401 before the body: answered in under 3 s" test $(((t1 - t0) / 1000000)) -lt 3000
rm -f "$T_DIR/big.jsonl"

# ---- revocation takes effect on the next request
api GET /v1/files -H "Authorization: Bearer $K2"
check_eq "bob works" "$CODE" 200
"$FT_BIN/finetuned" keys revoke --data-dir "$D" bob >/dev/null
check_eq "keys revoke by name" "$?" 0
api GET /v1/files -H "Authorization: Bearer $K2"
check_eq "a revoked key: 401" "$CODE $(jget .error.code)" "401 invalid_api_key"
"$FT_BIN/finetuned" keys revoke --data-dir "$D" nobody >/dev/null 2>&1
check_eq "revoking an unknown key fails" "$?" 1
"$FT_BIN/finetuned" keys list --data-dir "$D" >"$T_DIR/list.txt"
check "keys list shows bob revoked" grep -Eq '^key-[0-9a-f]+ +bob .*revoked$' "$T_DIR/list.txt"

# ---- JSON limits
deep=$(printf '%.0s[' $(seq 1 40))1$(printf '%.0s]' $(seq 1 40))
api POST /v1/fine_tuning/jobs -H "Authorization: Bearer $K1" -H 'Content-Type: application/json' \
  -d "{\"model\":\"tiny\",\"metadata\":{\"x\":$deep}}"
check_eq "JSON nested 40 deep: 400 invalid_json" "$CODE $(jget .error.code)" "400 invalid_json"
check "the message names the depth cap" grep -q 'deeper than 32' <<<"$(jget .error.message)"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$T_DIR/big.json"
api POST /v1/fine_tuning/jobs -H "Authorization: Bearer $K1" -H 'Content-Type: application/json' \
  -H 'Transfer-Encoding: chunked' --data-binary "@$T_DIR/big.json"
check_eq "a chunked JSON body over 1 MiB: 413" "$CODE $(jget .error.code)" "413 request_too_large"
stop_daemon

# ---- refusing to listen beyond loopback without keys
E=$T_DIR/empty
mkdir -p "$E"
timeout 20 "$FT_BIN/finetuned" serve --data-dir "$E" --listen 0.0.0.0:0 --workers 0 \
  >"$T_DIR/refuse.log" 2>&1
check_eq "no keys and 0.0.0.0: the daemon exits 1" "$?" 1
check "the message names finetuned keys create" grep -q 'finetuned keys create' "$T_DIR/refuse.log"
check "and it never listened" bash -c "! test -e '$E/finetuned.port'"

# ---- rate limit, waiting-jobs cap, header size, per-IP connections
tiny_model tiny
start_daemon --workers 0 --rate-limit 1 --rate-burst 3 --max-waiting-jobs 1 \
  --max-header-bytes 8192 --max-connections-per-ip 3 || exit 1
# A token comes back every second, so on a loaded machine a fourth request
# may find one: the burst is the first three, and the first refusal (its
# headers kept with it) must follow within a few more.
codes="" hdr=""
for _ in 1 2 3 4 5 6 7 8; do
  api GET /v1/models -H "Authorization: Bearer $KA" -D "$T_DIR/rl.hdr"
  codes="$codes $CODE"
  [ "$CODE" = 429 ] && hdr=$(tr -d '\r' <"$T_DIR/rl.hdr") && break
done
check "burst of 3, then 429 ($codes)" grep -q '^ 200 200 200 \(200 \)*429$' <<<"$codes"
check_eq "429 is rate_limit_exceeded" "$(jget .error.code)" "rate_limit_exceeded"
check "429 carries Retry-After: 1" grep -q '^Retry-After: 1$' <<<"$hdr"
api GET /v1/models -H "Authorization: Bearer $K1"
check_eq "another key has its own bucket" "$CODE" 200
sleep 2.2
api GET /v1/models -H "Authorization: Bearer $KA"
check_eq "tokens come back with time" "$CODE" 200

fid=$(curl -s -H "Authorization: Bearer $K1" "$URL/v1/files" -F purpose=fine-tune \
  -F "file=@$T_DIR/small.jsonl" | jq -r .id)
job='{"model":"tiny","training_file":"'$fid'","method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":1,"batch_size":1,"max_seq_len":16}}}}'
api POST /v1/fine_tuning/jobs -H "Authorization: Bearer $K1" -H 'Content-Type: application/json' -d "$job"
check_eq "the first job of tenant acme" "$CODE" 200
api POST /v1/fine_tuning/jobs -H "Authorization: Bearer $K1" -H 'Content-Type: application/json' -d "$job"
check_eq "a second waiting job: 429" "$CODE $(jget .error.code)" "429 too_many_waiting_jobs"
check "the message says why" grep -q 'too many jobs waiting' <<<"$(jget .error.message)"

big=$(head -c 20000 /dev/zero | tr '\0' 'x')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $K1" -H "X-Big: $big" \
  "$URL/v1/models")
check "headers over --max-header-bytes are refused (431)" test "$code" = 431

# three idle connections from this address fill the per-IP limit: a fourth
# is refused; once they close, requests work again
port=${URL##*:}
exec 3<>/dev/tcp/127.0.0.1/"$port" 4<>/dev/tcp/127.0.0.1/"$port" 5<>/dev/tcp/127.0.0.1/"$port"
# (on a loaded machine the daemon may take a moment to accept all three:
# a fourth that still gets in is retried, for up to 3 s)
for _ in $(seq 1 10); do
  sleep 0.3
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")
  [ "$code" = 000 ] && break
done
check_eq "a fourth connection from one IP is refused" "$code" 000
exec 3>&- 4>&- 5>&-
sleep 0.3
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")
check_eq "after they close, connections work again" "$code" 200
T_DONE=1
