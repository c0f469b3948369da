/* SPDX-License-Identifier: MIT */
/*
 * A libuv echo server as libuv's own guide writes one (docs/code/tcp-echo-
 * server): uv_tcp handles, uv_read_start with an alloc callback that hands out
 * a buffer of the suggested size, and uv_write of the bytes read, the buffer
 * freed when the write completes. Beyond the guide: TCP_NODELAY
 * (uv_tcp_nodelay), as libsockkit sets it, and a backlog of SOMAXCONN.
 *
 * --pool: the same program, but the alloc callback takes buffers from a free
 * list that the write callback refills, instead of malloc and free. The
 * guide's malloc(64 KiB)/free per read makes glibc grow and trim the heap top
 * on every message (brk and page faults); the uv_alloc_cb documentation
 * leaves the allocation to the user, and a pool is what a user who measured
 * would write. Both are run, so libuv is not judged by its allocator.
 */
#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include <string.h>

struct echo_write {
    uv_write_t req; /* first: the request pointer is the record */
    uv_buf_t buf;
};

#define POOL_BUF (64 * 1024)

static bool use_pool;
static void *pool; /* --pool: free buffers, each holding the next one's address */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    if (use_pool) {
        suggested = POOL_BUF;
        if (pool) {
            buf->base = pool;
            memcpy(&pool, pool, sizeof(pool));
            buf->len = POOL_BUF;
            return;
        }
    }
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void release(char *base)
{
    if (use_pool && base) {
        memcpy(base, &pool, sizeof(pool));
        pool = base;
    } else {
        free(base);
    }
}

static void on_closed(uv_handle_t *handle)
{
    free(handle);
}

static void on_written(uv_write_t *req, int status)
{
    struct echo_write *w = (struct echo_write *)req;
    (void)status; /* a failed write: the read side sees the error and closes */
    release(w->buf.base);
    free(w);
}

static void on_read(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        struct echo_write *w = malloc(sizeof(*w));
        if (w) {
            w->buf = uv_buf_init(buf->base, (unsigned)nread);
            if (uv_write(&w->req, client, &w->buf, 1, on_written) == 0)
                return;
            free(w);
        }
    } else if (nread < 0 && !uv_is_closing((uv_handle_t *)client)) {
        uv_close((uv_handle_t *)client, on_closed); /* UV_EOF or an error */
    }
    release(buf->base);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *client = malloc(sizeof(*client));
    if (!client)
        return;
    uv_tcp_init(server->loop, client);
    if (uv_accept(server, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, on_closed);
        return;
    }
    uv_tcp_nodelay(client, 1);
    uv_read_start((uv_stream_t *)client, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    uv_tcp_t server;
    uv_os_fd_t fd;
    peer_parse(argc, argv, &o, false, "--pool");
    use_pool = o.flag;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&o.addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
    if (rc == 0)
        rc = uv_fileno((uv_handle_t *)&server, &fd);
    if (rc != 0) {
        fprintf(stderr, "uv-echo: %s\n", uv_strerror(rc));
        return 1;
    }
    peer_announce(fd);
    return uv_run(loop, UV_RUN_DEFAULT);
}
