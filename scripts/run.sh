#!/usr/bin/env bash
# The main job: installs what is missing, builds, registers the default base
# model the first time (base-8m: our own 7.9M-parameter Llama, pretrained on
# public-domain and permissively licensed English, shipped in models/base-8m;
# models/base-8m/README.md says how it was made), and runs the daemon with one
# local worker on ./var and 127.0.0.1:8080.
#   scripts/run.sh [extra `finetuned serve` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
DATA_DIR=${FT_DATA_DIR:-var}
mkdir -p "$DATA_DIR/models"
if [ ! -f "$DATA_DIR/models/base-8m/config.json" ]; then
  build/bin/finetuned import-model --data-dir "$DATA_DIR" --name base-8m models/base-8m
fi
exec build/bin/finetuned serve --data-dir "$DATA_DIR" --listen "${FT_LISTEN:-127.0.0.1:8080}" --workers 1 "$@"
