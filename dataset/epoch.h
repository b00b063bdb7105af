/* Epochs and batches as kohya's sd-scripts form them (DreamBoothDataset, BaseDataset.make_buckets and
 * shuffle_buckets): every train image repeats times, regularization images repeated until they cover the
 * train images, each bucket's samples cut into batches of batch_size (the last one may be short), the order
 * of samples within buckets and of the batches reshuffled every epoch from seed + epoch. A cursor (epoch,
 * batch) is all a resumed run needs to continue with exactly the same batches. See docs/dataset.md,
 * "Epochs and batches". */
#ifndef SDTUNE_DATASET_EPOCH_H
#define SDTUNE_DATASET_EPOCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_epoch_subset {
    size_t image_count;
    int repeats; /* kohya's num_repeats, >= 1 */
    int is_reg;
} sdt_epoch_subset;

typedef struct sdt_epoch_plan sdt_epoch_plan; /* opaque */

/* subsets in the dataset's order; their images are numbered consecutively from 0 in that order (subset 0's
 * images first). image_bucket[i] is image i's bucket id (from sdt_bucket_plan) in [0, bucket_count), or -1
 * for an image that never appears (an unused reg image). batch_size >= 1. The regularization images get
 * kohya's repeats: registered in order with their own repeats until they reach the train count, then one more
 * repeat each, round-robin, until they cover it; those not reached stay unused (reported, as kohya warns).
 * *warnings (may be NULL; caller frees; NULL when none) gets kohya's "no regularization images" / "some of
 * reg images are not used" lines. */
int sdt_epoch_plan_create(const sdt_epoch_subset *subsets, size_t subset_count, const int *image_bucket,
                          size_t bucket_count, size_t batch_size, uint64_t seed, sdt_epoch_plan **out,
                          char **warnings, char **error);
void sdt_epoch_plan_free(sdt_epoch_plan *plan);

/* Only the repeats, before there are buckets: image_repeats (sum of image_count entries) gets each image's
 * effective repeats (0 for unused reg images), *reg_unused how many reg images are unused. kohya balances
 * before it makes buckets, so its bucket table counts these repeats and leaves unused reg images out: pass
 * them as sdt_bucket_image.repeats to get the same table. warnings as in sdt_epoch_plan_create. */
int sdt_epoch_balance_repeats(const sdt_epoch_subset *subsets, size_t subset_count, int *image_repeats,
                              size_t *reg_unused, char **warnings, char **error);

typedef struct sdt_epoch_summary {
    size_t image_count;       /* all images of all subsets */
    size_t num_train_images;  /* train images x repeats ("N train images with repeats") */
    size_t num_reg_images;    /* reg images x their own repeats, before balancing ("M reg images ...") */
    size_t reg_samples;       /* reg samples per epoch after balancing */
    size_t reg_images_unused; /* reg images that never appear */
    size_t samples_per_epoch; /* num_train_images + reg_samples */
    size_t batches_per_epoch; /* sum over buckets of ceil(samples / batch_size) */
    size_t batch_size;
    size_t bucket_count;
    uint64_t seed;
    uint64_t fingerprint; /* a hash of everything that shapes the batches; a cursor must match it */
} sdt_epoch_summary;

void sdt_epoch_plan_summary(const sdt_epoch_plan *plan, sdt_epoch_summary *out);
/* The effective repeats of image i (its subset's for train images; 0 for unused reg images). */
int sdt_epoch_image_repeats(const sdt_epoch_plan *plan, size_t image);
/* Samples in bucket b per epoch (images x effective repeats). */
size_t sdt_epoch_bucket_samples(const sdt_epoch_plan *plan, size_t bucket);

/* One batch: bucket id, and the image index of each sample (repeats make the same image appear several
 * times per epoch, sometimes in one batch, as in kohya). */
typedef struct sdt_batch {
    int bucket;
    size_t count;   /* 1..batch_size */
    size_t *images; /* batch_size entries, owned by the caller (sdt_batch_alloc) */
} sdt_batch;

int sdt_batch_alloc(const sdt_epoch_plan *plan, sdt_batch *batch, char **error);
void sdt_batch_free(sdt_batch *batch);

/* Batch batch_index (0-based, < batches_per_epoch) of epoch (1-based, like kohya's current_epoch).
 * Deterministic in (seed, epoch, batch_index): the plan caches the last epoch's order, so walking an epoch
 * costs one shuffle. Not thread-safe on one plan. */
int sdt_epoch_batch(sdt_epoch_plan *plan, int epoch, size_t batch_index, sdt_batch *out, char **error);

/* Where training stands: the next batch to draw is `batch` of `epoch`. */
typedef struct sdt_epoch_cursor {
    int epoch;    /* 1-based */
    size_t batch; /* 0-based, < batches_per_epoch */
    uint64_t seed;
    uint64_t fingerprint;
} sdt_epoch_cursor;

/* The cursor at the start of epoch 1. */
void sdt_epoch_cursor_start(const sdt_epoch_plan *plan, sdt_epoch_cursor *cursor);
/* Draws the batch at the cursor and advances it (to the next epoch after the last batch). Errors when the
 * cursor does not belong to this plan (seed or fingerprint differ). */
int sdt_epoch_next(sdt_epoch_plan *plan, sdt_epoch_cursor *cursor, sdt_batch *out, char **error);

/* A small JSON object: {"epoch":3,"batch":17,"seed":42,"fingerprint":"0123456789abcdef"} (the 64-bit
 * numbers as decimal / hex strings so no JSON reader loses precision). *out malloc'd. */
int sdt_epoch_cursor_format(const sdt_epoch_cursor *cursor, char **out, char **error);
/* Parses what sdt_epoch_cursor_format wrote (key order and whitespace free). */
int sdt_epoch_cursor_parse(const char *text, sdt_epoch_cursor *cursor, char **error);
/* Checks that a restored cursor fits the plan: same seed and fingerprint, batch in range. */
int sdt_epoch_cursor_check(const sdt_epoch_plan *plan, const sdt_epoch_cursor *cursor, char **error);

#ifdef __cplusplus
}
#endif
#endif
