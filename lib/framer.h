/* SPDX-License-Identifier: MIT */
/* The line framer (framer.c). Not exported. */
#ifndef SOCKKIT_FRAMER_H
#define SOCKKIT_FRAMER_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>

/* What is kept between feeds: the start of an unfinished line. */
struct sk__framer {
    char *buf;
    size_t len, cap;
};

/* Receives one line, NUL-terminated, writable; false stops the feed. */
typedef bool (*sk__line_fn)(void *arg, char *line, size_t len);

/* Split n bytes at p (modified in place) into lines of at most max bytes,
 * terminator included; each complete line goes to fn, the unfinished rest is
 * kept. Returns 0; 1 if fn stopped it (the rest of p is dropped); SK_ETOOLONG
 * (nothing is kept); -ENOMEM. */
SK__HIDDEN int sk__framer_feed(struct sk__framer *f, size_t max, char *p, size_t n,
                               sk__line_fn fn, void *arg);
/* End of input: an unfinished last line goes to fn. 0, or 1 if fn said stop. */
SK__HIDDEN int sk__framer_finish(struct sk__framer *f, sk__line_fn fn, void *arg);
/* Forget what is kept. */
SK__HIDDEN void sk__framer_reset(struct sk__framer *f);

#endif /* SOCKKIT_FRAMER_H */
