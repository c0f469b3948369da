/* SPDX-License-Identifier: MIT */
/**
 * @file version.h
 * @brief Compile-time and run-time library version.
 *
 * The macros describe the headers a program was compiled against;
 * sk_version() describes the library it runs with. Both come from
 * `project(version:)` in meson.build.
 */
#ifndef SOCKKIT_VERSION_H
#define SOCKKIT_VERSION_H

#include <sockkit/common.h>

/** Major version: changes when the ABI breaks (it is the soname's number). @since 1.0 */
#define SK_VERSION_MAJOR 1
/** Minor version: changes when functions are added. @since 1.0 */
#define SK_VERSION_MINOR 0
/** Patch version: changes for fixes only. @since 1.0 */
#define SK_VERSION_PATCH 0
/** The version as one comparable number: `MAJOR * 10000 + MINOR * 100 + PATCH`. @since 1.0 */
#define SK_VERSION_NUMBER (SK_VERSION_MAJOR * 10000 + SK_VERSION_MINOR * 100 + SK_VERSION_PATCH)

SK_BEGIN_DECLS

/**
 * The version of the library the program is running with.
 *
 * @return A static string `"MAJOR.MINOR.PATCH"`, never NULL.
 * @since 1.0
 */
SK_API const char *sk_version(void);

SK_END_DECLS

#endif /* SOCKKIT_VERSION_H */
