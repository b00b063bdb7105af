/* The training data of a run (trainer_data.h). */
#include <stdlib.h>
#include <string.h>

#include "buckets.h"
#include "dataset.h"
#include "trainer_data.h"

static void caption_options_of(const sdt_ds_subset *s, sdt_caption_options *o)
{
    sdt_caption_options_default(o);
    o->shuffle_caption = s->shuffle_caption;
    o->keep_tokens = s->keep_tokens;
    o->keep_tokens_separator = s->keep_tokens_separator;
    o->caption_separator = s->caption_separator;
    o->secondary_separator = s->secondary_separator;
    o->caption_prefix = s->caption_prefix;
    o->caption_suffix = s->caption_suffix;
    o->caption_dropout_rate = s->caption_dropout_rate;
    o->caption_dropout_every_n_epochs = s->caption_dropout_every_n_epochs;
    o->caption_tag_dropout_rate = s->caption_tag_dropout_rate;
    o->token_warmup_min = s->token_warmup_min;
    o->token_warmup_step = s->token_warmup_step;
    o->enable_wildcard = s->enable_wildcard;
}

static int caption_options_static(const sdt_caption_options *o)
{
    return !o->shuffle_caption && o->caption_dropout_rate == 0 && o->caption_dropout_every_n_epochs == 0 &&
           o->caption_tag_dropout_rate == 0 && !o->enable_wildcard && o->token_warmup_step == 0;
}

static char *dirs_json(const sdt_ds_dataset *set, int reg)
{
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_puts(&b, "{");
    int first = 1;
    for (size_t s = 0; s < set->subset_count; s++) {
        const sdt_ds_subset *sub = &set->subsets[s];
        if (sub->is_reg != (reg != 0))
            continue;
        const char *dir = strrchr(sub->image_dir, '/');
        dir = dir && dir[1] ? dir + 1 : sub->image_dir;
        sdt_buf_puts(&b, first ? "\"" : ", \"");
        for (const char *c = dir; *c; c++) {
            if (*c == '"' || *c == '\\')
                sdt_buf_puts(&b, "\\");
            if ((unsigned char)*c >= 0x20)
                sdt_buf_append(&b, c, 1);
        }
        sdt_buf_printf(&b, "\": {\"n_repeats\": %d, \"img_count\": %zu}", sub->num_repeats,
                       sub->sample_count);
        first = 0;
    }
    sdt_buf_puts(&b, "}");
    return sdt_buf_take(&b);
}

static int build(sdt_train_data *d, const sdt_ds_dataset *set, uint64_t seed, sdt_train_log_fn log, void *ctx,
                 char **error)
{
    size_t n = 0;
    for (size_t s = 0; s < set->subset_count; s++)
        n += set->subsets[s].sample_count;
    if (n == 0)
        return sdt_set_error(error, "the dataset has no images");
    sdt_bucket_plan *plan = calloc(1, sizeof *plan);
    d->buckets = plan;
    sdt_bucket_image *bimages = calloc(n, sizeof *bimages);
    d->images = calloc(n, sizeof *d->images);
    int *image_bucket = calloc(n, sizeof *image_bucket);
    sdt_epoch_subset *subsets = calloc(set->subset_count, sizeof *subsets);
    int rc = -1;
    char *warnings = NULL;
    if (!plan || !bimages || !d->images || !image_bucket || !subsets) {
        sdt_set_error(error, "out of memory");
        goto done;
    }
    d->image_count = n;
    d->static_captions = 1;
    size_t k = 0;
    for (size_t s = 0; s < set->subset_count; s++) {
        const sdt_ds_subset *sub = &set->subsets[s];
        for (size_t i = 0; i < sub->sample_count; i++, k++) {
            bimages[k] = sdt_ds_bucket_image(sub, i);
            sdt_train_image *im = &d->images[k];
            im->path = sub->samples[i].path;
            im->caption = sub->samples[i].caption;
            im->is_reg = sub->is_reg;
            im->flip_aug = sub->flip_aug;
            caption_options_of(sub, &im->caption_options);
            d->static_captions &= caption_options_static(&im->caption_options);
        }
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
    d->resolution[0] = set->resolution[0];
    d->resolution[1] = set->resolution[1];
    if (sdt_bucket_plan_build(&settings, 64, bimages, n, plan, &warnings, error) != 0)
        goto done;
    if (warnings)
        log(ctx, 1, warnings);
    free(warnings);
    warnings = NULL;
    sdt_ds_epoch_subsets(set, subsets);
    size_t used = 0;
    k = 0;
    for (size_t s = 0; s < set->subset_count; s++)
        for (size_t i = 0; i < set->subsets[s].sample_count; i++, k++) {
            const sdt_bucket_assignment *a = &plan->images[k];
            sdt_train_image *im = &d->images[k];
            im->resized_width = a->resized_width;
            im->resized_height = a->resized_height;
            im->crop_left = a->crop_left;
            im->crop_top = a->crop_top;
            im->crop_width = a->bucket_width;
            im->crop_height = a->bucket_height;
            if (i < subsets[s].image_count)
                image_bucket[used++] = a->bucket;
        }
    if (used != n) {
        sdt_set_error(error, "a subset with num_repeats below 1: not supported by training yet");
        goto done;
    }
    d->batch_size = set->batch_size > 0 ? (size_t)set->batch_size : 1;
    if (sdt_epoch_plan_create(subsets, set->subset_count, image_bucket, plan->bucket_count, d->batch_size,
                              seed, &d->plan, &warnings, error) != 0)
        goto done;
    if (warnings)
        log(ctx, 1, warnings);
    sdt_epoch_summary summary;
    sdt_epoch_plan_summary(d->plan, &summary);
    d->batches_per_epoch = summary.batches_per_epoch;
    d->num_train_images = summary.num_train_images;
    d->num_reg_images = summary.num_reg_images;
    d->dataset_dirs_json = dirs_json(set, 0);
    d->reg_dataset_dirs_json = dirs_json(set, 1);
    rc = d->dataset_dirs_json && d->reg_dataset_dirs_json ? 0 : sdt_set_error(error, "out of memory");
done:
    free(warnings);
    free(subsets);
    free(image_bucket);
    free(bimages);
    return rc;
}

int sdt_train_data_load(const sdt_config *cfg, uint64_t seed, sdt_train_log_fn log, void *log_ctx,
                        sdt_train_data *out, char **error)
{
    memset(out, 0, sizeof *out);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_dataset_options options = {.strict = false};
    out->dataset = sdt_dataset_scan(cfg, &options, &diags);
    int rc = 0;
    if (!out->dataset)
        rc = sdt_set_error(error, "out of memory while scanning the dataset");
    for (size_t i = 0; i < diags.count; i++) {
        const sdt_diag *g = &diags.items[i];
        int has_file = g->file && *g->file;
        if (g->severity == SDT_SEV_ERROR && rc == 0)
            rc = sdt_set_error(error, "%s%s%s", has_file ? g->file : "", has_file ? ": " : "", g->message);
        else if (g->severity != SDT_SEV_ERROR) {
            char *line = sdt_format("%s%s%s", has_file ? g->file : "", has_file ? ": " : "", g->message);
            if (line)
                log(log_ctx, g->severity == SDT_SEV_WARNING, line);
            free(line);
        }
    }
    sdt_diag_list_free(&diags);
    if (rc != 0)
        return -1;
    if (out->dataset->dataset_count != 1)
        return sdt_set_error(error,
                             "%zu datasets: training on more than one [[datasets]] is not implemented yet",
                             out->dataset->dataset_count);
    return build(out, &out->dataset->datasets[0], seed, log, log_ctx, error);
}

void sdt_train_data_free(sdt_train_data *d)
{
    sdt_epoch_plan_free(d->plan);
    if (d->buckets)
        sdt_bucket_plan_free(d->buckets);
    free(d->buckets);
    free(d->images);
    sdt_dataset_free(d->dataset);
    free(d->dataset_dirs_json);
    free(d->reg_dataset_dirs_json);
    memset(d, 0, sizeof *d);
}
