/* SPDX-License-Identifier: MIT */
/* sk_strerror and the version: text for every code, macros agree with meson. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static void strerror_names_library_codes(void **state)
{
    (void)state;
    assert_non_null(strstr(sk_strerror(SK_EADDR), "host:port"));
    assert_non_null(strstr(sk_strerror(SK_EPORT), "port"));
    assert_non_null(strstr(sk_strerror(SK_EAI_NONAME), "unknown"));
    assert_non_null(strstr(sk_strerror(SK_ETOOLONG), "line"));
    assert_non_null(strstr(sk_strerror(SK_EBACKEND), "backend"));
    assert_string_equal(sk_strerror(0), "success");
}

static void strerror_uses_errno_text(void **state)
{
    (void)state;
    assert_string_equal(sk_strerror(-EADDRINUSE), strerror(EADDRINUSE));
    assert_string_equal(sk_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
    assert_string_equal(sk_strerror(ETIMEDOUT), strerror(ETIMEDOUT));
}

static void strerror_never_null(void **state)
{
    (void)state;
    const int odd[] = {INT_MIN, INT_MIN + 1, -1000000, -4096, -3999, -3000, -3200,
                       4095, 4096, INT_MAX, 1, -1};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        const char *s = sk_strerror(odd[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
    }
    for (int e = -5000; e <= 5000; e++)
        assert_non_null(sk_strerror(e));
}

static void every_library_code_has_its_own_text(void **state)
{
    (void)state;
    const int codes[] = {SK_EAI_AGAIN, SK_EAI_FAIL, SK_EAI_NONAME, SK_EAI_NODATA,
                         SK_EAI_FAMILY, SK_EAI_SERVICE, SK_EAI_MEMORY, SK_EAI_OTHER,
                         SK_EADDR, SK_EPORT, SK_ETOOLONG, SK_EBACKEND};
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(sk_strerror(codes[i]), "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(sk_strerror(codes[i]), sk_strerror(codes[j]));
    }
}

static void version_matches_macros_and_meson(void **state)
{
    (void)state;
    char expect[32];
    snprintf(expect, sizeof(expect), "%d.%d.%d", SK_VERSION_MAJOR, SK_VERSION_MINOR,
             SK_VERSION_PATCH);
    assert_string_equal(sk_version(), expect);
    assert_string_equal(sk_version(), SK_TEST_PROJECT_VERSION);
    assert_int_equal(SK_VERSION_NUMBER,
                     SK_VERSION_MAJOR * 10000 + SK_VERSION_MINOR * 100 + SK_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_names_library_codes),
        cmocka_unit_test(strerror_uses_errno_text),
        cmocka_unit_test(strerror_never_null),
        cmocka_unit_test(every_library_code_has_its_own_text),
        cmocka_unit_test(version_matches_macros_and_meson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
