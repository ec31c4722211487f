#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang and runs each for SECONDS
# (default 60), starting from the seeds in fuzz/corpus/<target> and replaying
# the crashes already fixed (fuzz/regressions/<target>) first. New inputs
# that grow coverage go to build-fuzz/corpus/<target> (kept between runs);
# a crash is written to build-fuzz/crashes/<target>/ and the run fails.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 wire tok
# Targets: spec dsval record safetensors tok chat wire.
# Environment: FT_FUZZ_BUILD (build dir, default build-fuzz), FT_FUZZ_JOBS
# (build parallelism, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec dsval record safetensors tok chat wire)
bld=${FT_FUZZ_BUILD:-$src/build-fuzz}

mkdir -p "$bld"
if [ ! -f "$bld/CMakeCache.txt" ]; then
  CC=clang cmake -S "$src" -B "$bld" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFT_FUZZ=ON \
    >"$bld/configure.log" 2>&1 || { tail -30 "$bld/configure.log" >&2; exit 1; }
fi
cmake --build "$bld" -j"${FT_FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}" \
  >"$bld/build.log" 2>&1 || { grep -B2 -A8 -m3 'error' "$bld/build.log" >&2; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fail=0
for t in "${targets[@]}"; do
  exe=$bld/fuzz/fuzz_$t
  regs=("$src"/fuzz/regressions/$t/*)
  if [ -e "${regs[0]}" ]; then
    if ! "$exe" -runs=1 "${regs[@]}" >"$bld/fuzz/$t.replay.log" 2>&1; then
      echo "FAIL $t: a regression input crashes again; see $bld/fuzz/$t.replay.log" >&2
      fail=1
      continue
    fi
  fi
  mkdir -p "$bld/corpus/$t" "$bld/crashes/$t"
  if "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$bld/crashes/$t/" -print_final_stats=1 \
       "$bld/corpus/$t" "$src/fuzz/corpus/$t" >"$bld/fuzz/$t.log" 2>&1; then
    echo "ok   $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$bld/fuzz/$t.log" |
      grep -o '[0-9]*$') runs in ${secs}s, $(grep -c . <(ls "$bld/corpus/$t")) corpus inputs"
  else
    echo "FAIL $t: see $bld/fuzz/$t.log; crash input in $bld/crashes/$t/" >&2
    grep -m3 -E 'ERROR|SUMMARY|runtime error' "$bld/fuzz/$t.log" >&2 || true
    fail=1
  fi
done
exit $fail
