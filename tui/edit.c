/* The one-line editor and the field logic (see edit.h). */
#include "edit.h"

#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"
#include "sdtune/value.h"

/* A UTF-8 continuation byte (10xxxxxx): never the start of a character. */
static bool continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

int line_edit_init(line_edit *e, const char *text)
{
    memset(e, 0, sizeof *e);
    size_t n = text ? strlen(text) : 0;
    e->cap = n + 16;
    e->text = malloc(e->cap);
    if (!e->text)
        return -1;
    if (n)
        memcpy(e->text, text, n);
    e->text[n] = '\0';
    e->len = e->cursor = n;
    return 0;
}

void line_edit_free(line_edit *e)
{
    free(e->text);
    memset(e, 0, sizeof *e);
}

int line_edit_insert(line_edit *e, const char *bytes, size_t n)
{
    if (e->len + n + 1 > e->cap) {
        size_t cap = (e->len + n + 1) * 2;
        char *text = realloc(e->text, cap);
        if (!text)
            return -1;
        e->text = text;
        e->cap = cap;
    }
    memmove(e->text + e->cursor + n, e->text + e->cursor, e->len - e->cursor + 1);
    memcpy(e->text + e->cursor, bytes, n);
    e->len += n;
    e->cursor += n;
    return 0;
}

void line_edit_left(line_edit *e)
{
    while (e->cursor > 0) {
        e->cursor--;
        if (!continuation((unsigned char)e->text[e->cursor]))
            break;
    }
}

void line_edit_right(line_edit *e)
{
    if (e->cursor >= e->len)
        return;
    e->cursor++;
    while (e->cursor < e->len && continuation((unsigned char)e->text[e->cursor]))
        e->cursor++;
}

void line_edit_home(line_edit *e) { e->cursor = 0; }
void line_edit_end(line_edit *e) { e->cursor = e->len; }

/* Removes the bytes [from, to). */
static void cut(line_edit *e, size_t from, size_t to)
{
    memmove(e->text + from, e->text + to, e->len - to + 1);
    e->len -= to - from;
    e->cursor = from;
}

void line_edit_backspace(line_edit *e)
{
    size_t end = e->cursor;
    line_edit_left(e);
    cut(e, e->cursor, end);
}

void line_edit_delete(line_edit *e)
{
    size_t start = e->cursor;
    line_edit_right(e);
    cut(e, start, e->cursor);
}

void line_edit_clear(line_edit *e)
{
    e->len = e->cursor = 0;
    e->scroll = 0;
    e->text[0] = '\0';
}

bool line_edit_char_complete(const line_edit *e)
{
    size_t start = e->cursor;
    while (start > 0 && continuation((unsigned char)e->text[start - 1]))
        start--;
    if (start == 0 && e->cursor > 0 && continuation((unsigned char)e->text[0]))
        return true; /* stray continuation bytes: nothing more will complete them */
    if (start == 0 && e->cursor == 0)
        return true;
    unsigned char lead = (unsigned char)e->text[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return e->cursor - (start - 1) >= need;
}

static size_t chars_in(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (!continuation((unsigned char)s[i]))
            count++;
    return count;
}

size_t line_edit_chars(const line_edit *e) { return chars_in(e->text, e->len); }
size_t line_edit_cursor_col(const line_edit *e) { return chars_in(e->text, e->cursor); }

size_t line_edit_view(line_edit *e, int width, int *cursor_x)
{
    size_t w = width > 0 ? (size_t)width : 1;
    size_t col = line_edit_cursor_col(e);
    if (col < e->scroll)
        e->scroll = col;
    if (col >= e->scroll + w)
        e->scroll = col - w + 1;
    /* Shorten the scroll when the text (plus the cursor cell) fits from an
     * earlier start. */
    size_t total = line_edit_chars(e) + 1;
    if (e->scroll > 0 && total - e->scroll < w)
        e->scroll = total > w ? total - w : 0;
    size_t offset = 0;
    for (size_t skipped = 0; offset < e->len && skipped < e->scroll;) {
        offset++;
        while (offset < e->len && continuation((unsigned char)e->text[offset]))
            offset++;
        skipped++;
    }
    *cursor_x = (int)(col - e->scroll);
    return offset;
}

int field_apply(sdt_config *cfg, int setting, const char *text, char **error)
{
    const sdt_setting *s = &sdt_schema_settings()[setting];
    sdt_value value;
    memset(&value, 0, sizeof value);
    char *problem = NULL;
    if (sdt_value_parse_text(s, text, &value, &problem) == 0)
        problem = sdt_value_check(s, &value);
    else if (!problem)
        problem = sdt_format("not a valid %s", sdt_type_name(s->type));
    if (problem) {
        sdt_value_free(&value);
        sdt_set_error(error, "%s", problem);
        free(problem);
        return -1;
    }
    int rc = sdt_config_set_value(cfg, setting, &value);
    sdt_value_free(&value);
    if (rc != 0)
        return sdt_set_error(error, "out of memory");
    return 0;
}
