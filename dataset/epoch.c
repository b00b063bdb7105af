/* Epochs and batches; see epoch.h. Every epoch's order is a pure function of (seed, epoch): kohya reshuffles
 * its buckets in place, so its epoch N depends on epochs 1..N-1 having run in that process; deriving each
 * epoch afresh gives the same kind of order and makes resuming exact without replaying earlier epochs. */
#include "epoch.h"
#include "sdtune/strutil.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

struct sdt_epoch_plan {
    size_t image_count, bucket_count, batch_size;
    uint64_t seed;
    int *image_repeats;
    size_t *bucket_start; /* bucket b's samples are samples[bucket_start[b] .. bucket_start[b + 1]) */
    size_t *samples;      /* image indices in registration order, each repeated */
    size_t sample_count;
    size_t *batch_bucket, *batch_in_bucket; /* the epoch's batches before shuffling, bucket by bucket */
    size_t batch_count;
    sdt_epoch_summary summary;
    /* the order of the last epoch asked for */
    int cached_epoch;
    size_t *epoch_samples;
    size_t *epoch_batches;
};

static void add_line(char **list, const char *line)
{
    if (!list)
        return;
    size_t old = *list ? strlen(*list) : 0, add = strlen(line);
    char *grown = realloc(*list, old + add + 2);
    if (!grown)
        return;
    memcpy(grown + old, line, add);
    grown[old + add] = '\n';
    grown[old + add + 1] = '\0';
    *list = grown;
}

int sdt_epoch_balance_repeats(const sdt_epoch_subset *subsets, size_t subset_count, int *image_repeats,
                              size_t *reg_unused, char **warnings, char **error)
{
    if (warnings)
        *warnings = NULL;
    size_t num_train = 0, num_reg = 0, image = 0;
    for (size_t s = 0; s < subset_count; s++) {
        if (subsets[s].repeats < 1) {
            sdt_set_error(error, "subset %zu: num_repeats must be at least 1, got %d", s, subsets[s].repeats);
            return -1;
        }
        size_t n = subsets[s].image_count * (size_t)subsets[s].repeats;
        for (size_t i = 0; i < subsets[s].image_count; i++)
            image_repeats[image++] = subsets[s].is_reg ? 0 : subsets[s].repeats;
        if (subsets[s].is_reg)
            num_reg += n;
        else
            num_train += n;
    }
    if (num_reg == 0) {
        add_line(warnings, "no regularization images");
    } else {
        /* kohya: register reg images in order with their own repeats until they reach the train count; if
         * they do not, go round again adding one repeat each, until they do. */
        size_t n = 0;
        int first_loop = 1;
        while (n < num_train) {
            image = 0;
            int done = 0;
            for (size_t s = 0; s < subset_count && !done; s++) {
                for (size_t i = 0; i < subsets[s].image_count; i++, image++) {
                    if (!subsets[s].is_reg)
                        continue;
                    if (first_loop) {
                        image_repeats[image] = subsets[s].repeats;
                        n += (size_t)subsets[s].repeats;
                    } else {
                        image_repeats[image]++;
                        n++;
                    }
                    if (n >= num_train) {
                        done = 1;
                        break;
                    }
                }
            }
            first_loop = 0;
        }
        if (num_train < num_reg)
            add_line(warnings, "some of reg images are not used");
    }
    size_t unused = 0;
    image = 0;
    for (size_t s = 0; s < subset_count; s++)
        for (size_t i = 0; i < subsets[s].image_count; i++, image++)
            unused += subsets[s].is_reg && image_repeats[image] == 0;
    if (reg_unused)
        *reg_unused = unused;
    return 0;
}

void sdt_epoch_plan_free(sdt_epoch_plan *p)
{
    if (!p)
        return;
    free(p->image_repeats);
    free(p->bucket_start);
    free(p->samples);
    free(p->batch_bucket);
    free(p->batch_in_bucket);
    free(p->epoch_samples);
    free(p->epoch_batches);
    free(p);
}

static uint64_t fold(uint64_t h, uint64_t v) { return sdt_ds_rng_mix(h ^ (v + 0x9E3779B97F4A7C15ull)); }

int sdt_epoch_plan_create(const sdt_epoch_subset *subsets, size_t subset_count, const int *image_bucket,
                          size_t bucket_count, size_t batch_size, uint64_t seed, sdt_epoch_plan **out,
                          char **warnings, char **error)
{
    *out = NULL;
    if (warnings)
        *warnings = NULL;
    if (batch_size < 1) {
        sdt_set_error(error, "batch_size must be at least 1");
        return -1;
    }
    sdt_epoch_plan *p = calloc(1, sizeof *p);
    if (!p)
        goto oom;
    p->batch_size = batch_size;
    p->bucket_count = bucket_count;
    p->seed = seed;
    for (size_t s = 0; s < subset_count; s++)
        p->image_count += subsets[s].image_count;
    p->image_repeats = calloc(p->image_count + 1, sizeof *p->image_repeats);
    p->bucket_start = calloc(bucket_count + 1, sizeof *p->bucket_start);
    if (!p->image_repeats || !p->bucket_start)
        goto oom;
    size_t unused = 0;
    if (sdt_epoch_balance_repeats(subsets, subset_count, p->image_repeats, &unused, warnings, error) != 0) {
        sdt_epoch_plan_free(p);
        return -1;
    }
    size_t num_train = 0, num_reg = 0, reg_samples = 0, image = 0;
    for (size_t s = 0; s < subset_count; s++)
        for (size_t i = 0; i < subsets[s].image_count; i++, image++) {
            if (subsets[s].is_reg) {
                num_reg += (size_t)subsets[s].repeats;
                reg_samples += (size_t)p->image_repeats[image];
            } else {
                num_train += (size_t)subsets[s].repeats;
            }
        }

    /* count, then fill, each bucket's samples in registration order (kohya's add_image loop) */
    size_t *fill = calloc(bucket_count + 1, sizeof *fill);
    if (!fill)
        goto oom;
    for (size_t i = 0; i < p->image_count; i++) {
        if (p->image_repeats[i] == 0)
            continue;
        if (image_bucket[i] < 0 || (size_t)image_bucket[i] >= bucket_count) {
            sdt_set_error(error, "image %zu has bucket %d, outside 0..%zu", i, image_bucket[i], bucket_count);
            free(fill);
            sdt_epoch_plan_free(p);
            return -1;
        }
        p->bucket_start[image_bucket[i] + 1] += (size_t)p->image_repeats[i];
    }
    for (size_t b = 0; b < bucket_count; b++)
        p->bucket_start[b + 1] += p->bucket_start[b];
    p->sample_count = p->bucket_start[bucket_count];
    p->samples = malloc((p->sample_count + 1) * sizeof *p->samples);
    p->epoch_samples = malloc((p->sample_count + 1) * sizeof *p->epoch_samples);
    if (!p->samples || !p->epoch_samples) {
        free(fill);
        goto oom;
    }
    for (size_t i = 0; i < p->image_count; i++)
        for (int r = 0; r < p->image_repeats[i]; r++) {
            size_t b = (size_t)image_bucket[i];
            p->samples[p->bucket_start[b] + fill[b]++] = i;
        }
    free(fill);

    for (size_t b = 0; b < bucket_count; b++) {
        size_t n = p->bucket_start[b + 1] - p->bucket_start[b];
        p->batch_count += (n + batch_size - 1) / batch_size;
    }
    p->batch_bucket = malloc((p->batch_count + 1) * sizeof *p->batch_bucket);
    p->batch_in_bucket = malloc((p->batch_count + 1) * sizeof *p->batch_in_bucket);
    p->epoch_batches = malloc((p->batch_count + 1) * sizeof *p->epoch_batches);
    if (!p->batch_bucket || !p->batch_in_bucket || !p->epoch_batches)
        goto oom;
    size_t k = 0;
    for (size_t b = 0; b < bucket_count; b++) {
        size_t n = p->bucket_start[b + 1] - p->bucket_start[b];
        for (size_t j = 0; j * batch_size < n; j++) {
            p->batch_bucket[k] = b;
            p->batch_in_bucket[k++] = j;
        }
    }

    uint64_t h = fold(0x5EED, batch_size);
    h = fold(h, bucket_count);
    h = fold(h, p->image_count);
    for (size_t i = 0; i < p->image_count; i++) {
        h = fold(h, (uint64_t)p->image_repeats[i]);
        h = fold(h, p->image_repeats[i] ? (uint64_t)image_bucket[i] : UINT64_MAX);
    }
    sdt_epoch_summary *sm = &p->summary;
    sm->image_count = p->image_count;
    sm->num_train_images = num_train;
    sm->num_reg_images = num_reg;
    sm->reg_samples = reg_samples;
    sm->reg_images_unused = unused;
    sm->samples_per_epoch = p->sample_count;
    sm->batches_per_epoch = p->batch_count;
    sm->batch_size = batch_size;
    sm->bucket_count = bucket_count;
    sm->seed = seed;
    sm->fingerprint = h;
    p->cached_epoch = -1;
    *out = p;
    return 0;
oom:
    sdt_epoch_plan_free(p);
    if (warnings) {
        free(*warnings);
        *warnings = NULL;
    }
    sdt_set_error(error, "out of memory while planning epochs");
    return -1;
}

void sdt_epoch_plan_summary(const sdt_epoch_plan *p, sdt_epoch_summary *out) { *out = p->summary; }

int sdt_epoch_image_repeats(const sdt_epoch_plan *p, size_t image)
{
    return image < p->image_count ? p->image_repeats[image] : 0;
}

size_t sdt_epoch_bucket_samples(const sdt_epoch_plan *p, size_t bucket)
{
    return bucket < p->bucket_count ? p->bucket_start[bucket + 1] - p->bucket_start[bucket] : 0;
}

int sdt_batch_alloc(const sdt_epoch_plan *p, sdt_batch *batch, char **error)
{
    batch->bucket = -1;
    batch->count = 0;
    batch->images = calloc(p->batch_size, sizeof *batch->images);
    if (!batch->images) {
        sdt_set_error(error, "out of memory");
        return -1;
    }
    return 0;
}

void sdt_batch_free(sdt_batch *batch)
{
    free(batch->images);
    batch->images = NULL;
    batch->count = 0;
}

static void make_epoch(sdt_epoch_plan *p, int epoch)
{
    if (p->cached_epoch == epoch)
        return;
    memcpy(p->epoch_samples, p->samples, p->sample_count * sizeof *p->samples);
    for (size_t b = 0; b < p->bucket_count; b++) {
        sdt_ds_rng rng = sdt_ds_rng_make(p->seed, SDT_RNG_BUCKET_SHUFFLE, (uint64_t)(int64_t)epoch, b, 0);
        sdt_ds_rng_shuffle_size(&rng, p->epoch_samples + p->bucket_start[b],
                                p->bucket_start[b + 1] - p->bucket_start[b]);
    }
    for (size_t k = 0; k < p->batch_count; k++)
        p->epoch_batches[k] = k;
    sdt_ds_rng rng = sdt_ds_rng_make(p->seed, SDT_RNG_BATCH_SHUFFLE, (uint64_t)(int64_t)epoch, 0, 0);
    sdt_ds_rng_shuffle_size(&rng, p->epoch_batches, p->batch_count);
    p->cached_epoch = epoch;
}

int sdt_epoch_batch(sdt_epoch_plan *p, int epoch, size_t batch_index, sdt_batch *out, char **error)
{
    if (epoch < 1) {
        sdt_set_error(error, "epoch %d: epochs count from 1", epoch);
        return -1;
    }
    if (batch_index >= p->batch_count) {
        sdt_set_error(error, "batch %zu is past the epoch's %zu batches", batch_index, p->batch_count);
        return -1;
    }
    make_epoch(p, epoch);
    size_t k = p->epoch_batches[batch_index], b = p->batch_bucket[k];
    size_t start = p->bucket_start[b] + p->batch_in_bucket[k] * p->batch_size, end = start + p->batch_size;
    if (end > p->bucket_start[b + 1])
        end = p->bucket_start[b + 1];
    out->bucket = (int)b;
    out->count = end - start;
    memcpy(out->images, p->epoch_samples + start, out->count * sizeof *out->images);
    return 0;
}

void sdt_epoch_cursor_start(const sdt_epoch_plan *p, sdt_epoch_cursor *c)
{
    c->epoch = 1;
    c->batch = 0;
    c->seed = p->seed;
    c->fingerprint = p->summary.fingerprint;
}

int sdt_epoch_cursor_check(const sdt_epoch_plan *p, const sdt_epoch_cursor *c, char **error)
{
    if (c->seed != p->seed) {
        sdt_set_error(error, "the saved position was made with seed %" PRIu64 ", this run uses %" PRIu64,
                      c->seed, p->seed);
        return -1;
    }
    if (c->fingerprint != p->summary.fingerprint) {
        sdt_set_error(error, "the saved position belongs to a different dataset (images, repeats, buckets or "
                             "batch size changed)");
        return -1;
    }
    if (c->epoch < 1 || c->batch >= p->batch_count) {
        sdt_set_error(
            error, "the saved position (epoch %d, batch %zu) is outside this dataset's %zu batches per epoch",
            c->epoch, c->batch, p->batch_count);
        return -1;
    }
    return 0;
}

int sdt_epoch_next(sdt_epoch_plan *p, sdt_epoch_cursor *c, sdt_batch *out, char **error)
{
    if (sdt_epoch_cursor_check(p, c, error) != 0)
        return -1;
    if (sdt_epoch_batch(p, c->epoch, c->batch, out, error) != 0)
        return -1;
    if (++c->batch == p->batch_count) {
        c->batch = 0;
        c->epoch++;
    }
    return 0;
}

int sdt_epoch_cursor_format(const sdt_epoch_cursor *c, char **out, char **error)
{
    char buf[160];
    snprintf(buf, sizeof buf,
             "{\"epoch\":%d,\"batch\":%zu,\"seed\":\"%" PRIu64 "\",\"fingerprint\":\"%016" PRIx64 "\"}",
             c->epoch, c->batch, c->seed, c->fingerprint);
    *out = strdup(buf);
    if (!*out) {
        sdt_set_error(error, "out of memory");
        return -1;
    }
    return 0;
}

/* The text of key's value in a flat JSON object: a number, or a string without its quotes. */
static int json_value(const char *text, const char *key, char *buf, size_t size)
{
    char pattern[32];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(text, pattern);
    if (!p)
        return -1;
    p += strlen(pattern);
    while (isspace((unsigned char)*p))
        p++;
    if (*p++ != ':')
        return -1;
    while (isspace((unsigned char)*p))
        p++;
    int quoted = *p == '"';
    if (quoted)
        p++;
    size_t n = 0;
    while (p[n] && (quoted ? p[n] != '"' : (isalnum((unsigned char)p[n]) || p[n] == '-')) && n + 1 < size)
        n++;
    if (n == 0 || (quoted && p[n] != '"'))
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 0;
}

static int parse_u64(const char *s, int base, uint64_t *v)
{
    char *end;
    if (!isxdigit((unsigned char)s[0]))
        return -1;
    unsigned long long x = strtoull(s, &end, base);
    if (*end)
        return -1;
    *v = (uint64_t)x;
    return 0;
}

int sdt_epoch_cursor_parse(const char *text, sdt_epoch_cursor *c, char **error)
{
    char epoch[32], batch[32], seed[32], fp[32];
    uint64_t e, b;
    if (!text || json_value(text, "epoch", epoch, sizeof epoch) ||
        json_value(text, "batch", batch, sizeof batch) || json_value(text, "seed", seed, sizeof seed) ||
        json_value(text, "fingerprint", fp, sizeof fp) || parse_u64(epoch, 10, &e) ||
        parse_u64(batch, 10, &b) || parse_u64(seed, 10, &c->seed) || parse_u64(fp, 16, &c->fingerprint) ||
        e < 1 || e > 1000000000) {
        sdt_set_error(
            error,
            "not a data position: expected {\"epoch\":N,\"batch\":N,\"seed\":\"N\",\"fingerprint\":\"HEX\"}");
        return -1;
    }
    c->epoch = (int)e;
    c->batch = (size_t)b;
    return 0;
}
