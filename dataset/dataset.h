/* The training data as kohya's sd-scripts sees it: datasets, each a set of subsets (one image folder or
 * metadata file each), each a list of samples (an image, its upright size, its raw caption).
 *
 * Three sources, chosen the way kohya chooses them:
 *   - dataset_config (a kohya TOML or JSON file with [general], [[datasets]], [[datasets.subsets]]);
 *     when set, train_data_dir, reg_data_dir and in_json are ignored with a warning;
 *   - in_json (fine-tune mode): a metadata JSON (or .jsonl) of captions and tags, images under
 *     train_data_dir, repeated dataset_repeats times;
 *   - otherwise DreamBooth folder mode: the `<repeats>_<class tokens>` subfolders of train_data_dir and
 *     reg_data_dir.
 *
 * Scanning reads only image headers and caption files, so it stays fast on large folders. Bad inputs
 * (corrupt or truncated images, files that are not images, unreadable folders, captions that are empty
 * or not UTF-8) are skipped with a diagnostic naming the file and counted by reason; with `strict` they
 * are errors instead. See docs/dataset.md. */
#ifndef SDTUNE_DATASET_DATASET_H
#define SDTUNE_DATASET_DATASET_H

#include <stdbool.h>
#include <stddef.h>

#include "buckets.h"
#include "epoch.h"
#include "sdtune/config.h"
#include "sdtune/diag.h"
#include "sdtune/strutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_caption_source {
    SDT_CAPTION_NONE,         /* no caption file and no class tokens: the empty caption */
    SDT_CAPTION_FILE,         /* the caption file next to the image */
    SDT_CAPTION_CLASS_TOKENS, /* no caption file: the subset's class tokens */
    SDT_CAPTION_METADATA,     /* the caption (+ tags) of a fine-tune metadata file */
} sdt_caption_source;

const char *sdt_caption_source_name(sdt_caption_source source); /* "none", "file", "class_tokens", ... */

typedef struct sdt_ds_sample {
    char *path;        /* the image file */
    int width, height; /* upright (after EXIF orientation), from the header */
    /* The raw caption: the first line of the caption file stripped of surrounding whitespace, or with
     * enable_wildcard every non-empty line joined by '\n'. Never NULL ("" when none). Prefix, suffix,
     * shuffling and dropout are applied later, each time the sample is used. */
    char *caption;
    sdt_caption_source caption_source;
} sdt_ds_sample;

/* One image folder (or metadata file), with the options kohya lets a subset override. */
typedef struct sdt_ds_subset {
    char *image_dir;     /* "" for a fine-tune subset whose metadata keys are full paths */
    char *metadata_file; /* fine-tune subsets; NULL otherwise */
    int num_repeats;
    char *class_tokens; /* NULL when none */
    bool is_reg;
    char *caption_extension;
    bool alpha_mask, cache_info;
    bool shuffle_caption;
    int keep_tokens;
    char *keep_tokens_separator, *secondary_separator, *caption_separator; /* "" when none */
    bool enable_wildcard;
    char *caption_prefix, *caption_suffix; /* "" when none */
    double caption_dropout_rate;
    int caption_dropout_every_n_epochs;
    double caption_tag_dropout_rate;
    int token_warmup_min;
    double token_warmup_step;
    bool color_aug, flip_aug, random_crop;
    bool has_face_crop_aug_range;
    double face_crop_aug_range[2];
    char *resize_interpolation; /* "" = the dataset's */
    sdt_ds_sample *samples;
    size_t sample_count, sample_capacity;
    /* Reg subsets are repeated until they match the train images (as kohya does): the repeats each
     * sample of this subset gets after that balancing; num_repeats for train subsets. Indexed like
     * samples; sdt_dataset_scan fills it (sdt_epoch_balance_repeats). */
    int *effective_repeats;
} sdt_ds_subset;

typedef struct sdt_ds_dataset {
    bool finetune; /* all subsets have a metadata_file */
    int batch_size;
    int resolution[2]; /* width, height */
    bool enable_bucket;
    int min_bucket_reso, max_bucket_reso, bucket_reso_steps;
    bool bucket_no_upscale;
    double network_multiplier;
    double validation_split;
    long long validation_seed;
    char *resize_interpolation; /* "" = auto */
    sdt_ds_subset *subsets;
    size_t subset_count, subset_capacity;
} sdt_ds_dataset;

/* Why a file was skipped. */
typedef enum sdt_skip_reason {
    SDT_SKIP_CORRUPT_IMAGE,      /* an image format's signature, but the header is truncated or wrong */
    SDT_SKIP_EMPTY_FILE,         /* a zero-byte image file */
    SDT_SKIP_NOT_IMAGE,          /* an image extension, but not an image */
    SDT_SKIP_UNSUPPORTED_FORMAT, /* a real image in a format sdtune does not decode (BMP) */
    SDT_SKIP_UNREADABLE,         /* a file or folder that cannot be opened */
    SDT_SKIP_CAPTION_NOT_UTF8,   /* the caption file is not UTF-8 */
    SDT_SKIP_CAPTION_EMPTY,      /* the caption file is empty (kohya stops on this) */
    SDT_SKIP_IMAGE_NOT_FOUND,    /* a metadata entry whose image does not exist */
    SDT_SKIP_REASON_COUNT
} sdt_skip_reason;

/* "corrupt image", "empty file", ...; plural forms add "s" where the count is not 1. */
const char *sdt_skip_reason_name(sdt_skip_reason reason);

typedef enum sdt_dataset_mode {
    SDT_DATASET_FOLDERS,     /* DreamBooth folder mode */
    SDT_DATASET_METADATA,    /* fine-tune, in_json */
    SDT_DATASET_CONFIG_FILE, /* dataset_config */
} sdt_dataset_mode;

typedef struct sdt_dataset {
    sdt_dataset_mode mode;
    char *config_file; /* the dataset_config path in SDT_DATASET_CONFIG_FILE mode; NULL otherwise */
    sdt_ds_dataset *datasets;
    size_t dataset_count, dataset_capacity;
    size_t skipped[SDT_SKIP_REASON_COUNT];
    size_t missing_captions; /* images with no caption file (class tokens or "" used) */
} sdt_dataset;

typedef struct sdt_dataset_options {
    /* Skipped files and ignored folders become errors instead of warnings. */
    bool strict;
} sdt_dataset_options;

/* Scans the data a config names (see the top of this file). Every problem goes to diags, naming the file
 * concerned. Returns the dataset (also when it has problems, so a report can show what was found), or
 * NULL when out of memory. An empty dataset (no images at all) is an error in diags. */
sdt_dataset *sdt_dataset_scan(const sdt_config *cfg, const sdt_dataset_options *options,
                              sdt_diag_list *diags);
void sdt_dataset_free(sdt_dataset *ds);

/* Images (without repeats) and images times repeats over all subsets, train or reg. */
size_t sdt_dataset_image_count(const sdt_dataset *ds, bool reg);
/* What bucketing needs of sample i of sub: its path, size, repeats (after reg balancing) and crop flags. */
sdt_bucket_image sdt_ds_bucket_image(const sdt_ds_subset *sub, size_t i);
size_t sdt_dataset_images_with_repeats(const sdt_dataset *ds, bool reg);
size_t sdt_dataset_skipped_total(const sdt_dataset *ds);

/* "skipped 3 files: 2 corrupt images, 1 caption not UTF-8"; "" when nothing was skipped. Appends. */
void sdt_dataset_skip_summary(const sdt_dataset *ds, sdt_buf *out);

/* Internal to dataset/, shared by the scanners: */

/* The dataset's subsets as sdt_epoch_balance_repeats and sdt_epoch_plan_create take them, in order (out has
 * subset_count entries); a subset whose num_repeats is below 1 takes part with no images. */
void sdt_ds_epoch_subsets(const sdt_ds_dataset *set, sdt_epoch_subset *out);
/* Appends a subset with kohya's defaults, options taken from cfg's [dataset] section. NULL when out of
 * memory. */
sdt_ds_subset *sdt_ds_add_subset(sdt_ds_dataset *d, const sdt_config *cfg);
/* Appends a dataset with the settings from cfg's [dataset] and [training] sections. */
sdt_ds_dataset *sdt_ds_add_dataset(sdt_dataset *ds, const sdt_config *cfg);
/* Scans a DreamBooth subset's image_dir (non-recursive; captions per caption_extension). */
int sdt_ds_scan_folder_subset(sdt_dataset *ds, sdt_ds_subset *sub, const sdt_dataset_options *options,
                              sdt_diag_list *diags);
/* Loads a fine-tune subset's metadata_file (.json or .jsonl) and probes its images. */
int sdt_ds_scan_metadata_subset(sdt_dataset *ds, sdt_ds_subset *sub, const sdt_dataset_options *options,
                                sdt_diag_list *diags);
/* Reads a dataset_config file (TOML or, by its .json extension, JSON) into ds and scans its subsets. */
int sdt_ds_load_config_file(sdt_dataset *ds, const char *path, const sdt_config *cfg,
                            const sdt_dataset_options *options, sdt_diag_list *diags);
/* Adds a skipped file: counted, and a warning (an error when strict) naming it. */
void sdt_ds_skip(sdt_dataset *ds, sdt_skip_reason reason, const char *file,
                 const sdt_dataset_options *options, sdt_diag_list *diags, const char *fmt, ...)
    SDT_PRINTF(6, 7);

/* The kohya-style summary (what sd-scripts prints before training) and its JSON form. */
typedef struct sdt_dataset_report_options {
    int max_train_epochs; /* 0 = use max_train_steps */
    int max_train_steps;
    int gradient_accumulation_steps;
    /* bucket_reso_steps must be a multiple of this (64 for SD 1.x/2.x, 32 for SDXL); 0 = unchecked. */
    int steps_multiple;
} sdt_dataset_report_options;

/* Reads the report options from a config's [training] and [model] sections. */
void sdt_dataset_report_options_from_config(const sdt_config *cfg, sdt_dataset_report_options *out);

/* Builds the buckets of every dataset (their problems are added to diags), then renders the summary:
 * per dataset and subset what kohya prints, the image counts with repeats, the bucket table, the mean
 * aspect-ratio error, the batches and steps, then every diagnostic of diags and the skip summary. As text
 * (json false) or as one JSON object (docs/dataset.md lists its fields). NULL when out of memory. */
char *sdt_dataset_report(const sdt_dataset *ds, const sdt_dataset_report_options *options, bool json,
                         sdt_diag_list *diags);

#ifdef __cplusplus
}
#endif
#endif
