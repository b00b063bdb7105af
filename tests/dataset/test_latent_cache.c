/* The latent cache with the sd15-tiny VAE (random weights) on PNGs written here: the content hash; a miss
 * encodes and stores, a hit (memory or disk, this run or the next) returns the stored bytes exactly; the
 * latents equal a direct encode; every key field (image bytes, resized size, crop, flip, filter, VAE
 * weights, dtype) gives another entry; corrupt, truncated and mismatched files are rebuilt with a warning;
 * no temporary file is left behind; batched preparation with progress. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_fixture.h"
#include "content_hash.h"
#include "latent_cache.h"
#include "sdtune/atomic_file.h"
#include "splitmix64.h"
#include "test_images.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "vae.h"

/* ---- fixtures -------------------------------------------------------------------------------------- */

/* A w x h PNG of smooth colours plus noise from seed, with an alpha ramp when rgba. Returns 0 or -1. */
static int write_png(const char *path, int w, int h, uint64_t seed, int rgba)
{
    int channels = rgba ? 4 : 3;
    uint8_t *pixels = malloc((size_t)w * h * channels); /* [h, w, channels] */
    if (!pixels)
        return -1;
    uint64_t state = seed;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *p = pixels + ((size_t)y * w + x) * channels;
            uint64_t r = splitmix64_next(&state);
            p[0] = (uint8_t)(x * 255 / w + (r & 15));
            p[1] = (uint8_t)(y * 255 / h + ((r >> 8) & 15));
            p[2] = (uint8_t)((x + y) * 4 + ((r >> 16) & 31));
            if (rgba)
                p[3] = (uint8_t)(x * 255 / (w - 1));
        }
    }
    int rc = test_write_png(path, &(png_spec){.width = w,
                                              .height = h,
                                              .color_type = rgba ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB,
                                              .bit_depth = 8,
                                              .rows = pixels});
    free(pixels);
    return rc;
}

/* Counts files under dir whose name contains ".tmp." (a write that was not atomic leaves one). */
static int temporary_files(const char *dir) { return test_count_files_named(dir, ".tmp."); }

typedef struct fixture {
    cache_fixture base; /* the folders, the engine, the model, the warnings */
    sdt_vae *vae;
    sdt_hash128 vae_id;
    char images[3][96]; /* PNGs: 64x48 RGB, 40x40 RGB, 32x32 RGBA */
} fixture;

static int fixture_open(test_state *t, fixture *f)
{
    memset(f, 0, sizeof *f);
    if (cache_fixture_open(t, &f->base, "latent", 7) != 0)
        return -1;
    const int sizes[3][3] = {{64, 48, 0}, {40, 40, 0}, {32, 32, 1}};
    for (int i = 0; i < 3; i++) {
        snprintf(f->images[i], sizeof f->images[i], "%s/image%d.png", f->base.root, i);
        if (write_png(f->images[i], sizes[i][0], sizes[i][1], 100 + (uint64_t)i, sizes[i][2]) != 0) {
            CHECK_MSG(t, 0, "cannot write %s", f->images[i]);
            return -1;
        }
    }
    char *error = NULL;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    int rc = sdt_vae_create(&arch->vae, &f->base.model.vae, &f->vae, &error);
    if (rc == 0)
        rc = sdt_hash_weights(f->base.e, &f->base.model.vae, &f->vae_id, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static void fixture_close(fixture *f)
{
    sdt_vae_free(f->vae);
    cache_fixture_close(&f->base);
}

/* Runs a test's body on a fresh fixture, which it then closes. */
static void with_fixture(test_state *t, void (*body)(test_state *t, fixture *f))
{
    fixture f;
    if (fixture_open(t, &f) == 0)
        body(t, &f);
    fixture_close(&f);
}

static sdt_latent_request request(const fixture *f, int image, int rw, int rh, int left, int top, int cw,
                                  int ch, int flip)
{
    return (sdt_latent_request){.path = f->images[image],
                                .resized_width = rw,
                                .resized_height = rh,
                                .crop_left = left,
                                .crop_top = top,
                                .crop_width = cw,
                                .crop_height = ch,
                                .flip = flip};
}

static sdt_latent_cache *open_cache(test_state *t, fixture *f, const sdt_latent_cache_options *o)
{
    sdt_latent_cache_options options = *o;
    options.warn = cache_fixture_on_warn;
    options.warn_ctx = &f->base;
    sdt_latent_cache *c = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_latent_cache_create(f->base.e, f->vae, f->vae_id, &options, &c, &error) == 0, "%s",
              error ? error : "");
    free(error);
    return c;
}

/* The latents of r by hand: pixels, encode, the entry's noise, sample (F32). [h, w, 4], caller frees. */
static float *direct_encode(test_state *t, fixture *f, sdt_latent_cache *c, const sdt_latent_request *r)
{
    char *error = NULL;
    float *pixels = NULL;
    int ow, oh;
    sdt_hash128 seed;
    if (sdt_latent_cache_seed(c, r, &seed, &error) != 0 ||
        sdt_latent_request_pixels(r, &pixels, NULL, &ow, &oh, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return NULL;
    }
    int h = r->crop_height / 8, w = r->crop_width / 8;
    size_t n = (size_t)h * w * 4;
    sdt_tensor image = sdt_tensor_view(pixels, SDT_F32, 4, (int64_t[]){1, r->crop_height, r->crop_width, 3});
    sdt_tensor moments = {0}, latents = {0};
    float *noise = malloc(n * sizeof *noise), *out = malloc(n * sizeof *out);
    sdt_latent_noise(seed, noise, n);
    sdt_tensor eps = sdt_tensor_view(noise, SDT_F32, 4, (int64_t[]){1, h, w, 4});
    int rc = sdt_vae_encode(f->base.e, f->vae, &moments, &image);
    if (rc == 0)
        rc = sdt_vae_latents(f->base.e, f->vae, &latents, &moments, &eps);
    if (rc == 0)
        memcpy(out, latents.data, n * sizeof *out);
    CHECK_MSG(t, rc == 0, "%s", sdt_engine_error(f->base.e));
    if (moments.data)
        sdt_engine_dealloc(f->base.e, moments.data);
    if (latents.data)
        sdt_engine_dealloc(f->base.e, latents.data);
    free(pixels);
    free(noise);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int get(test_state *t, sdt_latent_cache *c, const sdt_latent_request *r, sdt_latents *l)
{
    char *error = NULL;
    int rc = sdt_latent_cache_get(c, r, l, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static size_t latent_size(const sdt_latents *l)
{
    return (size_t)l->height * l->width * l->channels * (l->dtype == SDT_F16 ? 2 : 4);
}

static int same_latents(const sdt_latents *a, const sdt_latents *b)
{
    return a->data && b->data && a->height == b->height && a->width == b->width && a->dtype == b->dtype &&
           memcmp(a->data, b->data, latent_size(a)) == 0;
}

static double max_relative_difference(const float *a, const float *b, size_t n)
{
    double worst = 0.0, scale = 1e-6;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]) / scale);
    return worst;
}

/* ---- tests ----------------------------------------------------------------------------------------- */

static void test_hash(test_state *t)
{
    uint8_t data[1000];
    uint64_t s = 1;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)splitmix64_next(&s);
    sdt_hash128 whole = sdt_hash128_bytes(data, sizeof data, 0);
    int split_same = 1;
    for (size_t cut = 0; cut <= 17; cut++) {
        sdt_hasher h;
        sdt_hasher_init(&h, 0);
        sdt_hasher_update(&h, data, cut);
        sdt_hasher_update(&h, data + cut, 3);
        sdt_hasher_update(&h, data + cut + 3, sizeof data - cut - 3);
        split_same &= sdt_hash128_equal(sdt_hasher_final(&h), whole);
    }
    CHECK_MSG(t, split_same, "the hash depends on how the input is split");
    /* One flipped bit anywhere, a different length, a different seed: another hash. */
    int all_differ = 1;
    for (size_t i = 0; i < sizeof data; i += 37) {
        data[i] ^= 0x10;
        all_differ &= !sdt_hash128_equal(sdt_hash128_bytes(data, sizeof data, 0), whole);
        data[i] ^= 0x10;
    }
    all_differ &= !sdt_hash128_equal(sdt_hash128_bytes(data, sizeof data - 1, 0), whole);
    all_differ &= !sdt_hash128_equal(sdt_hash128_bytes(data, sizeof data, 1), whole);
    uint8_t zeros[9] = {0};
    all_differ &= !sdt_hash128_equal(sdt_hash128_bytes(zeros, 8, 0), sdt_hash128_bytes(zeros, 9, 0));
    CHECK(t, all_differ);
    char hex[33];
    sdt_hash128 back;
    sdt_hash128_hex(whole, hex);
    CHECK(t, strlen(hex) == 32 && sdt_hash128_parse(hex, &back) == 0 && sdt_hash128_equal(back, whole));
    CHECK(t, sdt_hash128_parse("xyz", &back) != 0);
    char *path = sdt_cache_entry_path("/c/", whole);
    CHECK(t, path && strncmp(path, "/c/", 3) == 0 && strncmp(path + 3, hex, 2) == 0 && strstr(path, hex));
    free(path);
}

/* A miss encodes and writes the file; a hit in the same and in a new cache (the next run) returns the
 * same bytes; the latents equal a direct encode. */
static void hit_and_direct_encode(test_state *t, fixture *f)
{
    sdt_latent_cache_options o = {.cache_dir = f->base.cache_dir};
    sdt_latent_cache *c = open_cache(t, f, &o);
    sdt_latent_request r = request(f, 0, 64, 48, 0, 0, 64, 48, 0);
    sdt_latents first = {0}, again = {0}, next_run = {0};
    if (!c || get(t, c, &r, &first) != 0)
        goto done;
    CHECK(t, first.height == 6 && first.width == 8 && first.channels == 4 && first.dtype == SDT_F32);
    CHECK(t, first.original_width == 64 && first.original_height == 48 && first.crop_ltrb[2] == 64);
    sdt_latent_cache_summary s = sdt_latent_cache_get_summary(c);
    CHECK(t, s.encoded == 1 && s.reused == 0 && s.rebuilt == 0);
    char *path = sdt_latent_cache_path(c, first.key);
    CHECK(t, path && access(path, R_OK) == 0);
    free(path);
    CHECK(t, temporary_files(f->base.cache_dir) == 0);

    float *direct = direct_encode(t, f, c, &r);
    if (direct)
        CHECK_MSG(t, memcmp(direct, first.data, latent_size(&first)) == 0, "max difference %g",
                  max_relative_difference(first.data, direct, latent_size(&first) / 4));
    free(direct);

    if (get(t, c, &r, &again) == 0)
        CHECK(t, same_latents(&again, &first));
    s = sdt_latent_cache_get_summary(c);
    CHECK(t, s.encoded == 1 && s.reused == 1);
    sdt_latent_cache_free(c);

    o.keep_in_memory = 1;
    c = open_cache(t, f, &o);
    if (c && get(t, c, &r, &next_run) == 0) {
        CHECK(t, same_latents(&next_run, &first));
        sdt_latents_free(&next_run);
        CHECK(t, get(t, c, &r, &next_run) == 0 && same_latents(&next_run, &first));
        s = sdt_latent_cache_get_summary(c);
        CHECK(t, s.encoded == 0 && s.reused == 1 && s.in_memory == 1);
    }
    CHECK(t, f->base.warnings == 0);
done:
    sdt_latents_free(&first);
    sdt_latents_free(&again);
    sdt_latents_free(&next_run);
    sdt_latent_cache_free(c);
}

static void test_hit_and_direct_encode(test_state *t) { with_fixture(t, hit_and_direct_encode); }

/* Every key field changes the key (and a get encodes a new entry); equal requests give equal keys. */
static void key_fields(test_state *t, fixture *f)
{
    sdt_latent_cache_options o = {.cache_dir = f->base.cache_dir};
    sdt_latent_cache *c = open_cache(t, f, &o);
    char *error = NULL;
    sdt_latent_request base = request(f, 0, 64, 48, 0, 0, 64, 48, 0);
    sdt_latent_request variants[6];
    for (int i = 0; i < 6; i++)
        variants[i] = base;
    variants[0].resized_width = 72;           /* size */
    variants[1].crop_left = 8;                /* crop offset */
    variants[1].resized_width = 72;           /* (the crop must fit) */
    variants[2].crop_width = 56;              /* crop size */
    variants[3].flip = 1;                     /* flip */
    variants[4].filter = SDT_RESIZE_BILINEAR; /* filter */
    variants[5].alpha_mask = 1;               /* alpha */
    sdt_hash128 keys[8];
    int ok = c && sdt_latent_cache_key(c, &base, &keys[0], &error) == 0;
    for (int i = 0; i < 6 && ok; i++)
        ok = sdt_latent_cache_key(c, &variants[i], &keys[1 + i], &error) == 0;
    CHECK_MSG(t, ok, "%s", error ? error : "");
    free(error);
    error = NULL;
    int distinct = 1;
    for (int i = 0; i < 7 && ok; i++)
        for (int j = i + 1; j < 7; j++)
            distinct &= !sdt_hash128_equal(keys[i], keys[j]);
    CHECK(t, distinct);
    sdt_hash128 same;
    CHECK(t, ok && sdt_latent_cache_key(c, &base, &same, &error) == 0 && sdt_hash128_equal(same, keys[0]));

    /* The flipped entry is the mirror image's: a miss, encoded, not the unflipped latents. */
    sdt_latents plain = {0}, flipped = {0};
    if (c && get(t, c, &base, &plain) == 0 && get(t, c, &variants[3], &flipped) == 0) {
        CHECK(t, !same_latents(&plain, &flipped));
        CHECK(t, sdt_latent_cache_get_summary(c).encoded == 2);
    }
    sdt_latent_cache_free(c);

    /* Other image bytes under the same path (a new run: the path's hash is remembered per cache). */
    CHECK(t, write_png(f->images[0], 64, 48, 999, 0) == 0);
    c = open_cache(t, f, &o);
    sdt_latents edited = {0};
    if (c && sdt_latent_cache_key(c, &base, &keys[7], &error) == 0) {
        CHECK(t, !sdt_hash128_equal(keys[7], keys[0]));
        CHECK(t, get(t, c, &base, &edited) == 0 && !same_latents(&edited, &plain));
        CHECK(t, sdt_latent_cache_get_summary(c).encoded == 1);
    }
    sdt_latent_cache_free(c);
    free(error);
    error = NULL;

    /* Other VAE weights: another identity, another key. */
    int rc = sdt_model_init_random(f->base.e, &f->base.model, 8, &error);
    sdt_hash128 new_id = f->vae_id;
    if (rc == 0)
        rc = sdt_hash_weights(f->base.e, &f->base.model.vae, &new_id, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    error = NULL;
    CHECK(t, !sdt_hash128_equal(new_id, f->vae_id));
    f->vae_id = new_id;
    c = open_cache(t, f, &o);
    sdt_hash128 other_vae;
    CHECK(t, c && sdt_latent_cache_key(c, &base, &other_vae, &error) == 0 &&
                 !sdt_hash128_equal(other_vae, keys[7]));
    sdt_latent_cache_free(c);

    /* F16 storage: another key, and the F32 latents rounded. */
    o.dtype = SDT_F16;
    c = open_cache(t, f, &o);
    sdt_latents half = {0}, full = {0};
    o.dtype = SDT_F32;
    sdt_latent_cache *c32 = open_cache(t, f, &o);
    if (c && c32 && get(t, c, &base, &half) == 0 && get(t, c32, &base, &full) == 0) {
        CHECK(t, !sdt_hash128_equal(half.key, full.key) && half.dtype == SDT_F16);
        size_t n = (size_t)full.height * full.width * full.channels, same_bits = 0;
        for (size_t i = 0; i < n; i++)
            same_bits += ((uint16_t *)half.data)[i] == sdt_f32_to_f16(((float *)full.data)[i]);
        CHECK(t, same_bits == n);
    }

    /* Requests that cannot be encoded are refused with a reason. */
    sdt_latent_request bad = base;
    bad.crop_width = 60;
    CHECK(t, c && sdt_latent_cache_key(c, &bad, &same, &error) != 0);
    CHECK_STR_CONTAINS(t, error, "multiple of 8");
    free(error);
    error = NULL;
    bad = base;
    bad.crop_left = 8;
    CHECK(t, c && sdt_latent_cache_key(c, &bad, &same, &error) != 0);
    CHECK_STR_CONTAINS(t, error, "leaves the resized image");
    free(error);
    CHECK(t, temporary_files(f->base.cache_dir) == 0);
    sdt_latents_free(&plain);
    sdt_latents_free(&flipped);
    sdt_latents_free(&edited);
    sdt_latents_free(&half);
    sdt_latents_free(&full);
    sdt_latent_cache_free(c);
    sdt_latent_cache_free(c32);
}

static void test_key_fields(test_state *t) { with_fixture(t, key_fields); }

/* Overwrites path with len bytes of data (len 0: empty). */
static void overwrite(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (fp) {
        if (len)
            fwrite(data, 1, len, fp);
        fclose(fp);
    }
}

/* Truncated, garbage and mismatched files are rebuilt with a warning, and give the right latents. */
static void corrupt_files(test_state *t, fixture *f)
{
    sdt_latent_cache_options o = {.cache_dir = f->base.cache_dir};
    sdt_latent_request r = request(f, 1, 40, 40, 0, 0, 40, 40, 0),
                       other = request(f, 1, 40, 40, 0, 0, 32, 32, 0);
    sdt_latent_cache *c = open_cache(t, f, &o);
    sdt_latents good = {0}, got = {0};
    char *path = NULL, *other_path = NULL, *data = NULL, *error = NULL;
    size_t len = 0;
    if (!c || get(t, c, &r, &good) != 0)
        goto done;
    path = sdt_latent_cache_path(c, good.key);
    CHECK(t, sdt_read_file(path, 1 << 20, &data, &len, &error) == 0 && len > 100);
    sdt_latent_cache_free(c);
    c = NULL;

    struct {
        const char *what;
        size_t keep; /* bytes of the good file kept (0: garbage written instead) */
    } cases[] = {{"truncated", 0}, {"garbage", 0}, {"empty", 0}};
    cases[0].keep = len - 7;
    for (int i = 0; i < 3; i++) {
        if (i == 0)
            overwrite(path, data, cases[i].keep);
        else if (i == 1)
            overwrite(path, "this is not a safetensors file at all......", 40);
        else
            overwrite(path, "", 0);
        f->base.warnings = 0;
        c = open_cache(t, f, &o);
        if (c && get(t, c, &r, &got) == 0) {
            CHECK_MSG(t, same_latents(&got, &good), "%s", cases[i].what);
            sdt_latent_cache_summary s = sdt_latent_cache_get_summary(c);
            CHECK_MSG(t, s.rebuilt == 1 && s.encoded == 0 && f->base.warnings == 1,
                      "%s: rebuilt %zu, warnings %d", cases[i].what, s.rebuilt, f->base.warnings);
            CHECK_STR_CONTAINS(t, f->base.last_warning, "encoding it again");
        }
        sdt_latents_free(&got);
        sdt_latent_cache_free(c);
        c = NULL;
        /* The rebuilt file is whole again: the next run reuses it. */
        c = open_cache(t, f, &o);
        if (c && get(t, c, &r, &got) == 0)
            CHECK(t, sdt_latent_cache_get_summary(c).reused == 1 && same_latents(&got, &good));
        sdt_latents_free(&got);
        sdt_latent_cache_free(c);
        c = NULL;
    }

    /* Another entry's file under this key's name: its metadata names the other key. */
    c = open_cache(t, f, &o);
    sdt_hash128 other_key;
    if (c && sdt_latent_cache_key(c, &other, &other_key, &error) == 0) {
        other_path = sdt_latent_cache_path(c, other_key);
        CHECK(t, sdt_cache_make_parent(other_path, &error) == 0);
        overwrite(other_path, data, len);
        f->base.warnings = 0;
        if (get(t, c, &other, &got) == 0) {
            CHECK(t, got.height == 4 && got.width == 4 && f->base.warnings == 1);
            CHECK_STR_CONTAINS(t, f->base.last_warning, "holds the entry");
        }
        sdt_latents_free(&got);
    }
    /* prepare finds a damaged file too (values are scanned: a NaN is caught). */
    sdt_latent_cache_free(c);
    c = NULL;
    {
        /* NaN bytes in place of the first latent: find the tensor's data at the end of the file. */
        size_t bytes = latent_size(&good);
        char *nan_file = malloc(len);
        memcpy(nan_file, data, len);
        float nan = NAN;
        memcpy(nan_file + len - bytes, &nan, sizeof nan);
        overwrite(path, nan_file, len);
        free(nan_file);
        f->base.warnings = 0;
        c = open_cache(t, f, &o);
        CHECK(t, c && sdt_latent_cache_prepare(c, &r, 1, &error) == 0);
        if (c)
            CHECK(t, sdt_latent_cache_get_summary(c).rebuilt == 1 && f->base.warnings == 1);
        CHECK_STR_CONTAINS(t, f->base.last_warning, "not finite");
    }
    CHECK(t, temporary_files(f->base.cache_dir) == 0);
done:
    free(error);
    free(data);
    free(path);
    free(other_path);
    sdt_latents_free(&good);
    sdt_latents_free(&got);
    sdt_latent_cache_free(c);
}

static void test_corrupt_files(test_state *t) { with_fixture(t, corrupt_files); }

typedef struct progress_log {
    size_t calls, last_done, total;
    int monotonic;
} progress_log;

static void on_progress(void *ctx, size_t done, size_t total, const char *current)
{
    progress_log *p = ctx;
    p->monotonic &= done == p->last_done + 1 && current && current[0];
    p->calls++;
    p->last_done = done;
    p->total = total;
}

/* prepare: batches of two, two crop sizes, both flips, a repeated request; progress counts every request;
 * the batched latents equal single encodes (up to the BLAS's summation order); the second prepare reuses. */
static void prepare_batches(test_state *t, fixture *f)
{
    progress_log log = {.monotonic = 1};
    sdt_latent_cache_options o = {.cache_dir = f->base.cache_dir,
                                  .keep_in_memory = 1,
                                  .vae_batch_size = 2,
                                  .progress = on_progress,
                                  .progress_ctx = &log};
    sdt_latent_request r[7] = {
        request(f, 0, 64, 48, 0, 0, 64, 48, 0), request(f, 0, 64, 48, 0, 0, 64, 48, 1),
        request(f, 1, 40, 40, 4, 4, 32, 32, 0), request(f, 1, 40, 40, 4, 4, 32, 32, 1),
        request(f, 2, 32, 32, 0, 0, 32, 32, 0), request(f, 0, 43, 32, 3, 0, 40, 32, 0),
        request(f, 1, 40, 40, 4, 4, 32, 32, 0), /* a repeat of r[2] */
    };
    r[4].alpha_mask = 1;
    char *error = NULL;
    sdt_latent_cache *c = open_cache(t, f, &o);
    CHECK_MSG(t, c && sdt_latent_cache_prepare(c, r, 7, &error) == 0, "%s", error ? error : "");
    free(error);
    error = NULL;
    if (!c)
        goto done;
    CHECK_MSG(t, log.calls == 7 && log.last_done == 7 && log.total == 7 && log.monotonic,
              "progress: %zu calls, last %zu of %zu", log.calls, log.last_done, log.total);
    sdt_latent_cache_summary s = sdt_latent_cache_get_summary(c);
    CHECK_MSG(t, s.encoded == 6 && s.reused == 0, "encoded %zu", s.encoded);
    for (int i = 0; i < 6; i++) {
        sdt_latents l = {0};
        if (get(t, c, &r[i], &l) != 0)
            continue;
        float *direct = direct_encode(t, f, c, &r[i]);
        if (direct) {
            double d = max_relative_difference(l.data, direct, latent_size(&l) / 4);
            CHECK_MSG(t, d < 1e-4, "request %d: batched and single encodes differ by %g", i, d);
        }
        free(direct);
        if (i == 4) {
            /* The alpha plane: the PNG's ramp, kept with the entry. */
            CHECK(t, l.alpha && l.alpha_width == 32 && l.alpha_height == 32);
            if (l.alpha)
                CHECK(t, l.alpha[0] == 0 && l.alpha[31] == 255);
        } else {
            CHECK(t, l.alpha == NULL);
        }
        sdt_latents_free(&l);
    }
    CHECK(t, sdt_latent_cache_get_summary(c).in_memory == 6);
    CHECK(t, temporary_files(f->base.cache_dir) == 0);
    sdt_latent_cache_free(c);

    /* The next run: everything from disk, the alpha plane too. */
    log = (progress_log){.monotonic = 1};
    c = open_cache(t, f, &o);
    CHECK(t, c && sdt_latent_cache_prepare(c, r, 7, &error) == 0);
    if (c) {
        s = sdt_latent_cache_get_summary(c);
        CHECK_MSG(t, s.encoded == 0 && s.reused == 6 && s.in_memory == 1, "reused %zu, in memory %zu",
                  s.reused, s.in_memory);
        sdt_latents l = {0};
        if (get(t, c, &r[4], &l) == 0)
            CHECK(t, l.alpha && l.alpha[31] == 255);
        sdt_latents_free(&l);
    }
    CHECK(t, log.calls == 7 && log.monotonic);
    sdt_latent_cache_free(c);

    /* skip_cache_check without memory: files are trusted by their existence. */
    o.keep_in_memory = 0;
    o.skip_cache_check = 1;
    c = open_cache(t, f, &o);
    CHECK(t, c && sdt_latent_cache_prepare(c, r, 7, &error) == 0);
    if (c)
        CHECK(t, sdt_latent_cache_get_summary(c).reused == 7);
    CHECK(t, f->base.warnings == 0);
done:
    free(error);
    sdt_latent_cache_free(c);
}

static void test_prepare_batches(test_state *t) { with_fixture(t, prepare_batches); }

TEST_MAIN("latent_cache", TEST(test_hash), TEST(test_hit_and_direct_encode), TEST(test_key_fields),
          TEST(test_corrupt_files), TEST(test_prepare_batches))
