/* Theme files (see theme_file.h). */
#include "theme_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/config/toml_tree.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"
#include "widgets/image_preview.h"
#include "xdg.h"

static const char *const role_names[THEME_ROLE_COUNT] = {
    "error", "warning", "changed", "bar_key",  "bar_label", "bar_off",   "title", "title_problem",
    "good",  "debug",   "focus",   "selected", "border",    "sparkline", "gauge", "prompt",
};

/* Names of the palette's first 16 entries, in index order. */
static const char *const color_names[16] = {
    "black",        "red",           "green",       "yellow",         "blue",
    "magenta",      "cyan",          "white",       "bright-black",   "bright-red",
    "bright-green", "bright-yellow", "bright-blue", "bright-magenta", "bright-cyan",
    "bright-white",
};

static const struct {
    const char *name;
    unsigned flag;
} attr_names[] = {
    {"bold", THEME_BOLD},           {"dim", THEME_DIM},       {"reverse", THEME_REVERSE},
    {"underline", THEME_UNDERLINE}, {"italic", THEME_ITALIC},
};

/* What a role keeps without colour, so the monochrome screen still tells the roles apart. */
static const unsigned mono_marks[THEME_ROLE_COUNT] = {
    [THEME_ERROR] = THEME_BOLD,       [THEME_BAR_LABEL] = THEME_REVERSE,
    [THEME_TITLE] = THEME_REVERSE,    [THEME_TITLE_PROBLEM] = THEME_REVERSE | THEME_BOLD,
    [THEME_GOOD] = THEME_BOLD,        [THEME_FOCUS] = THEME_REVERSE | THEME_BOLD,
    [THEME_SELECTED] = THEME_REVERSE, [THEME_PROMPT] = THEME_REVERSE | THEME_BOLD,
};

const char *theme_role_name(theme_role role)
{
    return role >= 0 && role < THEME_ROLE_COUNT ? role_names[role] : "?";
}

void theme_spec_default(theme_spec *spec)
{
    enum { RED = 1, GREEN = 2, YELLOW = 3, CYAN = 6, BLACK = 0 };
    memset(spec, 0, sizeof *spec);
    snprintf(spec->name, sizeof spec->name, "dark");
    for (int r = 0; r < THEME_ROLE_COUNT; r++)
        spec->role[r] = (theme_style){-1, -1, 0};
    spec->role[THEME_ERROR] = (theme_style){RED, -1, THEME_BOLD};
    spec->role[THEME_WARNING] = (theme_style){YELLOW, -1, 0};
    spec->role[THEME_CHANGED].attrs = THEME_BOLD;
    spec->role[THEME_BAR_KEY].attrs = THEME_BOLD;
    spec->role[THEME_BAR_LABEL] = (theme_style){BLACK, CYAN, 0};
    spec->role[THEME_BAR_OFF].attrs = THEME_DIM;
    spec->role[THEME_TITLE].attrs = THEME_REVERSE;
    spec->role[THEME_TITLE_PROBLEM] = (theme_style){RED, -1, THEME_REVERSE | THEME_BOLD};
    spec->role[THEME_GOOD] = (theme_style){GREEN, -1, THEME_BOLD};
    spec->role[THEME_DEBUG].attrs = THEME_DIM;
    spec->role[THEME_FOCUS].attrs = THEME_REVERSE | THEME_BOLD;
    spec->role[THEME_SELECTED].attrs = THEME_REVERSE;
    spec->role[THEME_GAUGE].attrs = THEME_BOLD;
    spec->role[THEME_PROMPT].attrs = THEME_REVERSE | THEME_BOLD;
}

static int role_of(const char *name)
{
    for (int r = 0; r < THEME_ROLE_COUNT; r++)
        if (strcmp(role_names[r], name) == 0)
            return r;
    return -1;
}

static const char *role_candidate(const void *ctx, size_t i)
{
    (void)ctx;
    return role_names[i];
}

/* A colour: a name or an index; -2 (with *error) when it is neither. */
static int parse_color(const sdt_toml_node *n, const char *place, const char *key, char **error)
{
    if (n->kind == SDT_TOML_INT) {
        if (n->i < 0 || n->i > 255) {
            sdt_set_error(error, "%s: %s: colour %lld is out of range 0..255", place, key, (long long)n->i);
            return -2;
        }
        return (int)n->i;
    }
    if (n->kind == SDT_TOML_STRING) {
        if (strcmp(n->s, "default") == 0)
            return -1;
        for (int i = 0; i < 16; i++)
            if (strcmp(n->s, color_names[i]) == 0)
                return i;
        sdt_set_error(
            error,
            "%s: %s: unknown colour '%s' (a name: default, black, red, green, yellow, blue, magenta, "
            "cyan, white, bright-black .. bright-white; or a number 0..255)",
            place, key, n->s);
        return -2;
    }
    sdt_set_error(error, "%s: %s: a colour is a name or a number 0..255, not a %s", place, key,
                  sdt_toml_kind_name(n->kind));
    return -2;
}

static int parse_attrs(const sdt_toml_node *n, const char *file, const char *key, unsigned *attrs,
                       char **error)
{
    if (n->kind != SDT_TOML_ARRAY)
        return sdt_set_error(error, "%s:%d: %s: a list of attributes such as [\"bold\"], not a %s", file,
                             n->line, key, sdt_toml_kind_name(n->kind));
    *attrs = 0;
    for (size_t i = 0; i < n->count; i++) {
        const sdt_toml_node *item = &n->children[i];
        unsigned flag = 0;
        for (size_t a = 0; a < sizeof attr_names / sizeof attr_names[0] && item->kind == SDT_TOML_STRING; a++)
            if (strcmp(item->s, attr_names[a].name) == 0)
                flag = attr_names[a].flag;
        if (!flag)
            return sdt_set_error(
                error, "%s:%d: %s: unknown attribute %s%s%s (bold, dim, reverse, underline, italic)", file,
                item->line, key, item->kind == SDT_TOML_STRING ? "'" : "",
                item->kind == SDT_TOML_STRING ? item->s : sdt_toml_kind_name(item->kind),
                item->kind == SDT_TOML_STRING ? "'" : "");
        *attrs |= flag;
    }
    return 0;
}

static int parse_role(const sdt_toml_node *table, const char *file, theme_style *style, char **error)
{
    *style = (theme_style){-1, -1, 0};
    for (size_t m = 0; m < table->count; m++) {
        const sdt_toml_node *n = &table->children[m];
        char key[96];
        snprintf(key, sizeof key, "%s.%s", table->key, n->key);
        char place[512];
        snprintf(place, sizeof place, "%s:%d", file, n->key_line);
        if (strcmp(n->key, "fg") == 0 || strcmp(n->key, "bg") == 0) {
            int color = parse_color(n, place, key, error);
            if (color == -2)
                return -1;
            if (n->key[0] == 'f')
                style->fg = color;
            else
                style->bg = color;
        } else if (strcmp(n->key, "attrs") == 0) {
            if (parse_attrs(n, file, key, &style->attrs, error) != 0)
                return -1;
        } else {
            return sdt_set_error(error, "%s: unknown key '%s' (a role has fg, bg and attrs)", place, key);
        }
    }
    return 0;
}

int theme_parse(const char *text, size_t len, const char *file, theme_spec *spec, char **error)
{
    theme_spec_default(spec);
    /* The name is the file's, without folders and ".toml", unless the file says otherwise. */
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    size_t base_len = strlen(base);
    if (base_len > 5 && strcmp(base + base_len - 5, ".toml") == 0)
        base_len -= 5;
    snprintf(spec->name, sizeof spec->name, "%.*s", (int)base_len, base);

    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_toml_node *root = NULL;
    if (sdt_toml_parse(text, len, file, &root, &diags) != 0) {
        const sdt_diag *d = diags.count ? &diags.items[0] : NULL;
        sdt_set_error(error, "%s:%d: %s", file, d ? d->line : 0, d ? d->message : "not valid TOML");
        sdt_diag_list_free(&diags);
        return -1;
    }
    sdt_diag_list_free(&diags);
    int rc = 0;
    for (size_t m = 0; m < root->count && rc == 0; m++) {
        const sdt_toml_node *n = &root->children[m];
        int role = role_of(n->key);
        if (strcmp(n->key, "name") == 0) {
            if (n->kind != SDT_TOML_STRING)
                rc = sdt_set_error(error, "%s:%d: name: a string, not a %s", file, n->key_line,
                                   sdt_toml_kind_name(n->kind));
            else
                snprintf(spec->name, sizeof spec->name, "%s", n->s);
        } else if (role < 0) {
            int near = sdt_closest_match(n->key, role_candidate, NULL, THEME_ROLE_COUNT);
            char *hint = near >= 0 ? sdt_format("; did you mean '%s'?", role_names[near]) : NULL;
            rc =
                sdt_set_error(error, "%s:%d: %s: unknown role%s", file, n->key_line, n->key,
                              hint ? hint
                                   : " (roles: error, warning, changed, bar_key, bar_label, bar_off, title, "
                                     "title_problem, good, debug, focus, selected, border, sparkline, gauge, "
                                     "prompt)");
            free(hint);
        } else if (n->kind != SDT_TOML_TABLE) {
            rc = sdt_set_error(error, "%s:%d: %s: a role is a table ([%s] with fg, bg, attrs), not a %s",
                               file, n->key_line, n->key, n->key, sdt_toml_kind_name(n->kind));
        } else {
            rc = parse_role(n, file, &spec->role[role], error);
        }
    }
    sdt_toml_free(root);
    return rc;
}

int theme_nearest_basic(int index)
{
    if (index < 0)
        return -1;
    if (index < 16)
        return index & 7;
    return preview_nearest_8(preview_palette_256(index > 255 ? 255 : index));
}

/* A colour on a terminal of colors colours; *bold is set when a bright colour became its basic one. */
static int degrade(int color, int colors, bool *bold)
{
    if (color < 0 || color < colors)
        return color;
    if (color < 16) {
        *bold = true;
        return color & 7;
    }
    return theme_nearest_basic(color);
}

theme_style theme_style_for(const theme_spec *spec, theme_role role, int colors)
{
    theme_style s = spec->role[role];
    if (colors <= 0)
        return (theme_style){-1, -1, s.attrs | mono_marks[role]};
    bool bold = false;
    s.fg = degrade(s.fg, colors, &bold);
    int bg = degrade(s.bg, colors, &(bool){false});
    /* Two colours that meet on one basic colour would hide the text: keep the text on the terminal's
     * background, marked as it would be without colour. */
    if (bg >= 0 && bg == s.fg) {
        bg = -1;
        s.attrs |= mono_marks[role];
    }
    s.bg = bg;
    if (bold && !(s.attrs & THEME_DIM))
        s.attrs |= THEME_BOLD;
    return s;
}

/* ---- finding a theme ---------------------------------------------------------------------------- */

static bool is_path(const char *name)
{
    size_t len = strlen(name);
    return strchr(name, '/') || (len >= 5 && strcmp(name + len - 5, ".toml") == 0);
}

static int load_file(const char *path, theme_spec *spec, char **error)
{
    char *text = NULL, *why = NULL;
    size_t len = 0;
    if (sdt_read_file(path, 1 << 20, &text, &len, &why) != 0) {
        sdt_set_error(error, "cannot read the theme %s: %s", path, why ? why : "?");
        free(why);
        return -1;
    }
    int rc = theme_parse(text, len, path, spec, error);
    free(text);
    return rc;
}

int theme_load(const char *name_or_path, theme_spec *spec, char **error)
{
    if (is_path(name_or_path))
        return load_file(name_or_path, spec, error);
    for (const char *c = name_or_path; *c; c++)
        if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') && !(*c >= '0' && *c <= '9') &&
            *c != '-' && *c != '_')
            return sdt_set_error(error, "'%s' is not a theme name (letters, digits, - and _) or a .toml file",
                                 name_or_path);
    char *dir = xdg_dir(XDG_CONFIG, NULL);
    char *user = dir ? sdt_format("%s/themes/%s.toml", dir, name_or_path) : NULL;
    free(dir);
    struct stat st;
    if (user && stat(user, &st) == 0) {
        int rc = load_file(user, spec, error);
        free(user);
        return rc;
    }
    free(user);
    for (size_t i = 0; i < theme_builtin_count(); i++) {
        if (strcmp(theme_builtin_name(i), name_or_path) != 0)
            continue;
        const char *text = theme_builtin_text(i);
        char *file = sdt_format("themes/%s.toml", name_or_path);
        int rc = theme_parse(text, strlen(text), file ? file : name_or_path, spec, error);
        free(file);
        return rc;
    }
    sdt_buf names;
    sdt_buf_init(&names);
    for (size_t i = 0; i < theme_builtin_count(); i++)
        sdt_buf_printf(&names, "%s%s", i ? ", " : "", theme_builtin_name(i));
    sdt_set_error(error, "no theme '%s' (built in: %s; or a file in $XDG_CONFIG_HOME/sdtune/themes)",
                  name_or_path, names.data ? names.data : "");
    sdt_buf_free(&names);
    return -1;
}
