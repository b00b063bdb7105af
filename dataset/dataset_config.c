/* kohya's --dataset_config: a TOML (or JSON) file of [general], [[datasets]] and [[datasets.subsets]].
 * Keys and their levels follow sd-scripts' library/config_util.py (ConfigSanitizer): dataset keys may be
 * written in [general] and [[datasets]], subset keys at every level, and subset-only keys (image_dir,
 * is_reg, metadata_file, ...) only in a subset. The lower level wins; the sdtune config's own settings are
 * the fallback. Unknown keys are errors (kohya: "extra keys not allowed"), with a did-you-mean. The TOML is
 * read by the project's TOML reader (src/config); JSON by jansson, converted to the same tree. */

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataset.h"
#include "dataset_toml.h"

typedef enum key_kind {
    K_BOOL,
    K_INT,
    K_FLOAT,
    K_STRING,
    K_RESOLUTION, /* an int or [width, height] */
    K_RANGE,      /* [lo, hi] numbers */
    K_TABLE,      /* custom_attributes: accepted, not used by the scanner */
} key_kind;

/* Where a key may be written. */
enum {
    L_DATASET = 1, /* [general] and [[datasets]] */
    L_SUBSET = 2,  /* every level (kohya's "ascendable" subset keys) */
    L_ONLY_SUB = 4 /* [[datasets.subsets]] only */
};

typedef struct key_def {
    const char *name;
    key_kind kind;
    int level;
} key_def;

static const key_def keys[] = {
    /* dataset keys */
    {"batch_size", K_INT, L_DATASET},
    {"resolution", K_RESOLUTION, L_DATASET},
    {"enable_bucket", K_BOOL, L_DATASET},
    {"min_bucket_reso", K_INT, L_DATASET},
    {"max_bucket_reso", K_INT, L_DATASET},
    {"bucket_reso_steps", K_INT, L_DATASET},
    {"bucket_no_upscale", K_BOOL, L_DATASET},
    {"network_multiplier", K_FLOAT, L_DATASET},
    {"validation_seed", K_INT, L_DATASET},
    {"validation_split", K_FLOAT, L_DATASET},
    /* subset keys, allowed at every level */
    {"num_repeats", K_INT, L_SUBSET},
    {"shuffle_caption", K_BOOL, L_SUBSET},
    {"keep_tokens", K_INT, L_SUBSET},
    {"keep_tokens_separator", K_STRING, L_SUBSET},
    {"secondary_separator", K_STRING, L_SUBSET},
    {"caption_separator", K_STRING, L_SUBSET},
    {"enable_wildcard", K_BOOL, L_SUBSET},
    {"color_aug", K_BOOL, L_SUBSET},
    {"flip_aug", K_BOOL, L_SUBSET},
    {"random_crop", K_BOOL, L_SUBSET},
    {"face_crop_aug_range", K_RANGE, L_SUBSET},
    {"token_warmup_min", K_INT, L_SUBSET},
    {"token_warmup_step", K_FLOAT, L_SUBSET},
    {"caption_prefix", K_STRING, L_SUBSET},
    {"caption_suffix", K_STRING, L_SUBSET},
    {"custom_attributes", K_TABLE, L_SUBSET},
    {"resize_interpolation", K_STRING, L_SUBSET | L_DATASET},
    {"caption_dropout_rate", K_FLOAT, L_SUBSET},
    {"caption_dropout_every_n_epochs", K_INT, L_SUBSET},
    {"caption_tag_dropout_rate", K_FLOAT, L_SUBSET},
    /* DreamBooth keys kohya lets [general] and [[datasets]] set too */
    {"class_tokens", K_STRING, L_SUBSET},
    {"caption_extension", K_STRING, L_SUBSET},
    {"cache_info", K_BOOL, L_SUBSET},
    /* subset-only keys */
    {"image_dir", K_STRING, L_ONLY_SUB},
    {"is_reg", K_BOOL, L_ONLY_SUB},
    {"alpha_mask", K_BOOL, L_ONLY_SUB},
    {"metadata_file", K_STRING, L_ONLY_SUB},
    {"conditioning_data_dir", K_STRING, L_ONLY_SUB},
};
#define KEY_COUNT (sizeof keys / sizeof keys[0])

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static const char *key_candidate(const void *ctx, size_t i)
{
    (void)ctx;
    return keys[i].name;
}

static const char *kind_text(key_kind kind)
{
    switch (kind) {
    case K_BOOL: return "true or false";
    case K_INT: return "an integer";
    case K_FLOAT: return "a number";
    case K_STRING: return "a string";
    case K_RESOLUTION: return "an integer or [width, height]";
    case K_RANGE: return "[lo, hi] numbers";
    case K_TABLE: return "a table";
    }
    return "?";
}

static bool is_number(const sdt_toml_node *n) { return n->kind == SDT_TOML_INT || n->kind == SDT_TOML_FLOAT; }

static double number(const sdt_toml_node *n) { return n->kind == SDT_TOML_INT ? (double)n->i : n->f; }

static bool type_ok(key_kind kind, const sdt_toml_node *n)
{
    switch (kind) {
    case K_BOOL: return n->kind == SDT_TOML_BOOL;
    case K_INT: return n->kind == SDT_TOML_INT;
    case K_FLOAT: return is_number(n);
    case K_STRING: return n->kind == SDT_TOML_STRING;
    case K_RESOLUTION:
        if (n->kind == SDT_TOML_INT)
            return n->i > 0;
        return n->kind == SDT_TOML_ARRAY && n->count == 2 && n->children[0].kind == SDT_TOML_INT &&
               n->children[1].kind == SDT_TOML_INT && n->children[0].i > 0 && n->children[1].i > 0;
    case K_RANGE:
        return n->kind == SDT_TOML_ARRAY && n->count == 2 && is_number(&n->children[0]) &&
               is_number(&n->children[1]);
    case K_TABLE: return n->kind == SDT_TOML_TABLE;
    }
    return false;
}

typedef struct load_ctx {
    const char *file;
    sdt_diag_list *diags;
    int errors;
} load_ctx;

static void error_at(load_ctx *ctx, const sdt_toml_node *n, const char *fmt, const char *a, const char *b)
{
    ctx->errors++;
    sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, n ? n->key_line ? n->key_line : n->line : 0,
                 n ? n->key_col ? n->key_col : n->col : 0, -1, fmt, a, b);
}

/* Checks the members of one table against the keys allowed at its level. */
static void check_table(load_ctx *ctx, const sdt_toml_node *table, int allowed, const char *where)
{
    for (size_t m = 0; m < table->count; m++) {
        const sdt_toml_node *n = &table->children[m];
        const key_def *k = find_key(n->key);
        if (!k) {
            int close = sdt_closest_match(n->key, key_candidate, NULL, KEY_COUNT);
            ctx->errors++;
            if (close >= 0)
                sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, n->key_line, n->key_col, -1,
                             "unknown key '%s' in %s (extra keys not allowed); did you mean '%s'?", n->key,
                             where, keys[close].name);
            else
                sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, n->key_line, n->key_col, -1,
                             "unknown key '%s' in %s (extra keys not allowed)", n->key, where);
            continue;
        }
        if (!(k->level & allowed)) {
            const char *place =
                k->level & L_ONLY_SUB ? "only in [[datasets.subsets]]" : "only in [general] or [[datasets]]";
            ctx->errors++;
            sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, n->key_line, n->key_col, -1,
                         "'%s' is not allowed in %s: it belongs %s", n->key, where, place);
            continue;
        }
        if (!type_ok(k->kind, n)) {
            ctx->errors++;
            sdt_diag_add(ctx->diags, SDT_SEV_ERROR, ctx->file, n->line, n->col, -1, "%s: expected %s, got %s",
                         n->key, kind_text(k->kind), sdt_toml_kind_name(n->kind));
        }
    }
}

static const sdt_toml_node *member(const sdt_toml_node *table, const char *key)
{
    if (!table)
        return NULL;
    for (size_t m = 0; m < table->count; m++)
        if (strcmp(table->children[m].key, key) == 0)
            return &table->children[m];
    return NULL;
}

static int set_string(char **field, const sdt_toml_node *n)
{
    char *copy = sdt_strndup(n->s, n->s_len);
    if (!copy)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

/* Applies the well-typed dataset keys of table (checked before) onto d. */
static int apply_dataset(sdt_ds_dataset *d, const sdt_toml_node *table)
{
    if (!table)
        return 0;
    for (size_t m = 0; m < table->count; m++) {
        const sdt_toml_node *n = &table->children[m];
        const key_def *k = find_key(n->key);
        if (!k || !(k->level & L_DATASET) || !type_ok(k->kind, n))
            continue;
        const char *name = k->name;
        if (strcmp(name, "batch_size") == 0)
            d->batch_size = (int)n->i;
        else if (strcmp(name, "resolution") == 0) {
            d->resolution[0] = (int)(n->kind == SDT_TOML_INT ? n->i : n->children[0].i);
            d->resolution[1] = (int)(n->kind == SDT_TOML_INT ? n->i : n->children[1].i);
        } else if (strcmp(name, "enable_bucket") == 0)
            d->enable_bucket = n->b;
        else if (strcmp(name, "min_bucket_reso") == 0)
            d->min_bucket_reso = (int)n->i;
        else if (strcmp(name, "max_bucket_reso") == 0)
            d->max_bucket_reso = (int)n->i;
        else if (strcmp(name, "bucket_reso_steps") == 0)
            d->bucket_reso_steps = (int)n->i;
        else if (strcmp(name, "bucket_no_upscale") == 0)
            d->bucket_no_upscale = n->b;
        else if (strcmp(name, "network_multiplier") == 0)
            d->network_multiplier = number(n);
        else if (strcmp(name, "validation_seed") == 0)
            d->validation_seed = n->i;
        else if (strcmp(name, "validation_split") == 0)
            d->validation_split = number(n);
        else if (strcmp(name, "resize_interpolation") == 0 && set_string(&d->resize_interpolation, n) != 0)
            return -1;
    }
    return 0;
}

/* Applies the well-typed subset keys of table onto sub. */
static int apply_subset(sdt_ds_subset *sub, const sdt_toml_node *table)
{
    if (!table)
        return 0;
    for (size_t m = 0; m < table->count; m++) {
        const sdt_toml_node *n = &table->children[m];
        const key_def *k = find_key(n->key);
        if (!k || !(k->level & (L_SUBSET | L_ONLY_SUB)) || !type_ok(k->kind, n))
            continue;
        const char *name = k->name;
        int rc = 0;
        if (strcmp(name, "num_repeats") == 0)
            sub->num_repeats = (int)n->i;
        else if (strcmp(name, "shuffle_caption") == 0)
            sub->shuffle_caption = n->b;
        else if (strcmp(name, "keep_tokens") == 0)
            sub->keep_tokens = (int)n->i;
        else if (strcmp(name, "keep_tokens_separator") == 0)
            rc = set_string(&sub->keep_tokens_separator, n);
        else if (strcmp(name, "secondary_separator") == 0)
            rc = set_string(&sub->secondary_separator, n);
        else if (strcmp(name, "caption_separator") == 0)
            rc = set_string(&sub->caption_separator, n);
        else if (strcmp(name, "enable_wildcard") == 0)
            sub->enable_wildcard = n->b;
        else if (strcmp(name, "color_aug") == 0)
            sub->color_aug = n->b;
        else if (strcmp(name, "flip_aug") == 0)
            sub->flip_aug = n->b;
        else if (strcmp(name, "random_crop") == 0)
            sub->random_crop = n->b;
        else if (strcmp(name, "face_crop_aug_range") == 0) {
            sub->has_face_crop_aug_range = true;
            sub->face_crop_aug_range[0] = number(&n->children[0]);
            sub->face_crop_aug_range[1] = number(&n->children[1]);
        } else if (strcmp(name, "token_warmup_min") == 0)
            sub->token_warmup_min = (int)n->i;
        else if (strcmp(name, "token_warmup_step") == 0)
            sub->token_warmup_step = number(n);
        else if (strcmp(name, "caption_prefix") == 0)
            rc = set_string(&sub->caption_prefix, n);
        else if (strcmp(name, "caption_suffix") == 0)
            rc = set_string(&sub->caption_suffix, n);
        else if (strcmp(name, "resize_interpolation") == 0)
            rc = set_string(&sub->resize_interpolation, n);
        else if (strcmp(name, "caption_dropout_rate") == 0)
            sub->caption_dropout_rate = number(n);
        else if (strcmp(name, "caption_dropout_every_n_epochs") == 0)
            sub->caption_dropout_every_n_epochs = (int)n->i;
        else if (strcmp(name, "caption_tag_dropout_rate") == 0)
            sub->caption_tag_dropout_rate = number(n);
        else if (strcmp(name, "class_tokens") == 0)
            rc = set_string(&sub->class_tokens, n);
        else if (strcmp(name, "caption_extension") == 0)
            rc = set_string(&sub->caption_extension, n);
        else if (strcmp(name, "cache_info") == 0)
            sub->cache_info = n->b;
        else if (strcmp(name, "image_dir") == 0)
            rc = set_string(&sub->image_dir, n);
        else if (strcmp(name, "is_reg") == 0)
            sub->is_reg = n->b;
        else if (strcmp(name, "alpha_mask") == 0)
            sub->alpha_mask = n->b;
        else if (strcmp(name, "metadata_file") == 0)
            rc = set_string(&sub->metadata_file, n);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- JSON -> the TOML tree ---- */

static int json_to_node(const json_t *j, const char *key, sdt_toml_node *out)
{
    memset(out, 0, sizeof *out);
    if (key && !(out->key = sdt_strdup(key)))
        return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        out->kind = SDT_TOML_TABLE;
        size_t n = json_object_size(j);
        out->children = calloc(n ? n : 1, sizeof *out->children);
        if (!out->children)
            return -1;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (json_to_node(v, k, &out->children[out->count++]) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        out->kind = SDT_TOML_ARRAY;
        size_t n = json_array_size(j);
        out->children = calloc(n ? n : 1, sizeof *out->children);
        if (!out->children)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (json_to_node(json_array_get(j, i), NULL, &out->children[out->count++]) != 0)
                return -1;
        return 0;
    }
    case JSON_STRING:
        out->kind = SDT_TOML_STRING;
        out->s_len = json_string_length(j);
        out->s = sdt_strndup(json_string_value(j), out->s_len);
        return out->s ? 0 : -1;
    case JSON_INTEGER:
        out->kind = SDT_TOML_INT;
        out->i = json_integer_value(j);
        return 0;
    case JSON_REAL:
        out->kind = SDT_TOML_FLOAT;
        out->f = json_real_value(j);
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        out->kind = SDT_TOML_BOOL;
        out->b = json_is_true(j);
        return 0;
    case JSON_NULL:
        /* No TOML counterpart: a kind no key accepts, so it is reported as a wrong type. */
        out->kind = SDT_TOML_DATETIME;
        return 0;
    }
    return 0;
}

static sdt_toml_node *parse_file(const char *path, sdt_diag_list *diags)
{
    size_t n = strlen(path);
    if (n > 5 && strcasecmp(path + n - 5, ".json") == 0) {
        json_error_t jerr;
        json_t *root = json_load_file(path, 0, &jerr);
        if (!root) {
            sdt_diag_add(diags, SDT_SEV_ERROR, path, jerr.line > 0 ? jerr.line : 0,
                         jerr.column > 0 ? jerr.column : 0, -1, "cannot read dataset config: %s", jerr.text);
            return NULL;
        }
        sdt_toml_node *tree = NULL;
        if (!json_is_object(root)) {
            sdt_diag_add(diags, SDT_SEV_ERROR, path, 1, 1, -1, "the dataset config must be a JSON object");
        } else if (!(tree = calloc(1, sizeof *tree)) || json_to_node(root, NULL, tree) != 0) {
            sdt_diag_add(diags, SDT_SEV_ERROR, path, 0, 0, -1, "out of memory");
            sdt_toml_free(tree);
            tree = NULL;
        }
        json_decref(root);
        return tree;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        sdt_diag_add(diags, SDT_SEV_ERROR, path, 0, 0, -1, "cannot open dataset config: %s", strerror(errno));
        return NULL;
    }
    sdt_buf text;
    sdt_buf_init(&text);
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && text.len < SDT_CONFIG_MAX_BYTES)
        sdt_buf_append(&text, chunk, got);
    fclose(f);
    if (text.failed || text.len >= SDT_CONFIG_MAX_BYTES) {
        sdt_diag_add(diags, SDT_SEV_ERROR, path, 0, 0, -1, "the dataset config is too large or unreadable");
        sdt_buf_free(&text);
        return NULL;
    }
    sdt_toml_node *root = NULL;
    int rc = sdt_toml_parse(text.data ? text.data : "", text.len, path, &root, diags);
    sdt_buf_free(&text);
    return rc == 0 ? root : NULL;
}

int sdt_ds_load_config_file(sdt_dataset *ds, const char *path, const sdt_config *cfg,
                            const sdt_dataset_options *options, sdt_diag_list *diags)
{
    sdt_toml_node *root = parse_file(path, diags);
    if (!root)
        return 0;
    load_ctx ctx = {path, diags, 0};
    const sdt_toml_node *general = NULL, *datasets = NULL;
    for (size_t m = 0; m < root->count; m++) {
        const sdt_toml_node *n = &root->children[m];
        if (strcmp(n->key, "general") == 0 && n->kind == SDT_TOML_TABLE)
            general = n;
        else if (strcmp(n->key, "datasets") == 0 && n->kind == SDT_TOML_ARRAY)
            datasets = n;
        else if (strcmp(n->key, "general") == 0 || strcmp(n->key, "datasets") == 0)
            error_at(&ctx, n, "'%s' must be %s", n->key,
                     strcmp(n->key, "general") == 0 ? "a table ([general])"
                                                    : "an array of tables ([[datasets]])");
        else
            error_at(&ctx, n, "unknown top-level key '%s'%s (extra keys not allowed)", n->key,
                     find_key(n->key) ? "; put it under [general]" : "");
    }
    if (general)
        check_table(&ctx, general, L_DATASET | L_SUBSET, "[general]");
    if (!datasets || datasets->count == 0)
        error_at(&ctx, datasets, "%s%s", "the dataset config has no [[datasets]]", "");
    for (size_t d = 0; datasets && d < datasets->count; d++) {
        const sdt_toml_node *dn = &datasets->children[d];
        if (dn->kind != SDT_TOML_TABLE) {
            error_at(&ctx, dn, "%s%s", "each entry of datasets must be a table", "");
            continue;
        }
        const sdt_toml_node *subsets = NULL;
        sdt_toml_node copy = *dn;
        for (size_t m = 0; m < dn->count; m++)
            if (strcmp(dn->children[m].key, "subsets") == 0)
                subsets = &dn->children[m];
        /* Check the dataset's keys without its subsets array. */
        sdt_toml_node *members = calloc(dn->count ? dn->count : 1, sizeof *members);
        if (!members) {
            sdt_toml_free(root);
            return -1;
        }
        copy.count = 0;
        for (size_t m = 0; m < dn->count; m++)
            if (&dn->children[m] != subsets)
                members[copy.count++] = dn->children[m];
        copy.children = members;
        check_table(&ctx, &copy, L_DATASET | L_SUBSET, "[[datasets]]");
        free(members);
        if (!subsets || subsets->kind != SDT_TOML_ARRAY || subsets->count == 0) {
            error_at(&ctx, subsets ? subsets : dn, "%s%s",
                     "a dataset needs at least one [[datasets.subsets]]", "");
            continue;
        }
        for (size_t s = 0; s < subsets->count; s++) {
            const sdt_toml_node *sn = &subsets->children[s];
            if (sn->kind != SDT_TOML_TABLE)
                error_at(&ctx, sn, "%s%s", "each entry of subsets must be a table", "");
            else
                check_table(&ctx, sn, L_SUBSET | L_ONLY_SUB, "[[datasets.subsets]]");
        }
    }
    if (ctx.errors) {
        /* Like kohya, a config with errors is not used at all. */
        sdt_toml_free(root);
        return 0;
    }
    int status = 0;
    for (size_t d = 0; d < datasets->count && status == 0; d++) {
        const sdt_toml_node *dn = &datasets->children[d];
        const sdt_toml_node *subsets = member(dn, "subsets");
        sdt_ds_dataset *set = sdt_ds_add_dataset(ds, cfg);
        if (!set || apply_dataset(set, general) != 0 || apply_dataset(set, dn) != 0) {
            status = -1;
            break;
        }
        size_t finetune = 0;
        for (size_t s = 0; s < subsets->count; s++)
            if (member(&subsets->children[s], "metadata_file"))
                finetune++;
        if (finetune != 0 && finetune != subsets->count) {
            error_at(&ctx, dn, "%s%s",
                     "a dataset mixes DreamBooth subsets (image_dir) and fine-tune subsets (metadata_file)",
                     "");
            continue;
        }
        set->finetune = finetune != 0;
        for (size_t s = 0; s < subsets->count && status == 0; s++) {
            const sdt_toml_node *sn = &subsets->children[s];
            const sdt_toml_node *dir = member(sn, "image_dir");
            if (!set->finetune && !dir) {
                error_at(&ctx, sn, "%s%s", "a DreamBooth subset needs image_dir", "");
                continue;
            }
            bool duplicate = false;
            for (size_t o = 0; dir && o < set->subset_count; o++)
                if (strlen(set->subsets[o].image_dir) == dir->s_len &&
                    memcmp(set->subsets[o].image_dir, dir->s, dir->s_len) == 0)
                    duplicate = true;
            if (duplicate) {
                sdt_diag_add(diags, SDT_SEV_WARNING, path, dir->line, dir->col, -1,
                             "image_dir '%s' appears twice in one dataset; the later subset is ignored",
                             dir->s);
                continue;
            }
            sdt_ds_subset *sub = sdt_ds_add_subset(set, cfg);
            if (!sub || apply_subset(sub, general) != 0 || apply_subset(sub, dn) != 0 ||
                apply_subset(sub, sn) != 0) {
                status = -1;
                break;
            }
            if (set->finetune)
                status = sdt_ds_scan_metadata_subset(ds, sub, options, diags);
            else
                status = sdt_ds_scan_folder_subset(ds, sub, options, diags);
        }
    }
    sdt_toml_free(root);
    return status;
}
