/* Caption processing as kohya's sd-scripts do it each time a sample is loaded (BaseDataset.process_caption):
 * prefix/suffix, whole-caption dropout, wildcards or the first line, the fixed / flexible / fixed-suffix
 * split (keep_tokens, keep_tokens_separator), token warmup, shuffling, tag dropout, the join with ", " and
 * the secondary separator. The random choices come from a counter-based generator of (seed, epoch, step,
 * sample), so the same sample at the same point gives the same caption on any run. Also the tag frequency
 * counts kohya stores in the model metadata. See docs/dataset.md, "Captions". */
#ifndef SDTUNE_DATASET_CAPTIONS_H
#define SDTUNE_DATASET_CAPTIONS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A subset's caption options, under kohya's names. Strings are borrowed (NULL or "" = unset). */
typedef struct sdt_caption_options {
    int shuffle_caption;
    int keep_tokens;                   /* the first N tags never move nor drop (ignored when the separator is
                                          found in the caption) */
    const char *keep_tokens_separator; /* e.g. "|||": before it fixed, after it flexible, after a second one
                                          a fixed suffix */
    const char *caption_separator;     /* "," when NULL or "" */
    const char *secondary_separator;   /* e.g. ";;;": joins words into one tag; becomes caption_separator */
    const char *caption_prefix;        /* prepended with a space */
    const char *caption_suffix;        /* appended with a space */
    double caption_dropout_rate;
    int caption_dropout_every_n_epochs;
    double caption_tag_dropout_rate;
    int token_warmup_min;     /* 1 */
    double token_warmup_step; /* 0 = off; below 1 a fraction of max_train_steps */
    int enable_wildcard;
} sdt_caption_options;

/* kohya's defaults: all off, caption_separator ",", token_warmup_min 1. */
void sdt_caption_options_default(sdt_caption_options *o);

/* Where in training the caption is loaded. epoch is kohya's current_epoch: 1 for the first epoch (so
 * caption_dropout_every_n_epochs drops on epochs N, 2N, ...); step is the global step (token warmup);
 * max_train_steps resolves a fractional token_warmup_step; sample identifies the sample (e.g. its index in
 * the epoch's order, or image index) so each sample draws its own numbers. */
typedef struct sdt_caption_context {
    uint64_t seed;
    int epoch;
    int64_t step;
    int64_t max_train_steps;
    uint64_t sample;
} sdt_caption_context;

/* The caption to train on. caption is the raw text from the caption file / metadata (several lines joined
 * with "\n" when enable_wildcard). *out is malloc'd (caller frees). Returns 0, or -1 with *error set. */
int sdt_caption_process(const sdt_caption_options *o, const char *caption, const sdt_caption_context *ctx,
                        char **out, char **error);

/* The effective warmup length in steps: token_warmup_step itself, or floor(token_warmup_step *
 * max_train_steps) when it is below 1 (kohya overwrites it once, on first use). */
int64_t sdt_caption_warmup_steps(const sdt_caption_options *o, int64_t max_train_steps);

/* Tag frequencies (kohya's set_tag_frequency, written as ss_tag_frequency): every caption is split at ","
 * (always a comma, whatever caption_separator is), each tag stripped and lower-cased, empty ones skipped.
 * Tags are kept in first-seen order, as Python's dict keeps them. */
typedef struct sdt_tag_count {
    char *tag;
    size_t count;
} sdt_tag_count;

typedef struct sdt_tag_frequency {
    sdt_tag_count *tags;
    size_t count, capacity;
    /* an open-addressing index into tags, so counting a large dataset stays linear */
    size_t *index;
    size_t index_size;
} sdt_tag_frequency;

void sdt_tag_frequency_init(sdt_tag_frequency *f);
int sdt_tag_frequency_add(sdt_tag_frequency *f, const char *caption, char **error);
/* The count of a tag (already lower-cased), 0 when absent. */
size_t sdt_tag_frequency_get(const sdt_tag_frequency *f, const char *tag);
void sdt_tag_frequency_free(sdt_tag_frequency *f);

#ifdef __cplusplus
}
#endif
#endif
