/* The log pane's scrollback (see scrollback.h). Line number L lives in ring[L % capacity]: the held lines
 * are consecutive numbers and never more than capacity, so their slots are distinct. */
#include "widgets/scrollback.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* A position in the wrapped log: a line number and a row within that line. */
typedef struct pos {
    uint64_t line;
    int row;
} pos;

static int pos_cmp(pos a, pos b)
{
    if (a.line != b.line)
        return a.line < b.line ? -1 : 1;
    return a.row < b.row ? -1 : a.row > b.row;
}

int sb_init(scrollback *sb, size_t capacity)
{
    memset(sb, 0, sizeof *sb);
    sb->capacity = capacity ? capacity : 1;
    sb->ring = calloc(sb->capacity, sizeof *sb->ring);
    sb->follow = true;
    return sb->ring ? 0 : -1;
}

void sb_free(scrollback *sb)
{
    if (sb->ring)
        for (size_t i = 0; i < sb->count; i++)
            free(sb->ring[(sb->first + i) % sb->capacity].text);
    free(sb->ring);
    memset(sb, 0, sizeof *sb);
}

const sb_line *sb_get(const scrollback *sb, uint64_t line)
{
    if (line < sb->first || line - sb->first >= sb->count)
        return NULL;
    return &sb->ring[line % sb->capacity];
}

static void push_one(scrollback *sb, sb_level level, double time, char *text)
{
    if (sb->count == sb->capacity) {
        free(sb->ring[sb->first % sb->capacity].text);
        sb->first++;
        sb->count--;
        sb->dropped++;
    }
    uint64_t line = sb->first + sb->count;
    sb->ring[line % sb->capacity] = (sb_line){level, time, text};
    sb->count++;
}

int sb_push(scrollback *sb, sb_level level, double time, const char *text)
{
    if (!text)
        text = "";
    size_t parts = 1, len = strlen(text);
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n' && i + 1 < len)
            parts++;
    /* Copy every part before adding any, so a failure adds nothing. */
    char *one[1], **copies = parts == 1 ? one : malloc(parts * sizeof *copies);
    if (!copies)
        return -1;
    const char *s = text;
    for (size_t p = 0; p < parts; p++) {
        const char *nl = strchr(s, '\n');
        size_t n = nl ? (size_t)(nl - s) : strlen(s);
        size_t keep = n > 0 && s[n - 1] == '\r' ? n - 1 : n;
        copies[p] = malloc(keep + 1);
        if (!copies[p]) {
            for (size_t q = 0; q < p; q++)
                free(copies[q]);
            if (copies != one)
                free(copies);
            return -1;
        }
        memcpy(copies[p], s, keep);
        copies[p][keep] = '\0';
        s += n + (nl ? 1 : 0);
    }
    for (size_t p = 0; p < parts; p++)
        push_one(sb, level, time, copies[p]);
    if (copies != one)
        free(copies);
    return 0;
}

/* Decodes one UTF-8 character of s (len > 0 bytes): returns its length, or 0 when the bytes are not valid
 * UTF-8 (the caller then steps one byte). */
static size_t utf8_decode(const unsigned char *s, size_t len, unsigned *cp)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c < 0xE0) {
        n = 2, min = 0x80, c &= 0x1F;
    } else if (c >= 0xE0 && c < 0xF0) {
        n = 3, min = 0x800, c &= 0x0F;
    } else if (c >= 0xF0 && c < 0xF5) {
        n = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
        return 0;
    *cp = c;
    return n;
}

/* Columns a character takes; what the terminal cannot show (controls, invalid bytes) is drawn as one
 * replacement character. */
static int char_cols(unsigned cp)
{
    if (cp < 0x20 || cp == 0x7F)
        return 1;
    int w = wcwidth((wchar_t)cp);
    return w < 0 ? 1 : w;
}

size_t sb_wrap(const char *s, size_t len, int width, int *cols)
{
    size_t i = 0;
    int used = 0;
    while (i < len) {
        unsigned cp = 0xFFFD;
        size_t n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n == 0)
            n = 1;
        int w = char_cols(cp);
        if (used + w > width && i > 0)
            break;
        i += n;
        used += w;
    }
    if (cols)
        *cols = used;
    return i;
}

int sb_line_rows(const char *text, int width)
{
    size_t len = strlen(text), i = 0;
    int rows = 0;
    do {
        i += sb_wrap(text + i, len - i, width, NULL);
        rows++;
    } while (i < len);
    return rows;
}

static int rows_of(const scrollback *sb, uint64_t line, int width)
{
    return sb_line_rows(sb_get(sb, line)->text, width);
}

/* p moved up by k rows, stopping at the first row held. */
static pos move_up(const scrollback *sb, pos p, int k, int width)
{
    while (k > 0) {
        if (p.row >= k) {
            p.row -= k;
            break;
        }
        if (p.line == sb->first) {
            p.row = 0;
            break;
        }
        k -= p.row + 1;
        p.line--;
        p.row = rows_of(sb, p.line, width) - 1;
    }
    return p;
}

/* The top of the pane when it shows the newest row at its bottom. */
static pos bottom_top(const scrollback *sb, int rows, int width)
{
    if (sb->count == 0)
        return (pos){sb->first, 0};
    uint64_t last = sb->first + sb->count - 1;
    pos p = {last, rows_of(sb, last, width) - 1};
    return move_up(sb, p, rows - 1, width);
}

/* Where the pane starts now: the bottom in follow mode, else the kept position made valid again (its line
 * may have been dropped, the width may have changed). */
static pos current_top(const scrollback *sb, int rows, int width)
{
    pos bottom = bottom_top(sb, rows, width);
    if (sb->follow || sb->count == 0)
        return bottom;
    pos p = {sb->top_line, sb->top_row};
    if (p.line < sb->first) {
        p = (pos){sb->first, 0};
    } else if (p.line >= sb->first + sb->count) {
        return bottom;
    } else {
        int n = rows_of(sb, p.line, width);
        if (p.row >= n)
            p.row = n - 1;
    }
    return pos_cmp(p, bottom) > 0 ? bottom : p;
}

static void set_top(scrollback *sb, pos p, int rows, int width)
{
    pos bottom = bottom_top(sb, rows, width);
    if (pos_cmp(p, bottom) >= 0) {
        sb->follow = true;
        p = bottom;
    } else {
        sb->follow = false;
    }
    sb->top_line = p.line;
    sb->top_row = p.row;
}

int sb_view(const scrollback *sb, int rows, int width, sb_row *out)
{
    if (rows < 1 || width < 1 || sb->count == 0)
        return 0;
    pos p = current_top(sb, rows, width);
    int n = 0;
    for (uint64_t line = p.line; n < rows && line < sb->first + sb->count; line++) {
        const sb_line *l = sb_get(sb, line);
        size_t len = strlen(l->text), i = 0;
        int row = 0;
        do {
            size_t take = sb_wrap(l->text + i, len - i, width, NULL);
            if (line != p.line || row >= p.row) {
                out[n++] = (sb_row){l->text + i, take, l->level, l->time, line, row == 0};
                if (n == rows)
                    break;
            }
            i += take;
            row++;
        } while (i < len);
    }
    return n;
}

void sb_scroll(scrollback *sb, int delta, int rows, int width)
{
    if (rows < 1 || width < 1 || sb->count == 0 || delta == 0)
        return;
    pos p = current_top(sb, rows, width);
    if (delta < 0) {
        p = move_up(sb, p, -delta, width);
        sb->follow = false;
        sb->top_line = p.line;
        sb->top_row = p.row;
        /* At the top of a log shorter than the pane, up changes nothing: stay in follow mode. */
        if (pos_cmp(p, bottom_top(sb, rows, width)) >= 0)
            sb->follow = true;
        return;
    }
    uint64_t end = sb->first + sb->count;
    for (int k = delta; k > 0 && p.line < end;) {
        int n = rows_of(sb, p.line, width);
        if (p.row + k < n) {
            p.row += k;
            break;
        }
        k -= n - p.row;
        p.line++;
        p.row = 0;
    }
    set_top(sb, p, rows, width);
}

void sb_page(scrollback *sb, int pages, int rows, int width)
{
    int step = rows > 1 ? rows - 1 : 1;
    sb_scroll(sb, pages * step, rows, width);
}

void sb_top(scrollback *sb)
{
    sb->follow = sb->count == 0;
    sb->top_line = sb->first;
    sb->top_row = 0;
}

void sb_bottom(scrollback *sb) { sb->follow = true; }

static bool contains_casefold(const char *hay, const char *needle, size_t needle_len)
{
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < needle_len && hay[i]) {
            unsigned char a = (unsigned char)hay[i], b = (unsigned char)needle[i];
            if (a >= 'A' && a <= 'Z')
                a += 'a' - 'A';
            if (b >= 'A' && b <= 'Z')
                b += 'a' - 'A';
            if (a != b)
                break;
            i++;
        }
        if (i == needle_len)
            return true;
    }
    return false;
}

int sb_search(scrollback *sb, const char *needle, bool forward, int rows, int width, uint64_t *line)
{
    size_t needle_len = needle ? strlen(needle) : 0;
    if (needle_len == 0 || sb->count == 0 || rows < 1 || width < 1)
        return -1;
    /* Offsets from the oldest line held; the start is excluded after a hit so n/N move on. */
    uint64_t start;
    bool after_hit = sb->have_match && sb_get(sb, sb->match_line);
    if (after_hit)
        start = sb->match_line - sb->first;
    else
        start = current_top(sb, rows, width).line - sb->first;
    for (size_t i = after_hit ? 1 : 0; i <= sb->count; i++) {
        uint64_t offset = forward ? (start + i) % sb->count : (start + sb->count * 2 - i) % sb->count;
        uint64_t number = sb->first + offset;
        if (!contains_casefold(sb_get(sb, number)->text, needle, needle_len))
            continue;
        sb->have_match = true;
        sb->match_line = number;
        pos bottom = bottom_top(sb, rows, width);
        pos p = {number, 0};
        if (pos_cmp(p, bottom) > 0)
            p = bottom;
        sb->follow = false;
        sb->top_line = p.line;
        sb->top_row = p.row;
        if (line)
            *line = number;
        return 0;
    }
    return -1;
}
