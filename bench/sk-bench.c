/* SPDX-License-Identifier: MIT */
/*
 * sk-bench: a loopback load generator for echo servers.
 *
 *   pingpong  N connections, each keeping `depth` messages of `size` bytes in
 *             flight; every echoed byte is checked against what was sent.
 *   rate      N slots, each looping connect, send one message, read it back,
 *             close: connections per second.
 *   idle      pingpong on N connections while K more stay open and silent
 *             (each did one 1-byte echo first, so the server really holds it).
 *
 * --tls-no-verify: pingpong and rate speak TLS 1.3 (TLS_AES_128_GCM_SHA256
 * only) over every connection, without verifying the server's certificate
 * (loopback, a throw-away certificate). Pingpong does its handshakes before
 * the warm-up; rate does a full handshake per connection, or with
 * --tls-resume resumes the session of the slot's previous connection, and
 * reports how many measured connections did resume.
 *
 * Nothing is counted during the warm-up; then, for `duration` seconds, every
 * completed message (or connection) is counted and its latency recorded. With
 * --server-pid, the server's CPU time (it and its children) is sampled at the
 * start and end of that window, and its RSS before and after the idle
 * connections. One line of key=value pairs goes to stdout; notes to stderr.
 */
#include "load.h"
#include "proc.h"
#include "tls.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define IDLE_BATCH 256   /* idle connections being set up at once */
#define IDLE_SETUP_S 120 /* give up setting up idle connections after this */

static struct {
    const char *addr;
    int conns;
    double duration, warmup;
    int threads;
    int idle;
    pid_t server_pid;
    bool tls_resume;
} opt = {.conns = 50, .duration = 5, .warmup = 0.5, .threads = 1};

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---- sockets ------------------------------------------------------------ */

static int resolve(const char *text)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    if (getaddrinfo(h, colon + 1, &hints, &ai) != 0)
        return -1;
    memcpy(&load.target, ai->ai_addr, ai->ai_addrlen);
    load.target_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}
/* A connected non-blocking socket, waiting at most 10 s: the fd, or -1. */
static int connect_now(void)
{
    int fd = start_connect();
    if (fd < 0)
        return -1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLOUT};
    int ok = ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 &&
             epoll_wait(ep, &ev, 1, 10000) == 1 && connect_error(fd) == 0;
    if (ep >= 0)
        close(ep);
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

/* TLS over a connected socket, waiting at most 10 s: 0, or -1. */
static int secure_now(struct conn *c)
{
    if (tls_begin(c) < 0)
        return -1;
    int ep = epoll_create1(EPOLL_CLOEXEC), rc = ep >= 0 ? 0 : -1;
    uint64_t give_up = now_ns() + 10000000000u;
    while (rc == 0 && (rc = tls_handshake(c)) == 0 && now_ns() < give_up) {
        struct epoll_event ev = {.events = c->want};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0 || epoll_wait(ep, &ev, 1, 1000) < 0 ||
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0)
            rc = -1;
    }
    if (ep >= 0)
        close(ep);
    if (rc != 1) {
        tls_end(c, false);
        return -1;
    }
    return 0;
}

static void close_hard(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* no TIME_WAIT left behind */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* ---- idle connections --------------------------------------------------- */

/* Open k connections and make each echo one byte, IDLE_BATCH at a time, so
 * the server has accepted and served every one. Fills fds (-1 for a failure);
 * returns the number of failures. */
static int open_idle(int *fds, int k)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), ok = 0;
    struct epoll_event ev[MAX_EVENTS];
    uint64_t give_up = now_ns() + (uint64_t)IDLE_SETUP_S * 1000000000u;
    for (int i = 0; i < k; i++)
        fds[i] = -1;
    for (int base = 0; ep >= 0 && base < k && now_ns() < give_up; base += IDLE_BATCH) {
        int n = k - base < IDLE_BATCH ? k - base : IDLE_BATCH, left = 0;
        for (int i = base; i < base + n; i++) {
            struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
            fds[i] = start_connect();
            if (fds[i] >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) == 0)
                left++;
        }
        while (left > 0 && now_ns() < give_up) {
            int got = epoll_wait(ep, ev, MAX_EVENTS, 1000);
            for (int j = 0; j < got; j++) {
                int i = (int)ev[j].data.u32;
                char b = 'i';
                if ((ev[j].events & EPOLLOUT) && connect_error(fds[i]) == 0 &&
                    send(fds[i], &b, 1, MSG_NOSIGNAL) == 1) {
                    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &e);
                    continue;
                }
                left--;
                if ((ev[j].events & EPOLLIN) && recv(fds[i], &b, 1, 0) == 1 && b == 'i') {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                    ok++;
                    continue;
                }
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
    if (ok < k)
        fprintf(stderr, "sk-bench: %d of %d idle connections failed\n", k - ok, k);
    if (ep >= 0)
        close(ep);
    return k - ok;
}

/* ---- setup and report --------------------------------------------------- */

static const char tls_usage[] =
    "  --tls-no-verify            TLS 1.3 (AES-128-GCM), the server's certificate NOT\n"
    "                             verified: loopback benchmarks only (pingpong, rate)\n"
    "  --tls-resume               rate with TLS: resume each slot's previous session\n";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sk-bench --connect HOST:PORT [options]\n"
            "  --mode pingpong|rate|idle  load to apply (pingpong)\n"
            "  --conns N                  active connections or rate slots (50)\n"
            "  --size BYTES               message size (64)\n"
            "  --depth D                  messages in flight per connection (1)\n"
            "  --duration S               measured seconds (5)\n"
            "  --warmup S                 unmeasured seconds first (0.5)\n"
            "  --threads T                load threads (1)\n"
            "  --idle K                   idle connections held open (idle mode: 10000)\n"
            "  --server-pid PID           sample the server's CPU time and RSS\n"
            "%s"
            "Prints one line of key=value pairs.\n",
            tls_built() ? tls_usage : "");
}

static void parse(int argc, char **argv)
{
    static const struct option longs[] = {
        {"connect", 1, NULL, 'c'},    {"mode", 1, NULL, 'm'},    {"conns", 1, NULL, 'n'},
        {"size", 1, NULL, 's'},       {"depth", 1, NULL, 'd'},   {"duration", 1, NULL, 't'},
        {"warmup", 1, NULL, 'w'},     {"threads", 1, NULL, 'T'}, {"idle", 1, NULL, 'i'},
        {"server-pid", 1, NULL, 'p'}, {"help", 0, NULL, 'h'},    {"tls-no-verify", 0, NULL, 'S'},
        {"tls-resume", 0, NULL, 'R'}, {NULL, 0, NULL, 0}};
    int ch, idle_set = 0;
    load.mode = MODE_PINGPONG;
    load.size = 64;
    load.depth = 1;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opt.addr = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "pingpong") == 0)
                load.mode = MODE_PINGPONG;
            else if (strcmp(optarg, "rate") == 0)
                load.mode = MODE_RATE;
            else if (strcmp(optarg, "idle") == 0)
                load.mode = MODE_IDLE;
            else
                goto bad;
            break;
        case 'n':
            opt.conns = atoi(optarg);
            break;
        case 's':
            load.size = (size_t)strtoull(optarg, NULL, 10);
            break;
        case 'd':
            load.depth = atoi(optarg);
            break;
        case 't':
            opt.duration = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'T':
            opt.threads = atoi(optarg);
            break;
        case 'i':
            opt.idle = atoi(optarg);
            idle_set = 1;
            break;
        case 'p':
            opt.server_pid = (pid_t)atoi(optarg);
            break;
        case 'S':
            load.tls = true;
            break;
        case 'R':
            opt.tls_resume = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            goto bad;
        }
    }
    if (load.mode == MODE_IDLE && !idle_set)
        opt.idle = 10000;
    if (!opt.addr || optind != argc || opt.conns < 1 || load.size < 1 || load.size > CHUNK ||
        load.depth < 1 || opt.duration <= 0 || opt.warmup < 0 || opt.threads < 1 || opt.idle < 0)
        goto bad;
    /* Idle connections stay plaintext; resuming needs a slot's previous connection. */
    if ((load.tls && (load.mode == MODE_IDLE || opt.idle > 0)) ||
        (opt.tls_resume && (!load.tls || load.mode != MODE_RATE)))
        goto bad;
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;
    return;
bad:
    usage(stderr);
    exit(2);
}

/* Room for every descriptor: raise the soft RLIMIT_NOFILE up to the hard one. */
static void raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        fprintf(stderr, "sk-bench: RLIMIT_NOFILE raised from %llu to %llu\n",
                (unsigned long long)old, (unsigned long long)rl.rlim_cur);
    if (rl.rlim_cur < need)
        fprintf(stderr,
                "sk-bench: %llu descriptors needed, hard limit %llu: "
                "raise it (ulimit -Hn, prlimit, limits.conf)\n",
                (unsigned long long)need, (unsigned long long)rl.rlim_max);
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const char *mode_name(void)
{
    return load.mode == MODE_RATE ? "rate" : load.mode == MODE_IDLE ? "idle" : "pingpong";
}

struct result {
    uint64_t msgs, errors, resumed;
    uint64_t secured; /* pingpong, TLS: connections whose handshake completed */
    int idle_failed;
    double srv_cpu, cli_cpu, busy_cpu, idle_setup_s;
    long rss_before, rss_idle, rss_end;
    struct hist hist;
};

static void report(const struct result *r)
{
    double secs = opt.duration, msgs = (double)r->msgs;
    printf("mode=%s conns=%d size=%zu depth=%d threads=%d idle=%d secs=%.3f msgs=%llu "
           "msgs_s=%.1f mb_s=%.3f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "errors=%llu",
           mode_name(), opt.conns, load.size, load.depth, opt.threads, opt.idle, secs,
           (unsigned long long)r->msgs, msgs / secs, msgs * (double)load.size / secs / 1e6,
           (double)hist_quantile(&r->hist, 0.50) / 1e3,
           (double)hist_quantile(&r->hist, 0.99) / 1e3,
           (double)hist_quantile(&r->hist, 0.999) / 1e3, (double)r->hist.max / 1e3,
           (unsigned long long)(r->errors + (uint64_t)r->idle_failed));
    printf(" cli_cpu_s=%.3f", r->cli_cpu);
    if (load.tls) /* handshakes: of the measured messages' connections */
        printf(" tls=1 handshakes=%llu resumed=%llu",
               (unsigned long long)(load.mode == MODE_RATE ? r->msgs : r->secured),
               (unsigned long long)r->resumed);
    if (opt.server_pid > 0 && r->srv_cpu >= 0)
        printf(" srv_cpu_s=%.3f srv_cpu_ns_msg=%.1f other_cpu_s=%.3f", r->srv_cpu,
               r->msgs ? r->srv_cpu * 1e9 / msgs : 0.0, r->busy_cpu - r->srv_cpu - r->cli_cpu);
    if (opt.server_pid > 0)
        printf(" srv_rss_kb=%ld", r->rss_end);
    if (opt.idle > 0) {
        printf(" idle_failed=%d idle_setup_s=%.2f", r->idle_failed, r->idle_setup_s);
        if (opt.server_pid > 0)
            printf(" srv_rss_before_idle_kb=%ld srv_rss_idle_kb=%ld "
                   "srv_rss_per_idle_b=%.1f",
                   r->rss_before, r->rss_idle,
                   (double)(r->rss_idle - r->rss_before) * 1024.0 / opt.idle);
    }
    printf("\n");
    fflush(stdout);
}

/* Spread the connections over the workers; connect them (pingpong). */
static struct worker *make_workers(void)
{
    struct worker *ws = calloc((size_t)opt.threads, sizeof(*ws));
    struct conn *cs = calloc((size_t)opt.conns, sizeof(*cs));
    uint64_t *stamps = calloc((size_t)opt.conns * (size_t)load.depth, sizeof(*stamps));
    if (!ws || !cs || !stamps)
        return NULL;
    for (int i = 0; i < opt.conns; i++) {
        cs[i].fd = -1;
        cs[i].stamps = stamps + (size_t)i * (size_t)load.depth;
        cs[i].salt = ((size_t)i * 104729u) % PLEN;
    }
    for (int t = 0, at = 0; t < opt.threads; t++) {
        struct worker *w = &ws[t];
        w->nconns = opt.conns / opt.threads + (t < opt.conns % opt.threads);
        w->conns = cs + at;
        at += w->nconns;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->buf = malloc(CHUNK);
        if (w->ep < 0 || !w->buf)
            return NULL;
    }
    return ws;
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    if (resolve(opt.addr) < 0) {
        fprintf(stderr, "sk-bench: cannot resolve %s\n", opt.addr);
        return 2;
    }
    raise_nofile((rlim_t)opt.conns + (rlim_t)opt.idle + 64);
    if (load.tls && tls_setup(opt.tls_resume) < 0)
        return 2;
    if (make_pattern() < 0) {
        fprintf(stderr, "sk-bench: out of memory\n");
        return 2;
    }
    struct worker *ws = make_workers();
    struct result r = {.srv_cpu = -1};
    if (!ws) {
        fprintf(stderr, "sk-bench: out of memory\n");
        return 2;
    }
    if (load.mode != MODE_RATE)
        for (int i = 0; i < opt.conns; i++) {
            struct conn *c = &ws[0].conns[i];
            if ((c->fd = connect_now()) < 0 || (load.tls && secure_now(c) < 0)) {
                if (c->fd >= 0)
                    close(c->fd);
                c->fd = -1;
                r.errors++;
            } else if (load.tls) {
                r.secured++;
            }
        }
    int *idle = NULL;
    if (opt.server_pid > 0)
        r.rss_before = proc_rss_kb(opt.server_pid);
    if (opt.idle > 0) {
        uint64_t t0 = now_ns();
        idle = malloc((size_t)opt.idle * sizeof(*idle));
        r.idle_failed = idle ? open_idle(idle, opt.idle) : opt.idle;
        r.idle_setup_s = (double)(now_ns() - t0) / 1e9;
        if (opt.server_pid > 0)
            r.rss_idle = proc_rss_kb(opt.server_pid);
    }

    load.t_start = now_ns() + (uint64_t)(opt.warmup * 1e9);
    load.t_end = load.t_start + (uint64_t)(opt.duration * 1e9);
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, "sk-bench: cannot start a thread\n");
            return 2;
        }
    sleep_until(load.t_start);
    double srv0 = opt.server_pid > 0 ? proc_tree_cpu(opt.server_pid) : -1;
    double cli0 = self_cpu(), busy0 = proc_busy_cpu();
    sleep_until(load.t_end);
    r.busy_cpu = proc_busy_cpu() - busy0;
    double srv1 = opt.server_pid > 0 ? proc_tree_cpu(opt.server_pid) : -1;
    r.cli_cpu = self_cpu() - cli0;
    if (srv0 >= 0 && srv1 >= 0)
        r.srv_cpu = srv1 - srv0;
    if (opt.server_pid > 0)
        r.rss_end = proc_rss_kb(opt.server_pid);
    for (int t = 0; t < opt.threads; t++) {
        pthread_join(ws[t].tid, NULL);
        r.msgs += ws[t].msgs;
        r.errors += ws[t].errors;
        r.resumed += ws[t].resumed;
        hist_merge(&r.hist, &ws[t].hist);
    }
    report(&r);

    for (int i = 0; i < opt.conns; i++)
        if (ws[0].conns[i].fd >= 0)
            close(ws[0].conns[i].fd);
    for (int i = 0; idle && i < opt.idle; i++)
        if (idle[i] >= 0)
            close_hard(idle[i]);
    return 0;
}
