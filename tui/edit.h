/* The one-line editor of a setting's value, and the field logic that applies an
 * edited text to a config. Curses-free, so tests/tui/test_edit.c unit-tests it;
 * app.c maps keys onto these calls and draw.c puts the visible part on screen.
 *
 * The text is UTF-8; the cursor is a byte offset that always sits on a
 * character boundary once a whole character has been inserted (the terminal
 * delivers a character's bytes one getch at a time, each inserted in turn).
 * Columns count characters: a wide (CJK) character counts as one column here.
 */
#ifndef SDTUNE_TUI_EDIT_H
#define SDTUNE_TUI_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "sdtune/config.h"

typedef struct line_edit {
    char *text;    /* NUL-terminated, owned */
    size_t len;    /* bytes of text */
    size_t cap;    /* bytes allocated */
    size_t cursor; /* byte offset into text, 0..len */
    size_t scroll; /* the first visible character (horizontal scrolling) */
} line_edit;

/* Starts editing a copy of text with the cursor at its end. -1 when out of
 * memory. */
int line_edit_init(line_edit *e, const char *text);
void line_edit_free(line_edit *e);

/* Inserts bytes at the cursor and moves the cursor after them. -1 when out of
 * memory (text unchanged). */
int line_edit_insert(line_edit *e, const char *bytes, size_t n);
void line_edit_left(line_edit *e);  /* one character back */
void line_edit_right(line_edit *e); /* one character on */
void line_edit_home(line_edit *e);
void line_edit_end(line_edit *e);
void line_edit_backspace(line_edit *e); /* deletes the character before the cursor */
void line_edit_delete(line_edit *e);    /* deletes the character at the cursor */
void line_edit_clear(line_edit *e);     /* Ctrl-U: the whole line */

/* False while the bytes before the cursor end in the middle of a character (more bytes are to come). */
bool line_edit_char_complete(const line_edit *e);

/* Characters (not bytes) in the text, and before the cursor. */
size_t line_edit_chars(const line_edit *e);
size_t line_edit_cursor_col(const line_edit *e);

/* Scrolls so the cursor shows in a field of width columns (>= 1), leaving room
 * for it after the last character; returns the byte offset of the first visible
 * character and sets *cursor_x to the cursor's column in the field. */
size_t line_edit_view(line_edit *e, int width, int *cursor_x);

/* Applies text to setting of cfg as the user typed it: parsed
 * (sdt_value_parse_text), checked against the schema's range, enum values and
 * list length (sdt_value_check), then set. Returns 0, or -1 with *error (caller
 * frees) saying what is wrong; the config is then unchanged. */
int field_apply(sdt_config *cfg, int setting, const char *text, char **error);

#endif
