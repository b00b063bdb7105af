/* The op interface the models call. One engine context per process owns the backend (CPU or CUDA) and its
 * state; every op takes it first. Ops check their tensors (device, dtype, shape) and return 0, or -1 with
 * the reason in sdt_engine_error(); they never exit.
 *
 * Tensors carry a dtype (F32, F16, BF16) and a device. The CPU backend computes in fp32, converting F16 and
 * BF16 tensors on the way in and out (accumulating gradients are widened, added to and rounded back).
 * The weight of linear and conv2d (forward and backward) may also be F8_E4M3 with a per-tensor scale: a
 * frozen weight (its gradient must be NULL) that the backends dequantise (code * scale, in fp32) before
 * computing, exactly as if the dequantised values had been passed.
 *
 * Layouts and gradient rules are those of kernels/cpu/cpu_ops.h (channels-last activations, conv weights
 * [OC, KH, KW, C], backward adds into every gradient, a NULL gradient is not computed); docs/ops.md lists
 * every op with its tensors.
 */
#ifndef SDTUNE_KERNELS_BACKEND_H
#define SDTUNE_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "sdtune/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDT_MAX_DIMS 5

typedef enum sdt_device_kind {
    SDT_DEVICE_CPU = 0,
    SDT_DEVICE_CUDA = 1,
    /* Tests only (kernels/cpu/backend_guarded.c): the CPU ops on memory the host cannot touch between ops,
     * so that host code that reads or writes device tensors faults on a machine without a GPU. Never a
     * training setting; docs/ops.md says how to use it. */
    SDT_DEVICE_GUARDED = 2,
} sdt_device_kind;

/* A view of memory the caller owns (an arena slice, a mapped file): the struct is a value, cheap to copy. */
typedef struct sdt_tensor {
    void *data;
    sdt_dtype dtype;
    sdt_device_kind device;
    int ndim;
    int64_t shape[SDT_MAX_DIMS];
    /* F8_E4M3 only: real value = stored value * scale (sdt_f8e4m3_scale_for). 0 reads as 1, so zeroed
     * structs and views stay valid; ignored for every other dtype. */
    float scale;
} sdt_tensor;

/* A CPU tensor view; shape has ndim entries (ndim <= SDT_MAX_DIMS). */
sdt_tensor sdt_tensor_view(void *data, sdt_dtype dtype, int ndim, const int64_t *shape);
/* "CPU", "GPU" or "guarded device", for messages. */
const char *sdt_device_kind_name(sdt_device_kind device);
int64_t sdt_tensor_numel(const sdt_tensor *t);
/* The factor stored values are multiplied by: t->scale for an F8_E4M3 tensor (1 when 0), else 1. */
float sdt_tensor_scale(const sdt_tensor *t);
size_t sdt_tensor_bytes(const sdt_tensor *t);
/* Writes "[2, 64, 64, 320] f32" into buf. */
void sdt_tensor_describe(const sdt_tensor *t, char *buf, size_t size);

/* ---- the engine context ---------------------------------------------------------------------------- */

typedef struct sdt_engine sdt_engine;

typedef struct sdt_engine_options {
    sdt_device_kind device;
    int device_index; /* CUDA device number */
    int threads;      /* CPU threads for OpenMP and BLAS; 0 = all cores */
    /* Only deterministic algorithms (the `deterministic` setting): on CUDA, cuDNN convolutions without
     * atomics (a shape with none is refused, naming it) and cuBLASLt GEMMs without split-K atomics. Every
     * CPU op is deterministic already. */
    int deterministic;
} sdt_engine_options;

/* Returns 0 and *out, or -1 with *error set (caller frees) when the device cannot be used. */
int sdt_engine_create(const sdt_engine_options *options, sdt_engine **out, char **error);
void sdt_engine_free(sdt_engine *engine);
/* "cpu", "cuda" or "guarded". */
const char *sdt_engine_backend_name(const sdt_engine *engine);
sdt_device_kind sdt_engine_device(const sdt_engine *engine);
/* The message of the last op that failed ("conv2d: weight is [8, 3, 3, 4] f32, expected ..."). */
const char *sdt_engine_error(const sdt_engine *engine);
/* Sets the error message (printf-style); returns -1 so callers can `return sdt_engine_fail(...)`. */
int sdt_engine_fail(sdt_engine *engine, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Device memory: CPU memory is 64-byte aligned host memory; CUDA memory is device memory; guarded memory is
 * page-aligned host memory the host may touch only through ops, upload and download. */
void *sdt_engine_alloc(sdt_engine *engine, size_t bytes);
void sdt_engine_dealloc(sdt_engine *engine, void *ptr);
/* The engine allocator's high-water mark: the most bytes of device memory live at once since the engine
 * was created or the last reset, and what is live now (the memory plan is checked against these). A
 * backend that does not count reports 0. Reset sets the peak to what is live now. */
size_t sdt_engine_peak_bytes(const sdt_engine *engine);
size_t sdt_engine_live_bytes(const sdt_engine *engine);
void sdt_engine_reset_peak(sdt_engine *engine);
/* Copies between host memory and a tensor of the engine's device (plain memcpy on the CPU). */
int sdt_engine_upload(sdt_engine *engine, sdt_tensor *dst, const void *host, size_t bytes);
int sdt_engine_download(sdt_engine *engine, void *host, const sdt_tensor *src, size_t bytes);
/* Waits for queued work (a no-op on the CPU). */
int sdt_engine_sync(sdt_engine *engine);

/* How often host code crossed to the device through the three calls above since the engine was created,
 * on every backend. On a GPU each upload, download and sync waits for the stream, so a stretch of work
 * with none of them is one the device runs without the host in the middle (and one a CUDA graph could
 * capture); tests take a snapshot before and after such a stretch and compare. Copies a backend makes
 * inside an op are not host code's and are not counted. */
typedef struct sdt_host_transfers {
    int64_t uploads, downloads, syncs;
    int64_t upload_bytes, download_bytes;
} sdt_host_transfers;
sdt_host_transfers sdt_engine_host_transfers(const sdt_engine *engine);
/* Memory the engine's device can still give and its size: on CUDA cudaMemGetInfo plus what the engine's
 * memory pool keeps unused; on the CPU (and the guarded backend) the host's MemAvailable and MemTotal.
 * Returns 0, or -1 with the reason in sdt_engine_error(). */
int sdt_engine_memory_info(sdt_engine *engine, size_t *free_bytes, size_t *total_bytes);

/* ---- op timing (benchmarks only) ---------------------------------------------------------------------- */

/* Wall time spent in one op of the interface, summed over its calls since timing was turned on. */
typedef struct sdt_op_time {
    const char *op; /* "linear_forward", "conv2d_backward", ... (static) */
    double seconds;
    int64_t calls;
} sdt_op_time;

/* Turns per-op timing on (all sums reset to zero) or off; off by default and free when off. On a device
 * that queues work (CUDA) every timed op waits for the device before and after it, which removes the
 * overlap of launches with execution: the totals then show where the time goes, but the step is slower,
 * so use it for benchmarks only and not for the step time itself. */
void sdt_engine_set_op_timing(sdt_engine *engine, int on);
/* Copies the sums of every op called at least once into out (at most max); returns how many. */
size_t sdt_engine_op_times(const sdt_engine *engine, sdt_op_time *out, size_t max);

/* ---- ops --------------------------------------------------------------------------------------------- */
/* Shapes name the dimensions as cpu_ops.h does. "rows" ops accept any rank and flatten leading dims. */

/* out [..., OC] = inp [..., C] @ weight [OC, C]^T + bias [OC] (bias may be NULL). */
int sdt_linear_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                       const sdt_tensor *bias);
int sdt_linear_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                        const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight);

typedef struct sdt_conv2d_params {
    int stride;
    int pad_top, pad_left, pad_bottom, pad_right;
} sdt_conv2d_params;

/* out [B, OH, OW, OC] = conv(inp [B, H, W, C], weight [OC, KH, KW, C]) + bias [OC] (may be NULL). */
int sdt_conv2d_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                       const sdt_tensor *bias, const sdt_conv2d_params *p);
int sdt_conv2d_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                        const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_conv2d_params *p);

/* out [B, ..., C] = group_norm(inp [B, ..., C]) (then SiLU when fuse_silu); mean, rstd [B, groups] are
 * saved for backward and must be F32. */
int sdt_group_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                           const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                           int groups, float eps, int fuse_silu);
int sdt_group_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                            const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                            const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                            int groups, int fuse_silu);

/* Layer norm over the last dim: out [..., C]; mean, rstd [...] F32, saved for backward. */
int sdt_layer_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                           const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                           float eps);
int sdt_layer_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                            const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                            const sdt_tensor *mean, const sdt_tensor *rstd);

/* out [B, Lq, H*D] = attention(q [B, Lq, H*D], k, v [B, Lk, H*D]); lse [B, H, Lq] F32 saved for backward. */
int sdt_attention_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *lse, const sdt_tensor *q,
                          const sdt_tensor *k, const sdt_tensor *v, int heads, float scale, int causal);
int sdt_attention_backward(sdt_engine *e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv,
                           const sdt_tensor *dout, const sdt_tensor *q, const sdt_tensor *k,
                           const sdt_tensor *v, const sdt_tensor *out, const sdt_tensor *lse, int heads,
                           float scale, int causal);

/* Softmax over the last dim. */
int sdt_softmax_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
int sdt_softmax_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *out);

typedef enum sdt_activation {
    SDT_ACT_SILU,
    SDT_ACT_GELU,
    SDT_ACT_GELU_TANH,
    SDT_ACT_QUICK_GELU,
} sdt_activation;
const char *sdt_activation_name(sdt_activation act); /* "silu", "gelu", "gelu_tanh", "quick_gelu" */

int sdt_activation_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, sdt_activation act);
int sdt_activation_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
                            sdt_activation act);

/* out [..., F] = a * gelu(g) where inp [..., 2F] = [a | g]. */
int sdt_geglu_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
int sdt_geglu_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp);

/* out = a + b, same shapes (out may be a or b). */
int sdt_add_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b);
int sdt_add_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout);

/* out [B, ..., C] = inp [B, ..., C] + vec [B, C] broadcast over the middle dims. */
int sdt_add_channel_vector_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp,
                                   const sdt_tensor *vec);
int sdt_add_channel_vector_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dvec,
                                    const sdt_tensor *dout);

/* out [..., Ca + Cb] = [a [..., Ca] | b [..., Cb]]. */
int sdt_concat_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b);
int sdt_concat_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout);

/* out [B, 2H, 2W, C] = nearest 2x upsample of inp [B, H, W, C]. */
int sdt_upsample2x_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
int sdt_upsample2x_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout);

/* out [B, dim] from timesteps [B] (F32); see cpu_timestep_embedding. */
int sdt_timestep_embedding(sdt_engine *e, sdt_tensor *out, const sdt_tensor *timesteps, int flip_sin_to_cos,
                           float freq_shift, float max_period);

/* loss [1] (F32) = mean over b of weights[b] * mean((pred[b] - target[b])^2); pred, target [B, ...];
 * weights [B] F32 or NULL; per_sample [B] F32 or NULL. */
int sdt_mse_loss_forward(sdt_engine *e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
                         const sdt_tensor *target, const sdt_tensor *weights);
/* dpred += dloss * d(loss)/d(pred). */
int sdt_mse_loss_backward(sdt_engine *e, sdt_tensor *dpred, const sdt_tensor *pred, const sdt_tensor *target,
                          const sdt_tensor *weights, float dloss);

/* The LoRA adapters' dropout (models/adapter.c) on t [B, ..., R] F32, R = its last dim, in place:
 * t[i] *= m_i * factor, where m_i is the mask of kernels/keyed_dropout.h (sdt_dropout_mask_at): element
 * dropout p drawn from (key, i), rank dropout rank_p drawn from (rank_key, (i / (numel / B)) * R + i % R),
 * kept values scaled by 1 / (1 - p). The same bits on every backend; its own backward (the map is
 * diagonal). p and rank_p in [0, 1); both 0 is plain scaling. */
typedef struct sdt_dropout_args {
    float factor;
    float p;
    uint64_t key;
    float rank_p;
    uint64_t rank_key;
} sdt_dropout_args;
int sdt_dropout_scale(sdt_engine *e, sdt_tensor *t, const sdt_dropout_args *args);

/* Elementwise helpers on any compute dtype. copy converts between dtypes (same numel). */
int sdt_fill(sdt_engine *e, sdt_tensor *t, float value);
int sdt_scale(sdt_engine *e, sdt_tensor *t, float alpha);
int sdt_axpy(sdt_engine *e, sdt_tensor *y, float alpha, const sdt_tensor *x);
int sdt_copy(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src);

/* out [1] (F32, overwritten) = the sum of x * x over every element of tensors[0 .. count), which may have
 * any shapes, compute dtypes (mixed) and sizes (empty ones add nothing; count 0 gives 0). The gradient
 * norm of clipping and the overflow check of fp16 training: a NaN or Inf anywhere makes the result NaN or
 * Inf, and so does a finite sum beyond F32's range. Deterministic on every backend (a fixed order, no
 * atomics): the CPU adds in double, tensor by tensor and element by element, and rounds to F32 once, so it
 * equals a host loop over the same values in double; CUDA accumulates in double too (per-block partials
 * in a fixed order, then one block adds them in order), so the two differ by double rounding only. */
int sdt_sum_squares(sdt_engine *e, sdt_tensor *out, const sdt_tensor *tensors, size_t count);

/* ---- the optimizer update ------------------------------------------------------------------------- */

typedef enum sdt_optimizer_update_kind {
    SDT_UPDATE_ADAMW, /* torch.optim.AdamW's single-tensor loop; state exp_avg, exp_avg_sq */
    SDT_UPDATE_LION,  /* lion-pytorch; state exp_avg */
    SDT_UPDATE_SGD,   /* torch.optim.SGD; state momentum_buffer (only with momentum) */
} sdt_optimizer_update_kind;

/* One fused update of a list of parameters that share their hyper-parameters (one parameter group). The
 * scalars are the per-step values the caller derives from the learning rate and the step count (in double,
 * rounded to F32 once; train/optim.c), so every backend applies exactly the same F32 numbers.
 *
 * Tensor i: params[i] F32 master [n_i] (updated in place), grads[i] F32 [n_i], state[s][i] F32 [n_i]
 * (updated in place; the kind says how many), copies[i] BF16 or F16 [n_i] or copies NULL: a low-precision
 * copy of the updated master written with stochastic rounding (kernels/stochastic_round.h) from
 * (seed, step, i, element), the same bits on every backend.
 *
 * Half-precision parameters without a master (kohya's full_bf16 / full_fp16): params[i] may be BF16 or
 * F16 and grads[i] F32, BF16 or F16. The parameter and the gradient are widened to F32, the update runs in
 * F32 as above with the F32 state, and the result is written back into params[i] with the same stochastic
 * rounding as a copy (from (seed, step, i, element)), so an update smaller than half a unit in the last
 * place still moves the weight on average instead of being lost to round-to-nearest. A half parameter has
 * no copy (copies NULL, or the list must not mix them). */
typedef struct sdt_optimizer_update_args {
    sdt_optimizer_update_kind kind;
    /* AdamW: p = p * decay; m = b1 m + one_b1 g; v = b2 v + one_b2 g g;
     *        p += step_size * m / (sqrt(v) / bc2_sqrt + eps).
     * Lion:  p = p * decay + neg_lr * sign(b1 m + one_b1 g); m = b2 m + one_b2 g. */
    float decay, b1, one_b1, b2, one_b2, step_size, bc2_sqrt, eps, neg_lr;
    /* SGD: d = g (+ weight_decay p when use_weight_decay); with use_momentum the buffer becomes d on the
     * first step, else one_dampening d + momentum buf; d = buf (nesterov: d + momentum buf); p += neg_lr d.
     * Each multiply-add is one fused fmaf, as PyTorch's CPU kernel does it. */
    float weight_decay, momentum, one_dampening;
    int use_weight_decay, use_momentum, nesterov, first_step;
    /* Stochastic rounding of copies: the seed and the step count the random bits come from. */
    uint64_t seed;
    int64_t step;
    size_t count;            /* tensors in the list */
    sdt_tensor *params;      /* [count] */
    const sdt_tensor *grads; /* [count] */
    sdt_tensor *state[2];    /* [count] each, or NULL where the kind keeps fewer buffers */
    sdt_tensor *copies;      /* [count] or NULL */
} sdt_optimizer_update_args;

/* How many state buffers per tensor the update uses (AdamW 2, Lion 1, SGD 1 with momentum else 0). */
int sdt_optimizer_update_state_count(const sdt_optimizer_update_args *args);
int sdt_optimizer_update(sdt_engine *e, const sdt_optimizer_update_args *args);

#ifdef __cplusplus
}
#endif
#endif
