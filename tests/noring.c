/* SPDX-License-Identifier: MIT */
/* noring ERRNO PROGRAM [ARG...]: run PROGRAM where io_uring is refused, as a
 * container's seccomp filter refuses it: io_uring_setup() fails with ERRNO
 * (a number: 1 for EPERM, 38 for ENOSYS). Used by the tests of the io_uring
 * backend's "unavailable" path. */
#include "noring.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: noring ERRNO PROGRAM [ARG...]\n");
        return 2;
    }
    if (noring_install(atoi(argv[1])) != 0) {
        perror("noring: seccomp");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror("noring: exec");
    return 127;
}
