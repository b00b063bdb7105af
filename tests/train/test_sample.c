/* Sample image generation on the sd15-tiny architecture with random weights (CPU engine, tokenizer of
 * tests/data/tokenizer): determinism per seed, sizes, guidance, every sampler and v prediction, the run
 * time at 64x64 with 4 steps; kohya's file names; the PNG read back with its text chunks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "image.h"
#include "sample.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "unit/test_files.h"

#define TOKENIZER_DIR "tests/data/tokenizer"

typedef struct fixture {
    sdt_engine *e;
    sdt_model model;
    sdt_clip_text *encoder;
    sdt_tokenizer *tokenizer;
    sdt_text_cache *text;
    sdt_unet *unet;
    sdt_vae *vae;
    sdt_sample_models m;
} fixture;

static void fixture_close(fixture *f)
{
    sdt_text_cache_free(f->text);
    sdt_unet_free(f->e, f->unet);
    sdt_vae_free(f->vae);
    sdt_clip_text_free(f->encoder);
    sdt_tokenizer_free(f->tokenizer);
    sdt_model_free(f->e, &f->model);
    if (f->e)
        sdt_engine_free(f->e);
}

static int fixture_open(test_state *t, fixture *f)
{
    memset(f, 0, sizeof *f);
    f->e = test_cpu_engine(t, 1);
    if (!f->e)
        return -1;
    char *error = NULL;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    int rc = sdt_model_init(&f->model, arch, &error);
    if (rc == 0)
        rc = sdt_model_alloc(f->e, &f->model, SDT_F32, &error);
    if (rc == 0)
        rc = sdt_model_init_random(f->e, &f->model, 11, &error);
    if (rc == 0)
        rc = sdt_clip_text_create(&arch->text_encoder, &f->model.text_encoder, &f->encoder, &error);
    if (rc == 0)
        rc = sdt_tokenizer_load(TOKENIZER_DIR "/vocab.json", TOKENIZER_DIR "/merges.txt", &f->tokenizer,
                                &error);
    if (rc == 0) {
        sdt_text_cache_options options = {0};
        sdt_hash128 identity = {0};
        rc = sdt_text_cache_create(f->e, f->encoder, f->tokenizer, sdt_tokenizer_eos(f->tokenizer), identity,
                                   &options, &f->text, &error);
    }
    if (rc == 0)
        rc = sdt_unet_create(&arch->unet, &f->model.unet, &f->unet, &error);
    if (rc == 0)
        rc = sdt_vae_create(&arch->vae, &f->model.vae, &f->vae, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    f->m = (sdt_sample_models){.e = f->e,
                               .unet = f->unet,
                               .text = f->text,
                               .vae = f->vae,
                               .clip_skip = 1,
                               .max_token_length = 75,
                               .prediction = SDT_PREDICT_EPSILON};
    return rc;
}

static sdt_sample_prompt make_prompt(int width, int height, int steps, float scale)
{
    sdt_sample_prompt p = {.prompt = "a red circle",
                           .negative = "blurry",
                           .width = width,
                           .height = height,
                           .seed = -1,
                           .steps = steps,
                           .scale = scale};
    return p;
}

static int generate(test_state *t, fixture *f, const sdt_sample_prompt *p, sdt_sampler_kind kind,
                    uint64_t seed, sdt_rgb_image *img)
{
    char *error = NULL;
    int rc = sdt_sample_generate(&f->m, p, kind, seed, img, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static int same_pixels(const sdt_rgb_image *a, const sdt_rgb_image *b)
{
    return a->width == b->width && a->height == b->height && a->pixels && b->pixels &&
           memcmp(a->pixels, b->pixels, (size_t)a->width * a->height * 3) == 0;
}

/* Distinct byte values: a constant image would pass the other checks too. */
static int distinct_values(const sdt_rgb_image *a)
{
    int seen[256] = {0}, count = 0;
    for (size_t i = 0; i < (size_t)a->width * a->height * 3; i++)
        if (!seen[a->pixels[i]]++)
            count++;
    return count;
}

static void test_generate(test_state *t)
{
    fixture f;
    if (fixture_open(t, &f) != 0) {
        fixture_close(&f);
        return;
    }
    sdt_sample_prompt p = make_prompt(64, 64, 4, 7.5f);
    sdt_rgb_image a = {0}, b = {0}, c = {0}, d = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    generate(t, &f, &p, SDT_SAMPLER_EULER_A, 1, &a);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    /* Reported, not checked: speed lives in benchmarks, and a loaded machine would fail a timed check. */
    printf("64x64, 4 steps, euler_a, CFG 7.5: %.3f s\n", seconds);
    CHECK(t, a.width == 64 && a.height == 64 && a.pixels);
    CHECK(t, a.pixels && distinct_values(&a) > 8);
    generate(t, &f, &p, SDT_SAMPLER_EULER_A, 1, &b);
    CHECK(t, same_pixels(&a, &b));
    generate(t, &f, &p, SDT_SAMPLER_EULER_A, 2, &c);
    CHECK(t, c.pixels && !same_pixels(&a, &c));
    p.scale = 1.0f;
    generate(t, &f, &p, SDT_SAMPLER_EULER_A, 1, &d);
    CHECK(t, d.pixels && !same_pixels(&a, &d));
    sdt_rgb_image_free(&a);
    sdt_rgb_image_free(&b);
    sdt_rgb_image_free(&c);
    sdt_rgb_image_free(&d);

    /* a non-square size, every sampler, v prediction */
    p = make_prompt(128, 64, 3, 5.0f);
    sdt_rgb_image first = {0};
    for (int k = 0; k <= SDT_SAMPLER_DPMPP_2M_KARRAS; k++) {
        sdt_rgb_image img = {0};
        f.m.prediction = k % 2 ? SDT_PREDICT_V : SDT_PREDICT_EPSILON;
        if (generate(t, &f, &p, (sdt_sampler_kind)k, 5, &img) == 0) {
            CHECK_MSG(t, img.width == 128 && img.height == 64, "%s", sdt_sampler_name((sdt_sampler_kind)k));
            CHECK(t, distinct_values(&img) > 8);
            if (k == 0)
                first = img;
            else {
                CHECK_MSG(t, !same_pixels(&first, &img), "%s", sdt_sampler_name((sdt_sampler_kind)k));
                sdt_rgb_image_free(&img);
            }
        }
    }
    sdt_rgb_image_free(&first);

    /* a size the UNet cannot take */
    char *error = NULL;
    p = make_prompt(72, 64, 2, 7.5f);
    sdt_rgb_image bad = {0};
    CHECK(t, sdt_sample_generate(&f.m, &p, SDT_SAMPLER_DDIM, 1, &bad, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "72x64 is not a multiple of 64");
    CHECK(t, bad.pixels == NULL);
    free(error);
    fixture_close(&f);
}

static void test_file_name(test_state *t)
{
    /* the time stamp is local time, as kohya writes it */
    time_t when = 1700000000;
    struct tm local;
    localtime_r(&when, &local);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &local);
    char want[128];
    char *name = sdt_sample_file_name("mylora", 1, 3, 2, 1700000000, 42);
    snprintf(want, sizeof want, "mylora_e000003_02_%s_42.png", stamp);
    CHECK_MSG(t, name && strcmp(name, want) == 0, "%s", name);
    free(name);
    name = sdt_sample_file_name(NULL, 0, 1250, 11, 1700000000, -1);
    snprintf(want, sizeof want, "001250_11_%s.png", stamp);
    CHECK_MSG(t, name && strcmp(name, want) == 0, "%s", name);
    free(name);
    name = sdt_sample_file_name("", 1, 0, 0, 1700000000, 0);
    snprintf(want, sizeof want, "e000000_00_%s_0.png", stamp);
    CHECK_MSG(t, name && strcmp(name, want) == 0, "%s", name);
    free(name);
}

/* The value of the tEXt chunk `key` in a PNG file, or NULL (caller frees). */
static char *png_text(const uint8_t *data, size_t len, const char *key)
{
    size_t at = 8;
    while (at + 12 <= len) {
        uint32_t n = (uint32_t)data[at] << 24 | (uint32_t)data[at + 1] << 16 | (uint32_t)data[at + 2] << 8 |
                     data[at + 3];
        const uint8_t *type = data + at + 4, *body = data + at + 8;
        if (at + 12 + n > len)
            break;
        size_t key_len = strlen(key);
        if (memcmp(type, "tEXt", 4) == 0 && n > key_len && memcmp(body, key, key_len) == 0 &&
            body[key_len] == 0) {
            char *value = malloc(n - key_len);
            memcpy(value, body + key_len + 1, n - key_len - 1);
            value[n - key_len - 1] = '\0';
            return value;
        }
        at += 12 + n;
    }
    return NULL;
}

static void test_write_png(test_state *t)
{
    char dir[256], path[320];
    if (test_make_temp_dir(dir, sizeof dir, "sample") != 0) {
        CHECK(t, 0);
        return;
    }
    snprintf(path, sizeof path, "%s/s.png", dir);
    sdt_rgb_image img = {malloc(16 * 8 * 3), 16, 8};
    for (int i = 0; i < 16 * 8 * 3; i++)
        img.pixels[i] = (uint8_t)(i * 7);
    sdt_sample_prompt p = {.prompt = "a cat",
                           .negative = "ugly",
                           .width = 16,
                           .height = 8,
                           .seed = 9,
                           .steps = 30,
                           .scale = 7.5f};
    char *error = NULL;
    CHECK_MSG(t, sdt_sample_write_png(path, &img, &p, SDT_SAMPLER_EULER_A, 9, 1234, &error) == 0, "%s",
              error);
    free(error);
    sdt_image back = {0};
    error = NULL;
    CHECK_MSG(t, sdt_image_decode_file(path, 0, &back, &error) == 0, "%s", error);
    free(error);
    CHECK(t,
          back.width == 16 && back.height == 8 && back.rgb && memcmp(back.rgb, img.pixels, 16 * 8 * 3) == 0);
    free(back.rgb);
    free(back.alpha);

    size_t len = 0;
    char *file = test_read_file(path, &len);
    static const char *const want[][2] = {
        {"prompt", "a cat"},
        {"negative_prompt", "ugly"},
        {"seed", "9"},
        {"steps", "30"},
        {"scale", "7.5"},
        {"sampler", "euler_a"},
        {"width", "16"},
        {"height", "8"},
        {"step", "1234"},
        {"parameters", "a cat\nNegative prompt: ugly\nSteps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 9, "
                       "Size: 16x8"},
    };
    for (size_t i = 0; file && i < sizeof want / sizeof want[0]; i++) {
        char *value = png_text((const uint8_t *)file, len, want[i][0]);
        CHECK_MSG(t, value && strcmp(value, want[i][1]) == 0, "%s = %s", want[i][0],
                  value ? value : "(none)");
        free(value);
    }
    free(file);

    /* no negative prompt: no "Negative prompt:" line */
    p.negative = "";
    p.scale = 4.0f;
    CHECK_MSG(t, sdt_sample_write_png(path, &img, &p, SDT_SAMPLER_DPMPP_2M_KARRAS, 3, 0, &error) == 0, "%s",
              error);
    free(error);
    file = test_read_file(path, &len);
    char *value = file ? png_text((const uint8_t *)file, len, "parameters") : NULL;
    CHECK_MSG(t,
              value && strcmp(value, "a cat\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 4, Seed: 3, "
                                     "Size: 16x8") == 0,
              "%s", value ? value : "(none)");
    free(value);
    free(file);

    /* an unwritable place */
    error = NULL;
    snprintf(path, sizeof path, "%s/missing/s.png", dir);
    CHECK(t, sdt_sample_write_png(path, &img, &p, SDT_SAMPLER_DDIM, 3, 0, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "missing/s.png");
    free(error);
    sdt_rgb_image_free(&img);
    test_remove_tree(dir);
}

int main(void)
{
    static const test_case cases[] = {TEST(test_generate), TEST(test_file_name), TEST(test_write_png)};
    return run_tests("train.sample", cases, sizeof cases / sizeof cases[0]);
}
