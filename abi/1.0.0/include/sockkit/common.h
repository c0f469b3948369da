/* SPDX-License-Identifier: MIT */
/**
 * @file common.h
 * @brief Export macro and C++ linkage guards shared by every libsockkit header.
 */
#ifndef SOCKKIT_COMMON_H
#define SOCKKIT_COMMON_H

/**
 * @def SK_API
 * Marks a function as part of the public ABI. The library is built with
 * `-fvisibility=hidden`, so only declarations carrying this macro are exported
 * from `libsockkit.so`.
 */
#if defined(__GNUC__) || defined(__clang__)
#define SK_API __attribute__((visibility("default")))
#else
#define SK_API
#endif

/** @cond INTERNAL */
#ifdef __cplusplus
#define SK_BEGIN_DECLS extern "C" {
#define SK_END_DECLS }
#else
#define SK_BEGIN_DECLS
#define SK_END_DECLS
#endif
/** @endcond */

#endif /* SOCKKIT_COMMON_H */
