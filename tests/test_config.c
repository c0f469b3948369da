/* SPDX-License-Identifier: MIT */
/* Server configuration: setters, options by name, binding, stopping on a signal. */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void setters_check_their_values(void **state)
{
    (void)state;
    sk_server *s = sk_server_new(NULL);
    assert_non_null(s);
    assert_int_equal(sk_server_set_reuse(s, (sk_reuse)4), -EINVAL);
    assert_int_equal(sk_server_set_workers(s, -1), -EINVAL);
    assert_int_equal(sk_server_set_workers(s, 257), -EINVAL);
    assert_int_equal(sk_server_set_max_conns(s, 0), -EINVAL);
    assert_int_equal(sk_server_set_idle_timeout(s, -5), 0); /* since 1.1: no limit, as 0 */
    assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, 0), -EINVAL);
    assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, (16u << 20) + 1), -EINVAL);
    assert_int_equal(sk_server_set_framing(s, (sk_framing)9, 10), -EINVAL);
    assert_int_equal(sk_server_set_max_output(s, 0), -EINVAL);
    assert_int_equal(sk_server_set_drain_timeout(s, -1), -EINVAL);
    assert_int_equal(sk_server_set_backend(s, NULL), -EINVAL);
    assert_int_equal(sk_server_set_backend(s, "nope"), SK_EBACKEND);
    assert_int_equal(sk_server_add_listen(s, NULL), -EINVAL);
    for (int i = 0; i < 8; i++)
        assert_int_equal(sk_server_add_listen(s, "127.0.0.1:0"), 0);
    assert_int_equal(sk_server_add_listen(s, "127.0.0.1:0"), -ENOSPC);
    sk_server_free(s);

    /* NULL everywhere: an error, never a crash */
    assert_int_equal(sk_server_set_reuse(NULL, SK_REUSE_ADDR), -EINVAL);
    assert_int_equal(sk_server_on_data(NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_bind(NULL), -EINVAL);
    assert_int_equal(sk_server_run(NULL), -EINVAL);
    assert_int_equal(sk_server_conn_count(NULL), -EINVAL);
    assert_int_equal(sk_server_broadcast(NULL, NULL, "x", 1), -EINVAL);
    assert_int_equal(sk_server_names(NULL, NULL, NULL), -EINVAL);
    assert_int_equal(sk_server_stats(NULL, NULL), -EINVAL);
    assert_int_equal(sk_conn_send(NULL, "x", 1), -EINVAL);
    assert_int_equal(sk_conn_sendf(NULL, "x"), -EINVAL);
    assert_int_equal(sk_conn_fd(NULL), -EINVAL);
    assert_int_equal(sk_conn_set_name(NULL, "x"), -EINVAL);
    assert_string_equal(sk_conn_name(NULL), "?");
    assert_string_equal(sk_conn_peer(NULL), "?");
    assert_string_equal(sk_server_backend(NULL), "?");
    assert_string_equal(sk_close_reason_name((sk_close_reason)99), "?");
    assert_string_equal(sk_close_reason_name(SK_CLOSE_SLOW), "slow");
    assert_null(sk_conn_data(NULL));
    assert_int_equal(sk_conn_pending(NULL), 0);
    sk_conn_close(NULL);
    sk_server_stop(NULL);
    sk_server_free(NULL);
}

static void options_by_name(void **state)
{
    (void)state;
    sk_server *s = sk_server_new(NULL);
    struct {
        const char *name, *value;
        int rc;
    } cases[] = {
        {"listen", "127.0.0.1:0", 0},  {"reuse", "addr+port", 0},  {"reuse", "none", 0},
        {"reuse", "both", -EINVAL},    {"backend", "pthread", 0},  {"backend", "x", SK_EBACKEND},
        {"workers", "4", 0},           {"workers", "257", -EINVAL}, {"workers", "-1", -EINVAL},
        {"workers", "2x", -EINVAL},    {"workers", "", -EINVAL},   {"max-conns", "10", 0},
        {"max-conns", "0", -EINVAL},   {"idle-timeout", "0", 0},   {"idle-timeout", "1500", 0},
        {"max-line", "100", 0},        {"framing", "raw", 0},      {"framing", "lines", 0},
        {"framing", "json", -EINVAL},  {"max-output", "65536", 0}, {"drain-timeout", "10", 0},
        {"nodelay", "off", 0},         {"nodelay", "yes", -EINVAL}, {"colour", "red", -ENOENT},
        {"max-conns", "99999999999999999999", -EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = sk_server_set_option(s, cases[i].name, cases[i].value);
        if (rc != cases[i].rc)
            fail_msg("%s=%s: got %d, want %d", cases[i].name, cases[i].value, rc, cases[i].rc);
    }
    assert_string_equal(sk_server_backend(s), "pthread");
    assert_int_equal(sk_server_set_option(s, NULL, "x"), -EINVAL);
    assert_int_equal(sk_server_set_option(s, "workers", NULL), -EINVAL);
    sk_server_free(s);
}

static void bind_reports_errors_and_the_real_address(void **state)
{
    (void)state;
    char addr[SK_ADDR_STRLEN];
    sk_server *s = sk_server_new(NULL);
    assert_int_equal(sk_server_address(s, addr, sizeof(addr)), -ENOTCONN);
    assert_int_equal(sk_server_bind(s), -EDESTADDRREQ);
    sk_server_free(s);

    s = sk_server_new("127.0.0.1:0");
    assert_int_equal(sk_server_bind(s), 0);
    assert_int_equal(sk_server_bind(s), 0); /* idempotent */
    assert_true(sk_server_address(s, addr, sizeof(addr)) > 0);
    assert_int_equal(strncmp(addr, "127.0.0.1:", 10), 0);
    assert_true(sk_local_port(sk_server_listener(s, 0)) > 0);
    assert_int_equal(sk_server_listener(s, 1), -ENOENT);
    assert_int_equal(sk_is_nonblocking(sk_server_listener(s, 0)), 1);
    assert_int_equal(sk_server_set_reuse(s, SK_REUSE_NONE), -EBUSY); /* shapes listeners */
    assert_int_equal(sk_server_set_idle_timeout(s, 10), 0);          /* does not */

    sk_server *busy = sk_server_new(addr);
    assert_int_equal(sk_server_bind(busy), -EADDRINUSE);
    assert_int_equal(sk_server_run(busy), -EADDRINUSE);
    sk_server_free(busy);
    sk_server_free(s);

    sk_server *bad = sk_server_new("127.0.0.1:70000");
    assert_int_equal(sk_server_bind(bad), SK_EPORT);
    sk_server_free(bad);
}

static void unix_socket_file_goes_with_the_server(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), addr[4200];
    snprintf(addr, sizeof(addr), "unix:%s/srv.sock", dir);
    sk_server *s = sk_server_new(addr);
    assert_int_equal(sk_server_bind(s), 0);
    assert_int_equal(access(addr + 5, F_OK), 0);
    sk_server_free(s);
    assert_int_equal(access(addr + 5, F_OK), -1);
    tu_rmtree(dir);
}

static void stop_on_signal_stops_gracefully(void **state)
{
    (void)state;
    sk_server *s = sk_server_new("127.0.0.1:0");
    assert_int_equal(sk_server_stop_on_signal(s, SIGUSR2), 0);
    assert_int_equal(sk_server_stop_on_signal(s, SIGKILL), -EINVAL);
    assert_int_equal(sk_server_stop_on_signal(s, 0), -EINVAL);
    struct tu_serving sv;
    tu_serve(&sv, s);
    usleep(50000); /* let it start running */
    assert_int_equal(sk_server_set_idle_timeout(s, 1), -EBUSY); /* running */
    assert_int_equal(sk_server_run(s), -EBUSY);
    kill(getpid(), SIGUSR2);
    assert_int_equal(tu_serve_join(&sv), 0);
    sk_server_free(s);
    kill(getpid(), SIGUSR2); /* the handler stays, and now stops nothing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(setters_check_their_values),
        cmocka_unit_test(options_by_name),
        cmocka_unit_test(bind_reports_errors_and_the_real_address),
        cmocka_unit_test(unix_socket_file_goes_with_the_server),
        cmocka_unit_test(stop_on_signal_stops_gracefully),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
