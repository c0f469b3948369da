/* SPDX-License-Identifier: MIT */
/* A latency histogram with log-linear buckets: fixed size, no allocation per
 * sample, every value kept within 0.4 % (HdrHistogram's idea, much smaller). */
#ifndef SK_BENCH_HIST_H
#define SK_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7 /* 128 buckets per power of two above 256 ns */
#define HIST_BUCKETS ((64 - HIST_SUB_BITS) << HIST_SUB_BITS)

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t n[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *into, const struct hist *from);
/* The value (ns) below which a fraction q (0..1) of the samples lie; 0 if empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif /* SK_BENCH_HIST_H */
