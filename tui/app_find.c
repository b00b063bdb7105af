/* Searching (see app.h): `/` (or F3, 3) opens a search line on the prompt line.
 *
 * In the config view the search is incremental: every keystroke finds the settings that match
 * (settings_find.h, across all sections) and puts the cursor on the best one, switching the section;
 * Enter keeps the place, Esc goes back to where the cursor was. In the run view Enter searches the log
 * (sb_search: from the top of the view, wrapping). After Enter, n and N go to the next and previous
 * match of that view's last query. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "edit.h"
#include "sdtune/strutil.h"
#include "settings_find.h"

static void save_place(app *a)
{
    find_state *f = &a->find;
    f->saved_section = a->section;
    f->saved_list_top = a->list_top;
    f->saved_focus = a->focus;
    memcpy(f->saved_pos, a->pos, sizeof f->saved_pos);
}

static void restore_place(app *a)
{
    find_state *f = &a->find;
    a->section = f->saved_section;
    a->list_top = f->saved_list_top;
    a->focus = f->saved_focus;
    memcpy(a->pos, f->saved_pos, sizeof a->pos);
}

/* Puts the config view's cursor on setting: its section selected, the form focused. */
static void go_to_setting(app *a, int setting)
{
    int section = (int)sdt_schema_settings()[setting].section;
    a->section = section;
    a->focus = FOCUS_FORM;
    a->pos[section].cursor = setting - a->sec_start[section];
}

/* The settings matching query into f->matches; false when there is no room for them (out of memory). */
static bool find_settings(app *a, const char *query)
{
    find_state *f = &a->find;
    if (!f->matches && !(f->matches = calloc(a->count ? a->count : 1, sizeof *f->matches))) {
        f->n_matches = 0;
        return false;
    }
    f->n_matches = settings_find(sdt_schema_settings(), a->count, query, f->matches, NULL);
    f->current = 0;
    return true;
}

static void close_line(app *a)
{
    line_edit_free(&a->find.line);
    a->find.open = false;
}

void app_find_open(app *a)
{
    find_state *f = &a->find;
    if (a->view == VIEW_RUN && !a->have_run) {
        app_set_message(a, sdt_format("No log to search yet (F5 starts a run)"));
        return;
    }
    if (line_edit_init(&f->line, "") != 0) {
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    f->open = true;
    f->in = a->view;
    f->n_matches = f->current = 0;
    save_place(a);
}

/* The config view, as the query changes: the cursor on the best match, or back where it was. */
static void follow_query(app *a)
{
    find_state *f = &a->find;
    if (!find_settings(a, f->line.text)) {
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    restore_place(a);
    if (f->n_matches > 0)
        go_to_setting(a, f->matches[0]);
}

static void keep_query(app *a, view in, const char *query)
{
    char *copy = sdt_format("%s", query);
    if (!copy)
        return;
    free(a->find.last[in]);
    a->find.last[in] = copy;
}

/* Searches the log for query (forward: newer lines) from the last hit and says what it found. */
static void search_log(app *a, const char *query, bool forward)
{
    int rows = a->log_rows > 0 ? a->log_rows : 1, cols = a->log_cols > 0 ? a->log_cols : 1;
    uint64_t line = 0;
    if (sb_search(&a->log, query, forward, rows, cols, &line) != 0)
        app_set_message(a, sdt_format("no log line matches '%s'", query));
    else
        app_set_message(a, sdt_format("'%s' in log line %llu of %llu (n next, N previous)", query,
                                      (unsigned long long)(line - a->log.first + 1),
                                      (unsigned long long)a->log.count));
}

static void say_match(app *a)
{
    const find_state *f = &a->find;
    app_set_message(a, sdt_format("match %zu/%zu: %s (n next, N previous)", f->current + 1, f->n_matches,
                                  sdt_schema_settings()[f->matches[f->current]].key));
}

/* Enter: keeps the place (config view) or searches the log (run view); the query becomes the last one. */
static void accept(app *a)
{
    find_state *f = &a->find;
    char *query = sdt_format("%s", f->line.text);
    view in = f->in;
    close_line(a);
    if (!query) {
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    bool blank = strspn(query, " \t") == strlen(query);
    if (blank) {
        free(query);
        return;
    }
    if (in == VIEW_CONFIG) {
        if (f->n_matches > 0) {
            keep_query(a, in, query);
            say_match(a);
        } else {
            app_set_message(a, sdt_format("no setting matches '%s'", query));
        }
    } else if (a->have_run) {
        keep_query(a, in, query);
        a->log.have_match = false; /* a new query starts from the top of the view, not the old hit */
        search_log(a, query, true);
    }
    free(query);
}

/* A key while the search line is open: the line editor's keys, Enter, Esc. */
void app_find_key(app *a, int key)
{
    find_state *f = &a->find;
    line_edit *e = &f->line;
    bool changed = true;
    switch (key) {
    case '\n':
    case '\r':
    case KEY_ENTER: accept(a); return;
    case 27:
        close_line(a);
        if (f->in == VIEW_CONFIG)
            restore_place(a);
        return;
    case KEY_LEFT: line_edit_left(e); return;
    case KEY_RIGHT: line_edit_right(e); return;
    case KEY_HOME:
    case 1: /* Ctrl-A */ line_edit_home(e); return;
    case KEY_END:
    case 5: /* Ctrl-E */ line_edit_end(e); return;
    case KEY_BACKSPACE:
    case 127:
    case 8: line_edit_backspace(e); break;
    case KEY_DC: line_edit_delete(e); break;
    case 21: /* Ctrl-U */ line_edit_clear(e); break;
    default:
        if (key >= 32 && key < 256) {
            char byte = (char)key;
            if (line_edit_insert(e, &byte, 1) != 0)
                app_set_message(a, sdt_format("out of memory"));
        } else {
            changed = false;
        }
    }
    /* The settings are searched as the query is typed; the log only on Enter (it may hold thousands of
     * lines, and its view should not jump about while typing). */
    if (changed && f->in == VIEW_CONFIG && line_edit_char_complete(e))
        follow_query(a);
}

/* The index in the matches of the setting under the config view's cursor; -1 when it is not one. */
static int focused_match(const app *a)
{
    const find_state *f = &a->find;
    if (a->focus != FOCUS_FORM || a->sec_len[a->section] == 0)
        return -1;
    int setting = a->sec_start[a->section] + a->pos[a->section].cursor;
    for (size_t i = 0; i < f->n_matches; i++)
        if (f->matches[i] == setting)
            return (int)i;
    return -1;
}

void app_find_again(app *a, bool forward)
{
    find_state *f = &a->find;
    view in = a->view;
    const char *query = f->last[in];
    if (!query) {
        app_set_message(a, sdt_format(in == VIEW_CONFIG ? "No search yet: / or F3 finds a setting"
                                                        : "No search yet: / or F3 searches the log"));
        return;
    }
    if (in == VIEW_RUN) {
        if (a->have_run)
            search_log(a, query, forward);
        return;
    }
    /* The matches again (the last line typed may have been another query, left with Esc), stepping from
     * the match under the cursor, so moving by hand and then n goes on from there; away from every
     * match n goes to the first and N to the last. */
    if (!find_settings(a, query)) {
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    if (f->n_matches == 0) {
        app_set_message(a, sdt_format("no setting matches '%s'", query));
        return;
    }
    int here = focused_match(a);
    if (here < 0)
        f->current = forward ? 0 : f->n_matches - 1;
    else
        f->current =
            forward ? ((size_t)here + 1) % f->n_matches : ((size_t)here + f->n_matches - 1) % f->n_matches;
    go_to_setting(a, f->matches[f->current]);
    say_match(a);
}

void app_find_free(app *a)
{
    find_state *f = &a->find;
    line_edit_free(&f->line);
    free(f->last[VIEW_CONFIG]);
    free(f->last[VIEW_RUN]);
    free(f->matches);
    memset(f, 0, sizeof *f);
}
