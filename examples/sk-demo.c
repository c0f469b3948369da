/* SPDX-License-Identifier: MIT */
/*
 * The main demo: one echo handler, served by every backend in turn.
 *
 * For each backend an echo server listens on an ephemeral loopback port;
 * a client process opens CLIENTS connections, sends BYTES on each in
 * random-sized chunks, and checks that every byte comes back in order.
 */
#define _POSIX_C_SOURCE 200809L /* dprintf, rand_r, clock_gettime */
#include <sockkit/sockkit.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS 50
#define BYTES (1 << 20)
#define CHUNK 65536

/* The whole server-side program: */
static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

/* ---- the built-in client ------------------------------------------------ */

static unsigned char expected(int client, size_t i)
{
    return (unsigned char)((i * 131 + (size_t)client * 7 + (i >> 11)) & 0xff);
}

struct client {
    int fd;
    size_t sent, got;
    unsigned seed;
    bool ok;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Send and check in step; the number of bytes that came back right. */
static long long drive(struct client *cl, int n)
{
    static unsigned char buf[CHUNK];
    struct pollfd p[CLIENTS];
    int done = 0;
    while (done < n) {
        for (int k = 0; k < n; k++)
            p[k] = (struct pollfd){.fd = cl[k].got < BYTES && cl[k].ok ? cl[k].fd : -1,
                                   .events = POLLIN | (cl[k].sent < BYTES ? POLLOUT : 0)};
        if (poll(p, (nfds_t)n, 10000) <= 0)
            break; /* nothing for 10 s: give up, report what we have */
        for (int k = 0; k < n; k++) {
            struct client *c = &cl[k];
            if ((p[k].revents & POLLOUT) && c->sent < BYTES) {
                size_t len = 1 + (size_t)rand_r(&c->seed) % CHUNK;
                if (len > BYTES - c->sent)
                    len = BYTES - c->sent;
                for (size_t i = 0; i < len; i++)
                    buf[i] = expected(k, c->sent + i);
                ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0)
                    c->sent += (size_t)w;
            }
            if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                for (ssize_t i = 0; i < r && c->ok; i++)
                    c->ok = buf[i] == expected(k, c->got + (size_t)i);
                if (r > 0)
                    c->got += (size_t)r;
                if (r == 0 || !c->ok || c->got == BYTES)
                    done++;
            }
        }
    }
    long long good = 0;
    for (int k = 0; k < n; k++)
        good += cl[k].ok ? (long long)cl[k].got : 0;
    return good;
}

/* In its own process, so that fork's children never hold our sockets. */
static void client_process(const char *address, int report)
{
    struct client cl[CLIENTS];
    double t0 = now_s();
    for (int k = 0; k < CLIENTS; k++) {
        cl[k] = (struct client){.fd = sk_connect(address, 2000), .seed = (unsigned)k + 1,
                                .ok = true};
        if (cl[k].fd < 0) {
            fprintf(stderr, "sk-demo: connect %s: %s\n", address, sk_strerror(cl[k].fd));
            _exit(1);
        }
    }
    long long good = drive(cl, CLIENTS);
    double elapsed = now_s() - t0;
    for (int k = 0; k < CLIENTS; k++)
        close(cl[k].fd);
    dprintf(report, "%lld %.3f\n", good, elapsed);
    _exit(0);
}

/* ---- one round per backend ---------------------------------------------- */

static void *serve(void *server)
{
    return (void *)(intptr_t)sk_server_run(server);
}

static int round_on(const char *backend)
{
    char address[SK_ADDR_STRLEN], line[64] = "";
    sk_server *s = sk_server_new("127.0.0.1:0");
    int rc = s ? sk_server_set_backend(s, backend) : -ENOMEM;
    if (rc == 0) {
        sk_server_on_data(s, echo);
        rc = sk_server_bind(s);
    }
    if (rc == SK_EURING_OFF || rc == SK_EURING_OLD) { /* this system refuses io_uring */
        printf("%-10s not available here: %s\n", backend, sk_strerror(rc));
        sk_server_free(s);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "sk-demo: %s: %s\n", backend, sk_strerror(rc));
        sk_server_free(s);
        return 1;
    }
    sk_server_address(s, address, sizeof(address));

    pthread_t thread;
    int pipefd[2];
    if (pipe(pipefd) < 0 || pthread_create(&thread, NULL, serve, s) != 0) {
        perror("sk-demo");
        exit(1);
    }
    pid_t pid = fork();
    if (pid == 0)
        client_process(address, pipefd[1]);
    close(pipefd[1]);
    ssize_t n = pid > 0 ? read(pipefd[0], line, sizeof(line) - 1) : -1;
    close(pipefd[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    sk_server_stop(s);
    void *run_rc;
    pthread_join(thread, &run_rc);
    sk_server_free(s);

    long long good = 0;
    double elapsed = 0;
    if (n <= 0 || sscanf(line, "%lld %lf", &good, &elapsed) != 2)
        good = -1;
    bool ok = good == (long long)CLIENTS * BYTES && run_rc == NULL;
    printf("%-10s %7d %11.1f MiB %9s %8.2f s\n", backend, CLIENTS, good / 1048576.0,
           ok ? "yes" : "NO", elapsed);
    return ok ? 0 : 1;
}

int main(void)
{
    static const char *const backends[] = {"epoll-et", "epoll-lt", "pthread", "fork", "io_uring"};
    int failures = 0;
    printf("libsockkit %s: one echo handler on every backend\n", sk_version());
    printf("%d clients per backend, each sending %d KiB in random-sized chunks\n\n", CLIENTS,
           BYTES / 1024);
    printf("%-10s %7s %15s %9s %10s\n", "backend", "clients", "echoed", "correct", "elapsed");
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
        if (sk_backend_find(backends[i])) /* io_uring: where the library was built with it */
            failures += round_on(backends[i]);
    return failures ? 1 : 0;
}
