/* The state of the config browser, and its event loop.
 *
 * Everything the UI knows lives in one `app` passed around; nothing else is global but what ncurses
 * holds. The config and its diagnostics belong to the caller and are only read. */
#ifndef SDTUNE_TUI_APP_H
#define SDTUNE_TUI_APP_H

#include <curses.h>
#include <stdbool.h>
#include <stddef.h>

#include "keys.h"
#include "sdtune/config.h"
#include "sdtune/diag.h"
#include "sdtune/schema.h"

typedef enum focus { FOCUS_SECTIONS, FOCUS_FORM } focus;

/* The characters that differ between a UTF-8 terminal and plain ASCII. */
typedef struct glyphs {
    const char *selected, *error, *warning, *secret, *sep;
    const char *hline, *vline, *top_left, *top_right, *bottom_left, *bottom_right;
} glyphs;

/* Attributes of the things drawn, with colour when the terminal has it and NO_COLOR is not set. */
typedef struct theme {
    bool color;
    attr_t error, warning, changed, bar_key, bar_label, bar_off, title, title_problem;
} theme;

/* Where the cursor and the first visible row of one section's form are. */
typedef struct form_pos {
    int cursor, top;
} form_pos;

typedef struct app {
    const char *path; /* the config file as given */
    const char *name; /* its last path component (points into path) */
    const sdt_config *cfg;
    const sdt_diag_list *diags;

    /* Derived once from the schema, the config and the diagnostics. */
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
} app;

/* Fills a from the config and its diagnostics (both must outlive a). utf8: whether the locale's
 * character set is UTF-8 (else ASCII glyphs are used). Returns -1 when out of memory; app_free is
 * safe to call either way. */
int app_init(app *a, const char *path, const sdt_config *cfg, const sdt_diag_list *diags, bool utf8);
void app_free(app *a);

/* Runs the UI on the terminal until the user quits. Returns 0, or -1 (with a message on stderr) when
 * the terminal cannot be used. */
int app_run(app *a);

/* Applies one action of the key table to the view state. */
void app_do(app *a, action act);

/* The first diagnostic about setting (errors before warnings), and how many there are; NULL when none. */
const sdt_diag *app_setting_diag(const app *a, int setting, int *count);

#endif
