/* The config browser's state and event loop (see app.h). Drawing is in draw.c and help.c. */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "draw.h"
#include "sdtune/value.h"

static const glyphs utf8_glyphs = {
    .selected = "\u25b6",
    .error = "\u2717",
    .warning = "!",
    .secret = "\u2022\u2022\u2022\u2022",
    .sep = " \u00b7 ",
    .hline = "\u2500",
    .vline = "\u2502",
    .top_left = "\u250c",
    .top_right = "\u2510",
    .bottom_left = "\u2514",
    .bottom_right = "\u2518",
};
static const glyphs ascii_glyphs = {
    .selected = ">",
    .error = "x",
    .warning = "!",
    .secret = "****",
    .sep = " | ",
    .hline = "-",
    .vline = "|",
    .top_left = "+",
    .top_right = "+",
    .bottom_left = "+",
    .bottom_right = "+",
};

/* The schema lists its settings grouped by section in section order (tests/unit/test_schema.c holds it
 * to that), so a section is a run of consecutive setting indexes. */
static void index_sections(app *a)
{
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t i = 0; i < a->count; i++)
        a->sec_len[settings[i].section]++;
    int start = 0;
    for (int s = 0; s < SDT_SEC_COUNT; s++) {
        a->sec_start[s] = start;
        start += a->sec_len[s];
    }
}

static int load_values(app *a)
{
    a->value_text = calloc(a->count ? a->count : 1, sizeof *a->value_text);
    a->default_text = calloc(a->count ? a->count : 1, sizeof *a->default_text);
    a->changed = calloc(a->count ? a->count : 1, sizeof *a->changed);
    if (!a->value_text || !a->default_text || !a->changed)
        return -1;
    for (size_t i = 0; i < a->count; i++) {
        const sdt_value *value = sdt_config_get(a->cfg, (int)i);
        const sdt_value *def = sdt_config_default(a->cfg, (int)i);
        if (!value || !def)
            return -1;
        a->value_text[i] = sdt_value_to_text(value);
        a->default_text[i] = sdt_value_to_text(def);
        if (!a->value_text[i] || !a->default_text[i])
            return -1;
        a->changed[i] = sdt_config_is_changed(a->cfg, (int)i);
    }
    return 0;
}

static void count_diags(app *a)
{
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t i = 0; i < a->diags->count; i++) {
        const sdt_diag *d = &a->diags->items[i];
        bool error = d->severity == SDT_SEV_ERROR;
        if (d->setting >= 0 && (size_t)d->setting < a->count) {
            sdt_section s = settings[d->setting].section;
            if (error)
                a->sec_errors[s]++;
            else
                a->sec_warnings[s]++;
        } else if (error) {
            a->file_errors++;
        } else {
            a->file_warnings++;
        }
    }
}

int app_init(app *a, const char *path, const sdt_config *cfg, const sdt_diag_list *diags, bool utf8)
{
    memset(a, 0, sizeof *a);
    a->path = path;
    const char *slash = strrchr(path, '/');
    a->name = slash && slash[1] ? slash + 1 : path;
    a->cfg = cfg;
    a->diags = diags;
    a->count = sdt_schema_count();
    a->g = utf8 ? utf8_glyphs : ascii_glyphs;
    a->focus = FOCUS_SECTIONS;
    index_sections(a);
    if (load_values(a) != 0)
        return -1;
    count_diags(a);
    return 0;
}

void app_free(app *a)
{
    for (size_t i = 0; i < a->count; i++) {
        if (a->value_text)
            free(a->value_text[i]);
        if (a->default_text)
            free(a->default_text[i]);
    }
    free(a->value_text);
    free(a->default_text);
    free(a->changed);
    memset(a, 0, sizeof *a);
}

const sdt_diag *app_setting_diag(const app *a, int setting, int *count)
{
    const sdt_diag *first = NULL;
    int n = 0;
    for (size_t i = 0; i < a->diags->count; i++) {
        const sdt_diag *d = &a->diags->items[i];
        if (d->setting != setting)
            continue;
        n++;
        if (!first || (d->severity == SDT_SEV_ERROR && first->severity != SDT_SEV_ERROR))
            first = d;
    }
    if (count)
        *count = n;
    return first;
}

static int clamp(long value, int lo, int hi)
{
    if (hi < lo)
        return lo;
    return value < lo ? lo : value > hi ? hi : (int)value;
}

/* Moves the cursor of the focused pane (or scrolls the help) by delta rows. */
static void move_by(app *a, long delta)
{
    if (a->help_open) {
        a->help_top = clamp((long)a->help_top + delta, 0, 1 << 20); /* the draw clamps the end */
    } else if (a->focus == FOCUS_SECTIONS) {
        a->section = clamp((long)a->section + delta, 0, SDT_SEC_COUNT - 1);
    } else {
        form_pos *p = &a->pos[a->section];
        p->cursor = clamp((long)p->cursor + delta, 0, a->sec_len[a->section] - 1);
    }
}

static int page(const app *a)
{
    int rows = a->help_open ? a->help_rows : a->focus == FOCUS_SECTIONS ? a->list_rows : a->form_rows;
    return rows > 1 ? rows - 1 : 1;
}

void app_do(app *a, action act)
{
    switch (act) {
    case ACT_UP: move_by(a, -1); break;
    case ACT_DOWN: move_by(a, 1); break;
    case ACT_PAGE_UP: move_by(a, -page(a)); break;
    case ACT_PAGE_DOWN: move_by(a, page(a)); break;
    case ACT_HOME: move_by(a, -(1L << 30)); break;
    case ACT_END: move_by(a, 1L << 30); break;
    case ACT_FOCUS_FORM:
        if (!a->help_open)
            a->focus = FOCUS_FORM;
        break;
    case ACT_FOCUS_SECTIONS:
        if (!a->help_open)
            a->focus = FOCUS_SECTIONS;
        break;
    case ACT_HELP:
        a->help_open = !a->help_open;
        a->help_top = 0;
        break;
    case ACT_CLOSE: a->help_open = false; break;
    case ACT_QUIT: a->quit = true; break;
    case ACT_SAVE:
    case ACT_FIND:
    case ACT_RUN:
    case ACT_START:
    case ACT_STOP:
    case ACT_ABORT: break; /* not available yet: shown dimmed in the key bar */
    }
}

int app_run(app *a)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "sdtune: the terminal UI needs a terminal on stdin and stdout\n");
        return -1;
    }
    SCREEN *screen = newterm(NULL, stdout, stdin);
    if (!screen) {
        const char *term = getenv("TERM");
        fprintf(stderr, "sdtune: cannot use the terminal (TERM=%s)\n", term ? term : "");
        return -1;
    }
    int rc = 0;
    if (cbreak() == ERR || noecho() == ERR || keypad(stdscr, TRUE) == ERR) {
        rc = -1;
    } else {
        curs_set(0); /* ERR only means the terminal cannot hide the cursor */
        set_escdelay(25);
        draw_init_theme(a);
        while (!a->quit) {
            draw_screen(a);
            int key = getch();
            if (key == ERR) {
                if (errno == EINTR)
                    continue;
                rc = -1; /* input closed */
                break;
            }
            const key_binding *b = keys_find(key);
            if (b)
                app_do(a, b->action);
            /* KEY_RESIZE and unbound keys only redraw. */
        }
    }
    endwin();
    delscreen(screen);
    if (rc != 0)
        fprintf(stderr, "sdtune: lost the terminal\n");
    return rc;
}
