# A sequence-classification job through the daemon: a Llama-family model with
# LoRA on q/v and a trained score head learns a two-label sentiment set; the
# result has id2label in its config.json and a PEFT adapter; a test split
# gives classification test metrics.
source "$(dirname "$0")/../lib.sh"
tiny_model ll llama tiny || { bad "init-model"; exit 1; }
start_daemon --workers 1 || exit 1
pos=(great wonderful excellent lovely superb fantastic)
neg=(awful terrible horrible bad dreadful poor)
for i in $(seq 1 60); do
  if [ $((i % 2)) = 0 ]; then w=${pos[$((i % 6))]} l=pos; else w=${neg[$((i % 6))]} l=neg; fi
  printf '{"text":"The film was %s, take %d.","label":"%s"}\n' "$w" "$i" "$l"
done >"$T_DIR/sentiment.jsonl"
api POST /v1/files -F purpose=fine-tune -F "file=@$T_DIR/sentiment.jsonl"
fid=$(jget .id)
check_eq "detected as classification" "$(jget .validation.format)" classification
check_eq "label counts" "$(jget '.validation.label_counts | "\(.pos) \(.neg)"')" "30 30"
body=$(jq -nc --arg f "$fid" '{model:"ll", training_file:$f, seed:1, data:{test_split:0.2},
  method:{type:"classification", classification:{hyperparameters:{n_epochs:5, batch_size:8,
  learning_rate:0.003}}}, adapter:{type:"lora", r:8, alpha:16, target_modules:["q_proj","v_proj"]}}')
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
check_eq "create classification job" "$CODE" 200
job=$(jget .id)
check_eq "job succeeds" "$(wait_job "$job" succeeded 180)" succeeded
api GET "/v1/fine_tuning/jobs/$job"
check_eq "datasets: every example in one of the three sets" \
  "$(jget '[.datasets.training, .datasets.validation, .datasets.test] | map(.examples) | add')" 60
check_eq "datasets: label counts of the training set add up" \
  "$(jget '.datasets.training.label_counts | add')" "$(jget .datasets.training.examples)"
check "test metrics of the classifier" jq -e \
  '(.test_metrics.test_accuracy | type) == "number" and (.test_metrics | has("confusion_matrix"))' <<<"$BODY"
api GET "/v1/fine_tuning/jobs/$job/events?limit=100"
acc=$(jq '[.data[] | select(.type=="metrics") | .data.train_mean_token_accuracy] | .[:10] | add/length' <<<"$BODY")
check "the classifier learns (accuracy of the last 10 steps $acc)" jq -en "$acc >= 0.9"
model=$(curl -s "$URL/v1/fine_tuning/jobs/$job" | jq -r .fine_tuned_model)
cfg="$T_DIR/data/models/$model/config.json"
check_eq "config.json names the labels" "$(jq -r '.id2label | [.[]] | sort | join(",")' "$cfg")" "neg,pos"
check_eq "a classifier architecture" "$(jq -r '.architectures[0]' "$cfg")" LlamaForSequenceClassification
check_eq "PEFT task type" "$(jq -r .task_type "$T_DIR/data/models/$model/adapter/adapter_config.json")" SEQ_CLS
api GET "/v1/models/$model"
check_eq "the model object: architecture, task, labels" \
  "$(jget '"\(.architecture) \(.task) \(.labels | join(","))"')" "llama classification neg,pos"
api GET /v1/models
check_eq "the base model in the list is a causal LM" \
  "$(jq -r --arg m "$model" '.data[] | select(.id != $m and .owned_by == "finetuned") | .task' <<<"$BODY" | sort -u)" causal_lm
T_DONE=1
