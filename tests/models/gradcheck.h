/* Finite-difference checks of a model backward, for the model tests (fp32, CPU engine).
 *
 * The scalar is L = sum(out * w) in double for a fixed random w: its gradient is what a backward computes
 * when handed dout = w. A check perturbs one tensor along a direction v and compares the directional
 * derivative of L (a 4-point central stencil) with <grad, v>. One number per tensor covers every element
 * at the cost of a few forwards, and is not fooled by the elements a sparse sample would miss. Header-only:
 * each test includes it once. */
#ifndef SDTUNE_TESTS_MODELS_GRADCHECK_H
#define SDTUNE_TESTS_MODELS_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "splitmix64.h"

/* Uniform in [-1, 1). */
static inline float gc_uniform(uint64_t *state)
{
    return (float)((double)(splitmix64_next(state) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

static inline void gc_fill(float *p, int64_t n, float scale, uint64_t *state)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = scale * gc_uniform(state);
}

/* The network under test: runs one forward into *out (which it allocates with sdt_act_alloc or the like);
 * the harness frees out with free_out. */
typedef struct gc_model {
    sdt_engine *e;
    void *self;
    int (*forward)(void *self, sdt_tensor *out);
    void (*free_out)(void *self, sdt_tensor *out);
    const float *w; /* the loss weights, as many as the output has elements */
} gc_model;

/* Runs the forward and sums the terms out * w (their squares when squared); 0, or -1 when it failed. */
static inline int gc_weighted_sum(const gc_model *m, int squared, double *sum)
{
    sdt_tensor out;
    memset(&out, 0, sizeof out);
    if (m->forward(m->self, &out) != 0)
        return -1;
    const float *o = (const float *)out.data;
    int64_t n = sdt_tensor_numel(&out);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double term = (double)o[i] * (double)m->w[i];
        s += squared ? term * term : term;
    }
    m->free_out(m->self, &out);
    *sum = s;
    return 0;
}

/* L = sum(out * w); returns 0, or -1 when the forward failed. */
static inline int gc_loss(const gc_model *m, double *loss) { return gc_weighted_sum(m, 0, loss); }

/* sqrt(sum (out * w)^2) at the current values: the size of the terms the loss sums, which sets its
 * rounding noise. */
static inline int gc_loss_magnitude(const gc_model *m, double *magnitude)
{
    double sum;
    if (gc_weighted_sum(m, 1, &sum) != 0)
        return -1;
    *magnitude = sqrt(sum);
    return 0;
}

/* Perturbs values[0..n) (the tensor the forward reads) along a direction v and compares the directional
 * derivative with <grad, v>; values are restored.
 *
 * v = grad / rms(grad) + U(+-1): the gradient's own direction makes <grad, v> as large as the gradient
 * allows (a random direction alone sees |grad| / sqrt(n) of it and drowns in rounding noise for large
 * tensors), and the random part catches a gradient that is wrong in directions orthogonal to itself. The
 * step is relative to the tensor's RMS, so it stays in the smooth range of every layer.
 *
 * Prints one line and returns a score, |numeric - analytic| / (limit * max(|numeric|, |analytic|) + floor),
 * that passes at <= 1. The floor is the rounding noise of the numeric derivative, 32 fp32 epsilons of
 * sqrt(sum (out * w)^2) over the step: gradients that are exactly zero (a key bias under softmax, a bias in
 * front of a norm of one channel per group) are checked to that accuracy instead of failing on noise.
 * +inf when a forward failed. */
static inline double gc_check(const gc_model *m, const char *what, float *values, const float *grad,
                              int64_t n, double step, double limit, uint64_t seed)
{
    float *orig = malloc((size_t)n * sizeof *orig);
    float *dir = malloc((size_t)n * sizeof *dir);
    if (!orig || !dir) {
        free(orig);
        free(dir);
        return INFINITY;
    }
    memcpy(orig, values, (size_t)n * sizeof *orig);
    double rms = 0.0, grad_rms = 0.0;
    for (int64_t i = 0; i < n; i++) {
        rms += (double)orig[i] * (double)orig[i];
        grad_rms += (double)grad[i] * (double)grad[i];
    }
    rms = n ? sqrt(rms / (double)n) : 0.0;
    grad_rms = n ? sqrt(grad_rms / (double)n) : 0.0;
    double h = step * (rms > 1e-3 ? rms : 1.0);
    uint64_t state = seed;
    gc_fill(dir, n, 1.0f, &state);
    if (grad_rms > 0.0 && isfinite(grad_rms))
        for (int64_t i = 0; i < n; i++)
            dir[i] += (float)((double)grad[i] / grad_rms);
    double analytic = 0.0;
    for (int64_t i = 0; i < n; i++)
        analytic += (double)grad[i] * (double)dir[i];
    const double offsets[4] = {-2.0, -1.0, 1.0, 2.0};
    double losses[4] = {0}, magnitude = 0.0;
    int failed = gc_loss_magnitude(m, &magnitude) != 0;
    for (int k = 0; k < 4 && !failed; k++) {
        for (int64_t i = 0; i < n; i++)
            values[i] = (float)((double)orig[i] + offsets[k] * h * (double)dir[i]);
        failed = gc_loss(m, &losses[k]) != 0;
    }
    memcpy(values, orig, (size_t)n * sizeof *orig);
    free(orig);
    free(dir);
    if (failed) {
        printf("FAIL   %-58s forward failed: %s\n", what, sdt_engine_error(m->e));
        return INFINITY;
    }
    double numeric = (losses[0] - 8.0 * losses[1] + 8.0 * losses[2] - losses[3]) / (12.0 * h);
    double scale = fabs(analytic) > fabs(numeric) ? fabs(analytic) : fabs(numeric);
    double floor = 32.0 * 1.1920929e-7 * magnitude / h;
    double diff = fabs(numeric - analytic);
    double score = diff / (limit * scale + floor);
    printf("%-4s   %-58s analytic %+.6e numeric %+.6e rel %.1e\n", score <= 1.0 ? "" : "FAIL", what, analytic,
           numeric, diff / (scale > 0.0 ? scale : 1.0));
    return score;
}

#endif
