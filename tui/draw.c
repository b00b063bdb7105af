/* Drawing the config view (see draw.h). Layout at 80x24:
 *
 *   row 0          title bar
 *   rows 1..H-3    "Sections" box (left) and the section's settings (right)
 *   row H-2        help line of the focused setting
 *   row H-1        key bar */
#include "draw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"
#include "sdtune/value.h"
#include "text.h"

/* A style's attribute flags as curses attributes. */
static attr_t curses_attrs(unsigned flags)
{
    attr_t attrs = A_NORMAL;
    if (flags & THEME_BOLD)
        attrs |= A_BOLD;
    if (flags & THEME_DIM)
        attrs |= A_DIM;
    if (flags & THEME_REVERSE)
        attrs |= A_REVERSE;
    if (flags & THEME_UNDERLINE)
        attrs |= A_UNDERLINE;
#ifdef A_ITALIC
    if (flags & THEME_ITALIC)
        attrs |= A_ITALIC;
#endif
    return attrs;
}

/* Each role with a colour gets a pair, numbered from 1; the sample previews allocate theirs after them
 * (a->next_pair, draw_run.c), so the fewer the theme takes, the more an 8-colour preview keeps. */
void draw_init_theme(app *a)
{
    theme *t = &a->theme;
    const char *no_color = getenv("NO_COLOR");
    t->color = has_colors() && !(no_color && *no_color) && start_color() == OK;
    int colors = !t->color ? 0 : COLORS >= 256 ? 256 : COLORS >= 16 ? 16 : 8;
    bool default_colors = t->color && use_default_colors() == OK;
    attr_t attr[THEME_ROLE_COUNT];
    short pair = 1;
    for (int r = 0; r < THEME_ROLE_COUNT; r++) {
        theme_style s = theme_style_for(&t->spec, (theme_role)r, colors);
        attr[r] = curses_attrs(s.attrs);
        if (colors && (s.fg >= 0 || s.bg >= 0)) {
            /* Without the terminal's default colours, "default" is white on black. */
            short fg = (short)(s.fg >= 0 ? s.fg : default_colors ? -1 : COLOR_WHITE);
            short bg = (short)(s.bg >= 0 ? s.bg : default_colors ? -1 : COLOR_BLACK);
            if (pair < COLOR_PAIRS && init_pair(pair, fg, bg) == OK)
                attr[r] |= COLOR_PAIR(pair++);
            else /* no pair: the monochrome marks keep the role readable */
                attr[r] = curses_attrs(theme_style_for(&t->spec, (theme_role)r, 0).attrs);
        }
    }
    a->next_pair = pair; /* preview colours are allocated from here on (draw_run.c) */
    t->error = attr[THEME_ERROR];
    t->warning = attr[THEME_WARNING];
    t->changed = attr[THEME_CHANGED];
    t->bar_key = attr[THEME_BAR_KEY];
    t->bar_label = attr[THEME_BAR_LABEL];
    t->bar_off = attr[THEME_BAR_OFF];
    t->title = attr[THEME_TITLE];
    t->title_problem = attr[THEME_TITLE_PROBLEM];
    t->good = attr[THEME_GOOD];
    t->debug = attr[THEME_DEBUG];
    t->focus = attr[THEME_FOCUS];
    t->selected = attr[THEME_SELECTED];
    t->border = attr[THEME_BORDER];
    t->sparkline = attr[THEME_SPARKLINE];
    t->gauge = attr[THEME_GAUGE];
    t->prompt = attr[THEME_PROMPT];
}

/* over drawn on top of base: over's colour (when it has one) replaces base's, the attributes add up. */
static attr_t attr_over(attr_t base, attr_t over)
{
    return (over & A_COLOR) ? (base & ~A_COLOR) | over : base | over;
}

static void hline_glyph(int y, int x, const char *glyph, int n)
{
    move(y, x);
    for (int i = 0; i < n; i++)
        addstr(glyph);
}

void draw_box(const app *a, int y, int x, int h, int w, const char *title, bool focused, const char *info)
{
    const glyphs *g = &a->g;
    attrset(a->theme.border);
    mvaddstr(y, x, g->top_left);
    hline_glyph(y, x + 1, g->hline, w - 2);
    addstr(g->top_right);
    for (int r = 1; r < h - 1; r++) {
        mvaddstr(y + r, x, g->vline);
        mvaddstr(y + r, x + w - 1, g->vline);
    }
    mvaddstr(y + h - 1, x, g->bottom_left);
    hline_glyph(y + h - 1, x + 1, g->hline, w - 2);
    addstr(g->bottom_right);
    attrset(A_NORMAL);

    int info_w = info ? text_width(info) + 2 : 0;
    if (info && info_w + 4 < w) {
        text_put(y, x + w - 2 - info_w, " ", 1);
        text_put(y, x + w - 1 - info_w, info, info_w - 2);
        addch(' ');
    } else {
        info_w = 0;
    }
    int room = w - 4 - info_w - 2;
    if (room > 0) {
        attrset(focused ? a->theme.focus : A_BOLD);
        mvaddch(y, x + 1, ' ');
        text_put(y, x + 2, title, room);
        addch(' ');
        attrset(A_NORMAL);
    }
}

static void draw_title(const app *a, int width)
{
    attrset(a->theme.title);
    text_fill(0, 0, width);
    char right[48];
    snprintf(right, sizeof right, "engine: %s ", draw_engine_word(a));
    int right_w = text_width(right);
    int left_room = width - right_w - 1;
    int used = text_put(0, 0, " sdtune  ", left_room);
    used += text_put(0, used, a->name, left_room - used);
    if (a->dirty) /* unsaved changes, as editors mark them */
        used += text_put(0, used, "*", left_room - used);
    int errors = (int)sdt_diag_count(a->diags, SDT_SEV_ERROR);
    int warnings = (int)sdt_diag_count(a->diags, SDT_SEV_WARNING);
    if ((errors || warnings) && left_room - used > 4) {
        char text[64];
        if (errors && warnings)
            snprintf(text, sizeof text, "%d error%s, %d warning%s", errors, errors == 1 ? "" : "s", warnings,
                     warnings == 1 ? "" : "s");
        else if (errors)
            snprintf(text, sizeof text, "%d error%s", errors, errors == 1 ? "" : "s");
        else
            snprintf(text, sizeof text, "%d warning%s", warnings, warnings == 1 ? "" : "s");
        used += text_put(0, used, "  ", left_room - used);
        attrset(errors ? a->theme.title_problem : a->theme.title | A_BOLD);
        used += text_put(0, used, text, left_room - used);
        attrset(a->theme.title);
    }
    text_put(0, width - right_w, right, right_w);
    attrset(A_NORMAL);
}

/* "3✗ 1!" for a section's counts; returns its width (0 when clean). */
static int counts_width(const app *a, int errors, int warnings, char *err, char *warn, size_t size)
{
    err[0] = warn[0] = '\0';
    if (errors)
        snprintf(err, size, "%d%s", errors, a->g.error);
    if (warnings)
        snprintf(warn, size, "%d%s", warnings, a->g.warning);
    int w = text_width(err) + text_width(warn);
    return errors && warnings ? w + 1 : w;
}

static void draw_sections(app *a, int y, int x, int h, int w)
{
    bool focused = a->focus == FOCUS_SECTIONS && !a->help_open;
    int rows = h - 2, inner = w - 2;
    a->list_rows = rows;
    if (a->section < a->list_top)
        a->list_top = a->section;
    if (a->section >= a->list_top + rows)
        a->list_top = a->section - rows + 1;
    if (a->list_top > SDT_SEC_COUNT - rows)
        a->list_top = SDT_SEC_COUNT - rows > 0 ? SDT_SEC_COUNT - rows : 0;
    draw_box(a, y, x, h, w, "Sections", focused, NULL);

    for (int r = 0; r < rows && a->list_top + r < SDT_SEC_COUNT; r++) {
        int s = a->list_top + r, row = y + 1 + r, col = x + 1;
        bool selected = s == a->section;
        attr_t base = selected ? (focused ? a->theme.selected : A_BOLD) : A_NORMAL;
        attrset(base);
        text_fill(row, col, inner);
        if (selected)
            text_put(row, col, a->g.selected, 1);
        char err[32], warn[32];
        int cw = counts_width(a, a->sec_errors[s], a->sec_warnings[s], err, warn, sizeof err);
        text_put(row, col + 2, sdt_section_title((sdt_section)s), inner - 2 - (cw ? cw + 1 : 0));
        if (cw && cw < inner - 3) {
            int cx = col + inner - cw;
            if (err[0]) {
                attrset(attr_over(base, a->theme.error));
                cx += text_put(row, cx, err, cw);
                cx++;
            }
            if (warn[0]) {
                attrset(attr_over(base, a->theme.warning));
                text_put(row, cx, warn, col + inner - cx);
            }
        }
    }
    attrset(A_NORMAL);
}

/* The text shown for a setting's value. */
static const char *shown_value(const app *a, int setting)
{
    const char *text = a->value_text[setting];
    if ((sdt_schema_settings()[setting].flags & SDT_FLAG_SECRET) && text[0])
        return a->g.secret;
    return text;
}

/* "✗ message" for a diagnostic; caller frees; NULL when out of memory. */
static char *diag_text(const app *a, const sdt_diag *d)
{
    return sdt_format("%s %s", d->severity == SDT_SEV_ERROR ? a->g.error : a->g.warning, d->message);
}

/* How a row's value and first diagnostic share the value_w columns after the key. */
typedef struct row_split {
    int value_cols, diag_cols; /* diag_cols 0: no diagnostic, or no room */
    bool diag_cut;             /* the diagnostic (or more of them) does not show in full on the row */
} row_split;

static row_split split_row(const app *a, int setting, int value_w)
{
    row_split sp = {0, 0, false};
    int value_len = text_width(shown_value(a, setting));
    int count = 0;
    const sdt_diag *d = app_setting_diag(a, setting, &count);
    if (!d) {
        sp.value_cols = value_len < value_w ? value_len : value_w;
        return sp;
    }
    int diag_len = text_width(a->g.error) + 1 + text_width(d->message);
    if (value_len + 2 + diag_len <= value_w) {
        sp.value_cols = value_len;
        sp.diag_cols = diag_len;
    } else {
        int keep = value_w - diag_len - 2 > value_w / 2 ? value_w - diag_len - 2 : value_w / 2;
        sp.value_cols = value_len < keep ? value_len : keep;
        sp.diag_cols = value_w - sp.value_cols - 2;
        if (sp.diag_cols < 3)
            sp.diag_cols = 0;
        sp.diag_cut = true;
    }
    if (count > 1)
        sp.diag_cut = true;
    return sp;
}

/* Lines under the focused row that spell out its diagnostics in full, wrapped to cols; 0 when the row
 * shows them whole. */
static int detail_lines(const app *a, int setting, int cols)
{
    int lines = 0;
    for (size_t i = 0; i < a->diags->count; i++) {
        const sdt_diag *d = &a->diags->items[i];
        if (d->setting != setting)
            continue;
        char *text = diag_text(a, d);
        if (text)
            lines += text_wrap_count(text, cols, 2);
        free(text);
    }
    return lines;
}

static int draw_details(const app *a, int setting, int y, int x, int cols, int max_lines)
{
    int line = 0;
    for (size_t i = 0; i < a->diags->count && line < max_lines; i++) {
        const sdt_diag *d = &a->diags->items[i];
        if (d->setting != setting)
            continue;
        char *text = diag_text(a, d);
        if (!text)
            continue;
        attrset(d->severity == SDT_SEV_ERROR ? a->theme.error : a->theme.warning);
        const char *s = text;
        for (bool first = true; *s && line < max_lines; first = false) {
            int indent = first ? 0 : 2;
            const char *next;
            size_t n = text_wrap(s, cols - indent, &next);
            text_put_n(y + line, x + indent, s, n, cols - indent);
            line++;
            s = next;
        }
        free(text);
    }
    attrset(A_NORMAL);
    return line;
}

typedef struct form_geometry {
    int x, inner, key_w, value_x, value_w;
} form_geometry;

void draw_line_edit(const app *a, line_edit *e, int row, int x, int width, bool secret)
{
    int cursor_x = 0;
    size_t first = line_edit_view(e, width, &cursor_x);
    attrset(A_UNDERLINE);
    text_fill(row, x, width);
    if (secret) {
        /* An API key is typed blind: one mark per character, as a password prompt does. */
        size_t shown = line_edit_chars(e) - e->scroll;
        for (size_t i = 0; i < shown && (int)i < width; i++)
            text_put(row, x + (int)i, a->utf8 ? "\u2022" : "*", 1);
    } else {
        text_put_n(row, x, e->text + first, e->len - first, width);
    }
    /* The cursor cell: the character under it, or a space at the end. */
    size_t at = e->cursor, next = at;
    if (next < e->len)
        for (next++; next < e->len && ((unsigned char)e->text[next] & 0xC0) == 0x80; next++) {
        }
    attrset(A_REVERSE);
    if (next > at && secret)
        text_put(row, x + cursor_x, a->utf8 ? "\u2022" : "*", 1);
    else if (next > at)
        text_put_n(row, x + cursor_x, e->text + at, next - at, 1);
    else
        text_put(row, x + cursor_x, " ", 1);
    attrset(A_NORMAL);
}

/* The field's line editor in width columns. */
static void draw_editor(app *a, int row, int x, int width)
{
    draw_line_edit(a, &a->edit, row, x, width,
                   sdt_schema_settings()[a->edit_setting].flags & SDT_FLAG_SECRET);
}

/* The enum picker: a box of the setting's values under its row (above when there is no room). */
static void draw_picker(app *a, int row, int x, int top, int bottom, int max_w)
{
    const sdt_setting *s = &sdt_schema_settings()[a->edit_setting];
    int n = 0, w = 0;
    for (; s->enum_values[n]; n++)
        if (text_width(s->enum_values[n]) > w)
            w = text_width(s->enum_values[n]);
    w += 4;
    if (w > max_w)
        w = max_w;
    int below = bottom - row - 1, above = row - top;
    int h = n + 2, y = row + 1;
    if (h > below) {
        if (above > below) {
            h = h < above ? h : above;
            y = row - h;
        } else {
            h = below;
        }
    }
    int rows = h - 2;
    if (rows < 1)
        return;
    if (a->pick < a->pick_top)
        a->pick_top = a->pick;
    if (a->pick >= a->pick_top + rows)
        a->pick_top = a->pick - rows + 1;
    for (int r = 0; r < h; r++) {
        attrset(A_NORMAL);
        text_fill(y + r, x, w);
    }
    draw_box(a, y, x, h, w, "", true, NULL);
    hline_glyph(y, x + 1, a->g.hline, w - 2); /* no title: a plain top border */
    for (int r = 0; r < rows && a->pick_top + r < n; r++) {
        int i = a->pick_top + r;
        attrset(i == a->pick ? a->theme.selected | A_BOLD : A_NORMAL);
        text_fill(y + 1 + r, x + 1, w - 2);
        text_put(y + 1 + r, x + 2, s->enum_values[i], w - 4);
    }
    attrset(A_NORMAL);
}

/* expanded: the diagnostics are spelled out under the row, so the row only shows their marker. */
static void draw_row(app *a, const form_geometry *fg, int row, int setting, bool cursor, bool expanded)
{
    const sdt_setting *s = &sdt_schema_settings()[setting];
    attr_t base = sdt_config_relevant(a->cfg, setting) ? A_NORMAL : A_DIM;
    if (cursor)
        base = attr_over(base, a->theme.selected);
    attrset(base);
    text_fill(row, fg->x, fg->inner);
    text_put(row, fg->x + 1, s->key, fg->key_w);
    draw_find_key_marks(a, setting, row, fg->x + 1, fg->key_w, base);
    attrset(base);
    bool changed = a->changed[setting];
    if (changed) {
        attrset(attr_over(base, a->theme.changed));
        text_put(row, fg->x + 1 + fg->key_w + 1, "*", 1);
    }
    if (a->editing && setting == a->edit_setting) {
        draw_editor(a, row, fg->x + fg->value_x, fg->value_w);
        attrset(A_NORMAL);
        return; /* the diagnostics are spelled out under the row while editing */
    }
    row_split sp = split_row(a, setting, fg->value_w);
    text_put(row, fg->x + fg->value_x, shown_value(a, setting), sp.value_cols);
    int count = 0;
    const sdt_diag *d = app_setting_diag(a, setting, &count);
    if (d && sp.diag_cols > 0) {
        char *text = expanded ? NULL : diag_text(a, d);
        const char *glyph = d->severity == SDT_SEV_ERROR ? a->g.error : a->g.warning;
        attrset(attr_over(base, d->severity == SDT_SEV_ERROR ? a->theme.error : a->theme.warning));
        if (expanded) {
            text_put(row, fg->x + fg->value_x + sp.value_cols + 2, glyph, sp.diag_cols);
        } else if (text) {
            text_put(row, fg->x + fg->value_x + sp.value_cols + 2, text, sp.diag_cols);
            free(text);
        }
    }
    attrset(A_NORMAL);
}

static void draw_form(app *a, int y, int x, int h, int w)
{
    bool focused = a->focus == FOCUS_FORM && !a->help_open;
    int sec = a->section, len = a->sec_len[sec], rows = h - 2;
    form_pos *p = &a->pos[sec];
    form_geometry fg = {.x = x + 1, .inner = w - 2};
    /* ~28 columns for keys; the longest key (34) fits once there is room for it. */
    fg.key_w = fg.inner >= 90 ? 34 : fg.inner >= 56 ? 28 : fg.inner / 2;
    fg.value_x = 1 + fg.key_w + 3; /* pad, key, space, changed mark, space */
    fg.value_w = fg.inner - fg.value_x - 1;

    int cursor_setting = len > 0 ? a->sec_start[sec] + p->cursor : -1;
    int detail_x = fg.x + 3, detail_w = fg.inner - 4;
    int extra = 0;
    bool editing_here = a->editing && cursor_setting == a->edit_setting;
    if (focused && cursor_setting >= 0 && (editing_here || split_row(a, cursor_setting, fg.value_w).diag_cut))
        extra = detail_lines(a, cursor_setting, detail_w);
    if (extra > rows / 2)
        extra = rows / 2;
    int shown = rows - extra;
    a->form_rows = shown;
    if (p->cursor < p->top)
        p->top = p->cursor;
    if (p->cursor >= p->top + shown)
        p->top = p->cursor - shown + 1;
    if (p->top > len - shown)
        p->top = len - shown > 0 ? len - shown : 0;

    char info[32] = "";
    if (len > rows)
        snprintf(info, sizeof info, "%d/%d", p->cursor + 1, len);
    draw_box(a, y, x, h, w, sdt_section_title((sdt_section)sec), focused, info[0] ? info : NULL);
    if (len == 0) {
        attrset(A_DIM);
        text_put(y + 1, fg.x + 1, "(no settings)", fg.inner - 1);
        attrset(A_NORMAL);
    }
    int line = 0, cursor_row = -1;
    for (int i = p->top; i < len && line < rows; i++) {
        int setting = a->sec_start[sec] + i;
        bool cursor = focused && i == p->cursor;
        if (cursor)
            cursor_row = y + 1 + line;
        draw_row(a, &fg, y + 1 + line, setting, cursor, cursor && extra > 0);
        line++;
        if (i == p->cursor && extra > 0)
            line += draw_details(a, setting, y + 1 + line, detail_x, detail_w, extra);
    }
    if (a->picking && cursor_row >= 0)
        draw_picker(a, cursor_row, fg.x + fg.value_x - 1, y + 1, y + h - 1, fg.inner - fg.value_x);
}

/* `key: help · type allowed · default D · when ...` for the focused setting; *facts gets the offset of
 * the part after the help (from its separator on). */
static char *setting_help(const app *a, int setting, size_t *facts)
{
    const sdt_setting *s = &sdt_schema_settings()[setting];
    sdt_buf buf;
    sdt_buf_init(&buf);
    sdt_buf_printf(&buf, "%s: %s", s->key, s->help ? s->help : "");
    *facts = buf.len;
    sdt_buf_puts(&buf, a->g.sep);
    if (s->type == SDT_T_LIST)
        sdt_buf_printf(&buf, "list of %s", sdt_type_name(s->elem_type));
    else
        sdt_buf_puts(&buf, sdt_type_name(s->type));
    char *allowed = sdt_setting_allowed_text(s);
    if (!allowed)
        buf.failed = true;
    else if (allowed[0])
        sdt_buf_printf(&buf, " %s", allowed);
    free(allowed);
    const char *def = a->default_text[setting];
    sdt_buf_printf(&buf, "%sdefault %s", a->g.sep, def[0] ? def : "(empty)");
    if (s->relevance != SDT_REL_ALWAYS)
        sdt_buf_printf(&buf, "%s%s", a->g.sep, sdt_relevance_text(s->relevance));
    return sdt_buf_take(&buf);
}

static char *section_help(const app *a)
{
    int s = a->section;
    sdt_buf buf;
    sdt_buf_init(&buf);
    sdt_buf_printf(&buf, "%s: %d settings", sdt_section_title((sdt_section)s), a->sec_len[s]);
    if (a->sec_errors[s])
        sdt_buf_printf(&buf, "%s%d error%s", a->g.sep, a->sec_errors[s], a->sec_errors[s] == 1 ? "" : "s");
    if (a->sec_warnings[s])
        sdt_buf_printf(&buf, "%s%d warning%s", a->g.sep, a->sec_warnings[s],
                       a->sec_warnings[s] == 1 ? "" : "s");
    sdt_buf_printf(&buf, "%sTab or Right shows them", a->g.sep);
    return sdt_buf_take(&buf);
}

/* The help line. When a setting's line is too long, its help is cut rather than the type, range and
 * default after it, as long as 16 columns of the help still show. */
static void draw_help_line(const app *a, int y, int width)
{
    char *text = NULL;
    size_t facts = 0;
    if (a->help_open)
        text = sdt_format("Esc closes the help%sUp/Down/PgUp/PgDn scroll it", a->g.sep);
    else if (a->editing)
        text = sdt_format("%s: Enter keeps%sEsc puts the old value back%sCtrl-U clears",
                          sdt_schema_settings()[a->edit_setting].key, a->g.sep, a->g.sep);
    else if (a->picking)
        text = sdt_format("%s: Up/Down pick%sEnter keeps%sEsc puts the old value back",
                          sdt_schema_settings()[a->edit_setting].key, a->g.sep, a->g.sep);
    else if (a->focus == FOCUS_FORM && a->sec_len[a->section] > 0)
        text = setting_help(a, a->sec_start[a->section] + a->pos[a->section].cursor, &facts);
    else
        text = section_help(a);
    attrset(A_NORMAL);
    int cols = width - 1;
    if (!text) {
        text_put(y, 1, "(out of memory)", cols);
        return;
    }
    int facts_w = facts ? text_width(text + facts) : 0;
    const char *colon = strchr(text, ':');
    int min_head = colon ? text_width_n(text, (size_t)(colon - text)) + 2 + 16 : 0; /* key: 16 of help */
    if (facts && text_width(text) > cols && cols - facts_w >= min_head) {
        int used = text_put_n(y, 1, text, facts, cols - facts_w);
        text_put(y, 1 + used, text + facts, facts_w);
    } else {
        text_put(y, 1, text, cols);
    }
    free(text);
}

const char *draw_engine_word(const app *a)
{
    if (!a->have_run)
        return "idle";
    if (a->client && engine_client_phase_of(a->client) == ENGINE_CLIENT_DETACHED)
        return "detached";
    if (!a->client && !a->attached && !a->run.engine_exited)
        return "not started";
    return run_state_status_text(&a->run);
}

void draw_prompt_line(const app *a, int y, int width)
{
    const char *text = NULL;
    switch (a->prompt) {
    case PROMPT_STOP: text = "Stop the run and save? y/n"; break;
    case PROMPT_ABORT: text = "Abort the run (no save; SIGTERM, then SIGKILL, if it hangs)? y/n"; break;
    case PROMPT_QUIT:
        text = "Leave the engine training (it keeps its journal), stop it, or cancel? l/s/c";
        break;
    case PROMPT_SAVE: text = "The config has unsaved changes. Save them? y/n/c"; break;
    case PROMPT_SAVE_START: text = "The engine trains the saved file. Save the changes and start? y/n"; break;
    case PROMPT_NONE: break;
    }
    if (text) {
        attrset(a->theme.prompt);
        text_fill(y, 0, width);
        text_put(y, 1, text, width - 1);
    } else if (a->message) {
        attrset(A_BOLD);
        text_put(y, 1, a->message, width - 1);
    }
    attrset(A_NORMAL);
}

/* The message box of a->notice, centred, one line per line of the text (word-wrapped). */
static void draw_notice(const app *a, int width, int height)
{
    int w = width - 8 > 100 ? 100 : width - 8, inner = w - 4;
    int lines = 0;
    for (const char *s = a->notice; *s;) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        char *line = sdt_format("%.*s", (int)len, s);
        lines += line && line[0] ? text_wrap_count(line, inner, 2) : 1;
        free(line);
        s += len + (nl ? 1 : 0);
    }
    int max = height - 6, h = (lines < max ? lines : max) + 2;
    int y = (height - h) / 2, x = (width - w) / 2, row = 0;
    for (int r = 0; r < h; r++) {
        attrset(A_NORMAL);
        text_fill(y + r, x, w);
    }
    draw_box(a, y, x, h, w, a->notice_title ? a->notice_title : "Cannot start", true, "any key closes");
    for (const char *s = a->notice; *s && row < h - 2;) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        char *line = sdt_format("%.*s", (int)len, s);
        attrset(row == 0 ? A_BOLD : a->theme.error);
        for (const char *p = line ? line : "", *next; *p && row < h - 2; p = next) {
            size_t n = text_wrap(p, inner - (p == line ? 0 : 2), &next);
            text_put_n(y + 1 + row, x + 2 + (p == line ? 0 : 2), p, n, inner);
            row++;
        }
        free(line);
        s += len + (nl ? 1 : 0);
    }
    attrset(A_NORMAL);
}

void draw_key_bar(const app *a, int y, int width)
{
    bool run_view = a->view == VIEW_RUN;
    size_t count;
    const key_binding *keys = keys_table(&count);
    int x = 0;
    move(y, 0);
    for (size_t i = 0; i < count; i++) {
        const key_binding *b = &keys[i];
        const char *label = run_view ? b->run_bar : b->bar;
        bool fkey = b->key >= KEY_F(0) && b->key <= KEY_F(63);
        if (!label)
            continue;
        char digits[8];
        if (fkey)
            snprintf(digits, sizeof digits, "%d", b->key - KEY_F(0));
        else
            snprintf(digits, sizeof digits, "%s", b->name);
        bool on = action_available(b->action);
        int need = text_width(digits) + text_width(label);
        if (x + need > width)
            break;
        attrset(on ? a->theme.bar_key : a->theme.bar_off);
        x += text_put(y, x, digits, width - x);
        attrset(on ? a->theme.bar_label : a->theme.bar_off);
        x += text_put(y, x, label, width - x);
        attrset(A_NORMAL);
        if (x < width)
            x += text_put(y, x, " ", 1);
    }
    attrset(A_NORMAL);
}

static void draw_too_small(int width, int height)
{
    char text[96];
    snprintf(text, sizeof text, "too small: %dx%d, need %dx%d", width, height, DRAW_MIN_COLS, DRAW_MIN_ROWS);
    int w = text_width(text);
    int x = w < width ? (width - w) / 2 : 0;
    text_put(height / 2, x, text, width - x);
}

void draw_screen(app *a)
{
    int width = COLS, height = LINES;
    erase();
    if (width < DRAW_MIN_COLS || height < DRAW_MIN_ROWS) {
        draw_too_small(width, height);
        refresh();
        return;
    }
    if (a->view == VIEW_RUN) {
        draw_run_view(a, width, height);
    } else {
        int list_w = width >= 110 ? 28 : width >= 80 ? 24 : 20;
        draw_title(a, width);
        draw_sections(a, 1, 0, height - 3, list_w);
        draw_form(a, 1, list_w, height - 3, width - list_w);
        if (a->prompt != PROMPT_NONE || a->message)
            draw_prompt_line(a, height - 2, width);
        else
            draw_help_line(a, height - 2, width);
    }
    if (a->find.open)
        draw_find_line(a, height - 2, width);
    draw_key_bar(a, height - 1, width);
    if (a->files.mode != FILES_CLOSED)
        files_draw(a, width, height);
    if (a->help_open)
        help_draw(a);
    if (a->notice)
        draw_notice(a, width, height);
    refresh();
}
