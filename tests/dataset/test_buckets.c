/* dataset/buckets.c against kohya's bucketing: the bucket lists and ~300 image assignments per setting in
 * tests/data/dataset/buckets.jsonl (written by tools/dataset/make_bucket_fixtures.py), compared exactly;
 * then the settings checks, the non-bucket case, the plan and its table, random crops and SDXL values. */
#include "buckets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit/check.h"

#define FIXTURES "tests/data/dataset/buckets.jsonl"

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The fixture lines are compact JSON with a fixed key order (the generator's json.dumps), so reading the
 * values after known keys is enough; a missing key is a failure. */
static const char *after(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    return p ? p + strlen(key) : NULL;
}

static int read_int(const char **p)
{
    char *end;
    long v = strtol(*p, &end, 10);
    *p = end;
    if (**p == ',' || **p == ']')
        (*p)++;
    return (int)v;
}

static double read_double(const char **p)
{
    char *end;
    double v = strtod(*p, &end);
    *p = end;
    if (**p == ',' || **p == ']')
        (*p)++;
    return v;
}

static void test_fixtures(test_state *t)
{
    char *text = read_text(FIXTURES);
    CHECK_MSG(t, text != NULL, "cannot read %s (run from the source root)", FIXTURES);
    if (!text)
        return;
    int settings_seen = 0, images_seen = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        /* the settings */
        char name[64] = "";
        const char *p = after(line, "\"name\":\"");
        if (p)
            sscanf(p, "%63[^\"]", name);
        sdt_bucket_settings s;
        sdt_bucket_settings_default(&s);
        s.enable_bucket = 1;
        p = after(line, "\"width\":");
        s.width = p ? atoi(p) : 0;
        p = after(line, "\"height\":");
        s.height = p ? atoi(p) : 0;
        p = after(line, "\"min_bucket_reso\":");
        s.min_bucket_reso = p ? atoi(p) : 0;
        p = after(line, "\"max_bucket_reso\":");
        s.max_bucket_reso = p ? atoi(p) : 0;
        p = after(line, "\"steps\":");
        s.bucket_reso_steps = p ? atoi(p) : 0;
        p = after(line, "\"bucket_no_upscale\":");
        s.bucket_no_upscale = p && strncmp(p, "true", 4) == 0;
        settings_seen++;

        sdt_bucket_settings r;
        char *warnings = NULL, *error = NULL;
        int rc = sdt_bucket_settings_resolve(&s, 0, &r, &warnings, &error);
        CHECK_MSG(t, rc == 0, "%s: %s", name, error ? error : "");
        free(warnings);
        free(error);
        if (rc != 0)
            continue;

        /* the bucket list */
        sdt_bucket_reso *list = NULL;
        size_t count = 0;
        if (!s.bucket_no_upscale) {
            error = NULL;
            rc = sdt_bucket_make_resolutions(r.width, r.height, r.min_bucket_reso, r.max_bucket_reso,
                                             r.bucket_reso_steps, &list, &count, &error);
            CHECK_MSG(t, rc == 0, "%s: %s", name, error ? error : "");
            free(error);
        }
        p = after(line, "\"buckets\":[");
        size_t k = 0;
        int list_ok = 1;
        while (p && *p == '[') {
            p++;
            int w = read_int(&p), h = read_int(&p);
            if (k >= count || list[k].width != w || list[k].height != h)
                list_ok = 0;
            k++;
            if (*p == ',')
                p++;
        }
        CHECK_MSG(t, list_ok && k == count, "%s: bucket list differs (%zu expected, %zu made)", name, k,
                  count);

        /* every image */
        const char *q = line;
        while ((q = strstr(q, "{\"size\":[")) != NULL) {
            q += strlen("{\"size\":[");
            int iw = read_int(&q), ih = read_int(&q);
            sdt_bucket_assignment a;
            error = NULL;
            rc = sdt_bucket_select(&r, s.bucket_no_upscale ? NULL : list, count, iw, ih, "img.png", &a,
                                   &error);
            images_seen++;
            if (strncmp(q, ",\"error\":true", 13) == 0) {
                CHECK_MSG(t, rc != 0, "%s: %dx%d should be refused", name, iw, ih);
                if (rc != 0)
                    CHECK_STR_CONTAINS(t, error, "img.png");
                free(error);
                continue;
            }
            CHECK_MSG(t, rc == 0, "%s: %dx%d: %s", name, iw, ih, error ? error : "");
            free(error);
            if (rc != 0)
                continue;
            const char *v = after(q, "\"bucket\":[");
            int bw = read_int(&v), bh = read_int(&v);
            v = after(v, "\"resized\":[");
            int rw = read_int(&v), rh = read_int(&v);
            v = after(v, "\"crop\":[");
            int cl = read_int(&v), ct = read_int(&v);
            v = after(v, "\"crop_ltrb\":[");
            double ltrb[4];
            for (int i = 0; i < 4; i++)
                ltrb[i] = read_double(&v);
            v = after(v, "\"ar_error\":");
            double are = read_double(&v);
            CHECK_MSG(t, a.bucket_width == bw && a.bucket_height == bh,
                      "%s: %dx%d bucket %dx%d, expected %dx%d", name, iw, ih, a.bucket_width, a.bucket_height,
                      bw, bh);
            CHECK_MSG(t, a.resized_width == rw && a.resized_height == rh,
                      "%s: %dx%d resized %dx%d, expected %dx%d", name, iw, ih, a.resized_width,
                      a.resized_height, rw, rh);
            CHECK_MSG(t, a.crop_left == cl && a.crop_top == ct, "%s: %dx%d crop %d,%d, expected %d,%d", name,
                      iw, ih, a.crop_left, a.crop_top, cl, ct);
            CHECK_MSG(t,
                      a.crop_ltrb[0] == ltrb[0] && a.crop_ltrb[1] == ltrb[1] && a.crop_ltrb[2] == ltrb[2] &&
                          a.crop_ltrb[3] == ltrb[3],
                      "%s: %dx%d crop_ltrb %.17g %.17g %.17g %.17g, expected %.17g %.17g %.17g %.17g", name,
                      iw, ih, a.crop_ltrb[0], a.crop_ltrb[1], a.crop_ltrb[2], a.crop_ltrb[3], ltrb[0],
                      ltrb[1], ltrb[2], ltrb[3]);
            CHECK_MSG(t, a.ar_error == are, "%s: %dx%d ar_error %.17g, expected %.17g", name, iw, ih,
                      a.ar_error, are);
            CHECK_MSG(t, a.original_width == iw && a.original_height == ih, "%s: original size", name);
        }
        free(list);
    }
    CHECK_MSG(t, settings_seen >= 10 && images_seen >= 3000, "only %d settings, %d images in the fixtures",
              settings_seen, images_seen);
    free(text);
}

static void test_make_resolutions_sd15(test_state *t)
{
    sdt_bucket_reso *list;
    size_t n;
    char *error = NULL;
    CHECK(t, sdt_bucket_make_resolutions(512, 512, 256, 1024, 64, &list, &n, &error) == 0);
    /* kohya's SD1.5 list: 17 buckets, sorted by width then height, from (256, 832) to (1024, 256) */
    CHECK(t, n == 17);
    CHECK(t, list[0].width == 256 && list[0].height == 832);
    CHECK(t, list[3].width == 256 && list[3].height == 1024);
    CHECK(t, list[8].width == 512 && list[8].height == 512);
    CHECK(t, list[16].width == 1024 && list[16].height == 256);
    for (size_t i = 0; i < n; i++)
        CHECK(t, (long)list[i].width * list[i].height <= 512L * 512);
    free(list);
}

static void test_resolve(test_state *t)
{
    sdt_bucket_settings s, r;
    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    char *warnings = NULL, *error = NULL;

    s.min_bucket_reso = 300;
    s.max_bucket_reso = 1000;
    CHECK(t, sdt_bucket_settings_resolve(&s, 64, &r, &warnings, &error) == 0);
    CHECK(t, r.min_bucket_reso == 256 && r.max_bucket_reso == 1024);
    CHECK_STR_CONTAINS(t, warnings,
                       "min_bucket_reso is adjusted to be multiple of bucket_reso_steps: 300 -> 256");
    CHECK_STR_CONTAINS(t, warnings,
                       "max_bucket_reso is adjusted to be multiple of bucket_reso_steps: 1000 -> 1024");
    free(warnings);

    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    s.bucket_reso_steps = 32;
    CHECK(t, sdt_bucket_settings_resolve(&s, 64, &r, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "bucket_reso_steps is 32; it must be divisible by 64");
    free(error);
    error = NULL;
    CHECK(t, sdt_bucket_settings_resolve(&s, 32, &r, NULL, &error) == 0);

    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    s.min_bucket_reso = 768;
    CHECK(t, sdt_bucket_settings_resolve(&s, 64, &r, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error,
                       "min_bucket_reso (768) must be equal or less than the resolution's shorter side");
    free(error);
    error = NULL;

    s.min_bucket_reso = 1024;
    s.max_bucket_reso = 512;
    CHECK(t, sdt_bucket_settings_resolve(&s, 64, &r, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "min_bucket_reso (1024) must not be larger than max_bucket_reso (512)");
    free(error);
    error = NULL;

    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    s.width = 1024;
    s.height = 1024;
    s.max_bucket_reso = 768;
    CHECK(t, sdt_bucket_settings_resolve(&s, 64, &r, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error,
                       "max_bucket_reso (768) must be equal or greater than the resolution's longer side");
    free(error);
    error = NULL;

    s.bucket_reso_steps = 0;
    CHECK(t, sdt_bucket_settings_resolve(&s, 0, &r, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "bucket_reso_steps must be positive");
    free(error);
}

static void test_plan_and_table(test_state *t)
{
    sdt_bucket_settings s;
    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    sdt_bucket_image imgs[] = {
        {"a.png", 512, 512, 10, 0, 0},  {"b.png", 1024, 1024, 2, 0, 0}, {"c.png", 640, 384, 3, 0, 0},
        {"d.png", 1920, 1080, 1, 0, 0}, {"e.png", 800, 600, 0, 0, 0}, /* unused: no bucket, not in the mean */
    };
    sdt_bucket_plan plan;
    char *error = NULL;
    CHECK(t, sdt_bucket_plan_build(&s, 64, imgs, 5, &plan, NULL, &error) == 0);
    CHECK(t, plan.bucket_count == 2);
    CHECK(t, plan.buckets[0].width == 512 && plan.buckets[0].height == 512 && plan.buckets[0].samples == 12);
    CHECK(t, plan.buckets[1].width == 640 && plan.buckets[1].height == 384 && plan.buckets[1].samples == 4);
    CHECK(t, plan.images[4].bucket == -1);
    CHECK(t, plan.images[3].bucket == 1 && plan.images[2].bucket == 1);
    CHECK(t, sdt_bucket_plan_find(&plan, 640, 384) == 1);
    char *table = sdt_bucket_plan_table(&plan);
    /* 1920x1080: |640/384 - 16/9| = 0.1111111111111111 (kohya's float), /4 images */
    double expect = fabs(640.0 / 384 - 1920.0 / 1080) / 4;
    CHECK(t, fabs(plan.mean_ar_error - expect) < 1e-15);
    CHECK_STR_CONTAINS(t, table, "bucket 0: resolution (512, 512), count: 12\n");
    CHECK_STR_CONTAINS(t, table, "bucket 1: resolution (640, 384), count: 4\n");
    CHECK_STR_CONTAINS(t, table, "mean ar error (without repeats): 0.027777777777777735\n");
    free(table);
    sdt_bucket_plan_free(&plan);

    /* no images: kohya prints the integer 0 */
    CHECK(t, sdt_bucket_plan_build(&s, 64, imgs, 0, &plan, NULL, &error) == 0);
    table = sdt_bucket_plan_table(&plan);
    CHECK_STR_CONTAINS(t, table, "mean ar error (without repeats): 0\n");
    free(table);
    sdt_bucket_plan_free(&plan);
}

static void test_no_upscale_plan(test_state *t)
{
    sdt_bucket_settings s;
    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    s.bucket_no_upscale = 1;
    sdt_bucket_image imgs[] = {{"small.png", 300, 200, 1, 0, 0}, {"big.png", 4000, 3000, 1, 0, 0}};
    sdt_bucket_plan plan;
    char *warnings = NULL, *error = NULL;
    CHECK(t, sdt_bucket_plan_build(&s, 64, imgs, 2, &plan, &warnings, &error) == 0);
    CHECK_STR_CONTAINS(t, warnings, "ignored if bucket_no_upscale is set");
    free(warnings);
    /* small: kept at its size, bucket floored to 64: 256x192, centre crop (22, 4) */
    CHECK(t, plan.images[0].bucket_width == 256 && plan.images[0].bucket_height == 192);
    CHECK(t, plan.images[0].resized_width == 300 && plan.images[0].resized_height == 200);
    CHECK(t, plan.images[0].crop_left == 22 && plan.images[0].crop_top == 4);
    CHECK(t, plan.predefined == NULL);
    /* big: area 512*512 at 4:3 -> 591.2x443.4; width on the grid 576 gives height 384 (ar 1.5), height on
     * the grid 384 gives width 512 (ar 4:3 exactly), so the height-rounded one: 512x384, bucket 512x384 */
    CHECK(t, plan.images[1].resized_width == 512 && plan.images[1].resized_height == 384);
    CHECK(t, plan.images[1].bucket_width == 512 && plan.images[1].bucket_height == 384);
    sdt_bucket_plan_free(&plan);
}

static void test_without_buckets(test_state *t)
{
    sdt_bucket_settings s;
    sdt_bucket_settings_default(&s);
    sdt_bucket_plan plan;
    char *error = NULL;

    sdt_bucket_image ok[] = {{"a.png", 512, 512, 3, 0, 0}, {"b.png", 700, 600, 1, 1, 0}};
    CHECK(t, sdt_bucket_plan_build(&s, 64, ok, 2, &plan, NULL, &error) == 0);
    CHECK(t, plan.bucket_count == 1 && plan.buckets[0].samples == 4);
    CHECK(t, plan.images[1].resized_width == 700 && plan.images[1].bucket_width == 512);
    CHECK(t, plan.images[1].crop_ltrb[2] == 0.0);
    sdt_ds_rng rng = sdt_ds_rng_make(1, SDT_RNG_CROP, 1, 1, 0);
    for (int i = 0; i < 200; i++) {
        int l, tp;
        sdt_bucket_crop_offsets(&plan.images[1], 1, &rng, &l, &tp);
        CHECK(t, l >= 0 && l <= 188 && tp >= 0 && tp <= 88);
    }
    sdt_bucket_plan_free(&plan);

    sdt_bucket_image small[] = {{"dir/tiny.png", 500, 512, 1, 0, 0}};
    CHECK(t, sdt_bucket_plan_build(&s, 64, small, 1, &plan, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "image size is small: dir/tiny.png is 500x512");
    free(error);
    error = NULL;

    sdt_bucket_image large[] = {{"dir/large.png", 600, 512, 1, 0, 0}};
    CHECK(t, sdt_bucket_plan_build(&s, 64, large, 1, &plan, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "image too large, but cropping and bucketing are disabled: dir/large.png");
    free(error);
}

static void test_random_crop_and_sdxl(test_state *t)
{
    sdt_bucket_settings s;
    sdt_bucket_settings_default(&s);
    s.enable_bucket = 1;
    s.bucket_no_upscale = 1;
    sdt_bucket_settings r;
    CHECK(t, sdt_bucket_settings_resolve(&s, 64, &r, NULL, NULL) == 0);
    sdt_bucket_assignment a;
    CHECK(t, sdt_bucket_select(&r, NULL, 0, 300, 200, "x", &a, NULL) == 0);
    int seen_l[45] = {0}, seen_t[9] = {0};
    sdt_ds_rng rng = sdt_ds_rng_make(7, SDT_RNG_CROP, 0, 0, 0);
    for (int i = 0; i < 5000; i++) {
        int l, tp;
        sdt_bucket_crop_offsets(&a, 1, &rng, &l, &tp);
        CHECK(t, l >= 0 && l <= 44 && tp >= 0 && tp <= 8);
        if (l >= 0 && l <= 44 && tp >= 0 && tp <= 8) {
            seen_l[l]++;
            seen_t[tp]++;
        }
    }
    int all = 1;
    for (int i = 0; i <= 44; i++)
        all &= seen_l[i] > 0;
    for (int i = 0; i <= 8; i++)
        all &= seen_t[i] > 0;
    CHECK_MSG(t, all, "random crop offsets do not cover [0, excess]");
    /* the same generator state gives the same offsets */
    sdt_ds_rng r1 = sdt_ds_rng_make(9, SDT_RNG_CROP, 3, 4, 0), r2 = sdt_ds_rng_make(9, SDT_RNG_CROP, 3, 4, 0);
    int l1, t1, l2, t2;
    sdt_bucket_crop_offsets(&a, 1, &r1, &l1, &t1);
    sdt_bucket_crop_offsets(&a, 1, &r2, &l2, &t2);
    CHECK(t, l1 == l2 && t1 == t2);
    int cl, ct;
    sdt_bucket_crop_offsets(&a, 0, &r1, &cl, &ct);
    CHECK(t, cl == 22 && ct == 4);

    /* SDXL: 1920x1080 in 1024x1024 buckets -> (1344, 768); crop_ltrb by Stability's formula */
    sdt_bucket_reso *list;
    size_t n;
    CHECK(t, sdt_bucket_make_resolutions(1024, 1024, 256, 2048, 64, &list, &n, NULL) == 0);
    sdt_bucket_settings x;
    sdt_bucket_settings_default(&x);
    x.enable_bucket = 1;
    x.width = x.height = 1024;
    x.max_bucket_reso = 2048;
    CHECK(t, sdt_bucket_select(&x, list, n, 1920, 1080, "y", &a, NULL) == 0);
    CHECK(t, a.bucket_width == 1344 && a.bucket_height == 768);
    CHECK(t, a.resized_width == 1365 && a.resized_height == 768);
    CHECK(t, a.crop_left == 10 && a.crop_top == 0);
    /* bucket 1.75 < image 1.777...: width fits, height 1344/(16/9) = 756: top (768-756)//2 = 6 */
    CHECK(t, a.crop_ltrb[0] == 0 && a.crop_ltrb[1] == 6 && a.crop_ltrb[2] == 1344 && a.crop_ltrb[3] == 762);
    int top, left;
    sdt_bucket_sdxl_crop_top_left(&a, 0, &top, &left);
    CHECK(t, top == 6 && left == 0);
    sdt_bucket_sdxl_crop_top_left(&a, 1, &top, &left);
    CHECK(t, top == 6 && left == 0);
    free(list);
}

int main(void)
{
    static const test_case cases[] = {
        TEST(test_fixtures),
        TEST(test_make_resolutions_sd15),
        TEST(test_resolve),
        TEST(test_plan_and_table),
        TEST(test_no_upscale_plan),
        TEST(test_without_buckets),
        TEST(test_random_crop_and_sdxl),
    };
    return run_tests("buckets", cases, sizeof cases / sizeof cases[0]);
}
