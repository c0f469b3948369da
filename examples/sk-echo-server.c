/* SPDX-License-Identifier: MIT */
/* An echo server: every byte a client sends comes back, exactly, in order.
 * Try: sk-echo-server --backend fork, then nc 127.0.0.1 5188. */
#include "serve.h"

static void echo(sk_conn *c, char *data, size_t len)
{
    sk_conn_send(c, data, len);
}

int main(int argc, char **argv)
{
    sk_server *s = sk_server_new(NULL);
    sk_server_on_data(s, echo);
    return serve(s, argc, argv, NULL);
}
