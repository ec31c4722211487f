# A 100 MB upload streams through the daemon: a generated chat file
# (scripts/datasets/synthetic.mjs) sent as a raw body and as multipart comes
# back "processed" with every line counted as an example and every byte
# stored, and the daemon's peak RSS during each upload (VmHWM, reset through
# /proc/PID/clear_refs just before; or the max of VmRSS sampled every 20 ms
# where that reset is not allowed) stays less than 64 MiB above its idle RSS.
source "$(dirname "$0")/../lib.sh"
SIZE=$((100 * 1000 * 1000))
F=$T_DIR/big.jsonl
LINES=$(node "$FT_SRC/scripts/datasets/synthetic.mjs" "$F" $SIZE) || { bad "generating the file"; exit 1; }
BYTES=$(stat -c %s "$F")
check "the generated file is about 100 MB ($BYTES bytes, $LINES lines)" test $((SIZE - BYTES)) -lt 1000
check_eq "one example per line" "$(wc -l <"$F")" "$LINES"
start_daemon --workers 0 || exit 1

kb() { awk -v f="$1:" '$1 == f { print $2 }' /proc/$DAEMON_PID/status; }
sleep 0.3
IDLE=$(kb VmRSS)
for mode in raw multipart; do
  reset=0
  echo 5 2>/dev/null >/proc/$DAEMON_PID/clear_refs && reset=1
  rm -f "$T_DIR/stop"
  (max=0; while [ ! -e "$T_DIR/stop" ] && kill -0 "$DAEMON_PID" 2>/dev/null; do
     r=$(kb VmRSS); [ "${r:-0}" -gt "$max" ] && max=$r && echo "$max" >"$T_DIR/max"; sleep 0.02
   done) &
  sampler=$!
  if [ $mode = raw ]; then
    api POST "/v1/files?filename=big.jsonl&purpose=fine-tune" -T "$F" -X POST \
      -H 'Content-Type: application/jsonl' -H 'Expect:'
  else
    api POST /v1/files -F purpose=fine-tune -F "file=@$F" -H 'Expect:'
  fi
  touch "$T_DIR/stop"; wait $sampler
  if [ $reset = 1 ]; then peak=$(kb VmHWM); how=VmHWM; else peak=$(cat "$T_DIR/max"); how="sampled VmRSS"; fi
  check_eq "$mode: uploaded" "$CODE" 200
  check_eq "$mode: processed as chat" "$(jget '[.status, .validation.format] | join(" ")')" "processed chat"
  check_eq "$mode: every line an example" "$(jget '[.validation.examples, .validation.error_count, .validation.duplicates] | join(" ")')" "$LINES 0 0"
  check_eq "$mode: bytes" "$(jget .bytes)" "$BYTES"
  id=$(jget .id)
  check "$mode: the stored file is the upload" cmp -s "$F" "$T_DIR/data/files/$id"
  above=$(((peak - IDLE) / 1024))
  check "$mode: peak RSS $((peak / 1024)) MiB ($how) is $above MiB above idle $((IDLE / 1024)) MiB, < 64" \
    test $((peak - IDLE)) -lt $((64 * 1024))
  api DELETE "/v1/files/$id"
done
T_DONE=1
