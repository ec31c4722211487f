# Model export through a real daemon: a LoRA job fine-tunes a tiny GPT-2;
# its /content tar lists the model's files (adapter/ included) and extracts
# to files byte-identical to the model directory; its /gguf download (F16,
# F32, and the LoRA adapter) parses with tests/tools/ggufcli and has the
# architecture, metadata and tensors llama.cpp expects; the export is cached
# in the model directory and equals `finetuned export-gguf`'s output; bad
# parameters and unknown models are refused.
source "$(dirname "$0")/../lib.sh"
tiny_model tiny || { bad "init-model"; exit 1; }
start_daemon --workers 1 || exit 1
G="$FT_BIN/ggufcli"

fid=$(upload "$FT_SRC/examples/capitals.jsonl")
body=$(jq -nc --arg f "$fid" '{model:"tiny", training_file:$f, suffix:"exp", seed:3,
  adapter:{type:"lora", r:4, alpha:8},
  method:{type:"supervised", supervised:{hyperparameters:{n_epochs:1, batch_size:4,
    learning_rate:0.003, max_seq_len:64}}}}')
api POST /v1/fine_tuning/jobs -H 'Content-Type: application/json' -d "$body"
check_eq "create LoRA job" "$CODE" 200
job=$(jget .id)
check_eq "job succeeded" "$(wait_job "$job" succeeded 180)" succeeded
model=$(curl -s "$URL/v1/fine_tuning/jobs/$job" | jq -r .fine_tuned_model)
mdir="$T_DIR/data/models/$model"
check "adapter written" test -s "$mdir/adapter/adapter_model.safetensors"

# --- /content: a ustar archive of the model directory
curl -s -D "$T_DIR/h.txt" -o "$T_DIR/m.tar" "$URL/v1/models/$model/content"
check "content is 200" grep -q '^HTTP/1.1 200' "$T_DIR/h.txt"
check "content type is a tar" grep -qi '^Content-Type: application/x-tar' "$T_DIR/h.txt"
len=$(grep -i '^Content-Length:' "$T_DIR/h.txt" | tr -d '\r' | awk '{print $2}')
check_eq "Content-Length is the archive size" "$len" "$(stat -c %s "$T_DIR/m.tar")"
check_eq "archive is whole 512-byte blocks" "$(($(stat -c %s "$T_DIR/m.tar") % 512))" 0
want=""
for f in config.json generation_config.json model.safetensors tokenizer.json vocab.json merges.txt \
  tokenizer_config.json special_tokens_map.json added_tokens.json tokenizer.model; do
  [ -f "$mdir/$f" ] && want+="$f"$'\n'
done
want+="adapter/"$'\n'"adapter/adapter_config.json"$'\n'"adapter/adapter_model.safetensors"$'\n'
listed=$(tar -tf "$T_DIR/m.tar")
check_eq "tar lists the model files in order" "$listed" "${want%$'\n'}"
check "tar says ustar" python3 -c "
import tarfile, sys
t = tarfile.open(sys.argv[1])
assert all(m.isfile() or m.isdir() for m in t.getmembers())
assert t.getmember('model.safetensors').size > 0
" "$T_DIR/m.tar"
mkdir -p "$T_DIR/x"
check "tar extracts" tar -xf "$T_DIR/m.tar" -C "$T_DIR/x"
same=1
while read -r f; do
  [ -d "$T_DIR/x/$f" ] && continue
  cmp -s "$T_DIR/x/$f" "$mdir/$f" || { same=0; echo "differs: $f" >&2; }
done <<<"$listed"
check_eq "extracted files are byte-identical to the model directory" "$same" 1
check "python's tarfile reads the same bytes" python3 -c "
import tarfile, sys
t = tarfile.open(sys.argv[1])
assert t.extractfile('adapter/adapter_config.json').read() == open(sys.argv[2] + '/adapter/adapter_config.json', 'rb').read()
" "$T_DIR/m.tar" "$mdir"
api GET "/v1/models/nope/content"
check_eq "content of an unknown model is 404" "$CODE" 404

# --- /gguf: the merged model, F16 by default
curl -s -D "$T_DIR/g.txt" -o "$T_DIR/m16.gguf" "$URL/v1/models/$model/gguf"
check "gguf is 200" grep -q '^HTTP/1.1 200' "$T_DIR/g.txt"
check "gguf parses" "$G" "$T_DIR/m16.gguf"
"$G" "$T_DIR/m16.gguf" >"$T_DIR/m16.json"
L=$(jq -r .n_layer "$mdir/config.json")
q() { jq -r "$1" "$T_DIR/m16.json"; }
check_eq "architecture" "$(q '.metadata["general.architecture"]')" gpt2
check_eq "general.name is the model id" "$(q '.metadata["general.name"]')" "$model"
check_eq "file type F16" "$(q '.metadata["general.file_type"]')" 1
check_eq "block_count" "$(q '.metadata["gpt2.block_count"]')" "$L"
check_eq "embedding_length" "$(q '.metadata["gpt2.embedding_length"]')" "$(jq -r .n_embd "$mdir/config.json")"
check_eq "tokens = vocab_size" "$(q '.metadata["tokenizer.ggml.tokens"].n')" "$(jq -r .vocab_size "$mdir/config.json")"
check_eq "tokenizer model" "$(q '.metadata["tokenizer.ggml.model"]')" gpt2
check_eq "tensor count (GPT-2: 5 + 12 per block)" "$(q '.tensors | length')" $((5 + 12 * L))
check_eq "token_embd F16" "$(q '.tensors[] | select(.name=="token_embd.weight") | .type')" F16
check_eq "norms and biases F32" "$(q '[.tensors[] | select(.name|test("norm|bias")) | .type] | unique | join(",")')" F32
check_eq "attn_qkv is [C, 3C]" "$(q '.tensors[] | select(.name=="blk.0.attn_qkv.weight") | .ne | join(",")')" \
  "$(jq -r '"\(.n_embd),\(3*.n_embd)"' "$mdir/config.json")"
check "export cached in the model directory" test -s "$mdir/model-f16.gguf"
ino=$(stat -c %i "$mdir/model-f16.gguf")
curl -s -o "$T_DIR/m16b.gguf" "$URL/v1/models/$model/gguf?type=f16"
check "second download is the same bytes" cmp -s "$T_DIR/m16.gguf" "$T_DIR/m16b.gguf"
check_eq "second download served from the cache" "$(stat -c %i "$mdir/model-f16.gguf")" "$ino"

# --- F32 equals the CLI's export
curl -s -o "$T_DIR/m32.gguf" "$URL/v1/models/$model/gguf?type=f32"
"$G" "$T_DIR/m32.gguf" >"$T_DIR/m32.json"
check_eq "f32: token_embd F32" "$(jq -r '.tensors[] | select(.name=="token_embd.weight") | .type' "$T_DIR/m32.json")" F32
"$FT_BIN/finetuned" export-gguf --model "$mdir" --out "$T_DIR/cli32.gguf" --type f32 >/dev/null
check "API f32 export equals the CLI's byte for byte" cmp -s "$T_DIR/m32.gguf" "$T_DIR/cli32.gguf"

# --- the LoRA adapter
curl -s -o "$T_DIR/a.gguf" -w '%{http_code}' "$URL/v1/models/$model/gguf?adapter=true&type=f32" >"$T_DIR/code"
check_eq "adapter gguf is 200" "$(cat "$T_DIR/code")" 200
"$G" "$T_DIR/a.gguf" >"$T_DIR/a.json"
aq() { jq -r "$1" "$T_DIR/a.json"; }
check_eq "adapter general.type" "$(aq '.metadata["general.type"]')" adapter
check_eq "adapter.type" "$(aq '.metadata["adapter.type"]')" lora
check "adapter.lora.alpha is adapter_config.json's lora_alpha" jq -e \
  --argjson a "$(jq .lora_alpha "$mdir/adapter/adapter_config.json")" '.metadata["adapter.lora.alpha"] == $a and $a == 8' "$T_DIR/a.json"
check "adapter tensors are blk.N.<module>.weight.lora_a/b" jq -e \
  '(.tensors | length) > 0 and all(.tensors[]; .name | test("^blk\\.[0-9]+\\.(attn_qkv|attn_output|ffn_up|ffn_down)\\.weight\\.lora_[ab]$"))' "$T_DIR/a.json"
check_eq "as many lora_a as lora_b" "$(aq '[.tensors[] | select(.name|endswith("lora_a"))] | length')" \
  "$(aq '[.tensors[] | select(.name|endswith("lora_b"))] | length')"
check_eq "lora_a is [in, r]" "$(aq '.tensors[] | select(.name=="blk.0.attn_qkv.weight.lora_a") | .ne[1]')" 4
check_eq "lora_b is [r, out]" "$(aq '.tensors[] | select(.name=="blk.0.attn_qkv.weight.lora_b") | .ne[0]')" 4

# --- refusals
api GET "/v1/models/$model/gguf?type=q4_0"
check_eq "bad type is 400" "$CODE" 400
check_eq "error names type" "$(jget .error.param)" type
api GET "/v1/models/$model/gguf?adapter=yes"
check_eq "bad adapter flag is 400" "$CODE" 400
api GET "/v1/models/tiny/gguf?adapter=true"
check_eq "adapter of a base model is 404" "$CODE" 404
api GET "/v1/models/nope/gguf"
check_eq "gguf of an unknown model is 404" "$CODE" 404
check_eq "a base model exports too" \
  "$(curl -s -o "$T_DIR/base.gguf" -w '%{http_code}' "$URL/v1/models/tiny/gguf?type=f32")" 200
check "its export parses" "$G" "$T_DIR/base.gguf"
T_DONE=1
