#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""sk-proxy as a user runs it, in front of the real sk-echo-server and of Python
upstreams that show what arrives (a FIN) and when (never).

    test_proxy.py TEST BACKEND --proxy PATH --echo PATH [the other example args]

TEST is relay (200 clients x 1 MiB through sk-echo-server, and a unix upstream),
edges (half-close both ways; an upstream that refuses or never answers), flow
(100 clients over unix sockets that do not read: they are stopped, the proxy's
memory stays bounded, no byte is lost) or churn (10,000 connections: no
descriptor, thread or process left).
Loads are divided by SK_TEST_SCALE (valgrind). Loopback, ephemeral ports and a
temporary directory only; every wait is bounded; every process is stopped.
"""
import argparse
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from uring_check import skip_unless_uring

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from test_examples import PROCS, WAIT, Proc, check, free_port, ok  # noqa: E402

SCALE = max(1, int(os.environ.get('SK_TEST_SCALE', '1')))
SLACK = 1 if SCALE == 1 else 3  # time limits under valgrind
MiB = 1 << 20


class Started(Proc):
    """An example server in its own process group (fork's children die with
    it), run under SK_EXAMPLE_WRAPPER (valgrind) if set; waits for its ready line."""

    def __init__(self, binary, *options, backend='epoll-et', listen='127.0.0.1:0', ready=''):
        wrapper = os.environ.get('SK_EXAMPLE_WRAPPER', '').split()
        super().__init__([*wrapper, binary, '--listen', listen, '--backend', backend, *options],
                         stdin=subprocess.DEVNULL, group=True)
        self.binary = binary
        m = self.expect(rf'^listening on (\S+) backend=(\S+){ready}$')
        self.addr = m.group(1)
        check(m.group(2) == backend, f'backend is {m.group(2)}, not {backend}')
        if self.addr.startswith('127.0.0.1:'):
            self.port = int(self.addr.split(':')[1])

    def name(self):
        return os.path.basename(self.binary)

    def stop(self, stderr_ok=False):
        """A graceful stop on SIGTERM: exit status 0, nothing on stderr unless
        the test expected it."""
        os.kill(self.p.pid, signal.SIGTERM)
        rc = self.wait()
        check(rc == 0, f'{self.name()} exited with {rc}; stderr {self.err!r}')
        check(stderr_ok or not self.err, f'{self.name()} wrote to stderr: {self.err!r}')


def proxy(args, backend, to, *options):
    return Started(args.proxy, '--to', to, *options, backend=backend,
                   ready=' to=' + re.escape(to))


def connect(port, timeout=WAIT):
    return socket.create_connection(('127.0.0.1', port), timeout=timeout)


def recv_all(sock, size=None):
    """Read until end of file (or size bytes); the bytes."""
    got = bytearray()
    while size is None or len(got) < size:
        chunk = sock.recv(min(1 << 18, size - len(got)) if size else 1 << 18)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def run_threads(fn, count, concurrency):
    """Call fn(i) for i in range(count) on `concurrency` threads; re-raise the
    first failure."""
    failures, lock, next_i = [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                if failures or next_i[0] >= count:
                    return
                i = next_i[0]
                next_i[0] += 1
            try:
                fn(i)
            except BaseException as e:  # noqa: BLE001 (reported below)
                with lock:
                    failures.append(f'#{i}: {type(e).__name__}: {e}')
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 45
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in threads), f'{fn.__name__}: threads still running')
    check(not failures, f'{fn.__name__}: {len(failures)} failed; first {failures[:1]}')


def echo_through(port, data):
    """Send data through the proxy to an echo server while reading; check that
    exactly data comes back, then end of file (the FIN went both ways)."""
    with connect(port) as s:
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)),
                                  daemon=True)
        sender.start()
        got = recv_all(s)
        sender.join(WAIT)
    check(len(got) == len(data), f'{len(got)} bytes back, not {len(data)}')
    check(got == data, 'the bytes differ')


# ---- relay: many clients at once, byte-exact; a unix upstream ------------------

def relay(args, backend):
    echo = Started(args.echo)
    prx = proxy(args, backend, echo.addr)
    clients, size = 200 // SCALE, MiB // SCALE
    blocks = [os.urandom(size) for _ in range(clients)]
    t0 = time.monotonic()
    run_threads(lambda i: echo_through(prx.port, blocks[i]), clients, 20)
    ok(f'proxy on {backend}: {clients} clients x {size >> 10} KiB through sk-echo-server,'
       f' 20 at a time, byte-exact ({time.monotonic() - t0:.2f} s)')
    prx.stop()
    echo.stop()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 's')
        echo = Started(args.echo, listen=f'unix:{path}')
        prx = proxy(args, backend, f'unix:{path}')
        run_threads(lambda i: echo_through(prx.port, blocks[i]), 4, 4)
        prx.stop()
        echo.stop()
    ok(f'proxy on {backend}: to a unix upstream (--to unix:PATH), byte-exact')


# ---- edges: half-close both ways; an upstream that refuses or never answers ----

class Upstream:
    """A Python upstream on an ephemeral port: the test holds its sockets."""

    def __init__(self, backlog=16, unix=None):
        self.sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET)
        self.sock.bind(unix or ('127.0.0.1', 0))
        self.sock.listen(backlog)
        self.sock.settimeout(WAIT)
        self.addr = f'unix:{unix}' if unix else '127.0.0.1:%d' % self.sock.getsockname()[1]

    def accept(self):
        conn = self.sock.accept()[0]
        conn.settimeout(WAIT)
        return conn

    def close(self):
        self.sock.close()


def fin_passes(prx, up, backend, tail, first):
    """One side (first) sends and shuts its write side: the other gets the
    bytes, then EOF, and can still send tail back, which arrives whole."""
    client = connect(prx.port)
    server = up.accept()
    a, b = (client, server) if first == 'client' else (server, client)
    other = 'upstream' if first == 'client' else 'client'
    a.sendall(b'request')
    a.shutdown(socket.SHUT_WR)
    check(recv_all(b) == b'request', f'the {other} did not get the bytes, then EOF')
    b.sendall(b'after your FIN ' + tail)
    b.close()
    check(recv_all(a) == b'after your FIN ' + tail, f'the {first} missed the answer')
    a.close()
    ok(f'proxy on {backend}: the {first}\'s FIN reaches the {other}, whose'
       f' {len(tail) >> 10} KiB still reach the {first}')


def half_close(args, backend):
    up = Upstream()
    prx = proxy(args, backend, up.addr)
    tail = os.urandom(256 << 10)
    for first in ('client', 'upstream'):
        fin_passes(prx, up, backend, tail, first)
    prx.stop()
    up.close()


def closed_within(port, limit, what):
    """Connect, send a little, and check the proxy closes us within limit s."""
    t0 = time.monotonic()
    with connect(port, timeout=limit + 2) as s:
        s.sendall(b'anyone there?')
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b''
        except socket.timeout:
            raise AssertionError(f'{what}: still open after {limit + 2} s') from None
    took = time.monotonic() - t0
    check(got == b'', f'{what}: the client received {got!r}')
    check(took < limit, f'{what}: closed after {took:.2f} s, not within {limit} s')
    return took


def upstream_down(args, backend):
    port = free_port()
    prx = proxy(args, backend, f'127.0.0.1:{port}')
    took = closed_within(prx.port, 1 * SLACK, 'refused')
    wait_stderr(prx, f'sk-proxy: 127.0.0.1:{port}: connection refused')
    ok(f'proxy on {backend}: upstream refuses: the client is closed in {took:.2f} s;'
       f' "{prx.err.decode().strip()}"')
    prx.stop(stderr_ok=True)

    # A listener with a full accept queue drops new SYNs: a connect never completes.
    up = Upstream(backlog=0)
    fillers = fill_backlog(up)
    prx = proxy(args, backend, up.addr, '--connect-timeout', '300')
    took = closed_within(prx.port, 0.3 + 1 * SLACK, 'no answer')
    check(took >= 0.25, f'no answer: closed after {took:.2f} s, before --connect-timeout 300')
    wait_stderr(prx, f'sk-proxy: {up.addr}: ')
    ok(f'proxy on {backend}: upstream never answers: the client is closed in {took:.2f} s'
       f' (--connect-timeout 300); "{prx.err.decode().strip()}"')
    prx.stop(stderr_ok=True)
    for f in fillers:
        f.close()
    up.close()


def fill_backlog(up):
    """Connect to up until a connect does not complete: its queue is full."""
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        fillers.append(s)
        s.connect_ex(up.sock.getsockname())
        if not select.select([], [s], [], 0.3)[1]:
            return fillers
    raise AssertionError('the accept queue of a backlog-0 listener never filled')


def wait_stderr(p, text, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while text.lower() not in p.err.decode(errors='replace').lower():
        check(time.monotonic() < deadline, f'{text!r} not on stderr: {p.err!r}')
        time.sleep(0.02)


def edges(args, backend):
    half_close(args, backend)
    upstream_down(args, backend)


# ---- flow: clients that never read; the proxy pauses instead of buffering ------

def blocking_echo(up, stop):
    """Serve up as an echo that reads only when its last answer is sent, so it
    pushes back on the proxy as a slow upstream does."""
    def serve(conn):
        with conn:
            try:
                while not stop.is_set():
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                pass

    up.sock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn = up.sock.accept()[0]
        except socket.timeout:
            continue
        except OSError:  # closed by the test
            return
        conn.settimeout(None)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def sanitized(pid):
    """The process runs under ASan or TSan, whose allocators (redzones,
    quarantine, shadow memory) are most of what it holds."""
    try:
        with open(f'/proc/{pid}/maps') as f:
            return any('libasan' in line or 'libtsan' in line for line in f)
    except OSError:
        return False


def memory_kib(pgid):
    """Proportional set size of every process in the group (shared pages
    counted once), in KiB."""
    total = 0
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f'/proc/{pid}/smaps_rollup') as f:
                total += next(int(line.split()[1]) for line in f if line.startswith('Pss:'))
        except (OSError, StopIteration, IndexError, ValueError):
            pass  # the process is gone
    return total


def unix_connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(WAIT)
    s.connect(path)
    return s


def flow(args, backend):
    """Unix sockets on both sides: their kernel buffers are fixed (about 200
    KiB), while loopback TCP's grow to several MiB per socket and would hold
    the flood instead of the proxy."""
    tmp = tempfile.TemporaryDirectory()
    up = Upstream(unix=os.path.join(tmp.name, 'up'))
    stop = threading.Event()
    threading.Thread(target=blocking_echo, args=(up, stop), daemon=True).start()
    listen = os.path.join(tmp.name, 'proxy')
    max_buffer = 65536
    prx = Started(args.proxy, '--to', up.addr, '--max-buffer', str(max_buffer), backend=backend,
                  listen=f'unix:{listen}', ready=' to=' + re.escape(up.addr))
    clients, size = 100 // SCALE, 2 * MiB
    socks = [unix_connect(listen) for _ in range(clients)]
    for s in socks:  # every pair made: an answer comes back on each
        s.sendall(b'x')
    for s in socks:
        check(s.recv(1) == b'x', 'no echo through a new pair')
    idle = memory_kib(prx.p.pid)

    blocks = [os.urandom(size) for _ in range(clients)]
    sent = [0] * clients

    def flood(i):
        """Send until blocked for half a second (or all of it); never read."""
        s, data = socks[i], memoryview(blocks[i])
        s.settimeout(0.5)
        try:
            while sent[i] < size:
                sent[i] += s.send(data[sent[i]:sent[i] + 65536])
        except socket.timeout:
            pass
    t0 = time.monotonic()
    run_threads(flood, clients, clients)
    peak = max(memory_kib(prx.p.pid) for _ in range(5) if not time.sleep(0.1))
    grew = (peak - idle) / 1024
    # What the issue asks: under 16 MiB for 100 pairs (each direction holds
    # --max-buffer at most, and pthread and fork have a read buffer per pair).
    bound = 16 * clients / 100
    ok(f'proxy on {backend}: {clients} clients sent {sum(sent) / MiB:.1f} MiB without'
       f' reading, each stopped after {min(sent) >> 10} to {max(sent) >> 10} KiB; the'
       f' proxy\'s memory grew {grew:.1f} MiB (bound {bound:.1f}) with --max-buffer'
       f' {max_buffer} ({time.monotonic() - t0:.2f} s)')
    check(max(sent) < size, 'a client was never stopped: the proxy did not pause it')
    # Under valgrind or a sanitizer the tool's own memory is the larger part:
    # the bound is the library's, checked in the plain builds.
    if SCALE == 1 and not sanitized(prx.p.pid):
        check(grew < bound, f'the proxy grew by {grew:.1f} MiB, not under {bound:.1f}')

    def drain(i):
        socks[i].settimeout(WAIT)
        got = recv_all(socks[i], sent[i])
        check(got == blocks[i][:sent[i]], f'client {i}: {len(got)} of {sent[i]} bytes exact')
    run_threads(drain, clients, clients)
    for s in socks:
        s.close()
    ok(f'proxy on {backend}: then every client read all it sent, exact: no pair was dropped')
    prx.stop()
    stop.set()
    up.close()
    tmp.cleanup()


# ---- churn: many short connections leave nothing behind ------------------------

def census(pid):
    """Descriptors, threads and processes of the proxy's group."""
    fds = len(os.listdir(f'/proc/{pid}/fd'))
    with open(f'/proc/{pid}/status') as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith('Threads:'))
    procs = 0
    for p in os.listdir('/proc'):
        try:
            with open(f'/proc/{p}/stat') as f:
                procs += int(f.read().rsplit(')', 1)[1].split()[2]) == pid
        except (OSError, ValueError, IndexError):
            pass
    return {'fds': fds, 'threads': threads, 'processes': procs}


def cycle(port, i):
    with connect(port) as s:
        msg = b'cycle %d\n' % i
        s.sendall(msg)
        check(recv_all(s, len(msg)) == msg, f'cycle {i}: echo differs')
        if i % 2:  # every other client resets instead of closing
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))


def churn(args, backend):
    echo = Started(args.echo)
    prx = proxy(args, backend, echo.addr)
    run_threads(lambda i: cycle(prx.port, i), 20, 4)  # warm up
    before = settled(prx.p.pid, None)
    count = 10000 // (SCALE * SCALE)
    if backend == 'fork' and sanitized(prx.p.pid):
        # A fork of an AddressSanitizer process copies its shadow's page
        # tables: 10,000 of them take about the 45 s a run may last. The
        # plain builds run the full count.
        count //= 4
    t0 = time.monotonic()
    run_threads(lambda i: cycle(prx.port, i), count, 8)
    took = time.monotonic() - t0
    after = settled(prx.p.pid, before)
    check(after == before, f'after {count} connections: {after}, before: {before}')
    ok(f'proxy on {backend}: {count} connect/send/receive/close (or reset) cycles in'
       f' {took:.2f} s; then as before: {after}')
    prx.stop()
    echo.stop()


def settled(pid, want, timeout=10):
    """The census once it stops changing (or equals want)."""
    deadline = time.monotonic() + timeout
    last = census(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = census(pid)
        if now == want or (want is None and now == last):
            return now
        last = now
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('test', choices=['relay', 'edges', 'flow', 'churn'])
    ap.add_argument('backend')
    ap.add_argument('--proxy', required=True)
    ap.add_argument('--echo', required=True)
    args, _ = ap.parse_known_args()
    skip_unless_uring(args.echo, getattr(args, 'backend', None))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError('test')))
    signal.alarm(55 * min(SCALE, 8))
    try:
        {'relay': relay, 'edges': edges, 'flow': flow, 'churn': churn}[args.test](args,
                                                                                  args.backend)
    finally:
        signal.alarm(0)
        for p in PROCS:
            p.kill()


if __name__ == '__main__':
    sys.exit(main())
