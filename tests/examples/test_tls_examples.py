#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The example programs over TLS, driven the way a user drives them: the real
binaries against openssl s_client, socat's OPENSSL address, Python's ssl module
and sk-chat --tls.

    test_tls_examples.py TEST [BACKEND] --echo PATH --upper PATH --chat-server PATH
                         --chat PATH --proxy PATH --project-version X.Y.Z

TEST is echo (s_client and socat through sk-echo-server, socat through
sk-upper-server), chat (two sk-chat --tls in one room), proxy (sk-proxy terminating
TLS, and originating it), reload (SIGHUP with good, untrusted and bad files; and
10 reloads under load) or errors (bad files, bad certificates named by sk-chat, a
plaintext client). The certificates are made at run time by tests/tls/make-certs.sh
in a temporary directory. Loads are divided by SK_TEST_SCALE (valgrind).
Loopback and ephemeral ports only; every wait is bounded; every process is stopped.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from uring_check import skip_unless_uring

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from test_examples import PROCS, WAIT, Proc, check, fails, join, ok, run  # noqa: E402
from test_proxy import Started  # noqa: E402

SCALE = max(1, int(os.environ.get('SK_TEST_SCALE', '1')))
MiB = 1 << 20
MAKE_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tls',
                          'make-certs.sh')


class Certs:
    """The certificates of make-certs.sh, in a temporary directory: certs.ca,
    certs.pem('server'), certs.key('server')."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='sk-tls-ex-')
        subprocess.run(['sh', MAKE_CERTS, self.dir], check=True, timeout=WAIT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ca = self.pem('ca')

    def pem(self, name):
        return os.path.join(self.dir, name + '.pem')

    def key(self, name):
        return os.path.join(self.dir, name + '.key')

    def tls(self, name='server'):
        """The server options for certificate name."""
        return ['--tls-cert', self.pem(name), '--tls-key', self.key(name)]

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_server(binary, certs, backend, name='server', *options):
    return Started(binary, *certs.tls(name), *options, backend=backend, ready=' tls=on')


def socat_tls(port, certs, *options):
    """A verifying socat client of 127.0.0.1:port (or one with options instead)."""
    extra = ','.join(options or (f'cafile={certs.ca}', 'commonname=localhost'))
    return ['socat', '-t', '10', '-', f'OPENSSL:127.0.0.1:{port},{extra}']


def s_client(port, certs):
    return ['openssl', 's_client', '-connect', f'127.0.0.1:{port}', '-servername',
            'localhost', '-CAfile', certs.ca, '-verify_return_error', '-quiet']


def s_client_echo(port, certs, data):
    """Send data through openssl s_client (-quiet ignores the end of its input, so
    it is stopped once all the bytes are back); the bytes it printed."""
    p = Proc(s_client(port, certs))
    threading.Thread(target=lambda: p.send(data), daemon=True).start()
    deadline = time.monotonic() + WAIT * 2
    with p.cv:
        while len(p.out) < len(data) and p.p.poll() is None:
            left = deadline - time.monotonic()
            check(left > 0, f's_client: {len(p.out)} of {len(data)} bytes back in time')
            p.cv.wait(min(left, 0.2))
    check(p.p.poll() is None, f's_client exited with {p.p.returncode}: {p.err!r}')
    p.kill()
    return bytes(p.out)


def at_once(clients):
    """Run {name: (function, expected bytes)} on threads; check every result."""
    results = {}
    threads = [threading.Thread(target=lambda k=k, f=f: results.__setitem__(k, f()),
                                daemon=True) for k, (f, _) in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    for name, (_, want) in clients.items():
        got = results.get(name)
        check(got is not None, f'{name} did not finish')
        check(len(got) == len(want), f'{name}: {len(got)} bytes back, not {len(want)}')
        check(got == want, f'{name}: the bytes differ')


# ---- echo and upper over TLS -------------------------------------------------------

def echo(args, backend, certs):
    small, big = os.urandom(64 * 1024 // SCALE), os.urandom(MiB // SCALE)
    srv = tls_server(args.echo, certs, backend)
    t0 = time.monotonic()
    at_once({
        's_client': (lambda: s_client_echo(srv.port, certs, small), small),
        'socat': (lambda: run(socat_tls(srv.port, certs), big, WAIT * 2), big),
    })
    srv.stop()
    ok(f'sk-echo-server tls on {backend}: {len(small)} bytes through s_client and {len(big)}'
       f' through socat at once, exact ({time.monotonic() - t0:.2f} s)')

    srv = tls_server(args.upper, certs, backend)
    t0 = time.monotonic()
    got = run(socat_tls(srv.port, certs), big, WAIT * 2)
    check(got == big.upper(), f'sk-upper-server: {len(got)} bytes back, not the uppercase')
    srv.stop()
    ok(f'sk-upper-server tls on {backend}: {len(big)} bytes uppercased through socat'
       f' ({time.monotonic() - t0:.2f} s)')


# ---- chat: two sk-chat --tls ------------------------------------------------------

def chat(args, backend, certs):
    srv = tls_server(args.chat_server, certs, backend)
    people = {}
    argv = [args.chat, '--connect', f'localhost:{srv.port}', '--tls', '--ca', certs.ca]
    alice = join(people, 'alice', argv)
    bob = join(people, 'bob', argv)
    ok(f'chat tls on {backend}: two sk-chat --tls joined; joins and nicks announced')
    alice.send('hello over tls\n')
    bob.expect(r'^alice: hello over tls$')
    bob.send('and back\n')
    alice.expect(r'^bob: and back$')
    for c in (alice, bob):
        c.close_stdin()
        check(c.wait() == 0, f'sk-chat exited with {c.p.returncode}: {c.err!r}')
    srv.stop()
    ok(f'chat tls on {backend}: lines reach the other; end of input leaves; clean stop')


# ---- proxy: terminating TLS, originating TLS ------------------------------------

def proxy(args, backend, certs):
    data = os.urandom(MiB // SCALE)
    up = Started(args.echo, backend=backend)
    prx = Started(args.proxy, '--to', up.addr, *certs.tls(), backend=backend,
                  ready=' tls=on to=' + re.escape(up.addr) + '.*')
    got = run(socat_tls(prx.port, certs), data, WAIT * 2)
    check(got == data, f'terminating: {len(got)} bytes back, not the {len(data)} sent')
    prx.stop()
    up.stop()
    ok(f'sk-proxy on {backend} terminates TLS before a plain echo: {len(data)} bytes exact')

    up = tls_server(args.echo, certs, backend)
    # The connect timeout covers the upstream handshake: slow under valgrind.
    slow = ['--connect-timeout', '20000'] if SCALE > 1 else []
    prx = Started(args.proxy, '--to', up.addr, '--to-ca', certs.ca, '--to-name', 'localhost',
                  *slow, backend=backend, ready=' to=' + re.escape(up.addr) + '.*')
    got = run(['socat', '-t', '10', '-', f'TCP:{prx.addr}'], data, WAIT * 2)
    check(got == data, f'originating: {len(got)} bytes back, not the {len(data)} sent;'
          f' sk-proxy said {prx.err!r}')
    ok(f'sk-proxy on {backend} originates TLS to a TLS echo: {len(data)} bytes exact')

    both = Started(args.proxy, '--to', prx.addr, *certs.tls(), backend=backend,
                   ready=' tls=on to=' + re.escape(prx.addr) + '.*')
    got = run(socat_tls(both.port, certs), data, WAIT * 2)
    check(got == data, f'chained: {len(got)} bytes back, not the {len(data)} sent')
    for p in (both, prx, up):
        p.stop()
    ok(f'sk-proxy on {backend}: socat -TLS-> proxy -plain-> proxy -TLS-> echo, exact')


# ---- reload: SIGHUP ---------------------------------------------------------------

def install(certs, name):
    """Copy certificate name over the files the server was started with."""
    shutil.copyfile(certs.pem(name), certs.pem('served'))
    shutil.copyfile(certs.key(name), certs.key('served'))


def reload(srv, what='certificates reloaded'):
    """SIGHUP; wait for one more line saying what."""
    before = srv.err.count(what.encode())
    os.kill(srv.p.pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while srv.err.count(what.encode()) <= before:
        check(time.monotonic() < deadline, f'{what!r} not on stderr: {srv.err!r}')
        time.sleep(0.02)


def py_client(port, certs, data, verify=True):
    """One TLS connection from Python's ssl module: send data, read it back to
    the end of file; (bytes, the server's certificate in DER)."""
    ctx = ssl.create_default_context(cafile=certs.ca)
    if not verify:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(('127.0.0.1', port), timeout=WAIT) as raw:
        with ctx.wrap_socket(raw, server_hostname='localhost') as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(data)
            got = bytearray()
            while len(got) < len(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    return bytes(got), der


def der_of(certs, name):
    with open(certs.pem(name)) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def reload_test(args, backend, certs):
    install(certs, 'server')
    srv = Started(args.echo, *certs.tls('served'), backend=backend, ready=' tls=on')
    old = Proc(socat_tls(srv.port, certs))
    old.send('before\n')
    old.expect(r'^before$')

    install(certs, 'self')
    reload(srv)
    old.send('after\n')
    old.expect(r'^after$')
    ok(f'reload on {backend}: "certificates reloaded"; a connection made before works on')

    p = Proc(s_client(srv.port, certs), stdin=subprocess.DEVNULL)
    try:
        rc = p.wait()
    except subprocess.TimeoutExpired:
        raise AssertionError('a verifying s_client connected to the self-signed server')
    check(rc != 0, 's_client -verify_return_error exited 0 against the self-signed server')
    got, der = py_client(srv.port, certs, b'x', verify=False)
    check(der == der_of(certs, 'self'), 'the new connection did not get self.pem')
    ins = Proc([args.chat, '--connect', f'localhost:{srv.port}', '--tls', '--insecure'])
    ins.send('insecure hello\n')
    ins.expect(r'^insecure hello$')
    ins.close_stdin()
    check(ins.wait() == 0, f'sk-chat --insecure exited with {ins.p.returncode}: {ins.err!r}')
    data = os.urandom(64 * 1024)
    check(run(socat_tls(srv.port, certs, 'verify=0'), data) == data, 'socat verify=0: differ')
    ok(f'reload on {backend}: new verifying clients fail (s_client exit {rc}); sk-chat'
       ' --insecure and socat verify=0 work, and see self.pem')

    with open(certs.pem('server')) as f:
        text = f.read()
    with open(certs.pem('served'), 'w') as f:
        f.write(text[:len(text) // 2])
    reload(srv, 'kept the old certificates')
    line = [x for x in srv.err.decode().splitlines() if 'kept the old' in x][-1]
    check(run(socat_tls(srv.port, certs, 'verify=0'), data) == data, 'after a bad reload')
    old.send('still\n')
    old.expect(r'^still$')
    ok(f'reload on {backend}: a truncated file is refused ({line}); connections still work')

    install(certs, 'server')
    reload(srv)
    stop, counts, failures = threading.Event(), {'ok': 0}, []

    def load():
        i = 0
        while not stop.is_set():
            i += 1
            data = os.urandom(1024)
            try:
                got, _ = py_client(srv.port, certs, data)
                check(got == data, f'connection {i}: {len(got)} bytes back, not the bytes sent')
                counts['ok'] += 1
            except Exception as e:  # noqa: BLE001 (reported below)
                failures.append(f'#{i}: {type(e).__name__}: {e}')
    t = threading.Thread(target=load, daemon=True)
    t.start()
    t0 = time.monotonic()
    for i in range(10):
        name = ('server2', 'server')[i % 2]
        install(certs, name)
        reload(srv)
        _, der = py_client(srv.port, certs, b'y')
        check(der == der_of(certs, name), f'reload {i + 1}: a new connection did not get {name}')
        time.sleep(0.05)
    stop.set()
    t.join(WAIT)
    check(not t.is_alive(), 'the load thread did not stop')
    check(not failures, f'{len(failures)} connections failed under reloads; first {failures[:1]}')
    check(counts['ok'] >= 10, f'only {counts["ok"]} connections during the reloads')
    old.send('end\n')
    old.expect(r'^end$')
    old.close_stdin()
    old.wait()
    srv.stop(stderr_ok=True)
    ok(f'reload on {backend}: 10 reloads (server2/server) under load: {counts["ok"]}'
       f' connections, none failed; each reload served the new certificate'
       f' ({time.monotonic() - t0:.2f} s)')


# ---- errors -------------------------------------------------------------------------

def one_line(err, what):
    check(err.count('\n') == 1, f'{what}: not one line: {err!r}')
    return err.strip()


def errors(args, certs):
    missing = os.path.join(certs.dir, 'missing.pem')
    err = fails([args.echo, '--tls-cert', missing, '--tls-key', certs.key('server')], 1,
                missing)
    ok(f'missing cert: {one_line(err, "missing cert")}')
    err = fails([args.echo, '--tls-cert', certs.dir, '--tls-key', certs.key('server')], 1,
                certs.dir)
    ok(f'unreadable cert (a directory): {one_line(err, "unreadable cert")}')
    err = fails([args.echo, '--tls-cert', certs.pem('server'), '--tls-key',
                 certs.key('server2')], 1, certs.key('server2'), 'mismatch')
    ok(f'key that does not match: {one_line(err, "mismatch")}')
    err = fails([args.echo, '--tls-cert', certs.pem('server')], 2, '--tls-cert and --tls-key')
    fails([args.upper, '--tls-key', certs.key('server')], 2, '--tls-cert and --tls-key')
    ok(f'--tls-cert without --tls-key (and the reverse), exit 2: {one_line(err, "alone")}')

    for name, needle in (('expired', 'expired'), ('wronghost', 'another host'),
                         ('self', 'not trusted')):
        srv = tls_server(args.chat_server, certs, 'epoll-et', name)
        err = fails([args.chat, '--connect', f'localhost:{srv.port}', '--tls', '--ca', certs.ca],
                    1, needle, f'localhost:{srv.port}')
        srv.stop()
        ok(f'sk-chat --tls against {name}: {one_line(err, name)}')

    err = fails([args.proxy, '--to', '127.0.0.1:1', '--to-ca', missing], 1, missing)
    ok(f'sk-proxy --to-ca missing: {one_line(err, "--to-ca")}')

    srv = tls_server(args.echo, certs, 'epoll-et')
    nc = Proc(['nc', '-N', '127.0.0.1', srv.port])
    nc.send('hello in plaintext\n')
    nc.close_stdin()
    rc = nc.wait()  # bounded: the server drops it
    check(b'hello in plaintext' not in nc.out, 'the plaintext was echoed')
    data = os.urandom(64 * 1024)
    check(run(socat_tls(srv.port, certs), data) == data, 'after a plaintext client: differ')
    srv.stop()
    ok(f'a plaintext nc on the TLS port is dropped (exit {rc}, {len(nc.out)} bytes back);'
       ' the next TLS client is served')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('test', choices=['echo', 'chat', 'proxy', 'reload', 'errors'])
    ap.add_argument('backend', nargs='?', default='epoll-et')
    for option in ('--echo', '--upper', '--chat-server', '--chat', '--proxy',
                   '--project-version'):
        ap.add_argument(option, required=True)
    args = ap.parse_args()
    skip_unless_uring(args.echo, getattr(args, 'backend', None))
    for tool, package in (('socat', 'socat'), ('nc', 'netcat-openbsd'), ('openssl', 'openssl')):
        if not shutil.which(tool):
            sys.exit(f'{tool} is needed: apt-get install {package}')
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError('test')))
    signal.alarm(55)
    certs = Certs()
    try:
        if args.test == 'echo':
            echo(args, args.backend, certs)
        elif args.test == 'chat':
            chat(args, args.backend, certs)
        elif args.test == 'proxy':
            proxy(args, args.backend, certs)
        elif args.test == 'reload':
            reload_test(args, args.backend, certs)
        else:
            errors(args, certs)
    finally:
        signal.alarm(0)
        for p in PROCS:
            p.kill()
        certs.remove()


if __name__ == '__main__':
    main()
