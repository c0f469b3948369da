/* SPDX-License-Identifier: MIT */
/* Escaping text for a terminal (see text.h). */
#include "text.h"

#include <stdint.h>
#include <string.h>

/* The length of the UTF-8 sequence at @s (@n bytes left) if it is well formed
 * and printable, else 0. Overlong forms, surrogates and code points past
 * U+10FFFF are malformed; U+0080 to U+009F (C1) are controls. */
static size_t printable_utf8(const unsigned char *s, size_t n)
{
    static const uint32_t least[] = {0, 0, 0xa0, 0x800, 0x10000}; /* by length */
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
    if (s[0] < 0xc2 || s[0] > 0xf4 || len > n)
        return 0;
    uint32_t cp = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

size_t text_clean(char *out, const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t n = 0, k;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\t') {
            out[n++] = ' ';
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            out[n++] = '^';
            out[n++] = (char)(s[i] ^ 0x40); /* ESC 0x1b: '[', DEL 0x7f: '?' */
        } else if (s[i] < 0x80) {
            out[n++] = (char)s[i];
        } else if ((k = printable_utf8(s + i, len - i)) > 0) {
            memcpy(out + n, s + i, k);
            n += k;
            i += k - 1;
        } else {
            memcpy(out + n, "\xef\xbf\xbd", 3); /* U+FFFD REPLACEMENT CHARACTER */
            n += 3;
        }
    }
    out[n] = '\0';
    return n;
}
