/* sdtune: the terminal UI of the trainer. It edits a config file and trains it with sdtune-engine in the
 * run view: main parses the command line, loads the config, and hands it to the app (app.c), which
 * validates and edits it. */
#include <langinfo.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "sdtune/config.h"
#include "sdtune/diag.h"
#include "sdtune/strutil.h"
#include "theme_file.h"
#include "ui_settings.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: sdtune [OPTIONS] [CONFIG]\n"
                 "\n"
                 "Edit a training config (default ./config.toml) with its problems marked as you\n"
                 "type, save it (F2), and train it: F5 starts sdtune-engine, F4 switches to the\n"
                 "run view.\n"
                 "\n"
                 "options:\n"
                 "  -c, --config FILE  the config to edit (the same as giving CONFIG)\n"
                 "      --no-color     draw without colours (as NO_COLOR=1 does)\n"
                 "      --theme NAME   colours: dark (the default), light, high-contrast, or a\n"
                 "                     theme file (a path, or NAME.toml in ~/.config/sdtune/themes)\n"
                 "  -h, --help         show this help\n"
                 "  -V, --version      show the version\n"
                 "\n"
                 "Inside, F1 or ? lists the keys. ~/.config/sdtune/tui.toml may say theme = \"NAME\".\n");
}

/* Parses argv; returns -1 to exit 0 (help, version), 2 on a usage error, 0 to go on with *path. */
static int parse_args(int argc, char **argv, const char **path, bool *no_color, const char **theme)
{
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            if (strcmp(arg, "--") == 0) {
                options_done = true;
            } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
                usage(stdout);
                return -1;
            } else if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
                printf("sdtune %s\n", SDTUNE_VERSION);
                return -1;
            } else if (strcmp(arg, "--no-color") == 0) {
                *no_color = true;
            } else if (strcmp(arg, "--theme") == 0 || strncmp(arg, "--theme=", 8) == 0) {
                if (arg[7] == '=') {
                    *theme = arg + 8;
                } else if (i + 1 >= argc) {
                    fprintf(stderr, "sdtune: --theme needs a theme name or file\n");
                    return 2;
                } else {
                    *theme = argv[++i];
                }
            } else if (strcmp(arg, "--config") == 0 || strcmp(arg, "-c") == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "sdtune: %s needs a config file\n", arg);
                    return 2;
                }
                if (*path) {
                    fprintf(stderr, "sdtune: give one config file, not '%s' and '%s'\n", *path, argv[i + 1]);
                    return 2;
                }
                *path = argv[++i];
            } else {
                fprintf(stderr, "sdtune: unknown option '%s'\n", arg);
                fprintf(stderr, "Try 'sdtune --help'.\n");
                return 2;
            }
            continue;
        }
        if (*path) {
            fprintf(stderr, "sdtune: give one config file, not '%s' and '%s'\n", *path, arg);
            return 2;
        }
        *path = arg;
    }
    if (!*path)
        *path = "config.toml";
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool no_color = false;
    const char *theme_option = NULL;
    int status = parse_args(argc, argv, &path, &no_color, &theme_option);
    if (status != 0)
        return status < 0 ? 0 : status;
    /* A theme asked for on the command line must load; one from the settings file falls back to dark. */
    theme_spec theme;
    char *theme_message = NULL, *theme_error = NULL;
    if (ui_choose_theme(theme_option, &theme, &theme_message, &theme_error) != 0) {
        fprintf(stderr, "sdtune: %s\n", theme_error ? theme_error : "cannot load the theme");
        free(theme_error);
        return 2;
    }
    /* The drawing code honours the NO_COLOR convention (no-color.org); the option sets it for this process
     * and the engines it starts. */
    if (no_color)
        setenv("NO_COLOR", "1", 1);

    /* The terminal's character set for ncursesw. Numbers keep the C spelling (a decimal point, never a
     * comma) in the text forms the library parses and makes. */
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    bool utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;

    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    if (!cfg) {
        sdt_diag_list_print(&diags, stderr);
        sdt_diag_list_free(&diags);
        free(theme_message);
        return 1;
    }

    app a; /* owns cfg from here on; copies the load's diagnostics */
    if (app_init(&a, path, cfg, &diags, utf8) != 0) {
        fprintf(stderr, "sdtune: out of memory\n");
        free(theme_message);
        status = 1;
    } else {
        a.theme.spec = theme;
        app_set_message(&a, theme_message); /* a problem with the settings file, shown until a key */
        /* The recent-files list is a convenience: not being able to write it is only a message. */
        char *why = app_files_record(&a);
        if (why)
            app_set_message(&a, sdt_format("%s is not in the recent files: %s", a.name, why));
        free(why);
        if (app_run(&a) != 0)
            status = 1;
    }
    app_free(&a);
    sdt_diag_list_free(&diags);
    return status;
}
