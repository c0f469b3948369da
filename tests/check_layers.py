#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The library's files call one way: no two files of lib/ call into each other,
directly or round a longer circle. Reads the symbols of the library's object
files (nm) and fails on any cycle of calls between files, naming it.

usage: check_layers.py BUILD_LIB_DIR (the library's objects are in its
libsockkit*.p directory)"""
import glob
import os
import subprocess
import sys


def graph(objdir):
    defined, used = {}, {}
    for obj in sorted(glob.glob(os.path.join(objdir, '*.o'))):
        name = os.path.basename(obj)[:-len('.c.o')].replace('backend_', 'backend/')
        out = subprocess.run(['nm', obj], capture_output=True, text=True, check=True).stdout
        used[name] = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in 'TDRBC':
                defined[parts[2]] = name
            elif len(parts) == 2 and parts[0] == 'U':
                used[name].add(parts[1])
    return {f: {defined[s] for s in syms if s in defined and defined[s] != f}
            for f, syms in used.items()}


def find_cycle(edges):
    state, stack = {}, []

    def visit(f):
        state[f] = 1
        stack.append(f)
        for g in sorted(edges.get(f, ())):
            if state.get(g) == 1:
                return stack[stack.index(g):] + [g]
            if g not in state:
                found = visit(g)
                if found:
                    return found
        stack.pop()
        state[f] = 2
        return None

    for f in sorted(edges):
        if f not in state:
            found = visit(f)
            if found:
                return found
    return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dirs = sorted(glob.glob(os.path.join(sys.argv[1], 'libsockkit*.p')))
    if not dirs:
        sys.exit('check_layers: no libsockkit*.p in %s' % sys.argv[1])
    edges = graph(dirs[0])
    if len(edges) < 10:
        sys.exit('check_layers: only %d object files in %s' % (len(edges), sys.argv[1]))
    cycle = find_cycle(edges)
    if cycle:
        sys.exit('check_layers: files of lib/ call each other: ' + ' -> '.join(cycle))
    for f in sorted(edges):
        print('%-20s -> %s' % (f, ', '.join(sorted(edges[f])) or '(nothing)'))
    print('check_layers: %d files, no circle of calls' % len(edges))


if __name__ == '__main__':
    main()
