/* SPDX-License-Identifier: MIT */
/* What a server process costs: CPU time of it and all its descendants (each
 * live process through its CPU-time clock, threads included; children already
 * reaped through their parent's cutime/cstime in /proc/PID/stat), and its
 * resident memory (VmRSS in /proc/PID/status). */
#ifndef SK_BENCH_PROC_H
#define SK_BENCH_PROC_H

#include <sys/types.h>

/* User + system seconds of pid and its descendants, or -1 if pid is gone. */
double proc_tree_cpu(pid_t pid);
/* Busy CPU seconds of the whole machine so far (all CPUs, /proc/stat), or -1:
 * what the server and the load did not use of it was used by someone else. */
double proc_busy_cpu(void);
/* VmRSS of pid alone in KiB, or -1. */
long proc_rss_kb(pid_t pid);

#endif /* SK_BENCH_PROC_H */
