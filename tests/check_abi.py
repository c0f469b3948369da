#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shared object exports exactly the SK_API functions of the public headers,
all under the version script, with soname libsockkit.so.<major>; and the
bad-input test calls every one of them.

Version nodes: one per minor release (SOCKKIT_1.0, SOCKKIT_1.1, ...), each
inheriting the one before, none newer than the project's version; a function
sits in the node its doxygen `@since` names; a released node (one with a
baseline abi/sockkit-X.Y.Z.abi) holds exactly the names it was released with.

usage: check_abi.py SO MAP VERSION BADINPUT ABI_DIR INCLUDE_DIR..."""
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

so, version_script, version, badinput = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
abi_dir = Path(sys.argv[5])
include_dirs = [Path(d) for d in sys.argv[6:]]
major, minor = (int(x) for x in version.split('.')[:2])
failures = []

dyn = subprocess.run(['nm', '-D', '--defined-only', so], capture_output=True, text=True, check=True)
exported = {}
for line in dyn.stdout.splitlines():
    parts = line.split()
    if len(parts) < 3:
        continue
    kind, name = parts[1], parts[2]
    base, _, node = name.partition('@')
    if kind == 'A' and base.startswith('SOCKKIT_'):
        continue  # a version node
    if not base.startswith('sk_') or base.startswith('sk__'):
        failures.append(f'exported symbol outside the API: {name}')
    exported[base] = node.lstrip('@')

declared = set()
since = {}
for header in sorted(h for d in include_dirs for h in d.glob('*.h')):
    text = header.read_text()
    for m in re.finditer(r'SK_API\s+[^;(]*?\b(sk_\w+)\s*\(', text):
        declared.add(m.group(1))
    for m in re.finditer(r'/\*\*((?:(?!\*/).)*)\*/\s*SK_API\s+[^;(]*?\b(sk_\w+)\s*\(', text, re.S):
        tag = re.search(r'@since\s+(\d+\.\d+)', m.group(1))
        since[m.group(2)] = tag.group(1) if tag else None

# The version script's nodes, in order: SOCKKIT_X.Y { global: names; } PARENT;
map_text = re.sub(r'/\*.*?\*/', '', Path(version_script).read_text(), flags=re.S)
nodes = []
for m in re.finditer(r'(SOCKKIT_(\d+)\.(\d+))\s*\{(.*?)\}\s*([\w.]*)\s*;', map_text, re.S):
    names = set(re.findall(r'^\s+(sk_\w+);', m.group(4), re.M))
    nodes.append((m.group(1), (int(m.group(2)), int(m.group(3))), names, m.group(5)))
script = set().union(*(n[2] for n in nodes)) if nodes else set()
for i, (node, ver, names, parent) in enumerate(nodes):
    if ver[0] != major or ver > (major, minor):
        failures.append(f'node {node} does not belong to version {version}')
    if i and (parent != nodes[i - 1][0] or ver <= nodes[i - 1][1]):
        failures.append(f'node {node} must follow and inherit {nodes[i - 1][0]}')
    if not i and parent:
        failures.append(f'the first node {node} inherits {parent}')
node_of = {name: node for node, _, names, _ in nodes for name in names}

# A released node is frozen: its names are those of the release's baseline.
for baseline in sorted(abi_dir.glob('sockkit-*.abi')):
    symbols = ET.parse(baseline).getroot().iter('elf-symbol')
    released = {}
    for sym in symbols:
        if sym.get('is-defined') == 'yes':
            released.setdefault(sym.get('version'), set()).add(sym.get('name'))
    for node, names in released.items():
        now = {name for name, n in node_of.items() if n == node}
        for name in sorted(now - names):
            failures.append(f'{name} added to {node}, released in {baseline.name}: '
                            'put it in the newest node')
        for name in sorted(names - now):
            failures.append(f'{name} left {node}, released in {baseline.name}')

# Each function's @since names its node.
for name in sorted(declared):
    if not since.get(name):
        failures.append(f'{name}: no @since in its doxygen comment')
    elif name in node_of and node_of[name] != f'SOCKKIT_{since[name]}':
        failures.append(f'{name}: @since {since[name]} but in node {node_of[name]}')

for name in sorted(declared - set(exported)):
    failures.append(f'declared SK_API but not exported: {name}')
for name in sorted(set(exported) - declared):
    failures.append(f'exported but not declared SK_API in a public header: {name}')
for name in sorted(declared - script):
    failures.append(f'missing from the version script: {name}')
for name, node in sorted(exported.items()):
    if not node.startswith('SOCKKIT_'):
        failures.append(f'not versioned by the version script: {name} ({node or "no node"})')

dynamic = subprocess.run(['readelf', '-d', so], capture_output=True, text=True, check=True).stdout
soname = re.search(r'\(SONAME\)\s+Library soname: \[(.*)\]', dynamic)
want = f'libsockkit.so.{major}'
if not soname or soname.group(1) != want:
    failures.append(f'soname is {soname.group(1) if soname else "missing"}, want {want}')

called = set(re.findall(r'\b(sk_\w+)\s*\(', Path(badinput).read_text()))
for name in sorted(set(exported) - called):
    failures.append(f'not called with bad input in {Path(badinput).name}: {name}')

for f in failures:
    print('FAIL:', f)
print(f'{len(exported)} exported functions checked, {len(failures)} problem(s)')
sys.exit(1 if failures else 0)
