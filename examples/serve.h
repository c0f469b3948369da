/* SPDX-License-Identifier: MIT */
/* The command line every example server shares: options, the "listening on"
 * line, errors a person can act on, a graceful stop on SIGINT/SIGTERM, a
 * graceful drain on SIGQUIT, listener handover (--handover) and socket
 * activation (systemd's sockets when there is no --listen). */
#ifndef SK_EXAMPLES_SERVE_H
#define SK_EXAMPLES_SERVE_H

#include <sockkit/sockkit.h>

#include <stdbool.h>

/* An option a server takes beyond the common ones: --NAME ARG, passed to
 * sk_server_set_option() under the same name, or to @set if it has one. */
struct serve_option {
    const char *name; /* "max-line" */
    const char *arg;  /* "BYTES"; NULL: a flag, set with the value "on" */
    const char *help; /* one line for --help */
    /* The program's own option: 0, or a negative code for a bad value. */
    int (*set)(sk_server *s, const char *value);
    bool required; /* the command line must give it */
    bool shown;    /* on the "listening on" line, as NAME=VALUE */
};

/*
 * Apply the command line to @s (created with sk_server_new(NULL) and given
 * its handlers), listen on 127.0.0.1:5188 unless told otherwise (or on the
 * sockets systemd passed, or on those of the server at --handover PATH),
 * print "listening on ADDR backend=NAME" (and NAME=VALUE of the shown
 * options), serve until SIGINT or SIGTERM, or until drained after SIGQUIT
 * or a handover to a successor, free @s.
 * @extra lists the server's own options, ended by {0}; may be NULL.
 * Returns the exit status for main(): 0 after a signal or a handover, 1 on
 * an error, 2 on a bad command line. Errors are printed to stderr.
 */
int serve(sk_server *s, int argc, char **argv, const struct serve_option *extra);

/* As serve(), and once the options are applied, @ready checks them as a
 * whole: 0, or -1 after writing a one-line reason into @why (exit 1). */
int serve_then(sk_server *s, int argc, char **argv, const struct serve_option *extra,
               int (*ready)(sk_server *s, char *why, size_t size));

#endif
