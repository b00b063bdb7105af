/* The loss: per-element loss types, the Huber threshold schedule, the per-sample weightings and the
 * reduction to one number, with dL/dpred. */
#include "objective.h"
#include "objective_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

void sdt_loss_options_default(sdt_loss_options *o)
{
    o->prediction = SDT_PREDICT_EPSILON;
    o->loss_type = SDT_LOSS_L2;
    o->huber_schedule = SDT_HUBER_SNR;
    o->huber_c = 0.1;
    o->huber_scale = 1.0;
    o->min_snr_gamma = 0.0;
    o->scale_v_pred_loss_like_noise_pred = false;
    o->v_pred_like_loss = 0.0;
    o->debiased_estimation_loss = false;
}

int sdt_loss_options_check(const sdt_loss_options *o, char *msg, size_t msg_size)
{
    if (o->scale_v_pred_loss_like_noise_pred && o->prediction != SDT_PREDICT_V)
        return sdt_objective_fail(msg, msg_size, "scale_v_pred_loss_like_noise_pred requires v-prediction");
    if (o->v_pred_like_loss != 0.0 && o->prediction == SDT_PREDICT_V)
        return sdt_objective_fail(msg, msg_size, "v_pred_like_loss cannot be used with v-prediction");
    if (!(o->min_snr_gamma >= 0.0) || !isfinite(o->min_snr_gamma))
        return sdt_objective_fail(msg, msg_size, "min_snr_gamma must be a finite number >= 0");
    if (!isfinite(o->v_pred_like_loss))
        return sdt_objective_fail(msg, msg_size, "v_pred_like_loss must be finite");
    if (o->loss_type == SDT_LOSS_HUBER || o->loss_type == SDT_LOSS_SMOOTH_L1) {
        /* The exponential schedule takes log(huber_c); the others need c > 0 for a non-zero loss. */
        if (!(o->huber_c > 0.0) || !isfinite(o->huber_c) || !isfinite(o->huber_scale))
            return sdt_objective_fail(msg, msg_size, "huber_c must be a finite number > 0");
    }
    return 0;
}

double sdt_huber_c(const sdt_schedule *s, const sdt_loss_options *o, int t)
{
    switch (o->huber_schedule) {
    case SDT_HUBER_EXPONENTIAL: {
        double alpha = -log(o->huber_c) / SDT_TRAIN_TIMESTEPS;
        return exp(-alpha * t) * o->huber_scale;
    }
    case SDT_HUBER_SNR: {
        /* Uses the schedule's own (possibly zero-terminal) ac: at ac = 0 sigma is infinite and c -> huber_c.
         */
        double ac = s->alphas_cumprod[t];
        if (ac <= 0.0)
            return o->huber_c;
        double sigma = sqrt((1.0 - ac) / ac);
        return (1.0 - o->huber_c) / ((1.0 + sigma) * (1.0 + sigma)) + o->huber_c;
    }
    case SDT_HUBER_CONSTANT:
    default: return o->huber_c * o->huber_scale;
    }
}

double sdt_loss_timestep_weight(const sdt_schedule *s, const sdt_loss_options *o, int t)
{
    double snr = s->snr[t], w = 1.0;
    bool v = o->prediction == SDT_PREDICT_V;
    if (o->min_snr_gamma > 0.0) {
        double m = snr < o->min_snr_gamma ? snr : o->min_snr_gamma;
        w *= v ? m / (snr + 1.0) : m / snr;
    }
    /* kohya clamps SNR at 1000 for these three so small t does not blow the weights up. */
    double sc = snr < 1000.0 ? snr : 1000.0;
    if (o->scale_v_pred_loss_like_noise_pred)
        w *= sc / (sc + 1.0);
    if (o->v_pred_like_loss != 0.0)
        w *= 1.0 + o->v_pred_like_loss * (sc + 1.0) / sc; /* loss + loss / (S/(S+1)) * k */
    if (o->debiased_estimation_loss)
        w *= v ? 1.0 / (sc + 1.0) : 1.0 / sqrt(sc);
    return w;
}

double sdt_loss_element(sdt_loss_type type, double d, double c)
{
    switch (type) {
    case SDT_LOSS_L1: return fabs(d);
    case SDT_LOSS_HUBER: return 2.0 * c * (sqrt(d * d + c * c) - c);
    case SDT_LOSS_SMOOTH_L1: return 2.0 * (sqrt(d * d + c * c) - c);
    case SDT_LOSS_L2:
    default: return d * d;
    }
}

double sdt_loss_element_grad(sdt_loss_type type, double d, double c)
{
    switch (type) {
    case SDT_LOSS_L1: return d > 0.0 ? 1.0 : d < 0.0 ? -1.0 : 0.0; /* torch's sign: 0 at 0 */
    case SDT_LOSS_HUBER: return 2.0 * c * d / sqrt(d * d + c * c);
    case SDT_LOSS_SMOOTH_L1: return 2.0 * d / sqrt(d * d + c * c);
    case SDT_LOSS_L2:
    default: return 2.0 * d;
    }
}

int sdt_objective_loss(const sdt_schedule *s, const sdt_loss_options *o, int B, int64_t hw, int C,
                       const float *pred, const float *target, const int *t, const float *sample_weight,
                       const float *mask, double *loss, float *grad, double *per_sample, char *msg,
                       size_t msg_size)
{
    if (sdt_loss_options_check(o, msg, msg_size) != 0)
        return -1;
    if (B <= 0 || hw <= 0 || C <= 0)
        return sdt_objective_fail(msg, msg_size, "bad latent shape [%d, %lld, %d]", B, (long long)hw, C);
    for (int b = 0; b < B; b++)
        if (t[b] < 0 || t[b] >= SDT_TRAIN_TIMESTEPS)
            return sdt_objective_fail(msg, msg_size, "timestep %d of sample %d is outside [0, %d)", t[b], b,
                                      SDT_TRAIN_TIMESTEPS);
    int64_t per = hw * C;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double c = sdt_huber_c(s, o, t[b]);
        double w = sdt_loss_timestep_weight(s, o, t[b]) * (sample_weight ? sample_weight[b] : 1.0);
        /* d(mean over batch of w_b * mean over elements)/d pred_i = w_b * m_i * l'(d_i) / (B * per). */
        double gscale = w / ((double)B * (double)per);
        double sum = 0.0;
        for (int64_t p = 0; p < hw; p++) {
            double m = mask ? mask[(int64_t)b * hw + p] : 1.0;
            for (int ch = 0; ch < C; ch++) {
                int64_t i = (int64_t)b * per + p * C + ch;
                double d = (double)pred[i] - (double)target[i];
                sum += m * sdt_loss_element(o->loss_type, d, c);
                if (grad)
                    grad[i] = (float)(gscale * m * sdt_loss_element_grad(o->loss_type, d, c));
            }
        }
        double ls = w * sum / (double)per;
        if (per_sample)
            per_sample[b] = ls;
        total += ls;
    }
    *loss = total / B;
    if (!isfinite(*loss))
        return sdt_objective_fail(msg, msg_size, "the loss is not finite");
    return 0;
}
