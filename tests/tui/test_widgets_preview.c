/* Sample-image previews: PNGs written here with libpng, decoded and shrunk into half-block cells with
 * exact colours, the fit that keeps the aspect, palette mapping, and errors that name the file. */
#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "unit/check.h"
#include "widgets/image_preview.h"

#define RED                                                                                                  \
    {                                                                                                        \
        255, 0, 0                                                                                            \
    }
#define GREEN                                                                                                \
    {                                                                                                        \
        0, 255, 0                                                                                            \
    }
#define BLUE                                                                                                 \
    {                                                                                                        \
        0, 0, 255                                                                                            \
    }
#define WHITE                                                                                                \
    {                                                                                                        \
        255, 255, 255                                                                                        \
    }
#define BLACK                                                                                                \
    {                                                                                                        \
        0, 0, 0                                                                                              \
    }

static char png_path[256];

/* Writes width x height pixels (RGB, or RGBA with alpha) as a PNG at png_path. */
static int write_png(const void *pixels, int width, int height, bool alpha)
{
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    return png_image_write_to_file(&image, png_path, 0, pixels, 0, NULL) ? 0 : -1;
}

static bool same(rgb8 a, rgb8 b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

#define CHECK_RGB(t, got, R, G, B)                                                                           \
    CHECK_MSG(t, same((got), (rgb8){R, G, B}), "got %d,%d,%d, expected %d,%d,%d", (got).r, (got).g, (got).b, \
              R, G, B)

static void test_four_pixels(test_state *t)
{
    const rgb8 quad[4] = {RED, GREEN, BLUE, WHITE}; /* red green / blue white */
    CHECK(t, write_png(quad, 2, 2, false) == 0);
    preview_image img;
    char *error = NULL;
    CHECK(t, preview_load_png(png_path, &img, &error) == 0);
    CHECK(t, img.width == 2 && img.height == 2);
    if (!img.pixels) {
        free(error);
        return;
    }
    int cols, rows;
    preview_fit(img.width, img.height, 80, 24, &cols, &rows);
    CHECK(t, cols == 2 && rows == 1); /* never enlarged; two pixels a cell vertically */
    half_cell cells[4];
    CHECK(t, preview_render(&img, 2, 1, cells) == 0);
    CHECK_RGB(t, cells[0].top, 255, 0, 0);
    CHECK_RGB(t, cells[0].bottom, 0, 0, 255);
    CHECK_RGB(t, cells[1].top, 0, 255, 0);
    CHECK_RGB(t, cells[1].bottom, 255, 255, 255);

    /* One cell: each half averages a row. */
    CHECK(t, preview_render(&img, 1, 1, cells) == 0);
    CHECK_RGB(t, cells[0].top, 128, 128, 0);
    CHECK_RGB(t, cells[0].bottom, 128, 128, 255);
    /* Two rows of cells: each pixel covers half a cell vertically. */
    CHECK(t, preview_render(&img, 2, 2, cells) == 0);
    CHECK_RGB(t, cells[0].top, 255, 0, 0);
    CHECK_RGB(t, cells[0].bottom, 255, 0, 0);
    CHECK_RGB(t, cells[3].top, 255, 255, 255);

    preview_cell c = preview_map(cells[0], PREVIEW_TRUECOLOR);
    CHECK(t, c.fg == 0xFF0000 && c.bg == 0xFF0000 && c.shade == 0);
    preview_image_free(&img);
    CHECK(t, img.pixels == NULL);
}

static void test_fractional_area_and_alpha(test_state *t)
{
    /* Columns black, white, black into two: each output pixel is 1 black + half a white = 85. */
    const rgb8 stripes[6] = {BLACK, WHITE, BLACK, BLACK, WHITE, BLACK};
    CHECK(t, write_png(stripes, 3, 2, false) == 0);
    preview_image img;
    char *error = NULL;
    CHECK(t, preview_load_png(png_path, &img, &error) == 0);
    half_cell cells[2];
    CHECK(t, img.pixels && preview_render(&img, 2, 1, cells) == 0);
    CHECK_RGB(t, cells[0].top, 85, 85, 85);
    CHECK_RGB(t, cells[1].bottom, 85, 85, 85);
    preview_image_free(&img);

    /* A transparent pixel is composited onto black. */
    const uint8_t rgba[8] = {255, 0, 0, 255, 255, 255, 255, 0};
    CHECK(t, write_png(rgba, 1, 2, true) == 0);
    CHECK(t, preview_load_png(png_path, &img, &error) == 0);
    CHECK(t, img.pixels && preview_render(&img, 1, 1, cells) == 0);
    CHECK_RGB(t, cells[0].top, 255, 0, 0);
    CHECK_RGB(t, cells[0].bottom, 0, 0, 0);
    preview_image_free(&img);
    free(error);
}

static void test_fit_keeps_aspect(test_state *t)
{
    int cols, rows;
    preview_fit(512, 512, 40, 20, &cols, &rows);
    CHECK(t, cols == 40 && rows == 20);
    preview_fit(1024, 512, 80, 24, &cols, &rows);
    CHECK(t, cols == 80 && rows == 20);
    preview_fit(512, 1024, 80, 24, &cols, &rows);
    CHECK(t, cols == 24 && rows == 24);
    preview_fit(1, 1000, 10, 10, &cols, &rows);
    CHECK(t, cols == 1 && rows == 10);
    preview_fit(0, 10, 10, 10, &cols, &rows);
    CHECK(t, cols == 1 && rows == 1);
}

static void test_palettes(test_state *t)
{
    struct {
        rgb8 c;
        int xterm, ansi;
        char shade;
    } cases[] = {
        {RED, 196, 1, ':'},
        {GREEN, 46, 2, '#'},
        {BLUE, 21, 4, ' '},
        {WHITE, 231, 7, '@'},
        {BLACK, 16, 0, ' '},
        {{255, 255, 0}, 226, 3, '@'},
        {{0, 255, 255}, 51, 6, '#'},
        {{255, 0, 255}, 201, 5, ':'},
        {{128, 128, 128}, 244, 7, '+'},
        {{118, 118, 118}, 243, 7, '='},
        {{95, 95, 95}, 59, 0, '-'},
        {{100, 100, 100}, 241, 7, '-'},
        {{200, 40, 40}, 160, 1, ':'},
        {{60, 60, 60}, 237, 0, ':'},
        {{200, 200, 200}, 251, 7, '#'},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        half_cell cell = {cases[i].c, cases[i].c};
        preview_cell x = preview_map(cell, PREVIEW_256), a = preview_map(cell, PREVIEW_8);
        preview_cell m = preview_map(cell, PREVIEW_MONO);
        CHECK_MSG(t, x.fg == cases[i].xterm && x.bg == cases[i].xterm, "case %zu: 256 -> %d", i, x.fg);
        CHECK_MSG(t, a.fg == cases[i].ansi && a.bg == cases[i].ansi, "case %zu: 8 -> %d", i, a.fg);
        CHECK_MSG(t, m.shade == cases[i].shade && m.fg == -1, "case %zu: shade '%c'", i, m.shade);
    }
    rgb8 p = preview_palette_256(244);
    CHECK_RGB(t, p, 128, 128, 128);
    p = preview_palette_256(16 + 36 * 1 + 6 * 2 + 3);
    CHECK_RGB(t, p, 95, 135, 175);
    p = preview_palette_256(7);
    CHECK_RGB(t, p, 0, 0, 0);
    /* Top and bottom are mapped separately. */
    half_cell split = {RED, BLUE};
    preview_cell s = preview_map(split, PREVIEW_8);
    CHECK(t, s.fg == 1 && s.bg == 4);
}

static void test_errors_name_the_file(test_state *t)
{
    preview_image img;
    char *error = NULL;
    FILE *f = fopen(png_path, "wb");
    fputs("this is not a PNG file at all", f);
    fclose(f);
    CHECK(t, preview_load_png(png_path, &img, &error) == -1 && img.pixels == NULL);
    CHECK_STR_CONTAINS(t, error, png_path);

    /* A PNG cut in the middle of its pixel data. */
    rgb8 big[64 * 64];
    for (int i = 0; i < 64 * 64; i++)
        big[i] = (rgb8){(uint8_t)(i * 7), (uint8_t)(i * 13), (uint8_t)(i * 29)};
    CHECK(t, write_png(big, 64, 64, false) == 0);
    f = fopen(png_path, "rb");
    static char bytes[65536];
    size_t n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    f = fopen(png_path, "wb");
    fwrite(bytes, 1, n / 2, f);
    fclose(f);
    CHECK(t, preview_load_png(png_path, &img, &error) == -1 && img.pixels == NULL);
    CHECK_STR_CONTAINS(t, error, png_path);
    printf("truncated: %s\n", error ? error : "(none)");

    /* Flipped bytes anywhere: either a clean decode or an error naming the file, never a crash (the
     * sanitizer build checks the memory side). */
    int decoded = 0, refused = 0;
    unsigned seed = 7;
    for (int round = 0; round < 200; round++) {
        static char mutated[65536];
        memcpy(mutated, bytes, n);
        for (int flips = 0; flips < 4; flips++) {
            seed = seed * 1103515245u + 12345u;
            mutated[(seed >> 8) % n] ^= (char)(1 + (seed >> 24) % 255);
        }
        f = fopen(png_path, "wb");
        fwrite(mutated, 1, n, f);
        fclose(f);
        if (preview_load_png(png_path, &img, &error) == 0) {
            decoded += img.width == 64 && img.height == 64;
            preview_image_free(&img);
        } else {
            refused += error && strstr(error, png_path) != NULL;
        }
    }
    CHECK_MSG(t, decoded + refused == 200, "%d decoded, %d refused with the file named", decoded, refused);
    CHECK(t, refused > 0);

    unlink(png_path);
    CHECK(t, preview_load_png(png_path, &img, &error) == -1);
    CHECK_STR_CONTAINS(t, error, png_path);
    CHECK_STR_CONTAINS(t, error, "No such file");
    free(error);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(png_path, sizeof png_path, "%s/sdtune-preview-%d.png", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    static const test_case cases[] = {TEST(test_four_pixels), TEST(test_fractional_area_and_alpha),
                                      TEST(test_fit_keeps_aspect), TEST(test_palettes),
                                      TEST(test_errors_name_the_file)};
    int rc = run_tests("widgets_preview", cases, sizeof cases / sizeof cases[0]);
    unlink(png_path);
    return rc;
}
