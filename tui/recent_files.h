/* The recent-files list: the configs opened or saved in the UI, newest first, as absolute paths. Stored as
 * one path per line in $XDG_STATE_HOME/sdtune/recent (tui/xdg.h), written atomically. Curses-free
 * (tests/tui/test_recent_files.c).
 *
 * Lines that are empty or not absolute paths are skipped when the file is read. Paths that no longer
 * exist stay in the file (a removed drive may come back) and are left out only where the list is shown
 * (recent_files_existing). */
#ifndef SDTUNE_TUI_RECENT_FILES_H
#define SDTUNE_TUI_RECENT_FILES_H

#include <stddef.h>

/* The list keeps at most this many paths; adding more drops the oldest. */
#define RECENT_FILES_MAX 20

typedef struct recent_files {
    char *paths[RECENT_FILES_MAX]; /* owned, newest first */
    size_t count;
} recent_files;

/* The list's file, its folder created (NULL with *error when that fails). Caller frees. */
char *recent_files_path(char **error);

/* Reads the list from file; a missing file is an empty list. Returns 0, or -1 with *error (caller frees)
 * when it cannot be read (the list is then empty). */
int recent_files_load(recent_files *r, const char *file, char **error);
/* Puts path first, removing an earlier copy of it; the oldest beyond RECENT_FILES_MAX goes. -1 when out of
 * memory (the list unchanged). */
int recent_files_add(recent_files *r, const char *path);
/* Writes the list to file atomically. Returns 0, or -1 with *error (caller frees). */
int recent_files_save(const recent_files *r, const char *file, char **error);
/* Drops from r the paths that no longer exist, for showing the list. */
void recent_files_existing(recent_files *r);
void recent_files_free(recent_files *r);

/* Records path (made absolute; it must exist) at the top of the list in the XDG state folder: load, add,
 * save. Returns 0, or -1 with *error (caller frees) naming what failed. */
int recent_files_record(const char *path, char **error);

#endif
