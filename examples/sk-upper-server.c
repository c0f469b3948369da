/* SPDX-License-Identifier: MIT */
/* An uppercase server: every byte comes back with ASCII letters uppercased,
 * the same number of bytes (binary data passes through unharmed). */
#include "serve.h"

static void upper(sk_conn *c, char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) /* the buffer is ours to change in place */
        if (data[i] >= 'a' && data[i] <= 'z')
            data[i] = (char)(data[i] - 'a' + 'A');
    sk_conn_send(c, data, len);
}

int main(int argc, char **argv)
{
    sk_server *s = sk_server_new(NULL);
    sk_server_on_data(s, upper);
    return serve(s, argc, argv, NULL);
}
