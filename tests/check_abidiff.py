#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The freshly built libsockkit.so keeps the ABI of every committed release
baseline (abi/sockkit-X.Y.Z.abi): libabigail's abidiff finds no removed or
changed function or variable, no changed type reachable from the public
headers, and every symbol keeps its version node. Additions pass.

usage: check_abidiff.py LIBRARY ABI_DIR HEADER_DIR...
Exits 77 (skipped) when abidiff is not installed (Debian: abigail-tools)."""
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# abidiff's exit status is a bit mask.
ABIDIFF_ERROR, ABIDIFF_USAGE_ERROR = 1, 2
ABIDIFF_ABI_CHANGE, ABIDIFF_ABI_INCOMPATIBLE_CHANGE = 4, 8

# "Functions changes summary: 0 Removed, 1 Changed (2 filtered out), 3 Added functions"
SUMMARY = re.compile(r'^\s*(Functions|Variables|Function symbols|Variable symbols) changes '
                     r'summary: (\d+) Removed(?:, (\d+) Changed[^,]*)?, (\d+) Added', re.M)


def symbol_versions(root):
    """{name: version} of the defined symbols an abidw dump lists."""
    return {s.get('name'): s.get('version') or ''
            for s in root.iter('elf-symbol') if s.get('is-defined') == 'yes'}


def library_symbol_versions(library):
    out = subprocess.run(['nm', '-D', '--defined-only', library], capture_output=True,
                         text=True, check=True).stdout
    versions = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] != 'A':
            name, _, node = parts[2].partition('@')
            versions[name] = node.lstrip('@')
    return versions


def abidiff_failures(abidiff, library, baseline, header_dirs, suppressions=None):
    """Run abidiff; return (failures, report)."""
    cmd = [abidiff, '--drop-private-types']
    for d in header_dirs:
        cmd += ['--headers-dir2', str(d)]
    if suppressions:
        cmd += ['--suppressions', str(suppressions)]
    run = subprocess.run(cmd + [str(baseline), str(library)], capture_output=True, text=True)
    report, rc = run.stdout + run.stderr, run.returncode
    failures = []
    if rc & (ABIDIFF_ERROR | ABIDIFF_USAGE_ERROR):
        failures.append(f'abidiff could not compare (exit {rc})')
    if rc & ABIDIFF_ABI_INCOMPATIBLE_CHANGE:
        failures.append('abidiff: incompatible change (a function or variable was removed)')
    for kind, removed, changed, _added in SUMMARY.findall(report):
        if int(removed):
            failures.append(f'{kind}: {removed} removed')
        if changed and int(changed):
            failures.append(f'{kind}: {changed} changed')
    return failures, report


# What may show in a report whose only changes are members appended to a struct
# the suppressions name: a growing size, and the inserted members themselves.
GROWN = re.compile(r'type size changed from (\d+) to (\d+)')
INSERTED_MEMBER = re.compile(r"^\s*'.*', at offset \d+ \(in bits\)")
OTHER_CHANGE = re.compile(r'deletion|changed from|data members? changes?|offset|name changed|'
                          r'enumerator|removed', re.I)


def only_appended(report):
    """The changes of a report that the suppressions hid are appended members only
    (libabigail's has_data_member_inserted_at also hides a changed member)."""
    bad = []
    for line in report.splitlines():
        if 'changes summary' in line or INSERTED_MEMBER.match(line):
            continue
        grown = GROWN.search(line)
        if grown:
            if int(grown.group(2)) < int(grown.group(1)):
                bad.append(line.strip())
        elif OTHER_CHANGE.search(line):
            bad.append(line.strip())
    return bad


def check(abidiff, library, baseline, suppressions, header_dirs):
    failures, report = abidiff_failures(abidiff, library, baseline, header_dirs)
    if failures and suppressions.exists():
        # Members appended to a struct the suppressions name are compatible by
        # the library's rules; anything else in the full report is not.
        hidden_failures, _ = abidiff_failures(abidiff, library, baseline, header_dirs,
                                              suppressions)
        failures = hidden_failures or [f'not an appended member: {b}'
                                       for b in only_appended(report)]

    # A symbol of the release must stay in the version node it was released in:
    # a program linked against it asks for name@NODE.
    old = symbol_versions(ET.parse(baseline).getroot())
    new = library_symbol_versions(library)
    for name, node in sorted(old.items()):
        if name not in new:
            failures.append(f'{name}@{node}: gone')
        elif new[name] != node:
            failures.append(f'{name}: version node {node} became {new[name] or "none"}')
    return failures, report, len(old)


# Macros are API too, and abidiff cannot see them: every SK_ macro of a release
# keeps its value, but the version numbers that name the release itself.
MACRO = re.compile(r'^#\s*define\s+(SK_\w+)(.*)$', re.M)
RELEASE_MACROS = {'SK_VERSION_MINOR', 'SK_VERSION_PATCH'}


def macros(header_dirs):
    found = {}
    for d in header_dirs:
        for header in sorted(Path(d).glob('*.h')):
            for name, value in MACRO.findall(header.read_text()):
                found.setdefault(name, []).append(' '.join(value.split()))
    return found


def macro_failures(release_headers, header_dirs):
    old, new = macros([release_headers]), macros(header_dirs)
    failures = []
    for name, values in sorted(old.items()):
        if name in RELEASE_MACROS:
            continue
        if name not in new:
            failures.append(f'macro {name}: gone')
        elif new[name] != values:
            failures.append(f'macro {name}: {values} became {new[name]}')
    return failures


def main():
    library, abi_dir = sys.argv[1], Path(sys.argv[2])
    header_dirs = [Path(d) for d in sys.argv[3:]]
    baselines = sorted(abi_dir.glob('sockkit-*.abi'))
    if not baselines:
        print(f'FAIL: no baseline in {abi_dir}')
        return 1
    failed = False
    for baseline in baselines:
        release = baseline.stem.removeprefix('sockkit-')
        failures = macro_failures(abi_dir / release / 'include' / 'sockkit', header_dirs)
        for f in failures:
            print(f'FAIL: against the {release} headers: {f}')
        failed = failed or bool(failures)

    abidiff = shutil.which('abidiff')
    if not abidiff:
        print('SKIP: abidiff not found (Debian package abigail-tools); only macros checked')
        return 1 if failed else 77
    for baseline in baselines:
        failures, report, count = check(abidiff, library, baseline,
                                        abi_dir / 'suppressions.abignore', header_dirs)
        if failures:
            failed = True
            print(report)
            for f in failures:
                print(f'FAIL: against {baseline.name}: {f}')
        else:
            print(f'{baseline.name}: {count} symbols kept, compatible')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
