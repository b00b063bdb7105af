/* The diffusion training objective: schedule, random numbers, forward process, noise modifications.
 * The loss and its weightings are in objective_loss.c. */
#include "objective.h"
#include "objective_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sdt_objective_fail(char *msg, size_t msg_size, const char *fmt, ...)
{
    if (msg && msg_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- schedule ---- */

void sdt_schedule_init(sdt_schedule *s, bool zero_terminal_snr)
{
    const int n = SDT_TRAIN_TIMESTEPS;
    const double a = sqrt(0.00085), b = sqrt(0.012);
    s->zero_terminal_snr = zero_terminal_snr;
    double prod = 1.0;
    for (int i = 0; i < n; i++) {
        double r = a + (b - a) * (double)i / (double)(n - 1);
        s->betas[i] = r * r;
        prod *= 1.0 - s->betas[i];
        s->alphas_cumprod[i] = prod;
        s->snr[i] = prod / (1.0 - prod);
    }
    if (zero_terminal_snr) {
        /* Shift and scale sqrt(ac) so the last step has none of the signal and the first keeps its value,
         * then rebuild betas from the new cumulative products and recompute them, as diffusers does. */
        double s0 = sqrt(s->alphas_cumprod[0]), sT = sqrt(s->alphas_cumprod[n - 1]);
        double acn[SDT_TRAIN_TIMESTEPS];
        for (int i = 0; i < n; i++) {
            double v = (sqrt(s->alphas_cumprod[i]) - sT) * (s0 / (s0 - sT));
            acn[i] = v * v;
        }
        prod = 1.0;
        for (int i = 0; i < n; i++) {
            double alpha = i == 0 ? acn[0] : acn[i] / acn[i - 1];
            s->betas[i] = 1.0 - alpha;
            prod *= 1.0 - s->betas[i];
            s->alphas_cumprod[i] = prod;
        }
    }
    for (int i = 0; i < n; i++) {
        s->sqrt_alphas_cumprod[i] = sqrt(s->alphas_cumprod[i]);
        s->sqrt_one_minus_alphas_cumprod[i] = sqrt(1.0 - s->alphas_cumprod[i]);
    }
}

/* ---- random numbers ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sdt_rng_init(sdt_rng *r, uint64_t seed, uint64_t stream)
{
    /* Hashing seed and stream together gives independent-looking streams for (seed, 0), (seed, 1), ... */
    r->key =
        mix64(mix64(seed + 0x9E3779B97F4A7C15ull) ^ (stream * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull));
    r->counter = 0;
}

uint64_t sdt_rng_u64(sdt_rng *r)
{
    /* Value k is a hash of (key, k): two rounds so neighbouring counters decorrelate fully. */
    uint64_t k = r->counter++;
    return mix64(mix64(k * 0x9E3779B97F4A7C15ull + r->key) ^ r->key);
}

double sdt_rng_uniform(sdt_rng *r) { return (double)(sdt_rng_u64(r) >> 11) * 0x1.0p-53; }

double sdt_rng_normal(sdt_rng *r)
{
    /* Box-Muller using one of the pair: simpler state (none) at the cost of a second uniform draw. */
    double u1 = 1.0 - sdt_rng_uniform(r); /* (0, 1], so log is finite */
    double u2 = sdt_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

int64_t sdt_rng_int(sdt_rng *r, int64_t lo, int64_t hi)
{
    uint64_t range = (uint64_t)(hi - lo);
    /* Reject the top partial block so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do
        x = sdt_rng_u64(r);
    while (x >= limit);
    return lo + (int64_t)(x % range);
}

void sdt_rng_fill_normal(sdt_rng *r, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)sdt_rng_normal(r);
}

/* ---- forward process ---- */

void sdt_add_noise(const sdt_schedule *s, int t, const float *x0, const float *noise, size_t n, float *out)
{
    double a = s->sqrt_alphas_cumprod[t], b = s->sqrt_one_minus_alphas_cumprod[t];
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(a * x0[i] + b * noise[i]);
}

void sdt_velocity(const sdt_schedule *s, int t, const float *x0, const float *noise, size_t n, float *out)
{
    double a = s->sqrt_alphas_cumprod[t], b = s->sqrt_one_minus_alphas_cumprod[t];
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(a * noise[i] - b * x0[i]);
}

/* ---- noise modifications ---- */

void sdt_noise_offset_apply(float *noise, const float *latents, int B, int64_t hw, int C, double offset,
                            bool adaptive, double adaptive_scale, const float *normals)
{
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            double o = offset;
            if (adaptive) {
                double sum = 0.0;
                for (int64_t p = 0; p < hw; p++)
                    sum += latents[((int64_t)b * hw + p) * C + c];
                o = offset + adaptive_scale * fabs(sum / (double)hw);
                if (o < 0.0)
                    o = 0.0;
            }
            double add = o * normals[b * C + c];
            for (int64_t p = 0; p < hw; p++) {
                float *v = &noise[((int64_t)b * hw + p) * C + c];
                *v = (float)(*v + add);
            }
        }
    }
}

void sdt_multires_level_size(int H, int W, double r, int i, int *hn, int *wn)
{
    double f = pow(r, i);
    int a = (int)((double)H / f), b = (int)((double)W / f);
    *hn = a < 1 ? 1 : a;
    *wn = b < 1 ? 1 : b;
}

/* Source coordinate of output index `o` for PyTorch's bilinear, align_corners=False: centres aligned,
 * negative positions clamped to 0. */
static void bilinear_src(int o, int in, int out, int *i0, int *i1, double *frac)
{
    double scale = (double)in / (double)out;
    double src = ((double)o + 0.5) * scale - 0.5;
    if (src < 0.0)
        src = 0.0;
    int f = (int)src;
    if (f > in - 1)
        f = in - 1;
    *i0 = f;
    *i1 = f + 1 < in ? f + 1 : in - 1;
    *frac = src - f;
}

void sdt_noise_add_upsampled(float *noise, int B, int H, int W, int C, const float *small, int hn, int wn,
                             double scale)
{
    for (int y = 0; y < H; y++) {
        int y0, y1;
        double fy;
        bilinear_src(y, hn, H, &y0, &y1, &fy);
        for (int x = 0; x < W; x++) {
            int x0, x1;
            double fx;
            bilinear_src(x, wn, W, &x0, &x1, &fx);
            for (int b = 0; b < B; b++) {
                const float *sb = small + (size_t)b * hn * wn * C;
                float *d = noise + (((size_t)b * H + y) * W + x) * C;
                for (int c = 0; c < C; c++) {
                    double v00 = sb[((size_t)y0 * wn + x0) * C + c], v01 = sb[((size_t)y0 * wn + x1) * C + c];
                    double v10 = sb[((size_t)y1 * wn + x0) * C + c], v11 = sb[((size_t)y1 * wn + x1) * C + c];
                    double v = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11);
                    d[c] = (float)(d[c] + scale * v);
                }
            }
        }
    }
}

void sdt_noise_normalize_std(float *noise, size_t n)
{
    if (n < 2)
        return;
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        mean += noise[i];
    mean /= (double)n;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (noise[i] - mean) * (noise[i] - mean);
    double sd = sqrt(ss / (double)(n - 1));
    if (!(sd > 0.0))
        return;
    for (size_t i = 0; i < n; i++)
        noise[i] = (float)(noise[i] / sd);
}

/* ---- batch sampling ---- */

void sdt_noise_options_default(sdt_noise_options *o)
{
    memset(o, 0, sizeof *o);
    o->multires_noise_discount = 0.3;
    o->min_timestep = 0;
    o->max_timestep = SDT_TRAIN_TIMESTEPS;
}

int sdt_noise_options_check(const sdt_noise_options *o, char *msg, size_t msg_size)
{
    if (o->min_timestep < 0 || o->max_timestep > SDT_TRAIN_TIMESTEPS || o->min_timestep >= o->max_timestep)
        return sdt_objective_fail(msg, msg_size,
                                  "timestep range [%d, %d) must lie within [0, %d) and not be empty",
                                  o->min_timestep, o->max_timestep, SDT_TRAIN_TIMESTEPS);
    if (o->adaptive_noise && o->noise_offset == 0.0)
        return sdt_objective_fail(msg, msg_size, "adaptive_noise_scale requires noise_offset");
    if (o->multires_noise_iterations < 0)
        return sdt_objective_fail(msg, msg_size, "multires_noise_iterations must not be negative");
    if (!isfinite(o->noise_offset) || !isfinite(o->adaptive_noise_scale) || !isfinite(o->ip_noise_gamma) ||
        !isfinite(o->multires_noise_discount))
        return sdt_objective_fail(msg, msg_size, "noise options must be finite");
    return 0;
}

int sdt_objective_sample_batch(const sdt_schedule *s, const sdt_noise_options *o, sdt_prediction prediction,
                               sdt_rng *rng, const float *x0, int B, int h, int w, int C, int *t_out,
                               float *noise_out, float *noisy_out, float *target_out, char *msg,
                               size_t msg_size)
{
    if (sdt_noise_options_check(o, msg, msg_size) != 0)
        return -1;
    if (B <= 0 || h <= 0 || w <= 0 || C <= 0)
        return sdt_objective_fail(msg, msg_size, "bad latent shape [%d, %d, %d, %d]", B, h, w, C);
    size_t hw = (size_t)h * w, per = hw * C, n = per * B;
    sdt_rng_fill_normal(rng, noise_out, n);

    if (o->noise_offset != 0.0) {
        double off = o->noise_offset;
        if (o->noise_offset_random_strength)
            off *= sdt_rng_uniform(rng);
        float *normals = malloc((size_t)B * C * sizeof *normals);
        if (!normals)
            return sdt_objective_fail(msg, msg_size, "out of memory");
        sdt_rng_fill_normal(rng, normals, (size_t)B * C);
        sdt_noise_offset_apply(noise_out, x0, B, (int64_t)hw, C, off, o->adaptive_noise,
                               o->adaptive_noise_scale, normals);
        free(normals);
    }

    if (o->multires_noise_iterations > 0) {
        /* Level 0 has ratio^0 = 1, so the largest level is the full size. */
        float *level = malloc(n * sizeof *level);
        if (!level)
            return sdt_objective_fail(msg, msg_size, "out of memory");
        for (int i = 0; i < o->multires_noise_iterations; i++) {
            double r = 2.0 + 2.0 * sdt_rng_uniform(rng);
            int hn, wn;
            sdt_multires_level_size(h, w, r, i, &hn, &wn);
            sdt_rng_fill_normal(rng, level, (size_t)B * hn * wn * C);
            sdt_noise_add_upsampled(noise_out, B, h, w, C, level, hn, wn, pow(o->multires_noise_discount, i));
            if (hn == 1 || wn == 1)
                break;
        }
        free(level);
        sdt_noise_normalize_std(noise_out, n);
    }

    for (int b = 0; b < B; b++)
        t_out[b] = (int)sdt_rng_int(rng, o->min_timestep, o->max_timestep);

    if (o->ip_noise_gamma != 0.0) {
        double g = o->ip_noise_gamma;
        if (o->ip_noise_gamma_random_strength)
            g *= sdt_rng_uniform(rng);
        /* The perturbed noise only builds the input; the target keeps the unperturbed noise. */
        for (size_t i = 0; i < n; i++)
            noisy_out[i] = (float)(noise_out[i] + g * sdt_rng_normal(rng));
        for (int b = 0; b < B; b++)
            sdt_add_noise(s, t_out[b], x0 + b * per, noisy_out + b * per, per, noisy_out + b * per);
    } else {
        for (int b = 0; b < B; b++)
            sdt_add_noise(s, t_out[b], x0 + b * per, noise_out + b * per, per, noisy_out + b * per);
    }

    for (int b = 0; b < B; b++) {
        if (prediction == SDT_PREDICT_V)
            sdt_velocity(s, t_out[b], x0 + b * per, noise_out + b * per, per, target_out + b * per);
        else
            memcpy(target_out + b * per, noise_out + b * per, per * sizeof *target_out);
    }
    return 0;
}
