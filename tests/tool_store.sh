#!/usr/bin/env bash
# tool_store.sh TALLY - the store subcommands end to end on real store
# files: add, get, ls, export, top (its plain table, and its live view
# under a pseudo-terminal), check, and demo --processes. Exact values,
# exact output, every exit status. tool_cli.sh covers help and usage
# errors.
set -uo pipefail

tally=$1
py=/usr/bin/python3
tmp=$(mktemp -d)
adder=
cleanup() {
    [ -n "$adder" ] && kill "$adder" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

# expect STATUS STDOUT_REGEX STDERR_REGEX ARGS...: '' means empty.
expect() {
    local want=$1 out_re=$2 err_re=$3 got
    shift 3
    "$tally" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    [ "$got" -eq "$want" ] || fail "tally $*: exit $got, want $want ($(cat "$tmp/err"))"
    if [ -z "$out_re" ]; then
        [ ! -s "$tmp/out" ] || fail "tally $*: want no output, got: $(cat "$tmp/out")"
    else
        grep -Eq -- "$out_re" "$tmp/out" || fail "tally $*: stdout does not match /$out_re/: $(cat "$tmp/out")"
    fi
    if [ -z "$err_re" ]; then
        [ ! -s "$tmp/err" ] || fail "tally $*: want nothing on stderr, got: $(cat "$tmp/err")"
    else
        grep -Eq -- "$err_re" "$tmp/err" || fail "tally $*: stderr does not match /$err_re/: $(cat "$tmp/err")"
    fi
}

# same NAME WANT_FILE GOT_FILE: the two files are byte-identical.
same() {
    cmp -s "$2" "$3" || fail "$1: output differs:$(diff "$2" "$3" | sed 's/^/    /')"
}

f=$tmp/counters.tally

# --- add and get -----------------------------------------------------------
expect 1 '' "^tally get: $f: no such file or directory$" get "$f" requests
[ ! -e "$f" ] || fail "get created $f"
expect 0 '' '' add "$f" requests          # creates the file, prints nothing
[ -s "$f" ] || fail "add did not create $f"
expect 0 '^1$' '' get "$f" requests
expect 0 '' '' add "$f" requests 41
expect 0 '^42$' '' get "$f" requests
expect 0 '' '' add "$f" errors -3         # N may be negative
expect 0 '^-3$' '' get "$f" errors
expect 0 '' '' add "$f" errors 0          # an add of 0 changes nothing
expect 0 '^-3$' '' get "$f" errors
expect 0 '' '' add "$f" zero 0            # ... but creates the key at 0
expect 0 '^0$' '' get "$f" zero
# absent key: status 1, nothing on stdout, the key named on stderr
expect 1 '' "^tally get: $f: no such key 'nope'$" get "$f" nope
expect 1 '' "^tally get: $f: no such key 'a\\\\x01b'$" get -e "$f" 'a\x01b'
# values wrap in two's complement
expect 0 '' '' add "$f" wrap 9223372036854775807
expect 0 '^9223372036854775807$' '' get "$f" wrap
expect 0 '' '' add "$f" wrap 1
expect 0 '^-9223372036854775808$' '' get "$f" wrap
expect 0 '' '' add "$f" wrap -9223372036854775808
expect 0 '^0$' '' get "$f" wrap
# keys and values that start with '-': options come before FILE
expect 0 '' '' add "$f" -dash -7
expect 0 '^-7$' '' get "$f" -dash
expect 0 '' '' add -- "$f" --dash2 2
expect 0 '^2$' '' get -- "$f" --dash2

# a file that is not a store: refused, left unchanged
printf 'just some text\n' >"$tmp/text"
cp "$tmp/text" "$tmp/text.orig"
expect 1 '' "^tally add: $tmp/text: not a tally store$" add "$tmp/text" k
expect 1 '' "^tally get: $tmp/text: not a tally store$" get "$tmp/text" k
expect 1 '' "^tally ls: $tmp/text: not a tally store$" ls "$tmp/text"
expect 1 '' "^tally export: $tmp/text: not a tally store$" export "$tmp/text"
expect 1 '' "^tally top: $tmp/text: not a tally store$" top "$tmp/text" -i 0.01
same "add to a text file" "$tmp/text.orig" "$tmp/text"
expect 1 '' "^tally add: $tmp/no/such/dir/s.tally: no such file or directory$" add "$tmp/no/such/dir/s.tally" k
for c in ls export top; do
    expect 1 '' "^tally $c: $tmp/absent: no such file or directory$" $c "$tmp/absent"
done
[ ! -e "$tmp/absent" ] || fail "a reading command created $tmp/absent"

# --- ls: sorted by key bytes, aligned ---------------------------------------
g=$tmp/ls.tally
for kv in "b.two 2" "a.one 1" "c.three -30" "a.b 1000" "B.upper 5" "a 7"; do
    set -- $kv
    "$tally" add "$g" "$1" "$2" || fail "add $kv"
done
"$tally" ls "$g" >"$tmp/out" 2>"$tmp/err" || fail "ls exit $?"
cat >"$tmp/want" <<'EOF'
B.upper     5
a           7
a.b      1000
a.one       1
b.two       2
c.three   -30
EOF
same "ls" "$tmp/want" "$tmp/out"
# globs: any of them may match; a key listed once even if several match
"$tally" ls "$g" 'a.*' '*.one' >"$tmp/out" || fail "ls globs"
printf 'a.b    1000\na.one     1\n' >"$tmp/want"
same "ls 'a.*' '*.one'" "$tmp/want" "$tmp/out"
"$tally" ls "$g" '[bc]*' >"$tmp/out" || fail "ls class"
printf 'b.two      2\nc.three  -30\n' >"$tmp/want"
same "ls '[bc]*'" "$tmp/want" "$tmp/out"
"$tally" ls "$g" '?' >"$tmp/out" || fail "ls ?"
printf 'a  7\n' >"$tmp/want"
same "ls '?'" "$tmp/want" "$tmp/out"
expect 0 '' '' ls "$g" 'nothing*'        # no match: no output, status 0
: >"$tmp/empty.tally.want"
"$tally" add "$tmp/e.tally" k 0 && "$tally" ls "$tmp/e.tally" 'x*' >"$tmp/out"
same "ls of no keys" "$tmp/empty.tally.want" "$tmp/out"

# --- keys with odd bytes -----------------------------------------------------
# Shown escaped (tool.h): \\ \t \n \r, \xHH for other bytes outside
# printable ASCII and for a space at either end; -e reads that form back.
o=$tmp/odd.tally
odd_keys=(                 # shown form, value
    'nul\x00byte' 1
    'tab\there' 2
    'new\nline\r' 3
    'back\\slash' 4
    '\x20padded\x20' 5
    'in ner' 6
    'caf\xc3\xa9' 7
    'bad\xff\xfe' 8
    'a,"quoted",b' 9
    'star*' 10
    '' 11
    '\x7f\x01' 12
)
for ((i = 0; i < ${#odd_keys[@]}; i += 2)); do
    expect 0 '' '' add -e "$o" "${odd_keys[i]}" "${odd_keys[i + 1]}"
done
# every key reads back through its shown form, and through its raw bytes
for ((i = 0; i < ${#odd_keys[@]}; i += 2)); do
    expect 0 "^${odd_keys[i + 1]}\$" '' get -e "$o" "${odd_keys[i]}"
done
expect 0 '^2$' '' get "$o" "$(printf 'tab\there')"
expect 0 '^6$' '' get "$o" 'in ner'
expect 0 '^7$' '' get "$o" 'café'
expect 0 '^11$' '' get "$o" ''
expect 0 '^10$' '' get "$o" 'star*'
"$tally" ls "$o" >"$tmp/out" || fail "ls odd"
cat >"$tmp/want" <<'EOF'
                11
\x20padded\x20   5
a,"quoted",b     9
back\\slash      4
bad\xff\xfe      8
caf\xc3\xa9      7
in ner           6
new\nline\r      3
nul\x00byte      1
star*           10
tab\there        2
\x7f\x01        12
EOF
same "ls of odd keys" "$tmp/want" "$tmp/out"
# ls prints nothing but printable ASCII and line feeds
LC_ALL=C grep -q '[^[:print:]]' "$tmp/out" && fail "ls printed a control byte"
# every line ls prints reads back with get -e (the shown form round-trips)
while IFS= read -r line; do
    key=$(sed -E 's/ +-?[0-9]+$//' <<<"$line")
    val=$(sed -E 's/.* (-?[0-9]+)$/\1/' <<<"$line")
    got=$("$tally" get -e "$o" "$key") || fail "get -e '$key' from ls"
    [ "$got" = "$val" ] || fail "get -e '$key': $got, ls says $val"
done <"$tmp/out"
# globs match the shown form; a backslash is an ordinary character
"$tally" ls "$o" '*\x*' >"$tmp/out"
[ "$(wc -l <"$tmp/out")" -eq 5 ] || fail "ls '*\\x*': $(cat "$tmp/out")"
"$tally" ls "$o" 'back\\*' >"$tmp/out"
printf 'back\\\\slash  4\n' >"$tmp/want"
same "ls 'back\\\\*'" "$tmp/want" "$tmp/out"
"$tally" ls "$o" '*[*]' >"$tmp/out"
printf 'star*  10\n' >"$tmp/want"
same "ls '*[*]'" "$tmp/want" "$tmp/out"

# --- export ------------------------------------------------------------------
# JSON and CSV parsed back by Python: every key's exact bytes and value,
# in key order. The expected list is built from the same shown forms.
want_py=$tmp/want.py
{
    echo 'want = ['
    for ((i = 0; i < ${#odd_keys[@]}; i += 2)); do
        printf '  (b"%s", %s),\n' "$(sed 's/"/\\"/g' <<<"${odd_keys[i]}")" "${odd_keys[i + 1]}"
    done
    echo ']'
    echo 'want.sort()'
} >"$want_py"
"$tally" export "$o" --format json >"$tmp/o.json" || fail "export json: exit $?"
"$py" - "$want_py" "$tmp/o.json" <<'EOF' || fail "export json: $(cat "$tmp/o.json")"
import base64, json, re, sys
exec(open(sys.argv[1]).read())
doc = json.load(open(sys.argv[2], encoding="utf-8"))
assert doc["format"] == "tally-export", doc["format"]
assert doc["version"] == 1, doc["version"]
assert re.fullmatch(r"[0-9a-f]{32}", doc["store_id"]), doc["store_id"]
assert isinstance(doc["time_unix_ns"], int) and doc["time_unix_ns"] > 0
got = []
for c in doc["counters"]:
    if "key" in c:
        got.append((c["key"].encode("utf-8"), c["value"]))
    else:
        k = base64.b64decode(c["key_base64"], validate=True)
        try:
            k.decode("utf-8")
            raise AssertionError("valid UTF-8 key in base64: %r" % k)
        except UnicodeDecodeError:
            pass
        got.append((k, c["value"]))
assert got == want, "\n%r\n%r" % (got, want)
EOF
# -f csv, one row per key, RFC 4180 quoting, raw key bytes
"$tally" export -f csv "$o" >"$tmp/o.csv" || fail "export csv: exit $?"
"$py" - "$want_py" "$tmp/o.csv" <<'EOF' || fail "export csv: $(cat -v "$tmp/o.csv")"
import csv, io, sys
exec(open(sys.argv[1]).read())
raw = open(sys.argv[2], "rb").read()
text = raw.decode("utf-8", errors="surrogateescape")
rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
assert rows[0] == ["key", "value"], rows[0]
got = [(k.encode("utf-8", errors="surrogateescape"), int(v)) for k, v in rows[1:]]
assert got == want, "\n%r\n%r" % (got, want)
# quoted exactly where RFC 4180 needs it
assert b'\n"a,""quoted"",b",9\n' in raw, raw
assert b'\n"new\nline\r",3\n' in raw, raw
assert b'\nstar*,10\n' in raw and b'\nin ner,6\n' in raw, raw
EOF
# globs select, as in ls; the default format is JSON
"$tally" export "$g" 'a.*' >"$tmp/g.json" || fail "export glob"
"$py" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert [(c["key"], c["value"]) for c in d["counters"]] == [("a.b", 1000), ("a.one", 1)], d
' "$tmp/g.json" || fail "export 'a.*': $(cat "$tmp/g.json")"
"$tally" export "$tmp/e.tally" 'x*' >"$tmp/e.json" || fail "export none"
"$py" -c 'import json,sys; assert json.load(open(sys.argv[1]))["counters"] == []' "$tmp/e.json" ||
    fail "export of no keys: $(cat "$tmp/e.json")"
expect 0 '^key,value$' '' export "$tmp/e.tally" x --format=csv

# --- top: the plain table when stdout is not a terminal ---------------------
# Nothing adds during the interval: every rate and average is exactly 0,
# the values are exact, and equal rates sort by key.
"$tally" top "$g" --interval 0.05 >"$tmp/out" 2>"$tmp/err" || fail "top: exit $? $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] || fail "top wrote to stderr: $(cat "$tmp/err")"
grep -Eq "^tally top  $g  6 keys  over 0\.[0-9]{2} s$" "$tmp/out" || fail "top header: $(head -1 "$tmp/out")"
tail -n +2 "$tmp/out" | sed -E 's/ +/ /g' >"$tmp/got"
cat >"$tmp/want" <<'EOF'
KEY VALUE RATE/s AVG/s
B.upper 5 0.0 0.0
a 7 0.0 0.0
a.b 1000 0.0 0.0
a.one 1 0.0 0.0
b.two 2 0.0 0.0
c.three -30 0.0 0.0
EOF
same "top plain table" "$tmp/want" "$tmp/got"
# --glob and GLOB arguments filter as in ls
"$tally" top "$g" -i 0.01 --glob 'c*' '?' | tail -n +3 | sed -E 's/ +/ /g' >"$tmp/got"
printf 'a 7 0.0 0.0\nc.three -30 0.0 0.0\n' >"$tmp/want"
same "top --glob" "$tmp/want" "$tmp/got"
# A key being added to throughout the interval (a loop of 'tally add' that
# runs until top has exited) has a rate above 0 and sorts first.
"$tally" add "$g" hot 0
( while :; do "$tally" add "$g" hot 1 || exit 1; done ) &
adder=$!
"$tally" top "$g" --interval 0.5 >"$tmp/out" || fail "top with an adder"
kill "$adder" 2>/dev/null
wait "$adder" 2>/dev/null
adder=
"$py" - "$tmp/out" <<'EOF' || fail "top with an adder: $(cat "$tmp/out")"
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[2:]]
key, value, rate, avg = rows[0]
assert key == "hot" and int(value) > 0 and float(rate) > 0 and float(avg) > 0, rows[0]
assert all(r[2] == "0.0" for r in rows[1:]), rows
EOF

# --- top: the live view, under a pseudo-terminal (script(1)) ----------------
# q quits and restores the terminal (the alternate screen is left again);
# so does Ctrl-C.
if "$tally" top --help | grep -q 'built without ncurses'; then
    echo "tool_store: tally built without ncurses: live view not tested"
elif ! command -v script >/dev/null; then
    fail "script(1) (util-linux) not found: cannot test top's live view"
else
    # script(1) runs the command with $SHELL -c (/bin/sh when SHELL is
    # unset, as under CI): 'exec' makes tally the terminal's only
    # process, so Ctrl-C reaches tally and not a shell that dash would
    # let die of it (exit 130) while tally itself quits cleanly.
    for quit in q $'\003'; do
        # The input waits until the table is on the screen, then quits.
        ( for _ in $(seq 100); do
              grep -q 'c\.three' "$tmp/typescript" 2>/dev/null && break
              sleep 0.1
          done
          printf '%s' "$quit" ) |
            TERM=xterm COLUMNS=100 LINES=30 timeout 30 \
            script -qfec "exec $tally top $g --interval 0.05" "$tmp/typescript" >/dev/null
        rc=$?
        [ "$rc" -eq 0 ] || fail "top live view, quit with $(printf %q "$quit"): exit $rc"
        ts=$(cat -v "$tmp/typescript")
        grep -q 'tally top' <<<"$ts" || fail "top live view: no header: $ts"
        grep -q 'a\.one' <<<"$ts" || fail "top live view: no keys: $ts"
        grep -q '\^\[\[?1049h' <<<"$ts" || fail "top live view: no alternate screen: $ts"
        grep -q '\^\[\[?1049l' <<<"$ts" || fail "top live view: terminal not restored: $ts"
        rm -f "$tmp/typescript"
    done
fi

# --- check -----------------------------------------------------------------
expect 0 "^$f: ok$" '' check "$f"
expect 0 "^$o: ok$" '' check "$o"
# not a store: what is wrong on stdout, the verdict on stderr
expect 1 "^$tmp/text: [a-z]" "^tally check: $tmp/text: not a tally store$" check "$tmp/text"
expect 1 '' "^tally check: $tmp/absent: no such file or directory$" check "$tmp/absent"
# Damage: one byte of a key changed in place (keys are stored verbatim),
# so its hash no longer leads to where it is. check names the entry;
# get of the old key no longer finds it.
c=$tmp/damaged.tally
"$tally" add "$c" a-key-to-damage 5 && "$tally" add "$c" other 1
expect 0 "^$c: ok$" '' check "$c"
"$py" - "$c" <<'EOF' || fail "could not damage $c"
import sys
data = bytearray(open(sys.argv[1], "rb").read())
i = data.find(b"a-key-to-damage")
assert i > 0 and data.find(b"a-key-to-damage", i + 1) < 0
data[i] = ord("A")
open(sys.argv[1], "wb").write(data)
EOF
expect 1 "^$c: entry at 0x[0-9a-f]+: " '' check "$c"
expect 1 '' "^tally get: $c: no such key 'a-key-to-damage'$" get "$c" a-key-to-damage
# A damaged header (a byte its checksum covers): every command refuses the
# file, and check says why.
h=$tmp/header.tally
"$tally" add "$h" k 1
"$py" -c '
import sys
f = open(sys.argv[1], "r+b"); f.seek(40); b = f.read(1); f.seek(40)
f.write(bytes([b[0] ^ 0xff]))' "$h"
expect 1 "^$h: [a-z]" '' check "$h"
expect 1 '' "^tally ls: $h: tally store is corrupt$" ls "$h"
expect 1 '' "^tally get: $h: tally store is corrupt$" get "$h" k
expect 1 '' "^tally add: $h: tally store is corrupt$" add "$h" k

# --- demo across processes ---------------------------------------------------
expect 0 '^tally_store, 4 processes +4000 ' '' demo --processes 4
expect 0 'expected value 6$' '' demo -p 3 -t 2 -k k
d=$tmp/demo.tally
expect 0 '^tally_store, 2 processes +6 ' '' demo --processes 2 --threads 3 --file "$d" --key hits
expect 0 '\(value before: 6\); expected increase 6$' '' demo --processes 2 --threads 3 --file "$d" --key hits
expect 0 '^12$' '' get "$d" hits
expect 1 '' "^tally demo: $tmp/text: not a tally store$" demo -p 2 -t 2 --file "$tmp/text"

[ "$fails" -eq 0 ] || { echo "$fails checks failed" >&2; exit 1; }
echo "tool_store: all checks passed"
