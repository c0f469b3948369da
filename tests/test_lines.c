/* SPDX-License-Identifier: MIT */
/*
 * One way to read lines: sk_lines_next() on a descriptor gives exactly the
 * lines the server's line framing hands to on_data, for the same bytes and the
 * same limit (terminators, a last line without one, "\r", NUL bytes, a line
 * too long). Each case is fed to both and their transcripts compared, and to
 * the expected transcript, so that both agreeing on a wrong answer fails too.
 */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A transcript: each line as [text] with \r, \n and NUL spelled out, then how
 * the stream ended: "eof" or "too-long". */
struct transcript {
    char text[512];
    size_t len;
};

static void add(struct transcript *t, const char *s)
{
    size_t n = strlen(s);
    assert_true(t->len + n < sizeof(t->text));
    memcpy(t->text + t->len, s, n + 1);
    t->len += n;
}

static void add_line(struct transcript *t, const char *line, size_t len)
{
    add(t, "[");
    for (size_t i = 0; i < len; i++) {
        char c[2] = {line[i], 0};
        add(t, line[i] == '\r' ? "\\r" : line[i] == '\n' ? "\\n" : line[i] == 0 ? "\\0" : c);
    }
    add(t, "]");
}

/* ---- the server's line framing ----------------------------------------- */

static struct transcript served; /* written by the reactor thread, read after join */

static void on_line(sk_conn *c, char *data, size_t len)
{
    (void)c;
    add_line(&served, data, len);
}

static void on_close(sk_conn *c, sk_close_reason why)
{
    add(&served, why == SK_CLOSE_TOO_LONG ? "too-long" : "eof");
    sk_server_stop(sk_conn_server(c));
}

static void through_server(const char *bytes, size_t n, size_t max_line, struct transcript *out)
{
    served = (struct transcript){0};
    sk_server *s = sk_server_new("127.0.0.1:0");
    assert_int_equal(sk_server_set_framing(s, SK_FRAMING_LINES, max_line), 0);
    sk_server_on_data(s, on_line);
    sk_server_on_close(s, on_close);
    struct tu_serving sv;
    tu_serve(&sv, s);

    int fd = sk_connect(sv.addr, 5000);
    assert_true(fd >= 0);
    assert_int_equal(sk_write_all(fd, bytes, n, 5000), (ssize_t)n);
    shutdown(fd, SHUT_WR);
    char sink[64]; /* the server closes after the last line (or the long one) */
    while (sk_read_some(fd, sink, sizeof(sink), 5000) > 0)
        ;
    assert_int_equal(tu_serve_join(&sv), 0); /* on_close stopped it */
    close(fd);
    sk_server_free(s);
    *out = served;
}

/* ---- the blocking reader ------------------------------------------------ */

static void through_reader(const char *bytes, size_t n, size_t max_line, struct transcript *out)
{
    *out = (struct transcript){0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(sk_write_all(sv[1], bytes, n, 1000), (ssize_t)n);
    close(sv[1]);
    sk_lines *lr = sk_lines_new(sv[0], max_line);
    assert_non_null(lr);
    char *line;
    size_t len;
    int rc;
    while ((rc = sk_lines_next(lr, &line, &len, 1000)) == 1) {
        assert_int_equal(line[len], '\0');
        add_line(out, line, len);
    }
    assert_true(rc == 0 || rc == SK_ETOOLONG);
    add(out, rc == 0 ? "eof" : "too-long");
    sk_lines_free(lr);
    close(sv[0]);
}

struct line_case {
    const char *bytes;
    size_t n;
    size_t max_line;
    const char *want;
};

#define CASE(lit, max, want) {lit, sizeof(lit) - 1, max, want}

static const struct line_case cases[] = {
    CASE("plain\n", 64, "[plain]eof"),
    CASE("crlf\r\n", 64, "[crlf]eof"),
    CASE("\n\r\n", 64, "[][]eof"),
    CASE("two\nlines\n", 64, "[two][lines]eof"),
    CASE("cr\rinside\n", 64, "[cr\\rinside]eof"),
    CASE("nul\0byte\n", 64, "[nul\\0byte]eof"),
    CASE("x\r\r\n", 64, "[x\\r]eof"),
    CASE("first\nlast", 64, "[first][last]eof"),
    CASE("last-cr\r", 64, "[last-cr]eof"),
    CASE("", 64, "eof"),
    /* the limit counts the terminator, "\r\n" as two bytes */
    CASE("abc\nab\r\n", 4, "[abc][ab]eof"),
    CASE("ok\nabcd\nlost\n", 4, "[ok]too-long"),
    CASE("ok\nab\r\r\n", 4, "[ok]too-long"),
    CASE("abcd", 4, "too-long"),
};

static void reader_and_server_agree(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct line_case *c = &cases[i];
        struct transcript server, reader;
        through_server(c->bytes, c->n, c->max_line, &server);
        through_reader(c->bytes, c->n, c->max_line, &reader);
        print_message("case %zu: server %s, reader %s\n", i, server.text, reader.text);
        assert_string_equal(reader.text, c->want);
        assert_string_equal(server.text, c->want);
    }
}

/* sk_lines_read() keeps its 1.0 behaviour, and the two calls mix. */
static void read_keeps_the_terminator_and_mixes_with_next(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    const char text[] = "one\r\ntwo\r\nthree\n";
    assert_int_equal(sk_write_all(sv[1], text, sizeof(text) - 1, 1000), sizeof(text) - 1);
    close(sv[1]);
    sk_lines *lr = sk_lines_new(sv[0], 64);
    char *line;
    size_t len;
    assert_int_equal(sk_lines_read(lr, &line, 1000), 5);
    assert_string_equal(line, "one\r\n");
    assert_int_equal(sk_lines_next(lr, &line, &len, 1000), 1);
    assert_int_equal(len, 3);
    assert_string_equal(line, "two");
    assert_int_equal(sk_lines_read(lr, &line, 1000), 6);
    assert_string_equal(line, "three\n");
    assert_int_equal(sk_lines_next(lr, &line, &len, 1000), 0);
    assert_int_equal(len, 0);
    assert_int_equal(sk_lines_read(lr, &line, 1000), 0);
    sk_lines_free(lr);
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reader_and_server_agree),
        cmocka_unit_test(read_keeps_the_terminator_and_mixes_with_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
