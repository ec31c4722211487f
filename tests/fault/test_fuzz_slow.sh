#!/usr/bin/env bash
# The libFuzzer targets (fuzz/, scripts/fuzz.sh) for a short run each: every
# input in fuzz/regressions/<target> (crashes found before, now fixed) must
# pass, then each target fuzzes for FT_FUZZ_SECONDS (default 15) from its
# seeds. Builds with clang in build-fuzz next to the source (reused when up to
# date; the first build takes about a minute).
set -uo pipefail
: "${FT_SRC:=$PWD}"
secs=${FT_FUZZ_SECONDS:-15}
if ! command -v clang >/dev/null; then
  echo "FAIL clang is not installed (scripts/deps.sh --test installs it)" >&2
  exit 1
fi
out=$(bash "$FT_SRC/scripts/fuzz.sh" "$secs" 2>&1)
rc=$?
echo "$out"
n_ok=$(grep -c '^ok ' <<<"$out")
# every target ran (7) and none failed
if [ $rc != 0 ] || [ "$n_ok" != 7 ]; then
  echo "FAIL fuzzing: $n_ok of 7 targets ok (rc $rc)" >&2
  exit 1
fi
echo "7 passed, 0 failed"
