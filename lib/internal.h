/* SPDX-License-Identifier: MIT */
/* Helpers shared between the library's files. Nothing here is exported. */
#ifndef SOCKKIT_INTERNAL_H
#define SOCKKIT_INTERNAL_H

#include <sockkit/sockkit.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SK__HIDDEN __attribute__((visibility("hidden")))

/* The size of a struct as far as (and including) one of its members: how large
 * it was in the release that ended with that member. */
#define SK__SIZE_THROUGH(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* An address split into its parts, before any lookup. */
struct sk__hostport {
    enum { SK__HOST, SK__WILDCARD, SK__UNIX } kind;
    char host[256]; /* SK__HOST: name or numeric address, brackets removed */
    char port[6];   /* SK__HOST, SK__WILDCARD: decimal, 0..65535 */
    sk_addr unix_addr; /* SK__UNIX: the complete address */
};

/* Split "host:port", "[v6]:port", "*:port" or "unix:/path". */
SK__HIDDEN int sk__hostport_split(const char *text, struct sk__hostport *hp);

/* The numeric address of a split host (no lookup): 0, or SK_EAI_NONAME for a name. */
SK__HIDDEN int sk__hostport_numeric(const struct sk__hostport *hp, sk_addr *out);

/* An address to connect to: split (into *hp), a wildcard refused (-EINVAL),
 * and made numeric if it is (into *out): 0, SK_EAI_NONAME for a name to
 * resolve, or the error of an address that cannot parse. */
SK__HIDDEN int sk__hostport_target(const char *text, struct sk__hostport *hp, sk_addr *out);

/* getaddrinfo's EAI_* code (and errno for EAI_SYSTEM) as a libsockkit code. */
SK__HIDDEN int sk__eai_code(int eai, int saved_errno);

/* Monotonic milliseconds. */
SK__HIDDEN int64_t sk__now_ms(void);

/* Absolute deadline for a timeout (< 0: none, returned as -1). */
SK__HIDDEN int64_t sk__deadline(int timeout_ms);

/* Milliseconds left until a deadline, in the form poll() takes (-1: forever). */
SK__HIDDEN int sk__remaining(int64_t deadline);

/* Wait until fd shows one of events or the deadline passes: revents, 0 on timeout, or < 0. */
SK__HIDDEN int sk__wait(int fd, short events, int64_t deadline);

#endif /* SOCKKIT_INTERNAL_H */
