/* The loss sparkline (see sparkline.h). Buckets are recomputed per output row instead of being stored:
 * height is a handful of rows, so that costs a few passes over the series and no allocation. */
#include "widgets/sparkline.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The finite min and max of one data column (a bucket of the series). */
typedef struct bucket {
    bool present;
    double min, max;
} bucket;

/* Data column c of columns: the series right-aligned when it is short, else split into equal buckets. */
static bucket bucket_at(const float *values, size_t n, size_t columns, size_t c)
{
    bucket b = {false, 0, 0};
    size_t begin, end;
    if (n <= columns) {
        if (c < columns - n)
            return b;
        begin = c - (columns - n);
        end = begin + 1;
    } else {
        begin = (size_t)((uint64_t)c * n / columns);
        end = (size_t)((uint64_t)(c + 1) * n / columns);
    }
    for (size_t i = begin; i < end; i++) {
        double v = values[i];
        if (!isfinite(v))
            continue;
        if (!b.present) {
            b.present = true;
            b.min = b.max = v;
        } else {
            b.min = fmin(b.min, v);
            b.max = fmax(b.max, v);
        }
    }
    return b;
}

/* v mapped onto 0..levels-1 (0 at lo); a flat range sits at mid height. */
static int level_of(double v, double lo, double hi, int levels)
{
    if (!(hi > lo))
        return (levels - 1) / 2;
    double t = (v - lo) / (hi - lo);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return (int)lround(t * (levels - 1));
}

size_t spark_buffer_size(int width, int height)
{
    if (width < 1 || height < 1)
        return 1;
    return (size_t)height * ((size_t)width * 3 + 1) + 1;
}

static char *put_braille(char *p, unsigned bits)
{
    if (!bits) {
        *p++ = ' ';
        return p;
    }
    unsigned cp = 0x2800 + bits;
    *p++ = (char)(0xE0 | (cp >> 12));
    *p++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *p++ = (char)(0x80 | (cp & 0x3F));
    return p;
}

/* The braille bits of one dot column (right: the cell's right half) for the dots of cell row rb (0 =
 * bottom row). The column spans its bucket's min..max, stretched to meet the previous column's span so
 * the dots read as one connected line rather than scattered points. */
static unsigned braille_bits(bucket b, bucket prev, double lo, double hi, int levels, int rb, bool right)
{
    static const unsigned left_dots[4] = {0x40, 0x04, 0x02, 0x01}; /* bottom to top */
    static const unsigned right_dots[4] = {0x80, 0x20, 0x10, 0x08};
    if (!b.present)
        return 0;
    int y0 = level_of(b.min, lo, hi, levels), y1 = level_of(b.max, lo, hi, levels);
    if (prev.present) {
        int prev_lo = level_of(prev.min, lo, hi, levels), prev_hi = level_of(prev.max, lo, hi, levels);
        if (prev_hi < y0)
            y0 = prev_hi + 1;
        if (prev_lo > y1)
            y1 = prev_lo - 1;
    }
    unsigned bits = 0;
    for (int k = 0; k < 4; k++) {
        int y = rb * 4 + k;
        if (y >= y0 && y <= y1)
            bits |= right ? right_dots[k] : left_dots[k];
    }
    return bits;
}

int spark_render(const float *values, size_t n, const spark_opts *opts, char *out, size_t out_size,
                 double *lo_out, double *hi_out)
{
    if (out_size > 0)
        out[0] = '\0';
    if (lo_out)
        *lo_out = NAN;
    if (hi_out)
        *hi_out = NAN;
    if (!opts || opts->width < 1 || opts->height < 1 ||
        out_size < spark_buffer_size(opts->width, opts->height))
        return -1;
    if (opts->fixed_range && !(isfinite(opts->lo) && isfinite(opts->hi) && opts->lo <= opts->hi))
        return -1;
    if (n > 0 && !values)
        return -1;

    double lo = NAN, hi = NAN;
    if (opts->fixed_range) {
        lo = opts->lo;
        hi = opts->hi;
    } else {
        for (size_t i = 0; i < n; i++) {
            double v = values[i];
            if (!isfinite(v))
                continue;
            lo = isnan(lo) ? v : fmin(lo, v);
            hi = isnan(hi) ? v : fmax(hi, v);
        }
    }
    if (lo_out)
        *lo_out = lo;
    if (hi_out)
        *hi_out = hi;

    const int width = opts->width, height = opts->height;
    const bool braille = opts->glyphs == SPARK_BRAILLE;
    const size_t columns = (size_t)width * (braille ? 2 : 1);
    const int levels = height * (opts->glyphs == SPARK_BLOCKS ? 8 : 4);
    char *p = out;
    for (int r = 0; r < height; r++) {
        int rb = height - 1 - r; /* rows counted from the bottom */
        for (int x = 0; x < width; x++) {
            if (braille) {
                bucket before =
                    x > 0 ? bucket_at(values, n, columns, (size_t)x * 2 - 1) : (bucket){false, 0, 0};
                bucket left = bucket_at(values, n, columns, (size_t)x * 2);
                bucket right = bucket_at(values, n, columns, (size_t)x * 2 + 1);
                p = put_braille(p, braille_bits(left, before, lo, hi, levels, rb, false) |
                                       braille_bits(right, left, lo, hi, levels, rb, true));
                continue;
            }
            bucket b = bucket_at(values, n, columns, (size_t)x);
            if (!b.present) {
                *p++ = ' ';
                continue;
            }
            int y = level_of(b.max, lo, hi, levels);
            if (opts->glyphs == SPARK_BLOCKS) {
                int fill = y + 1 - rb * 8; /* eighths of this cell under the bar's top */
                if (fill <= 0) {
                    *p++ = ' ';
                } else {
                    fill = fill > 8 ? 8 : fill;
                    *p++ = (char)0xE2; /* U+2581 + fill - 1: ▁..█ */
                    *p++ = (char)0x96;
                    *p++ = (char)(0x80 + fill);
                }
            } else {
                *p++ = y / 4 == rb ? "_.-^"[y % 4] : ' ';
            }
        }
        if (r + 1 < height)
            *p++ = '\n';
    }
    *p = '\0';
    return 0;
}

void spark_smooth_ema(const float *values, size_t n, double factor, float *out)
{
    if (!(factor >= 0))
        factor = 0;
    if (factor >= 1)
        factor = 0.999;
    double ema = NAN;
    for (size_t i = 0; i < n; i++) {
        double v = values[i];
        if (!isfinite(v)) {
            out[i] = NAN;
            continue;
        }
        ema = isnan(ema) ? v : factor * ema + (1 - factor) * v;
        out[i] = (float)ema;
    }
}

void spark_smooth_window(const float *values, size_t n, size_t window, float *out)
{
    if (window == 0)
        window = 1;
    /* A running sum over the finite values in the window; recomputed from scratch every `window` steps so
     * float rounding does not accumulate over long runs. */
    double sum = 0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % window == 0 && i >= window) {
            sum = 0;
            count = 0;
            for (size_t j = i - window + 1; j < i; j++)
                if (isfinite(values[j])) {
                    sum += values[j];
                    count++;
                }
        } else if (i >= window && isfinite(values[i - window])) {
            sum -= values[i - window];
            count--;
        }
        if (isfinite(values[i])) {
            sum += values[i];
            count++;
        }
        out[i] = count ? (float)(sum / (double)count) : NAN;
    }
}
