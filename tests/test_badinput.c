/* SPDX-License-Identifier: MIT */
/*
 * Bad input to every public function: NULL, negative and closed descriptors,
 * absurd sizes and values. Each call returns an error (or is a documented
 * no-op) and nothing crashes or leaks. check_abi.py fails if a function the
 * library exports is not called here.
 */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void socket_layer(void **state)
{
    (void)state;
    sk_addr a = {0};
    char buf[SK_ADDR_STRLEN], big[16];
    int before = tu_fd_count();

    assert_non_null(sk_strerror(INT_MIN));
    assert_non_null(sk_version());
    assert_int_equal(sk_addr_parse(NULL, &a), -EINVAL);
    assert_int_equal(sk_addr_parse("1.2.3.4:5", NULL), -EINVAL);
    assert_int_equal(sk_addr_resolve(NULL, &a), -EINVAL);
    assert_int_equal(sk_addr_resolve("1.2.3.4:5", NULL), -EINVAL);
    assert_int_equal(sk_addr_format(NULL, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sk_addr_format(&a, NULL, 10), -EINVAL);
    assert_int_equal(sk_addr_format(&a, buf, 0), -EINVAL);
    a.u.sa.sa_family = 12345;
    assert_int_equal(sk_addr_format(&a, buf, sizeof(buf)), -EINVAL);
    a.u.sa.sa_family = AF_UNIX; /* a unix address with an absurd length */
    a.len = UINT32_MAX;
    assert_true(sk_addr_format(&a, buf, sizeof(buf)) >= 0);
    assert_int_equal(sk_addr_port(NULL), -EINVAL);
    assert_int_equal(sk_addr_getsockname(-1, &a), -EBADF);
    assert_int_equal(sk_addr_getsockname(0, NULL), -EINVAL);
    assert_int_equal(sk_addr_getpeername(-1, &a), -EBADF);
    assert_int_equal(sk_local_addr(-1, buf, sizeof(buf)), -EBADF);
    assert_int_equal(sk_local_addr(0, NULL, 5), -EINVAL);
    assert_int_equal(sk_peer_addr(-1, buf, sizeof(buf)), -EBADF);
    assert_int_equal(sk_peer_addr(0, buf, 0), -EINVAL);

    assert_int_equal(sk_listen(NULL, SK_REUSE_ADDR, 0), -EINVAL);
    assert_int_equal(sk_listen("127.0.0.1:0", (sk_reuse)INT_MAX, 0), -EINVAL);
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, INT_MAX); /* the kernel caps it */
    assert_true(l >= 0);
    close(l);
    l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, INT_MIN);
    assert_true(l >= 0);
    close(l);
    assert_int_equal(sk_connect(NULL, 10), -EINVAL);
    assert_int_equal(sk_connect("999.1.1.1:1", INT_MAX), SK_EADDR); /* no lookup */
    assert_int_equal(sk_accept(-1, NULL), -EBADF);
    assert_int_equal(sk_accept(INT_MAX, &a), -EBADF);
    assert_int_equal(sk_accept(0, NULL), -ENOTSOCK);
    assert_int_equal(sk_set_nonblocking(-1, true), -EBADF);
    assert_int_equal(sk_is_nonblocking(INT_MAX), -EBADF);
    assert_int_equal(sk_set_cloexec(-1, true), -EBADF);
    assert_int_equal(sk_set_nodelay(-1, true), -EBADF);
    assert_int_equal(sk_set_keepalive(-1, true, 1, 1, 1), -EBADF);
    assert_int_equal(sk_local_port(-1), -EBADF);

    assert_int_equal(sk_write_all(-1, "x", 1, 0), -EBADF);
    assert_int_equal(sk_write_all(1, NULL, 5, 0), -EINVAL);
    assert_int_equal(sk_write_all(1, big, SIZE_MAX, 0), -EINVAL);
    assert_int_equal(sk_read_full(-1, big, 1, 0), -EBADF);
    assert_int_equal(sk_read_full(0, NULL, 5, 0), -EINVAL);
    assert_int_equal(sk_read_full(0, big, SIZE_MAX, 0), -EINVAL);
    assert_int_equal(sk_read_some(-1, big, 1, 0), -EBADF);
    assert_int_equal(sk_read_some(0, big, SIZE_MAX, 0), -EINVAL);
    assert_null(sk_lines_new(-1, 10));
    assert_null(sk_lines_new(0, 0));
    assert_null(sk_lines_new(0, SIZE_MAX));
    char *line;
    assert_int_equal(sk_lines_read(NULL, &line, 0), -EINVAL);
    sk_lines *lr = sk_lines_new(0, 10);
    assert_int_equal(sk_lines_read(lr, NULL, 0), -EINVAL);
    size_t len = 7;
    assert_int_equal(sk_lines_next(NULL, &line, &len, 0), -EINVAL);
    assert_int_equal(len, 0);
    assert_int_equal(sk_lines_next(lr, NULL, &len, 0), -EINVAL);
    assert_int_equal(sk_lines_next(lr, &line, NULL, 0), -EINVAL);
    sk_lines_free(lr);
    assert_int_equal(sk_lines_pending(NULL), 0);
    sk_lines_free(NULL);
    assert_int_equal(tu_fd_count(), before);
}

static int run_nothing(sk_server *s)
{
    (void)s;
    return 0;
}

static void count_post(sk_server *s, sk_conn *c, void *arg)
{
    assert_non_null(s);
    assert_null(c);
    (*(int *)arg)++;
}

static void no_timer(sk_timer *t, void *arg)
{
    (void)t;
    (void)arg;
}

static void server_layer(void **state)
{
    (void)state;
    char buf[SK_ADDR_STRLEN];
    sk_stats st;
    int before = tu_fd_count();

    sk_server_free(NULL);
    assert_int_equal(sk_server_add_listen(NULL, "x:1"), -EINVAL);
    assert_int_equal(sk_server_set_reuse(NULL, SK_REUSE_ADDR), -EINVAL);
    assert_int_equal(sk_server_set_backend(NULL, "fork"), -EINVAL);
    assert_int_equal(sk_server_set_workers(NULL, 1), -EINVAL);
    assert_int_equal(sk_server_set_max_conns(NULL, 1), -EINVAL);
    assert_int_equal(sk_server_set_idle_timeout(NULL, 1), -EINVAL);
    assert_int_equal(sk_server_set_framing(NULL, SK_FRAMING_RAW, 0), -EINVAL);
    assert_int_equal(sk_server_set_max_output(NULL, 1), -EINVAL);
    assert_int_equal(sk_server_set_watermarks(NULL, 2, 1), -EINVAL);
    assert_int_equal(sk_server_on_drain(NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_on_eof(NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_set_drain_timeout(NULL, 1), -EINVAL);
    assert_int_equal(sk_server_set_nodelay(NULL, true), -EINVAL);
    assert_int_equal(sk_server_set_option(NULL, "workers", "1"), -EINVAL);
    assert_int_equal(sk_server_stop_on_signal(NULL, SIGUSR1), -EINVAL);
    assert_int_equal(sk_server_drain_on_signal(NULL, SIGUSR1), -EINVAL);
    assert_int_equal(sk_server_drain(NULL), -EINVAL);
    assert_false(sk_server_draining(NULL));
    assert_int_equal(sk_server_set_grace_timeout(NULL, 1), -EINVAL);
    assert_int_equal(sk_server_set_handover(NULL, "/tmp/x"), -EINVAL);
    assert_int_equal(sk_server_on_open(NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_on_data(NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_on_close(NULL, NULL), -EINVAL);
    sk_server_set_data(NULL, buf);
    assert_null(sk_server_data(NULL));
    assert_int_equal(sk_server_bind(NULL), -EINVAL);
    assert_int_equal(sk_server_address(NULL, buf, sizeof(buf)), -EINVAL);
    assert_string_equal(sk_server_backend(NULL), "?");
    assert_int_equal(sk_server_run(NULL), -EINVAL);
    sk_server_stop(NULL);
    assert_int_equal(sk_server_broadcast(NULL, NULL, "x", 1), -EINVAL);
    assert_int_equal(sk_server_broadcastf(NULL, NULL, "%d", 1), -EINVAL);
    assert_int_equal(sk_server_conn_count(NULL), -EINVAL);
    assert_int_equal(sk_server_names(NULL, NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_stats(NULL, &st), -EINVAL);
    assert_int_equal(sk_server_listener(NULL, 0), -ENOENT);
    assert_int_equal(sk_server_stop_fd(NULL), -EINVAL);
    assert_false(sk_server_stopping(NULL));
    sk_conn *c = NULL;
    assert_int_equal(sk_server_accept(NULL, 0, &c), -EINVAL);

    sk_server *s = sk_server_new("not an address");
    assert_non_null(s); /* checked when it binds */
    assert_int_equal(sk_server_bind(s), SK_EPORT);
    assert_int_equal(sk_server_add_listen(s, NULL), -EINVAL);
    assert_int_equal(sk_server_set_reuse(s, (sk_reuse)-1), -EINVAL);
    assert_int_equal(sk_server_set_backend(s, ""), SK_EBACKEND);
    assert_int_equal(sk_server_set_workers(s, INT_MAX), -EINVAL);
    assert_int_equal(sk_server_set_max_conns(s, INT_MIN), -EINVAL);
    assert_int_equal(sk_server_set_idle_timeout(s, INT_MIN), 0); /* no limit (1.1) */
    assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, SIZE_MAX), -EINVAL);
    assert_int_equal(sk_server_set_max_output(s, 0), -EINVAL);
    assert_int_equal(sk_server_set_watermarks(s, 0, 0), -EINVAL);
    assert_int_equal(sk_server_set_watermarks(s, 10, 10), -EINVAL); /* low under high */
    assert_int_equal(sk_server_set_watermarks(s, SIZE_MAX, SIZE_MAX - 1), 0);
    assert_int_equal(sk_server_set_drain_timeout(s, INT_MIN), -EINVAL);
    assert_int_equal(sk_server_set_option(s, NULL, "1"), -EINVAL);
    assert_int_equal(sk_server_set_option(s, "workers", NULL), -EINVAL);
    assert_int_equal(sk_server_set_option(s, "workers", "1e9"), -EINVAL);
    assert_int_equal(sk_server_set_option(s, "max-output", "-1"), -EINVAL);
    assert_int_equal(sk_server_stop_on_signal(s, -1), -EINVAL);
    assert_int_equal(sk_server_stop_on_signal(s, 99999), -EINVAL);
    assert_int_equal(sk_server_address(s, buf, sizeof(buf)), -ENOTCONN);
    assert_int_equal(sk_server_address(s, NULL, 0), -EINVAL);
    assert_int_equal(sk_server_broadcast(s, NULL, NULL, 5), -EINVAL);
    assert_int_equal(sk_server_broadcast(s, NULL, "x", 1), -ENOTCONN); /* not running */
    assert_int_equal(sk_server_broadcastf(s, NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_names(s, NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_stats(s, NULL), -EINVAL);
    assert_int_equal(sk_server_stats_sized(s, NULL, sizeof(sk_stats)), -EINVAL);
    assert_int_equal(sk_server_stats_sized(NULL, &st, sizeof(st)), -EINVAL);
    assert_int_equal(sk_server_stats_sized(s, &st, sizeof(st) - 1), -EINVAL);
    assert_int_equal(sk_server_stats_sized(s, &st, 0), -EINVAL);
    assert_int_equal(sk_server_listener(s, -1), -ENOENT);
    assert_int_equal(sk_server_listener(s, INT_MAX), -ENOENT);
    assert_int_equal(sk_server_accept(s, -1, NULL), -EINVAL);
    assert_int_equal(sk_server_accept(s, -1, &c), -EBADF);
    assert_null(c);
    sk_server_free(s);

    s = sk_server_new("127.0.0.1:0");
    assert_int_equal(sk_server_bind(s), 0);
    assert_int_equal(sk_server_address(s, buf, 3), -ENOSPC);
    sk_server_free(s);

    /* connection functions with NULL */
    assert_int_equal(sk_conn_send(NULL, "x", 1), -EINVAL);
    assert_int_equal(sk_conn_sendf(NULL, "%s", "x"), -EINVAL);
    sk_conn_close(NULL);
    assert_int_equal(sk_conn_pending(NULL), 0);
    assert_int_equal(sk_conn_pause(NULL), -EINVAL);
    assert_int_equal(sk_conn_resume(NULL), -EINVAL);
    assert_false(sk_conn_paused(NULL));
    assert_int_equal(sk_conn_set_watermarks(NULL, 2, 1), -EINVAL);
    assert_false(sk_conn_over_high(NULL));
    assert_int_equal(sk_conn_shutdown(NULL), -EINVAL);
    assert_string_equal(sk_conn_peer(NULL), "?");
    assert_string_equal(sk_conn_local(NULL), "?");
    assert_int_equal(sk_conn_set_name(NULL, "n"), -EINVAL);
    assert_string_equal(sk_conn_name(NULL), "?");
    sk_conn_set_data(NULL, buf);
    assert_null(sk_conn_data(NULL));
    assert_null(sk_conn_server(NULL));
    assert_int_equal(sk_conn_fd(NULL), -EINVAL);
    assert_int_equal(sk_conn_drive(NULL, true, true), 0);
    assert_int_equal(sk_conn_deadline(NULL), -1);
    /* timers */
    assert_null(sk_conn_timer(NULL, no_timer, NULL));
    assert_null(sk_server_timer(NULL, no_timer, NULL));
    assert_int_equal(sk_timer_start(NULL, 1, 0), -EINVAL);
    assert_int_equal(sk_timer_stop(NULL), -EINVAL);
    assert_false(sk_timer_armed(NULL));
    sk_timer_free(NULL);
    s = sk_server_new("127.0.0.1:0");
    assert_null(sk_server_timer(s, NULL, NULL));
    sk_timer *t = sk_server_timer(s, no_timer, NULL);
    assert_non_null(t);
    assert_int_equal(sk_timer_start(t, -1, 0), -EINVAL);
    assert_int_equal(sk_timer_start(t, 0, -1), -EINVAL);
    assert_int_equal(sk_timer_start(t, INT_MAX, INT_MAX), 0);
    assert_true(sk_timer_armed(t));
    sk_server_timer(s, no_timer, NULL); /* left to sk_server_free */
    sk_server_free(s);                  /* frees both: no leak */
    /* outbound connections and posts */
    sk_conn *made = (sk_conn *)buf; /* set to NULL on every return */
    assert_int_equal(sk_server_connect(NULL, "127.0.0.1:1", 0, NULL, &made), -EINVAL);
    assert_null(made);
    s = sk_server_new(NULL);
    assert_int_equal(sk_server_connect(s, NULL, 0, NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_connect(s, "*:80", 0, NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_connect(s, "127.0.0.1", 0, NULL, NULL), SK_EPORT);
    assert_int_equal(sk_server_connect(s, "[127.0.0.1]:80", 0, NULL, NULL), SK_EADDR);
    assert_int_equal(sk_server_connect(s, "127.0.0.1:65536", 0, NULL, NULL), SK_EPORT);
    /* asked for outside a run, never run: failed by sk_server_free, no leak */
    assert_int_equal(sk_server_connect(s, "127.0.0.1:9", 0, NULL, NULL), 0);
    assert_int_equal(sk_server_connect(s, "name.sk-test:9", 0, NULL, NULL), 0);
    assert_int_equal(sk_conn_error(NULL), 0);
    assert_false(sk_conn_outbound(NULL));
    assert_int_equal(sk_conn_id(NULL), 0);
    int runs = 0;
    assert_int_equal(sk_server_post(NULL, 0, count_post, &runs), -EINVAL);
    assert_int_equal(sk_server_post(s, 0, NULL, &runs), -EINVAL);
    assert_int_equal(sk_server_post(s, 1, count_post, &runs), -ENOENT);
    assert_int_equal(sk_server_post(s, UINT64_MAX, count_post, &runs), -ENOENT);
    assert_int_equal(sk_server_post(s, 0, count_post, &runs), 0);
    assert_int_equal(runs, 0);
    sk_server_free(s); /* runs what no run took */
    assert_int_equal(runs, 1);
    assert_string_equal(sk_close_reason_name(SK_CLOSE_CONNECT), "connect");
    assert_string_equal(sk_close_reason_name(SK_CLOSE_TLS), "tls");

    /* TLS: each answers bad input with an error, built with OpenSSL or not */
    bool tls = sk_tls_available();
    int no_tls = tls ? 0 : SK_ENOTLS;
    sk_tls *tc = (sk_tls *)buf; /* set to NULL on every failure */
    char why[128];
    sk_tls_config cfg = {.size = sizeof(cfg)};
    assert_int_equal(sk_tls_server_new(NULL, &tc, why, sizeof(why)), tls ? -EINVAL : SK_ENOTLS);
    assert_null(tc);
    assert_int_equal(sk_tls_server_new(&cfg, NULL, NULL, 0), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_server_new(&cfg, &tc, why, sizeof(why)), tls ? -EINVAL : SK_ENOTLS);
    assert_true(strlen(why) > 0); /* says what is missing */
    sk_tls_config small = {.size = 1};
    assert_int_equal(sk_tls_client_new(&small, &tc, NULL, 0), tls ? -EINVAL : SK_ENOTLS);
    cfg.cert_file = "/nonexistent/cert.pem";
    cfg.key_file = "/nonexistent/key.pem";
    assert_int_equal(sk_tls_server_new(&cfg, &tc, why, sizeof(why)),
                     tls ? SK_ETLS_FILE : SK_ENOTLS);
    if (tls)
        assert_non_null(strstr(why, "/nonexistent/cert.pem"));
    cfg.key_file = NULL; /* a certificate without its key */
    assert_int_equal(sk_tls_client_new(&cfg, &tc, why, sizeof(why)), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_reload(NULL, &cfg, why, sizeof(why)), tls ? -EINVAL : SK_ENOTLS);
    sk_tls_free(NULL);
    sk_tls *client = NULL;
    sk_tls_config plain = {.size = sizeof(plain), .alpn = ","};
    assert_int_equal(sk_tls_client_new(&plain, &client, NULL, 0), tls ? -EINVAL : SK_ENOTLS);
    plain.alpn = NULL;
    assert_int_equal(sk_tls_client_new(&plain, &client, NULL, 0), no_tls);
    if (tls)
        assert_int_equal(sk_tls_reload(client, &cfg, NULL, 0), -EINVAL);
    s = sk_server_new("127.0.0.1:0");
    assert_int_equal(sk_server_set_tls(NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_set_tls(s, client), tls ? -EINVAL : SK_ENOTLS); /* a client's */
    assert_int_equal(sk_server_set_tls(s, NULL), no_tls);
    assert_int_equal(sk_server_connect_tls(s, "127.0.0.1:9", 0, NULL, NULL, NULL, &made),
                     tls ? -EINVAL : SK_ENOTLS);
    assert_null(made);
    if (tls)
        assert_int_equal(sk_server_connect_tls(s, "unix:/x", 0, client, NULL, NULL, NULL), -EINVAL);
    sk_server_free(s);
    assert_false(sk_conn_is_tls(NULL));
    assert_null(sk_conn_tls_version(NULL));
    assert_null(sk_conn_tls_cipher(NULL));
    assert_null(sk_conn_tls_alpn(NULL));
    assert_null(sk_conn_tls_peer(NULL));
    assert_false(sk_conn_tls_resumed(NULL));
    sk_tls_stream *ts = (sk_tls_stream *)buf;
    assert_int_equal(sk_tls_connect(NULL, 0, client, NULL, &ts), tls ? -EINVAL : SK_ENOTLS);
    assert_null(ts);
    assert_int_equal(sk_tls_connect("unix:/x", 0, client, NULL, &ts), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_connect("127.0.0.1:9", 0, NULL, NULL, &ts), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_write_all(NULL, "x", 1, 0), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_read_some(NULL, buf, 1, 0), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_stream_fd(NULL), tls ? -EINVAL : SK_ENOTLS);
    assert_int_equal(sk_tls_shutdown(NULL, 0), tls ? -EINVAL : SK_ENOTLS);
    assert_null(sk_lines_new_tls(NULL, 100));
    sk_tls_close(NULL);
    sk_tls_free(client);
    assert_string_equal(sk_close_reason_name((sk_close_reason)-1), "?");
    assert_string_equal(sk_close_reason_name((sk_close_reason)0), "?");

    /* backends */
    assert_int_equal(sk_backend_register(NULL), -EINVAL);
    sk_backend nameless = {.run = run_nothing};
    assert_int_equal(sk_backend_register(&nameless), -EINVAL);
    sk_backend spaced = {.name = "bad name", .run = run_nothing};
    assert_int_equal(sk_backend_register(&spaced), -EINVAL);
    sk_backend longer = {.name = "a-name-of-thirty-two-characters!", .run = run_nothing};
    assert_int_equal(sk_backend_register(&longer), -EINVAL);
    sk_backend runless = {.name = "runless"};
    assert_int_equal(sk_backend_register(&runless), -EINVAL);
    sk_backend taken = {.name = "fork", .run = run_nothing};
    assert_int_equal(sk_backend_register(&taken), -EEXIST);
    assert_int_equal(sk_backend_register_sized(NULL, sizeof(sk_backend)), -EINVAL);
    assert_int_equal(sk_backend_register_sized(&taken, 0), -EINVAL);
    assert_int_equal(sk_backend_register_sized(&taken, sizeof(taken) - 1), -EINVAL);
    assert_int_equal(sk_backend_register_sized(&runless, sizeof(runless)), -EINVAL);
    assert_int_equal(sk_backend_register_sized(&taken, sizeof(taken)), -EEXIST);
    static sk_backend many[40];
    static char names[40][16];
    char all[512];
    assert_true(sk_backend_list(all, sizeof(all)) > 0);
    int builtin = 1; /* the backends there are: the built-in ones, io_uring if built */
    for (const char *p = all; (p = strstr(p, ", ")); p += 2)
        builtin++;
    int rc = 0, added = 0;
    for (int i = 0; i < 40 && rc == 0; i++) {
        snprintf(names[i], sizeof(names[i]), "extra-%d", i);
        many[i] = (sk_backend){.name = names[i], .run = run_nothing};
        rc = sk_backend_register(&many[i]);
        added += rc == 0;
    }
    assert_int_equal(rc, -ENOSPC); /* 32 at most, the built-in ones included */
    assert_int_equal(added, 32 - builtin);
    assert_null(sk_backend_find(NULL));
    assert_null(sk_backend_find(""));
    assert_int_equal(sk_backend_list(NULL, 10), -EINVAL);
    assert_int_equal(sk_backend_list(buf, 0), -EINVAL);
    assert_int_equal(sk_backend_list(buf, 5), -ENOSPC);
    assert_int_equal(tu_fd_count(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(socket_layer),
        cmocka_unit_test(server_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
