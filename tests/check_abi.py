#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shared object exports exactly the SK_API functions of the public headers,
all under the version script, with soname libsockkit.so.<major>; and the
bad-input test calls every one of them."""
import re
import subprocess
import sys
from pathlib import Path

so, version_script, major, badinput = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
include_dirs = [Path(d) for d in sys.argv[5:]]
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
for header in sorted(h for d in include_dirs for h in d.glob('*.h')):
    text = header.read_text()
    for m in re.finditer(r'SK_API\s+[^;(]*?\b(sk_\w+)\s*\(', text):
        declared.add(m.group(1))

script = set(re.findall(r'^\s+(sk_\w+);', Path(version_script).read_text(), re.M))

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
