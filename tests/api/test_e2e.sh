# The whole job path through a real daemon and a real worker: upload ->
# job -> live SSE stream -> succeeded -> model listed and downloadable; the
# same with LoRA; cancel and pause/resume of running jobs.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
start_daemon --workers 1 || exit 1

fid=$(upload "$FT_SRC/examples/capitals.jsonl")
check "upload gives a file id" test "${fid#file-}" != "$fid"

spec() { # spec ADAPTER EPOCHS CKPT_EVERY
  jq -nc --arg f "$fid" --arg a "$1" --argjson e "$2" --argjson c "$3" '{model:"tiny", training_file:$f,
    suffix:"e2e", seed:3, adapter:{type:$a},
    method:{type:"supervised", supervised:{hyperparameters:{n_epochs:$e, batch_size:4,
      learning_rate:0.003, max_seq_len:64}}}, checkpoints:{every_steps:$c, keep:2}}'
}

# --- full fine-tuning, followed live over SSE
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(spec full 6 5)"
check_eq "create job" "$CODE" 200
job=$(jget .id)
check_eq "job object" "$(jget .object)" "fine_tuning.job"
timeout 180 curl -sN "$URL/v1/fine_tuning/jobs/$job/events?stream=true" >"$T_DIR/sse.txt"
check "stream ends with [DONE]" grep -q '^data: \[DONE\]' "$T_DIR/sse.txt"
grep '^data: {' "$T_DIR/sse.txt" | sed 's/^data: //' >"$T_DIR/events.jsonl"
steps=$(jq -r 'select(.type=="metrics") | .data.step' "$T_DIR/events.jsonl" | tr '\n' ' ')
total=$(jq -r 'select(.type=="metrics") | .data.total_steps' "$T_DIR/events.jsonl" | tail -1)
check_eq "one metrics event per step, in order" "$steps" "$(seq -s ' ' 1 "$total") "
first=$(jq -r 'select(.type=="metrics") | .data.train_loss' "$T_DIR/events.jsonl" | head -3 | jq -s add/length)
last=$(jq -r 'select(.type=="metrics") | .data.train_loss' "$T_DIR/events.jsonl" | tail -3 | jq -s add/length)
check "training loss falls ($first -> $last)" jq -en "$last < $first * 0.8"
ids=$(grep '^id: ' "$T_DIR/sse.txt" | cut -d' ' -f2 | tr '\n' ' ')
check "SSE ids increase" bash -c "sort -n -c <<<'$(tr ' ' '\n' <<<"$ids" | grep .)'"
api GET "/v1/fine_tuning/jobs/$job"
check_eq "job succeeded" "$(jget .status)" succeeded
model=$(jget .fine_tuned_model)
check_eq "fine-tuned model id" "$model" "ft:tiny:e2e:$job"
check_eq "steps_completed" "$(jget .steps_completed)" "$total"
api GET /v1/models
check "model listed" jq -e --arg m "$model" 'any(.data[]; .id == $m)' <<<"$BODY"
api GET "/v1/models/$model/files/config.json"
check_eq "config.json downloadable" "$(jget .model_type)" gpt2
check "weights on disk" test -s "$T_DIR/data/models/$model/model.safetensors"
api GET "/v1/fine_tuning/jobs/$job/checkpoints"
check "checkpoints listed" jq -e '.data | length >= 1' <<<"$BODY"
# resuming the stream after the end replays nothing but [DONE]
last_id=$(grep '^id: ' "$T_DIR/sse.txt" | tail -1 | cut -d' ' -f2)
tail_out=$(timeout 10 curl -sN -H "Last-Event-ID: $last_id" "$URL/v1/fine_tuning/jobs/$job/events?stream=true")
check_eq "Last-Event-ID resumes after the last event" "$(grep -c '^id: ' <<<"$tail_out")" 0

# --- LoRA: a PEFT adapter beside the merged model
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(spec lora 1 0)"
lj=$(jget .id)
check_eq "lora job succeeded" "$(wait_job "$lj" succeeded 180)" succeeded
lm=$(curl -s "$URL/v1/fine_tuning/jobs/$lj" | jq -r .fine_tuned_model)
check "adapter_config.json written" test -s "$T_DIR/data/models/$lm/adapter/adapter_config.json"
check "merged weights written" test -s "$T_DIR/data/models/$lm/model.safetensors"

# --- cancel a running job
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(spec full 200 0)"
cj=$(jget .id)
check_eq "long job runs" "$(wait_job "$cj" running 60)" running
sleep 1
api POST "/v1/fine_tuning/jobs/$cj/cancel"
check_eq "cancel answers 200" "$CODE" 200
check_eq "cancelled" "$(jget .status)" cancelled
api POST "/v1/fine_tuning/jobs/$cj/cancel"
check_eq "cancel of a terminal job is 409" "$CODE" 409
sleep 1
check_eq "stays cancelled" "$(curl -s "$URL/v1/fine_tuning/jobs/$cj" | jq -r .status)" cancelled

# --- pause at a checkpoint, resume from it
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$(spec full 6 4)"
pj=$(jget .id)
wait_job "$pj" running 60 >/dev/null
for _ in $(seq 1 300); do
  s=$(curl -s "$URL/v1/fine_tuning/jobs/$pj" | jq -r .steps_completed)
  [ "${s:-0}" -ge 3 ] 2>/dev/null && break; sleep 0.1
done
api POST "/v1/fine_tuning/jobs/$pj/pause"
check_eq "pause answers 200" "$CODE" 200
check_eq "paused" "$(wait_job "$pj" paused 60)" paused
paused_at=$(curl -s "$URL/v1/fine_tuning/jobs/$pj" | jq -r .steps_completed)
api GET "/v1/fine_tuning/jobs/$pj/checkpoints"
ck=$(jq -r '[.data[].step_number] | max' <<<"$BODY")
check_eq "pause wrote a checkpoint at the paused step" "$ck" "$paused_at"
api POST "/v1/fine_tuning/jobs/$pj/resume"
check_eq "resume answers 200" "$CODE" 200
check_eq "resumed job succeeds" "$(wait_job "$pj" succeeded 180)" succeeded
api GET "/v1/fine_tuning/jobs/$pj/events?limit=100"
steps=$(jq -r '[.data[] | select(.type=="metrics") | .data.step] | reverse | map(tostring) | join(" ")' <<<"$BODY")
ptotal=$(curl -s "$URL/v1/fine_tuning/jobs/$pj" | jq -r .total_steps)
check_eq "pause/resume: every step once, none repeated" "$steps" "$(seq -s ' ' 1 "$ptotal")"
check "daemon still up" curl -sf "$URL/healthz" -o /dev/null
T_DONE=1
