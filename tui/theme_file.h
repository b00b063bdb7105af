/* Colour themes of the UI, without curses: a theme file (TOML) parsed into a spec of colours and
 * attributes per role, and each role degraded to what the terminal can show (256 colours, 8, or none).
 *
 * A theme file has an optional `name = "..."` and one table per role:
 *
 *   [error]
 *   fg = "red"          # a colour name or a 256-colour index 0..255; "default": the terminal's own
 *   bg = "default"
 *   attrs = ["bold"]    # bold, dim, reverse, underline, italic
 *
 * A role the file leaves out keeps the default (dark) theme's style; a role it gives is exactly what it
 * says (a key left out of the table is the terminal's colour, or no attribute). Drawing (draw.c) turns
 * the degraded styles into curses pairs and attributes. */
#ifndef SDTUNE_TUI_THEME_FILE_H
#define SDTUNE_TUI_THEME_FILE_H

#include <stdbool.h>
#include <stddef.h>

/* What a theme colours. The order is the order of the colour pairs (role + 1). */
typedef enum theme_role {
    THEME_ERROR,         /* errors: inline, in counts, log lines, a failed run */
    THEME_WARNING,       /* warnings, likewise */
    THEME_CHANGED,       /* the * of a setting that differs from its default */
    THEME_BAR_KEY,       /* the key of a key-bar entry ("5") */
    THEME_BAR_LABEL,     /* its label ("Start") */
    THEME_BAR_OFF,       /* an entry not available now; later keys in the help */
    THEME_TITLE,         /* the title bar */
    THEME_TITLE_PROBLEM, /* the error count on the title bar */
    THEME_GOOD,          /* a run that ended well */
    THEME_DEBUG,         /* debug log lines */
    THEME_FOCUS,         /* the title of the focused box */
    THEME_SELECTED,      /* the cursor row, the selected section, the picked value */
    THEME_BORDER,        /* box borders */
    THEME_SPARKLINE,     /* the loss sparkline */
    THEME_GAUGE,         /* the filled part of the progress and memory bars */
    THEME_PROMPT,        /* a question on the prompt line */
    THEME_ROLE_COUNT
} theme_role;

/* Attribute flags of a style. */
enum {
    THEME_BOLD = 1u << 0,
    THEME_DIM = 1u << 1,
    THEME_REVERSE = 1u << 2,
    THEME_UNDERLINE = 1u << 3,
    THEME_ITALIC = 1u << 4,
};

/* Colours are palette indexes 0..255 (0..7 the basic colours, 8..15 their bright forms, then the xterm
 * 6x6x6 cube and grey ramp), or -1 for the terminal's default. */
typedef struct theme_style {
    int fg, bg;
    unsigned attrs;
} theme_style;

#define THEME_NAME_MAX 64

typedef struct theme_spec {
    char name[THEME_NAME_MAX];
    theme_style role[THEME_ROLE_COUNT];
} theme_spec;

/* The role's name in a theme file ("error", "bar_label", ...). */
const char *theme_role_name(theme_role role);

/* The default theme (dark): the same as themes/dark.toml. */
void theme_spec_default(theme_spec *spec);

/* Parses a theme file's text over the default theme. file names the file in messages. Returns 0, or -1
 * with *error (caller frees) naming the file, the line and the key: `light.toml:4: error.fg: unknown
 * colour 'rde' ...`. */
int theme_parse(const char *text, size_t len, const char *file, theme_spec *spec, char **error);

/* The style of role on a terminal with colors colours (256 or more, 16, 8; 0: no colour, as under
 * NO_COLOR). Indexes the terminal lacks become the nearest basic colour (a bright one its basic colour in
 * bold). Without colour only attributes remain, and the roles that must stand out get at least their
 * monochrome marks: errors bold, the title bar, the selection, key labels and questions reversed. */
theme_style theme_style_for(const theme_spec *spec, theme_role role, int colors);

/* The nearest of the 8 basic colours to a palette index 0..255 (0..15 give their basic colour). */
int theme_nearest_basic(int index);

/* The themes built into the program (the .toml files of themes/, embedded at build time): count, and the name
 * and text of each. */
size_t theme_builtin_count(void);
const char *theme_builtin_name(size_t i);
const char *theme_builtin_text(size_t i);

/* Loads a theme by what the user gave: a path (it has a '/' or ends in ".toml"), else a name looked up
 * first as $XDG_CONFIG_HOME/sdtune/themes/NAME.toml (a user's file overrides a built-in one), then among
 * the built-in themes. Returns 0, or -1 with *error naming the theme or the file and line. */
int theme_load(const char *name_or_path, theme_spec *spec, char **error);

#endif
