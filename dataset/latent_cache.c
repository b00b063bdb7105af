/* The latent cache (latent_cache.h): keys, the pixels of a request, batched VAE encoding, entries in
 * memory and in safetensors files. */
#include "latent_cache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_store.h"
#include "layers.h"
#include "sdtune/atomic_file.h"
#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"

/* The format of an entry file; bump the version when its layout or the meaning of a key field changes,
 * and the key with it (KEY_TAG), so old files are never read as new ones. */
#define FILE_FORMAT "sdtune.latents"
#define FILE_VERSION "1"
#define KEY_TAG "sdtune latents 1"
/* Larger image files than this are refused (no training image comes near it). */
#define MAX_IMAGE_BYTES ((size_t)1 << 30)

struct sdt_latent_cache {
    sdt_engine *e;
    const sdt_vae *vae;
    sdt_hash128 vae_identity;
    sdt_latent_cache_options options; /* cache_dir points at store.dir */
    int factor;                       /* image pixels per latent pixel: 2^(levels - 1) */
    sdt_cache_store store;            /* files and kept entries (sdt_latents) */
    sdt_hash_map file_hashes;         /* hash of a path -> sdt_hash128 * of the file's bytes */
};

void sdt_latents_free(sdt_latents *l)
{
    if (!l)
        return;
    free(l->data);
    free(l->alpha);
    memset(l, 0, sizeof *l);
}

static size_t latent_bytes(const sdt_latents *l)
{
    return (size_t)l->height * (size_t)l->width * (size_t)l->channels * (sdt_dtype_bits(l->dtype) / 8);
}

/* dst = a deep copy of src. */
static int copy_latents(sdt_latents *dst, const sdt_latents *src)
{
    *dst = *src;
    dst->data = NULL;
    dst->alpha = NULL;
    size_t bytes = latent_bytes(src);
    dst->data = malloc(bytes ? bytes : 1);
    if (src->alpha)
        dst->alpha = malloc((size_t)src->alpha_height * (size_t)src->alpha_width);
    if (!dst->data || (src->alpha && !dst->alpha)) {
        sdt_latents_free(dst);
        return -1;
    }
    memcpy(dst->data, src->data, bytes);
    if (src->alpha)
        memcpy(dst->alpha, src->alpha, (size_t)src->alpha_height * (size_t)src->alpha_width);
    return 0;
}

static void free_entry(void *entry) { sdt_latents_free(entry); }
static int copy_entry(void *dst, const void *src) { return copy_latents(dst, src); }

/* ---- creation ------------------------------------------------------------------------------------- */

int sdt_latent_cache_create(sdt_engine *e, const sdt_vae *vae, sdt_hash128 vae_identity,
                            const sdt_latent_cache_options *options, sdt_latent_cache **out, char **error)
{
    *out = NULL;
    sdt_latent_cache_options o = options ? *options : (sdt_latent_cache_options){0};
    if (o.dtype != SDT_F32 && o.dtype != SDT_F16) {
        *error =
            sdt_format("latent cache: latents are stored as F32 or F16, not %s", sdt_dtype_name(o.dtype));
        return -1;
    }
    if (!sdt_dtype_is_compute(o.compute_dtype)) {
        *error = sdt_format("latent cache: the VAE cannot compute in %s", sdt_dtype_name(o.compute_dtype));
        return -1;
    }
    if (o.vae_batch_size <= 0)
        o.vae_batch_size = 1;
    sdt_latent_cache *c = calloc(1, sizeof *c);
    if (!c) {
        *error = sdt_strdup("latent cache: out of memory");
        return -1;
    }
    c->e = e;
    c->vae = vae;
    c->vae_identity = vae_identity;
    c->factor = 1 << (vae->config.levels - 1);
    sdt_cache_store proto = {.format = FILE_FORMAT,
                             .version = FILE_VERSION,
                             .name = "latent cache",
                             .keep_in_memory = o.keep_in_memory,
                             .entry_size = sizeof(sdt_latents),
                             .free_entry = free_entry,
                             .copy_entry = copy_entry,
                             .progress = o.progress,
                             .progress_ctx = o.progress_ctx,
                             .warn = o.warn,
                             .warn_ctx = o.warn_ctx};
    if (sdt_cache_store_init(&c->store, proto, o.cache_dir, error) != 0) {
        free(c);
        return -1;
    }
    o.cache_dir = c->store.dir;
    c->options = o;
    sdt_hash_map_init(&c->file_hashes);
    *out = c;
    return 0;
}

void sdt_latent_cache_free(sdt_latent_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->file_hashes.capacity; i++)
        free(c->file_hashes.values[i]);
    sdt_hash_map_free(&c->file_hashes);
    sdt_cache_store_free(&c->store);
    free(c);
}

sdt_latent_cache_summary sdt_latent_cache_get_summary(const sdt_latent_cache *c) { return c->store.summary; }

char *sdt_latent_cache_path(const sdt_latent_cache *c, sdt_hash128 key)
{
    return sdt_cache_store_path(&c->store, key);
}

/* ---- keys ------------------------------------------------------------------------------------------ */

static int check_request(const sdt_latent_cache *c, const sdt_latent_request *r, char **error)
{
    const char *name = r->path ? r->path : "(no path)";
    if (!r->path || !r->path[0]) {
        *error = sdt_strdup("latent cache: a request has no image path");
        return -1;
    }
    if (r->resized_width <= 0 || r->resized_height <= 0) {
        *error =
            sdt_format("%s: resized size %dx%d is not positive", name, r->resized_width, r->resized_height);
        return -1;
    }
    if (r->crop_width <= 0 || r->crop_height <= 0 || r->crop_width % c->factor ||
        r->crop_height % c->factor) {
        *error = sdt_format("%s: the crop %dx%d is not a positive multiple of %d (the VAE's factor)", name,
                            r->crop_width, r->crop_height, c->factor);
        return -1;
    }
    if (r->crop_left < 0 || r->crop_top < 0 || r->crop_left + r->crop_width > r->resized_width ||
        r->crop_top + r->crop_height > r->resized_height) {
        *error =
            sdt_format("%s: the crop %dx%d at (%d, %d) leaves the resized image (%dx%d)", name, r->crop_width,
                       r->crop_height, r->crop_left, r->crop_top, r->resized_width, r->resized_height);
        return -1;
    }
    return 0;
}

/* The file's content hash: the request's, else remembered from an earlier request for the same path,
 * else read now. A file changed while the cache lives is therefore noticed only by the next run. */
static int image_hash(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 *out, char **error)
{
    if (r->has_image_hash) {
        *out = r->image_hash;
        return 0;
    }
    sdt_hash128 name = sdt_hash128_bytes(r->path, strlen(r->path), 0);
    const sdt_hash128 *known = sdt_hash_map_get(&c->file_hashes, name);
    if (known) {
        *out = *known;
        return 0;
    }
    sdt_hash128 *h = malloc(sizeof *h);
    if (!h) {
        *error = sdt_format("%s: out of memory", r->path);
        return -1;
    }
    if (sdt_hash128_file(r->path, h, error) != 0) {
        free(h);
        return -1;
    }
    if (sdt_hash_map_put(&c->file_hashes, name, h, NULL) != 0) {
        free(h);
        *error = sdt_format("%s: out of memory", r->path);
        return -1;
    }
    *out = *h;
    return 0;
}

/* The key, and the seed of the entry's noise: the key's fields but the stored dtype, so that an F16 entry
 * holds the F32 entry's latents rounded (the same sample, not another one). */
static int request_keys(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 *key, sdt_hash128 *seed,
                        char **error)
{
    if (check_request(c, r, error) != 0)
        return -1;
    sdt_hash128 content;
    if (image_hash(c, r, &content, error) != 0)
        return -1;
    const sdt_vae_config *vc = &c->vae->config;
    uint32_t scale_bits;
    memcpy(&scale_bits, &vc->scaling_factor, sizeof scale_bits);
    sdt_hasher h;
    sdt_hasher_init(&h, 0);
    sdt_hasher_str(&h, KEY_TAG);
    sdt_hasher_u64(&h, content.lo);
    sdt_hasher_u64(&h, content.hi);
    sdt_hasher_u64(&h, (uint64_t)r->resized_width);
    sdt_hasher_u64(&h, (uint64_t)r->resized_height);
    sdt_hasher_u64(&h, (uint64_t)r->filter);
    sdt_hasher_u64(&h, (uint64_t)r->crop_left);
    sdt_hasher_u64(&h, (uint64_t)r->crop_top);
    sdt_hasher_u64(&h, (uint64_t)r->crop_width);
    sdt_hasher_u64(&h, (uint64_t)r->crop_height);
    sdt_hasher_u64(&h, (uint64_t)(r->flip != 0));
    sdt_hasher_u64(&h, (uint64_t)(r->alpha_mask != 0));
    sdt_hasher_u64(&h, c->vae_identity.lo);
    sdt_hasher_u64(&h, c->vae_identity.hi);
    sdt_hasher_u64(&h, scale_bits);
    sdt_hasher_u64(&h, (uint64_t)vc->latent_channels);
    sdt_hasher_u64(&h, (uint64_t)c->options.compute_dtype);
    *seed = sdt_hasher_final(&h);
    sdt_hasher_u64(&h, (uint64_t)c->options.dtype);
    *key = sdt_hasher_final(&h);
    return 0;
}

int sdt_latent_cache_key(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 *key, char **error)
{
    sdt_hash128 seed;
    return request_keys(c, r, key, &seed, error);
}

int sdt_latent_cache_seed(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 *seed, char **error)
{
    sdt_hash128 key;
    return request_keys(c, r, &key, seed, error);
}

/* ---- noise ----------------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sdt_latent_noise(sdt_hash128 seed, float *noise, size_t count)
{
    uint64_t state = seed.lo ^ (seed.hi * 0xD1B54A32D192ED03ull);
    /* Box-Muller, two values per pair of uniforms; u1 in (0, 1] keeps the logarithm finite. */
    for (size_t i = 0; i < count; i += 2) {
        double u1 = ((double)(splitmix64(&state) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)), t = 2.0 * 3.14159265358979323846 * u2;
        noise[i] = (float)(r * cos(t));
        if (i + 1 < count)
            noise[i + 1] = (float)(r * sin(t));
    }
}

/* ---- pixels ---------------------------------------------------------------------------------------- */

/* Decoded bytes -> resize -> crop (+ flip) -> [-1, 1]. */
static int pixels_from_bytes(const sdt_latent_request *r, const void *bytes, size_t size, float **pixels,
                             uint8_t **alpha, int *original_width, int *original_height, char **error)
{
    sdt_image decoded = {0}, resized = {0}, cropped = {0};
    *pixels = NULL;
    if (alpha)
        *alpha = NULL;
    int status = -1;
    if (sdt_image_decode_memory(bytes, size, r->path, r->alpha_mask != 0, &decoded, error) != 0)
        goto done;
    *original_width = decoded.width;
    *original_height = decoded.height;
    /* Resizing to the same size would still filter with some kernels; the identity is what is meant. */
    const sdt_image *src = &decoded;
    if (decoded.width != r->resized_width || decoded.height != r->resized_height) {
        if (sdt_image_resize(&decoded, r->resized_width, r->resized_height, r->filter, &resized, error) != 0)
            goto done;
        src = &resized;
    }
    if (sdt_image_crop(src, r->crop_left, r->crop_top, r->crop_width, r->crop_height, r->flip != 0, &cropped,
                       error) != 0)
        goto done;
    size_t n = (size_t)r->crop_width * (size_t)r->crop_height;
    float *px = malloc(n * 3 * sizeof *px); /* [H, W, 3] */
    uint8_t *mask = NULL;
    if (alpha && r->alpha_mask)
        mask = malloc(n); /* [H, W] */
    if (!px || (alpha && r->alpha_mask && !mask)) {
        free(px);
        free(mask);
        *error = sdt_format("%s: out of memory", r->path);
        goto done;
    }
    /* torchvision's ToTensor then Normalize(0.5, 0.5), as kohya prepares images: x / 127.5 - 1. */
    for (size_t i = 0; i < n * 3; i++)
        px[i] = (float)cropped.rgb[i] / 127.5f - 1.0f;
    if (mask) {
        /* An image without alpha is opaque everywhere (kohya's mask of ones). */
        if (cropped.alpha)
            memcpy(mask, cropped.alpha, n);
        else
            memset(mask, 255, n);
        *alpha = mask;
    }
    *pixels = px;
    status = 0;
done:
    sdt_image_free(&decoded);
    sdt_image_free(&resized);
    sdt_image_free(&cropped);
    return status;
}

static int read_image(const char *path, char **bytes, size_t *size, char **error)
{
    char *why = NULL;
    if (sdt_read_file(path, MAX_IMAGE_BYTES, bytes, size, &why) != 0) {
        *error = sdt_format("%s: %s", path, why ? why : "cannot read");
        free(why);
        return -1;
    }
    return 0;
}

int sdt_latent_request_pixels(const sdt_latent_request *r, float **pixels, uint8_t **alpha,
                              int *original_width, int *original_height, char **error)
{
    char *bytes = NULL;
    size_t size = 0;
    if (read_image(r->path, &bytes, &size, error) != 0)
        return -1;
    int status = pixels_from_bytes(r, bytes, size, pixels, alpha, original_width, original_height, error);
    free(bytes);
    return status;
}

/* ---- entry files ----------------------------------------------------------------------------------- */

/* An entry and what it is for: the context of load_file and write_file. */
typedef struct entry_file {
    const sdt_latent_cache *c;
    sdt_hash128 key;
    const sdt_latent_request *r;
    sdt_latents *l;    /* filled by load_file when not NULL; written by write_file */
    sdt_hash128 image; /* the image file's hash, for write_file */
} entry_file;

/* Reads and checks an entry's opened file, its format, version and key already checked (an
 * sdt_cache_load_fn). Returns 0 (f->l filled when not NULL), or -1 with *why set (caller frees) saying
 * what is wrong with it. */
static int load_file(void *ctx, const sdt_safetensors *st, char **why)
{
    const entry_file *f = ctx;
    const sdt_latent_cache *c = f->c;
    const sdt_latent_request *r = f->r;
    sdt_hash128 key = f->key;
    sdt_latents *out = f->l;
    int scan_values = !c->options.skip_cache_check;
    int h = r->crop_height / c->factor, w = r->crop_width / c->factor, ch = c->vae->config.latent_channels;
    sdt_latents l = {.key = key, .height = h, .width = w, .channels = ch, .dtype = c->options.dtype};
    const sdt_st_tensor *t = sdt_safetensors_find(st, "latents");
    const sdt_st_tensor *a = sdt_safetensors_find(st, "alpha_mask");
    if (!t || t->dtype != l.dtype || t->ndim != 3 || t->shape[0] != h || t->shape[1] != w ||
        t->shape[2] != ch) {
        *why = sdt_format("its latents are not [%d, %d, %d] %s", h, w, ch, sdt_dtype_name(l.dtype));
        return -1;
    }
    if (r->alpha_mask && (!a || a->dtype != SDT_U8 || a->ndim != 2 || a->shape[0] != r->crop_height ||
                          a->shape[1] != r->crop_width)) {
        *why = sdt_format("its alpha mask is not [%d, %d] U8", r->crop_height, r->crop_width);
        return -1;
    }
    if (!r->alpha_mask && a) {
        *why = sdt_strdup("it has an alpha mask that was not asked for");
        return -1;
    }
    const char *original = sdt_cache_file_meta(st, "original_size");
    const char *crop = sdt_cache_file_meta(st, "crop_ltrb");
    int *ltrb = l.crop_ltrb;
    if (sscanf(original, "%d,%d", &l.original_width, &l.original_height) != 2 ||
        sscanf(crop, "%d,%d,%d,%d", &ltrb[0], &ltrb[1], &ltrb[2], &ltrb[3]) != 4) {
        *why = sdt_strdup("its original_size or crop_ltrb metadata is malformed");
        return -1;
    }
    if (scan_values) {
        /* The content check: a value that is not finite means damaged bytes (or an encoder overflow). */
        float *values = malloc((t->count ? t->count : 1) * sizeof *values);
        if (!values || sdt_convert(values, SDT_F32, t->data, t->dtype, t->count) != 0) {
            free(values);
            *why = sdt_strdup("out of memory reading it");
            return -1;
        }
        size_t bad = 0;
        for (uint64_t i = 0; i < t->count; i++)
            bad += !isfinite(values[i]);
        free(values);
        if (bad) {
            *why = sdt_format("%zu of its latents are not finite", bad);
            return -1;
        }
    }
    if (out) {
        l.data = malloc(t->nbytes ? t->nbytes : 1);
        if (r->alpha_mask) {
            l.alpha = malloc(a->nbytes ? a->nbytes : 1);
            l.alpha_height = r->crop_height;
            l.alpha_width = r->crop_width;
        }
        if (!l.data || (r->alpha_mask && !l.alpha)) {
            sdt_latents_free(&l);
            *why = sdt_strdup("out of memory reading it");
            return -1;
        }
        memcpy(l.data, t->data, t->nbytes); /* the mapping is not aligned: copy, never cast */
        if (r->alpha_mask)
            memcpy(l.alpha, a->data, a->nbytes);
        *out = l;
    }
    return 0;
}

/* Writes the file of an entry (an sdt_cache_write_fn). */
static int write_file(void *ctx, const char *path, char **error)
{
    const entry_file *f = ctx;
    const sdt_latent_cache *c = f->c;
    const sdt_latents *l = f->l;
    const sdt_latent_request *r = f->r;
    sdt_hash128 image = f->image;
    char key[33], image_hex[33], vae[33], original[32], resized[32], crop[64], filter[8];
    sdt_hash128_hex(l->key, key);
    sdt_hash128_hex(image, image_hex);
    sdt_hash128_hex(c->vae_identity, vae);
    snprintf(original, sizeof original, "%d,%d", l->original_width, l->original_height);
    snprintf(resized, sizeof resized, "%d,%d", r->resized_width, r->resized_height);
    snprintf(crop, sizeof crop, "%d,%d,%d,%d", l->crop_ltrb[0], l->crop_ltrb[1], l->crop_ltrb[2],
             l->crop_ltrb[3]);
    snprintf(filter, sizeof filter, "%d", (int)r->filter);
    const char *kv[] = {
        "format",       FILE_FORMAT, "version",       FILE_VERSION,
        "key",          key,         "image_hash",    image_hex,
        "source",       r->path,     "original_size", original,
        "resized_size", resized,     "filter",        filter,
        "crop_ltrb",    crop,        "flip",          r->flip ? "1" : "0",
        "vae",          vae,         "dtype",         sdt_dtype_name(l->dtype),
    };
    int64_t shape[3] = {l->height, l->width, l->channels};
    int64_t alpha_shape[2] = {l->alpha_height, l->alpha_width};
    sdt_st_write_tensor tensors[2] = {
        {.name = "latents", .dtype = l->dtype, .ndim = 3, .shape = shape, .data = l->data},
        {.name = "alpha_mask", .dtype = SDT_U8, .ndim = 2, .shape = alpha_shape, .data = l->alpha},
    };
    /* The source path may not be valid UTF-8; it is informational, so it is left out rather than fail. */
    size_t pairs = sizeof kv / sizeof kv[0] / 2;
    int status = sdt_safetensors_write(path, tensors, l->alpha ? 2 : 1, kv, pairs, error);
    if (status != 0 && sdt_utf8_invalid_at(r->path, strlen(r->path)) < strlen(r->path)) {
        free(*error);
        *error = NULL;
        kv[9] = "";
        status = sdt_safetensors_write(path, tensors, l->alpha ? 2 : 1, kv, pairs, error);
    }
    return status;
}

/* An entry is done: onto disk when there is a disk cache, into memory when kept (moving l's buffers, which
 * leaves l empty). */
static int store(sdt_latent_cache *c, sdt_latents *l, const sdt_latent_request *r, int write_disk,
                 char **error)
{
    if (c->store.dir && write_disk) {
        entry_file f = {.c = c, .key = l->key, .r = r, .l = l};
        if (image_hash(c, r, &f.image, error) != 0 ||
            sdt_cache_store_write(&c->store, l->key, write_file, &f, error) != 0)
            return -1;
    }
    return sdt_cache_store_keep(&c->store, l->key, l, error);
}

/* ---- encoding -------------------------------------------------------------------------------------- */

/* Encodes n requests of one crop size in one VAE forward: out[i] gets the entry of reqs[i] (key keys[i],
 * noise from seeds[i]).
 * Returns 0, or -1 with *error set (out then empty). */
static int encode_batch(sdt_latent_cache *c, const sdt_latent_request *const *reqs, const sdt_hash128 *keys,
                        const sdt_hash128 *seeds, size_t n, sdt_latents *out, char **error)
{
    sdt_engine *e = c->e;
    const int H = reqs[0]->crop_height, W = reqs[0]->crop_width;
    const int h = H / c->factor, w = W / c->factor, C = c->vae->config.latent_channels;
    const size_t image_count = (size_t)H * W * 3, latent_count = (size_t)h * w * C;
    const sdt_dtype cd = c->options.compute_dtype;
    memset(out, 0, n * sizeof *out);
    float *pixels = malloc(n * image_count * sizeof *pixels);  /* [B, H, W, 3] */
    float *noise = malloc(n * latent_count * sizeof *noise);   /* [B, h, w, C] */
    void *raw = malloc(n * image_count * sizeof(float));       /* pixels or noise in the compute dtype */
    float *result = malloc(n * latent_count * sizeof *result); /* [B, h, w, C] */
    sdt_tensor image = {0}, moments = {0}, eps = {0}, latents = {0};
    int status = -1;
    if (!pixels || !noise || !raw || !result) {
        *error = sdt_strdup("latent cache: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const sdt_latent_request *r = reqs[i];
        float *px = NULL;
        sdt_latents *l = &out[i];
        *l = (sdt_latents){.key = keys[i], .height = h, .width = w, .channels = C, .dtype = c->options.dtype};
        if (sdt_latent_request_pixels(r, &px, r->alpha_mask ? &l->alpha : NULL, &l->original_width,
                                      &l->original_height, error) != 0)
            goto done;
        memcpy(pixels + i * image_count, px, image_count * sizeof *px);
        free(px);
        if (l->alpha) {
            l->alpha_height = H;
            l->alpha_width = W;
        }
        l->crop_ltrb[0] = r->crop_left;
        l->crop_ltrb[1] = r->crop_top;
        l->crop_ltrb[2] = r->crop_left + W;
        l->crop_ltrb[3] = r->crop_top + H;
        sdt_latent_noise(seeds[i], noise + i * latent_count, latent_count);
    }
    if (sdt_act_alloc(e, &image, cd, 4, SDT_SHAPE((int64_t)n, H, W, 3)) != 0 ||
        sdt_convert(raw, cd, pixels, SDT_F32, n * image_count) != 0 ||
        sdt_engine_upload(e, &image, raw, sdt_tensor_bytes(&image)) != 0 ||
        sdt_vae_encode(e, c->vae, &moments, &image) != 0)
        goto engine_failed;
    sdt_act_free(e, &image); /* the largest tensor; gone before the next ones */
    if (sdt_act_alloc(e, &eps, moments.dtype, 4, SDT_SHAPE((int64_t)n, h, w, C)) != 0 ||
        sdt_convert(raw, moments.dtype, noise, SDT_F32, n * latent_count) != 0 ||
        sdt_engine_upload(e, &eps, raw, sdt_tensor_bytes(&eps)) != 0 ||
        sdt_vae_latents(e, c->vae, &latents, &moments, &eps) != 0 ||
        sdt_engine_download(e, raw, &latents, sdt_tensor_bytes(&latents)) != 0 ||
        sdt_convert(result, SDT_F32, raw, latents.dtype, n * latent_count) != 0)
        goto engine_failed;
    for (size_t i = 0; i < n; i++) {
        sdt_latents *l = &out[i];
        l->data = malloc(latent_bytes(l));
        if (!l->data) {
            *error = sdt_strdup("latent cache: out of memory");
            goto done;
        }
        sdt_convert(l->data, l->dtype, result + i * latent_count, SDT_F32, latent_count);
    }
    status = 0;
    goto done;
engine_failed:
    *error = sdt_format("latent cache: encoding %s: %s", reqs[0]->path, sdt_engine_error(e));
done:
    sdt_act_free(e, &image);
    sdt_act_free(e, &moments);
    sdt_act_free(e, &eps);
    sdt_act_free(e, &latents);
    free(pixels);
    free(noise);
    free(raw);
    free(result);
    if (status != 0)
        for (size_t i = 0; i < n; i++)
            sdt_latents_free(&out[i]);
    return status;
}

/* ---- prepare and get ------------------------------------------------------------------------------- */

/* Looks for a valid file of the entry. Returns 1 when found (into *out when out is not NULL), 0 when there
 * is none or it was bad (*bad set then, with a warning given). */
static int try_disk(sdt_latent_cache *c, const sdt_latent_request *r, sdt_hash128 key, sdt_latents *out,
                    int *bad)
{
    entry_file f = {.c = c, .key = key, .r = r, .l = out};
    return sdt_cache_store_load(&c->store, key, r->path, load_file, &f, bad);
}

typedef struct pending {
    size_t index; /* into the requests */
    sdt_hash128 key, seed;
    int rebuild;
} pending;

static int compare_pending(const void *pa, const void *pb, void *ctx)
{
    const sdt_latent_request *requests = ctx;
    const pending *a = pa, *b = pb;
    const sdt_latent_request *ra = &requests[a->index], *rb = &requests[b->index];
    if (ra->crop_width != rb->crop_width)
        return ra->crop_width < rb->crop_width ? -1 : 1;
    if (ra->crop_height != rb->crop_height)
        return ra->crop_height < rb->crop_height ? -1 : 1;
    if (a->key.hi != b->key.hi)
        return a->key.hi < b->key.hi ? -1 : 1;
    if (a->key.lo != b->key.lo)
        return a->key.lo < b->key.lo ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Insertion sort: qsort has no context argument in C11, and a prepare sorts at most once per dataset. */
static void sort_pending(pending *p, size_t n, const sdt_latent_request *requests)
{
    for (size_t i = 1; i < n; i++) {
        pending x = p[i];
        size_t j = i;
        while (j > 0 && compare_pending(&p[j - 1], &x, (void *)requests) > 0) {
            p[j] = p[j - 1];
            j--;
        }
        p[j] = x;
    }
}

static void progress(const sdt_latent_cache *c, size_t done, size_t total, const char *current)
{
    sdt_cache_store_progress(&c->store, done, total, current);
}

/* Encodes and stores a batch of unique pending requests. */
static int flush(sdt_latent_cache *c, const sdt_latent_request *requests, const pending *batch, size_t n,
                 char **error)
{
    if (n == 0)
        return 0;
    const sdt_latent_request **reqs = calloc(n, sizeof *reqs);
    sdt_hash128 *keys = calloc(2 * n, sizeof *keys); /* [n] keys, then [n] seeds */
    sdt_latents *out = malloc(n * sizeof *out);
    if (!reqs || !keys || !out) {
        free(reqs);
        free(keys);
        free(out);
        *error = sdt_strdup("latent cache: out of memory");
        return -1;
    }
    sdt_hash128 *seeds = keys + n;
    for (size_t i = 0; i < n; i++) {
        reqs[i] = &requests[batch[i].index];
        keys[i] = batch[i].key;
        seeds[i] = batch[i].seed;
    }
    int status = encode_batch(c, reqs, keys, seeds, n, out, error);
    for (size_t i = 0; i < n && status == 0; i++) {
        status = store(c, &out[i], reqs[i], 1, error);
        if (status == 0)
            sdt_cache_store_count(&c->store, 0, batch[i].rebuild);
    }
    for (size_t i = 0; i < n; i++) /* moved into memory (then empty) or done with */
        sdt_latents_free(&out[i]);
    free(reqs);
    free(keys);
    free(out);
    return status;
}

/* Progress for a batch just stored and for the repeated requests it answered too. Returns the new count. */
static size_t report_batch(const sdt_latent_cache *c, const sdt_latent_request *requests,
                           const pending *batch, size_t n, size_t twins, size_t done, size_t total)
{
    for (size_t k = 0; k < n; k++)
        progress(c, ++done, total, requests[batch[k].index].path);
    for (size_t k = 0; k < twins; k++)
        progress(c, ++done, total, requests[batch[n - 1].index].path);
    return done;
}

int sdt_latent_cache_prepare(sdt_latent_cache *c, const sdt_latent_request *requests, size_t n, char **error)
{
    pending *todo = malloc((n ? n : 1) * sizeof *todo);
    if (!todo) {
        *error = sdt_strdup("latent cache: out of memory");
        return -1;
    }
    size_t n_todo = 0, done = 0;
    int status = 0;
    /* Without memory or disk to keep entries in there is nothing to prepare; get encodes every time. */
    int storing = c->store.dir || c->options.keep_in_memory;
    for (size_t i = 0; i < n && status == 0; i++) {
        const sdt_latent_request *r = &requests[i];
        sdt_hash128 key, seed;
        if (request_keys(c, r, &key, &seed, error) != 0) {
            status = -1;
            break;
        }
        if (!storing || sdt_cache_store_get(&c->store, key)) {
            c->store.summary.in_memory += storing;
            progress(c, ++done, n, r->path);
            continue;
        }
        int bad = 0;
        if (c->store.dir && c->options.skip_cache_check && !c->options.keep_in_memory) {
            /* Trusted unopened: a bad file is still caught (and rebuilt) when get reads it. */
            if (sdt_cache_store_has_file(&c->store, key)) {
                c->store.summary.reused++;
                progress(c, ++done, n, r->path);
                continue;
            }
        } else if (c->store.dir) {
            sdt_latents l = {0};
            if (try_disk(c, r, key, c->options.keep_in_memory ? &l : NULL, &bad)) {
                c->store.summary.reused++;
                if (c->options.keep_in_memory) {
                    status = store(c, &l, r, 0, error); /* the file is already there */
                    sdt_latents_free(&l);
                }
                progress(c, ++done, n, r->path);
                continue;
            }
        }
        todo[n_todo++] = (pending){.index = i, .key = key, .seed = seed, .rebuild = bad};
    }
    if (status == 0)
        sort_pending(todo, n_todo, requests);
    /* Batches of one crop size; a key asked for twice is encoded once (equal keys are adjacent). */
    size_t start = 0, batch_n = 0, twins = 0, bs = (size_t)c->options.vae_batch_size;
    pending *batch = todo; /* unique entries are compacted to the front of their run */
    for (size_t j = 0; j < n_todo && status == 0; j++) {
        if (j > 0 && sdt_hash128_equal(todo[j].key, todo[j - 1].key)) {
            twins++;
            continue;
        }
        const sdt_latent_request *r = &requests[todo[j].index];
        if (batch_n > 0) {
            const sdt_latent_request *first = &requests[batch[0].index];
            if (batch_n == bs || first->crop_width != r->crop_width || first->crop_height != r->crop_height) {
                status = flush(c, requests, batch, batch_n, error);
                if (status == 0)
                    done = report_batch(c, requests, batch, batch_n, twins, done, n);
                start = j;
                batch = todo + start;
                batch_n = 0;
                twins = 0;
            }
        }
        batch[batch_n++] = todo[j];
    }
    if (status == 0 && batch_n > 0) {
        status = flush(c, requests, batch, batch_n, error);
        if (status == 0)
            done = report_batch(c, requests, batch, batch_n, twins, done, n);
    }
    free(todo);
    return status;
}

int sdt_latent_cache_get(sdt_latent_cache *c, const sdt_latent_request *r, sdt_latents *out, char **error)
{
    memset(out, 0, sizeof *out);
    sdt_hash128 key, seed;
    if (request_keys(c, r, &key, &seed, error) != 0)
        return -1;
    int kept = sdt_cache_store_copy_kept(&c->store, key, out, error);
    if (kept != 0)
        return kept < 0 ? -1 : 0;
    int bad = 0;
    sdt_latents l = {0};
    int from_disk = try_disk(c, r, key, &l, &bad);
    const sdt_latent_request *reqs[1] = {r};
    if (!from_disk && encode_batch(c, reqs, &key, &seed, 1, &l, error) != 0)
        return -1;
    sdt_cache_store_count(&c->store, from_disk, bad);
    if (copy_latents(out, &l) != 0) {
        sdt_latents_free(&l);
        *error = sdt_strdup("latent cache: out of memory");
        return -1;
    }
    /* A file just read goes only into memory; a fresh encode goes wherever the options keep entries. */
    int status = store(c, &l, r, !from_disk, error);
    sdt_latents_free(&l);
    if (status != 0)
        sdt_latents_free(out);
    return status;
}
