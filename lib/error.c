/* SPDX-License-Identifier: MIT */
/* Error text. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <string.h>

static const char *library_text(int err)
{
    switch (err) {
    case SK_EAI_AGAIN: return "temporary failure in name resolution";
    case SK_EAI_FAIL: return "name resolution failed";
    case SK_EAI_NONAME: return "host name unknown";
    case SK_EAI_NODATA: return "host name has no address of the wanted kind";
    case SK_EAI_FAMILY: return "address family not supported for this name";
    case SK_EAI_SERVICE: return "port not supported for this socket type";
    case SK_EAI_MEMORY: return "out of memory while resolving a name";
    case SK_EAI_OTHER: return "name resolution failed (unexpected resolver error)";
    case SK_EADDR:
        return "malformed address: expected host:port, [ipv6]:port, *:port or unix:/path";
    case SK_EPORT: return "port missing or not a number from 0 to 65535";
    case SK_ETOOLONG: return "line longer than the configured maximum";
    case SK_EBACKEND: return "unknown backend";
    case SK_ENOTLS: return "built without TLS support";
    case SK_ETLS: return "TLS handshake or protocol failure";
    case SK_ETLS_FILE: return "TLS certificate, key or CA file unusable";
    case SK_ETLS_EXPIRED: return "TLS certificate expired or not yet valid";
    case SK_ETLS_UNTRUSTED: return "TLS certificate not trusted (self-signed or unknown CA)";
    case SK_ETLS_HOSTNAME: return "TLS certificate names another host";
    case SK_ETLS_CERT: return "TLS certificate verification failed";
    case SK_ELISTENFD: return "descriptor is not a listening stream socket";
    case SK_ENOTACTIVATED:
        return "no socket (of that name) passed by the service manager (LISTEN_FDS)";
    case SK_EURING_OFF:
        return "io_uring is turned off here (kernel.io_uring_disabled or a seccomp filter); "
               "use the epoll-et backend";
    case SK_EURING_OLD:
        return "this kernel lacks io_uring or a feature of it the backend needs (Linux 6.0); "
               "use the epoll-et backend";
    }
    return NULL;
}

const char *sk_strerror(int err)
{
    if (err == 0)
        return "success";
    const char *text = library_text(err);
    if (text)
        return text;
    if (err == INT_MIN)
        return "unknown error";
    int code = err < 0 ? -err : err;
    if (code < 4096) {
#ifdef SK_HAVE_STRERRORDESC_NP
        text = strerrordesc_np(code);
#else
        text = strerror(code);
#endif
        if (text)
            return text;
    }
    return "unknown error";
}

int sk__eai_code(int eai, int saved_errno)
{
    switch (eai) {
    case 0: return 0;
    case EAI_AGAIN: return SK_EAI_AGAIN;
    case EAI_FAIL: return SK_EAI_FAIL;
    case EAI_NONAME: return SK_EAI_NONAME;
#ifdef EAI_NODATA
    case EAI_NODATA: return SK_EAI_NODATA;
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return SK_EAI_NODATA;
#endif
    case EAI_FAMILY: return SK_EAI_FAMILY;
    case EAI_SERVICE: return SK_EAI_SERVICE;
    case EAI_MEMORY: return SK_EAI_MEMORY;
    case EAI_SYSTEM: return saved_errno > 0 ? -saved_errno : SK_EAI_OTHER;
    }
    return SK_EAI_OTHER;
}
