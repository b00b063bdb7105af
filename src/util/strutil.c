#include "sdtune/strutil.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sdt_strndup(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

char *sdt_strdup(const char *s) { return sdt_strndup(s, strlen(s)); }

char *sdt_vformat(const char *fmt, va_list args)
{
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    vsnprintf(out, (size_t)n + 1, fmt, args);
    return out;
}

char *sdt_format(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *out = sdt_vformat(fmt, args);
    va_end(args);
    return out;
}

int sdt_set_error(char **error, const char *fmt, ...)
{
    if (!error)
        return -1;
    va_list args;
    va_start(args, fmt);
    char *message = sdt_vformat(fmt, args);
    va_end(args);
    free(*error);
    *error = message;
    return -1;
}

void sdt_buf_init(sdt_buf *buf) { memset(buf, 0, sizeof *buf); }

void sdt_buf_free(sdt_buf *buf)
{
    free(buf->data);
    sdt_buf_init(buf);
}

void sdt_buf_append(sdt_buf *buf, const char *s, size_t n)
{
    if (buf->failed)
        return;
    if (buf->len + n + 1 > buf->capacity) {
        size_t capacity = buf->capacity ? buf->capacity : 256;
        while (capacity < buf->len + n + 1)
            capacity *= 2;
        char *data = realloc(buf->data, capacity);
        if (!data) {
            buf->failed = true;
            return;
        }
        buf->data = data;
        buf->capacity = capacity;
    }
    memcpy(buf->data + buf->len, s, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
}

void sdt_buf_puts(sdt_buf *buf, const char *s) { sdt_buf_append(buf, s, strlen(s)); }

void sdt_buf_printf(sdt_buf *buf, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *s = sdt_vformat(fmt, args);
    va_end(args);
    if (!s) {
        buf->failed = true;
        return;
    }
    sdt_buf_puts(buf, s);
    free(s);
}

void sdt_buf_end_with_one_newline(sdt_buf *buf)
{
    if (buf->failed || !buf->len)
        return;
    while (buf->len >= 2 && buf->data[buf->len - 1] == '\n' && buf->data[buf->len - 2] == '\n')
        buf->data[--buf->len] = '\0';
    if (buf->data[buf->len - 1] != '\n')
        sdt_buf_puts(buf, "\n");
}

char *sdt_buf_take(sdt_buf *buf)
{
    char *data = NULL;
    if (!buf->failed)
        data = buf->data ? buf->data : sdt_strdup("");
    else
        free(buf->data);
    sdt_buf_init(buf);
    return data;
}

size_t sdt_edit_distance(const char *a, const char *b, size_t limit)
{
    size_t n = strlen(a), m = strlen(b);
    if ((n > m ? n - m : m - n) > limit)
        return limit + 1;
    if (n > 255 || m > 255) /* keys are short; anything this long is not a typo of one */
        return limit + 1;
    /* Three rolling rows of the dynamic-programming table: two back for transpositions. */
    size_t rows[3][256];
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= m; j++)
        prev[j] = j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = i;
        size_t row_min = cur[0];
        for (size_t j = 1; j <= m; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
            if (best < row_min)
                row_min = best;
        }
        if (row_min > limit)
            return limit + 1;
        size_t *recycled = prev2;
        prev2 = prev;
        prev = cur;
        cur = recycled;
    }
    return prev[m];
}

int sdt_closest_match(const char *name, const char *(*candidate)(const void *ctx, size_t i), const void *ctx,
                      size_t n)
{
    size_t len = strlen(name);
    size_t limit = len <= 4 ? 1 : len <= 9 ? 2 : 3;
    size_t best_distance = limit + 1;
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        size_t d = sdt_edit_distance(name, candidate(ctx, i), limit);
        if (d < best_distance) {
            best_distance = d;
            best = (int)i;
        }
    }
    return best;
}

size_t sdt_utf8_invalid_at(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (len - i <= extra)
            return i;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += extra + 1;
    }
    return len;
}
