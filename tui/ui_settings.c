/* The UI's settings file and the choice of theme (see ui_settings.h). */
#include "ui_settings.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/config/toml_tree.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"
#include "xdg.h"

void ui_settings_free(ui_settings *settings)
{
    free(settings->theme);
    settings->theme = NULL;
}

int ui_settings_read(const char *path, ui_settings *settings, char **warnings, char **error)
{
    settings->theme = NULL;
    *warnings = NULL;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return 0;
    char *text = NULL, *why = NULL;
    size_t len = 0;
    if (sdt_read_file(path, 1 << 20, &text, &len, &why) != 0) {
        sdt_set_error(error, "cannot read %s: %s", path, why ? why : "?");
        free(why);
        return -1;
    }
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_toml_node *root = NULL;
    int rc = sdt_toml_parse(text, len, path, &root, &diags);
    free(text);
    if (rc != 0) {
        const sdt_diag *d = diags.count ? &diags.items[0] : NULL;
        sdt_set_error(error, "%s:%d: %s", path, d ? d->line : 0, d ? d->message : "not valid TOML");
        sdt_diag_list_free(&diags);
        return -1;
    }
    sdt_diag_list_free(&diags);
    sdt_buf notes;
    sdt_buf_init(&notes);
    for (size_t m = 0; m < root->count; m++) {
        const sdt_toml_node *n = &root->children[m];
        if (strcmp(n->key, "theme") == 0 && n->kind == SDT_TOML_STRING) {
            free(settings->theme);
            settings->theme = sdt_strdup(n->s);
        } else if (strcmp(n->key, "theme") == 0) {
            sdt_buf_printf(&notes, "%s%s:%d: theme: a name or a path in quotes, not a %s (ignored)",
                           notes.len ? "; " : "", path, n->key_line, sdt_toml_kind_name(n->kind));
        } else {
            sdt_buf_printf(&notes, "%s%s:%d: unknown key '%s' (ignored; the file knows: theme)",
                           notes.len ? "; " : "", path, n->key_line, n->key);
        }
    }
    sdt_toml_free(root);
    *warnings = notes.len ? sdt_buf_take(&notes) : NULL;
    sdt_buf_free(&notes);
    return 0;
}

int ui_choose_theme(const char *option, theme_spec *spec, char **message, char **error)
{
    *message = NULL;
    if (option)
        return theme_load(option, spec, error);
    theme_spec_default(spec);
    char *why = NULL;
    char *dir = xdg_dir(XDG_CONFIG, &why);
    char *path = dir ? sdt_format("%s/tui.toml", dir) : NULL;
    free(dir);
    if (!path) { /* no $HOME: no settings, which is no problem */
        free(why);
        return 0;
    }
    ui_settings settings;
    char *warnings = NULL;
    if (ui_settings_read(path, &settings, &warnings, &why) != 0) {
        *message = sdt_format("using the dark theme: %s", why ? why : "?");
    } else if (settings.theme && theme_load(settings.theme, spec, &why) != 0) {
        theme_spec_default(spec);
        *message = sdt_format("using the dark theme: %s (the theme of %s)", why ? why : "?", path);
    } else if (warnings) {
        *message = warnings;
        warnings = NULL;
    }
    free(warnings);
    free(why);
    ui_settings_free(&settings);
    free(path);
    return 0;
}
