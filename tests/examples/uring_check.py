# SPDX-License-Identifier: MIT
"""Whether the io_uring backend can run here, for the example tests: where it
cannot (io_uring turned off or filtered, an old kernel, or memcheck, which
does not model the ring), a test on it exits 77, skipped, and says why."""
import os
import select
import subprocess
import sys


def skip_unless_uring(echo, backend):
    """Return if backend is not io_uring or io_uring works; else exit 77."""
    if backend != 'io_uring':
        return
    if os.environ.get('SK_EXAMPLE_WRAPPER'):
        print('SKIP: io_uring under valgrind: memcheck does not see what the kernel '
              'writes into the ring (doc/RELIABILITY.md)')
        sys.exit(77)
    p = subprocess.Popen([echo, '--backend', 'io_uring', '--listen', '127.0.0.1:0'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline() if ready else b''
        if line:
            return  # it serves: the test goes on
        p.wait(timeout=10)
        why = p.stderr.read().decode(errors='replace').strip()
        print(f'SKIP: the io_uring backend cannot run here: {why}')
        sys.exit(77)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
