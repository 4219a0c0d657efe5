#!/usr/bin/env bash
# run.sh SECONDS - builds the libFuzzer target of tests/fuzz_map.c with clang
# in its own build dir (build-fuzz/, or $TALLY_FUZZ_BUILD) with ASan and
# UBSan, and fuzzes tally_map for SECONDS (default 60) starting from a copy
# of the seed corpus. tests/fuzz_corpus/ itself is never written.
#
# Prints the number of executions. Exits non-zero when the fuzzer found a
# crash, a sanitizer report, a leak or a model mismatch; the input that did
# it is left in build-fuzz/fuzz-artifacts/ (save it as
# tests/fuzz_corpus/regress-NAME so the replay test keeps it).
#
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev;
# scripts/setup-deps.sh installs them).
set -euo pipefail

secs=${1:-60}
case $secs in
    '' | *[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TALLY_FUZZ_BUILD:-$root/build-fuzz}
cc=${FUZZ_CC:-clang}
cxx=${FUZZ_CXX:-clang++}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz: $cc not found; run scripts/setup-deps.sh" >&2
    exit 1
fi

# -fsanitize=fuzzer-no-link: coverage feedback from the library too, not
# only from the fuzz target.
cmake --log-level=WARNING -S "$root" -B "$build" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" \
    -DTALLY_SANITIZE=address -DTALLY_WERROR=OFF \
    -DTALLY_BUILD_TOOLS=OFF -DTALLY_BUILD_EXAMPLES=OFF -DTALLY_BUILD_BENCH=OFF
if ! grep -q '^TALLY_HAVE_LIBFUZZER:INTERNAL=1$' "$build/CMakeCache.txt"; then
    echo "fuzz: $cc cannot link -fsanitize=fuzzer (libFuzzer's runtime is" \
         "missing: Debian package libclang-rt-14-dev; run" \
         "scripts/setup-deps.sh)" >&2
    exit 1
fi
cmake --build "$build" --target fuzz_map -j"${JOBS:-2}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp "$root"/tests/fuzz_corpus/* "$work/corpus/"
mkdir -p "$build/fuzz-artifacts"

echo "fuzz: fuzz_map for ${secs}s from $(ls "$work/corpus" | wc -l) seed files"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
"$build/tests/fuzz/fuzz_map" -max_len=4096 -max_total_time="$secs" \
    -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/" "$work/corpus" \
    >"$work/log" 2>&1 || rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
units=$(ls "$work/corpus" | wc -l)
if [ "$rc" -ne 0 ]; then
    grep -v '^#[0-9]' "$work/log" | tail -n 60 >&2 || true
    echo "fuzz: FAILED (exit $rc) after ${execs:-?} executions; reproducer:" \
         "$(ls -t "$build"/fuzz-artifacts/ 2>/dev/null | sed -n 1p)" >&2
    exit "$rc"
fi
echo "fuzz: ok: ${execs:-?} executions in ${secs}s, corpus grew to $units inputs"
