/* Theme files (tui/theme_file.h) and the UI's settings file (tui/ui_settings.h): parsing, the messages
 * for bad files (file:line and key), roles left out, the shipped themes, the 256 -> 8 colour mapping and
 * the monochrome marks, finding a theme by name or path, and the settings file's fallbacks. Run from the
 * repository root (it reads the .toml files of themes/). */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdtune/atomic_file.h"
#include "theme_file.h"
#include "ui_settings.h"
#include "unit/check.h"

static int parse(const char *text, theme_spec *spec, char **error)
{
    *error = NULL;
    return theme_parse(text, strlen(text), "my.toml", spec, error);
}

/* Parsing text fails with a message that contains each of the expected parts. */
#define CHECK_BAD(t, text, part1, part2)                                                                     \
    do {                                                                                                     \
        theme_spec spec_;                                                                                    \
        char *error_ = NULL;                                                                                 \
        CHECK(t, parse((text), &spec_, &error_) == -1);                                                      \
        CHECK_STR_CONTAINS(t, error_, (part1));                                                              \
        CHECK_STR_CONTAINS(t, error_, (part2));                                                              \
        free(error_);                                                                                        \
    } while (0)

static bool same_style(theme_style a, theme_style b)
{
    return a.fg == b.fg && a.bg == b.bg && a.attrs == b.attrs;
}

static void parses_names_numbers_and_attrs(test_state *t)
{
    theme_spec spec;
    char *error = NULL;
    int rc = parse("name = \"mine\"\n"
                   "[error]\n"
                   "fg = \"bright-red\"\n"
                   "bg = 17\n"
                   "attrs = [\"bold\", \"underline\"]\n"
                   "[selected]\n"
                   "bg = \"blue\"\n",
                   &spec, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    CHECK(t, strcmp(spec.name, "mine") == 0);
    CHECK(t, same_style(spec.role[THEME_ERROR], (theme_style){9, 17, THEME_BOLD | THEME_UNDERLINE}));
    /* A role given is what it says: no fg is the default colour, no attrs is none. */
    CHECK(t, same_style(spec.role[THEME_SELECTED], (theme_style){-1, 4, 0}));
    /* A role left out keeps the default theme's. */
    theme_spec dark;
    theme_spec_default(&dark);
    CHECK(t, same_style(spec.role[THEME_WARNING], dark.role[THEME_WARNING]));
    CHECK(t, same_style(spec.role[THEME_BAR_LABEL], dark.role[THEME_BAR_LABEL]));

    /* Without a name the file's name is the theme's. */
    CHECK(t, theme_parse("", 0, "/some/where/ocean.toml", &spec, &error) == 0);
    CHECK(t, strcmp(spec.name, "ocean") == 0);
    CHECK(t, same_style(spec.role[THEME_ERROR], dark.role[THEME_ERROR]));
    CHECK(t, strcmp(theme_role_name(THEME_TITLE_PROBLEM), "title_problem") == 0);
}

static void bad_files_name_the_file_line_and_key(test_state *t)
{
    CHECK_BAD(t, "[error]\nfg = \"rde\"\n", "my.toml:2: error.fg: unknown colour 'rde'", "bright-black");
    CHECK_BAD(t, "\n\n[warning]\nbg = 256\n", "my.toml:4: warning.bg: colour 256 is out of range 0..255", "");
    CHECK_BAD(t, "[warning]\nbg = -1\n", "my.toml:2: warning.bg", "out of range");
    CHECK_BAD(t, "[error]\nfg = 1.5\n", "my.toml:2: error.fg: a colour is a name or a number", "float");
    CHECK_BAD(t, "[eror]\nfg = \"red\"\n", "my.toml:1: eror: unknown role; did you mean 'error'?", "");
    CHECK_BAD(t, "[zzzzzzzz]\n", "my.toml:1: zzzzzzzz: unknown role (roles: error,", "prompt)");
    CHECK_BAD(t, "[gauge]\nfg = 2\ncolour = 3\n", "my.toml:3: unknown key 'gauge.colour'",
              "fg, bg and attrs");
    CHECK_BAD(t, "[title]\nattrs = [\"bold\",\n \"blink\"]\n",
              "my.toml:3: title.attrs: unknown attribute 'blink'", "underline");
    CHECK_BAD(t, "[title]\nattrs = \"bold\"\n", "my.toml:2: title.attrs: a list of attributes", "string");
    CHECK_BAD(t, "error = \"red\"\n", "my.toml:1: error: a role is a table", "string");
    CHECK_BAD(t, "name = 3\n", "my.toml:1: name: a string", "integer");
    CHECK_BAD(t, "[error\nfg = 1\n", "my.toml:1: ", "");
}

static char *read_text(const char *path, size_t *len)
{
    char *text = NULL, *error = NULL;
    if (sdt_read_file(path, 1 << 20, &text, len, &error) != 0) {
        fprintf(stderr, "%s: %s\n", path, error);
        free(error);
        return NULL;
    }
    return text;
}

static void shipped_themes(test_state *t)
{
    /* themes/dark.toml spells out the built-in default. */
    size_t len = 0;
    char *text = read_text("themes/dark.toml", &len);
    theme_spec dark, def;
    char *error = NULL;
    CHECK_MSG(t, text && theme_parse(text, len, "themes/dark.toml", &dark, &error) == 0, "%s",
              error ? error : "");
    free(error);
    free(text);
    theme_spec_default(&def);
    for (int r = 0; r < THEME_ROLE_COUNT; r++)
        CHECK_MSG(t, same_style(dark.role[r], def.role[r]), "role %s differs from the default",
                  theme_role_name((theme_role)r));

    /* The three are built in, parse, and differ where it shows. */
    const char *names[] = {"dark", "light", "high-contrast"};
    theme_spec specs[3];
    for (int i = 0; i < 3; i++) {
        bool found = false;
        for (size_t b = 0; b < theme_builtin_count(); b++)
            found = found || strcmp(theme_builtin_name(b), names[i]) == 0;
        CHECK_MSG(t, found, "%s is not built in", names[i]);
        error = NULL;
        CHECK_MSG(t, theme_load(names[i], &specs[i], &error) == 0, "%s", error ? error : "");
        CHECK(t, strcmp(specs[i].name, names[i]) == 0);
        free(error);
    }
    CHECK(t, specs[0].role[THEME_ERROR].fg != specs[1].role[THEME_ERROR].fg);
    CHECK(t, !same_style(specs[0].role[THEME_ERROR], specs[2].role[THEME_ERROR]));
    /* The light theme never puts white or yellow text on the terminal's background. */
    for (int r = 0; r < THEME_ROLE_COUNT; r++) {
        theme_style s = specs[1].role[r];
        int basic = theme_nearest_basic(s.fg);
        bool on_background = s.bg < 0 && !(s.attrs & THEME_REVERSE);
        CHECK_MSG(t, !on_background || (basic != 7 && basic != 3), "light: %s is white or yellow",
                  theme_role_name((theme_role)r));
    }
}

static void colors_for_the_terminal(test_state *t)
{
    /* The nearest basic colour of the xterm palette. */
    CHECK(t, theme_nearest_basic(-1) == -1);
    CHECK(t, theme_nearest_basic(1) == 1);
    CHECK(t, theme_nearest_basic(9) == 1);   /* bright red */
    CHECK(t, theme_nearest_basic(15) == 7);  /* bright white */
    CHECK(t, theme_nearest_basic(196) == 1); /* (255,0,0) */
    CHECK(t, theme_nearest_basic(124) == 1); /* (175,0,0) */
    CHECK(t, theme_nearest_basic(28) == 2);  /* (0,135,0) */
    CHECK(t, theme_nearest_basic(21) == 4);  /* (0,0,255) */
    CHECK(t, theme_nearest_basic(25) == 4);  /* (0,95,175) */
    CHECK(t, theme_nearest_basic(226) == 3); /* (255,255,0) */
    CHECK(t, theme_nearest_basic(90) == 5);  /* (135,0,135) */
    CHECK(t, theme_nearest_basic(51) == 6);  /* (0,255,255) */
    CHECK(t, theme_nearest_basic(16) == 0);  /* the cube's black */
    CHECK(t, theme_nearest_basic(231) == 7); /* the cube's white */
    CHECK(t, theme_nearest_basic(235) == 0); /* a dark grey */
    CHECK(t, theme_nearest_basic(252) == 7); /* a light grey */

    theme_spec spec;
    char *error = NULL;
    CHECK(t, parse("[error]\nfg = 124\nbg = 231\nattrs = [\"underline\"]\n"
                   "[warning]\nfg = \"bright-yellow\"\n"
                   "[good]\nfg = 16\nbg = \"black\"\n"
                   "[debug]\nfg = \"bright-black\"\nattrs = [\"dim\"]\n",
                   &spec, &error) == 0);
    free(error);
    /* 256 colours: as written. */
    CHECK(t, same_style(theme_style_for(&spec, THEME_ERROR, 256), (theme_style){124, 231, THEME_UNDERLINE}));
    CHECK(t, same_style(theme_style_for(&spec, THEME_WARNING, 256), (theme_style){11, -1, 0}));
    /* 16 colours: the bright ones stay, the cube goes to the basic colours. */
    CHECK(t, same_style(theme_style_for(&spec, THEME_WARNING, 16), (theme_style){11, -1, 0}));
    CHECK(t, same_style(theme_style_for(&spec, THEME_ERROR, 16), (theme_style){1, 7, THEME_UNDERLINE}));
    /* 8 colours: a bright colour is its basic one in bold (not when dim: dim and bold cancel out). */
    CHECK(t, same_style(theme_style_for(&spec, THEME_WARNING, 8), (theme_style){3, -1, THEME_BOLD}));
    CHECK(t, same_style(theme_style_for(&spec, THEME_DEBUG, 8), (theme_style){0, -1, THEME_DIM}));
    /* Colours that meet on one basic colour keep the text on the default background, marked. */
    CHECK(t, same_style(theme_style_for(&spec, THEME_GOOD, 8), (theme_style){0, -1, THEME_BOLD}));
    /* No colour: only attributes, and the marks that keep the roles apart. */
    CHECK(t, same_style(theme_style_for(&spec, THEME_ERROR, 0),
                        (theme_style){-1, -1, THEME_UNDERLINE | THEME_BOLD}));
    CHECK(t, same_style(theme_style_for(&spec, THEME_WARNING, 0), (theme_style){-1, -1, 0}));
    theme_spec_default(&spec);
    spec.role[THEME_SELECTED] = (theme_style){4, -1, 0};
    spec.role[THEME_BAR_LABEL] = (theme_style){0, 6, 0};
    CHECK(t, theme_style_for(&spec, THEME_SELECTED, 0).attrs == THEME_REVERSE);
    CHECK(t, theme_style_for(&spec, THEME_BAR_LABEL, 0).attrs == THEME_REVERSE);
    CHECK(t, theme_style_for(&spec, THEME_TITLE, 0).attrs == THEME_REVERSE);
    CHECK(t, theme_style_for(&spec, THEME_PROMPT, 0).attrs == (THEME_REVERSE | THEME_BOLD));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void finding_themes_and_settings(test_state *t)
{
    char base[] = "/tmp/sdtune-theme-XXXXXX";
    if (!mkdtemp(base)) {
        CHECK(t, false);
        return;
    }
    setenv("XDG_CONFIG_HOME", base, 1);
    char *dir = NULL, *themes = NULL, *user = NULL, *bad = NULL, *settings = NULL;
    CHECK(t, asprintf(&dir, "%s/sdtune", base) > 0 && asprintf(&themes, "%s/themes", dir) > 0 &&
                 asprintf(&user, "%s/light.toml", themes) > 0 && asprintf(&bad, "%s/bad.toml", base) > 0 &&
                 asprintf(&settings, "%s/tui.toml", dir) > 0);
    mkdir(dir, 0755);
    mkdir(themes, 0755);

    theme_spec spec;
    char *error = NULL, *message = NULL;
    /* An unknown name lists the built-in ones. */
    CHECK(t, theme_load("no-such-theme", &spec, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "no theme 'no-such-theme'");
    CHECK_STR_CONTAINS(t, error, "dark");
    CHECK_STR_CONTAINS(t, error, "high-contrast");
    free(error);
    error = NULL;
    CHECK(t, theme_load("../x", &spec, &error) == -1); /* a path: not a file */
    CHECK_STR_CONTAINS(t, error, "../x");
    free(error);
    error = NULL;

    /* A user's theme overrides the built-in one of its name; a path is read as given. */
    write_file(user, "name = \"my light\"\n[error]\nfg = 200\n");
    CHECK(t, theme_load("light", &spec, &error) == 0);
    CHECK(t, strcmp(spec.name, "my light") == 0 && spec.role[THEME_ERROR].fg == 200);
    write_file(bad, "[error]\n\nfg = \"purple\"\n");
    CHECK(t, theme_load(bad, &spec, &error) == -1);
    CHECK_STR_CONTAINS(t, error, bad);
    CHECK_STR_CONTAINS(t, error, ":3: error.fg: unknown colour 'purple'");
    free(error);
    error = NULL;
    unlink(user);

    /* --theme given: it must load. */
    CHECK(t, ui_choose_theme("nope", &spec, &message, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "'nope'");
    free(error);
    error = NULL;
    /* No settings file: the default, quietly. */
    CHECK(t, ui_choose_theme(NULL, &spec, &message, &error) == 0);
    CHECK(t, strcmp(spec.name, "dark") == 0 && message == NULL);
    /* The settings file's theme, and a warning for a key it does not know. */
    write_file(settings, "theme = \"high-contrast\"\nthem = 1\n");
    CHECK(t, ui_choose_theme(NULL, &spec, &message, &error) == 0);
    CHECK(t, strcmp(spec.name, "high-contrast") == 0);
    CHECK_STR_CONTAINS(t, message, "tui.toml:2: unknown key 'them'");
    free(message);
    message = NULL;
    /* --theme wins over the file. */
    CHECK(t, ui_choose_theme("light", &spec, &message, &error) == 0);
    CHECK(t, strcmp(spec.name, "light") == 0);
    /* A bad theme named by the file: the default, with a message. */
    write_file(settings, "theme = \"nowhere\"\n");
    CHECK(t, ui_choose_theme(NULL, &spec, &message, &error) == 0);
    CHECK(t, strcmp(spec.name, "dark") == 0);
    CHECK_STR_CONTAINS(t, message, "no theme 'nowhere'");
    CHECK_STR_CONTAINS(t, message, "using the dark theme");
    free(message);
    message = NULL;
    /* A settings file that is not TOML: the default, with the file and line. */
    write_file(settings, "theme = \n");
    CHECK(t, ui_choose_theme(NULL, &spec, &message, &error) == 0);
    CHECK(t, strcmp(spec.name, "dark") == 0);
    CHECK_STR_CONTAINS(t, message, "tui.toml:1:");
    free(message);

    unlink(settings);
    unlink(bad);
    rmdir(themes);
    rmdir(dir);
    rmdir(base);
    free(dir);
    free(themes);
    free(user);
    free(bad);
    free(settings);
}

int main(void)
{
    static const test_case cases[] = {TEST(parses_names_numbers_and_attrs),
                                      TEST(bad_files_name_the_file_line_and_key), TEST(shipped_themes),
                                      TEST(colors_for_the_terminal), TEST(finding_themes_and_settings)};
    return run_tests("theme_file", cases, sizeof cases / sizeof cases[0]);
}
