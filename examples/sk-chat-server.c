/* SPDX-License-Identifier: MIT */
/* A chat room. Each line a client sends goes to every other client as
 * "NAME: LINE"; /nick NAME, /who and /quit are commands. A name starts as the
 * client's ip:port. The room lives in the library (sk_server_broadcast() and
 * the connection names), not in this program's memory, so the same code runs
 * on every backend, fork included, where each client has its own process.
 * Nobody may speak with the server's voice or another's name: lines are
 * relayed with their control characters escaped (text.h), and a name must be
 * plain text, unlike an address or a "* " line, and nobody else's. */
#define _POSIX_C_SOURCE 200809L /* strcasecmp */
#include "serve.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void joined(sk_conn *c)
{
    sk_conn_sendf(c, "* welcome, %s; commands: /nick NAME, /who, /quit\n", sk_conn_name(c));
    sk_server_broadcastf(sk_conn_server(c), c, "* %s joined\n", sk_conn_name(c));
}

struct same_name {
    const char *name;
    int count;
};

static void count_same(const char *name, void *same)
{
    struct same_name *sn = same;
    sn->count += strcasecmp(name, sn->name) == 0; /* ASCII case: the C locale */
}

/* Why @c may not take @name (@len bytes, 1 to SK_NAME_MAX), or NULL. Two
 * clients that take one free name at the same moment may both pass (threads,
 * or fork's processes): checking and setting are two steps, and a twin name is
 * a nuisance this example accepts to stay short. */
static const char *refused(sk_conn *c, const char *name, size_t len)
{
    char clean[TEXT_CLEAN_SIZE(SK_NAME_MAX)];
    struct same_name same = {name, 0};
    text_clean(clean, name, len);
    if (strcmp(clean, name) != 0) /* a NUL inside too */
        return "a name may not hold control characters or invalid UTF-8";
    if (strpbrk(name, " :"))
        return "a name may not hold spaces or ':', which would make it look like an address";
    if (name[0] == '*')
        return "a name may not start with '*', as the server's lines do";
    if (sk_server_names(sk_conn_server(c), count_same, &same) < 0)
        return "a name cannot be checked now; try again";
    if (same.count > (strcasecmp(name, sk_conn_name(c)) == 0)) /* one may be @c's own */
        return "a name may not be one already taken";
    return NULL;
}

static void rename_to(sk_conn *c, const char *name, size_t len)
{
    char old[SK_ADDR_STRLEN];
    const char *why;
    int rc;
    snprintf(old, sizeof(old), "%s", sk_conn_name(c));
    if (len == 0 || len > SK_NAME_MAX)
        sk_conn_sendf(c, "* a name has 1 to %d bytes\n", SK_NAME_MAX);
    else if ((why = refused(c, name, len)))
        sk_conn_sendf(c, "* %s\n", why);
    else if ((rc = sk_conn_set_name(c, name)) < 0)
        sk_conn_sendf(c, "* /nick failed: %s\n", sk_strerror(rc));
    else
        sk_server_broadcastf(sk_conn_server(c), NULL, "* %s is now %s\n", old, name);
}

/* Send @line to the others, escaped so that it cannot act on their terminals. */
static void relay(sk_conn *c, const char *line, size_t len)
{
    char *text = malloc(TEXT_CLEAN_SIZE(len)); /* a line may be --max-line long */
    if (!text) {
        sk_conn_sendf(c, "* out of memory; your line was not sent\n");
        return;
    }
    text_clean(text, line, len);
    sk_server_broadcastf(sk_conn_server(c), c, "%s: %s\n", sk_conn_name(c), text);
    free(text);
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
        rename_to(c, line + 6, len - 6);
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
        relay(c, line, len);
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
