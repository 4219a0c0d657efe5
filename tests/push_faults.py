"""push_faults.py - fleet totals stay exact through crashes, lost replies,
late duplicates and a Redis restart: three stores (three hosts' worth),
two writer processes each, and a 'tally push' per store, all through a
fault-injecting TCP proxy (push_util.Proxy) in front of a redis-server
of the test's own.

  push_faults.py TALLY PUSH_WRITER

While the writers count (push_writer: small and negative adds, adds near
2^62 that wrap, drains on one store), every 50 ms each pusher sends
what changed, 200 keys per script call:

 1. kill -9 half way through a pipeline: a fresh pusher of store 0 (a
    full push, 8 calls) has its first call forwarded and applied, half
    of the second forwarded, the rest swallowed; it is killed while it
    waits for the replies, and started again. Then five more kills at
    random moments of full pushes of store 0.
 2. A reply lost after Redis applied the batch: store 1's pusher's next
    call is forwarded and applied, and the connection is cut before the
    reply reaches it; the same process reconnects and pushes again.
 3. A late duplicate: store 2's pusher's next calls are held by the
    proxy and its connection closed; it reconnects and pushes newer
    values; later, the held calls reach Redis: they must be refused as
    stale and change nothing.
 4. redis-server killed (-9, no persistence: every total gone) and
    started again on the same port; the pushers reconnect and push
    everything again.

Then the writers stop and report exactly what they added. After each
pusher has pushed twice more, every key's fleet total must equal the sum
of the writers' adds (checked straight from Redis), and each producer's
record must equal its store; then the pushers get SIGTERM (a last push,
exit 0), a 'tally push --once' per store goes straight to Redis, and
the same must hold. Each fault is checked to have happened (the proxy
saw the reply, Redis's record of the push moved), so the test cannot
pass without exercising it.

Every process is stopped at the end, also on failure. Exits 77 (skipped)
without redis-server or hiredis. Takes a few seconds.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from push_util import (Proxy, Pusher, RedisServer, skip_unless_ready,
                       store_id, wait_for, wrap)

TALLY, WRITER = sys.argv[1], sys.argv[2]
skip_unless_ready("push_faults", TALLY)

PREFIX = "fleet"
STORES, WRITERS, KEYS = 3, 2, 1500
PUSH_OPTS = ["--prefix", PREFIX, "--interval", "0.05", "--batch", "200",
             "--timeout", "5"]

tmp = tempfile.mkdtemp(prefix="tally-faults-")
srv = RedisServer(tmp)
proxy = None
writers, pushers = [], {}
step = "setup"


def log(msg):
    print("push_faults: %s" % msg, flush=True)


def fail(msg):
    print("push_faults: FAIL (%s): %s" % (step, msg), file=sys.stderr)
    for name in sorted(os.listdir(tmp)):
        if name.endswith(".err") or name == "redis.log":
            with open(os.path.join(tmp, name), errors="replace") as f:
                tail = f.readlines()[-8:]
            if tail:
                print("--- %s:\n%s" % (name, "".join(tail)), file=sys.stderr)
    cleanup()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def cleanup():
    for w in writers:
        if w.poll() is None:
            w.kill()
            w.wait()
    for p in pushers.values():
        p.kill9()
    if proxy is not None:
        proxy.stop()
    srv.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def start_pusher(i, port=None):
    p = Pusher(TALLY, stores[i], port or proxy.port, *PUSH_OPTS,
               log=os.path.join(tmp, "push%d.err" % i))
    pushers[i] = p
    return p


def recorded_seq(i):
    v = R.cmd("HGET", "{%s}:seq" % PREFIX, ids[i])
    return v.decode() if v is not None else None


def counter(seq):
    return int(seq.split(":")[0])


def redis_client():
    global R
    R = srv.client()


def store_values(path):
    """A store's keys and values, from 'tally export --format csv'."""
    r = subprocess.run([TALLY, "export", path, "--format", "csv"],
                       capture_output=True, check=True)
    out = {}
    data = r.stdout.split(b"\n", 1)[1]
    # RFC 4180: keys may be quoted (a comma, a quote, CR or LF in them)
    i = 0
    while i < len(data):
        if data[i:i + 1] == b'"':
            j, key = i + 1, bytearray()
            while True:
                q = data.index(b'"', j)
                key += data[j:q]
                if data[q + 1:q + 2] == b'"':
                    key += b'"'
                    j = q + 2
                else:
                    break
            i = q + 2  # past the closing quote and the comma
            key = bytes(key)
        else:
            c = data.index(b",", i)
            key, i = data[i:c], c + 1
        nl = data.index(b"\n", i)
        out[key] = int(data[i:nl])
        i = nl + 1
    return out


try:
    srv.start()
    redis_client()
    proxy = Proxy(srv.port)
    stores = [os.path.join(tmp, "host%d.tally" % i) for i in range(STORES)]
    for i in range(STORES):
        for w in range(WRITERS):
            args = [WRITER, stores[i], str(1 + i * WRITERS + w), str(KEYS)]
            if i == 0 and w == 0:
                args += ["--drain", "3000"]
            writers.append(subprocess.Popen(
                args, stdout=subprocess.PIPE,
                stderr=open(os.path.join(tmp, "writer%d%d.err" % (i, w)),
                            "wb")))
    for w in writers:
        check(w.stdout.readline() == b"ready\n", "a writer did not start")
    ids = [store_id(TALLY, s) for s in stores]
    for i in range(STORES):
        start_pusher(i)
    for i in range(STORES):
        pushers[i].wait_pushes(2)
    log("3 stores, %d writers, 3 pushers running" % len(writers))

    # --- 1. kill -9 half way through a pipeline ----------------------------
    step = "kill -9 mid-pipeline"
    pushers[0].kill9()
    # fresh: not a push the killed pusher left unread in its socket
    plan = proxy.arm(ids[0], "cut", fresh=True)
    p = start_pusher(0)  # a new process: its first push sends every key
    check(plan.done.wait(30), "the cut push never reached Redis")
    check(plan.replies[0][0] == 0, "first call not applied: %r" %
          plan.replies)
    check(recorded_seq(0) == plan.seq, "Redis's record %r is not the cut "
          "push's %r" % (recorded_seq(0), plan.seq))
    check(p.pushes() == [], "the pusher finished a push it never got the "
          "replies of")
    p.kill9()
    log("store 0: pusher killed after call 1 of its push was applied and "
        "half of call 2 sent (%d keys changed by call 1)" %
        plan.replies[0][1])
    for _ in range(5):
        p = start_pusher(0)
        time.sleep(random.uniform(0, 0.03))
        p.kill9()
    start_pusher(0).wait_pushes(1)
    log("store 0: 5 more kill -9 at random moments; pushing again")

    # --- 2. a reply lost after Redis applied the batch -----------------------
    step = "lost reply"
    n = len(pushers[1].pushes())
    plan = proxy.arm(ids[1], "drop")
    check(plan.done.wait(30), "the push whose reply is lost never came")
    check(plan.replies[0][0] == 0, "not applied: %r" % plan.replies)
    applied = plan.seq
    check(counter(recorded_seq(1)) >= counter(applied),
          "Redis did not record the push whose reply was lost")
    later = wait_for(lambda: [x for x in pushers[1].pushes()[n:]
                              if x["full"]], 30,
                     "store 1's pusher to push again after the lost reply")
    check(pushers[1].proc.poll() is None, "store 1's pusher died")
    log("store 1: reply to a call lost after Redis applied it; the same "
        "pusher pushed every key again (%d changed)" % later[0]["changed"])

    # --- 3. a late duplicate -------------------------------------------------
    step = "late duplicate"
    n = len(pushers[2].pushes())
    held = proxy.arm(ids[2], "hold")
    check(held.done.wait(30), "store 2's push never came to be held")
    wait_for(lambda: counter(recorded_seq(2) or "0:") > counter(held.seq),
             30, "a newer push of store 2")
    log("store 2: %d calls held back, connection cut; the pusher pushed "
        "again" % len(held.held))

    # --- 4. redis-server restarted without persistence ----------------------
    step = "redis restart"
    proxy.refuse = True
    proxy.close_all()
    srv.kill()
    srv.start()
    redis_client()
    check(R.cmd("DBSIZE") == 0, "Redis kept data across the restart")
    marks = {i: len(p.pushes()) for i, p in pushers.items()}
    proxy.refuse = False
    for i, p in pushers.items():
        wait_for(lambda: [x for x in p.pushes()[marks[i]:] if x["full"]],
                 30, "store %d's full push after the restart" % i)
    log("redis-server killed and started again empty; every store pushed "
        "in full")

    # --- the writers stop: totals must be exact --------------------------------
    step = "final totals"
    time.sleep(0.2)  # a little more counting after the restart
    expected = {}
    total_adds = 0
    for w in writers:
        w.send_signal(signal.SIGTERM)
        out, _ = w.communicate(timeout=30)
        check(w.returncode == 0, "a writer failed")
        for line in out.decode().splitlines():
            k, v = line.split()
            if k == "adds":
                total_adds += int(v)
                continue
            key = b"" if k == "-" else bytes.fromhex(k)
            expected[key] = wrap(expected.get(key, 0) + int(v))
    log("writers stopped: %d adds to %d keys" % (total_adds, len(expected)))
    check(b"big" in expected and b"" in expected and b"nul\0key" in expected,
          "the odd keys were not all written")
    want = {k: str(v).encode() for k, v in expected.items()}

    def producers_match():
        for i in range(STORES):
            rec = R.hgetall("{%s}:prod:%s" % (PREFIX, ids[i]))
            vals = store_values(stores[i])
            if rec != {k: str(v).encode() for k, v in vals.items()}:
                return "store %d: its record in Redis differs from it" % i
        return None

    marks = {i: len(p.pushes()) for i, p in pushers.items()}
    for i, p in pushers.items():
        p.wait_pushes(marks[i] + 2)
    got = R.hgetall("{%s}:total" % PREFIX)
    bad = [(k, got.get(k), want[k]) for k in want if got.get(k) != want[k]]
    check(not bad and len(got) == len(want),
          "after the running pushers: %d keys wrong, e.g. %r; %d extra" %
          (len(bad), bad[:3], len(got) - len(want)))
    check(producers_match() is None, producers_match())
    log("running pushers: %d fleet totals exact" % len(want))

    # the held calls of step 3 arrive now: refused, nothing changes
    step = "late duplicate delivered"
    before = {k: R.hgetall(k) for k in R.cmd("KEYS", "*")}
    replies = held.release(srv.port)
    check(all(isinstance(r, list) and r[0] == 1 for r in replies),
          "late calls not refused as stale: %r" % replies)
    after = {k: R.hgetall(k) for k in R.cmd("KEYS", "*")}
    check(before == after, "the late calls changed Redis")
    log("store 2: the %d held calls arrived late: refused as stale, "
        "nothing changed" % len(replies))

    step = "SIGTERM and --once"
    for i, p in pushers.items():
        check(p.term() == 0, "store %d's pusher: exit status on SIGTERM" % i)
    for i in range(STORES):
        r = subprocess.run([TALLY, "push", stores[i], "--redis",
                            "127.0.0.1:%d" % srv.port, "--once", "-v",
                            "--prefix", PREFIX], capture_output=True)
        check(r.returncode == 0, "push --once: %r" % r.stderr)
    got = R.hgetall("{%s}:total" % PREFIX)
    check(got == want, "after --once: totals differ")
    check(producers_match() is None, producers_match())
    log("after SIGTERM and --once: %d fleet totals exact" % len(want))
except AssertionError as e:
    fail(str(e))
except Exception as e:  # a broken test is a failure too, with cleanup
    fail("%s: %s" % (type(e).__name__, e))

cleanup()
print("push_faults: ok")
