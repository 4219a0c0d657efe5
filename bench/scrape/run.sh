#!/usr/bin/env bash
# run.sh - what a Prometheus scrape of tally costs, against Python
# prometheus_client's multiprocess mode (docs/exposition.md records the
# figures). 'make bench-scrape' runs it; 'make bench' runs it after the
# matrix; 'make test' runs it with QUICK=1.
#
#   1. render: scrape-bench render, map and store, 1,000 / 100,000 /
#      1,000,000 keys, text 0.0.4 and OpenMetrics (the writer alone)
#   2. interfere: two threads adding by name while a scrape renders the
#      whole map or store every second, against the same without it
#   3. http: a store of N keys filled by two writer processes, served by
#      'tally serve'; curl GETs /metrics (identity and gzip), timed end
#      to end; then Python: two processes count the same N keys with
#      prometheus_client in multiprocess mode, and its collector renders
#      them (MultiProcessCollector + generate_latest, in-process: no HTTP)
#
# Environment:
#   QUICK=1     1,000 and 20,000 keys, one rep, short phases: checks that
#               everything runs and every count is exact, not speed
#   BUILD_DIR   CMake build dir (default build; configured Release if it
#               does not exist yet)
#   OUT         results dir (default bench/results/<machine>/ as
#               bench/run.sh names it; quick: $BUILD_DIR/bench-quick/)
#   KEYS        the sizes, space-separated (default "1000 100000 1000000")
#   REPS        renders / GETs per size, median reported (default 5)
#
# Writes $OUT/scrape.txt (every line the programs print) and
# $OUT/scrape.md (the tables). Exit status 0 when every check is exact,
# 1 otherwise, 2 on a build or usage problem. Python's rows are skipped
# with a message when /usr/bin/python3 has no prometheus_client.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
QUICK=${QUICK:-0}
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
NPROC=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
PY=/usr/bin/python3

log() { echo "scrape/run.sh: $*" >&2; }

if [ "$QUICK" = 1 ]; then
    KEYS=${KEYS:-1000 20000}
    REPS=${REPS:-1}
    PHASE_S=0.2
    ROUNDS=1
    INTERFERE_KEYS=20000
    OUT=${OUT:-$BUILD_DIR/bench-quick}
else
    KEYS=${KEYS:-1000 100000 1000000}
    REPS=${REPS:-5}
    PHASE_S=3
    ROUNDS=5
    INTERFERE_KEYS="100000 1000000"
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
RAW=$OUT/scrape.txt
MD=$OUT/scrape.md
: >"$RAW"

# ---- build ----------------------------------------------------------------

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
cmake --build "$BUILD_DIR" --target scrape-bench tally -j "$NPROC" \
    >"$BUILD_DIR/bench-scrape-build.log" 2>&1 ||
    { cat "$BUILD_DIR/bench-scrape-build.log" >&2; log "build failed"; exit 2; }
SB=$BUILD_DIR/bench/scrape/scrape-bench
TALLY=$BUILD_DIR/tools/tally

TMP=$(mktemp -d)
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

STATUS=0
run() { # run CMD...: its lines to stdout and to scrape.txt; a failure counts
    "$@" 2>&1 | tee -a "$RAW"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { STATUS=1; log "FAILED ($rc): $*"; }
}

{
    echo "machine: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $NPROC CPUs"
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tally:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src include tools 2>/dev/null || echo ' (src/, include/ or tools/ modified)')"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at the start"
    echo "python:  $($PY --version 2>&1), prometheus_client $($PY -c 'import prometheus_client, importlib.metadata as m; print(m.version("prometheus_client"))' 2>/dev/null || echo none)"
    echo "curl:    $(curl --version 2>/dev/null | sed -n 1p | cut -d' ' -f1-2)"
} | tee -a "$RAW"

# ---- 1. render ------------------------------------------------------------

keys_csv=$(echo $KEYS | tr ' ' ',')
log "render: $keys_csv keys, $REPS reps"
run "$SB" render --source map --keys "$keys_csv" --reps "$REPS"
run "$SB" render --source store --keys "$keys_csv" --reps "$REPS"

# ---- 2. interfere ---------------------------------------------------------

for n in $INTERFERE_KEYS; do
    for src in map store; do
        log "interfere: $src, $n keys"
        run "$SB" interfere --source "$src" --keys "$n" --seconds "$PHASE_S" \
            --rounds "$ROUNDS" --interval 1000
    done
done

# ---- 3. http: tally serve against Python's multiprocess collector ----------

serve_store() { # serve_store FILE: starts tally serve on a free port
    "$TALLY" serve "$1" --listen 127.0.0.1:0 >"$TMP/serve.out" 2>"$TMP/serve.err" &
    SERVE_PID=$!
    local i
    for i in $(seq 100); do
        URL=$(sed -n 's/^listening on //p' "$TMP/serve.out")
        [ -n "$URL" ] && return 0
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$TMP/serve.err" >&2
    return 1
}

# get N LABEL CURL-ARGS...: REPS GETs; prints the median time, size, and
# checks the body (every key once, each 2) from the last one.
get() {
    local n=$1 label=$2 r times=() t size
    shift 2
    for ((r = 0; r < REPS; r++)); do
        read -r t size < <(curl -sS -o "$TMP/body" -w '%{time_total} %{size_download}\n' "$@" "$URL")
        times+=("$t")
    done
    t=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    local samples sum
    if [ "$label" = gzip ]; then gzip -dc "$TMP/body" >"$TMP/plain"; else cp "$TMP/body" "$TMP/plain"; fi
    samples=$(grep -c '^tally_total{' "$TMP/plain")
    sum=$(awk '/^tally_total\{/{s+=$NF} END{printf "%d", s}' "$TMP/plain")
    local ok=ok
    [ "$samples" = "$n" ] && [ "$sum" = $((2 * n)) ] || { ok=WRONG; STATUS=1; }
    printf 'tally_serve keys=%s %s median_ms=%.1f bytes=%s samples=%s %s\n' \
        "$n" "$label" "$(awk -v t="$t" 'BEGIN{print t*1000}')" "$size" "$samples" "$ok" | tee -a "$RAW"
}

HAVE_SERVE=1
if "$TALLY" serve "$TMP/probe" --listen 127.0.0.1:0 2>&1 </dev/null |
        grep -q 'built without'; then
    HAVE_SERVE=0
    echo "tally_serve: skip: tally was built without libmicrohttpd" | tee -a "$RAW"
fi
HAVE_PY=1
if ! "$PY" -c 'import prometheus_client' 2>/dev/null; then
    HAVE_PY=0
    echo "python_multiproc: skip: $PY has no prometheus_client (apt-get install python3-prometheus-client)" | tee -a "$RAW"
fi

for n in $KEYS; do
    store=$TMP/store-$n
    if [ "$HAVE_SERVE" = 1 ]; then
        # two writer processes at once, as on the Python side: each key 2
        "$SB" fill "$store" --keys "$n" & p1=$!
        "$SB" fill "$store" --keys "$n" & p2=$!
        wait "$p1" || STATUS=1
        wait "$p2" || STATUS=1
        if serve_store "$store"; then
            log "http: tally serve, $n keys"
            get "$n" identity
            get "$n" openmetrics -H 'Accept: application/openmetrics-text; version=1.0.0'
            get "$n" gzip -H 'Accept-Encoding: gzip'
            kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null; SERVE_PID=
        else
            log "tally serve did not start"; STATUS=1
        fi
        rm -f "$store"
    fi
    if [ "$HAVE_PY" = 1 ]; then
        log "http: python multiprocess, $n keys"
        mkdir -p "$TMP/py-$n"
        "$PY" "$ROOT/bench/scrape/py_multiproc.py" fill "$TMP/py-$n" "$n" 2 || STATUS=1
        run "$PY" "$ROOT/bench/scrape/py_multiproc.py" scrape "$TMP/py-$n" "$REPS" "$n" 2
        rm -rf "$TMP/py-$n"
    fi
done
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at the end" | tee -a "$RAW"

# ---- tables -----------------------------------------------------------------

PYR=$PY
[ -x "$PYR" ] || PYR=python3
"$PYR" - "$RAW" >"$MD" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
print("# Scrape cost (bench/scrape/run.sh)\n")
print("```")
print("\n".join(l for l in lines if re.match(r"(machine|date|tally|load|python|curl):", l)))
print("```\n")
print("## Rendering (the writer alone, into a counting sink)\n")
print("| source | format | keys | median ms | ns/key | bytes | check |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
for l in lines:
    f = l.split()
    if len(f) == 7 and f[0] in ("map", "store") and f[1] in ("text", "openmetrics"):
        print("| " + " | ".join(f) + " |")
print("\n## A scrape every second against two adding threads\n")
for l in lines:
    if l.startswith("interfere:") or l.startswith("median:"):
        print("- " + l)
print("\n## tally serve (HTTP GET, curl) against prometheus_client multiprocess (collector, in-process)\n")
print("| who | keys | how | median ms | bytes | check |")
print("| --- | ---: | --- | ---: | ---: | --- |")
for l in lines:
    m = re.match(r"tally_serve keys=(\d+) (\S+) median_ms=(\S+) bytes=(\d+) samples=\d+ (\S+)", l)
    if m:
        print("| tally serve | %s | %s | %s | %s | %s |" % m.groups())
    m = re.match(r"python_multiproc keys=(\d+) procs=\d+ median_ms=(\S+) min_ms=\S+ bytes=(\d+) samples=\d+ (\S+)", l)
    if m:
        k, t, b, ok = m.groups()
        print("| python multiprocess | %s | generate_latest | %s | %s | %s |" % (k, t, b, ok))
skips = sorted({l for l in lines if ": skip:" in l})
if skips:
    print("\n## Skipped\n")
    for l in skips:
        print("- " + l)
EOF
log "tables in $MD"
[ "$STATUS" = 0 ] && log "all checks exact" || log "some checks FAILED (see $RAW)"
exit $STATUS
