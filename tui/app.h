/* The state of the UI (the config view and the run view), and its event loop.
 *
 * Everything the UI knows lives in one `app` passed around; nothing else is global but what ncurses
 * holds. The app owns the config it edits, its diagnostics (re-made by validating after every edit), the
 * engine client, the run's state and its log. */
#ifndef SDTUNE_TUI_APP_H
#define SDTUNE_TUI_APP_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>

#include "edit.h"
#include "keys.h"
#include "path_complete.h"
#include "recent_files.h"
#include "run/attached_run.h"
#include "run/engine_client.h"
#include "run/run_state.h"
#include "sdtune/config.h"
#include "sdtune/diag.h"
#include "sdtune/schema.h"
#include "theme_file.h"
#include "widgets/image_preview.h"
#include "widgets/scrollback.h"

typedef enum focus { FOCUS_SECTIONS, FOCUS_FORM } focus;
typedef enum view { VIEW_CONFIG, VIEW_RUN } view;
/* A question on the prompt line; keys answer it before the key table sees them. */
typedef enum prompt {
    PROMPT_NONE,
    PROMPT_STOP,
    PROMPT_ABORT,
    PROMPT_QUIT,
    PROMPT_SAVE,
    PROMPT_SAVE_START
} prompt;

/* The characters that differ between a UTF-8 terminal and plain ASCII. */
typedef struct glyphs {
    const char *selected, *error, *warning, *secret, *sep;
    const char *hline, *vline, *top_left, *top_right, *bottom_left, *bottom_right;
} glyphs;

/* Attributes of the things drawn, with colour when the terminal has it and NO_COLOR is not set: the
 * theme's spec (theme_file.h) made into curses attributes by draw_init_theme, one field per role. */
typedef struct theme {
    bool color;
    theme_spec spec; /* the chosen theme as its file says it (the default theme unless main sets one) */
    attr_t error, warning, changed, bar_key, bar_label, bar_off, title, title_problem;
    attr_t good, debug; /* a run that ended well; debug log lines */
    attr_t focus;       /* the focused box's title */
    attr_t selected;    /* the cursor row, the selected section or picked value */
    attr_t border, sparkline, gauge, prompt;
} theme;

/* The open / save-as overlay (app_files.c, draw_files.c): a path line with Tab completion and, when
 * opening, the recent files under it. A question inside it (overwrite? unsaved changes?) takes the keys
 * first. */
typedef enum files_mode { FILES_CLOSED, FILES_OPEN, FILES_SAVE_AS } files_mode;
typedef enum files_question { FILES_ASK_NONE, FILES_ASK_OVERWRITE, FILES_ASK_UNSAVED } files_question;
typedef struct files_state {
    files_mode mode;
    files_question question;
    char *target;        /* the path the question is about (owned) */
    line_edit line;      /* the typed path */
    recent_files recent; /* the recent files that still exist, newest first */
    int selected;        /* the highlighted recent file; -1: none (the path line as typed) */
    int top, rows;       /* the list's first visible entry and its rows as of the last draw */
} files_state;

/* Where the cursor and the first visible row of one section's form are. */
typedef struct form_pos {
    int cursor, top;
} form_pos;

/* The search line (`/`, F3) and the last searches, for n/N (app_find.c). */
typedef struct find_state {
    bool open;      /* the line is open: keys go to app_find_key */
    view in;        /* what it searches: the settings (VIEW_CONFIG) or the log (VIEW_RUN) */
    line_edit line; /* the query being typed */
    char *last[2];  /* per view: the last query kept with Enter, which n/N repeat; NULL: none */
    int *matches;   /* settings matching the query, best first (room for every setting) */
    size_t n_matches, current;
    /* Where the config view was when the line opened: Esc, or a query that matches nothing, goes back. */
    int saved_section, saved_list_top;
    focus saved_focus;
    form_pos saved_pos[SDT_SEC_COUNT];
} find_state;

typedef struct app {
    char *path;                 /* the config file as given or last opened / saved as (owned) */
    const char *name;           /* its last path component (points into path) */
    sdt_config *cfg;            /* owned */
    const sdt_diag_list *diags; /* &live_diags: what the config view shows and Start checks */
    sdt_diag_list live_diags;   /* the load's diagnostics still current, bad values, then validation */
    sdt_diag_list load_diags;   /* what loading the file found (syntax, unknown keys, bad values) */
    bool *edited;               /* per setting: edited since the load (its load diagnostics are stale) */
    /* Per setting: text the user committed that the setting's type or range refuses (the config keeps
     * its previous value), and why; NULL when none. Saving is refused while there is one. */
    char **bad_text, **bad_error;
    bool dirty; /* edits not saved yet */

    /* The field being edited (Enter on a text, number, path or list) or picked (an enum); the setting's
     * state before, restored by Esc. */
    bool editing, picking;
    int edit_setting;
    line_edit edit;
    int pick; /* the picker's highlighted enum value */
    int pick_top;
    char *undo_text; /* the shown value before the edit */
    bool undo_set, undo_edited;
    sdt_value undo_value;
    char *undo_bad, *undo_bad_error;

    /* Derived from the schema, the config and the diagnostics after every change. */
    size_t count;                 /* settings in the schema */
    int sec_start[SDT_SEC_COUNT]; /* index of the section's first setting (sections are consecutive runs) */
    int sec_len[SDT_SEC_COUNT];
    int sec_errors[SDT_SEC_COUNT]; /* diagnostics about the section's settings */
    int sec_warnings[SDT_SEC_COUNT];
    int file_errors, file_warnings; /* diagnostics about no setting (unknown keys, syntax) */
    char **value_text;              /* per setting: sdt_value_to_text of the effective value */
    char **default_text;            /* per setting: the same of its default */
    bool *changed;                  /* per setting: set and different from the default */

    glyphs g;
    theme theme;

    /* View state. */
    int section;
    focus focus;
    int list_top; /* first visible row of the section list */
    form_pos pos[SDT_SEC_COUNT];
    bool help_open;
    int help_top; /* first visible line of the help overlay */
    /* Page sizes as of the last draw, for PgUp/PgDn. */
    int list_rows, form_rows, help_rows;
    bool quit;
    bool utf8;
    find_state find;

    /* The run: at most one engine; client and run stay after it ended, until the next start. The run is
     * either the engine this UI started (client) or one another sdtune started, followed through its
     * journal (attached, app_attach.c); at most one of the two is set. run and log show either. */
    view view;
    prompt prompt;
    char *notice; /* a message box (e.g. why a start was refused); any key closes it; NULL: none */
    const char *notice_title; /* the box's title (static text); NULL: "Cannot start" */
    char *message;            /* one line above the key bar until the next key; NULL: none */
    engine_client *client;
    attached_run *attached;
    bool have_run;         /* run and log are initialised */
    char *run_config_name; /* the name of the config the run trains (the view may show another one) */
    run_state run;
    scrollback log;
    uint64_t log_pushed;    /* run.log.total already copied into log */
    int log_rows, log_cols; /* the log pane as of the last draw */
    int sample;             /* selected sample, 0 the newest */
    /* The preview of the selected sample, decoded once per path. */
    char *preview_path;
    bool have_preview;
    preview_image preview;
    char *preview_error;
    preview_cell *preview_cells; /* [preview_cols * preview_rows] mapped once per image, size and mode */
    int preview_cols, preview_rows, preview_mode;
    short *pair_of; /* [256 * 256] colour pair of (fg, bg) for previews; 0 not allocated yet */
    int next_pair;  /* the next free pair number */

    files_state files; /* the open / save-as overlay */
} app;

/* Fills a from the config, which the app owns from then on (app_free frees it, also when app_init fails),
 * and the diagnostics its load produced (copied); validates it. utf8: whether the locale's character set
 * is UTF-8 (else ASCII glyphs are used). Returns -1 when out of memory; app_free is safe to call either
 * way. */
int app_init(app *a, const char *path, sdt_config *cfg, const sdt_diag_list *load_diags, bool utf8);
void app_free(app *a);

/* Makes cfg (owned from then on, also on failure) the config the app edits, as loaded from path with
 * load_diags: the form starts over (first section, no edits, saved); the run, its log and the terminal
 * stay. Not while a field is being edited. Returns -1 when out of memory (the app then has an empty
 * diagnostics list but is still usable). */
int app_replace_config(app *a, const char *path, sdt_config *cfg, const sdt_diag_list *load_diags);
/* Names the config file the app edits from now on (copied; the title shows its last component). -1 when
 * out of memory (unchanged). */
int app_set_path(app *a, const char *path);

/* Runs the UI on the terminal until the user quits. Ignores SIGPIPE for the rest of the process (see
 * engine_client.h). Returns 0, or -1 (with a message on stderr) when the terminal cannot be used; an engine
 * still training is then detached, not killed. */
int app_run(app *a);

/* Applies one action of the key table to the view state. */
void app_do(app *a, action act);

/* True while an engine this UI started runs (not ended, not detached). */
bool app_engine_running(const app *a);

/* Forgets the run shown (its client or attachment, state, log and preview); an engine still running as our
 * child is killed, a detached or attached one is left alone. */
void app_clear_run(app *a);

/* Re-attaching (app_attach.c). Looks for a live run of the config's outputs (live_run.h) and, when there
 * is one and the UI has no live run of its own, follows it: the journal is replayed from the run's hello
 * and read as it grows. Returns true when attached. */
bool app_attach_if_live(app *a);
/* True while the attached run's engine lives. */
bool app_attached_running(const app *a);
/* Reads the attached run's journal and notices its end (the event loop calls it every tick). */
void app_attach_service(app *a);
/* The stop and abort answers for an attached run: signals (attached_run.h). */
void app_attach_stop(app *a);
void app_attach_abort(app *a);
/* The run view's engine line for an attached run (a new string); good and bad say how to colour it. */
char *app_attach_engine_line(const app *a, bool *good, bool *bad);

/* Shows text (owned; NULL: nothing) on the line above the key bar until the next key. */
void app_set_message(app *a, char *text);
/* Forgets the refused text held for setting. */
void app_clear_bad(app *a, int setting);

/* Editing (app_edit.c). Enter on the focused setting: a bool toggles, an enum opens the picker, anything
 * else the line editor; the keys while either is open go to app_edit_key or app_pick_key. */
void app_begin_edit(app *a);
void app_edit_key(app *a, int key);
/* The line editor's own keys (moving, deleting, typing) on e, shared by every line the UI edits. */
typedef enum line_key { LINE_KEY_IGNORED, LINE_KEY_MOVED, LINE_KEY_CHANGED } line_key;
line_key app_line_key(app *a, line_edit *e, int key);
void app_pick_key(app *a, int key);
/* Restores the focused setting's default (unsets it). */
void app_restore_default(app *a);
/* Saves the config to a->path atomically; false (with the reason as the message) when it did not. */
bool app_save(app *a);

/* Searching (app_find.c). app_find_open opens the search line for the current view; while it is open
 * the keys go to app_find_key. app_find_again repeats the view's last search (n forward, N backward). */
void app_find_open(app *a);
void app_find_key(app *a, int key);
void app_find_again(app *a, bool forward);
void app_find_free(app *a);
/* Files (app_files.c). Opens the overlay to open another config or to save this one elsewhere; keys go
 * to app_files_key while it is open (a->files.mode). */
void app_files_begin(app *a, files_mode mode);
void app_files_key(app *a, int key);
void app_files_close(app *a);
/* Puts a->path at the top of the recent-files list. NULL, or why it could not (caller frees). */
char *app_files_record(app *a);
/* Tab in a path's line editor: completes the text before the cursor (a relative path in the working
 * folder) and lists the choices on the message line when there are several. True when it added text. */
bool app_files_complete(app *a, line_edit *e);

/* Re-validates the config (after an edit): the diagnostics, the section counts and every shown value. */
void app_revalidate(app *a);

/* The first diagnostic about setting (errors before warnings), and how many there are; NULL when none. */
const sdt_diag *app_setting_diag(const app *a, int setting, int *count);

#endif
