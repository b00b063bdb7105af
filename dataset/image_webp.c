/* WebP: libwebp reads the size and flags from the first bytes (WebPGetFeatures); the probe walks the RIFF
 * chunks for an EXIF chunk when the VP8X header says there is one. Animated files are refused with a
 * clear error: their first frame is a fragment of a canvas, not an image. */
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>

#include "image_internal.h"
#include "sdtune/strutil.h"

#define WEBP_EXIF_READ_BYTES 4096
#define WEBP_PROBE_MAX_CHUNKS 64

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static char *webp_status_reason(VP8StatusCode status)
{
    switch (status) {
    case VP8_STATUS_NOT_ENOUGH_DATA: return sdt_strdup("truncated WebP data");
    case VP8_STATUS_OUT_OF_MEMORY: return sdt_strdup("out of memory");
    case VP8_STATUS_UNSUPPORTED_FEATURE: return sdt_strdup("unsupported WebP feature");
    default: return sdt_format("corrupt WebP data (libwebp status %d)", (int)status);
    }
}

int sdt_webp_probe(sdt_image_source *src, sdt_image_info *info, char **why)
{
    uint8_t head[64];
    size_t n = sdt_image_source_read(src, 0, head, sizeof head);
    WebPBitstreamFeatures f;
    VP8StatusCode status = WebPGetFeatures(head, n, &f);
    if (status != VP8_STATUS_OK) {
        *why = webp_status_reason(status);
        return -1;
    }
    if (f.has_animation) {
        *why = sdt_strdup("animated WebP is not supported (save one frame as a still image)");
        return -1;
    }
    info->format = SDT_IMAGE_WEBP;
    info->width = f.width;
    info->height = f.height;
    info->has_alpha = f.has_alpha;
    info->orientation = 1;
    /* VP8X (the extended format) at byte 12; its flags byte says whether an EXIF chunk follows. */
    if (n < 21 || memcmp(head + 12, "VP8X", 4) != 0 || !(head[20] & 0x08))
        return 0;
    uint64_t at = 12;
    for (int i = 0; i < WEBP_PROBE_MAX_CHUNKS; i++) {
        uint8_t c[8];
        if (sdt_image_source_read(src, at, c, 8) < 8)
            break;
        uint32_t len = le32(c + 4);
        if (memcmp(c, "EXIF", 4) == 0) {
            uint8_t exif[WEBP_EXIF_READ_BYTES];
            size_t got = sdt_image_source_read(src, at + 8, exif, len < sizeof exif ? len : sizeof exif);
            info->orientation = sdt_image_exif_orientation(exif, got);
            break;
        }
        at += 8 + (uint64_t)len + (len & 1); /* chunks are padded to even sizes */
    }
    return 0;
}

int sdt_webp_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdt_image *out, char **why)
{
    memset(out, 0, sizeof *out);
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) {
        *why = sdt_strdup("libwebp version mismatch");
        return -1;
    }
    VP8StatusCode status = WebPGetFeatures(data, size, &config.input);
    if (status != VP8_STATUS_OK) {
        *why = webp_status_reason(status);
        return -1;
    }
    int w = config.input.width, h = config.input.height;
    if (config.input.has_animation) {
        *why = sdt_strdup("animated WebP is not supported (save one frame as a still image)");
        return -1;
    }
    if (w <= 0 || h <= 0 || w > SDT_IMAGE_MAX_SIDE || h > SDT_IMAGE_MAX_SIDE ||
        (uint64_t)w * h > max_pixels) {
        *why = sdt_format("%d x %d pixels is out of range", w, h);
        return -1;
    }
    int alpha = config.input.has_alpha;
    size_t channels = alpha ? 4 : 3;
    uint8_t *pixels = sdt_image_alloc((size_t)w, (size_t)h, channels); /* [h, w, channels] */
    if (!pixels) {
        *why = sdt_strdup("out of memory");
        return -1;
    }
    config.output.colorspace = alpha ? MODE_RGBA : MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = pixels;
    config.output.u.RGBA.stride = w * (int)channels;
    config.output.u.RGBA.size = (size_t)w * h * channels;
    status = WebPDecode(data, size, &config);
    WebPFreeDecBuffer(&config.output);
    if (status != VP8_STATUS_OK) {
        free(pixels);
        *why = webp_status_reason(status);
        return -1;
    }
    return sdt_image_take_pixels(pixels, w, h, alpha, out, why);
}
