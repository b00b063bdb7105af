/* Sample-image previews in the terminal, without curses.
 *
 * A PNG is decoded to 8-bit RGB (alpha composited onto black) and shrunk into a grid of cols x rows
 * terminal cells drawn with the upper half block '▀': the foreground colour is the upper pixel, the
 * background the lower one, so a cell holds two square-ish pixels (cells are about twice as tall as wide).
 * The shrink averages the source area under each output pixel (a box filter with fractional edges, on the
 * sRGB values). The cell colours are then mapped to what the terminal has: 24-bit, the xterm 256-colour
 * palette (its 6x6x6 cube and grey ramp), the 8 ANSI colours, or, without colour, one shading character
 * per cell from " .:-=+*#%@" by luminance. */
#ifndef SDTUNE_TUI_IMAGE_PREVIEW_H
#define SDTUNE_TUI_IMAGE_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

typedef struct rgb8 {
    uint8_t r, g, b;
} rgb8;

/* A decoded image: width x height pixels, row-major, top row first. */
typedef struct preview_image {
    int width, height;
    rgb8 *pixels;
} preview_image;

/* One half-block cell: top = the upper pixel (foreground of '▀'), bottom = the lower (background). */
typedef struct half_cell {
    rgb8 top, bottom;
} half_cell;

typedef enum preview_colors {
    PREVIEW_TRUECOLOR, /* fg/bg are 0xRRGGBB */
    PREVIEW_256,       /* fg/bg are xterm palette indexes 16..255 */
    PREVIEW_8,         /* fg/bg are ANSI colours 0..7 (black red green yellow blue magenta cyan white) */
    PREVIEW_MONO       /* fg/bg are -1; shade is the character to draw instead of '▀' */
} preview_colors;

typedef struct preview_cell {
    int fg, bg;
    char shade; /* PREVIEW_MONO: one of " .:-=+*#%@"; else 0 (draw '▀') */
} preview_cell;

/* Decodes the PNG at path (at most 64 Mi pixels). Returns 0, or -1 with a message naming the file. */
int preview_load_png(const char *path, preview_image *out, char **error);
void preview_image_free(preview_image *img);

/* The largest grid of at most max_cols x max_rows cells that keeps the image's aspect ratio (one cell =
 * one pixel wide, two tall); at least 1 x 1. Images smaller than the box are not enlarged. */
void preview_fit(int image_width, int image_height, int max_cols, int max_rows, int *cols, int *rows);

/* Shrinks img into cols x rows cells (cells: cols * rows, row-major, top row first). Returns -1 when a
 * size is not positive. */
int preview_render(const preview_image *img, int cols, int rows, half_cell *cells);

/* The palette index nearest to c by a weighted ("redmean") RGB distance. */
int preview_nearest_256(rgb8 c);
int preview_nearest_8(rgb8 c);
/* The colour of an xterm palette index 16..255 (0..15 are the terminal's own and give black). */
rgb8 preview_palette_256(int index);

/* Maps one cell to the terminal's colours. */
preview_cell preview_map(half_cell cell, preview_colors colors);

#endif
