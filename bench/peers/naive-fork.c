/* SPDX-License-Identifier: MIT */
/*
 * The seeds' fork-per-client echo server (seed 002), written fairly: the
 * children are reaped (the seed left zombies), short writes are finished, the
 * buffer is 64 KiB as libsockkit's, and nothing is printed per connection.
 * The parent accepts and forks; the child closes the listener, echoes with
 * blocking read and write, and exits.
 */
#include "peer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

static void reap(int sig)
{
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static void serve(int fd)
{
    static char buf[BUF_SIZE];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || !peer_write_all(fd, buf, (size_t)n))
            return;
    }
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, false, NULL);
    int lfd = peer_listen((struct sockaddr *)&o.addr, o.addr_len, false, false);
    if (lfd < 0) {
        perror("naive-fork: listen");
        return 1;
    }
    /* Reaped in a handler, not ignored: SIG_IGN would also drop the children's
     * CPU time from the parent's cutime/cstime, which the benchmark reads. */
    struct sigaction sa = {.sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    peer_announce(lfd);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* EINTR, ECONNABORTED, out of descriptors: try again */
        peer_nodelay(fd);
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            serve(fd);
            _exit(0);
        }
        close(fd); /* the child has it (or the fork failed: refused) */
    }
}
