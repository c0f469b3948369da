#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare two builds of libsockkit side by side: the same load on the same
backend, the builds taking turns round after round so that the machine's
drift falls on both. Prints, per build, the median of msgs/s, of the
server's CPU per message and of its system calls per message (perf stat
-e raw_syscalls:sys_enter on the server process), and the ratios B/A.

usage: compare.py BUILD_A BUILD_B [--backend epoll-et] [--rounds 5]
                  [--duration 2] [--size 64] [--conns 50] [--depth 1]

Each BUILD is a meson build directory holding bench/sk-bench-server and
bench/sk-bench (a release build: meson setup -Dbuildtype=release). perf
(Debian: linux-perf) is needed for the system-call figure; without it that
column is left out."""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time


def start_server(build, backend):
    server = subprocess.Popen(
        [os.path.join(build, 'bench', 'sk-bench-server'), '--listen', '127.0.0.1:0',
         '--backend', backend], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    m = re.search(r'(127\.0\.0\.1:\d+)', line)
    if not m:
        server.kill()
        sys.exit('compare: %s did not say where it listens: %r' % (build, line))
    return server, m.group(1)


def one_run(build, args):
    server, addr = start_server(build, args.backend)
    perf = None
    out = '/tmp/sk-compare-perf.%d' % os.getpid()
    if shutil.which('perf'):
        perf = subprocess.Popen(['perf', 'stat', '-x,', '-e', 'raw_syscalls:sys_enter',
                                 '-p', str(server.pid), '-o', out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # attached before the load starts
    bench = subprocess.run(
        [os.path.join(build, 'bench', 'sk-bench'), '--connect', addr, '--mode', 'pingpong',
         '--conns', str(args.conns), '--size', str(args.size), '--depth', str(args.depth),
         '--duration', str(args.duration), '--warmup', '0', '--server-pid', str(server.pid)],
        capture_output=True, text=True, check=True)
    syscalls = None
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=10)
        with open(out) as f:
            for line in f:
                fields = line.split(',')
                if len(fields) > 2 and 'raw_syscalls:sys_enter' in line:
                    syscalls = float(fields[0])
        os.unlink(out)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=10)
    figures = dict(kv.split('=', 1) for kv in bench.stdout.split())
    msgs = float(figures['msgs'])
    return {'msgs_s': float(figures['msgs_s']),
            'cpu_ns_msg': float(figures['srv_cpu_ns_msg']),
            'syscalls_msg': syscalls / msgs if syscalls is not None and msgs else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('build_a')
    ap.add_argument('build_b')
    ap.add_argument('--backend', default='epoll-et')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--duration', type=float, default=2)
    ap.add_argument('--size', type=int, default=64)
    ap.add_argument('--conns', type=int, default=50)
    ap.add_argument('--depth', type=int, default=1)
    args = ap.parse_args()
    runs = {'A': [], 'B': []}
    for r in range(args.rounds):
        order = ('A', 'B') if r % 2 == 0 else ('B', 'A')
        for which in order:
            runs[which].append(one_run(args.build_a if which == 'A' else args.build_b, args))
    keys = ['msgs_s', 'cpu_ns_msg', 'syscalls_msg']
    med = {w: {k: statistics.median(x[k] for x in runs[w]) if all(x[k] is not None
                                                                  for x in runs[w]) else None
               for k in keys} for w in runs}
    print('%s, %d B, %d conns, depth %d, %d rounds of %.1f s' %
          (args.backend, args.size, args.conns, args.depth, args.rounds, args.duration))
    print('%-6s %12s %14s %14s' % ('build', 'msgs/s', 'srv ns/msg', 'syscalls/msg'))
    for w in ('A', 'B'):
        m = med[w]
        print('%-6s %12.0f %14.0f %14s' % (w, m['msgs_s'], m['cpu_ns_msg'],
                                          '%.3f' % m['syscalls_msg'] if m['syscalls_msg'] else '-'))
    ratio = ['%.3f' % (med['B'][k] / med['A'][k]) if med['A'][k] and med['B'][k] else '-'
             for k in keys]
    print('%-6s %12s %14s %14s' % ('B/A', *ratio))


if __name__ == '__main__':
    main()
