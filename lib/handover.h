/* SPDX-License-Identifier: MIT */
/* Listener handover between processes (sk_server_set_handover): a server
 * gives its listening sockets to a successor over a unix socket
 * (SCM_RIGHTS) and drains; the successor takes them at bind instead of
 * binding. The sockets are never closed while connections may be queued on
 * them. Not exported. */
#ifndef SOCKKIT_HANDOVER_H
#define SOCKKIT_HANDOVER_H

#include "internal.h"
#include "listener.h"

#include <sockkit/server.h>

struct sk__handover;

/* The state for a handover socket at path (copied); NULL without memory. */
SK__HIDDEN struct sk__handover *sk__handover_new(const char *path);
/* Close the handover socket (its file removed if still ours), free. */
SK__HIDDEN void sk__handover_free(struct sk__handover *h);
/* At bind: take every listening socket of the server answering at the path
 * into l. 1 when taken; 0 when nothing answers there (bind as usual); < 0 on
 * an error (a refused or failed handover: the old server keeps them). */
SK__HIDDEN int sk__handover_take(struct sk__handover *h, struct sk__listeners *l);
/* Listen at the path for a successor (mode 0600; a stale file replaced). */
SK__HIDDEN int sk__handover_listen(struct sk__handover *h);
/* During a run: answer a successor from a thread of its own. After a
 * handover the server drains (sk_server_drain). */
SK__HIDDEN int sk__handover_start(struct sk__handover *h, sk_server *s);
/* The run is over: the thread ends (the socket stays, for another run). */
SK__HIDDEN void sk__handover_stop(struct sk__handover *h);
/* The listening descriptor, or -1: a fork child closes it. */
SK__HIDDEN int sk__handover_fd(const struct sk__handover *h);

#endif /* SOCKKIT_HANDOVER_H */
