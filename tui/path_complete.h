/* Completion of a typed path against the file system, as a shell's Tab does. Curses-free; the line
 * editors of path settings and of the open / save-as overlay use it (tests/tui/test_path_complete.c).
 *
 * The text is split at its last '/': the part up to it names the folder to look in (a leading "~/" is
 * $HOME for the lookup, the completed text keeps "~/"; no folder part is the base folder), the rest is
 * the start of a name. Entries whose names start with it match; hidden ones (".x") only when the typed
 * name starts with '.'; "." and ".." never. */
#ifndef SDTUNE_TUI_PATH_COMPLETE_H
#define SDTUNE_TUI_PATH_COMPLETE_H

#include <stddef.h>

/* At most this many matches are listed (all of them count for the completion). */
#define PATH_COMPLETE_MAX_LISTED 200

typedef struct path_matches {
    char **names;    /* matching entry names, sorted (bytewise); folders end in '/' */
    size_t count;    /* names listed: at most PATH_COMPLETE_MAX_LISTED */
    size_t total;    /* every match, also those not listed */
    char *completed; /* the text with the matches' longest common prefix filled in; a single folder
                      * match gets its '/'. Equal to the text when nothing can be added. */
} path_matches;

/* Completes text. base_dir: the folder a relative text is looked up in (NULL: the working folder).
 * A folder that is missing or unreadable has no matches (that is not an error). Returns 0, or -1 when
 * out of memory (*out is then empty). path_matches_free releases *out either way. */
int path_complete(const char *text, const char *base_dir, path_matches *out);
void path_matches_free(path_matches *m);

#endif
