/* SPDX-License-Identifier: MIT */
#include "proc.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct pstat {
    pid_t pid, ppid;
    double cpu; /* user + system seconds of it and its reaped children */
};

/* The process's own CPU time in nanoseconds through its CPU-time clock
 * (/proc/PID/stat counts in clock ticks: 10 ms, too coarse for 50 short-lived
 * children); the tick count if the clock cannot be read (a zombie). */
static double own_cpu(pid_t pid, double ticks)
{
    clockid_t id;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &id) != 0 || clock_gettime(id, &ts) != 0)
        return ticks;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse /proc/PID/stat; 0 on success. The command name may hold spaces and
 * parentheses, so fields are counted from the last ')'. */
static int read_stat(pid_t pid, struct pstat *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* Fields 3.. after ')': state ppid ... utime(14) stime(15) cutime(16) cstime(17). */
    char state;
    int ppid;
    unsigned long long f4_13[9], ut, st;
    long long cut, cst;
    if (sscanf(p + 1, " %c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %lld %lld",
               &state, &ppid, &f4_13[0], &f4_13[1], &f4_13[2], &f4_13[3], &f4_13[4], &f4_13[5],
               &f4_13[6], &f4_13[7], &f4_13[8], &ut, &st, &cut, &cst) != 15)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    out->pid = pid;
    out->ppid = ppid;
    out->cpu = own_cpu(pid, (double)(ut + st) / hz) +
               (double)((unsigned long long)cut + (unsigned long long)cst) / hz;
    return 0;
}

static int is_pid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

double proc_tree_cpu(pid_t root)
{
    struct pstat self;
    if (read_stat(root, &self) < 0)
        return -1;
    DIR *d = opendir("/proc");
    if (!d)
        return self.cpu;
    size_t n = 0, cap = 256;
    struct pstat *all = malloc(cap * sizeof(*all));
    struct dirent *e;
    while (all && (e = readdir(d))) {
        if (!is_pid_name(e->d_name))
            continue;
        if (n == cap) {
            struct pstat *more = realloc(all, 2 * cap * sizeof(*all));
            if (!more)
                break;
            all = more;
            cap *= 2;
        }
        if (read_stat((pid_t)atoi(e->d_name), &all[n]) == 0 && all[n].pid != root)
            n++;
    }
    closedir(d);
    /* Descendants: mark every process whose parent is marked, until nothing changes. */
    pid_t *tree = malloc((n + 1) * sizeof(*tree));
    double cpu = self.cpu;
    size_t nt = 0;
    if (all && tree) {
        tree[nt++] = root;
        for (size_t changed = 1; changed;) {
            changed = 0;
            for (size_t i = 0; i < n; i++) {
                if (all[i].pid == 0)
                    continue;
                for (size_t k = 0; k < nt; k++) {
                    if (all[i].ppid == tree[k]) {
                        tree[nt++] = all[i].pid;
                        cpu += all[i].cpu;
                        all[i].pid = 0;
                        changed = 1;
                        break;
                    }
                }
            }
        }
    }
    free(tree);
    free(all);
    return cpu;
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

double proc_busy_cpu(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    /* cpu  user nice system idle iowait irq softirq steal */
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 7)
        return -1;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}
