# Upload-time dataset validation, black box against a real daemon: a bad
# file is stored with status "error", status_details naming its first bad
# line and a "validation" report listing every bad line (also on GET); a job
# on it is refused naming training_file / validation_file; a good JSONL file
# and a good CSV file are "processed" with their format, example count and
# cleaning counts; content that is not UTF-8 is stored and reported per line
# (invalid_utf8), kept byte for byte, while a file NAME must be UTF-8.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
start_daemon --workers 0 || exit 1

# ---- a bad chat file: line 2 has no assistant message, line 4 is not JSON,
# line 5 has a role we do not know; line 3 is blank
good='{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}'
{
  echo "$good"
  echo '{"messages":[{"role":"user","content":"only a question"}]}'
  echo
  echo '{"messages": [oops'
  echo '{"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"y"}]}'
  echo "$good"
} >"$T_DIR/bad.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/bad.jsonl"
check_eq "a bad file still uploads" "$CODE" 200
bid=$(jget .id)
check_eq "its status is error" "$(jget .status)" error
check "status_details names the first bad line" grep -q '^line 2: example_missing_assistant_message' <<<"$(jget .status_details)"
check_eq "report: format" "$(jget .validation.format)" chat
check_eq "report: error lines and codes" "$(jget '[.validation.errors[] | "\(.line):\(.code)"] | join(" ")')" \
  "2:example_missing_assistant_message 4:invalid_json 5:unrecognized_role"
check_eq "report: counts" "$(jget '[.validation.examples, .validation.error_count, .validation.duplicates, .validation.empty_lines] | join(" ")')" \
  "2 3 1 1"
api GET "/v1/files/$bid"
check_eq "GET returns the status and the report" "$(jget '[.status, .validation.error_count] | join(" ")')" "error 3"
check "GET returns status_details" grep -q '^line 2:' <<<"$(jget .status_details)"
api GET /v1/files
check_eq "the list carries the report" "$(jq -r --arg i "$bid" '.data[] | select(.id == $i) | .validation.errors[0].line' <<<"$BODY")" 2

# ---- jobs refuse it
job() { api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$1"; }
job "{\"model\":\"tiny\",\"training_file\":\"$bid\"}"
check_eq "a job on a bad training file is refused" "$CODE $(jget .error.param)" "400 training_file"
check "the refusal names the first bad line" grep -q 'line 2' <<<"$(jget .error.message)"

# ---- a good file (12 examples: jobs need 10; one whitespace variant of an
# earlier example and one blank completion, which training's cleaning drops)
{
  for i in $(seq 1 12); do echo "{\"prompt\":\"q$i\",\"completion\":\" a$i\"}"; done
  echo '{"prompt":"q1","completion":" a1  "}'
  echo '{"prompt":"q13","completion":"  "}'
} >"$T_DIR/good.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/good.jsonl"
gid=$(jget .id)
check_eq "a good file is processed" "$(jget .status)" processed
check_eq "with no status_details" "$(jget .status_details)" null
check_eq "report: format and examples" "$(jget '[.validation.format, .validation.examples, .validation.error_count] | join(" ")')" \
  "prompt_completion 14 0"
check_eq "report: what cleaning will drop" "$(jget '[.validation.cleaning.duplicates, .validation.cleaning.empty] | join(" ")')" \
  "1 1"
job "{\"model\":\"tiny\",\"training_file\":\"$gid\",\"validation_file\":\"$bid\"}"
check_eq "a bad validation file is refused" "$CODE $(jget .error.param)" "400 validation_file"
job "{\"model\":\"tiny\",\"training_file\":\"$gid\"}"
check_eq "a job on the good file is created" "$CODE" 200
check "and is validating or queued" grep -Eq '^(validating_files|queued)$' <<<"$(jget .status)"

# ---- CSV: by Content-Type and by file name, with quoted commas and newlines
printf 'text,label\n"hello, world",pos\n"two\nlines",neg\nfine,pos\n' >"$T_DIR/good.csv"
api POST /v1/files -H 'Content-Type: text/csv' --data-binary "@$T_DIR/good.csv"
check_eq "raw CSV is processed as classification" \
  "$(jget '[.status, .validation.format, .validation.examples, .validation.label_counts.pos] | join(" ")')" \
  "processed classification 3 2"
printf 'text,label\na,x\nb,y,z\n' >"$T_DIR/bad.csv"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/bad.csv"
check_eq "a .csv part with a short row is an error at line 3" \
  "$(jget '[.status, .validation.errors[0].line, .validation.errors[0].code] | join(" ")')" \
  "error 3 csv_columns"

# ---- invalid UTF-8 in the content: stored, status error, reported per line
{
  echo '{"text":"one"}'
  echo '{"text":"two"}'
  printf '{"text":"caf\xe9"}\n'
  echo '{"text":"four"}'
  printf '{"text":"five \xf0\x9f"}\n'
} >"$T_DIR/latin1.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/latin1.jsonl"
check_eq "a file with a bad byte on line 3 still uploads" "$CODE" 200
uid=$(jget .id)
check_eq "its status is error" "$(jget .status)" error
check_eq "the report names lines 3 and 5 invalid_utf8" \
  "$(jget '[.validation.errors[] | "\(.line):\(.code)"] | join(" ")')" "3:invalid_utf8 5:invalid_utf8"
check "status_details names line 3" grep -q '^line 3: invalid_utf8' <<<"$(jget .status_details)"
check_eq "the other lines are examples" "$(jget .validation.examples)" 3
curl -s "$URL/v1/files/$uid/content" -o "$T_DIR/latin1.back"
check "the acknowledged file is kept byte for byte" cmp -s "$T_DIR/latin1.jsonl" "$T_DIR/latin1.back"
api GET /v1/files
check_eq "and listed" "$(jq -r --arg i "$uid" '[.data[] | select(.id == $i)] | length' <<<"$BODY")" 1
job "{\"model\":\"tiny\",\"training_file\":\"$uid\"}"
check_eq "a job on it is refused" "$CODE $(jget .error.param)" "400 training_file"
check "naming line 3" grep -q 'line 3' <<<"$(jget .error.message)"

printf 'text,label\n"two\nlines",x\nbad \xff byte,y\n' >"$T_DIR/latin1.csv"
api POST /v1/files -H 'Content-Type: text/csv' --data-binary "@$T_DIR/latin1.csv"
check_eq "a CSV record with a bad byte: error at its line" \
  "$(jget '[.status, .validation.errors[0].line, .validation.errors[0].code] | join(" ")')" \
  "error 4 invalid_utf8"
printf '{"text":"ends mid-character \xe2\x82' >"$T_DIR/cut.jsonl"
api POST /v1/files -H 'Content-Type: application/jsonl' --data-binary "@$T_DIR/cut.jsonl"
check_eq "a file cut inside a character: error at the last line" \
  "$(jget '[.status, .validation.errors[0].line, .validation.errors[0].code] | join(" ")')" \
  "error 1 invalid_utf8"

# a file NAME that is not UTF-8 is still refused
api POST "/v1/files?filename=bad%FFname.jsonl&purpose=fine-tune" -H 'Content-Type: application/jsonl' \
  --data-binary "@$T_DIR/good.jsonl"
check_eq "a non-UTF-8 file name is refused" "$CODE $(jget .error.param)" "400 filename"

T_DONE=1
