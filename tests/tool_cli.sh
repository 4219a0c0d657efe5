#!/usr/bin/env bash
# tool_cli.sh TALLY - checks the 'tally' command's options, help texts and
# exit statuses: 0 success, 1 failure, 2 usage error (one line saying what
# is wrong, then a "Try ..." hint, on stderr, nothing on stdout).
set -uo pipefail

tally=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# matches FILE REGEX: some line of FILE matches REGEX; '' means FILE is empty.
matches() {
    if [ -z "$2" ]; then [ ! -s "$1" ]; else grep -Eq -- "$2" "$1"; fi
}

# expect STATUS STDOUT_REGEX STDERR_REGEX ARGS...
expect() {
    local want=$1 out_re=$2 err_re=$3 got
    shift 3
    "$tally" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    [ "$got" -eq "$want" ] || fail "tally $*: exit $got, want $want"
    matches "$tmp/out" "$out_re" || fail "tally $*: stdout does not match /$out_re/: $(cat "$tmp/out")"
    matches "$tmp/err" "$err_re" || fail "tally $*: stderr does not match /$err_re/: $(cat "$tmp/err")"
}

# A usage error: exit 2, nothing on stdout, exactly two lines on stderr.
usage_error() {
    local msg_re=$1
    shift
    expect 2 '' "$msg_re" "$@"
    [ "$(wc -l <"$tmp/err")" -eq 2 ] || fail "tally $*: want 2 lines on stderr, got: $(cat "$tmp/err")"
    grep -q "^Try 'tally .*--help'\.$" "$tmp/err" || fail "tally $*: no usage hint"
}

expect 0 '^tally 0\.1\.0$' '' --version
expect 0 '^usage: tally' '' --help
expect 0 '^usage: tally' '' help
expect 0 '^  demo ' '' help
expect 0 '^usage: tally demo' '' help demo
expect 0 '^usage: tally demo' '' demo --help
expect 0 '^tally_counter +5 ' '' demo --threads 5
expect 0 '^mutex \+ map.* 1 ' '' demo -t 1 -k x
expect 0 'incrementing "a b" once' '' demo --threads=3 --key 'a b'
expect 2 '' '^usage: tally' # no command
expect 0 '^tally_map +5 ' '' demo --threads 5



usage_error "^tally: unknown command 'frobnicate'$" frobnicate
usage_error "^tally: unknown option '--frob'$" --frob
usage_error "^tally: unknown option '-x'$" -x
usage_error "^tally: unknown command 'nope'$" help nope
usage_error "^tally demo: unknown option '--frob'$" demo --frob
usage_error "^tally demo: option '--threads' needs a value$" demo --threads
usage_error "^tally demo: option '-t' needs a value$" demo -t
usage_error "^tally demo: unexpected argument 'extra'$" demo extra
for bad in 0 -1 100001 abc 10x '' ' 5' 99999999999999999999; do
    usage_error "^tally demo: --threads wants a number from 1 to 100000, not '$bad'$" demo --threads "$bad"
done

[ "$fails" -eq 0 ] || { echo "$fails checks failed" >&2; exit 1; }
