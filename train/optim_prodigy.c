/* prodigyopt.Prodigy 1.0: Adam whose step size d * lr is estimated from the run
 * itself. d is one value for the whole optimizer (prodigyopt keeps it in every
 * parameter group but reads it from the first and writes the same value to
 * all), so every group shares it; groups may differ in learning rate only by
 * being 0. Scalars are doubles as in the reference (Python floats); tensor
 * operations are F32, the dot products and sums accumulated in double. */
#include <math.h>
#include <string.h>

#include "optim_internal.h"
#include "sdtune/strutil.h"

enum { D, D_MAX, D_NUMERATOR, K };

void sdt_prodigy_init(sdt_optimizer *o)
{
    o->scalar_count = 4;
    o->scalars[D] = o->cfg.d0;
    o->scalars[D_MAX] = o->cfg.d0;
    o->scalars[D_NUMERATOR] = 0.0;
    o->scalars[K] = 0.0;
    o->last_d = o->cfg.d0;
}

int sdt_prodigy_step(sdt_optimizer *o, char **error)
{
    const sdt_optim_config *c = &o->cfg;
    const double beta1 = c->beta1, beta2 = c->beta2;
    const double beta3 = c->beta3 < 0.0 ? sqrt(beta2) : c->beta3;
    double d = o->scalars[D], d_max = o->scalars[D_MAX], d_numerator = o->scalars[D_NUMERATOR];
    const double k = o->scalars[K];
    double lr = 0.0;
    for (int gi = 0; gi < o->groups; gi++)
        lr = fmax(lr, o->lr[gi]);
    for (int gi = 0; gi < o->groups; gi++)
        if (o->lr[gi] != lr && o->lr[gi] != 0.0)
            return sdt_set_error(error,
                                 "Prodigy: the parameter groups' learning rates must be equal or 0 "
                                 "(group %d "
                                 "has %g, another %g); set unet_lr and text_encoder_lr alike",
                                 gi, o->lr[gi], lr);
    const double bias_correction =
        c->use_bias_correction ? sqrt(1.0 - pow(beta2, k + 1.0)) / (1.0 - pow(beta1, k + 1.0)) : 1.0;
    const double dlr = d * lr * bias_correction;
    d_numerator *= beta3;
    double d_denom = 0.0;
    const float wd = (float)c->weight_decay;
    const float m_alpha = (float)(d * (1.0 - beta1)), v_alpha = (float)(d * d * (1.0 - beta2));
    const float b1 = (float)beta1, b2 = (float)beta2, b3 = (float)beta3;
    const float s_alpha = (float)(c->safeguard_warmup ? (d / c->d0) * d : (d / c->d0) * dlr);
    for (size_t i = 0; i < o->count; i++) {
        sdt_optim_entry *e = &o->entries[i];
        float *p = e->value, *g = e->grad;
        /* prodigyopt takes p0 when it first sees the parameter, at the first step */
        if (o->step == 0)
            memcpy(e->state[3], p, e->count * sizeof(float));
        float *m = e->state[0], *v = e->state[1], *s = e->state[2], *p0 = e->state[3];
        if (c->weight_decay != 0.0 && !c->decouple)
            for (size_t j = 0; j < e->count; j++)
                g[j] = g[j] + wd * p[j]; /* the reference changes the gradient in place too */
        if (!(o->lr[e->group] > 0.0))
            continue;
        double dot = 0.0, abs_sum = 0.0;
        for (size_t j = 0; j < e->count; j++)
            dot += (double)g[j] * (double)(p0[j] - p[j]);
        d_numerator += (d / c->d0) * dlr * (double)(float)dot;
        for (size_t j = 0; j < e->count; j++) {
            m[j] = m[j] * b1 + m_alpha * g[j];
            v[j] = v[j] * b2 + v_alpha * g[j] * g[j];
            s[j] = s[j] * b3 + s_alpha * g[j];
            abs_sum += fabs((double)s[j]);
        }
        d_denom += (double)(float)abs_sum;
    }
    /* No gradient at all: the reference returns before storing anything or
     * counting the step. */
    if (d_denom == 0.0)
        return 0;
    if (lr > 0.0) {
        double d_hat = c->d_coef * d_numerator / d_denom;
        if (d == c->d0)
            d = fmax(d, d_hat);
        d_max = fmax(d_max, d_hat);
        d = fmin(d_max, d * c->growth_rate);
    }
    const float eps_d = (float)(d * c->eps), neg_dlr = (float)(-dlr);
    const float decay = (float)(-c->weight_decay * dlr);
    for (size_t i = 0; i < o->count; i++) {
        sdt_optim_entry *e = &o->entries[i];
        float *p = e->value, *m = e->state[0], *v = e->state[1];
        for (size_t j = 0; j < e->count; j++) {
            float denom = sqrtf(v[j]) + eps_d;
            float pj = p[j];
            if (c->weight_decay != 0.0 && c->decouple)
                pj = pj + decay * pj;
            p[j] = pj + neg_dlr * (m[j] / denom);
        }
    }
    o->scalars[D] = d;
    o->scalars[D_MAX] = d_max;
    o->scalars[D_NUMERATOR] = d_numerator;
    o->scalars[K] = k + 1.0;
    o->last_d = d;
    return 0;
}
