/* The op interface: tensor helpers, the engine context, and the one place where every op's tensors are
 * checked (device, dtype, shape) before the backend's table is called. A message names the op, the
 * tensor's role and both shapes, so a model wiring mistake reads as "conv2d: weight is [8, 3, 3, 5] f32,
 * expected [8, 3, 3, 4]" instead of a crash inside a kernel. */
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_impl.h"
#include "device.h"
#include "sdtune/strutil.h"

/* ---- tensors ------------------------------------------------------------------------------------------- */

sdt_tensor sdt_tensor_view(void *data, sdt_dtype dtype, int ndim, const int64_t *shape)
{
    sdt_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.device = SDT_DEVICE_CPU;
    t.ndim = ndim < 0 ? 0 : ndim > SDT_MAX_DIMS ? SDT_MAX_DIMS : ndim;
    for (int i = 0; i < t.ndim; i++)
        t.shape[i] = shape[i];
    return t;
}

int64_t sdt_tensor_numel(const sdt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

float sdt_tensor_scale(const sdt_tensor *t)
{
    return t->dtype == SDT_F8_E4M3 && t->scale != 0.0f ? t->scale : 1.0f;
}

size_t sdt_tensor_bytes(const sdt_tensor *t)
{
    return (size_t)sdt_tensor_numel(t) * sdt_dtype_bits(t->dtype) / 8;
}

static const char *dtype_lower(sdt_dtype dtype)
{
    switch (dtype) {
    case SDT_F32: return "f32";
    case SDT_F16: return "f16";
    case SDT_BF16: return "bf16";
    default: return sdt_dtype_name(dtype);
    }
}

static void describe_dims(const int64_t *dims, int n, char *buf, size_t size)
{
    size_t len = 0;
    len += (size_t)snprintf(buf + len, size - len, "[");
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (len < size)
        snprintf(buf + len, size - len, "]");
}

void sdt_tensor_describe(const sdt_tensor *t, char *buf, size_t size)
{
    char dims[160];
    describe_dims(t->shape, t->ndim, dims, sizeof dims);
    snprintf(buf, size, "%s %s%s", dims, dtype_lower(t->dtype),
             t->device == SDT_DEVICE_CUDA      ? " (cuda)"
             : t->device == SDT_DEVICE_GUARDED ? " (guarded)"
                                               : "");
}

const char *sdt_device_kind_name(sdt_device_kind device)
{
    switch (device) {
    case SDT_DEVICE_CPU: return "CPU";
    case SDT_DEVICE_CUDA: return "GPU";
    case SDT_DEVICE_GUARDED: return "guarded device";
    }
    return "?";
}

const char *sdt_activation_name(sdt_activation act)
{
    switch (act) {
    case SDT_ACT_SILU: return "silu";
    case SDT_ACT_GELU: return "gelu";
    case SDT_ACT_GELU_TANH: return "gelu_tanh";
    case SDT_ACT_QUICK_GELU: return "quick_gelu";
    }
    return "?";
}

/* ---- the engine ---------------------------------------------------------------------------------------- */

int sdt_engine_create(const sdt_engine_options *options, sdt_engine **out, char **error)
{
    *out = NULL;
    const sdt_backend_ops *ops = NULL;
    if (options->device == SDT_DEVICE_CPU) {
        ops = sdt_cpu_backend_ops();
    } else if (options->device == SDT_DEVICE_GUARDED) {
        ops = sdt_guarded_backend_ops();
    } else {
#if defined(SDTUNE_HAVE_CUDA_OPS)
        ops = sdt_cuda_backend_ops();
#elif defined(SDTUNE_HAVE_CUDA)
        *error = sdt_strdup("the CUDA backend's ops are not part of this version yet; use the CPU");
        return -1;
#else
        *error = sdt_strdup("this build has no CUDA backend (it was built without a CUDA toolkit)");
        return -1;
#endif
    }
    sdt_engine *e = calloc(1, sizeof *e);
    if (!e) {
        *error = sdt_strdup("out of memory creating the engine");
        return -1;
    }
    e->options = *options;
    e->ops = ops;
    if (ops->init && ops->init(e) != 0) {
        *error = sdt_format("%s backend: %s", ops->name, e->error);
        free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void sdt_engine_free(sdt_engine *engine)
{
    if (!engine)
        return;
    if (engine->ops->shutdown)
        engine->ops->shutdown(engine);
    free(engine);
}

const char *sdt_engine_backend_name(const sdt_engine *engine) { return engine->ops->name; }

sdt_device_kind sdt_engine_device(const sdt_engine *engine) { return engine->options.device; }

const char *sdt_engine_error(const sdt_engine *engine) { return engine->error; }

int sdt_engine_fail(sdt_engine *engine, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(engine->error, sizeof engine->error, fmt, args);
    va_end(args);
    return -1;
}

void *sdt_engine_alloc(sdt_engine *engine, size_t bytes) { return engine->ops->alloc(engine, bytes); }

void sdt_engine_dealloc(sdt_engine *engine, void *ptr)
{
    if (ptr)
        engine->ops->dealloc(engine, ptr);
}

size_t sdt_engine_peak_bytes(const sdt_engine *engine) { return engine->peak_bytes; }

size_t sdt_engine_live_bytes(const sdt_engine *engine) { return engine->live_bytes; }

void sdt_engine_reset_peak(sdt_engine *engine) { engine->peak_bytes = engine->live_bytes; }

int sdt_engine_upload(sdt_engine *engine, sdt_tensor *dst, const void *host, size_t bytes)
{
    if (bytes > sdt_tensor_bytes(dst))
        return sdt_engine_fail(engine, "upload: %zu bytes do not fit a tensor of %zu", bytes,
                               sdt_tensor_bytes(dst));
    engine->transfers.uploads++;
    engine->transfers.upload_bytes += (int64_t)bytes;
    return engine->ops->upload(engine, dst->data, host, bytes);
}

int sdt_engine_download(sdt_engine *engine, void *host, const sdt_tensor *src, size_t bytes)
{
    if (bytes > sdt_tensor_bytes(src))
        return sdt_engine_fail(engine, "download: %zu bytes asked of a tensor of %zu", bytes,
                               sdt_tensor_bytes(src));
    engine->transfers.downloads++;
    engine->transfers.download_bytes += (int64_t)bytes;
    return engine->ops->download(engine, host, src->data, bytes);
}

int sdt_engine_sync(sdt_engine *engine)
{
    engine->transfers.syncs++;
    return engine->ops->sync ? engine->ops->sync(engine) : 0;
}

sdt_host_transfers sdt_engine_host_transfers(const sdt_engine *engine) { return engine->transfers; }

int sdt_engine_memory_info(sdt_engine *engine, size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    if (engine->ops->memory_info)
        return engine->ops->memory_info(engine, free_bytes, total_bytes);
    char *error = NULL;
    if (sdt_cpu_memory_info(free_bytes, total_bytes, &error) == 0)
        return 0;
    sdt_engine_fail(engine, "%s", error ? error : "the host's free memory is unknown");
    free(error);
    return -1;
}

/* ---- op timing ----------------------------------------------------------------------------------------- */

static const char *const timed_op_names[SDT_OP_COUNT] = {
    [SDT_OP_LINEAR_FORWARD] = "linear_forward",
    [SDT_OP_LINEAR_BACKWARD] = "linear_backward",
    [SDT_OP_CONV2D_FORWARD] = "conv2d_forward",
    [SDT_OP_CONV2D_BACKWARD] = "conv2d_backward",
    [SDT_OP_GROUP_NORM_FORWARD] = "group_norm_forward",
    [SDT_OP_GROUP_NORM_BACKWARD] = "group_norm_backward",
    [SDT_OP_LAYER_NORM_FORWARD] = "layer_norm_forward",
    [SDT_OP_LAYER_NORM_BACKWARD] = "layer_norm_backward",
    [SDT_OP_ATTENTION_FORWARD] = "attention_forward",
    [SDT_OP_ATTENTION_BACKWARD] = "attention_backward",
    [SDT_OP_SOFTMAX_FORWARD] = "softmax_forward",
    [SDT_OP_SOFTMAX_BACKWARD] = "softmax_backward",
    [SDT_OP_ACTIVATION_FORWARD] = "activation_forward",
    [SDT_OP_ACTIVATION_BACKWARD] = "activation_backward",
    [SDT_OP_GEGLU_FORWARD] = "geglu_forward",
    [SDT_OP_GEGLU_BACKWARD] = "geglu_backward",
    [SDT_OP_ADD_FORWARD] = "add_forward",
    [SDT_OP_ADD_BACKWARD] = "add_backward",
    [SDT_OP_ADD_CHANNEL_VECTOR_FORWARD] = "add_channel_vector_forward",
    [SDT_OP_ADD_CHANNEL_VECTOR_BACKWARD] = "add_channel_vector_backward",
    [SDT_OP_CONCAT_FORWARD] = "concat_forward",
    [SDT_OP_CONCAT_BACKWARD] = "concat_backward",
    [SDT_OP_UPSAMPLE2X_FORWARD] = "upsample2x_forward",
    [SDT_OP_UPSAMPLE2X_BACKWARD] = "upsample2x_backward",
    [SDT_OP_TIMESTEP_EMBEDDING] = "timestep_embedding",
    [SDT_OP_MSE_LOSS_FORWARD] = "mse_loss_forward",
    [SDT_OP_MSE_LOSS_BACKWARD] = "mse_loss_backward",
    [SDT_OP_FILL] = "fill",
    [SDT_OP_SCALE] = "scale",
    [SDT_OP_AXPY] = "axpy",
    [SDT_OP_COPY] = "copy",
    [SDT_OP_OPTIMIZER_UPDATE] = "optimizer_update",
    [SDT_OP_SUM_SQUARES] = "sum_squares",
    [SDT_OP_DROPOUT_SCALE] = "dropout_scale",
};

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sdt_engine_set_op_timing(sdt_engine *engine, int on)
{
    engine->op_timing = on != 0;
    memset(engine->op_seconds, 0, sizeof engine->op_seconds);
    memset(engine->op_calls, 0, sizeof engine->op_calls);
}

size_t sdt_engine_op_times(const sdt_engine *engine, sdt_op_time *out, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < SDT_OP_COUNT && n < max; i++)
        if (engine->op_calls[i] > 0)
            out[n++] = (sdt_op_time){timed_op_names[i], engine->op_seconds[i], engine->op_calls[i]};
    return n;
}

/* Start and end of a timed op. A queued device is drained first, so the op's time does not include work
 * launched before it, and again after it, so its own work is inside the interval. Ops do not nest (the
 * public functions never call one another), so one start time per engine is enough. */
static void op_timer_begin(sdt_engine *e)
{
    if (e->ops->sync)
        e->ops->sync(e);
    e->op_started = monotonic_seconds();
}

static int op_timer_end(sdt_engine *e, sdt_timed_op id, int rc)
{
    if (e->ops->sync)
        e->ops->sync(e);
    e->op_seconds[id] += monotonic_seconds() - e->op_started;
    e->op_calls[id]++;
    return rc;
}

/* Runs an op's backend call, timed when the engine's timing is on (the comma sequences begin before the
 * call). */
#define TIMED_OP(e, id, call) ((e)->op_timing ? (op_timer_begin(e), op_timer_end((e), (id), (call))) : (call))

/* ---- checks -------------------------------------------------------------------------------------------- */

/* ANY_DTYPE: a compute dtype. WEIGHT_DTYPE: a compute dtype or F8_E4M3 (the weight of linear and conv2d). */
enum { ANY_DTYPE = 0, F32_ONLY = 1, WEIGHT_DTYPE = 2 };

/* A present tensor lives on the engine's device, has a compute dtype (or F32 where asked), has data unless
 * it is empty, and has a sane rank. */
static int check_tensor(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t, int dtype_rule)
{
    char desc[200];
    sdt_tensor_describe(t, desc, sizeof desc);
    if (t->device != e->options.device)
        return sdt_engine_fail(e, "%s: %s is on the %s but the engine runs on the %s", op, role,
                               sdt_device_kind_name(t->device), sdt_device_kind_name(e->options.device));
    if (dtype_rule == WEIGHT_DTYPE && t->dtype == SDT_F8_E4M3) {
        /* A negative, NaN or infinite scale would turn every value into garbage without an error. */
        if (!(t->scale >= 0.0f && t->scale <= FLT_MAX))
            return sdt_engine_fail(e, "%s: %s is %s with scale %g; the scale must be finite and positive", op,
                                   role, desc, (double)t->scale);
    } else if (!sdt_dtype_is_compute(t->dtype)) {
        if (t->dtype == SDT_F8_E4M3)
            return sdt_engine_fail(e, "%s: %s is %s; only the weight of linear and conv2d may be F8_E4M3", op,
                                   role, desc);
        return sdt_engine_fail(e, "%s: %s is %s; ops compute with f32, f16 or bf16", op, role, desc);
    }
    if (dtype_rule == F32_ONLY && t->dtype != SDT_F32)
        return sdt_engine_fail(e, "%s: %s is %s; it must be f32", op, role, desc);
    if (t->ndim < 0 || t->ndim > SDT_MAX_DIMS)
        return sdt_engine_fail(e, "%s: %s has rank %d", op, role, t->ndim);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0)
            return sdt_engine_fail(e, "%s: %s is %s: negative dimension", op, role, desc);
    if (!t->data && sdt_tensor_numel(t) > 0)
        return sdt_engine_fail(e, "%s: %s is %s but has no data", op, role, desc);
    return 0;
}

/* The tensor must have exactly the shape dims[0..n). */
static int expect_shape(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t, int dtype_rule,
                        int n, const int64_t *dims)
{
    if (check_tensor(e, op, role, t, dtype_rule) != 0)
        return -1;
    int same = t->ndim == n;
    for (int i = 0; same && i < n; i++)
        same = t->shape[i] == dims[i];
    if (!same) {
        char got[200], want[160];
        sdt_tensor_describe(t, got, sizeof got);
        describe_dims(dims, n, want, sizeof want);
        return sdt_engine_fail(e, "%s: %s is %s, expected %s", op, role, got, want);
    }
    return 0;
}

/* The tensor must have the same shape as the reference tensor. */
static int expect_like(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t,
                       const sdt_tensor *like)
{
    return expect_shape(e, op, role, t, ANY_DTYPE, like->ndim, like->shape);
}

/* Optional tensors (NULL = not wanted) pass. */
static int expect_like_opt(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t,
                           const sdt_tensor *like)
{
    return t ? expect_like(e, op, role, t, like) : 0;
}

/* A tensor of exactly n elements, whatever its rank ([B, G] statistics may arrive as [B*G]). */
static int expect_numel(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t, int dtype_rule,
                        int64_t n)
{
    if (check_tensor(e, op, role, t, dtype_rule) != 0)
        return -1;
    if (sdt_tensor_numel(t) != n) {
        char got[200];
        sdt_tensor_describe(t, got, sizeof got);
        return sdt_engine_fail(e, "%s: %s is %s, expected %lld elements", op, role, got, (long long)n);
    }
    return 0;
}

static int64_t last_dim(const sdt_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

/* Leading dims of t with the last one replaced by last: the shape of a row op's output. */
static int expect_rows(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t,
                       const sdt_tensor *rows_of, int64_t last)
{
    int64_t dims[SDT_MAX_DIMS];
    int n = rows_of->ndim ? rows_of->ndim : 1;
    for (int i = 0; i < n - 1; i++)
        dims[i] = rows_of->shape[i];
    dims[n - 1] = last;
    return expect_shape(e, op, role, t, ANY_DTYPE, n, dims);
}

static int need_rank_of(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t, int dtype_rule,
                        int min_rank, int max_rank)
{
    if (check_tensor(e, op, role, t, dtype_rule) != 0)
        return -1;
    if (t->ndim < min_rank || t->ndim > max_rank) {
        char got[200];
        sdt_tensor_describe(t, got, sizeof got);
        if (min_rank == max_rank)
            return sdt_engine_fail(e, "%s: %s is %s, expected rank %d", op, role, got, min_rank);
        return sdt_engine_fail(e, "%s: %s is %s, expected rank %d to %d", op, role, got, min_rank, max_rank);
    }
    return 0;
}

static int need_rank(sdt_engine *e, const char *op, const char *role, const sdt_tensor *t, int min_rank,
                     int max_rank)
{
    return need_rank_of(e, op, role, t, ANY_DTYPE, min_rank, max_rank);
}

/* ---- ops ----------------------------------------------------------------------------------------------- */

/* The gradients of a layer with weight [OC, ...] and bias [OC] (linear, conv2d), each shaped like what it
 * is the gradient of; NULL ones are not wanted. */
static int check_layer_grads(sdt_engine *e, const char *op, const sdt_tensor *dinp, const sdt_tensor *inp,
                             const sdt_tensor *dweight, const sdt_tensor *weight, const sdt_tensor *dbias)
{
    if (dweight && weight->dtype == SDT_F8_E4M3)
        return sdt_engine_fail(e,
                               "%s: the weight is F8_E4M3, a frozen weight; its gradient cannot be computed "
                               "(pass no weight gradient)",
                               op);
    if (expect_like_opt(e, op, "input gradient", dinp, inp) != 0 ||
        expect_like_opt(e, op, "weight gradient", dweight, weight) != 0)
        return -1;
    if (dbias && expect_shape(e, op, "bias gradient", dbias, ANY_DTYPE, 1, weight->shape) != 0)
        return -1;
    return 0;
}

static int check_linear(sdt_engine *e, const char *op, const sdt_tensor *inp, const sdt_tensor *weight)
{
    if (need_rank(e, op, "input", inp, 1, SDT_MAX_DIMS) != 0 ||
        need_rank_of(e, op, "weight", weight, WEIGHT_DTYPE, 2, 2) != 0)
        return -1;
    if (weight->shape[1] != last_dim(inp))
        return sdt_engine_fail(e, "%s: weight is [%lld, %lld] but the input has %lld features", op,
                               (long long)weight->shape[0], (long long)weight->shape[1],
                               (long long)last_dim(inp));
    return 0;
}

int sdt_linear_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                       const sdt_tensor *bias)
{
    const char *op = "linear";
    if (check_linear(e, op, inp, weight) != 0 ||
        expect_rows(e, op, "output", out, inp, weight->shape[0]) != 0)
        return -1;
    if (bias && expect_shape(e, op, "bias", bias, ANY_DTYPE, 1, weight->shape) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_LINEAR_FORWARD, e->ops->linear_forward(e, out, inp, weight, bias));
}

int sdt_linear_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                        const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight)
{
    const char *op = "linear backward";
    if (check_linear(e, op, inp, weight) != 0 ||
        expect_rows(e, op, "output gradient", dout, inp, weight->shape[0]))
        return -1;
    if (check_layer_grads(e, op, dinp, inp, dweight, weight, dbias) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_LINEAR_BACKWARD,
                    e->ops->linear_backward(e, dinp, dweight, dbias, dout, inp, weight));
}

/* Fills the output shape [B, OH, OW, OC] of a convolution after checking its input, weight and params. */
static int check_conv2d(sdt_engine *e, const char *op, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_conv2d_params *p, int64_t out_dims[4])
{
    if (need_rank(e, op, "input", inp, 4, 4) != 0 ||
        need_rank_of(e, op, "weight", weight, WEIGHT_DTYPE, 4, 4) != 0)
        return -1;
    if (weight->shape[3] != inp->shape[3])
        return sdt_engine_fail(e, "%s: weight [OC, KH, KW, C] has C = %lld but the input has %lld channels",
                               op, (long long)weight->shape[3], (long long)inp->shape[3]);
    if (p->stride < 1 || p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
        return sdt_engine_fail(e,
                               "%s: stride %d and padding (%d, %d, %d, %d) must be positive and non-negative",
                               op, p->stride, p->pad_top, p->pad_left, p->pad_bottom, p->pad_right);
    int64_t padded_h = inp->shape[1] + p->pad_top + p->pad_bottom;
    int64_t padded_w = inp->shape[2] + p->pad_left + p->pad_right;
    if (padded_h < weight->shape[1] || padded_w < weight->shape[2])
        return sdt_engine_fail(e, "%s: a %lldx%lld kernel does not fit the padded %lldx%lld input", op,
                               (long long)weight->shape[1], (long long)weight->shape[2], (long long)padded_h,
                               (long long)padded_w);
    out_dims[0] = inp->shape[0];
    out_dims[1] = (padded_h - weight->shape[1]) / p->stride + 1;
    out_dims[2] = (padded_w - weight->shape[2]) / p->stride + 1;
    out_dims[3] = weight->shape[0];
    return 0;
}

int sdt_conv2d_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                       const sdt_tensor *bias, const sdt_conv2d_params *p)
{
    const char *op = "conv2d";
    int64_t out_dims[4];
    if (check_conv2d(e, op, inp, weight, p, out_dims) != 0 ||
        expect_shape(e, op, "output", out, ANY_DTYPE, 4, out_dims) != 0)
        return -1;
    if (bias && expect_shape(e, op, "bias", bias, ANY_DTYPE, 1, weight->shape) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_CONV2D_FORWARD, e->ops->conv2d_forward(e, out, inp, weight, bias, p));
}

int sdt_conv2d_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                        const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                        const sdt_conv2d_params *p)
{
    const char *op = "conv2d backward";
    int64_t out_dims[4];
    if (check_conv2d(e, op, inp, weight, p, out_dims) != 0 ||
        expect_shape(e, op, "output gradient", dout, ANY_DTYPE, 4, out_dims) != 0)
        return -1;
    if (check_layer_grads(e, op, dinp, inp, dweight, weight, dbias) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_CONV2D_BACKWARD,
                    e->ops->conv2d_backward(e, dinp, dweight, dbias, dout, inp, weight, p));
}

static int check_group_norm(sdt_engine *e, const char *op, const sdt_tensor *inp, const sdt_tensor *weight,
                            const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                            int groups)
{
    if (need_rank(e, op, "input", inp, 2, SDT_MAX_DIMS) != 0)
        return -1;
    int64_t C = last_dim(inp);
    if (groups < 1 || C % groups != 0)
        return sdt_engine_fail(e, "%s: %lld channels do not split into %d groups", op, (long long)C, groups);
    if (expect_shape(e, op, "weight", weight, ANY_DTYPE, 1, &C) != 0 ||
        expect_shape(e, op, "bias", bias, ANY_DTYPE, 1, &C) != 0)
        return -1;
    int64_t stats = inp->shape[0] * groups;
    if (expect_numel(e, op, "mean", mean, F32_ONLY, stats) != 0 ||
        expect_numel(e, op, "rstd", rstd, F32_ONLY, stats) != 0)
        return -1;
    return 0;
}

int sdt_group_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                           const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                           int groups, float eps, int fuse_silu)
{
    const char *op = "group_norm";
    if (check_group_norm(e, op, inp, weight, bias, mean, rstd, groups) != 0 ||
        expect_like(e, op, "output", out, inp) != 0)
        return -1;
    if (!(eps > 0))
        return sdt_engine_fail(e, "%s: eps must be positive", op);
    return TIMED_OP(
        e, SDT_OP_GROUP_NORM_FORWARD,
        e->ops->group_norm_forward(e, out, mean, rstd, inp, weight, bias, groups, eps, fuse_silu));
}

int sdt_group_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                            const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                            const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                            int groups, int fuse_silu)
{
    const char *op = "group_norm backward";
    if (check_group_norm(e, op, inp, weight, bias, mean, rstd, groups) != 0 ||
        expect_like(e, op, "output gradient", dout, inp) != 0 ||
        expect_like_opt(e, op, "input gradient", dinp, inp) != 0 ||
        expect_like_opt(e, op, "weight gradient", dweight, weight) != 0 ||
        expect_like_opt(e, op, "bias gradient", dbias, bias) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_GROUP_NORM_BACKWARD,
                    e->ops->group_norm_backward(e, dinp, dweight, dbias, dout, inp, weight, bias, mean, rstd,
                                                groups, fuse_silu));
}

static int check_layer_norm(sdt_engine *e, const char *op, const sdt_tensor *inp, const sdt_tensor *weight,
                            const sdt_tensor *mean, const sdt_tensor *rstd)
{
    if (need_rank(e, op, "input", inp, 1, SDT_MAX_DIMS) != 0)
        return -1;
    int64_t C = last_dim(inp), rows = C ? sdt_tensor_numel(inp) / C : 0;
    if (expect_shape(e, op, "weight", weight, ANY_DTYPE, 1, &C) != 0 ||
        expect_numel(e, op, "mean", mean, F32_ONLY, rows) != 0 ||
        expect_numel(e, op, "rstd", rstd, F32_ONLY, rows) != 0)
        return -1;
    return 0;
}

int sdt_layer_norm_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                           const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias, float eps)
{
    const char *op = "layer_norm";
    if (check_layer_norm(e, op, inp, weight, mean, rstd) != 0 ||
        expect_like(e, op, "bias", bias, weight) != 0 || expect_like(e, op, "output", out, inp) != 0)
        return -1;
    if (!(eps > 0))
        return sdt_engine_fail(e, "%s: eps must be positive", op);
    return TIMED_OP(e, SDT_OP_LAYER_NORM_FORWARD,
                    e->ops->layer_norm_forward(e, out, mean, rstd, inp, weight, bias, eps));
}

int sdt_layer_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                            const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                            const sdt_tensor *mean, const sdt_tensor *rstd)
{
    const char *op = "layer_norm backward";
    if (check_layer_norm(e, op, inp, weight, mean, rstd) != 0 ||
        expect_like(e, op, "output gradient", dout, inp) != 0 ||
        expect_like_opt(e, op, "input gradient", dinp, inp) != 0 ||
        expect_like_opt(e, op, "weight gradient", dweight, weight) != 0 ||
        expect_like_opt(e, op, "bias gradient", dbias, weight) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_LAYER_NORM_BACKWARD,
                    e->ops->layer_norm_backward(e, dinp, dweight, dbias, dout, inp, weight, mean, rstd));
}

static int check_attention(sdt_engine *e, const char *op, const sdt_tensor *q, const sdt_tensor *k,
                           const sdt_tensor *v, const sdt_tensor *lse, int heads)
{
    if (need_rank(e, op, "q", q, 3, 3) != 0 || need_rank(e, op, "k", k, 3, 3) != 0)
        return -1;
    if (heads < 1 || q->shape[2] % heads != 0)
        return sdt_engine_fail(e, "%s: %lld channels do not split into %d heads", op, (long long)q->shape[2],
                               heads);
    if (k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2]) {
        char qd[200], kd[200];
        sdt_tensor_describe(q, qd, sizeof qd);
        sdt_tensor_describe(k, kd, sizeof kd);
        return sdt_engine_fail(e, "%s: q is %s and k is %s: batch and channels must agree", op, qd, kd);
    }
    if (expect_like(e, op, "v", v, k) != 0 ||
        expect_numel(e, op, "lse", lse, F32_ONLY, q->shape[0] * heads * q->shape[1]) != 0)
        return -1;
    return 0;
}

int sdt_attention_forward(sdt_engine *e, sdt_tensor *out, sdt_tensor *lse, const sdt_tensor *q,
                          const sdt_tensor *k, const sdt_tensor *v, int heads, float scale, int causal)
{
    const char *op = "attention";
    if (check_attention(e, op, q, k, v, lse, heads) != 0 || expect_like(e, op, "output", out, q) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ATTENTION_FORWARD,
                    e->ops->attention_forward(e, out, lse, q, k, v, heads, scale, causal));
}

int sdt_attention_backward(sdt_engine *e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv,
                           const sdt_tensor *dout, const sdt_tensor *q, const sdt_tensor *k,
                           const sdt_tensor *v, const sdt_tensor *out, const sdt_tensor *lse, int heads,
                           float scale, int causal)
{
    const char *op = "attention backward";
    if (check_attention(e, op, q, k, v, lse, heads) != 0 || expect_like(e, op, "output", out, q) != 0 ||
        expect_like(e, op, "output gradient", dout, q) != 0 ||
        expect_like_opt(e, op, "q gradient", dq, q) != 0 ||
        expect_like_opt(e, op, "k gradient", dk, k) != 0 || expect_like_opt(e, op, "v gradient", dv, v) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ATTENTION_BACKWARD,
                    e->ops->attention_backward(e, dq, dk, dv, dout, q, k, v, out, lse, heads, scale, causal));
}

int sdt_softmax_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp)
{
    const char *op = "softmax";
    if (need_rank(e, op, "input", inp, 1, SDT_MAX_DIMS) != 0 || expect_like(e, op, "output", out, inp) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_SOFTMAX_FORWARD, e->ops->softmax_forward(e, out, inp));
}

int sdt_softmax_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *out)
{
    const char *op = "softmax backward";
    if (need_rank(e, op, "output", out, 1, SDT_MAX_DIMS) != 0 ||
        expect_like(e, op, "output gradient", dout, out) != 0 ||
        expect_like_opt(e, op, "input gradient", dinp, out))
        return -1;
    return TIMED_OP(e, SDT_OP_SOFTMAX_BACKWARD, e->ops->softmax_backward(e, dinp, dout, out));
}

static int check_activation(sdt_engine *e, const char *op, sdt_activation act)
{
    if (act != SDT_ACT_SILU && act != SDT_ACT_GELU && act != SDT_ACT_GELU_TANH && act != SDT_ACT_QUICK_GELU)
        return sdt_engine_fail(e, "%s: unknown activation %d", op, (int)act);
    return 0;
}

int sdt_activation_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, sdt_activation act)
{
    const char *op = "activation";
    if (check_activation(e, op, act) != 0 || check_tensor(e, op, "input", inp, ANY_DTYPE) != 0 ||
        expect_like(e, op, "output", out, inp) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ACTIVATION_FORWARD, e->ops->activation_forward(e, out, inp, act));
}

int sdt_activation_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
                            sdt_activation act)
{
    const char *op = "activation backward";
    if (check_activation(e, op, act) != 0 || check_tensor(e, op, "input", inp, ANY_DTYPE) != 0 ||
        expect_like(e, op, "output gradient", dout, inp) != 0 ||
        expect_like_opt(e, op, "input gradient", dinp, inp) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ACTIVATION_BACKWARD, e->ops->activation_backward(e, dinp, dout, inp, act));
}

static int check_geglu(sdt_engine *e, const char *op, const sdt_tensor *inp)
{
    if (need_rank(e, op, "input", inp, 1, SDT_MAX_DIMS) != 0)
        return -1;
    if (last_dim(inp) % 2 != 0)
        return sdt_engine_fail(e, "%s: the input's last dimension (%lld) must be even: [value | gate]", op,
                               (long long)last_dim(inp));
    return 0;
}

int sdt_geglu_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp)
{
    const char *op = "geglu";
    if (check_geglu(e, op, inp) != 0 || expect_rows(e, op, "output", out, inp, last_dim(inp) / 2) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_GEGLU_FORWARD, e->ops->geglu_forward(e, out, inp));
}

int sdt_geglu_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp)
{
    const char *op = "geglu backward";
    if (check_geglu(e, op, inp) != 0 ||
        expect_rows(e, op, "output gradient", dout, inp, last_dim(inp) / 2) != 0 ||
        expect_like_opt(e, op, "input gradient", dinp, inp) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_GEGLU_BACKWARD, e->ops->geglu_backward(e, dinp, dout, inp));
}

int sdt_add_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b)
{
    const char *op = "add";
    if (check_tensor(e, op, "a", a, ANY_DTYPE) != 0 || expect_like(e, op, "b", b, a) != 0 ||
        expect_like(e, op, "output", out, a) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ADD_FORWARD, e->ops->add_forward(e, out, a, b));
}

int sdt_add_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout)
{
    const char *op = "add backward";
    if (check_tensor(e, op, "output gradient", dout, ANY_DTYPE) != 0 ||
        expect_like_opt(e, op, "a gradient", da, dout) != 0 ||
        expect_like_opt(e, op, "b gradient", db, dout) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ADD_BACKWARD, e->ops->add_backward(e, da, db, dout));
}

/* vec must be [B, C] for x [B, ..., C]. */
static int check_channel_vector(sdt_engine *e, const char *op, const char *role, const sdt_tensor *x,
                                const sdt_tensor *vec)
{
    if (need_rank(e, op, "input", x, 2, SDT_MAX_DIMS) != 0)
        return -1;
    int64_t dims[2] = {x->shape[0], last_dim(x)};
    return expect_shape(e, op, role, vec, ANY_DTYPE, 2, dims);
}

int sdt_add_channel_vector_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp,
                                   const sdt_tensor *vec)
{
    const char *op = "add_channel_vector";
    if (check_channel_vector(e, op, "vector", inp, vec) != 0 || expect_like(e, op, "output", out, inp) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_ADD_CHANNEL_VECTOR_FORWARD,
                    e->ops->add_channel_vector_forward(e, out, inp, vec));
}

int sdt_add_channel_vector_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dvec, const sdt_tensor *dout)
{
    const char *op = "add_channel_vector backward";
    if (need_rank(e, op, "output gradient", dout, 2, SDT_MAX_DIMS) != 0 ||
        expect_like_opt(e, op, "input gradient", dinp, dout) != 0 ||
        (dvec && check_channel_vector(e, op, "vector gradient", dout, dvec) != 0))
        return -1;
    return TIMED_OP(e, SDT_OP_ADD_CHANNEL_VECTOR_BACKWARD,
                    e->ops->add_channel_vector_backward(e, dinp, dvec, dout));
}

/* a [..., Ca] and b [..., Cb] with the same leading dims; out [..., Ca + Cb]. */
static int check_concat(sdt_engine *e, const char *op, const char *out_role, const sdt_tensor *out,
                        const sdt_tensor *a, const sdt_tensor *b)
{
    if (need_rank(e, op, "a", a, 1, SDT_MAX_DIMS) != 0 || expect_rows(e, op, "b", b, a, last_dim(b)) != 0)
        return -1;
    return expect_rows(e, op, out_role, out, a, last_dim(a) + last_dim(b));
}

int sdt_concat_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b)
{
    if (check_concat(e, "concat", "output", out, a, b) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_CONCAT_FORWARD, e->ops->concat_forward(e, out, a, b));
}

int sdt_concat_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout)
{
    const char *op = "concat backward";
    if (!da || !db)
        return sdt_engine_fail(e, "%s: both input gradients are needed to know where the split is", op);
    if (check_concat(e, op, "output gradient", dout, da, db) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_CONCAT_BACKWARD, e->ops->concat_backward(e, da, db, dout));
}

static int upsampled_dims(sdt_engine *e, const char *op, const sdt_tensor *inp, int64_t dims[4])
{
    if (need_rank(e, op, "input", inp, 4, 4) != 0)
        return -1;
    dims[0] = inp->shape[0];
    dims[1] = inp->shape[1] * 2;
    dims[2] = inp->shape[2] * 2;
    dims[3] = inp->shape[3];
    return 0;
}

int sdt_upsample2x_forward(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp)
{
    const char *op = "upsample2x";
    int64_t dims[4];
    if (upsampled_dims(e, op, inp, dims) != 0 || expect_shape(e, op, "output", out, ANY_DTYPE, 4, dims) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_UPSAMPLE2X_FORWARD, e->ops->upsample2x_forward(e, out, inp));
}

int sdt_upsample2x_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout)
{
    const char *op = "upsample2x backward";
    int64_t dims[4];
    if (!dinp)
        return sdt_engine_fail(e, "%s: the input gradient is needed (it gives the input's shape)", op);
    if (upsampled_dims(e, op, dinp, dims) != 0 ||
        expect_shape(e, op, "output gradient", dout, ANY_DTYPE, 4, dims) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_UPSAMPLE2X_BACKWARD, e->ops->upsample2x_backward(e, dinp, dout));
}

int sdt_timestep_embedding(sdt_engine *e, sdt_tensor *out, const sdt_tensor *timesteps, int flip_sin_to_cos,
                           float freq_shift, float max_period)
{
    const char *op = "timestep_embedding";
    if (need_rank(e, op, "timesteps", timesteps, 1, 1) != 0 ||
        check_tensor(e, op, "timesteps", timesteps, F32_ONLY) != 0 ||
        need_rank(e, op, "output", out, 2, 2) != 0)
        return -1;
    if (out->shape[0] != timesteps->shape[0])
        return sdt_engine_fail(e, "%s: %lld timesteps but the output has %lld rows", op,
                               (long long)timesteps->shape[0], (long long)out->shape[0]);
    if (out->shape[1] < 2 || (double)freq_shift >= (double)(out->shape[1] / 2) || !(max_period > 0))
        return sdt_engine_fail(e, "%s: dimension %lld, shift %g and period %g give no frequencies", op,
                               (long long)out->shape[1], (double)freq_shift, (double)max_period);
    return TIMED_OP(e, SDT_OP_TIMESTEP_EMBEDDING,
                    e->ops->timestep_embedding(e, out, timesteps, flip_sin_to_cos, freq_shift, max_period));
}

static int check_mse(sdt_engine *e, const char *op, const sdt_tensor *pred, const sdt_tensor *target,
                     const sdt_tensor *weights)
{
    if (need_rank(e, op, "prediction", pred, 1, SDT_MAX_DIMS) != 0 ||
        expect_like(e, op, "target", target, pred) != 0)
        return -1;
    if (weights && expect_shape(e, op, "weights", weights, F32_ONLY, 1, pred->shape) != 0)
        return -1;
    if (pred->shape[0] == 0 || sdt_tensor_numel(pred) == 0)
        return sdt_engine_fail(e, "%s: the prediction is empty", op);
    return 0;
}

int sdt_mse_loss_forward(sdt_engine *e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
                         const sdt_tensor *target, const sdt_tensor *weights)
{
    const char *op = "mse_loss";
    if (check_mse(e, op, pred, target, weights) != 0 || expect_numel(e, op, "loss", loss, F32_ONLY, 1) != 0)
        return -1;
    if (per_sample && expect_shape(e, op, "per-sample loss", per_sample, F32_ONLY, 1, pred->shape) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_MSE_LOSS_FORWARD,
                    e->ops->mse_loss_forward(e, loss, per_sample, pred, target, weights));
}

int sdt_mse_loss_backward(sdt_engine *e, sdt_tensor *dpred, const sdt_tensor *pred, const sdt_tensor *target,
                          const sdt_tensor *weights, float dloss)
{
    const char *op = "mse_loss backward";
    if (check_mse(e, op, pred, target, weights) != 0 ||
        expect_like_opt(e, op, "prediction gradient", dpred, pred) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_MSE_LOSS_BACKWARD,
                    e->ops->mse_loss_backward(e, dpred, pred, target, weights, dloss));
}

int sdt_fill(sdt_engine *e, sdt_tensor *t, float value)
{
    if (check_tensor(e, "fill", "tensor", t, ANY_DTYPE) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_FILL, e->ops->fill(e, t, value));
}

int sdt_scale(sdt_engine *e, sdt_tensor *t, float alpha)
{
    if (check_tensor(e, "scale", "tensor", t, ANY_DTYPE) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_SCALE, e->ops->scale(e, t, alpha));
}

int sdt_dropout_scale(sdt_engine *e, sdt_tensor *t, const sdt_dropout_args *args)
{
    const char *op = "dropout_scale";
    if (need_rank(e, op, "tensor", t, 1, SDT_MAX_DIMS) != 0 ||
        check_tensor(e, op, "tensor", t, F32_ONLY) != 0)
        return -1;
    if (!(args->p >= 0.0f && args->p < 1.0f) || !(args->rank_p >= 0.0f && args->rank_p < 1.0f))
        return sdt_engine_fail(e, "%s: dropout %g and rank dropout %g must be in [0, 1)", op, (double)args->p,
                               (double)args->rank_p);
    if (sdt_tensor_numel(t) == 0)
        return 0;
    return TIMED_OP(e, SDT_OP_DROPOUT_SCALE, e->ops->dropout_scale(e, t, args));
}

int sdt_axpy(sdt_engine *e, sdt_tensor *y, float alpha, const sdt_tensor *x)
{
    if (check_tensor(e, "axpy", "y", y, ANY_DTYPE) != 0 ||
        expect_numel(e, "axpy", "x", x, ANY_DTYPE, sdt_tensor_numel(y)) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_AXPY, e->ops->axpy(e, y, alpha, x));
}

int sdt_copy(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src)
{
    if (check_tensor(e, "copy", "destination", dst, ANY_DTYPE) != 0 ||
        expect_numel(e, "copy", "source", src, ANY_DTYPE, sdt_tensor_numel(dst)) != 0)
        return -1;
    return TIMED_OP(e, SDT_OP_COPY, e->ops->copy(e, dst, src));
}

int sdt_optimizer_update_state_count(const sdt_optimizer_update_args *args)
{
    switch (args->kind) {
    case SDT_UPDATE_ADAMW: return 2;
    case SDT_UPDATE_LION: return 1;
    case SDT_UPDATE_SGD: return args->use_momentum ? 1 : 0;
    }
    return -1;
}

/* Every tensor of the list: an F32 master (or a BF16/F16 parameter without one), a gradient in a compute
 * dtype, F32 state of its element count, and a BF16/F16 copy of an F32 master when copies are asked for.
 * Shapes may differ (a flat buffer updates a [OC, C] weight), element counts may not. */
int sdt_optimizer_update(sdt_engine *e, const sdt_optimizer_update_args *args)
{
    const char *op = "optimizer_update";
    int states = sdt_optimizer_update_state_count(args);
    if (states < 0)
        return sdt_engine_fail(e, "%s: unknown update kind %d", op, (int)args->kind);
    if (args->count > 0 && (!args->params || !args->grads))
        return sdt_engine_fail(e, "%s: %zu tensors but no parameter or gradient list", op, args->count);
    for (int s = 0; s < states; s++)
        if (args->count > 0 && !args->state[s])
            return sdt_engine_fail(e, "%s: state buffer %d of %d is missing", op, s + 1, states);
    for (size_t i = 0; i < args->count; i++) {
        const sdt_tensor *p = &args->params[i];
        int64_t n = sdt_tensor_numel(p);
        char role[64];
        snprintf(role, sizeof role, "parameter %zu", i);
        if (check_tensor(e, op, role, p, ANY_DTYPE) != 0)
            return -1;
        if (p->dtype != SDT_F32 && args->copies) {
            char desc[200];
            sdt_tensor_describe(p, desc, sizeof desc);
            return sdt_engine_fail(e,
                                   "%s: %s is %s: a half-precision parameter is updated in place and takes "
                                   "no copy",
                                   op, role, desc);
        }
        snprintf(role, sizeof role, "gradient %zu", i);
        if (expect_numel(e, op, role, &args->grads[i], ANY_DTYPE, n) != 0)
            return -1;
        for (int s = 0; s < states; s++) {
            snprintf(role, sizeof role, "state %d of tensor %zu", s + 1, i);
            if (expect_numel(e, op, role, &args->state[s][i], F32_ONLY, n) != 0)
                return -1;
        }
        if (args->copies) {
            const sdt_tensor *c = &args->copies[i];
            snprintf(role, sizeof role, "copy %zu", i);
            if (expect_numel(e, op, role, c, ANY_DTYPE, n) != 0)
                return -1;
            if (c->dtype != SDT_BF16 && c->dtype != SDT_F16) {
                char desc[200];
                sdt_tensor_describe(c, desc, sizeof desc);
                return sdt_engine_fail(e, "%s: %s is %s; it must be bf16 or f16", op, role, desc);
            }
        }
    }
    if (!e->ops->optimizer_update)
        return sdt_engine_fail(e, "%s: the %s backend has no optimizer update", op, e->ops->name);
    return TIMED_OP(e, SDT_OP_OPTIMIZER_UPDATE, e->ops->optimizer_update(e, args));
}

/* Every tensor of the list is checked like any op's input (device, compute dtype, data unless empty); the
 * output is one F32 value. */
int sdt_sum_squares(sdt_engine *e, sdt_tensor *out, const sdt_tensor *tensors, size_t count)
{
    const char *op = "sum_squares";
    if (expect_numel(e, op, "output", out, F32_ONLY, 1) != 0)
        return -1;
    if (count > 0 && !tensors)
        return sdt_engine_fail(e, "%s: %zu tensors but no list", op, count);
    for (size_t i = 0; i < count; i++) {
        char role[64];
        snprintf(role, sizeof role, "tensor %zu", i);
        if (check_tensor(e, op, role, &tensors[i], ANY_DTYPE) != 0)
            return -1;
    }
    if (!e->ops->sum_squares)
        return sdt_engine_fail(e, "%s: the %s backend has no sum of squares", op, e->ops->name);
    return TIMED_OP(e, SDT_OP_SUM_SQUARES, e->ops->sum_squares(e, out, tensors, count));
}
