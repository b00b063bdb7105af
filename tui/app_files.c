/* Opening another config and saving this one under another name (see app.h): the overlay's keys, its
 * questions (unsaved changes, overwrite), the recent-files list and Tab completion of paths. Drawing is
 * in draw_files.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "sdtune/strutil.h"

/* "~/x" -> "$HOME/x" for the file system, as the engine reads paths; other text unchanged. Caller
 * frees. */
static char *expand_home(const char *path)
{
    const char *home = getenv("HOME");
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') && home && home[0])
        return sdt_format("%s%s", home, path + 1);
    return sdt_strdup(path);
}

char *app_files_record(app *a)
{
    char *error = NULL;
    if (recent_files_record(a->path, &error) != 0)
        return error ? error : sdt_format("unknown error");
    return NULL;
}

void app_files_close(app *a)
{
    files_state *f = &a->files;
    line_edit_free(&f->line);
    recent_files_free(&f->recent);
    free(f->target);
    memset(f, 0, sizeof *f);
    f->selected = -1;
}

/* The folder of the current config, absolute and ending in '/': where the open line starts. */
static char *config_folder(const app *a)
{
    char *absolute = realpath(a->path, NULL);
    if (absolute) {
        const char *slash = strrchr(absolute, '/');
        char *folder = sdt_format("%.*s/", (int)(slash - absolute), absolute);
        free(absolute);
        return folder;
    }
    char cwd[PATH_MAX];
    return sdt_format("%s/", getcwd(cwd, sizeof cwd) ? cwd : "");
}

void app_files_begin(app *a, files_mode mode)
{
    files_state *f = &a->files;
    app_files_close(a);
    a->help_open = false;
    char *start = mode == FILES_OPEN ? config_folder(a) : sdt_strdup(a->path);
    if (!start || line_edit_init(&f->line, start) != 0) {
        free(start);
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    free(start);
    if (mode == FILES_OPEN) {
        char *error = NULL, *file = recent_files_path(&error);
        if (file && recent_files_load(&f->recent, file, &error) == 0)
            recent_files_existing(&f->recent);
        else
            app_set_message(a, sdt_format("No recent files: %s", error ? error : "out of memory"));
        free(error);
        free(file);
    }
    f->mode = mode;
}

bool app_files_complete(app *a, line_edit *e)
{
    char *before = sdt_format("%.*s", (int)e->cursor, e->text);
    path_matches m;
    if (!before || path_complete(before, NULL, &m) != 0) {
        free(before);
        app_set_message(a, sdt_format("out of memory"));
        return false;
    }
    /* The completion always extends what was typed (path_complete.h). */
    size_t had = strlen(before), now = strlen(m.completed);
    bool added = now > had && line_edit_insert(e, m.completed + had, now - had) == 0;
    if (m.total == 0) {
        app_set_message(a, sdt_format("No file or folder starts with %s", before[0] ? before : "that"));
    } else if (m.total > 1) {
        sdt_buf buf;
        sdt_buf_init(&buf);
        sdt_buf_printf(&buf, "%zu matches:", m.total);
        for (size_t i = 0; i < m.count; i++)
            sdt_buf_printf(&buf, "  %s", m.names[i]);
        if (m.total > m.count)
            sdt_buf_printf(&buf, "  (%zu more)", m.total - m.count);
        app_set_message(a, sdt_buf_take(&buf));
    }
    path_matches_free(&m);
    free(before);
    return added;
}

/* Asks question about path inside the overlay; the next key answers it. */
static void ask(app *a, files_question question, const char *path)
{
    free(a->files.target);
    a->files.target = sdt_strdup(path);
    a->files.question = a->files.target ? question : FILES_ASK_NONE;
    if (!a->files.target)
        app_set_message(a, sdt_format("out of memory"));
}

/* The notice box for a file that did not load: every diagnostic, with its file, line and column. */
static void show_load_failure(app *a, const char *path, const sdt_diag_list *diags)
{
    sdt_buf buf;
    sdt_buf_init(&buf);
    sdt_buf_printf(&buf, "Cannot open %s; the config on screen stays as it was.\n", path);
    for (size_t i = 0; i < diags->count; i++) {
        const sdt_diag *d = &diags->items[i];
        const char *mark = d->severity == SDT_SEV_ERROR ? a->g.error : a->g.warning;
        if (d->file && d->file[0] && d->line > 0)
            sdt_buf_printf(&buf, "%s %s:%d:%d: %s\n", mark, d->file, d->line, d->col, d->message);
        else if (d->file && d->file[0])
            sdt_buf_printf(&buf, "%s %s: %s\n", mark, d->file, d->message);
        else
            sdt_buf_printf(&buf, "%s %s\n", mark, d->message);
    }
    if (diags->count == 0)
        sdt_buf_printf(&buf, "%s it could not be read\n", a->g.error);
    free(a->notice);
    a->notice = sdt_buf_take(&buf);
    a->notice_title = "Cannot open";
}

/* Loads path and, when it parses, makes it the app's config. confirmed: unsaved changes may go. */
static void open_file(app *a, const char *path, bool confirmed)
{
    if (a->dirty && !confirmed) {
        ask(a, FILES_ASK_UNSAVED, path);
        return;
    }
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    if (!cfg) {
        show_load_failure(a, path, &diags);
        sdt_diag_list_free(&diags);
        return;
    }
    bool complete = app_replace_config(a, path, cfg, &diags) == 0;
    sdt_diag_list_free(&diags);
    app_files_close(a);
    a->view = VIEW_CONFIG;
    size_t errors = sdt_diag_count(a->diags, SDT_SEV_ERROR);
    char *why = app_files_record(a);
    sdt_buf buf;
    sdt_buf_init(&buf);
    sdt_buf_printf(&buf, "Opened %s", a->path);
    if (!complete)
        sdt_buf_puts(&buf, " (out of memory: its problems are not all listed)");
    else if (errors)
        sdt_buf_printf(&buf, " (%zu error%s: the sections marked %s)", errors, errors == 1 ? "" : "s",
                       a->g.error);
    if (app_engine_running(a))
        sdt_buf_puts(&buf, "; the run goes on (F4 shows it)");
    if (why)
        sdt_buf_printf(&buf, "; not in the recent files: %s", why);
    app_set_message(a, sdt_buf_take(&buf));
    free(why);
}

static bool same_file(const char *x, const char *y)
{
    struct stat sx, sy;
    return stat(x, &sx) == 0 && stat(y, &sy) == 0 && sx.st_dev == sy.st_dev && sx.st_ino == sy.st_ino;
}

/* Saves the config as path, which becomes the app's file. confirmed: an existing file may be replaced. */
static void save_as(app *a, const char *path, bool confirmed)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            app_set_message(a, sdt_format("%s is a folder: add a file name to it", path));
            return;
        }
        if (!confirmed && !same_file(path, a->path)) {
            ask(a, FILES_ASK_OVERWRITE, path);
            return;
        }
    }
    char *old = sdt_strdup(a->path);
    if (!old || app_set_path(a, path) != 0) {
        free(old);
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    if (app_save(a)) /* it records the new name in the recent files and says so */
        app_files_close(a);
    else if (app_set_path(a, old) != 0) /* the message says why it was not saved */
        app_set_message(a, sdt_format("out of memory: the config's file is now %s", a->path));
    free(old);
}

/* Enter: opens or saves as the typed path. */
static void submit(app *a)
{
    const char *text = a->files.line.text;
    if (!text[0]) {
        app_set_message(a, sdt_format("Type a path first (Tab completes it)"));
        return;
    }
    char *path = expand_home(text);
    if (!path)
        app_set_message(a, sdt_format("out of memory"));
    else if (a->files.mode == FILES_OPEN)
        open_file(a, path, false);
    else
        save_as(a, path, false);
    free(path);
}

static void answer(app *a, int key)
{
    files_state *f = &a->files;
    files_question question = f->question;
    char *path = f->target;
    f->question = FILES_ASK_NONE;
    f->target = NULL;
    bool yes = key == 'y' || key == 'Y', no = key == 'n' || key == 'N';
    if (question == FILES_ASK_OVERWRITE) {
        if (yes)
            save_as(a, path, true);
        else
            app_set_message(a, sdt_format("Not saved: %s stays as it was", path));
    } else if (question == FILES_ASK_UNSAVED && (yes || no)) {
        if (no || app_save(a))
            open_file(a, path, true);
    }
    free(path);
}

/* Highlights recent file i (-1: none) and puts it on the path line. */
static void select_recent(app *a, int i)
{
    files_state *f = &a->files;
    int last = (int)f->recent.count - 1;
    i = i < -1 ? -1 : i > last ? last : i;
    if (i == f->selected)
        return;
    f->selected = i;
    if (i < 0)
        return;
    line_edit line;
    if (line_edit_init(&line, f->recent.paths[i]) != 0) {
        app_set_message(a, sdt_format("out of memory"));
        return;
    }
    line_edit_free(&f->line);
    f->line = line;
}

/* A key while the overlay is open. */
void app_files_key(app *a, int key)
{
    files_state *f = &a->files;
    if (f->question != FILES_ASK_NONE) {
        answer(a, key);
        return;
    }
    int page = f->rows > 1 ? f->rows - 1 : 1;
    switch (key) {
    case 27: app_files_close(a); return;
    case '\n':
    case '\r':
    case KEY_ENTER: submit(a); return;
    case '\t':
        app_files_complete(a, &f->line);
        f->selected = -1;
        return;
    case KEY_UP: select_recent(a, f->selected - 1); return;
    case KEY_DOWN: select_recent(a, f->selected + 1); return;
    case KEY_PPAGE: select_recent(a, f->selected - page); return;
    case KEY_NPAGE: select_recent(a, f->selected + page); return;
    default:
        if (app_line_key(a, &f->line, key) == LINE_KEY_CHANGED)
            f->selected = -1; /* the line is now what was typed */
    }
}
