/* dataset/captions.c: each of kohya's caption rules with hand-computed results where no random choice is
 * involved, and properties where there is (fixed tags never move, dropout near its rate, every wildcard
 * option reachable, the same context giving the same caption). */
#include "captions.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit/check.h"

static char *run(const sdt_caption_options *o, const char *caption, int epoch, int64_t step, uint64_t sample)
{
    sdt_caption_context ctx = {42, epoch, step, 1000, sample};
    char *out = NULL, *error = NULL;
    if (sdt_caption_process(o, caption, &ctx, &out, &error) != 0) {
        fprintf(stderr, "caption error: %s\n", error ? error : "?");
        free(error);
        return strdup("<error>");
    }
    return out;
}

#define EXPECT(t, o, in, want)                                                                               \
    do {                                                                                                     \
        char *got_ = run((o), (in), 1, 0, 0);                                                                \
        CHECK_MSG(t, strcmp(got_, (want)) == 0, "\"%s\" -> \"%s\", expected \"%s\"", (in), got_, (want));    \
        free(got_);                                                                                          \
    } while (0)

static void test_plain(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    /* nothing enabled: the text as is, first line only, no re-joining */
    EXPECT(t, &o, "a cat,  sitting ,on a mat", "a cat,  sitting ,on a mat");
    EXPECT(t, &o, "line one\nline two", "line one");
    EXPECT(t, &o, "", "");
    o.caption_prefix = "masterpiece";
    o.caption_suffix = "by someone";
    EXPECT(t, &o, "a cat", "masterpiece a cat by someone");
    /* the suffix lands on the last line, which is not the one kept */
    EXPECT(t, &o, "one\ntwo", "masterpiece one");
    sdt_caption_options_default(&o);
    o.secondary_separator = ";;;";
    EXPECT(t, &o, "a;;;b, c", "a,b, c");
    o.caption_separator = "|";
    EXPECT(t, &o, "a;;;b| c", "a|b| c");
}

static void test_split_and_join(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    /* token warmup configured but finished: the split-and-join path without random choices */
    o.token_warmup_step = 10;
    char *got = run(&o, " a ,b,  c ", 1, 50, 0);
    CHECK(t, strcmp(got, "a, b, c") == 0);
    free(got);
    /* at step 0 the warmup keeps token_warmup_min (1) tags */
    EXPECT(t, &o, " a ,b,  c ", "a");
    /* the keep_tokens path keeps empty tags (kohya filters them only on the separator path) */
    got = run(&o, "a,,b", 1, 50, 0);
    CHECK(t, strcmp(got, "a, , b") == 0);
    free(got);
    /* keep_tokens_separator: fixed | flexible | fixed suffix; empty pieces dropped */
    o.keep_tokens_separator = "|||";
    got = run(&o, "1girl, solo ||| red hair,, blue eyes ||| best quality", 1, 50, 0);
    CHECK_MSG(t, strcmp(got, "1girl, solo, red hair, blue eyes, best quality") == 0, "%s", got);
    free(got);
    /* separator absent: falls back to keep_tokens */
    got = run(&o, "x, y", 1, 50, 0);
    CHECK(t, strcmp(got, "x, y") == 0);
    free(got);
    /* a custom separator splits, the join is always ", " */
    o.caption_separator = ".";
    got = run(&o, "a.b. c", 1, 50, 0);
    CHECK(t, strcmp(got, "a, b, c") == 0);
    free(got);
    /* secondary separator after the join */
    sdt_caption_options_default(&o);
    o.token_warmup_step = 10;
    o.secondary_separator = ";;;";
    got = run(&o, "long;;;tag, b", 1, 50, 0);
    CHECK(t, strcmp(got, "long,tag, b") == 0);
    free(got);
}

static void test_warmup(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    o.token_warmup_min = 1;
    o.token_warmup_step = 10;
    const char *cap = "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10";
    /* 11 tags: length floor(step * (11 - 1) / 10) + 1 = step + 1 while step < 10 */
    for (int step = 0; step < 12; step++) {
        char *got = run(&o, cap, 1, step, 0);
        size_t tags = 1;
        for (const char *c = got; *c; c++)
            tags += *c == ',';
        size_t want = step < 10 ? (size_t)step + 1 : 11;
        CHECK_MSG(t, tags == want, "step %d: %zu tags, expected %zu", step, tags, want);
        free(got);
    }
    /* a fraction: 0.5 of 1000 steps */
    o.token_warmup_step = 0.5;
    CHECK(t, sdt_caption_warmup_steps(&o, 1000) == 500);
    char *got = run(&o, cap, 1, 250, 0); /* floor(250 * 10 / 500) + 1 = 6 */
    CHECK_MSG(t, strcmp(got, "t0, t1, t2, t3, t4, t5") == 0, "%s", got);
    free(got);
    /* keep_tokens stay in front of the warmup */
    o.token_warmup_step = 10;
    o.keep_tokens = 2;
    o.token_warmup_min = 0;
    got = run(&o, cap, 1, 0, 0);
    CHECK_MSG(t, strcmp(got, "t0, t1") == 0, "%s", got);
    free(got);
}

static void test_shuffle_keeps_prefix(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    o.shuffle_caption = 1;
    o.keep_tokens = 2;
    const char *cap = "sks, dog, a, b, c, d, e, f";
    int first_seen[6] = {0};
    int changed = 0;
    for (uint64_t s = 0; s < 600; s++) {
        char *got = run(&o, cap, 1, 0, s);
        CHECK_MSG(t, strncmp(got, "sks, dog, ", 10) == 0, "%s", got);
        CHECK(t, strlen(got) == strlen(cap));
        for (const char *x = "abcdef"; *x; x++)
            CHECK(t, strchr(got + 10, *x) != NULL);
        if (strlen(got) > 10 && got[10] >= 'a' && got[10] <= 'f')
            first_seen[got[10] - 'a']++;
        changed += strcmp(got, cap) != 0;
        free(got);
    }
    /* the first flexible tag is uniform over the six: each ~100 of 600 */
    for (int i = 0; i < 6; i++)
        CHECK_MSG(t, first_seen[i] > 60 && first_seen[i] < 140, "tag %c first %d times", 'a' + i,
                  first_seen[i]);
    CHECK(t, changed > 500);

    /* the separator form: the fixed suffix never moves either */
    o.keep_tokens = 0;
    o.keep_tokens_separator = "|||";
    for (uint64_t s = 0; s < 200; s++) {
        char *got = run(&o, "sks ||| a, b, c, d ||| tail", 1, 0, s);
        size_t n = strlen(got);
        CHECK_MSG(t, strncmp(got, "sks, ", 5) == 0 && n > 6 && strcmp(got + n - 6, ", tail") == 0, "%s", got);
        free(got);
    }
}

static void test_determinism(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    o.shuffle_caption = 1;
    o.caption_tag_dropout_rate = 0.3;
    o.enable_wildcard = 1;
    const char *cap = "{red|green|blue} cat, a, b, c, d, e, f, g, h";
    int differ_sample = 0, differ_epoch = 0;
    for (uint64_t s = 0; s < 50; s++) {
        char *a = run(&o, cap, 3, 100, s), *b = run(&o, cap, 3, 100, s);
        char *c = run(&o, cap, 3, 100, s + 1000), *d = run(&o, cap, 4, 100, s);
        CHECK(t, strcmp(a, b) == 0);
        differ_sample += strcmp(a, c) != 0;
        differ_epoch += strcmp(a, d) != 0;
        free(a);
        free(b);
        free(c);
        free(d);
    }
    CHECK(t, differ_sample > 40 && differ_epoch > 40);
}

static void test_dropout(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    o.caption_dropout_rate = 0.25;
    int dropped = 0, n = 8000;
    for (int s = 0; s < n; s++) {
        char *got = run(&o, "a, b", 1, s, (uint64_t)s);
        dropped += got[0] == '\0';
        free(got);
    }
    /* binomial(8000, 0.25): sd 38.7; 5 sd either side */
    CHECK_MSG(t, abs(dropped - 2000) < 200, "%d of %d dropped", dropped, n);

    sdt_caption_options_default(&o);
    o.caption_dropout_every_n_epochs = 3;
    for (int e = 1; e <= 9; e++) {
        char *got = run(&o, "a, b", e, 0, 0);
        CHECK_MSG(t, (got[0] == '\0') == (e % 3 == 0), "epoch %d: \"%s\"", e, got);
        free(got);
    }

    /* tag dropout: flexible tags only, each kept with 1 - p */
    sdt_caption_options_default(&o);
    o.caption_tag_dropout_rate = 0.4;
    o.keep_tokens = 1;
    long kept = 0, rounds = 2000;
    for (int s = 0; s < rounds; s++) {
        char *got = run(&o, "keep, a, b, c, d, e", 1, 0, (uint64_t)s);
        CHECK_MSG(t, strncmp(got, "keep", 4) == 0, "%s", got);
        for (const char *c = got; *c; c++)
            kept += *c == ',';
        free(got);
    }
    double rate = (double)kept / (rounds * 5.0); /* 0.6 expected; sd ~0.005 */
    CHECK_MSG(t, fabs(rate - 0.6) < 0.03, "kept rate %f", rate);
}

static void test_wildcards(test_state *t)
{
    sdt_caption_options o;
    sdt_caption_options_default(&o);
    o.enable_wildcard = 1;
    int seen[3] = {0};
    for (uint64_t s = 0; s < 300; s++) {
        char *got = run(&o, "a {red|green|blue} car", 1, 0, s);
        if (strcmp(got, "a red car") == 0)
            seen[0]++;
        else if (strcmp(got, "a green car") == 0)
            seen[1]++;
        else if (strcmp(got, "a blue car") == 0)
            seen[2]++;
        else
            CHECK_MSG(t, 0, "unexpected \"%s\"", got);
        free(got);
    }
    CHECK(t, seen[0] > 50 && seen[1] > 50 && seen[2] > 50);
    /* doubled braces are literal braces; "{}" is not a wildcard; an unclosed one stays */
    EXPECT(t, &o, "{{literal}}", "{literal}");
    EXPECT(t, &o, "x {} y", "x {} y");
    EXPECT(t, &o, "open { only", "open { only");
    EXPECT(t, &o, "{one}", "one");
    /* a random line of a multi-line caption; the prefix goes on the first line only (kohya's order) */
    int lines[3] = {0};
    o.caption_prefix = "P";
    for (uint64_t s = 0; s < 300; s++) {
        char *got = run(&o, "l0\nl1\nl2", 1, 0, s);
        if (strcmp(got, "P l0") == 0)
            lines[0]++;
        else if (strcmp(got, "l1") == 0)
            lines[1]++;
        else if (strcmp(got, "l2") == 0)
            lines[2]++;
        else
            CHECK_MSG(t, 0, "unexpected \"%s\"", got);
        free(got);
    }
    CHECK(t, lines[0] > 50 && lines[1] > 50 && lines[2] > 50);
}

static void test_tag_frequency(test_state *t)
{
    sdt_tag_frequency f;
    sdt_tag_frequency_init(&f);
    char *error = NULL;
    CHECK(t, sdt_tag_frequency_add(&f, "Red Hair, 1girl,, solo ", &error) == 0);
    CHECK(t, sdt_tag_frequency_add(&f, "red hair|x, SOLO", &error) == 0);
    CHECK(t, f.count == 4);
    CHECK(t, strcmp(f.tags[0].tag, "red hair") == 0 && f.tags[0].count == 1);
    CHECK(t, sdt_tag_frequency_get(&f, "solo") == 2);
    CHECK(t, sdt_tag_frequency_get(&f, "red hair|x") == 1);
    CHECK(t, sdt_tag_frequency_get(&f, "missing") == 0);
    char buf[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof buf, "Tag%d, tag%d", i % 700, i % 700);
        CHECK(t, sdt_tag_frequency_add(&f, buf, &error) == 0);
    }
    CHECK(t, f.count == 704);
    CHECK(t, sdt_tag_frequency_get(&f, "tag0") == 2 * 8);
    CHECK(t, sdt_tag_frequency_get(&f, "tag699") == 2 * 7);
    sdt_tag_frequency_free(&f);
}

int main(void)
{
    static const test_case cases[] = {
        TEST(test_plain),       TEST(test_split_and_join),
        TEST(test_warmup),      TEST(test_shuffle_keeps_prefix),
        TEST(test_determinism), TEST(test_dropout),
        TEST(test_wildcards),   TEST(test_tag_frequency),
    };
    return run_tests("captions", cases, sizeof cases / sizeof cases[0]);
}
