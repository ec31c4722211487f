#!/usr/bin/env bash
# Runs every test: installs what is missing (Debian packages, the npm
# tokenizer oracles), builds, and runs ctest. Extra args go to ctest, e.g.
#   scripts/test.sh -L engine        one label (unit, engine, parity, tok, api, fault)
#   scripts/test.sh -LE slow         skip the slow ones
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
scripts/build.sh
ctest --test-dir build --output-on-failure -j2 "$@"
