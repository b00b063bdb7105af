/* AdamW with 8-bit moments, after bitsandbytes' block-wise AdamW8bit: each
 * moment is stored as one byte per value (an index into a dynamic quantisation
 * map, signed for exp_avg, unsigned for exp_avg_sq) and one F32 absmax per
 * block of 2048 values. A step dequantises a block, runs the AdamW update in
 * F32 as bitsandbytes' kernel writes it, and requantises each moment to the
 * nearest code of the new block absmax. Tensors below min_8bit_size keep F32
 * moments (bitsandbytes does the same). */
#include <math.h>
#include <string.h>

#include "optim_internal.h"

/* create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): for each
 * exponent i of 0..6, the midpoints of an even split of [0.1, 1] into 2^i
 * (signed) or 2^(i+1) (unsigned) parts, times 10^(i-6); with the sign mirrored
 * when signed, plus 0 and 1, ascending. */
void sdt_optim_dynamic_map(int is_signed, float out[256])
{
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int parts = is_signed ? 1 << i : 1 << (i + 1);
        double scale = pow(10.0, (double)(i - 6));
        for (int j = 0; j < parts; j++) {
            double lo = 0.1 + 0.9 * (double)j / (double)parts;
            double hi = 0.1 + 0.9 * (double)(j + 1) / (double)parts;
            double mid = (lo + hi) / 2.0;
            out[n++] = (float)(scale * mid);
            if (is_signed)
                out[n++] = (float)(-scale * mid);
        }
    }
    out[n++] = 0.0f;
    out[n++] = 1.0f;
    /* insertion sort: 256 values, once per step at most */
    for (int i = 1; i < n; i++) {
        float x = out[i];
        int j = i - 1;
        while (j >= 0 && out[j] > x) {
            out[j + 1] = out[j];
            j--;
        }
        out[j + 1] = x;
    }
}

uint8_t sdt_optim_quantize(const float map[256], float x)
{
    if (x <= map[0])
        return 0;
    if (x >= map[255])
        return 255;
    int lo = 0, hi = 255; /* map[lo] <= x < map[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (map[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    return (uint8_t)(x - map[lo] <= map[hi] - x ? lo : hi);
}

/* The update of values [begin, end) with F32 moments m, v (dequantised or kept
 * as F32). */
static void adam_block(const sdt_optim_config *c, float *p, const float *g, float *m, float *v, size_t n,
                       double lr, int64_t step)
{
    /* bitsandbytes computes these in F32 on the device. */
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    const float correction1 = 1.0f - powf(b1, (float)step);
    const float correction2 = sqrtf(1.0f - powf(b2, (float)step));
    const float step_size = (-(float)lr * correction2) / correction1;
    const float decay = 1.0f - (float)lr * (float)c->weight_decay;
    const float eps_c = eps * correction2;
    for (size_t i = 0; i < n; i++) {
        m[i] = m[i] * b1 + (1.0f - b1) * g[i];
        v[i] = v[i] * b2 + (1.0f - b2) * (g[i] * g[i]);
        float pi = p[i];
        if (c->weight_decay > 0.0)
            pi = pi * decay;
        p[i] = pi + step_size * (m[i] / (sqrtf(v[i]) + eps_c));
    }
}

void sdt_adamw8bit_update(const sdt_optim_config *c, sdt_optim_entry *e, double lr, int64_t step)
{
    if (strcmp(e->state_names[0], "exp_avg") == 0) {
        adam_block(c, e->value, e->grad, e->state[0], e->state[1], e->count, lr, step);
        return;
    }
    float signed_map[256], unsigned_map[256];
    sdt_optim_dynamic_map(1, signed_map);
    sdt_optim_dynamic_map(0, unsigned_map);
    uint8_t *code1 = (uint8_t *)(void *)e->state[0], *code2 = (uint8_t *)(void *)e->state[2];
    float *absmax1 = e->state[1], *absmax2 = e->state[3];
    float m[SDT_OPTIM_8BIT_BLOCK], v[SDT_OPTIM_8BIT_BLOCK]; /* one block of each moment, dequantised */
    for (size_t b = 0, begin = 0; begin < e->count; b++, begin += SDT_OPTIM_8BIT_BLOCK) {
        size_t n = e->count - begin < SDT_OPTIM_8BIT_BLOCK ? e->count - begin : SDT_OPTIM_8BIT_BLOCK;
        for (size_t i = 0; i < n; i++) {
            m[i] = signed_map[code1[begin + i]] * absmax1[b];
            v[i] = unsigned_map[code2[begin + i]] * absmax2[b];
        }
        adam_block(c, e->value + begin, e->grad + begin, m, v, n, lr, step);
        float max1 = 0.0f, max2 = 0.0f;
        for (size_t i = 0; i < n; i++) {
            max1 = fmaxf(max1, fabsf(m[i]));
            max2 = fmaxf(max2, fabsf(v[i]));
        }
        absmax1[b] = max1;
        absmax2[b] = max2;
        for (size_t i = 0; i < n; i++) {
            code1[begin + i] = sdt_optim_quantize(signed_map, max1 > 0.0f ? m[i] / max1 : 0.0f);
            code2[begin + i] = sdt_optim_quantize(unsigned_map, max2 > 0.0f ? v[i] / max2 : 0.0f);
        }
    }
}
