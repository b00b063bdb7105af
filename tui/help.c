/* The help overlay (F1, 1 or ?): every key from the key table the input handler uses, then every problem
 * of the file, including those that belong to no setting (unknown sections, syntax errors) and so have no
 * row in the form to show them. It covers the boxes and scrolls when it does not fit. */
#include <stdlib.h>
#include <string.h>

#include "draw.h"
#include "sdtune/strutil.h"
#include "text.h"

/* Lines go through `emit`, which counts them and draws those inside the visible window. */
typedef struct help_out {
    int y, x, cols; /* where the content goes */
    int top, rows;  /* the visible window of lines */
    int line;       /* lines emitted so far */
    bool draw;      /* false: only count */
} help_out;

/* One paragraph, word-wrapped; lines after the first indented by hang. */
static void emit(help_out *o, const char *text, attr_t attr, int hang)
{
    const char *s = text;
    bool first = true;
    do {
        int indent = first ? 0 : hang;
        const char *next;
        size_t n = text_wrap(s, o->cols - indent, &next);
        if (o->draw && o->line >= o->top && o->line < o->top + o->rows) {
            attrset(attr);
            text_put_n(o->y + o->line - o->top, o->x + indent, s, n, o->cols - indent);
        }
        o->line++;
        s = next;
        first = false;
    } while (*s);
}

enum { KEY_COLUMN = 21 };

/* The actions that drive a run: spelled out in the run view's help, one short line in the config
 * view's (so the config view's help keeps its problems on the first page at 80x24). */
static bool run_action(action act)
{
    return act == ACT_RUN || act == ACT_START || act == ACT_STOP || act == ACT_PAUSE || act == ACT_ABORT ||
           act == ACT_SAMPLE_NOW || act == ACT_SAVE_NOW;
}

/* The editing actions: one short line in the config view's help, for the same reason; the word each gets. */
static const char *edit_word(action act)
{
    return act == ACT_EDIT      ? "edit"
           : act == ACT_DEFAULT ? "default"
           : act == ACT_SAVE    ? "save"
           : act == ACT_OPEN    ? "open"
           : act == ACT_SAVE_AS ? "save as"
                                : NULL;
}

/* The search actions: in the config view's help they end the training paragraph, whose last line has
 * room for them, so the file's problems stay on the first page at 80x24. */
static const char *search_word(action act)
{
    return act == ACT_FIND        ? "find"
           : act == ACT_FIND_NEXT ? "next"
           : act == ACT_FIND_PREV ? "previous"
                                  : NULL;
}

/* " F3 3 / find" for the keys of one action, onto a line of the config view's help. */
static void append_keys(sdt_buf *buf, size_t start, const key_binding *keys, size_t i, size_t end,
                        const char *word)
{
    sdt_buf_puts(buf, buf->len > start ? "," : "");
    for (size_t k = i; k < end; k++)
        if (k == i || strcmp(keys[k].name, keys[k - 1].name) != 0)
            sdt_buf_printf(buf, " %s", keys[k].name);
    sdt_buf_printf(buf, " %s", word);
}

/* One line per available action: its keys, then what it does. The actions that come later share one
 * line, named as in the key bar; so do the run's actions in the config view. */
static void emit_keys(const app *a, help_out *o)
{
    size_t count;
    const key_binding *keys = keys_table(&count);
    sdt_buf later, run;
    sdt_buf_init(&later);
    sdt_buf_init(&run);
    sdt_buf_puts(&later, "  Not available yet:");
    sdt_buf_puts(&run, "  Training (F4 shows all):");
    sdt_buf edit;
    sdt_buf_init(&edit);
    sdt_buf_puts(&edit, "  Editing:");
    size_t edit_start = edit.len;
    sdt_buf search;
    sdt_buf_init(&search);
    sdt_buf_puts(&search, ". Search:");
    size_t search_start = search.len;
    size_t run_start = run.len;
    emit(o, "Keys", A_BOLD, 0);
    for (size_t i = 0, end; i < count; i = end) {
        for (end = i; end < count && keys[end].action == keys[i].action; end++) {
        }
        if (!action_available(keys[i].action)) {
            sdt_buf_printf(&later, "%s %s %s", i > 0 && later.len > 20 ? "," : "", keys[i].name,
                           keys[i].bar ? keys[i].bar : keys[i].label);
            continue;
        }
        if (a->view == VIEW_CONFIG && run_action(keys[i].action)) {
            const char *label = keys[i].bar ? keys[i].bar : keys[i].run_bar;
            sdt_buf_printf(&run, "%s %s %s", run.len > run_start ? "," : "", keys[i].name,
                           label ? label : keys[i].label);
            continue;
        }
        if (a->view == VIEW_CONFIG && edit_word(keys[i].action)) {
            append_keys(&edit, edit_start, keys, i, end, edit_word(keys[i].action));
            continue;
        }
        if (a->view == VIEW_CONFIG && search_word(keys[i].action)) {
            append_keys(&search, search_start, keys, i, end, search_word(keys[i].action));
            continue;
        }
        sdt_buf buf;
        sdt_buf_init(&buf);
        sdt_buf_puts(&buf, "  ");
        for (size_t k = i; k < end; k++) {
            if (k > i && strcmp(keys[k].name, keys[k - 1].name) == 0)
                continue; /* Enter is '\n', '\r' and KEY_ENTER */
            sdt_buf_printf(&buf, "%s%s", k > i ? " " : "", keys[k].name);
        }
        int width = text_width(buf.data ? buf.data : "");
        sdt_buf_printf(&buf, "%*s%s", width < KEY_COLUMN ? KEY_COLUMN - width : 1, "", keys[i].label);
        char *line = sdt_buf_take(&buf);
        emit(o, line ? line : "(out of memory)", A_NORMAL, KEY_COLUMN);
        free(line);
    }
    char *later_line = sdt_buf_take(&later);
    if (a->view == VIEW_CONFIG) {
        /* The actions still to come join the training line (its last row has room), to keep the problems
         * on the first page. */
        size_t prefix = strlen("  Not available yet:");
        if (later_line && strlen(later_line) > prefix)
            sdt_buf_printf(&run, " (not yet:%s)", later_line + prefix);
        char *line = sdt_buf_take(&edit);
        emit(o, line ? line : "(out of memory)", A_NORMAL, 4);
        free(line);
        if (search.data && search.len > search_start)
            sdt_buf_puts(&run, search.data);
        sdt_buf_free(&search);
        line = sdt_buf_take(&run);
        emit(o, line ? line : "(out of memory)", A_NORMAL, 4);
        free(line);
    } else {
        sdt_buf_free(&edit);
        sdt_buf_free(&search);
        sdt_buf_free(&run);
        if (!later_line || strlen(later_line) > strlen("  Not available yet:"))
            emit(o, later_line ? later_line : "(out of memory)", a->theme.bar_off, 4);
    }
    free(later_line);
}

/* Every diagnostic of the file, in file order: those about no setting (unknown sections, syntax) have no
 * row in the form, so this is where they show. */
static void emit_problems(const app *a, help_out *o)
{
    size_t problems = a->diags->count;
    int loose = a->file_errors + a->file_warnings;
    char *heading;
    if (!problems)
        heading = sdt_format("No problems in %s", a->name);
    else if (loose)
        heading = sdt_format("Problems in %s (%zu; %d not about a setting)", a->name, problems, loose);
    else
        heading = sdt_format("Problems in %s (%zu)", a->name, problems);
    emit(o, heading ? heading : "(out of memory)", A_BOLD, 0);
    free(heading);
    for (size_t i = 0; i < problems; i++) {
        const sdt_diag *d = &a->diags->items[i];
        bool error = d->severity == SDT_SEV_ERROR;
        const char *glyph = error ? a->g.error : a->g.warning;
        char *text = d->line > 0 ? sdt_format("  %s %d:%d: %s", glyph, d->line, d->col, d->message)
                                 : sdt_format("  %s %s", glyph, d->message);
        emit(o, text ? text : "(out of memory)", error ? a->theme.error : a->theme.warning, 4);
        free(text);
    }
}

static void emit_all(const app *a, help_out *o)
{
    emit_keys(a, o);
    emit(o, "", A_NORMAL, 0);
    emit_problems(a, o);
}

void help_draw(app *a)
{
    int width = COLS, height = LINES;
    int w = width <= 84 ? width : width - 8 < 100 ? width - 8 : 100;
    int cols = w - 4;
    help_out o = {.cols = cols};
    emit_all(a, &o); /* count */
    int total = o.line;
    int h = total + 2 < height - 3 ? total + 2 : height - 3; /* keep the help line and key bar */
    int rows = h - 2;
    a->help_rows = rows;
    if (a->help_top > total - rows)
        a->help_top = total - rows > 0 ? total - rows : 0;

    int y = 1 + (height - 3 - h) / 2, x = (width - w) / 2;
    attrset(A_NORMAL);
    for (int r = 0; r < h; r++)
        text_fill(y + r, x, w);
    char info[48] = "Esc closes";
    if (total > rows)
        snprintf(info, sizeof info, "%d-%d/%d", a->help_top + 1, a->help_top + rows, total);
    draw_box(a, y, x, h, w, "Help", true, info);
    o = (help_out){.y = y + 1, .x = x + 2, .cols = cols, .top = a->help_top, .rows = rows, .draw = true};
    emit_all(a, &o);
    attrset(A_NORMAL);
}
