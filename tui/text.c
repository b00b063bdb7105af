/* Width-aware text output for ncursesw (see text.h). */
#include "text.h"

#include <curses.h>
#include <stdbool.h>
#include <string.h>
#include <wchar.h>

/* Decodes the character at s (at most len bytes): returns its byte length (at least 1) and sets *cols to
 * its width and *ok to whether it can be drawn as is (false: draw one '?'). */
static size_t next_char(const char *s, size_t len, mbstate_t *state, int *cols, bool *ok)
{
    wchar_t wc;
    size_t n = mbrtowc(&wc, s, len, state);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
        memset(state, 0, sizeof *state);
        *cols = 1;
        *ok = false;
        return 1;
    }
    int w = wcwidth(wc);
    *cols = w < 0 ? 1 : w;
    *ok = w >= 0;
    return n;
}

int text_width_n(const char *s, size_t len)
{
    mbstate_t state;
    memset(&state, 0, sizeof state);
    int width = 0;
    for (size_t i = 0; i < len && s[i];) {
        int cols;
        bool ok;
        i += next_char(s + i, len - i, &state, &cols, &ok);
        width += cols;
    }
    return width;
}

int text_width(const char *s) { return text_width_n(s, strlen(s)); }

/* Draws the prefix of s (len bytes) that fits in cols columns; returns the columns used. */
static int put_prefix(const char *s, size_t len, int cols)
{
    mbstate_t state;
    memset(&state, 0, sizeof state);
    int used = 0;
    for (size_t i = 0; i < len && s[i];) {
        int w;
        bool ok;
        size_t n = next_char(s + i, len - i, &state, &w, &ok);
        if (used + w > cols)
            break;
        if (ok)
            addnstr(s + i, (int)n);
        else
            addch('?');
        used += w;
        i += n;
    }
    return used;
}

int text_put_n(int y, int x, const char *s, size_t len, int cols)
{
    if (cols <= 0)
        return 0;
    move(y, x);
    if (text_width_n(s, len) <= cols)
        return put_prefix(s, len, cols);
    int used = put_prefix(s, len, cols - 1);
    for (; used < cols - 1; used++) /* a wide character that did not fit */
        addch(' ');
    addch('~');
    return cols;
}

int text_put(int y, int x, const char *s, int cols) { return text_put_n(y, x, s, strlen(s), cols); }

void text_fill(int y, int x, int cols)
{
    move(y, x);
    for (int i = 0; i < cols; i++)
        addch(' ');
}

size_t text_wrap(const char *s, int cols, const char **next)
{
    size_t len = strlen(s);
    mbstate_t state;
    memset(&state, 0, sizeof state);
    int used = 0;
    size_t i = 0, last_space = 0;
    while (i < len) {
        int w;
        bool ok;
        size_t n = next_char(s + i, len - i, &state, &w, &ok);
        if (used + w > cols && i > 0)
            break;
        if (s[i] == ' ')
            last_space = i;
        used += w;
        i += n;
    }
    size_t end = i;
    if (i < len && last_space > 0 && s[i] != ' ')
        end = last_space; /* break at the last space rather than inside a word */
    const char *rest = s + end;
    while (*rest == ' ')
        rest++;
    *next = rest;
    while (end > 0 && s[end - 1] == ' ')
        end--;
    return end;
}

int text_wrap_count(const char *s, int cols, int hang)
{
    int lines = 0;
    do {
        const char *next;
        text_wrap(s, lines ? cols - hang : cols, &next);
        s = next;
        lines++;
    } while (*s);
    return lines;
}
