/* Group norm (optionally fused with SiLU) and layer norm over channels-last data, forward and backward.
 *
 * Statistics are two passes in double: the mean first, then the mean squared deviation, which stays accurate
 * when the mean is large next to the spread (a one-pass E[x^2] - E[x]^2 would cancel). The variance is the
 * biased one and rstd = 1 / sqrt(var + eps), as in PyTorch. mean and rstd are saved as float, and both the
 * forward output and the backward use those saved values, so the two agree exactly on what was normalised.
 *
 * Backward, with xhat = (x - mean) * rstd, y = xhat * weight + bias, dy the gradient at y and
 * g = dy * weight, the standard result over the n values of a group (or row) is
 *     dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *     dweight += sum of dy * xhat,  dbias += sum of dy (over every position that uses the channel).
 * The per-group sums are accumulated in double by the one task that owns the group. The parameter
 * gradients sum over all images and positions, so they get their own pass in which a task owns a block of
 * channels and adds in a fixed order: no two threads share an accumulator and the results do not depend on
 * the thread count.
 */
#include "cpu_ops.h"

#include <math.h>

#ifndef _OPENMP
/* Without OpenMP the pragmas below are meant to be ignored; -Wall -Werror would reject them instead. */
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif

/* Below this many elements touched, a loop stays on one thread: waking the team costs more than it saves. */
#define PAR_MIN_WORK 32768

/* Channels per task in the parameter-gradient passes: 256 bytes of each row, so that a task reads runs of
 * cache lines (a plain column sum reading one line per row ran 3-7x slower on large tensors), while
 * C = 320 still makes 5 tasks. */
#define CHANNEL_BLOCK 64

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The gradient at the affine output y: dout itself, or through the fused SiLU, whose derivative is
 * s (1 + y (1 - s)) with s = sigmoid(y). */
static inline float grad_at_affine(float dout, float y, int fuse_silu)
{
    if (!fuse_silu)
        return dout;
    const float s = 1.0f / (1.0f + expf(-y));
    return dout * s * (1.0f + y * (1.0f - s));
}

/* mean and 1 / sqrt(biased variance + eps) of the n = rows * width values x[i * stride + j]. */
static void strided_stats(float *mean, float *rstd, const float *x, int64_t rows, int64_t width,
                          int64_t stride, float eps)
{
    const int64_t n = rows * width;
    double sum = 0.0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < width; j++)
            sum += x[i * stride + j];
    const double mu = n ? sum / (double)n : 0.0;
    double ss = 0.0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < width; j++) {
            const double d = x[i * stride + j] - mu;
            ss += d * d;
        }
    const double var = n ? ss / (double)n : 0.0;
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(var + (double)eps));
}

/* ---- group norm ------------------------------------------------------------------------------------- */

void cpu_group_norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int64_t B, int64_t HW, int64_t C, int64_t G, float eps,
                            int fuse_silu)
{
    const int64_t Cg = C / G;
    /* One task per (image, group): the group is HW rows of Cg channels, a row stride C apart. */
#pragma omp parallel for schedule(static) if (B * HW * C > PAR_MIN_WORK)
    for (int64_t bg = 0; bg < B * G; bg++) {
        const float *x = inp + (bg / G) * HW * C + (bg % G) * Cg; /* [HW, Cg], rows C apart */
        strided_stats(&mean[bg], &rstd[bg], x, HW, Cg, C, eps);
    }

    /* One task per pixel, so each writes a contiguous row of C. */
#pragma omp parallel for schedule(static) if (B * HW * C > PAR_MIN_WORK)
    for (int64_t row = 0; row < B * HW; row++) {
        /* x and o [C], m and r [G] */
        const float *x = inp + row * C, *m = mean + (row / HW) * G, *r = rstd + (row / HW) * G;
        float *o = out + row * C;
        for (int64_t grp = 0; grp < G; grp++)
            for (int64_t c = grp * Cg; c < (grp + 1) * Cg; c++) {
                const float y = (x[c] - m[grp]) * r[grp] * weight[c] + bias[c];
                o[c] = fuse_silu ? y / (1.0f + expf(-y)) : y;
            }
    }
}

void cpu_group_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *bias, const float *mean, const float *rstd,
                             int64_t B, int64_t HW, int64_t C, int64_t G, int fuse_silu)
{
    const int64_t Cg = C / G, n = HW * Cg;
    if (dinp) {
        /* One task per (image, group): its two sums, then its dx. */
#pragma omp parallel for schedule(static) if (B * HW * C > PAR_MIN_WORK)
        for (int64_t bg = 0; bg < B * G; bg++) {
            const int64_t off = (bg / G) * HW * C + (bg % G) * Cg; /* element (hw, j) at off + hw * C + j */
            const float m = mean[bg], r = rstd[bg];
            const float *w = weight + (bg % G) * Cg, *bi = bias + (bg % G) * Cg; /* [Cg] */
            double sum_g = 0.0, sum_gx = 0.0;
            for (int64_t hw = 0; hw < HW; hw++)
                for (int64_t j = 0; j < Cg; j++) {
                    const int64_t i = off + hw * C + j;
                    const float xhat = (inp[i] - m) * r;
                    const float gx = grad_at_affine(dout[i], xhat * w[j] + bi[j], fuse_silu) * w[j];
                    sum_g += gx;
                    sum_gx += (double)gx * xhat;
                }
            const float mean_g = n ? (float)(sum_g / (double)n) : 0.0f;
            const float mean_gx = n ? (float)(sum_gx / (double)n) : 0.0f;
            for (int64_t hw = 0; hw < HW; hw++)
                for (int64_t j = 0; j < Cg; j++) {
                    const int64_t i = off + hw * C + j;
                    const float xhat = (inp[i] - m) * r;
                    const float gx = grad_at_affine(dout[i], xhat * w[j] + bi[j], fuse_silu) * w[j];
                    dinp[i] += r * (gx - mean_g - xhat * mean_gx);
                }
        }
    }
    if (!dweight && !dbias)
        return;
    /* One task per block of channels, summing over every image and pixel in order. */
    const int64_t nblocks = (C + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if (B * HW * C > PAR_MIN_WORK)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        const int64_t c0 = blk * CHANNEL_BLOCK, nc = min64(CHANNEL_BLOCK, C - c0);
        /* [nc] each: the sums, and the group of each channel */
        double acc_w[CHANNEL_BLOCK] = {0}, acc_b[CHANNEL_BLOCK] = {0};
        int64_t grp[CHANNEL_BLOCK];
        for (int64_t j = 0; j < nc; j++)
            grp[j] = (c0 + j) / Cg;
        for (int64_t b = 0; b < B; b++)
            for (int64_t hw = 0; hw < HW; hw++) {
                const int64_t i0 = (b * HW + hw) * C + c0;
                for (int64_t j = 0; j < nc; j++) {
                    const int64_t c = c0 + j, bg = b * G + grp[j];
                    const float xhat = (inp[i0 + j] - mean[bg]) * rstd[bg];
                    const float dy = grad_at_affine(dout[i0 + j], xhat * weight[c] + bias[c], fuse_silu);
                    acc_w[j] += (double)dy * xhat;
                    acc_b[j] += dy;
                }
            }
        for (int64_t j = 0; j < nc; j++) {
            if (dweight)
                dweight[c0 + j] = (float)(dweight[c0 + j] + acc_w[j]);
            if (dbias)
                dbias[c0 + j] = (float)(dbias[c0 + j] + acc_b[j]);
        }
    }
}

/* ---- layer norm ------------------------------------------------------------------------------------- */

void cpu_layer_norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int64_t N, int64_t C, float eps)
{
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN_WORK)
    for (int64_t row = 0; row < N; row++) {
        const float *x = inp + row * C; /* [C] */
        float *o = out + row * C;       /* [C] */
        strided_stats(&mean[row], &rstd[row], x, 1, C, C, eps);
        const float m = mean[row], r = rstd[row];
        for (int64_t c = 0; c < C; c++)
            o[c] = (x[c] - m) * r * weight[c] + bias[c];
    }
}

void cpu_layer_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int64_t N, int64_t C)
{
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN_WORK)
        for (int64_t row = 0; row < N; row++) {
            const float *x = inp + row * C, *dy = dout + row * C; /* [C] */
            float *dx = dinp + row * C;                           /* [C] */
            const float m = mean[row], r = rstd[row];
            double sum_g = 0.0, sum_gx = 0.0;
            for (int64_t c = 0; c < C; c++) {
                const float gx = dy[c] * weight[c];
                sum_g += gx;
                sum_gx += (double)gx * ((x[c] - m) * r);
            }
            const float mean_g = C ? (float)(sum_g / (double)C) : 0.0f;
            const float mean_gx = C ? (float)(sum_gx / (double)C) : 0.0f;
            for (int64_t c = 0; c < C; c++) {
                const float xhat = (x[c] - m) * r;
                dx[c] += r * (dy[c] * weight[c] - mean_g - xhat * mean_gx);
            }
        }
    }
    if (!dweight && !dbias)
        return;
    /* One task per block of channels, summing over the rows in order. */
    const int64_t nblocks = (C + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN_WORK)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        const int64_t c0 = blk * CHANNEL_BLOCK, nc = min64(CHANNEL_BLOCK, C - c0);
        double acc_w[CHANNEL_BLOCK] = {0}, acc_b[CHANNEL_BLOCK] = {0}; /* [nc] */
        for (int64_t row = 0; row < N; row++) {
            const float *x = inp + row * C + c0, *dy = dout + row * C + c0; /* [nc] */
            const float m = mean[row], r = rstd[row];
            for (int64_t j = 0; j < nc; j++) {
                acc_w[j] += (double)dy[j] * ((x[j] - m) * r);
                acc_b[j] += dy[j];
            }
        }
        for (int64_t j = 0; j < nc; j++) {
            if (dweight)
                dweight[c0 + j] = (float)(dweight[c0 + j] + acc_w[j]);
            if (dbias)
                dbias[c0 + j] = (float)(dbias[c0 + j] + acc_b[j]);
        }
    }
}
