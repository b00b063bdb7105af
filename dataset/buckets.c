/* Aspect-ratio buckets; see buckets.h. The arithmetic follows kohya's Python step by step (float division,
 * int(x + 0.5) rounding, float floor division) so that every size agrees with it exactly, which
 * tests/data/dataset/buckets.jsonl checks. */
#include "buckets.h"
#include "sdtune/strutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends one line to a newline-separated, malloc'd list. */
static void add_line(char **list, const char *fmt, ...)
{
    if (!list)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t old = *list ? strlen(*list) : 0, add = strlen(buf);
    char *grown = realloc(*list, old + add + 2);
    if (!grown)
        return;
    memcpy(grown + old, buf, add);
    grown[old + add] = '\n';
    grown[old + add + 1] = '\0';
    *list = grown;
}

/* Python's float floor division (CPython's float_divmod), for the crop_ltrb and square-bucket values. */
static double py_floordiv(double vx, double wx)
{
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod != 0.0 && ((wx < 0) != (mod < 0)))
        div -= 1.0;
    if (div == 0.0)
        return copysign(0.0, vx / wx);
    double f = floor(div);
    if (div - f > 0.5)
        f += 1.0;
    return f;
}

/* Python's int(x + 0.5) for the non-negative sizes kohya rounds. */
static int round_half_up(double x) { return (int)(x + 0.5); }

void sdt_bucket_settings_default(sdt_bucket_settings *s)
{
    memset(s, 0, sizeof *s);
    s->width = 512;
    s->height = 512;
    s->min_bucket_reso = 256;
    s->max_bucket_reso = 1024;
    s->bucket_reso_steps = 64;
}

int sdt_bucket_settings_resolve(const sdt_bucket_settings *in, int steps_multiple, sdt_bucket_settings *out,
                                char **warnings, char **error)
{
    if (warnings)
        *warnings = NULL;
    sdt_bucket_settings s = *in;
    if (s.width <= 0 || s.height <= 0) {
        sdt_set_error(error, "resolution must be positive, got (%d, %d)", s.width, s.height);
        return -1;
    }
    if (!s.enable_bucket) {
        *out = s;
        return 0;
    }
    if (s.bucket_reso_steps <= 0) {
        sdt_set_error(error, "bucket_reso_steps must be positive, got %d", s.bucket_reso_steps);
        return -1;
    }
    if (steps_multiple > 0 && s.bucket_reso_steps % steps_multiple != 0) {
        sdt_set_error(error, "bucket_reso_steps is %d; it must be divisible by %d for this model",
                      s.bucket_reso_steps, steps_multiple);
        return -1;
    }
    if (s.min_bucket_reso <= 0 || s.max_bucket_reso <= 0) {
        sdt_set_error(error, "min_bucket_reso and max_bucket_reso must be positive, got %d and %d",
                      s.min_bucket_reso, s.max_bucket_reso);
        return -1;
    }
    /* kohya adjusts min down and max up to multiples of the steps, with a warning, before checking them. */
    int steps = s.bucket_reso_steps;
    if (s.min_bucket_reso % steps != 0) {
        int adjusted = s.min_bucket_reso - s.min_bucket_reso % steps;
        add_line(warnings, "min_bucket_reso is adjusted to be multiple of bucket_reso_steps: %d -> %d",
                 s.min_bucket_reso, adjusted);
        s.min_bucket_reso = adjusted;
    }
    if (s.max_bucket_reso % steps != 0) {
        int adjusted = s.max_bucket_reso + steps - s.max_bucket_reso % steps;
        add_line(warnings, "max_bucket_reso is adjusted to be multiple of bucket_reso_steps: %d -> %d",
                 s.max_bucket_reso, adjusted);
        s.max_bucket_reso = adjusted;
    }
    /* bucket_no_upscale ignores min/max (kohya warns), so their checks would only get in the way. */
    if (s.bucket_no_upscale) {
        add_line(warnings,
                 "min_bucket_reso and max_bucket_reso are ignored if bucket_no_upscale is set, because "
                 "bucket reso is defined by image size automatically");
        *out = s;
        return 0;
    }
    if (s.min_bucket_reso == 0) {
        sdt_set_error(error, "min_bucket_reso must be at least bucket_reso_steps (%d)", steps);
        return -1;
    }
    if (s.min_bucket_reso > s.max_bucket_reso) {
        sdt_set_error(error, "min_bucket_reso (%d) must not be larger than max_bucket_reso (%d)",
                      s.min_bucket_reso, s.max_bucket_reso);
        return -1;
    }
    int shorter = s.width < s.height ? s.width : s.height, longer = s.width < s.height ? s.height : s.width;
    if (shorter < s.min_bucket_reso) {
        sdt_set_error(
            error,
            "min_bucket_reso (%d) must be equal or less than the resolution's shorter side (%d): raise the "
            "resolution or lower min_bucket_reso",
            s.min_bucket_reso, shorter);
        return -1;
    }
    if (longer > s.max_bucket_reso) {
        sdt_set_error(
            error,
            "max_bucket_reso (%d) must be equal or greater than the resolution's longer side (%d): lower the "
            "resolution or raise max_bucket_reso",
            s.max_bucket_reso, longer);
        return -1;
    }
    *out = s;
    return 0;
}

static int reso_cmp(const void *a, const void *b)
{
    const sdt_bucket_reso *x = a, *y = b;
    if (x->width != y->width)
        return x->width < y->width ? -1 : 1;
    return (x->height > y->height) - (x->height < y->height);
}

int sdt_bucket_make_resolutions(int width, int height, int min_reso, int max_reso, int steps,
                                sdt_bucket_reso **out, size_t *count, char **error)
{
    *out = NULL;
    *count = 0;
    if (width <= 0 || height <= 0 || steps <= 0 || min_reso <= 0 || max_reso < min_reso) {
        sdt_set_error(error, "bad bucket parameters: resolution (%d, %d), min %d, max %d, steps %d", width,
                      height, min_reso, max_reso, steps);
        return -1;
    }
    long long area = (long long)width * height;
    size_t cap = 1 + 2 * ((size_t)(max_reso - min_reso) / (size_t)steps + 1);
    sdt_bucket_reso *list = malloc(cap * sizeof *list);
    if (!list) {
        sdt_set_error(error, "out of memory");
        return -1;
    }
    size_t n = 0;
    int square = (int)py_floordiv(sqrt((double)area), (double)steps) * steps;
    list[n++] = (sdt_bucket_reso){square, square};
    for (int w = min_reso; w <= max_reso; w += steps) {
        long long h = (area / w) / steps * steps;
        if (h > max_reso)
            h = max_reso;
        if (h >= min_reso) {
            list[n++] = (sdt_bucket_reso){w, (int)h};
            list[n++] = (sdt_bucket_reso){(int)h, w};
        }
    }
    qsort(list, n, sizeof *list, reso_cmp);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (unique == 0 || reso_cmp(&list[unique - 1], &list[i]) != 0)
            list[unique++] = list[i];
    *out = list;
    *count = unique;
    return 0;
}

static void crop_ltrb(int bw, int bh, int iw, int ih, double ltrb[4])
{
    double bucket_ar = (double)bw / bh, image_ar = (double)iw / ih;
    double rw, rh;
    if (bucket_ar > image_ar) {
        rw = bh * image_ar;
        rh = bh;
    } else {
        rw = bw;
        rh = bw / image_ar;
    }
    ltrb[0] = py_floordiv(bw - rw, 2.0);
    ltrb[1] = py_floordiv(bh - rh, 2.0);
    ltrb[2] = ltrb[0] + rw;
    ltrb[3] = ltrb[1] + rh;
}

static int round_to_steps(double x, int steps)
{
    int v = round_half_up(x);
    return v - v % steps;
}

int sdt_bucket_select(const sdt_bucket_settings *s, const sdt_bucket_reso *predefined,
                      size_t predefined_count, int iw, int ih, const char *name, sdt_bucket_assignment *out,
                      char **error)
{
    memset(out, 0, sizeof *out);
    out->bucket = -1;
    if (!name)
        name = "(image)";
    if (iw <= 0 || ih <= 0) {
        sdt_set_error(error, "%s: image size %dx%d is not positive", name, iw, ih);
        return -1;
    }
    double ar = (double)iw / ih;
    int bw, bh, rw, rh;
    if (predefined) {
        if (predefined_count == 0) {
            sdt_set_error(error, "no bucket resolutions to choose from");
            return -1;
        }
        size_t pick = predefined_count;
        for (size_t i = 0; i < predefined_count; i++)
            if (predefined[i].width == iw && predefined[i].height == ih)
                pick = i;
        if (pick == predefined_count) {
            /* numpy's argmin: the first of equal errors, in the sorted order. */
            double best = 0;
            for (size_t i = 0; i < predefined_count; i++) {
                double e = fabs((double)predefined[i].width / predefined[i].height - ar);
                if (i == 0 || e < best) {
                    best = e;
                    pick = i;
                }
            }
        }
        bw = predefined[pick].width;
        bh = predefined[pick].height;
        double scale = ar > (double)bw / bh ? (double)bh / ih : (double)bw / iw;
        rw = round_half_up(iw * scale);
        rh = round_half_up(ih * scale);
    } else {
        long long max_area = (long long)s->width * s->height;
        int steps = s->bucket_reso_steps;
        if ((long long)iw * ih > max_area) {
            /* Shrink to the area, then put one side on the steps grid: whichever keeps the aspect better. */
            double rwf = sqrt((double)max_area * ar);
            double rhf = (double)max_area / rwf;
            int bw_r = round_to_steps(rwf, steps);
            int bh_in_wr = round_to_steps(bw_r / ar, steps);
            int bh_r = round_to_steps(rhf, steps);
            int bw_in_hr = round_to_steps(bh_r * ar, steps);
            if (bh_in_wr == 0 || bh_r == 0) {
                sdt_set_error(
                    error,
                    "%s: image %dx%d is too thin for bucket_no_upscale with bucket_reso_steps %d (a side "
                    "would round to 0)",
                    name, iw, ih, steps);
                return -1;
            }
            double ar_wr = (double)bw_r / bh_in_wr, ar_hr = (double)bw_in_hr / bh_r;
            if (fabs(ar_wr - ar) < fabs(ar_hr - ar)) {
                rw = bw_r;
                rh = round_half_up(bw_r / ar);
            } else {
                rw = round_half_up(bh_r * ar);
                rh = bh_r;
            }
        } else {
            rw = iw;
            rh = ih;
        }
        /* Crop, never pad: the bucket is the resized size floored to the steps. */
        bw = rw - rw % steps;
        bh = rh - rh % steps;
        if (bw <= 0 || bh <= 0) {
            sdt_set_error(
                error,
                "%s: image %dx%d is smaller than bucket_reso_steps (%d) on one side, so bucket_no_upscale "
                "gives it no bucket",
                name, iw, ih, steps);
            return -1;
        }
    }
    if (rw < bw || rh < bh) {
        sdt_set_error(error, "%s: internal error: resized size %dx%d does not cover bucket %dx%d", name, rw,
                      rh, bw, bh);
        return -1;
    }
    out->bucket_width = bw;
    out->bucket_height = bh;
    out->original_width = iw;
    out->original_height = ih;
    out->resized_width = rw;
    out->resized_height = rh;
    out->crop_left = (rw - bw) / 2;
    out->crop_top = (rh - bh) / 2;
    crop_ltrb(bw, bh, iw, ih, out->crop_ltrb);
    out->ar_error = (double)bw / bh - ar;
    return 0;
}

void sdt_bucket_plan_free(sdt_bucket_plan *plan)
{
    if (!plan)
        return;
    free(plan->buckets);
    free(plan->images);
    free(plan->predefined);
    memset(plan, 0, sizeof *plan);
}

int sdt_bucket_plan_find(const sdt_bucket_plan *plan, int width, int height)
{
    for (size_t i = 0; i < plan->bucket_count; i++)
        if (plan->buckets[i].width == width && plan->buckets[i].height == height)
            return (int)i;
    return -1;
}

/* Without bucketing kohya neither resizes nor centre-crops in its loader: the image must already be the
 * resolution, or larger with random_crop (or a face crop) to cut it down. */
static int select_fixed(const sdt_bucket_settings *s, const sdt_bucket_image *img, sdt_bucket_assignment *out,
                        char **error)
{
    const char *name = img->name ? img->name : "(image)";
    memset(out, 0, sizeof *out);
    out->bucket = -1;
    if (img->width <= 0 || img->height <= 0) {
        sdt_set_error(error, "%s: image size %dx%d is not positive", name, img->width, img->height);
        return -1;
    }
    if (!img->face_crop && (img->width < s->width || img->height < s->height)) {
        sdt_set_error(
            error,
            "image size is small: %s is %dx%d, smaller than the resolution (%d, %d); bucketing is off, "
            "so images are never enlarged (enable_bucket, or use larger images)",
            name, img->width, img->height, s->width, s->height);
        return -1;
    }
    if (!img->face_crop && !img->random_crop && (img->width > s->width || img->height > s->height)) {
        sdt_set_error(
            error,
            "image too large, but cropping and bucketing are disabled: %s is %dx%d, larger than the "
            "resolution (%d, %d) (set enable_bucket, random_crop or face_crop_aug_range)",
            name, img->width, img->height, s->width, s->height);
        return -1;
    }
    out->bucket_width = s->width;
    out->bucket_height = s->height;
    out->original_width = img->width;
    out->original_height = img->height;
    out->resized_width = img->width;
    out->resized_height = img->height;
    out->crop_left = (img->width - s->width) / 2;
    out->crop_top = (img->height - s->height) / 2;
    if (out->crop_left < 0)
        out->crop_left = 0;
    if (out->crop_top < 0)
        out->crop_top = 0;
    /* kohya passes crop_ltrb (0, 0, 0, 0) for this path. */
    out->ar_error = (double)s->width / s->height - (double)img->width / img->height;
    return 0;
}

int sdt_bucket_plan_build(const sdt_bucket_settings *settings, int steps_multiple,
                          const sdt_bucket_image *images, size_t image_count, sdt_bucket_plan *plan,
                          char **warnings, char **error)
{
    memset(plan, 0, sizeof *plan);
    sdt_bucket_settings s;
    if (sdt_bucket_settings_resolve(settings, steps_multiple, &s, warnings, error) != 0)
        return -1;
    plan->settings = s;
    if (s.enable_bucket && !s.bucket_no_upscale) {
        if (sdt_bucket_make_resolutions(s.width, s.height, s.min_bucket_reso, s.max_bucket_reso,
                                        s.bucket_reso_steps, &plan->predefined, &plan->predefined_count,
                                        error) != 0)
            return -1;
    }
    plan->images = calloc(image_count ? image_count : 1, sizeof *plan->images);
    /* at most one bucket per image */
    sdt_bucket_reso *used = calloc(image_count ? image_count : 1, sizeof *used);
    if (!plan->images || !used) {
        free(used);
        sdt_bucket_plan_free(plan);
        sdt_set_error(error, "out of memory");
        return -1;
    }
    plan->image_count = image_count;
    size_t n_used = 0, n_placed = 0;
    double err_sum = 0;
    for (size_t i = 0; i < image_count; i++) {
        sdt_bucket_assignment *a = &plan->images[i];
        if (images[i].repeats <= 0) {
            memset(a, 0, sizeof *a);
            a->bucket = -1;
            continue;
        }
        int rc = s.enable_bucket
                     ? sdt_bucket_select(&s, plan->predefined, plan->predefined_count, images[i].width,
                                         images[i].height, images[i].name, a, error)
                     : select_fixed(&s, &images[i], a, error);
        if (rc != 0) {
            free(used);
            sdt_bucket_plan_free(plan);
            return -1;
        }
        err_sum += fabs(a->ar_error);
        n_placed++;
        size_t k = 0;
        while (k < n_used && (used[k].width != a->bucket_width || used[k].height != a->bucket_height))
            k++;
        if (k == n_used)
            used[n_used++] = (sdt_bucket_reso){a->bucket_width, a->bucket_height};
    }
    qsort(used, n_used, sizeof *used, reso_cmp);
    plan->buckets = calloc(n_used ? n_used : 1, sizeof *plan->buckets);
    if (!plan->buckets) {
        free(used);
        sdt_bucket_plan_free(plan);
        sdt_set_error(error, "out of memory");
        return -1;
    }
    plan->bucket_count = n_used;
    for (size_t k = 0; k < n_used; k++) {
        plan->buckets[k].width = used[k].width;
        plan->buckets[k].height = used[k].height;
    }
    free(used);
    for (size_t i = 0; i < image_count; i++) {
        sdt_bucket_assignment *a = &plan->images[i];
        if (images[i].repeats <= 0)
            continue;
        /* bsearch on the sorted list */
        sdt_bucket_reso key = {a->bucket_width, a->bucket_height};
        size_t lo = 0, hi = n_used;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            sdt_bucket_reso m = {plan->buckets[mid].width, plan->buckets[mid].height};
            int c = reso_cmp(&m, &key);
            if (c == 0) {
                lo = mid;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        a->bucket = (int)lo;
        plan->buckets[lo].images++;
        plan->buckets[lo].samples += (size_t)images[i].repeats;
    }
    plan->mean_ar_error = n_placed ? err_sum / (double)n_placed : 0.0;
    return 0;
}

void sdt_bucket_crop_offsets(const sdt_bucket_assignment *a, int random_crop, sdt_ds_rng *rng, int *left,
                             int *top)
{
    int ex = a->resized_width - a->bucket_width, ey = a->resized_height - a->bucket_height;
    if (ex < 0)
        ex = 0;
    if (ey < 0)
        ey = 0;
    if (random_crop && rng) {
        /* kohya draws the horizontal offset first, then the vertical one, each only when there is excess. */
        *left = ex > 0 ? (int)sdt_ds_rng_int_inclusive(rng, 0, ex) : 0;
        *top = ey > 0 ? (int)sdt_ds_rng_int_inclusive(rng, 0, ey) : 0;
    } else {
        *left = ex / 2;
        *top = ey / 2;
    }
}

void sdt_bucket_sdxl_crop_top_left(const sdt_bucket_assignment *a, int flipped, int *top, int *left)
{
    double l = flipped ? a->bucket_width - a->crop_ltrb[2] : a->crop_ltrb[0];
    *top = (int)a->crop_ltrb[1];
    *left = (int)l;
}

/* Python's repr of a float: the shortest digits that read back the same, in its fixed/exponent style. */
static void py_float_repr(double v, char *buf, size_t size)
{
    if (v == 0.0) {
        snprintf(buf, size, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char digits[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, v);
        if (strtod(digits, NULL) == v)
            break;
    }
    /* digits is d.ddde[+-]XX: take the mantissa digits and the exponent */
    char mant[32];
    size_t m = 0;
    const char *p = digits;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            mant[m++] = *p;
    mant[m] = '\0';
    int exp = atoi(p + 1);
    char out[64];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp < -4 || exp >= 16) {
        out[o++] = mant[0];
        if (m > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < m; i++)
                out[o++] = mant[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -exp - 1; i++)
            out[o++] = '0';
        for (size_t i = 0; i < m; i++)
            out[o++] = mant[i];
    } else {
        for (int i = 0; i <= exp; i++)
            out[o++] = (size_t)i < m ? mant[i] : '0';
        out[o++] = '.';
        if ((size_t)exp + 1 < m)
            for (size_t i = (size_t)exp + 1; i < m; i++)
                out[o++] = mant[i];
        else
            out[o++] = '0';
    }
    out[o] = '\0';
    snprintf(buf, size, "%s", out);
}

char *sdt_bucket_plan_table(const sdt_bucket_plan *plan)
{
    size_t cap = 64 * (plan->bucket_count + 2), len = 0;
    char *text = malloc(cap);
    if (!text)
        return NULL;
    text[0] = '\0';
    for (size_t i = 0; i < plan->bucket_count; i++) {
        const sdt_bucket *b = &plan->buckets[i];
        if (b->samples == 0)
            continue;
        len += (size_t)snprintf(text + len, cap - len, "bucket %zu: resolution (%d, %d), count: %zu\n", i,
                                b->width, b->height, b->samples);
    }
    char num[64];
    size_t placed = 0;
    for (size_t i = 0; i < plan->bucket_count; i++)
        placed += plan->buckets[i].images;
    if (placed == 0)
        snprintf(num, sizeof num, "0"); /* kohya's integer 0 "to avoid NaN" */
    else
        py_float_repr(plan->mean_ar_error, num, sizeof num);
    snprintf(text + len, cap - len, "mean ar error (without repeats): %s\n", num);
    return text;
}
