/* PNG: the probe walks the chunks before the first IDAT (IHDR, tRNS, eXIf) without libpng; decoding is
 * libpng with every transformation to 8-bit RGB or RGBA. libpng reports errors by longjmp, so everything
 * allocated around png_read_* is reachable from the context struct and freed on that path too. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"
#include "sdtune/strutil.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The eXIf block of a PNG is read up to this size: IFD0 (where the orientation is) comes first. */
#define PNG_EXIF_READ_BYTES 4096
/* Chunks before IDAT that the probe looks at before giving up on finding tRNS or eXIf. */
#define PNG_PROBE_MAX_CHUNKS 64

int sdt_png_probe(sdt_image_source *src, sdt_image_info *info, char **why)
{
    uint8_t h[33]; /* signature, IHDR length and type, 13 bytes of IHDR, CRC */
    if (sdt_image_source_read(src, 0, h, sizeof h) < sizeof h) {
        *why = sdt_strdup("truncated PNG (the file ends inside its header)");
        return -1;
    }
    if (be32(h + 8) != 13 || memcmp(h + 12, "IHDR", 4) != 0) {
        *why = sdt_strdup("corrupt PNG (the first chunk is not a valid IHDR)");
        return -1;
    }
    uint32_t w = be32(h + 16), ht = be32(h + 20);
    int color_type = h[25];
    if (w > 0x7FFFFFFF || ht > 0x7FFFFFFF) {
        *why = sdt_format("corrupt PNG (IHDR says %u x %u pixels)", w, ht);
        return -1;
    }
    info->format = SDT_IMAGE_PNG;
    info->width = (int)w;
    info->height = (int)ht;
    info->orientation = 1;
    info->has_alpha = color_type == 4 || color_type == 6;
    uint64_t at = 33;
    for (int i = 0; i < PNG_PROBE_MAX_CHUNKS; i++) {
        uint8_t c[8];
        if (sdt_image_source_read(src, at, c, 8) < 8)
            break;
        uint32_t len = be32(c);
        if (memcmp(c + 4, "IDAT", 4) == 0 || memcmp(c + 4, "IEND", 4) == 0 || len > 0x7FFFFFFF)
            break;
        if (memcmp(c + 4, "tRNS", 4) == 0) {
            info->has_alpha = 1;
        } else if (memcmp(c + 4, "eXIf", 4) == 0) {
            uint8_t exif[PNG_EXIF_READ_BYTES];
            size_t n = sdt_image_source_read(src, at + 8, exif, len < sizeof exif ? len : sizeof exif);
            info->orientation = sdt_image_exif_orientation(exif, n);
        }
        at += 12 + (uint64_t)len;
    }
    return 0;
}

typedef struct png_ctx {
    const uint8_t *data;
    size_t size, pos;
    char message[200];
    uint8_t *pixels; /* [h, w, channels] as libpng writes them */
    png_bytep *rows; /* [h] pointers into pixels */
} png_ctx;

static void png_read_memory(png_structp png, png_bytep out, size_t n)
{
    png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->size - ctx->pos) {
        snprintf(ctx->message, sizeof ctx->message, "truncated PNG data");
        png_longjmp(png, 1);
    }
    memcpy(out, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    if (!ctx->message[0])
        snprintf(ctx->message, sizeof ctx->message, "corrupt PNG data (%s)", msg);
    png_longjmp(png, 1);
}

/* Warnings (a wrong sRGB profile, a bad ancillary CRC) do not stop a viewer from showing the image. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int sdt_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdt_image *out, char **why)
{
    memset(out, 0, sizeof *out);
    png_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        *why = sdt_strdup("out of memory");
        return -1;
    }
    ctx->data = data;
    ctx->size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(ctx);
        *why = sdt_strdup("out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        /* Only ctx (a plain pointer set before setjmp) is used here: locals changed after setjmp are
         * indeterminate after the longjmp. */
        png_destroy_read_struct(&png, &info, NULL);
        *why = sdt_strdup(ctx->message[0] ? ctx->message : "corrupt PNG data");
        free(ctx->pixels);
        free(ctx->rows);
        free(ctx);
        return -1;
    }
    png_set_read_fn(png, ctx, png_read_memory);
    /* The limits are checked below; raising libpng's own lets ours be the one that speaks. */
    png_set_user_limits(png, 0x7FFFFFFF, 0x7FFFFFFF);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (w > SDT_IMAGE_MAX_SIDE || h > SDT_IMAGE_MAX_SIDE || (uint64_t)w * h > max_pixels) {
        snprintf(ctx->message, sizeof ctx->message, "%u x %u pixels is over the limit", (unsigned)w,
                 (unsigned)h);
        png_longjmp(png, 1);
    }
    int color_type = png_get_color_type(png, info);
    int has_alpha = (color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
    /* palette -> RGB, gray < 8 bit -> 8 bit, tRNS -> alpha; 16 bit -> 8 bit rounded (not truncated). */
    png_set_expand(png);
    png_set_scale_16(png);
    if (!(color_type & PNG_COLOR_MASK_COLOR))
        png_set_gray_to_rgb(png);
    if (!has_alpha)
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t channels = png_get_channels(png, info), rowbytes = png_get_rowbytes(png, info);
    if (channels != (has_alpha ? 4u : 3u) || rowbytes != w * channels) {
        snprintf(ctx->message, sizeof ctx->message, "unsupported PNG layout (%zu channels)", channels);
        png_longjmp(png, 1);
    }
    ctx->pixels = sdt_image_alloc(w, h, channels);
    ctx->rows = malloc(sizeof *ctx->rows * h);
    if (!ctx->pixels || !ctx->rows) {
        snprintf(ctx->message, sizeof ctx->message, "out of memory");
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++)
        ctx->rows[y] = ctx->pixels + (size_t)y * rowbytes;
    png_read_image(png, ctx->rows);
    /* The end chunks are not read: an image whose pixels are all there is usable without its IEND. */
    png_destroy_read_struct(&png, &info, NULL);
    free(ctx->rows);
    uint8_t *pixels = ctx->pixels;
    free(ctx);
    return sdt_image_take_pixels(pixels, (int)w, (int)h, has_alpha, out, why);
}
