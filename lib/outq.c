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

#define CACHED_FROM (CHUNK_MAX / 2) /* with a cache: a chunk this large or more is CHUNK_MAX, cached */

/* A chunk for at least need bytes, sized after the tail it follows. */
static struct sk__chunk *chunk_new(struct sk__chunk_cache *cache, const struct sk__chunk *tail,
                                   size_t need)
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
    if (cache && size >= CACHED_FROM && size <= CHUNK_MAX) {
        size = CHUNK_MAX;
        if (cache->free) {
            struct sk__chunk *ch = cache->free;
            cache->free = ch->next;
            cache->n--;
            *ch = (struct sk__chunk){.cap = size - sizeof(*ch)};
            return ch;
        }
    }
    struct sk__chunk *ch = malloc(size);
    if (!ch)
        return NULL;
    *ch = (struct sk__chunk){.cap = size - sizeof(*ch)};
    return ch;
}

static void chunk_free(struct sk__chunk_cache *cache, struct sk__chunk *ch)
{
    if (cache && ch->cap == CHUNK_MAX - sizeof(*ch) && cache->n < SK__CHUNK_CACHE) {
        ch->next = cache->free;
        cache->free = ch;
        cache->n++;
    } else {
        free(ch);
    }
}

void sk__chunk_cache_clear(struct sk__chunk_cache *cache)
{
    while (cache->free) {
        struct sk__chunk *ch = cache->free;
        cache->free = ch->next;
        free(ch);
    }
    cache->n = 0;
}

int sk__outq_push(struct sk__outq *q, const void *data, size_t len)
{
    struct sk__chunk *t = q->tail;
    size_t room = t ? t->cap - t->len : 0;
    size_t first = len < room ? len : room;
    struct sk__chunk *ch = NULL;
    if (len > first && !(ch = chunk_new(q->cache, t, len - first)))
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
        chunk_free(q->cache, ch);
    }
}

static void free_chunks(struct sk__chunk_cache *cache, struct sk__chunk *ch)
{
    while (ch) {
        struct sk__chunk *next = ch->next;
        chunk_free(cache, ch);
        ch = next;
    }
}

void sk__outq_clear(struct sk__outq *q)
{
    if (q->pinned && q->head) { /* a send reads them: keep them until it is done */
        q->tail->next = q->dropped;
        q->dropped = q->head;
    } else {
        free_chunks(q->cache, q->head);
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

bool sk__outq_unpin(struct sk__outq *q)
{
    bool kept = !q->dropped;
    free_chunks(q->cache, q->dropped);
    q->dropped = NULL;
    q->pinned = false;
    return kept;
}
