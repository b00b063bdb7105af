/* The dataset summary sd-scripts prints before training (config_util.py's dataset blueprint dump,
 * train_util.py's image counts and bucket table, train_network.py's step counts), as text or JSON. The
 * text keeps kohya's wording so that people who know its logs find the same lines. */

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buckets.h"
#include "dataset.h"
#include "epoch.h"

void sdt_dataset_report_options_from_config(const sdt_config *cfg, sdt_dataset_report_options *out)
{
    memset(out, 0, sizeof *out);
    out->max_train_epochs = (int)sdt_config_int(cfg, "max_train_epochs");
    out->max_train_steps = (int)sdt_config_int(cfg, "max_train_steps");
    out->gradient_accumulation_steps = (int)sdt_config_int(cfg, "gradient_accumulation_steps");
    out->steps_multiple = sdt_config_family(cfg) == SDT_FAMILY_SDXL ? 32 : 64;
}

/* Python's repr of a float: the shortest form that reads back exactly, with ".0" for whole numbers. */
static void py_float(sdt_buf *out, double v)
{
    if (isnan(v)) {
        sdt_buf_puts(out, "nan");
        return;
    }
    if (isinf(v)) {
        sdt_buf_puts(out, v < 0 ? "-inf" : "inf");
        return;
    }
    char text[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, v);
        if (strtod(text, NULL) == v)
            break;
    }
    sdt_buf_puts(out, text);
    if (!strpbrk(text, ".eninf"))
        sdt_buf_puts(out, ".0");
}

static const char *py_bool(bool b) { return b ? "True" : "False"; }

/* kohya prints None for unset strings. */
static const char *py_str(const char *s) { return s && s[0] ? s : "None"; }

typedef struct dataset_stats {
    sdt_bucket_plan plan;
    bool have_plan;
    size_t train_with_repeats, reg_with_repeats;
    size_t batches;
} dataset_stats;

/* Batches per epoch as training forms them: the epoch plan over this bucket plan. */
static void count_batches(const sdt_ds_dataset *set, const sdt_bucket_plan *plan, size_t index,
                          dataset_stats *st, sdt_diag_list *diags)
{
    sdt_epoch_subset *subsets = calloc(set->subset_count ? set->subset_count : 1, sizeof *subsets);
    int *image_bucket = calloc(plan->image_count ? plan->image_count : 1, sizeof *image_bucket);
    sdt_epoch_plan *epochs = NULL;
    char *error = NULL;
    if (!subsets || !image_bucket) {
        sdt_diag_add(diags, SDT_SEV_ERROR, NULL, 0, 0, -1, "out of memory while making batches");
    } else {
        sdt_ds_epoch_subsets(set, subsets);
        size_t k = 0, n = 0;
        for (size_t s = 0; s < set->subset_count; s++)
            for (size_t i = 0; i < set->subsets[s].sample_count; i++, k++)
                if (i < subsets[s].image_count)
                    image_bucket[n++] = plan->images[k].bucket;
        size_t batch = set->batch_size > 0 ? (size_t)set->batch_size : 1;
        if (sdt_epoch_plan_create(subsets, set->subset_count, image_bucket, plan->bucket_count, batch, 0,
                                  &epochs, NULL, &error) == 0) {
            sdt_epoch_summary summary;
            sdt_epoch_plan_summary(epochs, &summary);
            st->batches = summary.batches_per_epoch;
        } else {
            sdt_diag_add(diags, SDT_SEV_ERROR, NULL, 0, 0, -1, "dataset %zu: %s", index,
                         error ? error : "no batches");
        }
    }
    sdt_epoch_plan_free(epochs);
    free(error);
    free(image_bucket);
    free(subsets);
}

static void build_stats(const sdt_ds_dataset *set, const sdt_dataset_report_options *options, size_t index,
                        dataset_stats *st, sdt_diag_list *diags)
{
    memset(st, 0, sizeof *st);
    size_t n = 0;
    for (size_t s = 0; s < set->subset_count; s++) {
        const sdt_ds_subset *sub = &set->subsets[s];
        n += sub->sample_count;
        *(sub->is_reg ? &st->reg_with_repeats : &st->train_with_repeats) +=
            sub->sample_count * (size_t)sub->num_repeats;
    }
    if (n == 0)
        return;
    sdt_bucket_image *images = calloc(n, sizeof *images);
    if (!images) {
        sdt_diag_add(diags, SDT_SEV_ERROR, NULL, 0, 0, -1, "out of memory while making buckets");
        return;
    }
    size_t k = 0;
    for (size_t s = 0; s < set->subset_count; s++) {
        const sdt_ds_subset *sub = &set->subsets[s];
        for (size_t i = 0; i < sub->sample_count; i++, k++)
            images[k] = sdt_ds_bucket_image(sub, i);
    }
    sdt_bucket_settings settings;
    sdt_bucket_settings_default(&settings);
    settings.width = set->resolution[0];
    settings.height = set->resolution[1];
    settings.enable_bucket = set->enable_bucket;
    settings.min_bucket_reso = set->min_bucket_reso;
    settings.max_bucket_reso = set->max_bucket_reso;
    settings.bucket_reso_steps = set->bucket_reso_steps;
    settings.bucket_no_upscale = set->bucket_no_upscale;
    char *warnings = NULL, *error = NULL;
    if (sdt_bucket_plan_build(&settings, options->steps_multiple, images, n, &st->plan, &warnings, &error) ==
        0) {
        st->have_plan = true;
        count_batches(set, &st->plan, index, st, diags);
    } else {
        sdt_diag_add(diags, SDT_SEV_ERROR, NULL, 0, 0, -1, "dataset %zu: %s", index,
                     error ? error : "no buckets");
    }
    /* The adjustment notes are one line each. */
    for (char *line = warnings; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line)
            sdt_diag_add(diags, SDT_SEV_WARNING, NULL, 0, 0, -1, "dataset %zu: %s", index, line);
        line = nl ? nl + 1 : NULL;
    }
    free(warnings);
    free(error);
    free(images);
}

typedef struct totals {
    size_t batches, steps_per_epoch, epochs, total_steps;
} totals;

/* train_network.py: steps per epoch = ceil(batches / gradient accumulation); max_train_epochs, when set,
 * decides the total, else max_train_steps decides the epochs. */
static void compute_totals(size_t batches, const sdt_dataset_report_options *o, totals *t)
{
    size_t accum = o->gradient_accumulation_steps > 0 ? (size_t)o->gradient_accumulation_steps : 1;
    t->batches = batches;
    t->steps_per_epoch = (batches + accum - 1) / accum;
    if (o->max_train_epochs > 0) {
        t->epochs = (size_t)o->max_train_epochs;
        t->total_steps = t->epochs * t->steps_per_epoch;
    } else {
        t->total_steps = o->max_train_steps > 0 ? (size_t)o->max_train_steps : 0;
        t->epochs = t->steps_per_epoch ? (t->total_steps + t->steps_per_epoch - 1) / t->steps_per_epoch : 0;
    }
}

static const char *mode_line(const sdt_dataset *ds)
{
    switch (ds->mode) {
    case SDT_DATASET_FOLDERS: return "Using DreamBooth method.";
    case SDT_DATASET_METADATA: return "Training with captions.";
    case SDT_DATASET_CONFIG_FILE: return "Loading dataset config from";
    }
    return "";
}

static void caption_counts(const sdt_ds_subset *sub, size_t counts[4])
{
    memset(counts, 0, 4 * sizeof counts[0]);
    for (size_t i = 0; i < sub->sample_count; i++)
        counts[sub->samples[i].caption_source]++;
}

static void text_subset(sdt_buf *out, const sdt_ds_subset *sub, size_t j, size_t d)
{
    sdt_buf_printf(out, "\n  [Subset %zu of Dataset %zu]\n", j, d);
    sdt_buf_printf(out, "    image_dir: \"%s\"\n", sub->image_dir);
    sdt_buf_printf(out, "    image_count: %zu\n", sub->sample_count);
    sdt_buf_printf(out, "    num_repeats: %d\n", sub->num_repeats);
    sdt_buf_printf(out, "    shuffle_caption: %s\n", py_bool(sub->shuffle_caption));
    sdt_buf_printf(out, "    keep_tokens: %d\n", sub->keep_tokens);
    sdt_buf_printf(out, "    keep_tokens_separator: %s\n", sub->keep_tokens_separator);
    sdt_buf_printf(out, "    caption_separator: %s\n", sub->caption_separator);
    sdt_buf_printf(out, "    secondary_separator: %s\n", py_str(sub->secondary_separator));
    sdt_buf_printf(out, "    enable_wildcard: %s\n", py_bool(sub->enable_wildcard));
    sdt_buf_puts(out, "    caption_dropout_rate: ");
    py_float(out, sub->caption_dropout_rate);
    sdt_buf_printf(out, "\n    caption_dropout_every_n_epochs: %d\n", sub->caption_dropout_every_n_epochs);
    sdt_buf_puts(out, "    caption_tag_dropout_rate: ");
    py_float(out, sub->caption_tag_dropout_rate);
    sdt_buf_printf(out, "\n    caption_prefix: %s\n", py_str(sub->caption_prefix));
    sdt_buf_printf(out, "    caption_suffix: %s\n", py_str(sub->caption_suffix));
    sdt_buf_printf(out, "    color_aug: %s\n", py_bool(sub->color_aug));
    sdt_buf_printf(out, "    flip_aug: %s\n", py_bool(sub->flip_aug));
    if (sub->has_face_crop_aug_range) {
        sdt_buf_puts(out, "    face_crop_aug_range: (");
        py_float(out, sub->face_crop_aug_range[0]);
        sdt_buf_puts(out, ", ");
        py_float(out, sub->face_crop_aug_range[1]);
        sdt_buf_puts(out, ")\n");
    } else {
        sdt_buf_puts(out, "    face_crop_aug_range: None\n");
    }
    sdt_buf_printf(out, "    random_crop: %s\n", py_bool(sub->random_crop));
    sdt_buf_printf(out, "    token_warmup_min: %d\n", sub->token_warmup_min);
    sdt_buf_puts(out, "    token_warmup_step: ");
    py_float(out, sub->token_warmup_step);
    sdt_buf_printf(out, "\n    alpha_mask: %s\n", py_bool(sub->alpha_mask));
    if (sub->metadata_file) {
        sdt_buf_printf(out, "    metadata_file: %s\n", sub->metadata_file);
    } else {
        sdt_buf_printf(out, "    is_reg: %s\n", py_bool(sub->is_reg));
        sdt_buf_printf(out, "    class_tokens: %s\n", py_str(sub->class_tokens));
        sdt_buf_printf(out, "    caption_extension: %s\n", sub->caption_extension);
    }
    size_t counts[4];
    caption_counts(sub, counts);
    sdt_buf_printf(out, "    captions: %zu from files, %zu class tokens, %zu from metadata, %zu empty\n",
                   counts[SDT_CAPTION_FILE], counts[SDT_CAPTION_CLASS_TOKENS], counts[SDT_CAPTION_METADATA],
                   counts[SDT_CAPTION_NONE]);
}

static void render_text(sdt_buf *out, const sdt_dataset *ds, const dataset_stats *stats, const totals *t,
                        const sdt_dataset_report_options *options, const sdt_diag_list *diags)
{
    if (ds->mode == SDT_DATASET_CONFIG_FILE)
        sdt_buf_printf(out, "%s %s\n", mode_line(ds), ds->config_file ? ds->config_file : "");
    else
        sdt_buf_printf(out, "%s\n", mode_line(ds));
    for (size_t d = 0; d < ds->dataset_count; d++) {
        const sdt_ds_dataset *set = &ds->datasets[d];
        for (size_t s = 0; s < set->subset_count; s++)
            sdt_buf_printf(out, "found directory %s contains %zu image files\n",
                           set->subsets[s].image_dir[0] ? set->subsets[s].image_dir : ".",
                           set->subsets[s].sample_count);
    }
    for (size_t d = 0; d < ds->dataset_count; d++) {
        const sdt_ds_dataset *set = &ds->datasets[d];
        sdt_buf_printf(out, "\n[Dataset %zu]\n", d);
        sdt_buf_printf(out, "  batch_size: %d\n", set->batch_size);
        sdt_buf_printf(out, "  resolution: (%d, %d)\n", set->resolution[0], set->resolution[1]);
        sdt_buf_printf(out, "  enable_bucket: %s\n", py_bool(set->enable_bucket));
        sdt_buf_puts(out, "  network_multiplier: ");
        py_float(out, set->network_multiplier);
        sdt_buf_puts(out, "\n");
        if (set->enable_bucket) {
            sdt_buf_printf(out, "  min_bucket_reso: %d\n", set->min_bucket_reso);
            sdt_buf_printf(out, "  max_bucket_reso: %d\n", set->max_bucket_reso);
            sdt_buf_printf(out, "  bucket_reso_steps: %d\n", set->bucket_reso_steps);
            sdt_buf_printf(out, "  bucket_no_upscale: %s\n", py_bool(set->bucket_no_upscale));
        }
        for (size_t s = 0; s < set->subset_count; s++)
            text_subset(out, &set->subsets[s], s, d);
    }
    for (size_t d = 0; d < ds->dataset_count; d++) {
        const dataset_stats *st = &stats[d];
        sdt_buf_printf(out, "\n[Dataset %zu]\n", d);
        sdt_buf_printf(out, "%zu train images with repeats.\n", st->train_with_repeats);
        if (st->reg_with_repeats)
            sdt_buf_printf(out, "%zu reg images with repeats.\n", st->reg_with_repeats);
        else
            sdt_buf_puts(out, "0 reg images with repeats.\nno regularization images\n");
        if (st->have_plan) {
            char *table = sdt_bucket_plan_table(&st->plan);
            if (table)
                sdt_buf_puts(out, table);
            free(table);
        }
    }
    sdt_buf_printf(out, "\n  num train images * repeats: %zu\n", sdt_dataset_images_with_repeats(ds, false));
    sdt_buf_printf(out, "  num reg images: %zu\n", sdt_dataset_image_count(ds, true));
    sdt_buf_printf(out, "  num batches per epoch: %zu\n", t->batches);
    sdt_buf_printf(out, "  num epochs: %zu\n", t->epochs);
    sdt_buf_printf(out, "  batch size per device: %d\n", ds->dataset_count ? ds->datasets[0].batch_size : 0);
    sdt_buf_printf(out, "  gradient accumulation steps: %d\n",
                   options->gradient_accumulation_steps > 0 ? options->gradient_accumulation_steps : 1);
    sdt_buf_printf(out, "  total optimization steps: %zu\n", t->total_steps);
    if (diags->count) {
        sdt_buf_puts(out, "\nproblems:\n");
        for (size_t i = 0; i < diags->count; i++) {
            const sdt_diag *g = &diags->items[i];
            const char *kind = g->severity == SDT_SEV_ERROR ? "error" : "warning";
            if (g->file[0] && g->line > 0)
                sdt_buf_printf(out, "%s:%d:%d: %s: %s\n", g->file, g->line, g->col > 0 ? g->col : 1, kind,
                               g->message);
            else if (g->file[0])
                sdt_buf_printf(out, "%s: %s: %s\n", g->file, kind, g->message);
            else
                sdt_buf_printf(out, "%s: %s\n", kind, g->message);
        }
    }
    if (sdt_dataset_skipped_total(ds)) {
        sdt_buf_puts(out, "\n");
        sdt_dataset_skip_summary(ds, out);
        sdt_buf_puts(out, "\n");
    }
    sdt_buf_printf(out, "\n%zu error%s, %zu warning%s\n", sdt_diag_count(diags, SDT_SEV_ERROR),
                   sdt_diag_count(diags, SDT_SEV_ERROR) == 1 ? "" : "s",
                   sdt_diag_count(diags, SDT_SEV_WARNING),
                   sdt_diag_count(diags, SDT_SEV_WARNING) == 1 ? "" : "s");
}

static json_t *jstr_or_null(const char *s) { return s && s[0] ? json_string(s) : json_null(); }

/* Keys of the "skipped" object, indexed by sdt_skip_reason. */
static const char *const skip_keys[SDT_SKIP_REASON_COUNT] = {
    "corrupt_image", "empty_file",       "not_image",     "unsupported_format",
    "unreadable",    "caption_not_utf8", "caption_empty", "image_not_found",
};

static json_t *json_subset(const sdt_ds_subset *sub)
{
    json_t *o = json_object();
    json_object_set_new(o, "image_dir", json_string(sub->image_dir));
    json_object_set_new(o, "metadata_file", jstr_or_null(sub->metadata_file));
    json_object_set_new(o, "image_count", json_integer((json_int_t)sub->sample_count));
    json_object_set_new(o, "num_repeats", json_integer(sub->num_repeats));
    json_object_set_new(o, "is_reg", json_boolean(sub->is_reg));
    json_object_set_new(o, "class_tokens", jstr_or_null(sub->class_tokens));
    json_object_set_new(o, "caption_extension", json_string(sub->caption_extension));
    json_object_set_new(o, "shuffle_caption", json_boolean(sub->shuffle_caption));
    json_object_set_new(o, "keep_tokens", json_integer(sub->keep_tokens));
    json_object_set_new(o, "keep_tokens_separator", json_string(sub->keep_tokens_separator));
    json_object_set_new(o, "secondary_separator", jstr_or_null(sub->secondary_separator));
    json_object_set_new(o, "caption_separator", json_string(sub->caption_separator));
    json_object_set_new(o, "enable_wildcard", json_boolean(sub->enable_wildcard));
    json_object_set_new(o, "caption_prefix", jstr_or_null(sub->caption_prefix));
    json_object_set_new(o, "caption_suffix", jstr_or_null(sub->caption_suffix));
    json_object_set_new(o, "caption_dropout_rate", json_real(sub->caption_dropout_rate));
    json_object_set_new(o, "caption_dropout_every_n_epochs",
                        json_integer(sub->caption_dropout_every_n_epochs));
    json_object_set_new(o, "caption_tag_dropout_rate", json_real(sub->caption_tag_dropout_rate));
    json_object_set_new(o, "token_warmup_min", json_integer(sub->token_warmup_min));
    json_object_set_new(o, "token_warmup_step", json_real(sub->token_warmup_step));
    json_object_set_new(o, "color_aug", json_boolean(sub->color_aug));
    json_object_set_new(o, "flip_aug", json_boolean(sub->flip_aug));
    json_object_set_new(o, "random_crop", json_boolean(sub->random_crop));
    json_object_set_new(o, "face_crop_aug_range",
                        sub->has_face_crop_aug_range
                            ? json_pack("[ff]", sub->face_crop_aug_range[0], sub->face_crop_aug_range[1])
                            : json_null());
    json_object_set_new(o, "alpha_mask", json_boolean(sub->alpha_mask));
    size_t counts[4];
    caption_counts(sub, counts);
    json_object_set_new(o, "captions",
                        json_pack("{sIsIsIsI}", "file", (json_int_t)counts[SDT_CAPTION_FILE], "class_tokens",
                                  (json_int_t)counts[SDT_CAPTION_CLASS_TOKENS], "metadata",
                                  (json_int_t)counts[SDT_CAPTION_METADATA], "none",
                                  (json_int_t)counts[SDT_CAPTION_NONE]));
    return o;
}

static char *render_json(const sdt_dataset *ds, const dataset_stats *stats, const totals *t,
                         const sdt_diag_list *diags)
{
    static const char *const modes[] = {"folders", "metadata", "dataset_config"};
    json_t *root = json_object();
    json_object_set_new(root, "mode", json_string(modes[ds->mode]));
    json_object_set_new(root, "dataset_config", jstr_or_null(ds->config_file));
    json_t *sets = json_array();
    for (size_t d = 0; d < ds->dataset_count; d++) {
        const sdt_ds_dataset *set = &ds->datasets[d];
        const dataset_stats *st = &stats[d];
        json_t *o = json_object();
        json_object_set_new(o, "finetune", json_boolean(set->finetune));
        json_object_set_new(o, "batch_size", json_integer(set->batch_size));
        json_object_set_new(o, "resolution", json_pack("[ii]", set->resolution[0], set->resolution[1]));
        json_object_set_new(o, "enable_bucket", json_boolean(set->enable_bucket));
        json_object_set_new(o, "min_bucket_reso", json_integer(set->min_bucket_reso));
        json_object_set_new(o, "max_bucket_reso", json_integer(set->max_bucket_reso));
        json_object_set_new(o, "bucket_reso_steps", json_integer(set->bucket_reso_steps));
        json_object_set_new(o, "bucket_no_upscale", json_boolean(set->bucket_no_upscale));
        json_object_set_new(o, "network_multiplier", json_real(set->network_multiplier));
        json_t *subs = json_array();
        for (size_t s = 0; s < set->subset_count; s++)
            json_array_append_new(subs, json_subset(&set->subsets[s]));
        json_object_set_new(o, "subsets", subs);
        json_object_set_new(o, "train_images_with_repeats", json_integer((json_int_t)st->train_with_repeats));
        json_object_set_new(o, "reg_images_with_repeats", json_integer((json_int_t)st->reg_with_repeats));
        json_t *buckets = json_array();
        for (size_t b = 0; st->have_plan && b < st->plan.bucket_count; b++)
            json_array_append_new(buckets, json_pack("{sisisIsI}", "width", st->plan.buckets[b].width,
                                                     "height", st->plan.buckets[b].height, "count",
                                                     (json_int_t)st->plan.buckets[b].samples, "images",
                                                     (json_int_t)st->plan.buckets[b].images));
        json_object_set_new(o, "buckets", buckets);
        json_object_set_new(o, "mean_ar_error",
                            st->have_plan ? json_real(st->plan.mean_ar_error) : json_null());
        json_object_set_new(o, "batches_per_epoch", json_integer((json_int_t)st->batches));
        json_array_append_new(sets, o);
    }
    json_object_set_new(root, "datasets", sets);
    json_object_set_new(root, "train_images", json_integer((json_int_t)sdt_dataset_image_count(ds, false)));
    json_object_set_new(root, "train_images_with_repeats",
                        json_integer((json_int_t)sdt_dataset_images_with_repeats(ds, false)));
    json_object_set_new(root, "reg_images", json_integer((json_int_t)sdt_dataset_image_count(ds, true)));
    json_object_set_new(root, "reg_images_with_repeats",
                        json_integer((json_int_t)sdt_dataset_images_with_repeats(ds, true)));
    json_object_set_new(root, "batches_per_epoch", json_integer((json_int_t)t->batches));
    json_object_set_new(root, "steps_per_epoch", json_integer((json_int_t)t->steps_per_epoch));
    json_object_set_new(root, "epochs", json_integer((json_int_t)t->epochs));
    json_object_set_new(root, "total_steps", json_integer((json_int_t)t->total_steps));
    json_t *skipped = json_object();
    json_object_set_new(skipped, "total", json_integer((json_int_t)sdt_dataset_skipped_total(ds)));
    for (int r = 0; r < SDT_SKIP_REASON_COUNT; r++)
        json_object_set_new(skipped, skip_keys[r], json_integer((json_int_t)ds->skipped[r]));
    json_object_set_new(root, "skipped", skipped);
    sdt_buf summary;
    sdt_buf_init(&summary);
    sdt_dataset_skip_summary(ds, &summary);
    json_object_set_new(root, "skip_summary", json_string(summary.data ? summary.data : ""));
    sdt_buf_free(&summary);
    json_t *problems = json_array();
    for (size_t i = 0; i < diags->count; i++) {
        const sdt_diag *g = &diags->items[i];
        json_array_append_new(problems,
                              json_pack("{sssssisiss}", "severity",
                                        g->severity == SDT_SEV_ERROR ? "error" : "warning", "file", g->file,
                                        "line", g->line, "col", g->col, "message", g->message));
    }
    json_object_set_new(root, "problems", problems);
    json_object_set_new(root, "errors", json_integer((json_int_t)sdt_diag_count(diags, SDT_SEV_ERROR)));
    json_object_set_new(root, "warnings", json_integer((json_int_t)sdt_diag_count(diags, SDT_SEV_WARNING)));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text)
        return NULL;
    /* jansson's buffer comes from its own allocator; hand out one from malloc with a final newline. */
    char *copy = sdt_format("%s\n", text);
    free(text);
    return copy;
}

char *sdt_dataset_report(const sdt_dataset *ds, const sdt_dataset_report_options *options, bool json,
                         sdt_diag_list *diags)
{
    dataset_stats *stats = calloc(ds->dataset_count ? ds->dataset_count : 1, sizeof *stats);
    if (!stats)
        return NULL;
    size_t batches = 0;
    for (size_t d = 0; d < ds->dataset_count; d++) {
        build_stats(&ds->datasets[d], options, d, &stats[d], diags);
        batches += stats[d].batches;
    }
    totals t;
    compute_totals(batches, options, &t);
    char *out = NULL;
    if (json) {
        out = render_json(ds, stats, &t, diags);
    } else {
        sdt_buf buf;
        sdt_buf_init(&buf);
        render_text(&buf, ds, stats, &t, options, diags);
        out = sdt_buf_take(&buf);
    }
    for (size_t d = 0; d < ds->dataset_count; d++)
        if (stats[d].have_plan)
            sdt_bucket_plan_free(&stats[d].plan);
    free(stats);
    return out;
}

sdt_bucket_image sdt_ds_bucket_image(const sdt_ds_subset *sub, size_t i)
{
    sdt_bucket_image b = {
        .name = sub->samples[i].path,
        .width = sub->samples[i].width,
        .height = sub->samples[i].height,
        .repeats = sub->effective_repeats ? sub->effective_repeats[i] : sub->num_repeats,
        .random_crop = sub->random_crop,
        .face_crop = sub->has_face_crop_aug_range,
    };
    return b;
}
