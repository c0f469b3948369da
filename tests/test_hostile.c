/* SPDX-License-Identifier: MIT */
/*
 * Hostile and unlucky clients, on every backend:
 *   test_hostile BACKEND [WORKERS [REUSE]]
 * - out of descriptors: the server keeps serving, does not spin, recovers;
 * - slowloris: silent or dribbling connections are closed by the idle timeout
 *   while a well-behaved client is served throughout;
 * - a client that never reads: cut off, the server's memory stays bounded;
 * - 10,000 connections opened and closed (some reset, some half-closed,
 *   some reset in the middle of a large reply): no descriptor, process or
 *   thread is left behind.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

/* "big" asks for 4 MiB at once; anything else is echoed. */
static void echo_or_big(sk_conn *c, char *data, size_t len)
{
    static char big[1 << 20];
    if (len >= 3 && memcmp(data, "big", 3) == 0) {
        for (int i = 0; i < 4; i++)
            sk_conn_send(c, big, sizeof(big));
        return;
    }
    sk_conn_send(c, data, len);
}

static void relay_to_others(sk_conn *c, char *data, size_t len)
{
    sk_server_broadcast(sk_conn_server(c), c, data, len);
}

/* CPU seconds (user + system) of a process. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    double ticks = 0;
    if (f && fgets(buf, sizeof(buf), f)) {
        unsigned long utime = 0, stime = 0;
        char *paren = strrchr(buf, ')');
        if (paren && sscanf(paren + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &utime, &stime) == 2)
            ticks = (double)(utime + stime);
    }
    if (f)
        fclose(f);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* Resident memory (KiB) of every process in a process group. */
static long group_rss_kib(pid_t pgid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    long total = 0;
    char path[300], buf[1024];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int pg = 0;
        long rss = 0;
        if (fgets(buf, sizeof(buf), f)) {
            char *paren = strrchr(buf, ')');
            if (paren)
                sscanf(paren + 2, "%*c %*d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
                                  "%*d %*d %*d %*d %*u %*u %ld", &pg, &rss);
        }
        fclose(f);
        if (pg == pgid)
            total += rss * (sysconf(_SC_PAGESIZE) / 1024);
    }
    if (d)
        closedir(d);
    return total;
}

/* A client that sends "x" and gets it back: 1; refused (end of file): 0. */
static int served(const struct running *r, int *fd)
{
    *fd = dial(r);
    char c;
    if (sk_write_all(*fd, "x", 1, 2000) != 1)
        return 0;
    ssize_t n = sk_read_some(*fd, &c, 1, 5000);
    return n == 1 && c == 'x';
}

/* ---- out of descriptors ------------------------------------------------ */

#define FD_LIMIT 64

static void limit_fds(sk_server *s)
{
    (void)s;
    struct rlimit rl = {FD_LIMIT, FD_LIMIT};
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void out_of_descriptors(void **state)
{
    (void)state;
    struct running r;
    harness_before_run = limit_fds;
    start(&r, new_server(echo));
    harness_before_run = NULL;

    /* Fill the server up: clients are served until its descriptors run out. */
    enum { MAX_CLIENTS = 2 * FD_LIMIT };
    int fds[MAX_CLIENTS], nserved = 0, n = 0, refused = 0;
    while (n < MAX_CLIENTS && refused < 5) {
        if (served(&r, &fds[n]))
            nserved++;
        else
            refused++;
        n++;
    }
    assert_true(nserved >= FD_LIMIT / 4); /* fds: 2 per connection on pthread */
    assert_true(refused >= 5);

    /* Saturated: more clients keep knocking; the server must not spin. */
    double cpu0 = cpu_seconds(r.pid);
    int64_t t0 = tu_now_ms();
    int knocks = 0;
    while (tu_now_ms() - t0 < 1000) {
        int fd = dial(&r);
        expect_eof(fd, 2000); /* refused, not left hanging */
        close(fd);
        knocks++;
        usleep(10000);
    }
    double cpu = cpu_seconds(r.pid) - cpu0, wall = (double)(tu_now_ms() - t0) / 1000;
    printf("# %s: %d connections served at RLIMIT_NOFILE=%d; %d refused while saturated; "
           "server CPU %.0f ms in %.1f s (%.1f%%)\n", backend, nserved, FD_LIMIT, knocks,
           cpu * 1000, wall, 100 * cpu / wall);
    assert_true(cpu / wall < 0.25);

    /* The live ones are still served... */
    for (int i = 0; i < n; i += 7) {
        char c = 'y';
        if (sk_write_all(fds[i], &c, 1, 1000) == 1 && sk_read_some(fds[i], &c, 1, 100) == 1)
            assert_int_equal(c, 'y');
    }
    /* ...and once descriptors free up, new clients are served again. */
    for (int i = 0; i < n; i++)
        close(fds[i]);
    wait_count(&r, 0, 10000);
    int fd;
    int64_t until = tu_now_ms() + 5000;
    int ok = 0;
    while (!ok && tu_now_ms() < until) {
        ok = served(&r, &fd);
        close(fd);
    }
    assert_true(ok);
    finish(&r);
}

/* ---- slowloris ----------------------------------------------------------- */

static void slowloris_is_timed_out(void **state)
{
    (void)state;
    enum { LORIS = 500, IDLE_MS = 1000 };
    struct running r;
    sk_server *s = new_server(echo);
    sk_server_set_idle_timeout(s, IDLE_MS);
    start(&r, s);
    int loris[LORIS];
    for (int i = 0; i < LORIS; i++)
        loris[i] = dial(&r);
    int good = dial(&r);
    int64_t t0 = tu_now_ms();
    /* Half of them send a byte every 1.5 s (slower than the timeout); the
     * rest nothing. The good client talks every 100 ms. */
    int64_t next_drip = t0 + 200;
    while (tu_now_ms() - t0 < 3000) {
        assert_int_equal(sk_write_all(good, "g", 1, 1000), 1);
        expect_text(good, "g");
        if (tu_now_ms() >= next_drip) {
            for (int i = 0; i < LORIS; i += 2)
                send(loris[i], "s", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            next_drip += 1500;
        }
        usleep(100000);
    }
    /* The good one keeps talking while the slow ones are closed (under a
     * sanitizer, 500 children can take longer than a timeout to go), so an
     * idle close beyond LORIS can only be the good one's: a failure. */
    int64_t until = tu_now_ms() + 20000;
    while (shared_get(&sh->closes[SK_CLOSE_IDLE]) < LORIS && tu_now_ms() < until) {
        assert_int_equal(sk_write_all(good, "g", 1, 1000), 1);
        expect_text(good, "g");
        usleep(100000);
    }
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_IDLE]), LORIS);
    for (int i = 0; i < LORIS; i++) {
        expect_eof(loris[i], 2000);
        close(loris[i]);
    }
    assert_int_equal(sk_write_all(good, "h", 1, 1000), 1); /* served throughout */
    expect_text(good, "h");
    close(good);
    printf("# %s: %d slow connections closed by a %d ms idle timeout, the active one served\n",
           backend, LORIS, IDLE_MS);
    finish(&r);
}

/* ---- a client that never reads ------------------------------------------ */

static void never_reading_client_costs_bounded_memory(void **state)
{
    (void)state;
    enum { CAP = 256 * 1024, FLOOD = 64 << 20 };
    struct running r;
    sk_server *s = new_server(relay_to_others);
    sk_server_set_max_output(s, CAP);
    start(&r, s);
    int sleeper = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;
    setsockopt(sleeper, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    sk_addr a;
    assert_int_equal(sk_addr_parse(r.addr, &a), 0);
    assert_int_equal(connect(sleeper, &a.u.sa, a.len), 0);
    int sender = dial(&r);
    wait_count(&r, 2, 5000);
    long rss0 = group_rss_kib(r.pid);
    static char chunk[65536];
    memset(chunk, 'f', sizeof(chunk));
    for (size_t sent = 0; sent < FLOOD; sent += sizeof(chunk))
        if (sk_write_all(sender, chunk, sizeof(chunk), 5000) < 0)
            break; /* the sender is never cut: it reads nothing because nobody echoes */
    wait_for(&sh->closes[SK_CLOSE_SLOW], 1, 10000);
    long grew = group_rss_kib(r.pid) - rss0;
    printf("# %s: %d MiB sent at a client that never reads: cut at %d KiB of output; "
           "server RSS grew %ld KiB\n", backend, FLOOD >> 20, CAP / 1024, grew);
    assert_true(grew < 8 * 1024);
    expect_eof(sleeper, 5000);
    close(sleeper);
    close(sender);
    finish(&r);
}

/* ---- churn -------------------------------------------------------------- */

static void reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Connections a client closed or reset before the server accepted them wait
 * in the backlog and are accepted later, so the live count can touch 0 and
 * rise again; and a connection is uncounted a moment before its thread or
 * child is reaped. Settled: no accept for 300 ms, and none live. */
static void wait_settled(struct running *r, int ms)
{
    int64_t until = tu_now_ms() + ms, quiet_since = tu_now_ms();
    sk_stats st = server_stats(r);
    unsigned long long seen = st.accepted + st.refused;
    while (tu_now_ms() < until) {
        st = server_stats(r);
        if (st.accepted + st.refused != seen) {
            seen = st.accepted + st.refused;
            quiet_since = tu_now_ms();
        } else if (tu_now_ms() - quiet_since >= 300 && server_count(r) == 0) {
            return;
        }
        usleep(5000);
    }
    assert_int_equal(server_count(r), 0);
}

static void churn_leaves_nothing_behind(void **state)
{
    (void)state;
    enum { CYCLES = 10000 };
    struct running r;
    start(&r, new_server(echo_or_big));
    int fd;
    assert_true(served(&r, &fd)); /* warm up: the first connection's one-time costs */
    close(fd);
    wait_settled(&r, 5000); /* its thread or child gone too, not just uncounted */
    int fds0 = fd_count(r.pid), threads0 = thread_count(r.pid);

    int64_t t0 = tu_now_ms();
    for (int i = 0; i < CYCLES; i++) {
        fd = dial(&r);
        switch (i % 4) {
        case 0: /* plain: a message, its echo, close */
            assert_int_equal(sk_write_all(fd, "ping", 4, 2000), 4);
            expect_text(fd, "ping");
            close(fd);
            break;
        case 1: /* reset at once */
            reset(fd);
            break;
        case 2: /* half-close, still answered */
            assert_int_equal(sk_write_all(fd, "half", 4, 2000), 4);
            shutdown(fd, SHUT_WR);
            expect_text(fd, "half");
            close(fd);
            break;
        default: /* reset in the middle of a 4 MiB reply */
            if (i % 40 == 3) {
                char buf[1000];
                assert_int_equal(sk_write_all(fd, "big", 3, 2000), 3);
                assert_true(sk_read_some(fd, buf, sizeof(buf), 5000) > 0);
                reset(fd);
            } else {
                close(fd);
            }
        }
    }
    int64_t took = tu_now_ms() - t0;
    wait_settled(&r, 20000);
    int64_t until = tu_now_ms() + 5000; /* the last children take a moment to exit */
    while (child_processes(r.pid) > 0 && tu_now_ms() < until)
        usleep(10000);
    printf("# %s: %d connect/close cycles in %.1f s; server fds %d -> %d, threads %d -> %d, "
           "children %d\n", backend, CYCLES, (double)took / 1000, fds0, fd_count(r.pid),
           threads0, thread_count(r.pid), child_processes(r.pid));
    assert_int_equal(fd_count(r.pid), fds0);
    assert_int_equal(thread_count(r.pid), threads0);
    assert_int_equal(child_processes(r.pid), 0);
    assert_true(served(&r, &fd)); /* and it still serves */
    close(fd);
    finish(&r);
}

int main(int argc, char **argv)
{
    if (harness_init(argc, argv) != 0)
        return 1;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl); /* the clients need more than the usual 1024 */
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(out_of_descriptors, harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(slowloris_is_timed_out, harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(never_reading_client_costs_bounded_memory, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(churn_leaves_nothing_behind, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests_name("hostile", tests, NULL, NULL);
}
