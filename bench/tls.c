/* SPDX-License-Identifier: MIT */
/* sk-bench's TLS client on OpenSSL 3 (see tls.h). One client context for
 * every thread; an SSL object per connection, driven on its non-blocking
 * socket by the workers' epoll loops. */
#include "load.h"
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>

static SSL_CTX *ctx;
static bool resume_on;
static atomic_bool told; /* the first failure has been shown */

/* Show the first failure's OpenSSL reason, then only count them; leave the
 * thread's error queue empty for the next call. */
static void failed(const char *what)
{
    if (!atomic_exchange(&told, true)) {
        char text[256];
        ERR_error_string_n(ERR_peek_error(), text, sizeof(text));
        fprintf(stderr, "sk-bench: TLS %s failed (first failure shown): %s\n", what, text);
    }
    ERR_clear_error();
}

int tls_setup(bool resume)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256")) {
        fprintf(stderr, "sk-bench: cannot make a TLS 1.3 client context\n");
        ERR_print_errors_fp(stderr);
        return -1;
    }
    /* Loopback and a throw-away certificate: nothing to verify against. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Partial writes: the engine sends what the socket takes, as with send();
     * moving buffer: a retried write may start at a new address (same bytes). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead: one recv() takes several records of a 64 KiB message. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* The client keeps no cache: a slot holds its own session (resume). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!resume)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    resume_on = resume;
    return 0;
}

int tls_begin(struct conn *c)
{
    c->ssl = SSL_new(ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_tlsext_host_name(c->ssl, "localhost") ||
        (resume_on && c->session && !SSL_set_session(c->ssl, c->session))) {
        failed("set-up");
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -1;
    }
    SSL_set_connect_state(c->ssl);
    c->want = EPOLLOUT;
    return 0;
}

/* After a failed call: 0 and the events to wait for, or -1. */
static int would_block(struct conn *c, int rc, const char *what)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        c->want = EPOLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->want = EPOLLOUT;
        return 0;
    case SSL_ERROR_ZERO_RETURN: /* the server closed: an error in an echo */
        ERR_clear_error();
        return -1;
    default:
        failed(what);
        return -1;
    }
}

int tls_handshake(struct conn *c)
{
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1)
        return 1;
    return would_block(c, rc, "handshake");
}

bool tls_resumed(const struct conn *c)
{
    return c->ssl && SSL_session_reused(c->ssl);
}

ssize_t tls_send(struct conn *c, const void *p, size_t n)
{
    size_t done;
    if (SSL_write_ex(c->ssl, p, n, &done))
        return (ssize_t)done;
    return would_block(c, 0, "write") == 0 ? 0 : -1;
}

ssize_t tls_recv(struct conn *c, void *buf, size_t n)
{
    size_t got = 0, k;
    /* What is decrypted or buffered now; more on the socket comes with the
     * next (level-triggered) event. */
    do {
        if (!SSL_read_ex(c->ssl, (char *)buf + got, n - got, &k)) {
            if (would_block(c, 0, "read") < 0 && got == 0)
                return -1;
            break;
        }
        got += k;
    } while (got < n && SSL_has_pending(c->ssl));
    return (ssize_t)got;
}

void tls_end(struct conn *c, bool clean)
{
    if (!c->ssl)
        return;
    if (clean && resume_on) {
        /* The newest session (a TLS 1.3 ticket arrives after the handshake,
         * before the echo); none if it cannot be resumed. */
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s && !SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(s);
            s = NULL;
        }
        SSL_SESSION_free(c->session);
        c->session = s;
    }
    if (clean)
        SSL_shutdown(c->ssl); /* close_notify, if the socket takes it now */
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
}

bool tls_built(void)
{
    return true;
}
