/* SPDX-License-Identifier: MIT */
/* The fork backend's pieces: the relay protocol and buffers (relay.c), what
 * runs in the children (fork_child.c), the parent's children
 * (fork_children.c), the parent's loop (fork.c). Not exported. */
#ifndef SOCKKIT_BACKEND_FORK_H
#define SOCKKIT_BACKEND_FORK_H

#include "../server_internal.h"

#include <stdint.h>
#include <sys/types.h>

enum {
    MSG_BROADCAST = 1,  /* child -> parent: to every connection */
    MSG_BROADCAST_OTHERS, /* child -> parent: to every other connection */
    MSG_DELIVER,        /* parent -> child: queue for your connection */
    MSG_NAME,           /* child -> parent: my connection's name (no payload: the default) */
    MSG_NAMES_REQ,      /* child -> parent: list the names */
    MSG_NAMES_REP,      /* parent -> child: the names, NUL-terminated, one after another */
    MSG_OPEN,           /* worker -> parent: serving a connection (payload: its peer) */
    MSG_CLOSED          /* worker -> parent: that connection is closed */
};

/* A child's side of parking (see single.c), one cache line each. */
struct park_slot {
    int parked;
    unsigned posted;
} __attribute__((aligned(64)));

/* Shared by the parent and every child (MAP_SHARED). */
struct page {
    int count;                   /* open connections: what admission counts */
    int busy[SK__MAX_WORKERS];   /* a worker holds a slot of count */
    struct sk__counters ctr;     /* what every child counts (atomically) */
    struct park_slot slot[];     /* a pool worker's is its index; else allocated */
};

struct msg_head {
    uint32_t type;
    uint32_t len;
};

#define MAX_MSG (1u << 30)
#define RELAY_READ (64 * 1024)
#define RELAY_HIGH (1u << 20)      /* backlog that pauses reading the relays */
#define RELAY_MIN_STUCK_MS 2000    /* congested this long (at least): cut off */
#define MAX_PARK_SLOTS 65536       /* children per connection beyond this do not park */
#define SELF_QUEUE_MAX RELAY_HIGH  /* other threads' broadcasts waiting for the loop */
#define RELAY_SEND_SLACK_MS 2000   /* a child waits for its relay this long past stuck_ms */

/* How long a child may stay congested before the parent cuts it off. */
static inline int sk__relay_stuck_ms(const sk_server *s)
{
    return s->cfg.drain_ms > RELAY_MIN_STUCK_MS ? s->cfg.drain_ms : RELAY_MIN_STUCK_MS;
}

struct buf {
    char *p;
    size_t off, len, cap;
};

struct child {
    struct sk__watch w; /* SK__W_RELAY */
    pid_t pid;
    int relay;
    int worker;         /* pool index, or -1: a child per connection */
    int slot;           /* its park_slot, or -1: it does not park */
    bool serving;       /* has a connection (named in listings) */
    bool outbound;      /* forked for an outbound connection: no admission slot */
    bool cut;           /* relay shut: the child did not keep up */
    bool exited;        /* relay closed; waiting to reap */
    uint32_t events;    /* the relay's epoll interest now */
    bool watched;       /* the relay is in the epoll set */
    bool unsettled;     /* the last change of its interest failed: tried every turn */
    int64_t full_since; /* when its backlog passed RELAY_HIGH, or 0 */
    char *name;         /* set by the child, else NULL */
    char *peer;
    struct buf in, out;
    struct child *prev, *next;
};

struct fork_state {
    struct sk__owner home; /* first: the parent, as the loop of outbound opens */
    sk_server *s;
    struct sk__dial *dialing; /* the outbound connection a child is forked for */
    int epfd;
    pthread_mutex_t lock; /* the children list, against sk_server_names from other threads */
    struct child *head;
    int nchildren;
    struct page *page;    /* MAP_SHARED */
    size_t page_size;
    int *free_slots;      /* park slots given back (children per connection) */
    sk_addr peer;         /* the peer of the connection a child is forked for */
    int nfree;
    int next_slot, nslots; /* slots below next_slot were handed out once */
    struct child self;    /* the sender of what other threads of this process broadcast */
    struct sk__watch self_w; /* SK__W_INBOX: self_efd */
    int self_efd;         /* eventfd: self_queue has become non-empty */
    pthread_mutex_t self_lock;
    struct buf self_queue; /* their messages, SELF_QUEUE_MAX bytes at most (self_lock) */
    bool self_waiting;    /* self_queue holds messages left while paused */
    bool stopping;
    bool paused;          /* not reading relays: some child is congested */
    bool over_high;       /* a child's backlog passed RELAY_HIGH since congestion() */
    bool catching_up;     /* reading every relay before answering for names */
    bool missing[SK__MAX_WORKERS]; /* a pool worker that could not be forked */
    int nmissing;
    int nunsettled;       /* children whose relay interest is to be set again */
    struct sk__timers timers;
    struct sk__timer kill; /* stopping: the children still there when it fires are killed */
    struct sk__watch stop_w;
    struct sk__watch drain_w;
    struct sk__watch listen_w;
};

/* relay.c: growable byte buffers and message framing */
SK__HIDDEN bool sk__buf_reserve(struct buf *b, size_t n);
SK__HIDDEN void sk__buf_consume(struct buf *b, size_t n);
SK__HIDDEN void sk__buf_free(struct buf *b);
/* Read what fd has into b: > 0 bytes, 0 at end of file, < 0 (-EAGAIN: nothing now). */
SK__HIDDEN ssize_t sk__buf_read(struct buf *b, int fd);
/* Append one message (its header, then len bytes of data) to b: false when
 * memory ran out (b is unchanged). */
SK__HIDDEN bool sk__buf_put_msg(struct buf *b, uint32_t type, const void *data, size_t len);
/* The next whole message in b, or false. */
SK__HIDDEN bool sk__next_msg(struct buf *b, struct msg_head *h, char **payload);

/* fork_children.c: the parent's children */
/* Make a relay's epoll interest what its child needs now; a failure is
 * tried again every turn of the loop (fs->nunsettled). */
SK__HIDDEN void sk__fork_watch_relay(struct fork_state *fs, struct child *ch);
/* The child's relay closed: it waits to be reaped. */
SK__HIDDEN void sk__fork_exited(struct fork_state *fs, struct child *ch);
/* Signal a child: never pid 0 or less (the process group, or every process). */
SK__HIDDEN void sk__fork_kill(const struct child *ch, int sig);
/* Tell a child parked in recv() that something was sent to it. */
SK__HIDDEN void sk__fork_wake(struct fork_state *fs, struct child *ch);
/* Reap the children that exited: true while one is still exiting. */
SK__HIDDEN bool sk__fork_reap(struct fork_state *fs);
/* Fork pool worker k (a failure is noted in fs->missing, tried again). */
SK__HIDDEN void sk__fork_spawn_worker(struct fork_state *fs, int k);
/* Fork a child for an admitted connection; fd is closed in the parent. */
SK__HIDDEN void sk__fork_spawn(struct fork_state *fs, int fd, const sk_addr *addr);
/* Fork a child for an outbound connection: 0, or -errno (no child). */
SK__HIDDEN int sk__fork_spawn_dial(struct fork_state *fs, struct sk__dial *d);

/* fork_child.c: the entry points of the children, and the child's side of the ops */
SK__HIDDEN void sk__fork_child_main(struct fork_state *fs, int fd, int slot, int relay);
SK__HIDDEN void sk__fork_worker_main(struct fork_state *fs, int k, int slot, int relay);
SK__HIDDEN void sk__fork_dial_main(struct fork_state *fs, int unused, int slot, int relay);
/* In a child: the broadcast goes to the parent. Returns false in the parent. */
SK__HIDDEN bool sk__fork_in_child(void);
SK__HIDDEN int sk__fork_child_broadcast(sk_conn *except, const void *data, size_t len);

#endif /* SOCKKIT_BACKEND_FORK_H */
