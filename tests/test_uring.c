/* SPDX-License-Identifier: MIT */
/* The io_uring backend where io_uring is refused (a seccomp filter, as in a
 * container; EPERM as with kernel.io_uring_disabled, ENOSYS as on a kernel
 * without it): sk_server_run() fails at once with the error that names the
 * cause and the remedy, and leaves nothing behind; so does sk_server_bind(),
 * before it binds anything. */
#include "noring.h"
#include "util.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* In a child under the filter: whether sk_server_bind() and sk_server_run()
 * return want, as the exit status (1: yes; 2 and up: which check failed). */
static int refused_run(int err, int want)
{
    if (noring_install(err) != 0)
        return 2;
    int fds0 = open_fds();
    sk_server *s = sk_server_new("127.0.0.1:0");
    if (!s || sk_server_set_backend(s, "io_uring") != 0)
        return 3;
    int rc = sk_server_bind(s); /* refused before anything is bound */
    if (rc != want || sk_server_listener(s, 0) >= 0)
        return 4;
    rc = sk_server_run(s); /* which binds first: the same answer */
    sk_server_free(s);
    if (rc != want)
        return 5;
    return open_fds() == fds0 ? 1 : 6;
}

static void refused(int err, int want)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(refused_run(err, want));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
}

static void a_seccomp_filter_says_turned_off(void **state)
{
    (void)state;
    refused(EPERM, SK_EURING_OFF);
}

static void a_kernel_without_it_says_too_old(void **state)
{
    (void)state;
    refused(ENOSYS, SK_EURING_OLD);
}

static void the_errors_name_the_cause_and_the_remedy(void **state)
{
    (void)state;
    assert_non_null(strstr(sk_strerror(SK_EURING_OFF), "io_uring_disabled"));
    assert_non_null(strstr(sk_strerror(SK_EURING_OFF), "seccomp"));
    assert_non_null(strstr(sk_strerror(SK_EURING_OLD), "Linux 6.0"));
    assert_non_null(strstr(sk_strerror(SK_EURING_OFF), "epoll-et"));
    assert_non_null(strstr(sk_strerror(SK_EURING_OLD), "epoll-et"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_seccomp_filter_says_turned_off),
        cmocka_unit_test(a_kernel_without_it_says_too_old),
        cmocka_unit_test(the_errors_name_the_cause_and_the_remedy),
    };
    return cmocka_run_group_tests_name("io_uring unavailable", tests, NULL, NULL);
}
