/* SPDX-License-Identifier: MIT */
/* sk_lines: a buffered line reader with a maximum line length. */
#include "internal.h"

#include <sockkit/tls.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUFFER 4096

struct sk_lines {
    int fd;
    sk_tls_stream *tls; /* read through it instead of fd, or NULL */
    int err;          /* sticky error (SK_ETOOLONG), or 0 */
    bool eof;
    size_t max_line;  /* longest line, its '\n' included */
    size_t start;     /* first byte not yet returned */
    size_t len;       /* bytes in buf */
    size_t scanned;   /* bytes from start already known to hold no '\n' */
    size_t held_at;   /* where the NUL after the last line went (0: nowhere) */
    char held;        /* the byte that NUL replaced */
    size_t cap;       /* size of buf, one more than it may hold */
    char buf[];
};

sk_lines *sk_lines_new(int fd, size_t max_line)
{
    if (fd < 0 || max_line == 0 || max_line > (SIZE_MAX >> 2))
        return NULL;
    size_t cap = (max_line < MIN_BUFFER ? MIN_BUFFER : max_line) + 1;
    sk_lines *lr = calloc(1, sizeof(*lr) + cap);
    if (!lr)
        return NULL;
    lr->fd = fd;
    lr->max_line = max_line;
    lr->cap = cap;
    return lr;
}

sk_lines *sk_lines_new_tls(sk_tls_stream *stream, size_t max_line)
{
    int fd = sk_tls_stream_fd(stream);
    sk_lines *lr = fd >= 0 ? sk_lines_new(fd, max_line) : NULL;
    if (lr)
        lr->tls = stream;
    return lr;
}

void sk_lines_free(sk_lines *lr)
{
    free(lr);
}

size_t sk_lines_pending(const sk_lines *lr)
{
    return lr ? lr->len - lr->start : 0;
}

/* Hand out buf[start, start+n) as a NUL-terminated line. */
static ssize_t take(sk_lines *lr, char **line, size_t n)
{
    *line = lr->buf + lr->start;
    lr->held_at = lr->start + n;
    lr->held = lr->buf[lr->held_at];
    lr->buf[lr->held_at] = '\0';
    lr->start += n;
    lr->scanned = 0;
    return (ssize_t)n;
}

ssize_t sk_lines_read(sk_lines *lr, char **line, int timeout_ms)
{
    if (!lr || !line)
        return -EINVAL;
    *line = NULL;
    if (lr->err)
        return lr->err;
    if (lr->held_at) {
        lr->buf[lr->held_at] = lr->held;
        lr->held_at = 0;
    }
    int64_t deadline = sk__deadline(timeout_ms);
    for (;;) {
        size_t avail = lr->len - lr->start;
        size_t window = avail < lr->max_line ? avail : lr->max_line;
        char *from = lr->buf + lr->start + lr->scanned;
        char *nl = lr->scanned < window ? memchr(from, '\n', window - lr->scanned) : NULL;
        if (nl)
            return take(lr, line, (size_t)(nl - (lr->buf + lr->start)) + 1);
        lr->scanned = window;
        if (avail >= lr->max_line)
            return lr->err = SK_ETOOLONG;
        if (lr->eof)
            return avail ? take(lr, line, avail) : 0;
        if (avail == 0) {
            lr->start = lr->len = 0;
        } else if (lr->start > 0 && lr->len == lr->cap - 1) {
            memmove(lr->buf, lr->buf + lr->start, avail);
            lr->start = 0;
            lr->len = avail;
        }
        /* one byte always stays free for the NUL after a line */
        size_t room = lr->cap - 1 - lr->len;
        int left = sk__remaining(deadline);
        ssize_t n = lr->tls ? sk_tls_read_some(lr->tls, lr->buf + lr->len, room, left)
                            : sk_read_some(lr->fd, lr->buf + lr->len, room, left);
        if (n < 0)
            return n;
        if (n == 0)
            lr->eof = true;
        lr->len += (size_t)n;
    }
}

int sk_lines_next(sk_lines *lr, char **line, size_t *len, int timeout_ms)
{
    if (!len)
        return -EINVAL;
    *len = 0;
    ssize_t n = sk_lines_read(lr, line, timeout_ms);
    if (n <= 0)
        return (int)n;
    /* The bytes past the line's end are its own terminator: free to overwrite. */
    size_t k = (size_t)n;
    if ((*line)[k - 1] == '\n')
        k--;
    if (k > 0 && (*line)[k - 1] == '\r')
        k--;
    (*line)[k] = '\0';
    *len = k;
    return 1;
}
