/* SPDX-License-Identifier: MIT */
/* A server's listening sockets: the addresses, one set of descriptors per
 * worker where the kernel spreads connections, the socket files the server
 * created, and the spare descriptor that absorbs EMFILE. Not exported. */
#ifndef SOCKKIT_LISTENER_H
#define SOCKKIT_LISTENER_H

#include "internal.h"

#include <sockkit/socket.h>

#include <sys/types.h>

#define SK__MAX_LISTEN 8 /* addresses per server */

/* A unix socket file this server created: removed when it closes the
 * listener, unless the path now names another file (a successor's). */
struct sk__sockfile {
    char *path;
    dev_t dev;
    ino_t ino;
};

/* The gate every accept passes on a server that may hand its listeners over:
 * in a shared mapping, so that it holds in a fork backend's children too. */
struct sk__gate {
    int shut;   /* atomic: the listeners are another server's: no accept starts */
    int inside; /* atomic: accepts under way, in every process */
};

struct sk__listeners {
    char *addresses[SK__MAX_LISTEN];
    int naddr;
    int *fd;      /* nsets sets of naddr descriptors: set k for worker k */
    int n;
    int nsets;
    struct sk__sockfile files[SK__MAX_LISTEN];
    int spare;    /* a descriptor given up to accept (and refuse) at EMFILE, or -1 */
    struct sk__gate *gate; /* NULL: no handover */
};

SK__HIDDEN void sk__listeners_init(struct sk__listeners *l);
/* Add an address to bind (copied). */
SK__HIDDEN int sk__listeners_add(struct sk__listeners *l, const char *address);
/* Bind every address, sets times (the later sets on the port the first got),
 * non-blocking. All or nothing. */
SK__HIDDEN int sk__listeners_bind(struct sk__listeners *l, sk_reuse reuse, int sets);
/* Take a listening socket that exists already (inherited, handed over): it is
 * served as one more address of set 0, made non-blocking and close-on-exec;
 * its socket file, if any, is not this server's to remove (unless claimed:
 * sk__listeners_claim_file()). Before any bind of the addresses, or instead
 * of it. SK_ELISTENFD if it is not a listening stream socket. */
SK__HIDDEN int sk__listeners_adopt(struct sk__listeners *l, int fd);
/* Is the address one of an inherited socket: "fd:N", "systemd[:NAME]"? */
SK__HIDDEN bool sk__address_inherited(const char *address);
/* The socket file of an adopted unix listener becomes ours (handed over by
 * a server that no longer removes it): removed when we close, if still it. */
SK__HIDDEN void sk__listeners_claim_file(struct sk__listeners *l, int fd);
/* The socket files are no longer ours (a successor serves them): closing
 * the listeners leaves them in place. */
SK__HIDDEN void sk__listeners_disown(struct sk__listeners *l);
/* Give every listening socket up without closing it (to a successor): up to
 * max descriptors into fds, the count returned; the server no longer owns
 * them, nor their socket files. -ENOSPC if more than max. */
SK__HIDDEN int sk__listeners_release(struct sk__listeners *l, int *fds, int max);
/* Close the listening sockets and remove the socket files still ours. */
SK__HIDDEN void sk__listeners_close(struct sk__listeners *l);
/* Close, and forget the addresses. */
SK__HIDDEN void sk__listeners_free(struct sk__listeners *l);
/* Make the gate (once, before any fork): accepts pass it from now on. */
SK__HIDDEN int sk__listeners_gate(struct sk__listeners *l);
/* Shut the gate for good: no accept starts from now on; returns once none
 * is under way, or after ms (a process killed inside an accept). */
SK__HIDDEN void sk__listeners_shut(struct sk__listeners *l, int ms);
/* The spare descriptor: held while a server runs. */
SK__HIDDEN void sk__listeners_hold_spare(struct sk__listeners *l, bool on);

#endif /* SOCKKIT_LISTENER_H */
