#!/usr/bin/env bash
# run.sh - what 'tally push' costs: keys pushed per second and Redis round
# trips per push, for stores of 1,000 and 100,000 keys, against pipelined
# HINCRBY (docs/design.md, "Fleet totals in Redis", records the figures).
# 'make bench-push' runs it; 'make bench' runs it after the matrix and the
# scrape bench; 'make test' runs it with QUICK=1.
#
# Environment:
#   QUICK=1     1,000 and 20,000 keys, one rep: checks that everything runs
#               and every total is exact, not speed
#   BUILD_DIR   CMake build dir (default build; configured Release if it
#               does not exist yet)
#   OUT         results dir (default bench/results/<machine>/ as
#               bench/run.sh names it; quick: $BUILD_DIR/bench-quick/)
#   KEYS        the sizes, comma-separated (default 1000,100000)
#   REPS        pushes per case, median reported (default 5)
#
# Writes $OUT/push.txt (what push-bench prints) and $OUT/push.md (the
# table). Exit status 0 when every check is exact (or the bench is skipped:
# no hiredis, no redis-server), 1 otherwise, 2 on a build problem.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
QUICK=${QUICK:-0}
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
NPROC=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)

log() { echo "push/run.sh: $*" >&2; }

if [ "$QUICK" = 1 ]; then
    KEYS=${KEYS:-1000,20000}
    REPS=${REPS:-1}
    OUT=${OUT:-$BUILD_DIR/bench-quick}
else
    KEYS=${KEYS:-1000,100000}
    REPS=${REPS:-5}
    if [ -z "${OUT:-}" ]; then
        tag=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- |
            tr 'A-Z' 'a-z' |
            sed -e 's/(r)//g; s/(tm)//g; s/@.*//' \
                -e 's/\bcpu\b//g; s/\bprocessor\b//g; s/\b[0-9]*-core\b//g' \
                -e 's/[^a-z0-9]\{1,\}/-/g; s/^-//' |
            cut -c1-40 | sed -e 's/-$//')
        OUT=$ROOT/bench/results/${MACHINE:-${NPROC}core-${tag:-$(uname -m)}}
    fi
fi
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
mkdir -p "$OUT" || exit 2
[ "$QUICK" = 1 ] && echo '*' >"$OUT/.gitignore"
RAW=$OUT/push.txt
MD=$OUT/push.md

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    log "configuring $BUILD_DIR (Release)"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null ||
        { log "cmake configure failed"; exit 2; }
fi
if [ "$QUICK" = 0 ]; then
    bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
    san=$(sed -n 's/^TALLY_SANITIZE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
    case $bt in
        Release | RelWithDebInfo | MinSizeRel) ;;
        *) log "$BUILD_DIR is a '$bt' build: timings need an optimised one"; exit 2 ;;
    esac
    [ -z "$san" ] || { log "$BUILD_DIR is built with TALLY_SANITIZE=$san: no timings from it"; exit 2; }
fi
if ! grep -q '^TALLY_PUSHBENCH_HIREDIS_FOUND:INTERNAL=1' "$BUILD_DIR/CMakeCache.txt"; then
    echo "push-bench: skip: hiredis not found (apt-get install libhiredis-dev)" | tee "$RAW"
    exit 0
fi
cmake --build "$BUILD_DIR" --target push-bench -j "$NPROC" \
    >"$BUILD_DIR/bench-push-build.log" 2>&1 ||
    { cat "$BUILD_DIR/bench-push-build.log" >&2; log "build failed"; exit 2; }

{
    echo "machine: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $NPROC CPUs"
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tally:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src include tools bench/push 2>/dev/null || echo ' (src/, include/, tools/ or bench/push/ modified)')"
    echo "redis:   $(redis-server --version 2>/dev/null | cut -d' ' -f1-3), hiredis $(pkg-config --modversion hiredis 2>/dev/null || echo '?')"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at the start"
    echo "command: KEYS=$KEYS REPS=$REPS bench/push/run.sh ($BUILD_DIR/bench/push/push-bench --keys $KEYS --reps $REPS)"
} | tee "$RAW"

log "push-bench --keys $KEYS --reps $REPS"
"$BUILD_DIR/bench/push/push-bench" --keys "$KEYS" --reps "$REPS" | tee -a "$RAW"
STATUS=${PIPESTATUS[0]}
if [ "$STATUS" = 77 ]; then
    log "skipped (no redis-server)"
    exit 0
fi
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at the end" | tee -a "$RAW"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" - "$RAW" >"$MD" <<'PYEOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
print("# What a push costs (bench/push/run.sh)\n")
print("```")
print("\n".join(l for l in lines
                if re.match(r"(machine|date|tally|redis|load|command):", l)))
print("```\n")
print("| keys | case | keys sent | changed in Redis | calls | round trips "
      "| bytes/key sent | store read ms | push ms | keys sent/s | check |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for l in lines:
    if not l.startswith("push keys="):
        continue
    f = dict(x.split("=", 1) for x in l.split()[1:] if "=" in x)
    ok = l.split()[-1]
    sent = int(f["sent"])
    bpk = "%.1f" % (int(f["bytes"]) / sent) if sent else "-"
    kps = "%.0f" % float(f["keys_per_s"]) if sent else "-"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        f["keys"], f["case"], f["sent"], f["changed"], f["calls"],
        f["round_trips"], bpk, f["read_ms"], f["push_ms"], kps, ok))
PYEOF
log "table in $MD"
[ "$STATUS" = 0 ] && log "all checks exact" || log "some checks FAILED (see $RAW)"
exit "$STATUS"
