#!/usr/bin/env bash
# A non-streamed generation stops when its client goes away: with one
# inference slot and no queue, a request right after a client gave up on a
# long completion gets the slot (200), instead of 429 while the abandoned
# generation runs on; the daemon logs it and counts it in /metrics
# (rejections, reason client_gone). Streamed generations stop on their own
# (a write fails), checked the same way; so does a classification, between
# texts.
source "$(dirname "$0")/../lib.sh"
tiny_model long gpt2 small-test || { bad "init-model long"; exit 1; }
start_daemon --workers 0 --infer-concurrency 1 --infer-queue 0 || exit 1
JSON=(-H 'Content-Type: application/json')
LONG='{"model":"long","prompt":[50256],"max_tokens":511,"temperature":1,"seed":1}'
SHORT='{"model":"long","prompt":[50256],"max_tokens":2,"temperature":0}'
api POST /v1/completions "${JSON[@]}" -d "$SHORT"
check_eq "the model answers (and is now loaded)" "$CODE" 200
# run_whole WHAT PATH BODY: the request run to its end; sets full_ms, which
# must be long enough for an abandoned run to be told from a stopped one
run_whole() {
  local t0
  t0=$(date +%s%N)
  curl -s -o /dev/null "$URL$2" "${JSON[@]}" -d "$3"
  full_ms=$((($(date +%s%N) - t0) / 1000000))
  echo "$1 takes $full_ms ms"
  check "it takes long enough to test with (${full_ms} ms > 1000)" test "$full_ms" -gt 1000
}
run_whole "a whole 511-token generation" /v1/completions "$LONG"

for mode in plain stream; do
  body=$LONG
  [ $mode = stream ] && body=$(jq -c '.stream = true' <<<"$LONG")
  curl -s -o /dev/null --max-time 0.3 "$URL/v1/completions" "${JSON[@]}" -d "$body"
  # the slot frees within a few tokens (a loaded machine: a few tenths of a
  # second), not after the whole generation ($full_ms ms): retry until then
  t0=$(date +%s%N)
  limit=$((full_ms / 3 < 1500 ? full_ms / 3 : 1500))
  while :; do
    api POST /v1/completions "${JSON[@]}" -d "$SHORT"
    ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$CODE" = 429 ] && [ "$ms" -lt "$limit" ] || break
    sleep 0.1
  done
  check_eq "$mode: the next request gets the slot at once" "$CODE" 200
  echo "$mode: answered after $ms ms (limit $limit ms)"
done
check "the daemon says so" grep -q 'client gone; generation stopped' "$T_DIR/daemon.log"
check "and counts it" bash -c "curl -s '$URL/metrics' | grep -q 'reason=\"client_gone\"} [1-9]'"

# a classification stops the same way, between two texts (or models): an
# ensemble of four copies of a random two-label classifier over 32
# context-long texts
tiny_model clf gpt2 small-test || bad "init-model clf"
python3 - "$T_DIR/data/models/clf" <<'PY'
import json, struct, sys, random
d = sys.argv[1]  # a causal LM directory turned into a classifier: a random score head
with open(d + "/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    data = f.read()
cfg = json.load(open(d + "/config.json"))
C, L = cfg["n_embd"], 2
rnd = random.Random(1)
w = struct.pack("<%df" % (L * C), *[rnd.gauss(0, 0.02) for _ in range(L * C)])
end = len(data) + len(w)
h["score.weight"] = {"dtype": "F32", "shape": [L, C], "data_offsets": [len(data), end]}
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
with open(d + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + data + w)
cfg["architectures"] = ["GPT2ForSequenceClassification"]
cfg["id2label"], cfg["label2id"] = {"0": "neg", "1": "pos"}, {"neg": 0, "pos": 1}
json.dump(cfg, open(d + "/config.json", "w"), indent=2)
PY
for k in 2 3 4; do cp -r "$T_DIR/data/models/clf" "$T_DIR/data/models/clf$k"; done
jq -nc '{models:["clf","clf2","clf3","clf4"],
  input:[range(32) as $i | [range(600) | "word"] | join(" ")]}' >"$T_DIR/clf.json"
CLF=@$T_DIR/clf.json
one=$(jq -c '.models = ["clf"] | .input = .input[:1]' "$T_DIR/clf.json")
api POST /v1/classifications "${JSON[@]}" -d "$one"
check_eq "the classifier answers" "$CODE" 200
run_whole "the whole ensemble over 32 texts" /v1/classifications "$CLF"
curl -s -o /dev/null --max-time 0.5 "$URL/v1/classifications" "${JSON[@]}" -d "$CLF"
t0=$(date +%s%N) # stopped one text (or model load) later, well before the whole run ends
limit=$((full_ms / 3 < 5000 ? full_ms / 3 : 5000))
until grep -q 'client gone; classification stopped' "$T_DIR/daemon.log" ||
  [ $((($(date +%s%N) - t0) / 1000000)) -ge "$limit" ]; do sleep 0.1; done
api POST /v1/completions "${JSON[@]}" -d "$SHORT"
check_eq "classification: the next request gets the slot at once" "$CODE" 200
check "the daemon says so" grep -q 'client gone; classification stopped' "$T_DIR/daemon.log"
T_DONE=1
