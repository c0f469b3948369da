/* SPDX-License-Identifier: MIT */
/* sk-bench's TLS client (tls.c; tls-none.c in a build without OpenSSL): TLS
 * 1.3 only, TLS_AES_128_GCM_SHA256 only, the server's certificate NOT
 * verified (the servers are on loopback and use a throw-away self-signed
 * certificate). Every call works on a non-blocking socket. */
#ifndef SK_BENCH_TLS_H
#define SK_BENCH_TLS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct conn;

/* Create the client context; resume: each connection offers the session of
 * the previous connection on its slot, otherwise no ticket is asked for and
 * no session is kept. 0, or -1 with a note on stderr. */
int tls_setup(bool resume);
/* Start TLS on c->fd (connected): 0, or -1. */
int tls_begin(struct conn *c);
/* Drive the handshake: 1 done, 0 not yet (c->want: the epoll events to wait
 * for), -1 failed. */
int tls_handshake(struct conn *c);
/* Whether the finished handshake resumed a session. */
bool tls_resumed(const struct conn *c);
/* Encrypt and send up to n bytes: how many were taken (> 0), 0 if the socket
 * would block, -1 if the connection failed. */
ssize_t tls_send(struct conn *c, const void *p, size_t n);
/* Receive and decrypt up to n bytes, as many as are there now: how many
 * (> 0), 0 if none now, -1 if the connection failed or closed. */
ssize_t tls_recv(struct conn *c, void *buf, size_t n);
/* End TLS on c (the socket stays open). clean: the exchange went well, so
 * send close_notify if the socket takes it and, when resuming, keep the
 * session for the slot's next connection; otherwise just free. */
void tls_end(struct conn *c, bool clean);
/* Whether this build has TLS. */
bool tls_built(void);

#endif /* SK_BENCH_TLS_H */
