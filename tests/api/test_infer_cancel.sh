#!/usr/bin/env bash
# A non-streamed generation stops when its client goes away: with one
# inference slot and no queue, a request right after a client gave up on a
# long completion gets the slot (200), instead of 429 while the abandoned
# generation runs on; the daemon logs it and counts it in /metrics
# (rejections, reason client_gone). Streamed generations stop on their own
# (a write fails), checked the same way.
source "$(dirname "$0")/../lib.sh"
tiny_model long gpt2 small-test || { bad "init-model long"; exit 1; }
start_daemon --workers 0 --infer-concurrency 1 --infer-queue 0 || exit 1
JSON=(-H 'Content-Type: application/json')
LONG='{"model":"long","prompt":[50256],"max_tokens":511,"temperature":1,"seed":1}'
SHORT='{"model":"long","prompt":[50256],"max_tokens":2,"temperature":0}'
api POST /v1/completions "${JSON[@]}" -d "$SHORT"
check_eq "the model answers (and is now loaded)" "$CODE" 200
t0=$(date +%s%N)
curl -s -o /dev/null "$URL/v1/completions" "${JSON[@]}" -d "$LONG"
full_ms=$((($(date +%s%N) - t0) / 1000000))
echo "a whole 511-token generation takes $full_ms ms"
check "it takes long enough to test with (${full_ms} ms > 1000)" test "$full_ms" -gt 1000

for mode in plain stream; do
  body=$LONG
  [ $mode = stream ] && body=$(jq -c '.stream = true' <<<"$LONG")
  curl -s -o /dev/null --max-time 0.3 "$URL/v1/completions" "${JSON[@]}" -d "$body"
  sleep 0.2
  t0=$(date +%s%N)
  api POST /v1/completions "${JSON[@]}" -d "$SHORT"
  check_eq "$mode: the next request gets the slot at once" "$CODE" 200
  ms=$((($(date +%s%N) - t0) / 1000000))
  echo "$mode: answered in $ms ms"
done
check "the daemon says so" grep -q 'client gone; generation stopped' "$T_DIR/daemon.log"
check "and counts it" bash -c "curl -s '$URL/metrics' | grep -q 'reason=\"client_gone\"} [1-9]'"
T_DONE=1
