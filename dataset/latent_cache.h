/* The latent cache (kohya's cache_latents and cache_latents_to_disk): each training image, resized,
 * cropped (and flipped) as a bucket wants it, is VAE-encoded once, and its latents are kept in memory,
 * on disk, or both. See docs/dataset.md, "Caches".
 *
 * An entry is named by a 128-bit key over everything its latents depend on: the image file's bytes, the
 * resized size and filter, the crop, the flip, whether the alpha mask is kept, the VAE (the caller's
 * identity of its weights, see sdt_hash_weights, and its scaling factor), the compute dtype and the stored
 * dtype. Anything else changing gives another key, so a stale entry is never read; it is simply no longer
 * asked for.
 *
 * Like kohya, the cache holds a sample of the latent distribution, not its mean: (mean + std * noise) *
 * scaling_factor (sd_arch_spec §4.5). The noise comes from a generator seeded with the key (less the
 * stored dtype), so an entry encoded twice is the same sample both times, whichever batch it was encoded
 * in, and an F16 entry is the F32 one rounded.
 *
 * On disk an entry is <cache_dir>/<2 hex>/<32 hex>.safetensors, written atomically: a tensor "latents"
 * [h, w, latent_channels], "alpha_mask" [H, W] U8 when kept, and metadata with the key and its fields,
 * the original image size and crop_ltrb. A file that does not open, names another key, or has the wrong
 * shape or dtype is rebuilt with a warning; unless skip_cache_check, so is one holding a non-finite value.
 *
 * One cache serves one thread. */
#ifndef SDTUNE_DATASET_LATENT_CACHE_H
#define SDTUNE_DATASET_LATENT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "content_hash.h"
#include "image.h"
#include "vae.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_latent_cache_options {
    const char *cache_dir;   /* cache_latents_to_disk: where entries live; NULL or "": none on disk */
    int keep_in_memory;      /* cache_latents: keep every entry in memory once encoded or read */
    sdt_dtype dtype;         /* of the stored latents: SDT_F32 (0, the default) or SDT_F16 */
    sdt_dtype compute_dtype; /* of the images fed to the VAE: F32 (0), F16 or BF16 */
    int vae_batch_size;      /* images per VAE forward when preparing (<= 0: 1) */
    int skip_cache_check;    /* trust existing files: no value scan, and prepare only checks they exist */
    sdt_cache_progress_fn progress;
    void *progress_ctx;
    sdt_cache_warn_fn warn;
    void *warn_ctx;
} sdt_latent_cache_options;

/* One image as the training step will see it. */
typedef struct sdt_latent_request {
    const char *path;            /* the image file (PNG, JPEG, WebP) */
    int has_image_hash;          /* image_hash is the file's sdt_hash128_file (else computed here, once) */
    sdt_hash128 image_hash;      /* */
    int resized_width;           /* the image is first resized to this size (its aspect kept or not: the */
    int resized_height;          /* caller's bucket decides) */
    sdt_resize_filter filter;    /* resize_interpolation (AUTO: area down, lanczos up) */
    int crop_left, crop_top;     /* then cropped to the bucket: a window of the resized image whose sides */
    int crop_width, crop_height; /* are multiples of the VAE's factor (8) */
    int flip;                    /* mirrored left-right after the crop (flip_aug: ask for both) */
    int alpha_mask;              /* keep the alpha plane (cropped and flipped likewise) beside the latents */
} sdt_latent_request;

/* An entry. data and alpha are the caller's after sdt_latent_cache_get (sdt_latents_free). */
typedef struct sdt_latents {
    sdt_hash128 key;
    int height, width, channels; /* the latents are [height, width, channels] = [H/8, W/8, 4] */
    sdt_dtype dtype;
    void *data;     /* [height, width, channels] */
    uint8_t *alpha; /* [H, W] the crop's alpha, 255 = opaque; NULL unless asked for */
    int alpha_height, alpha_width;
    int original_width, original_height; /* the decoded image, before the resize */
    int crop_ltrb[4];                    /* the crop in the resized image: left, top, right, bottom */
} sdt_latents;

void sdt_latents_free(sdt_latents *l);

/* What a cache did since it was created (content_hash.h). */
typedef sdt_cache_summary sdt_latent_cache_summary;

typedef struct sdt_latent_cache sdt_latent_cache;

/* vae: the encoder on e (both outlive the cache); vae_identity: what names its weights (sdt_hash_weights
 * of its table, or any hash of the file it came from). Returns 0, or -1 with *error set (caller frees). */
int sdt_latent_cache_create(sdt_engine *e, const sdt_vae *vae, sdt_hash128 vae_identity,
                            const sdt_latent_cache_options *options, sdt_latent_cache **out, char **error);
void sdt_latent_cache_free(sdt_latent_cache *c);

/* The key of a request (hashing the image file the first time this cache sees its path). Returns 0, or
 * -1 with *error set: an unreadable file, a crop outside the resized image or not a multiple of 8. */
int sdt_latent_cache_key(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 *key, char **error);
/* The file an entry of this key has (or would have); NULL without a disk cache (caller frees). */
char *sdt_latent_cache_path(const sdt_latent_cache *c, sdt_hash128 key);

/* Makes sure every request has its entry: in memory (keep_in_memory) or on disk. Existing files are
 * checked and reused, or rebuilt with a warning; the rest are encoded vae_batch_size at a time, grouping
 * requests of the same crop size. Calls progress after each request is settled. Returns 0, or -1 with
 * *error set (an image that cannot be read, a write that fails, an engine error). */
int sdt_latent_cache_prepare(sdt_latent_cache *c, const sdt_latent_request *requests, size_t n, char **error);

/* The entry of one request, from memory, else from disk, else encoded now (and stored as the options
 * say). out is the caller's (sdt_latents_free). Returns 0, or -1 with *error set. */
int sdt_latent_cache_get(sdt_latent_cache *c, const sdt_latent_request *r, sdt_latents *out, char **error);

sdt_latent_cache_summary sdt_latent_cache_get_summary(const sdt_latent_cache *c);

/* The image a request turns into, as the VAE gets it: pixels [H, W, 3] F32 in [-1, 1] (caller frees),
 * H x W the crop; *alpha [H, W] (caller frees) when alpha is not NULL and the request keeps it. Returns 0,
 * or -1 with *error set. For tests and for encoding without a cache. */
int sdt_latent_request_pixels(const sdt_latent_request *r, float **pixels, uint8_t **alpha,
                              int *original_width, int *original_height, char **error);

/* The seed of a request's noise: its key without the stored dtype, so that an F16 entry holds the F32
 * entry's latents rounded. Returns 0, or -1 with *error set as sdt_latent_cache_key. */
int sdt_latent_cache_seed(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 *seed, char **error);
/* The N(0, 1) noise [h, w, channels] (count values) an entry is sampled with, from its seed. */
void sdt_latent_noise(sdt_hash128 seed, float *noise, size_t count);

#ifdef __cplusplus
}
#endif
#endif
