/* The samplers of sample images (samplers.h): diffusers 0.30.3's schedulers, step for step, with the
 * constructor arguments of kohya's get_my_scheduler. The grids are computed in float64 from the same
 * scaled_linear schedule the objective trains with; diffusers keeps them in float32, a difference far
 * below the 1e-5 the fixtures are matched to. */
#include "samplers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"

typedef struct sampler_name_entry {
    const char *name;
    sdt_sampler_kind kind;
} sampler_name_entry;

static const sampler_name_entry sampler_names[] = {
    {"ddim", SDT_SAMPLER_DDIM},
    {"euler", SDT_SAMPLER_EULER},
    {"k_euler", SDT_SAMPLER_EULER},
    {"euler_a", SDT_SAMPLER_EULER_A},
    {"k_euler_a", SDT_SAMPLER_EULER_A},
    /* kohya's dpmsolver++ is DPMSolverMultistepScheduler with its defaults: solver order 2, i.e. 2M */
    {"dpmsolver++", SDT_SAMPLER_DPMPP_2M},
    {"dpm++2m", SDT_SAMPLER_DPMPP_2M},
    {"dpm++2m_karras", SDT_SAMPLER_DPMPP_2M_KARRAS},
};

static const char *const kohya_unimplemented[] = {
    "ddpm",    "pndm",    "lms",       "k_lms",     "heun",      "dpm_2",
    "k_dpm_2", "dpm_2_a", "k_dpm_2_a", "dpmsolver", "dpmsingle",
};

int sdt_sampler_parse(const char *name, sdt_sampler_kind *out, char **error)
{
    if (!name)
        return sdt_set_error(error, "no sampler name");
    for (size_t i = 0; i < sizeof sampler_names / sizeof sampler_names[0]; i++) {
        if (strcmp(name, sampler_names[i].name) == 0) {
            *out = sampler_names[i].kind;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof kohya_unimplemented / sizeof kohya_unimplemented[0]; i++)
        if (strcmp(name, kohya_unimplemented[i]) == 0)
            return sdt_set_error(error, "sampler %s is not implemented yet", name);
    return sdt_set_error(error,
                         "unknown sampler \"%s\" (known: ddim, euler, euler_a, dpmsolver++, dpm++2m, "
                         "dpm++2m_karras, k_euler, k_euler_a)",
                         name);
}

const char *sdt_sampler_name(sdt_sampler_kind kind)
{
    switch (kind) {
    case SDT_SAMPLER_DDIM: return "ddim";
    case SDT_SAMPLER_EULER: return "euler";
    case SDT_SAMPLER_EULER_A: return "euler_a";
    case SDT_SAMPLER_DPMPP_2M: return "dpm++2m";
    case SDT_SAMPLER_DPMPP_2M_KARRAS: return "dpm++2m_karras";
    }
    return "?";
}

/* ---- grids ---- */

/* diffusers' alphas_cumprod as PyTorch computes it: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2
 * in float32 (torch's linspace fills the first half from the start, the second from the end), the cumulative
 * product accumulated in double and stored as float32. The float32 rounding matters: 1 - ac[0] = 0.00085
 * carries a relative error of ~1e-4, which moves sigma_min, and with it the Karras grid, by 3e-5. */
static void diffusers_alphas_cumprod(double *ac)
{
    const int T = SDT_TRAIN_TIMESTEPS;
    const float start = (float)sqrt(0.00085), end = (float)sqrt(0.012);
    const float step = (end - start) / (float)(T - 1);
    double product = 1.0;
    for (int i = 0; i < T; i++) {
        float root = i < T / 2 ? start + step * (float)i : end - step * (float)(T - 1 - i);
        float beta = root * root;
        product *= (double)(1.0f - beta);
        ac[i] = (double)(float)product;
    }
}

/* Training sigma of every integer timestep, sqrt((1 - ac) / ac), in float32 as diffusers computes it. */
static void training_sigmas(const double *ac, double *sigmas)
{
    for (int t = 0; t < SDT_TRAIN_TIMESTEPS; t++) {
        float a = (float)ac[t];
        sigmas[t] = (double)sqrtf((1.0f - a) / a);
    }
}

/* numpy.interp of the training sigmas at a fractional timestep in [0, 999]. */
static double interp_sigma(const double *sigmas, double t)
{
    if (t <= 0)
        return sigmas[0];
    if (t >= SDT_TRAIN_TIMESTEPS - 1)
        return sigmas[SDT_TRAIN_TIMESTEPS - 1];
    int lo = (int)floor(t);
    double w = t - lo;
    return sigmas[lo] + w * (sigmas[lo + 1] - sigmas[lo]);
}

/* diffusers' _sigma_to_t: the fractional timestep whose log-sigma (linearly interpolated) is that of sigma.
 */
static double sigma_to_t(const double *log_sigmas, double sigma)
{
    double log_sigma = log(fmax(sigma, 1e-10));
    /* low = the last index whose log-sigma is <= log_sigma (log-sigmas increase with t), at most 998 */
    int low = 0;
    for (int i = 0; i < SDT_TRAIN_TIMESTEPS; i++)
        if (log_sigma - log_sigmas[i] >= 0)
            low = i;
    if (low > SDT_TRAIN_TIMESTEPS - 2)
        low = SDT_TRAIN_TIMESTEPS - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - log_sigma) / (lo - hi);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1 - w) * low + w * (low + 1);
}

int sdt_sampler_plan_init(sdt_sampler_plan *p, sdt_sampler_kind kind, int steps, bool zero_terminal_snr,
                          char **error)
{
    memset(p, 0, sizeof *p);
    if (steps < 1 || steps > SDT_TRAIN_TIMESTEPS)
        return sdt_set_error(error, "sample steps %d out of range (1..%d)", steps, SDT_TRAIN_TIMESTEPS);
    sdt_schedule *s = malloc(sizeof *s);
    p->timesteps = calloc((size_t)steps, sizeof *p->timesteps);
    if (!s || !p->timesteps) {
        free(s);
        free(p->timesteps);
        return sdt_set_error(error, "out of memory");
    }
    sdt_schedule_init(s, zero_terminal_snr);
    /* the rescaled schedule has no float32 twin to match; the plain one takes diffusers' rounding */
    if (zero_terminal_snr)
        memcpy(p->alphas_cumprod, s->alphas_cumprod, sizeof p->alphas_cumprod);
    else
        diffusers_alphas_cumprod(p->alphas_cumprod);
    free(s);
    p->kind = kind;
    p->steps = steps;
    const int T = SDT_TRAIN_TIMESTEPS;

    if (kind == SDT_SAMPLER_DDIM) {
        /* "leading" spacing plus steps_offset 1 */
        int ratio = T / steps;
        for (int k = 0; k < steps; k++)
            p->timesteps[k] = (double)((steps - 1 - k) * ratio + 1);
        p->init_noise_sigma = 1.0;
        return 0;
    }

    p->sigmas = calloc((size_t)steps + 1, sizeof *p->sigmas);
    double *train_sigma = malloc(sizeof(double) * T);
    if (!p->sigmas || !train_sigma) {
        free(train_sigma);
        sdt_sampler_plan_free(p);
        return sdt_set_error(error, "out of memory");
    }
    double ac[SDT_TRAIN_TIMESTEPS];
    memcpy(ac, p->alphas_cumprod, sizeof ac);
    if (zero_terminal_snr)
        ac[T - 1] = 0x1.0p-24; /* diffusers keeps the first sigma finite */
    training_sigmas(ac, train_sigma);

    if (kind == SDT_SAMPLER_EULER || kind == SDT_SAMPLER_EULER_A) {
        /* "linspace": float timesteps, unrounded; steps_offset does not apply */
        for (int k = 0; k < steps; k++) {
            /* numpy's linspace: j * (999 / (N - 1)), the end point exact */
            int j = steps - 1 - k;
            double t = steps == 1       ? 0.0
                       : j == steps - 1 ? (double)(T - 1)
                                        : j * ((double)(T - 1) / (steps - 1));
            p->timesteps[k] = (double)(float)t; /* numpy linspace in float32 */
            p->sigmas[k] = interp_sigma(train_sigma, p->timesteps[k]);
        }
        p->sigmas[steps] = 0.0;
    } else if (kind == SDT_SAMPLER_DPMPP_2M) {
        /* "linspace" over steps + 1 points, rounded, the last dropped */
        for (int k = 0; k < steps; k++) {
            int j = steps - k;
            double t = j == steps ? (double)(T - 1) : j * ((double)(T - 1) / steps);
            p->timesteps[k] = nearbyint(t); /* numpy rounds half to even, as nearbyint does */
            p->sigmas[k] = interp_sigma(train_sigma, p->timesteps[k]);
        }
        p->sigmas[steps] = 0.0;
        p->init_noise_sigma = 1.0;
    } else { /* Karras: rho 7 between the schedule's extreme sigmas, timesteps rounded */
        double *log_sigmas = malloc(sizeof(double) * T);
        if (!log_sigmas) {
            free(train_sigma);
            sdt_sampler_plan_free(p);
            return sdt_set_error(error, "out of memory");
        }
        for (int t = 0; t < T; t++)
            log_sigmas[t] = (double)logf((float)train_sigma[t]);
        const double rho = 7.0;
        double min_inv = pow(train_sigma[0], 1.0 / rho), max_inv = pow(train_sigma[T - 1], 1.0 / rho);
        for (int k = 0; k < steps; k++) {
            double ramp = steps == 1 ? 0.0 : (double)k / (double)(steps - 1);
            p->sigmas[k] = pow(max_inv + ramp * (min_inv - max_inv), rho);
            p->timesteps[k] = nearbyint(sigma_to_t(log_sigmas, p->sigmas[k]));
        }
        p->sigmas[steps] = 0.0;
        p->init_noise_sigma = 1.0;
        free(log_sigmas);
    }
    free(train_sigma);
    /* diffusers stores the grid in float32 */
    double max_sigma = 0;
    for (int k = 0; k <= steps; k++) {
        p->sigmas[k] = (double)(float)p->sigmas[k];
        max_sigma = fmax(max_sigma, p->sigmas[k]);
    }
    if (kind == SDT_SAMPLER_EULER || kind == SDT_SAMPLER_EULER_A)
        p->init_noise_sigma = max_sigma; /* "linspace": the largest sigma itself */
    return 0;
}

void sdt_sampler_plan_free(sdt_sampler_plan *p)
{
    free(p->timesteps);
    free(p->sigmas);
    p->timesteps = NULL;
    p->sigmas = NULL;
}

/* ---- steps ---- */

/* DDIM, eta 0, with x0 clipped to [-1, 1] (kohya forces clip_sample) and alpha_prod of the step before
 * t = 0 taken as 1 (set_alpha_to_one). */
static void ddim_step(const sdt_sampler_plan *p, sdt_prediction prediction, int k, float *x, const float *out,
                      size_t n)
{
    int t = (int)p->timesteps[k];
    int prev = t - SDT_TRAIN_TIMESTEPS / p->steps;
    double a = p->alphas_cumprod[t];
    double a_prev = prev >= 0 ? p->alphas_cumprod[prev] : 1.0;
    double sa = sqrt(a), sb = sqrt(1.0 - a);
    double s_prev = sqrt(a_prev), dir = sqrt(1.0 - a_prev);
    for (size_t i = 0; i < n; i++) {
        double x0, eps;
        if (prediction == SDT_PREDICT_V) {
            x0 = sa * x[i] - sb * out[i];
            eps = sa * out[i] + sb * x[i];
        } else {
            x0 = (x[i] - sb * out[i]) / sa;
            eps = out[i];
        }
        x0 = x0 < -1.0 ? -1.0 : x0 > 1.0 ? 1.0 : x0;
        x[i] = (float)(s_prev * x0 + dir * eps);
    }
}

/* x0 from the model output in VE space (Euler, Euler ancestral). */
static double ve_x0(sdt_prediction prediction, double sigma, double x, double out)
{
    if (prediction == SDT_PREDICT_V)
        return out * (-sigma / sqrt(sigma * sigma + 1.0)) + x / (sigma * sigma + 1.0);
    return x - sigma * out;
}

static void euler_step(const sdt_sampler_plan *p, sdt_prediction prediction, int k, float *x,
                       const float *out, size_t n)
{
    double sigma = p->sigmas[k], dt = p->sigmas[k + 1] - sigma;
    for (size_t i = 0; i < n; i++) {
        double d = (x[i] - ve_x0(prediction, sigma, x[i], out[i])) / sigma;
        x[i] = (float)(x[i] + d * dt);
    }
}

static void euler_ancestral_step(const sdt_sampler_plan *p, sdt_prediction prediction, int k, float *x,
                                 const float *out, const float *noise, size_t n)
{
    double from = p->sigmas[k], to = p->sigmas[k + 1];
    double up = sqrt(to * to * (from * from - to * to) / (from * from));
    double down = sqrt(to * to - up * up);
    for (size_t i = 0; i < n; i++) {
        double d = (x[i] - ve_x0(prediction, from, x[i], out[i])) / from;
        x[i] = (float)(x[i] + d * (down - from) + noise[i] * up);
    }
}

/* DPM-Solver++ works in VP space: alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t. */
static void vp_of(double sigma, double *alpha_t, double *sigma_t)
{
    *alpha_t = 1.0 / sqrt(sigma * sigma + 1.0);
    *sigma_t = sigma * *alpha_t;
}

/* Converts the model output to the data prediction D = x0 in place (out becomes x0). */
static void dpm_data_prediction(sdt_prediction prediction, double sigma, const float *x, float *out, size_t n)
{
    double alpha_t, sigma_t;
    vp_of(sigma, &alpha_t, &sigma_t);
    for (size_t i = 0; i < n; i++)
        out[i] = prediction == SDT_PREDICT_V ? (float)(alpha_t * x[i] - sigma_t * out[i])
                                             : (float)((x[i] - sigma_t * out[i]) / alpha_t);
}

/* One DPM-Solver++ step from sigmas[k] to sigmas[k + 1]: first order with d1 NULL, else the 2M midpoint
 * update with the previous step's data prediction. */
static void dpm_step(const sdt_sampler_plan *p, int k, float *x, const float *d0, const float *d_prev,
                     size_t n)
{
    double a_s, s_s, a_t, s_t;
    vp_of(p->sigmas[k], &a_s, &s_s);
    vp_of(p->sigmas[k + 1], &a_t, &s_t);
    if (p->sigmas[k + 1] == 0.0) { /* lambda_t = +inf: the update returns the data prediction */
        for (size_t i = 0; i < n; i++)
            x[i] = d0[i];
        return;
    }
    double lambda_s = log(a_s) - log(s_s), lambda_t = log(a_t) - log(s_t);
    double h = lambda_t - lambda_s;
    double ratio = s_t / s_s, coef = a_t * (exp(-h) - 1.0);
    if (!d_prev) {
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(ratio * x[i] - coef * d0[i]);
        return;
    }
    double a_p, s_p;
    vp_of(p->sigmas[k - 1], &a_p, &s_p);
    double lambda_p = log(a_p) - log(s_p);
    double r0 = (lambda_s - lambda_p) / h;
    for (size_t i = 0; i < n; i++) {
        double d1 = (d0[i] - d_prev[i]) / r0;
        x[i] = (float)(ratio * x[i] - coef * d0[i] - 0.5 * coef * d1);
    }
}

int sdt_sampler_run(const sdt_sampler_plan *p, sdt_prediction prediction, float *x, size_t n,
                    sdt_sampler_model_fn model, void *model_ctx, sdt_sampler_noise_fn noise, void *noise_ctx,
                    char **error)
{
    if (p->kind == SDT_SAMPLER_EULER_A && !noise)
        return sdt_set_error(error, "euler_a needs a noise source");
    /* x_in, out, previous data prediction (DPM) / noise (Euler a): [n] each */
    float *x_in = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n);
    float *extra = malloc(sizeof(float) * n);
    if (!x_in || !out || !extra) {
        free(x_in);
        free(out);
        free(extra);
        return sdt_set_error(error, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(x[i] * p->init_noise_sigma);
    int rc = 0, have_prev = 0;
    for (int k = 0; k < p->steps && rc == 0; k++) {
        double in_scale = 1.0;
        if (p->kind == SDT_SAMPLER_EULER || p->kind == SDT_SAMPLER_EULER_A)
            in_scale = 1.0 / sqrt(p->sigmas[k] * p->sigmas[k] + 1.0);
        for (size_t i = 0; i < n; i++)
            x_in[i] = (float)(x[i] * in_scale);
        rc = model(model_ctx, x_in, p->timesteps[k], out, error);
        if (rc != 0)
            break;
        switch (p->kind) {
        case SDT_SAMPLER_DDIM: ddim_step(p, prediction, k, x, out, n); break;
        case SDT_SAMPLER_EULER: euler_step(p, prediction, k, x, out, n); break;
        case SDT_SAMPLER_EULER_A:
            noise(noise_ctx, k, extra, n);
            euler_ancestral_step(p, prediction, k, x, out, extra, n);
            break;
        case SDT_SAMPLER_DPMPP_2M:
        case SDT_SAMPLER_DPMPP_2M_KARRAS: {
            dpm_data_prediction(prediction, p->sigmas[k], x, out, n);
            /* first order on the first step and (lower_order_final, final sigma 0) the last */
            int second_order = have_prev && k < p->steps - 1;
            dpm_step(p, k, x, out, second_order ? extra : NULL, n);
            memcpy(extra, out, sizeof(float) * n);
            have_prev = 1;
            break;
        }
        }
    }
    free(x_in);
    free(out);
    free(extra);
    return rc;
}
