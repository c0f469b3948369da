/* SPDX-License-Identifier: MIT */
/* A TCP and unix-socket proxy: each client gets a connection of its own to
 * --to, and the bytes pass both ways, exactly. The library connects on the
 * client's own loop, so the two sides of a pair never run at once, on any
 * backend, and need no lock. Flow control: a side whose partner holds
 * --max-buffer unsent bytes is paused until the partner drains, so a client
 * that never reads costs memory, not a dropped connection. A FIN passes
 * through (half-close); a close or reset of one side closes the other.
 * Try: sk-echo-server --listen 127.0.0.1:5189 & sk-proxy --to 127.0.0.1:5189,
 * then nc 127.0.0.1 5188. */
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define READ_MAX 65536    /* the most one read delivers */
#define MAX_BUFFER 262144 /* --max-buffer's default */

struct pair {
    sk_conn *side[2]; /* the client and the upstream; NULL once closed */
};

static const char *upstream;       /* --to */
static int connect_timeout = 5000; /* --connect-timeout, ms */
/* --to-tls, --to-ca, --to-name, --to-insecure: TLS to the upstream */
static sk_tls_config to_tls = {.size = sizeof(sk_tls_config)};
static bool to_tls_on;
static const char *to_name;
static sk_tls *upstream_tls;

static sk_conn *partner(sk_conn *c)
{
    struct pair *p = sk_conn_data(c);
    return p ? p->side[!sk_conn_outbound(c)] : NULL;
}

static void opened(sk_conn *c)
{
    struct pair *p;
    if (sk_conn_outbound(c)) /* the upstream is connected: nothing to do */
        return;
    if (!(p = calloc(1, sizeof(*p)))) {
        sk_conn_close(c);
        return;
    }
    p->side[0] = c;
    sk_conn_set_data(c, p);
    int rc = upstream_tls ? sk_server_connect_tls(sk_conn_server(c), upstream, connect_timeout,
                                                  upstream_tls, to_name, p, &p->side[1])
                          : sk_server_connect(sk_conn_server(c), upstream, connect_timeout, p,
                                              &p->side[1]);
    if (rc < 0) { /* nothing was made: only the client will close */
        fprintf(stderr, "sk-proxy: %s: %s\n", upstream, sk_strerror(rc));
        sk_conn_close(c);
    }
}

/* What one side sends goes to the other; the sender waits while it is full. */
static void relay(sk_conn *c, char *data, size_t len)
{
    sk_conn *to = partner(c);
    if (sk_conn_send(to, data, len) == 0 && sk_conn_over_high(to))
        sk_conn_pause(c);
}

static void drained(sk_conn *c)
{
    sk_conn_resume(partner(c));
}

static void eof(sk_conn *c)
{
    sk_conn_shutdown(partner(c));
}

static void closed(sk_conn *c, sk_close_reason reason)
{
    struct pair *p = sk_conn_data(c);
    if (!p)
        return;
    if (reason == SK_CLOSE_CONNECT)
        fprintf(stderr, "sk-proxy: %s: %s\n", upstream, sk_strerror(sk_conn_error(c)));
    sk_conn_close(partner(c));
    p->side[sk_conn_outbound(c)] = NULL;
    if (!p->side[0] && !p->side[1])
        free(p);
}

static int set_to(sk_server *s, const char *value)
{
    sk_addr a;
    int rc = sk_addr_parse(value, &a);
    (void)s;
    if (value[0] == '*' || (rc < 0 && rc != SK_EAI_NONAME)) /* a name is resolved later */
        return -EINVAL;
    upstream = value;
    return 0;
}

/* A decimal number from 1 to @max, or -1. */
static long long number(const char *text, long long max)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    return errno || end == text || *end || n < 1 || n > max ? -1 : n;
}

static int set_connect_timeout(sk_server *s, const char *value)
{
    long long ms = number(value, 3600000);
    (void)s;
    if (ms < 0)
        return -EINVAL;
    connect_timeout = (int)ms;
    return 0;
}

/* A direction holds @bytes at most: its source is paused once the sink's
 * unsent bytes pass @bytes less one read (the read that crosses the mark is
 * queued whole), and resumed at half that. The output cap, which closes a
 * connection, stays clear of it. */
static int set_buffer(sk_server *s, size_t bytes)
{
    size_t high = bytes > READ_MAX ? bytes - READ_MAX : 1;
    int rc = sk_server_set_watermarks(s, high, high / 2);
    if (rc == 0)
        rc = sk_server_set_max_output(s, bytes + READ_MAX);
    return rc;
}

static int set_max_buffer(sk_server *s, const char *value)
{
    long long bytes = number(value, 1 << 30);
    return bytes < 0 ? -EINVAL : set_buffer(s, (size_t)bytes);
}

static int set_to_tls(sk_server *s, const char *value)
{
    (void)s, (void)value;
    to_tls_on = true;
    return 0;
}

static int set_to_ca(sk_server *s, const char *value)
{
    (void)s;
    to_tls.ca_file = value;
    to_tls_on = true;
    return 0;
}

static int set_to_name(sk_server *s, const char *value)
{
    (void)s;
    to_name = value;
    return 0;
}

static int set_to_insecure(sk_server *s, const char *value)
{
    (void)s, (void)value;
    to_tls.insecure_no_verify = true;
    to_tls_on = true;
    return 0;
}

/* Once the options are in: the upstream's TLS, if asked for. */
static int ready(sk_server *s, char *why, size_t size)
{
    (void)s;
    if (!to_tls_on && !to_name)
        return 0;
    if (!to_tls_on) {
        snprintf(why, size, "--to-name needs --to-tls (or --to-ca, --to-insecure)");
        return -1;
    }
    int rc = sk_tls_client_new(&to_tls, &upstream_tls, why, size);
    return rc < 0 ? -1 : 0;
}

static const struct serve_option options[] = {
    {"to", "ADDR", "relay each client to host:port, [v6]:port or unix:/path", set_to,
     .required = true, .shown = true},
    {"connect-timeout", "MS", "give up connecting after this long (default 5000)",
     set_connect_timeout},
    {"max-buffer", "BYTES", "bytes a direction holds before pausing (default 262144)",
     set_max_buffer},
    {"to-tls", NULL, "speak TLS to the upstream, its certificate checked against the system store",
     set_to_tls},
    {"to-ca", "FILE", "speak TLS to the upstream, its certificate checked against this CA",
     set_to_ca},
    {"to-name", "HOST", "the name the upstream's certificate must have (default: --to's host)",
     set_to_name},
    {"to-insecure", NULL, "speak TLS to the upstream WITHOUT checking its certificate",
     set_to_insecure},
    {0},
};

int main(int argc, char **argv)
{
    sk_server *s = sk_server_new(NULL);
    sk_server_on_open(s, opened);
    sk_server_on_data(s, relay);
    sk_server_on_drain(s, drained);
    sk_server_on_eof(s, eof);
    sk_server_on_close(s, closed);
    set_buffer(s, MAX_BUFFER);
    int rc = serve_then(s, argc, argv, options, ready);
    sk_tls_free(upstream_tls);
    return rc;
}
