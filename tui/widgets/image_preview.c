/* Sample-image previews (see image_preview.h). */
#include "widgets/image_preview.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"

enum { MAX_PIXELS = 64 << 20 };

int preview_load_png(const char *path, preview_image *out, char **error)
{
    memset(out, 0, sizeof *out);
    FILE *file = fopen(path, "rb");
    if (!file)
        return sdt_set_error(error, "%s: cannot open: %s", path, strerror(errno));
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    int result = -1;
    if (!png_image_begin_read_from_stdio(&image, file)) {
        sdt_set_error(error, "%s: not a readable PNG: %s", path, image.message);
        goto done;
    }
    if ((uint64_t)image.width * image.height > MAX_PIXELS) {
        sdt_set_error(error, "%s: the image is too large to preview (%ux%u)", path, image.width,
                      image.height);
        goto done;
    }
    image.format = PNG_FORMAT_RGB;
    out->pixels = malloc(PNG_IMAGE_SIZE(image));
    if (!out->pixels) {
        sdt_set_error(error, "%s: out of memory for a %ux%u image", path, image.width, image.height);
        goto done;
    }
    png_color black = {0, 0, 0}; /* what transparent pixels are composited onto */
    if (!png_image_finish_read(&image, &black, out->pixels, 0, NULL)) {
        sdt_set_error(error, "%s: broken PNG: %s", path, image.message);
        goto done;
    }
    out->width = (int)image.width;
    out->height = (int)image.height;
    result = 0;
done:
    png_image_free(&image);
    fclose(file);
    if (result < 0)
        preview_image_free(out);
    return result;
}

void preview_image_free(preview_image *img)
{
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

void preview_fit(int image_width, int image_height, int max_cols, int max_rows, int *cols, int *rows)
{
    if (image_width < 1 || image_height < 1 || max_cols < 1 || max_rows < 1) {
        *cols = *rows = 1;
        return;
    }
    /* Output pixels are max_cols wide and 2 * max_rows tall; one scale for both keeps the aspect. */
    double scale = fmin(1.0, fmin((double)max_cols / image_width, 2.0 * max_rows / image_height));
    long c = lround(image_width * scale), r = lround(image_height * scale / 2);
    *cols = (int)(c < 1 ? 1 : c > max_cols ? max_cols : c);
    *rows = (int)(r < 1 ? 1 : r > max_rows ? max_rows : r);
}

/* The mean colour of the source area under output pixel (x, y) of an out_w x out_h grid. */
static rgb8 area_mean(const preview_image *img, int x, int y, int out_w, int out_h)
{
    double x0 = (double)x * img->width / out_w, x1 = (double)(x + 1) * img->width / out_w;
    double y0 = (double)y * img->height / out_h, y1 = (double)(y + 1) * img->height / out_h;
    double sum[3] = {0, 0, 0}, area = 0;
    for (int sy = (int)y0; sy < img->height && sy < y1; sy++) {
        double wy = fmin(y1, sy + 1) - fmax(y0, sy);
        if (wy <= 0)
            continue;
        for (int sx = (int)x0; sx < img->width && sx < x1; sx++) {
            double w = (fmin(x1, sx + 1) - fmax(x0, sx)) * wy;
            if (w <= 0)
                continue;
            rgb8 p = img->pixels[(size_t)sy * img->width + sx];
            sum[0] += w * p.r;
            sum[1] += w * p.g;
            sum[2] += w * p.b;
            area += w;
        }
    }
    if (area <= 0)
        return (rgb8){0, 0, 0};
    return (rgb8){(uint8_t)lround(sum[0] / area), (uint8_t)lround(sum[1] / area),
                  (uint8_t)lround(sum[2] / area)};
}

int preview_render(const preview_image *img, int cols, int rows, half_cell *cells)
{
    if (!img || !img->pixels || img->width < 1 || img->height < 1 || cols < 1 || rows < 1)
        return -1;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            cells[(size_t)r * cols + c] = (half_cell){area_mean(img, c, 2 * r, cols, 2 * rows),
                                                      area_mean(img, c, 2 * r + 1, cols, 2 * rows)};
    return 0;
}

/* The "redmean" distance: cheap, and closer to what the eye sees than plain RGB distance. */
static double distance(rgb8 a, rgb8 b)
{
    double rmean = (a.r + b.r) / 2.0;
    double dr = a.r - b.r, dg = a.g - b.g, db = a.b - b.b;
    return (2 + rmean / 256) * dr * dr + 4 * dg * dg + (2 + (255 - rmean) / 256) * db * db;
}

rgb8 preview_palette_256(int index)
{
    static const uint8_t cube[6] = {0, 95, 135, 175, 215, 255};
    if (index >= 232 && index <= 255) {
        uint8_t v = (uint8_t)(8 + 10 * (index - 232));
        return (rgb8){v, v, v};
    }
    if (index >= 16 && index < 232) {
        int i = index - 16;
        return (rgb8){cube[i / 36], cube[i / 6 % 6], cube[i % 6]};
    }
    return (rgb8){0, 0, 0};
}

int preview_nearest_256(rgb8 c)
{
    int best = 16;
    double best_d = INFINITY;
    for (int i = 16; i < 256; i++) {
        double d = distance(c, preview_palette_256(i));
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

int preview_nearest_8(rgb8 c)
{
    /* Greys go to black or white: by distance alone a mid grey lands on cyan, which reads as colour. */
    int max = c.r > c.g ? (c.r > c.b ? c.r : c.b) : (c.g > c.b ? c.g : c.b);
    int min = c.r < c.g ? (c.r < c.b ? c.r : c.b) : (c.g < c.b ? c.g : c.b);
    if (max - min < 40)
        return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b < 96 ? 0 : 7;
    /* xterm's default values for the 8 ANSI colours. */
    static const rgb8 ansi[8] = {{0, 0, 0},   {205, 0, 0},   {0, 205, 0},   {205, 205, 0},
                                 {0, 0, 238}, {205, 0, 205}, {0, 205, 205}, {229, 229, 229}};
    int best = 0;
    double best_d = INFINITY;
    for (int i = 0; i < 8; i++) {
        double d = distance(c, ansi[i]);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

preview_cell preview_map(half_cell cell, preview_colors colors)
{
    switch (colors) {
    case PREVIEW_TRUECOLOR:
        return (preview_cell){cell.top.r << 16 | cell.top.g << 8 | cell.top.b,
                              cell.bottom.r << 16 | cell.bottom.g << 8 | cell.bottom.b, 0};
    case PREVIEW_256:
        return (preview_cell){preview_nearest_256(cell.top), preview_nearest_256(cell.bottom), 0};
    case PREVIEW_8: return (preview_cell){preview_nearest_8(cell.top), preview_nearest_8(cell.bottom), 0};
    case PREVIEW_MONO: break;
    }
    static const char ramp[] = " .:-=+*#%@";
    /* Rec. 709 luma of the cell's two pixels together. */
    double luma = (0.2126 * (cell.top.r + cell.bottom.r) + 0.7152 * (cell.top.g + cell.bottom.g) +
                   0.0722 * (cell.top.b + cell.bottom.b)) /
                  2;
    int i = (int)(luma * 10 / 256);
    return (preview_cell){-1, -1, ramp[i < 0 ? 0 : i > 9 ? 9 : i]};
}
