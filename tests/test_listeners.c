/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets that outlive a server: an existing listener is adopted
 * and served, a server gives its listeners up without closing them (a
 * successor adopts them and serves what queued meanwhile), and a server
 * removes only the unix socket file it created itself. Internal API: this
 * test links the library's objects.
 */
#include "../lib/server_internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

static sk_server *echo_server(const char *backend)
{
    sk_server *s = sk_server_new(NULL);
    assert_non_null(s);
    assert_int_equal(sk_server_set_backend(s, backend), 0);
    sk_server_on_data(s, echo);
    return s;
}

/* One echo exchange on a connection already made (or queued). */
static void exchange(int fd, const char *text)
{
    char buf[32] = {0};
    size_t n = strlen(text);
    assert_int_equal(sk_write_all(fd, text, n, 5000), (ssize_t)n);
    assert_int_equal(sk_read_full(fd, buf, n, 5000), (ssize_t)n);
    assert_string_equal(buf, text);
}

static bool listening(int fd)
{
    int on = 0;
    socklen_t len = sizeof(on);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The address a server bound to "ADDRESS" reports: 0, or the bind's error. */
static int bound_address(const char *address, char *out, size_t size)
{
    sk_server *s = sk_server_new(address);
    assert_non_null(s);
    int rc = sk_server_bind(s);
    if (rc == 0)
        assert_true(sk_server_address(s, out, size) > 0);
    sk_server_free(s);
    return rc;
}

static void fd_addresses_take_an_inherited_listener(void **state)
{
    (void)state;
    char want[SK_ADDR_STRLEN], got[SK_ADDR_STRLEN], address[32];
    int lfd = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(lfd >= 0);
    assert_true(sk_local_addr(lfd, want, sizeof(want)) > 0);
    snprintf(address, sizeof(address), "fd:%d", lfd);
    assert_int_equal(bound_address(address, got, sizeof(got)), 0);
    assert_string_equal(got, want);
    /* freed with the server: it was the server's to close */
    assert_int_equal(fcntl(lfd, F_GETFD), -1);

    int plain = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(address, sizeof(address), "fd:%d", plain);
    assert_int_equal(bound_address(address, got, sizeof(got)), SK_ELISTENFD); /* not listening */
    close(plain);
    assert_int_equal(bound_address("fd:0", got, sizeof(got)), SK_ELISTENFD); /* no socket */
    assert_int_equal(bound_address("fd:999999", got, sizeof(got)), SK_ELISTENFD); /* not open */
    assert_int_equal(bound_address("fd:x", got, sizeof(got)), SK_EADDR);
    assert_int_equal(bound_address("fd:", got, sizeof(got)), SK_EADDR);
    assert_int_equal(bound_address("fd:-3", got, sizeof(got)), SK_EADDR);
    assert_string_equal(sk_strerror(SK_ELISTENFD), "descriptor is not a listening stream socket");
}

/* In a child, as systemd starts a service: two sockets on descriptors 3 and
 * 4, named web and admin. What the child saw, as its exit status. */
static int activated(const char *address, const char *pid_override)
{
    char name[64];
    snprintf(name, sizeof(name), "unix:@sk-activate-%d", (int)getpid());
    int l1 = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0), l2 = sk_listen(name, SK_REUSE_ADDR, 0);
    assert_true(l1 >= 0 && l2 >= 0);
    char want1[SK_ADDR_STRLEN], want2[SK_ADDR_STRLEN];
    sk_local_addr(l1, want1, sizeof(want1));
    sk_local_addr(l2, want2, sizeof(want2));
    pid_t pid = fork();
    if (pid == 0) {
        char text[32], got[SK_ADDR_STRLEN];
        if (dup2(l1, 3) != 3 || dup2(l2, 4) != 4)
            _exit(10);
        snprintf(text, sizeof(text), "%d", (int)getpid());
        setenv("LISTEN_PID", pid_override ? pid_override : text, 1);
        setenv("LISTEN_FDS", "2", 1);
        setenv("LISTEN_FDNAMES", "web:admin", 1);
        sk_server *s = sk_server_new(address);
        int rc = sk_server_bind(s), status;
        if (rc == SK_ENOTACTIVATED)
            status = getenv("LISTEN_FDS") ? 2 : 11; /* not taken: left for others */
        else if (rc != 0)
            status = 12;
        else if (getenv("LISTEN_PID") || getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES"))
            status = 13; /* taken: unset */
        else {
            sk_server_address(s, got, sizeof(got));
            int n = 0;
            while (sk_server_listener(s, n) >= 0)
                n++;
            int first = strcmp(got, want1) == 0 ? 1 : strcmp(got, want2) == 0 ? 2 : 0;
            status = first == 0 ? 14 : 20 + n * 4 + first; /* how many, and which first */
        }
        sk_server_free(s);
        _exit(status);
    }
    close(l1);
    close(l2);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void systemd_addresses_take_activated_sockets(void **state)
{
    (void)state;
    assert_int_equal(activated("systemd", NULL), 20 + 2 * 4 + 1);       /* both */
    assert_int_equal(activated("systemd:admin", NULL), 20 + 1 * 4 + 2); /* by name */
    assert_int_equal(activated("systemd:web", NULL), 20 + 1 * 4 + 1);
    assert_int_equal(activated("systemd:other", NULL), 2); /* none of that name */
    assert_int_equal(activated("systemd", "1"), 2);        /* passed to another process */
    char got[SK_ADDR_STRLEN];
    unsetenv("LISTEN_PID");
    assert_int_equal(bound_address("systemd", got, sizeof(got)), SK_ENOTACTIVATED);
}

static void an_adopted_listener_is_served_on_every_backend(void **state)
{
    (void)state;
    static const char *const backends[] = {"epoll-et", "epoll-lt", "pthread", "fork"};
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        int lfd = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
        assert_true(lfd >= 0);
        assert_int_equal(fcntl(lfd, F_SETFD, 0), 0); /* inherited without CLOEXEC */
        sk_server *s = echo_server(backends[i]);
        assert_int_equal(sk__listeners_adopt(&s->lis, lfd), 0);
        assert_int_equal(sk_server_listener(s, 0), lfd);
        assert_true(tu_is_cloexec(lfd));
        struct tu_serving sv;
        tu_serve(&sv, s); /* already bound: nothing more is bound */
        assert_int_equal(sk_server_listener(s, 1), -ENOENT);
        int fd = sk_connect(sv.addr, 5000);
        assert_true(fd >= 0);
        exchange(fd, backends[i]);
        close(fd);
        sk_server_stop(s);
        assert_int_equal(tu_serve_join(&sv), 0);
        sk_server_free(s); /* an adopted listener is the server's to close */
        assert_int_equal(fcntl(lfd, F_GETFD), -1);
    }
}

static void only_listening_sockets_are_adopted(void **state)
{
    (void)state;
    sk_server *s = echo_server("epoll-et");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(sk__listeners_adopt(&s->lis, fd), SK_ELISTENFD); /* not listening */
    assert_int_equal(sk__listeners_adopt(&s->lis, 1000000), SK_ELISTENFD); /* not open */
    assert_int_equal(sk__listeners_adopt(&s->lis, 0), SK_ELISTENFD); /* not a socket */
    assert_int_equal(sk_server_listener(s, 0), -ENOENT);
    sk_server_free(s);
    assert_int_equal(fcntl(fd, F_GETFD), FD_CLOEXEC); /* not taken: still the caller's */
    close(fd);
}

/* A successor takes the listeners: connections that queue in between are
 * served by it, and the socket file stays while anyone listens on it. */
static void released_listeners_stay_open_and_a_successor_serves_the_queue(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), unix_addr[320], path[300], tcp[SK_ADDR_STRLEN];
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    snprintf(unix_addr, sizeof(unix_addr), "unix:%s", path);
    sk_server *old = echo_server("epoll-et");
    assert_int_equal(sk_server_add_listen(old, "127.0.0.1:0"), 0);
    assert_int_equal(sk_server_add_listen(old, unix_addr), 0);
    struct tu_serving sv;
    tu_serve(&sv, old);
    snprintf(tcp, sizeof(tcp), "%s", sv.addr);
    int before = sk_connect(tcp, 5000);
    exchange(before, "old");
    close(before);
    sk_server_stop(old);
    assert_int_equal(tu_serve_join(&sv), 0);

    int fds[4];
    assert_int_equal(sk__listeners_release(&old->lis, fds, 1), -ENOSPC);
    assert_int_equal(sk__listeners_release(&old->lis, fds, 4), 2);
    int queued = sk_connect(tcp, 5000); /* nobody accepts it yet */
    assert_true(queued >= 0);
    assert_int_equal(sk_write_all(queued, "queued", 6, 5000), 6);
    sk_server_free(old);
    assert_true(listening(fds[0]) && listening(fds[1]));
    assert_true(exists(path));

    sk_server *next = echo_server("epoll-lt");
    assert_int_equal(sk__listeners_adopt(&next->lis, fds[0]), 0);
    assert_int_equal(sk__listeners_adopt(&next->lis, fds[1]), 0);
    tu_serve(&sv, next);
    assert_string_equal(sv.addr, tcp);
    char buf[8] = {0};
    assert_int_equal(sk_read_full(queued, buf, 6, 5000), 6);
    assert_string_equal(buf, "queued");
    close(queued);
    int u = sk_connect(unix_addr, 5000);
    exchange(u, "unix");
    close(u);
    sk_server_stop(next);
    assert_int_equal(tu_serve_join(&sv), 0);
    sk_server_free(next);
    assert_int_equal(fcntl(fds[0], F_GETFD), -1); /* the successor closed what it took */
    assert_true(exists(path)); /* ... but the file is not its own to remove */
    tu_rmtree(dir);
}

/* A server removes the socket file it made, unless the path now names another. */
static void a_server_removes_only_its_own_socket_file(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), addr[320], path[300];
    snprintf(path, sizeof(path), "%s/own.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", path);
    sk_server *s = echo_server("epoll-et");
    assert_int_equal(sk_server_add_listen(s, addr), 0);
    assert_int_equal(sk_server_bind(s), 0);
    assert_true(exists(path));
    sk_server_free(s);
    assert_false(exists(path));

    s = echo_server("epoll-et");
    assert_int_equal(sk_server_add_listen(s, addr), 0);
    assert_int_equal(sk_server_bind(s), 0);
    assert_int_equal(unlink(path), 0); /* a successor's file takes the path */
    int other = sk_listen(addr, SK_REUSE_NONE, 0);
    assert_true(other >= 0);
    sk_server_free(s);
    assert_true(exists(path));
    assert_true(listening(other));
    close(other);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_adopted_listener_is_served_on_every_backend),
        cmocka_unit_test(only_listening_sockets_are_adopted),
        cmocka_unit_test(fd_addresses_take_an_inherited_listener),
        cmocka_unit_test(systemd_addresses_take_activated_sockets),
        cmocka_unit_test(released_listeners_stay_open_and_a_successor_serves_the_queue),
        cmocka_unit_test(a_server_removes_only_its_own_socket_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
