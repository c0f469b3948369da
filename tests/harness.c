/* SPDX-License-Identifier: MIT */
/* The server-test harness: see harness.h. */
#include "harness.h"
#include "poll_backend.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SK_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SK_TEST_LSAN 1
#endif
#endif
#ifdef SK_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif
/* Built with a sanitizer that keeps its own allocator (address, thread). */
#if defined(SK_TEST_LSAN) || defined(__SANITIZE_THREAD__)
#define SK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SK_TEST_SANITIZED 1
#endif
#endif
#ifdef SK_TEST_SANITIZED
/* The sanitizer runtimes' (gcc installs no header for it). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

const char *backend;
int workers;
sk_reuse reuse = SK_REUSE_ADDR;
/* ---- what handlers report --------------------------------------------- */

struct shared *sh;

int shared_get(int *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

void shared_add(int *p)
{
    __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL);
}

int total_closes(void)
{
    int n = 0;
    for (int i = 0; i <= SK_CLOSE_TLS; i++)
        n += shared_get(&sh->closes[i]);
    return n;
}

/* Wait (bounded) until *p reaches want. */
void wait_for(int *p, int want, int ms)
{
    int64_t until = tu_now_ms() + ms;
    while (shared_get(p) < want && tu_now_ms() < until)
        usleep(2000);
    if (shared_get(p) != want)
        fail_msg("waited %d ms for %d, have %d", ms, want, shared_get(p));
}

/* ---- handlers ---------------------------------------------------------- */

static void on_open(sk_conn *c)
{
    (void)c;
    shared_add(&sh->opens);
}

static void on_close(sk_conn *c, sk_close_reason why)
{
    if (why == SK_CLOSE_TOO_LONG)
        sk_conn_send(c, "error: line too long\n", 21);
    if (why == SK_CLOSE_STOP)
        sk_conn_send(c, "bye\n", 4);
    shared_add(&sh->closes[why]);
}

/* ---- a server in its own process ---------------------------------------
 * Each server runs in a process forked before any client socket exists, so a
 * fork backend's children never inherit the test's clients (which would keep
 * their connections open). The test talks to it over a control socket:
 *   "count" "stats" "broadcast TEXT" "stop"; after sk_server_run() returns the
 * server process reports "done RC THREADS0 THREADS FDS0 FDS CHILDREN". */



sk_server *new_server(sk_data_fn on_data)
{
    sk_server *s = sk_server_new("127.0.0.1:0");
    assert_non_null(s);
    assert_int_equal(sk_server_set_backend(s, backend), 0);
    assert_int_equal(sk_server_set_workers(s, workers), 0);
    assert_int_equal(sk_server_set_reuse(s, reuse), 0);
    assert_int_equal(sk_server_on_open(s, on_open), 0);
    assert_int_equal(sk_server_on_data(s, on_data), 0);
    assert_int_equal(sk_server_on_close(s, on_close), 0);
    assert_int_equal(sk_server_set_drain_timeout(s, 2000), 0);
    return s;
}

int child_processes(pid_t parent);
int thread_count(pid_t pid);
int fd_count(pid_t pid);

static sk_server *served;
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
/* Held by the control thread while it calls the server, and by the main
 * thread to take the server away before freeing it: a stop still inside its
 * write() to the stop descriptor must not meet sk_server_free()'s close(). */
static pthread_mutex_t served_lock = PTHREAD_MUTEX_INITIALIZER;
/* Server processes running: killed (with their process groups) by teardown
 * if a test fails half-way. A test may run two at once (a handover). */
#define MAX_LIVE 4
static pid_t live_servers[MAX_LIVE];

static void live_add(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live_servers[i] == 0) {
            live_servers[i] = pid;
            return;
        }
    fail_msg("more than %d servers at once", MAX_LIVE);
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live_servers[i] == pid)
            live_servers[i] = 0;
}

static void stop_on_signal(int sig)
{
    (void)sig;
    sk_server_stop(__atomic_load_n(&served, __ATOMIC_ACQUIRE));
}

static void ctl_reply(int ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ctl_reply(int ctl, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&ctl_lock);
    sk_write_all(ctl, buf, (size_t)n, 5000);
    pthread_mutex_unlock(&ctl_lock);
}

/* The server process's heap in use, KiB: what its allocator holds for live
 * blocks (a sanitizer's own count under one: its quarantine is not in use). */
static long heap_kib(void)
{
#if SK_TEST_SANITIZED
    return (long)(__sanitizer_get_current_allocated_bytes() >> 10);
#else
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) >> 10);
#endif
}

/* The control thread's reader, held here rather than on its stack: a fork
 * child has no such thread, and valgrind would call the block lost there. */
static sk_lines *ctl_lines;

/* Posted by the control thread once it is set up. */
static sem_t ctl_ready;

static void *control_thread(void *arg)
{
    int ctl = (int)(intptr_t)arg;
    sk_lines *lines = ctl_lines;
    sem_post(&ctl_ready);
    char *line;
    ssize_t n;
    while ((n = sk_lines_read(lines, &line, -1)) > 0) {
        line[strcspn(line, "\n")] = '\0';
        pthread_mutex_lock(&served_lock);
        if (!served) { /* the run is over: nothing to stop, nothing to ask */
            if (strcmp(line, "stop") != 0)
                ctl_reply(ctl, "?\n");
        } else if (strcmp(line, "count") == 0) {
            ctl_reply(ctl, "%d\n", sk_server_conn_count(served));
        } else if (strcmp(line, "stats") == 0) {
            sk_stats st;
            sk_server_stats(served, &st);
            ctl_reply(ctl, "%llu %llu %llu %llu %llu\n", st.accepted, st.refused, st.reads,
                      st.read_events, st.buffered);
        } else if (strncmp(line, "broadcast ", 10) == 0) {
            ctl_reply(ctl, "%d\n", sk_server_broadcastf(served, NULL, "%s\n", line + 10));
        } else if (strcmp(line, "stop") == 0) {
            sk_server_stop(served);
        } else if (strcmp(line, "draining") == 0) {
            ctl_reply(ctl, "%d\n", sk_server_draining(served));
        } else if (strcmp(line, "drain") == 0) {
            ctl_reply(ctl, "%d\n", sk_server_drain(served));
        } else if (strcmp(line, "heap") == 0) {
            ctl_reply(ctl, "%ld\n", heap_kib());
        } else if (harness_on_command) {
            char reply[256] = "?";
            harness_on_command(line, reply, sizeof(reply));
            ctl_reply(ctl, "%s\n", reply);
        }
        pthread_mutex_unlock(&served_lock);
    }
    sk_lines_free(ctl_lines); /* (read back: a store never read could be dropped) */
    return NULL;
}

/* Threads now, once those already joined have left /proc: the kernel lists a
 * thread until it has released it, a moment after pthread_join() returned.
 * A thread that was not joined stays, and the count shows it (2 s at most). */
static int settled_thread_count(int want)
{
    int n = thread_count(getpid());
    for (int i = 0; i < 2000 && n > want; i++) {
        usleep(1000);
        n = thread_count(getpid());
    }
    return n;
}

static void server_process(sk_server *s, int ctl)
{
    served = s;
    struct sigaction sa = {.sa_handler = stop_on_signal};
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    /* Made here, not in the thread: a fork backend's first child could be
     * forked while that thread is inside malloc, and a sanitizer's allocator
     * would stay locked in the child. */
    ctl_lines = sk_lines_new(ctl, 4096);
    sem_init(&ctl_ready, 0, 0);
    pthread_create(&t, NULL, control_thread, (void *)(intptr_t)ctl);
    /* and the run waits until the thread has started (its start allocates) */
    while (sem_wait(&ctl_ready) < 0)
        ;
    if (harness_before_run)
        harness_before_run(s);
    struct report r = {.threads0 = thread_count(getpid()), .fds0 = fd_count(getpid())};
    r.rc = sk_server_run(s);
    if (harness_after_run)
        harness_after_run(s);
    r.threads = settled_thread_count(r.threads0);
    r.fds = fd_count(getpid());
    r.children = child_processes(getpid());
    pthread_mutex_lock(&served_lock);
    __atomic_store_n(&served, NULL, __ATOMIC_RELEASE); /* a late signal stops nothing */
    pthread_mutex_unlock(&served_lock);
    sk_server_free(s);
#if SK_TEST_LSAN /* this process ends with _exit: check for leaks ourselves */
    r.leaks = __lsan_do_recoverable_leak_check();
#endif
    ctl_reply(ctl, "done %d %d %d %d %d %d %d\n", r.rc, r.threads0, r.threads, r.fds0, r.fds,
              r.children, r.leaks);
    _exit(0);
}

void start(struct running *r, sk_server *s)
{
    int sv[2];
    memset(r, 0, sizeof(*r));
    assert_int_equal(sk_server_bind(s), 0);
    assert_true(sk_server_address(s, r->addr, sizeof(r->addr)) > 0);
    r->port = sk_local_port(sk_server_listener(s, 0));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        setpgid(0, 0); /* its fork children too can be found and killed */
        close(sv[0]);
        server_process(s, sv[1]);
    }
    setpgid(r->pid, r->pid);
    live_add(r->pid);
    close(sv[1]);
    r->ctl = sv[0];
    sk_server_free(s); /* our copy: the listening sockets are the server process's now */
}

void start_unbound(struct running *r, sk_server *s, const int *clients)
{
    int sv[2];
    memset(r, 0, sizeof(*r));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        setpgid(0, 0);
        close(sv[0]);
        for (int i = 0; clients && clients[i] >= 0; i++)
            close(clients[i]); /* the test's: their close must reach the peer */
        int rc = sk_server_bind(s);
        char addr[SK_ADDR_STRLEN] = "-";
        if (rc == 0)
            sk_server_address(s, addr, sizeof(addr));
        ctl_reply(sv[1], "bound %d %s\n", rc, addr);
        if (rc < 0) {
            sk_server_free(s);
            _exit(0);
        }
        server_process(s, sv[1]);
    }
    setpgid(r->pid, r->pid);
    live_add(r->pid);
    close(sv[1]);
    r->ctl = sv[0];
    sk_server_free(s); /* our copy, never bound */
    char line[SK_ADDR_STRLEN + 32];
    size_t n = 0;
    while (n + 1 < sizeof(line)) { /* a byte at a time: the report may follow */
        ssize_t got = sk_read_some(r->ctl, line + n, 1, 20000 * test_scale());
        assert_int_equal(got, 1);
        if (line[n++] == '\n')
            break;
    }
    line[n] = '\0';
    assert_int_equal(sscanf(line, "bound %d %127s", &r->bind_rc, r->addr), 2);
    if (r->bind_rc < 0) {
        int status;
        assert_int_equal(waitpid(r->pid, &status, 0), r->pid);
        live_remove(r->pid);
        close(r->ctl);
        return;
    }
    r->port = strncmp(r->addr, "unix:", 5) ? atoi(strrchr(r->addr, ':') + 1) : 0;
}

/* Ask the server process something; its one-line answer. The line is read a
 * byte at a time: a buffered reader could take in the "done" report that may
 * follow at once (a server stopped by what was asked) and lose it. */
char *ask(struct running *r, const char *question, char *answer, size_t size)
{
    assert_true(sk_write_all(r->ctl, question, strlen(question), 5000) > 0);
    int64_t until = tu_now_ms() + 10000;
    size_t n = 0;
    while (n + 1 < size) {
        int64_t left = until - tu_now_ms();
        ssize_t got = sk_read_some(r->ctl, answer + n, 1, left > 0 ? (int)left : 0);
        assert_int_equal(got, 1);
        if (answer[n++] == '\n')
            break;
    }
    answer[n] = '\0';
    assert_true(n > 0 && answer[n - 1] == '\n');
    return answer;
}

long server_heap_kib(struct running *r)
{
    char a[64];
    long kib = -1;
    assert_int_equal(sscanf(ask(r, "heap\n", a, sizeof(a)), "%ld", &kib), 1);
    assert_true(kib >= 0);
    return kib;
}

int server_count(struct running *r)
{
    char a[64];
    return atoi(ask(r, "count\n", a, sizeof(a)));
}

sk_stats server_stats(struct running *r)
{
    char a[256];
    sk_stats st = {0};
    ask(r, "stats\n", a, sizeof(a));
    assert_int_equal(sscanf(a, "%llu %llu %llu %llu %llu", &st.accepted, &st.refused, &st.reads,
                            &st.read_events, &st.buffered), 5);
    return st;
}

void wait_count(struct running *r, int want, int ms)
{
    int64_t until = tu_now_ms() + ms;
    while (server_count(r) != want && tu_now_ms() < until)
        usleep(2000);
    int n = server_count(r);
    if (n != want) { /* what the server saw, for the log */
        sk_stats st = server_stats(r);
        fprintf(stderr, "# %d connections, not %d: %llu accepted, %llu refused, %llu reads\n", n,
                want, st.accepted, st.refused, st.reads);
    }
    assert_int_equal(n, want);
}

/* Wait for the server process's report after a stop (already requested or not). */
void await_report(struct running *r)
{
    char a[256] = "";
    sk_lines *lines = sk_lines_new(r->ctl, sizeof(a));
    char *line;
    /* A stop under valgrind ends every child under it too: allow it more time. */
    ssize_t n = sk_lines_read(lines, &line, 20000 * test_scale());
    if (n > 0)
        snprintf(a, sizeof(a), "%s", line);
    sk_lines_free(lines); /* before any assertion: a failed one must leak nothing */
    assert_true(n > 0);
    assert_int_equal(sscanf(a, "done %d %d %d %d %d %d %d", &r->done.rc, &r->done.threads0,
                            &r->done.threads, &r->done.fds0, &r->done.fds, &r->done.children,
                            &r->done.leaks),
                     7);
    int status;
    assert_int_equal(waitpid(r->pid, &status, 0), r->pid);
    live_remove(r->pid);
    /* A wrapper such as valgrind --error-exitcode reports through the status. */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(r->ctl);
    assert_int_equal(r->done.leaks, 0); /* LeakSanitizer's verdict on the server process */
}

void await_done(struct running *r)
{
    await_report(r);
    assert_int_equal(r->done.rc, 0);
}

void finish(struct running *r)
{
    assert_true(sk_write_all(r->ctl, "stop\n", 5, 5000) > 0);
    await_done(r);
    assert_int_equal(shared_get(&sh->errors), 0);
}

int dial(const struct running *r)
{
    int fd = sk_connect(r->addr, 2000);
    assert_true(fd >= 0);
    return fd;
}

void expect_eof(int fd, int ms)
{
    char buf[256];
    ssize_t n;
    while ((n = sk_read_some(fd, buf, sizeof(buf), ms)) > 0)
        ;
    assert_true(n == 0 || n == -ECONNRESET);
}

void expect_text_within(int fd, const char *want, int ms)
{
    size_t len = strlen(want);
    char *buf = calloc(1, len + 1), got[256];
    ssize_t n = sk_read_full(fd, buf, len, ms);
    bool same = n == (ssize_t)len && memcmp(buf, want, len) == 0;
    snprintf(got, sizeof(got), "%.*s", (int)(n > 0 ? n : 0), buf);
    free(buf); /* before a failure jumps out of the test */
    if (!same)
        fail_msg("expected '%s', got %zd bytes '%s'", want, n, got);
}

void expect_text(int fd, const char *want)
{
    expect_text_within(fd, want, 5000);
}

void expect_silence(int fd, int ms)
{
    char c;
    assert_int_equal(sk_read_some(fd, &c, 1, ms), -ETIMEDOUT);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n - 2;
}

int thread_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    return count_dir(path);
}

int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    return count_dir(path) - (pid == getpid()); /* the directory's own fd */
}

int child_processes(pid_t parent)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    char path[300], buf[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int ppid = 0;
        if (fgets(buf, sizeof(buf), f)) {
            char *paren = strrchr(buf, ')');
            if (paren)
                sscanf(paren + 2, "%*c %d", &ppid);
        }
        fclose(f);
        n += ppid == parent;
    }
    if (d)
        closedir(d);
    return n;
}

int harness_setup(void **state)
{
    (void)state;
    memset(sh, 0, sizeof(*sh));
    harness_before_run = harness_after_run = NULL; /* a failed test may have left its own */
    return 0;
}

int harness_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_LIVE; i++) { /* the test failed half-way: stop them for good */
        pid_t pid = live_servers[i];
        if (pid <= 0)
            continue;
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        live_servers[i] = 0;
    }
    return 0;
}

void (*harness_before_run)(sk_server *s);
void (*harness_after_run)(sk_server *s);
void (*harness_on_command)(const char *line, char *reply, size_t size);

int test_scale(void)
{
    const char *v = getenv("SK_TEST_SCALE");
    int n = v ? atoi(v) : 1;
    return n > 0 ? n : 1;
}

/* Where the io_uring backend cannot run (turned off, filtered, an old
 * kernel) or cannot be checked (memcheck does not model the ring: see
 * doc/RELIABILITY.md), its tests are skipped, saying why: exit 77. */
static void skip_unless_uring(void)
{
    if (getenv("SK_VALGRIND")) {
        printf("SKIP: io_uring under valgrind: memcheck does not see what the kernel "
               "writes into the ring (doc/RELIABILITY.md)\n");
        exit(77);
    }
    sk_server *s = sk_server_new("127.0.0.1:0");
    int rc = s ? sk_server_set_backend(s, "io_uring") : -ENOMEM;
    if (rc == 0)
        rc = sk_server_bind(s);
    sk_server_free(s);
    if (rc == SK_EURING_OFF || rc == SK_EURING_OLD) {
        printf("SKIP: the io_uring backend cannot run here: %s\n", sk_strerror(rc));
        exit(77);
    }
}

bool harness_reactors(void)
{
    return strncmp(backend, "epoll", 5) == 0 || strcmp(backend, "io_uring") == 0;
}

int harness_init(int argc, char **argv)
{
    backend = argc > 1 ? argv[1] : "epoll-et";
    workers = argc > 2 ? atoi(argv[2]) : 0;
    if (argc > 3 && strcmp(argv[3], "addr+port") == 0)
        reuse = SK_REUSE_ADDR_PORT;
    signal(SIGPIPE, SIG_IGN);
    const char *only = getenv("SK_TEST_ONLY"); /* run the tests matching this pattern */
    if (only && *only)
        cmocka_set_test_filter(only);
    if (poll_backend_register() != 0 || !sk_backend_find(backend)) {
        fprintf(stderr, "unknown backend %s\n", backend);
        return 1;
    }
    if (strcmp(backend, "io_uring") == 0)
        skip_unless_uring();
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return sh == MAP_FAILED ? 1 : 0;
}
