/* SPDX-License-Identifier: MIT */
/* The registry of open connections: who is there, what they are called, how
 * many were admitted, and the counter blocks behind sk_server_stats(). */
#include "server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sk__registry_init(struct sk__registry *r)
{
    *r = (struct sk__registry){.ctr.shared = true};
    r->count_ptr = &r->count;
    return -pthread_mutex_init(&r->lock, NULL);
}

void sk__registry_destroy(struct sk__registry *r)
{
    free(r->slots);
    pthread_mutex_destroy(&r->lock);
}

/* ---- admission --------------------------------------------------------- */

static int *counter(struct sk__registry *r)
{
    return __atomic_load_n(&r->count_ptr, __ATOMIC_ACQUIRE);
}

bool sk__registry_admit(struct sk__registry *r, int max)
{
    int *at = counter(r);
    int n = __atomic_load_n(at, __ATOMIC_RELAXED);
    do {
        if (n >= max)
            return false;
    } while (!__atomic_compare_exchange_n(at, &n, n + 1, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return true;
}

void sk__registry_release(struct sk__registry *r)
{
    __atomic_fetch_sub(counter(r), 1, __ATOMIC_ACQ_REL);
}

void sk__registry_set_counter(struct sk__registry *r, int *at)
{
    __atomic_store_n(&r->count_ptr, at ? at : &r->count, __ATOMIC_RELEASE);
}

int sk__registry_count(struct sk__registry *r)
{
    pthread_mutex_lock(&r->lock);
    const struct sk__remote *remote = r->remote;
    void *arg = r->remote_arg;
    pthread_mutex_unlock(&r->lock);
    if (remote && remote->count)
        return remote->count(arg);
    return __atomic_load_n(counter(r), __ATOMIC_ACQUIRE);
}

/* ---- the list ---------------------------------------------------------- */

/* A free id slot for c (under the lock): its id, or 0 without memory. */
static uint64_t take_slot(struct sk__registry *r, sk_conn *c)
{
    if (!r->free_slot) {
        uint32_t n = r->nslots ? r->nslots * 2 : 64;
        struct sk__slot *more = n > r->nslots ? realloc(r->slots, n * sizeof(*more)) : NULL;
        if (!more)
            return 0;
        for (uint32_t i = r->nslots; i < n; i++) /* chained in order: 1, 2, ... */
            more[i] = (struct sk__slot){.next_free = i + 1 < n ? i + 2 : 0, .gen = 1};
        r->free_slot = r->nslots + 1;
        r->slots = more;
        r->nslots = n;
    }
    uint32_t i = r->free_slot - 1;
    r->free_slot = r->slots[i].next_free;
    r->slots[i].conn = c;
    return (uint64_t)r->slots[i].gen << 32 | (i + 1);
}

static void give_slot(struct sk__registry *r, uint64_t id)
{
    struct sk__slot *sl = &r->slots[(uint32_t)id - 1];
    sl->conn = NULL;
    if (++sl->gen == 0) /* never 0: an id is never 0 */
        sl->gen = 1;
    sl->next_free = r->free_slot;
    r->free_slot = (uint32_t)id;
}

sk_conn *sk__registry_find_locked(struct sk__registry *r, uint64_t id)
{
    uint32_t i = (uint32_t)id;
    if (i == 0 || i > r->nslots || r->slots[i - 1].gen != (uint32_t)(id >> 32))
        return NULL;
    return r->slots[i - 1].conn;
}

int sk__registry_add(struct sk__registry *r, sk_conn *c)
{
    pthread_mutex_lock(&r->lock);
    c->id = take_slot(r, c);
    if (!c->id) {
        pthread_mutex_unlock(&r->lock);
        return -ENOMEM;
    }
    c->rnext = r->head;
    if (r->head)
        r->head->rprev = c;
    r->head = c;
    c->registered = true;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* Takes only the registry lock, never with the connection's held
 * (broadcasts take them in the other order). */
void sk__registry_remove(struct sk__registry *r, sk_conn *c)
{
    if (!c->registered)
        return;
    pthread_mutex_lock(&r->lock);
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        r->head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    c->registered = false;
    give_slot(r, c->id);
    pthread_mutex_unlock(&r->lock);
    if (!c->outbound) /* outbound connections were not admitted */
        sk__registry_release(r);
}

void sk__registry_each(struct sk__registry *r, void (*fn)(sk_conn *c, void *arg), void *arg)
{
    pthread_mutex_lock(&r->lock);
    for (sk_conn *c = r->head; c; c = c->rnext)
        fn(c, arg);
    pthread_mutex_unlock(&r->lock);
}

/* ---- names ------------------------------------------------------------- */

/* Under the lock: the address text, made on first use. */
static const char *address_locked(sk_conn *c, bool peer)
{
    char **slot = peer ? &c->peer : &c->local;
    if (!*slot) {
        char buf[SK_ADDR_STRLEN];
        int rc;
        sk_addr a = {.len = peer ? sk__kept_len(c->peer_sa.sa.sa_family) : 0};
        if (a.len) {
            memcpy(&a.u, &c->peer_sa, a.len);
            rc = sk_addr_format(&a, buf, sizeof(buf));
        } else {
            rc = peer ? sk_peer_addr(c->fd, buf, sizeof(buf)) : sk_local_addr(c->fd, buf, sizeof(buf));
        }
        *slot = strdup(rc >= 0 ? buf : "?");
    }
    return *slot ? *slot : "?";
}

static const char *name_locked(sk_conn *c)
{
    return c->name ? c->name : address_locked(c, true);
}

const char *sk__registry_name(struct sk__registry *r, sk_conn *c)
{
    pthread_mutex_lock(&r->lock);
    const char *name = name_locked(c);
    pthread_mutex_unlock(&r->lock);
    return name;
}

const char *sk__registry_address(struct sk__registry *r, sk_conn *c, bool peer)
{
    pthread_mutex_lock(&r->lock);
    const char *text = address_locked(c, peer);
    pthread_mutex_unlock(&r->lock);
    return text;
}

int sk__registry_set_name(struct sk__registry *r, sk_conn *c, const char *name)
{
    char *copy = NULL;
    if (name && !(copy = strdup(name)))
        return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    free(c->name);
    c->name = copy;
    const struct sk__remote *remote = r->remote;
    void *arg = r->remote_arg;
    pthread_mutex_unlock(&r->lock);
    if (remote && remote->renamed)
        remote->renamed(arg, c);
    return 0;
}

/* Copied under the lock, called back without it: fn may use the server. */
int sk__registry_names(struct sk__registry *r, sk_name_fn fn, void *arg)
{
    size_t cap = 1024, used = 0;
    int n = 0;
    pthread_mutex_lock(&r->lock);
    const struct sk__remote *remote = r->remote;
    void *remote_arg = r->remote_arg;
    char *all = remote && remote->names ? NULL : malloc(cap);
    for (sk_conn *c = all ? r->head : NULL; c; c = c->rnext) {
        const char *name = name_locked(c);
        size_t len = strlen(name) + 1;
        if (used + len > cap) {
            char *bigger = realloc(all, cap * 2 + len);
            if (!bigger) { /* a short list would pass for the whole room */
                pthread_mutex_unlock(&r->lock);
                free(all);
                return -ENOMEM;
            }
            all = bigger;
            cap = cap * 2 + len;
        }
        memcpy(all + used, name, len);
        used += len;
        n++;
    }
    pthread_mutex_unlock(&r->lock);
    if (remote && remote->names)
        return remote->names(remote_arg, fn, arg);
    if (!all)
        return -ENOMEM;
    for (size_t off = 0; off < used; off += strlen(all + off) + 1)
        fn(all + off, arg);
    free(all);
    return n;
}

void sk__registry_forget(sk_conn *c)
{
    free(c->name);
    free(c->peer);
    free(c->local);
    c->name = c->peer = c->local = NULL;
}

void sk__registry_set_remote(struct sk__registry *r, const struct sk__remote *remote, void *arg)
{
    pthread_mutex_lock(&r->lock);
    r->remote = remote;
    r->remote_arg = arg;
    pthread_mutex_unlock(&r->lock);
}

/* ---- counters ---------------------------------------------------------- */

void sk__registry_add_counters(struct sk__registry *r, struct sk__counters *c)
{
    pthread_mutex_lock(&r->lock);
    c->next = r->extra;
    r->extra = c;
    pthread_mutex_unlock(&r->lock);
}

void sk__registry_remove_counters(struct sk__registry *r, struct sk__counters *c)
{
    pthread_mutex_lock(&r->lock);
    for (struct sk__counters **p = &r->extra; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    for (int i = 0; i < SK__NCOUNTERS; i++)
        sk__count(&r->ctr, i, (long long)__atomic_load_n(&c->v[i], __ATOMIC_RELAXED));
    pthread_mutex_unlock(&r->lock);
}

void sk__registry_totals(struct sk__registry *r, unsigned long long v[SK__NCOUNTERS])
{
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < SK__NCOUNTERS; i++) {
        v[i] = __atomic_load_n(&r->ctr.v[i], __ATOMIC_RELAXED);
        for (struct sk__counters *c = r->extra; c; c = c->next)
            v[i] += __atomic_load_n(&c->v[i], __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&r->lock);
}
