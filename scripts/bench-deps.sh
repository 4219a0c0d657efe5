#!/bin/sh
# bench-deps.sh - install the toolchains the benchmark suite compares tally
# against: Go (go_* peers), a JDK (java_* peers), liburcu (urcu_lfht) and
# gnuplot (SVG charts). Debian/Ubuntu (apt-get). Idempotent: installs only
# what is missing, and does nothing when everything is there.
set -eu

need=""
command -v go >/dev/null 2>&1 || need="$need golang-go"
command -v javac >/dev/null 2>&1 || need="$need default-jdk-headless"
if ! pkg-config --exists liburcu-cds liburcu 2>/dev/null; then
    need="$need liburcu-dev"
fi
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
# The store's peers: SQLite (a counter table), Redis INCR (hiredis and the
# server), and Python prometheus_client's multiprocess mode (scrape cost;
# Debian's package is for the system /usr/bin/python3).
pkg-config --exists sqlite3 2>/dev/null || need="$need libsqlite3-dev"
pkg-config --exists hiredis 2>/dev/null || need="$need libhiredis-dev"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null ||
    need="$need python3-prometheus-client"

if [ -z "$need" ]; then
    echo "bench-deps: everything is installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench-deps: no apt-get here; install by hand:$need" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "bench-deps: installing$need"
$SUDO apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is wanted
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $need
