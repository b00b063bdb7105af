/* The UI's own settings file, $XDG_CONFIG_HOME/sdtune/tui.toml (not the training config), and choosing the
 * theme from the command line, that file, or the default. Curses-free. The file today knows one key:
 *
 *   theme = "light"     # a built-in theme, a theme in $XDG_CONFIG_HOME/sdtune/themes, or a .toml path
 */
#ifndef SDTUNE_TUI_UI_SETTINGS_H
#define SDTUNE_TUI_UI_SETTINGS_H

#include "theme_file.h"

typedef struct ui_settings {
    char *theme; /* NULL: not set */
} ui_settings;

/* Reads the settings file at path; a missing file is no settings (0). Keys it does not know and values
 * of the wrong type are skipped, each with a line in *warnings (caller frees; NULL when none). Returns -1
 * with *error naming the file (and line) when it cannot be read or is not TOML. */
int ui_settings_read(const char *path, ui_settings *settings, char **warnings, char **error);
void ui_settings_free(ui_settings *settings);

/* The theme to draw with: option (--theme; NULL when not given) must load, else -1 with *error. Without
 * it, the settings file's theme, else the default. Problems with the settings file or the theme it names
 * are not fatal: the default theme is used and *message (caller frees) says why. */
int ui_choose_theme(const char *option, theme_spec *spec, char **message, char **error);

#endif
