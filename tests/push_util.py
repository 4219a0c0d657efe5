"""push_util.py - what the 'tally push' tests share (push_basic.py,
push_faults.py; standard library only):

  resp_parse, Redis      a minimal RESP client, independent of tally's
  RedisServer            a redis-server of the test's own on a free
                         loopback port, no persistence, in a temp dir
  Proxy                  a TCP proxy between pushers and Redis that can
                         break one producer's push in chosen ways
  Pusher                 a 'tally push' process whose --verbose lines
                         are read as they come
  skip_unless_ready      exit 77 without redis-server or hiredis
"""
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

INT64 = 1 << 64


def wrap(v):
    """v as int64, wrapped in two's complement (as tally's values are)."""
    v %= INT64
    return v - INT64 if v >= 1 << 63 else v


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, what):
    """Polls cond() until it is true; raises with what after timeout s."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out (%g s) waiting for %s" %
                                 (timeout, what))
        time.sleep(0.01)


def skip_unless_ready(name, tally):
    if shutil.which("redis-server") is None:
        print("%s: skip: redis-server not found (apt-get install "
              "redis-server, or scripts/setup-deps.sh)" % name)
        sys.exit(77)
    r = subprocess.run([tally, "push", "x", "--redis", "127.0.0.1:1"],
                       capture_output=True, text=True)
    if "built without hiredis" in r.stderr:
        print("%s: skip: tally was built without hiredis (apt-get install "
              "libhiredis-dev)" % name)
        sys.exit(77)


# ---- RESP ------------------------------------------------------------------

class RespError(Exception):
    pass


def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_parse(buf, pos=0):
    """One RESP value from buf at pos: (value, next pos), or None when buf
    does not hold all of it yet. Errors come back as RespError objects."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    t, line, p = buf[pos:pos + 1], bytes(buf[pos + 1:end]), end + 2
    if t == b"+":
        return line.decode(), p
    if t == b"-":
        return RespError(line.decode(errors="replace")), p
    if t == b":":
        return int(line), p
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, p
        if len(buf) < p + n + 2:
            return None
        return bytes(buf[p:p + n]), p + n + 2
    if t == b"*":
        n = int(line)
        if n < 0:
            return None, p
        items = []
        for _ in range(n):
            r = resp_parse(buf, p)
            if r is None:
                return None
            items.append(r[0])
            p = r[1]
        return items, p
    raise ValueError("not RESP: %r" % bytes(buf[pos:pos + 40]))


class Redis:
    """A blocking RESP client: cmd(*args) returns the reply, raises
    RespError for an error reply."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = bytearray()

    def read(self):
        while True:
            r = resp_parse(self.buf)
            if r is not None:
                del self.buf[:r[1]]
                return r[0]
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.buf += data

    def cmd(self, *args):
        self.sock.sendall(resp_encode(args))
        v = self.read()
        if isinstance(v, RespError):
            raise v
        return v

    def hgetall(self, key):
        """A hash as {field bytes: value bytes}."""
        v = self.cmd("HGETALL", key)
        return {v[i]: v[i + 1] for i in range(0, len(v), 2)}

    def close(self):
        self.sock.close()


class RedisServer:
    """redis-server on a loopback port of its own: no RDB, no AOF, its
    files in dir. start() waits until it answers PING."""

    def __init__(self, workdir, port=None):
        self.dir = workdir
        self.port = port or free_port()
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--protected-mode", "yes"],
            stdout=log, stderr=log)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited (%s); see %s" %
                                     (self.proc.returncode,
                                      os.path.join(self.dir, "redis.log")))
            try:
                c = Redis(self.port, 1)
                ok = c.cmd("PING") == "PONG"
                c.close()
                return ok
            except OSError:
                return False
        wait_for(up, 20, "redis-server to answer")

    def client(self):
        return Redis(self.port)

    def kill(self):
        """kill -9: the data (none persisted) is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    stop = kill


# ---- the proxy ---------------------------------------------------------------

class Plan:
    """What the proxy does to the first push command (EVALSHA) of one
    producer on any connection, and to everything after it there:

      'cut'   forwards that command, then half of the next one's bytes,
              then nothing more; holds back every reply from it on. done
              is set when Redis has answered that first command (so it
              was applied); the test then kills the pusher (-9).
      'drop'  forwards everything; when Redis's reply to that command
              arrives, closes both sides without passing it on: a reply
              lost after Redis applied the batch. done is set then.
      'hold'  keeps that command and every complete one after it, sends
              none, and closes the connection (the pusher sees it drop);
              release() sends the kept commands late, after newer pushes,
              on a new connection, and returns Redis's replies. done is
              set when it has closed the connection.
    """

    def __init__(self, kind, after):
        self.kind = kind
        self.after = after    # only connections accepted after this many
        self.done = threading.Event()
        self.replies = []     # Redis's replies the client never got
        self.held = []        # 'hold': the raw commands kept back
        self.load = None      # 'hold': the SCRIPT LOAD the pusher sent
        self.seq = None       # the push sequence of the first command

    def release(self, port):
        """'hold': sends the kept commands to the Redis at port now (after
        the pusher's SCRIPT LOAD, in case Redis lost its scripts); the
        replies to the kept commands."""
        c = Redis(port)
        c.sock.sendall(self.load + b"".join(self.held))
        out = [c.read() for _ in range(1 + len(self.held))]
        c.close()
        if isinstance(out[0], RespError):
            raise out[0]
        return out[1:]


class Proxy:
    """A TCP proxy on a free loopback port in front of Redis at
    upstream_port, one thread per connection. arm(id, kind) sets a Plan
    for a producer's next push; arm(id, kind, fresh=True) only for one on
    a connection accepted after the call: a pusher killed just before
    may have left a push in the socket that the proxy has not read yet,
    and that one must not take the plan (its connection ends at once, so
    the plan would never be done). refuse turns connections away
    (accepted, closed at once); close_all() breaks every open
    connection."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.plans = {}
        self.conns = set()
        self.accepted = 0  # connections accepted so far
        self.load = None  # the last SCRIPT LOAD command seen
        self.refuse = False
        self.closing = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def arm(self, producer, kind, fresh=False):
        with self.lock:
            plan = Plan(kind, self.accepted if fresh else 0)
            self.plans[producer] = plan
        return plan

    def close_all(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.shut()

    def stop(self):
        self.closing = True
        self.lsock.close()
        self.close_all()

    def _accept(self):
        while not self.closing:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            if self.refuse:
                s.close()
                continue
            with self.lock:
                self.accepted += 1
                c = _Conn(self, s, self.accepted)
                self.conns.add(c)
            threading.Thread(target=c.run, daemon=True).start()

    def _take_plan(self, producer, serial):
        with self.lock:
            plan = self.plans.get(producer)
            if plan is None or serial <= plan.after:
                return None
            return self.plans.pop(producer)


class _Conn:
    def __init__(self, proxy, client, serial):
        self.proxy = proxy
        self.client = client
        self.serial = serial  # 1 for the first connection accepted
        self.server = None
        self.closed = False
        self.plan = None
        self.act = None       # index of the command the plan started at
        self.sent = 0         # commands forwarded to Redis
        self.replies = 0      # replies read from Redis
        self.cut = 0          # 'cut': 1 after the first command, 2 after
                              # half of the next

    def shut(self):
        self.closed = True
        for s in (self.client, self.server):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def run(self):
        try:
            self.server = socket.create_connection(
                ("127.0.0.1", self.proxy.upstream), 5)
        except OSError:
            self.client.close()
            self._forget()
            return
        cbuf, sbuf = bytearray(), bytearray()
        try:
            while not self.closed:
                socks = [self.client, self.server]
                r, _, _ = select.select(socks, [], [], 0.05)
                if self.client in r:
                    data = self.client.recv(1 << 16)
                    if not data:
                        break
                    cbuf += data
                    self._from_client(cbuf)
                if self.server in r:
                    data = self.server.recv(1 << 16)
                    if not data:
                        break
                    sbuf += data
                    if not self._from_server(sbuf):
                        break
        except OSError:
            pass
        finally:
            self.server.close()
            self.client.close()
            self._forget()

    def _forget(self):
        with self.proxy.lock:
            self.proxy.conns.discard(self)

    def _from_client(self, cbuf):
        """Forwards (or not) every complete command in cbuf."""
        while cbuf:
            if self.cut == 2:  # after the cut: everything is swallowed
                cbuf.clear()
                return True
            if self.cut == 1:
                # half of the next command (of what is here of it, if it
                # is still arriving): Redis gets a command it never ends
                r = resp_parse(cbuf)
                n = r[1] if r is not None else len(cbuf)
                self.server.sendall(bytes(cbuf[:max(1, n // 2)]))
                cbuf.clear()
                self.cut = 2
                return True
            r = resp_parse(cbuf)
            if r is None:
                return True
            args, end = r
            raw = bytes(cbuf[:end])
            del cbuf[:end]
            if isinstance(args, list) and len(args) == 3 and \
                    args[0].upper() == b"SCRIPT":
                self.proxy.load = raw
            if self.plan is None and isinstance(args, list) and \
                    len(args) >= 12 and args[0].upper() == b"EVALSHA":
                plan = self.proxy._take_plan(args[11].decode(),
                                             self.serial)
                if plan is not None:
                    self.plan, self.act = plan, self.sent
                    plan.seq = args[8].decode()
            if self.plan is None or self.plan.kind == "drop":
                self._send(raw)
            elif self.plan.kind == "cut":
                self._send(raw)  # the first command: whole
                self.cut = 1
            else:  # 'hold': keep it and every complete one after it
                self.plan.held.append(raw)
                while True:
                    r = resp_parse(cbuf)
                    if r is None:
                        break
                    self.plan.held.append(bytes(cbuf[:r[1]]))
                    del cbuf[:r[1]]
                self.plan.load = self.proxy.load
                self.closed = True
                self.plan.done.set()
                return True
        return True

    def _send(self, raw):
        self.server.sendall(raw)
        self.sent += 1

    def _from_server(self, sbuf):
        """Passes on replies to commands before the plan's; handles the
        rest as the plan says. False: close the connection."""
        while True:
            r = resp_parse(sbuf)
            if r is None:
                return True
            value, end = r
            raw = bytes(sbuf[:end])
            del sbuf[:end]
            i = self.replies
            self.replies += 1
            if self.plan is None or i < self.act:
                self.client.sendall(raw)
                continue
            self.plan.replies.append(value)
            if i == self.act:
                self.plan.done.set()
                if self.plan.kind == "drop":
                    return False


# ---- a running 'tally push' --------------------------------------------------

class Pusher:
    """'tally push FILE --redis ... -v' in the background. Its stdout lines
    go to a queue; pushes() counts the "keys=" lines seen so far."""

    def __init__(self, tally, store, port, *opts, log=None):
        self.args = [tally, "push", store, "--redis", "127.0.0.1:%d" % port,
                     "--verbose"] + list(opts)
        self.lines = []
        self.lock = threading.Lock()
        err = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=err, text=True)
        if log:
            err.close()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def pushes(self):
        with self.lock:
            return [parse_push_line(l) for l in self.lines
                    if " keys=" in l]

    def wait_pushes(self, n, timeout=30, what=None):
        """Waits until at least n pushes have been reported in all."""
        return wait_for(lambda: len(self.pushes()) >= n and self.pushes(),
                        timeout, what or "%d pushes from %s" %
                        (n, " ".join(self.args[1:3])))

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.reader.join(5)

    def term(self, timeout=30):
        """SIGTERM: it pushes once more and exits; its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.reader.join(5)
        return rc


def parse_push_line(line):
    """'tally push: FILE: keys=3 sent=1 ...' as a dict of ints (ms float)."""
    out = {}
    for f in line.split():
        if "=" in f:
            k, v = f.split("=", 1)
            out[k] = float(v) if k == "ms" else int(v)
    return out


def store_id(tally, store):
    """A store's id (32 hex digits), from 'tally export'."""
    r = subprocess.run([tally, "export", store, "--format", "json"],
                       capture_output=True, text=True, check=True)
    i = r.stdout.index('"store_id":"') + len('"store_id":"')
    return r.stdout[i:i + 32]
