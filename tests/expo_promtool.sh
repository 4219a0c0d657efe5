#!/bin/sh
# expo_promtool.sh - tally's expositions against Prometheus's own tools.
#
#   expo_promtool.sh GOLDEN_DIR EXPO_DUMP SERVE_WRITER
#
# 1. 'promtool check metrics' (parser and lint) on every text 0.0.4 golden
#    file of test_expo: exit status 0, no complaint. (promtool reads the
#    text format only; the OpenMetrics files go to step 2 and to the real
#    Prometheus in serve_prometheus.py.)
# 2. prometheus_client's OpenMetrics and text parsers on every golden file
#    (tests/expo_parse.py): both formats give the same samples, and the
#    odd keys decode back to their exact bytes.
# 3. A store of 100,000 keys (filled by SERVE_WRITER) and a map of as
#    many, rendered by EXPO_DUMP in each format: promtool on the text
#    ones, both parsers, every key once, the exact sum.
#
# Skips (exit 77, ctest reports it) with a message when promtool or
# Debian's python3-prometheus-client is missing; scripts/setup-deps.sh
# installs both, and CI runs it.
set -eu

GOLDEN=$1
DUMP=$2
WRITER=$3
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
KEYS=100000

if ! command -v promtool >/dev/null 2>&1; then
    echo "expo_promtool: skip: promtool not found (apt-get install prometheus, or scripts/setup-deps.sh)"
    exit 77
fi
if ! "$PY" -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "expo_promtool: skip: $PY has no prometheus_client (apt-get install python3-prometheus-client, or scripts/setup-deps.sh)"
    exit 77
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

n=0
for f in "$GOLDEN"/*.prom; do
    if ! promtool check metrics <"$f" >"$TMP/out" 2>&1; then
        echo "expo_promtool: promtool check metrics fails on $f:" >&2
        cat "$TMP/out" >&2
        exit 1
    fi
    if [ -s "$TMP/out" ]; then
        echo "expo_promtool: promtool complains about $f:" >&2
        cat "$TMP/out" >&2
        exit 1
    fi
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "expo_promtool: no golden files in $GOLDEN" >&2; exit 1; }
echo "expo_promtool: promtool check metrics: $n golden files clean"

"$PY" "$HERE/expo_parse.py" golden "$GOLDEN"

"$WRITER" "$TMP/store" fill "$KEYS"
for src in store map; do
    for fmt in text openmetrics; do
        if [ "$src" = store ]; then
            "$DUMP" "$fmt" store "$TMP/store" >"$TMP/big.$fmt"
        else
            "$DUMP" "$fmt" map "$KEYS" >"$TMP/big.$fmt"
        fi
        if [ "$fmt" = text ]; then
            if ! promtool check metrics <"$TMP/big.$fmt" >"$TMP/out" 2>&1 ||
                [ -s "$TMP/out" ]; then
                echo "expo_promtool: promtool check metrics on a $src of $KEYS keys:" >&2
                head -20 "$TMP/out" >&2
                exit 1
            fi
            echo "expo_promtool: promtool check metrics: a $src of $KEYS keys, clean"
        fi
        "$PY" "$HERE/expo_parse.py" big "$fmt" "$KEYS" "$TMP/big.$fmt"
    done
done
echo "expo_promtool: ok"
