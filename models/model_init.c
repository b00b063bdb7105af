/* The model object (three parameter tables built from an arch) and its random initialisation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_internal.h"
#include "sdtune/strutil.h"

const char *sdt_component_name(int component)
{
    switch (component) {
    case SDT_COMPONENT_UNET: return "unet";
    case SDT_COMPONENT_TEXT_ENCODER: return "text_encoder";
    case SDT_COMPONENT_VAE: return "vae";
    }
    return "?";
}

sdt_param_table *sdt_model_table(sdt_model *m, int component)
{
    switch (component) {
    case SDT_COMPONENT_UNET: return &m->unet;
    case SDT_COMPONENT_TEXT_ENCODER: return &m->text_encoder;
    case SDT_COMPONENT_VAE: return &m->vae;
    }
    return NULL;
}

const sdt_param_table *sdt_model_table_const(const sdt_model *m, int component)
{
    return sdt_model_table((sdt_model *)m, component);
}

void shape_text(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf + len, size - len, "[");
    for (int d = 0; d < ndim && len < size; d++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (len < size)
        snprintf(buf + len, size - len, "]");
}

int sdt_model_init(sdt_model *m, const sdt_model_arch *arch, char **error)
{
    memset(m, 0, sizeof *m);
    m->arch = *arch;
    m->family = SDT_MODEL_FAMILY_SD1;
    if (sdt_unet_params(&arch->unet, &m->unet, error) != 0)
        return -1;
    if (sdt_clip_params(&arch->text_encoder, "text_encoder", SDT_PREFIX_CLIP_L, &m->text_encoder, error) != 0)
        return -1;
    return sdt_vae_params(&arch->vae, &m->vae, error);
}

void sdt_model_free(sdt_engine *e, sdt_model *m)
{
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        sdt_param_table_free(e, sdt_model_table(m, c));
    free(m->arch_notes);
    memset(m, 0, sizeof *m);
}

int sdt_model_alloc(sdt_engine *e, sdt_model *m, sdt_dtype dtype, char **error)
{
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        if (sdt_param_table_alloc(e, sdt_model_table(m, c), dtype, error) != 0)
            return -1;
    return 0;
}

/* ---- generator ----------------------------------------------------------------------------------------- */

#define GOLDEN 0x9E3779B97F4A7C15ull

/* splitmix64's output function: a bijective mix, so distinct counters give independent-looking words. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The n-th word of the splitmix64 stream that starts at key, in [0, 1) with 53 bits. */
static double unit(uint64_t key, uint64_t n)
{
    return (double)(mix64(key + GOLDEN * (n + 1)) >> 11) * 0x1.0p-53;
}

void init_gen_for(init_gen *g, const sdt_param *p, uint64_t seed, int component, size_t param)
{
    memset(g, 0, sizeof *g);
    g->key = mix64(mix64(seed + GOLDEN * (uint64_t)(component + 1)) + GOLDEN * ((uint64_t)param + 1));
    switch (p->kind) {
    case SDT_PARAM_NORM_WEIGHT: g->constant = 1.0f; break;
    case SDT_PARAM_NORM_BIAS: g->constant = 0.0f; break;
    case SDT_PARAM_EMBEDDING:
        g->mode = INIT_NORMAL;
        g->scale = 0.02;
        break;
    case SDT_PARAM_LINEAR_WEIGHT:
    case SDT_PARAM_CONV_WEIGHT:
    case SDT_PARAM_BIAS:
        /* PyTorch's kaiming_uniform_(a=sqrt(5)) for weights and its bias rule both give 1/sqrt(fan_in). */
        g->mode = INIT_UNIFORM;
        g->scale = 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1));
        break;
    }
}

float init_gen_value(const init_gen *g, uint64_t index)
{
    switch (g->mode) {
    case INIT_CONSTANT: return g->constant;
    case INIT_UNIFORM: return (float)((2.0 * unit(g->key, index) - 1.0) * g->scale);
    case INIT_NORMAL: {
        /* Box-Muller on two words of the stream; 1 - u keeps the logarithm's argument in (0, 1]. */
        double u1 = 1.0 - unit(g->key, 2 * index), u2 = unit(g->key, 2 * index + 1);
        return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2) * g->scale);
    }
    }
    return 0.0f;
}

float sdt_init_value(const sdt_param *p, uint64_t seed, int component, size_t param, uint64_t index)
{
    init_gen g;
    init_gen_for(&g, p, seed, component, param);
    return init_gen_value(&g, index);
}

int sdt_model_init_random(sdt_engine *e, sdt_model *m, uint64_t seed, char **error)
{
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        sdt_param_table *t = sdt_model_table(m, c);
        if (!t->allocated) {
            *error = sdt_format("%s: values are not allocated", t->component);
            return -1;
        }
        for (size_t i = 0; i < t->count; i++) {
            sdt_param *p = &t->items[i];
            int64_t n = sdt_param_numel(p);
            float *values = malloc((size_t)(n ? n : 1) * sizeof *values); /* [numel] engine layout */
            size_t bytes = sdt_tensor_bytes(&p->value);
            void *converted = p->value.dtype == SDT_F32 ? NULL : malloc(bytes ? bytes : 1);
            if (!values || (p->value.dtype != SDT_F32 && !converted)) {
                free(values);
                free(converted);
                *error = sdt_format("%s: out of memory initialising %s", t->component, p->name);
                return -1;
            }
            init_gen g;
            init_gen_for(&g, p, seed, c, i);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
#endif
            for (int64_t k = 0; k < n; k++)
                values[k] = init_gen_value(&g, (uint64_t)k);
            const void *host = values;
            if (converted) {
                sdt_param_encode(p, converted, values, (size_t)n); /* F8 weights get their scale here */
                host = converted;
            }
            int rc = sdt_engine_upload(e, &p->value, host, bytes);
            free(values);
            free(converted);
            if (rc != 0) {
                *error = sdt_format("%s: %s: %s", t->component, p->name, sdt_engine_error(e));
                return -1;
            }
        }
    }
    m->has_values = 1;
    return 0;
}
