/* SPDX-License-Identifier: MIT */
/*
 * The seeds' thread-per-client echo server (seed 003), written fairly: the
 * descriptor is handed to the thread by value (the seed passed the address of
 * a variable the next accept overwrites), threads are detached, short writes
 * are finished, and the buffer is 64 KiB as libsockkit's. Blocking I/O, no
 * poll: read, write, repeat.
 */
#include "peer.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[BUF_SIZE];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || !peer_write_all(fd, buf, (size_t)n))
            break;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, false, NULL);
    int lfd = peer_listen((struct sockaddr *)&o.addr, o.addr_len, false, false);
    if (lfd < 0) {
        perror("naive-thread: listen");
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
