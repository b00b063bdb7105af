/* A run's training data: the dataset scanned from the config, its buckets, the epoch plan and one entry
 * per image with everything a step needs (where to resize and crop, the caption and its options). Kept
 * apart from the model headers because the dataset's header includes the config's. */
#ifndef SDTUNE_TRAIN_TRAINER_DATA_H
#define SDTUNE_TRAIN_TRAINER_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "captions.h"
#include "epoch.h"

typedef struct sdt_config sdt_config;

/* One training image (dataset order: subset by subset). Strings are borrowed from the dataset. */
typedef struct sdt_train_image {
    const char *path;
    const char *caption; /* raw, before prefix, shuffling and dropout */
    int is_reg, flip_aug;
    sdt_caption_options caption_options;
    int resized_width, resized_height; /* the bucket's resize, then the crop */
    int crop_left, crop_top, crop_width, crop_height;
} sdt_train_image;

typedef struct sdt_train_data {
    struct sdt_dataset *dataset; /* owned */
    void *buckets;               /* owned sdt_bucket_plan */
    sdt_train_image *images;
    size_t image_count;
    sdt_epoch_plan *plan;
    size_t batch_size, batches_per_epoch, num_train_images, num_reg_images;
    int static_captions; /* no subset changes its captions from step to step */
    int resolution[2];   /* width, height */
    /* kohya's ss_dataset_dirs / ss_reg_dataset_dirs: {"<dir>": {"n_repeats": N, "img_count": N}} */
    char *dataset_dirs_json, *reg_dataset_dirs_json;
} sdt_train_data;

/* log: each warning and note of the scan (warning 1) as one line. */
typedef void (*sdt_train_log_fn)(void *ctx, int warning, const char *text);

/* Scans the data the config names (as `sdtune-engine dataset` does), builds the buckets and the epoch plan
 * of seed. Returns 0, or -1 with *error set (the first error of the scan, naming its file). */
int sdt_train_data_load(const sdt_config *cfg, uint64_t seed, sdt_train_log_fn log, void *log_ctx,
                        sdt_train_data *out, char **error);
void sdt_train_data_free(sdt_train_data *d);

#endif
