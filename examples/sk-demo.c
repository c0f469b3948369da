/* SPDX-License-Identifier: MIT */
/* The main demo: a listener and a client on loopback exchange a message. */
#include <sockkit/sockkit.h>

#include <stdio.h>
#include <unistd.h>

static int die(const char *what, int err)
{
    fprintf(stderr, "sk-demo: %s: %s\n", what, sk_strerror(err));
    return 1;
}

int main(void)
{
    char addr[SK_ADDR_STRLEN], peer[SK_ADDR_STRLEN], buf[64];

    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    if (l < 0)
        return die("listen", l);
    sk_local_addr(l, addr, sizeof(addr));
    printf("libsockkit %s: listening on %s\n", sk_version(), addr);

    int c = sk_connect(addr, 1000);
    if (c < 0)
        return die("connect", c);
    int s = sk_accept(l, NULL);
    if (s < 0)
        return die("accept", s);
    sk_peer_addr(s, peer, sizeof(peer));

    ssize_t n = sk_write_all(c, "hello, libsockkit\n", 18, 1000);
    if (n < 0)
        return die("write", (int)n);
    sk_lines *lines = sk_lines_new(s, sizeof(buf));
    char *line;
    n = sk_lines_read(lines, &line, 1000);
    if (n < 0)
        return die("read", (int)n);
    printf("server got from %s: %s", peer, line);
    sk_lines_free(lines);
    close(s);
    close(c);
    close(l);
    return 0;
}
