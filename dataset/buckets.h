/* Aspect-ratio buckets as kohya's sd-scripts make them (BucketManager, make_bucket_resolutions,
 * trim_and_resize_if_required): the bucket list, the bucket of each image with its resized size and crop,
 * SDXL's original size and crop_ltrb, the bucket_no_upscale per-image buckets, the single-bucket case
 * without bucketing, and the "bucket i: resolution (w, h), count: n" table. Pure logic: sizes in, sizes out.
 * See docs/dataset.md, "Buckets". */
#ifndef SDTUNE_DATASET_BUCKETS_H
#define SDTUNE_DATASET_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A dataset's bucket settings, under kohya's names. */
typedef struct sdt_bucket_settings {
    int width, height; /* resolution ("512" is 512 x 512) */
    int enable_bucket;
    int min_bucket_reso;   /* 256 */
    int max_bucket_reso;   /* 1024 */
    int bucket_reso_steps; /* 64 */
    int bucket_no_upscale;
} sdt_bucket_settings;

/* kohya's defaults: 512 x 512, bucketing off, 256..1024 in steps of 64, upscaling allowed. */
void sdt_bucket_settings_default(sdt_bucket_settings *s);

/* Checks the settings and applies kohya's adjustments: min_bucket_reso rounded down and max_bucket_reso
 * rounded up to multiples of bucket_reso_steps (each a warning line in *warnings, caller frees; NULL when
 * none). Errors (returns -1, *error set, caller frees): non-positive sizes or steps; when bucketing (and not
 * bucket_no_upscale) min > max, min_bucket_reso above the resolution's shorter side, max_bucket_reso below
 * its longer side; and, when steps_multiple > 0 (64 for SD1/2, 32 for SDXL, as kohya's trainers assert),
 * bucket_reso_steps not divisible by it. warnings may be NULL. */
int sdt_bucket_settings_resolve(const sdt_bucket_settings *in, int steps_multiple, sdt_bucket_settings *out,
                                char **warnings, char **error);

typedef struct sdt_bucket_reso {
    int width, height;
} sdt_bucket_reso;

/* kohya's make_bucket_resolutions: the square floor(sqrt(W*H)/steps)*steps, then for each width from min to
 * max in steps the height min(max, floor(W*H/width/steps)*steps) when it is >= min, both ways round; sorted
 * by (width, height), no duplicates. *out is malloc'd (caller frees). */
int sdt_bucket_make_resolutions(int width, int height, int min_reso, int max_reso, int steps,
                                sdt_bucket_reso **out, size_t *count, char **error);

/* Where an image goes and how it is cut to fit. The image is resized to resized_* (no resize when equal to
 * original_*), then the bucket_* window at (crop_left, crop_top) is cut out of it. */
typedef struct sdt_bucket_assignment {
    int bucket;                          /* index into the plan's buckets (sorted by resolution) */
    int bucket_width, bucket_height;     /* the training size (SDXL's target_size) */
    int original_width, original_height; /* the image as probed (SDXL's original_size) */
    int resized_width, resized_height;   /* round(dim * scale) */
    int crop_left, crop_top;             /* centre crop: floor(excess / 2) */
    /* Stability's centred crop formula (kohya's BucketManager.get_crop_ltrb), as floats like kohya's;
     * SDXL's crop_top_left conditioning is (int(top), int(left)). */
    double crop_ltrb[4];
    double ar_error; /* bucket aspect - image aspect (signed; the table's mean uses |ar_error|) */
} sdt_bucket_assignment;

/* One image to place: its probed size, kohya's num_repeats (counts in the table), and its subset's crop
 * options (they matter only without bucketing). name is used in error messages. */
typedef struct sdt_bucket_image {
    const char *name;
    int width, height;
    int repeats;
    int random_crop; /* the subset's random_crop */
    int face_crop;   /* the subset has face_crop_aug_range and the name carries face coordinates */
} sdt_bucket_image;

typedef struct sdt_bucket {
    int width, height;
    size_t images;  /* distinct images */
    size_t samples; /* images x repeats (kohya's "count") */
} sdt_bucket;

/* Every image's bucket. Images with repeats 0 are skipped (bucket -1, not in the mean), as kohya never
 * registers the reg images its balancing leaves unused. Buckets without images are left out
 * (bucket_no_upscale only creates buckets in use; for the predefined list the table would skip them anyway),
 * so bucket ids are dense and sorted. */
typedef struct sdt_bucket_plan {
    sdt_bucket_settings settings; /* as resolved */
    sdt_bucket *buckets;
    size_t bucket_count;
    sdt_bucket_assignment *images; /* one per input image, same order */
    size_t image_count;
    sdt_bucket_reso
        *predefined; /* the make_bucket_resolutions list (NULL with bucket_no_upscale or no bucketing) */
    size_t predefined_count;
    double mean_ar_error; /* mean |ar_error| over images, without repeats (0 for no images) */
} sdt_bucket_plan;

/* Places every image. settings are resolved first (steps_multiple as in sdt_bucket_settings_resolve;
 * warnings may be NULL). Without bucketing the single bucket is the resolution: an image smaller than it in
 * either side is an error naming the image (kohya asserts "image size is small"), and one larger needs
 * random_crop or face_crop (kohya asserts "image too large, but cropping and bucketing are disabled"); it is
 * not resized, only cropped. */
int sdt_bucket_plan_build(const sdt_bucket_settings *settings, int steps_multiple,
                          const sdt_bucket_image *images, size_t image_count, sdt_bucket_plan *plan,
                          char **warnings, char **error);
void sdt_bucket_plan_free(sdt_bucket_plan *plan);

/* The assignment of one image on its own, against predefined resolutions (kohya's select_bucket). For
 * bucket_no_upscale pass predefined = NULL; max_area = W*H of the resolution. Sets everything but .bucket
 * (-1). Errors for non-positive sizes and for images too thin to give a bucket side of at least one step. */
int sdt_bucket_select(const sdt_bucket_settings *resolved, const sdt_bucket_reso *predefined,
                      size_t predefined_count, int image_width, int image_height, const char *name,
                      sdt_bucket_assignment *out, char **error);

/* The crop offsets for one load: the centre ones, or with random_crop uniform in [0, excess] on each side
 * (kohya's random.randint), drawn from rng (the caller makes it, e.g. SDT_RNG_CROP of (epoch, sample)). */
void sdt_bucket_crop_offsets(const sdt_bucket_assignment *a, int random_crop, sdt_ds_rng *rng, int *left,
                             int *top);

/* SDXL's crop_top_left conditioning for one load, as kohya computes it: (int(top), int(left)) from
 * crop_ltrb, with left = bucket_width - right when the image is flipped. Without bucketing kohya uses 0, 0.
 */
void sdt_bucket_sdxl_crop_top_left(const sdt_bucket_assignment *a, int flipped, int *top, int *left);

/* kohya's log lines, one per non-empty bucket and then the mean:
 *   "bucket 0: resolution (512, 512), count: 12\n" ... "mean ar error (without repeats): 0.0123\n"
 * (the mean printed with Python's repr of a float). Without bucketing kohya prints no table; this still
 * returns the single line. Caller frees; NULL only on allocation failure. */
char *sdt_bucket_plan_table(const sdt_bucket_plan *plan);

/* The id of the bucket with this resolution, or -1. */
int sdt_bucket_plan_find(const sdt_bucket_plan *plan, int width, int height);

#ifdef __cplusplus
}
#endif
#endif
