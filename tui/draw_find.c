/* Drawing the search (see draw.h): the search line on the prompt line, the matched words in the keys of
 * the form, and the last hit in the log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draw.h"
#include "settings_find.h"
#include "text.h"

/* What the line says after the query: how many settings match, or how to search the log. */
static void find_status(const app *a, char *out, size_t size, bool *bad)
{
    const find_state *f = &a->find;
    *bad = false;
    bool blank = strspn(f->line.text, " \t") == f->line.len;
    if (f->in == VIEW_RUN)
        snprintf(out, size, "Enter searches the log, Esc cancels");
    else if (blank)
        snprintf(out, size, "words of a setting's name or help; Enter keeps, Esc goes back");
    else if (f->n_matches > 0)
        snprintf(out, size, "match %zu/%zu: %s", f->current + 1, f->n_matches,
                 sdt_schema_settings()[f->matches[f->current]].key);
    else {
        snprintf(out, size, "no setting matches '%s'", f->line.text);
        *bad = true;
    }
}

void draw_find_line(app *a, int y, int width)
{
    line_edit *e = &a->find.line;
    const char *label = a->find.in == VIEW_RUN ? "Find in log: " : "Find: ";
    attrset(A_NORMAL);
    text_fill(y, 0, width);
    attrset(A_BOLD);
    int x = 1 + text_put(y, 1, label, width - 1);
    int field = width / 3 < 16 ? 16 : width / 3;
    if (x + field > width - 1)
        field = width - 1 - x;
    if (field < 2)
        return;
    int cursor_x = 0;
    size_t first = line_edit_view(e, field, &cursor_x);
    attrset(A_UNDERLINE);
    text_fill(y, x, field);
    text_put_n(y, x, e->text + first, e->len - first, field);
    size_t next = e->cursor;
    if (next < e->len)
        for (next++; next < e->len && ((unsigned char)e->text[next] & 0xC0) == 0x80; next++) {
        }
    attrset(A_REVERSE);
    if (next > e->cursor)
        text_put_n(y, x + cursor_x, e->text + e->cursor, next - e->cursor, 1);
    else
        text_put(y, x + cursor_x, " ", 1);
    char status[160];
    bool bad;
    find_status(a, status, sizeof status, &bad);
    x += field + 2;
    attrset(bad ? a->theme.error : A_NORMAL);
    if (x < width - 1)
        text_put(y, x, status, width - 1 - x);
    attrset(A_NORMAL);
}

/* The query whose matches are marked in the form: the one being typed, else the last one kept. */
static const char *shown_query(const app *a)
{
    if (a->find.open)
        return a->find.in == VIEW_CONFIG ? a->find.line.text : NULL;
    return a->find.last[VIEW_CONFIG];
}

void draw_find_key_marks(const app *a, int setting, int y, int x, int cols, attr_t base)
{
    const char *query = shown_query(a);
    if (!query || cols <= 0)
        return;
    const char *key = sdt_schema_settings()[setting].key;
    size_t key_len = strlen(key);
    /* Each word of the query that lies in the key, underlined where it is (keys are ASCII). */
    for (const char *s = query; *s;) {
        s += strspn(s, " \t");
        size_t len = strcspn(s, " \t");
        const char *at = len ? find_casefold(key, key_len, s, len, true) : NULL;
        if (at) {
            int col = (int)(at - key);
            if (col < cols) {
                attrset(base | A_UNDERLINE | A_BOLD);
                text_put_n(y, x + col, at, len, cols - col);
            }
        }
        s += len;
    }
    attrset(A_NORMAL);
}

void draw_find_log_mark(const app *a, int y, int x, const sb_row *row, int cols)
{
    const char *query = a->find.last[VIEW_RUN];
    if (!a->log.have_match || row->line != a->log.match_line || !query || !*query)
        return;
    size_t len = strlen(query);
    const char *at = find_casefold(row->text, row->len, query, len, false);
    if (at) {
        /* The match itself, when it lies within this row of the line. */
        int col = text_width_n(row->text, (size_t)(at - row->text));
        if (col < cols) {
            attrset(A_REVERSE | A_BOLD);
            text_put_n(y, x + col, at, len, cols - col);
        }
    } else if (row->first_row) {
        /* The match lies further down a wrapped line, or is split over two rows: the line's first row is
         * marked as a whole. */
        attrset(A_REVERSE);
        text_put_n(y, x, row->text, row->len, cols);
    }
    attrset(A_NORMAL);
}
