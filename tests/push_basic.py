"""push_basic.py - 'tally push' and 'tally get/ls --redis' against a real
redis-server of the test's own, one behaviour at a time; every total
is checked exactly, read straight from Redis with a client of the
test's own (push_util.Redis), not only through tally.

  push_basic.py TALLY PUSH_WRITER

 1. Two stores with odd keys (empty, NUL, newline, non-UTF-8 bytes,
    blanks, braces, a 4096-byte key) and values at the int64 limits:
    {tally}:total holds each key's wrapped sum, in canonical decimal;
    'tally ls --redis' prints exactly what 'tally ls' prints for a store
    holding those totals (globs too), 'tally get --redis' each value.
 2. Pushing again changes nothing; a value that goes down (a negative
    add) takes the total down by as much.
 3. A store deleted and made again at the same path is a new producer:
    the old one's contribution stays; another prefix is another fleet.
 4. 2,500 keys in batches of 1,000: 3 script calls in one round trip
    (plus SCRIPT LOAD on connecting); a running pusher then sends only
    what changed, one empty call when nothing did; SCRIPT FLUSH is
    answered by loading the script again (NOSCRIPT); FLUSHALL (Redis
    losing its data under a connected pusher) by a full push: exact
    again, and partial until every producer has pushed.
 5. SIGTERM: one last push, exit 0.
 6. Foreign data in the hashes (a value that is not an integer, a key of
    another type): the push fails with Redis's words and changes nothing.
 7. Usage errors (exit 2, one line), a missing store, no Redis (exit 1).

Exits 77 (skipped) without redis-server or hiredis. Takes a few seconds.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from push_util import (Pusher, RedisServer, skip_unless_ready, store_id,
                       wait_for, wrap)

TALLY, WRITER = sys.argv[1], sys.argv[2]
skip_unless_ready("push_basic", TALLY)

tmp = tempfile.mkdtemp(prefix="tally-push-")
srv = RedisServer(tmp)
pushers = []
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("push_basic: FAIL: " + msg, file=sys.stderr)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def shown(key):
    """key (bytes) in the form 'tally add -e' reads: \\xHH for anything
    but letters and digits."""
    return "".join(chr(b) if chr(b).isalnum() and b < 128 else "\\x%02x" % b
                   for b in key)


def run(*args, want=0):
    r = subprocess.run([TALLY] + list(args), capture_output=True)
    if r.returncode != want:
        fail("tally %s: exit %d, want %d; stderr: %s" %
             (" ".join(args), r.returncode, want,
              r.stderr.decode(errors="replace").strip()))
    return r


def make_store(path, values):
    if os.path.exists(path):
        os.unlink(path)
    for k, v in values.items():
        run("add", "-e", path, shown(k), str(v))


def push_once(store, *opts, want=0):
    return run("push", store, "--redis", ADDR, "--once", "-v", *opts,
               want=want)


def totals(prefix="tally"):
    return R.hgetall("{%s}:total" % prefix)


def check_totals(expected, prefix="tally", what=""):
    """{prefix}:total must hold exactly expected's keys, each value in
    canonical decimal."""
    got = totals(prefix)
    want = {k: str(wrap(v)).encode() for k, v in expected.items()}
    if got == want:
        return True
    missing = [k for k in want if k not in got][:5]
    extra = [k for k in got if k not in want][:5]
    wrong = [(k, got[k], want[k]) for k in want
             if k in got and got[k] != want[k]][:5]
    fail("%s: {%s}:total: missing %r, extra %r, wrong (key, got, want) %r"
         % (what, prefix, missing, extra, wrong))
    return False


def sums(*stores):
    out = {}
    for st in stores:
        for k, v in st.items():
            out[k] = wrap(out.get(k, 0) + v)
    return out


try:
    srv.start()
    R = srv.client()
    ADDR = "127.0.0.1:%d" % srv.port

    # --- 1. odd keys, int64 limits, read back ------------------------------
    A = {b"plain": 5, b"": 1, b"nul\0key": 3, b"new\nline": -4,
         b"\xff\xfe": 7, b" sp ": 2, b"{tally}:total": 11, b"L" * 4096: 9,
         b"big": (1 << 63) - 1, b"min": -(1 << 63), b"p53": (1 << 53) + 1,
         b"e15": 999999999999999, b"zero": 0}
    B = {b"plain": 10, b"big": (1 << 63) - 1, b"min": -1,
         b"p53": (1 << 53) + 1, b"e15": 1, b"onlyB": -6}
    a, b = os.path.join(tmp, "a.tally"), os.path.join(tmp, "b.tally")
    make_store(a, A)
    make_store(b, B)
    r = push_once(a)
    check(re.search(rb"keys=13 sent=13 changed=13 full=1 batches=1 "
                    rb"round_trips=2 ", r.stdout), "first push: %r" % r.stdout)
    push_once(b)
    fleet = sums(A, B)
    check(fleet[b"big"] == -2 and fleet[b"min"] == (1 << 63) - 1,
          "the test's own wrap")
    check_totals(fleet, what="two stores")

    # ls --redis prints what ls prints for a store holding the totals
    c = os.path.join(tmp, "c.tally")
    make_store(c, fleet)
    for globs in ([], ["p*"], ["*\\x*", "zero"], ["nothing*"]):
        want = run("ls", c, *globs).stdout
        got = run("ls", "--redis", ADDR, *globs).stdout
        check(got == want, "ls --redis %s:\n%r\nwant\n%r" % (globs, got, want))
    for k, v in fleet.items():
        got = run("get", "-e", "--redis", ADDR, shown(k)).stdout
        check(got == b"%d\n" % v, "get --redis %r: %r, want %d" % (k, got, v))
    r = run("get", "--redis", ADDR, "nope", want=1)
    check(r.stderr == b"tally get: %s: no such key 'nope'\n" % ADDR.encode(),
          "get of an absent key: %r" % r.stderr)

    # --- 2. idempotent; values that go down ---------------------------------
    before = {k: R.hgetall(k) for k in R.cmd("KEYS", "*")}
    r = push_once(a)
    check(re.search(rb" sent=13 changed=0 ", r.stdout),
          "push again: %r" % r.stdout)
    after = {k: R.hgetall(k) for k in R.cmd("KEYS", "*")}
    seqk = b"{tally}:seq"
    check({k: v for k, v in before.items() if k != seqk} ==
          {k: v for k, v in after.items() if k != seqk},
          "a second push of the same values changed Redis")
    run("add", a, "plain", "-20")
    A[b"plain"] -= 20
    r = push_once(a)
    check(re.search(rb" changed=1 ", r.stdout), "negative: %r" % r.stdout)
    check_totals(sums(A, B), what="a value that went down")

    # --- 3. a store made again; another prefix ------------------------------
    old_a = store_id(TALLY, a)
    A2 = {b"plain": 100, b"new": 1}
    make_store(a, A2)
    check(store_id(TALLY, a) != old_a, "a store made again has a new id")
    push_once(a)
    check_totals(sums(A, B, A2), what="store made again")
    prods = R.hgetall("{tally}:producers")
    check(len(prods) == 3 and all(re.match(
        rb"host=\S+ path=\S+/[abc]\.tally created_ns=\d+$", v)
        for v in prods.values()), "{tally}:producers: %r" % prods)
    push_once(b, "--prefix", "other")
    check_totals(B, prefix="other", what="--prefix other")
    check(run("ls", "--redis", ADDR, "--prefix", "other").stdout ==
          run("ls", b).stdout, "ls --redis --prefix other")
    check_totals(sums(A, B, A2), what="tally untouched by other")

    # --- 4. batches, round trips, deltas, NOSCRIPT, FLUSHALL -----------------
    d = os.path.join(tmp, "d.tally")
    subprocess.run([WRITER, d, "--fill", "2500"], check=True)
    D = {b"f%d" % i: i + 1 for i in range(2500)}
    r = push_once(d, "--prefix", "d", "--batch", "1000")
    check(re.search(rb"keys=2500 sent=2500 changed=2500 full=1 batches=3 "
                    rb"round_trips=2 ", r.stdout), "batches: %r" % r.stdout)
    check_totals(D, prefix="d", what="2500 keys")
    p = Pusher(TALLY, d, srv.port, "--prefix", "d", "--batch", "1000",
               "--interval", "0.05", log=os.path.join(tmp, "pd.err"))
    pushers.append(p)
    first = p.wait_pushes(3)
    check(first[0]["full"] == 1 and first[0]["round_trips"] == 2,
          "a new pusher's first push: %r" % first[0])
    check(all(x["sent"] == 0 and x["batches"] == 1 and x["round_trips"] == 1
              and x["changed"] == 0 and x["full"] == 0 for x in first[1:]),
          "pushes with nothing changed: %r" % first[1:])
    n = len(p.pushes())
    subprocess.run([WRITER, d, "--fill", "2500"], check=True)
    D = {k: 2 * v for k, v in D.items()}
    got = wait_for(lambda: [x for x in p.pushes()[n:] if x["sent"]], 30,
                   "a push of the refilled store")
    wait_for(lambda: totals("d") == {k: str(v).encode()
                                     for k, v in D.items()}, 30,
             "the refilled totals")
    got = [x for x in p.pushes()[n:] if x["sent"]]
    changed = sum(x["changed"] for x in got)
    check(all(x["full"] == 0 and x["round_trips"] == 1 for x in got),
          "deltas are one round trip: %r" % got)
    check(changed == 2500, "2500 keys changed in all: %d" % changed)

    n = len(p.pushes())
    R.cmd("SCRIPT", "FLUSH")
    run("add", d, "f0", "5")
    D[b"f0"] += 5
    got = wait_for(lambda: [x for x in p.pushes()[n:] if x["reloaded"]], 30,
                   "a push after SCRIPT FLUSH")[0]
    # the add may have gone in the push that met NOSCRIPT, or before it
    check(got["round_trips"] == 2 and got["sent"] <= 1 and
          got["changed"] == got["sent"], "NOSCRIPT: %r" % got)
    wait_for(lambda: totals("d")[b"f0"] == str(D[b"f0"]).encode(), 30,
             "f0's total after NOSCRIPT")
    check_totals(D, prefix="d", what="after NOSCRIPT")

    n = len(p.pushes())
    R.cmd("FLUSHALL")
    got = wait_for(lambda: [x for x in p.pushes()[n:] if x["full"]], 30,
                   "a full push after FLUSHALL")[0]
    check(got["sent"] == 2500 and got["changed"] == 2500,
          "resync after FLUSHALL: %r" % got)
    check_totals(D, prefix="d", what="after FLUSHALL")
    # partial until every producer has pushed: b alone, then a
    check_totals({}, what="nothing pushed yet since FLUSHALL")
    push_once(b)
    check_totals(B, what="b only since FLUSHALL")
    push_once(a)
    check_totals(sums(B, A2), what="a and b since FLUSHALL (the first "
                 "a.tally's contribution went with the data)")

    # --- 5. SIGTERM: a last push --------------------------------------------
    q = Pusher(TALLY, b, srv.port, "--interval", "3600",
               log=os.path.join(tmp, "pb.err"))
    pushers.append(q)
    q.wait_pushes(1)
    run("add", b, "onlyB", "1000")
    B[b"onlyB"] += 1000
    check(q.term() == 0, "SIGTERM: exit status")
    check(len(q.pushes()) == 2, "SIGTERM: one last push: %r" % q.pushes())
    check_totals(sums(B, A2), what="after SIGTERM")
    check(p.term() == 0, "SIGTERM of the d pusher")

    # --- 6. foreign data ------------------------------------------------------
    R.cmd("HSET", "{tally}:total", "plain", "1e3")
    snapshot = {k: R.hgetall(k) for k in R.cmd("KEYS", "*")}
    run("add", b, "plain", "1")
    r = push_once(b, want=1)
    check(re.match(rb"tally push: 127\.0\.0\.1:\d+: Redis: .*not an "
                   rb"integer: 1e3", r.stderr), "garbage: %r" % r.stderr)
    check({k: R.hgetall(k) for k in R.cmd("KEYS", "*")} == snapshot,
          "a failed push changed Redis")
    r = run("get", "--redis", ADDR, "plain", want=1)
    check(b"not an integer" in r.stderr, "get of garbage: %r" % r.stderr)
    r = run("ls", "--redis", ADDR, want=1)
    check(b"not an integer" in r.stderr and r.stdout == b"",
          "ls of garbage: %r" % r.stderr)
    R.cmd("SET", "{wrong}:total", "x")
    r = push_once(b, "--prefix", "wrong", want=1)
    check(b"WRONGTYPE" in r.stderr, "wrong type: %r" % r.stderr)
    check(R.cmd("KEYS", "{wrong}*") == [b"{wrong}:total"],
          "a push into a wrong-typed key wrote something")

    # --- 7. usage and runtime errors -------------------------------------------
    def usage(args, msg):
        r = run(*args, want=2)
        err = r.stderr.decode()
        check(re.match(msg, err) and err.count("\n") == 1 and
              err.endswith("(see 'tally %s --help')\n" % args[0]) and
              r.stdout == b"", "tally %s: %r" % (" ".join(args), err))

    usage(["push"], "tally push: missing FILE")
    usage(["push", b], "tally push: missing --redis")
    usage(["push", b, "x", "--redis", ADDR], "tally push: unexpected argument")
    usage(["push", b, "--redis", "a:b:c"], "tally push: bad --redis")
    usage(["push", b, "--redis", "h:0"], "tally push: bad --redis")
    usage(["push", b, "--redis", "[::1"], "tally push: bad --redis")
    usage(["push", b, "--redis", ADDR, "--prefix", "a{b"],
          "tally push: bad --prefix")
    usage(["push", b, "--redis", ADDR, "--prefix", ""],
          "tally push: bad --prefix")
    usage(["push", b, "--redis", ADDR, "--batch", "0"], "tally push: bad --batch")
    usage(["push", b, "--redis", ADDR, "--batch", "2001"],
          "tally push: bad --batch")
    usage(["push", b, "--redis", ADDR, "--interval", "0"],
          "tally push: bad --interval")
    usage(["push", b, "--redis", ADDR, "--frob"], "tally push: unknown option")
    usage(["push", b, "--redis"], "tally push: option '--redis' needs a value")
    usage(["get", "--prefix", "x", "k"], "tally get: --prefix needs --redis")
    usage(["get", "--redis", ADDR], "tally get: missing KEY")
    usage(["get", "--redis", ADDR, "k", "k2"], "tally get: unexpected argument")
    usage(["get", "--redis", ADDR, "--prefix", "}", "k"],
          "tally get: bad --prefix")
    usage(["ls", "--prefix", "x"], "tally ls: --prefix needs --redis")
    usage(["ls", "--redis", ""], "tally ls: bad --redis")
    for cmd in ("push", "get", "ls"):
        for h in ("--help", "-h"):
            r = run(cmd, h)
            check(r.stdout.startswith(b"usage: tally " + cmd.encode()) and
                  b"--redis" in r.stdout and r.stderr == b"",
                  "tally %s %s" % (cmd, h))
    check(re.search(rb"\n  push +send", run("--help").stdout),
          "push is listed in tally --help")
    r = run("push", os.path.join(tmp, "absent"), "--redis", ADDR, want=1)
    check(r.stderr == ("tally push: %s: no such file or directory\n" %
                       os.path.join(tmp, "absent")).encode(),
          "absent store (loop mode exits): %r" % r.stderr)
    dead = "127.0.0.1:%d" % __import__("push_util").free_port()
    r = run("push", b, "--redis", dead, "--once", want=1)
    check(re.match(rb"tally push: 127\.0\.0\.1:\d+: Connection refused\n$",
                   r.stderr), "no Redis: %r" % r.stderr)
    r = run("ls", "--redis", dead, want=1)
    check(re.match(rb"tally ls: 127\.0\.0\.1:\d+: Connection refused\n$",
                   r.stderr), "ls, no Redis: %r" % r.stderr)
except AssertionError as e:
    fail(str(e))
finally:
    for p in pushers:
        p.kill9()
    srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    print("push_basic: %d failure(s)" % failures, file=sys.stderr)
    sys.exit(1)
print("push_basic: ok")
