/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the address parser. Any text either gives an error whose
 * sk_strerror() is known text, or an address whose formatted text is a fixed
 * point: it parses and formats to itself. (The text, not the binary address:
 * an IPv4-mapped IPv6 address is formatted as plain IPv4, as documented.)
 * Never a lookup: sk_addr_parse() does no I/O.
 */
#include <sockkit/sockkit.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    sk_addr a, b;
    int rc = sk_addr_parse(text, &a);
    if (rc < 0) {
        if (strcmp(sk_strerror(rc), "unknown error") == 0)
            abort();
    } else {
        char out[SK_ADDR_STRLEN], again[SK_ADDR_STRLEN];
        int n = sk_addr_format(&a, out, sizeof(out));
        if (n < 0 || (size_t)n != strlen(out))
            abort();
        /* An unnamed unix address ("unix:") has no text to parse back. */
        if (strcmp(out, "unix:") != 0) {
            if (sk_addr_parse(out, &b) != 0 || sk_addr_format(&b, again, sizeof(again)) != n ||
                strcmp(out, again) != 0)
                abort();
        }
    }
    free(text);
    return 0;
}
