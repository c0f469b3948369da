/* SPDX-License-Identifier: MIT */
/* A chat room. Each line a client sends goes to every other client as
 * "NAME: LINE"; /nick NAME, /who and /quit are commands. A name starts as the
 * client's ip:port. The room lives in the library (sk_server_broadcast() and
 * the connection names), not in this program's memory, so the same code runs
 * on every backend, fork included, where each client has its own process. */
#include "serve.h"

#include <stdio.h>
#include <string.h>

static void joined(sk_conn *c)
{
    sk_conn_sendf(c, "* welcome, %s; commands: /nick NAME, /who, /quit\n", sk_conn_name(c));
    sk_server_broadcastf(sk_conn_server(c), c, "* %s joined\n", sk_conn_name(c));
}

static void rename_to(sk_conn *c, const char *name)
{
    char old[SK_ADDR_STRLEN];
    snprintf(old, sizeof(old), "%s", sk_conn_name(c));
    if (!*name || sk_conn_set_name(c, name) < 0)
        sk_conn_sendf(c, "* a name has 1 to %d bytes\n", SK_NAME_MAX);
    else
        sk_server_broadcastf(sk_conn_server(c), NULL, "* %s is now %s\n", old, name);
}

static void list_one(const char *name, void *conn)
{
    sk_conn_sendf(conn, "* here: %s\n", name);
}

static void said(sk_conn *c, char *line, size_t len) /* line: a C string, no newline */
{
    sk_server *s = sk_conn_server(c);
    int n;
    if (strncmp(line, "/nick ", 6) == 0) {
        rename_to(c, line + 6);
    } else if (strcmp(line, "/who") == 0) {
        if ((n = sk_server_names(s, list_one, c)) < 0)
            sk_conn_sendf(c, "* /who failed: %s\n", sk_strerror(n));
        else
            sk_conn_sendf(c, "* %d in the room\n", n);
    } else if (strcmp(line, "/quit") == 0) {
        sk_conn_close(c);
    } else if (line[0] == '/') {
        sk_conn_sendf(c, "* unknown command; try /nick NAME, /who, /quit\n");
    } else if (len > 0) {
        sk_server_broadcastf(s, c, "%s: %s\n", sk_conn_name(c), line);
    }
}

static void left(sk_conn *c, sk_close_reason why) /* it may still send: last words */
{
    if (why == SK_CLOSE_TOO_LONG)
        sk_conn_sendf(c, "* error: line too long; goodbye\n");
    if (why == SK_CLOSE_STOP)
        sk_conn_sendf(c, "* the server is stopping; goodbye\n");
    else
        sk_server_broadcastf(sk_conn_server(c), c, "* %s left\n", sk_conn_name(c));
}

static const struct serve_option options[] = {
    {"max-line", "BYTES", "longest line, its newline included (default 4096)"},
    {"max-output", "BYTES", "unsent output that cuts a client off (default 1048576)"},
    {0},
};

int main(int argc, char **argv)
{
    sk_server *s = sk_server_new(NULL);
    sk_server_set_framing(s, SK_FRAMING_LINES, 4096); /* --max-line changes the limit */
    sk_server_on_open(s, joined);
    sk_server_on_data(s, said);
    sk_server_on_close(s, left);
    return serve(s, argc, argv, options);
}
