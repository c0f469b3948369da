/* SPDX-License-Identifier: MIT */
#include "internal.h"

#define STR_(x) #x
#define STR(x) STR_(x)

const char *sk_version(void)
{
    return STR(SK_VERSION_MAJOR) "." STR(SK_VERSION_MINOR) "." STR(SK_VERSION_PATCH);
}
