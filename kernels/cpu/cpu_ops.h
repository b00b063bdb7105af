/* The fp32 reference implementation of every op the SD models need: free functions on plain float buffers.
 *
 * Conventions (shared with every backend, see docs/ops.md):
 * - Argument order: outputs first, then inputs, then saved forward tensors, then dimensions.
 * - Layout: activations are channels-last. An image batch is [B, H, W, C]; a token sequence is [B, L, C];
 *   a "row" op flattens every leading dimension into N. Conv weights are [OC, KH, KW, C].
 * - Backward ADDS (+=) into every gradient it writes, inputs and parameters alike; the caller zeroes
 *   gradients first. Any gradient pointer may be NULL: that gradient is not wanted (a frozen weight, an
 *   input that is data) and is not computed.
 * - Sizes are int64_t element counts. Only conv2d (im2col columns, 4-32 MiB) and attention (a block of
 *   scores per thread, a few MiB) take heap scratch; they take it before writing anything and return -1,
 *   every output untouched, when it cannot be had. Every other function cannot fail once the backend has
 *   checked the shapes, and returns nothing.
 * - OpenMP is used where it pays; the results do not depend on the OpenMP thread count (every reduction
 *   is split the same way whatever the number of threads). OpenBLAS's sgemm may round differently with a
 *   different number of OpenBLAS threads: bit-reproducible runs fix OPENBLAS_NUM_THREADS too.
 */
#ifndef SDTUNE_KERNELS_CPU_OPS_H
#define SDTUNE_KERNELS_CPU_OPS_H

#include <stdint.h>

#include "sdtune/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix products and convolutions (cpu_gemm_conv.c) -------------------------------------------- */

/* out = inp @ weight^T + bias.
 * out [N, OC], inp [N, C], weight [OC, C], bias [OC] or NULL. */
void cpu_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t N,
                        int64_t C, int64_t OC);
/* dinp [N, C] += dout @ weight; dweight [OC, C] += dout^T @ inp; dbias [OC] += sum over N of dout. */
void cpu_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int64_t N, int64_t C, int64_t OC);

/* Padding and stride of a 2D convolution. The UNet uses pad 1 on every side (stride 1 or 2); the VAE's
 * downsample pads only bottom and right (pad_bottom = pad_right = 1, stride 2); 1x1 convs pad 0. */
typedef struct cpu_conv2d_geometry {
    int64_t B, H, W, C; /* input [B, H, W, C] */
    int64_t OC, KH, KW; /* weight [OC, KH, KW, C] */
    int64_t stride;     /* same in both directions */
    int64_t pad_top, pad_left, pad_bottom, pad_right;
    int64_t OH, OW; /* output [B, OH, OW, OC]; OH = (H + pad_top + pad_bottom - KH) / stride + 1 */
} cpu_conv2d_geometry;

/* out [B, OH, OW, OC] = conv(inp [B, H, W, C], weight [OC, KH, KW, C]) + bias [OC] (bias may be NULL).
 * 0, or -1 when the im2col scratch cannot be allocated. */
int cpu_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       const cpu_conv2d_geometry *g);
/* dinp [B, H, W, C] +=, dweight [OC, KH, KW, C] +=, dbias [OC] += ; dout [B, OH, OW, OC]. 0 or -1 as
 * forward. */
int cpu_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const cpu_conv2d_geometry *g);

/* ---- normalisation (cpu_norm.c) ---------------------------------------------------------------------- */

/* Group norm over channels-last data, optionally followed by SiLU (the fused form every ResNet uses).
 * out [B, HW, C], mean [B, G] and rstd [B, G] (saved for backward), inp [B, HW, C], weight [C], bias [C].
 * Statistics are accumulated in double: a group holds up to HW * C/G = 4096 * 40 values. */
void cpu_group_norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int64_t B, int64_t HW, int64_t C, int64_t G, float eps,
                            int fuse_silu);
/* dinp [B, HW, C] +=, dweight [C] +=, dbias [C] += ; dout [B, HW, C]; the saved mean and rstd [B, G].
 * With fuse_silu the normalised value is recomputed from inp, mean and rstd (not saved). */
void cpu_group_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *bias, const float *mean, const float *rstd,
                             int64_t B, int64_t HW, int64_t C, int64_t G, int fuse_silu);

/* Layer norm over the last dimension. out [N, C], mean [N], rstd [N], inp [N, C], weight [C], bias [C]. */
void cpu_layer_norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int64_t N, int64_t C, float eps);
/* dinp [N, C] +=, dweight [C] +=, dbias [C] += ; dout [N, C]. */
void cpu_layer_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int64_t N, int64_t C);

/* ---- attention and softmax (cpu_attention.c) --------------------------------------------------------- */

/* Multi-head scaled dot-product attention, heads interleaved in the channel dimension as the projections
 * write them: channel h*D + d of a token is element d of head h.
 * out [B, Lq, H*D] = softmax(q k^T * scale [+ causal mask]) v per batch and head;
 * lse [B, H, Lq] saves each row's log-sum-exp so backward recomputes the probabilities instead of keeping
 * the [Lq, Lk] matrix (4096 x 4096 per head at 512 px).
 * q [B, Lq, H*D], k [B, Lk, H*D], v [B, Lk, H*D]. causal: query i sees keys j <= i only.
 * 0, or -1 when the per-thread scratch cannot be allocated. */
int cpu_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int64_t B,
                          int64_t Lq, int64_t Lk, int64_t H, int64_t D, float scale, int causal);
/* dq [B, Lq, H*D] +=, dk [B, Lk, H*D] +=, dv [B, Lk, H*D] += ; dout [B, Lq, H*D];
 * the saved out [B, Lq, H*D] and lse [B, H, Lq]. 0 or -1 as forward. */
int cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, int64_t B, int64_t Lq,
                           int64_t Lk, int64_t H, int64_t D, float scale, int causal);

/* Softmax over the last dimension. out [N, C], inp [N, C]. */
void cpu_softmax_forward(float *out, const float *inp, int64_t N, int64_t C);
/* dinp [N, C] += ; dout [N, C]; the saved out [N, C]. */
void cpu_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N, int64_t C);

/* ---- elementwise (cpu_elementwise.c) ------------------------------------------------------------------ */

typedef enum cpu_activation {
    CPU_ACT_SILU,       /* x * sigmoid(x) */
    CPU_ACT_GELU,       /* x * Phi(x), exact (erf) */
    CPU_ACT_GELU_TANH,  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    CPU_ACT_QUICK_GELU, /* x * sigmoid(1.702 x), CLIP-L's activation */
} cpu_activation;

/* out [n] = act(inp [n]). */
void cpu_activation_forward(float *out, const float *inp, int64_t n, cpu_activation act);
/* dinp [n] += dout [n] * act'(inp [n]). */
void cpu_activation_backward(float *dinp, const float *dout, const float *inp, int64_t n, cpu_activation act);

/* GEGLU: inp [N, 2F] is split into a = inp[:, :F] and g = inp[:, F:]; out [N, F] = a * gelu(g) (exact). */
void cpu_geglu_forward(float *out, const float *inp, int64_t N, int64_t F);
/* dinp [N, 2F] += ; dout [N, F]; inp [N, 2F]. */
void cpu_geglu_backward(float *dinp, const float *dout, const float *inp, int64_t N, int64_t F);

/* out [n] = a [n] + b [n]. (out may alias a or b.) */
void cpu_add_forward(float *out, const float *a, const float *b, int64_t n);
/* da [n] += dout, db [n] += dout. */
void cpu_add_backward(float *da, float *db, const float *dout, int64_t n);

/* The ResNet time-embedding add: out [B, HW, C] = inp [B, HW, C] + vec [B, C] broadcast over HW. */
void cpu_add_channel_vector_forward(float *out, const float *inp, const float *vec, int64_t B, int64_t HW,
                                    int64_t C);
/* dinp [B, HW, C] += dout; dvec [B, C] += sum over HW of dout. */
void cpu_add_channel_vector_backward(float *dinp, float *dvec, const float *dout, int64_t B, int64_t HW,
                                     int64_t C);

/* Channel concat of two channels-last tensors with the same leading dims (the UNet's skip connections).
 * out [N, Ca + Cb], a [N, Ca], b [N, Cb]. */
void cpu_concat_forward(float *out, const float *a, const float *b, int64_t N, int64_t Ca, int64_t Cb);
/* da [N, Ca] +=, db [N, Cb] += ; dout [N, Ca + Cb]. */
void cpu_concat_backward(float *da, float *db, const float *dout, int64_t N, int64_t Ca, int64_t Cb);

/* Nearest-neighbour 2x upsample. out [B, 2H, 2W, C], inp [B, H, W, C]. */
void cpu_upsample2x_forward(float *out, const float *inp, int64_t B, int64_t H, int64_t W, int64_t C);
/* dinp [B, H, W, C] += sum of the four dout [B, 2H, 2W, C] values each input element was copied to. */
void cpu_upsample2x_backward(float *dinp, const float *dout, int64_t B, int64_t H, int64_t W, int64_t C);

/* Sinusoidal timestep embedding (diffusers get_timestep_embedding). out [B, dim], timesteps [B].
 * half = dim / 2; freq_i = exp(-ln(max_period) * i / (half - freq_shift)); arg = t * freq_i (fp32);
 * out = [sin(arg), cos(arg)], or [cos, sin] with flip_sin_to_cos; an odd dim gets a trailing 0.
 * No backward: timesteps are data. */
void cpu_timestep_embedding(float *out, const float *timesteps, int64_t B, int64_t dim, int flip_sin_to_cos,
                            float freq_shift, float max_period);

/* Weighted MSE: per_sample[b] = mean over N of (pred - target)^2 [B];
 * returns loss = mean over b of weights[b] * per_sample[b] (weights [B] may be NULL: all 1).
 * pred [B, N], target [B, N]. per_sample may be NULL. Accumulated in double. */
float cpu_mse_loss_forward(float *per_sample, const float *pred, const float *target, const float *weights,
                           int64_t B, int64_t N);
/* dpred [B, N] += dloss * weights[b] * 2 (pred - target) / (B * N). */
void cpu_mse_loss_backward(float *dpred, const float *pred, const float *target, const float *weights,
                           float dloss, int64_t B, int64_t N);

/* Small helpers. */
void cpu_fill(float *out, float value, int64_t n);    /* out [n] = value */
void cpu_scale(float *inout, float alpha, int64_t n); /* inout [n] *= alpha */
/* inout [B, ..., R] (n values, per_sample = n / B) *= mask * factor: sdt_dropout_scale (backend.h). */
struct sdt_dropout_args;
void cpu_dropout_scale(float *inout, int64_t n, int64_t per_sample, int64_t rank,
                       const struct sdt_dropout_args *a);
void cpu_axpy(float *y, float alpha, const float *x, int64_t n); /* y [n] += alpha * x [n] */

/* ---- reductions (cpu_reduce.c) ------------------------------------------------------------------------ */

/* sum + the sum of x[i]^2 over x [n] (F32, F16 or BF16), added in index order in double. */
double cpu_add_squares(double sum, const void *x, sdt_dtype dtype, int64_t n);

/* ---- the optimizer update (cpu_optim.c) ------------------------------------------------------------- */

/* AdamW, Lion or SGD over every tensor of the list, then the stochastic-rounded low-precision copies (or
 * half parameters written back with the same rounding); the tensors are host memory that passed
 * backend.c's checks (backend.h, sdt_optimizer_update). -1 when out of memory for the F32 buffers of a
 * half parameter. */
struct sdt_optimizer_update_args;
int cpu_optimizer_update(const struct sdt_optimizer_update_args *args);

#ifdef __cplusplus
}
#endif
#endif
