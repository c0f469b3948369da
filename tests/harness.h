/* SPDX-License-Identifier: MIT */
/*
 * The server-test harness. Each server runs in a process forked before any
 * client socket exists (so a fork backend's children never inherit the test's
 * clients); the test talks to it over a control socket. Handlers report
 * through a MAP_SHARED page (struct shared), visible from every process.
 */
#ifndef SK_TEST_HARNESS_H
#define SK_TEST_HARNESS_H

#include "util.h"

#include <stdbool.h>
#include <sys/types.h>

/* Set by harness_init() from the command line: BACKEND [WORKERS [REUSE]]. */
extern const char *backend;
/* The backend runs reactors (epoll-et, epoll-lt, io_uring): loops of many
 * connections each, one per worker, with inboxes between them. */
bool harness_reactors(void);
extern int workers;
extern sk_reuse reuse;

/* What handlers report, in a page shared by all processes. */
struct shared {
    int errors; /* a handler saw something wrong (handlers cannot use cmocka) */
    int opens;
    int closes[SK_CLOSE_TLS + 1];
    int lines;
    int custom[8]; /* for a test's own counts */
};
extern struct shared *sh;

/* The server process's report after sk_server_run() returned. */
struct report {
    int rc, threads0, threads, fds0, fds, children, leaks;
};

struct running {
    pid_t pid;
    int ctl;
    char addr[SK_ADDR_STRLEN];
    int port;
    struct report done;
    int bind_rc; /* start_unbound(): what sk_server_bind() returned there */
};

/* Parse the command line, map the shared page, register "poll-test":
 * 0, or 1 after printing why not. */
int harness_init(int argc, char **argv);
/* cmocka fixtures: clear the page; kill a server a failed test left running. */
int harness_setup(void **state);
int harness_teardown(void **state);

/* Optional hooks, run in the server process. */
extern void (*harness_before_run)(sk_server *s);
extern void (*harness_after_run)(sk_server *s);
/* A control command the harness does not know: write a one-line reply. */
extern void (*harness_on_command)(const char *line, char *reply, size_t size);

/* SK_TEST_SCALE (default 1): divide heavy loads by it, for slow runs (valgrind). */
int test_scale(void);

int shared_get(int *p);
void shared_add(int *p);
int total_closes(void);
void wait_for(int *p, int want, int ms);

/* A server on 127.0.0.1:0 with the harness's backend, workers and reuse, the
 * reporting open/close handlers (on_close sends "bye\n" on stop and an error
 * line for an over-long line) and on_data. */
sk_server *new_server(sk_data_fn on_data);
void start(struct running *r, sk_server *s);   /* bind, fork the server process */
/* Fork the server process, which binds (r->bind_rc; on failure the process
 * has ended and there is nothing to stop) and serves. For servers whose
 * binding must happen in the serving process (a handover socket). The
 * server process closes its copies of @clients (the test's open client
 * sockets, ended by -1; may be NULL). */
void start_unbound(struct running *r, sk_server *s, const int *clients);
void finish(struct running *r);                /* stop it, await its report, check it */
void await_done(struct running *r);            /* its report, after a stop from elsewhere */
void await_report(struct running *r);          /* the same, whatever sk_server_run() returned */
char *ask(struct running *r, const char *question, char *answer, size_t size);
int server_count(struct running *r);
long server_heap_kib(struct running *r); /* the server process's heap in use */
sk_stats server_stats(struct running *r);
void wait_count(struct running *r, int want, int ms);

int dial(const struct running *r);
void expect_eof(int fd, int ms);
void expect_text(int fd, const char *want); /* within 5 s */
void expect_text_within(int fd, const char *want, int ms);
void expect_silence(int fd, int ms);

int thread_count(pid_t pid);
int fd_count(pid_t pid);
int child_processes(pid_t parent);

#endif
