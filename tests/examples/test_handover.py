#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Restarting the example servers without losing a connection, the way an
operator does it: the real binaries, replaced under load.

    test_handover.py TEST [BACKEND [WORKERS]] --echo PATH --upper PATH
                     --chat-server PATH --chat PATH --proxy PATH --project-version X.Y.Z

TEST is
  replace   8 clients loop connect / send 64 random bytes / read the echo /
            close while sk-echo-server is replaced 20 times through
            --handover: no failure of any kind, every echo exact, each old
            server exits 0 by itself, no process or socket file left;
  inherit   the same (fewer replacements) when the first server was started
            by systemd-socket-activate (no --listen), and with --listen fd:N;
  drain     a chat conversation that spans a handover stays with the old
            server until it ends, or until --grace-timeout (then the stop's
            words); SIGQUIT drains, a second SIGQUIT stops;
  refuse    a successor of another uid is refused (root only: setpriv),
            a wrong fd:N, a stale handover socket file, a regular file.
Replacements are divided by SK_TEST_SCALE (valgrind), to 4 at least.
Loopback and ephemeral ports only; every wait is bounded; every process is
stopped, and killed with its process group if the test fails.
"""
import argparse
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

from uring_check import skip_unless_uring

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from test_examples import PROCS, WAIT, Proc, check, fails, join, ok  # noqa: E402

SCALE = max(1, int(os.environ.get('SK_TEST_SCALE', '1')))
REPLACEMENTS = max(4, 20 // SCALE)
CLIENTS = 8
# What systemd-socket-activate writes to the stderr it passes on.
ACTIVATE_SAYS = ('Listening on ', 'Communication attempt on fd', 'Execing ')


class Server(Proc):
    """An example server in its own process group; waits for its ready line."""

    def __init__(self, argv, pass_fds=(), prefix=(), first_client=None):
        wrapper = os.environ.get('SK_EXAMPLE_WRAPPER', '').split()  # valgrind.sh sets it
        self.binary = argv[0]
        self.argv = [str(a) for a in (*prefix, *wrapper, *argv)]
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True,
                                  pass_fds=pass_fds)
        self.group = True
        self.out, self.err, self.lines = bytearray(), bytearray(), []
        self.cv = threading.Condition()
        self.readers = [threading.Thread(target=self._pump, args=(f, b), daemon=True)
                        for f, b in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.readers:
            t.start()
        PROCS.append(self)
        if first_client:  # started on demand: by a first connection
            first_client(self)
        m = self.expect(r'^listening on (\S+) backend=(\S+)', timeout=WAIT * SCALE)
        self.addr = m.group(1)
        self.port = int(self.addr.rsplit(':', 1)[1])

    def name(self):
        return os.path.basename(self.binary)

    def exits_by_itself(self, what):
        """Exit status 0 without being told, the one ready line, no stderr."""
        try:
            rc = self.wait(WAIT * SCALE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f'{what}: {self.name()} did not exit by itself') from None
        check(rc == 0, f'{what}: {self.name()} exited with {rc}; stderr {self.err!r}')
        check(len(self.text().splitlines()) == 1, f'{what}: printed {self.text()!r}')
        err = [line for line in self.err.decode('latin-1').splitlines()
               if not line.startswith(ACTIVATE_SAYS)]
        check(not err, f'{what}: {self.name()} wrote to stderr: {err!r}')

    def stop(self, signo=signal.SIGTERM):
        os.kill(self.p.pid, signo)
        self.exits_by_itself(f'signal {signo}')


class Load:
    """CLIENTS threads looping connect / 64 bytes / echo / close, counting
    every exchange and every failure (refused, reset, early close, timeout,
    wrong bytes)."""

    def __init__(self, port):
        self.port, self.done, self.failures = port, 0, []
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _loop(self):
        while self.running:
            data = os.urandom(64)
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=10) as s:
                    s.sendall(data)
                    got = b''
                    while len(got) < len(data):
                        chunk = s.recv(len(data) - len(got))
                        if not chunk:
                            raise ConnectionError(f'closed after {len(got)} bytes')
                        got += chunk
                    if got != data:
                        raise ValueError('the echo differs')
                with self.lock:
                    self.done += 1
            except (OSError, ValueError) as e:
                with self.lock:
                    self.failures.append(f'{type(e).__name__}: {e}')

    def count(self):
        with self.lock:
            return self.done

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(WAIT * SCALE)
            check(not t.is_alive(), 'a client thread hangs')
        check(not self.failures, f'{len(self.failures)} failures, the first: {self.failures[:3]}')
        return self.done


def echo_argv(args, backend, workers, path, *more):
    argv = [args.echo, '--backend', backend, '--handover', path, *more]
    if workers:
        argv += ['--workers', str(workers)]
        if backend.startswith('epoll'):
            argv += ['--reuse', 'addr+port']  # a SO_REUSEPORT listener per reactor
    return argv


def replace_under_load(args, backend, workers, first, path, times):
    """Replace the running server `times` times under the client load; the
    last server, still running."""
    current = first
    load = Load(first.port)
    for i in range(times):
        before = load.count()
        deadline = time.monotonic() + WAIT * SCALE
        while load.count() < before + CLIENTS and time.monotonic() < deadline:
            time.sleep(0.005)  # some traffic on each server
        nxt = Server(echo_argv(args, backend, workers, path, '--listen', '127.0.0.1:0'))
        check(nxt.addr == first.addr, f'replacement {i + 1}: took {nxt.addr}, not {first.addr}')
        current.exits_by_itself(f'replacement {i + 1}')
        current = nxt
    deadline = time.monotonic() + WAIT * SCALE
    before = load.count()
    while load.count() < before + CLIENTS and time.monotonic() < deadline:
        time.sleep(0.005)
    done = load.stop()
    return current, done


def check_left(tmp, what):
    left = os.listdir(tmp)
    check(not left, f'{what}: left in the directory: {left}')


def replace(args, backend, workers):
    with tempfile.TemporaryDirectory(prefix='sk-handover-') as tmp:
        path = os.path.join(tmp, 'handover')
        first = Server(echo_argv(args, backend, workers, path, '--listen', '127.0.0.1:0'))
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, 'the handover socket is not 0600')
        t0 = time.monotonic()
        last, done = replace_under_load(args, backend, workers, first, path, REPLACEMENTS)
        last.stop()
        check_left(tmp, 'after the last stop')
        ok(f'{backend} workers={workers}: replaced {REPLACEMENTS} times under {CLIENTS} '
           f'looping clients: {done} exchanges, 0 failures, every old server exited 0 by '
           f'itself ({time.monotonic() - t0:.1f} s)')


def inherit(args, backend):
    times = max(2, REPLACEMENTS // 4)
    if not shutil.which('systemd-socket-activate'):
        print('SKIP: systemd-socket-activate is missing (apt-get install systemd)')
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix='sk-handover-') as tmp:
        path = os.path.join(tmp, 'handover')
        # systemd-socket-activate binds, and starts the server with the socket
        # on descriptor 3 (LISTEN_FDS): no --listen.
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        def connect_once(server):
            """systemd-socket-activate starts the server at the first connection."""
            deadline = time.monotonic() + WAIT
            while b'Listening on' not in server.err and time.monotonic() < deadline:
                time.sleep(0.01)
            with socket.create_connection(('127.0.0.1', port), timeout=WAIT * SCALE) as c:
                c.sendall(b'first')
                check(c.recv(5) == b'first', 'the first connection was not served')

        first = Server(echo_argv(args, backend, 0, path),
                       prefix=['systemd-socket-activate', '-l', f'127.0.0.1:{port}'],
                       first_client=connect_once)
        check(first.port == port, f'socket activation: serves {first.addr}, not port {port}')
        last, done = replace_under_load(args, backend, 0, first, path, times)
        last.stop()
        check_left(tmp, 'socket activation')
        ok(f'{backend}: started by systemd-socket-activate, replaced {times} times: '
           f'{done} exchanges, 0 failures')

        lsock = socket.create_server(('127.0.0.1', 0))
        fd = lsock.fileno()
        first = Server(echo_argv(args, backend, 0, path, '--listen', f'fd:{fd}'), pass_fds=(fd,))
        check(first.port == lsock.getsockname()[1], f'fd:{fd}: serves {first.addr}')
        lsock.close()  # the server's now
        last, done = replace_under_load(args, backend, 0, first, path, times)
        last.stop()
        check_left(tmp, 'fd:N')
        ok(f'{backend}: started with --listen fd:{fd}, replaced {times} times: '
           f'{done} exchanges, 0 failures')


def drain(args, backend):
    with tempfile.TemporaryDirectory(prefix='sk-handover-') as tmp:
        path = os.path.join(tmp, 'handover')
        chat = [args.chat_server, '--backend', backend, '--handover', path,
                '--listen', '127.0.0.1:0']
        old = Server([*chat, '--grace-timeout', '0'])  # no limit: until they leave
        people = {}
        alice = join(people, 'alice', [args.chat, '--connect', old.addr])
        bob = join(people, 'bob', ['nc', '-N', '127.0.0.1', str(old.port)])
        new = Server(chat)
        check(new.addr == old.addr, f'took {new.addr}, not {old.addr}')
        carol = Proc([args.chat, '--connect', new.addr])
        carol.expect(r'^\* welcome, ')
        bob.send('still here\n')  # the old server still carries the conversation
        alice.expect(r'^bob: still here$')
        time.sleep(0.3)
        check(old.p.poll() is None, 'the old server left its clients')
        alice.close_stdin()
        alice.wait()
        bob.close_stdin()
        bob.wait()
        old.exits_by_itself('drained')
        ok(f'chat on {backend}: a conversation spanning a handover stayed with the old server '
           f'until its clients left; the old server then exited 0')

        new.stop()
        carol.close_stdin()
        carol.wait()
        check_left(tmp, 'drain')

    # SIGQUIT alone: a drain; the same signal again: a stop, the stop's words.
    srv = Server([args.chat_server, '--backend', backend, '--listen', '127.0.0.1:0',
                  '--grace-timeout', '0'])
    people = {}
    erin = join(people, 'erin', [args.chat, '--connect', srv.addr])
    frank = join(people, 'frank', ['nc', '-N', '127.0.0.1', str(srv.port)])
    os.kill(srv.p.pid, signal.SIGQUIT)
    frank.send('during the drain\n')
    erin.expect(r'^frank: during the drain$')
    # Again: a stop. (Two signals of one kind sent close together may arrive
    # as one, if the server had not taken the first yet: send until it ends.)
    for _ in range(WAIT * SCALE * 2):
        os.kill(srv.p.pid, signal.SIGQUIT)
        try:
            srv.p.wait(0.5)
            break
        except subprocess.TimeoutExpired:
            pass
    srv.exits_by_itself('SIGQUIT twice')
    erin.expect(r'^\* the server is stopping; goodbye$')
    for p in (erin, frank):
        p.close_stdin()
        p.wait()
    ok(f'chat on {backend}: SIGQUIT drained (the room went on), a second SIGQUIT stopped')


def grace(args, backend):
    """--grace-timeout: a drain ends the connections still open when it is up."""
    srv = Server([args.echo, '--backend', backend, '--listen', '127.0.0.1:0',
                  '--grace-timeout', '500'])
    c = socket.create_connection(('127.0.0.1', srv.port), timeout=WAIT)
    c.sendall(b'ping')
    check(c.recv(4) == b'ping', 'no echo')
    t0 = time.monotonic()
    os.kill(srv.p.pid, signal.SIGQUIT)
    c.sendall(b'more')
    check(c.recv(4) == b'more', 'no echo during the grace time')
    srv.exits_by_itself('grace timeout')
    took = time.monotonic() - t0
    check(c.recv(16) == b'', 'not closed')
    c.close()
    check(took >= 0.45, f'exited after {took:.2f} s, before its grace time')
    ok(f'echo on {backend}: --grace-timeout 500 ended a live connection after {took:.2f} s')


def refuse(args):
    with tempfile.TemporaryDirectory(prefix='sk-handover-') as tmp:
        os.chmod(tmp, 0o755)
        path = os.path.join(tmp, 'handover')
        srv = Server([args.echo, '--handover', path, '--listen', '127.0.0.1:0'])
        if os.geteuid() == 0 and shutil.which('setpriv'):
            nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
            fails([*nobody, args.echo, '--handover', path, '--listen', '127.0.0.1:0'], 1,
                  'Permission denied', f'--handover {path}')
            os.chmod(path, 0o666)  # past the file's mode: the server's own check
            fails([*nobody, args.echo, '--handover', path, '--listen', '127.0.0.1:0'], 1,
                  'Operation not permitted', 'another user')
            with socket.create_connection(('127.0.0.1', srv.port), timeout=WAIT) as c:
                c.sendall(b'still')
                check(c.recv(5) == b'still', 'the old server stopped serving')
            ok('a successor of another uid is refused (by the file mode, then by the uid '
               'check); the old server keeps serving')
        else:
            print('SKIP (part): not root, or no setpriv: the other-uid refusal is not tried')
        srv.stop()
        check_left(tmp, 'refuse')

        # A stale socket file (a server killed): nothing answers, it is replaced.
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        srv = Server([args.echo, '--handover', path, '--listen', '127.0.0.1:0'])
        srv.stop()
        check_left(tmp, 'stale')
        # A regular file: never replaced.
        with open(path, 'w') as f:
            f.write('mine\n')
        fails([args.echo, '--handover', path, '--listen', '127.0.0.1:0'], 1,
              'Address already in use', 'not a socket')
        with open(path) as f:
            check(f.read() == 'mine\n', 'the regular file was touched')
        os.unlink(path)
        ok('a stale handover socket file is replaced; a regular file is left alone (an error)')

    fails([args.echo, '--listen', 'fd:0'], 1, 'fd:0', 'not a listening stream socket')
    fails([args.echo, '--listen', 'fd:x'], 1, 'fd:x', 'malformed address')
    env_fails = Proc([args.echo, '--listen', 'systemd'], stdin=subprocess.DEVNULL)
    check(env_fails.wait() == 1, '--listen systemd without sockets did not fail')
    check(b'LISTEN_FDS' in env_fails.err, f'no reason given: {env_fails.err!r}')
    ok('fd:0, fd:x and systemd (nothing passed) are one-line errors')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('test', choices=['replace', 'inherit', 'drain', 'grace', 'refuse'])
    ap.add_argument('backend', nargs='?', default='epoll-et')
    ap.add_argument('workers', nargs='?', type=int, default=0)
    for option in ('--echo', '--upper', '--chat-server', '--chat', '--proxy',
                   '--project-version'):
        ap.add_argument(option, required=True)
    args = ap.parse_args()
    skip_unless_uring(args.echo, getattr(args, 'backend', None))
    for tool, package in (('nc', 'netcat-openbsd'),):
        if not shutil.which(tool):
            sys.exit(f'{tool} is needed: apt-get install {package}')
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError('test')))
    signal.alarm(110)
    try:
        if args.test == 'replace':
            replace(args, args.backend, args.workers)
        elif args.test == 'inherit':
            inherit(args, args.backend)
        elif args.test == 'drain':
            drain(args, args.backend)
        elif args.test == 'grace':
            grace(args, args.backend)
        else:
            refuse(args)
    finally:
        signal.alarm(0)
        for p in PROCS:
            p.kill()


if __name__ == '__main__':
    main()
