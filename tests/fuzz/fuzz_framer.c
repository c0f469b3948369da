/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the line framer, differentially. The first two bytes of
 * the input choose the line limit and how the rest is cut into reads; the
 * lines the framer hands out must be exactly those a one-shot split of the
 * whole stream gives (without "\n" or "\r\n"), until the first line over the
 * limit, which must be reported as SK_ETOOLONG and nothing after it.
 */
#include "framer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
    const char *want; /* the reference stream */
    size_t pos, end;  /* where the next expected line starts; the stream's end */
    bool bad;
};

/* The reference: the next line of the whole stream, as the framer should give it. */
static bool next_line(struct check *k, size_t *start, size_t *len, size_t *consumed)
{
    if (k->pos >= k->end)
        return false;
    const char *nl = memchr(k->want + k->pos, '\n', k->end - k->pos);
    size_t raw = nl ? (size_t)(nl - (k->want + k->pos)) : k->end - k->pos;
    *start = k->pos;
    *len = raw > 0 && k->want[k->pos + raw - 1] == '\r' ? raw - 1 : raw;
    *consumed = raw + (nl ? 1 : 0);
    return true;
}

static bool on_line(void *arg, char *line, size_t len)
{
    struct check *k = arg;
    size_t start, want_len, consumed;
    if (!next_line(k, &start, &want_len, &consumed) || len != want_len ||
        memcmp(line, k->want + start, len) != 0 || line[len] != '\0')
        k->bad = true;
    k->pos += consumed;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = 1 + data[0] % 64, step = 1 + data[1] % 17;
    const char *stream = (const char *)data + 2;
    size_t n = size - 2;
    char *copy = malloc(n + 1); /* the framer writes NULs into what it is fed */
    if (!copy)
        return 0;
    memcpy(copy, stream, n);

    struct check k = {.want = stream, .end = n};
    struct sk__framer f = {0};
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += step)
        rc = sk__framer_feed(&f, max, copy + off, off + step > n ? n - off : step, on_line, &k);
    if (rc == 0)
        rc = sk__framer_finish(&f, on_line, &k);

    /* Where the reference says the first over-long line is, the framer must stop. */
    size_t start, len, consumed, at = k.pos;
    bool too_long = false;
    struct check ref = {.want = stream, .end = n};
    while (next_line(&ref, &start, &len, &consumed)) {
        bool terminated = ref.pos + consumed <= n && stream[ref.pos + consumed - 1] == '\n';
        if (consumed + (terminated ? 0 : 1) > max) {
            too_long = true;
            break;
        }
        ref.pos += consumed;
    }
    if (k.bad || (too_long ? rc != SK_ETOOLONG || at != ref.pos : rc != 0 || at != n))
        abort();
    sk__framer_reset(&f);
    free(copy);
    return 0;
}
