/* Helpers of the adapter tests: random tensors, adapters with their gradients, comparisons. Header-only:
 * each test includes it once. */
#ifndef SDTUNE_TESTS_MODELS_ADAPTER_FIXTURE_H
#define SDTUNE_TESTS_MODELS_ADAPTER_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "layers.h"
#include "models/gradcheck.h"

static inline int alloc_filled(sdt_engine *e, sdt_tensor *t, int ndim, const int64_t *shape, float scale,
                               uint64_t *rng)
{
    if (sdt_act_alloc(e, t, SDT_F32, ndim, shape) != 0)
        return -1;
    gc_fill((float *)t->data, sdt_tensor_numel(t), scale, rng);
    return 0;
}

/* The adapter's weights (down U(+-1/sqrt(fan_in)), up U(+-0.5): not zero, so that down gets a gradient)
 * and zeroed gradients; dropouts set but switched off (training 0). */
static inline int adapter_alloc(sdt_engine *e, sdt_adapter *a, int ndim, const int64_t *down_shape,
                                int64_t out, uint64_t index, uint64_t *rng)
{
    memset(a, 0, sizeof *a);
    int rank = (int)down_shape[0];
    int64_t fan_in = 1;
    for (int i = 1; i < ndim; i++)
        fan_in *= down_shape[i];
    if (alloc_filled(e, &a->down, ndim, down_shape, 1.0f / sqrtf((float)fan_in), rng) != 0 ||
        alloc_filled(e, &a->up, 2, SDT_SHAPE(out, rank), 0.5f, rng) != 0 ||
        sdt_act_zeros(e, &a->down_grad, SDT_F32, ndim, down_shape) != 0 ||
        sdt_act_zeros(e, &a->up_grad, SDT_F32, 2, SDT_SHAPE(out, rank)) != 0)
        return -1;
    a->rank = rank;
    a->scale = 2.0f / (float)rank; /* alpha 2 */
    a->multiplier = 0.8f;
    a->enabled = 1;
    a->dropout = 0.3f;
    a->rank_dropout = 0.25f;
    a->seed = 1234;
    a->index = index;
    return 0;
}

static inline void adapter_free(sdt_engine *e, sdt_adapter *a)
{
    sdt_act_free(e, &a->down);
    sdt_act_free(e, &a->up);
    sdt_act_free(e, &a->down_grad);
    sdt_act_free(e, &a->up_grad);
}

static inline float *clone(const sdt_tensor *t)
{
    size_t n = (size_t)sdt_tensor_numel(t);
    float *copy = malloc((n ? n : 1) * sizeof *copy);
    if (copy)
        memcpy(copy, t->data, n * sizeof *copy);
    return copy;
}

static inline size_t count_different(const float *a, const float *b, int64_t n)
{
    size_t differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += memcmp(&a[i], &b[i], sizeof *a) != 0;
    return differ;
}

static inline int all_zero(const sdt_tensor *t)
{
    const float *v = t->data;
    for (int64_t i = 0; i < sdt_tensor_numel(t); i++)
        if (v[i] != 0.0f)
            return 0;
    return 1;
}

#endif
