#!/usr/bin/env bash
# setup-deps.sh - install what 'make test' needs beyond gcc, g++, make and
# cmake, on Debian/Ubuntu (apt-get). Idempotent: installs only what is
# missing and does nothing when everything is there.
#
# To add a dependency, add one line to DEPS: "CHECK PACKAGE", where CHECK
# is the program whose absence means PACKAGE must be installed, or "-" for
# a package with no program of its own (then dpkg says whether it is there).
set -euo pipefail

DEPS=(
    "pkg-config pkg-config"   # the install test builds through tally.pc
    "readelf binutils"        # the install test: readelf and nm
    "clang clang"             # tests/fuzz/run.sh: the libFuzzer build
    "- libclang-rt-14-dev"    # libFuzzer's runtime (only a Recommends of clang)
    # The 'tally' command's optional parts (a build without one leaves out
    # the subcommand that needs it, and says so); CI tests them all.
    "- libmicrohttpd-dev"     # tally serve: the HTTP server
    "- zlib1g-dev"            # tally serve: gzip responses
    "- libhiredis-dev"        # tally push, get/ls --redis: the Redis client
    "- libncurses-dev"        # tally top: the terminal view
    # Servers the end-to-end tests start on loopback ports of their own.
    "redis-server redis-server"  # tally push tests
    "promtool prometheus"     # promtool check metrics; the scrape test
)

need=()
for dep in "${DEPS[@]}"; do
    read -r cmd pkg <<<"$dep"
    if [ "$cmd" = "-" ]; then
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
            grep -q 'install ok installed' || need+=("$pkg")
    else
        command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
    fi
done

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-deps: no apt-get here; please install: ${need[*]}" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

echo "setup-deps: installing ${need[*]}"
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y \
    --no-install-recommends "${need[@]}"
