/* SPDX-License-Identifier: MIT */
/* A chat peer: --listen waits for one peer, --connect dials one (another
 * sk-chat, or sk-chat-server). What you type goes to the peer; what the peer
 * sends is printed, its control characters escaped (text.h) so that it shows
 * on the terminal but cannot act on it. One process and poll(2): no fork, no
 * signals. When stdin ends, what is left is sent, the write side is shut down,
 * and sk-chat exits once the peer closes; when the peer closes, it exits at once. */
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
    fprintf(f, "usage: sk-chat --connect ADDR | --listen ADDR\n"
               "  --connect ADDR  talk to the peer or sk-chat-server at ADDR (host:port)\n"
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

/* Copy stdin to @sock and @sock to stdout until the peer closes. Input the
 * peer has not taken yet waits in @in, and stdin is not read meanwhile. */
static int chat(int sock)
{
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
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return -errno;
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
            ssize_t n = send(sock, in + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return -errno;
            if (n > 0) {
                off += (size_t)n;
                len -= (size_t)n;
            }
        }
        if (!input && !len && !shut) {
            shutdown(sock, SHUT_WR); /* the peer reads end of file */
            shut = true;
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(sock, out + kept, sizeof(out) - kept, 0);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return -errno;
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
    if (argc != 3 || (!listen && strcmp(argv[1], "--connect") != 0))
        return usage(stderr, 2);
    int sock = listen ? wait_for_peer(argv[2]) : sk_connect(argv[2], 10000);
    if (sock < 0) {
        fprintf(stderr, "sk-chat: cannot %s %s: %s\n", listen ? "listen on" : "connect to",
                argv[2], sk_strerror(sock));
        return 1;
    }
    int rc = chat(sock);
    close(sock);
    if (rc < 0)
        fprintf(stderr, "sk-chat: %s\n", sk_strerror(rc));
    return rc < 0;
}
