/* SPDX-License-Identifier: MIT */
/* The line framer: a byte stream in, whole lines out, none longer than a limit.
 * A pure function of its input (no I/O), shared by the server's line framing
 * and fuzzed on its own. */
#include "framer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Keep the start of an unfinished line. */
static int stash(struct sk__framer *f, const char *p, size_t n)
{
    size_t need = f->len + n + 1; /* and a NUL */
    if (need > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < need)
            cap *= 2;
        char *buf = realloc(f->buf, cap);
        if (!buf)
            return -ENOMEM;
        f->buf = buf;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, p, n);
    f->len += n;
    return 0;
}

/* Hand one line over without its "\n" or "\r\n", NUL-terminated. */
static bool emit(char *line, size_t len, sk__line_fn fn, void *arg)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    return fn(arg, line, len);
}

int sk__framer_feed(struct sk__framer *f, size_t max, char *p, size_t n, sk__line_fn fn,
                    void *arg)
{
    char *end = p + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t part = (size_t)((nl ? nl : end) - p);
        if (f->len + part + 1 > max) { /* with its '\n', present or still to come */
            sk__framer_reset(f);
            return SK_ETOOLONG;
        }
        if (!nl)
            return stash(f, p, part);
        bool go_on;
        if (f->len == 0) {
            go_on = emit(p, part, fn, arg); /* straight from the caller's buffer */
        } else {
            if (stash(f, p, part) < 0)
                return -ENOMEM;
            go_on = emit(f->buf, f->len, fn, arg);
            sk__framer_reset(f);
        }
        if (!go_on)
            return 1;
        p = nl + 1;
    }
    return 0;
}

int sk__framer_finish(struct sk__framer *f, sk__line_fn fn, void *arg)
{
    if (f->len == 0)
        return 0;
    struct sk__framer last = *f; /* the callback may reset f */
    *f = (struct sk__framer){0};
    bool go_on = emit(last.buf, last.len, fn, arg);
    free(last.buf);
    return go_on ? 0 : 1;
}

void sk__framer_reset(struct sk__framer *f)
{
    free(f->buf);
    *f = (struct sk__framer){0};
}
