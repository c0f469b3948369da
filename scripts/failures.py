#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print the end of each failed test's output from a meson log, so that the
last lines of a run (all a CI record may keep) say why it failed.

usage: failures.py TESTLOG.json [LINES]"""
import json
import sys

PASSED = {'OK', 'SKIP', 'EXPECTEDFAIL'}


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    keep = int(sys.argv[2]) if len(sys.argv) == 3 else 25
    try:
        log = open(sys.argv[1], encoding='utf-8', errors='replace')
    except OSError as e:
        sys.exit(f'failures.py: {e}')
    with log:
        for line in log:
            test = json.loads(line)
            if test.get('result') in PASSED:
                continue
            print(f'==> failed: {test["name"]} ({test.get("result")}, '
                  f'{test.get("duration", 0):.1f} s): the last lines of its output')
            for stream in ('stdout', 'stderr'):
                text = (test.get(stream) or '').rstrip('\n').splitlines()
                for out in text[-keep:]:
                    print(f'  {stream}| {out}')


if __name__ == '__main__':
    main()
