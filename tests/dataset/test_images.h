/* Test images written with libpng, libjpeg and libwebp, for the tests of dataset/ and the benchmarks that
 * need image files. Header-only; static inline, so a file that needs only some of them compiles without
 * warnings (and without linking the libraries it does not call). */
#ifndef SDTUNE_TESTS_DATASET_TEST_IMAGES_H
#define SDTUNE_TESTS_DATASET_TEST_IMAGES_H

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <webp/encode.h>

#include "unit/test_files.h"

typedef struct png_spec {
    int width, height, color_type, bit_depth, interlace;
    const uint8_t *rows; /* [height, rowbytes] in PNG's own byte layout */
    const png_color *palette;
    int palette_len;
    const uint8_t *trans; /* palette alpha, trans_len entries */
    int trans_len;
    const png_color_16 *trans_color; /* gray or RGB tRNS */
    const uint8_t *exif;             /* eXIf contents (TIFF data) */
    int exif_len;
} png_spec;

static inline int test_write_png(const char *path, const png_spec *s)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)s->width, (png_uint_32)s->height, s->bit_depth, s->color_type,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->palette)
        png_set_PLTE(png, info, s->palette, s->palette_len);
    if (s->trans || s->trans_color)
        png_set_tRNS(png, info, s->trans, s->trans_len, s->trans_color);
    if (s->exif)
        png_set_eXIf_1(png, info, (png_uint_32)s->exif_len, (png_bytep)s->exif);
    png_write_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    png_bytep *rows = malloc(sizeof *rows * (size_t)s->height);
    for (int y = 0; y < s->height; y++)
        rows[y] = (png_bytep)s->rows + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return fclose(f) == 0 ? 0 : -1;
}

typedef struct jpeg_spec {
    int width, height, components;
    J_COLOR_SPACE in_space, file_space; /* file_space JCS_UNKNOWN: libjpeg's defaults (subsampled YCbCr) */
    int quality, progressive, no_adobe;
    const uint8_t *pixels; /* [height, width, components] */
    const uint8_t *app1;   /* APP1 contents ("Exif\0\0" ...) */
    int app1_len;
    int app2_len; /* an APP2 of this many zero bytes before the frame header (a big ICC profile) */
} jpeg_spec;

static inline int test_write_jpeg(const char *path, const jpeg_spec *s)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)s->width;
    c.image_height = (JDIMENSION)s->height;
    c.input_components = s->components;
    c.in_color_space = s->in_space;
    jpeg_set_defaults(&c);
    if (s->file_space != JCS_UNKNOWN) {
        jpeg_set_colorspace(&c, s->file_space);
        for (int i = 0; i < c.num_components; i++) /* no chroma subsampling: colours stay close */
            c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    }
    if (s->no_adobe)
        c.write_Adobe_marker = FALSE;
    jpeg_set_quality(&c, s->quality, TRUE);
    if (s->progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (s->app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, s->app1, (unsigned)s->app1_len);
    if (s->app2_len) {
        uint8_t *zeros = calloc(1, (size_t)s->app2_len);
        jpeg_write_marker(&c, JPEG_APP0 + 2, zeros, (unsigned)s->app2_len);
        free(zeros);
    }
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)s->pixels + (size_t)c.next_scanline * s->width * s->components;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) == 0 ? 0 : -1;
}

/* A WebP file: lossless or lossy (at quality), RGB or RGBA; with exif, wrapped in the extended (VP8X) format
 * with an EXIF chunk after the image. */
static inline int test_write_webp(const char *path, const uint8_t *pixels, int w, int h, int alpha,
                                  int lossless, float quality, const uint8_t *exif, int exif_len)
{
    uint8_t *out = NULL;
    size_t n;
    if (lossless)
        n = alpha ? WebPEncodeLosslessRGBA(pixels, w, h, w * 4, &out)
                  : WebPEncodeLosslessRGB(pixels, w, h, w * 3, &out);
    else
        n = alpha ? WebPEncodeRGBA(pixels, w, h, w * 4, quality, &out)
                  : WebPEncodeRGB(pixels, w, h, w * 3, quality, &out);
    if (n == 0)
        return -1;
    int rc;
    if (!exif) {
        rc = test_write_file(path, out, n);
    } else {
        if (memcmp(out + 12, "VP8X", 4) == 0) { /* already extended: not needed by these tests */
            WebPFree(out);
            return -1;
        }
        size_t body = n - 12, exif_chunk = 8 + (size_t)exif_len + (exif_len & 1);
        size_t total = 12 + 18 + body + exif_chunk;
        uint8_t *file = calloc(1, total);
        memcpy(file, "RIFF", 4);
        uint32_t riff = (uint32_t)(total - 8);
        for (int i = 0; i < 4; i++)
            file[4 + i] = (uint8_t)(riff >> (8 * i));
        memcpy(file + 8, "WEBPVP8X", 8);
        file[16] = 10;
        file[20] = (uint8_t)(0x08 | (alpha ? 0x10 : 0)); /* EXIF, alpha */
        for (int i = 0; i < 3; i++) {
            file[24 + i] = (uint8_t)((w - 1) >> (8 * i));
            file[27 + i] = (uint8_t)((h - 1) >> (8 * i));
        }
        memcpy(file + 30, out + 12, body);
        uint8_t *e = file + 30 + body;
        memcpy(e, "EXIF", 4);
        for (int i = 0; i < 4; i++)
            e[4 + i] = (uint8_t)((uint32_t)exif_len >> (8 * i));
        memcpy(e + 8, exif, (size_t)exif_len);
        rc = test_write_file(path, file, total);
        free(file);
    }
    WebPFree(out);
    return rc;
}

/* A w x h 8-bit grayscale PNG, all black: for tests where only the size matters. 0 or -1. */
static inline int test_write_gray_png(const char *path, int w, int h)
{
    uint8_t *rows = calloc((size_t)w * (size_t)h + 1, 1);
    if (!rows)
        return -1;
    int rc = test_write_png(
        path, &(png_spec){
                  .width = w, .height = h, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 8, .rows = rows});
    free(rows);
    return rc;
}

#endif
