#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run every libsockkit backend and every peer server under the same loads.

Each round runs every scenario; within a scenario every server gets a fresh
process and the same sk-bench load, one after the other, the starting server
rotating from round to round. Reported figures are medians over the rounds;
ratios are ratios of medians. This is a benchmark, not a test: nothing here
fails on a missed target. It fails (exit 1) only when a server or a load
could not run, which is what the --quick smoke run checks.

    python3 bench/run.py --build build-bench            # the full run (~15 min)
    python3 bench/run.py --build build-bench --quick    # one short round (< 1 min)
    python3 bench/run.py --build build-bench --only proxy --rounds 3   # proxies (~8 min)

The floors are hand-written echo servers with nothing in between: "floor",
a raw epoll loop, and "uring floor", a raw io_uring loop (multishot accept
and receive into a provided-buffer ring, every send of a loop turn submitted
with the wait for the next completions, one io_uring_enter per turn; a turn
waits for 32 completions or 200 µs, "uring floor w1" for one). uring-echo is
built where meson finds liburing (Debian: liburing-dev).

System calls per message (the syscalls/msg columns: ping-pong, pipeline,
the proxies, TLS) are counted by perf stat -e raw_syscalls:sys_enter
attached to the server's process tree (all its threads, and the children it
forks), in a second, shorter load after the measured one, divided by the
messages of that load: every system call the server makes while it serves,
io_uring_enter included, none of the load's. Counting slows every system
call, so msgs/s and CPU per message come from the first load. --quick, or
no perf (Debian: linux-perf), leaves them n/a.

The rows on the io_uring backend ("io_uring", "io_uring w=2", "sk-proxy
io_uring", "io_uring tls") read n/a while the program refuses the backend
(an unknown backend in a build without it, or io_uring refused by the
kernel): each program is started once with --backend io_uring, and refuses
it if it exits with a status and a message naming a backend or io_uring.
Any other failure of theirs fails the run, as any server's does.

The proxy scenarios put a proxy between sk-bench and one raw-epoll echo:
examples/sk-proxy of the same build and, where installed, HAProxy, nginx's
stream module and socat; install them first (Debian):

    apt-get install -y haproxy nginx-light libnginx-mod-stream socat linux-perf

A proxy that is not there reads n/a. Its system calls per message are counted
with perf stat (Debian: linux-perf), in a second, shorter load; --quick skips
that count.

The TLS scenarios (--only tls) measure TLS 1.3 echo servers: the libsockkit
example sk-echo-server with --tls-cert/--tls-key (n/a while this build's
does not take them), a naive thread-per-connection OpenSSL echo, and
HAProxy, nginx's stream module and stunnel terminating TLS in front of the
raw-epoll echo, on a self-signed certificate made for the run with the
openssl command:

    apt-get install -y haproxy nginx-light libnginx-mod-stream stunnel4 openssl
    python3 bench/run.py --build build-bench --only tls --rounds 3
"""
import argparse
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# ---- servers ----------------------------------------------------------------

SK = "sk-bench-server"
SERVERS = {
    # name: (binary, extra arguments, what it is)
    "epoll-et": (SK, ["--backend", "epoll-et"], "libsockkit, default backend"),
    "epoll-lt": (SK, ["--backend", "epoll-lt"], "libsockkit"),
    "pthread": (SK, ["--backend", "pthread"], "libsockkit, a thread per connection"),
    "fork": (SK, ["--backend", "fork"], "libsockkit, a process per connection"),
    "epoll-et w=2": (SK, ["--backend", "epoll-et", "--workers", "2"], "libsockkit, 2 reactors"),
    "epoll-lt w=2": (SK, ["--backend", "epoll-lt", "--workers", "2"], "libsockkit, 2 reactors"),
    "fork w=2": (SK, ["--backend", "fork", "--workers", "2"], "libsockkit, 2 pre-forked"),
    "io_uring": (SK, ["--backend", "io_uring"], "libsockkit, io_uring backend"),
    "io_uring w=2": (SK, ["--backend", "io_uring", "--workers", "2"], "libsockkit, 2 rings"),
    "libuv": ("uv-echo", [], "peer: libuv as its guide writes it"),
    "libuv pool": ("uv-echo", ["--pool"], "peer: the same, read buffers from a free list"),
    "libevent": ("event-echo", [], "peer: libevent bufferevents as its book writes it"),
    "floor": ("epoll-echo", [], "peer: raw epoll loop, edge-triggered, 1 thread"),
    "floor lt": ("epoll-echo", ["--lt"], "peer: raw epoll loop, level-triggered"),
    "floor 2t": ("epoll-echo", ["--threads", "2"], "peer: raw epoll loop, 2 threads"),
    "uring floor": ("uring-echo", [], "peer: raw io_uring loop, a turn waits for 32 or 200 µs"),
    "uring floor w1": ("uring-echo", ["--wait1"], "peer: the same, a turn waits for 1"),
    "uring floor 2t": ("uring-echo", ["--threads", "2"], "peer: raw io_uring loop, 2 threads"),
    "naive-thread": ("naive-thread", [], "peer: seed's thread per client"),
    "naive-fork": ("naive-fork", [], "peer: seed's fork per client"),
}

# ---- proxies ----------------------------------------------------------------

# Every proxy relays to one raw-epoll echo (the floor's program), started afresh
# for each run; sk-bench talks to the proxy.
ECHO = "floor"
PROXIES = {
    # name: (program, extra arguments, what it is)
    "sk-proxy epoll-et": ("sk-proxy", ["--backend", "epoll-et"], "libsockkit example"),
    "sk-proxy epoll-lt": ("sk-proxy", ["--backend", "epoll-lt"], "libsockkit example"),
    "sk-proxy pthread": ("sk-proxy", ["--backend", "pthread"], "libsockkit, thread per conn"),
    "sk-proxy fork": ("sk-proxy", ["--backend", "fork"], "libsockkit, process per conn"),
    "sk-proxy io_uring": ("sk-proxy", ["--backend", "io_uring"], "libsockkit example"),
    "haproxy": ("haproxy", [], "HAProxy, mode tcp, nbthread 1"),
    "nginx": ("nginx", [], "nginx stream module, 1 worker, no master"),
    "socat": ("socat", [], "socat fork: a process per connection"),
    "direct": ("direct", [], "no proxy: sk-bench talks to the echo itself"),
}
NGINX_STREAM = ["/usr/lib/nginx/modules/ngx_stream_module.so",
                "/usr/share/nginx/modules/ngx_stream_module.so"]

# ---- TLS servers --------------------------------------------------------------

# TLS 1.3 echo servers: libsockkit's example and a naive peer serve the echo
# themselves; HAProxy, nginx and stunnel terminate TLS and relay the plaintext
# to a fresh raw-epoll echo (ECHO), as the proxies do. "floor plain" is that
# echo served directly with a plaintext load: what TLS costs.
SK_ECHO = "sk-echo-server"
TLS_SERVERS = {
    # name: (program, extra arguments, what it is)
    "epoll-et tls": (SK_ECHO, ["--backend", "epoll-et"], "libsockkit example, --tls-cert"),
    "pthread tls": (SK_ECHO, ["--backend", "pthread"], "libsockkit example, --tls-cert"),
    "io_uring tls": (SK_ECHO, ["--backend", "io_uring"], "libsockkit example, --tls-cert"),
    "haproxy tls": ("haproxy", [], "HAProxy, bind ssl, mode tcp, nbthread 1, to the echo"),
    "nginx tls": ("nginx", [], "nginx stream module, listen ssl, 1 worker, to the echo"),
    "stunnel tls": ("stunnel", [], "stunnel, a thread per connection, to the echo"),
    "naive-tls-thread": ("naive-tls-thread", [], "peer: thread per connection, blocking OpenSSL"),
    "floor plain": ("direct", [], "no TLS: the echo itself, plaintext load"),
}
# What sk-bench adds to a scenario's load for every TLS server.
TLS_CLIENT = ["--tls-no-verify"]

# ---- scenarios --------------------------------------------------------------

PINGPONG = ["--mode", "pingpong", "--conns", "50", "--size", "64"]
SCENARIOS = [
    {
        "key": "pingpong",
        "title": "64-byte ping-pong, 50 connections, 1 message in flight each",
        "load": PINGPONG + ["--depth", "1"],
        "servers": ["epoll-et", "epoll-lt", "pthread", "fork", "io_uring", "libuv", "libuv pool",
                    "libevent", "floor", "floor lt", "uring floor", "uring floor w1",
                    "naive-thread", "naive-fork"],
        "base": "floor",
        "perf": True,
    },
    {
        "key": "pipeline",
        "title": "64-byte messages, 50 connections, pipeline depth 16",
        "load": PINGPONG + ["--depth", "16"],
        "servers": ["epoll-et", "epoll-lt", "pthread", "io_uring", "libuv", "libuv pool",
                    "libevent", "floor", "floor lt", "uring floor", "uring floor w1",
                    "naive-thread"],
        "base": "floor",
        "perf": True,
    },
    {
        "key": "workers",
        "title": "64-byte messages, 50 connections, depth 16, 2 load threads: 2 workers",
        "load": PINGPONG + ["--depth", "16", "--threads", "2"],
        "servers": ["epoll-et w=2", "epoll-lt w=2", "io_uring w=2", "floor 2t", "uring floor 2t",
                    "epoll-et", "io_uring", "floor"],
        "base": "floor 2t",
    },
    {
        "key": "large",
        "title": "64 KiB messages, 50 connections, 1 in flight each",
        "load": ["--mode", "pingpong", "--conns", "50", "--size", "65536", "--depth", "1"],
        "servers": ["epoll-et", "epoll-lt", "pthread", "fork", "io_uring", "libuv", "libuv pool",
                    "libevent", "floor", "floor lt", "uring floor", "uring floor w1",
                    "naive-thread", "naive-fork"],
        "base": "floor",
        "metric": "mb_s",
    },
    {
        "key": "rate",
        "title": "connection rate: 8 clients looping connect, 64-byte echo, close",
        "load": ["--mode", "rate", "--conns", "8", "--size", "64"],
        "servers": ["fork", "fork w=2", "naive-fork", "epoll-et", "pthread", "io_uring", "floor",
                    "uring floor"],
        "base": "naive-fork",
    },
    {
        "key": "idle",
        "title": "50 active ping-pong connections (64 B) beside IDLE idle ones",
        "load": PINGPONG + ["--depth", "1"],
        "servers": ["epoll-et", "epoll-lt", "io_uring", "floor", "uring floor", "libuv",
                    "libuv pool", "libevent"],
        "base": "floor",
        "idle": True,
    },
    {
        "key": "proxy",
        "family": "proxy",
        "title": "proxies to one raw-epoll echo: 64-byte ping-pong, 50 connections",
        "load": PINGPONG + ["--depth", "1"],
        "servers": list(PROXIES),
        "base": "direct",
        "proxy": True,
    },
    {
        "key": "proxy-64k",
        "family": "proxy",
        "title": "proxies to one raw-epoll echo: 64 KiB messages, 50 connections, 1 in flight",
        "load": ["--mode", "pingpong", "--conns", "50", "--size", "65536", "--depth", "1"],
        "servers": list(PROXIES),
        "base": "direct",
        "metric": "mb_s",
        "proxy": True,
    },
    {
        "key": "tls",
        "family": "tls",
        "title": "TLS 1.3 (AES-128-GCM): 64-byte ping-pong, 50 connections, 1 in flight",
        "load": PINGPONG + ["--depth", "1"],
        "servers": list(TLS_SERVERS),
        "base": "haproxy tls",
        "tls": TLS_CLIENT,
    },
    {
        "key": "tls-64k",
        "family": "tls",
        "title": "TLS 1.3 (AES-128-GCM): 64 KiB messages, 50 connections, 1 in flight",
        "load": ["--mode", "pingpong", "--conns", "50", "--size", "65536", "--depth", "1"],
        "servers": list(TLS_SERVERS),
        "base": "haproxy tls",
        "metric": "mb_s",
        "tls": TLS_CLIENT,
    },
    {
        "key": "tls-full",
        "family": "tls",
        "title": "TLS 1.3 full handshakes: 8 clients looping connect, handshake, "
                 "64-byte echo, close",
        "load": ["--mode", "rate", "--conns", "8", "--size", "64"],
        "servers": list(TLS_SERVERS),
        "base": "haproxy tls",
        "unit": "handshakes",
        "tls": TLS_CLIENT,
    },
    {
        "key": "tls-resumed",
        "family": "tls",
        "title": "TLS 1.3 resumed handshakes: as tls-full, each client resuming the "
                 "session of its previous connection",
        "load": ["--mode", "rate", "--conns", "8", "--size", "64"],
        "servers": list(TLS_SERVERS),
        "base": "haproxy tls",
        "unit": "handshakes",
        "tls": TLS_CLIENT + ["--tls-resume"],
    },
]


def selected(args, sc):
    """Whether --only names the scenario, or its family (--only proxy: both)."""
    return not args.only or bool(args.only & {sc["key"], sc.get("family")})


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- running one server under one load ---------------------------------------

class ServerFailed(Exception):
    pass


def start_server(bindir, name, logf):
    binary, extra, _ = SERVERS[name]
    argv = [os.path.join(bindir, binary), "--listen", "127.0.0.1:0"] + extra
    return spawn_announced(argv, name, logf)


def spawn_announced(argv, name, logf):
    """Start a program that prints "listening on ADDR ..." when ready: (proc, ADDR)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=logf,
                            start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 5
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                line = proc.stdout.readline()
                break
            if proc.poll() is not None:
                break
    except BaseException:  # ^C or SIGTERM while waiting: stop it too
        stop_server(proc)
        raise
    if not line.startswith("listening on "):
        stop_server(proc)
        raise ServerFailed(f"{name}: no 'listening on' line (exit {proc.returncode})")
    return proc, line[len("listening on "):].split()[0]


def spawn_on_port(argv, port, name, logf):
    """Start a program told to listen on 127.0.0.1:port (it cannot report a
    port of its own): (proc, its address) once the port accepts."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:  # ready when it accepts
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return proc, f"127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
    except BaseException:
        stop_server(proc)
        raise
    stop_server(proc)
    raise ServerFailed(f"{name}: not accepting on port {port} (exit {proc.returncode})")


def stop_server(proc):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    try:  # children of a fork-per-connection server may outlive the parent
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.stdout:
        proc.stdout.close()


# ---- backends a build may lack -----------------------------------------------

# A libsockkit row on one of these backends reads n/a, as a peer that is not
# built does, when the program refuses the backend: io_uring before its
# backend lands, or where the kernel or a seccomp filter refuses io_uring.
OPTIONAL_BACKENDS = {"io_uring"}
_refusals = {}  # (program, backend) -> why, or None


def row_backend(name):
    """(program, backend) of a libsockkit row on an optional backend, or None."""
    program, extra, _ = SERVERS.get(name) or PROXIES.get(name) or TLS_SERVERS[name]
    if "--backend" not in extra:
        return None
    backend = extra[extra.index("--backend") + 1]
    return (program, backend) if backend in OPTIONAL_BACKENDS else None


def backend_refused(bindir, name):
    """Why the program of row name cannot serve on its optional backend (the
    last line it printed), or None: it serves, or the row has no optional
    backend. Asked once per program and backend: the program is started
    alone (sk-proxy relaying to a port nothing listens on) and must print
    its "listening on" line, take a connection and keep running for half a
    second. It refuses only if it exits with a status (not a signal) and
    its message names a backend or this one: any other failure is left to
    the run, and fails it, as any server's does."""
    row = row_backend(name)
    if row is None:
        return None
    if row in _refusals:
        return _refusals[row]
    program, backend = row
    head = {SK: [os.path.join(bindir, SK)], SK_ECHO: [sk_echo_path(bindir)],
            "sk-proxy": [sk_proxy_path(bindir), "--to", "127.0.0.1:9"]}[program]
    argv = head + ["--listen", "127.0.0.1:0", "--backend", backend]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True, text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 5)
            line = proc.stdout.readline() if ready else ""
            if line.startswith("listening on "):
                host, _, port = line.split()[2].rpartition(":")
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                except OSError:
                    pass
            proc.wait(timeout=0.5 if line else 5)
        except subprocess.TimeoutExpired:
            pass
        finally:
            code = proc.poll()
            stop_server(proc)
        err.seek(0)
        said = err.read().strip()
    named = "backend" in said.lower() or backend.lower() in said.lower()
    why = said.splitlines()[-1] if code is not None and code > 0 and named else None
    _refusals[row] = why
    return why


def parse_line(line):
    out = {}
    for pair in line.split():
        key, _, value = pair.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def machine_busy(seconds=0.5):
    """CPUs busy (on average) over the next few tenths of a second, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v)
    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)


def wait_quiet(args):
    """Before a run: wait (up to --wait-quiet seconds) until nothing else keeps
    the machine busy, so the run is not shared with someone else's work."""
    if args.wait_quiet <= 0:
        return
    deadline = time.monotonic() + args.wait_quiet
    busy = machine_busy()
    if busy <= args.max_other:
        return
    log(f"  waiting: {busy:.2f} CPUs busy with other work")
    while busy > args.max_other and time.monotonic() < deadline:
        time.sleep(2)
        busy = machine_busy()


def busy_elsewhere(res):
    """CPUs (on average) used during the run by neither server nor load."""
    return res.get("other_cpu_s", 0) / res.get("secs", 1)


def bench(bindir, name, addr, pid, load, timing):
    """One sk-bench load against addr, pid being the server: its figures, or None."""
    argv = [os.path.join(bindir, "sk-bench"), "--connect", addr,
            "--server-pid", str(pid)] + load + timing
    limit = 60 + 4 * float(timing[1]) + float(timing[3])
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        log(f"  {name}: sk-bench timed out")
        return None
    if out.returncode != 0 or not out.stdout.strip():
        log(f"  {name}: sk-bench failed: {out.stderr.strip()}")
        return None
    res = parse_line(out.stdout.strip().splitlines()[-1])
    if res.get("errors", 0) > 0:
        log(f"  {name}: {int(res['errors'])} errors")
    return res


def run_one(bindir, name, load, timing, logdir, perf_seconds=0):
    """One fresh server under one load: the sk-bench figures, or None. With
    perf_seconds, a second load counts its system calls (perf_pass)."""
    with tempfile.NamedTemporaryFile("w+", dir=logdir, prefix="server-", delete=False) as logf:
        try:
            proc, addr = start_server(bindir, name, logf)
        except ServerFailed as e:
            logf.seek(0)
            log(f"  {e}: {logf.read().strip()[-300:]}")
            return None
        try:
            res = bench(bindir, name, addr, proc.pid, load, timing)
            if res is not None and perf_seconds:
                res.update(perf_pass(bindir, name, addr, proc.pid, load, perf_seconds, logdir))
            return res
        finally:
            stop_server(proc)


# ---- a proxy in front of the echo --------------------------------------------

def nginx_stream_module():
    return next((p for p in NGINX_STREAM if os.path.exists(p)), None)


def proxy_available(bindir, name):
    program = PROXIES[name][0]
    if not available(bindir, ECHO):
        return False
    if program == "sk-proxy":
        return os.access(sk_proxy_path(bindir), os.X_OK)
    if program == "nginx":
        return shutil.which("nginx") is not None and nginx_stream_module() is not None
    return program == "direct" or shutil.which(program) is not None


def sk_proxy_path(bindir):
    return os.path.join(os.path.dirname(bindir), "examples", "sk-proxy")


def free_port():
    """A port nothing listens on now (HAProxy, nginx and socat cannot report
    the port of a :0 listener; another program could take it meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def max_conns():
    """A connection limit that fits the descriptors: each relayed connection
    holds two, and the proxy needs a few of its own."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, min(4096, (soft - 64) // 2))


def proxy_argv(name, echo, port, tmp):
    """The command line of a third-party proxy on 127.0.0.1:port, its
    configuration written into tmp."""
    program = PROXIES[name][0]
    if program == "haproxy":
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"global\n    nbthread 1\n    maxconn {max_conns()}\n"
                    "defaults\n    mode tcp\n    timeout connect 5s\n"
                    "    timeout client 1m\n    timeout server 1m\n"
                    f"listen relay\n    bind 127.0.0.1:{port}\n    server echo {echo}\n")
        return ["haproxy", "-f", cfg, "-db"]
    if program == "nginx":
        cfg = os.path.join(tmp, "nginx.conf")
        with open(cfg, "w") as f:
            f.write(f"load_module {nginx_stream_module()};\n"
                    "master_process off;\ndaemon off;\nworker_processes 1;\n"
                    f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
                    f"events {{ worker_connections {max_conns()}; }}\n"
                    f"stream {{ server {{ listen 127.0.0.1:{port}; proxy_pass {echo}; }} }}\n")
        # -e: the error log before the configuration is read (not /var/log).
        return ["nginx", "-p", tmp + "/", "-c", cfg, "-e", f"{tmp}/error.log"]
    # nodelay on both sides, as every other server here (and HAProxy, nginx) sets;
    # a backlog of 4096, as the peers', not socat's 5 (50 connects at once would
    # wait for SYN retransmits).
    return ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=4096",
            f"TCP:{echo},nodelay"]


def start_proxy(bindir, name, echo, logf, tmp):
    """The proxy relaying to echo: (proc, its address)."""
    program, extra, _ = PROXIES[name]
    if program == "sk-proxy":
        argv = [sk_proxy_path(bindir), "--to", echo, "--listen", "127.0.0.1:0"] + extra
        return spawn_announced(argv, name, logf)
    port = free_port()
    return spawn_on_port(proxy_argv(name, echo, port, tmp), port, name, logf)


def cpu_ticks(pid):
    """utime + stime of a process, in seconds (clock ticks), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(root):
    """root and its descendants now, as pids."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, i = [root], 0
    while i < len(tree):
        tree += children.get(tree[i], [])
        i += 1
    return tree


def perf_pass(bindir, name, addr, pid, load, seconds, logdir):
    """A second, shorter load on the same server (or proxy), with perf stat
    counting the server's system calls and task-clock from before its first
    message to after its last (as compare.py does): {"syscalls_msg",
    "perf_cpu_ns_msg"}, per message of that load.
    Counting the sys_enter tracepoint slows every system call, so msgs/s and
    the CPU per message of the table come from the first load, without perf.

    perf stat -p follows every thread of each pid it is given, and with
    inherit (its default) every thread or process created after it attached;
    but not a child forked before: a fork-per-connection proxy may hold the
    children of the first load's connections, still exiting. So the whole
    tree is listed from /proc and given; the children of this load's
    connections are forked after perf attached, and inherit its counters."""
    out = os.path.join(logdir, "perf.txt")
    for _ in range(5):  # a child of the first load may exit while perf attaches
        argv = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,task-clock",
                "-p", ",".join(str(p) for p in process_tree(pid)), "-o", out]
        perf = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(0.5)  # attached before the load starts
        if perf.poll() is None:
            break
    res = bench(bindir, name, addr, pid, load, ["--duration", str(seconds), "--warmup", "0"])
    perf.send_signal(signal.SIGINT)
    try:
        _, err = perf.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        perf.kill()
        perf.wait()
        err = "did not stop"
    got = {}
    if os.path.exists(out):
        with open(out) as f:
            for line in f:
                fields = line.split(",")
                if len(fields) > 2 and fields[0][:1].isdigit():
                    got[fields[2]] = float(fields[0])
        os.unlink(out)
    syscalls, task_ms = got.get("raw_syscalls:sys_enter"), got.get("task-clock")
    if syscalls is None or task_ms is None:
        log(f"  {name}: perf stat counted nothing: {err.strip()[-200:]}")
        return {}
    if not res or not res.get("msgs"):
        return {}
    return {"syscalls_msg": syscalls / res["msgs"], "perf_cpu_ns_msg": task_ms * 1e6 / res["msgs"]}


def run_front(bindir, name, start, load, timing, logdir, perf_seconds, echo_behind=True):
    """A fresh server under one load: the sk-bench figures, or None. With
    echo_behind, a fresh echo first and the server relaying to it:
    start(echo address, logf, tmp) gives (proc, address) of the server, or
    None when sk-bench talks to the echo itself. The echo's CPU is not
    someone else's work: it is taken out of other_cpu_s (and reported as
    echo_cpu_s, echo_cpu_ns_msg)."""
    with tempfile.NamedTemporaryFile("w+", dir=logdir, prefix="server-", delete=False) as logf, \
            tempfile.TemporaryDirectory(dir=logdir, prefix="front-") as tmp:
        procs = []
        try:
            echo, echo_addr = start_server(bindir, ECHO, logf) if echo_behind else (None, None)
            if echo:
                procs.append(echo)
            front = start(echo_addr, logf, tmp)
            if front:
                procs.append(front[0])
            server, addr = front or (echo, echo_addr)
            t0, e0 = time.monotonic(), cpu_ticks(echo.pid) if echo else None
            res = bench(bindir, name, addr, server.pid, load, timing)
            t1, e1 = time.monotonic(), cpu_ticks(echo.pid) if echo else None
            if res is None:
                return None
            if server is not echo and e0 is not None and e1 is not None:
                res["echo_cpu_s"] = (e1 - e0) * res.get("secs", 0) / (t1 - t0)
                res["other_cpu_s"] = res.get("other_cpu_s", 0) - res["echo_cpu_s"]
                if res.get("msgs"):
                    res["echo_cpu_ns_msg"] = res["echo_cpu_s"] * 1e9 / res["msgs"]
            if perf_seconds:
                res.update(perf_pass(bindir, name, addr, server.pid, load, perf_seconds, logdir))
            return res
        except ServerFailed as e:
            logf.seek(0)
            log(f"  {e}: {logf.read().strip()[-300:]}")
            if isinstance(e, StartupRefused):
                raise
            return None
        finally:
            for p in reversed(procs):
                stop_server(p)


def run_proxy(bindir, name, load, timing, logdir, perf_seconds):
    """A fresh echo and a fresh proxy in front of it under one load: the
    sk-bench figures (the proxy as the server), or None."""
    def start(echo_addr, logf, tmp):
        if PROXIES[name][0] == "direct":
            return None
        return start_proxy(bindir, name, echo_addr, logf, tmp)
    return run_front(bindir, name, start, load, timing, logdir, perf_seconds)


# ---- TLS servers ------------------------------------------------------------

class StartupRefused(ServerFailed):
    """A libsockkit TLS server exited at startup (its build does not take
    --tls-cert yet, say): n/a, not a failure of the run."""


def make_cert(tmp):
    """A self-signed RSA-2048 certificate for localhost and 127.0.0.1, made
    into tmp with the openssl command: {"cert", "key", "both"} (both: the
    certificate then the key, as HAProxy's crt wants), or None."""
    cert, key, both = (os.path.join(tmp, n) for n in ("cert.pem", "key.pem", "both.pem"))
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
            "-out", cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"note: openssl req failed ({e}): the TLS servers are n/a")
        return None
    if out.returncode != 0:
        log(f"note: openssl req failed: {out.stderr.strip()[-300:]}: the TLS servers are n/a")
        return None
    with open(cert) as c, open(key) as k, open(both, "w") as f:
        f.write(c.read() + k.read())
    return {"cert": cert, "key": key, "both": both}


_tls_client = {}


def sk_bench_tls(bindir):
    """Whether this build's sk-bench speaks TLS (built with OpenSSL 3)."""
    if bindir not in _tls_client:
        out = subprocess.run([os.path.join(bindir, "sk-bench"), "--help"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        _tls_client[bindir] = "--tls-no-verify" in out.stdout
    return _tls_client[bindir]


def sk_echo_path(bindir):
    return os.path.join(os.path.dirname(bindir), "examples", SK_ECHO)


def tls_available(bindir, name):
    program = TLS_SERVERS[name][0]
    if program == "direct":
        return available(bindir, ECHO)
    if not sk_bench_tls(bindir) or not shutil.which("openssl"):
        return False
    if program == SK_ECHO:
        return os.access(sk_echo_path(bindir), os.X_OK)
    if program == "naive-tls-thread":
        return os.access(os.path.join(bindir, program), os.X_OK)
    if not available(bindir, ECHO):
        return False
    if program == "nginx":
        return shutil.which("nginx") is not None and nginx_stream_module() is not None
    if program == "stunnel":
        return stunnel_path() is not None
    return shutil.which(program) is not None


def stunnel_path():
    """stunnel 5 is stunnel4 on Debian (stunnel there may be the stunnel3 wrapper)."""
    return shutil.which("stunnel4") or shutil.which("stunnel")


def tls_argv(name, echo, port, tmp, certs):
    """The command line of a third-party TLS terminator on 127.0.0.1:port
    relaying to echo, its configuration written into tmp."""
    program = TLS_SERVERS[name][0]
    if program == "haproxy":
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"global\n    nbthread 1\n    maxconn {max_conns()}\n"
                    "defaults\n    mode tcp\n    timeout connect 5s\n"
                    "    timeout client 1m\n    timeout server 1m\n"
                    f"listen relay\n    bind 127.0.0.1:{port} ssl crt {certs['both']}\n"
                    f"    server echo {echo}\n")
        return ["haproxy", "-f", cfg, "-db"]
    if program == "nginx":
        cfg = os.path.join(tmp, "nginx.conf")
        with open(cfg, "w") as f:
            f.write(f"load_module {nginx_stream_module()};\n"
                    "master_process off;\ndaemon off;\nworker_processes 1;\n"
                    f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
                    f"events {{ worker_connections {max_conns()}; }}\n"
                    f"stream {{ server {{ listen 127.0.0.1:{port} ssl;\n"
                    f"    ssl_certificate {certs['cert']};\n"
                    f"    ssl_certificate_key {certs['key']};\n"
                    # nginx 1.22 offers TLS 1.0-1.2 alone unless told
                    "    ssl_protocols TLSv1.2 TLSv1.3;\n"
                    f"    proxy_pass {echo}; }} }}\n")
        return ["nginx", "-p", tmp + "/", "-c", cfg, "-e", f"{tmp}/error.log"]
    # stunnel: foreground, no pid file, errors only (HAProxy logs nothing here,
    # nginx errors only), TCP_NODELAY on both sides as every other server here.
    cfg = os.path.join(tmp, "stunnel.conf")
    with open(cfg, "w") as f:
        f.write("foreground = yes\npid =\nsyslog = no\ndebug = err\n"
                f"output = {tmp}/stunnel.log\n"
                "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
                f"[echo]\naccept = 127.0.0.1:{port}\nconnect = {echo}\n"
                f"cert = {certs['cert']}\nkey = {certs['key']}\n")
    return [stunnel_path(), cfg]


def start_tls(bindir, name, echo, logf, tmp, certs):
    """A TLS server (relaying to echo if it is a terminator): (proc, its
    address), or None for the echo itself (no TLS)."""
    program, extra, _ = TLS_SERVERS[name]
    if program == "direct":
        return None
    if program == SK_ECHO:
        argv = [sk_echo_path(bindir), "--listen", "127.0.0.1:0"] + extra + \
            ["--tls-cert", certs["cert"], "--tls-key", certs["key"]]
        try:
            return spawn_announced(argv, name, logf)
        except ServerFailed as e:
            raise StartupRefused(str(e)) from None
    if program == "naive-tls-thread":
        argv = [os.path.join(bindir, program), "--listen", "127.0.0.1:0",
                "--cert", certs["cert"], "--key", certs["key"]]
        return spawn_announced(argv, name, logf)
    port = free_port()
    return spawn_on_port(tls_argv(name, echo, port, tmp, certs), port, name, logf)


def run_tls(bindir, name, load, timing, logdir, perf_seconds, certs):
    """A fresh TLS server (and the echo behind it, for the terminators) under
    one load: the sk-bench figures, or None. Raises StartupRefused when a
    libsockkit TLS server does not start."""
    program = TLS_SERVERS[name][0]
    behind = program not in (SK_ECHO, "naive-tls-thread")
    return run_front(bindir, name, lambda echo, logf, tmp: start_tls(bindir, name, echo, logf,
                                                                      tmp, certs),
                     load, timing, logdir, perf_seconds, echo_behind=behind)


# ---- the run ----------------------------------------------------------------

def plan(args):
    """The (scenario, server, load, tag) list of one round, in order."""
    runs = []
    for sc in SCENARIOS:
        if not selected(args, sc):
            continue
        for name in sc["servers"]:
            if args.servers and name not in args.servers and name != sc["base"]:
                continue
            if sc.get("idle"):
                runs.append((sc, name, sc["load"], "without"))
                runs.append((sc, name, sc["load"] + ["--idle", str(args.idle)], "with"))
            elif sc.get("tls") and TLS_SERVERS[name][0] != "direct":
                runs.append((sc, name, sc["load"] + sc["tls"], ""))
            else:
                runs.append((sc, name, sc["load"], ""))
    return runs


def available(bindir, name):
    if name in TLS_SERVERS:
        there = tls_available(bindir, name)
    elif name in PROXIES:
        there = proxy_available(bindir, name)
    else:
        there = os.access(os.path.join(bindir, SERVERS[name][0]), os.X_OK)
    return there and not backend_refused(bindir, name)


def why_missing(bindir, name, program):
    """The note for a row that is not available."""
    why = backend_refused(bindir, name)
    if why:
        return f"{program} refuses {row_backend(name)[1]} ({why})"
    return f"{program} not {'built' if name in SERVERS else 'found'}"


def run_all(args, bindir, logdir):
    timing = ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    # The proxies' second load, under perf: not in --quick, nor without perf.
    perf_seconds = 0 if args.quick or not shutil.which("perf") else max(1.0, args.duration / 2)
    results = {}  # (scenario key, server, tag) -> [figures of each round]
    failures = []
    refused = set()  # libsockkit TLS servers that did not start: n/a
    runs = plan(args)
    certs = None
    if any(r[0].get("tls") and available(bindir, r[1]) and TLS_SERVERS[r[1]][0] != "direct"
           for r in runs):
        certs = make_cert(logdir)
    for rnd in range(args.rounds):
        log(f"round {rnd + 1}/{args.rounds}")
        for sc in SCENARIOS:
            mine = [r for r in runs if r[0] is sc]
            if not mine:
                continue
            # Rotate the order within the scenario from round to round.
            shift = (2 * rnd) % len(mine) if not sc.get("idle") else 0
            for _, name, load, tag in mine[shift:] + mine[:shift]:
                key = (sc["key"], name, tag)
                results.setdefault(key, [])
                if not available(bindir, name) or name in refused:
                    continue
                if sc.get("tls") and certs is None and TLS_SERVERS[name][0] != "direct":
                    continue
                res = None
                for attempt in range(1 + args.retries):
                    wait_quiet(args)
                    try:
                        if sc.get("tls"):
                            got = run_tls(bindir, name, load, timing, logdir, perf_seconds,
                                          certs)
                        elif sc.get("proxy"):
                            got = run_proxy(bindir, name, load, timing, logdir, perf_seconds)
                        else:
                            got = run_one(bindir, name, load, timing, logdir,
                                          perf_seconds if sc.get("perf") else 0)
                    except StartupRefused:
                        log(f"  {name}: did not start with the TLS options: n/a from now on")
                        refused.add(name)
                        got = None
                    if got is None:
                        break
                    # Keep the quietest attempt; when something else kept the
                    # machine busy, pause and try again.
                    if res is None or busy_elsewhere(got) < busy_elsewhere(res):
                        res = got
                    if busy_elsewhere(got) <= args.max_other or attempt == args.retries:
                        break
                    log(f"  {name}: {busy_elsewhere(got):.2f} CPUs busy elsewhere: again")
                    time.sleep(2)
                if res is None:
                    if name not in refused:
                        failures.append(key)
                else:
                    res["round"] = rnd
                    results[key].append(res)
                shown = "n/a" if res is None else f"{res.get('msgs_s', 0):.0f}/s"
                if res is not None and "syscalls_msg" in res:
                    shown += f" {res['syscalls_msg']:.2f} syscalls/msg"
                if res is not None and res.get("handshakes") and "--tls-resume" in load:
                    shown += f" resumed {res['resumed'] / res['handshakes']:.0%}"
                log(f"  {sc['key']:11} {name:16} {tag:8} {shown}")
    return results, failures


# ---- figures ----------------------------------------------------------------

def med(results, key, field):
    vals = [r[field] for r in results.get(key, []) if field in r]
    return statistics.median(vals) if vals else None


def ratio_med(results, a, b, field):
    """The median, over the rounds where both ran, of a's figure over b's in
    the same round: a round's runs are minutes apart, not a whole run apart,
    so a machine that gets faster or slower meanwhile moves both alike."""
    b_by_round = {r["round"]: r[field] for r in results.get(b, []) if r.get(field)}
    vals = [r[field] / b_by_round[r["round"]] for r in results.get(a, [])
            if field in r and r["round"] in b_by_round]
    return statistics.median(vals) if vals else None


def fmt(v, spec=".0f", none="n/a"):
    return none if v is None else format(v, spec)


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}×"


def proxy_table(sc, results):
    """The table of a proxy scenario: the proxy's figures, the echo's left out."""
    key, base = sc["key"], sc["base"]
    metric = sc.get("metric", "msgs_s")
    unit = {"msgs_s": "msgs/s", "mb_s": "MB/s"}[metric]
    head = ["proxy", unit, f"× {base}", "proxy CPU µs/msg", "syscalls/msg",
            "µs/msg under perf", "client CPU", "p50 µs", "p99 µs", "p99.9 µs", "errors"]
    rows = []
    for name in sc["servers"]:
        k = (key, name, "")
        val, cpu = med(results, k, metric), med(results, k, "srv_cpu_ns_msg")
        perf_cpu = med(results, k, "perf_cpu_ns_msg")
        cli, secs = med(results, k, "cli_cpu_s"), med(results, k, "secs")
        errs = sum(r.get("errors", 0) for r in results.get(k, []))
        rows.append([name, fmt(val, ".1f" if metric == "mb_s" else ".0f"),
                     fmt_ratio(ratio_med(results, k, (key, base, ""), metric)),
                     fmt(cpu / 1e3 if cpu is not None else None, ".2f"),
                     fmt(med(results, k, "syscalls_msg"), ".2f"),
                     fmt(perf_cpu / 1e3 if perf_cpu is not None else None, ".2f"),
                     fmt(cli / secs if cli is not None and secs else None, ".0%"),
                     fmt(med(results, k, "p50_us"), ".0f"), fmt(med(results, k, "p99_us"), ".0f"),
                     fmt(med(results, k, "p999_us"), ".0f"), f"{errs:.0f}"])
    return head, rows


def tls_table(sc, results):
    """The table of a TLS scenario. The server CPU is the TLS server's (the
    terminator's, for HAProxy, nginx and stunnel); the echo behind a
    terminator has its own column."""
    key, base = sc["key"], sc["base"]
    metric = sc.get("metric", "msgs_s")
    rate = sc.get("unit") == "handshakes"
    unit = "handshakes/s" if rate else {"msgs_s": "msgs/s", "mb_s": "MB/s"}[metric]
    per = "hs" if rate else "msg"
    head = ["server", unit, f"× {base}", f"server CPU µs/{per}", f"echo CPU µs/{per}",
            f"syscalls/{per}", f"µs/{per} under perf", "client CPU", "p50 µs", "p99 µs",
            "p99.9 µs"] + (["resumed"] if rate else []) + ["errors"]
    rows = []

    def us(k, field):
        v = med(results, k, field)
        return fmt(v / 1e3 if v is not None else None, ".2f")
    for name in sc["servers"]:
        k = (key, name, "")
        val = med(results, k, metric)
        cli, secs = med(results, k, "cli_cpu_s"), med(results, k, "secs")
        errs = sum(r.get("errors", 0) for r in results.get(k, []))
        hs = sum(r.get("handshakes", 0) for r in results.get(k, []))
        resumed = sum(r.get("resumed", 0) for r in results.get(k, []))
        rows.append([name, fmt(val, ".1f" if metric == "mb_s" else ".0f"),
                     fmt_ratio(ratio_med(results, k, (key, base, ""), metric)),
                     us(k, "srv_cpu_ns_msg"), us(k, "echo_cpu_ns_msg"),
                     fmt(med(results, k, "syscalls_msg"), ".2f"), us(k, "perf_cpu_ns_msg"),
                     fmt(cli / secs if cli is not None and secs else None, ".0%"),
                     fmt(med(results, k, "p50_us"), ".0f"), fmt(med(results, k, "p99_us"), ".0f"),
                     fmt(med(results, k, "p999_us"), ".0f")]
                    + ([fmt(resumed / hs if hs else None, ".0%")] if rate else [])
                    + [f"{errs:.0f}"])
    return head, rows


def scenario_table(sc, results, idle):
    """A markdown table for a scenario: header, rows."""
    key, base = sc["key"], sc["base"]
    if sc.get("tls"):
        return tls_table(sc, results)
    if sc.get("proxy"):
        return proxy_table(sc, results)
    if sc.get("idle"):
        head = ["server", "RSS per idle conn (B)", "p99 without (µs)",
                f"p99 with {idle} idle (µs)", "p99 ratio", "msgs/s without", "msgs/s with",
                "errors"]
        rows = []
        for name in sc["servers"]:
            w, wo = (key, name, "with"), (key, name, "without")
            p99w, p99wo = med(results, w, "p99_us"), med(results, wo, "p99_us")
            errs = sum(r.get("errors", 0) for r in results.get(w, []) + results.get(wo, []))
            rows.append([name, fmt(med(results, w, "srv_rss_per_idle_b")), fmt(p99wo, ".1f"),
                         fmt(p99w, ".1f"), fmt_ratio(ratio_med(results, w, wo, "p99_us")),
                         fmt(med(results, wo, "msgs_s")), fmt(med(results, w, "msgs_s")),
                         f"{errs:.0f}"])
        return head, rows
    metric = sc.get("metric", "msgs_s")
    unit = {"msgs_s": "msgs/s", "mb_s": "MB/s"}[metric]
    per = "µs/msg"
    if sc["key"] == "rate":
        unit, per = "conns/s", "µs/conn"
    head = ["server", unit, f"× {base}", f"server CPU {per}", f"× {base}"] + \
        (["syscalls/msg"] if sc.get("perf") else []) + \
        ["client CPU", "p50 µs", "p99 µs", "p99.9 µs", "errors"]
    rows = []
    for name in sc["servers"]:
        k = (key, name, "")
        val, cpu = med(results, k, metric), med(results, k, "srv_cpu_ns_msg")
        cli = med(results, k, "cli_cpu_s")
        secs = med(results, k, "secs")
        errs = sum(r.get("errors", 0) for r in results.get(k, []))
        rows.append([name, fmt(val, ".1f" if metric == "mb_s" else ".0f"),
                     fmt_ratio(ratio_med(results, k, (key, base, ""), metric)),
                     fmt(cpu / 1e3 if cpu is not None else None, ".2f"),
                     fmt_ratio(ratio_med(results, k, (key, base, ""), "srv_cpu_ns_msg"))]
                    + ([fmt(med(results, k, "syscalls_msg"), ".2f")] if sc.get("perf") else [])
                    + [fmt(100 * cli / secs if cli is not None and secs else None, ".0f") + "%",
                       fmt(med(results, k, "p50_us"), ".0f"),
                       fmt(med(results, k, "p99_us"), ".0f"),
                       fmt(med(results, k, "p999_us"), ".0f"), f"{errs:.0f}"])
    return head, rows


def targets(results):
    """Issue 5's targets: (what, measured, goal, met) rows."""
    rows = []

    def check(what, value, goal, ok_if_at_least=True):
        if value is None:
            rows.append([what, "n/a", goal, "n/a"])
            return
        met = value >= float(goal.split()[-1].rstrip("×")) if ok_if_at_least else \
            value <= float(goal.split()[-1].rstrip("×"))
        rows.append([what, f"{value:.2f}×", goal, "met" if met else "MISSED"])

    def r(sc, a, b, field="msgs_s", ta="", tb=""):
        return ratio_med(results, (sc, a, ta), (sc, b, tb), field)

    for be in ("epoll-et", "epoll-lt"):
        check(f"ping-pong: {be} / floor, msgs/s", r("pingpong", be, "floor"), "≥ 0.95×")
        uv = max(("libuv", "libuv pool"), key=lambda n: med(results, ("pingpong", n, ""),
                                                             "msgs_s") or 0)
        check(f"ping-pong: {be} / {uv}, msgs/s", r("pingpong", be, uv), "≥ 1.00×")
        check(f"ping-pong: {be} / libevent, msgs/s", r("pingpong", be, "libevent"), "≥ 1.20×")
        check(f"ping-pong: {be} / floor, server CPU per msg",
              r("pingpong", be, "floor", "srv_cpu_ns_msg"), "≤ 1.10×", False)
    check("pipeline 16: epoll-et / floor, msgs/s",
          r("pipeline", "epoll-et", "floor"), "≥ 0.90×")
    for be in ("epoll-et w=2", "epoll-lt w=2"):
        check(f"workers=2: {be} / floor 2t, msgs/s", r("workers", be, "floor 2t"), "≥ 0.95×")
    check("64 KiB: epoll-et / floor, MB/s", r("large", "epoll-et", "floor", "mb_s"), "≥ 0.90×")
    check("ping-pong: pthread / naive-thread, msgs/s",
          r("pingpong", "pthread", "naive-thread"), "≥ 1.00×")
    check("ping-pong: fork / naive-fork, msgs/s",
          r("pingpong", "fork", "naive-fork"), "≥ 1.00×")
    check("connection rate: fork w=2 / naive-fork, conns/s",
          r("rate", "fork w=2", "naive-fork"), "≥ 3.00×")
    rss = med(results, ("idle", "epoll-et", "with"), "srv_rss_per_idle_b")
    rows.append(["idle: epoll-et RSS per idle connection", fmt(rss, ".0f") + " B", "≤ 2048 B",
                 "n/a" if rss is None else "met" if rss <= 2048 else "MISSED"])
    check("idle: epoll-et p99 with / without idle connections",
          r("idle", "epoll-et", "epoll-et", "p99_us", "with", "without"), "≤ 1.50×", False)
    return ["target (issue 5)", "measured", "goal", ""], rows


def best_peer_proxy(results, sc, field, pick):
    """HAProxy or nginx, whichever pick (min, max) takes by its median of
    field in scenario sc; HAProxy when neither ran."""
    got = {n: med(results, (sc, n, ""), field) for n in ("haproxy", "nginx")}
    got = {n: v for n, v in got.items() if v is not None}
    return pick(got, key=got.get) if got else "haproxy"


def proxy_targets(results):
    """The proxy's targets: (what, measured, goal, met) rows."""
    rows = []

    def check(what, value, goal, at_least=True, unit="×"):
        if value is None:
            rows.append([what, "n/a", goal, "n/a"])
            return
        bound = float(goal.split()[-1].rstrip("×"))
        met = value >= bound if at_least else value <= bound
        rows.append([what, f"{value:.2f}{unit}", goal, "met" if met else "MISSED"])

    def r(sc, a, b, field):
        return ratio_med(results, (sc, a, ""), (sc, b, ""), field)

    et = "sk-proxy epoll-et"
    check(f"ping-pong: {et}, system calls per message",
          med(results, ("proxy", et, ""), "syscalls_msg"), "≤ 4.3", False, "")
    cheap = best_peer_proxy(results, "proxy", "srv_cpu_ns_msg", min)
    check(f"ping-pong: {et} / {cheap}, proxy CPU per message",
          r("proxy", et, cheap, "srv_cpu_ns_msg"), "≤ 0.92×", False)
    fast = best_peer_proxy(results, "proxy", "msgs_s", max)
    check(f"ping-pong: {et} / {fast}, msgs/s", r("proxy", et, fast, "msgs_s"), "≥ 1.00×")
    for peer in ("haproxy", "nginx"):
        check(f"64 KiB: {et} / {peer}, MB/s", r("proxy-64k", et, peer, "mb_s"), "≥ 1.00×")
    for be in ("sk-proxy fork", "sk-proxy pthread"):
        check(f"ping-pong: {be} / socat, msgs/s", r("proxy", be, "socat", "msgs_s"), "≥ 1.00×")
    return ["proxy target", "measured", "goal", ""], rows


URING_KEYS = {"pingpong", "pipeline", "large", "idle", "proxy"}


def uring_targets(results):
    """Issue 14's targets, for the io_uring backend: (what, measured, goal,
    met) rows. A row whose figure is missing (the backend not there yet, its
    scenario not run, no perf) reads n/a."""
    rows = []

    def check(what, value, goal, at_least=True, unit="×", spec=".2f"):
        if value is None:
            rows.append([what, "n/a", goal, "n/a"])
            return
        bound = float(goal.split()[1].rstrip("×"))  # "≤ 2048 B" -> 2048
        met = value >= bound if at_least else value <= bound
        rows.append([what, f"{value:{spec}}{unit}", goal, "met" if met else "MISSED"])

    def r(sc, a, b, field="msgs_s", ta="", tb=""):
        return ratio_med(results, (sc, a, ta), (sc, b, tb), field)

    u = "io_uring"
    check(f"ping-pong: {u}, system calls per message",
          med(results, ("pingpong", u, ""), "syscalls_msg"), "≤ 0.3", False, "")
    check(f"ping-pong: {u} / floor, server CPU per msg",
          r("pingpong", u, "floor", "srv_cpu_ns_msg"), "≤ 0.75×", False)
    check(f"ping-pong: {u} / epoll-et, msgs/s", r("pingpong", u, "epoll-et"), "≥ 1.00×")
    check(f"ping-pong: {u} / uring floor, server CPU per msg",
          r("pingpong", u, "uring floor", "srv_cpu_ns_msg"), "≤ 1.05×", False)
    check(f"pipeline 16: {u} / floor, msgs/s", r("pipeline", u, "floor"), "≥ 1.20×")
    check(f"64 KiB: {u} / floor, MB/s", r("large", u, "floor", "mb_s"), "≥ 1.00×")
    check(f"idle: {u} RSS per idle connection",
          med(results, ("idle", u, "with"), "srv_rss_per_idle_b"), "≤ 2048 B", False, " B",
          ".0f")
    check(f"idle: {u} p99 with / without idle connections",
          r("idle", u, u, "p99_us", "with", "without"), "≤ 1.50×", False)
    px = f"sk-proxy {u}"
    cheap = best_peer_proxy(results, "proxy", "srv_cpu_ns_msg", min)
    check(f"ping-pong: {px} / {cheap}, proxy CPU per message",
          r("proxy", px, cheap, "srv_cpu_ns_msg"), "≤ 0.75×", False)
    fast = best_peer_proxy(results, "proxy", "msgs_s", max)
    check(f"ping-pong: {px} / {fast}, msgs/s", r("proxy", px, fast), "≥ 1.15×")
    return ["io_uring target (issue 14)", "measured", "goal", ""], rows


def tls_targets(results):
    """The TLS targets: (what, measured, goal, met) rows."""
    rows = []

    def check(what, value, goal):
        if value is None:
            rows.append([what, "n/a", goal, "n/a"])
            return
        met = value >= float(goal.split()[-1].rstrip("×"))
        rows.append([what, f"{value:.2f}×", goal, "met" if met else "MISSED"])

    def r(sc_a, a, sc_b, b, field="msgs_s"):
        return ratio_med(results, (sc_a, a, ""), (sc_b, b, ""), field)

    et = "epoll-et tls"
    for peer, goal in (("haproxy tls", "≥ 2.00×"), ("stunnel tls", "≥ 4.00×"),
                       ("naive-tls-thread", "≥ 1.00×")):
        check(f"ping-pong: {et} / {peer}, msgs/s", r("tls", et, "tls", peer), goal)
    check("ping-pong: pthread tls / naive-tls-thread, msgs/s",
          r("tls", "pthread tls", "tls", "naive-tls-thread"), "≥ 1.00×")
    check(f"64 KiB: {et} / haproxy tls, MB/s",
          r("tls-64k", et, "tls-64k", "haproxy tls", "mb_s"), "≥ 1.00×")
    check(f"full handshakes: {et} / haproxy tls, per s",
          r("tls-full", et, "tls-full", "haproxy tls"), "≥ 0.95×")
    check(f"resumed handshakes: {et} / haproxy tls, per s",
          r("tls-resumed", et, "tls-resumed", "haproxy tls"), "≥ 0.95×")
    check(f"{et}: resumed / full handshakes per s",
          r("tls-resumed", et, "tls-full", et), "≥ 1.50×")
    return ["TLS target", "measured", "goal", ""], rows


def markdown(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def text_table(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def report(args, results, elapsed):
    parts_md, parts_txt = [], []
    for sc in SCENARIOS:
        if not selected(args, sc):
            continue
        title = sc["title"].replace("IDLE", str(args.idle))
        head, rows = scenario_table(sc, results, args.idle)
        parts_md.append(f"### {sc['key']}: {title}\n\n{markdown(head, rows)}\n")
        parts_txt.append(f"== {sc['key']}: {title}\n{text_table(head, rows)}\n")
    if not args.only:
        head, rows = targets(results)
        parts_md.append(f"### Targets\n\n{markdown(head, rows)}\n")
        parts_txt.append(f"== targets\n{text_table(head, rows)}\n")
    if any(sc["key"] in URING_KEYS and selected(args, sc) for sc in SCENARIOS):
        head, rows = uring_targets(results)
        parts_md.append(f"### io_uring targets\n\n{markdown(head, rows)}\n")
        parts_txt.append(f"== io_uring targets\n{text_table(head, rows)}\n")
    if any(sc.get("proxy") and selected(args, sc) for sc in SCENARIOS):
        head, rows = proxy_targets(results)
        parts_md.append(f"### Proxy targets\n\n{markdown(head, rows)}\n")
        parts_txt.append(f"== proxy targets\n{text_table(head, rows)}\n")
    if any(sc.get("tls") and selected(args, sc) for sc in SCENARIOS):
        head, rows = tls_targets(results)
        parts_md.append(f"### TLS targets\n\n{markdown(head, rows)}\n")
        parts_txt.append(f"== TLS targets\n{text_table(head, rows)}\n")
    cmd = "python3 bench/run.py " + " ".join(sys.argv[1:])
    others = [busy_elsewhere(r) for runs in results.values() for r in runs]
    took = "" if args.from_json else f"{elapsed / 60:.1f} min in all; "
    info = (f"{args.rounds} round(s), {args.duration} s measured per run after "
            f"{args.warmup} s warm-up; medians; {took}"
            f"{os.cpu_count()} CPUs, Linux {platform.release()}; CPU busy outside server "
            f"and load: median {statistics.median(others) if others else 0:.2f}, "
            f"max {max(others) if others else 0:.2f} CPUs")
    md = f"Command: `{cmd}`  \n{info}\n\n" + "\n".join(parts_md)
    print(info + "\n")
    print("\n".join(parts_txt))
    return md


def load_json(path):
    with open(path) as f:
        entries = json.load(f)
    results = {}
    for e in entries:
        runs = e["runs"]
        for i, r in enumerate(runs):
            r.setdefault("round", i)
        results[(e["scenario"], e["server"], e["tag"])] = runs
    return results


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(here), "build"),
                    help="meson build directory (default: ../build from this script)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (idle scenario)")
    ap.add_argument("--only", help="comma-separated scenario keys (proxy: proxy, proxy-64k; "
                    "tls: tls, tls-64k, tls-full, tls-resumed)")
    ap.add_argument("--servers", help="comma-separated server names (the base always runs)")
    ap.add_argument("--max-other", type=float, default=0.25,
                    help="CPUs busy elsewhere that make a run be repeated (default 0.25)")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run")
    ap.add_argument("--wait-quiet", type=float, default=120,
                    help="seconds to wait, before a run, for other work to stop (default 120)")
    ap.add_argument("--quick", action="store_true",
                    help="1 round of short runs, 1000 idle connections: a smoke test")
    ap.add_argument("--markdown", help="write the tables as markdown here")
    ap.add_argument("--json", help="write every run's figures here")
    ap.add_argument("--from-json", help="run nothing: report the figures a --json run wrote")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.idle = 1, 0.25, 0.1, 1000
        args.retries, args.wait_quiet = 0, 0
    args.only = set(args.only.split(",")) if args.only else None
    args.servers = set(args.servers.split(",")) if args.servers else None
    bindir = os.path.join(args.build, "bench")
    if not os.access(os.path.join(bindir, "sk-bench"), os.X_OK):
        sys.exit(f"run.py: no {bindir}/sk-bench: build first (ninja -C {args.build})")
    for name in SERVERS:
        if not available(bindir, name):
            log(f"note: {why_missing(bindir, name, SERVERS[name][0])}: {name} is n/a")
    if any(sc.get("proxy") and selected(args, sc) for sc in SCENARIOS):
        for name in PROXIES:
            if not available(bindir, name):
                log(f"note: {why_missing(bindir, name, PROXIES[name][0])}: {name} is n/a")
        if not args.quick and not shutil.which("perf"):
            log("note: no perf: the proxies' system calls per message are n/a")
    if any(sc.get("tls") and selected(args, sc) for sc in SCENARIOS):
        if not sk_bench_tls(bindir):
            log("note: sk-bench built without OpenSSL 3: the TLS servers are n/a")
        elif not shutil.which("openssl"):
            log("note: no openssl command to make a certificate: the TLS servers are n/a")
        for name in TLS_SERVERS:
            if not available(bindir, name):
                log(f"note: {why_missing(bindir, name, TLS_SERVERS[name][0])}: {name} is n/a")

    # Every server and the load generator inherit the raised descriptor limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + 1024
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        log(f"note: RLIMIT_NOFILE raised from {soft} to {new} for the servers")
        if new < need:
            log(f"note: hard limit {hard} < {need}: the idle scenario will fall short")

    # A stop (SIGTERM) unwinds like ^C, so the running server is stopped too.
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(128 + signo))
    began = time.monotonic()
    if args.from_json:
        results, failures = load_json(args.from_json), []
    else:
        with tempfile.TemporaryDirectory(prefix="sk-bench-") as logdir:
            results, failures = run_all(args, bindir, logdir)
    elapsed = time.monotonic() - began
    md = report(args, results, elapsed)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"scenario": k[0], "server": k[1], "tag": k[2], "runs": v}
                       for k, v in results.items()], f, indent=1)
    allowed = {"fork w=2"}  # may not be implemented yet: recorded as n/a
    hard_fail = [k for k in failures if k[1] not in allowed]
    errors = [k for k, v in results.items() if any(r.get("errors", 0) for r in v)]
    if hard_fail or errors:
        log(f"run.py: {len(hard_fail)} run(s) failed, {len(errors)} with errors: "
            + ", ".join(" ".join(x for x in k if x) for k in hard_fail + errors))
        return 1
    log(f"run.py: done in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
