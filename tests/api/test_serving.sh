# Serving through a real daemon: completions and chat completions from a
# fine-tuned model (streamed and not, the same text for the same seed; usage,
# stop strings, echo with logprobs), a checkpoint served as a model,
# classifications from two classification fine-tunes and their ensemble
# (the mean of the members' probabilities), errors naming the field, 429
# with Retry-After beyond the inference slots, and job polls staying fast
# while long generations run.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model tiny"; exit 1; }
tiny_model ll llama tiny || { bad "init-model ll"; exit 1; }
tiny_model long gpt2 small-test || { bad "init-model long"; exit 1; }
start_daemon --workers 1 --infer-concurrency 1 --infer-queue 0 || exit 1
JSON=(-H 'Content-Type: application/json')
# py EXPR: evaluates a Python expression over the JSON in $BODY (as b) and
# the JSON files named in the extra arguments (as f[0], f[1]…)
py() {
  local e=$1; shift
  /usr/bin/python3 -c 'import json, math, sys
b = json.loads(sys.stdin.read())
f = [json.load(open(p)) for p in sys.argv[2:]]
r = eval(sys.argv[1])
print(r if not isinstance(r, bool) else ("true" if r else "false"))' "$e" "$@" <<<"$BODY"
}
# sse_text FILE FIELD: the concatenated text of a stream's chunks
sse_text() {
  grep '^data: {' "$1" | sed 's/^data: //' | jq -j "$2 // \"\""
}

# --- three fine-tunes: a completion model (with checkpoints) and two classifiers
fid=$(upload "$FT_SRC/examples/capitals.jsonl")
body=$(jq -nc --arg f "$fid" '{model:"tiny", training_file:$f, suffix:"srv", seed:3,
  adapter:{type:"full"}, method:{type:"supervised", supervised:{hyperparameters:{n_epochs:6,
  batch_size:4, learning_rate:0.003, max_seq_len:64}}}, checkpoints:{every_steps:5, keep:2}}')
api POST /v1/fine_tuning/jobs "${JSON[@]}" -d "$body"
check_eq "create the completion job" "$CODE" 200
job=$(jget .id)
pos=(great wonderful excellent lovely superb fantastic)
neg=(awful terrible horrible bad dreadful poor)
for i in $(seq 1 40); do
  if [ $((i % 2)) = 0 ]; then w=${pos[$((i % 6))]} l=pos; else w=${neg[$((i % 6))]} l=neg; fi
  printf '{"text":"The film was %s, take %d.","label":"%s"}\n' "$w" "$i" "$l"
done >"$T_DIR/sentiment.jsonl"
sfid=$(upload "$T_DIR/sentiment.jsonl")
cjobs=()
for seed in 1 2; do
  body=$(jq -nc --arg f "$sfid" --argjson s $seed '{model:"ll", training_file:$f, seed:$s,
    suffix:"clf", method:{type:"classification", classification:{hyperparameters:{n_epochs:3,
    batch_size:8, learning_rate:0.003}}}, adapter:{type:"lora", r:8, alpha:16,
    target_modules:["q_proj","v_proj"]}}')
  api POST /v1/fine_tuning/jobs "${JSON[@]}" -d "$body"
  cjobs+=("$(jget .id)")
done
# a model whose job has not succeeded yet is 409
api POST /v1/completions "${JSON[@]}" -d "$(jq -nc --arg m "ft:ll:clf:${cjobs[1]}" '{model:$m, prompt:"x"}')"
check_eq "a model still training: 409" "$CODE" 409
check_eq "  names the field" "$(jget .error.param)" model
check_eq "completion job succeeds" "$(wait_job "$job" succeeded 300)" succeeded
model=$(curl -s "$URL/v1/fine_tuning/jobs/$job" | jq -r .fine_tuned_model)
for j in "${cjobs[@]}"; do check_eq "classifier job succeeds" "$(wait_job "$j" succeeded 300)" succeeded; done
ma=$(curl -s "$URL/v1/fine_tuning/jobs/${cjobs[0]}" | jq -r .fine_tuned_model)
mb=$(curl -s "$URL/v1/fine_tuning/jobs/${cjobs[1]}" | jq -r .fine_tuned_model)

# --- completions: non-streamed and streamed, greedy and sampled
Q='What is the capital of France?\n'
req() { jq -nc --arg m "$model" --arg p "$(printf "$Q")" "{model:\$m, prompt:\$p, $1}"; }
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:12, temperature:0')"
check_eq "completion answers 200" "$CODE" 200
check_eq "text_completion object" "$(jget .object)" text_completion
check_eq "model echoed" "$(jget .model)" "$model"
greedy=$(jget '.choices[0].text')
check "usage adds up" jq -e '.usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens
  and .usage.completion_tokens <= 12 and .usage.prompt_tokens > 0' <<<"$BODY"
check "finish_reason stop or length" jq -e '.choices[0].finish_reason | . == "stop" or . == "length"' <<<"$BODY"
echo "greedy completion: $(jq -c .choices[0] <<<"$BODY")"
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:12, temperature:0')"
check_eq "greedy decoding repeats" "$(jget '.choices[0].text')" "$greedy"
curl -sN "$URL/v1/completions" "${JSON[@]}" -d "$(req 'max_tokens:12, temperature:0, stream:true,
  stream_options:{include_usage:true}')" >"$T_DIR/c.sse"
check_eq "streamed text equals the non-streamed one (greedy)" "$(sse_text "$T_DIR/c.sse" '.choices[0].text')" "$greedy"
check "stream ends with [DONE]" bash -c "tail -2 '$T_DIR/c.sse' | grep -q '^data: \[DONE\]'"
check "stream chunks are text_completion objects" bash -c "grep '^data: {' '$T_DIR/c.sse' | sed 's/^data: //' | jq -se 'all(.object == \"text_completion\")'"
check "a last chunk with usage (include_usage)" bash -c "grep '^data: {' '$T_DIR/c.sse' | tail -1 | sed 's/^data: //' | jq -e '.usage.total_tokens > 0 and (.choices | length) == 0'"
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:24, temperature:1, seed:42')"
sampled=$(jget '.choices[0].text')
curl -sN "$URL/v1/completions" "${JSON[@]}" -d "$(req 'max_tokens:24, temperature:1, seed:42, stream:true')" >"$T_DIR/s.sse"
check_eq "streamed equals non-streamed for a seed (temperature 1)" "$(sse_text "$T_DIR/s.sse" '.choices[0].text')" "$sampled"
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:24, temperature:1, seed:42')"
check_eq "the same seed gives the same text" "$(jget '.choices[0].text')" "$sampled"

# prompt as token ids: usage counts them
api POST /v1/completions "${JSON[@]}" -d "$(jq -nc --arg m "$model" '{model:$m, prompt:[464, 3139, 286, 4881, 318], max_tokens:7, temperature:0}')"
check_eq "token-id prompt: prompt_tokens" "$(jget .usage.prompt_tokens)" 5
check "token-id prompt: completion_tokens" jq -e '(.choices[0].finish_reason == "length" and .usage.completion_tokens == 7) or (.choices[0].finish_reason == "stop" and .usage.completion_tokens <= 7)' <<<"$BODY"

# stop strings: the text ends before the first occurrence of the stop string
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:40, temperature:1, seed:7')"
long_text=$(jget '.choices[0].text')
BODY=$(jq -nc --arg t "$long_text" '{t:$t}')
stop=$(py 'b["t"][3:6] if len(b["t"]) >= 8 else ""')
if [ -n "$stop" ]; then
  want=$(py "b['t'][:b['t'].index($(jq -nc --arg s "$stop" '$s'))]")
  api POST /v1/completions "${JSON[@]}" -d "$(jq -nc --arg m "$model" --arg p "$(printf "$Q")" --arg s "$stop" '{model:$m, prompt:$p, max_tokens:40, temperature:1, seed:7, stop:["zzzz", $s]}')"
  check_eq "stop string: text ends before it" "$(jget '.choices[0].text')" "$want"
  check_eq "stop string: finish_reason stop" "$(jget '.choices[0].finish_reason')" stop
  curl -sN "$URL/v1/completions" "${JSON[@]}" -d "$(jq -nc --arg m "$model" --arg p "$(printf "$Q")" --arg s "$stop" '{model:$m, prompt:$p, max_tokens:40, temperature:1, seed:7, stop:$s, stream:true}')" >"$T_DIR/stop.sse"
  check_eq "stop string, streamed" "$(sse_text "$T_DIR/stop.sse" '.choices[0].text')" "$want"
else
  bad "the sampled text is too short to take a stop string from: '$long_text'"
fi

# echo + logprobs: the prompt's tokens with their logprobs, the first null
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:3, temperature:0, echo:true, logprobs:2')"
check_eq "echo+logprobs answers 200" "$CODE" 200
check "echo: the text starts with the prompt" py "b['choices'][0]['text'].startswith($(jq -nc --arg p "$(printf "$Q")" '$p'))"
check "echo: a token per prompt and completion token" jq -e '.choices[0].logprobs.tokens | length' <<<"$BODY"
check_eq "echo: tokens = prompt_tokens + completion_tokens" "$(jget '.choices[0].logprobs.tokens | length')" "$(jget '.usage.prompt_tokens + .usage.completion_tokens')"
check "echo: the first token's logprob is null, the others <= 0" jq -e '.choices[0].logprobs.token_logprobs | (.[0] == null) and (.[1:] | all(type == "number" and . <= 0))' <<<"$BODY"
# (alternatives whose text is the same, such as partial UTF-8 bytes, share one key)
check "echo: top_logprobs has 1..2 alternatives after the first" jq -e '.choices[0].logprobs.top_logprobs | (.[0] == null) and (.[1:] | all(length >= 1 and length <= 2))' <<<"$BODY"
# (an end-of-text token, if one ended it, is listed but has no text)
check "echo: the tokens spell the text" py "''.join(b['choices'][0]['logprobs']['tokens']).removesuffix('<|endoftext|>') == b['choices'][0]['text']"
check "echo: text_offset starts at 0 and grows" jq -e '.choices[0].logprobs.text_offset | .[0] == 0 and (. == sort)' <<<"$BODY"

# --- chat completions through the template
creq() { jq -nc --arg m "$model" "{model:\$m, messages:[{role:\"user\", content:\"What is the capital of Spain?\"}], $1}"; }
api POST /v1/chat/completions "${JSON[@]}" -d "$(creq 'max_tokens:16, temperature:0.8, seed:5')"
check_eq "chat answers 200" "$CODE" 200
check_eq "chat.completion object" "$(jget .object)" chat.completion
check_eq "assistant message" "$(jget '.choices[0].message.role')" assistant
chat=$(jget '.choices[0].message.content')
chat_prompt=$(jget .usage.prompt_tokens)
echo "chat: $(jq -c .choices[0] <<<"$BODY")"
curl -sN "$URL/v1/chat/completions" "${JSON[@]}" -d "$(creq 'max_tokens:16, temperature:0.8, seed:5, stream:true')" >"$T_DIR/chat.sse"
check_eq "streamed chat equals non-streamed" "$(sse_text "$T_DIR/chat.sse" '.choices[0].delta.content')" "$chat"
check "chat chunks: chat.completion.chunk, the first with the role" bash -c "grep '^data: {' '$T_DIR/chat.sse' | sed 's/^data: //' | jq -se 'all(.object == \"chat.completion.chunk\") and .[0].choices[0].delta.role == \"assistant\" and (.[-1].choices[0].finish_reason | type) == \"string\"'"
check "chat stream ends with [DONE]" bash -c "tail -2 '$T_DIR/chat.sse' | grep -q '^data: \[DONE\]'"
# the tiny model has no chat template: plain "role: content" lines, then "assistant: "
rendered=$(printf 'user: What is the capital of Spain?\nassistant: ')
api POST /v1/completions "${JSON[@]}" -d "$(jq -nc --arg m "$model" --arg p "$rendered" '{model:$m, prompt:$p, max_tokens:16, temperature:0}')"
check_eq "chat prompt = the template's rendering, in tokens" "$chat_prompt" "$(jget .usage.prompt_tokens)"
plain=$(jget '.choices[0].text')
api POST /v1/chat/completions "${JSON[@]}" -d "$(creq 'max_tokens:16, temperature:0')"
check "greedy chat continues the rendered prompt" py "b['choices'][0]['message']['content'] == '' or $(jq -nc --arg p "$plain" '$p').startswith(b['choices'][0]['message']['content'])"
api POST /v1/chat/completions "${JSON[@]}" -d "$(creq 'max_completion_tokens:4, temperature:0, logprobs:true, top_logprobs:3')"
check "chat logprobs: one entry per token, 3 alternatives" jq -e '(.choices[0].logprobs.content | length) == .usage.completion_tokens and all(.choices[0].logprobs.content[]; (.top_logprobs | length) == 3 and .logprob <= 0)' <<<"$BODY"

# --- a checkpoint served as a model (exported on first use)
api GET "/v1/fine_tuning/jobs/$job/checkpoints"
ck=$(jget '.data[0].fine_tuned_model_checkpoint')
cks=$(jget '[.data[].fine_tuned_model_checkpoint] | sort | join(" ")')
api GET /v1/models
check_eq "GET /v1/models lists the job's checkpoints" \
  "$(jq -r --arg j "$job" '[.data[] | select(.id | test(":ckpt-step-")) | select(.job == $j) | .id] | sort | join(" ")' <<<"$BODY")" "$cks"
listed=$(jq -c --arg c "$ck" '.data[] | select(.id == $c)' <<<"$BODY")
check_eq "  as a causal LM of the job's architecture, with parent and step" \
  "$(jq -r '"\(.architecture) \(.task) \(.parent) \(.step > 0)"' <<<"$listed")" "gpt2 causal_lm tiny true"
api GET "/v1/models/$ck"
check_eq "  the same object as GET by id" "$(jq -cS . <<<"$BODY")" "$(jq -cS . <<<"$listed")"
api POST /v1/completions "${JSON[@]}" -d "$(jq -nc --arg m "$ck" --arg p "$(printf "$Q")" '{model:$m, prompt:$p, max_tokens:4, temperature:0}')"
check_eq "a checkpoint serves completions" "$CODE" 200
check "  its directory now exists" test -s "$T_DIR/data/models/$ck/config.json"

# --- classifications: two classifiers and their ensemble
INPUTS='["The film was great, take 99.", "The film was awful, take 98.", "I did not care."]'
api POST /v1/classifications "${JSON[@]}" -d "$(jq -nc --arg m "$ma" --argjson i "$INPUTS" '{model:$m, input:$i}')"
check_eq "classification answers 200" "$CODE" 200
echo "classification: $(jq -c .data <<<"$BODY")"
echo "$BODY" >"$T_DIR/ca.json"
check_eq "one result per input, in order" "$(jget '[.data[].index] | join(",")')" "0,1,2"
check "probabilities sum to 1" py "all(abs(sum(d['probabilities'].values()) - 1) < 1e-5 for d in b['data'])"
check "label = the most probable one" py "all(d['label'] == max(d['probabilities'], key=d['probabilities'].get) for d in b['data'])"
check_eq "the labels" "$(jget '.labels | sort | join(",")')" "neg,pos"
check_eq "says which model took part" "$(jget '.models | join(",")')" "$ma"
api POST /v1/classifications "${JSON[@]}" -d "$(jq -nc --arg m "$mb" --argjson i "$INPUTS" '{model:$m, input:$i}')"
echo "$BODY" >"$T_DIR/cb.json"
api POST /v1/classifications "${JSON[@]}" -d "$(jq -nc --arg a "$ma" --arg b "$mb" --argjson i "$INPUTS" '{models:[$a,$b], input:$i}')"
check_eq "ensemble answers 200" "$CODE" 200
check_eq "ensemble: both models took part" "$(jget '.models | join(",")')" "$ma,$mb"
check "ensemble = the mean of the members' probabilities" py "all(abs(b['data'][i]['probabilities'][l] - (f[0]['data'][i]['probabilities'][l] + f[1]['data'][i]['probabilities'][l]) / 2) < 1e-6 for i in range(3) for l in ('pos', 'neg'))" "$T_DIR/ca.json" "$T_DIR/cb.json"
check "the members differ (a real average)" py "any(abs(f[0]['data'][i]['probabilities']['pos'] - f[1]['data'][i]['probabilities']['pos']) > 1e-6 for i in range(3))" "$T_DIR/ca.json" "$T_DIR/cb.json"
api POST /v1/classifications "${JSON[@]}" -d "$(jq -nc --arg m "$ma" '{model:$m, input:"a single text"}')"
check_eq "a single string input" "$(jget '.data | length')" 1

# --- bad requests name their field
bad_case() { # bad_case DESC PATH BODY STATUS PARAM
  api POST "$2" "${JSON[@]}" -d "$3"
  check_eq "$1: status" "$CODE" "$4"
  check_eq "$1: param" "$(jget .error.param)" "$5"
}
bad_case "unknown model" /v1/completions '{"model":"nope","prompt":"x"}' 404 model
bad_case "temperature > 2" /v1/completions "$(req 'temperature:2.5')" 400 temperature
bad_case "temperature < 0" /v1/chat/completions "$(creq 'temperature:-0.1')" 400 temperature
bad_case "top_p 0" /v1/completions "$(req 'top_p:0')" 400 top_p
bad_case "top_p > 1" /v1/completions "$(req 'top_p:1.5')" 400 top_p
bad_case "logprobs 6" /v1/completions "$(req 'logprobs:6')" 400 logprobs
bad_case "top_logprobs 6" /v1/chat/completions "$(creq 'logprobs:true, top_logprobs:6')" 400 top_logprobs
bad_case "max_tokens beyond the context" /v1/completions "$(req 'max_tokens:300')" 400 max_tokens
bad_case "n 2" /v1/completions "$(req 'n:2')" 400 n
bad_case "unknown field" /v1/completions "$(req 'best_of:2')" 400 best_of
bad_case "more than 4 stop strings" /v1/completions "$(req 'stop:["a","b","c","d","e"]')" 400 stop
bad_case "prompt missing" /v1/completions "$(jq -nc --arg m "$model" '{model:$m}')" 400 prompt
bad_case "token id beyond the vocabulary" /v1/completions "$(jq -nc --arg m "$model" '{model:$m, prompt:[1, 99999999]}')" 400 prompt
bad_case "a role the template cannot render" /v1/chat/completions "$(jq -nc --arg m "$model" '{model:$m, messages:[{role:"robot", content:"hi"}]}')" 400 "messages[0]"
bad_case "a classifier asked for a completion" /v1/completions "$(jq -nc --arg m "$ma" '{model:$m, prompt:"x"}')" 400 model
bad_case "a causal LM asked to classify" /v1/classifications "$(jq -nc --arg m "$model" '{model:$m, input:"x"}')" 400 model
bad_case "a causal LM in an ensemble" /v1/classifications "$(jq -nc --arg a "$ma" --arg m "$model" '{models:[$a,$m], input:"x"}')" 400 "models[1]"
bad_case "input beyond the batch limit" /v1/classifications "$(jq -nc --arg m "$ma" '{model:$m, input:[range(65) | "t"]}')" 400 input
bad_case "model and models" /v1/classifications "$(jq -nc --arg m "$ma" '{model:$m, models:[$m], input:"x"}')" 400 models

# --- long generations: 429 beyond the slots, and job polls stay fast
LREQ='{"model":"long","prompt":[50256],"max_tokens":511,"temperature":1,"seed":1}'
curl -sN "$URL/v1/completions" "${JSON[@]}" -d "${LREQ%\}},\"stream\":true}" >"$T_DIR/long.sse" &
long_pid=$!
for _ in $(seq 1 600); do grep -q '^data: {' "$T_DIR/long.sse" 2>/dev/null && break; sleep 0.05; done
out=$(curl -s -D "$T_DIR/h429" -w '\n%{http_code}' "$URL/v1/completions" "${JSON[@]}" -d "$LREQ")
check_eq "a request beyond the slots: 429" "${out##*$'\n'}" 429
check_eq "  rate_limit_exceeded" "$(jq -r .error.code <<<"${out%$'\n'*}")" rate_limit_exceeded
check "  with Retry-After" grep -qi '^Retry-After: [0-9]' "$T_DIR/h429"
wait "$long_pid"
check_eq "the long generation: 511 new tokens (the whole context)" "$(grep '^data: {' "$T_DIR/long.sse" | tail -1 | sed 's/^data: //' | jq -r '.choices[0].finish_reason')" length
# a streaming client that leaves cancels its generation and frees the slot
curl -sN --max-time 1 "$URL/v1/completions" "${JSON[@]}" -d "${LREQ%\}},\"stream\":true}" >/dev/null
code=429
for _ in $(seq 1 20); do
  api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:2')"
  code=$CODE
  [ "$code" = 200 ] && break
  sleep 0.1
done
check_eq "a client that leaves frees its slot within 2 s" "$code" 200
# job polls while generations run back to back
: >"$T_DIR/gens"
(for _ in $(seq 1 20); do
  [ -e "$T_DIR/polls-done" ] && break
  t0=$(date +%s%N)
  c=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/completions" "${JSON[@]}" -d "$LREQ")
  echo "$t0 $(date +%s%N) $c" >>"$T_DIR/gens"
done) &
gen_pid=$!
sleep 0.3
: >"$T_DIR/polls"
for _ in $(seq 1 30); do
  t=$(date +%s%N)
  s=$(curl -s -o /dev/null -w '%{time_total}' "$URL/v1/fine_tuning/jobs")
  echo "$t $s" >>"$T_DIR/polls"
  sleep 0.05
done
touch "$T_DIR/polls-done"
wait "$gen_pid"
p50=$(awk '{print $2}' "$T_DIR/polls" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(awk '{print $2}' "$T_DIR/polls" | sort -n | tail -1)
during=$(awk 'NR==FNR {s[NR]=$1; e[NR]=$2; n=NR; next} {for (i=1;i<=n;i++) if ($1>=s[i] && $1<=e[i]) {c++; break}} END {print c+0}' "$T_DIR/gens" "$T_DIR/polls")
gen_ms=$(awk '{t += ($2 - $1) / 1e6; n++} END {printf "%d", n ? t / n : 0}' "$T_DIR/gens")
echo "job polls during generation: p50 ${p50}s, max ${max}s, $during of 30 during a generation" \
  "(a 511-token generation takes ${gen_ms} ms)"
check "most polls ran during a generation ($during of 30)" test "$during" -ge 20
check "job polls stay fast while generating (p50 ${p50}s < 0.05s)" jq -en "$p50 < 0.05"
check "generations succeeded meanwhile" grep -q ' 200$' "$T_DIR/gens"
check "daemon still up" curl -sf "$URL/healthz" -o /dev/null

# max_tokens left out: 16, or what still fits in the context; none: a 400 on the prompt
ctx=$(curl -s "$URL/v1/models/tiny" | jq .context_length)
fill() { jq -nc --argjson n "$1" '{model:"tiny", prompt:[range($n) | 50256], temperature:0}'; }
api POST /v1/completions "${JSON[@]}" -d "$(fill $((ctx - 5)))"
check_eq "a prompt 5 short of the context, max_tokens left out: answered" "$CODE" 200
check "  with at most 5 tokens" jq -e '.usage.completion_tokens <= 5 and .usage.completion_tokens >= 1' <<<"$BODY"
api POST /v1/completions "${JSON[@]}" -d "$(fill "$ctx")"
check_eq "a prompt filling the context: 400" "$CODE" 400
check_eq "  naming the prompt" "$(jget .error.param)" prompt

# a deleted model leaves the inference cache at once, and is no longer served
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:2, temperature:0')"
check_eq "the model answers before DELETE" "$CODE" 200
api DELETE "/v1/models/$model"
check_eq "DELETE the fine-tuned model" "$CODE" 200
check "its cached copy was dropped" grep -q "dropped from the inference cache\" id=$model" "$T_DIR/daemon.log"
check "and freed" grep -q "inference model evicted.*models/$model\"" "$T_DIR/daemon.log"
api POST /v1/completions "${JSON[@]}" -d "$(req 'max_tokens:2, temperature:0')"
check_eq "then 404" "$CODE" 404
T_DONE=1
