/* SPDX-License-Identifier: MIT */
/* Text from the network made safe to print: a terminal shows every byte of it
 * and acts on none, so a peer cannot move the cursor, recolour, retitle or
 * overwrite what is already on the screen. */
#ifndef SK_EXAMPLES_TEXT_H
#define SK_EXAMPLES_TEXT_H

#include <stddef.h>

/* Room text_clean() needs for @len bytes: at most 3 for each, and a NUL. */
#define TEXT_CLEAN_SIZE(len) (3 * (size_t)(len) + 1)

/*
 * Copy @len bytes of @in to @out, ending it with a NUL. Printable ASCII and
 * valid UTF-8 from U+00A0 up are kept; a tab becomes a space; the other C0
 * controls and DEL become caret notation ("^[" for ESC, "^M" for CR, "^@"
 * for NUL, "^?" for DEL); C1 controls (U+0080 to U+009F) and bytes that are
 * not valid UTF-8 become U+FFFD, one for each byte. @out has room for
 * TEXT_CLEAN_SIZE(@len) bytes. Returns the bytes written, the NUL not counted.
 */
size_t text_clean(char *out, const char *in, size_t len);

#endif
