/* The log pane's scrollback, without curses: a bounded ring of log lines and a view of it.
 *
 * Lines (a level, a time in seconds since the epoch, UTF-8 text) are pushed at the bottom; when the ring
 * is full the oldest line is dropped and counted. The view is measured in display rows: a line longer
 * than the pane's width wraps onto several rows (by display width, wcwidth, so the caller's locale must
 * be UTF-8 for wide characters to count as two columns). Follow mode keeps the newest line at the bottom
 * as lines arrive; scrolling up leaves it and scrolling back to the bottom (or End) enters it again.
 * Positions are kept as (line number, row within the line), so a resize keeps the same first line. */
#ifndef SDTUNE_TUI_SCROLLBACK_H
#define SDTUNE_TUI_SCROLLBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sb_level { SB_DEBUG, SB_INFO, SB_WARNING, SB_ERROR } sb_level;

typedef struct sb_line {
    sb_level level;
    double time; /* seconds since the epoch */
    char *text;  /* owned, NUL-terminated, no newline */
} sb_line;

typedef struct scrollback {
    sb_line *ring;
    size_t capacity;
    uint64_t first;   /* number of the oldest line held (lines are numbered from 0 as pushed) */
    size_t count;     /* lines held */
    uint64_t dropped; /* lines pushed out of the full ring */
    bool follow;
    uint64_t top_line; /* the first visible row, when not following: line number and wrapped row in it */
    int top_row;
    bool have_match;
    uint64_t match_line; /* the last search hit */
} scrollback;

/* One row of the view. text/len point into the line (valid until the next push). */
typedef struct sb_row {
    const char *text;
    size_t len;
    sb_level level;
    double time;
    uint64_t line;  /* the line's number */
    bool first_row; /* the line's first row (draw its time and level there) */
} sb_row;

/* capacity: lines kept (at least 1). Returns -1 when out of memory. Starts in follow mode. */
int sb_init(scrollback *sb, size_t capacity);
void sb_free(scrollback *sb);

/* Appends text as one line per '\n'-separated part (a trailing newline adds no empty line). Returns -1
 * when out of memory (nothing is then added). */
int sb_push(scrollback *sb, sb_level level, double time, const char *text);

/* The line with number `line`, or NULL when it is not held. */
const sb_line *sb_get(const scrollback *sb, uint64_t line);

/* Bytes of the first row of s (len bytes) at width columns: at least one character, a wide character
 * that does not fit moves to the next row. Invalid UTF-8 bytes and unprintable characters count as one
 * column each. *cols (may be NULL) gets the row's width. */
size_t sb_wrap(const char *s, size_t len, int width, int *cols);
/* Rows that text takes at width (an empty line takes one). */
int sb_line_rows(const char *text, int width);

/* Fills rows[0..n) with what a pane of `rows` x `width` shows; returns n (fewer than rows when the log is
 * shorter than the pane; then the rows are at the top). */
int sb_view(const scrollback *sb, int rows, int width, sb_row *out);

/* Scrolls by delta rows (negative: up, towards older lines) for a pane of rows x width. Reaching the
 * bottom enters follow mode; moving up leaves it. */
void sb_scroll(scrollback *sb, int delta, int rows, int width);
void sb_page(scrollback *sb, int pages, int rows, int width); /* by rows - 1 a page, so one row stays */
void sb_top(scrollback *sb);
void sb_bottom(scrollback *sb);

/* Searches for needle (ASCII case-insensitive) from the last hit, or from the first visible line when
 * there is none, forwards (newer) or backwards, wrapping around the ends. On a hit the view shows the hit
 * line at its top (or the last page when the line is near the bottom), follow mode is left, and the line
 * number is returned in *line (may be NULL). Returns 0, or -1 when no line holds needle (view unchanged). */
int sb_search(scrollback *sb, const char *needle, bool forward, int rows, int width, uint64_t *line);

#endif
