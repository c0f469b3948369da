#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every @code example in a function's doxygen comment (the EXAMPLES of its
man page) compiles, warnings as errors, against this build's headers."""
import subprocess
import sys
import tempfile
from pathlib import Path

mkman_dir, cc, include, build_include = sys.argv[1:5]
headers = sys.argv[5:]
sys.path.insert(0, mkman_dir)
import mkman  # noqa: E402  (the parser the man pages are made with)

PRELUDE = '''#define _POSIX_C_SOURCE 200809L
#include <sockkit/sockkit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
'''
count = 0
with tempfile.TemporaryDirectory() as tmp:
    for header in headers:
        for name, _, doc in mkman.Header(header).functions:
            for i, block in enumerate(doc.split_code()[1]):
                code = '\n'.join(block) + '\n'
                src = Path(tmp) / f'{name}_{i}.c'
                src.write_text(PRELUDE + code)
                cmd = [cc, '-std=c11', '-Wall', '-Wextra', '-Werror', '-Wno-unused-function',
                       '-I', include, '-I', build_include, '-c', str(src),
                       '-o', str(src.with_suffix('.o'))]
                result = subprocess.run(cmd, capture_output=True, text=True)
                if result.returncode != 0:
                    print(code)
                    print(result.stderr)
                    sys.exit(f'the example of {name}() in {Path(header).name} does not compile')
                count += 1
if count < 5:
    sys.exit(f'only {count} examples found: the parser lost them')
print(f'{count} function examples compile')
