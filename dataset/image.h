/* Images for training: probing (size and orientation from the header alone, for fast dataset scans),
 * decoding PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) into 8-bit RGB with an optional alpha
 * plane, EXIF orientation, and resizing. Every failure names the file. See docs/dataset.md. */
#ifndef SDTUNE_DATASET_IMAGE_H
#define SDTUNE_DATASET_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_image_format {
    SDT_IMAGE_UNKNOWN = 0,
    SDT_IMAGE_PNG,
    SDT_IMAGE_JPEG,
    SDT_IMAGE_WEBP,
} sdt_image_format;

const char *sdt_image_format_name(sdt_image_format format); /* "png", "jpeg", "webp", "unknown" */

/* What the header says, without decoding pixels. width/height are AFTER applying the EXIF orientation
 * (what a viewer shows, what kohya's buckets use). */
typedef struct sdt_image_info {
    sdt_image_format format;
    int width, height;
    int orientation; /* EXIF 1..8 (1 = as stored) */
    int has_alpha;
} sdt_image_info;

/* An 8-bit RGB image, row-major, no padding: rgb [height, width, 3]; alpha [height, width] or NULL. */
typedef struct sdt_image {
    int width, height;
    uint8_t *rgb;
    uint8_t *alpha;
} sdt_image;

/* keep_alpha: keep the alpha plane (kohya's alpha_mask); otherwise transparent pixels are composited on
 * white. Returns 0, or -1 with *error set (caller frees) naming `name` (the file). */
int sdt_image_probe_memory(const void *data, size_t size, const char *name, sdt_image_info *info,
                           char **error);
int sdt_image_probe_file(const char *path, sdt_image_info *info, char **error);
int sdt_image_decode_memory(const void *data, size_t size, const char *name, int keep_alpha, sdt_image *out,
                            char **error);
int sdt_image_decode_file(const char *path, int keep_alpha, sdt_image *out, char **error);
void sdt_image_free(sdt_image *img);

typedef enum sdt_resize_filter {
    SDT_RESIZE_AUTO = 0, /* area when shrinking, lanczos when enlarging (kohya's default) */
    SDT_RESIZE_AREA,
    SDT_RESIZE_LANCZOS,
    SDT_RESIZE_BILINEAR,
    SDT_RESIZE_BICUBIC,
    SDT_RESIZE_NEAREST,
} sdt_resize_filter;

/* kohya's resize_interpolation names: "area", "lanczos", "bilinear"/"linear", "bicubic"/"cubic",
 * "nearest"; returns -1 for anything else. */
int sdt_resize_filter_parse(const char *name, sdt_resize_filter *out);

/* dst (allocated here) = src resized to width x height (alpha too, when present). */
int sdt_image_resize(const sdt_image *src, int width, int height, sdt_resize_filter filter, sdt_image *dst,
                     char **error);
/* dst (allocated) = the width x height window of src at (left, top), mirrored left-right when flip. */
int sdt_image_crop(const sdt_image *src, int left, int top, int width, int height, int flip, sdt_image *dst,
                   char **error);

/* Writes 8-bit pixels [height, width, channels] (channels 3 = RGB, 4 = RGBA) as a PNG through libpng,
 * with tEXt chunks from text_kv (n_text key, value pairs: 2 * n_text strings; Latin-1 keys of 1-79
 * characters, UTF-8 values go in iTXt). Atomic (temporary file, fsync, rename). Returns 0, or -1 with
 * *error set naming the file (caller frees). */
int sdt_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                  const char *const *text_kv, size_t n_text, char **error);

#ifdef __cplusplus
}
#endif
#endif
