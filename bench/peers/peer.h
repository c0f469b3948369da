/* SPDX-License-Identifier: MIT */
/* What every peer server shares and is not what it measures: the command
 * line, the address, the "listening on ADDR" line. */
#ifndef SK_BENCH_PEER_H
#define SK_BENCH_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct peer_opts {
    struct sockaddr_storage addr; /* from --listen HOST:PORT (port 0: the kernel picks) */
    socklen_t addr_len;
    int threads; /* --threads N, where the peer takes it */
    bool flag;   /* the peer's own switch was given */
};

/* Parse --listen ADDR, and --threads N if threads_ok, and the switch named
 * flag if not NULL; prints usage and exits on a bad line. */
void peer_parse(int argc, char **argv, struct peer_opts *o, bool threads_ok, const char *flag);
/* A bound, listening TCP socket (SO_REUSEADDR, CLOEXEC, backlog SOMAXCONN),
 * non-blocking if asked, sharing its port (SO_REUSEPORT) if asked; -1 on error. */
int peer_listen(const struct sockaddr *sa, socklen_t len, bool nonblock, bool reuseport);
/* Print "listening on ADDR" with the real port of a bound socket, flushed. */
void peer_announce(int fd);
/* Set TCP_NODELAY, as libsockkit does by default: replies leave at once. */
void peer_nodelay(int fd);
/* Write all n bytes (blocking socket), finishing short writes and retrying
 * EINTR, as a careful seed server would; false on an error or a closed peer. */
bool peer_write_all(int fd, const char *p, size_t n);

#endif /* SK_BENCH_PEER_H */
