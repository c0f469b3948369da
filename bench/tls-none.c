/* SPDX-License-Identifier: MIT */
/* sk-bench without OpenSSL: --tls-no-verify is refused. */
#include "tls.h"

#include <stdio.h>

int tls_setup(bool resume)
{
    (void)resume;
    fprintf(stderr, "sk-bench: built without OpenSSL 3: no TLS\n");
    return -1;
}

int tls_begin(struct conn *c)
{
    (void)c;
    return -1;
}

int tls_handshake(struct conn *c)
{
    (void)c;
    return -1;
}

bool tls_resumed(const struct conn *c)
{
    (void)c;
    return false;
}

ssize_t tls_send(struct conn *c, const void *p, size_t n)
{
    (void)c, (void)p, (void)n;
    return -1;
}

ssize_t tls_recv(struct conn *c, void *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return -1;
}

void tls_end(struct conn *c, bool clean)
{
    (void)c, (void)clean;
}

bool tls_built(void)
{
    return false;
}
