#!/usr/bin/env bash
# tool_cli.sh TALLY - the 'tally' command's options, help texts and usage
# errors, for every subcommand: --help exits 0 with the usage on stdout;
# a usage error exits 2 with exactly one line on stderr (what is wrong and
# where the help is) and nothing on stdout. What the store subcommands do
# is tool_store.sh's part.
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

# usage_error MSG_REGEX ARGS...: exit 2, nothing on stdout, one line on
# stderr: the message, then the hint naming the command's help.
usage_error() {
    local msg_re=$1 cmd
    shift
    expect 2 '' "$msg_re" "$@"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "tally $*: want 1 line on stderr, got: $(cat "$tmp/err")"
    # The hint: "(see 'tally CMD --help')", or "(see 'tally --help')".
    cmd=$(sed -n "s/^tally \([a-z]*\): .*/\1/p" "$tmp/err")
    if [ -n "$cmd" ]; then
        grep -q " (see 'tally $cmd --help')\$" "$tmp/err" || fail "tally $*: no usage hint: $(cat "$tmp/err")"
    else
        grep -q " (see 'tally --help')\$" "$tmp/err" || fail "tally $*: no usage hint: $(cat "$tmp/err")"
    fi
}

commands="add get ls export top check demo serve help"

# tally itself
expect 0 '^tally 0\.1\.0$' '' --version
expect 0 '^usage: tally' '' --help
expect 0 '^usage: tally' '' -h
expect 0 '^usage: tally' '' help
expect 0 '^usage: tally' '' help --help
for c in $commands; do
    # every command is listed, with its summary
    expect 0 "^  $c +[a-z]" '' --help
done
usage_error "^tally: no command given" # no arguments at all
usage_error "^tally: unknown command 'frobnicate'" frobnicate
usage_error "^tally: unknown option '--frob'" --frob
usage_error "^tally: unknown option '-x'" -x
usage_error "^tally: unknown command 'nope'" help nope
usage_error "^tally help: unexpected argument 'ls'" help add ls
usage_error "^tally help: unknown option '--frob'" help --frob
# 'tally bench' is gone: the benchmark driver is bench/tally-bench.
usage_error "^tally: unknown command 'bench'" bench

# every command: --help, -h and 'tally help CMD' print its usage, exit 0;
# an unknown option is a usage error.
for c in $commands; do
    [ "$c" = help ] && continue
    expect 0 "^usage: tally $c" '' "$c" --help
    expect 0 "^usage: tally $c" '' "$c" -h
    expect 0 "^usage: tally $c" '' help "$c"
    usage_error "^tally $c: unknown option '--frob'" "$c" --frob
    usage_error "^tally $c: unknown option '-Z'" "$c" -Z
done

# missing and extra arguments, bad values
f=$tmp/s.tally
usage_error "^tally add: missing FILE and KEY" add
usage_error "^tally add: missing KEY" add "$f"
usage_error "^tally add: unexpected argument 'x'" add "$f" k 1 x
for bad in '' 1.5 1x ' 1' 0x10 9223372036854775808 -9223372036854775809 abc; do
    usage_error "^tally add: N wants an integer from -9223372036854775808 to 9223372036854775807, not '$bad'" add "$f" k "$bad"
done
usage_error "^tally add: KEY 'a\\\\q' is not a valid escaped key" add -e "$f" 'a\q'
usage_error "^tally add: KEY 'a\\\\x4' is not a valid escaped key" add -e "$f" 'a\x4'
usage_error "^tally add: KEY 'a\\\\' is not a valid escaped key" add -e "$f" 'a\'
usage_error "^tally add: KEY is longer than 4096 bytes" add "$f" "$(printf 'k%.0s' $(seq 4097))"
usage_error "^tally add: KEY '.*' is not a valid escaped key" add -e "$f" "$(printf '\\x41%.0s' $(seq 4097))"
usage_error "^tally get: missing FILE and KEY" get
usage_error "^tally get: missing KEY" get "$f"
usage_error "^tally get: unexpected argument 'x'" get "$f" k x
usage_error "^tally ls: missing FILE" ls
usage_error "^tally export: missing FILE" export
usage_error "^tally export: option '--format' needs a value" export "$f" --format
usage_error "^tally export: option '-f' needs a value" export "$f" -f
usage_error "^tally export: --format wants json or csv, not 'xml'" export "$f" --format xml
usage_error "^tally top: missing FILE" top
usage_error "^tally top: option '--interval' needs a value" top "$f" --interval
for bad in 0 0.001 3601 -1 abc 1e3 1..2 ' 1' ''; do
    usage_error "^tally top: --interval wants seconds from 0.01 to 3600, not '$bad'" top "$f" --interval "$bad"
done
usage_error "^tally check: missing FILE" check
usage_error "^tally check: unexpected argument 'x'" check "$f" x
# none of these created the store file
[ ! -e "$f" ] || fail "a usage error created $f"

# tally demo: the article's program in this process (each implementation)
expect 0 '^tally_counter +5 ' '' demo --threads 5
expect 0 '^mutex \+ map.* 1 ' '' demo -t 1 -k x
expect 0 'incrementing "a b" once' '' demo --threads=3 --key 'a b'
expect 0 '^tally_map +5 ' '' demo --threads 5
usage_error "^tally demo: option '--threads' needs a value" demo --threads
usage_error "^tally demo: option '-t' needs a value" demo -t
usage_error "^tally demo: unexpected argument 'extra'" demo extra
usage_error "^tally demo: --file needs --processes" demo --file "$f"
for bad in 0 -1 100001 abc 10x '' ' 5' 99999999999999999999; do
    usage_error "^tally demo: --threads wants a number from 1 to 100000, not '$bad'" demo --threads "$bad"
done
for bad in 0 1025 x; do
    usage_error "^tally demo: --processes wants a number from 1 to 1024, not '$bad'" demo --processes "$bad"
done

[ "$fails" -eq 0 ] || { echo "$fails checks failed" >&2; exit 1; }
echo "tool_cli: all checks passed"
