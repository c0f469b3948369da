#!/bin/sh
# SPDX-License-Identifier: MIT
# The exe_wrapper of `meson test --setup=valgrind`. A test binary runs under
# memcheck (and so do the processes it forks); a Python test runs as it is, and
# starts the example servers it tests under memcheck (SK_EXAMPLE_WRAPPER).
# Any error, or a definite leak, makes the process exit with status 99.
# --fair-sched=yes: valgrind runs one thread at a time, and its default lock
# lets a thread that never blocks (a test's broadcasting thread) keep it for
# seconds while the thread answering the test waits; a ticket lock takes turns.
vg="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --child-silent-after-fork=no --fair-sched=yes"
case "$(basename "$1")" in
python*)
    SK_EXAMPLE_WRAPPER=$(echo $vg)
    export SK_EXAMPLE_WRAPPER
    exec "$@" ;;
*)
    # shellcheck disable=SC2086
    exec $vg "$@" ;;
esac
