/* SPDX-License-Identifier: MIT */
/*
 * A program and a backend of its own, compiled against the 1.0.0 headers kept
 * with the ABI baseline (abi/1.0.0/include), running on this library: what a
 * 1.0 binary does keeps working in every 1.x release.
 */
#include "../poll_backend.h" /* the test backend, compiled here against 1.0 too */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

_Static_assert(SK_VERSION_NUMBER == 10000, "compiled against the 1.0.0 headers");

static void echo_line(sk_conn *c, char *line, size_t len)
{
    sk_conn_sendf(c, "%.*s!\n", (int)len, line);
}

static int closes[SK_CLOSE_ERROR + 1];

static void on_close(sk_conn *c, sk_close_reason why)
{
    (void)c;
    __atomic_add_fetch(&closes[why], 1, __ATOMIC_RELAXED);
}

static void *run(void *arg)
{
    return (void *)(intptr_t)sk_server_run(arg);
}

static void serve_lines_on(const char *backend)
{
    memset(closes, 0, sizeof(closes));
    sk_server *s = sk_server_new("127.0.0.1:0");
    assert_non_null(s);
    assert_int_equal(sk_server_set_backend(s, backend), 0);
    assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, 64), 0);
    sk_server_on_data(s, echo_line);
    sk_server_on_close(s, on_close);
    assert_int_equal(sk_server_bind(s), 0);
    char addr[SK_ADDR_STRLEN];
    assert_true(sk_server_address(s, addr, sizeof(addr)) > 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run, s), 0);

    int fd = sk_connect(addr, 5000);
    assert_true(fd >= 0);
    assert_int_equal(sk_write_all(fd, "one\r\ntwo\n", 9, 5000), 9);
    sk_lines *lr = sk_lines_new(fd, 64);
    char *line;
    assert_int_equal(sk_lines_read(lr, &line, 5000), 5); /* 1.0: the '\n' is kept */
    assert_string_equal(line, "one!\n");
    assert_int_equal(sk_lines_read(lr, &line, 5000), 5);
    assert_string_equal(line, "two!\n");
    sk_lines_free(lr);
    close(fd);

    for (int i = 0; i < 500 && !__atomic_load_n(&closes[SK_CLOSE_PEER], __ATOMIC_RELAXED); i++)
        usleep(10000);
    assert_int_equal(__atomic_load_n(&closes[SK_CLOSE_PEER], __ATOMIC_RELAXED), 1);
    sk_server_stop(s);
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((intptr_t)rc, 0);
    sk_stats st;
    assert_int_equal(sk_server_stats(s, &st), 0);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.closed, 1);
    assert_int_equal(st.bytes_in, 9);
    assert_int_equal(st.bytes_out, 10);
    sk_server_free(s);
}

static void runs_on_this_library(void **state)
{
    (void)state;
    assert_string_equal(sk_version(), SK_TEST_PROJECT_VERSION);
    assert_string_equal(sk_close_reason_name(SK_CLOSE_SLOW), "slow");
    assert_int_equal(SK_CLOSE_ERROR, 8);
    assert_string_equal(sk_strerror(SK_EBACKEND), sk_strerror(-3103));
}

static void its_own_backend_serves(void **state)
{
    (void)state;
    assert_int_equal(poll_backend_register(), 0); /* sk_backend_register(), 1.0 */
    assert_non_null(sk_backend_find("poll-test"));
    serve_lines_on("poll-test");
}

static void the_builtin_backends_serve(void **state)
{
    (void)state;
    serve_lines_on("epoll-et");
    serve_lines_on("epoll-lt");
    serve_lines_on("pthread");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_on_this_library),
        cmocka_unit_test(its_own_backend_serves),
        cmocka_unit_test(the_builtin_backends_serve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
