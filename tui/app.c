/* The UI's state and event loop (see app.h). Drawing is in draw.c, draw_run.c and help.c.
 *
 * The loop polls the terminal and, while an engine is attached, its stdout and stderr with a 100 ms
 * timeout, so the engine's lines are read as they come and the client's tick (reaping, abort escalation)
 * runs a few times a second; without an engine it blocks on the terminal. */
#define _GNU_SOURCE /* ppoll */
#include "app.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "draw.h"
#include "sdtune/strutil.h"
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

static int alloc_values(app *a)
{
    size_t n = a->count ? a->count : 1;
    a->value_text = calloc(n, sizeof *a->value_text);
    a->default_text = calloc(n, sizeof *a->default_text);
    a->changed = calloc(n, sizeof *a->changed);
    a->edited = calloc(n, sizeof *a->edited);
    a->bad_text = calloc(n, sizeof *a->bad_text);
    a->bad_error = calloc(n, sizeof *a->bad_error);
    return a->value_text && a->default_text && a->changed && a->edited && a->bad_text && a->bad_error ? 0
                                                                                                      : -1;
}

/* The shown texts of every setting, again: one edit can change other settings' defaults (the model
 * family and the training type choose them). A value the type refuses shows as the user typed it. */
static void refresh_values(app *a)
{
    for (size_t i = 0; i < a->count; i++) {
        const sdt_value *value = sdt_config_get(a->cfg, (int)i);
        const sdt_value *def = sdt_config_default(a->cfg, (int)i);
        free(a->value_text[i]);
        free(a->default_text[i]);
        a->value_text[i] = a->bad_text[i] ? sdt_format("%s", a->bad_text[i])
                           : value        ? sdt_value_to_text(value)
                                          : NULL;
        a->default_text[i] = def ? sdt_value_to_text(def) : NULL;
        /* Out of memory shows an empty field rather than crash the drawing. */
        if (!a->value_text[i])
            a->value_text[i] = calloc(1, 1);
        if (!a->default_text[i])
            a->default_text[i] = calloc(1, 1);
        a->changed[i] = sdt_config_is_changed(a->cfg, (int)i) || a->bad_text[i];
    }
}

static void count_diags(app *a)
{
    memset(a->sec_errors, 0, sizeof a->sec_errors);
    memset(a->sec_warnings, 0, sizeof a->sec_warnings);
    a->file_errors = a->file_warnings = 0;
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

static void copy_diag(sdt_diag_list *to, const sdt_diag *d)
{
    sdt_diag_add(to, d->severity, d->file, d->line, d->col, d->setting, "%s", d->message);
}

void app_revalidate(app *a)
{
    sdt_diag_list_clear(&a->live_diags);
    for (size_t i = 0; i < a->load_diags.count; i++) {
        const sdt_diag *d = &a->load_diags.items[i];
        if (d->setting < 0 || (size_t)d->setting >= a->count || !a->edited[d->setting])
            copy_diag(&a->live_diags, d);
    }
    const char *file = sdt_config_source(a->cfg);
    for (size_t i = 0; i < a->count; i++)
        if (a->bad_text[i])
            sdt_diag_add(&a->live_diags, SDT_SEV_ERROR, file, 0, 0, (int)i, "%s", a->bad_error[i]);
    sdt_config_validate(a->cfg, &(sdt_validate_options){.check_filesystem = true}, &a->live_diags);
    sdt_diag_list_sort(&a->live_diags);
    count_diags(a);
    refresh_values(a);
}

int app_init(app *a, const char *path, sdt_config *cfg, const sdt_diag_list *load_diags, bool utf8)
{
    memset(a, 0, sizeof *a);
    theme_spec_default(&a->theme.spec);
    a->cfg = cfg;
    a->files.selected = -1;
    sdt_diag_list_init(&a->live_diags);
    sdt_diag_list_init(&a->load_diags);
    a->diags = &a->live_diags;
    a->count = sdt_schema_count();
    a->g = utf8 ? utf8_glyphs : ascii_glyphs;
    a->utf8 = utf8;
    a->focus = FOCUS_SECTIONS;
    index_sections(a);
    if (app_set_path(a, path) != 0 || alloc_values(a) != 0)
        return -1;
    for (size_t i = 0; load_diags && i < load_diags->count; i++)
        copy_diag(&a->load_diags, &load_diags->items[i]);
    app_revalidate(a);
    return a->live_diags.truncated || a->load_diags.truncated ? -1 : 0;
}

int app_set_path(app *a, const char *path)
{
    char *copy = sdt_strdup(path);
    if (!copy)
        return -1;
    free(a->path);
    a->path = copy;
    const char *slash = strrchr(copy, '/');
    a->name = slash && slash[1] ? slash + 1 : copy;
    return 0;
}

int app_replace_config(app *a, const char *path, sdt_config *cfg, const sdt_diag_list *load_diags)
{
    sdt_config_free(a->cfg);
    a->cfg = cfg;
    for (size_t i = 0; i < a->count; i++) {
        app_clear_bad(a, (int)i);
        a->edited[i] = false;
    }
    sdt_diag_list_clear(&a->load_diags);
    for (size_t i = 0; load_diags && i < load_diags->count; i++)
        copy_diag(&a->load_diags, &load_diags->items[i]);
    a->dirty = false;
    a->section = 0;
    a->focus = FOCUS_SECTIONS;
    a->list_top = 0;
    memset(a->pos, 0, sizeof a->pos);
    int rc = app_set_path(a, path);
    app_revalidate(a);
    return rc != 0 || a->live_diags.truncated || a->load_diags.truncated ? -1 : 0;
}

void app_clear_bad(app *a, int setting)
{
    free(a->bad_text[setting]);
    free(a->bad_error[setting]);
    a->bad_text[setting] = a->bad_error[setting] = NULL;
}

void app_free(app *a)
{
    for (size_t i = 0; i < a->count; i++) {
        if (a->value_text)
            free(a->value_text[i]);
        if (a->default_text)
            free(a->default_text[i]);
        if (a->bad_text)
            app_clear_bad(a, (int)i);
    }
    free(a->value_text);
    free(a->default_text);
    free(a->changed);
    free(a->edited);
    free(a->bad_text);
    free(a->bad_error);
    line_edit_free(&a->edit);
    free(a->undo_text);
    free(a->undo_bad);
    free(a->undo_bad_error);
    sdt_value_free(&a->undo_value);
    sdt_diag_list_free(&a->live_diags);
    sdt_diag_list_free(&a->load_diags);
    sdt_config_free(a->cfg);
    app_files_close(a);
    free(a->path);
    engine_client_free(a->client); /* a detached engine is left running */
    attached_run_free(a->attached);
    if (a->have_run) {
        run_state_free(&a->run);
        sb_free(&a->log);
    }
    free(a->notice);
    free(a->message);
    free(a->preview_path);
    free(a->preview_error);
    preview_image_free(&a->preview);
    free(a->preview_cells);
    a->preview_cells = NULL;
    free(a->pair_of);
    free(a->run_config_name);
    app_find_free(a);
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

bool app_engine_running(const app *a)
{
    return a->client && engine_client_phase_of(a->client) == ENGINE_CLIENT_RUNNING;
}

void app_set_message(app *a, char *text)
{
    free(a->message);
    a->message = text;
}

static void log_problem(app *a, const char *what, char *error)
{
    char *text = sdt_format("%s: %s", what, error ? error : "unknown error");
    if (text && a->have_run)
        run_state_log_add(&a->run, SDT_LOG_ERROR, text);
    app_set_message(a, text);
    free(error);
}

/* "Cannot start: N errors" and every error of the config, for the notice box. */
static char *refusal_text(const app *a)
{
    sdt_buf buf;
    sdt_buf_init(&buf);
    size_t errors = sdt_diag_count(a->diags, SDT_SEV_ERROR);
    sdt_buf_printf(&buf, "Cannot start: the config has %zu error%s. Fix them first.\n", errors,
                   errors == 1 ? "" : "s");
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t i = 0; i < a->diags->count; i++) {
        const sdt_diag *d = &a->diags->items[i];
        if (d->severity != SDT_SEV_ERROR)
            continue;
        if (d->setting >= 0 && (size_t)d->setting < a->count)
            sdt_buf_printf(&buf, "%s %s: %s\n", a->g.error, settings[d->setting].key, d->message);
        else
            sdt_buf_printf(&buf, "%s %s\n", a->g.error, d->message);
    }
    return sdt_buf_take(&buf);
}

void app_clear_run(app *a)
{
    engine_client_free(a->client);
    a->client = NULL;
    attached_run_free(a->attached); /* its engine is left alone */
    a->attached = NULL;
    free(a->run_config_name);
    a->run_config_name = sdt_strdup(a->name); /* NULL when out of memory: the title then shows a->name */
    if (a->have_run) {
        run_state_free(&a->run);
        sb_free(&a->log);
        a->have_run = false;
    }
    a->log_pushed = 0;
    a->sample = 0;
    free(a->preview_path);
    a->preview_path = NULL;
    free(a->preview_error);
    a->preview_error = NULL;
    preview_image_free(&a->preview);
    free(a->preview_cells);
    a->preview_cells = NULL;
    a->have_preview = false;
}

static void start_run(app *a)
{
    if (app_engine_running(a)) {
        app_set_message(a, sdt_format("A run is going already: F6 stops it, F8 aborts it"));
        a->view = VIEW_RUN;
        return;
    }
    if (sdt_diag_count(a->diags, SDT_SEV_ERROR) > 0) {
        free(a->notice);
        a->notice = refusal_text(a);
        return;
    }
    if (a->dirty) {
        /* The engine trains the file, not what is on screen: save first, when the user says so. */
        a->prompt = PROMPT_SAVE_START;
        return;
    }
    if (app_attached_running(a)) {
        app_set_message(a, sdt_format("The attached run is going: F6 stops it, F8 aborts it"));
        a->view = VIEW_RUN;
        return;
    }
    /* Two engines must not write one output folder: a run another sdtune left training is followed. */
    if (app_attach_if_live(a)) {
        app_set_message(a,
                        sdt_format("Not started: a run of these outputs is going (pid %lld); attached to it",
                                   (long long)attached_run_pid(a->attached)));
        return;
    }
    app_clear_run(a);
    char *error = NULL;
    if (run_state_init(&a->run, NULL, &error) != 0) {
        log_problem(a, "cannot start", error);
        return;
    }
    if (sb_init(&a->log, RUN_STATE_LOG_LINES_DEFAULT) != 0) {
        run_state_free(&a->run);
        app_set_message(a, sdt_format("cannot start: out of memory"));
        return;
    }
    a->have_run = true;
    a->view = VIEW_RUN;
    char *engine = engine_client_find_engine(NULL, &error);
    if (!engine) {
        log_problem(a, "cannot start", error);
        return;
    }
    /* The engine resolves the config and writes the resolved copy next to its outputs itself. */
    engine_client_options options = {.engine_path = engine, .config_path = a->path};
    if (engine_client_start(&options, &a->client, &error) != 0)
        log_problem(a, "cannot start", error);
    else
        app_set_message(a, sdt_format("started %s (pid %ld)", engine, (long)engine_client_pid(a->client)));
    free(engine);
}

static void send_command(app *a, sdt_command_type type)
{
    if (app_attached_running(a)) {
        app_set_message(a, sdt_format("Not while attached: the engine takes commands only from the sdtune "
                                      "that started it (F6 stops, F8 aborts)"));
        return;
    }
    if (!app_engine_running(a)) {
        app_set_message(a, sdt_format("No engine is running (F5 starts one)"));
        return;
    }
    char *error = NULL;
    if (engine_client_send(a->client, type, NULL, &error) != 0)
        log_problem(a, "command not sent", error);
}

static void toggle_pause(app *a)
{
    bool paused = a->have_run && (a->run.pause == RUN_PAUSED || a->run.pause == RUN_PAUSE_ACKED);
    send_command(a, paused ? SDT_CMD_RESUME : SDT_CMD_PAUSE);
}

static void ask(app *a, prompt p)
{
    if (!app_engine_running(a) && !app_attached_running(a)) {
        app_set_message(a, sdt_format("No engine is running (F5 starts one)"));
        return;
    }
    a->prompt = p;
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
    } else if (a->view == VIEW_RUN) {
        if (!a->have_run)
            return;
        if (delta <= -(1L << 30))
            sb_top(&a->log);
        else if (delta >= 1L << 30)
            sb_bottom(&a->log);
        else
            sb_scroll(&a->log, (int)delta, a->log_rows > 0 ? a->log_rows : 1,
                      a->log_cols > 0 ? a->log_cols : 1);
    } else if (a->focus == FOCUS_SECTIONS) {
        a->section = clamp((long)a->section + delta, 0, SDT_SEC_COUNT - 1);
    } else {
        form_pos *p = &a->pos[a->section];
        p->cursor = clamp((long)p->cursor + delta, 0, a->sec_len[a->section] - 1);
    }
}

static int page(const app *a)
{
    int rows = a->help_open                 ? a->help_rows
               : a->view == VIEW_RUN        ? a->log_rows
               : a->focus == FOCUS_SECTIONS ? a->list_rows
                                            : a->form_rows;
    return rows > 1 ? rows - 1 : 1;
}

/* Left/Right in the run view: the newer or older sample. */
static void pick_sample(app *a, int delta)
{
    if (!a->have_run || a->run.n_samples == 0)
        return;
    a->sample = clamp((long)a->sample + delta, 0, (int)a->run.n_samples - 1);
}

/* Quitting: first the unsaved edits, then a running engine. */
static void quit_after_saving(app *a)
{
    if (app_engine_running(a))
        a->prompt = PROMPT_QUIT;
    else
        a->quit = true;
}

void app_do(app *a, action act)
{
    bool run_view = a->view == VIEW_RUN && !a->help_open;
    switch (act) {
    case ACT_UP: move_by(a, -1); break;
    case ACT_DOWN: move_by(a, 1); break;
    case ACT_PAGE_UP: move_by(a, -page(a)); break;
    case ACT_PAGE_DOWN: move_by(a, page(a)); break;
    case ACT_HOME: move_by(a, -(1L << 30)); break;
    case ACT_END: move_by(a, 1L << 30); break;
    case ACT_FOCUS_FORM:
        if (run_view)
            pick_sample(a, 1);
        else if (!a->help_open)
            a->focus = FOCUS_FORM;
        break;
    case ACT_FOCUS_SECTIONS:
        if (run_view)
            pick_sample(a, -1);
        else if (!a->help_open)
            a->focus = FOCUS_SECTIONS;
        break;
    case ACT_HELP:
        a->help_open = !a->help_open;
        a->help_top = 0;
        break;
    case ACT_CLOSE: /* Esc backs out: the help first, then the run view */
        if (a->help_open)
            a->help_open = false;
        else if (a->view == VIEW_RUN)
            a->view = VIEW_CONFIG;
        break;
    case ACT_QUIT:
        if (a->dirty)
            a->prompt = PROMPT_SAVE;
        else
            quit_after_saving(a);
        break;
    case ACT_RUN:
        a->view = a->view == VIEW_RUN ? VIEW_CONFIG : VIEW_RUN;
        if (a->view == VIEW_RUN && !app_engine_running(a) && !app_attached_running(a))
            app_attach_if_live(a); /* a run another sdtune left training */
        break;
    case ACT_START: start_run(a); break;
    case ACT_STOP: ask(a, PROMPT_STOP); break;
    case ACT_ABORT: ask(a, PROMPT_ABORT); break;
    case ACT_PAUSE: toggle_pause(a); break;
    case ACT_SAMPLE_NOW: send_command(a, SDT_CMD_SAMPLE_NOW); break;
    case ACT_SAVE_NOW: send_command(a, SDT_CMD_SAVE_NOW); break;
    case ACT_EDIT:
        if (run_view)
            pick_sample(a, 1);
        else if (!a->help_open && a->focus == FOCUS_SECTIONS)
            a->focus = FOCUS_FORM;
        else if (!a->help_open)
            app_begin_edit(a);
        break;
    case ACT_DEFAULT: app_restore_default(a); break;
    case ACT_SAVE: app_save(a); break;
    case ACT_FIND:
        if (!a->help_open)
            app_find_open(a);
        break;
    case ACT_FIND_NEXT:
    case ACT_FIND_PREV:
        if (!a->help_open)
            app_find_again(a, act == ACT_FIND_NEXT);
        break;
    case ACT_OPEN: app_files_begin(a, FILES_OPEN); break;
    case ACT_SAVE_AS: app_files_begin(a, FILES_SAVE_AS); break;
    }
}

/* Questions about the running engine, moot once it ended. */
static bool prompt_about_run(prompt p) { return p == PROMPT_STOP || p == PROMPT_ABORT || p == PROMPT_QUIT; }

/* A key while a question is on the prompt line: its answer, or anything else (Esc) to cancel. */
static void answer(app *a, int key)
{
    prompt p = a->prompt;
    a->prompt = PROMPT_NONE;
    char *error = NULL;
    if (p == PROMPT_SAVE) {
        if ((key == 'y' || key == 'Y') ? app_save(a) : key == 'n' || key == 'N')
            quit_after_saving(a);
        return;
    }
    if (p == PROMPT_SAVE_START) {
        if ((key == 'y' || key == 'Y') && app_save(a))
            start_run(a);
        return;
    }
    if (app_attached_running(a) && (key == 'y' || key == 'Y')) {
        if (p == PROMPT_STOP)
            app_attach_stop(a);
        else if (p == PROMPT_ABORT)
            app_attach_abort(a);
        return;
    }
    if (!app_engine_running(a))
        return; /* the engine ended while the question was up */
    if ((p == PROMPT_STOP && (key == 'y' || key == 'Y')) || (p == PROMPT_QUIT && key == 's')) {
        if (engine_client_stop(a->client, &error) != 0) {
            log_problem(a, "stop not sent", error);
            return;
        }
        if (p == PROMPT_QUIT) {
            /* It saves and exits on its own; closing the pipes does not interrupt that. */
            engine_client_detach(a->client);
            a->quit = true;
        }
    } else if (p == PROMPT_ABORT && (key == 'y' || key == 'Y')) {
        if (engine_client_abort(a->client, engine_client_now(), &error) != 0)
            log_problem(a, "abort not sent (SIGTERM follows)", error);
    } else if (p == PROMPT_QUIT && key == 'l') {
        engine_client_detach(a->client);
        a->quit = true;
    }
}

static void on_key(app *a, int key)
{
    if (key == KEY_RESIZE)
        return; /* only a redraw */
    if (a->notice) {
        free(a->notice);
        a->notice = NULL;
        a->notice_title = NULL;
        return;
    }
    app_set_message(a, NULL);
    if (a->prompt != PROMPT_NONE) {
        answer(a, key);
        return;
    }
    if (a->find.open) {
        app_find_key(a, key);
        return;
    }
    if (a->files.mode != FILES_CLOSED) {
        app_files_key(a, key);
        return;
    }
    if (a->editing) {
        app_edit_key(a, key);
        return;
    }
    if (a->picking) {
        app_pick_key(a, key);
        return;
    }
    const key_binding *b = keys_find(key);
    if (b)
        app_do(a, b->action);
}

/* Copies the log lines the run state gained since the last call into the scrollback, each with its time
 * and a level prefix so the levels read without colour. */
static void sync_log(app *a)
{
    const run_log *log = &a->run.log;
    static const char *const prefix[] = {"debug: ", "", "warning: ", "error: "};
    static const sb_level level[] = {SB_DEBUG, SB_INFO, SB_WARNING, SB_ERROR};
    uint64_t oldest = log->total - log->count;
    if (a->log_pushed < oldest)
        a->log_pushed = oldest;
    for (; a->log_pushed < log->total; a->log_pushed++) {
        const run_log_entry *e = run_state_log_at(&a->run, (size_t)(a->log_pushed - oldest));
        if (!e)
            break;
        char stamp[16] = "";
        if (e->time > 0) {
            time_t t = (time_t)e->time;
            struct tm tm;
            if (localtime_r(&t, &tm))
                strftime(stamp, sizeof stamp, "%H:%M:%S ", &tm);
        }
        int lv = e->level >= SDT_LOG_DEBUG && e->level <= SDT_LOG_ERROR ? (int)e->level : SDT_LOG_INFO;
        char *text = sdt_format("%s%s%s", stamp, prefix[lv], e->text ? e->text : "");
        if (text)
            sb_push(&a->log, level[lv], e->time, text);
        free(text);
    }
}

/* Reads what the engine wrote (or the attached run's journal), reaps it when it ended, escalates an
 * abort. */
static void service_engine(app *a)
{
    if (a->attached) {
        app_attach_service(a);
        if (!app_attached_running(a) && prompt_about_run(a->prompt))
            a->prompt = PROMPT_NONE;
        if (a->run.n_samples > 0 && a->sample >= (int)a->run.n_samples)
            a->sample = (int)a->run.n_samples - 1;
        sync_log(a);
        return;
    }
    if (!a->client)
        return;
    char *error = NULL;
    if (engine_client_pump(a->client, run_state_on_line, &a->run, &error) < 0)
        log_problem(a, "reading the engine", error);
    if (engine_client_tick(a->client, engine_client_now()) == ENGINE_CLIENT_EXITED && !a->run.engine_exited) {
        engine_exit status;
        if (engine_client_exit(a->client, &status))
            run_state_engine_exited(&a->run, &status);
        if (prompt_about_run(a->prompt))
            a->prompt = PROMPT_NONE;
    }
    if (a->run.n_samples > 0 && a->sample >= (int)a->run.n_samples)
        a->sample = (int)a->run.n_samples - 1;
    sync_log(a);
}

/* The loop proper, with SIGWINCH blocked; during_wait is the mask to wait with (SIGWINCH open). */
static int event_loop_blocked(app *a, const sigset_t *during_wait_mask)
{
    nodelay(stdscr, TRUE);
    /* A run of this config that another sdtune left training is shown at once. */
    if (app_attach_if_live(a))
        service_engine(a);
    while (!a->quit) {
        draw_screen(a);
        struct pollfd fds[3] = {{.fd = STDIN_FILENO, .events = POLLIN}};
        int n = 1, engine_fds[2] = {-1, -1};
        if (a->client && engine_client_fds(a->client, engine_fds) > 0)
            for (int i = 0; i < 2; i++)
                if (engine_fds[i] >= 0)
                    fds[n++] = (struct pollfd){.fd = engine_fds[i], .events = POLLIN};
        /* Ticks while a client exists (a detached engine is still reaped) or an attached run lives (its
         * journal is read on the tick); blocks when idle. */
        bool ticking = (a->client && !(a->have_run && a->run.engine_exited)) || app_attached_running(a);
        bool more = a->attached && attached_run_has_more(a->attached); /* a long journal being replayed */
        /* SIGWINCH is blocked except inside ppoll, so a resize that lands while drawing wakes the next
         * wait instead of being noticed only at the next key. */
        struct timespec tick = {0, more ? 0 : 100 * 1000 * 1000};
        int ready = ppoll(fds, (nfds_t)n, more || ticking ? &tick : NULL, during_wait_mask);
        if (ready < 0 && errno != EINTR)
            return -1;
        service_engine(a);
        bool input_gone = ready > 0 && (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL));
        int got = 0;
        for (int key; (key = getch()) != ERR; got++)
            on_key(a, key);
        if (input_gone && got == 0)
            return -1;
    }
    return 0;
}

/* Runs the loop with SIGWINCH open only while it waits. */
static int event_loop(app *a)
{
    sigset_t winch, outside, during_wait;
    sigemptyset(&winch);
    sigaddset(&winch, SIGWINCH);
    sigprocmask(SIG_BLOCK, &winch, &outside);
    during_wait = outside;
    sigdelset(&during_wait, SIGWINCH);
    int rc = event_loop_blocked(a, &during_wait);
    sigprocmask(SIG_SETMASK, &outside, NULL);
    return rc;
}

int app_run(app *a)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "sdtune: the terminal UI needs a terminal on stdin and stdout\n");
        return -1;
    }
    /* A command written to an engine that died is then an EPIPE error, not a signal that kills the UI. */
    signal(SIGPIPE, SIG_IGN);
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
        rc = event_loop(a);
    }
    /* A lost terminal (a dropped SSH session) leaves the engine training, as a hangup would. */
    if (rc != 0 && app_engine_running(a))
        engine_client_detach(a->client);
    endwin();
    delscreen(screen);
    if (rc != 0)
        fprintf(stderr, "sdtune: lost the terminal\n");
    return rc;
}
