/* SPDX-License-Identifier: MIT */
/*
 * Public structs that can grow in 1.x: a backend's ops table (filled by the
 * program) and sk_stats (filled by the library) are passed with their size, so
 * a program built against older or newer headers works with this library.
 * tests/compat/ runs a program built against the 1.0 headers themselves.
 */
#include "poll_backend.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* A table as a later release's headers might declare it: one more member. */
struct later_backend {
    sk_backend v1_0;
    int (*later_op)(sk_server *server);
};

static int later_op(sk_server *server)
{
    (void)server;
    return 0;
}

static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

/* Serve one echo exchange on the named backend; return the server's stats. */
static void serve_echo(const char *backend, sk_server **out)
{
    sk_server *s = sk_server_new("127.0.0.1:0");
    assert_int_equal(sk_server_set_backend(s, backend), 0);
    sk_server_on_data(s, echo);
    struct tu_serving sv;
    tu_serve(&sv, s);
    char buf[6] = {0};
    int fd = sk_connect(sv.addr, 5000);
    assert_true(fd >= 0);
    assert_int_equal(sk_write_all(fd, "hello", 5, 5000), 5);
    assert_int_equal(sk_read_full(fd, buf, 5, 5000), 5);
    assert_string_equal(buf, "hello");
    close(fd);
    sk_server_stop(s);
    assert_int_equal(tu_serve_join(&sv), 0);
    *out = s;
}

static const sk_backend *poll_test(void)
{
    assert_int_equal(poll_backend_register(), 0);
    const sk_backend *b = sk_backend_find("poll-test");
    assert_non_null(b);
    return b;
}

/* A later table named name that runs as poll-test does, later_op set or not. */
static struct later_backend *later_table(const char *name, bool set)
{
    static struct later_backend tables[3];
    static int used;
    assert_true(used < 3);
    struct later_backend *t = &tables[used++];
    *t = (struct later_backend){.v1_0 = {.name = name, .run = poll_test()->run}};
    t->later_op = set ? later_op : NULL;
    return t;
}

static void a_larger_table_with_unused_members_registers(void **state)
{
    (void)state;
    struct later_backend *later = later_table("later-zero", false);
    assert_int_equal(sk_backend_register_sized(&later->v1_0, sizeof(*later)), 0);
    assert_ptr_equal(sk_backend_find("later-zero"), &later->v1_0);
    sk_server *s;
    serve_echo("later-zero", &s);
    sk_server_free(s);
}

static void a_member_this_library_lacks_is_refused(void **state)
{
    (void)state;
    struct later_backend *later = later_table("later-set", true);
    assert_int_equal(sk_backend_register_sized(&later->v1_0, sizeof(*later)), -E2BIG);
    assert_null(sk_backend_find("later-set"));
}

static void the_1_0_call_reads_the_1_0_members_only(void **state)
{
    (void)state;
    /* The 1.0 function takes the same table: what lies beyond the 1.0 members
     * is never read, so a set later member does not matter to it. */
    struct later_backend *later = later_table("later-v1", true);
    assert_int_equal(sk_backend_register(&later->v1_0), 0);
    sk_server *s;
    serve_echo("later-v1", &s);
    sk_server_free(s);
}

static void stats_fill_what_the_program_has(void **state)
{
    (void)state;
    sk_server *s;
    serve_echo("epoll-et", &s);

    sk_stats exact;
    assert_int_equal(sk_server_stats_sized(s, &exact, sizeof(exact)), 0);
    assert_int_equal(exact.accepted, 1);
    assert_int_equal(exact.bytes_in, 5);
    assert_int_equal(exact.bytes_out, 5);

    /* A struct from later headers: the counters this library lacks read 0. */
    struct {
        sk_stats v1_0;
        unsigned long long later[3];
    } larger;
    memset(&larger, 0xa5, sizeof(larger));
    assert_int_equal(sk_server_stats_sized(s, &larger.v1_0, sizeof(larger)), 0);
    assert_memory_equal(&larger.v1_0, &exact, sizeof(exact));
    for (int i = 0; i < 3; i++)
        assert_int_equal(larger.later[i], 0);

    /* The 1.0 function writes the 1.0 counters and nothing after them. */
    memset(&larger, 0xa5, sizeof(larger));
    assert_int_equal(sk_server_stats(s, &larger.v1_0), 0);
    assert_memory_equal(&larger.v1_0, &exact, sizeof(exact));
    for (int i = 0; i < 3; i++)
        assert_int_equal(larger.later[i], 0xa5a5a5a5a5a5a5a5ULL);
    sk_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_larger_table_with_unused_members_registers),
        cmocka_unit_test(a_member_this_library_lacks_is_refused),
        cmocka_unit_test(the_1_0_call_reads_the_1_0_members_only),
        cmocka_unit_test(stats_fill_what_the_program_has),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
