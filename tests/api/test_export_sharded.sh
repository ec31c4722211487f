#!/usr/bin/env bash
# A sharded model (model.safetensors.index.json and its shards, no
# model.safetensors, as import-model copies a large Hugging Face model) is
# served, and its /content tar carries the index and every shard (once each,
# in order), byte-identical; the old archive left the weights out.
source "$(dirname "$0")/../lib.sh"
tiny_model sh || { bad "init-model"; exit 1; }
d="$T_DIR/data/models/sh"
# split the one weights file into two shards (the tensors by halves) and an index
python3 - "$d" <<'PY' || bad "shard the weights"
import json, struct, sys
d = sys.argv[1]
with open(d + "/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    data = f.read()
meta = h.pop("__metadata__", None)
names = sorted(h)
parts = [names[: len(names) // 2], names[len(names) // 2 :]]
wm = {}
for i, part in enumerate(parts):
    fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(parts))
    hh, body = {}, b""
    for k in part:
        a, b = h[k]["data_offsets"]
        hh[k] = dict(h[k], data_offsets=[len(body), len(body) + b - a])
        body += data[a:b]
        wm[k] = fn
    if meta: hh["__metadata__"] = meta
    hb = json.dumps(hh).encode()
    hb += b" " * (-len(hb) % 8)
    open(d + "/" + fn, "wb").write(struct.pack("<Q", len(hb)) + hb + body)
json.dump({"metadata": {"total_size": len(data)}, "weight_map": wm},
          open(d + "/model.safetensors.index.json", "w"), indent=2)
PY
tiny_model ref || bad "init-model ref"
rm -f "$d/model.safetensors"
start_daemon --workers 0 || exit 1
JSON=(-H 'Content-Type: application/json')
REQ='{"prompt":[50256, 11, 13],"max_tokens":6,"temperature":0}'
api POST /v1/completions "${JSON[@]}" -d "$(jq -c '.model = "sh"' <<<"$REQ")"
check_eq "the sharded model serves completions" "$CODE" 200
sharded=$(jget '.choices[0].text')
api POST /v1/completions "${JSON[@]}" -d "$(jq -c '.model = "ref"' <<<"$REQ")"
check_eq "  the same answer as the same weights in one file" "$sharded" "$(jget '.choices[0].text')"

curl -s -D "$T_DIR/h.txt" -o "$T_DIR/m.tar" "$URL/v1/models/sh/content"
check "content is 200" grep -q '^HTTP/1.1 200' "$T_DIR/h.txt"
listed=$(tar -tf "$T_DIR/m.tar" | grep -E 'safetensors' | tr '\n' ' ')
check_eq "the tar has the index and both shards, in order" "$listed" \
  "model.safetensors.index.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors "
mkdir -p "$T_DIR/x"
check "tar extracts" tar -xf "$T_DIR/m.tar" -C "$T_DIR/x"
same=1
for f in $(tar -tf "$T_DIR/m.tar"); do
  cmp -s "$T_DIR/x/$f" "$d/$f" || { same=0; echo "differs: $f" >&2; }
done
check_eq "extracted files are byte-identical to the model directory" "$same" 1
cp -r "$T_DIR/x" "$T_DIR/data/models/unpacked"
api POST /v1/completions "${JSON[@]}" -d "$(jq -c '.model = "unpacked"' <<<"$REQ")"
check_eq "the unpacked archive is a whole model: it serves" "$CODE" 200
check_eq "  the same answer" "$(jget '.choices[0].text')" "$sharded"
T_DONE=1
