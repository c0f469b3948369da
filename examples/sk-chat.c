/* SPDX-License-Identifier: MIT */
/* A chat peer: --listen waits for one peer, --connect dials one (another
 * sk-chat, or sk-chat-server); --tls speaks TLS to it, checking its
 * certificate against --ca FILE or the system's store (--insecure: not at
 * all). What you type goes to the peer; what the peer sends is printed, its
 * control characters escaped (text.h) so that it shows on the terminal but
 * cannot act on it. One process and poll(2): no fork, no signals. When stdin
 * ends, what is left is sent, the write side is shut down, and sk-chat exits
 * once the peer closes; when the peer closes, it exits at once. */
#define _POSIX_C_SOURCE 200809L
#include "text.h"

#include <sockkit/sockkit.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK 65536 /* bytes read from stdin or the peer at a time */

static int usage(FILE *f, int status)
{
    fprintf(f, "usage: sk-chat --connect ADDR [--tls [--ca FILE] [--insecure]] | --listen ADDR\n"
               "  --connect ADDR  talk to the peer or sk-chat-server at ADDR (host:port)\n"
               "  --tls           over TLS, the server's certificate checked against the\n"
               "                  system's store and ADDR's host name\n"
               "  --ca FILE       check it against this CA instead (implies --tls)\n"
               "  --insecure      do NOT check it (implies --tls; for tests only)\n"
               "  --listen ADDR   wait at ADDR for one peer (port 0 picks a free one)\n");
    return status;
}

/* Wait at @address for one peer: its socket, or a negative code. */
static int wait_for_peer(const char *address)
{
    char where[SK_ADDR_STRLEN], peer[SK_ADDR_STRLEN];
    int fd = sk_listen(address, SK_REUSE_ADDR, 1);
    if (fd < 0)
        return fd;
    sk_local_addr(fd, where, sizeof(where));
    printf("listening on %s\n", where);
    fflush(stdout);
    int conn = sk_accept(fd, NULL);
    close(fd);
    if (conn >= 0 && sk_peer_addr(conn, peer, sizeof(peer)) >= 0)
        fprintf(stderr, "sk-chat: %s joined\n", peer);
    return conn;
}

/* Print @len bytes at @from, from the peer: each line through text_clean(),
 * its "\n" kept. */
static int show(const char *from, size_t len)
{
    static char text[TEXT_CLEAN_SIZE(CHUNK)];
    size_t n = 0;
    for (const char *nl; (nl = memchr(from, '\n', len)) != NULL; from = nl + 1) {
        n += text_clean(text + n, from, (size_t)(nl - from));
        text[n++] = '\n';
        len -= (size_t)(nl + 1 - from);
    }
    n += text_clean(text + n, from, len);
    ssize_t rc = sk_write_all(STDOUT_FILENO, text, n, -1);
    return rc < 0 ? (int)rc : 0;
}

/* How many bytes at the end of @buf start a UTF-8 character that is not all
 * there yet: they wait for the next read rather than show as U+FFFD. */
static size_t unfinished(const char *buf, size_t len)
{
    for (size_t i = 1; i <= 3 && i <= len; i++) {
        unsigned char c = (unsigned char)buf[len - i];
        if (c < 0x80)
            return 0;
        if (c >= 0xc0) /* a lead byte: its character has 2, 3 or 4 bytes */
            return (c >= 0xf0 ? 4u : c >= 0xe0 ? 3u : 2u) > i ? i : 0;
    }
    return 0;
}

/* The peer, plain or TLS: a socket and, over TLS, its stream. */
struct peer {
    int fd;
    sk_tls_stream *tls;
};

/* Send what it takes now: bytes taken, or a negative code. Over TLS the
 * stream takes it all (sk_tls_write_all waits for the socket). */
static ssize_t peer_send(const struct peer *p, const char *buf, size_t len)
{
    if (p->tls)
        return sk_tls_write_all(p->tls, buf, len, -1);
    ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return n >= 0 || errno == EAGAIN || errno == EINTR ? (n > 0 ? n : 0) : -errno;
}

/* Read what has come: bytes, 0 at the end, -EAGAIN when nothing has. */
static ssize_t peer_recv(const struct peer *p, char *buf, size_t len)
{
    if (p->tls) {
        ssize_t n = sk_tls_read_some(p->tls, buf, len, 0);
        return n == -ETIMEDOUT ? -EAGAIN : n;
    }
    ssize_t n = recv(p->fd, buf, len, 0);
    return n >= 0 ? n : errno == EINTR ? -EAGAIN : -errno;
}

static int peer_shutdown(const struct peer *p)
{
    return p->tls ? sk_tls_shutdown(p->tls, -1) : shutdown(p->fd, SHUT_WR) < 0 ? -errno : 0;
}

/* Copy stdin to the peer and the peer to stdout until the peer closes. Input
 * the peer has not taken yet waits in @in, and stdin is not read meanwhile. */
static int chat(const struct peer *peer)
{
    int sock = peer->fd;
    bool full = false; /* a TLS read filled the buffer: more may be inside the stream */
    static char in[CHUNK], out[CHUNK];
    size_t off = 0, len = 0; /* in[off .. off + len) is still to be sent */
    size_t kept = 0;         /* out[0 .. kept) is a character cut short, not shown yet */
    bool input = true, shut = false;
    sk_set_nonblocking(sock, true);
    for (;;) {
        struct pollfd p[2] = {
            {.fd = sock, .events = POLLIN | (len ? POLLOUT : 0)},
            {.fd = input && !len ? STDIN_FILENO : -1, .events = POLLIN},
        };
        if (poll(p, 2, full ? 0 : -1) < 0 && errno != EINTR)
            return -errno;
        if (full)
            p[0].revents |= POLLIN;
        if (p[1].revents) {
            ssize_t n = read(STDIN_FILENO, in, sizeof(in));
            if (n > 0) {
                off = 0;
                len = (size_t)n;
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                input = false;
            }
        }
        if (len) {
            ssize_t n = peer_send(peer, in + off, len);
            if (n < 0)
                return (int)n;
            if (n > 0) {
                off += (size_t)n;
                len -= (size_t)n;
            }
        }
        if (!input && !len && !shut) {
            peer_shutdown(peer); /* the peer reads end of file */
            shut = true;
        }
        full = false;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = peer_recv(peer, out + kept, sizeof(out) - kept);
            if (n < 0 && n != -EAGAIN)
                return (int)n;
            full = peer->tls && n > 0 && (size_t)n == sizeof(out) - kept;
            if (n >= 0) {
                size_t have = kept + (size_t)n;
                int rc;
                kept = n > 0 ? unfinished(out, have) : 0; /* at the end, show it all */
                if ((rc = show(out, have - kept)) < 0)
                    return rc;
                memmove(out, out + have - kept, kept);
                if (n == 0)
                    return 0; /* the peer closed */
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0)
        return usage(stdout, 0);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("sk-chat (libsockkit %s)\n", sk_version());
        return 0;
    }
    bool listen = argc == 3 && strcmp(argv[1], "--listen") == 0;
    if (argc < 3 || (!listen && strcmp(argv[1], "--connect") != 0))
        return usage(stderr, 2);
    sk_tls_config tc = {.size = sizeof(tc)};
    bool tls = false;
    for (int i = 3; i < argc; i++) {
        if (!listen && strcmp(argv[i], "--tls") == 0) {
            tls = true;
        } else if (!listen && strcmp(argv[i], "--insecure") == 0) {
            tls = tc.insecure_no_verify = true;
        } else if (!listen && strcmp(argv[i], "--ca") == 0 && i + 1 < argc) {
            tls = true;
            tc.ca_file = argv[++i];
        } else {
            return usage(stderr, 2);
        }
    }
    struct peer peer = {.fd = -1};
    sk_tls *config = NULL;
    char why[512];
    int sock;
    if (tls && sk_tls_client_new(&tc, &config, why, sizeof(why)) < 0) {
        fprintf(stderr, "sk-chat: %s\n", why);
        return 1;
    }
    if (listen)
        sock = wait_for_peer(argv[2]);
    else if (tls && (sock = sk_tls_connect(argv[2], 10000, config, NULL, &peer.tls)) == 0)
        sock = sk_tls_stream_fd(peer.tls);
    else if (!tls)
        sock = sk_connect(argv[2], 10000);
    if (sock < 0) {
        fprintf(stderr, "sk-chat: cannot %s %s: %s\n", listen ? "listen on" : "connect to",
                argv[2], sk_strerror(sock));
        sk_tls_free(config);
        return 1;
    }
    peer.fd = sock;
    int rc = chat(&peer);
    if (peer.tls)
        sk_tls_close(peer.tls);
    else
        close(sock);
    sk_tls_free(config);
    if (rc < 0)
        fprintf(stderr, "sk-chat: %s\n", sk_strerror(rc));
    return rc < 0;
}
