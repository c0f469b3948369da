/* SPDX-License-Identifier: MIT */
/* The io_uring backend's fault injection, for the tests: tests/test_faults.c
 * links the library's objects to reach it. Zeroed, it injects nothing; the
 * backend reads it once per request it prepares. Not exported. */
#ifndef SOCKKIT_BACKEND_URING_H
#define SOCKKIT_BACKEND_URING_H

#include "../internal.h"

enum sk__uring_fault {
    SK__URING_SHORT,  /* a send given only the first half of its bytes: a real short send */
    SK__URING_EAGAIN, /* a send or receive that completes with -EAGAIN, untried */
    SK__URING_EINTR,  /* ... with -EINTR */
    SK__URING_NOBUFS, /* a receive found no provided buffer (real: faulting rings have 4) */
    SK__URING_WAIT,   /* the loop's wait failed (fail_wait) */
};

struct sk__uring_faults {
    int permille;  /* of the sends and receives prepared, about this many are faulted */
    int fail_wait; /* the next wait of any ring fails with this -errno, once; 0: none */
    /* Told of each fault as it happens (in the ring's thread), if set. */
    void (*injected)(enum sk__uring_fault kind);
};
SK__HIDDEN extern struct sk__uring_faults sk__uring_faults;

#endif /* SOCKKIT_BACKEND_URING_H */
