/* SPDX-License-Identifier: MIT */
/*
 * A chaos client for sk-chat-server:
 *   chaos_chat SERVER BACKEND CORPUS [--seconds S] [--seed N]
 * starts SERVER on BACKEND (prefixed by the words of $SK_EXAMPLE_WRAPPER, as
 * the example tests do: valgrind), replays every file of CORPUS (a directory,
 * or one file) as a program, then runs random programs from a seeded
 * generator for S seconds (default 4). Exit status: 0; 1 when an oracle
 * failed (the message says how to replay it); 2 for a bad command line; 77
 * when SERVER is missing.
 *
 * A program is any byte string, read as instructions for 8 chaos clients:
 *     op arg payload
 * op & 15 is the action (enum action), (op >> 4) & 7 the client, op & 0x80 a
 * variant of the action; arg is its parameter; payload_len(op, arg) bytes of
 * payload follow. A byte past the end reads as 0 (a payload is cut short),
 * so every byte string is a valid program. Sending on a closed client
 * connects it first. When the program ends, every chaos client is closed.
 *
 * The oracle: two witness clients stay connected throughout. Every 64 actions
 * and after every program, witness A says a fresh line and B must receive
 * exactly "A's NAME: LINE" within 5 s. Neither may ever receive a control
 * byte but "\n" (the server escapes them), a line longer than the server can
 * send, or a line that is neither "* ..." nor "NAME: ...". After every
 * program, once the chaos clients are closed, the server's descriptors,
 * threads and child processes must come back to what they were with the
 * witnesses alone (+4 descriptors, +4 threads), and /who must list exactly
 * the two witnesses. At the end, SIGTERM: each witness gets the goodbye
 * line, then end of file; the server exits 0 with nothing on stderr (so a
 * valgrind or sanitizer report fails the test) and leaves no process behind.
 * Every wait is bounded.
 *
 * Built with -DCHAOS_LIBFUZZER (meson -Dfuzzing=true), the same file is a
 * libFuzzer target: the server named by $SK_CHAOS_SERVER runs on
 * $SK_CHAOS_BACKEND (default epoll-et); each input is one program and its
 * checks. The fuzzer sees the coverage of this client only, not the server's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    NCLIENTS = 8,          /* chaos clients */
    MAX_LINE = 512,        /* the server's --max-line */
    CHECK_EVERY = 64,      /* actions between two round trips inside a program */
    SLACK = 4,             /* descriptors or threads over the baseline */
    WAIT_MS = 5000,        /* for any one expected event (times the scale) */
    DRAIN_MS = 5000,       /* the server's drain timeout, at a stop */
    PAUSE_BUDGET_MS = 200, /* of pauses, in one program */
    PROGRAM_MAX = 2048,    /* bytes of a random program */
    FILE_MAX = 65536,      /* bytes read of a corpus file */
    SERVER_LINE_MAX = 2048 /* longest line the server sends: a name (64), ": ", a line
                              (511 bytes, each escaped to at most 3) */
};

enum action {
    ACT_CONNECT, /* (re)connect; variant: a 2 KiB receive buffer */
    ACT_SEND,    /* the payload (arg bytes) as it is */
    ACT_LINE,    /* the payload (arg % 128 bytes) and "\n"; variant: "\r\n" */
    ACT_LONG,    /* a line of one byte (the payload) near or far over --max-line */
    ACT_NICK,    /* "/nick " and the payload (arg % 80 bytes), "\n" */
    ACT_WHO,     /* "/who\n"; variant: "/who\r\n" */
    ACT_QUIT,    /* "/quit\n"; variant: more lines after it, in the same send */
    ACT_PARTIAL, /* the payload (arg % 128 bytes), no line end */
    ACT_SPECIAL, /* specials[arg % count]: NULs, CRs, unicode, odd commands */
    ACT_BURST,   /* the payload (arg % 32 bytes) and "\n", 1 to 57 times at once */
    ACT_SHUT,    /* shutdown(SHUT_WR) */
    ACT_RESET,   /* close with SO_LINGER {1, 0}: a reset */
    ACT_CLOSE,   /* close */
    ACT_STOP,    /* stop reading: output piles up at the server */
    ACT_DRAIN,   /* read and discard what is there, and read again from now on */
    ACT_PAUSE    /* let arg % 32 ms pass (PAUSE_BUDGET_MS per program), reading */
};

/* What ACT_SPECIAL sends. */
/* clang-format off */
#define FRAGMENT(text) {text, sizeof(text) - 1}
static const struct {
    const char *text;
    size_t len;
} specials[] = {
    FRAGMENT("\0"), FRAGMENT("\r"), FRAGMENT("\n"), FRAGMENT("\r\n"), FRAGMENT("\0\n"),
    FRAGMENT("\n\r"), FRAGMENT("\r\r\n"), FRAGMENT("\n\n\n"), FRAGMENT("\t \v\f\n"),
    FRAGMENT("\xff\xfe\xfd"), FRAGMENT("\x7f\x80\x81\n"), FRAGMENT("caf\xc3\xa9\n"),
    FRAGMENT("\xe6\x97\xa5\xe6\x9c\xac\n"), FRAGMENT("\xf0\x9f\x92\xa5"),
    FRAGMENT("\xed\xa0\x80\n"), FRAGMENT("\xc0\x80\n"), FRAGMENT("\xe2\x80\xae rtl\n"),
    FRAGMENT("\x1b[2J\x07\n"), FRAGMENT("/"), FRAGMENT("/nick"), FRAGMENT("/nick \n"),
    FRAGMENT("/nick \0hidden\n"), FRAGMENT("/nick \xf0\x9f\x92\xa5\r\n"),
    FRAGMENT("/who now\n"), FRAGMENT("/quitx\n"), FRAGMENT("/WHO\n"),
    FRAGMENT("\r\n\r\n/who\r\n"), FRAGMENT("* here: x\n"), FRAGMENT(": \n"),
    FRAGMENT("%s%n%x\n"),
    FRAGMENT("/nick 0123456789012345678901234567890123456789012345678901234567890123\n"),
    FRAGMENT("/nick 01234567890123456789012345678901234567890123456789012345678901234\n"),
};
#undef FRAGMENT
/* clang-format on */

struct client {
    int fd;       /* -1: closed */
    bool reading; /* false: stopped reading */
    bool shut;    /* shut down for writing */
};

struct witness {
    const char *role;              /* "A" or "B" */
    int fd;                        /* -1 after end of file, at the stop */
    char name[16];                 /* its /nick */
    char buf[2 * SERVER_LINE_MAX]; /* a line not complete yet */
    size_t len;                    /* bytes in buf */
    char last[160];                /* the last line, for messages */
    bool welcomed, named, goodbye; /* lines seen */
};

struct who {
    bool asked, answered; /* /who sent; "* N in the room" or "* /who failed" came */
    bool failed;          /* the answer was "* /who failed: ..." */
    int names, count;     /* "* here:" lines; the count in "* N in the room" */
    int witnesses;        /* bit 0: A listed, bit 1: B listed */
};

struct usage {
    int fds, tasks, children; /* -1: unknown */
};

struct counts {
    unsigned long programs, corpus, actions, connections, resets, server_closed, checks;
    unsigned long long bytes;
};

struct chaos {
    const char *backend;
    int scale;             /* timeouts are multiplied by it (valgrind: 4) */
    pid_t pid;             /* the server, leader of its own process group */
    bool reaped, stopping; /* waited for; SIGTERM sent */
    int out, err;          /* its stdout and stderr, -1 at end of file */
    char outbuf[512], errbuf[8192];
    size_t outlen, errlen;
    struct sockaddr_in addr; /* where it listens */
    struct client c[NCLIENTS];
    struct witness a, b;
    struct who who;
    char want[128]; /* the line B waits for; "" when none */
    bool delivered; /* B got it */
    unsigned long seq;
    struct usage base; /* the server with the witnesses alone */
    struct counts n;
    uint64_t seed;
    int64_t started;
    const uint8_t *prog; /* the program running, for a failure report */
    size_t prog_len;
    const char *prog_file;     /* its corpus file, or NULL for a random one */
    unsigned long prog_random; /* its number among the random programs */
};

static struct chaos the_chaos;
static volatile sig_atomic_t server_group; /* for the signal handler */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* splitmix64 */
static uint64_t rnd(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void pump(struct chaos *ch, int timeout_ms);
static void fail(struct chaos *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* ---- failure --------------------------------------------------------------- */

static void kill_server(struct chaos *ch)
{
    if (ch->pid <= 0)
        return;
    kill(-ch->pid, SIGKILL);
    if (!ch->reaped)
        waitpid(ch->pid, NULL, 0);
    ch->reaped = true;
    ch->pid = 0;
    server_group = 0;
}

static void server_status(struct chaos *ch, char *buf, size_t size)
{
    int status;
    pid_t rc = ch->reaped ? 0 : waitpid(ch->pid, &status, WNOHANG);
    if (ch->reaped || rc == 0)
        snprintf(buf, size, ch->reaped ? "exited" : "still running");
    else if (rc < 0)
        snprintf(buf, size, "unknown (%s)", strerror(errno));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    if (rc > 0)
        ch->reaped = true;
}

/* Save the running program where it can be replayed from; its path or "". */
static const char *save_program(struct chaos *ch, char *path, size_t size)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/chaos-chat-%s-XXXXXX", dir && *dir ? dir : "/tmp", ch->backend);
    int fd = mkstemp(path);
    if (fd < 0)
        return "";
    bool ok = write(fd, ch->prog, ch->prog_len) == (ssize_t)ch->prog_len;
    close(fd);
    return ok ? path : "";
}

/* Read what is left on the server's stderr, for a little while. */
static void collect_stderr(struct chaos *ch, int ms)
{
    int64_t deadline = now_ms() + ms;
    while (ch->err >= 0 && now_ms() < deadline) {
        struct pollfd p = {.fd = ch->err, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t n = read(ch->err, ch->errbuf + ch->errlen, sizeof(ch->errbuf) - 1 - ch->errlen);
        if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN))) {
            close(ch->err);
            ch->err = -1;
        } else if (n > 0) {
            ch->errlen += (size_t)n;
        }
    }
    ch->errbuf[ch->errlen] = '\0';
}

static void fail(struct chaos *ch, const char *fmt, ...)
{
    char status[64], path[512];
    va_list ap;
    fprintf(stderr, "chaos-chat %s: FAILED: ", ch->backend);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    if (ch->prog && ch->prog_file)
        fprintf(stderr, "  during the program in %s\n", ch->prog_file);
    else if (ch->prog)
        fprintf(stderr,
                "  during random program #%lu of seed %" PRIu64 " (rerun: --seed %" PRIu64 ")\n",
                ch->prog_random, ch->seed, ch->seed);
    if (ch->prog)
        fprintf(stderr,
                "  the program (%zu bytes) is saved in %s; replay it with: chaos_chat "
                "SERVER %s FILE --seconds 0\n",
                ch->prog_len, save_program(ch, path, sizeof(path)), ch->backend);
    fprintf(stderr, "  after %lu programs, %lu actions, %lu connections, %lu resets\n",
            ch->n.programs, ch->n.actions, ch->n.connections, ch->n.resets);
    fprintf(stderr, "  witness A's last line: %s\n  witness B's last line: %s\n", ch->a.last,
            ch->b.last);
    collect_stderr(ch, 300 * ch->scale);
    server_status(ch, status, sizeof(status));
    fprintf(stderr, "  the server: %s; its stderr: %s\n", status,
            ch->errlen ? ch->errbuf : "(nothing)");
    kill_server(ch);
#ifdef CHAOS_LIBFUZZER
    abort();
#else
    exit(1);
#endif
}

/* ---- the server ------------------------------------------------------------ */

/* Its stdout: one line, "listening on 127.0.0.1:PORT backend=NAME", then nothing. */
static void server_stdout(struct chaos *ch, const char *data, size_t len)
{
    bool listening = ch->addr.sin_port != 0;
    size_t room = sizeof(ch->outbuf) - 1 - ch->outlen;
    memcpy(ch->outbuf + ch->outlen, data, len < room ? len : room);
    ch->outlen += len < room ? len : room;
    ch->outbuf[ch->outlen] = '\0';
    char *nl = strchr(ch->outbuf, '\n');
    if (listening || !nl)
        goto check;
    int port = 0, end = 0;
    char backend[64];
    int got = sscanf(ch->outbuf, "listening on 127.0.0.1:%d backend=%63s%n", &port, backend, &end);
    if (got != 2 || ch->outbuf + end != nl || port <= 0 || port > 65535)
        fail(ch, "the server's first line is not \"listening on 127.0.0.1:PORT backend=%s\": %s",
             ch->backend, ch->outbuf);
    if (strcmp(backend, ch->backend) != 0)
        fail(ch, "the server runs backend %s, not %s", backend, ch->backend);
    ch->addr.sin_family = AF_INET;
    ch->addr.sin_port = htons((uint16_t)port);
    ch->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
check:
    if (nl && nl[1] != '\0')
        fail(ch, "the server printed more than its one line: %s", ch->outbuf);
}

static void server_readable(struct chaos *ch, int *fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(*fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            close(*fd);
            *fd = -1;
            if (fd == &ch->out && !ch->stopping)
                fail(ch, "the server closed its stdout: it is gone");
            return;
        }
        if (fd == &ch->out) {
            server_stdout(ch, buf, (size_t)n);
            continue;
        }
        size_t room = sizeof(ch->errbuf) - 1 - ch->errlen,
               take = (size_t)n < room ? (size_t)n : room;
        memcpy(ch->errbuf + ch->errlen, buf, take);
        ch->errlen += take;
        ch->errbuf[ch->errlen] = '\0';
    }
}

/* The server in its own session (so its fork children can be killed with it),
 * killed if we die, with SIGPIPE back to the default a shell gives it. */
static void exec_server(const char *path, const char *backend, int out, int err)
{
    static char words[1024];
    char *argv[64];
    int argc = 0, devnull = open("/dev/null", O_RDONLY);
    const char *wrapper = getenv("SK_EXAMPLE_WRAPPER");
    snprintf(words, sizeof(words), "%s", wrapper ? wrapper : "");
    for (char *w = strtok(words, " \t\n"); w && argc < 48; w = strtok(NULL, " \t\n"))
        argv[argc++] = w;
    const char *args[] = {path,         "--listen", "127.0.0.1:0",  "--backend", backend,
                          "--max-line", "512",      "--max-output", "65536"};
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        _exit(127);
    for (long fd = 3, max = sysconf(_SC_OPEN_MAX); fd < max && fd < 65536; fd++)
        close((int)fd); /* what this process inherited without CLOEXEC is not the server's */
    execvp(argv[0], argv);
    dprintf(2, "chaos_chat: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void start_server(struct chaos *ch, const char *path)
{
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
        fail(ch, "pipe: %s", strerror(errno));
    ch->pid = fork();
    if (ch->pid < 0)
        fail(ch, "fork: %s", strerror(errno));
    if (ch->pid == 0)
        exec_server(path, ch->backend, out[1], err[1]);
    server_group = ch->pid;
    close(out[1]);
    close(err[1]);
    ch->out = out[0];
    ch->err = err[0];
    fcntl(ch->out, F_SETFL, O_NONBLOCK);
    fcntl(ch->err, F_SETFL, O_NONBLOCK);
    int64_t deadline = now_ms() + 2 * WAIT_MS * ch->scale;
    while (ch->addr.sin_port == 0) {
        if (now_ms() > deadline)
            fail(ch, "the server did not say where it listens within %d s",
                 2 * WAIT_MS * ch->scale / 1000);
        pump(ch, 20);
    }
}

static int count_entries(pid_t pid, const char *what)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int count_children(pid_t pid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    char path[300], buf[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int ppid = 0;
        char *paren = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
        if (paren && sscanf(paren + 2, "%*c %d", &ppid) == 1 && ppid == pid)
            n++;
        fclose(f);
    }
    closedir(d);
    return n;
}

static struct usage usage_of(pid_t pid)
{
    return (struct usage){count_entries(pid, "fd"), count_entries(pid, "task"),
                          count_children(pid)};
}

/* ---- the witnesses ---------------------------------------------------------- */

static int dial(struct chaos *ch, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        fail(ch, "socket: %s", strerror(errno));
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    int rc = connect(fd, (struct sockaddr *)&ch->addr, sizeof(ch->addr)), error = errno;
    if (rc < 0 && error == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        socklen_t len = sizeof(error);
        if (poll(&p, 1, WAIT_MS * ch->scale) != 1)
            error = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
            error = errno;
        rc = error ? -1 : 0;
    }
    if (rc < 0)
        fail(ch, "cannot connect to the server: %s", strerror(error));
    return fd;
}

static void witness_send(struct chaos *ch, struct witness *w, const char *text)
{
    size_t len = strlen(text), off = 0;
    int64_t deadline = now_ms() + WAIT_MS * ch->scale;
    while (off < len) {
        ssize_t n = send(w->fd, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            fail(ch, "witness %s cannot send: %s", w->role, strerror(errno));
        else if (now_ms() > deadline)
            fail(ch, "witness %s cannot send: the server does not read it", w->role);
        else if (n < 0)
            pump(ch, 10);
    }
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "NAME: ..." from this witness */
static bool said_by(const char *line, const struct witness *w)
{
    size_t n = strlen(w->name);
    return strncmp(line, w->name, n) == 0 && line[n] == ':' && line[n + 1] == ' ';
}

static void who_line(struct chaos *ch, const char *line)
{
    char *end;
    if (starts(line, "* here: ")) {
        ch->who.names++;
        ch->who.witnesses |=
            (strcmp(line + 8, ch->a.name) == 0) | (strcmp(line + 8, ch->b.name) == 0) << 1;
    } else if (starts(line, "* /who failed: ")) {
        ch->who.failed = ch->who.answered = true;
    } else if (starts(line, "* ") && line[2] >= '0' && line[2] <= '9') {
        long n = strtol(line + 2, &end, 10);
        if (strcmp(end, " in the room") == 0) {
            ch->who.count = (int)n;
            ch->who.answered = true;
        }
    }
}

static void witness_line(struct chaos *ch, struct witness *w, const char *line, size_t len)
{
    size_t keep = len < sizeof(w->last) - 1 ? len : sizeof(w->last) - 1;
    memcpy(w->last, line, keep);
    w->last[keep] = '\0';
    if (len > SERVER_LINE_MAX)
        fail(ch, "witness %s received a line of %zu bytes: %.100s...", w->role, len, line);
    if (!starts(line, "* ") && !strstr(line, ": "))
        fail(ch, "witness %s received a garbled line: %s", w->role, line);
    if (said_by(line, &ch->b))
        fail(ch, "witness %s received a line B never said: %s", w->role, line);
    if (w == &ch->a && said_by(line, &ch->a))
        fail(ch, "witness A received its own line back: %s", line);
    if (w == &ch->b && said_by(line, &ch->a)) {
        if (ch->delivered || strcmp(line, ch->want) != 0)
            fail(ch, "witness B received \"%s\", not \"%s\"", line,
                 ch->delivered ? "(nothing more)" : ch->want);
        ch->delivered = true;
    }
    if (starts(line, "* welcome, "))
        w->welcomed = true;
    size_t n = strlen(w->name);
    if (starts(line, "* ") && len >= n + 8 && memcmp(line + len - n - 8, " is now ", 8) == 0 &&
        strcmp(line + len - n, w->name) == 0)
        w->named = true;
    if (ch->stopping && strcmp(line, "* the server is stopping; goodbye") == 0)
        w->goodbye = true;
    if (w == &ch->a && ch->who.asked && !ch->who.answered)
        who_line(ch, line);
}

static void witness_readable(struct chaos *ch, struct witness *w)
{
    for (;;) {
        ssize_t n = recv(w->fd, w->buf + w->len, sizeof(w->buf) - w->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0 && ch->stopping) {
            close(w->fd);
            w->fd = -1;
            return;
        }
        if (n <= 0)
            fail(ch, "the server closed witness %s (%s)", w->role,
                 n ? strerror(errno) : "end of file");
        for (ssize_t i = 0; i < n; i++) {
            unsigned char b = (unsigned char)w->buf[w->len + (size_t)i];
            if ((b < 0x20 && b != '\n') || b == 0x7f)
                fail(ch, "witness %s received the control byte 0x%02x", w->role, b);
        }
        w->len += (size_t)n;
        char *line = w->buf, *nl;
        while ((nl = memchr(line, '\n', w->len - (size_t)(line - w->buf)))) {
            *nl = '\0';
            witness_line(ch, w, line, (size_t)(nl - line));
            line = nl + 1;
        }
        w->len -= (size_t)(line - w->buf);
        memmove(w->buf, line, w->len);
        if (w->len > SERVER_LINE_MAX)
            fail(ch, "witness %s received a line of more than %d bytes", w->role, SERVER_LINE_MAX);
    }
}

/* Wait (bounded) until a line a witness receives sets the flag. */
static void await(struct chaos *ch, const bool *flag, const char *what)
{
    int64_t deadline = now_ms() + WAIT_MS * ch->scale;
    while (!*flag) {
        if (now_ms() > deadline)
            fail(ch, "%s within %d s", what, WAIT_MS * ch->scale / 1000);
        pump(ch, 10);
    }
}

static void witness_join(struct chaos *ch, struct witness *w, const char *role, unsigned tag)
{
    char nick[64];
    w->role = role;
    snprintf(w->name, sizeof(w->name), "w%c-%08x", role[0] + 'a' - 'A', tag);
    w->fd = dial(ch, 0);
    await(ch, &w->welcomed, "no welcome line for a witness");
    snprintf(nick, sizeof(nick), "/nick %s\n", w->name);
    witness_send(ch, w, nick);
    await(ch, &w->named, "no announcement of a witness's /nick");
}

/* Witness A says a fresh line; B must get it whole, as "A: LINE". */
static void round_trip(struct chaos *ch)
{
    char line[64], what[160];
    uint64_t r = ch->seq * 7919 + (uint64_t)now_ms();
    snprintf(line, sizeof(line), "chk-%lu-%08" PRIx64, ++ch->seq, rnd(&r) & 0xffffffffu);
    snprintf(ch->want, sizeof(ch->want), "%s: %s", ch->a.name, line);
    snprintf(what, sizeof(what), "witness B did not receive \"%s\"", ch->want);
    strcat(line, "\n");
    ch->delivered = false;
    witness_send(ch, &ch->a, line);
    await(ch, &ch->delivered, what);
    ch->n.checks++;
}

/* /who from witness A: the count it answers, or -1 for "/who failed". */
static int who(struct chaos *ch)
{
    ch->who = (struct who){.asked = true};
    witness_send(ch, &ch->a, "/who\n");
    await(ch, &ch->who.answered, "no answer to /who");
    return ch->who.failed ? -1 : ch->who.count;
}

/* ---- the chaos clients ------------------------------------------------------ */

static void client_close(struct chaos *ch, struct client *c, bool reset)
{
    if (c->fd < 0)
        return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        ch->n.resets++;
    }
    close(c->fd);
    c->fd = -1;
}

static void client_connect(struct chaos *ch, struct client *c, bool small_buffer)
{
    client_close(ch, c, false);
    c->fd = dial(ch, small_buffer ? 2048 : 0);
    c->reading = true;
    c->shut = false;
    ch->n.connections++;
}

/* The connection is over (end of file, a reset, or a send after our
 * shutdown): close our end too. */
static void client_gone(struct chaos *ch, struct client *c)
{
    ch->n.server_closed += !c->shut;
    client_close(ch, c, false);
}

/* Read and discard what there is (up to 1 MiB at a time). */
static void client_readable(struct chaos *ch, struct client *c)
{
    static char sink[65536];
    for (int i = 0; i < 16 && c->fd >= 0; i++) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            client_gone(ch, c);
    }
}

/* Send what the socket takes now; the rest is dropped. Connects first if closed. */
static void client_send(struct chaos *ch, struct client *c, const void *data, size_t len)
{
    if (c->fd < 0)
        client_connect(ch, c, false);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(c->fd, (const char *)data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            ch->n.bytes += (unsigned long long)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            client_gone(ch, c); /* EPIPE after /quit or a too-long line, ECONNRESET */
            return;
        }
    }
}

/* ---- the event loop --------------------------------------------------------- */

/* Wait up to timeout_ms for the server's output, the witnesses and the chaos
 * clients that read, and handle what came. */
static void pump(struct chaos *ch, int timeout_ms)
{
    struct pollfd p[4 + NCLIENTS] = {
        {.fd = ch->out, .events = POLLIN},
        {.fd = ch->err, .events = POLLIN},
        {.fd = ch->a.fd, .events = POLLIN},
        {.fd = ch->b.fd, .events = POLLIN},
    };
    for (int i = 0; i < NCLIENTS; i++)
        p[4 + i] = (struct pollfd){.fd = ch->c[i].reading ? ch->c[i].fd : -1, .events = POLLIN};
    if (poll(p, 4 + NCLIENTS, timeout_ms) <= 0)
        return;
    if (p[0].revents)
        server_readable(ch, &ch->out);
    if (p[1].revents)
        server_readable(ch, &ch->err);
    if (p[2].revents)
        witness_readable(ch, &ch->a);
    if (p[3].revents)
        witness_readable(ch, &ch->b);
    for (int i = 0; i < NCLIENTS; i++)
        if (p[4 + i].revents)
            client_readable(ch, &ch->c[i]);
    if (ch->errlen && !ch->stopping)
        fail(ch, "the server wrote to stderr");
}

static void pump_for(struct chaos *ch, int ms)
{
    int64_t deadline = now_ms() + ms;
    for (int64_t left = ms; left > 0; left = deadline - now_ms())
        pump(ch, (int)left);
}

/* ---- programs --------------------------------------------------------------- */

struct reader {
    const uint8_t *p;
    size_t len, pos;
};

static uint8_t take(struct reader *r)
{
    return r->pos < r->len ? r->p[r->pos++] : 0;
}

/* How many payload bytes follow an instruction's op and arg. */
static size_t payload_len(uint8_t op, uint8_t arg)
{
    switch ((enum action)(op & 15)) {
    case ACT_SEND:
        return arg;
    case ACT_LINE:
    case ACT_PARTIAL:
        return arg % 128;
    case ACT_LONG:
        return 1;
    case ACT_NICK:
        return arg % 80;
    case ACT_BURST:
        return arg % 32;
    default:
        return 0;
    }
}

struct out {
    char b[16384];
    size_t len;
};

static void add(struct out *o, const void *data, size_t len)
{
    if (len > sizeof(o->b) - o->len)
        len = sizeof(o->b) - o->len;
    memcpy(o->b + o->len, data, len);
    o->len += len;
}

/* A line of one byte near --max-line (508 to 515 bytes), or far over it (up to 8640). */
static void long_line(struct out *o, uint8_t arg, uint8_t fill, bool crlf)
{
    size_t len = arg < 128 ? MAX_LINE - 4 + (arg & 7u) : MAX_LINE + (arg & 127u) * 64;
    memset(o->b, fill == '\n' ? 'x' : fill, len);
    o->len = len;
    add(o, crlf ? "\r\n" : "\n", crlf ? 2 : 1);
}

static void act(struct chaos *ch, struct reader *r, int *pause_left)
{
    uint8_t op = take(r), arg = take(r), payload[256];
    size_t plen = payload_len(op, arg);
    struct client *c = &ch->c[(op >> 4) & 7];
    bool variant = op & 0x80;
    static struct out o;
    o.len = 0;
    for (size_t i = 0; i < plen; i++)
        payload[i] = take(r);
    ch->n.actions++;
    switch ((enum action)(op & 15)) {
    case ACT_CONNECT:
        client_connect(ch, c, variant);
        break;
    case ACT_SEND:
    case ACT_PARTIAL:
        add(&o, payload, plen);
        break;
    case ACT_LINE:
        add(&o, payload, plen);
        add(&o, variant ? "\r\n" : "\n", variant ? 2 : 1);
        break;
    case ACT_LONG:
        long_line(&o, arg, payload[0], variant);
        break;
    case ACT_NICK:
        add(&o, "/nick ", 6);
        add(&o, payload, plen);
        add(&o, "\n", 1);
        break;
    case ACT_WHO:
        add(&o, variant ? "/who\r\n" : "/who\n", variant ? 6 : 5);
        break;
    case ACT_QUIT:
        add(&o, "/quit\n", 6);
        if (variant)
            add(&o, "after quit\n/who\n", 16);
        break;
    case ACT_SPECIAL:
        add(&o, specials[arg % (sizeof(specials) / sizeof(specials[0]))].text,
            specials[arg % (sizeof(specials) / sizeof(specials[0]))].len);
        break;
    case ACT_BURST:
        for (int i = 0; i < 1 + (arg >> 5) * 8; i++) {
            add(&o, payload, plen);
            add(&o, "\n", 1);
        }
        break;
    case ACT_SHUT:
        if (c->fd >= 0)
            c->shut = shutdown(c->fd, SHUT_WR) == 0;
        break;
    case ACT_RESET:
    case ACT_CLOSE:
        client_close(ch, c, (op & 15) == ACT_RESET);
        break;
    case ACT_STOP:
        c->reading = false;
        break;
    case ACT_DRAIN:
        c->reading = true;
        client_readable(ch, c);
        break;
    case ACT_PAUSE: {
        int ms = arg % 32 < *pause_left ? arg % 32 : *pause_left;
        *pause_left -= ms;
        pump_for(ch, ms);
        break;
    }
    }
    if (o.len)
        client_send(ch, c, o.b, o.len);
    pump(ch, 0);
}

/* Wait until the server holds no more than it did with the witnesses alone. */
static void settle(struct chaos *ch)
{
    int64_t deadline = now_ms() + WAIT_MS * ch->scale;
    for (;;) {
        pump(ch, 0);
        struct usage u = usage_of(ch->pid), b = ch->base;
        if (u.fds <= b.fds + SLACK && u.tasks <= b.tasks + SLACK && u.children <= b.children)
            return;
        if (now_ms() > deadline)
            fail(ch,
                 "%d s after the chaos clients closed, the server holds %d descriptors, "
                 "%d threads, %d child processes; with the witnesses alone: %d, %d, %d",
                 WAIT_MS * ch->scale / 1000, u.fds, u.tasks, u.children, b.fds, b.tasks,
                 b.children);
        pump(ch, 5);
    }
}

/* With no chaos client left, /who must list exactly the two witnesses. */
static void who_exact(struct chaos *ch)
{
    int64_t deadline = now_ms() + WAIT_MS * ch->scale;
    for (;;) {
        int n = who(ch);
        if (n == 2 && ch->who.names == 2 && ch->who.witnesses == 3)
            return;
        if (now_ms() > deadline)
            fail(ch,
                 "with the witnesses alone, /who says %d in the room, lists %d names, "
                 "witness A %s, witness B %s",
                 n, ch->who.names, ch->who.witnesses & 1 ? "among them" : "missing",
                 ch->who.witnesses & 2 ? "among them" : "missing");
        pump(ch, 20);
    }
}

/* Run one program, then close the chaos clients and check the server. */
static int chaos_run(struct chaos *ch, const uint8_t *data, size_t size)
{
    struct reader r = {data, size, 0};
    int pause_left = PAUSE_BUDGET_MS;
    ch->prog = data;
    ch->prog_len = size;
    ch->n.programs++;
    for (unsigned long i = 1; r.pos < r.len; i++) {
        act(ch, &r, &pause_left);
        if (i % CHECK_EVERY == 0)
            round_trip(ch);
    }
    for (int i = 0; i < NCLIENTS; i++)
        client_close(ch, &ch->c[i], false);
    settle(ch);
    who_exact(ch);
    round_trip(ch);
    ch->prog = NULL;
    return 0;
}

/* ---- setting up and stopping ------------------------------------------------ */

static void setup(struct chaos *ch, const char *server, const char *backend)
{
    const char *wrapper = getenv("SK_EXAMPLE_WRAPPER");
    ch->backend = backend;
    ch->scale = wrapper && *wrapper ? 4 : 1;
    ch->out = ch->err = ch->a.fd = ch->b.fd = -1;
    for (int i = 0; i < NCLIENTS; i++)
        ch->c[i].fd = -1;
    snprintf(ch->a.last, sizeof(ch->a.last), "(none)");
    snprintf(ch->b.last, sizeof(ch->b.last), "(none)");
    ch->started = now_ms();
    signal(SIGPIPE, SIG_IGN);
    start_server(ch, server);
    uint64_t tag = (uint64_t)getpid() << 32 ^ (uint64_t)now_ms();
    witness_join(ch, &ch->a, "A", (unsigned)rnd(&tag));
    witness_join(ch, &ch->b, "B", (unsigned)rnd(&tag));
    who_exact(ch);
    round_trip(ch);
    /* The baseline, once two readings 50 ms apart agree. */
    struct usage u = usage_of(ch->pid);
    for (int i = 0; i < 40; i++) {
        pump_for(ch, 50);
        ch->base = usage_of(ch->pid);
        if (memcmp(&u, &ch->base, sizeof(u)) == 0)
            break;
        u = ch->base;
    }
    if (ch->base.fds < 0 || ch->base.tasks < 0 || ch->base.children < 0)
        fail(ch, "cannot count the server's descriptors, threads and children in /proc");
}

#ifdef CHAOS_LIBFUZZER
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void at_exit(void)
{
    kill_server(&the_chaos);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *server = getenv("SK_CHAOS_SERVER"), *backend = getenv("SK_CHAOS_BACKEND");
    if (!server || access(server, X_OK) != 0) {
        fprintf(stderr, "chaos-chat: SK_CHAOS_SERVER must name sk-chat-server\n");
        exit(1);
    }
    atexit(at_exit);
    setup(&the_chaos, server, backend && *backend ? backend : "epoll-et");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    the_chaos.prog_file = "the fuzzer's input";
    return chaos_run(&the_chaos, data, size < FILE_MAX ? size : FILE_MAX);
}
#else

/* ---- the test program -------------------------------------------------------- */

/* SIGTERM: goodbye lines, end of file, exit status 0, nothing on stderr, no process left. */
static void stop_server(struct chaos *ch)
{
    int status = 0;
    ch->stopping = true;
    kill(ch->pid, SIGTERM);
    int64_t deadline = now_ms() + DRAIN_MS + WAIT_MS * ch->scale;
    while (ch->a.fd >= 0 || ch->b.fd >= 0 || ch->out >= 0 || ch->err >= 0 || !ch->reaped) {
        if (!ch->reaped && waitpid(ch->pid, &status, WNOHANG) == ch->pid)
            ch->reaped = true;
        if (now_ms() > deadline)
            fail(ch, "%d s after SIGTERM: %s%s%s", (int)(DRAIN_MS + WAIT_MS * ch->scale) / 1000,
                 ch->reaped ? "" : "the server is still running; ",
                 ch->a.fd >= 0 || ch->b.fd >= 0 ? "a witness is still connected; " : "",
                 ch->out >= 0 || ch->err >= 0 ? "its output is still open" : "");
        pump(ch, 10);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail(ch, "on SIGTERM the server %s %d",
             WIFEXITED(status) ? "exited with status" : "was killed by signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    if (ch->errlen)
        fail(ch, "the server wrote to stderr");
    if (!ch->a.goodbye || !ch->b.goodbye)
        fail(ch, "witness %s got end of file without the goodbye line", ch->a.goodbye ? "B" : "A");
    for (deadline = now_ms() + WAIT_MS * ch->scale; kill(-ch->pid, 0) == 0;) {
        if (now_ms() > deadline)
            fail(ch, "processes of the server's group are left after it exited");
        pump_for(ch, 10);
    }
    ch->pid = 0;
    server_group = 0;
}

/* Instructions with random ops and args, their payloads text-like half the time. */
static size_t random_program(uint64_t *rng, uint8_t *p, size_t cap)
{
    static const char text[] = "abcdwxyz0189 /:*-.\r\n\t";
    size_t n = 0, count = 1 + rnd(rng) % (rnd(rng) % 8 ? 24 : 96);
    for (size_t i = 0; i < count && n + 2 + 255 <= cap; i++) {
        uint8_t op = (uint8_t)rnd(rng), arg = (uint8_t)rnd(rng);
        size_t len = payload_len(op, arg);
        bool texty = rnd(rng) & 1;
        p[n++] = op;
        p[n++] = arg;
        for (size_t j = 0; j < len; j++) {
            uint64_t x = rnd(rng);
            p[n++] =
                texty && x % 8 ? (uint8_t)text[(x >> 8) % (sizeof(text) - 1)] : (uint8_t)(x >> 16);
        }
    }
    return n;
}

static void on_signal(int signo)
{
    static const char msg[] = "chaos-chat: interrupted or out of time; the server is killed\n";
    if (server_group > 0)
        kill(-(pid_t)server_group, SIGKILL);
    ssize_t rc = write(2, msg, sizeof(msg) - 1);
    (void)rc;
    _exit(signo == SIGALRM ? 1 : 128 + signo);
}

static int visible(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static void replay_file(struct chaos *ch, const char *path)
{
    static uint8_t data[FILE_MAX];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, data, sizeof(data));
    if (fd >= 0)
        close(fd);
    if (n < 0)
        fail(ch, "cannot read %s: %s", path, strerror(errno));
    ch->prog_file = path;
    chaos_run(ch, data, (size_t)n);
    ch->prog_file = NULL;
    ch->n.corpus++;
}

static void replay_corpus(struct chaos *ch, const char *path)
{
    struct dirent **list;
    struct stat st;
    char file[4096];
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        replay_file(ch, path);
        return;
    }
    int n = scandir(path, &list, visible, alphasort);
    if (n < 0)
        fail(ch, "cannot read the corpus %s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof(file), "%s/%s", path, list[i]->d_name);
        replay_file(ch, file);
        free(list[i]);
    }
    free(list);
}

static int usage(void)
{
    fprintf(stderr, "usage: chaos_chat SERVER BACKEND CORPUS [--seconds S] [--seed N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct chaos *ch = &the_chaos;
    const char *pos[3];
    int npos = 0;
    long seconds = 4;
    bool seeded = false;
    char *end;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtol(argv[++i], &end, 10);
            if (*end || seconds < 0 || seconds > 3600)
                return usage();
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            ch->seed = strtoull(argv[++i], &end, 0);
            if (*end)
                return usage();
            seeded = true;
        } else if (argv[i][0] == '-' || npos == 3) {
            return usage();
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != 3)
        return usage();
    if (access(pos[0], X_OK) != 0) {
        fprintf(stderr, "chaos-chat: no server to test: %s: %s\n", pos[0], strerror(errno));
        return 77;
    }
    if (!seeded) {
        uint64_t s = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL) ^ (uint64_t)now_ms();
        ch->seed = rnd(&s) % 1000000000;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGALRM, on_signal);
    const char *wrapper = getenv("SK_EXAMPLE_WRAPPER");
    /* Each wait is bounded; this bounds them all, within meson's timeout. */
    alarm((unsigned)seconds + 45u * (wrapper && *wrapper ? 4u : 1u));
    setup(ch, pos[0], pos[1]);
    replay_corpus(ch, pos[2]);

    static uint8_t program[PROGRAM_MAX];
    int64_t until = now_ms() + seconds * 1000;
    while (now_ms() < until) {
        uint64_t rng = ch->seed ^ (++ch->prog_random * 0xd1b54a32d192ed03u);
        chaos_run(ch, program, random_program(&rng, program, sizeof(program)));
    }
    ch->prog_random = 0;
    stop_server(ch);
    alarm(0);
    printf("chaos-chat: backend=%s seed=%" PRIu64 " programs=%lu corpus=%lu actions=%lu "
           "bytes=%llu connections=%lu resets=%lu server-closed=%lu checks=%lu elapsed=%.2fs\n",
           ch->backend, ch->seed, ch->n.programs, ch->n.corpus, ch->n.actions, ch->n.bytes,
           ch->n.connections, ch->n.resets, ch->n.server_closed, ch->n.checks,
           (double)(now_ms() - ch->started) / 1000);
    return 0;
}
#endif
