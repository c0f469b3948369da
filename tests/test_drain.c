/* SPDX-License-Identifier: MIT */
/* Graceful drain and listener handover, on the backend named on the command
 * line: a drain stops accepting and lets live connections end by
 * themselves; its grace time, a stop or a second signal ends the rest; a
 * handover moves every listening socket to a successor, which serves new
 * clients while the old server drains and returns by itself; a successor of
 * another uid is refused; stale and foreign files at the handover path. */
#include "harness.h"

#include <cmocka.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

static void say(int fd, const char *text)
{
    assert_int_equal(sk_write_all(fd, text, strlen(text), 2000), (ssize_t)strlen(text));
}

/* A round trip: the connection is served. */
static void served(int fd, const char *text)
{
    say(fd, text);
    expect_text(fd, text);
}

static void drain(struct running *r)
{
    char a[32];
    assert_string_equal(ask(r, "drain\n", a, sizeof(a)), "0\n");
}

/* A handover socket's path, fresh for this test. */
static char dir[64];
static char path[128];

static void fresh_path(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sk-drain-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/handover", dir);
}

static void remove_path(void)
{
    unlink(path);
    assert_int_equal(rmdir(dir), 0); /* nothing else was left there */
}

/* ---- drain ------------------------------------------------------------- */

static void a_drain_lets_live_connections_finish(void **state)
{
    (void)state;
    struct running r;
    start(&r, new_server(echo));
    int a = dial(&r), b = dial(&r);
    served(a, "a\n");
    served(b, "b\n");
    drain(&r);
    /* Not accepted: the kernel queues it, nobody takes it. */
    int late = dial(&r);
    say(late, "late\n");
    expect_silence(late, 300);
    served(a, "still a\n"); /* the live ones go on */
    served(b, "still b\n");
    assert_int_equal(server_count(&r), 2);
    close(a);
    served(b, "b alone\n");
    close(b); /* the last one: the run ends by itself */
    await_done(&r);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_PEER]), 2);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_STOP]), 0);
    assert_int_equal(shared_get(&sh->opens), 2);
    expect_eof(late, 2000); /* the listener closed with the server */
    close(late);
    assert_int_equal(shared_get(&sh->errors), 0);
}

static void the_grace_timeout_stops_the_rest(void **state)
{
    (void)state;
    struct running r;
    sk_server *s = new_server(echo);
    assert_int_equal(sk_server_set_grace_timeout(s, 400), 0);
    start(&r, s);
    int a = dial(&r);
    served(a, "a\n");
    int64_t t0 = tu_now_ms();
    drain(&r);
    served(a, "during the grace\n");
    expect_text_within(a, "bye\n", 5000 * test_scale()); /* SK_CLOSE_STOP */
    assert_true(tu_now_ms() - t0 >= 350);
    expect_eof(a, 2000);
    close(a);
    await_done(&r);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_STOP]), 1);
    assert_int_equal(shared_get(&sh->errors), 0);
}

static void a_stop_during_a_drain_stops_at_once(void **state)
{
    (void)state;
    struct running r;
    sk_server *s = new_server(echo);
    assert_int_equal(sk_server_set_grace_timeout(s, 0), 0); /* no limit */
    start(&r, s);
    int a = dial(&r);
    served(a, "a\n");
    assert_string_equal(ask(&r, "draining\n", (char[32]){0}, 32), "0\n");
    drain(&r);
    drain(&r); /* a second drain changes nothing */
    assert_string_equal(ask(&r, "draining\n", (char[32]){0}, 32), "1\n");
    served(a, "still a\n");
    assert_true(sk_write_all(r.ctl, "stop\n", 5, 2000) > 0);
    expect_text(a, "bye\n");
    expect_eof(a, 2000);
    close(a);
    await_done(&r);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_STOP]), 1);
}

static void drain_on_usr2(sk_server *s)
{
    if (sk_server_drain_on_signal(s, SIGUSR2) != 0)
        shared_add(&sh->errors);
}

static void the_drain_signal_twice_stops(void **state)
{
    (void)state;
    struct running r;
    sk_server *s = new_server(echo);
    assert_int_equal(sk_server_set_grace_timeout(s, 0), 0);
    harness_before_run = drain_on_usr2;
    start(&r, s);
    int a = dial(&r);
    served(a, "a\n");
    assert_int_equal(kill(r.pid, SIGUSR2), 0); /* a drain */
    char answer[32];
    int64_t until = tu_now_ms() + 5000;
    while (strcmp(ask(&r, "draining\n", answer, sizeof(answer)), "1\n") != 0 &&
           tu_now_ms() < until)
        usleep(1000);
    assert_string_equal(answer, "1\n");
    int late = dial(&r);
    say(late, "late\n");
    expect_silence(late, 300);
    served(a, "still a\n");
    assert_int_equal(kill(r.pid, SIGUSR2), 0); /* again: a stop */
    expect_text(a, "bye\n");
    expect_eof(a, 2000);
    close(a);
    await_done(&r);
    close(late);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_STOP]), 1);
    assert_int_equal(shared_get(&sh->opens), 1);
    assert_int_equal(shared_get(&sh->errors), 0);
}

/* ---- handover ---------------------------------------------------------- */

/* A unix listener's socket file beside the handover socket, for the servers
 * of a handover test that listen on it too. */
static char unix_path[160];

static sk_server *handover_server(void)
{
    sk_server *s = new_server(echo);
    assert_int_equal(sk_server_set_handover(s, path), 0);
    assert_int_equal(sk_server_set_grace_timeout(s, 0), 0);
    return s;
}

static void a_handover_moves_the_listeners(void **state)
{
    (void)state;
    struct running old, next;
    struct stat st;
    char unix_address[200];
    fresh_path();
    snprintf(unix_path, sizeof(unix_path), "%s/echo.sock", dir);
    snprintf(unix_address, sizeof(unix_address), "unix:%s", unix_path);
    sk_server *first = handover_server();
    assert_int_equal(sk_server_add_listen(first, unix_address), 0); /* one more address */
    start_unbound(&old, first, NULL);
    assert_int_equal(old.bind_rc, 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    int a = dial(&old);
    served(a, "to the old one\n");

    /* The successor asks for 127.0.0.1:0 too: it gets the old port instead. */
    start_unbound(&next, handover_server(), (int[]){a, -1});
    assert_int_equal(next.bind_rc, 0);
    assert_string_equal(next.addr, old.addr);
    int b = dial(&next);
    served(b, "to the new one\n");
    int u = sk_connect(unix_address, 2000); /* the unix listener came along */
    assert_true(u >= 0);
    served(u, "through the socket file\n");
    close(u);
    served(a, "the old one drains\n");
    wait_count(&next, 1, 5000 * test_scale()); /* b: u has closed */
    assert_int_equal(stat(path, &st), 0); /* the successor's now */
    assert_int_equal(st.st_mode & 0777, 0600);

    close(a); /* the old one's last connection: it returns by itself */
    await_done(&old);
    assert_int_equal(stat(unix_path, &st), 0); /* left for the successor */
    u = sk_connect(unix_address, 2000);
    assert_true(u >= 0);
    served(u, "still through the socket file\n");
    close(u);
    int c = dial(&next);
    served(c, "and the next\n");
    close(b);
    close(c);
    wait_count(&next, 0, 5000 * test_scale()); /* closed by their peers, not by the stop */
    finish(&next);
    assert_int_equal(stat(path, &st), -1); /* removed with the last server */
    assert_int_equal(stat(unix_path, &st), -1); /* and the listener's, now its own */
    remove_path();
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_STOP]), 0);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_PEER]), 5);
}

/* accept4() as the library calls it, with a stall a test arms: the calls on
 * a TCP listener (not the handover socket) that start within STALL_MS of the
 * first one (in any process of the test: a fork backend's workers may all
 * try the same connection) wait until then, and the time one of them
 * returned a connection is noted. In a page every process shares. */
#define STALL_MS 300
struct stall {
    int armed;
    int64_t until;       /* tu_now_ms(): the first stalled call's end */
    int64_t accepted_at; /* when a stalled call returned a connection */
    int64_t bound_at;    /* the successor's, after its bind returned */
};
static struct stall *stall;
static int (*real_accept4)(int, __SOCKADDR_ARG, socklen_t *restrict, int);

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags) /* glibc's own type */
{
    bool stalled = false;
    struct sockaddr_storage own;
    socklen_t own_len = sizeof(own);
    if (stall && __atomic_load_n(&stall->armed, __ATOMIC_ACQUIRE) &&
        getsockname(fd, (struct sockaddr *)&own, &own_len) == 0 && own.ss_family != AF_UNIX) {
        int64_t until = 0, mine = tu_now_ms() + STALL_MS;
        if (__atomic_compare_exchange_n(&stall->until, &until, mine, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            until = mine;
        int64_t left = until - tu_now_ms();
        if ((stalled = left > 0))
            poll(NULL, 0, (int)left);
    }
    int rc = real_accept4(fd, addr, len, flags);
    if (stalled && rc >= 0)
        __atomic_store_n(&stall->accepted_at, tu_now_ms(), __ATOMIC_RELEASE);
    return rc;
}

static void note_bound(sk_server *s)
{
    (void)s;
    __atomic_store_n(&stall->bound_at, tu_now_ms(), __ATOMIC_RELEASE);
}

/* A time another process notes in the stall page: once set, or 0 if it is
 * not within 5 s. */
static int64_t noted(int64_t *at)
{
    int64_t until = tu_now_ms() + 5000 * test_scale();
    while (!__atomic_load_n(at, __ATOMIC_ACQUIRE) && tu_now_ms() < until)
        usleep(2000);
    return __atomic_load_n(at, __ATOMIC_ACQUIRE);
}

/* A failed test leaves no stall armed for the next. */
static int stall_teardown(void **state)
{
    __atomic_store_n(&stall->armed, 0, __ATOMIC_RELEASE);
    return harness_teardown(state);
}

/* An accept under way in the old server when a successor takes the
 * listeners: it ends before the successor's bind returns, and from then on
 * every connection is the successor's. */
static void a_handover_waits_for_an_accept_under_way(void **state)
{
    (void)state;
    struct running old, next;
    fresh_path();
    *stall = (struct stall){0};
    start_unbound(&old, handover_server(), NULL);
    assert_int_equal(old.bind_rc, 0);
    __atomic_store_n(&stall->armed, 1, __ATOMIC_RELEASE);
    int a = dial(&old); /* queued; the old server's accept of it stalls */
    assert_true(noted(&stall->until) > 0);

    harness_before_run = note_bound; /* in the successor's process */
    start_unbound(&next, handover_server(), (int[]){a, -1});
    harness_before_run = NULL;
    assert_int_equal(next.bind_rc, 0);
    int64_t bound = noted(&stall->bound_at); /* its hook runs just after it said "bound" */
    int64_t accepted = __atomic_load_n(&stall->accepted_at, __ATOMIC_ACQUIRE);
    assert_true(accepted > 0); /* the accept under way got a, not the successor */
    assert_true(accepted <= bound);
    __atomic_store_n(&stall->armed, 0, __ATOMIC_RELEASE);
    served(a, "accepted before the handover ended\n");
    assert_int_equal(server_count(&old), 1);
    int b = dial(&next);
    served(b, "after it\n");
    assert_int_equal(server_count(&next), 1);

    close(a);
    await_done(&old);
    close(b);
    wait_count(&next, 0, 5000 * test_scale());
    finish(&next);
    remove_path();
}

/* Take the listeners in a process of uid 65534 (nobody): 0 if the bind
 * failed with want, else 1. */
static int bind_as_nobody(int want)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
            _exit(3);
        sk_server *s = sk_server_new("127.0.0.1:0");
        if (!s || sk_server_set_handover(s, path) != 0) {
            sk_server_free(s);
            _exit(4);
        }
        int rc = sk_server_bind(s);
        sk_server_free(s);
        if (rc != want)
            fprintf(stderr, "# bind as uid 65534: %d (%s), not %d\n", rc, sk_strerror(rc), want);
        _exit(rc == want ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void a_handover_to_another_uid_is_refused(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* needs root, to run the successor under another uid */
    struct running old;
    fresh_path();
    assert_int_equal(chmod(dir, 0755), 0);
    start_unbound(&old, handover_server(), NULL);
    assert_int_equal(old.bind_rc, 0);
    int a = dial(&old);
    served(a, "a\n");
    /* Stopped by the socket file's mode first; then, with the mode opened up
     * by hand, by the server's own check of the peer's uid. */
    assert_int_equal(bind_as_nobody(-EACCES), 0);
    assert_int_equal(chmod(path, 0666), 0);
    assert_int_equal(bind_as_nobody(-EPERM), 0);
    /* The old server kept everything: it still accepts and serves. */
    int b = dial(&old);
    served(b, "b\n");
    served(a, "still a\n");
    close(a);
    close(b);
    finish(&old);
    remove_path();
}

static void stale_and_foreign_files_at_the_path(void **state)
{
    (void)state;
    struct running r;
    fresh_path();
    /* A dead server's socket file: nothing answers, so it is replaced. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, path, strlen(path) + 1); /* short: a /tmp directory */
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    start_unbound(&r, handover_server(), NULL);
    assert_int_equal(r.bind_rc, 0);
    int c = dial(&r);
    served(c, "served\n");
    close(c);
    finish(&r);
    /* A regular file is never replaced: the bind fails, and it stays. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    start_unbound(&r, handover_server(), NULL);
    assert_int_equal(r.bind_rc, -EADDRINUSE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    remove_path();
}

int main(int argc, char **argv)
{
    if (harness_init(argc, argv) != 0)
        return 1;
    *(void **)&real_accept4 = dlsym(RTLD_NEXT, "accept4");
    stall = mmap(NULL, sizeof(*stall), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!real_accept4 || stall == MAP_FAILED)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_drain_lets_live_connections_finish, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(the_grace_timeout_stops_the_rest, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_stop_during_a_drain_stops_at_once, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(the_drain_signal_twice_stops, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_handover_moves_the_listeners, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_handover_waits_for_an_accept_under_way, harness_setup,
                                        stall_teardown),
        cmocka_unit_test_setup_teardown(a_handover_to_another_uid_is_refused, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(stale_and_foreign_files_at_the_path, harness_setup,
                                        harness_teardown),
    };
    char group[64];
    snprintf(group, sizeof(group), "drain/%s/workers=%d", backend, workers);
    return _cmocka_run_group_tests(group, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}
