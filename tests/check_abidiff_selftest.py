#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check_abidiff.py can fail: each deliberate break of the 1.0.0 ABI, made in a
copy of the baseline (as if the release had been different), is caught, and an
addition is not.

usage: check_abidiff_selftest.py CHECK_ABIDIFF LIBRARY ABI_DIR HEADER_DIR...
Exits 77 (skipped) without abidiff."""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

check, library, abi_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
header_dirs = sys.argv[4:]
if not shutil.which('abidiff'):
    print('SKIP: abidiff not found (Debian package abigail-tools)')
    sys.exit(77)
baseline = abi_dir / 'sockkit-1.0.0.abi'
text = baseline.read_text()


def swap_enum(t):
    """SK_CLOSE_IDLE and SK_CLOSE_SLOW trade values."""
    t = t.replace("name='SK_CLOSE_IDLE' value='3'", "name='SK_CLOSE_IDLE' value='4'")
    return t.replace("name='SK_CLOSE_SLOW' value='4'", "name='SK_CLOSE_SLOW' value='3'")


def retype_parameter(t):
    """sk_server_set_workers's second parameter was a long, not an int."""
    long_id = re.search(r"<type-decl name='long int' size-in-bits='64' id='([^']+)'", t).group(1)
    return re.sub(r"(<function-decl name='sk_server_set_workers'.*?<parameter.*?<parameter "
                  r"type-id=')[^']+'", lambda m: m.group(1) + long_id + "'", t, count=1,
                  flags=re.S)


def move_node(t):
    """sk_strerror was released in another version node."""
    t = t.replace("name='sk_strerror' version='SOCKKIT_1.0'",
                  "name='sk_strerror' version='SOCKKIT_0.9'")
    return t.replace("sk_strerror@@SOCKKIT_1.0", "sk_strerror@@SOCKKIT_0.9")


def lose_function(t):
    """The release lacked sk_lines_pending: the library adds it (allowed)."""
    t = re.sub(r"\s*<elf-symbol name='sk_lines_pending'[^>]*/>", '', t)
    return re.sub(r"\s*<function-decl name='sk_lines_pending'.*?</function-decl>", '', t,
                  flags=re.S)


def run(xml, macro_edit=None):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / 'sockkit-1.0.0.abi').write_text(xml)
        shutil.copytree(abi_dir / '1.0.0', d / '1.0.0')
        if (abi_dir / 'suppressions.abignore').exists():
            shutil.copy(abi_dir / 'suppressions.abignore', d)
        if macro_edit:
            header, old, new = macro_edit
            h = d / '1.0.0' / 'include' / 'sockkit' / header
            h.write_text(h.read_text().replace(old, new))
        r = subprocess.run([sys.executable, check, library, str(d)] + header_dirs,
                           capture_output=True, text=True)
        return r.returncode, r.stdout


cases = [
    ('enum values reordered', swap_enum(text), None, 1),
    ('parameter type changed', retype_parameter(text), None, 1),
    ('symbol in another node', move_node(text), None, 1),
    ('macro value changed', text, ('error.h', 'SK_EBACKEND (-3103)', 'SK_EBACKEND (-3109)'), 1),
    ('a function added', lose_function(text), None, 0),
    ('unchanged', text, None, 0),
]
failures = 0
for name, xml, macro_edit, want in cases:
    if xml == text and not macro_edit and want != 0:
        print(f'FAIL: {name}: the edit did not apply')
        failures += 1
        continue
    rc, out = run(xml, macro_edit)
    verdict = 'caught' if rc else 'passed'
    ok = (rc != 0) == (want != 0)
    print(f'{"ok" if ok else "FAIL"}: {name}: {verdict}')
    if not ok:
        print(out)
        failures += 1
print(f'{len(cases)} cases, {failures} wrong')
sys.exit(1 if failures else 0)
