# kill -9 of the daemon during uploads and job creation: after a restart
# every acknowledged file and job is there, the database passes
# PRAGMA integrity_check, no temp upload is visible, and queued jobs stay queued.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
head -c 3000000 /dev/zero | tr '\0' 'a' | awk '{for(i=0;i<1000;i++) print "{\"text\":\"" substr($0,1,2000) "\"}"}' >"$T_DIR/big.jsonl"
acked="$T_DIR/acked.txt"; : >"$acked"
for round in 1 2 3; do
  start_daemon --workers 0 || exit 1
  fid=$(upload "$FT_SRC/examples/capitals.jsonl")
  echo "$fid" >>"$acked"
  ( while true; do
      r=$(curl -s "$URL/v1/files" -F purpose=fine-tune -F "file=@$T_DIR/big.jsonl" 2>/dev/null | jq -r '.id // empty' 2>/dev/null)
      [ -n "$r" ] && echo "$r" >>"$acked"
      b=$(jq -nc --arg f "$fid" '{model:"tiny", training_file:$f}')
      r=$(curl -s "$URL/v1/fine_tuning/jobs" -H 'Content-Type: application/json' -d "$b" 2>/dev/null | jq -r '.id // empty' 2>/dev/null)
      [ -n "$r" ] && echo "$r" >>"$acked"
    done ) &
  loader=$!
  sleep "0.$((RANDOM % 9 + 3))"
  kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=""
  kill "$loader" 2>/dev/null; wait "$loader" 2>/dev/null
  check_eq "round $round: integrity_check" "$(sqlite3 "$T_DIR/data/finetuned.db" 'PRAGMA integrity_check')" ok
done
start_daemon --workers 0 || exit 1
missing=0
while read -r id; do
  case $id in
    file-*) code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/files/$id") ;;
    ftjob-*) code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/fine_tuning/jobs/$id") ;;
    *) continue ;;
  esac
  [ "$code" = 200 ] || { missing=$((missing + 1)); echo "lost $id" >&2; }
done <"$acked"
check "acknowledged objects survived ($(wc -l <"$acked") acked)" test "$missing" = 0
check_eq "no temp upload visible" "$(ls -A "$T_DIR/data/files" | grep -c '^\.tmp')" 0
api GET "/v1/fine_tuning/jobs?limit=100"
check "jobs still queued" jq -e '[.data[].status] | all(. == "queued")' <<<"$BODY"
check "listed files have their bytes on disk" bash -c '
  curl -s "'"$URL"'/v1/files?limit=100" | jq -r ".data[] | \"\(.id) \(.bytes)\"" |
  while read -r id n; do [ "$(stat -c %s "'"$T_DIR"'/data/files/$id")" = "$n" ] || exit 1; done'
T_DONE=1
