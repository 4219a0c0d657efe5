"""serve_http.py - 'tally serve' over HTTP: content negotiation with
byte-exact Content-Types, HEAD, gzip, the index page, errors, keep-alive,
concurrent and abandoned scrapes, a store that changes while served, the
family options, a port in use, usage errors, and a clean exit 0 on SIGTERM
and SIGINT.

  serve_http.py TALLY SERVE_WRITER [--no-gzip]

--no-gzip: tally was built without zlib, so it must never compress.

Every server it starts listens on 127.0.0.1 port 0 (a free port, printed
by tally serve) and is stopped at the end, also on failure. Exits 77
(skipped) when tally was built without libmicrohttpd or /usr/bin/python3
lacks prometheus_client; 1 on the first failed check.
"""
import gzip
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TALLY, WRITER = sys.argv[1], sys.argv[2]
HAVE_GZIP = "--no-gzip" not in sys.argv[3:]
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
               "application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

try:
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_om)
    from prometheus_client.parser import (
        text_string_to_metric_families as parse_text)
except ImportError:
    print("serve_http: skip: /usr/bin/python3 has no prometheus_client "
          "(apt-get install python3-prometheus-client)")
    sys.exit(77)

procs = []
tmp = tempfile.mkdtemp(prefix="tally-serve-http-")


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def fail(msg):
    print("serve_http: FAIL: " + msg, file=sys.stderr)
    cleanup()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def writer(store, *args):
    r = subprocess.run([WRITER, store] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "serve_writer %s: %s" % (args, r.stderr))


def serve(store, *opts):
    """Starts tally serve; returns (process, port)."""
    p = subprocess.Popen([TALLY, "serve", store, "--listen", "127.0.0.1:0"]
                         + list(opts), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    procs.append(p)
    line = p.stdout.readline()
    if not line.startswith("listening on http://127.0.0.1:"):
        p.kill()
        fail("tally serve did not start: %r %s" % (line, p.stderr.read()))
    port = int(line.rsplit(":", 1)[1].split("/")[0])
    return p, port


def stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        fail("tally serve did not stop within 10 s of %s" % sig.name)
    check(rc == 0, "tally serve exited %d after %s" % (rc, sig.name))


def get(port, path="/metrics", method="GET", headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    if conn is None:
        c.close()
    return r, body


def samples(body, fmt):
    """{key label: value} of the tally family, parsed by prometheus_client,
    checking the format's framing on the way."""
    text = body.decode("utf-8")
    check(text.endswith("\n"), "no trailing newline")
    if fmt == "om":
        check(text.endswith("# EOF\n") and text.count("# EOF") == 1,
              "OpenMetrics body without exactly one final # EOF")
        fams = list(parse_om(text))
    else:
        check("# EOF" not in text, "# EOF in a text 0.0.4 body")
        fams = list(parse_text(text))
    out = {}
    for f in fams:
        for s in f.samples:
            out[s.labels.get("key", s.labels.get("route"))] = s.value
    return out, fams


if subprocess.run([TALLY, "serve", "/nonexistent"], capture_output=True,
                  text=True).stderr.find("built without") >= 0:
    print("serve_http: skip: tally was built without libmicrohttpd")
    sys.exit(77)

try:
    store = os.path.join(tmp, "s.tally")
    want = {"a": 1, "/api/users": 5, 'quote"': 2, "back\\\\slash": 3,
            "caf\u00e9": 4, "\\xff": 6, "neg": 0}
    writer(store, "put", b"a".hex(), 1)
    writer(store, "put", b"/api/users".hex(), 5)
    writer(store, "put", b'quote"'.hex(), 2)
    writer(store, "put", b"back\\slash".hex(), 3)
    writer(store, "put", "caf\u00e9".encode().hex(), 4)
    writer(store, "put", b"\xff".hex(), 6)
    writer(store, "put", b"neg".hex(), -3)

    p, port = serve(store, "--name", "http_test", "--help-text",
                    "Test counters.", "--label", "env=test")

    # -- negotiation: the default, Prometheus's header, and the rest ------
    r, body = get(port)
    check(r.status == 200, "GET /metrics: %d" % r.status)
    check(r.getheader("Content-Type") == TEXT,
          "default Content-Type %r" % r.getheader("Content-Type"))
    check(r.getheader("Content-Encoding") is None, "gzip without asking")
    check("Accept" in (r.getheader("Vary") or ""), "no Vary: Accept")
    got, fams = samples(body, "text")
    check(got == want, "text samples %r, want %r" % (got, want))
    check(fams[0].name == "http_test" and fams[0].type == "counter",
          "family %s %s" % (fams[0].name, fams[0].type))
    check(b'# HELP http_test_total Test counters.\n' in body, "HELP line")
    check(b'http_test_total{env="test",key="a"} 1\n' in body,
          "constant label: %r" % body[:300])
    text_body = body

    r, body = get(port, headers={"Accept": PROM_ACCEPT})
    check(r.getheader("Content-Type") == OM,
          "Prometheus's Accept gave %r" % r.getheader("Content-Type"))
    got, fams = samples(body, "om")
    check(got == want, "OpenMetrics samples %r" % got)
    check(b"# TYPE http_test counter\n" in body, "OpenMetrics TYPE line")

    cases = [
        ("text/plain;version=0.0.4", TEXT),
        ("application/openmetrics-text", OM),
        ("APPLICATION/OPENMETRICS-TEXT; version=1.0.0", OM),
        ("application/openmetrics-text;q=0.2, text/plain;q=0.5", TEXT),
        ("text/plain;q=0.5, application/openmetrics-text;q=0.5", OM),
        ("application/openmetrics-text;q=0", TEXT),
        ("*/*", TEXT),
        ("application/json", TEXT),
        ("", TEXT),
    ]
    for accept, ctype in cases:
        r, _ = get(port, headers={"Accept": accept})
        check(r.getheader("Content-Type") == ctype,
              "Accept %r gave %r, want %r"
              % (accept, r.getheader("Content-Type"), ctype))
    r, body = get(port, "/metrics?format=text",
                  headers={"Accept": PROM_ACCEPT})
    check(r.getheader("Content-Type") == TEXT, "?format=text")
    r, body = get(port, "/metrics?format=openmetrics")
    check(r.getheader("Content-Type") == OM, "?format=openmetrics")
    r, body = get(port, "/metrics?format=xml")
    check(r.status == 400, "?format=xml: %d" % r.status)

    # -- HEAD: the headers of GET, no body -----------------------------------
    r, body = get(port, method="HEAD", headers={"Accept": PROM_ACCEPT})
    check(r.status == 200 and body == b"", "HEAD: %d %r" % (r.status, body))
    check(r.getheader("Content-Type") == OM, "HEAD Content-Type")

    # -- gzip ---------------------------------------------------------------------
    for enc, zipped in [("gzip", True), ("gzip, deflate", True),
                        ("x-gzip", True), ("*", True),
                        ("gzip;q=0", False), ("identity", False),
                        ("*;q=0.5, gzip;q=0", False), ("br", False)]:
        zipped = zipped and HAVE_GZIP
        r, body = get(port, headers={"Accept-Encoding": enc})
        check((r.getheader("Content-Encoding") == "gzip") == zipped,
              "Accept-Encoding %r: Content-Encoding %r"
              % (enc, r.getheader("Content-Encoding")))
        plain = gzip.decompress(body) if zipped else body
        check(sorted(plain.split(b"\n")) == sorted(text_body.split(b"\n")),
              "Accept-Encoding %r: body differs" % enc)
    r, body = get(port, headers={"Accept-Encoding": "gzip",
                                 "Accept": PROM_ACCEPT})
    got, _ = samples(gzip.decompress(body) if HAVE_GZIP else body, "om")
    check(got == want and r.getheader("Content-Type") == OM, "gzip + OM")

    # -- the index page, unknown paths, other methods ------------------------
    r, body = get(port, "/")
    check(r.status == 200 and r.getheader("Content-Type") ==
          "text/html; charset=utf-8", "GET /: %d" % r.status)
    check(b'href="/metrics"' in body and b"7 keys" in body,
          "index page: %r" % body)
    r, _ = get(port, "/nope")
    check(r.status == 404, "GET /nope: %d" % r.status)
    r, _ = get(port, "/metrics", method="POST")
    check(r.status == 405 and r.getheader("Allow") == "GET, HEAD",
          "POST: %d %r" % (r.status, r.getheader("Allow")))

    # -- keep-alive: several requests on one connection ------------------------
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(3):
        r, body = get(port, conn=c)
        check(r.status == 200 and samples(body, "text")[0] == want,
              "request %d on one connection" % i)
    c.close()

    # -- the store changes while served: each scrape reads it afresh ---------
    writer(store, "put", b"a".hex(), 41)
    writer(store, "put", b"new key".hex(), 7)
    got, _ = samples(get(port)[1], "text")
    check(got.get("a") == 42 and got.get("new key") == 7,
          "after adds: %r" % got)
    stop(p, signal.SIGTERM)

    # -- options: --gauge shows the signed value; --key-label -----------------
    p, port = serve(store, "--gauge", "--key-label", "route", "-n", "g")
    r, body = get(port)
    got, fams = samples(body, "text")
    check(fams[0].type == "gauge" and fams[0].name == "g", "--gauge family")
    check(got.get("neg") == -3, "--gauge: neg is %r" % got.get("neg"))
    check(b'g{route="a"} 42\n' in body, "--key-label: %r" % body[:200])
    stop(p, signal.SIGINT)

    # -- a big store: streamed, concurrent scrapes, an abandoned one ----------
    big = os.path.join(tmp, "big.tally")
    writer(big, "fill", 50000)
    p, port = serve(big)
    results = []

    def scrape_big(accept):
        r, body = get(port, headers={"Accept": accept,
                                     "Accept-Encoding": "gzip"})
        got, _ = samples(gzip.decompress(body) if HAVE_GZIP else body,
                         "om" if "openmetrics" in accept else "text")
        results.append(len(got) == 50006 and
                       sum(got.values()) == 3 * 50000 * 49999 // 2 + 21)

    # A client that reads a little and goes away: the server ends that
    # render and goes on serving the others.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    check(len(s.recv(4096)) > 0, "abandoned scrape got nothing")
    s.close()
    threads = [threading.Thread(target=scrape_big, args=(a,))
               for a in [PROM_ACCEPT, "text/plain", PROM_ACCEPT, "*/*"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(results == [True] * 4, "concurrent big scrapes: %r" % results)

    # An idle connection does not hold the server up at SIGTERM.
    idle = socket.create_connection(("127.0.0.1", port))
    t0 = time.time()
    stop(p, signal.SIGTERM)
    check(time.time() - t0 < 5, "SIGTERM took %.1f s" % (time.time() - t0))
    idle.close()

    # -- errors at start: a port in use, no store, not a store -----------------
    p, port = serve(store)
    r = subprocess.run([TALLY, "serve", store, "--listen",
                        "127.0.0.1:%d" % port], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 1 and "Address already in use" in r.stderr and
          r.stderr.count("\n") == 1,
          "port in use: exit %d, %r" % (r.returncode, r.stderr))
    stop(p)
    r = subprocess.run([TALLY, "serve", os.path.join(tmp, "absent")],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "No such file" in r.stderr,
          "absent store: %d %r" % (r.returncode, r.stderr))
    notstore = os.path.join(tmp, "notstore")
    with open(notstore, "w") as f:
        f.write("hello\n" * 1000)
    r = subprocess.run([TALLY, "serve", notstore, "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "not a tally store" in r.stderr,
          "not a store: %d %r" % (r.returncode, r.stderr))

    # -- usage: exit 2, one line on stderr, nothing on stdout -----------------
    for args in [[], [store, "extra"], [store, "--listen", "x"],
                 [store, "--listen", "127.0.0.1:99999"],
                 [store, "--listen", "::1:80"], [store, "--name", "a-b"],
                 [store, "--name", "_x"], [store, "--key-label", "__k"],
                 [store, "--label", "noequals"], [store, "--label", "1=a"],
                 [store, "--label", "key=a"], [store, "--help-text", ""],
                 [store, "--frob"], [store, "--listen"]]:
        r = subprocess.run([TALLY, "serve"] + args, capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 2 and r.stdout == "" and
              r.stderr.count("\n") == 1 and
              r.stderr.startswith("tally serve: "),
              "serve %r: exit %d, %r" % (args, r.returncode, r.stderr))
    r = subprocess.run([TALLY, "serve", "--help"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("usage: tally serve"),
          "serve --help")
    r = subprocess.run([TALLY, "help", "serve"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("usage: tally serve"),
          "help serve")
finally:
    cleanup()
print("serve_http: ok")
