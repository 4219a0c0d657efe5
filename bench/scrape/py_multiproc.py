"""py_multiproc.py - the peer for tally serve: Python prometheus_client in
multiprocess mode (Debian's python3-prometheus-client), the way users
expose counters that several processes update.

  py_multiproc.py fill DIR N PROCS
      PROCS processes (started at once) each add 1 to each of N keys of
      one Counter ("/api/v1/item/<7 digits>", as scrape-bench), with
      PROMETHEUS_MULTIPROC_DIR=DIR: one file per process, N entries each.
  py_multiproc.py scrape DIR REPS N PROCS
      REPS times: a fresh registry with a MultiProcessCollector over DIR
      and generate_latest() - what the process answering /metrics does on
      each scrape, without the HTTP. Prints the median and min ms, the
      bytes, and checks the samples: N keys, each PROCS.

Exit status 1 when a check fails.
"""
import os
import statistics
import sys
import time


def fill_one(d, n):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    from prometheus_client import Counter
    c = Counter("py_requests", "Requests by item.", ["key"])
    for i in range(n):
        c.labels(key="/api/v1/item/%07d" % i).inc()


def fill(d, n, procs):
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            try:
                fill_one(d, n)
            finally:
                os._exit(0)
        pids.append(pid)
    ok = True
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        ok = ok and status == 0
    return ok


def scrape(d, reps, n, procs):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client import multiprocess
    times, out = [], b""
    for _ in range(reps):
        t0 = time.perf_counter()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=d)
        out = generate_latest(registry)
        times.append(time.perf_counter() - t0)
    samples = total = 0
    for line in out.decode("utf-8").splitlines():
        if line.startswith("py_requests_total{"):
            samples += 1
            total += float(line.rsplit(" ", 1)[1])
    ok = samples == n and total == n * procs
    print("python_multiproc keys=%d procs=%d median_ms=%.1f min_ms=%.1f "
          "bytes=%d samples=%d %s"
          % (n, procs, statistics.median(times) * 1e3, min(times) * 1e3,
             len(out), samples, "ok" if ok else "WRONG"))
    return ok


def main():
    a = sys.argv
    if len(a) == 5 and a[1] == "fill":
        ok = fill(a[2], int(a[3]), int(a[4]))
    elif len(a) == 6 and a[1] == "scrape":
        ok = scrape(a[2], int(a[3]), int(a[4]), int(a[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if ok else 1)


main()
