/* SPDX-License-Identifier: MIT */
#include "hist.h"

#include <math.h>

/* Values below 2 << SUB_BITS have a bucket each; above, each power of two is
 * cut into 1 << SUB_BITS buckets, indexed by the value's top bits. */
static unsigned bucket_of(uint64_t v)
{
    if (v < (2u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
    return (shift << HIST_SUB_BITS) + (unsigned)(v >> shift);
}

/* The middle of a bucket's range. */
static uint64_t value_of(unsigned b)
{
    if (b < (2u << HIST_SUB_BITS))
        return b;
    unsigned shift = (b >> HIST_SUB_BITS) - 1;
    uint64_t mantissa = b - ((uint64_t)shift << HIST_SUB_BITS);
    return (mantissa << shift) + ((1ull << shift) >> 1);
}

void hist_add(struct hist *h, uint64_t ns)
{
    h->n[bucket_of(ns)]++;
    h->count++;
    if (ns > h->max)
        h->max = ns;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->n[i] += from->n[i];
    into->count += from->count;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= rank)
            return value_of(i) < h->max ? value_of(i) : h->max;
    }
    return h->max;
}
