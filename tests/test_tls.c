/* SPDX-License-Identifier: MIT */
/*
 * TLS on every backend (tls.h), with real clients: the library's blocking
 * streams (sk_tls_connect) and, where the test must see TLS itself
 * (close_notify, resumption), OpenSSL directly. Certificates are made at
 * run time by tls/make-certs.sh into a temporary directory.
 *
 *     test_tls BACKEND [WORKERS]
 */
#include "harness.h"

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { C_TLS_ERR, C_NO_DETAILS, C_BIG };

static char certs[64];          /* the temporary directory */
static sk_tls *client_tls;      /* verifies against the test CA */
static sk_tls *served_tls;      /* the running server's, for "reload NAME" */

static const char *cert(const char *name, const char *ext)
{
    static char path[8][128];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, sizeof(path[0]), "%s/%s.%s", certs, name, ext);
    return p;
}

static sk_tls *server_config(const char *name, const char *ca, const char *alpn)
{
    sk_tls_config cfg = {.size = sizeof(cfg), .cert_file = cert(name, "pem"),
                         .key_file = cert(name, "key"), .ca_file = ca, .alpn = alpn};
    sk_tls *t = NULL;
    char why[256];
    if (sk_tls_server_new(&cfg, &t, why, sizeof(why)) != 0)
        fail_msg("server config %s: %s", name, why);
    return t;
}

static sk_tls *client_config(const char *name, const char *alpn, bool insecure)
{
    sk_tls_config cfg = {.size = sizeof(cfg), .ca_file = cert("ca", "pem"), .alpn = alpn,
                         .insecure_no_verify = insecure};
    if (name) {
        cfg.cert_file = cert(name, "pem");
        cfg.key_file = cert(name, "key");
    }
    sk_tls *t = NULL;
    char why[256];
    if (sk_tls_client_new(&cfg, &t, why, sizeof(why)) != 0)
        fail_msg("client config: %s", why);
    return t;
}

/* ---- the server's handlers ---------------------------------------------- */

static void tls_open(sk_conn *c)
{
    shared_add(&sh->opens);
    if (!sk_conn_is_tls(c) || !sk_conn_tls_version(c) || !sk_conn_tls_cipher(c))
        shared_add(&sh->custom[C_NO_DETAILS]); /* on_open must come after the handshake */
}

static void tls_close(sk_conn *c, sk_close_reason why)
{
    if (why == SK_CLOSE_TLS)
        __atomic_store_n(&sh->custom[C_TLS_ERR], sk_conn_error(c), __ATOMIC_RELEASE);
    if (why == SK_CLOSE_STOP)
        sk_conn_send(c, "bye\n", 4);
    shared_add(&sh->closes[why]);
}

static void raw_echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

static char big[64 * 1024];

/* Lines: "info", "bye" (answer, then close), "all TEXT" (to everyone else),
 * "big" (64 KiB to everyone else); anything else is echoed. */
static void tls_lines(sk_conn *c, char *line, size_t len)
{
    if (strcmp(line, "info") == 0) {
        const char *alpn = sk_conn_tls_alpn(c), *peer = sk_conn_tls_peer(c);
        sk_conn_sendf(c, "tls=%d version=%s alpn=%s peer=%s resumed=%d cipher=%s\n",
                      sk_conn_is_tls(c), sk_conn_tls_version(c), alpn ? alpn : "-",
                      peer ? peer : "-", sk_conn_tls_resumed(c), sk_conn_tls_cipher(c));
    } else if (strcmp(line, "bye") == 0) {
        sk_conn_send(c, "ok\n", 3);
        sk_conn_close(c);
    } else if (strncmp(line, "all ", 4) == 0) {
        line[len] = '\n';
        sk_server_broadcast(sk_conn_server(c), c, line + 4, len - 3);
    } else if (strcmp(line, "big") == 0) {
        shared_add(&sh->custom[C_BIG]);
        sk_server_broadcast(sk_conn_server(c), c, big, sizeof(big));
    } else {
        sk_conn_sendf(c, "%.*s\n", (int)len, line);
    }
}

static sk_server *tls_server(sk_data_fn fn, sk_tls *tls)
{
    sk_server *s = new_server(fn);
    assert_int_equal(sk_server_on_open(s, tls_open), 0);
    assert_int_equal(sk_server_on_close(s, tls_close), 0);
    if (fn == tls_lines)
        assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, 80000), 0);
    assert_int_equal(sk_server_set_tls(s, tls), 0);
    served_tls = tls;
    return s;
}

/* "reload NAME": the running server's certificate becomes NAME's. */
static void on_command(const char *line, char *reply, size_t size)
{
    if (strncmp(line, "reload ", 7) != 0)
        return;
    sk_tls_config cfg = {.size = sizeof(cfg), .cert_file = cert(line + 7, "pem"),
                         .key_file = cert(line + 7, "key")};
    char why[256] = "";
    int rc = sk_tls_reload(served_tls, &cfg, why, sizeof(why));
    snprintf(reply, size, "%d %s", rc, why);
}

/* ---- the client's side ----------------------------------------------------- */

static sk_tls_stream *tls_dial(const struct running *r, sk_tls *t, int *rc)
{
    sk_tls_stream *st = NULL;
    *rc = sk_tls_connect(r->addr, 15000, t, "localhost", &st);
    return st;
}

static sk_tls_stream *must_dial(const struct running *r, sk_tls *t)
{
    int rc;
    sk_tls_stream *st = tls_dial(r, t, &rc);
    if (rc != 0)
        fail_msg("sk_tls_connect: %s", sk_strerror(rc));
    return st;
}

/* Read a line (without '\n') into buf within ms. */
static void read_line(sk_tls_stream *st, char *buf, size_t size, int ms)
{
    size_t n = 0;
    int64_t until = tu_now_ms() + ms;
    while (n + 1 < size) {
        int left = (int)(until - tu_now_ms());
        ssize_t got = sk_tls_read_some(st, buf + n, 1, left > 0 ? left : 0);
        if (got != 1)
            fail_msg("reading a line: %zd after \"%.*s\"", got, (int)n, buf);
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
}

static void ask_tls(sk_tls_stream *st, const char *line, char *answer, size_t size)
{
    assert_int_equal(sk_tls_write_all(st, line, strlen(line), 5000), (ssize_t)strlen(line));
    read_line(st, answer, size, 5000 * test_scale());
}

/* The stream ends: 0 (or a failure) within ms. */
static ssize_t read_end(sk_tls_stream *st, int ms)
{
    char buf[256];
    ssize_t n;
    int64_t until = tu_now_ms() + ms;
    do {
        int left = (int)(until - tu_now_ms());
        n = sk_tls_read_some(st, buf, sizeof(buf), left > 0 ? left : 0);
    } while (n > 0);
    return n;
}

/* ---- byte-exact echo, many clients ---------------------------------------- */

static void tls_echo_is_byte_exact(void **state)
{
    (void)state;
    bool pool = strcmp(backend, "fork") == 0 && workers > 0;
    const int CLIENTS = pool ? workers : 200 / test_scale();
    const size_t BYTES = (1 << 20) / (size_t)test_scale(), CHUNK = 16384;
    struct running r;
    sk_tls *tls = server_config("server", NULL, NULL);
    sk_server *s = tls_server(raw_echo, tls);
    sk_server_set_max_output(s, 4 << 20);
    start(&r, s);
    sk_tls_stream **st = calloc((size_t)CLIENTS, sizeof(*st));
    unsigned char *out = malloc(CHUNK), *in = malloc(CHUNK);
    for (int k = 0; k < CLIENTS; k++)
        st[k] = must_dial(&r, client_tls);
    for (size_t at = 0; at < BYTES; at += CHUNK) {
        size_t n = BYTES - at < CHUNK ? BYTES - at : CHUNK;
        for (int k = 0; k < CLIENTS; k++) {
            tu_fill_random(out, n, (uint64_t)k << 32 | at);
            assert_int_equal(sk_tls_write_all(st[k], out, n, 5000), (ssize_t)n);
            for (size_t got = 0; got < n;) {
                ssize_t g = sk_tls_read_some(st[k], in + got, n - got, 10000);
                if (g <= 0)
                    fail_msg("client %d at %zu: %s", k, at + got, sk_strerror((int)g));
                got += (size_t)g;
            }
            if (memcmp(in, out, n) != 0)
                fail_msg("client %d: echo differs at %zu", k, at);
        }
    }
    for (int k = 0; k < CLIENTS; k++)
        sk_tls_close(st[k]);
    wait_for(&sh->closes[SK_CLOSE_PEER], CLIENTS, 10000 * test_scale());
    assert_int_equal(shared_get(&sh->opens), CLIENTS);
    assert_int_equal(shared_get(&sh->custom[C_NO_DETAILS]), 0);
    finish(&r);
    sk_tls_free(tls);
    free(st);
    free(out);
    free(in);
}

/* A handler that uses OpenSSL itself and leaves an error in the thread's
 * queue: the library empties it before its next call, or SSL_get_error()
 * would read the stale error as a failure of the connection. */
static void echo_leaving_an_error(sk_conn *c, char *data, size_t len)
{
    ERR_raise(ERR_LIB_USER, 1);
    sk_conn_send(c, data, len);
}

static void stale_openssl_errors_do_not_fail_a_connection(void **state)
{
    (void)state;
    struct running r;
    sk_tls *tls = server_config("server", NULL, NULL);
    sk_server *s = tls_server(echo_leaving_an_error, tls);
    start(&r, s);
    sk_tls_stream *st = must_dial(&r, client_tls);
    for (int i = 0; i < 20; i++) {
        char out[32], in[32];
        snprintf(out, sizeof(out), "message %d\n", i);
        ask_tls(st, out, in, sizeof(in));
        out[strlen(out) - 1] = '\0'; /* read_line() leaves the '\n' out */
        assert_string_equal(in, out);
    }
    sk_tls_close(st);
    wait_for(&sh->closes[SK_CLOSE_PEER], 1, 10000);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_TLS]), 0);
    finish(&r);
    sk_tls_free(tls);
}

/* ---- what a handler can tell ------------------------------------------------- */

static void tls_details_reach_the_handlers(void **state)
{
    (void)state;
    struct running r;
    sk_tls *tls = server_config("server", NULL, "sk/1,other/2");
    start(&r, tls_server(tls_lines, tls));
    sk_tls *alpn_client = client_config(NULL, "other/2,sk/1", false);
    sk_tls_stream *st = must_dial(&r, alpn_client);
    char a[512];
    ask_tls(st, "info\n", a, sizeof(a));
    /* the server's order wins: sk/1 */
    assert_non_null(strstr(a, "tls=1 version=TLSv1.3 alpn=sk/1 peer=- resumed=0 cipher=TLS_"));
    /* lines over TLS, as over a socket */
    sk_lines *lines = sk_lines_new_tls(st, 64);
    assert_non_null(lines);
    assert_int_equal(sk_tls_write_all(st, "hello\r\nagain\n", 14, 5000), 14);
    char *line;
    size_t len;
    assert_int_equal(sk_lines_next(lines, &line, &len, 5000), 1);
    assert_string_equal(line, "hello");
    assert_int_equal(sk_lines_next(lines, &line, &len, 5000), 1);
    assert_string_equal(line, "again");
    sk_lines_free(lines);
    /* by IP address: the certificate names 127.0.0.1 too */
    sk_tls_stream *ip = NULL;
    assert_int_equal(sk_tls_connect(r.addr, 5000, client_tls, NULL, &ip), 0);
    ask_tls(ip, "info\n", a, sizeof(a));
    assert_non_null(strstr(a, "alpn=- ")); /* offered none */
    sk_tls_close(ip);
    sk_tls_close(st);
    wait_for(&sh->closes[SK_CLOSE_PEER], 2, 5000);
    finish(&r);
    sk_tls_free(alpn_client);
    sk_tls_free(tls);
}

/* ---- bad clients -------------------------------------------------------------- */

static void expect_closed(int fd)
{
    char buf[512];
    int64_t until = tu_now_ms() + 5000 * test_scale();
    ssize_t n;
    do {
        n = sk_read_some(fd, buf, sizeof(buf), (int)(until - tu_now_ms()));
    } while (n > 0 && tu_now_ms() < until);
    if (n != 0 && n != -ECONNRESET)
        fail_msg("not closed: %zd", n);
}

static void bad_clients_end_only_their_own_connection(void **state)
{
    (void)state;
    struct running r;
    sk_tls *tls = server_config("server", NULL, NULL);
    sk_server *s = tls_server(tls_lines, tls);
    sk_server_set_idle_timeout(s, 400 * test_scale());
    start(&r, s);
    /* plaintext on a TLS port */
    int fd = dial(&r);
    assert_int_equal(sk_write_all(fd, "GET / HTTP/1.0\r\n\r\n", 18, 1000), 18);
    expect_closed(fd);
    close(fd);
    wait_for(&sh->closes[SK_CLOSE_TLS], 1, 5000);
    assert_int_equal(shared_get(&sh->custom[C_TLS_ERR]), SK_ETLS);
    /* garbage */
    unsigned char junk[300];
    tu_fill_random(junk, sizeof(junk), 7);
    junk[0] = 0x80; /* no record type: refused at the first byte */
    fd = dial(&r);
    assert_int_equal(sk_write_all(fd, junk, sizeof(junk), 1000), (ssize_t)sizeof(junk));
    expect_closed(fd);
    close(fd);
    wait_for(&sh->closes[SK_CLOSE_TLS], 2, 5000);
    /* a handshake record cut short by the client's FIN */
    static const char cut[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    fd = dial(&r);
    assert_int_equal(sk_write_all(fd, cut, sizeof(cut) - 1, 1000), (ssize_t)sizeof(cut) - 1);
    shutdown(fd, SHUT_WR);
    expect_closed(fd);
    close(fd);
    wait_for(&sh->closes[SK_CLOSE_TLS], 3, 5000);
    /* silent mid-handshake: the idle timeout ends it */
    fd = dial(&r);
    assert_int_equal(sk_write_all(fd, cut, sizeof(cut) - 1, 1000), (ssize_t)sizeof(cut) - 1);
    expect_closed(fd);
    close(fd);
    wait_for(&sh->closes[SK_CLOSE_IDLE], 1, 5000);
    /* and the server goes on serving */
    sk_tls_stream *st = must_dial(&r, client_tls);
    char a[512];
    ask_tls(st, "still\n", a, sizeof(a));
    assert_string_equal(a, "still");
    sk_tls_close(st);
    wait_for(&sh->closes[SK_CLOSE_PEER], 1, 5000);
    assert_int_equal(shared_get(&sh->opens), 1); /* never for a failed handshake */
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_TLS]), 3);
    finish(&r);
    sk_tls_free(tls);
}

/* ---- a client checks the server --------------------------------------------- */

static void clients_name_what_is_wrong_with_a_certificate(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int rc;
        const char *says;
    } cases[] = {
        {"expired", SK_ETLS_EXPIRED, "expired"},
        {"self", SK_ETLS_UNTRUSTED, "not trusted"},
        {"wronghost", SK_ETLS_HOSTNAME, "another host"},
    };
    sk_tls *insecure = client_config(NULL, NULL, true);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct running r;
        sk_tls *tls = server_config(cases[i].name, NULL, NULL);
        start(&r, tls_server(tls_lines, tls));
        int rc;
        sk_tls_stream *st = tls_dial(&r, client_tls, &rc);
        assert_null(st);
        if (rc != cases[i].rc)
            fail_msg("%s: %s", cases[i].name, sk_strerror(rc));
        assert_non_null(strstr(sk_strerror(rc), cases[i].says));
        /* the server saw the client refuse it */
        wait_for(&sh->closes[SK_CLOSE_TLS], 1, 5000);
        /* only a client told loudly not to check gets through */
        st = must_dial(&r, insecure);
        char a[512];
        ask_tls(st, "ok?\n", a, sizeof(a));
        assert_string_equal(a, "ok?");
        sk_tls_close(st);
        wait_for(&sh->closes[SK_CLOSE_PEER], 1, 5000);
        finish(&r);
        sk_tls_free(tls);
        harness_setup(NULL); /* the counts start again */
    }
    sk_tls_free(insecure);
}

/* ---- the server checks clients ------------------------------------------------ */

static void client_certificates_are_checked(void **state)
{
    (void)state;
    struct running r;
    sk_tls *tls = server_config("server", cert("ca", "pem"), NULL);
    start(&r, tls_server(tls_lines, tls));
    /* signed by the CA: served, and named */
    sk_tls *good = client_config("client", NULL, false);
    sk_tls_stream *st = must_dial(&r, good);
    char a[512];
    ask_tls(st, "info\n", a, sizeof(a));
    assert_non_null(strstr(a, "peer=CN=sk-test-client "));
    sk_tls_close(st);
    wait_for(&sh->closes[SK_CLOSE_PEER], 1, 5000);
    /* none, or one from another CA: that connection ends (TLS 1.3 tells the
     * client after its handshake: its first read fails) */
    sk_tls *other = client_config("other-client", NULL, false);
    sk_tls *tls_none[] = {client_tls, other};
    int want[] = {SK_ETLS_CERT, SK_ETLS_UNTRUSTED};
    for (int i = 0; i < 2; i++) {
        int rc;
        st = tls_dial(&r, tls_none[i], &rc);
        if (st) {
            assert_true(read_end(st, 5000) <= 0);
            sk_tls_close(st);
        }
        wait_for(&sh->closes[SK_CLOSE_TLS], i + 1, 5000);
        assert_int_equal(shared_get(&sh->custom[C_TLS_ERR]), want[i]);
    }
    assert_int_equal(shared_get(&sh->opens), 1);
    finish(&r);
    sk_tls_free(other);
    sk_tls_free(good);
    sk_tls_free(tls);
}

/* ---- reload ------------------------------------------------------------------- */

static void reload(struct running *r, const char *name, int want)
{
    char q[64], a[300];
    snprintf(q, sizeof(q), "reload %s\n", name);
    ask(r, q, a, sizeof(a));
    if (atoi(a) != want)
        fail_msg("reload %s: %s", name, a);
}

static void reload_changes_new_handshakes_and_keeps_open_ones(void **state)
{
    (void)state;
    if (strcmp(backend, "fork") == 0 && workers > 0)
        skip(); /* a pre-forked pool keeps what it was forked with (doc/TLS.md) */
    struct running r;
    harness_on_command = on_command;
    sk_tls *tls = server_config("server", NULL, NULL);
    start(&r, tls_server(tls_lines, tls));
    sk_tls_stream *kept = must_dial(&r, client_tls);
    char a[512];
    ask_tls(kept, "before\n", a, sizeof(a));
    reload(&r, "self", 0);
    int rc;
    assert_null(tls_dial(&r, client_tls, &rc));
    assert_int_equal(rc, SK_ETLS_UNTRUSTED); /* new handshakes: the new certificate */
    ask_tls(kept, "after\n", a, sizeof(a));  /* the open one goes on */
    assert_string_equal(a, "after");
    reload(&r, "missing", SK_ETLS_FILE); /* a bad file: the old one stays */
    assert_null(tls_dial(&r, client_tls, &rc));
    assert_int_equal(rc, SK_ETLS_UNTRUSTED);
    /* under load: connections made while it reloads, none fails */
    const int N = 40 / test_scale() + 4;
    for (int i = 0; i < N; i++) {
        if (i % 4 == 0)
            reload(&r, i % 8 ? "server2" : "server", 0);
        sk_tls_stream *st = must_dial(&r, client_tls);
        ask_tls(st, "x\n", a, sizeof(a));
        assert_string_equal(a, "x");
        sk_tls_close(st);
    }
    ask_tls(kept, "end\n", a, sizeof(a));
    sk_tls_close(kept);
    wait_for(&sh->closes[SK_CLOSE_PEER], N + 1, 5000);
    finish(&r);
    harness_on_command = NULL;
    sk_tls_free(tls);
}

/* ---- close_notify and resumption, seen by OpenSSL ---------------------------- */

static SSL *raw_handshake(SSL_CTX *ctx, int fd, SSL_SESSION *resume);

static SSL_CTX *raw_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_file(ctx, cert("ca", "pem")), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static SSL *raw_connect(SSL_CTX *ctx, const struct running *r, SSL_SESSION *resume, int *fd)
{
    *fd = dial(r);
    return raw_handshake(ctx, *fd, resume);
}

/* A client whose receive window is small: what is sent to it queues at once. */
static SSL *raw_small_window(SSL_CTX *ctx, const struct running *r, int *fd)
{
    int small = 4096;
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(*fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)); /* before: the window */
    sk_addr a;
    assert_int_equal(sk_addr_parse(r->addr, &a), 0);
    assert_int_equal(connect(*fd, &a.u.sa, a.len), 0);
    return raw_handshake(ctx, *fd, NULL);
}

static SSL *raw_handshake(SSL_CTX *ctx, int fd, SSL_SESSION *resume)
{
    /* OpenSSL's blocking calls wait on the socket: bound every one of them */
    struct timeval bound = {.tv_sec = 10 * test_scale()};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound));
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (resume)
        SSL_set_session(ssl, resume);
    assert_int_equal(SSL_connect(ssl), 1);
    return ssl;
}

static void raw_ask(SSL *ssl, const char *q, char *a, size_t size)
{
    assert_int_equal(SSL_write(ssl, q, (int)strlen(q)), (int)strlen(q));
    size_t n = 0;
    while (n + 1 < size) {
        int got = SSL_read(ssl, a + n, 1);
        assert_int_equal(got, 1);
        if (a[n] == '\n')
            break;
        n++;
    }
    a[n] = '\0';
}

static void close_notify_and_resumption(void **state)
{
    (void)state;
    struct running r;
    sk_tls *tls = server_config("server", NULL, NULL);
    start(&r, tls_server(tls_lines, tls));
    SSL_CTX *ctx = raw_ctx();
    int fd;
    char a[512];
    SSL *ssl = raw_connect(ctx, &r, NULL, &fd);
    raw_ask(ssl, "info\n", a, sizeof(a)); /* its session ticket has come before this */
    assert_non_null(strstr(a, "resumed=0"));
    SSL_SESSION *sess = SSL_get1_session(ssl);
    assert_non_null(sess);
    /* an orderly close by the server: close_notify, not just a FIN */
    raw_ask(ssl, "bye\n", a, sizeof(a));
    assert_string_equal(a, "ok");
    char c;
    assert_int_equal(SSL_read(ssl, &c, 1), 0);
    assert_int_equal(SSL_get_error(ssl, 0), SSL_ERROR_ZERO_RETURN);
    assert_true(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN);
    SSL_shutdown(ssl); /* ours too: a session not shut down is not resumed */
    SSL_free(ssl);
    close(fd);
    /* the ticket resumes */
    ssl = raw_connect(ctx, &r, sess, &fd);
    assert_int_equal(SSL_session_reused(ssl), 1);
    raw_ask(ssl, "info\n", a, sizeof(a));
    assert_non_null(strstr(a, "resumed=1"));
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_SESSION_free(sess);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    wait_for(&sh->closes[SK_CLOSE_LOCAL], 1, 5000);
    wait_for(&sh->closes[SK_CLOSE_PEER], 1, 5000);
    finish(&r);
    sk_tls_free(tls);
}

/* ---- a record cut short --------------------------------------------------------- */

/* CPU time (ms) of every process in process group pgid. */
static long group_cpu_ms(pid_t pgid)
{
    long ticks = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], buf[1024];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')'); /* the name may hold spaces */
        long pgrp = 0, ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %ld %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &pgrp, &ut,
                        &st) == 3 && pgrp == pgid)
            ticks += ut + st;
    }
    if (d)
        closedir(d);
    return ticks * 1000 / sysconf(_SC_CLK_TCK);
}

/* A peer that sends part of a record and waits: the server waits too (for
 * the socket), it does not spin on what OpenSSL holds. */
static void a_record_cut_short_is_waited_for(void **state)
{
    (void)state;
    struct running r;
    sk_tls *tls = server_config("server", NULL, NULL);
    start(&r, tls_server(tls_lines, tls));
    SSL_CTX *ctx = raw_ctx();
    int fd;
    char a[512];
    SSL *ssl = raw_connect(ctx, &r, NULL, &fd);
    raw_ask(ssl, "x\n", a, sizeof(a));
    static const char part[] = "\x17\x03\x03\x01\x00" "0123456789"; /* of 256 bytes */
    assert_int_equal(sk_write_all(fd, part, sizeof(part) - 1, 1000), (ssize_t)sizeof(part) - 1);
    usleep(100 * 1000); /* taken in */
    long before = group_cpu_ms(r.pid);
    usleep(600 * 1000);
    long spent = group_cpu_ms(r.pid) - before;
    if (spent > 300) /* a spinning loop spends all 600 ms */
        fail_msg("the server spent %ld ms of CPU in 600 ms waiting for a record", spent);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    wait_for(&sh->opens, 1, 5000);
    int64_t until = tu_now_ms() + 5000;
    while (total_closes() < 1 && tu_now_ms() < until)
        usleep(2000);
    assert_int_equal(total_closes(), 1);
    finish(&r);
    sk_tls_free(tls);
}

/* ---- broadcast and the slow consumer count plaintext ---------------------------- */

static void broadcast_between_tls_clients(void **state)
{
    (void)state;
    if (strcmp(backend, "fork") == 0 && workers > 0)
        skip(); /* a pool serves one connection per worker at a time */
    enum { K = 4 };
    const int LINES = 400 / test_scale() + 10;
    struct running r;
    sk_tls *tls = server_config("server", NULL, NULL);
    sk_server *s = tls_server(tls_lines, tls);
    sk_server_set_max_output(s, 256 * 1024);
    start(&r, s);
    sk_tls_stream *st[K];
    for (int k = 0; k < K; k++)
        st[k] = must_dial(&r, client_tls);
    SSL_CTX *ctx = raw_ctx();
    int silent_fd;
    SSL *silent = raw_small_window(ctx, &r, &silent_fd); /* never reads */
    wait_for(&sh->opens, K + 1, 5000);
    int got[K] = {0};
    char buf[4096];
    for (int i = 0; i < LINES; i++) {
        for (int k = 0; k < K; k++) {
            char line[32];
            int n = snprintf(line, sizeof(line), "all %d.%d\n", k, i);
            assert_int_equal(sk_tls_write_all(st[k], line, (size_t)n, 5000), n);
        }
        for (int k = 0; k < K; k++) { /* what has come: each line ends in '\n' */
            ssize_t n;
            while ((n = sk_tls_read_some(st[k], buf, sizeof(buf), 0)) > 0)
                for (ssize_t j = 0; j < n; j++)
                    got[k] += buf[j] == '\n';
        }
    }
    for (int k = 0; k < K; k++) {
        int64_t until = tu_now_ms() + 10000 * test_scale();
        while (got[k] < (K - 1) * LINES && tu_now_ms() < until) {
            ssize_t n = sk_tls_read_some(st[k], buf, sizeof(buf), 1000);
            for (ssize_t j = 0; j < n; j++)
                got[k] += buf[j] == '\n';
        }
        assert_int_equal(got[k], (K - 1) * LINES);
    }
    /* One that does not read is cut off when its plaintext passes the cap:
     * sent more than the kernel can hold for it (up to 4 MiB of send buffer). */
    for (int i = 0; i < 160 && shared_get(&sh->closes[SK_CLOSE_SLOW]) == 0; i++) {
        assert_int_equal(sk_tls_write_all(st[0], "big\n", 4, 5000), 4);
        for (int k = 1; k < K; k++) {
            size_t left = sizeof(big);
            while (left > 0) {
                ssize_t n = sk_tls_read_some(st[k], buf, sizeof(buf), 5000);
                assert_true(n > 0);
                left -= (size_t)n;
            }
        }
    }
    wait_for(&sh->closes[SK_CLOSE_SLOW], 1, 5000 * test_scale());
    SSL_free(silent);
    close(silent_fd);
    SSL_CTX_free(ctx);
    for (int k = 0; k < K; k++)
        sk_tls_close(st[k]);
    wait_for(&sh->closes[SK_CLOSE_PEER], K, 5000);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
    sk_tls_free(tls);
}

/* ---- outbound TLS on the loop ----------------------------------------------- */

/* The server under test speaks plain to its client; "up ADDR" opens ADDR
 * over TLS from the client's callback, "send TEXT" goes up, what comes down
 * goes back as "up: TEXT". A client's data is its upstream, and the other
 * way round. */
static void relay_open(sk_conn *c)
{
    sk_conn *client = sk_conn_data(c);
    if (!sk_conn_outbound(c) || !client)
        return;
    const char *v = sk_conn_tls_version(c);
    sk_conn_sendf(client, "open %s\n", v ? v : "plain");
}

static void relay_close(sk_conn *c, sk_close_reason why)
{
    sk_conn *other = sk_conn_data(c);
    shared_add(&sh->closes[why]);
    if (!other)
        return;
    sk_conn_set_data(other, NULL);
    if (sk_conn_outbound(c))
        sk_conn_sendf(other, "closed %s %d\n", sk_close_reason_name(why), sk_conn_error(c));
    else
        sk_conn_close(other);
}

static void relay_line(sk_conn *c, char *line, size_t len)
{
    sk_conn *other = sk_conn_data(c);
    if (sk_conn_outbound(c)) {
        if (other)
            sk_conn_sendf(other, "up: %.*s\n", (int)len, line);
    } else if (strncmp(line, "up ", 3) == 0 && !other) {
        sk_conn *up = NULL;
        int rc = sk_server_connect_tls(sk_conn_server(c), line + 3, 3000 * test_scale(),
                                       client_tls, "localhost", c, &up);
        if (rc < 0 || !up)
            sk_conn_sendf(c, "refused %d\n", rc);
        else
            sk_conn_set_data(c, up);
    } else if (strncmp(line, "send ", 5) == 0 && other) {
        sk_conn_sendf(other, "%s\n", line + 5);
    }
}

/* An upstream served by a thread of the test process. */
struct upstream {
    sk_server *s;
    pthread_t thread;
    char addr[SK_ADDR_STRLEN];
};

static void *upstream_main(void *arg)
{
    sk_server_run(((struct upstream *)arg)->s);
    return NULL;
}

static void upstream_start(struct upstream *u, sk_tls *tls)
{
    u->s = sk_server_new("127.0.0.1:0");
    assert_non_null(u->s);
    sk_server_on_data(u->s, raw_echo);
    if (tls)
        assert_int_equal(sk_server_set_tls(u->s, tls), 0);
    assert_int_equal(sk_server_bind(u->s), 0);
    sk_server_address(u->s, u->addr, sizeof(u->addr));
    assert_int_equal(pthread_create(&u->thread, NULL, upstream_main, u), 0);
}

static void upstream_stop(struct upstream *u)
{
    sk_server_stop(u->s);
    pthread_join(u->thread, NULL);
    sk_server_free(u->s);
}

static void outbound_tls_on_the_loop(void **state)
{
    (void)state;
    if (strcmp(backend, "fork") == 0 && workers > 0)
        skip(); /* a pool serves one connection per worker at a time */
    struct running r;
    sk_server *s = new_server(relay_line);
    sk_server_on_open(s, relay_open);
    sk_server_on_close(s, relay_close);
    sk_server_set_framing(s, SK_FRAMING_LINES, 1024);
    start(&r, s); /* forked before the upstreams' threads exist */
    sk_tls *good = server_config("server", NULL, NULL), *old = server_config("expired", NULL, NULL);
    struct upstream up[3];
    upstream_start(&up[0], good);
    upstream_start(&up[1], old);
    upstream_start(&up[2], NULL); /* speaks no TLS at all */
    char q[SK_ADDR_STRLEN + 8];
    int c = dial(&r);
    snprintf(q, sizeof(q), "up %s\n", up[0].addr);
    assert_int_equal(sk_write_all(c, q, strlen(q), 1000), (ssize_t)strlen(q));
    expect_text(c, "open TLSv1.3\n"); /* on_open after the handshake */
    assert_int_equal(sk_write_all(c, "send hello\n", 11, 1000), 11);
    expect_text(c, "up: hello\n");
    close(c);
    static const struct {
        int up;
        int err;
    } bad[] = {{1, SK_ETLS_EXPIRED}, {2, SK_ETLS}};
    for (int i = 0; i < 2; i++) {
        c = dial(&r);
        snprintf(q, sizeof(q), "up %s\n", up[bad[i].up].addr);
        assert_int_equal(sk_write_all(c, q, strlen(q), 1000), (ssize_t)strlen(q));
        char want[64];
        snprintf(want, sizeof(want), "closed connect %d\n", bad[i].err);
        expect_text_within(c, want, 5000 * test_scale());
        close(c);
    }
    wait_for(&sh->closes[SK_CLOSE_CONNECT], 2, 5000);
    wait_for(&sh->closes[SK_CLOSE_PEER], 3, 5000);
    finish(&r);
    for (int i = 0; i < 3; i++)
        upstream_stop(&up[i]);
    sk_tls_free(good);
    sk_tls_free(old);
}

int main(int argc, char **argv)
{
    if (harness_init(argc, argv) != 0)
        return 1;
    if (!sk_tls_available() || system("openssl version >/dev/null 2>&1") != 0) {
        printf("skipped: no TLS in this build, or no openssl command to make certificates\n");
        return 77;
    }
    snprintf(certs, sizeof(certs), "/tmp/sk-tls-XXXXXX");
    if (!mkdtemp(certs))
        return 1;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >/dev/null 2>&1", SK_MAKE_CERTS, certs);
    if (system(cmd) != 0) {
        fprintf(stderr, "%s failed\n", SK_MAKE_CERTS);
        return 1;
    }
    memset(big, 'b', sizeof(big));
    big[sizeof(big) - 1] = '\n';
    client_tls = client_config(NULL, NULL, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tls_echo_is_byte_exact, harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(stale_openssl_errors_do_not_fail_a_connection,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(tls_details_reach_the_handlers, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(bad_clients_end_only_their_own_connection, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(clients_name_what_is_wrong_with_a_certificate,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(client_certificates_are_checked, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(reload_changes_new_handshakes_and_keeps_open_ones,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(close_notify_and_resumption, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(broadcast_between_tls_clients, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(outbound_tls_on_the_loop, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_record_cut_short_is_waited_for, harness_setup,
                                        harness_teardown),
    };
    char group[64];
    snprintf(group, sizeof(group), "tls/%s/workers=%d", backend, workers);
    int rc = _cmocka_run_group_tests(group, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
    sk_tls_free(client_tls);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certs);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
