/* SPDX-License-Identifier: MIT */
/* TLS inside the library (tls.c; tls_none.c without OpenSSL). Not exported. */
#ifndef SOCKKIT_TLS_INTERNAL_H
#define SOCKKIT_TLS_INTERNAL_H

#include "server_internal.h"

#include <sockkit/tls.h>

/* The TLS transport (transport.h), for connections made with one of these. */
SK__HIDDEN extern const struct sk__transport sk__transport_tls;

/* A server configuration is used by accepted connections; a reference is
 * taken for each holder (a server, a dial request). */
SK__HIDDEN sk_tls *sk__tls_ref(sk_tls *tls);
SK__HIDDEN bool sk__tls_is_server(const sk_tls *tls);
/* A client configuration that verifies nothing (insecure_no_verify). */
SK__HIDDEN bool sk__tls_insecure(const sk_tls *tls);

/* Make c speak TLS over its socket: an accepted connection as the server,
 * an outbound one as a client of host (NULL: verify nothing by name). Sets
 * c->tp, c->tp_state and c->handshaking. 0 or -ENOMEM. */
SK__HIDDEN int sk__tls_attach(sk_conn *c, sk_tls *tls, const char *host);

#endif /* SOCKKIT_TLS_INTERNAL_H */
