/* The optimizer update on the CPU: the element loops of torch.optim.AdamW and torch.optim.SGD
 * (single-tensor paths) and of lion-pytorch, in the reference's operation order and F32 precision, so a
 * run matches PyTorch to rounding (docs/training.md). The scalars come in ready-made (the args of
 * sdt_optimizer_update); the CUDA kernels (kernels/cuda/cuda_optim.cu) repeat these loops expression by
 * expression. Elements are independent, so the OpenMP split does not change any result. */
#include <math.h>
#include <stdlib.h>

#include "backend.h"
#include "cpu_ops.h"
#include "sdtune/dtype.h"
#include "stochastic_round.h"

/* Below this many elements a tensor is updated by one thread: starting a team costs more. */
enum { PARALLEL_MIN = 1 << 15 };

/* p [n], g [n], m [n], v [n]. */
static void adamw(const sdt_optimizer_update_args *a, float *p, const float *g, float *m, float *v, int64_t n)
{
    const float decay = a->decay, b1 = a->b1, one_b1 = a->one_b1, b2 = a->b2, one_b2 = a->one_b2;
    const float step_size = a->step_size, bc2_sqrt = a->bc2_sqrt, eps = a->eps;
#pragma omp parallel for if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] * decay;
        float mi = m[i] * b1;
        mi = mi + one_b1 * g[i];
        float vi = v[i] * b2;
        vi = vi + one_b2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

static float signf(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* Lion: decoupled decay, p -= lr * sign(b1*m + (1-b1)*g), then m = b2*m + (1-b2)*g.
 * p [n], g [n], m [n]. */
static void lion(const sdt_optimizer_update_args *a, float *p, const float *g, float *m, int64_t n)
{
    const float decay = a->decay, neg_lr = a->neg_lr;
    const float b1 = a->b1, one_b1 = a->one_b1, b2 = a->b2, one_b2 = a->one_b2;
#pragma omp parallel for if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] * decay;
        float u = signf(m[i] * b1 + one_b1 * g[i]);
        p[i] = pi + neg_lr * u;
        m[i] = m[i] * b2 + one_b2 * g[i];
    }
}

/* SGD: the momentum buffer starts as a copy of the first update. Each add-with-alpha is fused as
 * PyTorch's CPU kernel fuses it, which keeps the result identical to rounding. p [n], g [n], buf [n] or
 * NULL without momentum. */
static void sgd(const sdt_optimizer_update_args *a, float *p, const float *g, float *buf, int64_t n)
{
    const float wd = a->weight_decay, mom = a->momentum, one_damp = a->one_dampening, neg_lr = a->neg_lr;
#pragma omp parallel for if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (a->use_weight_decay)
            d = fmaf(wd, p[i], d);
        if (a->use_momentum) {
            float b = a->first_step ? d : fmaf(one_damp, d, buf[i] * mom);
            buf[i] = b;
            d = a->nesterov ? fmaf(mom, b, d) : b;
        }
        p[i] = fmaf(neg_lr, d, p[i]);
    }
}

/* copy [n] (BF16 or F16 bits) = stochastic rounding of p [n]; `tensor` is the position in the list. */
static void round_copy(const sdt_optimizer_update_args *a, size_t tensor, uint16_t *copy, sdt_dtype dtype,
                       const float *p, int64_t n)
{
#pragma omp parallel for if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        uint32_t r = sdt_sr_bits(a->seed, a->step, (uint64_t)tensor, (uint64_t)i);
        copy[i] = dtype == SDT_BF16 ? sdt_sr_bf16(p[i], r) : sdt_sr_f16(p[i], r);
    }
}

/* The F32 values of a BF16/F16 tensor [n] in tmp (its own data when F32). */
static float *widen(const sdt_tensor *t, float *tmp, int64_t n)
{
    if (t->dtype == SDT_F32)
        return t->data;
    sdt_convert(tmp, SDT_F32, t->data, t->dtype, (size_t)n);
    return tmp;
}

int cpu_optimizer_update(const sdt_optimizer_update_args *a)
{
    for (size_t t = 0; t < a->count; t++) {
        const sdt_tensor *param = &a->params[t], *grad = &a->grads[t];
        int64_t n = sdt_tensor_numel(param);
        /* Half parameters and gradients (full_bf16 / full_fp16) go through F32 buffers [n]. */
        float *p_tmp = NULL, *g_tmp = NULL;
        if (param->dtype != SDT_F32 && n > 0 && !(p_tmp = malloc((size_t)n * sizeof *p_tmp)))
            return -1;
        if (grad->dtype != SDT_F32 && n > 0 && !(g_tmp = malloc((size_t)n * sizeof *g_tmp))) {
            free(p_tmp);
            return -1;
        }
        float *p = widen(param, p_tmp, n);
        const float *g = widen(grad, g_tmp, n);
        switch (a->kind) {
        case SDT_UPDATE_ADAMW: adamw(a, p, g, a->state[0][t].data, a->state[1][t].data, n); break;
        case SDT_UPDATE_LION: lion(a, p, g, a->state[0][t].data, n); break;
        case SDT_UPDATE_SGD: sgd(a, p, g, a->use_momentum ? a->state[0][t].data : NULL, n); break;
        }
        if (param->dtype != SDT_F32)
            round_copy(a, t, param->data, param->dtype, p, n);
        else if (a->copies)
            round_copy(a, t, a->copies[t].data, a->copies[t].dtype, p, n);
        free(p_tmp);
        free(g_tmp);
    }
    return 0;
}
