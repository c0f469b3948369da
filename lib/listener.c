/* SPDX-License-Identifier: MIT */
/* Listening sockets: binding, adopting and releasing them, the socket files a
 * server made, and accepting under max_conns and EMFILE. */
#include "server_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void sk__listeners_init(struct sk__listeners *l)
{
    *l = (struct sk__listeners){.spare = -1};
}

int sk__listeners_add(struct sk__listeners *l, const char *address)
{
    if (l->naddr == SK__MAX_LISTEN)
        return -ENOSPC;
    if (!(l->addresses[l->naddr] = strdup(address)))
        return -ENOMEM;
    l->naddr++;
    return 0;
}

/* ---- binding ----------------------------------------------------------- */

/* The address text with its port replaced: how later sets find port 0's pick. */
static int with_port(const char *address, int port, char *out, size_t size)
{
    const char *colon = strrchr(address, ':');
    int n = snprintf(out, size, "%.*s:%d", (int)(colon - address), address, port);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Room for one more descriptor. */
static int grow(struct sk__listeners *l, int more)
{
    int *fd = realloc(l->fd, (size_t)(l->n + more) * sizeof(*fd));
    if (!fd)
        return -ENOMEM;
    l->fd = fd;
    return 0;
}

/* ---- inherited sockets ------------------------------------------------- */

bool sk__address_inherited(const char *address)
{
    return strncmp(address, "fd:", 3) == 0 || strcmp(address, "systemd") == 0 ||
           strncmp(address, "systemd:", 8) == 0;
}

/* A whole decimal number from 0 to INT_MAX, or -1. */
static int whole(const char *text)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0 || v > INT_MAX || !isdigit((unsigned char)*text))
        return -1;
    return (int)v;
}

/* The sockets systemd passed (LISTEN_PID is this process): how many, from
 * descriptor 3; -1 if none were. */
static int activation_count(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int n = fds ? whole(fds) : -1;
    if (!pid || whole(pid) != (int)getpid() || n <= 0)
        return -1;
    return n;
}

/* Name i of LISTEN_FDNAMES ("" past its end) into out. */
static void activation_name(int i, char *out, size_t size)
{
    const char *p = getenv("LISTEN_FDNAMES");
    out[0] = '\0';
    for (; p && i > 0; i--)
        p = (p = strchr(p, ':')) ? p + 1 : NULL;
    if (p)
        snprintf(out, size, "%.*s", (int)strcspn(p, ":"), p);
}

/* Adopt what an inherited address names: "fd:N", "systemd" (every socket
 * passed) or "systemd:NAME" (those of that name). */
static int inherit(struct sk__listeners *l, const char *address)
{
    if (address[0] == 'f') {
        int fd = whole(address + 3);
        return fd < 0 ? SK_EADDR : sk__listeners_adopt(l, fd);
    }
    const char *name = address[7] == ':' ? address + 8 : NULL;
    int n = activation_count(), taken = 0;
    for (int i = 0; i < n; i++) {
        char have[256];
        activation_name(i, have, sizeof(have));
        if (name && strcmp(name, have) != 0)
            continue;
        int rc = sk__listeners_adopt(l, 3 + i);
        if (rc < 0)
            return rc;
        taken++;
    }
    return taken ? 0 : SK_ENOTACTIVATED;
}

/* The socket file a unix listener creates is ours to remove: its path is kept
 * before the file exists, so that no failure leaves it behind, and its inode
 * once it does, so that a successor's file at that path is left alone. */
static int bind_one(struct sk__listeners *l, sk_reuse reuse, int set, int a)
{
    char text[600];
    const char *address = l->addresses[a];
    if (set > 0) {
        int port = sk_local_port(l->fd[a]);
        if (port < 0 || with_port(address, port, text, sizeof(text)) < 0)
            return port < 0 ? port : -ENAMETOOLONG;
        address = text;
    }
    if (sk__address_inherited(address))
        return inherit(l, address);
    struct sk__sockfile *file = &l->files[a];
    if (set == 0 && strncmp(address, "unix:", 5) == 0 && address[5] != '@' &&
        !(file->path = strdup(address + 5)))
        return -ENOMEM;
    int fd = sk_listen(address, reuse, 0);
    if (fd < 0) {
        free(file->path);
        file->path = NULL;
        return fd;
    }
    l->fd[l->n++] = fd;
    struct stat st;
    if (file->path && set == 0 && stat(file->path, &st) == 0) {
        file->dev = st.st_dev;
        file->ino = st.st_ino;
    }
    return sk_set_nonblocking(fd, true);
}

int sk__listeners_bind(struct sk__listeners *l, sk_reuse reuse, int sets)
{
    int rc = grow(l, sets * l->naddr);
    bool activated = false;
    for (int set = 0; set < sets && rc == 0; set++)
        for (int a = 0; a < l->naddr && rc == 0; a++) {
            rc = bind_one(l, reuse, set, a);
            activated |= strncmp(l->addresses[a], "systemd", 7) == 0;
        }
    if (rc < 0) {
        sk__listeners_close(l);
        return rc;
    }
    l->nsets = sets;
    if (activated) { /* taken: programs this one starts must not take them too */
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
    }
    return 0;
}

int sk__listeners_adopt(struct sk__listeners *l, int fd)
{
    int listening = 0, type = 0;
    socklen_t len = sizeof(listening), tlen = sizeof(type);
    if (l->nsets > 1)
        return -EBUSY; /* sets per worker hold the same addresses */
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || !listening ||
        type != SOCK_STREAM)
        return SK_ELISTENFD; /* not open, not a socket, not listening, not a stream */
    int rc = grow(l, 1);
    if (rc == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        rc = -errno;
    if (rc == 0)
        rc = sk_set_nonblocking(fd, true);
    if (rc < 0)
        return rc;
    l->fd[l->n++] = fd;
    l->nsets = 1;
    return 0;
}

int sk__listeners_release(struct sk__listeners *l, int *fds, int max)
{
    if (l->n > max)
        return -ENOSPC;
    int n = l->n;
    memcpy(fds, l->fd, (size_t)n * sizeof(*fds));
    free(l->fd);
    l->fd = NULL;
    l->n = l->nsets = 0;
    sk__listeners_disown(l); /* the files go with the sockets */
    return n;
}

void sk__listeners_claim_file(struct sk__listeners *l, int fd)
{
    struct sockaddr_un a;
    socklen_t len = sizeof(a);
    struct stat st;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0 || a.sun_family != AF_UNIX ||
        len <= offsetof(struct sockaddr_un, sun_path) || a.sun_path[0] == '\0')
        return; /* not a unix socket with a file */
    a.sun_path[sizeof(a.sun_path) - 1] = '\0';
    if (stat(a.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return;
    for (int i = 0; i < SK__MAX_LISTEN; i++) {
        struct sk__sockfile *file = &l->files[i];
        if (file->path)
            continue;
        if ((file->path = strdup(a.sun_path))) {
            file->dev = st.st_dev;
            file->ino = st.st_ino;
        }
        return;
    }
}

void sk__listeners_disown(struct sk__listeners *l)
{
    for (int i = 0; i < SK__MAX_LISTEN; i++) {
        free(l->files[i].path);
        l->files[i] = (struct sk__sockfile){0};
    }
}

void sk__listeners_close(struct sk__listeners *l)
{
    for (int i = 0; i < l->n; i++)
        close(l->fd[i]);
    free(l->fd);
    l->fd = NULL;
    l->n = l->nsets = 0;
    for (int i = 0; i < SK__MAX_LISTEN; i++) {
        struct sk__sockfile *file = &l->files[i];
        struct stat st;
        /* Not known to be ours (no inode recorded at bind): left in place, a
         * stale socket file that sk_listen() replaces when it finds it dead. */
        if (file->path && stat(file->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
            file->ino != 0 && st.st_dev == file->dev && st.st_ino == file->ino)
            unlink(file->path);
        free(file->path);
        *file = (struct sk__sockfile){0};
    }
}

void sk__listeners_free(struct sk__listeners *l)
{
    sk__listeners_close(l);
    sk__listeners_hold_spare(l, false);
    for (int i = 0; i < l->naddr; i++)
        free(l->addresses[i]);
    l->naddr = 0;
    if (l->gate)
        munmap(l->gate, sizeof(*l->gate));
    l->gate = NULL;
}

int sk__listeners_gate(struct sk__listeners *l)
{
    if (l->gate)
        return 0;
    void *page = mmap(NULL, sizeof(*l->gate), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return -errno;
    l->gate = page; /* zeroed: open, nobody inside */
    return 0;
}

/* Dekker's pattern: an accept counts itself in, then looks at the gate; the
 * shutter shuts it, then looks at the count. Either the accept sees it shut,
 * or the shutter sees the accept inside and waits for it. */
void sk__listeners_shut(struct sk__listeners *l, int ms)
{
    if (!l->gate)
        return;
    __atomic_store_n(&l->gate->shut, 1, __ATOMIC_SEQ_CST);
    for (int waited = 0; __atomic_load_n(&l->gate->inside, __ATOMIC_SEQ_CST) > 0 && waited < ms;
         waited++)
        poll(NULL, 0, 1);
}

static bool gate_enter(struct sk__gate *g)
{
    if (!g)
        return true;
    __atomic_add_fetch(&g->inside, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&g->shut, __ATOMIC_SEQ_CST))
        return true;
    __atomic_sub_fetch(&g->inside, 1, __ATOMIC_RELEASE);
    return false;
}

static void gate_leave(struct sk__gate *g)
{
    if (g)
        __atomic_sub_fetch(&g->inside, 1, __ATOMIC_RELEASE);
}

void sk__listeners_hold_spare(struct sk__listeners *l, bool on)
{
    if (on && l->spare < 0)
        l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!on && l->spare >= 0) {
        close(l->spare);
        l->spare = -1;
    }
}

/* ---- accepting --------------------------------------------------------- */

/* Out of descriptors: give up the spare one, accept and close a pending
 * connection (it is refused rather than left to wake us forever), take the
 * spare back. */
static int refuse_without_fd(struct sk__listeners *l, int lfd, struct sk__counters *ctr)
{
    int spare = __atomic_exchange_n(&l->spare, -1, __ATOMIC_ACQ_REL);
    if (spare < 0)
        return -EMFILE;
    close(spare);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        sk__count(ctr, SK__C_REFUSED, 1);
        close(fd);
    }
    spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    __atomic_store_n(&l->spare, spare, __ATOMIC_RELEASE);
    return fd >= 0 ? 1 : 0;
}

static int accept_one(sk_server *s, int lfd, struct sk__counters *ctr, sk_addr *peer)
{
    for (int refused = 0; refused < 64;) {
        socklen_t len = sizeof(peer->u);
        int fd = accept4(lfd, peer ? &peer->u.sa : NULL, peer ? &len : NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peer)
                peer->len = len;
            if (sk__registry_admit(&s->reg, s->cfg.max_conns)) {
                if (s->cfg.nodelay)
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
                return fd;
            }
            sk__count(ctr, SK__C_REFUSED, 1); /* counted before the peer can see it */
            close(fd);
            refused++;
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            refused++;
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return 0;
        case EMFILE:
        case ENFILE: {
            int rc = refuse_without_fd(&s->lis, lfd, ctr);
            if (rc <= 0)
                return rc;
            refused++;
            continue;
        }
        default:
            return -errno;
        }
    }
    return 0;
}

int sk__accept_fd(sk_server *s, int lfd, struct sk__counters *ctr, sk_addr *peer)
{
    /* Drained or stopped: not one more, whatever event the loop is still on. */
    if (__atomic_load_n(&s->drain_at, __ATOMIC_ACQUIRE) || sk__stopping(s))
        return 0;
    /* Handed over: the listeners are the successor's, from the moment its
     * bind returns (the handover waits for an accept under way). */
    if (!gate_enter(s->lis.gate))
        return 0;
    int fd = accept_one(s, lfd, ctr, peer);
    gate_leave(s->lis.gate);
    return fd;
}
