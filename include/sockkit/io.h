/* SPDX-License-Identifier: MIT */
/**
 * @file io.h
 * @brief Whole-buffer reads and writes, and a line reader with a length limit.
 *
 * These helpers retry on `EINTR`, loop over short transfers, never raise
 * `SIGPIPE`, and work on blocking and non-blocking descriptors alike: they
 * wait with `poll`, so a timeout bounds them on either kind, and they leave
 * the descriptor's mode as it was.
 */
#ifndef SOCKKIT_IO_H
#define SOCKKIT_IO_H

#include <sockkit/common.h>

#include <stddef.h>
#include <sys/types.h>

SK_BEGIN_DECLS

/**
 * Write a whole buffer.
 *
 * A reader that has gone away gives `-EPIPE`, never a `SIGPIPE` that would kill
 * the process: sockets are written with `MSG_NOSIGNAL`; for pipes the calling
 * thread blocks `SIGPIPE` around the write and discards the one it caused.
 *
 * @param fd         Where to write.
 * @param buf        The bytes.
 * @param len        How many; 0 writes nothing and returns 0.
 * @param timeout_ms Bound on the whole call, on a blocking descriptor too (1.0
 *                   ignored it there); `< 0`: none.
 * @return @p len; or `-EPIPE`, `-ECONNRESET`, `-ETIMEDOUT`, `-EBADF`,
 *         `-EINVAL` (NULL buffer with a non-zero length). After a failure an
 *         unknown prefix of the buffer may have been written.
 * @since 1.0
 */
SK_API ssize_t sk_write_all(int fd, const void *buf, size_t len, int timeout_ms);

/**
 * Read until the buffer is full or the peer has finished sending.
 *
 * @param fd         Where to read.
 * @param buf        Receives the bytes.
 * @param len        How many are wanted; 0 reads nothing and returns 0.
 * @param timeout_ms Bound on the whole call; `< 0`: none.
 * @return The bytes read: @p len, or fewer at end of file (0 if the stream had
 *         already ended); or `-ETIMEDOUT`, `-ECONNRESET`, `-EBADF`, `-EINVAL`.
 *         On an error, bytes already read are in @p buf but their count is lost;
 *         use sk_read_some() to keep track.
 * @since 1.0
 */
SK_API ssize_t sk_read_full(int fd, void *buf, size_t len, int timeout_ms);

/**
 * Read whatever is available, waiting for at least one byte.
 *
 * @param fd         Where to read.
 * @param buf        Receives the bytes.
 * @param len        Size of @p buf, at least 1 (unlike sk_read_full()).
 * @param timeout_ms Bound on the wait; `< 0`: none.
 * @return The bytes read (1 to @p len), 0 at end of file, or `-ETIMEDOUT`,
 *         `-ECONNRESET`, `-EBADF`, `-EINVAL` (NULL @p buf, or @p len 0).
 * @since 1.0
 */
SK_API ssize_t sk_read_some(int fd, void *buf, size_t len, int timeout_ms);

/**
 * A buffered reader that splits a stream into lines. Opaque.
 * @since 1.0
 */
typedef struct sk_lines sk_lines;

/**
 * Create a line reader on a descriptor. The reader does not own @p fd.
 *
 * @param fd       Where to read.
 * @param max_line Longest accepted line in bytes, its `\n` included (at least 1).
 * @return The reader, or NULL if @p fd is negative, @p max_line is 0 or too
 *         large, or memory ran out.
 * @since 1.0
 */
SK_API sk_lines *sk_lines_new(int fd, size_t max_line);

/**
 * Read the next line, as `getline` does: with its `\n`. To get lines as the
 * server's line framing hands them to a handler, without `\n` or `\r\n`,
 * use sk_lines_next().
 *
 * @param lines      The reader.
 * @param line       Receives a pointer to the line: it keeps its `\n` (the
 *                   last line of a stream may lack one), is NUL-terminated,
 *                   may contain NUL bytes, and stays valid until the next call.
 * @param timeout_ms Bound on the wait; `< 0`: none.
 * @return The length of the line including its `\n` (so at least 1), 0 at end
 *         of file; #SK_ETOOLONG when no `\n` comes within the limit (then every
 *         later call returns it too); `-ETIMEDOUT` (what was read so far is
 *         kept for the next call); `-ECONNRESET`, `-EINVAL`, ...
 * @since 1.0
 */
SK_API ssize_t sk_lines_read(sk_lines *lines, char **line, int timeout_ms);

/**
 * Read the next line without its terminator, exactly as the server's line
 * framing (#SK_FRAMING_LINES) hands lines to @ref sk_data_fn. A trailing `\n`
 * or `\r\n` is removed, a last line without one is returned as it is (less a
 * trailing `\r`), and the length limit counts the terminator as
 * sk_lines_read() does. A program can move between a blocking client and a
 * server handler and see the same bytes.
 *
 * @code
 * // Print each line a server sends until it closes, or 30 s of silence.
 * static int print_lines(int fd)
 * {
 *     sk_lines *lines = sk_lines_new(fd, 4096);
 *     if (!lines)
 *         return -ENOMEM;
 *     char *line;
 *     size_t len;
 *     int rc;
 *     while ((rc = sk_lines_next(lines, &line, &len, 30000)) == 1)
 *         printf("> %.*s\n", (int)len, line);
 *     sk_lines_free(lines);
 *     return rc; // 0 at end of file, or why it stopped
 * }
 * @endcode
 *
 * Calls may be mixed with sk_lines_read() on the same reader.
 *
 * @param lines      The reader.
 * @param line       Receives a pointer to the line: NUL-terminated, may
 *                   contain NUL bytes, valid until the next call.
 * @param len        Receives its length without the terminator (0 for an
 *                   empty line).
 * @param timeout_ms Bound on the wait; `< 0`: none.
 * @return 1 (a line), 0 at end of file; or the codes of sk_lines_read():
 *         #SK_ETOOLONG, `-ETIMEDOUT`, `-ECONNRESET`, `-EINVAL`, ...
 * @since 1.1
 */
SK_API int sk_lines_next(sk_lines *lines, char **line, size_t *len, int timeout_ms);

/**
 * Input: bytes read from the descriptor and buffered in the reader, not yet
 * returned as a line.
 *
 * @param lines The reader.
 * @return The count; 0 for NULL.
 * @since 1.0
 */
SK_API size_t sk_lines_pending(const sk_lines *lines);

/**
 * Free a line reader (the descriptor is left open). NULL is ignored.
 *
 * @param lines The reader.
 * @since 1.0
 */
SK_API void sk_lines_free(sk_lines *lines);

SK_END_DECLS

#endif /* SOCKKIT_IO_H */
