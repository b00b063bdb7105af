/* Parameter tables: building, name lookup, counting, allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "sdtune/strutil.h"

const char *sdt_param_kind_name(sdt_param_kind kind)
{
    switch (kind) {
    case SDT_PARAM_LINEAR_WEIGHT: return "linear";
    case SDT_PARAM_CONV_WEIGHT: return "conv";
    case SDT_PARAM_BIAS: return "bias";
    case SDT_PARAM_NORM_WEIGHT: return "norm weight";
    case SDT_PARAM_NORM_BIAS: return "norm bias";
    case SDT_PARAM_EMBEDDING: return "embedding";
    }
    return "?";
}

void sdt_param_table_init(sdt_param_table *t, const char *component, const char *prefix)
{
    memset(t, 0, sizeof *t);
    t->component = sdt_strdup(component);
    t->prefix = sdt_strdup(prefix);
}

void sdt_param_table_free(sdt_engine *e, sdt_param_table *t)
{
    if (t->allocated && e)
        sdt_arenas_free(e, &t->arenas);
    sdt_arena_plan_free(&t->plan);
    free(t->specs);
    for (size_t i = 0; i < t->count; i++)
        free(t->items[i].name);
    free(t->items);
    sdt_name_index_free(&t->index);
    free(t->component);
    free(t->prefix);
    memset(t, 0, sizeof *t);
}

sdt_param *sdt_param_find(sdt_param_table *t, const char *name)
{
    long long i = sdt_name_index_get(&t->index, name);
    return i >= 0 ? &t->items[i] : NULL;
}

sdt_param *sdt_param_findf(sdt_param_table *t, const char *fmt, ...)
{
    char name[512];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(name, sizeof name, fmt, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    return sdt_param_find(t, name);
}

sdt_param *sdt_param_add(sdt_param_table *t, const char *name, sdt_param_kind kind, int ndim,
                         const int64_t *shape, int64_t fan_in)
{
    if (t->allocated || ndim < 1 || ndim > SDT_MAX_DIMS || sdt_param_find(t, name))
        return NULL;
    if (t->count == t->capacity) {
        size_t capacity = t->capacity ? t->capacity * 2 : 256;
        sdt_param *items = realloc(t->items, capacity * sizeof *items);
        if (!items)
            return NULL;
        t->items = items;
        t->capacity = capacity;
    }
    sdt_param *p = &t->items[t->count];
    memset(p, 0, sizeof *p);
    p->name = sdt_strdup(name);
    p->kind = kind;
    p->ndim = ndim;
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    p->fan_in = fan_in;
    if (kind == SDT_PARAM_CONV_WEIGHT && ndim == 4) {
        /* engine [OC, KH, KW, C] -> file [OC, C, KH, KW] */
        p->file_ndim = 4;
        p->file_shape[0] = shape[0];
        p->file_shape[1] = shape[3];
        p->file_shape[2] = shape[1];
        p->file_shape[3] = shape[2];
    } else {
        p->file_ndim = ndim;
        memcpy(p->file_shape, shape, (size_t)ndim * sizeof *shape);
    }
    if (!p->name || sdt_name_index_put(&t->index, p->name, t->count) != 0) {
        free(p->name);
        return NULL;
    }
    t->count++;
    return p;
}

static int add_named(sdt_param_table *t, const char *base, const char *suffix, sdt_param_kind kind, int ndim,
                     const int64_t *shape, int64_t fan_in, sdt_param **out)
{
    char name[512];
    int n = snprintf(name, sizeof name, "%s.%s", base, suffix);
    if (n < 0 || (size_t)n >= sizeof name)
        return -1;
    sdt_param *p = sdt_param_add(t, name, kind, ndim, shape, fan_in);
    if (out)
        *out = p;
    return p ? 0 : -1;
}

static int add_bias(sdt_param_table *t, const char *base, int64_t out, int64_t fan_in)
{
    return add_named(t, base, "bias", SDT_PARAM_BIAS, 1, &out, fan_in, NULL);
}

int sdt_param_add_linear(sdt_param_table *t, const char *base, int64_t out, int64_t in, int has_bias)
{
    int64_t shape[2] = {out, in};
    if (add_named(t, base, "weight", SDT_PARAM_LINEAR_WEIGHT, 2, shape, in, NULL) != 0)
        return -1;
    return has_bias ? add_bias(t, base, out, in) : 0;
}

int sdt_param_add_linear_conv1x1(sdt_param_table *t, const char *base, int64_t out, int64_t in, int has_bias)
{
    int64_t shape[2] = {out, in};
    sdt_param *p = NULL;
    if (add_named(t, base, "weight", SDT_PARAM_LINEAR_WEIGHT, 2, shape, in, &p) != 0)
        return -1;
    /* The checkpoint keeps the conv's [OC, C, 1, 1]; the memory is the same as [OC, C]. */
    p->file_ndim = 4;
    p->file_shape[2] = 1;
    p->file_shape[3] = 1;
    return has_bias ? add_bias(t, base, out, in) : 0;
}

int sdt_param_add_conv(sdt_param_table *t, const char *base, int64_t out, int64_t in, int kh, int kw,
                       int has_bias)
{
    int64_t shape[4] = {out, kh, kw, in};
    int64_t fan_in = in * kh * kw;
    if (add_named(t, base, "weight", SDT_PARAM_CONV_WEIGHT, 4, shape, fan_in, NULL) != 0)
        return -1;
    return has_bias ? add_bias(t, base, out, fan_in) : 0;
}

int sdt_param_add_norm(sdt_param_table *t, const char *base, int64_t channels)
{
    if (add_named(t, base, "weight", SDT_PARAM_NORM_WEIGHT, 1, &channels, channels, NULL) != 0)
        return -1;
    return add_named(t, base, "bias", SDT_PARAM_NORM_BIAS, 1, &channels, channels, NULL);
}

int sdt_param_add_embedding(sdt_param_table *t, const char *name, int64_t rows, int64_t dim)
{
    int64_t shape[2] = {rows, dim};
    return sdt_param_add(t, name, SDT_PARAM_EMBEDDING, 2, shape, dim) ? 0 : -1;
}

int64_t sdt_param_numel(const sdt_param *p)
{
    int64_t n = 1;
    for (int d = 0; d < p->ndim; d++)
        n *= p->shape[d];
    return n;
}

int64_t sdt_param_table_numel(const sdt_param_table *t)
{
    int64_t n = 0;
    for (size_t i = 0; i < t->count; i++)
        n += sdt_param_numel(&t->items[i]);
    return n;
}

sdt_dtype sdt_param_storage_dtype(const sdt_param *p, sdt_dtype dtype, int f8_weights)
{
    if (p->trainable)
        return SDT_F32; /* trainable weights keep fp32 master copies whatever the frozen weights' dtype */
    if (f8_weights && (p->kind == SDT_PARAM_LINEAR_WEIGHT || p->kind == SDT_PARAM_CONV_WEIGHT))
        return SDT_F8_E4M3;
    return dtype;
}

int sdt_param_encode(sdt_param *p, void *dst, const float *values, size_t n)
{
    if (p->value.dtype == SDT_F8_E4M3) {
        p->value.scale = sdt_f8e4m3_scale_for(values, n);
        sdt_f32_to_f8e4m3_scaled(dst, values, n, p->value.scale);
        return 0;
    }
    return sdt_convert(dst, p->value.dtype, values, SDT_F32, n);
}

int sdt_param_table_alloc(sdt_engine *e, sdt_param_table *t, sdt_dtype dtype, char **error)
{
    if (t->allocated) {
        *error = sdt_format("%s: parameters are already allocated", t->component);
        return -1;
    }
    size_t trainable = 0;
    for (size_t i = 0; i < t->count; i++)
        trainable += t->items[i].trainable != 0;
    size_t n_specs = t->count + trainable;
    t->specs = calloc(n_specs ? n_specs : 1, sizeof *t->specs);
    if (!t->specs) {
        *error = sdt_format("%s: out of memory", t->component);
        return -1;
    }
    size_t s = 0;
    for (size_t i = 0; i < t->count; i++) {
        sdt_param *p = &t->items[i];
        sdt_tensor_spec *spec = &t->specs[s++];
        spec->name = p->name;
        spec->life = p->trainable ? SDT_LIFE_TRAINABLE : SDT_LIFE_FROZEN;
        spec->dtype = sdt_param_storage_dtype(p, dtype, t->f8_weights);
        spec->ndim = p->ndim;
        memcpy(spec->shape, p->shape, sizeof spec->shape);
        spec->bind = &p->value;
        if (p->trainable) {
            sdt_tensor_spec *g = &t->specs[s++];
            *g = *spec;
            g->life = SDT_LIFE_GRADS;
            g->dtype = SDT_F32;
            g->bind = &p->grad;
        }
    }
    if (sdt_arena_plan_build(&t->plan, t->specs, n_specs, error) != 0)
        goto fail;
    if (sdt_arenas_alloc(e, &t->plan, &t->arenas, error) != 0) {
        sdt_arena_plan_free(&t->plan);
        goto fail;
    }
    t->allocated = 1;
    return sdt_param_table_zero_grads(e, t) == 0 ? 0 : (*error = sdt_strdup(sdt_engine_error(e)), -1);
fail:
    free(t->specs);
    t->specs = NULL;
    return -1;
}

int sdt_param_table_zero_grads(sdt_engine *e, sdt_param_table *t)
{
    for (size_t i = 0; i < t->count; i++) {
        sdt_param *p = &t->items[i];
        if (p->grad.data && sdt_fill(e, &p->grad, 0.0f) != 0)
            return -1;
    }
    return 0;
}
