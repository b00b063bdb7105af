/* Small string helpers: allocation-returning printf, a growable buffer, edit distance. */
#ifndef SDTUNE_STRUTIL_H
#define SDTUNE_STRUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "sdtune/diag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when out of memory; the caller frees. */
char *sdt_strdup(const char *s);
char *sdt_strndup(const char *s, size_t n);
char *sdt_format(const char *fmt, ...) SDT_PRINTF(1, 2);
char *sdt_vformat(const char *fmt, va_list args);
/* Replaces *error (freeing what it held) with the formatted message; does nothing when error is NULL.
 * Returns -1, so library code can `return sdt_set_error(error, ...)`. */
int sdt_set_error(char **error, const char *fmt, ...) SDT_PRINTF(2, 3);

/* A growable, always NUL-terminated byte buffer. On allocation failure `failed` is set and later
 * appends do nothing, so callers check once at the end. */
typedef struct sdt_buf {
    char *data;
    size_t len, capacity;
    bool failed;
} sdt_buf;

void sdt_buf_init(sdt_buf *buf);
void sdt_buf_free(sdt_buf *buf);
void sdt_buf_append(sdt_buf *buf, const char *s, size_t n);
void sdt_buf_puts(sdt_buf *buf, const char *s);
void sdt_buf_printf(sdt_buf *buf, const char *fmt, ...) SDT_PRINTF(2, 3);
/* Drops trailing newlines down to exactly one (a generated file ends with one newline, not a blank line). */
void sdt_buf_end_with_one_newline(sdt_buf *buf);
/* Hands the data over to the caller (NULL if anything failed) and leaves the buffer empty. */
char *sdt_buf_take(sdt_buf *buf);

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), ASCII case-folded.
 * Returns a value > limit as soon as the distance is known to exceed limit. */
size_t sdt_edit_distance(const char *a, const char *b, size_t limit);

/* The index of the candidate closest to name by sdt_edit_distance, within a budget that grows with the
 * length of name (1 edit up to 4 characters, 2 up to 9, else 3); -1 when none is that close. candidate(ctx,
 * i) returns the i-th of n candidates. Used for every "did you mean". */
int sdt_closest_match(const char *name, const char *(*candidate)(const void *ctx, size_t i), const void *ctx,
                      size_t n);

/* The offset of the first byte that is not valid UTF-8 (overlongs, surrogates and code points above
 * U+10FFFF are invalid); len when all of text is valid. */
size_t sdt_utf8_invalid_at(const char *text, size_t len);

#ifdef __cplusplus
}
#endif
#endif
