/* SPDX-License-Identifier: MIT */
/* The backend registry: the built-in backends, and those a program adds.
 * A program's table is copied as far as the program says it goes (1.0 tables
 * have no size: they end after `broadcast`), so the library never reads past
 * the end of a table compiled against older headers, and members it does not
 * know of are zero. */
#include "server_internal.h"

#include <errno.h>
#include <string.h>

#define MAX_BACKENDS 32

static const struct sk__backend *const builtin[] = {
    &sk__backend_epoll_et,
    &sk__backend_epoll_lt,
    &sk__backend_pthread,
    &sk__backend_fork,
#ifdef SK_HAVE_URING
    &sk__backend_uring,
#endif
};
#define NBUILTIN ((int)(sizeof(builtin) / sizeof(builtin[0])))

#define SIZE_1_0 SK__SIZE_THROUGH(sk_backend, broadcast)

struct added {
    const sk_backend *table; /* what the program registered (sk_backend_find) */
    struct sk__backend b;    /* what the library calls: its members, the rest zero */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct added added[MAX_BACKENDS - NBUILTIN];
static int nadded;

static bool valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 31)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The library's own copy of a backend; *table: what the program registered. */
static const struct sk__backend *find_locked(const char *name, const sk_backend **table)
{
    for (int i = 0; i < NBUILTIN; i++) {
        if (strcmp(builtin[i]->ops.name, name) == 0) {
            *table = &builtin[i]->ops;
            return builtin[i];
        }
    }
    for (int i = 0; i < nadded; i++) {
        if (strcmp(added[i].b.ops.name, name) == 0) {
            *table = added[i].table;
            return &added[i].b;
        }
    }
    return NULL;
}

static const struct sk__backend *find(const char *name, const sk_backend **table)
{
    if (!name)
        return NULL;
    pthread_mutex_lock(&lock);
    const struct sk__backend *b = find_locked(name, table);
    pthread_mutex_unlock(&lock);
    return b;
}

/* Members past the ones this library knows must be zero (unused). */
static bool unknown_tail_is_zero(const sk_backend *b, size_t size)
{
    const unsigned char *p = (const unsigned char *)b;
    for (size_t i = sizeof(*b); i < size; i++)
        if (p[i])
            return false;
    return true;
}

int sk_backend_register_sized(const sk_backend *b, size_t size)
{
    if (!b || size < SIZE_1_0)
        return -EINVAL;
    if (!unknown_tail_is_zero(b, size))
        return -E2BIG;
    sk_backend ops = {0};
    memcpy(&ops, b, size < sizeof(ops) ? size : sizeof(ops));
    if (!ops.run || !valid_name(ops.name))
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&lock);
    const sk_backend *table;
    if (find_locked(ops.name, &table))
        rc = -EEXIST;
    else if (nadded == MAX_BACKENDS - NBUILTIN)
        rc = -ENOSPC;
    else
        added[nadded++] = (struct added){.table = b, .b.ops = ops};
    pthread_mutex_unlock(&lock);
    return rc;
}

int sk_backend_register(const sk_backend *b)
{
    return sk_backend_register_sized(b, SIZE_1_0);
}

const sk_backend *sk_backend_find(const char *name)
{
    const sk_backend *table = NULL;
    return find(name, &table) ? table : NULL;
}

const struct sk__backend *sk__backend_default(void)
{
    return builtin[0];
}

const struct sk__backend *sk__backend_ops(const char *name)
{
    const sk_backend *table;
    return find(name, &table);
}

int sk_backend_list(char *buf, size_t size)
{
    if (!buf || size == 0)
        return -EINVAL;
    size_t used = 0;
    int rc = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&lock);
    for (int i = 0; i < NBUILTIN + nadded && rc == 0; i++) {
        const char *name = i < NBUILTIN ? builtin[i]->ops.name : added[i - NBUILTIN].b.ops.name;
        size_t n = strlen(name) + (i ? 2 : 0);
        if (used + n + 1 > size) {
            rc = -ENOSPC;
            break;
        }
        if (i)
            memcpy(buf + used, ", ", 2);
        strcpy(buf + used + (i ? 2 : 0), name);
        used += n;
    }
    pthread_mutex_unlock(&lock);
    return rc ? rc : (int)used;
}
