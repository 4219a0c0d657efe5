"""serve_prometheus.py - tally serve scraped by a real Prometheus while
three processes count into the store; Prometheus must end up with exactly
the counts the writers report.

  serve_prometheus.py TALLY SERVE_WRITER

1. Starts 'tally serve' on a free loopback port, and 'prometheus' (a
   temporary config and data directory, a free loopback port) scraping it
   every second twice over: job "om" on /metrics (Prometheus asks for
   OpenMetrics) and job "text" on /metrics?format=text (text 0.0.4).
2. Starts three serve_writer processes that count into the store for
   about three seconds (50 keys "k<i>" and six odd keys: a quote, a
   backslash, a newline, UTF-8, an invalid byte, a NUL), each printing
   how many adds it made to each key.
3. When they have exited, waits until both jobs have a scrape that
   started after that (the timestamp of their samples), then asks
   Prometheus's HTTP API, once: for each job, every series' value must be
   exactly the writers' count for its key (the key decoded from its label
   value as tally.h section 6 says), the sum must be their total, and
   both jobs must be up with no scrape errors.

Every process is stopped at the end, also on failure. Exits 77 (skipped)
with a message when prometheus is missing or tally lacks libmicrohttpd.
Takes about 10 s.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

TALLY, WRITER = sys.argv[1], sys.argv[2]
WRITERS, KEYS, ADDS, SECONDS = 3, 50, 200000, 3.0

if shutil.which("prometheus") is None:
    print("serve_prometheus: skip: prometheus not found (apt-get install "
          "prometheus, or scripts/setup-deps.sh)")
    sys.exit(77)
if "built without" in subprocess.run([TALLY, "serve", "/nonexistent"],
                                     capture_output=True, text=True).stderr:
    print("serve_prometheus: skip: tally was built without libmicrohttpd")
    sys.exit(77)

procs = []
tmp = tempfile.mkdtemp(prefix="tally-e2e-")


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def fail(msg):
    print("serve_prometheus: FAIL: " + msg, file=sys.stderr)
    for name in ("prometheus.log", "serve.err"):
        path = os.path.join(tmp, name)
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                print("--- %s (last lines):\n%s" % (name, "".join(
                    f.readlines()[-20:])), file=sys.stderr)
    cleanup()
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_key(value):
    """A key's bytes from its label value (tally.h section 6)."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] != "\\":
            out += value[i].encode("utf-8")
            i += 1
        elif value[i + 1] == "\\":
            out += b"\\"
            i += 2
        else:
            out.append(int(value[i + 2:i + 4], 16))
            i += 4
    return bytes(out)


def api(port, query):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (
        port, urllib.parse.urlencode({"query": query}))
    with urllib.request.urlopen(url, timeout=10) as r:
        data = json.load(r)
    if data.get("status") != "success":
        fail("query %r: %r" % (query, data))
    return data["data"]["result"]


try:
    store = os.path.join(tmp, "e2e.tally")
    # The store exists before tally serve opens it (read-only).
    subprocess.run([WRITER, store, "put", b"k0".hex(), "0"], check=True)

    serve_err = open(os.path.join(tmp, "serve.err"), "w")
    serve = subprocess.Popen([TALLY, "serve", store, "--listen",
                              "127.0.0.1:0", "--name", "tally_e2e"],
                             stdout=subprocess.PIPE, stderr=serve_err,
                             text=True)
    procs.append(serve)
    line = serve.stdout.readline()
    if not line.startswith("listening on http://127.0.0.1:"):
        fail("tally serve did not start: %r" % line)
    serve_port = int(line.rsplit(":", 1)[1].split("/")[0])

    # Prometheus on a free port (another process may take it between the
    # probe and prometheus's bind: then try another).
    for attempt in range(3):
        prom_port = free_port()
        data_dir = os.path.join(tmp, "data%d" % attempt)
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: om
    static_configs: [{targets: ['127.0.0.1:%d']}]
  - job_name: text
    params: {format: [text]}
    static_configs: [{targets: ['127.0.0.1:%d']}]
""" % (serve_port, serve_port))
        log = open(os.path.join(tmp, "prometheus.log"), "w")
        prom = subprocess.Popen(
            ["prometheus", "--config.file=" + config,
             "--storage.tsdb.path=" + data_dir,
             "--web.listen-address=127.0.0.1:%d" % prom_port,
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        procs.append(prom)
        ready = False
        for _ in range(200):
            if prom.poll() is not None:
                break
            try:
                with urllib.request.urlopen(
                        "http://127.0.0.1:%d/-/ready" % prom_port,
                        timeout=1) as r:
                    ready = r.status == 200
            except OSError:
                pass
            if ready:
                break
            time.sleep(0.1)
        if ready:
            break
    else:
        fail("prometheus did not become ready")

    # Three writers count while Prometheus scrapes.
    writers = [subprocess.Popen([WRITER, store, "count", str(KEYS),
                                 str(ADDS), str(SECONDS), str(seed)],
                                stdout=subprocess.PIPE, text=True)
               for seed in range(1, WRITERS + 1)]
    procs.extend(writers)
    want, total = {}, 0
    for w in writers:
        out, _ = w.communicate(timeout=60)
        if w.returncode != 0:
            fail("a writer exited %d" % w.returncode)
        for line in out.splitlines():
            k, n = line.split()
            if k == "total":
                total += int(n)
            else:
                key = b"" if k == "-" else bytes.fromhex(k)
                want[key] = want.get(key, 0) + int(n)
    want[b"k0"] = want.get(b"k0", 0)  # created at 0 before the writers
    if total != WRITERS * ADDS or sum(want.values()) != total:
        fail("writers report %d adds (%d by key), want %d"
             % (total, sum(want.values()), WRITERS * ADDS))
    done = time.time()

    # Wait for a scrape of each job that started after the writers ended.
    deadline = time.time() + 20
    while True:
        r = api(prom_port, "min by (job) (timestamp(tally_e2e_total))")
        seen = {s["metric"]["job"]: float(s["value"][1]) for s in r}
        if len(seen) == 2 and min(seen.values()) > done:
            break
        if time.time() > deadline:
            fail("no scrape after the writers ended: %r" % seen)
        time.sleep(0.2)

    for job in ("om", "text"):
        series = api(prom_port, 'tally_e2e_total{job="%s"}' % job)
        got = {decode_key(s["metric"]["key"]): int(float(s["value"][1]))
               for s in series}
        if got != want:
            diff = {k: (got.get(k), want.get(k))
                    for k in set(got) | set(want) if got.get(k) != want.get(k)}
            fail("job %s: Prometheus differs from the writers: %r"
                 % (job, diff))
        s = api(prom_port, 'sum(tally_e2e_total{job="%s"})' % job)
        if int(float(s[0]["value"][1])) != total:
            fail("job %s: sum %s, want %d" % (job, s[0]["value"][1], total))
        up = api(prom_port, 'up{job="%s"}' % job)
        if up[0]["value"][1] != "1":
            fail("job %s not up" % job)
        n = api(prom_port, 'scrape_samples_scraped{job="%s"}' % job)
        if int(n[0]["value"][1]) != len(want):
            fail("job %s: %s samples scraped, want %d"
                 % (job, n[0]["value"][1], len(want)))
        print("serve_prometheus: job %s: %d series, sum %d == %d adds by %d "
              "writers" % (job, len(got), total, WRITERS * ADDS, WRITERS))

    # tally serve stops cleanly.
    serve.send_signal(signal.SIGTERM)
    if serve.wait(timeout=10) != 0:
        fail("tally serve exited %d on SIGTERM" % serve.returncode)
finally:
    cleanup()
print("serve_prometheus: ok")
