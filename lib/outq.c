/* SPDX-License-Identifier: MIT */
/* A connection's output queue: a FIFO of chunks whose queued bytes stay where
 * they are until sent, so a transport may be handed a pointer into them and
 * complete later. Pure data structure (no I/O), tested on its own. */
#include "outq.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_FIRST 512    /* allocation of the first chunk, header included: a small
                              * reply fits, from the allocator's per-thread cache */
#define CHUNK_MAX (64 * 1024) /* later ones double up to this (a larger append: its size) */

/* A chunk for at least need bytes, sized after the tail it follows. */
static struct sk__chunk *chunk_new(const struct sk__chunk *tail, size_t need)
{
    size_t size = CHUNK_FIRST;
    if (tail) {
        size = (sizeof(*tail) + tail->cap) * 2;
        size = size > CHUNK_MAX ? CHUNK_MAX : size;
    }
    if (need > SIZE_MAX - sizeof(struct sk__chunk))
        return NULL;
    if (size < sizeof(struct sk__chunk) + need)
        size = sizeof(struct sk__chunk) + need;
    struct sk__chunk *ch = malloc(size);
    if (!ch)
        return NULL;
    *ch = (struct sk__chunk){.cap = size - sizeof(*ch)};
    return ch;
}

int sk__outq_push(struct sk__outq *q, const void *data, size_t len)
{
    struct sk__chunk *t = q->tail;
    size_t room = t ? t->cap - t->len : 0;
    size_t first = len < room ? len : room;
    struct sk__chunk *ch = NULL;
    if (len > first && !(ch = chunk_new(t, len - first)))
        return -ENOMEM; /* before the tail is touched: nothing appended */
    if (first) {
        memcpy(t->data + t->len, data, first);
        t->len += first;
    }
    if (ch) {
        memcpy(ch->data, (const char *)data + first, len - first);
        ch->len = len - first;
        if (t)
            t->next = ch;
        else
            q->head = ch;
        q->tail = ch;
    }
    q->bytes += len;
    return 0;
}

int sk__outq_iov(const struct sk__outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (const struct sk__chunk *ch = q->head; ch && n < max; ch = ch->next)
        iov[n++] = (struct iovec){.iov_base = (char *)ch->data + ch->sent,
                                  .iov_len = ch->len - ch->sent};
    return n;
}

void sk__outq_consume(struct sk__outq *q, size_t n)
{
    q->bytes -= n;
    while (q->head) {
        struct sk__chunk *ch = q->head;
        size_t left = ch->len - ch->sent;
        if (n < left) {
            ch->sent += n;
            return;
        }
        n -= left;
        q->head = ch->next;
        if (!q->head)
            q->tail = NULL;
        free(ch);
    }
}

static void free_chunks(struct sk__chunk *ch)
{
    while (ch) {
        struct sk__chunk *next = ch->next;
        free(ch);
        ch = next;
    }
}

void sk__outq_clear(struct sk__outq *q)
{
    if (q->pinned && q->head) { /* a send reads them: keep them until it is done */
        q->tail->next = q->dropped;
        q->dropped = q->head;
    } else {
        free_chunks(q->head);
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

bool sk__outq_unpin(struct sk__outq *q)
{
    bool kept = !q->dropped;
    free_chunks(q->dropped);
    q->dropped = NULL;
    q->pinned = false;
    return kept;
}
