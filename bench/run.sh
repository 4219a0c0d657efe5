#!/usr/bin/env bash
# run.sh - tally's benchmark suite: builds the C driver, the Go and the
# Java programs, runs every (implementation, workload, threads) cell the
# same way, and writes raw.csv, results.csv, results.md and SVG charts.
# bench/README.md describes the protocol; this script only orchestrates.
#
#   bench/run.sh                  full matrix, results in bench/results/<tag>/
#   QUICK=1 bench/run.sh          ~0.05 s cells, 1 rep, threads 1 and 2,
#                                 zipf and memory with 64K keys; checks that
#                                 every expected row is there and ok (not
#                                 speed); results in $BUILD_DIR/bench-quick/
#
# Environment:
#   QUICK=1            quick mode (above)
#   SECONDS_PER_CELL   seconds per rep (default 1; quick 0.05)
#   REPS               reps per cell, median reported (default 3; quick 1)
#   THREADS            thread counts, e.g. "1 2 4" (default 1 2 4 .. nproc,
#                      then 2*nproc; quick "1 2")
#   BUILD_DIR          CMake build dir (default build; configured Release
#                      if it does not exist yet)
#   OUT                results dir (default above)
#   MACHINE            the results folder's tag (default <nproc>core-<cpu>)
#   IMPLS, WORKLOADS   only these (space-separated names), for partial runs
#   EXTRAS             the programs run after the matrix (default all:
#                      "remove map_costs flood store export"; "" for none)
#   JAVA_OPTS          extra JVM options (default none: the JVM's defaults)
#
# Exit status: 0 when every cell ran and every check passed; 1 otherwise
# (the tables are still written); 2 on a build or usage problem.
set -uo pipefail

LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

QUICK=${QUICK:-0}
[ "$QUICK" = 0 ] || [ "$QUICK" = 1 ] || { echo "run.sh: QUICK is 0 or 1" >&2; exit 2; }
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
NPROC=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)

cpu_model() {
    local m
    m=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)
    [ -n "$m" ] || m=$(uname -m)
    echo "$m" | sed 's/^ *//'
}

# A stable folder name: "<nproc>core-<cpu model, lowercased, without the
# (R)/(TM)/CPU/@GHz noise>", e.g. 2core-amd-epyc.
machine_tag() {
    cpu_model | tr 'A-Z' 'a-z' |
        sed -e 's/(r)//g; s/(tm)//g; s/@.*//' \
            -e 's/\bcpu\b//g; s/\bprocessor\b//g; s/\b[0-9]*-core\b//g' \
            -e 's/[^a-z0-9]\{1,\}/-/g; s/^-//' |
        cut -c1-40 | sed -e 's/-$//' -e "s/^/${NPROC}core-/"
}
MACHINE=${MACHINE:-$(machine_tag)}

if [ "$QUICK" = 1 ]; then
    SECONDS_PER_CELL=${SECONDS_PER_CELL:-0.05}
    REPS=${REPS:-1}
    THREADS=${THREADS:-1 2}
    ZIPF_KEYS=65536
    MEMORY_KEYS=65536
    OUT=${OUT:-$BUILD_DIR/bench-quick}
else
    SECONDS_PER_CELL=${SECONDS_PER_CELL:-1}
    REPS=${REPS:-3}
    if [ -z "${THREADS:-}" ]; then
        THREADS=""
        t=1
        while [ "$t" -lt "$NPROC" ]; do THREADS="$THREADS $t"; t=$((t * 2)); done
        THREADS="$THREADS $NPROC $((NPROC * 2))"
    fi
    ZIPF_KEYS=1048576
    MEMORY_KEYS=1000000
    OUT=${OUT:-$ROOT/bench/results/$MACHINE}
fi
THREADS=$(echo "$THREADS" | tr ',' ' ')
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
WANT_IMPLS=${IMPLS:-}
WANT_WORKLOADS=${WORKLOADS:-}

log() { echo "run.sh: $*" >&2; }

# ---- build ----------------------------------------------------------------

BIN=$BUILD_DIR/bench
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    log "configuring $BUILD_DIR (Release)"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null ||
        { log "cmake configure failed"; exit 2; }
fi
cache_var() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD_DIR/CMakeCache.txt"; }
BUILD_TYPE=$(cache_var CMAKE_BUILD_TYPE)
SANITIZE=$(cache_var TALLY_SANITIZE)
if [ "$QUICK" = 0 ]; then
    case $BUILD_TYPE in
        Release | RelWithDebInfo | MinSizeRel) ;;
        *) log "$BUILD_DIR is a '$BUILD_TYPE' build: timings need an optimised one"
           log "(BUILD_DIR=build-release bench/run.sh configures one)"; exit 2 ;;
    esac
    if [ -n "$SANITIZE" ]; then
        log "$BUILD_DIR is built with TALLY_SANITIZE=$SANITIZE: no timings from it"
        exit 2
    fi
fi
cmake --build "$BUILD_DIR" --target tally-bench remove_latency map_costs store-bench \
    -j "$NPROC" >"$BUILD_DIR/bench-build.log" 2>&1 ||
    { cat "$BUILD_DIR/bench-build.log" >&2; log "building the benchmarks failed"; exit 2; }
DRIVER=$BIN/tally-bench
# flood links tally_test, which exists only with the tests (TALLY_BUILD_TESTS)
HAVE_FLOOD=0
if [ "$(cache_var TALLY_BUILD_TESTS)" != OFF ] &&
    cmake --build "$BUILD_DIR" --target flood -j "$NPROC" >>"$BUILD_DIR/bench-build.log" 2>&1; then
    HAVE_FLOOD=1
fi
# the tally command, for 'tally export' / 'tally ls' timings when it has them
cmake --build "$BUILD_DIR" --target tally -j "$NPROC" >>"$BUILD_DIR/bench-build.log" 2>&1 || true

mkdir -p "$OUT" || exit 2
# A previous run's files must not pass for this one's.
rm -f "$OUT"/*.svg "$OUT"/results.csv "$OUT"/results.md "$OUT"/stderr.log
SKIPPED=$OUT/skipped.txt
: >"$SKIPPED"
if [ "$QUICK" = 1 ]; then
    # quick results are never committed, wherever they are written
    echo '*' >"$OUT/.gitignore"
fi

HAVE_GO=0
if command -v go >/dev/null 2>&1; then
    mkdir -p "$BIN/gocache" "$BIN/gopath"
    if (cd "$ROOT/bench/go" &&
        GOCACHE=$BIN/gocache GOPATH=$BIN/gopath HOME=${HOME:-$BIN} \
        GOPROXY=off GOTOOLCHAIN=local GOFLAGS= \
        go build -o "$BIN/go-bench" .) >"$BIN/go-build.log" 2>&1; then
        HAVE_GO=1
    else
        cat "$BIN/go-build.log" >&2
        log "building bench/go failed"
        exit 2
    fi
else
    echo "go_*: skip: go not found (apt-get install golang-go, or scripts/bench-deps.sh)" >>"$SKIPPED"
fi

HAVE_JAVA=0
if command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
    mkdir -p "$BIN/java"
    if javac -d "$BIN/java" "$ROOT/bench/java/TallyBench.java" >"$BIN/java-build.log" 2>&1; then
        HAVE_JAVA=1
    else
        cat "$BIN/java-build.log" >&2
        log "compiling bench/java failed"
        exit 2
    fi
else
    echo "java_*: skip: javac not found (apt-get install default-jdk-headless, or scripts/bench-deps.sh)" >>"$SKIPPED"
fi

ZIPF_FILE=$BIN/zipf-$ZIPF_KEYS.bin
if [ ! -s "$ZIPF_FILE" ] || [ "$DRIVER" -nt "$ZIPF_FILE" ]; then
    "$DRIVER" --gen-zipf "$ZIPF_FILE" --keys "$ZIPF_KEYS" || exit 2
fi

wanted() { # list item: an empty list wants everything
    [ -z "$1" ] && return 0
    case " $1 " in *" $2 "*) return 0 ;; esac
    return 1
}

# ---- same workload in every language ---------------------------------------
# Each program prints the op sequence its threads follow (--stream); Go's
# and Java's must be byte for byte the C driver's, or the comparison would
# not be like for like.
maxt=1
for t in $THREADS; do [ "$t" -gt "$maxt" ] && maxt=$t; done
for wl in counter hot uniform1k zipf1m insert mixed iterate memory; do
    wanted "$WANT_WORKLOADS" "$wl" || continue
    sargs=(--stream 2000 --workload "$wl" --threads "$maxt")
    [ "$wl" = zipf1m ] && sargs+=(--keys "$ZIPF_KEYS" --zipf-file "$ZIPF_FILE")
    want=$("$DRIVER" "${sargs[@]}" | cksum) || exit 2
    others=()
    [ "$HAVE_GO" = 1 ] && others+=("go:$BIN/go-bench")
    [ "$HAVE_JAVA" = 1 ] && others+=("java:java -cp $BIN/java TallyBench")
    for o in "${others[@]}"; do
        # shellcheck disable=SC2086 # the command is a word list
        got=$(${o#*:} "${sargs[@]}" | cksum)
        if [ "$got" != "$want" ]; then
            log "${o%%:*} does not run the same $wl ops as the C driver (--stream differs)"
            exit 2
        fi
    done
done
log "op streams: Go and Java follow the C driver's exactly"

# ---- the matrix -------------------------------------------------------------

MAP_WORKLOADS=hot,uniform1k,zipf1m,insert,mixed,iterate,memory
# name <TAB> workloads <TAB> runner (c, go, java) -- C ones from the driver
IMPL_TABLE=$(
    "$DRIVER" --list | while IFS=$'\t' read -r name wls status; do
        if [ "$status" = ok ]; then
            printf '%s\t%s\tc\n' "$name" "$wls"
        else
            echo "$name: $status" >>"$SKIPPED"
        fi
    done
    if [ "$HAVE_GO" = 1 ]; then
        printf 'go_atomic\tcounter\tgo\n'
        printf 'go_safecounter\t%s\tgo\n' "$MAP_WORKLOADS"
        printf 'go_syncmap\t%s\tgo\n' "$MAP_WORKLOADS"
    fi
    if [ "$HAVE_JAVA" = 1 ]; then
        printf 'java_atomiclong\tcounter\tjava\n'
        printf 'java_longadder\tcounter\tjava\n'
        printf 'java_chm_longadder\t%s\tjava\n' "$MAP_WORKLOADS"
    fi
)

# One line per process to start: impl workload threads runner
CELLS=$(
    for wl in counter hot uniform1k zipf1m insert mixed iterate memory; do
        wanted "$WANT_WORKLOADS" "$wl" || continue
        echo "$IMPL_TABLE" | while IFS=$'\t' read -r name wls runner; do
            [ -n "$name" ] || continue
            wanted "$WANT_IMPLS" "$name" || continue
            case ",$wls," in *",$wl,"*) ;; *) continue ;; esac
            if [ "$wl" = memory ]; then
                echo "$name $wl 1 $runner"
            else
                for t in $THREADS; do echo "$name $wl $t $runner"; done
            fi
        done
    done
)
NCELLS=$(echo "$CELLS" | grep -c . || true)

RAW=$OUT/raw.csv
EXPECT=$OUT/.expected
ERRLOG=$OUT/stderr.log
"$DRIVER" --header >"$RAW"
: >"$EXPECT"
: >"$ERRLOG"

machine_info() {
    echo "tag:        $MACHINE"
    echo "date:       $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu:        $(cpu_model)"
    echo "cpus:       $NPROC online$(command -v lscpu >/dev/null 2>&1 &&
        lscpu | awk -F: '/^Thread\(s\) per core/{gsub(/ /,"",$2); t=$2}
                         /^Core\(s\) per socket/{gsub(/ /,"",$2); c=$2}
                         /^Socket\(s\)/{gsub(/ /,"",$2); s=$2}
                         /^Hypervisor vendor/{gsub(/^ +/,"",$2); h=", hypervisor " $2}
                         END{printf ", %s socket(s) x %s core(s) x %s thread(s)%s", s, c, t, h}')"
    echo "memory:     $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel:     $(uname -srm)"
    local cc
    cc=$(cache_var CMAKE_C_COMPILER)
    echo "c compiler: $("${cc:-cc}" --version 2>/dev/null | sed -n 1p) ($BUILD_TYPE build${SANITIZE:+, sanitizer $SANITIZE})"
    echo "go:         $([ "$HAVE_GO" = 1 ] && go version || echo none)"
    echo "java:       $([ "$HAVE_JAVA" = 1 ] && java -version 2>&1 | sed -n 1p || echo none)${JAVA_OPTS:+ (JAVA_OPTS=$JAVA_OPTS)}"
    echo "liburcu:    $(pkg-config --modversion liburcu 2>/dev/null || echo none)"
    echo "tally:      $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src include 2>/dev/null || echo ' (src/ or include/ modified)')"
    echo "settings:   ${SECONDS_PER_CELL}s per rep, $REPS rep(s), threads: $(echo $THREADS), zipf keys $ZIPF_KEYS, memory keys $MEMORY_KEYS$([ "$QUICK" = 1 ] && echo ', QUICK mode')"
    echo "load avg:   $LOAD_AT_START before the build, $(cut -d' ' -f1-3 /proc/loadavg) at the start of the matrix"
}
machine_info >"$OUT/machine.txt"

# Another busy process makes every number lower and noisier: say so. The
# load was sampled before this script's own build (LOAD_AT_START).
if [ "$QUICK" = 0 ] && awk -v n="$NPROC" -v l="$LOAD_AT_START" 'BEGIN{exit !(l > n * 0.5)}'; then
    log "warning: load average $LOAD_AT_START on $NPROC CPUs before the run:" \
        "other processes are running, results will be low and noisy"
    echo "warning:    the machine was busy when the run started" >>"$OUT/machine.txt"
fi
log "$NCELLS cells x $REPS rep(s), ${SECONDS_PER_CELL}s each -> $OUT"
# The reps run in rounds: round r runs rep r of every cell, so that a burst
# of outside load hits one rep of many cells, which the median discards,
# rather than every rep of a few. Each rep is a fresh process (for Java a
# fresh JVM, with its JIT warm-up).
STATUS=0
limit=$(awk -v s="$SECONDS_PER_CELL" 'BEGIN{printf "%d", 120 + 4*s}')
for ((r = 1; r <= REPS; r++)); do
    k=0
    while read -r impl wl t runner; do
        [ -n "$impl" ] || continue
        k=$((k + 1))
        args=(--impl "$impl" --workload "$wl" --threads "$t"
              --seconds "$SECONDS_PER_CELL" --rep "$r")
        case $wl in
            zipf1m) args+=(--keys "$ZIPF_KEYS" --zipf-file "$ZIPF_FILE") ;;
            memory) args+=(--keys "$MEMORY_KEYS") ;;
        esac
        case $runner in
            c) cmd=("$DRIVER") ;;
            go) cmd=("$BIN/go-bench") ;;
            java) # shellcheck disable=SC2206 # JAVA_OPTS is a word list
                  cmd=(java ${JAVA_OPTS:-} -cp "$BIN/java" TallyBench) ;;
        esac
        echo "$impl,$wl,$t,$r" >>"$EXPECT"
        # the limit only keeps a hung cell from hanging the suite
        out=$(timeout "$limit" "${cmd[@]}" "${args[@]}" 2>>"$ERRLOG")
        rc=$?
        printf '%s\n' "$out" | grep "^$impl,$wl,$t,$r," >>"$RAW"
        mops=$(printf '%s\n' "$out" | cut -d, -f7)
        if [ $rc -ne 0 ]; then
            STATUS=1
            log "[rep $r/$REPS, $k/$NCELLS] $impl $wl ${t}thr: FAILED (exit $rc) -- see $ERRLOG"
            tail -3 "$ERRLOG" >&2
        else
            log "[rep $r/$REPS, $k/$NCELLS] $impl $wl ${t}thr: $mops M/s"
        fi
    done <<<"$CELLS"
done

# ---- the programs beyond the matrix -------------------------------------------
# Each prints CSV and checks exact counts; quick runs keep them short (they
# check output and exactness, not speed). bench/README.md describes them.
EXTRAS=${EXTRAS-remove map_costs flood store export}
in_list() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }
if [ "$QUICK" = 1 ]; then
    REMOVE_ARGS=(--seconds 0.05 --config "1,0" --config "2,2")
    MAP_COSTS_ARGS=(--threads 16 --keys 2000 --runs 3)
    FLOOD_ARGS=(--keys 64 --min-seconds 0.02)
    STORE_SECONDS=0.05
    EXPORT_KEYS=10000
else
    REMOVE_ARGS=(--seconds 2)
    MAP_COSTS_ARGS=(--threads 256 --keys 100000 --runs 7)
    FLOOD_ARGS=(--keys 8000 --min-seconds 0.3)
    STORE_SECONDS=$SECONDS_PER_CELL
    EXPORT_KEYS=1000000
fi
rm -f "$OUT"/remove.csv "$OUT"/map_costs.csv "$OUT"/flood.csv "$OUT"/store-raw.csv \
    "$OUT"/store-export.csv

# extra NAME FILE CMD...: runs CMD into FILE, logs it, notes a failure.
extra() {
    local name=$1 file=$2 rc
    shift 2
    timeout 900 "$@" >"$file" 2>>"$ERRLOG"
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "$name: $(tail -1 "$ERRLOG")" >>"$SKIPPED"
        log "$name: skipped ($(tail -1 "$ERRLOG"))"
        rm -f "$file"
    elif [ $rc -ne 0 ] || grep -q ',FAIL' "$file"; then
        STATUS=1
        log "$name: FAILED (exit $rc) -- see $ERRLOG"
        tail -3 "$ERRLOG" >&2
    else
        log "$name: ok -> $(basename "$file")"
    fi
}

if in_list "$EXTRAS" remove; then
    extra remove_latency "$OUT/remove.csv" "$BIN/remove_latency" "${REMOVE_ARGS[@]}"
fi
if in_list "$EXTRAS" map_costs; then
    extra map_costs "$OUT/map_costs.csv" "$BIN/map_costs" "${MAP_COSTS_ARGS[@]}"
fi
if in_list "$EXTRAS" flood; then
    if [ "$HAVE_FLOOD" = 1 ]; then
        extra flood "$OUT/flood.csv" "$BIN/flood" "${FLOOD_ARGS[@]}"
    else
        echo "flood: skip: needs the tally_test library (TALLY_BUILD_TESTS=ON)" >>"$SKIPPED"
    fi
fi

# The store against the other ways to count across processes: every
# (impl, workload, procs, threads) cell, reps in rounds as above.
if in_list "$EXTRAS" store; then
    SRAW=$OUT/store-raw.csv
    "$BIN/store-bench" --header >"$SRAW"
    STORE_CELLS=$(
        "$BIN/store-bench" --list | while IFS=$'\t' read -r name wls st; do
            if [ "$st" != ok ]; then
                echo "$name: $st" >>"$SKIPPED"
                continue
            fi
            wanted "$WANT_IMPLS" "$name" || continue
            for wl in ${wls//,/ }; do
                for p in 1 2; do for t in 1 2; do echo "$name $wl $p $t"; done; done
            done
        done
    )
    for ((r = 1; r <= REPS; r++)); do
        while read -r impl wl p t; do
            [ -n "$impl" ] || continue
            out=$(timeout "$limit" "$BIN/store-bench" --impl "$impl" --workload "$wl" \
                --procs "$p" --threads "$t" --seconds "$STORE_SECONDS" --rep "$r" 2>>"$ERRLOG")
            rc=$?
            line=$(printf '%s\n' "$out" | grep "^$impl,$wl,$p,$t,$r,")
            if [ $rc -ne 0 ] || [ -z "$line" ]; then
                STATUS=1
                log "[store rep $r/$REPS] $impl $wl ${p}x${t}: FAILED (exit $rc) -- see $ERRLOG"
                tail -3 "$ERRLOG" >&2
                [ -n "$line" ] || line="$impl,$wl,$p,$t,$r,0,0,0,FAIL,missing"
            else
                log "[store rep $r/$REPS] $impl $wl ${p}procs x ${t}thr: $(echo "$line" | cut -d, -f8) M/s"
            fi
            printf '%s\n' "$line" >>"$SRAW"
        done <<<"$STORE_CELLS"
    done
fi
if in_list "$EXTRAS" export; then
    TALLY_CMD=()
    if "$BUILD_DIR/tools/tally" export --help >/dev/null 2>&1 &&
        "$BUILD_DIR/tools/tally" ls --help >/dev/null 2>&1; then
        TALLY_CMD=(--tally "$BUILD_DIR/tools/tally")
    fi
    extra store_export "$OUT/store-export.csv" "$BIN/store-bench" --export \
        --keys "$EXPORT_KEYS" "${TALLY_CMD[@]}"
fi

echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) at end" >>"$OUT/machine.txt"

# ---- report -------------------------------------------------------------------

if ! command -v python3 >/dev/null 2>&1; then
    log "python3 not found: raw.csv written, no tables (apt-get install python3)"
    exit 1
fi
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "charts: skip: gnuplot not found (apt-get install gnuplot-nox, or scripts/bench-deps.sh)" >>"$SKIPPED"
fi
python3 "$ROOT/bench/report.py" --dir "$OUT" --expect "$EXPECT" --nproc "$NPROC" || STATUS=1
[ -s "$ERRLOG" ] || rm -f "$ERRLOG"
if [ "$STATUS" = 0 ]; then
    log "all cells ok; tables in $OUT/results.md"
else
    log "some cells FAILED (see above and $OUT/results.md)"
fi
exit $STATUS
