/* The loss sparkline: a history of values turned into rows of glyphs, without curses.
 *
 * Inputs are a series of floats (oldest first; NaN or Inf allowed and shown as gaps), a width and height
 * in terminal cells and a glyph set. The output is `height` rows of UTF-8 (or ASCII) text, top row first,
 * each exactly `width` cells, joined by '\n'. The newest value is in the rightmost column; a series
 * shorter than the columns is right-aligned, a longer one is resampled into buckets.
 *
 * Glyph sets:
 *   braille  2 x 4 dots per cell (the htop/btop look): a line, each dot column spans the min..max of its
 *            bucket so a spike inside a bucket stays visible, stretched to meet the previous column so
 *            the dots connect;
 *   blocks   ▁▂▃▄▅▆▇█ bars from the bottom, 8 levels per row, the bucket's max;
 *   ascii    a line of "_.-^" (4 levels per row), the bucket's max, for locales that are not UTF-8.
 *
 * The y-range is the finite min..max of the whole series unless a fixed range is given (values outside
 * it are clamped). A constant series is drawn at mid height. */
#ifndef SDTUNE_TUI_SPARKLINE_H
#define SDTUNE_TUI_SPARKLINE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum spark_glyphs { SPARK_BRAILLE, SPARK_BLOCKS, SPARK_ASCII } spark_glyphs;

typedef struct spark_opts {
    spark_glyphs glyphs;
    int width, height; /* cells; both at least 1 */
    bool fixed_range;  /* use lo..hi below instead of the data's range */
    double lo, hi;
} spark_opts;

/* Bytes a render of width x height needs, with the newlines and the terminating NUL. */
size_t spark_buffer_size(int width, int height);

/* Renders values[0..n) into out (out_size >= spark_buffer_size). *lo_out / *hi_out (either may be NULL)
 * get the y-range used; both are NaN when no value is finite. Returns 0, or -1 when the options are
 * invalid or out is too small (out is then an empty string when out_size > 0). */
int spark_render(const float *values, size_t n, const spark_opts *opts, char *out, size_t out_size,
                 double *lo_out, double *hi_out);

/* Exponential moving average, out[i] = factor * out[i-1] + (1 - factor) * values[i], factor in [0, 1)
 * (TensorBoard's smoothing; 0 = raw). It starts at the first finite value; a non-finite input gives NaN
 * at its place and leaves the average unchanged. out may be values. */
void spark_smooth_ema(const float *values, size_t n, double factor, float *out);

/* Moving mean over the last `window` values (kohya's avr_loss window), non-finite values skipped; NaN
 * where the window holds no finite value. window 0 is taken as 1. out must not overlap values. */
void spark_smooth_window(const float *values, size_t n, size_t window, float *out);

#endif
