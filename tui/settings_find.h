/* Finding settings by a typed query, without curses: what `/` in the config view jumps through.
 *
 * The query is split into words at spaces; every word must occur (AND), case-insensitively (ASCII), with
 * `_` and a space counted as the same character, so "learning rate" and "learning_rate" both find the
 * setting learning_rate and a help text that says "learning rate". Settings whose key holds every word
 * come first, then those where the words are found in the key, the help or kohya's names together; each
 * group in schema order (the order of the sections and the form). */
#ifndef SDTUNE_TUI_SETTINGS_FIND_H
#define SDTUNE_TUI_SETTINGS_FIND_H

#include <stdbool.h>
#include <stddef.h>

#include "sdtune/schema.h"

/* Fills out (room for count indexes) with the settings of settings[0..count) that match query, best
 * first; returns how many. *key_matches (may be NULL) gets how many of them matched by their key alone.
 * A query of no words matches nothing. */
size_t settings_find(const sdt_setting *settings, size_t count, const char *query, int *out,
                     size_t *key_matches);

/* The first place in text[0..len) where needle[0..needle_len) occurs, compared ASCII case-insensitively;
 * with loose, `_` and a space also count as the same. NULL when it does not occur (or needle is empty).
 * The drawing code uses it to mark a match within a shown key or log row. */
const char *find_casefold(const char *text, size_t len, const char *needle, size_t needle_len, bool loose);

#endif
