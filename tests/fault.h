/* SPDX-License-Identifier: MIT */
/* Fault injection for tests: see fault.c. */
#ifndef SK_TEST_FAULT_H
#define SK_TEST_FAULT_H

#include <stdbool.h>

/* Faults injected so far, in all processes (a MAP_SHARED page). */
struct fault_counts {
    int rate;                     /* per 1000 calls, in every armed process */
    long eintr, eagain, short_io; /* read and send */
    long accept, epoll, fork, thread;
    long synthetic;               /* epoll_wait calls that delivered owed events */
    unsigned long turn;           /* which kind the next read/send fault is */
    int once[4];                  /* errno for the next call of a kind (enum fault_once), or 0 */
    long once_hit;                /* calls failed that way */
    long nobufs;                  /* io_uring: receives that found no buffer */
};
extern struct fault_counts *fault_counts;

/* Map the shared counters; call once, before forking. */
void fault_init(void);
/* Arm this process (and the children it forks from now on) and set the rate
 * for every armed process: about permille calls in 1000 fail (0: none). */
void fault_enable(int permille);
/* Change the rate for every armed process; this one need not be armed. */
void fault_set_rate(int permille);
/* Calls that fault_fail_next() makes fail once. */
enum fault_once {
    FAULT_WAIT,         /* an epoll_wait(), or a poll() that watches a listening
                         * socket (a server's accept loop, not a connection's) */
    FAULT_EPOLL_CREATE, /* epoll_create1() */
    FAULT_EVENTFD,      /* eventfd() */
    FAULT_EPOLL_ADD,    /* epoll_ctl(EPOLL_CTL_ADD) of a socket that does not listen */
};
/* Make the next call of that kind, in any armed process, fail with err. */
void fault_fail_next(enum fault_once kind, int err);

#endif
