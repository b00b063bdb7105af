/* JPEG: the probe walks the marker segments up to the frame header (SOFn) without libjpeg, reading the
 * orientation from an APP1 Exif segment on the way; decoding is libjpeg(-turbo) to RGB, with CMYK and
 * YCCK (which libjpeg turns into CMYK) converted here. libjpeg's default error handler exits the process,
 * so ours longjmps back with the message; everything allocated is reachable from the context struct. */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t first */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "image_internal.h"
#include "sdtune/strutil.h"

/* The part of an APP1 segment the orientation is looked for in: IFD0 comes first in it. */
#define JPEG_EXIF_READ_BYTES 4096
/* Segments walked before giving up on finding the frame header. */
#define JPEG_PROBE_MAX_SEGMENTS 256
/* More scans than any encoder writes; a crafted progressive file can otherwise cost minutes. */
#define JPEG_MAX_SCANS 1000

int sdt_jpeg_probe(sdt_image_source *src, sdt_image_info *info, char **why)
{
    info->format = SDT_IMAGE_JPEG;
    info->orientation = 1;
    uint64_t at = 2; /* after SOI */
    int exif_seen = 0;
    for (int i = 0; i < JPEG_PROBE_MAX_SEGMENTS; i++) {
        uint8_t m[2];
        if (sdt_image_source_read(src, at, m, 2) < 2)
            break;
        if (m[0] != 0xFF) {
            *why = sdt_format("corrupt JPEG (no marker at byte %llu)", (unsigned long long)at);
            return -1;
        }
        if (m[1] == 0xFF) { /* fill byte before a marker */
            at++;
            continue;
        }
        at += 2;
        int marker = m[1];
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7))
            continue; /* TEM, RSTn: no length */
        if (marker == 0xD9 || marker == 0xDA) {
            *why = sdt_strdup("corrupt JPEG (no frame header before the image data)");
            return -1;
        }
        uint8_t l[2];
        if (sdt_image_source_read(src, at, l, 2) < 2)
            break;
        unsigned len = (unsigned)l[0] << 8 | l[1];
        if (len < 2) {
            *why = sdt_format("corrupt JPEG (segment length %u at byte %llu)", len, (unsigned long long)at);
            return -1;
        }
        int sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
        if (sof) {
            uint8_t f[6]; /* precision, height, width, components */
            if (sdt_image_source_read(src, at + 2, f, 6) < 6)
                break;
            info->height = f[1] << 8 | f[2];
            info->width = f[3] << 8 | f[4];
            if (info->height == 0) {
                *why = sdt_strdup("unsupported JPEG (the height is given after the image data, by a DNL "
                                  "marker)");
                return -1;
            }
            return 0;
        }
        if (marker == 0xE1 && !exif_seen && len >= 8) {
            uint8_t exif[JPEG_EXIF_READ_BYTES];
            size_t want = len - 2 < sizeof exif ? len - 2 : sizeof exif;
            size_t n = sdt_image_source_read(src, at + 2, exif, want);
            if (n >= 6 && memcmp(exif, "Exif\0\0", 6) == 0) {
                exif_seen = 1;
                info->orientation = sdt_image_exif_orientation(exif, n);
            }
        }
        at += len;
    }
    *why = sdt_strdup("truncated JPEG (the file ends before its frame header)");
    return -1;
}

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub; /* first, so libjpeg's pointer to it is a pointer to the context */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX + 64];
    uint8_t *rgb, *row; /* rgb [h, w, 3]; row [w, 4] for CMYK */
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    if (!ctx->message[0]) {
        char text[JMSG_LENGTH_MAX];
        cinfo->err->format_message(cinfo, text);
        snprintf(ctx->message, sizeof ctx->message, "corrupt JPEG data (%s)", text);
    }
    longjmp(ctx->jump, 1);
}

/* Warnings about recoverable damage (extraneous bytes, a bad restart marker) are let through, as viewers
 * do; running out of data is not, since libjpeg would fill the rest of the image with gray. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(ctx->message, sizeof ctx->message, "truncated JPEG data");
        longjmp(ctx->jump, 1);
    }
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (d->input_scan_number > JPEG_MAX_SCANS) {
            jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
            snprintf(ctx->message, sizeof ctx->message, "corrupt JPEG data (more than %d scans)",
                     JPEG_MAX_SCANS);
            longjmp(ctx->jump, 1);
        }
    }
}

/* 255 * 255 products back to 0..255, rounded. */
static uint8_t mul255(unsigned a, unsigned b)
{
    unsigned v = a * b + 128;
    return (uint8_t)((v + (v >> 8)) >> 8);
}

int sdt_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdt_image *out, char **why)
{
    memset(out, 0, sizeof *out);
    jpeg_ctx *ctx = calloc(1, sizeof *ctx);
    struct jpeg_decompress_struct *cinfo = calloc(1, sizeof *cinfo);
    if (!ctx || !cinfo) {
        free(ctx);
        free(cinfo);
        *why = sdt_strdup("out of memory");
        return -1;
    }
    cinfo->err = jpeg_std_error(&ctx->pub);
    ctx->pub.error_exit = jpeg_on_error;
    ctx->pub.emit_message = jpeg_on_message;
    ctx->pub.output_message = NULL;
    ctx->progress.progress_monitor = jpeg_on_progress;
    if (setjmp(ctx->jump)) {
        jpeg_destroy_decompress(cinfo);
        *why = sdt_strdup(ctx->message[0] ? ctx->message : "corrupt JPEG data");
        free(ctx->rgb);
        free(ctx->row);
        free(ctx);
        free(cinfo);
        return -1;
    }
    jpeg_create_decompress(cinfo);
    cinfo->progress = &ctx->progress;
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    JDIMENSION w = cinfo->image_width, h = cinfo->image_height;
    if (w == 0 || h == 0 || w > SDT_IMAGE_MAX_SIDE || h > SDT_IMAGE_MAX_SIDE ||
        (uint64_t)w * h > max_pixels) {
        snprintf(ctx->message, sizeof ctx->message, "%u x %u pixels is out of range", (unsigned)w,
                 (unsigned)h);
        longjmp(ctx->jump, 1);
    }
    int cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    /* Photoshop, the main writer of CMYK JPEGs, stores the channels inverted and marks its files with an
     * Adobe APP14 segment; decoders have followed it since, so the marker means "inverted". */
    int inverted = cmyk && cinfo->saw_Adobe_marker;
    cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(cinfo);
    if (cinfo->output_width != w || cinfo->output_height != h || cinfo->output_components != (cmyk ? 4 : 3)) {
        snprintf(ctx->message, sizeof ctx->message, "unsupported JPEG layout (%d components)",
                 cinfo->output_components);
        longjmp(ctx->jump, 1);
    }
    ctx->rgb = sdt_image_alloc(w, h, 3);
    ctx->row = cmyk ? sdt_image_alloc(w, 4, 1) : NULL;
    if (!ctx->rgb || (cmyk && !ctx->row)) {
        snprintf(ctx->message, sizeof ctx->message, "out of memory");
        longjmp(ctx->jump, 1);
    }
    while (cinfo->output_scanline < h) {
        JDIMENSION y = cinfo->output_scanline;
        uint8_t *dst = ctx->rgb + (size_t)y * w * 3;
        JSAMPROW row = cmyk ? ctx->row : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
            snprintf(ctx->message, sizeof ctx->message, "truncated JPEG data");
            longjmp(ctx->jump, 1);
        }
        if (cmyk) {
            for (JDIMENSION x = 0; x < w; x++) {
                const uint8_t *p = ctx->row + (size_t)x * 4;
                /* R = (1 - C)(1 - K), the usual naive conversion; with inverted data p = 1 - C etc. */
                unsigned k = inverted ? p[3] : 255u - p[3];
                for (int c = 0; c < 3; c++)
                    dst[x * 3 + c] = mul255(inverted ? p[c] : 255u - p[c], k);
            }
        }
    }
    /* jpeg_finish_decompress is skipped on purpose: trailing garbage after the last scan would only make
     * it complain about an image that is complete. */
    jpeg_destroy_decompress(cinfo);
    out->rgb = ctx->rgb;
    out->width = (int)w;
    out->height = (int)h;
    free(ctx->row);
    free(ctx);
    free(cinfo);
    return 0;
}
