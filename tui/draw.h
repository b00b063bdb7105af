/* Drawing the config view (and the parts the run view shares): title bar, section list, settings form, help
 * line, key bar, and the help overlay (help.c). Drawing also settles the scroll positions for the current
 * terminal size. */
#ifndef SDTUNE_TUI_DRAW_H
#define SDTUNE_TUI_DRAW_H

#include "app.h"

/* The smallest terminal the view is drawn in; smaller ones get a message. */
#define DRAW_MIN_COLS 50
#define DRAW_MIN_ROWS 12

/* Picks the attributes: colour pairs when the terminal has colours and NO_COLOR is not set. */
void draw_init_theme(app *a);

/* Redraws the whole screen (curses sends only what changed). */
void draw_screen(app *a);

/* A box with a title on its top border (highlighted when focused) and info at the right of it (NULL for
 * none). Used by draw.c and help.c. */
void draw_box(const app *a, int y, int x, int h, int w, const char *title, bool focused, const char *info);

/* The help overlay: every key from the key table, then the problems not tied to a setting. */
void help_draw(app *a);

/* A line editor in width columns at (row, x): the visible part of the text underlined, the cursor cell
 * reversed; secret: one mark per character. */
void draw_line_edit(const app *a, line_edit *e, int row, int x, int width, bool secret);

/* The open / save-as overlay (draw_files.c): the path line being edited, the recent files, a question. */
void files_draw(app *a, int width, int height);

/* The key bar of the current view: F-keys as digits ("5Start"), letters as they are ("sSample", "oOpen"). */
void draw_key_bar(const app *a, int y, int width);
/* The prompt line: a question being asked, else the message of the last action. */
void draw_prompt_line(const app *a, int y, int width);
/* The search (draw_find.c): the search line over the prompt line; the query's words marked in a key of
 * the form drawn at (y, x) in cols columns with attributes base; the log's last search hit marked on one
 * of its rows drawn at (y, x). */
void draw_find_line(app *a, int y, int width);
void draw_find_key_marks(const app *a, int setting, int y, int x, int cols, attr_t base);
void draw_find_log_mark(const app *a, int y, int x, const sb_row *row, int cols);
/* The run view (draw_run.c): everything above the prompt line and the key bar. */
void draw_run_view(app *a, int width, int height);
/* The engine's state in a few words for the title bars: "idle", "training", "exited", ... */
const char *draw_engine_word(const app *a);

#endif
