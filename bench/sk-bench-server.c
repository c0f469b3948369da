/* SPDX-License-Identifier: MIT */
/*
 * The libsockkit echo server the benchmark measures, written as a user would:
 * an on_data handler that sends the bytes back, and the options from the
 * command line.
 *
 *   sk-bench-server [--listen ADDR] [--backend NAME] [--workers N] [--OPTION VALUE]...
 *
 * Every --OPTION VALUE goes to sk_server_set_option() (see server.h: reuse,
 * max-conns, nodelay, ...). With more than one worker the reuse policy is
 * addr+port unless given, so each epoll reactor gets its own listener.
 * max-conns defaults to 65536 here (the library's 1024 is too few for the
 * idle-connection scenario).
 */
#include <sockkit/sockkit.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "sk-bench-server: %s: %s\n", what, sk_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    bool reuse_set = false;
    int workers = 0;
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--listen") == 0)
            listen = argv[i + 1];
    sk_server *s = sk_server_new(listen);
    if (!s)
        return fail("server", -ENOMEM);
    int rc = sk_server_set_option(s, "max-conns", "65536");
    if (rc < 0)
        return fail("max-conns", rc);
    for (int i = 1; i < argc; i += 2) {
        if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr,
                    "usage: %s [--listen ADDR] [--backend NAME] [--workers N] "
                    "[--OPTION VALUE]...\n",
                    argv[0]);
            return 2;
        }
        const char *name = argv[i] + 2, *value = argv[i + 1];
        if (strcmp(name, "listen") == 0)
            continue;
        reuse_set |= strcmp(name, "reuse") == 0;
        if (strcmp(name, "workers") == 0)
            workers = atoi(value);
        if ((rc = sk_server_set_option(s, name, value)) < 0)
            return fail(argv[i], rc);
    }
    if (workers > 1 && !reuse_set && (rc = sk_server_set_reuse(s, SK_REUSE_ADDR_PORT)) < 0)
        return fail("reuse", rc);
    sk_server_on_data(s, echo);
    sk_server_stop_on_signal(s, SIGTERM);
    sk_server_stop_on_signal(s, SIGINT);

    char addr[SK_ADDR_STRLEN];
    if ((rc = sk_server_bind(s)) < 0 || (rc = sk_server_address(s, addr, sizeof(addr))) < 0)
        return fail(listen, rc);
    printf("listening on %s\n", addr);
    fflush(stdout);
    if ((rc = sk_server_run(s)) < 0)
        fail("run", rc);
    sk_server_free(s);
    return rc < 0;
}
