/* SPDX-License-Identifier: MIT */
/* The command line of the example servers (see serve.h). The library checks
 * every value (sk_server_set_option); this file only says what went wrong in
 * words a person can act on. */
#include "serve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_LISTEN "127.0.0.1:5188"
#define MAX_LISTEN 8 /* sk_server_add_listen() takes this many */
#define MAX_EXTRA 16 /* a program's own options, at most */

/* --tls-cert, --tls-key, --tls-ca: kept until the server is made. */
static sk_tls_config tls_files = {.size = sizeof(sk_tls_config)};

static int set_cert(sk_server *s, const char *v)
{
    (void)s;
    tls_files.cert_file = v;
    return 0;
}

static int set_key(sk_server *s, const char *v)
{
    (void)s;
    tls_files.key_file = v;
    return 0;
}

static int set_ca(sk_server *s, const char *v)
{
    (void)s;
    tls_files.ca_file = v;
    return 0;
}

static const struct serve_option common[] = {
    {"listen", "ADDR", "host:port, [v6]:port, *:port, unix:/path, fd:N; repeatable"},
    {"backend", "NAME", "how clients are served (default epoll-et; list below)"},
    {"reuse", "POLICY", "none, addr (default), port or addr+port"},
    {"workers", "N", "0 to 256: epoll reactor threads, or fork's pool size"},
    {"max-conns", "N", "1 or more: clients served at once (default 1024)"},
    {"idle-timeout", "MS", "close a client silent this long (default 0: never)"},
    {"handover", "PATH", "take the listeners of the server at PATH, then hand them on"},
    {"grace-timeout", "MS", "SIGQUIT or a handover: wait this long for clients (30000)"},
    {"tls-cert", "FILE", "serve TLS with this PEM certificate chain (with --tls-key)", set_cert},
    {"tls-key", "FILE", "the PEM private key of --tls-cert", set_key},
    {"tls-ca", "FILE", "with TLS: clients must show a certificate signed by this CA", set_ca},
    {0},
};

struct cmdline {
    const char *prog;
    const char *handover; /* --handover PATH, or NULL */
    const struct serve_option *extra;
    const char *listen[MAX_LISTEN];
    int nlisten;
    const char *given[MAX_EXTRA]; /* the values of extra[i], or NULL */
};

static const struct serve_option *find(const struct cmdline *cl, const char *name, size_t len)
{
    for (int table = 0; table < 2; table++) {
        const struct serve_option *o = table ? cl->extra : common;
        for (; o && o->name; o++)
            if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                return o;
    }
    return NULL;
}

/* Print one word of the synopsis, wrapped under the first; the new column. */
static int word(FILE *f, const struct cmdline *cl, int col, const char *text)
{
    int indent = (int)strlen(cl->prog) + 7;
    if (col + (int)strlen(text) > 79)
        col = fprintf(f, "\n%*s", indent, "") - 1;
    return col + fprintf(f, "%s", text);
}

/* The column of the options' help: past the longest "--NAME ARG". */
static int help_column(const struct cmdline *cl)
{
    int column = 19;
    for (int table = 0; table < 2; table++) {
        const struct serve_option *o = table ? cl->extra : common;
        for (; o && o->name; o++) {
            int len = (int)(strlen(o->name) + strlen(o->arg ? o->arg : "")) + 3;
            column = len > column ? len : column;
        }
    }
    return column;
}

/* The synopsis; with @full, a line per option too. */
static void usage(FILE *f, const struct cmdline *cl, bool full)
{
    char item[64], backends[256];
    int col = fprintf(f, "usage: %s", cl->prog);
    for (int table = 0; table < 2; table++) {
        const struct serve_option *o = table ? cl->extra : common;
        for (; o && o->name; o++) {
            snprintf(item, sizeof(item), o->required ? " --%s%s%s" : " [--%s%s%s]", o->name,
                     o->arg ? " " : "", o->arg ? o->arg : "");
            col = word(f, cl, col, item);
        }
    }
    col = word(f, cl, col, " [--help]");
    word(f, cl, col, " [--version]\n");
    if (!full) {
        fprintf(f, "'%s --help' tells more\n", cl->prog);
        return;
    }
    fprintf(f, "\n");
    int column = help_column(cl);
    for (int table = 0; table < 2; table++) {
        const struct serve_option *o = table ? cl->extra : common;
        for (; o && o->name; o++) {
            snprintf(item, sizeof(item), "--%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
            fprintf(f, "  %-*s %s\n", column, item, o->help);
        }
    }
    sk_backend_list(backends, sizeof(backends));
    fprintf(f,
            "\nThe default address is " DEFAULT_LISTEN ", or the sockets systemd passed; *:PORT"
            "\nlistens on every interface. SIGINT, SIGTERM: stop. SIGQUIT: drain (accept no"
            "\nmore, serve the clients until they leave or --grace-timeout); twice: stop."
            "\nBackends: %s.\n",
            backends);
}

/* Remember the value of one of the program's own options. */
static void note(struct cmdline *cl, const struct serve_option *o, const char *value)
{
    for (int i = 0; i < MAX_EXTRA && cl->extra && cl->extra[i].name; i++)
        if (o == &cl->extra[i])
            cl->given[i] = value;
}

/* Apply one option; an exit status on error, -1 if all is well. */
static int apply(sk_server *s, struct cmdline *cl, const struct serve_option *o, const char *value)
{
    char backends[256];
    int rc = o->set ? o->set(s, value) : sk_server_set_option(s, o->name, value);
    if (rc == 0) {
        if (strcmp(o->name, "listen") == 0)
            cl->listen[cl->nlisten++] = value;
        if (strcmp(o->name, "handover") == 0)
            cl->handover = value;
        note(cl, o, value);
        return -1;
    }
    if (rc == SK_EBACKEND) {
        sk_backend_list(backends, sizeof(backends));
        fprintf(stderr, "%s: unknown backend '%s'; the backends are: %s\n", cl->prog, value,
                backends);
    } else if (rc == -ENOSPC) {
        fprintf(stderr, "%s: too many --listen (%d at most)\n", cl->prog, MAX_LISTEN);
    } else {
        fprintf(stderr, "%s: bad value '%s' for --%s (%s)\n", cl->prog, value, o->name, o->help);
        usage(stderr, cl, false);
    }
    return 2;
}

/* 2 if a required option was not given (and say so), else -1. */
static int missing(const struct cmdline *cl)
{
    for (int i = 0; i < MAX_EXTRA && cl->extra && cl->extra[i].name; i++) {
        const struct serve_option *o = &cl->extra[i];
        if (o->required && !cl->given[i]) {
            fprintf(stderr, "%s: --%s %s is needed (%s)\n", cl->prog, o->name, o->arg, o->help);
            usage(stderr, cl, false);
            return 2;
        }
    }
    return -1;
}

/* Apply the command line; an exit status when the program should end now. */
static int parse(sk_server *s, struct cmdline *cl, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout, cl, true);
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s (libsockkit %s)\n", cl->prog, sk_version());
            return 0;
        }
        size_t len = eq ? (size_t)(eq - arg) - 2 : strlen(arg) - 2;
        const struct serve_option *o = strncmp(arg, "--", 2) ? NULL : find(cl, arg + 2, len);
        const char *value = eq ? eq + 1 : o && !o->arg ? "on" : i + 1 < argc ? argv[++i] : NULL;
        if (o && !o->arg && eq) {
            fprintf(stderr, "%s: --%s takes no value\n", cl->prog, o->name);
            return 2;
        }
        if (!o || !value) {
            fprintf(stderr, o ? "%s: %s needs a value\n" : "%s: unknown option '%s'\n", cl->prog,
                    arg);
            usage(stderr, cl, false);
            return 2;
        }
        int rc = apply(s, cl, o, value);
        if (rc >= 0)
            return rc;
    }
    return missing(cl);
}

/* LISTEN_PID names this process: systemd passed it sockets. */
static bool socket_activated(void)
{
    const char *pid = getenv("LISTEN_PID");
    return pid && getenv("LISTEN_FDS") && strtol(pid, NULL, 10) == (long)getpid();
}

static void bind_error(const struct cmdline *cl, int rc)
{
    if (rc == SK_EURING_OFF || rc == SK_EURING_OLD) { /* the backend, not an address */
        fprintf(stderr, "%s: --backend io_uring: %s\n", cl->prog, sk_strerror(rc));
        return;
    }
    fprintf(stderr, "%s: cannot listen on ", cl->prog);
    for (int i = 0; i < cl->nlisten; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", cl->listen[i]);
    fprintf(stderr, ": %s", sk_strerror(rc));
    if (cl->handover && (rc == -EPERM || rc == -EACCES || rc == -EPROTO || rc == -ETIMEDOUT))
        fprintf(stderr, "; the server at --handover %s did not hand its listeners over "
                        "(another user's, or not a libsockkit server)",
                cl->handover);
    else if (rc == -EADDRINUSE && cl->handover)
        fprintf(stderr, "; or --handover %s names a file that is not a socket", cl->handover);
    else if (rc == -EADDRINUSE)
        fprintf(stderr, "; use another port, or --reuse port if every server sharing "
                        "the port uses it");
    else if (rc == -EACCES)
        fprintf(stderr, "; ports below 1024 need privileges: use another port");
    fprintf(stderr, "\n");
}

/* SIGHUP: load the certificate files again (new handshakes get them). A
 * thread of its own waits for it: a signal handler may not do this. */
struct reloader {
    pthread_t thread;
    sk_tls *tls;
    const char *prog;
    bool running;
    int leave; /* atomic: the next SIGHUP ends the thread */
};

static void *reload_on_hangup(void *arg)
{
    struct reloader *r = arg;
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    for (;;) {
        int sig;
        if (sigwait(&hup, &sig) != 0)
            continue;
        if (__atomic_load_n(&r->leave, __ATOMIC_ACQUIRE))
            break;
        char why[512];
        if (sk_tls_reload(r->tls, &tls_files, why, sizeof(why)) == 0)
            fprintf(stderr, "%s: SIGHUP: certificates reloaded\n", r->prog);
        else
            fprintf(stderr, "%s: SIGHUP: kept the old certificates: %s\n", r->prog, why);
    }
    return NULL;
}

/* TLS from the --tls-* options: an exit status on error, -1 if all is well. */
static int tls_setup(sk_server *s, const struct cmdline *cl, struct reloader *r)
{
    char why[512];
    if (!tls_files.cert_file && !tls_files.key_file && !tls_files.ca_file)
        return -1;
    if (!tls_files.cert_file || !tls_files.key_file) {
        fprintf(stderr, "%s: --tls-cert and --tls-key go together%s\n", cl->prog,
                tls_files.ca_file ? " (and --tls-ca needs them)" : "");
        return 2;
    }
    int rc = sk_tls_server_new(&tls_files, &r->tls, why, sizeof(why));
    if (rc == 0 && (rc = sk_server_set_tls(s, r->tls)) < 0)
        snprintf(why, sizeof(why), "%s", sk_strerror(rc));
    if (rc < 0) {
        fprintf(stderr, "%s: cannot serve TLS: %s\n", cl->prog, why);
        return 1;
    }
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL); /* every thread made later too */
    r->running = pthread_create(&r->thread, NULL, reload_on_hangup, r) == 0;
    return -1;
}

static void tls_cleanup(struct reloader *r)
{
    if (r->running) { /* told, then woken: no cancellation, no signal lost */
        __atomic_store_n(&r->leave, 1, __ATOMIC_RELEASE);
        pthread_kill(r->thread, SIGHUP);
        pthread_join(r->thread, NULL);
    }
    sk_tls_free(r->tls);
}

static const char *program_name(int argc, char **argv)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    return slash ? slash + 1 : argc > 0 ? argv[0] : "server";
}

int serve(sk_server *s, int argc, char **argv, const struct serve_option *extra)
{
    return serve_then(s, argc, argv, extra, NULL);
}

int serve_then(sk_server *s, int argc, char **argv, const struct serve_option *extra,
               int (*ready)(sk_server *s, char *why, size_t size))
{
    struct cmdline cl = {.prog = program_name(argc, argv), .extra = extra};
    struct reloader reloader = {.prog = cl.prog};
    char address[SK_ADDR_STRLEN];
    int rc;
    if (!s) {
        fprintf(stderr, "%s: out of memory\n", cl.prog);
        return 1;
    }
    if ((rc = parse(s, &cl, argc, argv)) >= 0 || (rc = tls_setup(s, &cl, &reloader)) >= 0)
        goto out;
    char why[512];
    if (ready && ready(s, why, sizeof(why)) < 0) {
        fprintf(stderr, "%s: %s\n", cl.prog, why);
        rc = 1;
        goto out;
    }
    /* Started by systemd with its sockets: those, unless told otherwise. */
    const char *fallback = socket_activated() ? "systemd" : DEFAULT_LISTEN;
    if (cl.nlisten == 0 && sk_server_add_listen(s, fallback) == 0)
        cl.listen[cl.nlisten++] = fallback;
    sk_server_stop_on_signal(s, SIGINT);
    sk_server_stop_on_signal(s, SIGTERM);
    sk_server_drain_on_signal(s, SIGQUIT); /* twice: a stop */
    if ((rc = sk_server_bind(s)) < 0) {
        bind_error(&cl, rc);
        rc = 1;
        goto out;
    }
    sk_server_address(s, address, sizeof(address));
    printf("listening on %s backend=%s%s", address, sk_server_backend(s),
           reloader.tls ? " tls=on" : "");
    for (int i = 0; i < MAX_EXTRA && extra && extra[i].name; i++)
        if (extra[i].shown && cl.given[i])
            printf(" %s=%s", extra[i].name, cl.given[i]);
    printf("\n");
    fflush(stdout);
    if ((rc = sk_server_run(s)) < 0)
        fprintf(stderr, "%s: %s\n", cl.prog, sk_strerror(rc));
    rc = rc < 0 ? 1 : 0;
out:
    sk_server_free(s);
    tls_cleanup(&reloader);
    return rc;
}
