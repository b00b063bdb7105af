/* Resizing and cropping of 8-bit images. Every filter but nearest is separable: a horizontal pass into a
 * float buffer, then a vertical pass that rounds and clamps to 8 bits, each with weights computed once per
 * output column or row. Filters follow the conventions of the libraries kohya uses, so a bucket built
 * here matches one built there closely: area is the box average with fractional coverage (OpenCV's
 * INTER_AREA when shrinking), lanczos/bicubic/bilinear widen their support by the scale when shrinking
 * (PIL's antialiasing), pixel centres sit at i + 0.5. Not threaded: the data loader runs one image per
 * worker, which scales better than splitting one small image. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"
#include "sdtune/strutil.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* One axis: output i reads in[start[i] .. start[i] + count[i]) with weights w[i * taps ..]. */
typedef struct axis_weights {
    int *start, *count; /* [out] */
    float *w;           /* [out, taps] */
    int taps;
} axis_weights;

static void axis_free(axis_weights *a)
{
    free(a->start);
    free(a->count);
    free(a->w);
}

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double kernel(sdt_resize_filter f, double x)
{
    x = fabs(x);
    switch (f) {
    case SDT_RESIZE_BILINEAR: return x < 1.0 ? 1.0 - x : 0.0;
    case SDT_RESIZE_BICUBIC: { /* Keys' cubic with a = -0.5, as PIL and OpenCV */
        const double a = -0.5;
        if (x < 1.0)
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        if (x < 2.0)
            return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
        return 0.0;
    }
    case SDT_RESIZE_LANCZOS: return x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
    default: return 0.0;
    }
}

static double support_of(sdt_resize_filter f)
{
    return f == SDT_RESIZE_BILINEAR ? 1.0 : f == SDT_RESIZE_BICUBIC ? 2.0 : 3.0;
}

static int axis_make(int in, int out, sdt_resize_filter f, axis_weights *a)
{
    memset(a, 0, sizeof *a);
    double scale = (double)in / out;
    if (f == SDT_RESIZE_AREA) {
        a->taps = (int)ceil(scale) + 1;
    } else {
        double fs = scale > 1.0 ? scale : 1.0;
        a->taps = (int)ceil(support_of(f) * fs) * 2 + 1;
    }
    a->start = malloc(sizeof *a->start * (size_t)out);
    a->count = malloc(sizeof *a->count * (size_t)out);
    a->w = calloc((size_t)out * (size_t)a->taps, sizeof *a->w);
    double *tmp = malloc(sizeof *tmp * (size_t)a->taps);
    if (!a->start || !a->count || !a->w || !tmp) {
        free(tmp);
        axis_free(a);
        return -1;
    }
    for (int i = 0; i < out; i++) {
        int lo, hi;
        double sum = 0.0;
        if (f == SDT_RESIZE_AREA) {
            /* Output i covers [i * scale, (i + 1) * scale) of the input; each input pixel weighs by the
             * length of its overlap with that interval. */
            double x0 = i * scale, x1 = (i + 1) * scale;
            lo = (int)floor(x0);
            hi = (int)ceil(x1);
            if (hi > in)
                hi = in;
            if (hi - lo > a->taps)
                hi = lo + a->taps;
            for (int x = lo; x < hi; x++) {
                double l = x > x0 ? x : x0, r = x + 1 < x1 ? x + 1 : x1;
                tmp[x - lo] = r > l ? r - l : 0.0;
                sum += tmp[x - lo];
            }
        } else {
            double fs = scale > 1.0 ? scale : 1.0, support = support_of(f) * fs;
            double center = (i + 0.5) * scale;
            lo = (int)floor(center - support + 0.5);
            hi = (int)floor(center + support + 0.5);
            if (lo < 0)
                lo = 0;
            if (hi > in)
                hi = in;
            if (hi - lo > a->taps)
                hi = lo + a->taps;
            for (int x = lo; x < hi; x++) {
                tmp[x - lo] = kernel(f, (x + 0.5 - center) / fs);
                sum += tmp[x - lo];
            }
        }
        if (hi <= lo || sum == 0.0) { /* cannot happen for in, out >= 1; keep the nearest pixel */
            lo = (int)((i + 0.5) * scale);
            lo = lo < in ? lo : in - 1;
            hi = lo + 1;
            tmp[0] = sum = 1.0;
        }
        a->start[i] = lo;
        a->count[i] = hi - lo;
        for (int k = 0; k < hi - lo; k++)
            a->w[(size_t)i * a->taps + k] = (float)(tmp[k] / sum);
    }
    free(tmp);
    return 0;
}

static uint8_t to_u8(float v)
{
    v += 0.5f;
    return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

/* src [h, in_w, c] -> tmp [h, out_w, c] */
static void pass_horizontal(const uint8_t *src, int h, int in_w, int c, const axis_weights *a, int out_w,
                            float *tmp)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)y * in_w * c;
        float *dst = tmp + (size_t)y * out_w * c;
        for (int x = 0; x < out_w; x++) {
            const float *w = a->w + (size_t)x * a->taps;
            const uint8_t *p = row + (size_t)a->start[x] * c;
            int n = a->count[x];
            if (c == 3) {
                float r = 0, g = 0, b = 0;
                for (int k = 0; k < n; k++) {
                    r += w[k] * p[k * 3];
                    g += w[k] * p[k * 3 + 1];
                    b += w[k] * p[k * 3 + 2];
                }
                dst[x * 3] = r;
                dst[x * 3 + 1] = g;
                dst[x * 3 + 2] = b;
            } else {
                for (int ch = 0; ch < c; ch++) {
                    float s = 0;
                    for (int k = 0; k < n; k++)
                        s += w[k] * p[k * c + ch];
                    dst[x * c + ch] = s;
                }
            }
        }
    }
}

/* tmp [in_h, row_len] -> dst [out_h, row_len]; acc [row_len] is scratch */
static void pass_vertical(const float *tmp, size_t row_len, const axis_weights *a, int out_h, uint8_t *dst,
                          float *acc)
{
    for (int y = 0; y < out_h; y++) {
        const float *w = a->w + (size_t)y * a->taps;
        for (size_t i = 0; i < row_len; i++)
            acc[i] = 0.0f;
        for (int k = 0; k < a->count[y]; k++) {
            const float *row = tmp + (size_t)(a->start[y] + k) * row_len;
            float wk = w[k];
            for (size_t i = 0; i < row_len; i++)
                acc[i] += wk * row[i];
        }
        uint8_t *out = dst + (size_t)y * row_len;
        for (size_t i = 0; i < row_len; i++)
            out[i] = to_u8(acc[i]);
    }
}

/* Whole-factor area shrink: exact block means, rounded half up, in integers. src [h, w, c] */
static void area_integer(const uint8_t *src, int w, int c, int kx, int ky, int out_w, int out_h, uint8_t *dst,
                         uint32_t *acc)
{
    uint32_t n = (uint32_t)kx * (uint32_t)ky;
    size_t row_len = (size_t)out_w * c;
    for (int y = 0; y < out_h; y++) {
        memset(acc, 0, sizeof *acc * row_len);
        for (int j = 0; j < ky; j++) {
            const uint8_t *row = src + ((size_t)y * ky + j) * w * c;
            for (int x = 0; x < out_w; x++) {
                const uint8_t *p = row + (size_t)x * kx * c;
                for (int i = 0; i < kx; i++)
                    for (int ch = 0; ch < c; ch++)
                        acc[x * c + ch] += p[i * c + ch];
            }
        }
        for (size_t i = 0; i < row_len; i++)
            dst[(size_t)y * row_len + i] = (uint8_t)((acc[i] + n / 2) / n);
    }
}

/* src [h, w, c] -> dst [out_h, out_w, c], output pixel centres mapped back to the input. */
static void nearest(const uint8_t *src, int w, int h, int c, int out_w, int out_h, uint8_t *dst)
{
    for (int y = 0; y < out_h; y++) {
        int sy = (int)((y + 0.5) * h / out_h);
        sy = sy < h ? sy : h - 1;
        for (int x = 0; x < out_w; x++) {
            int sx = (int)((x + 0.5) * w / out_w);
            sx = sx < w ? sx : w - 1;
            memcpy(dst + ((size_t)y * out_w + x) * c, src + ((size_t)sy * w + sx) * c, (size_t)c);
        }
    }
}

/* One plane of c channels through the filter. Returns 0, or -1 when out of memory. */
static int resize_plane(const uint8_t *src, int w, int h, int c, int out_w, int out_h, sdt_resize_filter f,
                        const axis_weights *ax, const axis_weights *ay, uint8_t *dst)
{
    if (w == out_w && h == out_h) {
        memcpy(dst, src, (size_t)w * h * c);
        return 0;
    }
    if (f == SDT_RESIZE_NEAREST) {
        nearest(src, w, h, c, out_w, out_h, dst);
        return 0;
    }
    if (f == SDT_RESIZE_AREA && w % out_w == 0 && h % out_h == 0) {
        uint32_t *acc = malloc(sizeof *acc * (size_t)out_w * c);
        if (!acc)
            return -1;
        area_integer(src, w, c, w / out_w, h / out_h, out_w, out_h, dst, acc);
        free(acc);
        return 0;
    }
    size_t row_len = (size_t)out_w * c;
    float *tmp = malloc(sizeof *tmp * row_len * (size_t)h); /* [h, out_w, c] */
    float *acc = malloc(sizeof *acc * row_len);
    if (!tmp || !acc) {
        free(tmp);
        free(acc);
        return -1;
    }
    pass_horizontal(src, h, w, c, ax, out_w, tmp);
    pass_vertical(tmp, row_len, ay, out_h, dst, acc);
    free(tmp);
    free(acc);
    return 0;
}

int sdt_image_resize(const sdt_image *src, int width, int height, sdt_resize_filter filter, sdt_image *dst,
                     char **error)
{
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || src->width <= 0 || src->height <= 0) {
        *error = sdt_strdup("resize: empty source image");
        return -1;
    }
    if (width <= 0 || height <= 0 || width > SDT_IMAGE_MAX_SIDE || height > SDT_IMAGE_MAX_SIDE) {
        *error = sdt_format("resize: target size %d x %d is out of range (1..%d a side)", width, height,
                            SDT_IMAGE_MAX_SIDE);
        return -1;
    }
    if (filter < SDT_RESIZE_AUTO || filter > SDT_RESIZE_NEAREST) {
        *error = sdt_format("resize: unknown filter %d", (int)filter);
        return -1;
    }
    if (filter == SDT_RESIZE_AUTO)
        filter = width < src->width || height < src->height ? SDT_RESIZE_AREA : SDT_RESIZE_LANCZOS;
    axis_weights ax = {0}, ay = {0};
    int need_weights = filter != SDT_RESIZE_NEAREST && (width != src->width || height != src->height);
    int rc = 0;
    if (need_weights &&
        (axis_make(src->width, width, filter, &ax) != 0 || axis_make(src->height, height, filter, &ay) != 0))
        rc = -1;
    if (rc == 0) {
        dst->rgb = sdt_image_alloc((size_t)width, (size_t)height, 3);
        dst->alpha = src->alpha ? sdt_image_alloc((size_t)width, (size_t)height, 1) : NULL;
        if (!dst->rgb || (src->alpha && !dst->alpha))
            rc = -1;
    }
    if (rc == 0)
        rc = resize_plane(src->rgb, src->width, src->height, 3, width, height, filter, &ax, &ay, dst->rgb);
    if (rc == 0 && src->alpha)
        rc =
            resize_plane(src->alpha, src->width, src->height, 1, width, height, filter, &ax, &ay, dst->alpha);
    axis_free(&ax);
    axis_free(&ay);
    if (rc != 0) {
        sdt_image_free(dst);
        *error =
            sdt_format("resize: out of memory (%d x %d to %d x %d)", src->width, src->height, width, height);
        return -1;
    }
    dst->width = width;
    dst->height = height;
    return 0;
}

int sdt_image_crop(const sdt_image *src, int left, int top, int width, int height, int flip, sdt_image *dst,
                   char **error)
{
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || width <= 0 || height <= 0 || left < 0 || top < 0 || left > src->width - width ||
        top > src->height - height) {
        *error = sdt_format("crop: window %d x %d at (%d, %d) is not inside the %d x %d image", width, height,
                            left, top, src ? src->width : 0, src ? src->height : 0);
        return -1;
    }
    dst->rgb = sdt_image_alloc((size_t)width, (size_t)height, 3);
    dst->alpha = src->alpha ? sdt_image_alloc((size_t)width, (size_t)height, 1) : NULL;
    if (!dst->rgb || (src->alpha && !dst->alpha)) {
        sdt_image_free(dst);
        *error = sdt_format("crop: out of memory (%d x %d)", width, height);
        return -1;
    }
    for (int y = 0; y < height; y++) {
        const uint8_t *row = src->rgb + ((size_t)(top + y) * src->width + left) * 3;
        const uint8_t *arow = src->alpha ? src->alpha + (size_t)(top + y) * src->width + left : NULL;
        uint8_t *out = dst->rgb + (size_t)y * width * 3;
        uint8_t *aout = dst->alpha ? dst->alpha + (size_t)y * width : NULL;
        if (!flip) {
            memcpy(out, row, (size_t)width * 3);
            if (arow)
                memcpy(aout, arow, (size_t)width);
            continue;
        }
        for (int x = 0; x < width; x++) {
            memcpy(out + (size_t)x * 3, row + (size_t)(width - 1 - x) * 3, 3);
            if (arow)
                aout[x] = arow[width - 1 - x];
        }
    }
    dst->width = width;
    dst->height = height;
    return 0;
}
