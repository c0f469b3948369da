/* SPDX-License-Identifier: MIT */
/* The load sk-bench applies: connections that send, check every byte that
 * comes back and time each message, one epoll loop per thread (load.c). */
#ifndef SK_BENCH_LOAD_H
#define SK_BENCH_LOAD_H

#include "hist.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define PLEN 1048573u        /* pattern period: a prime, so no message size divides it */
#define CHUNK (256u * 1024u) /* most bytes per send or recv call */

enum mode { MODE_PINGPONG, MODE_RATE, MODE_IDLE };

struct ssl_st;         /* OpenSSL's SSL, when the load speaks TLS (tls.h) */
struct ssl_session_st; /* OpenSSL's SSL_SESSION */

/* What every worker reads; set before the workers start. */
struct load {
    enum mode mode;
    size_t size;                    /* message size */
    int depth;                      /* messages in flight per connection */
    struct sockaddr_storage target; /* the server */
    socklen_t target_len;
    bool tls;                /* every connection speaks TLS (tls.h) */
    uint64_t t_start, t_end; /* the measured window, CLOCK_MONOTONIC ns */
};
extern struct load load;

struct conn {
    int fd;
    uint32_t events;    /* epoll interest now registered */
    bool connected;     /* rate mode: the connect has completed */
    bool secured;       /* rate mode, TLS: the handshake has completed */
    size_t salt;        /* where this stream starts in the pattern */
    uint64_t issued;    /* bytes the load has asked to send */
    uint64_t sent;      /* bytes written */
    uint64_t recvd;     /* bytes received and verified */
    uint64_t started;   /* rate mode: when the connect began */
    uint64_t *stamps;   /* pingpong: send time of each message in flight (ring of depth) */
    struct ssl_st *ssl; /* TLS: the connection's state, or NULL */
    struct ssl_session_st *session; /* TLS, rate mode: the slot's session to resume */
    uint32_t want;                  /* TLS: the events the handshake waits for */
};

struct worker {
    pthread_t tid;
    int ep;
    struct conn *conns;
    int nconns;
    uint64_t cycles; /* rate mode: connections begun, to vary the bytes */
    uint64_t msgs, errors;
    uint64_t resumed; /* TLS, rate mode: measured connections that resumed a session */
    unsigned char *buf;
    struct hist hist;
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_ns(void);
/* Make the byte pattern every connection sends a slice of; -1 if out of memory. */
int make_pattern(void);
/* A non-blocking socket with its connect to the target begun: the fd, or -1. */
int start_connect(void);
/* The pending error of a connecting socket (0: connected). */
int connect_error(int fd);
/* A worker thread: run its connections until the window ends. */
void *worker_main(void *arg);

#endif /* SK_BENCH_LOAD_H */
