/* SPDX-License-Identifier: MIT */
/* Listener handover (handover.h). The exchange, on a unix stream socket:
 *
 *   successor -> server   struct ask: "SKHO", version
 *   server -> successor   struct give: "SKHO", version, count; the count
 *                         listening descriptors as SCM_RIGHTS (none: refused)
 *   successor -> server   'K': every one was adopted
 *
 * Only after the 'K' does the server let go: it drains, shuts its accept
 * gate and waits for an accept under way, forgets its listeners' socket
 * files (now the successor's), closes and removes its handover socket and
 * closes the exchange; the successor, which waits for that close, then takes
 * the path over, and from its bind's return on no connection is the old
 * server's. Until the 'K' a failure on either side leaves the server as it
 * was. Both sides accept a peer of their own uid or root only (SO_PEERCRED),
 * and every wait is bounded. */
#include "handover.h"
#include "server_internal.h"

#include <sockkit/io.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAGIC "SKHO"
#define VERSION 1
#define IO_MS 5000   /* each step of the exchange */
#define MAX_FDS 250  /* SCM_RIGHTS carries up to 253 */
#define RETRY_MS 100 /* after a failed accept (EMFILE): no spinning */

struct ask {
    char magic[4];
    uint32_t version;
};

struct give {
    char magic[4];
    uint32_t version;
    uint32_t count;
};

struct sk__handover {
    char *path;
    int fd;    /* listening, or -1; atomic: read by fork children */
    dev_t dev; /* its socket file: removed only while it is this one */
    ino_t ino;
    int wake; /* eventfd: the thread ends */
    pthread_t thread;
    bool running;
    sk_server *s;
    sem_t started;
};

struct sk__handover *sk__handover_new(const char *path)
{
    struct sk__handover *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->fd = h->wake = -1;
    if (!(h->path = strdup(path))) {
        free(h);
        return NULL;
    }
    return h;
}

/* Its number is gone before the descriptor is: a fork child made meanwhile
 * (which closes its copy, sk__handover_fd()) never closes a reused number. */
static void close_listener(struct sk__handover *h)
{
    struct stat st;
    int fd = h->fd;
    if (fd < 0)
        return;
    __atomic_store_n(&h->fd, -1, __ATOMIC_SEQ_CST);
    if (stat(h->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == h->dev &&
        st.st_ino == h->ino)
        unlink(h->path);
    close(fd);
}

void sk__handover_free(struct sk__handover *h)
{
    if (!h)
        return;
    sk__handover_stop(h);
    close_listener(h);
    free(h->path);
    free(h);
}

int sk__handover_fd(const struct sk__handover *h)
{
    return h ? __atomic_load_n(&h->fd, __ATOMIC_SEQ_CST) : -1;
}

/* A peer of this uid, or root: the only ones a handover is for. */
static int check_peer(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    return cred.uid == geteuid() || cred.uid == 0 ? 0 : -EPERM;
}

static int bound_io(int fd)
{
    struct timeval tv = {.tv_sec = IO_MS / 1000, .tv_usec = (IO_MS % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    return 0;
}

/* Exactly len bytes (the socket layer's bounded calls), or an error
 * (-EPROTO: the peer closed first). */
static int recv_exact(int fd, void *buf, size_t len)
{
    ssize_t n = sk_read_full(fd, buf, len, IO_MS);
    return n == (ssize_t)len ? 0 : n < 0 ? (int)n : -EPROTO;
}

static int send_exact(int fd, const void *buf, size_t len)
{
    ssize_t n = sk_write_all(fd, buf, len, IO_MS);
    return n == (ssize_t)len ? 0 : n < 0 ? (int)n : -EPROTO;
}

/* ---- the successor: taking the listeners ------------------------------- */

static int connect_path(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = bound_io(fd);
    while (rc == 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        if (errno != EINTR)
            rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* The descriptors of one message: their count, or < 0. */
static int recv_fds(int fd, struct give *g, int *fds)
{
    union {
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = g, .iov_len = sizeof(*g)};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    while ((n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    int count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (count < MAX_FDS)
                fds[count++] = got;
            else
                close(got);
        }
    }
    bool ok = n == (ssize_t)sizeof(*g) && !(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) &&
              memcmp(g->magic, MAGIC, 4) == 0 && g->version == VERSION &&
              g->count == (uint32_t)count;
    if (ok && count == 0)
        return -EPERM; /* refused: not of its uid */
    if (!ok) {
        for (int i = 0; i < count; i++)
            close(fds[i]);
        return -EPROTO;
    }
    return count;
}

int sk__handover_take(struct sk__handover *h, struct sk__listeners *l)
{
    int fds[MAX_FDS];
    int fd = connect_path(h->path);
    if (fd == -ENOENT || fd == -ECONNREFUSED)
        return 0; /* nobody there (a stale file is replaced at listen) */
    if (fd < 0)
        return fd;
    struct ask q = {.magic = MAGIC, .version = VERSION};
    struct give g;
    int n = 0, rc = check_peer(fd);
    if (rc == 0)
        rc = send_exact(fd, &q, sizeof(q));
    if (rc == 0)
        rc = n = recv_fds(fd, &g, fds);
    int adopted = 0;
    while (rc >= 0 && adopted < n && (rc = sk__listeners_adopt(l, fds[adopted])) == 0)
        adopted++;
    if (rc >= 0)
        rc = send_exact(fd, "K", 1);
    if (rc < 0) { /* not taken: they stay the old server's alone */
        sk__listeners_close(l);
        for (int i = adopted; i < n; i++)
            close(fds[i]);
        close(fd);
        return rc;
    }
    for (int i = 0; i < n; i++) /* its socket files are ours to remove now */
        sk__listeners_claim_file(l, fds[i]);
    /* The old server closes the exchange once its handover socket is gone. */
    char c;
    while (recv(fd, &c, 1, 0) < 0 && errno == EINTR)
        ;
    close(fd);
    return 1;
}

int sk__handover_listen(struct sk__handover *h)
{
    char address[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    struct stat st;
    if (h->fd >= 0)
        return 0;
    if (strlen(h->path) + 6 > sizeof(address))
        return -ENAMETOOLONG;
    strcpy(address, "unix:");
    strcat(address, h->path);
    int fd = sk_listen(address, SK_REUSE_ADDR, 0);
    if (fd < 0)
        return fd;
    /* The uid check refuses others anyway; the mode keeps them from connecting. */
    if (chmod(h->path, 0600) < 0 || stat(h->path, &st) < 0) {
        int rc = -errno;
        close(fd);
        unlink(h->path);
        return rc;
    }
    h->dev = st.st_dev;
    h->ino = st.st_ino;
    h->fd = fd;
    return 0;
}

/* ---- the server: giving them ------------------------------------------- */

static int send_fds(int fd, const int *fds, int n)
{
    union {
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct give g = {.magic = MAGIC, .version = VERSION, .count = (uint32_t)n};
    struct iovec iov = {.iov_base = &g, .iov_len = sizeof(g)};
    memset(&ctl, 0, sizeof(ctl)); /* the header's padding goes out too */
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
    ssize_t sent;
    while ((sent = sendmsg(fd, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (sent < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    return sent == (ssize_t)sizeof(g) ? 0 : -EPROTO;
}

/* Answer one successor: 0 once it has the listeners (then ours are its:
 * let_go()). */
static int give(struct sk__handover *h, int fd)
{
    sk_server *s = h->s;
    struct ask q;
    char ok = 0;
    int rc = bound_io(fd);
    if (rc == 0) /* read first: closed with it unread, the peer would see a reset */
        rc = recv_exact(fd, &q, sizeof(q));
    if (rc == 0 && (memcmp(q.magic, MAGIC, 4) != 0 || q.version != VERSION))
        rc = -EPROTO;
    if (rc == 0 && check_peer(fd) < 0) { /* told so: no descriptor in it */
        struct give no = {.magic = MAGIC, .version = VERSION, .count = 0};
        send_exact(fd, &no, sizeof(no));
        return -EPERM;
    }
    if (rc == 0)
        rc = s->lis.n > MAX_FDS ? -ENOSPC : s->lis.n == 0 ? -ENOTCONN : 0;
    if (rc == 0)
        rc = send_fds(fd, s->lis.fd, s->lis.n);
    if (rc == 0)
        rc = recv_exact(fd, &ok, 1);
    if (rc == 0 && ok != 'K')
        rc = -EPROTO;
    return rc;
}

/* After a handover: accept no more (a drain, or a stop where the backend has
 * no drain) and wait for an accept under way; the listeners' socket files
 * stay (ours close with the server). Then the exchange may close. */
static void let_go(struct sk__handover *h)
{
    sk_server *s = h->s;
    if (s->backend->caps & SK__CAP_DRAIN)
        sk__server_drain(s);
    else
        sk__server_stop(s);
    sk__listeners_shut(&s->lis, IO_MS);
    sk__listeners_disown(&s->lis);
    close_listener(h);
}

/* The thread lives until the run ends (the wake), also after a handover: a
 * fork child made meanwhile never inherits a finished, unjoined thread. */
static void *serve_successors(void *arg)
{
    struct sk__handover *h = arg;
    sem_post(&h->started);
    for (;;) {
        int lfd = h->fd; /* -1 once handed over: only the wake is awaited */
        struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = h->wake, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno != EINTR)
                poll(NULL, 0, RETRY_MS);
            continue;
        }
        if (p[1].revents)
            break;
        if (lfd < 0 || !p[0].revents)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
                poll(NULL, 0, RETRY_MS);
            continue;
        }
        if (give(h, fd) == 0)
            let_go(h);
        close(fd); /* after a handover: the successor may take the path now */
    }
    return NULL;
}

int sk__handover_start(struct sk__handover *h, sk_server *s)
{
    if (h->fd < 0)
        return 0; /* handed over already: nothing more to answer */
    int rc = sk__listeners_gate(&s->lis); /* before the backend forks */
    if (rc < 0)
        return rc;
    h->s = s;
    if ((h->wake = eventfd(0, EFD_CLOEXEC)) < 0)
        return -errno;
    if (sem_init(&h->started, 0, 0) < 0) {
        close(h->wake);
        h->wake = -1;
        return -errno;
    }
    rc = -pthread_create(&h->thread, NULL, serve_successors, h);
    if (rc == 0) {
        /* Started before the backend forks: no child is made mid-start. */
        while (sem_wait(&h->started) < 0 && errno == EINTR)
            ;
        h->running = true;
    } else {
        sem_destroy(&h->started);
        close(h->wake);
        h->wake = -1;
    }
    return rc;
}

void sk__handover_stop(struct sk__handover *h)
{
    if (!h || !h->running)
        return;
    uint64_t one = 1;
    ssize_t n = write(h->wake, &one, sizeof(one));
    (void)n;
    pthread_join(h->thread, NULL);
    sem_destroy(&h->started);
    close(h->wake);
    h->wake = -1;
    h->running = false;
}
