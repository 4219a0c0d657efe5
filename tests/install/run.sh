#!/usr/bin/env bash
# run.sh BUILD_DIR SOURCE_DIR CC CMAKE - the install test.
#
# Installs BUILD_DIR into a temporary prefix, then builds and runs
# consumer.c against it (1) through pkg-config, shared library, (2) through
# pkg-config --static, linked with libtally.a, (3) through find_package,
# with tally::tally and tally::tally_static. Each must print
# "tally 0.1.0 42".
set -euo pipefail

build=$1 src=$2 cc=$3 cmake=$4
want="tally 0.1.0 42"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { echo "== $*"; }

# True if the executable has libtally.so.0 as a dynamic dependency.
needs_libtally() {
    local dyn
    dyn=$(readelf -d "$1")
    grep -q 'NEEDED.*\[libtally\.so\.0\]' <<<"$dyn"
}

check_output() { # NAME OUTPUT
    if [ "$2" != "$want" ]; then
        echo "FAIL: $1 printed '$2', want '$want'" >&2
        exit 1
    fi
}

step "install into a temporary prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log"
for f in include/tally.h bin/tally; do
    [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
pc=$(find "$prefix" -name tally.pc)
[ -n "$pc" ] || { echo "FAIL: tally.pc not installed" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
for f in libtally.a libtally.so libtally.so.0 libtally.so.0.1.0; do
    [ -e "$libdir/$f" ] || { echo "FAIL: $libdir/$f not installed" >&2; exit 1; }
done
[ "$("$prefix/bin/tally" --version)" = "tally 0.1.0" ]

step "libtally.so exports only the public tally_ API"
# -fvisibility=hidden: internal (tally__*) and helper symbols stay inside,
# except the three that tally.h's inline fast paths use (its section 7).
inline_abi='^(tally__dir|tally__adder_add_slow|tally__handle_add_slow)$'
bad=$(nm -D --defined-only "$libdir/libtally.so" |
      awk -v ok="$inline_abi" '$2 ~ /^[TDBVWR]$/ && $3 !~ ok &&
                              ($3 !~ /^tally_[a-z]/ || $3 ~ /^tally__/)')
if [ -n "$bad" ]; then
    echo "FAIL: libtally.so exports non-API symbols:" >&2
    echo "$bad" >&2
    exit 1
fi
# ... and every function the header declares.
exports=$(nm -D --defined-only "$libdir/libtally.so")
for fn in $(grep -o 'TALLY_API[^(]*(' "$prefix/include/tally.h" |
            grep -o 'tally_[a-z0-9_]*($' | tr -d '('); do
    grep -q " T $fn\$" <<<"$exports" ||
        { echo "FAIL: libtally.so does not export $fn" >&2; exit 1; }
done

step "the installed libraries carry no test hooks"
# TALLY_TEST_HOOKS code (allocation-failure injection, crash points) is
# built into the tests' own archive only (CMakeLists.txt: tally_test).
hooks='tally__alloc_fail_after|tally__alloc_count|tally__crash'
for lib in libtally.a libtally.so; do
    syms=$(nm "$libdir/$lib" 2>/dev/null || true)
    if grep -Eq "$hooks" <<<"$syms"; then
        echo "FAIL: $lib contains test hooks:" >&2
        grep -E "$hooks" <<<"$syms" >&2
        exit 1
    fi
done

export PKG_CONFIG_PATH=$libdir/pkgconfig
step "pkg-config: $(pkg-config --modversion tally)"
[ "$(pkg-config --modversion tally)" = 0.1.0 ]

step "pkg-config, shared"
# shellcheck disable=SC2046 # pkg-config output is a list of flags
"$cc" -o "$tmp/consumer" "$src/consumer.c" $(pkg-config --cflags --libs tally)
check_output "pkg-config shared" "$(LD_LIBRARY_PATH=$libdir "$tmp/consumer")"
needs_libtally "$tmp/consumer" ||
    { echo "FAIL: the pkg-config consumer does not use libtally.so.0" >&2; exit 1; }

step "pkg-config --static, libtally.a"
# -Bstatic picks libtally.a over libtally.so; libc stays dynamic.
# shellcheck disable=SC2046
"$cc" -o "$tmp/consumer_static" "$src/consumer.c" \
    $(pkg-config --cflags tally) \
    -Wl,-Bstatic $(pkg-config --static --libs tally) -Wl,-Bdynamic
check_output "pkg-config static" "$("$tmp/consumer_static")"
! needs_libtally "$tmp/consumer_static" ||
    { echo "FAIL: the --static consumer needs libtally.so" >&2; exit 1; }

step "find_package"
"$cmake" -S "$src" -B "$tmp/fp" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    >"$tmp/fp.log" 2>&1 || { cat "$tmp/fp.log" >&2; exit 1; }
"$cmake" --build "$tmp/fp" >>"$tmp/fp.log" 2>&1 ||
    { cat "$tmp/fp.log" >&2; exit 1; }
# The imported shared target carries its location; RPATH finds it.
check_output "find_package tally::tally" "$("$tmp/fp/consumer_shared")"
needs_libtally "$tmp/fp/consumer_shared" ||
    { echo "FAIL: tally::tally is not libtally.so" >&2; exit 1; }
check_output "find_package tally::tally_static" "$("$tmp/fp/consumer_static")"
! needs_libtally "$tmp/fp/consumer_static" ||
    { echo "FAIL: tally::tally_static needs libtally.so" >&2; exit 1; }

echo "install test passed"
