/* Following a growing file of lines, as `tail -F` does: the engine's journal
 * (`<output_dir>/<output_name>.events.jsonl`, docs/protocol.md) read while the engine appends to it.
 *
 * Each call reads what was appended since the last one and hands every whole line to a callback of the
 * engine client's shape (engine_line_fn, stream ENGINE_STREAM_EVENTS), so run_state_on_line consumes a
 * journal exactly as it consumes the engine's stdout. A last line without its '\n' is kept until the
 * newline arrives (the engine writes each line with one write, so a partial line is one being written). A
 * file that is missing is not an error: it is opened once it exists. A file replaced by another (a new
 * inode at the path) or truncated below what was read is read again from its start, and the call says so.
 * Reads of a regular file never wait on the writer, so a call never blocks.
 *
 * No curses, no global state, no printing. */
#ifndef SDTUNE_TUI_JOURNAL_FOLLOW_H
#define SDTUNE_TUI_JOURNAL_FOLLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "run/engine_client.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JOURNAL_FOLLOW_MAX_READ_DEFAULT (4u << 20) /* bytes read by one call at most */

typedef struct journal_follow_options {
    uint64_t offset; /* where to start reading the file the first time it is opened (a line's start) */
    size_t max_line; /* longest line delivered; 0 = ENGINE_CLIENT_MAX_LINE_DEFAULT (longer: cut, truncated) */
    size_t max_read; /* bytes one call reads at most; 0 = JOURNAL_FOLLOW_MAX_READ_DEFAULT */
} journal_follow_options;

/* What one journal_follow_read found besides the lines. */
typedef struct journal_follow_status {
    bool present;   /* the file exists and is open */
    bool restarted; /* it was replaced or truncated: the lines delivered now are from its start again */
    bool more;      /* the call stopped at max_read: more is there to read now */
} journal_follow_status;

typedef struct journal_follow journal_follow;

/* A follower of path (copied); options may be NULL. The file need not exist yet. Returns 0, or -1 with
 * *error when out of memory. */
int journal_follow_open(const char *path, const journal_follow_options *options, journal_follow **out,
                        char **error);

/* Reads what was appended and calls on_line for each whole line, in order. status may be NULL. Returns
 * the number of lines delivered, or -1 with *error when the file cannot be opened or read (for another
 * reason than not existing); a later call tries again. */
int journal_follow_read(journal_follow *j, engine_line_fn on_line, void *ctx, journal_follow_status *status,
                        char **error);

/* The offset just past the last whole line delivered (where a partial line starts). */
uint64_t journal_follow_offset(const journal_follow *j);
const char *journal_follow_path(const journal_follow *j);

void journal_follow_free(journal_follow *j);

#ifdef __cplusplus
}
#endif
#endif
