#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The example programs, driven the way a user drives them: the real binaries,
against real third-party clients (socat, nc from netcat-openbsd) and sk-chat.

    test_examples.py TEST [BACKEND] --echo PATH --upper PATH --chat-server PATH
                     --chat PATH --proxy PATH --project-version X.Y.Z

TEST is echo, upper, chat, chat-lines or chat-names (on BACKEND), peer (sk-chat to
sk-chat), peer-escapes (what sk-chat prints) or errors. sk-proxy's own tests are in
test_proxy.py.
Loopback and ephemeral ports only; every wait is bounded; every process a test
starts is stopped by it (and killed, with its process group, if it fails).
"""
import argparse
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time

from uring_check import skip_unless_uring

WAIT = 15  # seconds for any one expected event
PROCS = []


class Proc:
    """A child process whose stdout and stderr are collected by threads."""

    def __init__(self, argv, stdin=subprocess.PIPE, group=False):
        self.argv = [str(a) for a in argv]
        self.p = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=group)
        self.group = group
        self.out, self.err, self.lines = bytearray(), bytearray(), []
        self.cv = threading.Condition()
        self.readers = [threading.Thread(target=self._pump, args=(f, b), daemon=True)
                        for f, b in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.readers:
            t.start()
        PROCS.append(self)

    def _pump(self, f, buf):
        partial = b''
        while True:
            chunk = os.read(f.fileno(), 65536)
            complete = []
            if buf is self.out:  # stdout is also split into lines, for expect()
                *complete, partial = (partial + chunk).split(b'\n')
            with self.cv:
                buf += chunk
                self.lines += [line.decode('latin-1') for line in complete]
                self.cv.notify_all()
            if not chunk:
                return

    def name(self):
        return os.path.basename(self.argv[0])

    def send(self, data):
        self.p.stdin.write(data.encode() if isinstance(data, str) else data)
        self.p.stdin.flush()

    def close_stdin(self):
        self.p.stdin.close()

    def text(self):
        with self.cv:
            return self.out.decode('latin-1')

    def mark(self):
        """The number of output lines so far, for expect(since=...)."""
        with self.cv:
            return len(self.lines)

    def expect(self, pattern, timeout=WAIT, since=0):
        """Wait for an output line matching pattern, from line number since on;
        its match object."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = since
        with self.cv:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = '\n'.join(line[:100] for line in self.lines[-15:])
                    raise AssertionError(f'{self.name()}: no line /{pattern}/ within {timeout}'
                                         f' s; last lines:\n{tail}\nstderr: {self.err!r}')
                self.cv.wait(left)

    def matching(self, pattern):
        """The first groups of all output lines matching pattern, so far."""
        rx = re.compile(pattern)
        with self.cv:
            return [m.group(1) for m in map(rx.search, self.lines) if m]

    def wait(self, timeout=WAIT):
        rc = self.p.wait(timeout)
        for t in self.readers:
            t.join(timeout)
        return rc

    def kill(self):
        if self.p.poll() is None:
            try:
                if self.group:
                    os.killpg(self.p.pid, signal.SIGKILL)
                else:
                    self.p.kill()
            except ProcessLookupError:
                pass
            self.p.wait()


class Server(Proc):
    """An example server on an ephemeral loopback port; its own process group,
    so that a failing test also kills the children of the fork backend."""

    def __init__(self, binary, *options, backend='epoll-et', listen='127.0.0.1:0'):
        self.binary = binary
        wrapper = os.environ.get('SK_EXAMPLE_WRAPPER', '').split()  # valgrind.sh sets it
        super().__init__([*wrapper, binary, '--listen', listen, '--backend', backend,
                          *options], stdin=subprocess.DEVNULL, group=True)
        m = self.expect(r'^listening on (127\.0\.0\.1:(\d+)) backend=(\S+)$')
        self.addr, self.port = m.group(1), int(m.group(2))
        check(m.group(3) == backend, f'backend is {m.group(3)}, not {backend}')

    def name(self):
        return os.path.basename(self.binary)

    def stop(self, signo=signal.SIGTERM):
        """A graceful stop: exit status 0, nothing printed but the one line."""
        os.kill(self.p.pid, signo)
        rc = self.wait()
        check(rc == 0, f'{self.name()} exited with {rc} on signal {signo}; stderr {self.err!r}')
        lines = self.text().splitlines()
        check(len(lines) == 1, f'{self.name()} printed more than one line: {lines}')
        check(not self.err, f'{self.name()} wrote to stderr: {self.err!r}')


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def run(argv, data=b'', timeout=WAIT):
    """Run a client to the end with data on stdin; its stdout."""
    p = Proc(argv)
    threading.Thread(target=lambda: (p.send(data), p.close_stdin()), daemon=True).start()
    rc = p.wait(timeout)
    check(rc == 0, f'{p.argv} exited with {rc}; stderr {p.err!r}')
    return bytes(p.out)


def ok(message):
    print(f'ok: {message}', flush=True)


# ---- echo and upper: 1 MiB of random bytes through socat and nc, at once --------

def transfer(binary, backend, transform):
    data = os.urandom(1 << 20)
    srv = Server(binary, backend=backend)
    clients = {
        'socat': ['socat', '-t', '10', '-', f'TCP:{srv.addr}'],
        'nc': ['nc', '-N', '127.0.0.1', srv.port],
    }
    results = {}
    threads = [threading.Thread(target=lambda k=k, v=v: results.__setitem__(k, run(v, data)))
               for k, v in clients.items()]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    for client in clients:
        got = results.get(client)
        check(got is not None, f'{client} did not finish')
        check(len(got) == len(data), f'{client}: {len(got)} bytes back, not {len(data)}')
        check(got == transform(data), f'{client}: the bytes differ')
    srv.stop(signal.SIGINT)
    ok(f'{srv.name()} on {backend}: 1 MiB through socat and nc at once, exact'
       f' ({time.monotonic() - t0:.2f} s)')


# ---- chat: three clients, nicks, /who, an over-long line, a client that never reads --

def join(people, name, argv):
    """Start a chat client, wait for its welcome and its /nick NAME, seen by all."""
    c = Proc(argv)
    addr = c.expect(r'^\* welcome, (127\.0\.0\.1:\d+);').group(1)
    for other in people.values():
        other.expect(rf'^\* {re.escape(addr)} joined$')
    c.send(f'/nick {name}\n')
    people[name] = c
    for who in people.values():
        who.expect(rf'^\* {re.escape(addr)} is now {name}$')
    return c


def chat(args, backend):
    srv = Server(args.chat_server, '--max-line', '8192', '--max-output', '65536',
                 backend=backend)
    people = {}
    alice = join(people, 'alice', [args.chat, '--connect', srv.addr])
    bob = join(people, 'bob', ['nc', '-N', '127.0.0.1', srv.port])
    carol = join(people, 'carol', ['socat', '-t', '2', '-', f'TCP:{srv.addr}'])
    ok(f'chat on {backend}: sk-chat, nc and socat joined; joins and nicks announced')

    bob.send('hello from bob\n')
    for c in (alice, carol):
        c.expect(r'^bob: hello from bob$')
    carol.send('/who\n')
    carol.expect(r'^\* 3 in the room$')
    names = sorted(carol.matching(r'^\* here: (.*)$'))
    check(names == ['alice', 'bob', 'carol'], f'/who listed {names}')
    ok(f'chat on {backend}: a line reaches the others as "bob: ...", /who lists the room')

    # A client that never reads, with a small receive buffer: cut off at --max-output.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(('127.0.0.1', srv.port))
    slow_name = '%s:%d' % slow.getsockname()[:2]
    for c in people.values():
        c.expect(rf'^\* {re.escape(slow_name)} joined$')  # the default name is ip:port
    # The kernel takes up to tcp_wmem's maximum before the server's own buffer grows.
    # Sent 8 lines at a time, each batch read by bob and carol before the next: they
    # keep up (never more than --max-output behind), so only the non-reader is cut.
    count = (kernel_send_buffer_max() * 5 // 4 + (1 << 20)) // 7000
    flood = [f'm{i:05d} {"x" * 6992}' for i in range(count)]
    t0 = time.monotonic()
    for end in range(8, count + 8, 8):
        alice.send(''.join(line + '\n' for line in flood[end - 8:end]))
        for c in (bob, carol):
            c.expect(rf'^alice: m{min(end, count) - 1:05d} ')
    for c in (bob, carol):
        got = c.matching(r'^alice: (m\d{5} x+)$')
        check(got == flood, f'{c.name()}: {len(got)} of {count} lines intact')
    for c in people.values():
        c.expect(rf'^\* {re.escape(slow_name)} left$')
    slow.settimeout(WAIT)
    try:
        while slow.recv(65536):
            pass
    except ConnectionResetError:
        pass
    slow.close()
    carol.send('still here\n')
    for c in (alice, bob):
        c.expect(r'^carol: still here$')
    ok(f'chat on {backend}: a client that never reads is cut off, the others got all'
       f' {count * (len(flood[0]) + 8)} bytes ({time.monotonic() - t0:.2f} s)')

    bob.send('y' * 10000 + '\n')
    bob.expect(r'^\* error: line too long')
    for c in (alice, carol):
        c.expect(r'^\* bob left$')
    check('yyyy' not in alice.text() + carol.text(), 'part of the long line was relayed')
    ok(f'chat on {backend}: an over-long line gets an error line, then the sender is closed')

    carol.send('/quit\n')
    alice.expect(r'^\* carol left$')
    alice.close_stdin()  # sk-chat sends the rest, shuts down; the server closes
    check(alice.wait() == 0, f'sk-chat exited with {alice.p.returncode}: {alice.err!r}')
    for c in (bob, carol):
        c.close_stdin()
        c.wait()
    srv.stop()
    ok(f'chat on {backend}: /quit and end of input leave; the server stops cleanly')


# ---- chat: nobody speaks with the server's voice, passes for an address or another --

def shown(text):
    """Text as Proc.lines holds it: its UTF-8 bytes read as latin-1."""
    return text.encode().decode('latin-1')


def check_inert(who, out):
    """Nothing in out acts on a terminal: no control byte but '\\n', valid UTF-8
    and no C1 control (U+0080 to U+009F)."""
    bad = bytes(b for b in out if (b < 0x20 and b != 0x0a) or b == 0x7f)
    check(not bad, f'{who} received control bytes {bad[:20]!r}')
    try:
        text = out.decode('utf-8')
    except UnicodeDecodeError as e:
        raise AssertionError(f'{who} received invalid UTF-8: {e}') from None
    check(not re.search('[\x80-\x9f]', text), f'{who} received a C1 control')


def forgery_room(args, backend):
    """A chat server with mallory and bob (nc) and carol (socat) in its room."""
    srv = Server(args.chat_server, backend=backend)
    people = {}
    mallory = join(people, 'mallory', ['nc', '-N', '127.0.0.1', srv.port])
    bob = join(people, 'bob', ['nc', '-N', '127.0.0.1', srv.port])
    carol = join(people, 'carol', ['socat', '-t', '2', '-', f'TCP:{srv.addr}'])
    return srv, people, mallory, bob, carol


def leave_room(srv, people):
    """Everyone leaves (end of input), then the server stops."""
    for c in people.values():
        c.close_stdin()
        c.wait()
    srv.stop()


def chat_lines(args, backend):
    srv, people, mallory, bob, carol = forgery_room(args, backend)
    forged = {
        b'hello\r* the server is stopping; goodbye\x1b[K':
            'hello^M* the server is stopping; goodbye^[[K',
        # a title, a C1 CSI, a byte never in UTF-8 and a surrogate; UTF-8 text; tab; DEL
        b'\x1b]0;owned\x07 \xc2\x9b2J \xff\xed\xa0\x80 caf\xc3\xa9 \xe6\x97\xa5\tok\x7f':
            '^[]0;owned^G \ufffd\ufffd2J \ufffd\ufffd\ufffd\ufffd café 日 ok^?',
    }
    for line, text in forged.items():
        mallory.send(line + b'\n')
        for c in (bob, carol):
            c.expect(f'^{re.escape(shown("mallory: " + text))}$')
    for c in (mallory, bob, carol):
        check_inert(c.name(), bytes(c.out))
    ok(f'chat on {backend}: controls in a line arrive as ^X, C1 and bad UTF-8 as U+FFFD,'
       ' UTF-8 text as is')
    leave_room(srv, people)


def chat_names(args, backend):
    srv, people, mallory, bob, carol = forgery_room(args, backend)
    renames = len(bob.matching('( is now )'))
    refused = {
        b'\x1b[31mroot\r* server': 'control',
        b'bo\x07b': 'control',
        b'caf\xc3': 'UTF-8',
        b'caf\xc2\x85': 'control',
        b'127.0.0.1:1': "':'",
        b'[::1]:5': "':'",
        b'unix:/tmp/x': "':'",
        b'* server': 'space',
        b'*server': "'*'",
        b'bob': 'taken',
        b'BoB': 'taken',
    }
    for name, why in refused.items():
        mark = mallory.mark()
        mallory.send(b'/nick ' + name + b'\n')
        mallory.expect(rf'^\* a name .*{re.escape(why)}', since=mark)
    mark = bob.mark()
    bob.send('/who\n')
    bob.expect(r'^\* 3 in the room$', since=mark)
    names = sorted(bob.matching(r'^\* here: (.*)$'))
    check(names == ['bob', 'carol', 'mallory'], f'/who listed {names}')
    check(len(bob.matching('( is now )')) == renames, 'a refused name was announced')
    ok(f'chat on {backend}: names with controls, bad UTF-8, spaces, ":", a leading "*"'
       ' or in use (any ASCII case) are refused')

    for old, new in (('mallory', 'MALLORY'), ('MALLORY', 'zoë'), ('zoë', '日本')):
        mallory.send(f'/nick {new}\n')
        for c in people.values():
            c.expect(f'^{re.escape(shown(f"* {old} is now {new}"))}$')
    mallory.send('こんにちは\n')
    for c in (bob, carol):
        c.expect(f'^{re.escape(shown("日本: こんにちは"))}$')
    mark = carol.mark()
    carol.send('/who\n')
    carol.expect(r'^\* 3 in the room$', since=mark)
    names = sorted(carol.matching(r'^\* here: (.*)$')[-3:])
    check(names == sorted(['bob', 'carol', shown('日本')]), f'/who listed {names}')
    for c in people.values():
        check_inert(c.name(), bytes(c.out))
    ok(f'chat on {backend}: a new case of one\'s own name and UTF-8 names are taken, shown'
       ' as is')
    leave_room(srv, people)


# ---- sk-chat to sk-chat, and sk-chat as a scripted client ------------------------

def peer(args):
    a = Proc([args.chat, '--listen', '127.0.0.1:0'])
    addr = a.expect(r'^listening on (127\.0\.0\.1:\d+)$').group(1)
    b = Proc([args.chat, '--connect', addr])
    b.send('hello from b\n')
    a.expect(r'^hello from b$')
    a.send('hello from a\n')
    b.expect(r'^hello from a$')
    data = random_text(1 << 20)
    b.send(data)
    b.close_stdin()  # b: send the rest, shut down; a: end of file, exit; b: exit
    check(a.wait() == 0 and b.wait() == 0, f'exit {a.p.returncode}, {b.p.returncode}')
    check(bytes(a.out).split(b'\n', 1)[1] == b'hello from b\n' + data,
          'the listening side did not get every byte')
    check(bytes(b.out) == b'hello from a\n', f'the connecting side got {bytes(b.out)[:80]!r}')
    ok('sk-chat --listen and --connect: lines both ways, then 1 MiB of text from a pipe,'
       ' exact; both exit 0')

    srv = Server(args.echo)
    got = run([args.chat, '--connect', srv.addr], data)
    check(got == data, 'sk-chat through sk-echo-server: the bytes differ')
    noise = os.urandom(1 << 20)
    got = run([args.chat, '--connect', srv.addr], noise)
    check_inert('sk-chat', got)
    check(got.count(b'\n') == noise.count(b'\n'), 'sk-chat: the lines of random bytes differ')
    srv.stop()
    ok('sk-chat as a client: text from a pipe, all of it echoed, exit when the server closes;'
       ' random bytes echoed print inert, line for line')

    p = Proc([args.chat, '--connect', f'127.0.0.1:{free_port()}'])
    check(p.wait() == 1 and b'cannot connect to' in p.err, f'refused: {p.err!r}')
    p = Proc([args.chat, '--bogus'])
    check(p.wait() == 2 and b'usage:' in p.err, f'bad option: {p.err!r}')
    ok('sk-chat: a refused connection and a bad option are reported')


def random_text(size):
    """About size bytes of lines of printable ASCII and UTF-8: what sk-chat prints as is."""
    chars = string.printable[:95] + 'ëé€ß日本語😀' + '\n'  # a line every ~100 characters
    return ''.join(random.choices(chars, k=size)).encode()


def peer_escapes(args):
    a = Proc([args.chat, '--listen', '127.0.0.1:0'])
    m = a.expect(r'^listening on (127\.0\.0\.1):(\d+)$')
    with socket.create_connection((m.group(1), int(m.group(2))), timeout=WAIT) as s:
        s.sendall(b'\x1b[31mred\x1b[0m \x1b]0;title\x07 caf\xc3\xa9 \xc2\x9b2J \xe6\x97\xa5\r\n'
                  b'second\x00line\n')
        s.sendall(b'split \xe6\x97')  # a character cut in two reads, whole on the screen
        time.sleep(0.2)
        s.sendall(b'\xa5\xe6\x9c\xac done\nno newline, cut short at the end \xe6\x97')
    check(a.wait() == 0, f'sk-chat exited with {a.p.returncode}: {a.err!r}')
    got = bytes(a.out).split(b'\n', 1)[1]
    want = ('^[[31mred^[[0m ^[]0;title^G café \ufffd\ufffd2J 日^M\nsecond^@line\n'
            'split 日本 done\nno newline, cut short at the end \ufffd\ufffd').encode()
    check(got == want, f'sk-chat printed {got!r}, not {want!r}')
    check_inert('sk-chat', bytes(a.out))
    ok('sk-chat prints what it receives with controls as ^X, C1 and bad UTF-8 as U+FFFD,'
       ' UTF-8 text as is, lines kept')


def kernel_send_buffer_max():
    try:
        with open('/proc/sys/net/ipv4/tcp_wmem') as f:
            return int(f.read().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- errors a person can act on --------------------------------------------------

def fails(argv, status, *needles):
    p = Proc(argv, stdin=subprocess.DEVNULL)
    rc = p.wait()
    err = p.err.decode()
    check(rc == status, f'{argv}: exit {rc}, not {status}; stderr {err!r}')
    check(not p.out, f'{argv}: printed {bytes(p.out)!r} on stdout')
    for needle in needles:
        check(needle in err, f'{argv}: {needle!r} not in {err!r}')
    return err


def errors(args):
    first = Server(args.echo)
    err = fails([args.echo, '--listen', first.addr], 1, first.addr, 'Address already in use',
                'another port', '--reuse port')
    check(err.count('\n') == 1, f'busy port: more than one line: {err!r}')
    first.stop(signal.SIGINT)
    ok(f'busy port: {err.strip()}')

    a = Server(args.echo, '--reuse', 'port')
    b = Server(args.upper, '--reuse', 'port', listen=a.addr)
    check(b.addr == a.addr, f'listening on {b.addr}, not {a.addr}')
    a.stop()
    b.stop()
    ok('the remedy works: two servers share a port with --reuse port')

    err = fails([args.echo, '--backend', 'nope'], 2, "'nope'", 'epoll-et, epoll-lt, pthread, fork')
    check(err.count('\n') == 1, f'unknown backend: more than one line: {err!r}')
    ok(f'unknown backend: {err.strip()}')

    for bad in (['--frobnicate'], ['--workers', 'lots'], ['--reuse', 'sometimes'],
                ['--listen'], ['--max-line', '100'], ['extra']):
        err = fails([args.echo, *bad], 2, 'usage: sk-echo-server')
    fails([args.chat_server, '--max-line', '0'], 2, '--max-line', 'usage: sk-chat-server')
    ok('bad options print usage and exit 2')

    err = fails([args.proxy], 2, '--to ADDR is needed', 'usage: sk-proxy', ' --to ADDR ')
    ok(f'sk-proxy without --to: {err.splitlines()[0]}')
    for bad in (['--to', 'nowhere'], ['--to', '*:80'], ['--to', '127.0.0.1:99999'],
                ['--to', '127.0.0.1:1', '--max-buffer', '0'],
                ['--to', '127.0.0.1:1', '--connect-timeout', 'soon']):
        err = fails([args.proxy, *bad], 2, f"'{bad[-1]}'", 'usage: sk-proxy')
    ok(f'sk-proxy with a bad --to or a bad number: {err.splitlines()[0]}')

    for binary in (args.echo, args.upper, args.chat_server, args.proxy):
        out = run([binary, '--help'])
        check(out.startswith(b'usage: ' + os.path.basename(binary).encode()), out[:80])
        check(b'127.0.0.1:5188' in out, 'the default address is not in --help')
        version = run([binary, '--version'])
        check(args.project_version.encode() in version, version)
    check(b'--max-line' in run([args.chat_server, '--help']), 'chat: no --max-line in --help')
    check(b'--connect-timeout' in run([args.proxy, '--help']), 'proxy: no --connect-timeout')
    check(run([args.chat, '--help']).startswith(b'usage: sk-chat'), 'sk-chat --help')
    ok('--help and --version')


def noring(args):
    """io_uring refused (a seccomp filter, as in a container): every server
    chosen on it says why in one line, names the remedy, and exits non-zero."""
    for err, cause in ((1, 'io_uring_disabled'), (38, 'Linux 6.0')):
        for prog in (args.echo, args.upper, args.chat_server, args.proxy):
            extra = ['--to', '127.0.0.1:9'] if prog == args.proxy else []
            err_text = fails([args.noring, str(err), prog, '--backend', 'io_uring',
                              '--listen', '127.0.0.1:0', *extra], 1, cause, 'epoll-et')
            check(err_text.count('\n') == 1, f'more than one line: {err_text!r}')
        ok(f'io_uring refused ({err}): {err_text.strip()}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('test', choices=['echo', 'upper', 'chat', 'chat-lines', 'chat-names',
                                     'peer', 'peer-escapes', 'errors', 'noring'])
    ap.add_argument('backend', nargs='?', default='epoll-et')
    for option in ('--echo', '--upper', '--chat-server', '--chat', '--proxy',
                   '--project-version'):
        ap.add_argument(option, required=True)
    ap.add_argument('--noring', help='tests/noring: run a program where io_uring is refused')
    args = ap.parse_args()
    skip_unless_uring(args.echo, getattr(args, 'backend', None))
    for tool, package in (('socat', 'socat'), ('nc', 'netcat-openbsd')):
        if not shutil.which(tool):
            sys.exit(f'{tool} is needed: apt-get install {package}')
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError('test')))
    signal.alarm(50)
    try:
        if args.test == 'echo':
            transfer(args.echo, args.backend, lambda b: b)
        elif args.test == 'upper':
            transfer(args.upper, args.backend, bytes.upper)  # ASCII letters only
        elif args.test == 'chat':
            chat(args, args.backend)
        elif args.test == 'chat-lines':
            chat_lines(args, args.backend)
        elif args.test == 'chat-names':
            chat_names(args, args.backend)
        elif args.test == 'peer':
            peer(args)
        elif args.test == 'peer-escapes':
            peer_escapes(args)
        elif args.test == 'noring':
            noring(args)
        else:
            errors(args)
    finally:
        signal.alarm(0)
        for p in PROCS:
            p.kill()


if __name__ == '__main__':
    main()
