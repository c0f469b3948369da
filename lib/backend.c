/* SPDX-License-Identifier: MIT */
/* The backend registry: the built-in backends, and those a program adds. */
#include "server_internal.h"

#include <errno.h>
#include <string.h>

#define MAX_BACKENDS 32

static const sk_backend *const builtin[] = {
    &sk__backend_epoll_et,
    &sk__backend_epoll_lt,
    &sk__backend_pthread,
    &sk__backend_fork,
};
#define NBUILTIN ((int)(sizeof(builtin) / sizeof(builtin[0])))

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const sk_backend *added[MAX_BACKENDS - NBUILTIN];
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

static const sk_backend *find_locked(const char *name)
{
    for (int i = 0; i < NBUILTIN; i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    for (int i = 0; i < nadded; i++)
        if (strcmp(added[i]->name, name) == 0)
            return added[i];
    return NULL;
}

int sk_backend_register(const sk_backend *b)
{
    if (!b || !b->run || !valid_name(b->name))
        return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (find_locked(b->name))
        rc = -EEXIST;
    else if (nadded == MAX_BACKENDS - NBUILTIN)
        rc = -ENOSPC;
    else
        added[nadded++] = b;
    pthread_mutex_unlock(&lock);
    return rc;
}

const sk_backend *sk_backend_find(const char *name)
{
    if (!name)
        return NULL;
    pthread_mutex_lock(&lock);
    const sk_backend *b = find_locked(name);
    pthread_mutex_unlock(&lock);
    return b;
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
        const char *name = i < NBUILTIN ? builtin[i]->name : added[i - NBUILTIN]->name;
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
