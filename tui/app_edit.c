/* Editing the config in the config view (see app.h): the line editor on a field, the bool toggle, the enum
 * picker, restoring a default and saving. Every change is applied to the config at once and validated
 * (app_revalidate); Esc puts back the state saved when the edit began. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "edit.h"
#include "sdtune/strutil.h"
#include "sdtune/value.h"

static int focused_setting(const app *a)
{
    if (a->view != VIEW_CONFIG || a->focus != FOCUS_FORM || a->help_open || a->sec_len[a->section] == 0)
        return -1;
    return a->sec_start[a->section] + a->pos[a->section].cursor;
}

/* Applies text to setting as typed, live: a value the type or range refuses is kept as text with its
 * error (the config keeps its previous value); then everything is validated again. */
static void apply_text(app *a, int setting, const char *text)
{
    char *error = NULL;
    app_clear_bad(a, setting);
    if (field_apply(a->cfg, setting, text, &error) != 0) {
        a->bad_text[setting] = sdt_format("%s", text);
        a->bad_error[setting] = error ? error : sdt_format("not a valid value");
        error = NULL;
    }
    free(error);
    a->edited[setting] = true;
    app_revalidate(a);
}

/* Remembers the setting's state so Esc can put it back. */
static int save_undo(app *a, int setting)
{
    a->edit_setting = setting;
    a->undo_text = sdt_format("%s", a->value_text[setting]);
    a->undo_set = sdt_config_is_set(a->cfg, setting);
    a->undo_edited = a->edited[setting];
    a->undo_bad = a->bad_text[setting] ? sdt_format("%s", a->bad_text[setting]) : NULL;
    a->undo_bad_error = a->bad_error[setting] ? sdt_format("%s", a->bad_error[setting]) : NULL;
    if (!a->undo_text ||
        (a->undo_set && sdt_value_copy(&a->undo_value, sdt_config_get(a->cfg, setting)) != 0))
        return -1;
    return 0;
}

static void drop_undo(app *a)
{
    free(a->undo_text);
    free(a->undo_bad);
    free(a->undo_bad_error);
    a->undo_text = a->undo_bad = a->undo_bad_error = NULL;
    sdt_value_free(&a->undo_value);
    memset(&a->undo_value, 0, sizeof a->undo_value);
}

/* Ends the edit or the pick: keeps what is there (and marks the config unsaved when it differs from
 * before), or puts the setting back as it was. */
static void finish_edit(app *a, bool keep)
{
    int setting = a->edit_setting;
    if (keep) {
        if (!a->undo_text || strcmp(a->undo_text, a->value_text[setting]) != 0)
            a->dirty = true;
    } else {
        if (a->undo_set && sdt_config_set_value(a->cfg, setting, &a->undo_value) != 0)
            app_set_message(a,
                            sdt_format("out of memory: %s not restored", sdt_schema_settings()[setting].key));
        else if (!a->undo_set)
            sdt_config_unset(a->cfg, setting);
        app_clear_bad(a, setting);
        a->bad_text[setting] = a->undo_bad;
        a->bad_error[setting] = a->undo_bad_error;
        a->undo_bad = a->undo_bad_error = NULL;
        a->edited[setting] = a->undo_edited;
        app_revalidate(a);
    }
    drop_undo(a);
    line_edit_free(&a->edit);
    a->editing = a->picking = false;
}

static int enum_count(const sdt_setting *s)
{
    int n = 0;
    while (s->enum_values && s->enum_values[n])
        n++;
    return n;
}

void app_begin_edit(app *a)
{
    int setting = focused_setting(a);
    if (setting < 0)
        return;
    const sdt_setting *s = &sdt_schema_settings()[setting];
    if (s->type == SDT_T_BOOL) {
        bool on = !a->bad_text[setting] && sdt_config_get(a->cfg, setting)->b;
        apply_text(a, setting, on ? "false" : "true");
        a->dirty = true;
        return;
    }
    if (save_undo(a, setting) != 0) {
        drop_undo(a);
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    if (s->type == SDT_T_ENUM && enum_count(s) > 0) {
        a->picking = true;
        a->pick = 0;
        for (int i = 0; s->enum_values[i]; i++)
            if (strcmp(s->enum_values[i], a->value_text[setting]) == 0)
                a->pick = i;
        a->pick_top = 0;
        return;
    }
    if (line_edit_init(&a->edit, a->value_text[setting]) != 0) {
        drop_undo(a);
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    a->editing = true;
}

void app_restore_default(app *a)
{
    int setting = focused_setting(a);
    if (setting < 0)
        return;
    const char *key = sdt_schema_settings()[setting].key;
    if (!sdt_config_is_set(a->cfg, setting) && !a->bad_text[setting]) {
        app_set_message(a, sdt_format("%s already follows its default", key));
        return;
    }
    sdt_config_unset(a->cfg, setting);
    app_clear_bad(a, setting);
    a->edited[setting] = true;
    a->dirty = true;
    app_revalidate(a);
    app_set_message(a, sdt_format("%s: back to its default %s", key,
                                  a->default_text[setting][0] ? a->default_text[setting] : "(empty)"));
}

/* Saves to the file it came from, atomically. False when it did not (the reason is on the message line). */
bool app_save(app *a)
{
    for (size_t i = 0; i < a->count; i++)
        if (a->bad_text[i]) {
            app_set_message(a, sdt_format("Cannot save: %s = %s is not valid (%s)",
                                          sdt_schema_settings()[i].key, a->bad_text[i], a->bad_error[i]));
            return false;
        }
    char *error = NULL;
    if (sdt_config_save(a->cfg, a->path, &error) != 0) {
        app_set_message(a, sdt_format("Cannot save %s: %s", a->path, error ? error : "unknown error"));
        free(error);
        return false;
    }
    /* The file is now written from the schema: what loading found in the old text is gone with it. */
    sdt_diag_list_clear(&a->load_diags);
    a->dirty = false;
    app_revalidate(a);
    char *why = app_files_record(a);
    app_set_message(a, why ? sdt_format("Saved %s (not in the recent files: %s)", a->path, why)
                           : sdt_format("Saved %s", a->path));
    free(why);
    return true;
}

line_key app_line_key(app *a, line_edit *e, int key)
{
    switch (key) {
    case KEY_LEFT: line_edit_left(e); return LINE_KEY_MOVED;
    case KEY_RIGHT: line_edit_right(e); return LINE_KEY_MOVED;
    case KEY_HOME:
    case 1: /* Ctrl-A */ line_edit_home(e); return LINE_KEY_MOVED;
    case KEY_END:
    case 5: /* Ctrl-E */ line_edit_end(e); return LINE_KEY_MOVED;
    case KEY_BACKSPACE:
    case 127:
    case 8: line_edit_backspace(e); return LINE_KEY_CHANGED;
    case KEY_DC: line_edit_delete(e); return LINE_KEY_CHANGED;
    case 21: /* Ctrl-U */ line_edit_clear(e); return LINE_KEY_CHANGED;
    default:
        if (key >= 32 && key < 256) {
            char byte = (char)key;
            if (line_edit_insert(e, &byte, 1) != 0)
                app_set_message(a, sdt_format("out of memory"));
            return LINE_KEY_CHANGED;
        }
        return LINE_KEY_IGNORED;
    }
}

/* A key while a field is edited: the editor's keys; Enter keeps the value, Esc puts the old one back, Tab
 * completes a path. */
void app_edit_key(app *a, int key)
{
    line_edit *e = &a->edit;
    bool changed;
    switch (key) {
    case '\n':
    case '\r':
    case KEY_ENTER: finish_edit(a, true); return;
    case 27: finish_edit(a, false); return;
    case '\t':
        if (sdt_schema_settings()[a->edit_setting].type != SDT_T_PATH)
            return;
        changed = app_files_complete(a, e);
        break;
    default: changed = app_line_key(a, e, key) == LINE_KEY_CHANGED;
    }
    /* A character's later bytes are still to come: validating half a character would show a bogus error. */
    if (changed && line_edit_char_complete(e))
        apply_text(a, a->edit_setting, e->text);
}

/* A key while an enum's list is open: moving picks (validated live), Enter keeps, Esc puts back. */
void app_pick_key(app *a, int key)
{
    const sdt_setting *s = &sdt_schema_settings()[a->edit_setting];
    int n = enum_count(s), pick = a->pick;
    switch (key) {
    case '\n':
    case '\r':
    case KEY_ENTER:
    case ' ': finish_edit(a, true); return;
    case 27: finish_edit(a, false); return;
    case KEY_UP:
    case 'k': pick--; break;
    case KEY_DOWN:
    case 'j': pick++; break;
    case KEY_HOME:
    case 'g': pick = 0; break;
    case KEY_END:
    case 'G': pick = n - 1; break;
    default: return;
    }
    pick = pick < 0 ? 0 : pick >= n ? n - 1 : pick;
    if (pick != a->pick || strcmp(a->value_text[a->edit_setting], s->enum_values[pick]) != 0) {
        a->pick = pick;
        apply_text(a, a->edit_setting, s->enum_values[pick]);
    }
}
