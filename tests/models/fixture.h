/* Test-side helpers for the model golden fixtures (tests/data/models, written by
 * tools/golden/make_model_fixtures.py): fill a parameter table straight from a single-file checkpoint,
 * read reference tensors (PyTorch layouts) into channels-last buffers, and compare with NMSE.
 *
 * Deliberately independent of models/checkpoint.c: a loader bug must not be able to hide a numerics bug
 * (and the other way round). Header-only: each test includes it once. */
#ifndef SDTUNE_TESTS_MODELS_FIXTURE_H
#define SDTUNE_TESTS_MODELS_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "sdtune/dtype.h"
#include "sdtune/safetensors.h"
#include "unit/check.h"

#define FIXTURE_DIR "tests/data/models"

/* Reads `name` from an open file as F32 (any float dtype is converted), checking its element count when
 * expect_numel >= 0. Returns a malloc'd buffer or NULL (with a message on stderr). */
static float *fixture_read_f32(const sdt_safetensors *st, const char *name, int64_t expect_numel)
{
    const sdt_st_tensor *t = sdt_safetensors_find(st, name);
    if (!t) {
        fprintf(stderr, "%s: no tensor %s\n", sdt_safetensors_name(st), name);
        return NULL;
    }
    if (expect_numel >= 0 && (int64_t)t->count != expect_numel) {
        fprintf(stderr, "%s: %s has %llu elements, expected %lld\n", sdt_safetensors_name(st), name,
                (unsigned long long)t->count, (long long)expect_numel);
        return NULL;
    }
    float *out = malloc((t->count ? t->count : 1) * sizeof *out);
    if (!out || sdt_convert(out, SDT_F32, t->data, t->dtype, t->count) != 0) {
        fprintf(stderr, "%s: cannot read %s as f32\n", sdt_safetensors_name(st), name);
        free(out);
        return NULL;
    }
    return out;
}

/* NCHW [B, C, H, W] -> NHWC [B, H, W, C]. */
static void fixture_nchw_to_nhwc(float *dst, const float *src, int64_t b, int64_t c, int64_t h, int64_t w)
{
    for (int64_t n = 0; n < b; n++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++)
                    dst[((n * h + y) * w + x) * c + ch] = src[((n * c + ch) * h + y) * w + x];
}

/* A file-layout tensor into the engine layout of `p` (conv weights [OC, C, KH, KW] -> [OC, KH, KW, C];
 * everything else has the same memory order). */
static void fixture_file_to_engine(const sdt_param *p, float *dst, const float *src)
{
    if (p->kind == SDT_PARAM_CONV_WEIGHT) {
        int64_t oc = p->shape[0], kh = p->shape[1], kw = p->shape[2], c = p->shape[3];
        for (int64_t o = 0; o < oc; o++)
            for (int64_t i = 0; i < c; i++)
                for (int64_t y = 0; y < kh; y++)
                    for (int64_t x = 0; x < kw; x++)
                        dst[((o * kh + y) * kw + x) * c + i] = src[((o * c + i) * kh + y) * kw + x];
    } else {
        memcpy(dst, src, (size_t)sdt_param_numel(p) * sizeof *dst);
    }
}

/* Allocates the table's values as F32 on a CPU engine and fills every parameter from `path`, whose keys
 * are table->prefix + name. Returns 0, or -1 with a message on stderr. */
static int fixture_load_params(sdt_engine *e, sdt_param_table *t, const char *path)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(path, &st, &error) != 0) {
        fprintf(stderr, "%s\n", error);
        free(error);
        return -1;
    }
    if (sdt_param_table_alloc(e, t, SDT_F32, &error) != 0) {
        fprintf(stderr, "%s\n", error);
        free(error);
        sdt_safetensors_close(st);
        return -1;
    }
    int status = 0;
    for (size_t i = 0; i < t->count && status == 0; i++) {
        sdt_param *p = &t->items[i];
        char key[512];
        snprintf(key, sizeof key, "%s%s", t->prefix, p->name);
        float *file = fixture_read_f32(st, key, sdt_param_numel(p));
        if (!file) {
            status = -1;
            break;
        }
        fixture_file_to_engine(p, (float *)p->value.data, file);
        free(file);
    }
    sdt_safetensors_close(st);
    return status;
}

/* sum((a - b)^2) / sum(b^2), in double. */
static double fixture_nmse(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0.0 ? num / den : num;
}

/* Prints one comparison line and returns 1 when it fails (NaN fails). */
static int fixture_expect_close(const char *what, const float *got, const float *want, size_t n, double limit)
{
    double e = fixture_nmse(got, want, n);
    int bad = !(e <= limit);
    printf("%-6s %-60s nmse %.3e (limit %.0e)\n", bad ? "FAIL" : "ok", what, e, limit);
    return bad;
}

/* One step of opening a test's fixture: rc != 0 fails the check with the step's *error (read after the step
 * has run). Returns 1 when the step failed (the caller gives up). */
static inline int fixture_step_failed(test_state *t, int rc, char *const *error)
{
    if (rc != 0)
        CHECK_MSG(t, 0, "%s", *error);
    return rc != 0;
}

/* Frees what every fixture holds: its parameter table, its reference file and its engine. */
static inline void fixture_release(sdt_engine *e, sdt_param_table *table, sdt_safetensors *io)
{
    if (e)
        sdt_param_table_free(e, table);
    if (io)
        sdt_safetensors_close(io);
    if (e)
        sdt_engine_free(e);
}

#endif
