/* SPDX-License-Identifier: MIT */
/* The fork backend's relay: growable buffers and length-prefixed messages. */
#include "fork.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool sk__buf_reserve(struct buf *b, size_t n)
{
    if (b->off + b->len + n <= b->cap)
        return true;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
        if (b->len + n <= b->cap)
            return true;
    }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

void sk__buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        b->off = 0;
}

void sk__buf_free(struct buf *b)
{
    free(b->p);
    *b = (struct buf){0};
}

/* Read what the relay has into b: > 0 bytes, 0 at end of file, < 0 nothing now. */
ssize_t sk__buf_read(struct buf *b, int fd)
{
    if (!sk__buf_reserve(b, RELAY_READ))
        return -ENOMEM;
    for (;;) {
        ssize_t n = read(fd, b->p + b->off + b->len, RELAY_READ);
        if (n > 0)
            b->len += (size_t)n;
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

/* The next whole message in b, or false. */
bool sk__next_msg(struct buf *b, struct msg_head *h, char **payload)
{
    if (b->len < sizeof(*h))
        return false;
    memcpy(h, b->p + b->off, sizeof(*h));
    if (b->len - sizeof(*h) < h->len)
        return false;
    *payload = b->p + b->off + sizeof(*h);
    return true;
}


bool sk__buf_put_msg(struct buf *b, uint32_t type, const void *data, size_t len)
{
    struct msg_head h = {.type = type, .len = (uint32_t)len};
    if (!sk__buf_reserve(b, sizeof(h) + len))
        return false;
    memcpy(b->p + b->off + b->len, &h, sizeof(h));
    if (len)
        memcpy(b->p + b->off + b->len + sizeof(h), data, len);
    b->len += sizeof(h) + len;
    return true;
}
