# The validating_files phase, black box without workers: a job is created
# in validating_files, its data is prepared by the daemon as the worker
# will, and it becomes queued with "datasets" statistics that match the
# file, or failed with invalid_training_file / invalid_validation_file
# naming the field (and the line); a cancel while validating wins; a job the
# daemon was validating when it died is validated after the restart.
. "${FT_SRC:-.}/tests/lib.sh"

start_daemon --workers 0 || exit 1
if tiny_model tiny; then ok "init-model tiny"; else bad "init-model tiny"; fi
jq_ok() { jq -e "$1" >/dev/null; }
job() { api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$1"; }
wait_status() { # wait_status JOB: until it leaves validating_files (10 s)
  local s
  for _ in $(seq 1 100); do
    s=$(curl -s "$URL/v1/fine_tuning/jobs/$1" | jq -r .status)
    [ "$s" != validating_files ] && break
    sleep 0.1
  done
  api GET "/v1/fine_tuning/jobs/$1"
}

# ---- a good file: queued, with statistics that match it
fid=$(upload "$FT_SRC/examples/capitals.jsonl")
nlines=$(grep -c . "$FT_SRC/examples/capitals.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$fid\",\"data\":{\"validation_split\":0.2}}"
check_eq "created in validating_files" "$CODE $(jget .status) $(jget .datasets)" \
  "200 validating_files null"
jid=$(jget .id)
wait_status "$jid"
check_eq "then queued" "$(jget .status)" queued
check_eq "training set read every line" "$(jget .datasets.training.lines)" "$nlines"
check_eq "sources: training file, validation split, no test" \
  "$(jget '[.datasets.training.source, .datasets.validation.source, (.datasets.test|tostring)] | join(" ")')" \
  "file split null"
check_eq "examples: training + validation = the file's examples (none dropped)" \
  "$(jget '.datasets.training.examples + .datasets.validation.examples + .datasets.training.duplicates + .datasets.training.empty')" \
  "$nlines"
check "a validation share near 20%" jq_ok \
  '.datasets.validation.examples >= 4 and .datasets.validation.examples <= 12' <<<"$BODY"
check "token counts" jq_ok '.datasets.training.tokens.total > 0 and .datasets.training.tokens.max >= .datasets.training.tokens.min' <<<"$BODY"
api GET "/v1/fine_tuning/jobs/$jid/events"
check "a status event says the files were validated" jq_ok \
  '[.data[] | select(.type == "status" and .data.status == "queued")] | length == 1' <<<"$BODY"
api POST "/v1/fine_tuning/jobs/$jid/cancel"

# ---- too few examples: invalid_training_file
head -5 "$FT_SRC/examples/capitals.jsonl" >"$T_DIR/few.jsonl"
fid5=$(upload "$T_DIR/few.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$fid5\",\"data\":{\"validation_split\":0}}"
jid=$(jget .id)
wait_status "$jid"
check_eq "too few examples: failed, invalid_training_file, param training_file" \
  "$(jget '[.status, .error.code, .error.param] | join(" ")')" \
  "failed invalid_training_file training_file"
check "the message says how many examples there are" grep -q "5 usable examples" <<<"$(jget .error.message)"
check "failed jobs have finished_at" jq_ok '.finished_at > 0' <<<"$BODY"

# ---- classification: a validation label the training set lacks
{
  for i in $(seq 1 12); do echo "{\"text\":\"good thing number $i\",\"label\":\"pos\"}"; done
  for i in $(seq 1 12); do echo "{\"text\":\"bad thing number $i\",\"label\":\"neg\"}"; done
} >"$T_DIR/cls.jsonl"
printf '{"text":"fine","label":"pos"}\n{"text":"awful","label":"neg"}\n{"text":"meh","label":"neutral"}\n' \
  >"$T_DIR/cls_valid.jsonl"
cfid=$(upload "$T_DIR/cls.jsonl")
cvid=$(upload "$T_DIR/cls_valid.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$cfid\",\"validation_file\":\"$cvid\",\"method\":{\"type\":\"classification\"}}"
check_eq "classification job created" "$CODE" 200
jid=$(jget .id)
wait_status "$jid"
check_eq "unseen label: failed, invalid_validation_file, param validation_file" \
  "$(jget '[.status, .error.code, .error.param] | join(" ")')" \
  "failed invalid_validation_file validation_file"
check "the message names line 3" grep -q "line 3" <<<"$(jget .error.message)"
# the same files without the bad line: queued, with label counts
head -2 "$T_DIR/cls_valid.jsonl" >"$T_DIR/cls_valid2.jsonl"
cvid2=$(upload "$T_DIR/cls_valid2.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$cfid\",\"validation_file\":\"$cvid2\",\"method\":{\"type\":\"classification\"}}"
jid=$(jget .id)
wait_status "$jid"
check_eq "good classification files: queued" "$(jget .status)" queued
check_eq "label counts" "$(jget '.datasets.training.label_counts | [.neg, .pos] | map(tostring) | join(" ")')" "12 12"
check_eq "validation from its file" "$(jget '.datasets.validation.source') $(jget '.datasets.validation.examples')" "file 2"
api POST "/v1/fine_tuning/jobs/$jid/cancel"

# ---- a test file is checked too (its label must be known)
job "{\"model\":\"tiny\",\"training_file\":\"$cfid\",\"test_file\":\"$cvid\",\"method\":{\"type\":\"classification\"}}"
jid=$(jget .id)
if [ "$CODE" = 200 ]; then
  wait_status "$jid"
  check_eq "unseen label in the test file: failed naming test_file" \
    "$(jget '[.status, .error.param] | join(" ")')" "failed test_file"
else
  bad "job with a test_file: $CODE $(jget .error.message)"
fi
job "{\"model\":\"tiny\",\"training_file\":\"$cfid\",\"test_file\":\"file-000000000000000000000000\"}"
check_eq "an unknown test_file is 400 naming it" "$CODE $(jget .error.param)" "400 test_file"

# ---- cancel while validating, and a restart during validation: a big file
python3 - "$T_DIR/big.jsonl" <<'EOF'
import sys, random
r = random.Random(5)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
with open(sys.argv[1], "w") as f:
    for i in range(60000):
        f.write('{"text": "%d %s"}\n' % (i, " ".join(r.choice(words) for _ in range(30))))
EOF
bfid=$(upload "$T_DIR/big.jsonl")
job "{\"model\":\"tiny\",\"training_file\":\"$bfid\"}"
jid=$(jget .id)
api POST "/v1/fine_tuning/jobs/$jid/cancel"
check_eq "cancel while validating_files" "$CODE $(jget .status)" "200 cancelled"
job "{\"model\":\"tiny\",\"training_file\":\"$bfid\"}"
jid=$(jget .id)
sleep 0.2
# the daemon dies (no clean stop) while preparing the big file
kill -9 "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=""
check_eq "the job was validating_files when the daemon died" \
  "$(sqlite3 "$T_DIR/data/finetuned.db" "SELECT status FROM jobs WHERE id = '$jid'")" validating_files
start_daemon --workers 0 || exit 1
api GET "/v1/fine_tuning/jobs/$jid"
for _ in $(seq 1 300); do
  [ "$(jget .status)" != validating_files ] && break
  sleep 0.1
  api GET "/v1/fine_tuning/jobs/$jid"
done
check_eq "after the restart it is validated and queued" "$(jget .status)" queued
check_eq "with every line of the file read" "$(jget .datasets.training.lines)" 60000
api GET "/v1/fine_tuning/jobs"
check_eq "the cancelled one stays cancelled" \
  "$(jget "[.data[] | select(.status == \"cancelled\")] | length >= 1")" true
T_DONE=1
