/* SPDX-License-Identifier: MIT */
/*
 * The loop beyond answering clients, on every backend (loop.h): outbound
 * connections (made, refused, timed out, unix, by name, unresolvable, from a
 * server with no listener) in the home of what opened them, and work posted
 * from other threads (none lost, in order, said so when its connection is
 * gone, bounded).
 *
 * The server under test is a small relay: a client says "connect ADDR [MS]",
 * and the server opens ADDR from the client's callback, tells the client
 * "open" or "closed REASON ERROR", and passes lines both ways ("send TEXT"
 * goes to the upstream; the upstream's lines come back to the client).
 *
 *     test_loop BACKEND [WORKERS]
 */
#include "harness.h"

#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum { C_WRONG_HOME, C_UP_OPENED, C_POSTS_RAN, C_POSTS_GONE, C_POSTS_MADE, C_HOME_RAN };

/* ---- the relay the server runs ----------------------------------------- */

struct pair {
    sk_conn *client, *up;
    bool leave;         /* the upstream's close closes the client ("leave") */
    pid_t pid;          /* the client's home: its process and thread */
    pthread_t thread;
};

static void relay_open(sk_conn *c)
{
    struct pair *p = sk_conn_data(c);
    shared_add(&sh->opens);
    if (!sk_conn_outbound(c))
        return;
    shared_add(&sh->custom[C_UP_OPENED]);
    if (!p) { /* opened by a server timer: nobody's pair */
        sk_conn_send(c, "hello\n", 6);
        return;
    }
    if (p->pid != getpid() || !pthread_equal(p->thread, pthread_self()))
        shared_add(&sh->custom[C_WRONG_HOME]); /* not where its opener runs */
    if (p->up != c)
        shared_add(&sh->errors);
    sk_conn_send(c, "hello\n", 6);
    if (p->client)
        sk_conn_send(p->client, "open\n", 5);
}

static void open_up(sk_conn *c, const char *addr, int ms, const char *then);

/* "later ADDR": the connection's timer opens it, 20 ms on. */
static char later_addr[200];

static void later(sk_timer *t, void *arg)
{
    sk_timer_free(t);
    open_up(arg, later_addr, 2000, "");
}

static void relay_line(sk_conn *c, char *line, size_t len)
{
    struct pair *p = sk_conn_data(c);
    if (sk_conn_outbound(c)) { /* the upstream's lines go back to the client */
        if (p && p->client)
            sk_conn_sendf(p->client, "%.*s\n", (int)len, line);
        return;
    }
    char addr[200], then[16] = "";
    int ms = 2000;
    if (!p && sscanf(line, "later %199s", later_addr) == 1) {
        sk_timer *t = sk_conn_timer(c, later, c);
        if (!t || sk_timer_start(t, 20, 0) < 0)
            shared_add(&sh->errors);
    } else if (!p && sscanf(line, "connect %199s %d %15s", addr, &ms, then) >= 1) {
        open_up(c, addr, ms, then);
    } else if (p && strncmp(line, "send ", 5) == 0 && p->up) {
        sk_conn_sendf(p->up, "%s\n", line + 5); /* queued while it connects */
    } else if (p && strcmp(line, "close") == 0 && p->up) {
        sk_conn_close(p->up);
    }
}

/* Open addr for client c, from c's callback or timer: made in c's home. */
static void open_up(sk_conn *c, const char *addr, int ms, const char *then)
{
    struct pair *p = calloc(1, sizeof(*p));
    if (!p) {
        sk_conn_close(c);
        return;
    }
    p->client = c;
    p->pid = getpid();
    p->thread = pthread_self();
    sk_conn_set_data(c, p);
    int rc = sk_server_connect(sk_conn_server(c), addr, ms, p, &p->up);
    if (rc < 0 || !p->up) { /* made from a callback: made here, at once */
        sk_conn_sendf(c, "refused %d\n", rc);
        sk_conn_set_data(c, NULL);
        free(p);
    } else if (strcmp(then, "leave") == 0) {
        p->leave = true;
    } else if (strcmp(then, "shut") == 0) { /* while it connects: a FIN after "early" */
        sk_conn_send(p->up, "early\n", 6);
        if (sk_conn_shutdown(p->up) != 0)
            shared_add(&sh->errors);
    }
}

static void relay_close(sk_conn *c, sk_close_reason why)
{
    struct pair *p = sk_conn_data(c);
    shared_add(&sh->closes[why]);
    if (!p)
        return;
    if (sk_conn_outbound(c)) {
        p->up = NULL;
        if (!p->client) {
            free(p);
            return;
        }
        sk_conn_sendf(p->client, "closed %s %d\n", sk_close_reason_name(why), sk_conn_error(c));
        if (p->leave) /* a client settled before this one: closed at once */
            sk_conn_close(p->client);
    } else {
        p->client = NULL;
        if (p->up)
            sk_conn_close(p->up); /* it frees the pair */
        else
            free(p);
    }
}

static sk_server *relay_server(void)
{
    sk_server *s = new_server(relay_line);
    assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, 1024), 0);
    assert_int_equal(sk_server_on_open(s, relay_open), 0);
    assert_int_equal(sk_server_on_close(s, relay_close), 0);
    return s;
}

/* ---- the test's side --------------------------------------------------- */

static int listen_tcp(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accept one connection within ms. */
static int accept_within(int lfd, int ms)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, ms), 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void say(int fd, const char *text)
{
    assert_int_equal(sk_write_all(fd, text, strlen(text), 2000), (ssize_t)strlen(text));
}

/* The next line from fd (within 5 s), without its '\n'. */
static void next_line(int fd, char *line, size_t size)
{
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t got = sk_read_some(fd, line + n, 1, 5000);
        assert_int_equal(got, 1);
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
}

static void expect_line(int fd, const char *want)
{
    char line[256];
    next_line(fd, line, sizeof(line));
    assert_string_equal(line, want);
}

/* ---- outbound connections ---------------------------------------------- */

/* A listener of the test's (made after start: the server has not inherited
 * it) and a client that asks the relay to connect to it, with what follows
 * the address on its line (a timeout, "shut", further lines): the client. */
static int client_to_listener(struct running *r, int *lfd, const char *then)
{
    int port;
    char text[128];
    *lfd = listen_tcp(8, &port);
    int c = dial(r);
    snprintf(text, sizeof(text), "connect 127.0.0.1:%d%s\n", port, then);
    say(c, text);
    return c;
}

static void an_outbound_connection_talks_both_ways(void **state)
{
    (void)state;
    struct running r;
    start(&r, relay_server());
    int lfd, c = client_to_listener(&r, &lfd, "\nsend early"); /* queued while it connects */
    int up = accept_within(lfd, 5000);
    expect_line(up, "early");
    expect_line(up, "hello");
    expect_line(c, "open");
    say(up, "world\n");
    expect_line(c, "world");
    say(c, "send again\n");
    expect_line(up, "again");
    close(up); /* the upstream closes: the client hears of it */
    expect_line(c, "closed peer 0");
    assert_int_equal(shared_get(&sh->custom[C_UP_OPENED]), 1);
    assert_int_equal(shared_get(&sh->custom[C_WRONG_HOME]), 0);
    /* outbound connections take no admission slot and are not counted */
    assert_int_equal(server_count(&r), 1);
    close(c);
    wait_count(&r, 0, 5000);
    close(lfd);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
}

/* sk_conn_shutdown() on a connection still connecting: its FIN follows the
 * output queued meanwhile, once connected; it reads on. */
static void a_shutdown_while_connecting_comes_after_the_output(void **state)
{
    (void)state;
    struct running r;
    start(&r, relay_server());
    int lfd, c = client_to_listener(&r, &lfd, " 2000 shut");
    int up = accept_within(lfd, 5000);
    expect_line(up, "early");
    expect_eof(up, 5000); /* "hello" came after the shutdown: refused */
    expect_line(c, "open");
    say(up, "still\n"); /* the other direction flows on */
    expect_line(c, "still");
    close(up);
    expect_line(c, "closed peer 0");
    close(c);
    close(lfd);
    wait_count(&r, 0, 5000);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
}

static void a_client_that_leaves_closes_its_upstream(void **state)
{
    (void)state;
    struct running r;
    start(&r, relay_server());
    int lfd, c = client_to_listener(&r, &lfd, "");
    int up = accept_within(lfd, 5000);
    expect_line(c, "open");
    close(c);
    expect_line(up, "hello");
    expect_eof(up, 5000); /* closed with its client */
    wait_for(&sh->closes[SK_CLOSE_LOCAL], 1, 5000);
    close(up);
    close(lfd);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
}

static void failed_connects_say_why(void **state)
{
    (void)state;
    struct running r;
    start(&r, relay_server());
    char text[200], want[64];

    /* refused: a port nothing listens on */
    int port, lfd = listen_tcp(1, &port);
    close(lfd);
    int c = dial(&r);
    snprintf(text, sizeof(text), "connect 127.0.0.1:%d\n", port);
    say(c, text);
    snprintf(want, sizeof(want), "closed connect %d", -ECONNREFUSED);
    expect_line(c, want);
    close(c);

    /* no answer: a listener whose queue is full drops the SYN; 300 ms */
    lfd = listen_tcp(0, &port);
    int filler = tu_dial("127.0.0.1", port);
    assert_true(filler >= 0);
    struct pollfd pf = {.fd = filler, .events = POLLOUT};
    assert_int_equal(poll(&pf, 1, 2000), 1); /* the queue's one place is taken */
    c = dial(&r);
    snprintf(text, sizeof(text), "connect 127.0.0.1:%d 300\n", port);
    int64_t t0 = tu_now_ms();
    say(c, text);
    snprintf(want, sizeof(want), "closed connect %d", -ETIMEDOUT);
    expect_line(c, want);
    int64_t took = tu_now_ms() - t0;
    assert_true(took >= 300);
    assert_true(took < 3000);
    close(c);
    close(filler);
    close(lfd);

    /* refused, and the client closed by the upstream's on_close: at once */
    lfd = listen_tcp(1, &port);
    close(lfd);
    c = dial(&r);
    snprintf(text, sizeof(text), "connect 127.0.0.1:%d 2000 leave\n", port);
    t0 = tu_now_ms();
    say(c, text);
    snprintf(want, sizeof(want), "closed connect %d", -ECONNREFUSED);
    expect_line(c, want);
    expect_eof(c, 5000);
    took = tu_now_ms() - t0;
    assert_true(took < 1000);
    close(c);

    /* a name that does not resolve (tests' resolver: *.sk-test) */
    c = dial(&r);
    say(c, "connect nowhere.sk-test:80\n");
    snprintf(want, sizeof(want), "closed connect %d", SK_EAI_NONAME);
    expect_line(c, want);
    close(c);

    /* a unix path nothing listens on */
    c = dial(&r);
    say(c, "connect unix:/nonexistent/sk-test.sock\n");
    snprintf(want, sizeof(want), "closed connect %d", -ENOENT);
    expect_line(c, want);
    close(c);

    /* an address that cannot parse: refused at once, nothing made */
    c = dial(&r);
    say(c, "connect 127.0.0.1\n");
    snprintf(want, sizeof(want), "refused %d", SK_EPORT);
    expect_line(c, want);
    close(c);

    wait_count(&r, 0, 5000);
    assert_int_equal(shared_get(&sh->custom[C_UP_OPENED]), 0);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_CONNECT]), 5);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
}

static void names_and_unix_paths_connect_too(void **state)
{
    (void)state;
    struct running r;
    start(&r, relay_server());
    char text[300];

    /* dual.sk-test: ::1 first, then 127.0.0.1, where only the second listens */
    int port, lfd = listen_tcp(8, &port);
    int c = dial(&r);
    snprintf(text, sizeof(text), "connect dual.sk-test:%d\n", port);
    say(c, text);
    int up = accept_within(lfd, 5000);
    expect_line(up, "hello");
    expect_line(c, "open");
    say(up, "by name\n");
    expect_line(c, "by name");
    close(c);
    expect_eof(up, 5000);
    close(up);
    close(lfd);

    /* unix */
    char *dir = tu_tmpdir();
    struct sockaddr_un ua = {.sun_family = AF_UNIX};
    snprintf(ua.sun_path, sizeof(ua.sun_path), "%s/up.sock", dir);
    int ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(ufd, (struct sockaddr *)&ua, sizeof(ua)), 0);
    assert_int_equal(listen(ufd, 8), 0);
    c = dial(&r);
    snprintf(text, sizeof(text), "connect unix:%s\n", ua.sun_path);
    say(c, text);
    up = accept_within(ufd, 5000);
    expect_line(up, "hello");
    expect_line(c, "open");
    say(up, "by path\n");
    expect_line(c, "by path");
    close(c);
    expect_eof(up, 5000);
    close(up);
    close(ufd);
    tu_rmtree(dir);

    wait_count(&r, 0, 5000);
    assert_int_equal(shared_get(&sh->custom[C_WRONG_HOME]), 0);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
}

/* A connection's timer and a server's timer open connections too: the
 * first in its connection's home (relay_open checks), the second in the
 * server's (the up port comes through the shared page, once it exists). */
static void server_tick(sk_timer *t, void *arg)
{
    int port = shared_get(&sh->custom[5]);
    char addr[64];
    if (!port)
        return;
    sk_timer_stop(t);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    if (sk_server_connect(arg, addr, 2000, NULL, NULL) != 0) /* from a server timer */
        shared_add(&sh->errors);
}

static void arm_server_tick(sk_server *s)
{
    sk_timer *t = sk_server_timer(s, server_tick, s);
    if (!t || sk_timer_start(t, 10, 10) < 0)
        shared_add(&sh->errors);
}

static void timers_open_connections_too(void **state)
{
    (void)state;
    struct running r;
    harness_before_run = arm_server_tick;
    start(&r, relay_server());
    int port, lfd = listen_tcp(8, &port);

    /* a connection's timer: in that connection's home, *conn set */
    int c = dial(&r);
    char text[128];
    snprintf(text, sizeof(text), "later 127.0.0.1:%d\n", port);
    say(c, text);
    int up = accept_within(lfd, 5000);
    expect_line(up, "hello");
    expect_line(c, "open");
    close(c);
    expect_eof(up, 5000);
    close(up);

    /* a server timer: in the server's home, met by its callbacks (no data) */
    __atomic_store_n(&sh->custom[5], port, __ATOMIC_RELEASE);
    up = accept_within(lfd, 5000);
    expect_line(up, "hello"); /* relay_open greets every upstream */
    close(up);
    wait_for(&sh->closes[SK_CLOSE_PEER], 2, 5000); /* the first client, this upstream */
    assert_int_equal(shared_get(&sh->custom[C_UP_OPENED]), 2);
    assert_int_equal(shared_get(&sh->custom[C_WRONG_HOME]), 0);
    close(lfd);
    wait_count(&r, 0, 5000);
    finish(&r);
    harness_before_run = NULL;
}

/* ---- a client program: a server with no listener ------------------------ */

static int client_port;
static int client_rounds;

static void client_open(sk_conn *c)
{
    shared_add(&sh->opens);
    sk_conn_sendf(c, "round %d\n", shared_get(&sh->custom[0]));
}

static void client_line(sk_conn *c, char *line, size_t len)
{
    (void)len;
    if (strcmp(line, "again") == 0) /* from the callback: made in this loop */
        sk_server_connect(sk_conn_server(c), sk_conn_data(c), 2000, sk_conn_data(c), NULL);
    sk_conn_close(c);
}

static void client_close(sk_conn *c, sk_close_reason why)
{
    shared_add(&sh->closes[why]);
    if (shared_get(&sh->closes[SK_CLOSE_LOCAL]) == client_rounds)
        sk_server_stop(sk_conn_server(c)); /* the program's work is done */
}

static void *run_client(void *arg)
{
    sk_server *s = arg;
    return (void *)(intptr_t)sk_server_run(s);
}

static void a_server_with_no_listener_is_a_client(void **state)
{
    (void)state;
    int lfd = listen_tcp(8, &client_port);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", client_port);
    client_rounds = 2;
    sk_server *s = sk_server_new(NULL);
    assert_non_null(s);
    assert_int_equal(sk_server_set_backend(s, backend), 0);
    sk_server_set_framing(s, SK_FRAMING_LINES, 1024);
    sk_server_on_open(s, client_open);
    sk_server_on_data(s, client_line);
    sk_server_on_close(s, client_close);
    /* before the run: made once it runs, in the server's home */
    assert_int_equal(sk_server_connect(s, addr, 2000, addr, NULL), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_client, s), 0);
    for (int round = 0; round < client_rounds; round++) {
        int up = accept_within(lfd, 5000);
        expect_line(up, "round 0");
        say(up, round == 0 ? "again\n" : "bye\n");
        expect_eof(up, 5000);
        close(up);
    }
    void *rc;
    pthread_join(t, &rc); /* the last close stopped it */
    assert_int_equal((intptr_t)rc, 0);
    assert_int_equal(shared_get(&sh->opens), 2);
    assert_int_equal(shared_get(&sh->closes[SK_CLOSE_LOCAL]), 2);
    sk_server_free(s);
    close(lfd);
}

/* ---- posted work -------------------------------------------------------- */

enum { POSTERS = 8, POSTS = 10000 };

struct flood {
    sk_server *s;
    uint64_t id;
    int k;
    int posts;
    int *last;          /* per poster: the last sequence number that ran */
    pthread_t threads[POSTERS];
    int order_errors;
    int ran, gone;      /* on the loop only */
    int total;
};

struct note {
    struct flood *f;
    int k, seq;
};

static void ran_post(sk_server *s, sk_conn *c, void *arg)
{
    struct note *n = arg;
    struct flood *f = n->f;
    (void)s;
    if (n->seq != f->last[n->k] + 1) { /* out of order, or one lost */
        f->order_errors++;
        shared_add(&sh->errors);
    }
    f->last[n->k] = n->seq;
    if (c) {
        f->ran++;
        shared_add(&sh->custom[C_POSTS_RAN]);
    } else {
        f->gone++;
        shared_add(&sh->custom[C_POSTS_GONE]);
    }
    free(n);
    if (c && f->ran == f->total)
        sk_conn_sendf(c, "done %d %d\n", f->ran, f->order_errors);
}

/* Post, retrying while the loop is full (-EAGAIN), for 20 s at most (then
 * -ETIMEDOUT): a loop that stopped taking posts fails the test, never hangs it. */
static int post_within(sk_server *s, uint64_t id, sk_post_fn fn, void *arg)
{
    int64_t until = tu_now_ms() + 20000;
    int rc;
    while ((rc = sk_server_post(s, id, fn, arg)) == -EAGAIN && tu_now_ms() < until)
        sched_yield(); /* full: the loop is behind; never lost */
    return rc == -EAGAIN ? -ETIMEDOUT : rc;
}

/* A poster: its posts, in order; it stops at the first -ENOENT (the
 * connection is gone). */
static void *poster(void *arg)
{
    struct flood *f = arg;
    int k = __atomic_fetch_add(&f->k, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < f->posts; i++) {
        struct note *n = malloc(sizeof(*n));
        *n = (struct note){.f = f, .k = k, .seq = i};
        int rc = post_within(f->s, f->id, ran_post, n);
        if (rc < 0) {
            free(n);
            if (rc != -ENOENT)
                shared_add(&sh->errors);
            break;
        }
        shared_add(&sh->custom[C_POSTS_MADE]);
    }
    return NULL;
}

static struct flood *flood;

static void flood_line(sk_conn *c, char *line, size_t len)
{
    (void)len;
    int posts = 0;
    if (sscanf(line, "flood %d", &posts) != 1 || flood)
        return;
    flood = calloc(1, sizeof(*flood));
    flood->last = malloc(POSTERS * sizeof(int));
    for (int i = 0; i < POSTERS; i++)
        flood->last[i] = -1;
    flood->s = sk_conn_server(c);
    flood->id = sk_conn_id(c);
    flood->posts = posts;
    flood->total = posts * POSTERS;
    for (int i = 0; i < POSTERS; i++)
        pthread_create(&flood->threads[i], NULL, poster, flood);
}

/* In the connection's home (a fork child's too): the posters stop at their
 * first -ENOENT, as its id is gone before on_close runs. What they made
 * still runs, after this, on this loop. */
static void flood_close(sk_conn *c, sk_close_reason why)
{
    (void)c;
    shared_add(&sh->closes[why]);
    for (int i = 0; flood && i < POSTERS; i++)
        pthread_join(flood->threads[i], NULL);
}

/* After the run (its loops have run every post): the posts' record. */
static void free_flood(sk_server *s)
{
    (void)s;
    if (!flood)
        return;
    free(flood->last);
    free(flood);
    flood = NULL;
}

static void eight_threads_post_and_none_is_lost(void **state)
{
    (void)state;
    int posts = POSTS / test_scale();
    struct running r;
    sk_server *s = new_server(flood_line);
    sk_server_set_framing(s, SK_FRAMING_LINES, 1024);
    sk_server_on_close(s, flood_close);
    harness_after_run = free_flood;
    start(&r, s);
    long heap0 = server_heap_kib(&r);
    int c = dial(&r);
    char text[64];
    snprintf(text, sizeof(text), "flood %d\n", posts);
    say(c, text);
    char line[128], want[64];
    int64_t until = tu_now_ms() + 60000;
    struct pollfd p = {.fd = c, .events = POLLIN};
    while (poll(&p, 1, 100) == 0 && tu_now_ms() < until)
        ;
    next_line(c, line, sizeof(line));
    snprintf(want, sizeof(want), "done %d 0", posts * POSTERS); /* all, each in its order */
    assert_string_equal(line, want);
    /* bounded: a loop holds SK_POST_MAX posts at most, whatever the posters do */
    long grown = server_heap_kib(&r) - heap0;
    print_message("# %s: %d posts from %d threads, none lost, in order; heap grew %ld KiB\n",
                  backend, posts * POSTERS, POSTERS, grown);
    assert_true(grown < 8 * 1024);
    assert_int_equal(shared_get(&sh->custom[C_POSTS_RAN]), posts * POSTERS);
    assert_int_equal(shared_get(&sh->custom[C_POSTS_GONE]), 0);
    close(c);
    wait_count(&r, 0, 5000);
    assert_int_equal(shared_get(&sh->errors), 0);
    finish(&r);
    harness_after_run = NULL;
}

/* Posts that were made run exactly once, also when the connection closes
 * under them (then with conn NULL); after that, posting says -ENOENT. */
static void posts_to_a_closing_connection_say_so(void **state)
{
    (void)state;
    struct running r;
    sk_server *s = new_server(flood_line);
    sk_server_set_framing(s, SK_FRAMING_LINES, 1024);
    sk_server_on_close(s, flood_close);
    harness_after_run = free_flood;
    start(&r, s);
    int c = dial(&r);
    say(c, "flood 1000000\n"); /* more than it will live for */
    int64_t until = tu_now_ms() + 10000;
    while (shared_get(&sh->custom[C_POSTS_RAN]) < 1000 && tu_now_ms() < until)
        usleep(1000);
    assert_true(shared_get(&sh->custom[C_POSTS_RAN]) >= 1000);
    close(c);
    wait_count(&r, 0, 5000);
    finish(&r); /* the posters stopped at -ENOENT; the loop ran what they made */
    harness_after_run = NULL;
    int made = shared_get(&sh->custom[C_POSTS_MADE]);
    int ran = shared_get(&sh->custom[C_POSTS_RAN]), gone = shared_get(&sh->custom[C_POSTS_GONE]);
    print_message("# %s: %d posts made, %d ran with the connection, %d after it\n", backend,
                  made, ran, gone);
    assert_int_equal(ran + gone, made);
    assert_true(made < 1000000 * POSTERS);
    assert_int_equal(shared_get(&sh->errors), 0);
}

/* Posted to the server (id 0): run in the thread of sk_server_run(). */
static pthread_t run_thread;

static void note_run_thread(sk_server *s)
{
    (void)s;
    run_thread = pthread_self();
}

static void ran_at_home(sk_server *s, sk_conn *c, void *arg)
{
    (void)s;
    (void)arg;
    /* fork: a child's thread posts to that child's loop */
    bool here = strcmp(backend, "fork") == 0 ? getpid() == sh->custom[6]
                                              : getpid() == sh->custom[7] &&
                                                    pthread_equal(pthread_self(), run_thread);
    if (c || !here)
        shared_add(&sh->errors);
    shared_add(&sh->custom[C_HOME_RAN]);
}

static void *post_home(void *arg)
{
    for (int i = 0; i < 100; i++)
        if (post_within(arg, 0, ran_at_home, NULL) < 0)
            shared_add(&sh->errors);
    return NULL;
}

static void home_line(sk_conn *c, char *line, size_t len)
{
    (void)len;
    (void)line;
    sh->custom[6] = getpid();
    pthread_t t;
    if (pthread_create(&t, NULL, post_home, sk_conn_server(c)) == 0)
        pthread_join(t, NULL);
    sk_conn_send(c, "posted\n", 7);
}

static void home_before_run(sk_server *s)
{
    note_run_thread(s);
    sh->custom[7] = getpid();
}

static void posts_to_the_server_run_where_its_timers_do(void **state)
{
    (void)state;
    struct running r;
    sk_server *s = new_server(home_line);
    sk_server_set_framing(s, SK_FRAMING_LINES, 1024);
    harness_before_run = home_before_run;
    start(&r, s);
    int c = dial(&r);
    say(c, "go\n");
    expect_line(c, "posted");
    wait_for(&sh->custom[C_HOME_RAN], 100, 10000);
    close(c);
    finish(&r);
    harness_before_run = NULL;
    assert_int_equal(shared_get(&sh->errors), 0);
}

int main(int argc, char **argv)
{
    if (harness_init(argc, argv) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(an_outbound_connection_talks_both_ways, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_client_that_leaves_closes_its_upstream, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_shutdown_while_connecting_comes_after_the_output,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(failed_connects_say_why, harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(names_and_unix_paths_connect_too, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(timers_open_connections_too, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(a_server_with_no_listener_is_a_client, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(eight_threads_post_and_none_is_lost, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(posts_to_a_closing_connection_say_so, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(posts_to_the_server_run_where_its_timers_do,
                                        harness_setup, harness_teardown),
    };
    char group[64];
    snprintf(group, sizeof(group), "loop/%s/workers=%d", backend, workers);
    return _cmocka_run_group_tests(group, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}
