/* The text-encoder cache with the sd15-tiny text encoder (random weights) and the small test vocabulary:
 * a miss encodes, a hit (memory, disk, the next run) returns the stored bytes and equals a direct encode;
 * caption, clip_skip, max_token_length, pooled and encoder changes miss; long prompts are stitched; a
 * corrupt file is rebuilt with a warning; progress; no temporary file left behind. */
#define _XOPEN_SOURCE 700
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_fixture.h"
#include "clip_text.h"
#include "content_hash.h"
#include "text_cache.h"
#include "tokenizer.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "unit/test_files.h"

#define TOKENIZER_DIR "tests/data/tokenizer"

typedef struct fixture {
    cache_fixture base; /* the folders, the engine, the model, the warnings */
    sdt_clip_text *encoder;
    sdt_tokenizer *tokenizer;
    sdt_hash128 identity;
    int32_t pad_id;
    size_t progress_calls, progress_last;
} fixture;

static void on_progress(void *ctx, size_t done, size_t total, const char *current)
{
    fixture *f = ctx;
    (void)total;
    (void)current;
    f->progress_calls++;
    f->progress_last = done;
}

static int fixture_open(test_state *t, fixture *f)
{
    memset(f, 0, sizeof *f);
    if (cache_fixture_open(t, &f->base, "text", 3) != 0)
        return -1;
    char *error = NULL;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    int rc = sdt_clip_text_create(&arch->text_encoder, &f->base.model.text_encoder, &f->encoder, &error);
    if (rc == 0)
        rc = sdt_hash_weights(f->base.e, &f->base.model.text_encoder, &f->identity, &error);
    if (rc == 0)
        rc = sdt_tokenizer_load(TOKENIZER_DIR "/vocab.json", TOKENIZER_DIR "/merges.txt", &f->tokenizer,
                                &error);
    if (rc == 0)
        f->pad_id = sdt_tokenizer_eos(f->tokenizer);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static void fixture_close(fixture *f)
{
    sdt_tokenizer_free(f->tokenizer);
    sdt_clip_text_free(f->encoder);
    cache_fixture_close(&f->base);
}

/* Runs a test's body on a fresh fixture, which it then closes. */
static void with_fixture(test_state *t, void (*body)(test_state *t, fixture *f))
{
    fixture f;
    if (fixture_open(t, &f) == 0)
        body(t, &f);
    fixture_close(&f);
}

static sdt_text_cache *open_cache(test_state *t, fixture *f, const sdt_text_cache_options *o)
{
    sdt_text_cache_options options = *o;
    options.warn = cache_fixture_on_warn;
    options.warn_ctx = &f->base;
    options.progress = on_progress;
    options.progress_ctx = f;
    sdt_text_cache *c = NULL;
    char *error = NULL;
    CHECK_MSG(t,
              sdt_text_cache_create(f->base.e, f->encoder, f->tokenizer, f->pad_id, f->identity, &options, &c,
                                    &error) == 0,
              "%s", error ? error : "");
    free(error);
    return c;
}

static int get(test_state *t, sdt_text_cache *c, const sdt_text_request *r, sdt_text_embedding *out)
{
    char *error = NULL;
    int rc = sdt_text_cache_get(c, r, out, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static int same(const sdt_text_embedding *a, const sdt_text_embedding *b)
{
    size_t e = a->dtype == SDT_F16 ? 2 : 4;
    return a->context && b->context && a->length == b->length && a->width == b->width &&
           a->dtype == b->dtype && a->pooled_width == b->pooled_width &&
           memcmp(a->context, b->context, (size_t)a->length * a->width * e) == 0 &&
           (!a->pooled || memcmp(a->pooled, b->pooled, (size_t)a->pooled_width * e) == 0);
}

static void hits_and_misses(test_state *t, fixture *f)
{
    sdt_text_cache_options o = {.cache_dir = f->base.cache_dir, .keep_in_memory = 1};
    sdt_text_cache *c = open_cache(t, f, &o);
    sdt_text_request r = {.caption = "a photo of a cat", .clip_skip = 1, .pooled = 1};
    sdt_text_embedding first = {0}, again = {0}, direct = {0}, other = {0};
    char *error = NULL;
    if (!c || get(t, c, &r, &first) != 0)
        goto done;
    const sdt_clip_config *cc = &f->encoder->config;
    CHECK(t, first.length == 77 && first.width == cc->width && first.pooled &&
                 first.pooled_width == (cc->projection_dim ? cc->projection_dim : cc->width));
    CHECK(t, sdt_text_cache_encode(c, &r, &direct, &error) == 0 && same(&direct, &first));
    CHECK(t, get(t, c, &r, &again) == 0 && same(&again, &first));
    sdt_text_cache_summary s = sdt_text_cache_get_summary(c);
    CHECK(t, s.encoded == 1 && s.in_memory == 1 && s.reused == 0);
    char *path = sdt_text_cache_path(c, first.key);
    CHECK(t, path && access(path, R_OK) == 0);

    /* Each change of the request misses (and gives other outputs). */
    sdt_text_request changes[4] = {r, r, r, r};
    changes[0].caption = "a photo of a dog";
    changes[1].clip_skip = 2;
    changes[2].pooled = 0;
    changes[3].max_token_length = 150;
    for (int i = 0; i < 4; i++) {
        if (get(t, c, &changes[i], &other) == 0) {
            CHECK_MSG(t, !sdt_hash128_equal(other.key, first.key), "change %d", i);
            if (i < 2)
                CHECK_MSG(t,
                          memcmp(other.context, first.context, (size_t)first.length * first.width * 4) != 0,
                          "change %d", i);
            if (i == 2)
                CHECK(t, other.pooled == NULL && other.pooled_width == 0);
            if (i == 3)
                CHECK(t, other.length == 152);
        }
        sdt_text_embedding_free(&other);
    }
    s = sdt_text_cache_get_summary(c);
    CHECK_MSG(t, s.encoded == 5, "encoded %zu", s.encoded);
    /* max_token_length 75 is the same as the default. */
    sdt_text_request same_length = r;
    same_length.max_token_length = 75;
    sdt_hash128 k1, k2;
    CHECK(t, sdt_text_cache_key(c, &r, &k1, &error) == 0 &&
                 sdt_text_cache_key(c, &same_length, &k2, &error) == 0 && sdt_hash128_equal(k1, k2));
    sdt_text_request bad = r;
    bad.clip_skip = 0;
    CHECK(t, sdt_text_cache_key(c, &bad, &k1, &error) != 0);
    CHECK_STR_CONTAINS(t, error, "clip_skip");
    free(error);
    error = NULL;
    sdt_text_cache_free(c);

    /* The next run reads the file: the same bytes. */
    c = open_cache(t, f, &o);
    sdt_text_embedding next = {0};
    if (c && get(t, c, &r, &next) == 0) {
        CHECK(t, same(&next, &first));
        CHECK(t, sdt_text_cache_get_summary(c).reused == 1);
    }
    sdt_text_embedding_free(&next);
    sdt_text_cache_free(c);

    /* A truncated file is rebuilt with a warning. */
    FILE *fp = fopen(path, "r+b");
    if (fp) {
        CHECK(t, ftruncate(fileno(fp), 64) == 0);
        fclose(fp);
    }
    f->base.warnings = 0;
    c = open_cache(t, f, &o);
    if (c && get(t, c, &r, &next) == 0) {
        CHECK(t, same(&next, &first));
        CHECK(t, sdt_text_cache_get_summary(c).rebuilt == 1 && f->base.warnings == 1);
        CHECK_STR_CONTAINS(t, f->base.last_warning, "encoding it again");
    }
    sdt_text_embedding_free(&next);
    sdt_text_cache_free(c);
    free(path);

    /* Another encoder (other weights): another key. */
    sdt_hash128 old_id = f->identity;
    f->identity.lo ^= 1;
    c = open_cache(t, f, &o);
    CHECK(t, c && sdt_text_cache_key(c, &r, &k1, &error) == 0 && !sdt_hash128_equal(k1, first.key));
    f->identity = old_id;

    CHECK(t, test_count_files_named(f->base.cache_dir, ".tmp.") == 0);
done:
    free(error);
    sdt_text_embedding_free(&first);
    sdt_text_embedding_free(&again);
    sdt_text_embedding_free(&direct);
    sdt_text_cache_free(c);
}

static void test_hits_and_misses(test_state *t) { with_fixture(t, hits_and_misses); }

/* prepare: every caption once, a repeat answered from memory, progress per request; F16 storage. */
static void prepare(test_state *t, fixture *f)
{
    sdt_text_cache_options o = {.keep_in_memory = 1, .dtype = SDT_F16};
    sdt_text_cache *c = open_cache(t, f, &o);
    sdt_text_request r[4] = {
        {.caption = "red", .clip_skip = 1},
        {.caption = "green", .clip_skip = 2},
        {.caption = "red", .clip_skip = 1},
        {.caption = "", .clip_skip = 1, .pooled = 1},
    };
    char *error = NULL;
    CHECK_MSG(t, c && sdt_text_cache_prepare(c, r, 4, &error) == 0, "%s", error ? error : "");
    if (c) {
        sdt_text_cache_summary s = sdt_text_cache_get_summary(c);
        CHECK_MSG(t, s.encoded == 3, "encoded %zu", s.encoded);
        CHECK(t, f->progress_calls == 4 && f->progress_last == 4);
        sdt_text_embedding e = {0};
        if (get(t, c, &r[2], &e) == 0)
            CHECK(t, e.dtype == SDT_F16 && e.length == 77 && sdt_text_cache_get_summary(c).in_memory == 2);
        sdt_text_embedding_free(&e);
    }
    free(error);
    sdt_text_cache_free(c);
}

static void test_prepare(test_state *t) { with_fixture(t, prepare); }

TEST_MAIN("text_cache", TEST(test_hits_and_misses), TEST(test_prepare))
