#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How many connections a restart loses: 8 clients loop connect / send 64
bytes / read the echo / close while sk-echo-server is replaced 20 times, in
two ways, on every backend:

  reuseport  the new server binds the same port (--reuse addr+port); once it
             prints its ready line the old one gets SIGTERM (a stop);
  handover   the new server takes the old one's listeners (--handover PATH);
             the old one drains and exits by itself.

Every failed exchange is counted by kind: refused, reset, closed early (EOF
before the whole echo), timeout, wrong bytes. Not a test: run it and report.

    python3 bench/restart.py --build BUILD [--runs 3] [--restarts 20]
        [--backends epoll-et,epoll-lt,pthread,fork] [--workers N] [--markdown FILE]
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CLIENTS = 8
KINDS = ('refused', 'reset', 'closed early', 'timeout', 'wrong bytes')


def kind_of(e):
    if isinstance(e, ConnectionRefusedError):
        return 'refused'
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return 'reset'
    if isinstance(e, EOFError):
        return 'closed early'
    if isinstance(e, (socket.timeout, TimeoutError)):
        return 'timeout'
    if isinstance(e, ValueError):
        return 'wrong bytes'
    return type(e).__name__


class Load:
    def __init__(self, port):
        self.port, self.done, self.lost = port, 0, {}
        self.lock, self.running = threading.Lock(), True
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def loop(self):
        while self.running:
            data = os.urandom(64)
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=5) as s:
                    s.sendall(data)
                    got = b''
                    while len(got) < 64:
                        chunk = s.recv(64 - len(got))
                        if not chunk:
                            raise EOFError()
                        got += chunk
                    if got != data:
                        raise ValueError()
                with self.lock:
                    self.done += 1
            except (OSError, EOFError, ValueError) as e:
                with self.lock:
                    k = kind_of(e)
                    self.lost[k] = self.lost.get(k, 0) + 1

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(30)
        return self.done, self.lost


def start(argv):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    line = p.stdout.readline().decode()
    if not line.startswith('listening on '):
        p.kill()
        sys.exit(f'{argv}: no ready line ({line!r})')
    return p, int(line.split()[2].rsplit(':', 1)[1])


def run_once(echo, backend, mode, restarts, workers):
    with tempfile.TemporaryDirectory(prefix='sk-restart-') as tmp:
        path = os.path.join(tmp, 'handover')
        port = 0

        def argv():
            a = [echo, '--backend', backend, '--listen', f'127.0.0.1:{port}',
                 '--workers', str(workers)]
            if mode == 'handover':
                a += ['--handover', path]
            if mode == 'reuseport' or (workers and backend.startswith('epoll')):
                a += ['--reuse', 'addr+port']  # (epoll: a SO_REUSEPORT socket per reactor)
            return a

        old, port = start(argv())
        load = Load(port)
        t0 = time.monotonic()
        for _ in range(restarts):
            time.sleep(0.05)
            new, _ = start(argv())
            if mode == 'reuseport':
                os.kill(old.pid, signal.SIGTERM)
            if old.wait(60) != 0:
                sys.exit(f'{mode}: the old server failed')
            old = new
        time.sleep(0.05)
        done, lost = load.stop()
        os.kill(old.pid, signal.SIGTERM)
        old.wait(60)
        return done, lost, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', required=True)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--restarts', type=int, default=20)
    ap.add_argument('--backends', default='epoll-et,epoll-lt,pthread,fork')
    ap.add_argument('--workers', type=int, default=0)
    ap.add_argument('--markdown')
    args = ap.parse_args()
    echo = os.path.join(args.build, 'examples', 'sk-echo-server')
    rows = ['| backend | workers | restart | run | exchanges | lost | lost by kind |',
            '|---|---|---|---|---|---|---|']
    for backend in args.backends.split(','):
        for mode in ('reuseport', 'handover'):
            for run in range(1, args.runs + 1):
                done, lost, secs = run_once(echo, backend, mode, args.restarts, args.workers)
                kinds = ', '.join(f'{k} {n}' for k, n in sorted(lost.items())) or '-'
                row = (f'| {backend} | {args.workers} | {mode} | {run} | {done} | '
                       f'{sum(lost.values())} | {kinds} |')
                rows.append(row)
                print(row, flush=True)
    text = '\n'.join(rows) + '\n'
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(text)


if __name__ == '__main__':
    main()
