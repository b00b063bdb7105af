/* Prompt files of sample images (sample.h; kohya's line_to_prompt_dict and load_prompts): .txt lines with
 * " --" options, .toml ([prompt] defaults merged into every [[prompt.subset]]) and .json (a list of
 * strings, parsed as lines, or of dicts). */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/config/toml_tree.h"
#include "sample.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

#define PROMPT_FILE_MAX_BYTES (16u << 20)

void sdt_sample_prompt_free(sdt_sample_prompt *p)
{
    free(p->prompt);
    free(p->negative);
    memset(p, 0, sizeof *p);
}

void sdt_sample_prompts_free(sdt_sample_prompts *p)
{
    for (size_t i = 0; i < p->count; i++)
        sdt_sample_prompt_free(&p->items[i]);
    free(p->items);
    p->items = NULL;
    p->count = 0;
}

static void prompt_defaults(sdt_sample_prompt *p, const sdt_sample_defaults *d)
{
    memset(p, 0, sizeof *p);
    p->width = d->width;
    p->height = d->height;
    p->seed = -1;
    p->steps = d->steps;
    p->scale = d->scale;
    p->sampler = d->sampler;
}

/* kohya's rules: sizes floored to a multiple of 8 (at least 64), steps clamped to 1..1000. */
static void prompt_finish(sdt_sample_prompt *p)
{
    p->width = p->width - p->width % 8;
    p->height = p->height - p->height % 8;
    if (p->width < 64)
        p->width = 64;
    if (p->height < 64)
        p->height = 64;
    p->steps = p->steps < 1 ? 1 : p->steps > 1000 ? 1000 : p->steps;
}

static int parse_int(const char *s, int64_t max, int64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    if (!isdigit((unsigned char)s[0]) && s[0] != '.')
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return -1;
    *out = (float)v;
    return 0;
}

/* One " --name value" option into p; unknown names are ignored (kohya matches only the ones it knows). */
static int apply_option(sdt_sample_prompt *p, const char *opt, const char *place, char **error)
{
    size_t name_len = strcspn(opt, " ");
    const char *value = opt[name_len] ? opt + name_len + 1 : NULL;
    static const char *const known[] = {"n", "w", "h", "d", "s", "l", "ss"};
    int index = -1;
    for (int i = 0; i < 7; i++)
        if (strlen(known[i]) == name_len && strncasecmp(opt, known[i], name_len) == 0)
            index = i;
    if (index < 0)
        return 0;
    if (!value || !*value)
        return sdt_set_error(error, "%s: option --%s needs a value", place, known[index]);
    int64_t iv = 0;
    switch (index) {
    case 0:
        free(p->negative);
        p->negative = sdt_strdup(value);
        return 0;
    case 1:
    case 2:
        if (parse_int(value, 1 << 20, &iv) != 0)
            return sdt_set_error(error, "%s: --%s: \"%s\" is not a size in pixels", place, known[index],
                                 value);
        *(index == 1 ? &p->width : &p->height) = (int)iv;
        return 0;
    case 3:
        if (parse_int(value, INT64_MAX, &iv) != 0)
            return sdt_set_error(error, "%s: --d: \"%s\" is not a seed (a non-negative integer)", place,
                                 value);
        p->seed = iv;
        return 0;
    case 4:
        if (parse_int(value, INT64_MAX, &iv) != 0)
            return sdt_set_error(error, "%s: --s: \"%s\" is not a step count", place, value);
        p->steps = iv > 1000 ? 1000 : (int)iv;
        return 0;
    case 5:
        if (parse_float(value, &p->scale) != 0)
            return sdt_set_error(error, "%s: --l: \"%s\" is not a guidance scale", place, value);
        return 0;
    default: {
        char *why = NULL;
        if (sdt_sampler_parse(value, &p->sampler, &why) != 0) {
            sdt_set_error(error, "%s: --ss: %s", place, why);
            free(why);
            return -1;
        }
        p->has_sampler = 1;
        return 0;
    }
    }
}

int sdt_sample_prompt_parse_line(const char *line, const sdt_sample_defaults *defaults, const char *name,
                                 int line_number, sdt_sample_prompt *out, char **error)
{
    prompt_defaults(out, defaults);
    /* the text split on " --": the first part is the prompt, each other an option */
    const char *sep = strstr(line, " --");
    out->prompt = sdt_strndup(line, sep ? (size_t)(sep - line) : strlen(line));
    out->negative = sdt_strdup("");
    /* messages name "file:line", or the bare name when there is no line (a .json item) */
    char *place = line_number > 0 ? sdt_format("%s:%d", name, line_number) : sdt_strdup(name);
    while (sep) {
        const char *start = sep + 3;
        sep = strstr(start, " --");
        size_t len = sep ? (size_t)(sep - start) : strlen(start);
        while (len > 0 && isspace((unsigned char)start[len - 1]))
            len--;
        char *opt = sdt_strndup(start, len);
        int rc = apply_option(out, opt, place, error);
        free(opt);
        if (rc != 0) {
            free(place);
            sdt_sample_prompt_free(out);
            return -1;
        }
    }
    free(place);
    prompt_finish(out);
    return 0;
}

static int push(sdt_sample_prompts *out, size_t *capacity, sdt_sample_prompt *p)
{
    if (out->count == *capacity) {
        size_t cap = *capacity ? *capacity * 2 : 8;
        sdt_sample_prompt *items = realloc(out->items, cap * sizeof *items);
        if (!items)
            return -1;
        out->items = items;
        *capacity = cap;
    }
    out->items[out->count++] = *p;
    return 0;
}

static char *trim_copy(const char *s, size_t len)
{
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    return sdt_strndup(s, len);
}

static int load_txt(const char *path, const char *text, const sdt_sample_defaults *d, sdt_sample_prompts *out,
                    char **error)
{
    size_t capacity = 0;
    int line_number = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        line_number++;
        /* as kohya: a '#' in the first column comments the line; blank lines are skipped */
        char *stripped = trim_copy(line, len);
        if (stripped[0] && line[0] != '#') {
            sdt_sample_prompt p;
            int rc = sdt_sample_prompt_parse_line(stripped, d, path, line_number, &p, error);
            if (rc == 0 && push(out, &capacity, &p) != 0) {
                sdt_sample_prompt_free(&p);
                rc = sdt_set_error(error, "%s: out of memory", path);
            }
            if (rc != 0) {
                free(stripped);
                return -1;
            }
        }
        free(stripped);
        line = end ? end + 1 : line + len;
    }
    return 0;
}

/* ---- dict entries (.toml and .json): prompt, negative_prompt, width, height, seed, sample_steps, scale,
 * sample_sampler; other keys kohya knows (guidance_scale, controlnet_image, ...) are ignored ---- */

typedef enum dict_value_kind { DICT_STRING, DICT_INT, DICT_NUMBER, DICT_OTHER } dict_value_kind;

typedef struct dict_value {
    dict_value_kind kind;
    const char *s;
    int64_t i;
    double f;
} dict_value;

/* place: "file:line" or "file: item N" for messages */
static int apply_dict_key(sdt_sample_prompt *p, const char *key, const dict_value *v, const char *place,
                          char **error)
{
    if (strcmp(key, "prompt") == 0 || strcmp(key, "negative_prompt") == 0) {
        if (v->kind != DICT_STRING)
            return sdt_set_error(error, "%s: %s must be a string", place, key);
        char **slot = key[0] == 'p' ? &p->prompt : &p->negative;
        free(*slot);
        *slot = sdt_strdup(v->s);
        return 0;
    }
    if (strcmp(key, "sample_sampler") == 0) {
        if (v->kind != DICT_STRING)
            return sdt_set_error(error, "%s: sample_sampler must be a string", place);
        char *why = NULL;
        if (sdt_sampler_parse(v->s, &p->sampler, &why) != 0) {
            sdt_set_error(error, "%s: sample_sampler: %s", place, why);
            free(why);
            return -1;
        }
        p->has_sampler = 1;
        return 0;
    }
    if (strcmp(key, "scale") == 0) {
        if (v->kind != DICT_INT && v->kind != DICT_NUMBER)
            return sdt_set_error(error, "%s: scale must be a number", place);
        p->scale = (float)(v->kind == DICT_INT ? (double)v->i : v->f);
        return 0;
    }
    static const char *const ints[] = {"width", "height", "seed", "sample_steps"};
    for (int k = 0; k < 4; k++) {
        if (strcmp(key, ints[k]) != 0)
            continue;
        if (v->kind != DICT_INT || v->i < 0 || (k != 2 && v->i > (1 << 20)))
            return sdt_set_error(error, "%s: %s must be a non-negative integer", place, key);
        if (k == 0)
            p->width = (int)v->i;
        else if (k == 1)
            p->height = (int)v->i;
        else if (k == 2)
            p->seed = v->i;
        else
            p->steps = (int)v->i;
        return 0;
    }
    return 0;
}

static dict_value toml_value(const sdt_toml_node *n)
{
    dict_value v = {DICT_OTHER, NULL, 0, 0};
    if (n->kind == SDT_TOML_STRING)
        v = (dict_value){DICT_STRING, n->s, 0, 0};
    else if (n->kind == SDT_TOML_INT)
        v = (dict_value){DICT_INT, NULL, n->i, 0};
    else if (n->kind == SDT_TOML_FLOAT)
        v = (dict_value){DICT_NUMBER, NULL, 0, n->f};
    return v;
}

static int apply_toml_table(sdt_sample_prompt *p, const sdt_toml_node *table, const char *path, char **error)
{
    for (size_t m = 0; m < table->count; m++) {
        const sdt_toml_node *n = &table->children[m];
        if (strcmp(n->key, "subset") == 0)
            continue;
        dict_value v = toml_value(n);
        char *place = sdt_format("%s:%d", path, n->key_line);
        int rc = apply_dict_key(p, n->key, &v, place, error);
        free(place);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int load_toml(const char *path, const char *text, size_t len, const sdt_sample_defaults *d,
                     sdt_sample_prompts *out, char **error)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_toml_node *root = NULL;
    if (sdt_toml_parse(text, len, path, &root, &diags) != 0) {
        const sdt_diag *g = diags.count ? &diags.items[0] : NULL;
        sdt_set_error(error, "%s:%d: %s", path, g ? g->line : 0, g ? g->message : "not valid TOML");
        sdt_diag_list_free(&diags);
        return -1;
    }
    sdt_diag_list_free(&diags);
    const sdt_toml_node *prompt = NULL, *subsets = NULL;
    for (size_t m = 0; m < root->count; m++)
        if (strcmp(root->children[m].key, "prompt") == 0)
            prompt = &root->children[m];
    int rc = 0;
    if (!prompt || prompt->kind != SDT_TOML_TABLE) {
        rc = sdt_set_error(error, "%s: no [prompt] table", path);
        goto done;
    }
    for (size_t m = 0; m < prompt->count; m++)
        if (strcmp(prompt->children[m].key, "subset") == 0)
            subsets = &prompt->children[m];
    if (!subsets || subsets->kind != SDT_TOML_ARRAY) {
        rc = sdt_set_error(error, "%s:%d: [prompt] has no [[prompt.subset]] entries", path, prompt->line);
        goto done;
    }
    size_t capacity = 0;
    for (size_t i = 0; i < subsets->count && rc == 0; i++) {
        const sdt_toml_node *subset = &subsets->children[i];
        if (subset->kind != SDT_TOML_TABLE) {
            rc = sdt_set_error(error, "%s:%d: prompt.subset entries must be tables", path, subset->line);
            break;
        }
        sdt_sample_prompt p;
        prompt_defaults(&p, d);
        p.prompt = sdt_strdup("");
        p.negative = sdt_strdup("");
        /* the [prompt] keys first, the subset's override them (kohya's dict(**prompt, **subset)) */
        rc = apply_toml_table(&p, prompt, path, error);
        if (rc == 0)
            rc = apply_toml_table(&p, subset, path, error);
        if (rc == 0) {
            prompt_finish(&p);
            if (push(out, &capacity, &p) != 0)
                rc = sdt_set_error(error, "%s: out of memory", path);
        }
        if (rc != 0)
            sdt_sample_prompt_free(&p);
    }
done:
    sdt_toml_free(root);
    return rc;
}

static int load_json(const char *path, const char *text, size_t len, const sdt_sample_defaults *d,
                     sdt_sample_prompts *out, char **error)
{
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    if (!root)
        return sdt_set_error(error, "%s:%d: %s", path, err.line, err.text);
    int rc = 0;
    if (!json_is_array(root)) {
        rc = sdt_set_error(error, "%s: expected a list of prompts (strings or objects)", path);
        goto done;
    }
    size_t capacity = 0, index;
    json_t *item;
    json_array_foreach(root, index, item)
    {
        sdt_sample_prompt p;
        char *place = sdt_format("%s: item %zu", path, index + 1);
        if (json_is_string(item)) {
            rc = sdt_sample_prompt_parse_line(json_string_value(item), d, place, 0, &p, error);
        } else if (json_is_object(item)) {
            prompt_defaults(&p, d);
            p.prompt = sdt_strdup("");
            p.negative = sdt_strdup("");
            const char *key;
            json_t *value;
            json_object_foreach(item, key, value)
            {
                dict_value v = {DICT_OTHER, NULL, 0, 0};
                if (json_is_string(value))
                    v = (dict_value){DICT_STRING, json_string_value(value), 0, 0};
                else if (json_is_integer(value))
                    v = (dict_value){DICT_INT, NULL, json_integer_value(value), 0};
                else if (json_is_real(value))
                    v = (dict_value){DICT_NUMBER, NULL, 0, json_real_value(value)};
                if ((rc = apply_dict_key(&p, key, &v, place, error)) != 0)
                    break;
            }
            if (rc == 0)
                prompt_finish(&p);
            else
                sdt_sample_prompt_free(&p);
        } else {
            rc = sdt_set_error(error, "%s: a prompt must be a string or an object", place);
        }
        free(place);
        if (rc == 0 && push(out, &capacity, &p) != 0) {
            sdt_sample_prompt_free(&p);
            rc = sdt_set_error(error, "%s: out of memory", path);
        }
        if (rc != 0)
            break;
    }
done:
    json_decref(root);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int sdt_sample_prompts_load(const char *path, const sdt_sample_defaults *defaults, sdt_sample_prompts *out,
                            char **error)
{
    memset(out, 0, sizeof *out);
    int kind = ends_with(path, ".txt") ? 0 : ends_with(path, ".toml") ? 1 : ends_with(path, ".json") ? 2 : -1;
    if (kind < 0)
        return sdt_set_error(error, "%s: a prompt file must be .txt, .toml or .json", path);
    char *text = NULL, *why = NULL;
    size_t len = 0;
    if (sdt_read_file(path, PROMPT_FILE_MAX_BYTES, &text, &len, &why) != 0) {
        sdt_set_error(error, "%s: %s", path, why);
        free(why);
        return -1;
    }
    int rc = kind == 0   ? load_txt(path, text, defaults, out, error)
             : kind == 1 ? load_toml(path, text, len, defaults, out, error)
                         : load_json(path, text, len, defaults, out, error);
    free(text);
    if (rc != 0)
        sdt_sample_prompts_free(out);
    return rc;
}
