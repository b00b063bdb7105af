/* transformers.optimization.Adafactor (4.44): second moments factored into row
 * and column means over the last two dimensions of >= 2-D tensors, the update
 * clipped to an RMS of clip_threshold, and either the given learning rate or a
 * relative step size. Element operations follow the reference's order in F32;
 * means and norms are accumulated in double (the reference's own summation
 * order is not reproducible, the difference stays at F32 rounding). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim_internal.h"

/* sqrt(mean(x^2)) as the reference's tensor.norm(2) / numel ** 0.5, in F32. */
static float rms_of(const float *x, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)x[i] * (double)x[i];
    return (float)sqrt(sum) / (float)sqrt((double)n);
}

/* The step size: the learning rate, or min(1e-2, 1/sqrt(t)) (warmup_init:
 * min(1e-6 t, 1/sqrt(t))) with relative_step; times max(eps2, RMS(p)) with
 * scale_parameter. The reference multiplies an F32 tensor when the RMS wins the
 * max and Python floats otherwise. */
static double step_size(const sdt_optim_config *c, double lr, int64_t step, float rms)
{
    double rel = lr;
    if (c->relative_step) {
        double min_step = c->warmup_init ? 1e-6 * (double)step : 1e-2;
        rel = fmin(min_step, 1.0 / sqrt((double)step));
    }
    if (!c->scale_parameter)
        return rel;
    if (c->eps2 >= (double)rms)
        return c->eps2 * rel;
    return (double)(rms * (float)rel);
}

int sdt_adafactor_update(const sdt_optim_config *c, sdt_optim_entry *e, double lr, int64_t step)
{
    const size_t n = e->count;
    float *p = e->value, *g = e->grad;
    int slot = 0;
    float *m = c->use_first_moment ? e->state[slot++] : NULL;
    const double size = step_size(c, lr, step, rms_of(p, n));
    const double beta2t = 1.0 - pow((double)step, c->decay_rate);
    const float b2 = (float)beta2t, one_b2 = (float)(1.0 - beta2t), eps1 = (float)c->eps1;
    /* [n] the update (the reference's `update` tensor) */
    float *u = malloc((n ? n : 1) * sizeof *u);
    if (!u)
        return -1;
    for (size_t i = 0; i < n; i++)
        u[i] = g[i] * g[i] + eps1;
    if (e->rows) {
        const size_t rows = e->rows, cols = e->cols;
        float *row = e->state[slot], *col = e->state[slot + 1]; /* [outer, rows], [outer, cols] */
        for (size_t o = 0; o < e->outer; o++) {
            float *uo = u + o * rows * cols, *ro = row + o * rows, *co = col + o * cols;
            for (size_t r = 0; r < rows; r++) {
                double sum = 0.0;
                for (size_t k = 0; k < cols; k++)
                    sum += uo[r * cols + k];
                ro[r] = ro[r] * b2 + one_b2 * (float)(sum / (double)cols);
            }
            for (size_t k = 0; k < cols; k++) {
                double sum = 0.0;
                for (size_t r = 0; r < rows; r++)
                    sum += uo[r * cols + k];
                co[k] = co[k] * b2 + one_b2 * (float)(sum / (double)rows);
            }
            double row_sum = 0.0;
            for (size_t r = 0; r < rows; r++)
                row_sum += ro[r];
            const float row_mean = (float)(row_sum / (double)rows);
            for (size_t r = 0; r < rows; r++) {
                float r_factor = 1.0f / sqrtf(ro[r] / row_mean);
                for (size_t k = 0; k < cols; k++) {
                    float c_factor = 1.0f / sqrtf(co[k]);
                    size_t i = o * rows * cols + r * cols + k;
                    uo[r * cols + k] = r_factor * c_factor * g[i];
                }
            }
        }
    } else {
        float *v = e->state[slot]; /* [n] */
        for (size_t i = 0; i < n; i++) {
            v[i] = v[i] * b2 + one_b2 * u[i];
            u[i] = (1.0f / sqrtf(v[i])) * g[i];
        }
    }
    const float clip = fmaxf(rms_of(u, n) / (float)c->clip_threshold, 1.0f);
    const float lr_f = (float)size;
    for (size_t i = 0; i < n; i++)
        u[i] = (u[i] / clip) * lr_f;
    if (m) {
        const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
        for (size_t i = 0; i < n; i++) {
            m[i] = m[i] * b1 + one_b1 * u[i];
            u[i] = m[i];
        }
    }
    const float decay = (float)(-c->weight_decay * size);
    for (size_t i = 0; i < n; i++) {
        float pi = p[i];
        if (c->weight_decay != 0.0)
            pi = pi + decay * pi;
        p[i] = pi - u[i];
    }
    free(u);
    return 0;
}
