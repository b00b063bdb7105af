/* sdt_png_write: pixel-exact round trips through the dataset's own decoder, text chunks (tEXt for ASCII,
 * iTXt for UTF-8) read back with libpng, bad arguments, and errors that name the file with nothing left
 * behind. */
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "unit/check.h"
#include "unit/test_files.h"

/* A deterministic pattern: every channel of every pixel differs, so a swapped channel or row shows. */
static uint8_t *make_pixels(int width, int height, int channels)
{
    uint8_t *p = malloc((size_t)width * height * channels); /* [height, width, channels] */
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            for (int c = 0; c < channels; c++)
                p[((size_t)y * width + x) * channels + c] = (uint8_t)(x * 7 + y * 13 + c * 71 + (x * y) % 5);
    return p;
}

static void round_trip(test_state *t, const char *dir, int width, int height, int channels)
{
    char *path = sdt_format("%s/img_%dx%d_%d.png", dir, width, height, channels);
    uint8_t *pixels = make_pixels(width, height, channels);
    char *error = NULL;
    CHECK_MSG(t, sdt_png_write(path, pixels, width, height, channels, NULL, 0, &error) == 0, "%s", error);
    sdt_image img;
    CHECK_MSG(t, sdt_image_decode_file(path, 1, &img, &error) == 0, "%s", error);
    CHECK(t, img.width == width && img.height == height);
    sdt_image_info info;
    CHECK(t, sdt_image_probe_file(path, &info, &error) == 0);
    CHECK(t, info.format == SDT_IMAGE_PNG && info.has_alpha == (channels == 4));
    CHECK(t, img.alpha != NULL); /* keep_alpha: an opaque image gets an all-255 mask */
    int mismatches = 0;
    for (int i = 0; img.rgb && i < width * height; i++) {
        for (int c = 0; c < 3; c++)
            mismatches += img.rgb[i * 3 + c] != pixels[i * channels + c];
        mismatches += !img.alpha || img.alpha[i] != (channels == 4 ? pixels[i * 4 + 3] : 255);
    }
    CHECK_MSG(t, mismatches == 0, "%d values differ after the round trip", mismatches);
    sdt_image_free(&img);
    free(error);
    free(pixels);
    free(path);
}

static void test_round_trip_rgb_rgba(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "pngw") == 0);
    round_trip(t, dir, 64, 48, 3);
    round_trip(t, dir, 33, 17, 4);
    round_trip(t, dir, 1, 1, 3);
    CHECK(t, test_count_files_named(dir, ".tmp.") == 0);
    CHECK(t, test_count_files_named(dir, ".png") == 3);
    test_remove_tree(dir);
}

typedef struct read_text {
    int n;
    char keys[8][80];
    char values[8][256];
    int is_itxt[8];
} read_text;

/* Reads every text chunk (before and after IDAT) with libpng. */
static int read_text_chunks(const char *path, read_text *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_textp text = NULL;
    int n = png_get_text(png, info, &text, NULL);
    for (int i = 0; i < n && i < 8; i++) {
        snprintf(out->keys[i], sizeof out->keys[i], "%s", text[i].key);
        snprintf(out->values[i], sizeof out->values[i], "%s", text[i].text);
        out->is_itxt[i] = text[i].compression >= PNG_ITXT_COMPRESSION_NONE;
    }
    out->n = n;
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return 0;
}

static void test_text_chunks(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "pngw") == 0);
    char *path = sdt_format("%s/with_text.png", dir);
    uint8_t *pixels = make_pixels(8, 8, 3);
    const char *kv[] = {
        "parameters", "a red circle on a blue background, steps: 20, seed: 42",
        "Comment",    "caf\xc3\xa9 \xe2\x98\x95 \xe6\x97\xa5\xe6\x9c\xac", /* "café ☕ 日本" */
        "Software",   "sdtune",
    };
    char *error = NULL;
    CHECK_MSG(t, sdt_png_write(path, pixels, 8, 8, 3, kv, 3, &error) == 0, "%s", error);
    read_text rt;
    CHECK(t, read_text_chunks(path, &rt) == 0);
    CHECK(t, rt.n == 3);
    for (int i = 0; i < 3; i++) {
        int found = 0;
        for (int j = 0; j < rt.n; j++) {
            if (strcmp(rt.keys[j], kv[2 * i]) != 0)
                continue;
            found = 1;
            CHECK_MSG(t, strcmp(rt.values[j], kv[2 * i + 1]) == 0, "%s: \"%s\"", rt.keys[j], rt.values[j]);
            /* Only the non-ASCII value goes in iTXt. */
            CHECK(t, rt.is_itxt[j] == (i == 1));
        }
        CHECK_MSG(t, found, "text key %s not read back", kv[2 * i]);
    }
    /* The pixels are still exact with text chunks around them. */
    sdt_image img;
    CHECK_MSG(t, sdt_image_decode_file(path, 0, &img, &error) == 0, "%s", error);
    CHECK(t, img.rgb && memcmp(img.rgb, pixels, 8 * 8 * 3) == 0);
    sdt_image_free(&img);
    free(pixels);
    free(path);
    free(error);
    test_remove_tree(dir);
}

static void test_overwrite_is_atomic(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "pngw") == 0);
    char *path = sdt_format("%s/same.png", dir);
    uint8_t *a = make_pixels(16, 16, 3), *b = make_pixels(16, 16, 3);
    for (int i = 0; i < 16 * 16 * 3; i++)
        b[i] = (uint8_t)(255 - b[i]);
    char *error = NULL;
    CHECK(t, sdt_png_write(path, a, 16, 16, 3, NULL, 0, &error) == 0);
    CHECK(t, sdt_png_write(path, b, 16, 16, 3, NULL, 0, &error) == 0);
    sdt_image img;
    CHECK_MSG(t, sdt_image_decode_file(path, 0, &img, &error) == 0, "%s", error);
    CHECK(t, img.rgb && memcmp(img.rgb, b, 16 * 16 * 3) == 0);
    sdt_image_free(&img);
    CHECK(t, test_count_files_named(dir, ".tmp.") == 0);
    free(a);
    free(b);
    free(path);
    free(error);
    test_remove_tree(dir);
}

static void test_errors_name_the_file(test_state *t)
{
    char dir[256];
    CHECK(t, test_make_temp_dir(dir, sizeof dir, "pngw") == 0);
    uint8_t *pixels = make_pixels(4, 4, 4);
    char *error = NULL;

    /* A folder that does not exist. */
    char *missing = sdt_format("%s/no/such/folder/out.png", dir);
    CHECK(t, sdt_png_write(missing, pixels, 4, 4, 3, NULL, 0, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "out.png");
    free(missing);

    /* A folder that cannot be written (root can write anywhere: then this part is skipped). */
    char *locked = sdt_format("%s/locked", dir);
    mkdir(locked, 0555);
    if (access(locked, W_OK) != 0) {
        char *path = sdt_format("%s/locked.png", locked);
        free(error);
        error = NULL;
        CHECK(t, sdt_png_write(path, pixels, 4, 4, 3, NULL, 0, &error) == -1);
        CHECK_STR_CONTAINS(t, error, path);
        CHECK(t, test_count_files_named(locked, "") == 0);
        free(path);
    }
    chmod(locked, 0755);
    free(locked);

    char *path = sdt_format("%s/bad.png", dir);
    free(error);
    error = NULL;
    CHECK(t, sdt_png_write(path, pixels, 4, 4, 2, NULL, 0, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "bad.png");
    CHECK_STR_CONTAINS(t, error, "channels");
    free(error);
    error = NULL;
    CHECK(t, sdt_png_write(path, pixels, 0, 4, 3, NULL, 0, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "bad.png");
    const char *bad_key[] = {"", "value"};
    free(error);
    error = NULL;
    CHECK(t, sdt_png_write(path, pixels, 4, 4, 3, bad_key, 1, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "key");
    const char *bad_utf8[] = {"Comment", "\xff\xfe broken"};
    free(error);
    error = NULL;
    CHECK(t, sdt_png_write(path, pixels, 4, 4, 3, bad_utf8, 1, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "UTF-8");
    CHECK(t, access(path, F_OK) != 0);
    CHECK(t, test_count_files_named(dir, ".tmp.") == 0);
    free(path);
    free(error);
    free(pixels);
    test_remove_tree(dir);
}

TEST_MAIN("png_write", TEST(test_round_trip_rgb_rgba), TEST(test_text_chunks), TEST(test_overwrite_is_atomic),
          TEST(test_errors_name_the_file))
