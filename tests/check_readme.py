#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The README's C examples compile (warnings as errors) against this build."""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

readme, cc, include, build_include, libdir = sys.argv[1:6]
blocks = re.findall(r'```c\n(.*?)```', Path(readme).read_text(), re.S)
programs = [b for b in blocks if 'main(' in b]
if not programs:
    sys.exit('no C program found in the README')
with tempfile.TemporaryDirectory() as tmp:
    for i, code in enumerate(programs):
        src = Path(tmp) / f'readme{i}.c'
        src.write_text(code)
        cmd = [cc, '-std=c11', '-Wall', '-Wextra', '-Werror', '-I', include, '-I', build_include,
               str(src), '-o', str(Path(tmp) / f'readme{i}'), '-L', libdir, '-lsockkit']
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(code)
            print(result.stderr)
            sys.exit(f'README example {i} does not compile')
print(f'{len(programs)} README program(s) compile')
