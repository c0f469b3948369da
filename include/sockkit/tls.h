/* SPDX-License-Identifier: MIT */
/**
 * @file tls.h
 * @brief TLS (OpenSSL 3) for servers, outbound connections and plain programs.
 *
 * ## A TLS configuration
 * An @ref sk_tls holds what a side of TLS needs: for a server its certificate
 * chain and key (and, to ask clients for certificates, the CA that must have
 * signed them); for a client the CA file to trust (the system store by
 * default). Make one with sk_tls_server_new() or sk_tls_client_new(); a
 * server's can be reloaded while it runs with sk_tls_reload(): handshakes
 * begun after it use the new files, connections already open keep theirs.
 *
 * ## Servers
 * sk_server_set_tls() before the run turns TLS on for every connection the
 * server accepts, on every backend. Handlers see plaintext exactly as without
 * TLS: framing, the output cap, watermarks, broadcast, the idle timeout and
 * the slow-consumer rule all count plaintext bytes. A connection's
 * @ref sk_open_fn runs once its handshake is complete (so it can ask
 * sk_conn_tls_version() and the others); the idle timeout covers the
 * handshake. A handshake that fails (a plaintext client, garbage, a client
 * certificate from the wrong CA) closes that connection with #SK_CLOSE_TLS,
 * and sk_conn_error() gives an `SK_ETLS*` code; its @ref sk_open_fn never ran.
 * An orderly close sends close_notify.
 *
 * What is fixed: TLS 1.2 at least; OpenSSL's default cipher list; no
 * renegotiation; session tickets (TLS 1.3 and 1.2) and a server session cache,
 * so returning clients resume. A peer that closes the TCP connection without
 * close_notify is read as an end of input, as a plain peer's FIN is.
 *
 * ## Clients
 * sk_server_connect_tls() opens an outbound connection on the loop and runs
 * the handshake there; sk_tls_connect() with sk_tls_write_all() and
 * sk_tls_read_some() is the blocking form for plain programs, beside
 * sk_connect() and sk_write_all(). Both send the host name (SNI) and check
 * the server's certificate and host name against the client configuration's
 * CA file or, without one, OpenSSL's default store; only
 * sk_tls_config::insecure_no_verify turns that off.
 *
 * ## Built without TLS
 * libsockkit built without OpenSSL (meson option `tls`) keeps every function
 * here: each returns #SK_ENOTLS ("built without TLS support"), and
 * sk_tls_available() says false.
 */
#ifndef SOCKKIT_TLS_H
#define SOCKKIT_TLS_H

#include <sockkit/common.h>
#include <sockkit/io.h>
#include <sockkit/server.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

SK_BEGIN_DECLS

/** A TLS configuration: certificates, trust, options. Opaque. @since 1.1 */
typedef struct sk_tls sk_tls;

/**
 * What a TLS configuration is made of. Zero it, set sk_tls_config::size to
 * `sizeof(sk_tls_config)` (later versions may add members at the end) and
 * fill in what the side needs.
 * @since 1.1
 */
typedef struct sk_tls_config {
    size_t size;           /**< `sizeof(sk_tls_config)` as the program was built */
    const char *cert_file; /**< PEM certificate chain, leaf first: a server's (required) or a
                                client's own (optional, with sk_tls_config::key_file) */
    const char *key_file;  /**< PEM private key of sk_tls_config::cert_file */
    const char *ca_file;   /**< PEM CA certificates. A server: clients must present a
                                certificate signed by one of them. A client: trust these
                                instead of OpenSSL's default store. NULL: none */
    const char *alpn;      /**< Comma-separated ALPN protocols (`"h2,http/1.1"`): a client
                                offers them, a server picks the first of its list the client
                                offers. NULL: no ALPN */
    bool insecure_no_verify; /**< A client: accept any certificate and host name. For tests
                                  against self-signed servers only: it defeats TLS. */
} sk_tls_config;

/**
 * Whether this build of the library has TLS.
 * @return true when built with OpenSSL.
 * @since 1.1
 */
SK_API bool sk_tls_available(void);

/**
 * Make a server's TLS configuration.
 * @param config   What it is made of: @ref sk_tls_config::cert_file and
 *                 @ref sk_tls_config::key_file are required.
 * @param tls      Receives the configuration (free it with sk_tls_free()).
 * @param why      If not NULL, receives on failure a one-line reason naming
 *                 the file and OpenSSL's (or the system's) reason.
 * @param why_size Size of @p why.
 * @return 0; -EINVAL (a NULL or too small argument, a missing file name);
 *         #SK_ETLS_FILE (a file unreadable, not PEM, or a key that does not
 *         match the certificate); -ENOMEM; #SK_ENOTLS.
 * @since 1.1
 */
SK_API int sk_tls_server_new(const sk_tls_config *config, sk_tls **tls, char *why,
                             size_t why_size);

/**
 * Make a client's TLS configuration.
 * @param config   What it is made of; all members optional (NULL: verify
 *                 against OpenSSL's default store, no client certificate).
 * @param tls      Receives the configuration (free it with sk_tls_free()).
 * @param why      If not NULL, receives on failure a one-line reason.
 * @param why_size Size of @p why.
 * @return As sk_tls_server_new().
 * @since 1.1
 */
SK_API int sk_tls_client_new(const sk_tls_config *config, sk_tls **tls, char *why,
                             size_t why_size);

/**
 * Replace the files of a configuration while it is in use (a server's
 * certificate renewed): handshakes begun after it use the new ones, open
 * connections are not touched. Safe from any thread, not from a signal
 * handler. On failure the old configuration stays in force.
 * @param tls      The configuration.
 * @param config   The new files, as for the function that made @p tls.
 * @param why      If not NULL, receives on failure a one-line reason.
 * @param why_size Size of @p why.
 * @return As sk_tls_server_new().
 * @since 1.1
 */
SK_API int sk_tls_reload(sk_tls *tls, const sk_tls_config *config, char *why, size_t why_size);

/**
 * Let go of a configuration. Servers and connections using it keep it until
 * they are done with it. NULL is ignored.
 * @param tls The configuration.
 * @since 1.1
 */
SK_API void sk_tls_free(sk_tls *tls);

/**
 * Serve TLS on every connection the server accepts. Before sk_server_bind()
 * or sk_server_run(); the server keeps a reference to @p tls.
 * @param server The server.
 * @param tls    A server configuration (sk_tls_server_new()), or NULL: plain.
 * @return 0; -EINVAL (NULL server, or a client configuration); -EBUSY
 *         (running); -ENOTSUP (the server's backend is a program's own);
 *         #SK_ENOTLS.
 * @since 1.1
 */
SK_API int sk_server_set_tls(sk_server *server, sk_tls *tls);

/**
 * Open an outbound TLS connection: as sk_server_connect(), then a TLS
 * handshake, within the same @p timeout_ms. @ref sk_open_fn runs once the
 * handshake is complete. A handshake that fails closes the connection with
 * #SK_CLOSE_CONNECT, and sk_conn_error() gives the `SK_ETLS*` code (the
 * certificate expired, is not trusted, names another host...).
 * @param server     The server whose callbacks it gets.
 * @param address    `host:port`, `[v6]:port` or `unix:/path`.
 * @param timeout_ms Connect and handshake within this long; <= 0: 5000.
 * @param tls        A client configuration (sk_tls_client_new()).
 * @param host       The name to send (SNI) and to verify the certificate
 *                   against; NULL: the host part of @p address (an IP
 *                   address is verified, not sent).
 * @param data       Its user data from the start.
 * @param conn       As for sk_server_connect().
 * @return As sk_server_connect(); -EINVAL also for a NULL or server @p tls,
 *         or a unix address without @p host (unless the configuration does
 *         not verify); #SK_ENOTLS.
 * @since 1.1
 */
SK_API int sk_server_connect_tls(sk_server *server, const char *address, int timeout_ms,
                                 sk_tls *tls, const char *host, void *data, sk_conn **conn);

/**
 * Whether the connection speaks TLS.
 * @param conn The connection.
 * @return true for a TLS connection (handshake done or not); false otherwise.
 * @since 1.1
 */
SK_API bool sk_conn_is_tls(const sk_conn *conn);

/**
 * The protocol version a TLS connection agreed on.
 * @param conn The connection.
 * @return `"TLSv1.3"`, `"TLSv1.2"`; NULL for a plain connection or before
 *         the handshake is complete.
 * @since 1.1
 */
SK_API const char *sk_conn_tls_version(const sk_conn *conn);

/**
 * The cipher suite a TLS connection agreed on (OpenSSL's name).
 * @param conn The connection.
 * @return `"TLS_AES_128_GCM_SHA256"`...; NULL as for sk_conn_tls_version().
 * @since 1.1
 */
SK_API const char *sk_conn_tls_cipher(const sk_conn *conn);

/**
 * The ALPN protocol a TLS connection agreed on.
 * @param conn The connection.
 * @return The protocol, valid while the connection is; NULL when none was
 *         agreed (or as for sk_conn_tls_version()).
 * @since 1.1
 */
SK_API const char *sk_conn_tls_alpn(const sk_conn *conn);

/**
 * The subject of the peer's verified certificate (a server that asks
 * clients for one, or a client).
 * @param conn The connection.
 * @return One line, RFC 2253 (`"CN=client,O=Example"`), valid while the
 *         connection is; NULL when the peer sent no certificate.
 * @since 1.1
 */
SK_API const char *sk_conn_tls_peer(sk_conn *conn);

/**
 * Whether the handshake resumed an earlier session (a ticket or the cache).
 * @param conn The connection.
 * @return true when resumed.
 * @since 1.1
 */
SK_API bool sk_conn_tls_resumed(const sk_conn *conn);

/* ---- blocking clients ------------------------------------------------- */

/** A blocking TLS client connection (sk_tls_connect()). Opaque. @since 1.1 */
typedef struct sk_tls_stream sk_tls_stream;

/**
 * Connect to @p address and complete a TLS handshake, waiting at most
 * @p timeout_ms for all of it.
 * @code
 * // Send a request over TLS, the server checked against the system's
 * // store and the host name of the address; print the first answer.
 * static int ask_tls(const char *address, const char *request)
 * {
 *     sk_tls_config config = {.size = sizeof(config)};
 *     sk_tls *tls;
 *     sk_tls_stream *stream;
 *     char why[256], answer[4096];
 *     int rc = sk_tls_client_new(&config, &tls, why, sizeof(why));
 *     if (rc < 0) {
 *         fprintf(stderr, "%s\n", why);
 *         return rc;
 *     }
 *     rc = sk_tls_connect(address, 5000, tls, NULL, &stream);
 *     if (rc == 0) {
 *         ssize_t n = sk_tls_write_all(stream, request, strlen(request), 5000);
 *         if (n >= 0)
 *             n = sk_tls_read_some(stream, answer, sizeof(answer), 5000);
 *         if (n > 0)
 *             printf("%.*s", (int)n, answer);
 *         rc = n < 0 ? (int)n : 0;
 *         sk_tls_close(stream);
 *     }
 *     if (rc < 0)
 *         fprintf(stderr, "%s: %s\n", address, sk_strerror(rc));
 *     sk_tls_free(tls);
 *     return rc;
 * }
 * @endcode
 *
 * @param address    `host:port`, `[v6]:port` or `unix:/path`.
 * @param timeout_ms The whole wait; < 0: none.
 * @param tls        A client configuration.
 * @param host       As for sk_server_connect_tls().
 * @param stream     Receives the connection.
 * @return 0; what sk_connect() returns; -ETIMEDOUT; -EINVAL; -ENOMEM;
 *         #SK_ETLS_EXPIRED, #SK_ETLS_UNTRUSTED, #SK_ETLS_HOSTNAME,
 *         #SK_ETLS_CERT (the certificate), #SK_ETLS (the handshake);
 *         #SK_ENOTLS.
 * @since 1.1
 */
SK_API int sk_tls_connect(const char *address, int timeout_ms, sk_tls *tls, const char *host,
                          sk_tls_stream **stream);

/**
 * Write all of @p buf, as sk_write_all() does.
 * @param stream     The connection.
 * @param buf        The bytes.
 * @param len        How many.
 * @param timeout_ms The whole wait; < 0: none.
 * @return @p len; -ETIMEDOUT; -EPIPE, -ECONNRESET; #SK_ETLS; -EINVAL.
 * @since 1.1
 */
SK_API ssize_t sk_tls_write_all(sk_tls_stream *stream, const void *buf, size_t len,
                                int timeout_ms);

/**
 * Read what is there (at least one byte), as sk_read_some() does. A read
 * shorter than @p len took all that had arrived: poll the descriptor
 * (sk_tls_stream_fd()) before the next; after a full one, read again first.
 * @param stream     The connection.
 * @param buf        Where to.
 * @param len        At most this many.
 * @param timeout_ms The whole wait; < 0: none.
 * @return Bytes read; 0 at the end (close_notify, or the peer closed);
 *         -ETIMEDOUT; -ECONNRESET; #SK_ETLS; -EINVAL.
 * @since 1.1
 */
SK_API ssize_t sk_tls_read_some(sk_tls_stream *stream, void *buf, size_t len, int timeout_ms);

/**
 * A line reader (io.h: sk_lines_read(), sk_lines_next()) over a TLS stream,
 * as sk_lines_new() is over a socket. sk_lines_free() frees the reader, not
 * the stream.
 * @param stream   The connection.
 * @param max_line The longest line accepted, its `\n` included.
 * @return The reader, or NULL (NULL or closed stream, bad @p max_line, no
 *         memory; always NULL when built without TLS).
 * @since 1.1
 */
SK_API sk_lines *sk_lines_new_tls(sk_tls_stream *stream, size_t max_line);

/**
 * The stream's socket (to poll it; read and write through the stream).
 * @param stream The connection.
 * @return The descriptor, or -EINVAL.
 * @since 1.1
 */
SK_API int sk_tls_stream_fd(const sk_tls_stream *stream);

/**
 * End the stream's output: close_notify, then a FIN, waiting at most
 * @p timeout_ms for the socket to take them. Reading goes on: the peer may
 * still send until it closes (sk_tls_read_some() then returns 0).
 * @param stream     The connection.
 * @param timeout_ms The whole wait; < 0: none.
 * @return 0; -ETIMEDOUT; -EPIPE, -ECONNRESET; -EINVAL.
 * @since 1.1
 */
SK_API int sk_tls_shutdown(sk_tls_stream *stream, int timeout_ms);

/**
 * Send close_notify, close the socket and free the stream. NULL is ignored.
 * @param stream The connection.
 * @since 1.1
 */
SK_API void sk_tls_close(sk_tls_stream *stream);

SK_END_DECLS

#endif /* SOCKKIT_TLS_H */
