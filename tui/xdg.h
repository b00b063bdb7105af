/* Where the UI keeps its own files, by the XDG base directory specification: settings (the theme) under
 * $XDG_CONFIG_HOME/sdtune (default ~/.config/sdtune), state (the recent-files list) under
 * $XDG_STATE_HOME/sdtune (default ~/.local/state/sdtune). Curses-free; tests set the variables. */
#ifndef SDTUNE_TUI_XDG_H
#define SDTUNE_TUI_XDG_H

typedef enum xdg_kind { XDG_CONFIG, XDG_STATE } xdg_kind;

/* The sdtune folder of kind (not created). A variable that is unset, empty or not an absolute path is
 * ignored, as the specification says. Returns a string the caller frees, or NULL with *error (caller
 * frees) when neither the variable nor $HOME gives an absolute path, or when out of memory. */
char *xdg_dir(xdg_kind kind, char **error);

/* The same folder, created with its parents (mkdir -p). NULL with *error naming the folder when it cannot
 * be made. */
char *xdg_dir_make(xdg_kind kind, char **error);

#endif
