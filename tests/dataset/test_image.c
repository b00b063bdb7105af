/* dataset/image.h: every PNG, JPEG and WebP variant decodes to the pixels that were encoded (lossless
 * formats exactly, JPEG and lossy WebP within a tolerance), EXIF orientations give upright pixels and
 * probe sizes, broken files give errors that name the file, and the resize filters and crop behave.
 * The test images are written here with libpng, libjpeg and libwebp into a temporary folder. */
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <webp/encode.h>

#include "image.h"
#include "sdtune/strutil.h"
#include "test_images.h"
#include "unit/check.h"

static char g_dir[512]; /* the temporary folder of this run; set once in main */

static char *tmp_path(const char *name) { return sdt_format("%s/%s", g_dir, name); }

/* TIFF data with one IFD0 entry, the orientation; "Exif\0\0" in front when prefix. Returns the length. */
static int make_exif(uint8_t *b, int big_endian, int orientation, int prefix)
{
    int at = 0;
    if (prefix) {
        memcpy(b, "Exif\0\0", 6);
        at = 6;
    }
    uint8_t *t = b + at;
    memset(t, 0, 26);
    memcpy(t, big_endian ? "MM\0*" : "II*\0", 4);
#define PUT16(p, v)                                                                                          \
    (big_endian ? ((p)[0] = (uint8_t)((v) >> 8), (p)[1] = (uint8_t)(v))                                      \
                : ((p)[0] = (uint8_t)(v), (p)[1] = (uint8_t)((v) >> 8)))
    /* IFD0 at offset 8 */
    if (big_endian) {
        t[4] = 0, t[5] = 0, t[6] = 0, t[7] = 8;
    } else {
        t[4] = 8, t[5] = 0, t[6] = 0, t[7] = 0;
    }
    PUT16(t + 8, 1);       /* one entry */
    PUT16(t + 10, 0x0112); /* Orientation */
    PUT16(t + 12, 3);      /* SHORT */
    if (big_endian)
        t[17] = 1; /* count 1 */
    else
        t[14] = 1;
    PUT16(t + 18, orientation);
#undef PUT16
    return at + 26; /* header 8 + count 2 + entry 12 + next IFD 4 */
}

/* ---- helpers ---- */

static int decode(const char *path, int keep_alpha, sdt_image *img, char **error)
{
    *error = NULL;
    return sdt_image_decode_file(path, keep_alpha, img, error);
}

static void pattern_rgb(uint8_t *p, int w, int h, int seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                p[(y * w + x) * 3 + c] = (uint8_t)(x * 37 + y * 11 + c * 85 + seed * 13);
}

/* Smooth, so lossy codecs reproduce it closely. */
static void smooth_rgb(uint8_t *p, int w, int h)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            p[(y * w + x) * 3] = (uint8_t)(40 + x * 160 / w);
            p[(y * w + x) * 3 + 1] = (uint8_t)(60 + y * 140 / h);
            p[(y * w + x) * 3 + 2] = (uint8_t)(200 - (x + y) * 100 / (w + h));
        }
}

static int max_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static uint8_t over_white(uint8_t c, uint8_t a)
{
    return (uint8_t)lround((c * a + 255.0 * (255 - a)) / 255.0);
}

/* ---- PNG ---- */

/* Writes name into the temporary folder from spec, checking that it was written. Returns its path (caller
 * frees). */
static char *png_file(test_state *t, const char *name, const png_spec *spec)
{
    char *path = tmp_path(name);
    CHECK_MSG(t, test_write_png(path, spec) == 0, "cannot write %s", name);
    return path;
}

/* The size of test_png_variants' images; odd, so that sub-byte rows end mid-byte. */
enum { VARIANTS_W = 13, VARIANTS_H = 7 };

/* png_file for a test_png_variants image without a palette or transparency. */
static char *plain_png(test_state *t, const char *name, int color_type, int depth, int interlace,
                       const uint8_t *rows)
{
    return png_file(t, name,
                    &(png_spec){.width = VARIANTS_W,
                                .height = VARIANTS_H,
                                .color_type = color_type,
                                .bit_depth = depth,
                                .interlace = interlace,
                                .rows = rows});
}

static void test_png_variants(test_state *t)
{
    enum { W = VARIANTS_W, H = VARIANTS_H };
    uint8_t rgb[W * H * 3], rgba[W * H * 4], raw[W * H * 8], alpha[W * H];
    pattern_rgb(rgb, W, H, 0);
    for (int i = 0; i < W * H; i++) {
        alpha[i] = (uint8_t)(i * 29 + 3);
        memcpy(rgba + i * 4, rgb + i * 3, 3);
        rgba[i * 4 + 3] = alpha[i];
    }
    sdt_image img;
    char *error, *path;

    /* RGB 8 and RGBA 8 (alpha kept, and composited on white) */
    path = plain_png(t, "rgb8.png", PNG_COLOR_TYPE_RGB, 8, 0, rgb);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.width == W && img.height == H && !img.alpha);
    CHECK(t, img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    sdt_image_free(&img);
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha && img.alpha[0] == 255 &&
                 img.alpha[W * H - 1] == 255);
    sdt_image_free(&img);
    free(path);

    path = plain_png(t, "rgba8.png", PNG_COLOR_TYPE_RGBA, 8, 0, rgba);
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha);
    CHECK(t, img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    CHECK(t, img.alpha && memcmp(img.alpha, alpha, sizeof alpha) == 0);
    sdt_image_free(&img);
    CHECK(t, decode(path, 0, &img, &error) == 0 && !img.alpha);
    int bad = 0;
    for (int i = 0; i < W * H * 3 && img.rgb; i++)
        bad += img.rgb[i] != over_white(rgb[i], alpha[i / 3]);
    CHECK_MSG(t, img.rgb && bad == 0, "%d channels differ from compositing on white", bad);
    sdt_image_free(&img);
    free(path);

    /* RGB 16: value v * 257 + d (d < 128) must round back to v */
    for (int i = 0; i < W * H * 3; i++) {
        unsigned v = rgb[i] * 257u + (rgb[i] < 255 ? (unsigned)(i % 120) : 0u);
        raw[i * 2] = (uint8_t)(v >> 8);
        raw[i * 2 + 1] = (uint8_t)v;
    }
    path = plain_png(t, "rgb16.png", PNG_COLOR_TYPE_RGB, 16, 0, raw);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    sdt_image_free(&img);
    free(path);

    /* gray 8 */
    uint8_t gray[W * H], expect[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        gray[i] = rgb[i * 3];
        memset(expect + i * 3, gray[i], 3);
    }
    path = plain_png(t, "gray8.png", PNG_COLOR_TYPE_GRAY, 8, 0, gray);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.rgb && memcmp(img.rgb, expect, sizeof expect) == 0);
    sdt_image_free(&img);
    free(path);

    /* gray 1, 2, 4 bits: level l of 2^d - 1 becomes l * 255 / (2^d - 1) */
    for (int depth = 1; depth <= 4; depth *= 2) {
        int levels = (1 << depth) - 1, per_byte = 8 / depth, rowbytes = (W + per_byte - 1) / per_byte;
        memset(raw, 0, sizeof raw);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int l = (x + y * 3) % (levels + 1);
                raw[y * rowbytes + x / per_byte] |= (uint8_t)(l << (8 - depth * (x % per_byte + 1)));
                memset(expect + (y * W + x) * 3, l * 255 / levels, 3);
            }
        char name[32];
        snprintf(name, sizeof name, "gray%d.png", depth);
        path = plain_png(t, name, PNG_COLOR_TYPE_GRAY, depth, 0, raw);
        CHECK_MSG(
            t, decode(path, 0, &img, &error) == 0 && img.rgb && memcmp(img.rgb, expect, sizeof expect) == 0,
            "gray %d bit", depth);
        sdt_image_free(&img);
        free(path);
    }

    /* gray + alpha, 8 and 16 bit */
    for (int i = 0; i < W * H; i++) {
        raw[i * 2] = gray[i];
        raw[i * 2 + 1] = alpha[i];
    }
    path = plain_png(t, "graya8.png", PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, raw);
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha && memcmp(img.alpha, alpha, sizeof alpha) == 0);
    for (int i = 0; i < W * H && img.rgb; i++)
        bad += img.rgb[i * 3] != gray[i] || img.rgb[i * 3 + 2] != gray[i];
    CHECK(t, img.rgb && bad == 0);
    sdt_image_free(&img);
    free(path);
    for (int i = 0; i < W * H; i++) {
        raw[i * 4] = raw[i * 4 + 1] = gray[i];
        raw[i * 4 + 2] = raw[i * 4 + 3] = alpha[i];
    }
    path = plain_png(t, "graya16.png", PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, raw);
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha && memcmp(img.alpha, alpha, sizeof alpha) == 0);
    for (int i = 0; i < W * H && img.rgb; i++)
        bad += img.rgb[i * 3 + 1] != gray[i];
    CHECK(t, img.rgb && bad == 0);
    sdt_image_free(&img);
    free(path);

    /* palette 8 and 4 bit with tRNS (the palette's first entries get alpha) */
    png_color pal[16];
    uint8_t trans[5] = {0, 60, 120, 180, 240};
    for (int i = 0; i < 16; i++)
        pal[i] = (png_color){(uint8_t)(i * 16), (uint8_t)(255 - i * 15), (uint8_t)(i * 7)};
    for (int depth = 4; depth <= 8; depth += 4) {
        int per_byte = 8 / depth, rowbytes = (W + per_byte - 1) / per_byte;
        memset(raw, 0, sizeof raw);
        uint8_t ea[W * H];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int idx = (x * 5 + y) % 16;
                raw[y * rowbytes + x / per_byte] |= (uint8_t)(idx << (8 - depth * (x % per_byte + 1)));
                uint8_t *e = expect + (y * W + x) * 3;
                e[0] = pal[idx].red, e[1] = pal[idx].green, e[2] = pal[idx].blue;
                ea[y * W + x] = idx < 5 ? trans[idx] : 255;
            }
        char name[32];
        snprintf(name, sizeof name, "palette%d.png", depth);
        path = png_file(t, name,
                        &(png_spec){.width = W,
                                    .height = H,
                                    .color_type = PNG_COLOR_TYPE_PALETTE,
                                    .bit_depth = depth,
                                    .interlace = 0,
                                    .rows = raw,
                                    .palette = pal,
                                    .palette_len = 16,
                                    .trans = trans,
                                    .trans_len = 5});
        sdt_image_info info;
        error = NULL;
        CHECK(t, sdt_image_probe_file(path, &info, &error) == 0 && info.has_alpha &&
                     info.format == SDT_IMAGE_PNG);
        free(error);
        CHECK(t,
              decode(path, 1, &img, &error) == 0 && img.rgb && memcmp(img.rgb, expect, sizeof expect) == 0);
        CHECK_MSG(t, img.alpha && memcmp(img.alpha, ea, sizeof ea) == 0, "palette %d bit alpha", depth);
        sdt_image_free(&img);
        free(path);
    }

    /* gray with tRNS: one gray value is transparent */
    png_color_16 tc = {0};
    tc.gray = gray[4];
    path = png_file(t, "graytrns.png",
                    &(png_spec){.width = W,
                                .height = H,
                                .color_type = PNG_COLOR_TYPE_GRAY,
                                .bit_depth = 8,
                                .interlace = 0,
                                .rows = gray,
                                .trans_color = &tc});
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha);
    for (int i = 0; i < W * H && img.alpha; i++)
        bad += img.alpha[i] != (gray[i] == gray[4] ? 0 : 255) || img.rgb[i * 3] != gray[i];
    CHECK(t, img.alpha && bad == 0);
    sdt_image_free(&img);
    free(path);

    /* RGB with tRNS */
    tc = (png_color_16){0};
    tc.red = rgb[9], tc.green = rgb[10], tc.blue = rgb[11];
    path = png_file(t, "rgbtrns.png",
                    &(png_spec){.width = W,
                                .height = H,
                                .color_type = PNG_COLOR_TYPE_RGB,
                                .bit_depth = 8,
                                .interlace = 0,
                                .rows = rgb,
                                .trans_color = &tc});
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha && img.alpha[3] == 0 && img.alpha[2] == 255);
    CHECK(t, img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    sdt_image_free(&img);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.rgb && img.rgb[9] == 255 && img.rgb[10] == 255);
    sdt_image_free(&img);
    free(path);

    /* Adam7 interlaced */
    path = plain_png(t, "interlaced.png", PNG_COLOR_TYPE_RGB, 8, 1, rgb);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    sdt_image_free(&img);
    free(path);
    CHECK(t, bad == 0);
}

/* ---- JPEG ---- */

static void test_jpeg_variants(test_state *t)
{
    enum { W = 48, H = 32 };
    uint8_t rgb[W * H * 3], gray[W * H], cmyk[W * H * 4], expect[W * H * 3];
    smooth_rgb(rgb, W, H);
    sdt_image img;
    char *error, *path;
    for (int progressive = 0; progressive <= 1; progressive++) {
        path = tmp_path(progressive ? "rgb-progressive.jpg" : "rgb.jpg");
        CHECK(t, test_write_jpeg(path, &(jpeg_spec){.width = W,
                                                    .height = H,
                                                    .components = 3,
                                                    .in_space = JCS_RGB,
                                                    .file_space = JCS_YCbCr,
                                                    .quality = 100,
                                                    .progressive = progressive,
                                                    .pixels = rgb}) == 0);
        CHECK(t, decode(path, 0, &img, &error) == 0 && img.width == W && img.height == H && !img.alpha);
        int d = img.rgb ? max_diff(img.rgb, rgb, sizeof rgb) : 999;
        CHECK_MSG(t, d <= 6, "jpeg rgb differs by %d", d);
        sdt_image_free(&img);
        free(path);
    }

    for (int i = 0; i < W * H; i++) {
        gray[i] = rgb[i * 3 + 1];
        memset(expect + i * 3, gray[i], 3);
    }
    path = tmp_path("gray.jpg");
    CHECK(t, test_write_jpeg(path, &(jpeg_spec){.width = W,
                                                .height = H,
                                                .components = 1,
                                                .in_space = JCS_GRAYSCALE,
                                                .file_space = JCS_GRAYSCALE,
                                                .quality = 100,
                                                .pixels = gray}) == 0);
    CHECK(t, decode(path, 0, &img, &error) == 0);
    int d = img.rgb ? max_diff(img.rgb, expect, sizeof expect) : 999;
    CHECK_MSG(t, d <= 3, "jpeg gray differs by %d", d);
    sdt_image_free(&img);
    free(path);

    /* CMYK: R = (255 - C)(255 - K) / 255. Written the way Photoshop writes it (inverted, Adobe marker), as
     * YCCK, and as plain CMYK without the marker. */
    for (int i = 0; i < W * H; i++) {
        uint8_t k = (uint8_t)(i % 50);
        for (int c = 0; c < 3; c++) {
            uint8_t v = (uint8_t)(255 - rgb[i * 3 + c]);
            cmyk[i * 4 + c] = v;
            expect[i * 3 + c] = (uint8_t)lround((255 - v) * (255 - k) / 255.0);
        }
        cmyk[i * 4 + 3] = k;
    }
    uint8_t inverted[W * H * 4];
    for (size_t i = 0; i < sizeof cmyk; i++)
        inverted[i] = (uint8_t)(255 - cmyk[i]);
    struct {
        const char *name;
        J_COLOR_SPACE space;
        int no_adobe;
        const uint8_t *data;
    } variants[] = {
        {"cmyk-adobe.jpg", JCS_CMYK, 0, inverted},
        {"ycck-adobe.jpg", JCS_YCCK, 0, inverted},
        {"cmyk-plain.jpg", JCS_CMYK, 1, cmyk},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        path = tmp_path(variants[v].name);
        CHECK(t, test_write_jpeg(path, &(jpeg_spec){.width = W,
                                                    .height = H,
                                                    .components = 4,
                                                    .in_space = JCS_CMYK,
                                                    .file_space = variants[v].space,
                                                    .quality = 100,
                                                    .progressive = 0,
                                                    .no_adobe = variants[v].no_adobe,
                                                    .pixels = variants[v].data}) == 0);
        CHECK_MSG(t, decode(path, 0, &img, &error) == 0, "%s: %s", variants[v].name, error ? error : "");
        d = img.rgb ? max_diff(img.rgb, expect, sizeof expect) : 999;
        CHECK_MSG(t, d <= 6, "%s differs by %d", variants[v].name, d);
        sdt_image_free(&img);
        free(path);
    }
}

/* ---- WebP ---- */

static void test_webp_variants(test_state *t)
{
    enum { W = 40, H = 24 };
    uint8_t rgb[W * H * 3], rgba[W * H * 4], alpha[W * H];
    pattern_rgb(rgb, W, H, 1);
    for (int i = 0; i < W * H; i++) {
        alpha[i] = (uint8_t)(1 + (i * 7) % 255); /* never 0: lossless may rewrite colours under alpha 0 */
        memcpy(rgba + i * 4, rgb + i * 3, 3);
        rgba[i * 4 + 3] = alpha[i];
    }
    sdt_image img;
    char *error, *path;
    sdt_image_info info;

    path = tmp_path("lossless.webp");
    CHECK(t, test_write_webp(path, rgb, W, H, 0, 1, 100, NULL, 0) == 0);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.width == W && !img.alpha && img.rgb &&
                 memcmp(img.rgb, rgb, sizeof rgb) == 0);
    sdt_image_free(&img);
    free(path);

    path = tmp_path("lossless-alpha.webp");
    CHECK(t, test_write_webp(path, rgba, W, H, 1, 1, 100, NULL, 0) == 0);
    error = NULL;
    CHECK(t,
          sdt_image_probe_file(path, &info, &error) == 0 && info.has_alpha && info.format == SDT_IMAGE_WEBP);
    free(error);
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha && memcmp(img.alpha, alpha, sizeof alpha) == 0 &&
                 memcmp(img.rgb, rgb, sizeof rgb) == 0);
    sdt_image_free(&img);
    free(path);

    smooth_rgb(rgb, W, H);
    for (int i = 0; i < W * H; i++) {
        memcpy(rgba + i * 4, rgb + i * 3, 3);
        alpha[i] = (uint8_t)(i % W < W / 2 ? 255 : 100);
        rgba[i * 4 + 3] = alpha[i];
    }
    path = tmp_path("lossy.webp");
    CHECK(t, test_write_webp(path, rgb, W, H, 0, 0, 100, NULL, 0) == 0);
    CHECK(t, decode(path, 0, &img, &error) == 0 && img.rgb);
    int d = img.rgb ? max_diff(img.rgb, rgb, sizeof rgb) : 999;
    CHECK_MSG(t, d <= 12, "lossy webp differs by %d", d);
    sdt_image_free(&img);
    free(path);

    path = tmp_path("lossy-alpha.webp");
    CHECK(t, test_write_webp(path, rgba, W, H, 1, 0, 100, NULL, 0) == 0);
    CHECK(t, decode(path, 1, &img, &error) == 0 && img.alpha);
    d = img.alpha ? max_diff(img.alpha, alpha, sizeof alpha) : 999;
    CHECK_MSG(t, d <= 2, "lossy webp alpha differs by %d", d);
    sdt_image_free(&img);
    free(path);

    /* Animated: a VP8X header with the animation flag and an ANIM chunk; refused by name. */
    uint8_t anim[12 + 18 + 14] = "RIFF\0\0\0\0WEBPVP8X";
    anim[4] = sizeof anim - 8;
    anim[16] = 10;
    anim[20] = 0x02;
    anim[24] = 9, anim[27] = 9;
    memcpy(anim + 30, "ANIM", 4);
    anim[34] = 6;
    path = tmp_path("anim.webp");
    test_write_file(path, anim, sizeof anim);
    error = NULL;
    CHECK(t, sdt_image_probe_file(path, &info, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "anim.webp: animated WebP");
    free(error);
    CHECK(t, decode(path, 0, &img, &error) == -1 && !img.rgb);
    CHECK_STR_CONTAINS(t, error, "animated");
    free(error);
    free(path);
}

/* ---- orientation ---- */

/* The upright image of stored s [h, w, c] under EXIF orientation o, built from flips and a transpose (an
 * independent spelling of the table in image.c): 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 transpose
 * + mirror (90 clockwise), 7 transpose + rotate 180, 8 transpose + flip (90 counter-clockwise). */
static void upright(const uint8_t *s, int w, int h, int c, int o, uint8_t *out, int *ow, int *oh)
{
    uint8_t *a = malloc((size_t)w * h * c), *b = malloc((size_t)w * h * c);
    memcpy(a, s, (size_t)w * h * c);
    int transpose = o >= 5, mirror = o == 2 || o == 3 || o == 6 || o == 7,
        flip = o == 3 || o == 4 || o == 7 || o == 8;
    if (transpose) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                memcpy(b + ((size_t)x * h + y) * c, a + ((size_t)y * w + x) * c, (size_t)c);
        memcpy(a, b, (size_t)w * h * c);
        int tmp = w;
        w = h;
        h = tmp;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sx = mirror ? w - 1 - x : x, sy = flip ? h - 1 - y : y;
            memcpy(out + ((size_t)y * w + x) * c, a + ((size_t)sy * w + sx) * c, (size_t)c);
        }
    *ow = w;
    *oh = h;
    free(a);
    free(b);
}

static void test_orientation(test_state *t)
{
    /* Lossless: a 3 x 2 image of six colours, in PNG (eXIf) and WebP (EXIF chunk), both byte orders. */
    enum { W = 3, H = 2 };
    uint8_t rgb[W * H * 3], want[W * H * 3], exif[64];
    for (int i = 0; i < W * H; i++) {
        rgb[i * 3] = (uint8_t)(i * 40), rgb[i * 3 + 1] = (uint8_t)(255 - i * 40),
                rgb[i * 3 + 2] = (uint8_t)(i * 7);
    }
    for (int o = 1; o <= 8; o++) {
        int ww, wh;
        upright(rgb, W, H, 3, o, want, &ww, &wh);
        for (int fmt = 0; fmt < 2; fmt++) {
            int len = make_exif(exif, o % 2, o, 0);
            char name[32];
            snprintf(name, sizeof name, "orient%d.%s", o, fmt ? "webp" : "png");
            char *path = tmp_path(name), *error = NULL;
            if (fmt)
                CHECK(t, test_write_webp(path, rgb, W, H, 0, 1, 100, exif, len) == 0);
            else
                CHECK(t, test_write_png(path, &(png_spec){.width = W,
                                                          .height = H,
                                                          .color_type = PNG_COLOR_TYPE_RGB,
                                                          .bit_depth = 8,
                                                          .interlace = 0,
                                                          .rows = rgb,
                                                          .exif = exif,
                                                          .exif_len = len}) == 0);
            sdt_image_info info;
            CHECK_MSG(t,
                      sdt_image_probe_file(path, &info, &error) == 0 && info.orientation == o &&
                          info.width == ww && info.height == wh,
                      "%s: probe %s", name, error ? error : "");
            free(error);
            sdt_image img;
            CHECK_MSG(t,
                      decode(path, 0, &img, &error) == 0 && img.width == ww && img.height == wh && img.rgb &&
                          memcmp(img.rgb, want, sizeof want) == 0,
                      "%s: pixels", name);
            sdt_image_free(&img);
            free(path);
        }
    }
    /* A concrete case spelled out: orientation 6 (rotate 90 clockwise) puts the stored bottom-left pixel at
     * the upright top-left. */
    {
        int ww, wh;
        upright(rgb, W, H, 3, 6, want, &ww, &wh);
        CHECK(t, ww == 2 && wh == 3 && memcmp(want, rgb + 3 * 3, 3) == 0);
    }

    /* JPEG: 4 x 2 blocks of 8 x 8 flat colours, compared at block centres; APP1 in both byte orders. */
    enum { BW = 4, BH = 2, JW = BW * 8, JH = BH * 8 };
    uint8_t blocks[BW * BH * 3], bwant[BW * BH * 3], pix[JW * JH * 3];
    for (int i = 0; i < BW * BH; i++) {
        blocks[i * 3] = (uint8_t)(30 + i * 28), blocks[i * 3 + 1] = (uint8_t)(220 - i * 25),
                   blocks[i * 3 + 2] = (uint8_t)(i % 2 ? 200 : 50);
    }
    for (int y = 0; y < JH; y++)
        for (int x = 0; x < JW; x++)
            memcpy(pix + (y * JW + x) * 3, blocks + ((y / 8) * BW + x / 8) * 3, 3);
    for (int o = 1; o <= 8; o++) {
        int bw, bh;
        upright(blocks, BW, BH, 3, o, bwant, &bw, &bh);
        for (int big = 0; big < 2; big++) {
            int len = make_exif(exif, big, o, 1);
            char name[32];
            snprintf(name, sizeof name, "orient%d%s.jpg", o, big ? "mm" : "ii");
            char *path = tmp_path(name), *error = NULL;
            CHECK(t, test_write_jpeg(path, &(jpeg_spec){.width = JW,
                                                        .height = JH,
                                                        .components = 3,
                                                        .in_space = JCS_RGB,
                                                        .file_space = JCS_YCbCr,
                                                        .quality = 100,
                                                        .pixels = pix,
                                                        .app1 = exif,
                                                        .app1_len = len,
                                                        .app2_len = big ? 9000 : 0}) == 0);
            sdt_image_info info;
            CHECK_MSG(t,
                      sdt_image_probe_file(path, &info, &error) == 0 && info.orientation == o &&
                          info.width == bw * 8 && info.height == bh * 8,
                      "%s: probe %s", name, error ? error : "");
            free(error);
            sdt_image img;
            int worst = 999;
            if (decode(path, 0, &img, &error) == 0 && img.width == bw * 8 && img.height == bh * 8) {
                worst = 0;
                for (int by = 0; by < bh; by++)
                    for (int bx = 0; bx < bw; bx++) {
                        const uint8_t *p = img.rgb + ((size_t)(by * 8 + 4) * img.width + bx * 8 + 4) * 3;
                        int dd = max_diff(p, bwant + (by * bw + bx) * 3, 3);
                        worst = dd > worst ? dd : worst;
                    }
            }
            CHECK_MSG(t, worst <= 8, "%s: block colours differ by %d", name, worst);
            sdt_image_free(&img);
            free(path);
        }
    }
    /* A broken orientation tag (out of range) reads as 1 rather than failing the image. */
    CHECK(t, make_exif(exif, 0, 9, 1) > 0);
    char *path = tmp_path("orient-bad.jpg"), *error = NULL;
    CHECK(t, test_write_jpeg(path, &(jpeg_spec){.width = JW,
                                                .height = JH,
                                                .components = 3,
                                                .in_space = JCS_RGB,
                                                .file_space = JCS_YCbCr,
                                                .quality = 90,
                                                .pixels = pix,
                                                .app1 = exif,
                                                .app1_len = 32}) == 0);
    sdt_image_info info;
    CHECK(t, sdt_image_probe_file(path, &info, &error) == 0 && info.orientation == 1 && info.width == JW);
    free(error);
    free(path);
}

/* ---- errors ---- */

static void expect_error(test_state *t, const char *name, const void *data, size_t len, const char *what)
{
    char *path = tmp_path(name), *error = NULL;
    test_write_file(path, data, len);
    sdt_image_info info;
    sdt_image img;
    int probe = sdt_image_probe_file(path, &info, &error);
    char *probe_error = error;
    error = NULL;
    int dec = sdt_image_decode_file(path, 0, &img, &error);
    CHECK_MSG(t, dec == -1 && error && strncmp(error, path, strlen(path)) == 0 && !img.rgb,
              "%s: decode gave %d: %s", name, dec, error ? error : "(null)");
    if (what)
        CHECK_STR_CONTAINS(t, error, what);
    /* The probe reads headers only, so it may accept a file whose data is broken; when it refuses, it
     * names the file too. */
    if (probe != 0)
        CHECK_MSG(t, probe_error && strncmp(probe_error, path, strlen(path)) == 0, "%s: probe error %s", name,
                  probe_error ? probe_error : "(null)");
    free(probe_error);
    free(error);
    free(path);
}

static uint8_t *file_bytes(const char *name, size_t *len)
{
    char *path = tmp_path(name);
    char *data = test_read_file(path, len);
    free(path);
    return (uint8_t *)data;
}

static void test_errors(test_state *t)
{
    expect_error(t, "empty.png", "", 0, "empty file");
    expect_error(t, "text.png", "hello, world\n", 13,
                 "text.png: not a PNG, JPEG or WebP file (starts with \"hello, w\")");
    expect_error(t, "gif.jpg", "GIF89a\x01\x00\x01\x00", 10, "a GIF image");
    expect_error(t, "binary.webp", "\x00\x01\x02\xff", 4, "starts with 00 01 02 ff");

    /* truncated and corrupt versions of valid files written by the variant tests */
    const char *sources[] = {"rgb8.png",      "interlaced.png", "rgb.jpg", "rgb-progressive.jpg",
                             "lossless.webp", "lossy.webp"};
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
        size_t len;
        uint8_t *data = file_bytes(sources[i], &len);
        CHECK(t, data != NULL);
        if (!data)
            continue;
        char name[64];
        size_t cuts[] = {len / 2, len - 20, 20}; /* mid-data, just before the end, inside the header */
        for (size_t c = 0; c < 3; c++) {
            snprintf(name, sizeof name, "cut%zu-%s", c, sources[i]);
            expect_error(t, name, data, cuts[c], NULL);
        }
        free(data);
    }
    {
        size_t len;
        uint8_t *data = file_bytes("rgb8.png", &len);
        CHECK(t, data && len > 60);
        if (data) {
            data[len / 2] ^= 0x55; /* inside IDAT: the CRC no longer matches */
            expect_error(t, "corrupt.png", data, len, "corrupt PNG data");
            free(data);
        }
        data = file_bytes("rgb.jpg", &len);
        if (data) {
            /* The frame header's sample precision: 8-bit libjpeg refuses anything else. */
            for (size_t i = 2; i + 4 < len; i++)
                if (data[i] == 0xFF && data[i + 1] == 0xC0) {
                    data[i + 4] = 3;
                    break;
                }
            expect_error(t, "corrupt.jpg", data, len, "corrupt JPEG data");
            free(data);
        }
        data = file_bytes("lossless.webp", &len);
        if (data) {
            for (size_t i = 30; i < len; i++)
                data[i] = (uint8_t)(data[i] * 31 + 7);
            expect_error(t, "corrupt.webp", data, len, "WebP");
            free(data);
        }
    }
    /* Over the size limit: a PNG header of 20000 x 10 (the probe refuses it before any pixel is read). */
    {
        uint8_t png[33] = {0x89, 'P', 'N', 'G',  '\r', '\n', 0x1a, '\n', 0,  0, 0, 13, 'I', 'H', 'D',
                           'R',  0,   0,   0x4e, 0x20, 0,    0,    0,    10, 8, 2, 0,  0,   0};
        expect_error(t, "huge.png", png, sizeof png, "over the limit");
    }
    char *error = NULL;
    sdt_image img;
    CHECK(t, sdt_image_decode_file("/nonexistent/dir/x.jpg", 0, &img, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "/nonexistent/dir/x.jpg");
    free(error);
    error = NULL;
    CHECK(t, sdt_image_decode_memory("", 0, "mem.png", 0, &img, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "mem.png: empty file");
    free(error);
}

/* ---- probe ---- */

static void test_probe(test_state *t)
{
    struct {
        const char *name;
        sdt_image_format format;
        int w, h, alpha;
    } cases[] = {
        {"rgb8.png", SDT_IMAGE_PNG, 13, 7, 0},           {"rgba8.png", SDT_IMAGE_PNG, 13, 7, 1},
        {"rgbtrns.png", SDT_IMAGE_PNG, 13, 7, 1},        {"rgb.jpg", SDT_IMAGE_JPEG, 48, 32, 0},
        {"cmyk-adobe.jpg", SDT_IMAGE_JPEG, 48, 32, 0},   {"lossless.webp", SDT_IMAGE_WEBP, 40, 24, 0},
        {"lossy-alpha.webp", SDT_IMAGE_WEBP, 40, 24, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = tmp_path(cases[i].name), *error = NULL;
        sdt_image_info info;
        CHECK_MSG(t,
                  sdt_image_probe_file(path, &info, &error) == 0 && info.format == cases[i].format &&
                      info.width == cases[i].w && info.height == cases[i].h &&
                      info.has_alpha == cases[i].alpha && info.orientation == 1,
                  "%s: %s", cases[i].name, error ? error : "wrong info");
        free(error);
        free(path);
    }
    CHECK(t, strcmp(sdt_image_format_name(SDT_IMAGE_WEBP), "webp") == 0);
}

/* ---- resize and crop ---- */

static sdt_image make_image(int w, int h, int with_alpha)
{
    sdt_image img = {w, h, malloc((size_t)w * h * 3), with_alpha ? malloc((size_t)w * h) : NULL};
    return img;
}

static void test_resize_constant(test_state *t)
{
    int sizes[][2] = {{64, 48}, {20, 15}, {37, 91}, {128, 96}, {64, 48}, {7, 5}, {150, 3}};
    sdt_image src = make_image(64, 48, 1);
    for (int i = 0; i < 64 * 48; i++) {
        src.rgb[i * 3] = 200, src.rgb[i * 3 + 1] = 3, src.rgb[i * 3 + 2] = 128;
        src.alpha[i] = 77;
    }
    for (int f = SDT_RESIZE_AUTO; f <= SDT_RESIZE_NEAREST; f++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            sdt_image dst;
            char *error = NULL;
            int ok =
                sdt_image_resize(&src, sizes[s][0], sizes[s][1], (sdt_resize_filter)f, &dst, &error) == 0;
            int bad = !ok || dst.width != sizes[s][0] || dst.height != sizes[s][1] || !dst.alpha;
            for (int i = 0; ok && !bad && i < dst.width * dst.height; i++)
                bad |= dst.rgb[i * 3] != 200 || dst.rgb[i * 3 + 1] != 3 || dst.rgb[i * 3 + 2] != 128 ||
                       dst.alpha[i] != 77;
            CHECK_MSG(t, !bad, "filter %d to %dx%d: %s", f, sizes[s][0], sizes[s][1],
                      error ? error : "not constant");
            free(error);
            sdt_image_free(&dst);
        }
    sdt_image_free(&src);
}

static void test_resize_area_block_mean(test_state *t)
{
    enum { W = 60, H = 40 };
    sdt_image src = make_image(W, H, 1);
    uint64_t r = 12345;
    for (int i = 0; i < W * H * 3; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        src.rgb[i] = (uint8_t)(r >> 56);
        if (i < W * H)
            src.alpha[i] = (uint8_t)(r >> 40);
    }
    int factors[][2] = {{2, 2}, {3, 4}, {5, 2}, {4, 4}};
    for (size_t k = 0; k < 4; k++) {
        int kx = factors[k][0], ky = factors[k][1], ow = W / kx, oh = H / ky;
        for (int f = 0; f < 2; f++) { /* AREA, and AUTO (which is area when shrinking) */
            sdt_image dst;
            char *error = NULL;
            CHECK(t,
                  sdt_image_resize(&src, ow, oh, f ? SDT_RESIZE_AUTO : SDT_RESIZE_AREA, &dst, &error) == 0);
            int bad = 0;
            for (int y = 0; y < oh && dst.rgb; y++)
                for (int x = 0; x < ow; x++)
                    for (int c = 0; c < 4; c++) {
                        unsigned sum = 0, n = (unsigned)(kx * ky);
                        for (int j = 0; j < ky; j++)
                            for (int i = 0; i < kx; i++) {
                                size_t p = (size_t)(y * ky + j) * W + x * kx + i;
                                sum += c < 3 ? src.rgb[p * 3 + c] : src.alpha[p];
                            }
                        unsigned want = (unsigned)floor((double)sum / n + 0.5);
                        unsigned got =
                            c < 3 ? dst.rgb[((size_t)y * ow + x) * 3 + c] : dst.alpha[(size_t)y * ow + x];
                        bad += got != want;
                    }
            CHECK_MSG(t, dst.rgb && bad == 0, "area %dx%d: %d values differ from the block mean", kx, ky,
                      bad);
            free(error);
            sdt_image_free(&dst);
        }
    }
    sdt_image_free(&src);
}

/* A horizontal ramp v = 2x + 10 (and a vertical one in green): a resampling filter that reproduces
 * linear functions maps output pixel centre u to 2 * ((u + 0.5) * scale - 0.5) + 10. */
static void test_resize_ramp(test_state *t)
{
    enum { W = 100, H = 90 };
    sdt_image src = make_image(W, H, 0);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = src.rgb + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(2 * x + 10), p[1] = (uint8_t)(2 * y + 20), p[2] = 90;
        }
    sdt_resize_filter filters[] = {SDT_RESIZE_LANCZOS, SDT_RESIZE_BICUBIC, SDT_RESIZE_BILINEAR,
                                   SDT_RESIZE_AREA};
    int sizes[][2] = {{70, 61}, {150, 130}, {33, 45}};
    for (size_t f = 0; f < 4; f++)
        for (size_t s = 0; s < 3; s++) {
            int ow = sizes[s][0], oh = sizes[s][1];
            double sx = (double)W / ow, sy = (double)H / oh;
            sdt_image dst;
            char *error = NULL;
            CHECK(t, sdt_image_resize(&src, ow, oh, filters[f], &dst, &error) == 0);
            double worst = 0;
            /* away from the borders by the filter's reach (where the ramp is cut off) */
            int mx = (int)ceil(3.0 * (sx > 1 ? 1 : 1 / sx)) + 1,
                my = (int)ceil(3.0 * (sy > 1 ? 1 : 1 / sy)) + 1;
            for (int y = my; y < oh - my && dst.rgb; y++)
                for (int x = mx; x < ow - mx; x++) {
                    const uint8_t *p = dst.rgb + ((size_t)y * ow + x) * 3;
                    double wr = 2 * ((x + 0.5) * sx - 0.5) + 10, wg = 2 * ((y + 0.5) * sy - 0.5) + 20;
                    double d = fmax(fabs(p[0] - wr), fmax(fabs(p[1] - wg), fabs(p[2] - 90.0)));
                    worst = d > worst ? d : worst;
                }
            CHECK_MSG(t, dst.rgb && worst <= 1.0, "filter %d to %dx%d: ramp off by %.2f", (int)filters[f], ow,
                      oh, worst);
            free(error);
            sdt_image_free(&dst);
        }
    /* AUTO enlarging is lanczos */
    sdt_image a, b;
    char *error = NULL;
    CHECK(t, sdt_image_resize(&src, 130, 100, SDT_RESIZE_AUTO, &a, &error) == 0);
    CHECK(t, sdt_image_resize(&src, 130, 100, SDT_RESIZE_LANCZOS, &b, &error) == 0);
    CHECK(t, a.rgb && b.rgb && memcmp(a.rgb, b.rgb, 130 * 100 * 3) == 0);
    sdt_image_free(&a);
    sdt_image_free(&b);
    /* AUTO with one side shrinking is area */
    CHECK(t, sdt_image_resize(&src, 130, 80, SDT_RESIZE_AUTO, &a, &error) == 0);
    CHECK(t, sdt_image_resize(&src, 130, 80, SDT_RESIZE_AREA, &b, &error) == 0);
    CHECK(t, a.rgb && b.rgb && memcmp(a.rgb, b.rgb, 130 * 80 * 3) == 0);
    sdt_image_free(&a);
    sdt_image_free(&b);
    /* nearest, 2x up: every pixel doubled */
    CHECK(t, sdt_image_resize(&src, W * 2, H * 2, SDT_RESIZE_NEAREST, &a, &error) == 0);
    int bad = 0;
    for (int y = 0; y < H * 2 && a.rgb; y++)
        for (int x = 0; x < W * 2; x++)
            bad += memcmp(a.rgb + ((size_t)y * W * 2 + x) * 3, src.rgb + ((size_t)(y / 2) * W + x / 2) * 3,
                          3) != 0;
    CHECK(t, a.rgb && bad == 0);
    sdt_image_free(&a);
    /* bad arguments */
    CHECK(t, sdt_image_resize(&src, 0, 10, SDT_RESIZE_AREA, &a, &error) == -1 && !a.rgb);
    CHECK_STR_CONTAINS(t, error, "resize");
    free(error);
    sdt_resize_filter parsed;
    CHECK(t, sdt_resize_filter_parse("cubic", &parsed) == 0 && parsed == SDT_RESIZE_BICUBIC);
    CHECK(t, sdt_resize_filter_parse("box", &parsed) == -1);
    sdt_image_free(&src);
}

static void test_crop_flip(test_state *t)
{
    enum { W = 9, H = 6 };
    sdt_image src = make_image(W, H, 1);
    pattern_rgb(src.rgb, W, H, 2);
    for (int i = 0; i < W * H; i++)
        src.alpha[i] = (uint8_t)i;
    for (int flip = 0; flip < 2; flip++) {
        sdt_image dst;
        char *error = NULL;
        CHECK(t,
              sdt_image_crop(&src, 2, 1, 5, 4, flip, &dst, &error) == 0 && dst.width == 5 && dst.height == 4);
        int bad = 0;
        for (int y = 0; y < 4 && dst.rgb; y++)
            for (int x = 0; x < 5; x++) {
                int sx = 2 + (flip ? 4 - x : x), sy = 1 + y;
                bad += memcmp(dst.rgb + (y * 5 + x) * 3, src.rgb + (sy * W + sx) * 3, 3) != 0;
                bad += dst.alpha[y * 5 + x] != src.alpha[sy * W + sx];
            }
        CHECK_MSG(t, dst.rgb && bad == 0, "flip %d: %d pixels differ", flip, bad);
        sdt_image_free(&dst);
    }
    sdt_image dst;
    char *error = NULL;
    CHECK(t, sdt_image_crop(&src, 5, 0, 5, 6, 0, &dst, &error) == -1 && !dst.rgb);
    CHECK_STR_CONTAINS(t, error, "not inside the 9 x 6 image");
    free(error);
    sdt_image_free(&src);
}

int main(void)
{
    if (test_make_temp_dir(g_dir, sizeof g_dir, "image") != 0) {
        perror("mkdtemp");
        return 1;
    }
    static const test_case cases[] = {
        TEST(test_png_variants),    TEST(test_jpeg_variants),
        TEST(test_webp_variants),   TEST(test_orientation),
        TEST(test_errors),          TEST(test_probe),
        TEST(test_resize_constant), TEST(test_resize_area_block_mean),
        TEST(test_resize_ramp),     TEST(test_crop_flip),
    };
    int rc = run_tests("image", cases, sizeof cases / sizeof cases[0]);
    test_remove_tree(g_dir);
    return rc;
}
