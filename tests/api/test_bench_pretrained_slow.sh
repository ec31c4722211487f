#!/usr/bin/env bash
# bench/pretrained end to end on tiny stand-ins and a small slice of
# SpamAssassin: a "pretrained" base (tiny Llama with a tokenizer trained on the
# repository's docs, trained 3 epochs on them, shipped with float16 weights as
# models/base-8m is), the random start the bench makes itself (preset found
# from the base's config.json), the split, both fine-tunes and the naive-Bayes
# baseline; the summary and the table hold what they claim. With --base and
# --init the same model the two fine-tunes must agree exactly (same spec, seed
# and data: deterministic). A wrong --init or option is refused, saying why.
source "$(dirname "$0")/../lib.sh"
BUILD=$(dirname "$FT_BIN")
W=$T_DIR/pt
mkdir -p "$W"
for f in README.md docs/architecture.md docs/datasets.md; do
  jq -Rsc 'split("\n\n")[] | select(test("\\S")) | {text: .}' "$FT_SRC/$f"
done >"$W/docs.jsonl"
"$FT_BIN/finetuned" train-tokenizer --vocab-size 400 --out "$W/tok" "$W/docs.jsonl" >/dev/null 2>&1
"$FT_BIN/finetuned" init-model --arch llama --preset tiny --tokenizer "$W/tok" --out "$W/raw" \
  --seed 7 >/dev/null
echo '{"seed":1,"adapter":{"type":"full"},"method":{"type":"supervised","supervised":{
  "hyperparameters":{"n_epochs":3,"batch_size":8,"max_seq_len":64,"learning_rate":0.003}}}}' \
  >"$W/spec.json"
"$FT_BIN/finetuned-worker" train --model "$W/raw" --train "$W/docs.jsonl" --spec "$W/spec.json" \
  --out "$W/trained" >"$W/train.out" 2>"$W/train.err"
check "the stand-in base was trained 3 epochs, its loss falling" jq -se '.[-1].done and
  .[-1].epochs_completed == 3 and .[-1].steps >= 20 and .[-1].final_train_loss < .[0].train_loss' \
  "$W/train.out"
"$FT_BIN/finetuned" convert-model --dtype f16 --out "$W/base" "$W/trained" >/dev/null 2>&1
check "the stand-in base has float16 weights" grep -q float16 "$W/base/config.json"

"$FT_SRC/bench/pretrained" --base "$W/base" --max 60 --epochs 2 --seq 48 \
  --work "$T_DIR/bench" --build "$BUILD" >"$T_DIR/out.txt" 2>"$T_DIR/err.txt"
rc=$?
check_eq "the bench ran" "$rc" 0
[ "$rc" = 0 ] || tail -5 "$T_DIR/err.txt" >&2
S=$T_DIR/bench/summary.json
check "summary written" test -s "$S"
check_eq "the last line is the summary" "$(tail -1 "$T_DIR/out.txt" | jq -c .)" "$(jq -c . "$S")"
check_eq "split sizes 48/6/6" "$(jq -r '"\(.train)/\(.validation)/\(.test)"' "$S")" 48/6/6
check_eq "the split files hold those sizes" \
  "$(cat "$T_DIR"/bench/{train,valid,test}.jsonl | wc -l) $(wc -l <"$T_DIR/bench/test.jsonl")" "60 6"
check_eq "stratified: 3 ham and 3 spam in test" \
  "$(jq -r .label "$T_DIR/bench/test.jsonl" | sort | uniq -c | awk '{printf "%s%s ", $1, $2}')" \
  "3ham 3spam "
check "no test example in the training set" python3 -c '
import json,sys; tr={l for l in open(sys.argv[1])}; sys.exit(any(l in tr for l in open(sys.argv[2])))' \
  "$T_DIR/bench/train.jsonl" "$T_DIR/bench/test.jsonl"
check_eq "the random start: preset tiny found from the base's config" \
  "$(jq -r .init_preset "$S")" tiny
check_eq "the random start has the base's tokenizer" \
  "$(cmp -s "$W/base/tokenizer.json" "$T_DIR/bench/init/tokenizer.json" && echo same)" same
check "accuracies and F1 in [0,1]" jq -e '[.results[] | .test_accuracy, .test_f1_macro] |
  length == 6 and all(type == "number" and . >= 0 and . <= 1)' "$S"
check "all three scored the same 6 test examples" jq -e '[.results[] | .test_examples] == [6,6,6]' "$S"
check "both models trained the same steps and tokens: 2 epochs x 48/16 batches" jq -e '
  .results.pretrained.steps == 6 and .results.random_init.steps == 6 and
  .results.pretrained.trained_tokens == .results.random_init.trained_tokens and
  .results.pretrained.trained_tokens > 0' "$S"
check "the two starts differ (first losses)" jq -e \
  '.results.pretrained.first_train_loss != .results.random_init.first_train_loss' "$S"
check "times measured" jq -e '[.results.pretrained, .results.random_init] |
  all(.seconds > 0 and .cpu_seconds > 0)' "$S"
check_eq "the table has the three rows" \
  "$(grep -c '^| \(fine-tuned base (pretrained)\|same architecture, random init (tiny)\|naive Bayes, bag of words\) |' \
  "$T_DIR/out.txt")" 3
for k in pretrained random_init naive_bayes; do
  want=$(jq -r --arg k "$k" '.results[$k] | "\(.test_accuracy*1000|round/1000) \(.test_f1_macro*1000|round/1000)"' "$S")
  got=$(grep -m1 "^| $(case $k in pretrained) echo fine-tuned ;; random_init) echo same ;; *) echo naive ;; esac)" \
    "$T_DIR/out.txt" | awk -F' \\| ' '{print $2+0, $3+0}')
  check_eq "the $k row shows the summary's accuracy and F1" "$got" "$want"
done

"$FT_SRC/bench/pretrained" --base "$W/raw" --init "$W/raw" --max 60 --epochs 1 --seq 48 \
  --work "$T_DIR/bench2" --build "$BUILD" >/dev/null 2>"$T_DIR/err2.txt"
check_eq "the bench ran with --init" "$?" 0
check_eq "same start, same result" \
  "$(jq -c '.results.pretrained | del(.model, .seconds, .cpu_seconds, .tokens_per_second)' "$T_DIR/bench2/summary.json")" \
  "$(jq -c '.results.random_init | del(.model, .seconds, .cpu_seconds, .tokens_per_second)' "$T_DIR/bench2/summary.json")"

"$FT_BIN/finetuned" init-model --arch llama --preset llama-test --tokenizer "$W/tok" \
  --out "$W/other" --seed 1 >/dev/null
"$FT_SRC/bench/pretrained" --base "$W/base" --init "$W/other" --max 60 \
  --work "$T_DIR/bench3" --build "$BUILD" >/dev/null 2>"$T_DIR/err3.txt"
check_eq "an --init of another architecture is refused" "$?" 1
check "saying why" grep -q "not the architecture of --base.*hidden_size" "$T_DIR/err3.txt"
"$FT_SRC/bench/pretrained" --base "$W/base" --preset llama-test --max 60 \
  --work "$T_DIR/bench4" --build "$BUILD" >/dev/null 2>"$T_DIR/err4.txt"
check_eq "a --preset of another architecture is refused" "$?" 1
check "naming the preset" grep -q -- "--preset llama-test is not the architecture" "$T_DIR/err4.txt"
"$FT_SRC/bench/pretrained" --base "$W/base" --epochs 0 --work "$T_DIR/bench5" --build "$BUILD" \
  >/dev/null 2>"$T_DIR/err5.txt"
check_eq "--epochs 0 is refused" "$?" 1
check "naming --epochs" grep -q -- "--epochs must be a positive integer" "$T_DIR/err5.txt"
T_DONE=1
