/* dataset/epoch.c: kohya's repeat and regularization counts, batches within buckets, per-epoch shuffles
 * that depend only on (seed, epoch), and resuming from a serialised cursor. */
#include "epoch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit/check.h"

static void test_reg_balance(test_state *t)
{
    /* 3 train images x 10 = 30; 4 reg images x 1 = 4: reg images repeated round-robin until 30 */
    sdt_epoch_subset s1[] = {{3, 10, 0}, {4, 1, 1}};
    int rep[16];
    size_t unused = 99;
    char *warnings = NULL, *error = NULL;
    CHECK(t, sdt_epoch_balance_repeats(s1, 2, rep, &unused, &warnings, &error) == 0);
    CHECK(t, rep[0] == 10 && rep[1] == 10 && rep[2] == 10);
    /* first pass 4, then +1 each round: 26 more over 4 images -> 8, 8, 7, 7 */
    CHECK_MSG(t, rep[3] == 8 && rep[4] == 8 && rep[5] == 7 && rep[6] == 7, "%d %d %d %d", rep[3], rep[4],
              rep[5], rep[6]);
    CHECK(t, unused == 0 && warnings == NULL);

    /* 2 train x 1 = 2; 5 reg x 1 = 5: two reg images used, three never (kohya warns) */
    sdt_epoch_subset s2[] = {{2, 1, 0}, {5, 1, 1}};
    CHECK(t, sdt_epoch_balance_repeats(s2, 2, rep, &unused, &warnings, &error) == 0);
    CHECK(t, rep[2] == 1 && rep[3] == 1 && rep[4] == 0 && rep[5] == 0 && rep[6] == 0);
    CHECK(t, unused == 3);
    CHECK_STR_CONTAINS(t, warnings, "some of reg images are not used");
    free(warnings);

    /* reg subsets with their own repeats: first pass uses them (3 x 2 = 6 >= 5 stops at the third image) */
    sdt_epoch_subset s3[] = {{5, 1, 0}, {4, 2, 1}};
    CHECK(t, sdt_epoch_balance_repeats(s3, 2, rep, &unused, NULL, &error) == 0);
    CHECK(t, rep[5] == 2 && rep[6] == 2 && rep[7] == 2 && rep[8] == 0 && unused == 1);

    sdt_epoch_subset s4[] = {{5, 1, 0}};
    CHECK(t, sdt_epoch_balance_repeats(s4, 1, rep, &unused, &warnings, &error) == 0);
    CHECK_STR_CONTAINS(t, warnings, "no regularization images");
    free(warnings);

    sdt_epoch_subset bad[] = {{5, 0, 0}};
    CHECK(t, sdt_epoch_balance_repeats(bad, 1, rep, &unused, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "num_repeats must be at least 1");
    free(error);
}

/* 10 train images (repeats 3) over 3 buckets, 4 reg images, batch 4. */
static sdt_epoch_plan *make_plan(test_state *t, uint64_t seed, size_t batch)
{
    static const sdt_epoch_subset subsets[] = {{6, 3, 0}, {4, 3, 0}, {4, 1, 1}};
    static const int buckets[] = {0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2, 2};
    sdt_epoch_plan *p = NULL;
    char *error = NULL;
    CHECK(t, sdt_epoch_plan_create(subsets, 3, buckets, 3, batch, seed, &p, NULL, &error) == 0);
    free(error);
    return p;
}

static void test_counts(test_state *t)
{
    sdt_epoch_plan *p = make_plan(t, 1, 4);
    if (!p)
        return;
    sdt_epoch_summary s;
    sdt_epoch_plan_summary(p, &s);
    CHECK(t, s.num_train_images == 30 && s.num_reg_images == 4 && s.reg_samples == 30);
    CHECK(t, s.samples_per_epoch == 60 && s.reg_images_unused == 0);
    /* per bucket: train 0,1,7 x3 = 9 + reg 10 (x8 -> images 10, 11 get 8, 12, 13 get 7): bucket 0: 9 + 8 = 17
     */
    size_t b0 = sdt_epoch_bucket_samples(p, 0), b1 = sdt_epoch_bucket_samples(p, 1),
           b2 = sdt_epoch_bucket_samples(p, 2);
    CHECK_MSG(t, b0 == 17 && b1 == 12 + 8 && b2 == 9 + 14, "%zu %zu %zu", b0, b1, b2);
    CHECK(t, s.batches_per_epoch == (17 + 3) / 4 + (20 + 3) / 4 + (23 + 3) / 4);

    /* every sample exactly its repeats per epoch, batches within one bucket, short batches only at the end */
    sdt_batch b;
    CHECK(t, sdt_batch_alloc(p, &b, NULL) == 0);
    for (int epoch = 1; epoch <= 3; epoch++) {
        int seen[14] = {0};
        size_t short_batches = 0;
        for (size_t k = 0; k < s.batches_per_epoch; k++) {
            CHECK(t, sdt_epoch_batch(p, epoch, k, &b, NULL) == 0);
            CHECK(t, b.count >= 1 && b.count <= 4);
            short_batches += b.count < 4;
            for (size_t i = 0; i < b.count; i++) {
                static const int buckets[] = {0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2, 2};
                CHECK(t, buckets[b.images[i]] == b.bucket);
                seen[b.images[i]]++;
            }
        }
        CHECK(t, short_batches <= 3);
        for (size_t i = 0; i < 14; i++)
            CHECK_MSG(t, seen[i] == sdt_epoch_image_repeats(p, i), "epoch %d image %zu: %d times, repeats %d",
                      epoch, i, seen[i], sdt_epoch_image_repeats(p, i));
    }
    sdt_batch_free(&b);
    sdt_epoch_plan_free(p);
}

static void test_determinism(test_state *t)
{
    sdt_epoch_plan *a = make_plan(t, 7, 2), *b = make_plan(t, 7, 2), *c = make_plan(t, 8, 2);
    if (!a || !b || !c)
        return;
    sdt_batch x, y, z;
    sdt_batch_alloc(a, &x, NULL);
    sdt_batch_alloc(a, &y, NULL);
    sdt_batch_alloc(a, &z, NULL);
    sdt_epoch_summary s;
    sdt_epoch_plan_summary(a, &s);
    int same_seed_diff = 0, other_seed_diff = 0, other_epoch_diff = 0;
    for (size_t k = 0; k < s.batches_per_epoch; k++) {
        /* b walks epochs out of order: the cache must not leak between epochs */
        sdt_epoch_batch(b, 3, 0, &y, NULL);
        sdt_epoch_batch(a, 2, k, &x, NULL);
        sdt_epoch_batch(b, 2, k, &y, NULL);
        same_seed_diff += x.bucket != y.bucket || x.count != y.count ||
                          memcmp(x.images, y.images, x.count * sizeof *x.images) != 0;
        sdt_epoch_batch(c, 2, k, &z, NULL);
        other_seed_diff +=
            x.bucket != z.bucket || memcmp(x.images, z.images, x.count * sizeof *x.images) != 0;
        sdt_epoch_batch(b, 3, k, &y, NULL);
        other_epoch_diff +=
            x.bucket != y.bucket || memcmp(x.images, y.images, x.count * sizeof *x.images) != 0;
    }
    CHECK(t, same_seed_diff == 0);
    CHECK(t, other_seed_diff > 5 && other_epoch_diff > 5);
    sdt_batch_free(&x);
    sdt_batch_free(&y);
    sdt_batch_free(&z);
    sdt_epoch_plan_free(a);
    sdt_epoch_plan_free(b);
    sdt_epoch_plan_free(c);
}

static void test_resume(test_state *t)
{
    sdt_epoch_plan *a = make_plan(t, 1234, 3), *b = make_plan(t, 1234, 3);
    if (!a || !b)
        return;
    sdt_epoch_summary s;
    sdt_epoch_plan_summary(a, &s);
    size_t total = 3 * s.batches_per_epoch + 5, stop = s.batches_per_epoch + 4;
    sdt_batch x, y;
    sdt_batch_alloc(a, &x, NULL);
    sdt_batch_alloc(a, &y, NULL);
    sdt_epoch_cursor ca, cb;
    sdt_epoch_cursor_start(a, &ca);
    char *error = NULL, *saved = NULL;
    size_t *ref_images = calloc(total * 3, sizeof *ref_images);
    int *ref_bucket = calloc(total, sizeof *ref_bucket);
    for (size_t k = 0; k < total; k++) {
        CHECK(t, sdt_epoch_next(a, &ca, &x, &error) == 0);
        ref_bucket[k] = x.bucket;
        memcpy(ref_images + 3 * k, x.images, x.count * sizeof *x.images);
        if (k + 1 == stop)
            CHECK(t, sdt_epoch_cursor_format(&ca, &saved, &error) == 0);
    }
    CHECK(t, ca.epoch == 4 && ca.batch == 5);
    /* a new process: parse the saved position and go on */
    CHECK_STR_CONTAINS(t, saved, "\"epoch\":2,\"batch\":4,\"seed\":\"1234\",\"fingerprint\":\"");
    CHECK(t, sdt_epoch_cursor_parse(saved, &cb, &error) == 0);
    CHECK(t, cb.epoch == 2 && cb.batch == 4 && cb.seed == 1234);
    int mismatch = 0;
    for (size_t k = stop; k < total; k++) {
        CHECK(t, sdt_epoch_next(b, &cb, &y, &error) == 0);
        mismatch +=
            y.bucket != ref_bucket[k] || memcmp(y.images, ref_images + 3 * k, y.count * sizeof *y.images);
    }
    CHECK(t, mismatch == 0);
    CHECK(t, cb.epoch == ca.epoch && cb.batch == ca.batch);

    /* whitespace and key order are free */
    sdt_epoch_cursor cc;
    char text[200];
    snprintf(text, sizeof text,
             "{ \"seed\" : \"1234\", \"batch\": 4, \"fingerprint\": \"%016llx\",\n \"epoch\": 2 }",
             (unsigned long long)cb.fingerprint);
    CHECK(t, sdt_epoch_cursor_parse(text, &cc, &error) == 0 && cc.epoch == 2 && cc.batch == 4);

    /* a cursor from another seed or another dataset is refused */
    sdt_epoch_plan *other = make_plan(t, 99, 3), *other_batch = make_plan(t, 1234, 4);
    CHECK(t, sdt_epoch_cursor_check(other, &cc, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "seed 1234");
    free(error);
    error = NULL;
    CHECK(t, sdt_epoch_cursor_check(other_batch, &cc, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "different dataset");
    free(error);
    error = NULL;
    CHECK(t, sdt_epoch_cursor_parse("{\"epoch\":0,\"batch\":1,\"seed\":\"1\",\"fingerprint\":\"ab\"}", &cc,
                                    &error) == -1);
    free(error);
    error = NULL;
    CHECK(t, sdt_epoch_cursor_parse("garbage", &cc, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "not a data position");
    free(error);

    free(saved);
    free(ref_images);
    free(ref_bucket);
    sdt_batch_free(&x);
    sdt_batch_free(&y);
    sdt_epoch_plan_free(a);
    sdt_epoch_plan_free(b);
    sdt_epoch_plan_free(other);
    sdt_epoch_plan_free(other_batch);
}

static void test_errors(test_state *t)
{
    sdt_epoch_subset s[] = {{2, 1, 0}};
    int bad_bucket[] = {0, 5};
    sdt_epoch_plan *p = NULL;
    char *error = NULL;
    CHECK(t, sdt_epoch_plan_create(s, 1, bad_bucket, 2, 1, 0, &p, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "image 1 has bucket 5");
    free(error);
    error = NULL;
    int ok_bucket[] = {0, 1};
    CHECK(t, sdt_epoch_plan_create(s, 1, ok_bucket, 2, 0, 0, &p, NULL, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "batch_size");
    free(error);
    error = NULL;
    CHECK(t, sdt_epoch_plan_create(s, 1, ok_bucket, 2, 8, 0, &p, NULL, &error) == 0);
    sdt_batch b;
    sdt_batch_alloc(p, &b, NULL);
    /* two buckets of one sample: two batches of one (kohya keeps partial batches) */
    sdt_epoch_summary sm;
    sdt_epoch_plan_summary(p, &sm);
    CHECK(t, sm.batches_per_epoch == 2);
    CHECK(t, sdt_epoch_batch(p, 1, 2, &b, &error) == -1);
    free(error);
    error = NULL;
    CHECK(t, sdt_epoch_batch(p, 0, 0, &b, &error) == -1);
    free(error);
    sdt_batch_free(&b);
    sdt_epoch_plan_free(p);
}

int main(void)
{
    static const test_case cases[] = {
        TEST(test_reg_balance), TEST(test_counts), TEST(test_determinism),
        TEST(test_resume),      TEST(test_errors),
    };
    return run_tests("epoch", cases, sizeof cases / sizeof cases[0]);
}
