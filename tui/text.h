/* Width-aware text output for ncursesw: UTF-8 (or whatever the locale uses) strings measured in terminal
 * columns, clipped with a `~` when they do not fit, and word-wrapped for the help overlay. Bytes that do
 * not decode and control characters are shown as `?`, so a config value can never move the cursor. */
#ifndef SDTUNE_TUI_TEXT_H
#define SDTUNE_TUI_TEXT_H

#include <stddef.h>

/* Columns s takes on screen. */
int text_width(const char *s);
int text_width_n(const char *s, size_t len);

/* Draws at most len bytes of s at (y, x) in at most cols columns, with the current attributes; when the
 * text is wider, the last column shows `~`. Returns the columns used. */
int text_put_n(int y, int x, const char *s, size_t len, int cols);
int text_put(int y, int x, const char *s, int cols);

/* Spaces over cols columns from (y, x), with the current attributes. */
void text_fill(int y, int x, int cols);

/* One line of s word-wrapped to cols columns: returns the bytes to draw and sets *next to where the next
 * line starts (spaces at the break skipped; at the terminating NUL when s is done). */
size_t text_wrap(const char *s, int cols, const char **next);

/* Lines s takes word-wrapped to cols columns, its lines after the first indented by hang columns. */
int text_wrap_count(const char *s, int cols, int hang);

#endif
