/* Images: format detection by magic bytes, probing from the first bytes of a file, whole-file decoding,
 * EXIF orientation, alpha compositing. The per-format work is in image_png.c, image_jpeg.c, image_webp.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image_internal.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

/* Files larger than this are not images anyone trains on (a 16384^2 PNG of noise is about 800 MB). */
#define SDT_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

size_t sdt_image_source_read(sdt_image_source *src, uint64_t offset, void *buf, size_t n)
{
    if (offset >= src->size)
        return 0;
    if (n > src->size - offset)
        n = (size_t)(src->size - offset);
    if (src->mem) {
        memcpy(buf, src->mem + offset, n);
        return n;
    }
    if (offset + n <= src->head_len) {
        memcpy(buf, src->head + offset, n);
        return n;
    }
    if (fseeko(src->file, (off_t)offset, SEEK_SET) != 0)
        return 0;
    return fread(buf, 1, n, src->file);
}

uint8_t *sdt_image_alloc(size_t a, size_t b, size_t c)
{
    if (a == 0 || b == 0 || c == 0 || a > SIZE_MAX / b || a * b > SIZE_MAX / c)
        return NULL;
    return malloc(a * b * c);
}

int sdt_image_take_pixels(uint8_t *pixels, int width, int height, int has_alpha, sdt_image *out, char **why)
{
    size_t n = (size_t)width * (size_t)height;
    if (has_alpha) {
        out->rgb = sdt_image_alloc(n, 3, 1);
        out->alpha = malloc(n);
        if (!out->rgb || !out->alpha) {
            free(out->rgb);
            free(out->alpha);
            free(pixels);
            out->rgb = out->alpha = NULL;
            *why = sdt_strdup("out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            memcpy(out->rgb + i * 3, pixels + i * 4, 3);
            out->alpha[i] = pixels[i * 4 + 3];
        }
        free(pixels);
    } else {
        out->rgb = pixels;
    }
    out->width = width;
    out->height = height;
    return 0;
}

/* ---- EXIF ---- */

static unsigned exif_u16(const uint8_t *p, int big_endian)
{
    return big_endian ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t exif_u32(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

int sdt_image_exif_orientation(const uint8_t *exif, size_t size)
{
    if (size >= 6 && memcmp(exif, "Exif\0\0", 6) == 0) {
        exif += 6;
        size -= 6;
    }
    if (size < 8)
        return 1;
    int big;
    if (memcmp(exif, "II*\0", 4) == 0)
        big = 0;
    else if (memcmp(exif, "MM\0*", 4) == 0)
        big = 1;
    else
        return 1;
    uint32_t ifd = exif_u32(exif + 4, big);
    if (ifd < 8 || ifd > size - 2)
        return 1;
    unsigned count = exif_u16(exif + ifd, big);
    for (unsigned i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + (size_t)i * 12;
        if (entry + 12 > size)
            return 1;
        /* Tag 0x0112, type SHORT, count 1: the value sits in the first two bytes of the value field. */
        if (exif_u16(exif + entry, big) != 0x0112)
            continue;
        if (exif_u16(exif + entry + 2, big) != 3 || exif_u32(exif + entry + 4, big) != 1)
            return 1;
        unsigned v = exif_u16(exif + entry + 8, big);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* ---- detection and probing ---- */

static sdt_image_format detect(const uint8_t *p, size_t n)
{
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return SDT_IMAGE_PNG;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return SDT_IMAGE_JPEG;
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return SDT_IMAGE_WEBP;
    return SDT_IMAGE_UNKNOWN;
}

/* "not a PNG, JPEG or WebP file (starts with ...)", naming the format when it is a common other one, so
 * a GIF or an HTML error page saved as .jpg is recognised at a glance. */
static char *unknown_format_reason(const uint8_t *p, size_t n)
{
    static const struct {
        const char *magic;
        size_t len, at;
        const char *what;
    } known[] = {
        {"GIF8", 4, 0, "a GIF image"},
        {"BM", 2, 0, "a BMP image"},
        {"II*\0", 4, 0, "a TIFF image"},
        {"MM\0*", 4, 0, "a TIFF image"},
        {"ftypavif", 8, 4, "an AVIF image"},
        {"ftypheic", 8, 4, "a HEIC image"},
        {"ftypmif1", 8, 4, "a HEIF image"},
        {"<!DOCTYPE", 9, 0, "an HTML page"},
        {"<html", 5, 0, "an HTML page"},
        {"RIFF", 4, 0, "a RIFF file that is not WebP"},
        {"\x89PNG", 4, 0, "a damaged PNG signature"},
    };
    const char *what = NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0] && !what; i++) {
        if (n >= known[i].at + known[i].len && memcmp(p + known[i].at, known[i].magic, known[i].len) == 0)
            what = known[i].what;
    }
    char shown[8 * 4 + 1] = "";
    /* Text when it starts with at least 4 printable characters (shown up to the first other byte). */
    size_t k = n < 8 ? n : 8, run = 0;
    while (run < k && p[run] >= 0x20 && p[run] < 0x7F)
        run++;
    int printable = run >= 4 || (run == k && k > 0);
    if (printable)
        k = run;
    size_t len = 0;
    for (size_t i = 0; i < k; i++) {
        if (printable)
            shown[len++] = (char)p[i];
        else
            len += (size_t)snprintf(shown + len, sizeof shown - len, "%s%02x", i ? " " : "", p[i]);
    }
    shown[len] = '\0';
    if (what)
        return sdt_format("not a PNG, JPEG or WebP file (%s; starts with %s%s%s)", what,
                          printable ? "\"" : "", shown, printable ? "\"" : "");
    return sdt_format("not a PNG, JPEG or WebP file (starts with %s%s%s)", printable ? "\"" : "", shown,
                      printable ? "\"" : "");
}

static int probe_source(sdt_image_source *src, const char *name, sdt_image_info *info, char **error)
{
    memset(info, 0, sizeof *info);
    char *why = NULL;
    int rc = -1;
    uint8_t magic[12];
    size_t n = sdt_image_source_read(src, 0, magic, sizeof magic);
    if (src->size == 0) {
        why = sdt_strdup("empty file (0 bytes)");
    } else {
        switch (detect(magic, n)) {
        case SDT_IMAGE_PNG: rc = sdt_png_probe(src, info, &why); break;
        case SDT_IMAGE_JPEG: rc = sdt_jpeg_probe(src, info, &why); break;
        case SDT_IMAGE_WEBP: rc = sdt_webp_probe(src, info, &why); break;
        case SDT_IMAGE_UNKNOWN: why = unknown_format_reason(magic, n); break;
        }
    }
    if (rc == 0) {
        if (info->width <= 0 || info->height <= 0) {
            why = sdt_format("%s image of %d x %d pixels", sdt_image_format_name(info->format), info->width,
                             info->height);
            rc = -1;
        } else if (info->width > SDT_IMAGE_MAX_SIDE || info->height > SDT_IMAGE_MAX_SIDE ||
                   (uint64_t)info->width * (uint64_t)info->height > SDT_IMAGE_MAX_PIXELS) {
            why = sdt_format("%d x %d pixels is over the limit of %d pixels a side", info->width,
                             info->height, SDT_IMAGE_MAX_SIDE);
            rc = -1;
        }
    }
    if (rc != 0) {
        *error = sdt_format("%s: %s", name, why ? why : "out of memory");
        free(why);
        memset(info, 0, sizeof *info);
        return -1;
    }
    if (info->orientation < 1 || info->orientation > 8)
        info->orientation = 1;
    if (info->orientation >= 5) { /* transposing orientations swap the sides */
        int w = info->width;
        info->width = info->height;
        info->height = w;
    }
    return 0;
}

int sdt_image_probe_memory(const void *data, size_t size, const char *name, sdt_image_info *info,
                           char **error)
{
    sdt_image_source *src = calloc(1, sizeof *src);
    if (!src) {
        *error = sdt_format("%s: out of memory", name);
        return -1;
    }
    src->mem = data;
    src->size = size;
    int rc = probe_source(src, name, info, error);
    free(src);
    return rc;
}

int sdt_image_probe_file(const char *path, sdt_image_info *info, char **error)
{
    memset(info, 0, sizeof *info);
    FILE *f = fopen(path, "rb");
    if (!f) {
        *error = sdt_format("%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        *error = sdt_format("%s: not a regular file", path);
        fclose(f);
        return -1;
    }
    sdt_image_source *src = calloc(1, sizeof *src);
    if (!src) {
        *error = sdt_format("%s: out of memory", path);
        fclose(f);
        return -1;
    }
    /* Unbuffered: the probe reads the head in one call and seeks past whatever it does not need, so
     * stdio's own buffer would only add a copy and a larger read. */
    setvbuf(f, NULL, _IONBF, 0);
    src->file = f;
    src->size = (uint64_t)st.st_size;
    src->head_len = fread(src->head, 1, sizeof src->head, f);
    if (src->head_len < sizeof src->head && (uint64_t)src->head_len < src->size)
        src->size = src->head_len; /* the file shrank under us: probe what was read */
    int rc = probe_source(src, path, info, error);
    free(src);
    fclose(f);
    return rc;
}

/* ---- orientation and alpha ---- */

/* dst = the upright image of src, stored with EXIF orientation o; channels bytes per pixel.
 * src [h, w, c] -> dst [w', h', c] where w', h' = h, w for o >= 5. */
static void orient_plane(const uint8_t *src, int w, int h, int channels, int o, uint8_t *dst)
{
    int dw = o >= 5 ? h : w, dh = o >= 5 ? w : h;
    for (int y = 0; y < dh; y++) {
        for (int x = 0; x < dw; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x, sy = y; break;         /* mirrored left-right */
            case 3: sx = w - 1 - x, sy = h - 1 - y; break; /* rotated 180 */
            case 4: sx = x, sy = h - 1 - y; break;         /* mirrored top-bottom */
            case 5: sx = y, sy = x; break;                 /* transposed */
            case 6: sx = y, sy = h - 1 - x; break;         /* needs 90 degrees clockwise */
            case 7: sx = w - 1 - y, sy = h - 1 - x; break; /* transverse */
            case 8: sx = w - 1 - y, sy = x; break;         /* needs 90 degrees counter-clockwise */
            default: sx = x, sy = y; break;
            }
            memcpy(dst + ((size_t)y * dw + x) * channels, src + ((size_t)sy * w + sx) * channels, channels);
        }
    }
}

static int apply_orientation(sdt_image *img, int o)
{
    if (o <= 1 || o > 8)
        return 0;
    uint8_t *rgb = sdt_image_alloc((size_t)img->width, (size_t)img->height, 3);
    uint8_t *alpha = img->alpha ? sdt_image_alloc((size_t)img->width, (size_t)img->height, 1) : NULL;
    if (!rgb || (img->alpha && !alpha)) {
        free(rgb);
        free(alpha);
        return -1;
    }
    orient_plane(img->rgb, img->width, img->height, 3, o, rgb);
    if (alpha)
        orient_plane(img->alpha, img->width, img->height, 1, o, alpha);
    free(img->rgb);
    free(img->alpha);
    img->rgb = rgb;
    img->alpha = alpha;
    if (o >= 5) {
        int w = img->width;
        img->width = img->height;
        img->height = w;
    }
    return 0;
}

/* rgb over white, weighted by alpha; rounded to nearest. */
static void composite_on_white(uint8_t *rgb, const uint8_t *alpha, size_t pixels)
{
    for (size_t i = 0; i < pixels; i++) {
        unsigned a = alpha[i];
        if (a == 255)
            continue;
        for (int c = 0; c < 3; c++) {
            unsigned v = rgb[i * 3 + c] * a + 255u * (255u - a);
            rgb[i * 3 + c] = (uint8_t)((v + 127) / 255);
        }
    }
}

/* ---- decoding ---- */

int sdt_image_decode_memory_limited(const void *data, size_t size, const char *name, int keep_alpha,
                                    uint64_t max_pixels, sdt_image *out, char **error)
{
    memset(out, 0, sizeof *out);
    sdt_image_info info;
    if (sdt_image_probe_memory(data, size, name, &info, error) != 0)
        return -1;
    if ((uint64_t)info.width * (uint64_t)info.height > max_pixels) {
        *error = sdt_format("%s: %d x %d pixels is over the limit of %llu pixels", name, info.width,
                            info.height, (unsigned long long)max_pixels);
        return -1;
    }
    char *why = NULL;
    int rc = -1;
    switch (info.format) {
    case SDT_IMAGE_PNG: rc = sdt_png_decode(data, size, max_pixels, out, &why); break;
    case SDT_IMAGE_JPEG: rc = sdt_jpeg_decode(data, size, max_pixels, out, &why); break;
    case SDT_IMAGE_WEBP: rc = sdt_webp_decode(data, size, max_pixels, out, &why); break;
    case SDT_IMAGE_UNKNOWN: why = sdt_strdup("unknown format"); break;
    }
    if (rc == 0) {
        size_t pixels = (size_t)out->width * (size_t)out->height;
        if (!keep_alpha && out->alpha) {
            composite_on_white(out->rgb, out->alpha, pixels);
            free(out->alpha);
            out->alpha = NULL;
        } else if (keep_alpha && !out->alpha) {
            /* An opaque image still gets a mask, so alpha_mask callers need no special case. */
            out->alpha = malloc(pixels);
            if (out->alpha)
                memset(out->alpha, 255, pixels);
            else
                rc = -1;
        }
        if (rc == 0 && apply_orientation(out, info.orientation) != 0)
            rc = -1;
        if (rc != 0)
            why = sdt_strdup("out of memory");
    }
    if (rc != 0) {
        sdt_image_free(out);
        *error = sdt_format("%s: %s", name, why ? why : "out of memory");
        free(why);
        return -1;
    }
    return 0;
}

int sdt_image_decode_memory(const void *data, size_t size, const char *name, int keep_alpha, sdt_image *out,
                            char **error)
{
    return sdt_image_decode_memory_limited(data, size, name, keep_alpha, SDT_IMAGE_MAX_PIXELS, out, error);
}

int sdt_image_decode_file(const char *path, int keep_alpha, sdt_image *out, char **error)
{
    memset(out, 0, sizeof *out);
    char *data = NULL, *why = NULL;
    size_t len = 0;
    if (sdt_read_file(path, SDT_IMAGE_MAX_FILE_BYTES, &data, &len, &why) != 0) {
        *error = sdt_format("%s: %s", path, why ? why : "cannot be read");
        free(why);
        return -1;
    }
    int rc = sdt_image_decode_memory(data, len, path, keep_alpha, out, error);
    free(data);
    return rc;
}

void sdt_image_free(sdt_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    free(img->alpha);
    img->rgb = NULL;
    img->alpha = NULL;
    img->width = img->height = 0;
}
