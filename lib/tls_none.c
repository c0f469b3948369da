/* SPDX-License-Identifier: MIT */
/* The TLS API of a library built without OpenSSL: each says so. */
#include "tls.h"

#include <sockkit/error.h>

#include <stdio.h>

static int none(char *why, size_t size)
{
    if (why && size)
        snprintf(why, size, "tls: %s", sk_strerror(SK_ENOTLS));
    return SK_ENOTLS;
}

bool sk_tls_available(void)
{
    return false;
}

int sk_tls_server_new(const sk_tls_config *cfg, sk_tls **out, char *why, size_t size)
{
    (void)cfg;
    if (out)
        *out = NULL;
    return none(why, size);
}

int sk_tls_client_new(const sk_tls_config *cfg, sk_tls **out, char *why, size_t size)
{
    return sk_tls_server_new(cfg, out, why, size);
}

int sk_tls_reload(sk_tls *tls, const sk_tls_config *cfg, char *why, size_t size)
{
    (void)tls, (void)cfg;
    return none(why, size);
}

void sk_tls_free(sk_tls *tls)
{
    (void)tls;
}

sk_tls *sk__tls_ref(sk_tls *tls)
{
    return tls;
}

bool sk__tls_is_server(const sk_tls *tls)
{
    (void)tls;
    return false;
}

bool sk__tls_insecure(const sk_tls *tls)
{
    (void)tls;
    return false;
}

int sk__tls_attach(sk_conn *c, sk_tls *tls, const char *host)
{
    (void)c, (void)tls, (void)host;
    return SK_ENOTLS;
}

bool sk_conn_is_tls(const sk_conn *c)
{
    (void)c;
    return false;
}

const char *sk_conn_tls_version(const sk_conn *c)
{
    (void)c;
    return NULL;
}

const char *sk_conn_tls_cipher(const sk_conn *c)
{
    (void)c;
    return NULL;
}

const char *sk_conn_tls_alpn(const sk_conn *c)
{
    (void)c;
    return NULL;
}

const char *sk_conn_tls_peer(sk_conn *c)
{
    (void)c;
    return NULL;
}

bool sk_conn_tls_resumed(const sk_conn *c)
{
    (void)c;
    return false;
}

int sk_tls_connect(const char *address, int timeout_ms, sk_tls *tls, const char *host,
                   sk_tls_stream **out)
{
    (void)address, (void)timeout_ms, (void)tls, (void)host;
    if (out)
        *out = NULL;
    return SK_ENOTLS;
}

ssize_t sk_tls_write_all(sk_tls_stream *s, const void *buf, size_t len, int timeout_ms)
{
    (void)s, (void)buf, (void)len, (void)timeout_ms;
    return SK_ENOTLS;
}

ssize_t sk_tls_read_some(sk_tls_stream *s, void *buf, size_t len, int timeout_ms)
{
    (void)s, (void)buf, (void)len, (void)timeout_ms;
    return SK_ENOTLS;
}

int sk_tls_shutdown(sk_tls_stream *s, int timeout_ms)
{
    (void)s, (void)timeout_ms;
    return SK_ENOTLS;
}

int sk_tls_stream_fd(const sk_tls_stream *s)
{
    (void)s;
    return SK_ENOTLS;
}

void sk_tls_close(sk_tls_stream *s)
{
    (void)s;
}
