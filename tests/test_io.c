/* SPDX-License-Identifier: MIT */
/* Whole-buffer I/O: EINTR, short transfers, SIGPIPE, timeouts; the line reader. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define BIG_BYTES (4 << 20)

/* SK_TEST_SCALE (valgrind) divides loads and multiplies intervals. */
static long test_scale(void)
{
    const char *scale = getenv("SK_TEST_SCALE");
    return scale && atoi(scale) > 0 ? atoi(scale) : 1;
}

/* What the transfer tests move: 4 MiB, less under valgrind, which checks
 * memory rather than throughput (each piece is a system call, interrupted). */
#define BIG ((size_t)(BIG_BYTES / test_scale()))

struct pump {
    int fd;
    const unsigned char *data;
    size_t len;
    ssize_t result;
};

/* Writes in random small pieces, so the reader sees short reads. */
static void *slow_writer(void *arg)
{
    struct pump *p = arg;
    size_t done = 0;
    unsigned seed = 7;
    while (done < p->len) {
        size_t n = 1 + (size_t)(rand_r(&seed) % 70000);
        if (n > p->len - done)
            n = p->len - done;
        if (sk_write_all(p->fd, p->data + done, n, 10000) != (ssize_t)n) {
            p->result = -1;
            return NULL;
        }
        done += n;
    }
    shutdown(p->fd, SHUT_WR);
    p->result = (ssize_t)done;
    return NULL;
}

static void *reader(void *arg)
{
    struct pump *p = arg;
    p->result = sk_read_full(p->fd, (void *)p->data, p->len, 10000);
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
}

/* A timer interrupting system calls every millisecond, without SA_RESTART.
 * Under valgrind (SK_TEST_SCALE) every SK_TEST_SCALE squared: each delivery
 * costs valgrind milliseconds, and on a loaded machine a tick every 8 ms left
 * the test no time between signals (it spun for 20 minutes). */
static void interrupt_often(bool on)
{
    /* The no-op handler stays once installed: a tick still pending when the
     * timer stops, caught by SIG_DFL, killed the test under valgrind. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    long k = test_scale();
    long us = on ? 1000L * k * k : 0;
    struct itimerval it = {{0, us}, {0, us}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void whole_buffers_survive_eintr_and_short_transfers(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    unsigned char *out = malloc(BIG), *in = calloc(1, BIG);
    tu_fill_random(out, BIG, 1);

    struct pump rd = {.fd = sv[1], .data = in, .len = BIG};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &rd), 0);
    interrupt_often(true); /* the main thread's write is interrupted again and again */
    assert_int_equal(sk_write_all(sv[0], out, BIG, 10000), BIG);
    interrupt_often(false);
    pthread_join(t, NULL);
    assert_int_equal(rd.result, BIG);
    assert_memory_equal(in, out, BIG);

    /* and the other way: short writes from a thread, a read loop here */
    memset(in, 0, BIG);
    struct pump wr = {.fd = sv[1], .data = out, .len = BIG};
    assert_int_equal(pthread_create(&t, NULL, slow_writer, &wr), 0);
    interrupt_often(true);
    ssize_t got = sk_read_full(sv[0], in, BIG, 10000);
    interrupt_often(false);
    pthread_join(t, NULL);
    assert_int_equal(wr.result, BIG);
    assert_int_equal(got, BIG);
    assert_memory_equal(in, out, BIG);
    free(out);
    free(in);
    close(sv[0]);
    close(sv[1]);
}

static void nonblocking_fds_are_waited_on(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(sk_set_nonblocking(sv[0], true), 0);
    assert_int_equal(sk_set_nonblocking(sv[1], true), 0);
    unsigned char *out = malloc(BIG), *in = calloc(1, BIG);
    tu_fill_random(out, BIG, 2);
    struct pump rd = {.fd = sv[1], .data = in, .len = BIG};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader, &rd), 0);
    assert_int_equal(sk_write_all(sv[0], out, BIG, 10000), BIG);
    pthread_join(t, NULL);
    assert_int_equal(rd.result, BIG);
    assert_memory_equal(in, out, BIG);
    free(out);
    free(in);
    close(sv[0]);
    close(sv[1]);
}

static void writing_to_a_closed_peer_is_epipe_not_sigpipe(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test */
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    int c = tu_dial("127.0.0.1", sk_local_port(l));
    int s = sk_accept(l, NULL);
    assert_true(l >= 0 && c >= 0 && s >= 0);
    close(s);
    char buf[65536] = {0};
    ssize_t rc = 0;
    for (int i = 0; i < 100 && rc >= 0; i++)
        rc = sk_write_all(c, buf, sizeof(buf), 1000);
    assert_true(rc == -EPIPE || rc == -ECONNRESET);
    close(c);
    close(l);

    int p[2];
    assert_int_equal(pipe(p), 0); /* a pipe: write(), not send() */
    close(p[0]);
    assert_int_equal(sk_write_all(p[1], "x", 1, 1000), -EPIPE);
    close(p[1]);
}

static void reads_time_out_and_see_eof(void **state)
{
    (void)state;
    int sv[2];
    char buf[16];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int64_t t0 = tu_now_ms();
    assert_int_equal(sk_read_some(sv[0], buf, sizeof(buf), 200), -ETIMEDOUT);
    int64_t took = tu_now_ms() - t0;
    assert_true(took >= 180 && took < 1000);
    assert_int_equal(write(sv[1], "abc", 3), 3);
    assert_int_equal(sk_read_some(sv[0], buf, sizeof(buf), 200), 3);
    assert_int_equal(write(sv[1], "de", 2), 2);
    assert_int_equal(sk_read_full(sv[0], buf, 5, 200), -ETIMEDOUT); /* only 2 came */
    close(sv[1]);
    assert_int_equal(sk_read_some(sv[0], buf, sizeof(buf), 200), 0);
    assert_int_equal(sk_read_full(sv[0], buf, 5, 200), 0);
    close(sv[0]);
}

/* The write side honours its bound too, on blocking descriptors: a socket
 * and a pipe nobody reads. What was written before the bound is not lost:
 * the reader finds a prefix of the buffer. */
static void writes_time_out_on_blocking_descriptors(void **state)
{
    (void)state;
    size_t len = 8 << 20;
    char *big = malloc(len), *back = malloc(len);
    assert_non_null(big);
    assert_non_null(back);
    tu_fill_random(big, len, 7);
    int sv[2], p[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int writers[2] = {sv[0], p[1]}, readers[2] = {sv[1], p[0]};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sk_is_nonblocking(writers[i]), 0);
        int64_t t0 = tu_now_ms();
        assert_int_equal(sk_write_all(writers[i], big, len, 100), -ETIMEDOUT);
        int64_t took = tu_now_ms() - t0;
        assert_true(took >= 90 && took < 3000);
        assert_int_equal(sk_is_nonblocking(writers[i]), 0); /* left as it was */
        close(writers[i]);
        ssize_t n = sk_read_full(readers[i], back, len, 5000);
        assert_true(n > 0 && n < (ssize_t)len);
        assert_memory_equal(back, big, (size_t)n);
        close(readers[i]);
    }
    free(big);
    free(back);
}

static void bad_arguments(void **state)
{
    (void)state;
    char buf[4];
    assert_int_equal(sk_write_all(-1, "x", 1, 100), -EBADF);
    assert_int_equal(sk_write_all(1, NULL, 1, 100), -EINVAL);
    assert_int_equal(sk_write_all(1, NULL, 0, 100), 0);
    assert_int_equal(sk_read_full(-1, buf, 1, 100), -EBADF);
    assert_int_equal(sk_read_some(-1, buf, 1, 100), -EBADF);
    assert_int_equal(sk_read_some(0, NULL, 1, 100), -EINVAL);
    assert_int_equal(sk_read_some(0, buf, 0, 100), -EINVAL);
    assert_int_equal(sk_read_full(0, buf, (size_t)-1, 100), -EINVAL);
    assert_null(sk_lines_new(-1, 10));
    assert_null(sk_lines_new(0, 0));
    assert_null(sk_lines_new(0, (size_t)-1));
    char *line;
    assert_int_equal(sk_lines_read(NULL, &line, 10), -EINVAL);
    assert_int_equal(sk_lines_pending(NULL), 0);
    sk_lines_free(NULL);
}

/* Feed text in the given chunk sizes (cycled) from a thread. */
struct feed {
    int fd;
    const char *text;
    size_t len;
    const size_t *chunks;
    size_t nchunks;
};

static void *feeder(void *arg)
{
    struct feed *f = arg;
    size_t done = 0, i = 0;
    while (done < f->len) {
        size_t n = f->chunks[i++ % f->nchunks];
        if (n > f->len - done)
            n = f->len - done;
        sk_write_all(f->fd, f->text + done, n, 5000);
        done += n;
        usleep(200);
    }
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

static void lines_are_whole_however_the_bytes_are_split(void **state)
{
    (void)state;
    static const char text[] = "alpha\nbe\0ta\n\n\r\ngamma delta\nlast-without-newline";
    const size_t len = sizeof(text) - 1;
    const char *want[] = {"alpha\n", "be\0ta\n", "\n", "\r\n", "gamma delta\n",
                          "last-without-newline"};
    const size_t want_len[] = {6, 6, 1, 2, 12, 20};
    const size_t splits[][3] = {{1, 1, 1}, {2, 3, 5}, {7, 1, 13}, {100, 100, 100}};
    for (size_t s = 0; s < sizeof(splits) / sizeof(splits[0]); s++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        struct feed f = {sv[1], text, len, splits[s], 3};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, feeder, &f), 0);
        sk_lines *lr = sk_lines_new(sv[0], 64);
        assert_non_null(lr);
        char *line;
        for (size_t i = 0; i < 6; i++) {
            assert_int_equal(sk_lines_read(lr, &line, 5000), (ssize_t)want_len[i]);
            assert_memory_equal(line, want[i], want_len[i]);
            assert_int_equal(line[want_len[i]], '\0');
        }
        assert_int_equal(sk_lines_read(lr, &line, 5000), 0);
        assert_null(line);
        assert_int_equal(sk_lines_read(lr, &line, 5000), 0);
        pthread_join(t, NULL);
        sk_lines_free(lr);
        close(sv[0]);
        close(sv[1]);
    }
}

static void over_long_line_is_an_error(void **state)
{
    (void)state;
    int sv[2];
    char *line;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    sk_lines *lr = sk_lines_new(sv[0], 8);
    assert_non_null(lr);
    /* exactly 8 bytes with the newline: accepted; then 9 without one: refused */
    assert_int_equal(write(sv[1], "1234567\n123456789\n", 18), 18);
    assert_int_equal(sk_lines_read(lr, &line, 1000), 8);
    assert_string_equal(line, "1234567\n");
    assert_int_equal(sk_lines_read(lr, &line, 1000), SK_ETOOLONG);
    assert_int_equal(sk_lines_read(lr, &line, 1000), SK_ETOOLONG); /* sticky */
    sk_lines_free(lr);
    close(sv[0]);
    close(sv[1]);
}

static void line_timeout_keeps_partial_data(void **state)
{
    (void)state;
    int sv[2];
    char *line;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    sk_lines *lr = sk_lines_new(sv[0], 100);
    assert_int_equal(write(sv[1], "hel", 3), 3);
    assert_int_equal(sk_lines_read(lr, &line, 100), -ETIMEDOUT);
    assert_int_equal(sk_lines_pending(lr), 3);
    assert_int_equal(write(sv[1], "lo\nwor", 6), 6);
    assert_int_equal(sk_lines_read(lr, &line, 1000), 6);
    assert_string_equal(line, "hello\n");
    assert_int_equal(sk_lines_pending(lr), 3);
    assert_int_equal(sk_lines_read(lr, &line, 100), -ETIMEDOUT);
    assert_int_equal(write(sv[1], "ld\n", 3), 3);
    assert_int_equal(sk_lines_read(lr, &line, 1000), 6);
    assert_string_equal(line, "world\n");
    sk_lines_free(lr);
    close(sv[0]);
    close(sv[1]);
}

static void many_lines_through_a_small_reader(void **state)
{
    (void)state;
    enum { LINES = 20000 };
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    size_t cap = (size_t)LINES * 24;
    char *text = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < LINES; i++)
        len += (size_t)snprintf(text + len, cap - len, "line %d %.*s\n", i, i % 11, "xxxxxxxxxxx");
    const size_t chunks[] = {4093, 1, 777};
    struct feed f = {sv[1], text, len, chunks, 3};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, feeder, &f), 0);
    sk_lines *lr = sk_lines_new(sv[0], 4096); /* a buffer barely bigger than a chunk */
    char *line, want[64];
    for (int i = 0; i < LINES; i++) {
        int n = snprintf(want, sizeof(want), "line %d %.*s\n", i, i % 11, "xxxxxxxxxxx");
        assert_int_equal(sk_lines_read(lr, &line, 5000), n);
        assert_string_equal(line, want);
    }
    assert_int_equal(sk_lines_read(lr, &line, 5000), 0);
    pthread_join(t, NULL);
    sk_lines_free(lr);
    free(text);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_buffers_survive_eintr_and_short_transfers),
        cmocka_unit_test(nonblocking_fds_are_waited_on),
        cmocka_unit_test(writing_to_a_closed_peer_is_epipe_not_sigpipe),
        cmocka_unit_test(reads_time_out_and_see_eof),
        cmocka_unit_test(writes_time_out_on_blocking_descriptors),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(lines_are_whole_however_the_bytes_are_split),
        cmocka_unit_test(over_long_line_is_an_error),
        cmocka_unit_test(line_timeout_keeps_partial_data),
        cmocka_unit_test(many_lines_through_a_small_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
