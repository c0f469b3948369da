/* SPDX-License-Identifier: MIT */
/* TLS over OpenSSL 3: configurations, the TLS transport under conn.c, and
 * the blocking client streams.
 *
 * OpenSSL reads from the socket itself (a BIO of ours: recv() straight into
 * its buffer, with read-ahead, so one record is one system call), but writes
 * only into a buffer of ours, which we send. A write therefore never blocks
 * inside OpenSSL: no handshake step or read ever waits on the socket turning
 * writable (OpenSSL's WANT_WRITE never happens); what is left unsent is the
 * transport's output, which the loop flushes as it flushes a connection's
 * queue. The same split lets a completion-based backend hand that buffer to
 * its own send. Plaintext is encrypted at most WRITE_MAX at a time and only
 * once the buffer is empty, so it stays bounded. */
#include "tls.h"
#include "transport.h"

#include <sockkit/error.h>
#include <sockkit/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITE_MAX (64 * 1024) /* plaintext encrypted by one write */
#define WBUF_KEEP (16 * 1024) /* an emptied output buffer larger than this is freed */

struct sk_tls {
    pthread_mutex_t lock; /* ctx: swapped by a reload */
    SSL_CTX *ctx;
    bool server;
    bool insecure;
    int refs; /* atomic */
    unsigned char *alpn; /* wire format (length-prefixed), or NULL */
    unsigned alpn_len;
};

/* One TLS session over a socket: a connection's transport state, or a stream. */
struct sk__tls_io {
    SSL *ssl;
    sk_tls *tls;
    int fd;
    char *wbuf; /* ciphertext not yet sent: [woff, wlen) */
    size_t wlen, woff, wcap;
    int err;         /* the last socket error the BIO met, -errno, or 0 */
    bool short_read; /* the BIO's last recv() returned less than asked: the socket is empty */
    bool block;      /* the next recv() may wait (a parked reader): once */
    bool more;       /* the last read filled its buffer: OpenSSL may hold more records */
    bool fin_owed;   /* shutdown(SHUT_WR) once the buffer is sent */
    bool fin_sent;
    bool closed;     /* close_notify sent (reading goes on: a half-close) */
    bool ended;      /* `end` is owed to the next read (met after returning data) */
    ssize_t end;
    char *peer;      /* sk_conn_tls_peer(), made once */
    char *alpn;      /* sk_conn_tls_alpn(), made once */
};

bool sk_tls_available(void)
{
    return true;
}

/* ---- the BIO: reads from the socket, writes into our buffer ------------- */

static int bio_write(BIO *b, const char *data, int len)
{
    struct sk__tls_io *io = BIO_get_data(b);
    size_t need = io->wlen + (size_t)len;
    if (need > io->wcap) {
        size_t cap = io->wcap ? io->wcap : 1024;
        while (cap < need)
            cap *= 2;
        char *more = realloc(io->wbuf, cap);
        if (!more) {
            io->err = -ENOMEM;
            return -1;
        }
        io->wbuf = more;
        io->wcap = cap;
    }
    memcpy(io->wbuf + io->wlen, data, (size_t)len);
    io->wlen += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    struct sk__tls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(io->fd, buf, (size_t)len, io->block ? 0 : MSG_DONTWAIT);
    io->block = false;
    if (n >= 0) {
        io->short_read = n < len;
        return (int)n;
    }
    /* EINTR: a parked reader woken, or a signal: try again later, as for EAGAIN */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        io->short_read = true;
        BIO_set_retry_read(b);
    } else {
        io->err = -errno;
    }
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* Loading files into a new context (sk_tls_reload() on a program's thread,
 * say) takes OpenSSL's global locks and its allocator: a fork (the fork
 * backend's parent, making a child) must not copy them held, or the child
 * waits forever on its first handshake. Making a context holds this lock,
 * and so does fork() (pthread_atfork). */
static pthread_mutex_t making = PTHREAD_MUTEX_INITIALIZER;

static void fork_prepare(void)
{
    pthread_mutex_lock(&making);
}

static void fork_done(void)
{
    pthread_mutex_unlock(&making);
}

static void bio_method_make(void)
{
    pthread_atfork(fork_prepare, fork_done, fork_done);
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sockkit");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl))
        bio_method = m;
    else
        BIO_meth_free(m);
}

/* ---- sending what OpenSSL wrote ------------------------------------------ */

/* Send the buffer: 0 when it is empty (and a FIN owed is sent), -EAGAIN when
 * the socket is full, or -errno. */
static int io_flush(struct sk__tls_io *io)
{
    while (io->woff < io->wlen) {
        ssize_t n = send(io->fd, io->wbuf + io->woff, io->wlen - io->woff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            io->woff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
            return -EAGAIN;
        } else {
            return -errno;
        }
    }
    io->woff = io->wlen = 0;
    if (io->wcap > WBUF_KEEP) { /* an idle connection holds no large buffer */
        free(io->wbuf);
        io->wbuf = NULL;
        io->wcap = 0;
    }
    if (io->fin_owed && !io->fin_sent) {
        io->fin_sent = true;
        if (shutdown(io->fd, SHUT_WR) < 0 && errno != ENOTCONN)
            return -errno;
    }
    return 0;
}

static bool io_unsent(const struct sk__tls_io *io)
{
    return io->woff < io->wlen || (io->fin_owed && !io->fin_sent);
}

/* ---- errors ------------------------------------------------------------- */

static int verify_code(long v)
{
    switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return SK_ETLS_EXPIRED;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return SK_ETLS_UNTRUSTED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return SK_ETLS_HOSTNAME;
    default:
        return SK_ETLS_CERT;
    }
}

/* Empty the thread's error queue before an I/O call, as SSL_get_error()
 * needs. It is nearly always empty already (every failure empties it), and
 * looking is much cheaper than ERR_clear_error()'s sweep of every slot: this
 * runs twice per message. */
static void errors_cleared(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Why a handshake step failed (err: SSL_get_error's). OpenSSL's error queue
 * is emptied: nothing of it stays with the thread. */
static int failure(struct sk__tls_io *io, int err)
{
    int code = SK_ETLS;
    long v = SSL_get_verify_result(io->ssl);
    unsigned long e = ERR_peek_last_error();
    if (err == SSL_ERROR_SYSCALL && io->err)
        code = io->err;
    else if (v != X509_V_OK)
        code = verify_code(v);
    else if (ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        code = SK_ETLS_CERT;
    ERR_clear_error();
    return code;
}

/* ---- configurations ------------------------------------------------------ */

static void say(char *why, size_t size, const char *file, const char *reason)
{
    if (why && size)
        snprintf(why, size, "%s: %s", file, reason);
}

/* OpenSSL's reason for the last failure, its queue emptied. */
static const char *ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, size, "%s", r ? r : "rejected by OpenSSL");
    ERR_clear_error();
    return buf;
}

/* A file we cannot even open is named with the system's reason. */
static bool readable(const char *file, char *why, size_t size)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        say(why, size, file, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static int alpn_wire(const char *list, unsigned char **wire, unsigned *len)
{
    *wire = NULL;
    *len = 0;
    if (!list || !*list)
        return 0;
    size_t n = strlen(list);
    unsigned char *w = malloc(n + 1);
    if (!w)
        return -ENOMEM;
    size_t at = 0;
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k > 255) {
            free(w);
            return -EINVAL;
        }
        w[at++] = (unsigned char)k;
        memcpy(w + at, p, k);
        at += k;
        p += k + (p[k] == ',');
    }
    *wire = w;
    *len = (unsigned)at;
    return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    sk_tls *t = arg;
    (void)ssl;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, t->alpn, t->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* A context made from config for the given side: NULL, with *rc and why set. */
static SSL_CTX *ctx_make(const sk_tls_config *cfg, bool server, sk_tls *t, int *rc, char *why,
                         size_t size)
{
    char reason[256];
    *rc = SK_ETLS_FILE;
    if (server && (!cfg->cert_file || !cfg->key_file)) {
        say(why, size, "tls", "a server needs a certificate and a key file");
        *rc = -EINVAL;
        return NULL;
    }
    if (!cfg->cert_file != !cfg->key_file) {
        say(why, size, cfg->cert_file ? cfg->cert_file : cfg->key_file,
            "a certificate needs its key file, and a key its certificate");
        *rc = -EINVAL;
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        ERR_clear_error();
        *rc = -ENOMEM;
        say(why, size, "tls", "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (cfg->cert_file) {
        if (!readable(cfg->cert_file, why, size) || !readable(cfg->key_file, why, size))
            goto fail;
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
            say(why, size, cfg->cert_file, ssl_reason(reason, sizeof(reason)));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            say(why, size, cfg->key_file, ssl_reason(reason, sizeof(reason)));
            goto fail;
        }
    }
    if (cfg->ca_file) {
        if (!readable(cfg->ca_file, why, size))
            goto fail;
        if (SSL_CTX_load_verify_file(ctx, cfg->ca_file) != 1) {
            say(why, size, cfg->ca_file, ssl_reason(reason, sizeof(reason)));
            goto fail;
        }
    } else if (!server && !cfg->insecure_no_verify) {
        SSL_CTX_set_default_verify_paths(ctx);
        ERR_clear_error(); /* a store that is missing fails each verification instead */
    }
    if (server) {
        static const unsigned char sid[] = "sockkit";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        if (cfg->ca_file) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            ERR_clear_error();
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
        if (t->alpn)
            SSL_CTX_set_alpn_select_cb(ctx, alpn_select, t);
    } else {
        SSL_CTX_set_verify(ctx, cfg->insecure_no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                           NULL);
        if (t->alpn && SSL_CTX_set_alpn_protos(ctx, t->alpn, t->alpn_len) != 0) {
            *rc = -ENOMEM;
            goto fail;
        }
    }
    *rc = 0;
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static bool config_ok(const sk_tls_config *cfg)
{
    return cfg && cfg->size >= offsetof(sk_tls_config, insecure_no_verify) + sizeof(bool);
}

/* ctx_make() under the lock a fork waits for. */
static SSL_CTX *ctx_make_locked(const sk_tls_config *cfg, bool server, sk_tls *t, int *rc,
                                char *why, size_t size)
{
    if (pthread_once(&bio_once, bio_method_make) != 0 || !bio_method) {
        *rc = -ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&making);
    SSL_CTX *ctx = ctx_make(cfg, server, t, rc, why, size);
    pthread_mutex_unlock(&making);
    return ctx;
}

static int tls_new(const sk_tls_config *cfg, bool server, sk_tls **out, char *why, size_t size)
{
    if (why && size)
        why[0] = '\0';
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!config_ok(cfg)) {
        say(why, size, "tls", "no configuration, or its size is unknown");
        return -EINVAL;
    }
    sk_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->server = server;
    t->insecure = !server && cfg->insecure_no_verify;
    t->refs = 1;
    int rc = alpn_wire(cfg->alpn, &t->alpn, &t->alpn_len);
    if (rc < 0) {
        say(why, size, "alpn", rc == -EINVAL ? "empty or too long a protocol name" : "no memory");
        free(t);
        return rc;
    }
    t->ctx = ctx_make_locked(cfg, server, t, &rc, why, size);
    if (!t->ctx) {
        free(t->alpn);
        free(t);
        return rc;
    }
    pthread_mutex_init(&t->lock, NULL);
    *out = t;
    return 0;
}

int sk_tls_server_new(const sk_tls_config *cfg, sk_tls **out, char *why, size_t size)
{
    return tls_new(cfg, true, out, why, size);
}

int sk_tls_client_new(const sk_tls_config *cfg, sk_tls **out, char *why, size_t size)
{
    return tls_new(cfg, false, out, why, size);
}

int sk_tls_reload(sk_tls *t, const sk_tls_config *cfg, char *why, size_t size)
{
    int rc;
    if (why && size)
        why[0] = '\0';
    if (!t || !config_ok(cfg))
        return -EINVAL;
    if (!t->server && cfg->insecure_no_verify != t->insecure)
        return -EINVAL; /* a client's verification is not switched off by a reload */
    SSL_CTX *ctx = ctx_make_locked(cfg, t->server, t, &rc, why, size);
    if (!ctx)
        return rc;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_lock(&making);
    SSL_CTX_free(old); /* sessions made with it keep it until they end */
    pthread_mutex_unlock(&making);
    return 0;
}

sk_tls *sk__tls_ref(sk_tls *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

bool sk__tls_is_server(const sk_tls *t)
{
    return t->server;
}

bool sk__tls_insecure(const sk_tls *t)
{
    return t->insecure;
}

void sk_tls_free(sk_tls *t)
{
    if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t->alpn);
    free(t);
}

/* ---- one session ------------------------------------------------------- */

static bool is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static void io_free(struct sk__tls_io *io)
{
    if (!io)
        return;
    SSL_free(io->ssl); /* frees the BIO */
    sk_tls_free(io->tls);
    free(io->wbuf);
    free(io->peer);
    free(io->alpn);
    free(io);
}

/* A session of t's current context; a client's checks host (NULL: none). */
static struct sk__tls_io *io_new(sk_tls *t, int fd, const char *host)
{
    if (pthread_once(&bio_once, bio_method_make) != 0 || !bio_method)
        return NULL;
    struct sk__tls_io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->fd = fd;
    pthread_mutex_lock(&t->lock);
    io->ssl = SSL_new(t->ctx); /* holds its context: a reload does not free it */
    pthread_mutex_unlock(&t->lock);
    io->tls = sk__tls_ref(t);
    BIO *bio = io->ssl ? BIO_new(bio_method) : NULL;
    if (!bio) {
        ERR_clear_error();
        io_free(io);
        return NULL;
    }
    BIO_set_data(bio, io);
    BIO_set_init(bio, 1);
    SSL_set_bio(io->ssl, bio, bio);
    bool ok = true;
    if (t->server) {
        SSL_set_accept_state(io->ssl);
    } else {
        SSL_set_connect_state(io->ssl);
        if (host && !t->insecure) {
            if (is_ip(host))
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(io->ssl), host) == 1;
            else
                ok = SSL_set1_host(io->ssl, host) == 1;
        }
        if (ok && host && !is_ip(host))
            ok = SSL_set_tlsext_host_name(io->ssl, host) == 1;
    }
    if (!ok) {
        ERR_clear_error();
        io_free(io);
        return NULL;
    }
    return io;
}

/* One handshake step: 1 done, -EAGAIN (more input needed; what it wrote is
 * sent or left for the flush), or why it failed. */
static int io_handshake(struct sk__tls_io *io)
{
    ERR_clear_error();
    int r = SSL_do_handshake(io->ssl);
    int rc = r == 1 ? 1 : 0;
    if (r != 1) {
        int e = SSL_get_error(io->ssl, r);
        rc = e == SSL_ERROR_WANT_READ ? -EAGAIN : failure(io, e);
    }
    int f = io_flush(io); /* its flight, or the alert that tells the peer why */
    bool went_on = rc == 1 || rc == -EAGAIN;
    return went_on && f < 0 && f != -EAGAIN ? f : rc; /* the first failure is the one */
}

/* Read plaintext: up to len bytes, stopping once the socket is empty (a short
 * result means no more is there, as for a plain socket); 0 at the end; -EAGAIN;
 * or -errno / SK_ETLS. */
static ssize_t io_read(struct sk__tls_io *io, void *buf, size_t len)
{
    if (io->ended) {
        io->ended = false;
        return io->end;
    }
    size_t got = 0;
    ssize_t end = -EAGAIN;
    while (got < len) {
        size_t n = 0;
        io->short_read = false;
        errors_cleared();
        int r = SSL_read_ex(io->ssl, (char *)buf + got, len - got, &n);
        if (r == 1) {
            got += n;
            if (io->short_read && !SSL_has_pending(io->ssl))
                break; /* the socket gave all it had, and all is decrypted */
            continue;
        }
        int e = SSL_get_error(io->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            end = -EAGAIN;
        else if (e == SSL_ERROR_ZERO_RETURN)
            end = 0;
        else if (e == SSL_ERROR_SYSCALL && !io->err)
            end = 0; /* the peer closed without close_notify: an end, as a FIN */
        else
            end = failure(io, e);
        break;
    }
    int f = io_flush(io); /* what reading wrote (tickets, a key update's answer) */
    io->more = got == len; /* else it stopped for want of input: the socket will say */
    if (got > 0) {
        if (end != -EAGAIN) { /* owed to the next read */
            io->ended = true;
            io->end = end;
        }
        return (ssize_t)got;
    }
    if (end == -EAGAIN && f < 0 && f != -EAGAIN)
        return f;
    return end;
}

/* Encrypt and send: bytes of plaintext taken (> 0), -EAGAIN (the socket has
 * not taken the last ones yet), or -errno / SK_ETLS. */
static ssize_t io_writev(struct sk__tls_io *io, const struct iovec *iov, int n)
{
    int f = io_flush(io);
    if (f < 0)
        return f;
    size_t taken = 0;
    for (int i = 0; i < n && taken < WRITE_MAX; i++) {
        size_t want = iov[i].iov_len, done = 0;
        if (want > WRITE_MAX - taken)
            want = WRITE_MAX - taken;
        if (want == 0)
            continue;
        errors_cleared();
        if (SSL_write_ex(io->ssl, iov[i].iov_base, want, &done) != 1) {
            int e = SSL_get_error(io->ssl, 0);
            int code = failure(io, e);
            if (taken > 0)
                break;
            return code;
        }
        taken += done;
    }
    f = io_flush(io);
    if (f < 0 && f != -EAGAIN && taken == 0)
        return f;
    return (ssize_t)taken; /* a send that failed is met again by the next call */
}

/* close_notify (after a complete handshake), then the FIN once all is sent. */
static int io_shutdown(struct sk__tls_io *io)
{
    if (!io->closed && SSL_is_init_finished(io->ssl)) {
        ERR_clear_error();
        SSL_shutdown(io->ssl);
        ERR_clear_error();
    }
    io->closed = true;
    io->fin_owed = true;
    int f = io_flush(io);
    return f == -EAGAIN ? 0 : f;
}

/* ---- the connection transport ------------------------------------------- */

static ssize_t tp_read(sk_conn *c, void *buf, size_t len, bool wait)
{
    struct sk__tls_io *io = c->tp_state;
    io->block = wait; /* a parked reader (single.c): its first recv() waits */
    return io_read(io, buf, len);
}

static ssize_t tp_writev(sk_conn *c, const struct iovec *iov, int n)
{
    return io_writev(c->tp_state, iov, n);
}

static int tp_shutdown(sk_conn *c)
{
    return io_shutdown(c->tp_state);
}

/* Input no readiness event will announce: records OpenSSL took from the
 * socket and a full read left (not a record cut short: the rest of it comes
 * through the socket, which says so), or an end owed. */
static bool tp_has_pending(const sk_conn *c)
{
    const struct sk__tls_io *io = c->tp_state;
    return io->ended || io->more;
}

static void tp_free(sk_conn *c)
{
    io_free(c->tp_state);
    c->tp_state = NULL;
}

static int tp_handshake(sk_conn *c)
{
    struct sk__tls_io *io = c->tp_state;
    io->fd = c->fd; /* an outbound connection's socket came after its session */
    return io_handshake(io);
}

static int tp_flush(sk_conn *c)
{
    return io_flush(c->tp_state);
}

static bool tp_has_output(const sk_conn *c)
{
    return io_unsent(c->tp_state);
}

const struct sk__transport sk__transport_tls = {
    .read = tp_read,
    .writev = tp_writev,
    .shutdown = tp_shutdown,
    .has_pending = tp_has_pending,
    .free = tp_free,
    .handshake = tp_handshake,
    .flush = tp_flush,
    .has_output = tp_has_output,
};

int sk__tls_attach(sk_conn *c, sk_tls *t, const char *host)
{
    struct sk__tls_io *io = io_new(t, c->fd, host);
    if (!io)
        return -ENOMEM;
    c->tp = &sk__transport_tls;
    c->tp_state = io;
    c->handshaking = true;
    return 0;
}

/* ---- what a connection can tell ----------------------------------------- */

static const struct sk__tls_io *done_io(const sk_conn *c)
{
    return c && c->tp == &sk__transport_tls && !c->handshaking ? c->tp_state : NULL;
}

bool sk_conn_is_tls(const sk_conn *c)
{
    return c && c->tp == &sk__transport_tls;
}

const char *sk_conn_tls_version(const sk_conn *c)
{
    const struct sk__tls_io *io = done_io(c);
    return io ? SSL_get_version(io->ssl) : NULL;
}

const char *sk_conn_tls_cipher(const sk_conn *c)
{
    const struct sk__tls_io *io = done_io(c);
    return io ? SSL_get_cipher_name(io->ssl) : NULL;
}

const char *sk_conn_tls_alpn(const sk_conn *c)
{
    const struct sk__tls_io *io = done_io(c);
    const unsigned char *p = NULL;
    unsigned len = 0;
    if (!io)
        return NULL;
    if (!io->alpn) { /* OpenSSL's is not NUL-terminated: a copy, valid with the connection */
        SSL_get0_alpn_selected(io->ssl, &p, &len);
        ((struct sk__tls_io *)io)->alpn = p && len ? strndup((const char *)p, len) : NULL;
    }
    return io->alpn;
}

const char *sk_conn_tls_peer(sk_conn *c)
{
    struct sk__tls_io *io = (struct sk__tls_io *)done_io(c);
    if (!io)
        return NULL;
    if (!io->peer) {
        X509 *cert = SSL_get1_peer_certificate(io->ssl);
        if (!cert)
            return NULL;
        BIO *m = BIO_new(BIO_s_mem());
        if (m && X509_NAME_print_ex(m, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
            char *p = NULL;
            long n = BIO_get_mem_data(m, &p);
            io->peer = n >= 0 ? strndup(p, (size_t)n) : NULL;
        }
        BIO_free(m);
        X509_free(cert);
        ERR_clear_error();
    }
    return io->peer;
}

bool sk_conn_tls_resumed(const sk_conn *c)
{
    const struct sk__tls_io *io = done_io(c);
    return io && SSL_session_reused(io->ssl);
}

/* ---- blocking streams ---------------------------------------------------- */

struct sk_tls_stream {
    struct sk__tls_io *io;
};

/* Wait until fd is ready for events or the deadline (sk__deadline) passes:
 * 0, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    int r = sk__wait(fd, events, deadline);
    return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : r;
}

/* Send all the stream holds, waiting until the deadline. */
static int stream_drain(struct sk__tls_io *io, int64_t deadline)
{
    for (;;) {
        int f = io_flush(io);
        if (f != -EAGAIN)
            return f;
        int w = wait_fd(io->fd, POLLOUT, deadline);
        if (w < 0)
            return w;
    }
}

int sk_tls_connect(const char *address, int timeout_ms, sk_tls *t, const char *host,
                   sk_tls_stream **out)
{
    struct sk__hostport hp;
    if (out)
        *out = NULL;
    if (!address || !t || t->server || !out)
        return -EINVAL;
    if (!host && sk__hostport_split(address, &hp) == 0 && hp.kind == SK__HOST)
        host = hp.host; /* the host part of host:port or [v6]:port */
    if (!host && !t->insecure)
        return -EINVAL; /* nothing to check the certificate against */
    int64_t deadline = sk__deadline(timeout_ms);
    int fd = sk_connect(address, timeout_ms);
    if (fd < 0)
        return fd;
    int rc = sk_set_nonblocking(fd, true);
    sk_tls_stream *s = rc < 0 ? NULL : calloc(1, sizeof(*s));
    if (s && !(s->io = io_new(t, fd, host))) {
        free(s);
        s = NULL;
    }
    if (!s) {
        close(fd);
        return rc < 0 ? rc : -ENOMEM;
    }
    for (;;) {
        rc = io_handshake(s->io);
        if (rc != -EAGAIN)
            break;
        int w = stream_drain(s->io, deadline);
        rc = w < 0 ? w : wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            break;
    }
    if (rc == 1)
        rc = stream_drain(s->io, deadline);
    if (rc < 0) {
        io_free(s->io);
        free(s);
        close(fd);
        return rc;
    }
    *out = s;
    return 0;
}

ssize_t sk_tls_write_all(sk_tls_stream *s, const void *buf, size_t len, int timeout_ms)
{
    if (!s || (!buf && len))
        return -EINVAL;
    int64_t deadline = sk__deadline(timeout_ms);
    size_t done = 0;
    while (done < len) {
        struct iovec iov = {.iov_base = (char *)buf + done, .iov_len = len - done};
        ssize_t n = io_writev(s->io, &iov, 1);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n != -EAGAIN)
            return n;
        int w = wait_fd(s->io->fd, POLLOUT, deadline);
        if (w < 0)
            return w;
    }
    int f = stream_drain(s->io, deadline);
    return f < 0 ? f : (ssize_t)len;
}

ssize_t sk_tls_read_some(sk_tls_stream *s, void *buf, size_t len, int timeout_ms)
{
    if (!s || !buf || len == 0)
        return -EINVAL;
    int64_t deadline = sk__deadline(timeout_ms);
    for (;;) {
        ssize_t n = io_read(s->io, buf, len);
        if (n != -EAGAIN)
            return n;
        int f = stream_drain(s->io, deadline); /* what reading wrote */
        if (f < 0)
            return f;
        int w = wait_fd(s->io->fd, POLLIN, deadline);
        if (w < 0)
            return w;
    }
}

int sk_tls_shutdown(sk_tls_stream *s, int timeout_ms)
{
    if (!s)
        return -EINVAL;
    int rc = io_shutdown(s->io);
    return rc < 0 ? rc : stream_drain(s->io, sk__deadline(timeout_ms));
}

int sk_tls_stream_fd(const sk_tls_stream *s)
{
    return s ? s->io->fd : -EINVAL;
}

void sk_tls_close(sk_tls_stream *s)
{
    if (!s)
        return;
    int fd = s->io->fd;
    io_shutdown(s->io); /* close_notify if the socket takes it now: never waits */
    io_free(s->io);
    free(s);
    close(fd);
}
