/* SPDX-License-Identifier: MIT */
/* The fork parent's children: forking them on a relay each, watching their
 * relays, waking and signalling them, reaping them (a worker that died is
 * replaced). fork.c runs the loop and the relay protocol on top of this. */
#include "fork.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void set_unsettled(struct fork_state *fs, struct child *ch, bool unsettled)
{
    if (ch->unsettled != unsettled)
        fs->nunsettled += unsettled ? 1 : -1;
    ch->unsettled = unsettled;
}

/* Make the relay's epoll interest what the child needs now. A failure (no
 * memory in the kernel) is tried again every turn of the loop: an unwatched
 * relay would hide the child's messages and its exit. */
void sk__fork_watch_relay(struct fork_state *fs, struct child *ch)
{
    uint32_t want = (fs->paused ? 0 : EPOLLIN) | (ch->out.len ? EPOLLOUT : 0);
    if ((ch->watched && ch->events == want && !ch->unsettled) || ch->relay < 0)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = ch};
    bool ok = epoll_ctl(fs->epfd, ch->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, ch->relay, &ev) == 0;
    if (ok) {
        ch->watched = true;
        ch->events = want;
    }
    set_unsettled(fs, ch, !ok);
}

/* The child's relay closed: out of the epoll set, its buffers freed; it
 * waits to be reaped. */
void sk__fork_exited(struct fork_state *fs, struct child *ch)
{
    if (ch->watched) /* removing a watched descriptor does not fail */
        (void)epoll_ctl(fs->epfd, EPOLL_CTL_DEL, ch->relay, NULL);
    ch->watched = false;
    set_unsettled(fs, ch, false);
    close(ch->relay);
    ch->relay = -1;
    ch->exited = true;
    sk__buf_free(&ch->in);
    sk__buf_free(&ch->out);
}

/* Signal a child: never pid 0 or less (the process group, or every process). */
void sk__fork_kill(const struct child *ch, int sig)
{
    if (ch->pid > 0)
        kill(ch->pid, sig);
}

/* The child may be parked in a recv() (see single.c): what it has been sent
 * is posted before its parked flag is looked at, then it is signalled. */
void sk__fork_wake(struct fork_state *fs, struct child *ch)
{
    if (ch->slot < 0)
        return;
    struct park_slot *slot = &fs->page->slot[ch->slot];
    __atomic_add_fetch(&slot->posted, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&slot->parked, __ATOMIC_SEQ_CST))
        sk__fork_kill(ch, SK__PARK_SIGNAL);
}

/* A park slot for a child per connection: one given back, else the next
 * never used; -1 when all are taken (that child does not park). */
static int slot_take(struct fork_state *fs)
{
    if (fs->nfree > 0)
        return fs->free_slots[--fs->nfree];
    return fs->next_slot < fs->nslots ? fs->next_slot++ : -1;
}

static void slot_give(struct fork_state *fs, int slot)
{
    if (slot >= 0)
        fs->free_slots[fs->nfree++] = slot;
}

/* Reap children whose relay has closed; a child still exiting is tried again.
 * A child's slot goes back here; a worker that died is replaced. */
bool sk__fork_reap(struct fork_state *fs)
{
    bool waiting = false;
    for (struct child *ch = fs->head, *next; ch; ch = next) {
        next = ch->next;
        if (!ch->exited)
            continue;
        pid_t got = waitpid(ch->pid, NULL, WNOHANG);
        if (got == 0) {
            waiting = true;
            continue;
        }
        pthread_mutex_lock(&fs->lock);
        if (ch->prev)
            ch->prev->next = ch->next;
        else
            fs->head = ch->next;
        if (ch->next)
            ch->next->prev = ch->prev;
        fs->nchildren--;
        pthread_mutex_unlock(&fs->lock);
        if (ch->slot >= 0) /* killed while parked, it may have left the flag set */
            __atomic_store_n(&fs->page->slot[ch->slot].parked, 0, __ATOMIC_RELAXED);
        if (ch->worker < 0) {
            if (!ch->outbound)
                sk__registry_release(&fs->s->reg);
            slot_give(fs, ch->slot);
        } else {
            /* A worker releases its own slots; one that died holding one cannot. */
            if (__atomic_exchange_n(&fs->page->busy[ch->worker], 0, __ATOMIC_ACQ_REL))
                sk__registry_release(&fs->s->reg);
            if (!fs->stopping)
                sk__fork_spawn_worker(fs, ch->worker);
        }
        free(ch->name);
        free(ch->peer);
        free(ch);
    }
    return waiting;
}

/* Fork a child on a new relay: in the child, run(fs, arg, slot, relay) never
 * returns; in the parent, the child's record (NULL if the fork failed). */
static struct child *fork_child(struct fork_state *fs,
                                void (*run)(struct fork_state *, int, int, int), int arg,
                                int slot, const char *peer)
{
    int sv[2];
    struct child *ch = calloc(1, sizeof(*ch));
    /* Non-blocking at both ends: a child may find its relay drained between
     * poll() and read() (a names reply taken in by a handler meanwhile). */
    if (!ch || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        free(ch);
        return NULL;
    }
    ch->w.kind = SK__W_RELAY;
    ch->worker = -1;
    ch->slot = slot;
    pid_t pid = -1;
    if (!peer || (ch->peer = strdup(peer)))
        pid = fork();
    if (pid == 0) {
        close(sv[0]);
        run(fs, arg, slot, sv[1]); /* does not return */
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        free(ch->peer);
        free(ch);
        return NULL;
    }
    ch->pid = pid;
    ch->relay = sv[0];
    ch->serving = peer != NULL;
    pthread_mutex_lock(&fs->lock);
    ch->next = fs->head;
    if (fs->head)
        fs->head->prev = ch;
    fs->head = ch;
    fs->nchildren++;
    pthread_mutex_unlock(&fs->lock);
    sk__fork_watch_relay(fs, ch);
    return ch;
}

int sk__fork_spawn_dial(struct fork_state *fs, struct sk__dial *d)
{
    char text[SK_ADDR_STRLEN];
    const char *peer = d->address; /* what names it in listings */
    if (!peer)
        peer = sk_addr_format(&d->addr, text, sizeof(text)) >= 0 ? text : "?";
    fs->dialing = d; /* what the child starts with */
    struct child *ch = fork_child(fs, sk__fork_dial_main, 0, -1, peer);
    fs->dialing = NULL;
    if (!ch)
        return -EAGAIN;
    ch->outbound = true;
    return 0;
}

void sk__fork_spawn_worker(struct fork_state *fs, int k)
{
    struct child *ch = fork_child(fs, sk__fork_worker_main, k, k, NULL);
    if (ch) {
        ch->worker = k;
        if (fs->missing[k]) {
            fs->missing[k] = false;
            fs->nmissing--;
        }
    } else if (!fs->missing[k]) { /* tried again from the loop */
        fs->missing[k] = true;
        fs->nmissing++;
    }
}

/* A child per connection: the parent admitted it (the slot is released at reap). */
void sk__fork_spawn(struct fork_state *fs, int fd, const sk_addr *addr)
{
    char peer[SK_ADDR_STRLEN];
    if (sk_addr_format(addr, peer, sizeof(peer)) < 0 && sk_peer_addr(fd, peer, sizeof(peer)) < 0)
        strcpy(peer, "?");
    fs->peer = *addr; /* what the child starts with */
    int slot = slot_take(fs);
    if (!fork_child(fs, sk__fork_child_main, fd, slot, peer)) {
        slot_give(fs, slot);
        sk__registry_release(&fs->s->reg);
        sk__count(&fs->s->reg.ctr, SK__C_REFUSED, 1);
    }
    close(fd);
}

