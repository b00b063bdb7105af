/* Shared between the image files of dataset/: a byte source that probes read from (a memory buffer, or a
 * file of which only the first bytes are read up front and the rest on demand), the EXIF orientation
 * parser, and the per-format probes and decoders. Everything here reports a reason without the file name
 * (image.c puts the name in front). */
#ifndef SDTUNE_DATASET_IMAGE_INTERNAL_H
#define SDTUNE_DATASET_IMAGE_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "image.h"

/* Sane limits: a training image beyond these is a mistake or a decompression bomb. */
#define SDT_IMAGE_MAX_SIDE 16384
#define SDT_IMAGE_MAX_PIXELS ((uint64_t)1 << 28)

/* How many bytes a file probe reads in one go: enough for the headers of almost every file (IHDR, SOF,
 * VP8X), so a dataset scan costs one small read per file. */
#define SDT_IMAGE_HEAD_BYTES 4096

typedef struct sdt_image_source {
    const uint8_t *mem; /* memory source: mem [size] */
    FILE *file;         /* file source: head [head_len] are its first bytes */
    uint64_t size;
    uint8_t head[SDT_IMAGE_HEAD_BYTES];
    size_t head_len;
} sdt_image_source;

/* Copies up to n bytes at offset into buf; returns how many there were (fewer at the end of the data). */
size_t sdt_image_source_read(sdt_image_source *src, uint64_t offset, void *buf, size_t n);

/* The orientation tag of IFD0 of a TIFF/EXIF block (an "Exif\0\0" prefix is skipped); 1 when it is
 * absent, unreadable or out of range, since a broken tag should not make an image unusable. */
int sdt_image_exif_orientation(const uint8_t *exif, size_t size);

/* Probes fill format, width and height AS STORED, orientation and has_alpha. 0, or -1 with *why set. */
int sdt_png_probe(sdt_image_source *src, sdt_image_info *info, char **why);
int sdt_jpeg_probe(sdt_image_source *src, sdt_image_info *info, char **why);
int sdt_webp_probe(sdt_image_source *src, sdt_image_info *info, char **why);

/* Decoders give the image as stored: rgb [h, w, 3] and alpha [h, w] when the file has an alpha channel
 * (else NULL). They refuse images of more than max_pixels or a side over SDT_IMAGE_MAX_SIDE. */
int sdt_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdt_image *out, char **why);
int sdt_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdt_image *out, char **why);
int sdt_webp_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdt_image *out, char **why);

/* NULL (out of memory, or a size that overflows) or a buffer of a * b * c bytes. */
uint8_t *sdt_image_alloc(size_t a, size_t b, size_t c);

/* A decoder's last step: interleaved pixels (malloc'd; RGBA [h, w, 4] when has_alpha, else RGB [h, w, 3])
 * into out, split into rgb and alpha when has_alpha. Takes pixels (kept or freed). Returns 0, or -1 with
 * *why set when out of memory (out then empty). */
int sdt_image_take_pixels(uint8_t *pixels, int width, int height, int has_alpha, sdt_image *out, char **why);

/* Same as sdt_image_decode_memory, refusing images of more than max_pixels (the fuzzer keeps memory and
 * time small this way). */
int sdt_image_decode_memory_limited(const void *data, size_t size, const char *name, int keep_alpha,
                                    uint64_t max_pixels, sdt_image *out, char **error);

#endif
