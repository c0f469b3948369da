/* SPDX-License-Identifier: MIT */
/**
 * @file error.h
 * @brief Error codes and their text.
 *
 * Every libsockkit function that can fail returns a negative code: either a
 * negated `errno` value (`-EADDRINUSE`, `-ETIMEDOUT`, ...) or one of the
 * library's own codes below, which live in a band (`-3000` to `-3199`) that no
 * `errno` value reaches. No function sets `errno` as part of its contract.
 */
#ifndef SOCKKIT_ERROR_H
#define SOCKKIT_ERROR_H

#include <sockkit/common.h>

/** @name Name-resolution errors (from getaddrinfo's EAI_* codes)
 * @{ */
#define SK_EAI_AGAIN (-3001)      /**< Temporary failure in name resolution. @since 1.0 */
#define SK_EAI_FAIL (-3002)       /**< Non-recoverable failure in name resolution. @since 1.0 */
#define SK_EAI_NONAME (-3003)     /**< Host name unknown. @since 1.0 */
#define SK_EAI_NODATA (-3004)     /**< Host name has no address of the wanted kind. @since 1.0 */
#define SK_EAI_FAMILY (-3005)     /**< Address family not supported. @since 1.0 */
#define SK_EAI_SERVICE (-3006)    /**< Service (port) not supported. @since 1.0 */
#define SK_EAI_MEMORY (-3007)     /**< Out of memory while resolving. @since 1.0 */
#define SK_EAI_OTHER (-3008)      /**< Any other resolver failure. @since 1.0 */
/** @} */

/** @name Library errors
 * @{ */
/** The address text is malformed: not `host:port`, `[ipv6]:port`, `*:port`,
 *  `unix:/path` or `unix:@name`. @since 1.0 */
#define SK_EADDR (-3100)
/** The port is missing or is not a number from 0 to 65535. @since 1.0 */
#define SK_EPORT (-3101)
/** A line is longer than the configured maximum. @since 1.0 */
#define SK_ETOOLONG (-3102)
/** No backend of that name is registered. @since 1.0 */
#define SK_EBACKEND (-3103)
/** @} */

/** @name TLS errors (tls.h)
 * @{ */
/** The library was built without TLS support (no OpenSSL). @since 1.1 */
#define SK_ENOTLS (-3104)
/** A TLS handshake or record failed (not TLS, a protocol error, an alert). @since 1.1 */
#define SK_ETLS (-3105)
/** A certificate, key or CA file is unreadable, not PEM, or the key does not
 *  match the certificate. @since 1.1 */
#define SK_ETLS_FILE (-3106)
/** The peer's certificate has expired (or is not valid yet). @since 1.1 */
#define SK_ETLS_EXPIRED (-3107)
/** The peer's certificate is self-signed or signed by a CA not trusted here. @since 1.1 */
#define SK_ETLS_UNTRUSTED (-3108)
/** The peer's certificate names another host. @since 1.1 */
#define SK_ETLS_HOSTNAME (-3109)
/** The peer's certificate failed verification for another reason (or none
 *  was sent when one is required). @since 1.1 */
#define SK_ETLS_CERT (-3110)
/** @} */

/** @name Inherited and handed-over listeners
 * @{ */
/** A descriptor given as a listener (`fd:N`, socket activation, a handover)
 *  is not an open, listening stream socket. @since 1.1 */
#define SK_ELISTENFD (-3111)
/** `systemd` or `systemd:NAME` was asked for, but no socket (of that name)
 *  was passed to this process (`LISTEN_PID`, `LISTEN_FDS`,
 *  `LISTEN_FDNAMES`). @since 1.1 */
#define SK_ENOTACTIVATED (-3112)
/** @} */

/** @name The io_uring backend
 * @{ */
/** io_uring is turned off on this system: `kernel.io_uring_disabled`, or a
 *  seccomp filter (a container's) refuses it. Choose `epoll-et`. @since 1.1 */
#define SK_EURING_OFF (-3113)
/** The kernel has no io_uring, or lacks a feature the backend needs (it
 *  needs Linux 6.0 or later). Choose `epoll-et`. @since 1.1 */
#define SK_EURING_OLD (-3114)
/** @} */

SK_BEGIN_DECLS

/**
 * Describe an error code.
 *
 * @param err A code returned by a libsockkit function (negative), or 0.
 *            Positive values are read as plain `errno` values.
 * @return A static, thread-safe string; never NULL, for any int.
 * @since 1.0
 */
SK_API const char *sk_strerror(int err);

SK_END_DECLS

#endif /* SOCKKIT_ERROR_H */
