#!/usr/bin/env bash
# run.sh SECONDS [TARGET...] - builds the libFuzzer targets with clang in
# their own build dir (build-fuzz/, or $TALLY_FUZZ_BUILD) with ASan and
# UBSan, and fuzzes each TARGET for its share of SECONDS (default 60,
# split evenly) starting from a copy of its seed corpus. The corpora
# themselves are never written. Targets (default: both):
#
#   map    tests/fuzz_map.c: tally_map against a reference model
#          (corpus tests/fuzz_corpus/)
#   store  tests/fuzz_store.c: tally_store against arbitrary file contents
#          (corpus tests/fuzz_corpus_store/)
#
# Prints the number of executions per target. Exits non-zero when the
# fuzzer found a crash, a sanitizer report, a leak or a violated check; the
# input that did it is left in build-fuzz/fuzz-artifacts/ (save it as
# tests/fuzz_corpus/regress-NAME or tests/fuzz_corpus_store/regress-NAME
# so the replay tests keep it).
#
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev;
# scripts/setup-deps.sh installs them).
set -euo pipefail

secs=${1:-60}
case $secs in
    '' | *[!0-9]*) echo "usage: $0 SECONDS [map|store]..." >&2; exit 2 ;;
esac
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(map store)
for t in "${targets[@]}"; do
    case $t in
        map | store) ;;
        *) echo "usage: $0 SECONDS [map|store]..." >&2; exit 2 ;;
    esac
done
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
cmake --build "$build" -j"${JOBS:-2}" \
    $(for t in "${targets[@]}"; do printf -- '--target fuzz_%s ' "$t"; done)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz-artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

share=$(( secs / ${#targets[@]} ))
[ "$share" -gt 0 ] || share=1
for t in "${targets[@]}"; do
    case $t in
        map) corpus=$root/tests/fuzz_corpus; max_len=4096 ;;
        store) corpus=$root/tests/fuzz_corpus_store; max_len=16384 ;;
    esac
    mkdir "$work/$t"
    cp "$corpus"/* "$work/$t/"
    echo "fuzz: fuzz_$t for ${share}s from $(ls "$work/$t" | wc -l) seed files"
    rc=0
    "$build/tests/fuzz/fuzz_$t" -max_len="$max_len" -max_total_time="$share" \
        -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$build/fuzz-artifacts/$t-" "$work/$t" \
        >"$work/$t.log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    units=$(ls "$work/$t" | wc -l)
    if [ "$rc" -ne 0 ]; then
        grep -v '^#[0-9]' "$work/$t.log" | tail -n 60 >&2 || true
        echo "fuzz: fuzz_$t FAILED (exit $rc) after ${execs:-?} executions;" \
             "reproducer: $(ls -t "$build"/fuzz-artifacts/ 2>/dev/null |
                            sed -n 1p)" >&2
        exit "$rc"
    fi
    echo "fuzz: fuzz_$t ok: ${execs:-?} executions in ${share}s, corpus" \
         "grew to $units inputs"
done
