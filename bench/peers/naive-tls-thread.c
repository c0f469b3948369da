/* SPDX-License-Identifier: MIT */
/*
 * The naive TLS echo: naive-thread with OpenSSL 3 in it, as a first TLS
 * server is written from the OpenSSL man pages. One process, one detached
 * thread per connection, blocking SSL_accept, then SSL_read and SSL_write
 * until the client leaves. OpenSSL's server defaults otherwise (TLS 1.2 and
 * 1.3, its ciphers, stateless session tickets: resumption works).
 *
 *   naive-tls-thread --cert CERT.pem --key KEY.pem [--listen HOST:PORT]
 */
#include "peer.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

static SSL_CTX *ctx;

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[BUF_SIZE];
    SSL *ssl = SSL_new(ctx);
    if (ssl && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
        size_t n, w;
        /* SSL_write_ex without partial writes: all n bytes, or a failure. */
        while (SSL_read_ex(ssl, buf, sizeof(buf), &n) && SSL_write_ex(ssl, buf, n, &w))
            ;
        SSL_shutdown(ssl);
    }
    ERR_clear_error(); /* the thread's error queue, before it ends */
    SSL_free(ssl);
    close(fd);
    return NULL;
}

/* Take --cert FILE and --key FILE out of argv (peer_parse knows the rest). */
static void take_files(int *argc, char **argv, const char **cert, const char **key)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--cert") == 0 && i + 1 < *argc)
            *cert = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < *argc)
            *key = argv[++i];
        else
            argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
}

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c || SSL_CTX_use_certificate_chain_file(c, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c) != 1) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(c);
        return NULL;
    }
    return c;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL;
    struct peer_opts o;
    take_files(&argc, argv, &cert, &key);
    peer_parse(argc, argv, &o, false, NULL);
    if (!cert || !key) {
        fprintf(stderr, "usage: naive-tls-thread --cert CERT.pem --key KEY.pem "
                        "[--listen HOST:PORT]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* SSL_write to a closed socket: an error, not a signal */
    if (!(ctx = make_ctx(cert, key)))
        return 1;
    int lfd = peer_listen((struct sockaddr *)&o.addr, o.addr_len, false, false);
    if (lfd < 0) {
        perror("naive-tls-thread: listen");
        return 1;
    }
    peer_announce(lfd);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* EINTR, ECONNABORTED, out of descriptors: try again */
        peer_nodelay(fd);
        pthread_t tid;
        if (pthread_create(&tid, &attr, serve, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}
