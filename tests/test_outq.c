/* SPDX-License-Identifier: MIT */
/*
 * The output queue on its own (lib/outq.c, linked in directly): bytes come
 * out in the order they went in, whatever the sizes of the appends and of the
 * partial sends; queued bytes never move while later ones are appended; a
 * chunk is freed once sent, and an emptied queue holds no memory.
 */
#include "../lib/outq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Take up to n bytes from the queue's iovecs (at most max of them) into out. */
static size_t take(struct sk__outq *q, char *out, size_t n, int max)
{
    struct iovec iov[16];
    int k = sk__outq_iov(q, iov, max);
    size_t got = 0;
    for (int i = 0; i < k && got < n; i++) {
        size_t part = iov[i].iov_len < n - got ? iov[i].iov_len : n - got;
        memcpy(out + got, iov[i].iov_base, part);
        got += part;
    }
    sk__outq_consume(q, got);
    return got;
}

static void empty_queue_holds_nothing(void **state)
{
    (void)state;
    struct sk__outq q = {0};
    struct iovec iov[4];
    assert_int_equal(sk__outq_iov(&q, iov, 4), 0);
    assert_int_equal(sk__outq_push(&q, "hello", 5), 0);
    assert_int_equal(q.bytes, 5);
    assert_non_null(q.head);
    assert_int_equal(sk__outq_iov(&q, iov, 4), 1);
    assert_int_equal(iov[0].iov_len, 5);
    assert_memory_equal(iov[0].iov_base, "hello", 5);
    sk__outq_consume(&q, 2);
    assert_int_equal(q.bytes, 3);
    assert_int_equal(sk__outq_iov(&q, iov, 4), 1);
    assert_memory_equal(iov[0].iov_base, "llo", 3);
    sk__outq_consume(&q, 3);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
    assert_null(q.tail);
}

static void small_appends_share_a_chunk_and_do_not_move(void **state)
{
    (void)state;
    struct sk__outq q = {0};
    assert_int_equal(sk__outq_push(&q, "abc", 3), 0);
    struct iovec before[1];
    assert_int_equal(sk__outq_iov(&q, before, 1), 1);
    for (int i = 0; i < 40; i++) /* all fit in the first chunk's room */
        assert_int_equal(sk__outq_push(&q, "0123456789", 10), 0);
    assert_ptr_equal(q.head, q.tail);
    struct iovec after[1];
    assert_int_equal(sk__outq_iov(&q, after, 1), 1);
    assert_ptr_equal(after[0].iov_base, before[0].iov_base);
    assert_int_equal(after[0].iov_len, 403);
    /* A partial send, then more appended: what was pointed at stays put. */
    sk__outq_consume(&q, 200);
    char *mid = (char *)before[0].iov_base + 200;
    char big[100000];
    memset(big, 'z', sizeof(big));
    assert_int_equal(sk__outq_push(&q, big, sizeof(big)), 0);
    assert_int_equal(sk__outq_iov(&q, after, 1), 1);
    assert_ptr_equal(after[0].iov_base, mid);
    assert_true(q.head != q.tail);
    assert_int_equal(q.bytes, 203 + sizeof(big));
    sk__outq_clear(&q);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
}

static void bytes_come_out_in_order(void **state)
{
    (void)state;
    enum { TOTAL = 1 << 20 };
    char *in = malloc(TOTAL), *out = malloc(TOTAL);
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < TOTAL; i++)
        in[i] = (char)(i * 7 + i / 251);
    struct sk__outq q = {0};
    unsigned x = 12345;
    size_t put = 0, got = 0;
    while (got < TOTAL) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 8) % (x & 1 ? 70000 : 300); /* small and large appends */
        if (n > TOTAL - put)
            n = TOTAL - put;
        assert_int_equal(sk__outq_push(&q, in + put, n), 0);
        put += n;
        assert_int_equal(q.bytes, put - got);
        x = x * 1103515245u + 12345u;
        size_t want = (x >> 8) % 90000;
        got += take(&q, out + got, put == TOTAL ? TOTAL : want, 1 + (int)(x % 16));
        assert_int_equal(q.bytes, put - got);
        if (q.bytes == 0) {
            assert_null(q.head);
            assert_null(q.tail);
        }
    }
    assert_memory_equal(in, out, TOTAL);
    assert_null(q.head);
    free(in);
    free(out);
}

/* A send in flight reads the queue's bytes: a clear meanwhile empties the
 * queue but keeps them until the send completes; then nothing is consumed. */
static void a_clear_waits_for_the_send_in_flight(void **state)
{
    (void)state;
    struct sk__outq q = {0};
    char block[70000];
    memset(block, 'p', sizeof(block));
    assert_int_equal(sk__outq_push(&q, block, sizeof(block)), 0);
    assert_int_equal(sk__outq_push(&q, "tail", 4), 0);
    struct iovec iov[4];
    int k = sk__outq_iov(&q, iov, 4);
    sk__outq_pin(&q); /* a send of those bytes is in flight */
    sk__outq_clear(&q);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
    for (int i = 0; i < k; i++) /* still readable (ASan: not freed) */
        assert_true(((char *)iov[i].iov_base)[0] == 'p' || ((char *)iov[i].iov_base)[0] == 't');
    assert_false(sk__outq_unpin(&q)); /* dropped: freed now, not to be consumed */
    assert_null(q.dropped);
    /* Pinned and not cleared: the bytes are still queued, to be consumed. */
    assert_int_equal(sk__outq_push(&q, "abc", 3), 0);
    sk__outq_pin(&q);
    assert_true(sk__outq_unpin(&q));
    sk__outq_consume(&q, 3);
    assert_null(q.head);
    assert_false(q.pinned);
}

static void iov_count_is_capped(void **state)
{
    (void)state;
    struct sk__outq q = {0};
    char block[70000] = {0};
    for (int i = 0; i < 20; i++) /* each larger than a chunk: one chunk each */
        assert_int_equal(sk__outq_push(&q, block, sizeof(block)), 0);
    struct iovec iov[16];
    assert_int_equal(sk__outq_iov(&q, iov, 16), 16);
    assert_int_equal(sk__outq_iov(&q, iov, 3), 3);
    size_t sum = 0;
    int k = sk__outq_iov(&q, iov, 16);
    for (int i = 0; i < k; i++)
        sum += iov[i].iov_len;
    assert_int_equal(sum, 16 * sizeof(block));
    sk__outq_consume(&q, sum);
    assert_int_equal(q.bytes, 4 * sizeof(block));
    assert_int_equal(sk__outq_iov(&q, iov, 16), 4);
    sk__outq_clear(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_queue_holds_nothing),
        cmocka_unit_test(small_appends_share_a_chunk_and_do_not_move),
        cmocka_unit_test(bytes_come_out_in_order),
        cmocka_unit_test(iov_count_is_capped),
        cmocka_unit_test(a_clear_waits_for_the_send_in_flight),
    };
    return cmocka_run_group_tests_name("outq", tests, NULL, NULL);
}
