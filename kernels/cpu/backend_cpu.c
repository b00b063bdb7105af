/* The CPU backend: the fp32 reference ops of cpu_ops.h behind the backend table. Tensors that are already
 * F32 are used in place; F16 and BF16 tensors are widened into temporary fp32 buffers on the way in and
 * rounded back (nearest-even) on the way out; an F8_E4M3 weight is dequantised (code * scale) on the way
 * in. This is the reference, not the fast path, so the temporaries
 * are plain heap allocations. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend_impl.h"
#include "cpu_ops.h"

/* ---- fp32 staging -------------------------------------------------------------------------------------- */

enum { MAX_STAGED = 10 };

typedef struct staged_tensor {
    float *f32;         /* the values as fp32 */
    sdt_tensor *target; /* written back at the end (outputs and gradients); NULL for inputs */
    int owned;          /* f32 is a temporary (the tensor is F16/BF16) */
} staged_tensor;

/* Every tensor one op call touches; finish() writes outputs back and frees the temporaries. */
typedef struct staging {
    sdt_engine *e;
    staged_tensor items[MAX_STAGED];
    int count;
    int failed;
} staging;

static float *stage(staging *s, const sdt_tensor *t, sdt_tensor *target, int load)
{
    if (!t || s->failed)
        return NULL;
    if (s->count == MAX_STAGED) {
        s->failed = 1;
        sdt_engine_fail(s->e, "cpu backend: too many tensors in one op");
        return NULL;
    }
    staged_tensor *item = &s->items[s->count++];
    item->target = target;
    if (t->dtype == SDT_F32) {
        item->f32 = t->data;
        item->owned = 0;
        return item->f32;
    }
    size_t n = (size_t)sdt_tensor_numel(t);
    item->f32 = malloc((n ? n : 1) * sizeof(float));
    item->owned = 1;
    if (!item->f32) {
        s->failed = 1;
        sdt_engine_fail(s->e, "cpu backend: out of memory widening a tensor of %zu elements to fp32", n);
        return NULL;
    }
    /* An F8_E4M3 tensor is a frozen weight (backend.c lets it nowhere else, and never as a target): its
     * codes times the per-tensor scale are the values the op computes with. */
    if (load && t->dtype == SDT_F8_E4M3)
        sdt_f8e4m3_to_f32_scaled(item->f32, t->data, n, sdt_tensor_scale(t));
    else if (load)
        sdt_convert(item->f32, SDT_F32, t->data, t->dtype, n);
    return item->f32;
}

/* An input: read only. */
static const float *in(staging *s, const sdt_tensor *t) { return stage(s, t, NULL, 1); }

/* An output the op overwrites. */
static float *out(staging *s, sdt_tensor *t) { return stage(s, t, t, 0); }

/* A gradient the op adds into: its current values are loaded first. */
static float *acc(staging *s, sdt_tensor *t) { return stage(s, t, t, 1); }

/* A kernel could not get its scratch; it wrote nothing, and the staged outputs are not copied back. */
static void fail_out_of_memory(staging *s, const char *op, const char *what)
{
    s->failed = 1;
    sdt_engine_fail(s->e, "%s: out of memory for %s", op, what);
}

static int finish(staging *s)
{
    for (int i = 0; i < s->count; i++) {
        staged_tensor *item = &s->items[i];
        if (!item->owned)
            continue;
        if (item->target && !s->failed)
            sdt_convert(item->target->data, item->target->dtype, item->f32, SDT_F32,
                        (size_t)sdt_tensor_numel(item->target));
        free(item->f32);
    }
    return s->failed ? -1 : 0;
}

static int64_t last_dim(const sdt_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

/* [B, ..., C] seen as [B, HW, C]: the batch, every position of an image or sequence, the channels. */
static void image_dims(const sdt_tensor *t, int64_t *B, int64_t *HW, int64_t *C)
{
    *B = t->shape[0];
    *C = last_dim(t);
    *HW = *B && *C ? sdt_tensor_numel(t) / (*B * *C) : 0;
}

static int64_t rows(const sdt_tensor *t)
{
    int64_t c = last_dim(t);
    return c ? sdt_tensor_numel(t) / c : 0;
}

/* ---- engine plumbing ----------------------------------------------------------------------------------- */

static int cpu_init(sdt_engine *e)
{
#ifdef _OPENMP
    if (e->options.threads > 0)
        omp_set_num_threads(e->options.threads);
#else
    (void)e;
#endif
    return 0;
}

/* Every block starts with a header of one alignment unit that holds its size, so that dealloc can keep
 * the live and peak counters without a lookup; the caller gets the memory after it. */
enum { ALLOC_ALIGN = 64 };

static void *cpu_alloc(sdt_engine *e, size_t bytes)
{
    size_t rounded = (bytes + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
    if (rounded == 0)
        rounded = ALLOC_ALIGN;
    if (rounded < bytes || rounded > SIZE_MAX - ALLOC_ALIGN)
        return NULL;
    unsigned char *base = aligned_alloc(ALLOC_ALIGN, rounded + ALLOC_ALIGN);
    if (!base)
        return NULL;
    memcpy(base, &rounded, sizeof rounded);
    e->live_bytes += rounded;
    if (e->live_bytes > e->peak_bytes)
        e->peak_bytes = e->live_bytes;
    return base + ALLOC_ALIGN;
}

static void cpu_dealloc(sdt_engine *e, void *ptr)
{
    unsigned char *base = (unsigned char *)ptr - ALLOC_ALIGN;
    size_t rounded;
    memcpy(&rounded, base, sizeof rounded);
    e->live_bytes -= rounded;
    free(base);
}

static int cpu_copy_bytes(sdt_engine *e, void *dst, const void *src, size_t bytes)
{
    (void)e;
    memmove(dst, src, bytes);
    return 0;
}

/* ---- ops ----------------------------------------------------------------------------------------------- */

static int linear_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp, const sdt_tensor *weight,
                          const sdt_tensor *bias)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *x = in(&s, inp), *w = in(&s, weight), *b = in(&s, bias);
    if (!s.failed)
        cpu_linear_forward(y, x, w, b, rows(inp), last_dim(inp), weight->shape[0]);
    return finish(&s);
}

static int linear_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                           const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp), *dw = acc(&s, dweight), *db = acc(&s, dbias);
    const float *dy = in(&s, dout), *x = in(&s, inp), *w = in(&s, weight);
    if (!s.failed)
        cpu_linear_backward(dx, dw, db, dy, x, w, rows(inp), last_dim(inp), weight->shape[0]);
    return finish(&s);
}

static cpu_conv2d_geometry conv_geometry(const sdt_tensor *inp, const sdt_tensor *weight,
                                         const sdt_conv2d_params *p)
{
    cpu_conv2d_geometry g = {
        .B = inp->shape[0],
        .H = inp->shape[1],
        .W = inp->shape[2],
        .C = inp->shape[3],
        .OC = weight->shape[0],
        .KH = weight->shape[1],
        .KW = weight->shape[2],
        .stride = p->stride,
        .pad_top = p->pad_top,
        .pad_left = p->pad_left,
        .pad_bottom = p->pad_bottom,
        .pad_right = p->pad_right,
    };
    g.OH = (g.H + g.pad_top + g.pad_bottom - g.KH) / g.stride + 1;
    g.OW = (g.W + g.pad_left + g.pad_right - g.KW) / g.stride + 1;
    return g;
}

static int conv2d_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp, const sdt_tensor *weight,
                          const sdt_tensor *bias, const sdt_conv2d_params *p)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *x = in(&s, inp), *w = in(&s, weight), *b = in(&s, bias);
    cpu_conv2d_geometry g = conv_geometry(inp, weight, p);
    if (!s.failed && cpu_conv2d_forward(y, x, w, b, &g) != 0)
        fail_out_of_memory(&s, "conv2d", "its im2col columns");
    return finish(&s);
}

static int conv2d_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                           const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                           const sdt_conv2d_params *p)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp), *dw = acc(&s, dweight), *db = acc(&s, dbias);
    const float *dy = in(&s, dout), *x = in(&s, inp), *w = in(&s, weight);
    cpu_conv2d_geometry g = conv_geometry(inp, weight, p);
    if (!s.failed && cpu_conv2d_backward(dx, dw, db, dy, x, w, &g) != 0)
        fail_out_of_memory(&s, "conv2d backward", "its im2col columns");
    return finish(&s);
}

static int group_norm_forward(sdt_engine *e, sdt_tensor *o, sdt_tensor *mean, sdt_tensor *rstd,
                              const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                              int groups, float eps, int fuse_silu)
{
    staging s = {.e = e};
    float *y = out(&s, o), *m = out(&s, mean), *r = out(&s, rstd);
    const float *x = in(&s, inp), *w = in(&s, weight), *b = in(&s, bias);
    int64_t B, HW, C;
    image_dims(inp, &B, &HW, &C);
    if (!s.failed)
        cpu_group_norm_forward(y, m, r, x, w, b, B, HW, C, groups, eps, fuse_silu);
    return finish(&s);
}

static int group_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                               const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                               const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                               int groups, int fuse_silu)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp), *dw = acc(&s, dweight), *db = acc(&s, dbias);
    const float *dy = in(&s, dout), *x = in(&s, inp), *w = in(&s, weight), *b = in(&s, bias);
    const float *m = in(&s, mean), *r = in(&s, rstd);
    int64_t B, HW, C;
    image_dims(inp, &B, &HW, &C);
    if (!s.failed)
        cpu_group_norm_backward(dx, dw, db, dy, x, w, b, m, r, B, HW, C, groups, fuse_silu);
    return finish(&s);
}

static int layer_norm_forward(sdt_engine *e, sdt_tensor *o, sdt_tensor *mean, sdt_tensor *rstd,
                              const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                              float eps)
{
    staging s = {.e = e};
    float *y = out(&s, o), *m = out(&s, mean), *r = out(&s, rstd);
    const float *x = in(&s, inp), *w = in(&s, weight), *b = in(&s, bias);
    if (!s.failed)
        cpu_layer_norm_forward(y, m, r, x, w, b, rows(inp), last_dim(inp), eps);
    return finish(&s);
}

static int layer_norm_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                               const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                               const sdt_tensor *mean, const sdt_tensor *rstd)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp), *dw = acc(&s, dweight), *db = acc(&s, dbias);
    const float *dy = in(&s, dout), *x = in(&s, inp), *w = in(&s, weight);
    const float *m = in(&s, mean), *r = in(&s, rstd);
    if (!s.failed)
        cpu_layer_norm_backward(dx, dw, db, dy, x, w, m, r, rows(inp), last_dim(inp));
    return finish(&s);
}

static int attention_forward(sdt_engine *e, sdt_tensor *o, sdt_tensor *lse, const sdt_tensor *q,
                             const sdt_tensor *k, const sdt_tensor *v, int heads, float scale, int causal)
{
    staging s = {.e = e};
    float *y = out(&s, o), *l = out(&s, lse);
    const float *qf = in(&s, q), *kf = in(&s, k), *vf = in(&s, v);
    if (!s.failed && cpu_attention_forward(y, l, qf, kf, vf, q->shape[0], q->shape[1], k->shape[1], heads,
                                           q->shape[2] / heads, scale, causal) != 0)
        fail_out_of_memory(&s, "attention", "its score blocks");
    return finish(&s);
}

static int attention_backward(sdt_engine *e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv,
                              const sdt_tensor *dout, const sdt_tensor *q, const sdt_tensor *k,
                              const sdt_tensor *v, const sdt_tensor *o, const sdt_tensor *lse, int heads,
                              float scale, int causal)
{
    staging s = {.e = e};
    float *dqf = acc(&s, dq), *dkf = acc(&s, dk), *dvf = acc(&s, dv);
    const float *dy = in(&s, dout), *qf = in(&s, q), *kf = in(&s, k), *vf = in(&s, v);
    const float *y = in(&s, o), *l = in(&s, lse);
    if (!s.failed && cpu_attention_backward(dqf, dkf, dvf, dy, qf, kf, vf, y, l, q->shape[0], q->shape[1],
                                            k->shape[1], heads, q->shape[2] / heads, scale, causal) != 0)
        fail_out_of_memory(&s, "attention backward", "its score blocks");
    return finish(&s);
}

static int softmax_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *x = in(&s, inp);
    if (!s.failed)
        cpu_softmax_forward(y, x, rows(inp), last_dim(inp));
    return finish(&s);
}

static int softmax_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *o)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp);
    const float *dy = in(&s, dout), *y = in(&s, o);
    if (!s.failed)
        cpu_softmax_backward(dx, dy, y, rows(o), last_dim(o));
    return finish(&s);
}

static cpu_activation cpu_act(sdt_activation act)
{
    switch (act) {
    case SDT_ACT_GELU: return CPU_ACT_GELU;
    case SDT_ACT_GELU_TANH: return CPU_ACT_GELU_TANH;
    case SDT_ACT_QUICK_GELU: return CPU_ACT_QUICK_GELU;
    case SDT_ACT_SILU: break;
    }
    return CPU_ACT_SILU;
}

static int activation_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp, sdt_activation act)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *x = in(&s, inp);
    if (!s.failed)
        cpu_activation_forward(y, x, sdt_tensor_numel(inp), cpu_act(act));
    return finish(&s);
}

static int activation_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
                               sdt_activation act)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp);
    const float *dy = in(&s, dout), *x = in(&s, inp);
    if (!s.failed)
        cpu_activation_backward(dx, dy, x, sdt_tensor_numel(inp), cpu_act(act));
    return finish(&s);
}

static int geglu_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *x = in(&s, inp);
    if (!s.failed)
        cpu_geglu_forward(y, x, rows(inp), last_dim(inp) / 2);
    return finish(&s);
}

static int geglu_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp);
    const float *dy = in(&s, dout), *x = in(&s, inp);
    if (!s.failed)
        cpu_geglu_backward(dx, dy, x, rows(inp), last_dim(inp) / 2);
    return finish(&s);
}

static int add_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *a, const sdt_tensor *b)
{
    staging s = {.e = e};
    const float *af = in(&s, a), *bf = in(&s, b);
    float *y = out(&s, o);
    if (!s.failed)
        cpu_add_forward(y, af, bf, sdt_tensor_numel(a));
    return finish(&s);
}

static int add_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout)
{
    staging s = {.e = e};
    float *daf = acc(&s, da), *dbf = acc(&s, db);
    const float *dy = in(&s, dout);
    if (!s.failed)
        cpu_add_backward(daf, dbf, dy, sdt_tensor_numel(dout));
    return finish(&s);
}

static int add_channel_vector_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp,
                                      const sdt_tensor *vec)
{
    staging s = {.e = e};
    const float *x = in(&s, inp), *vf = in(&s, vec);
    float *y = out(&s, o);
    int64_t B, HW, C;
    image_dims(inp, &B, &HW, &C);
    if (!s.failed)
        cpu_add_channel_vector_forward(y, x, vf, B, HW, C);
    return finish(&s);
}

static int add_channel_vector_backward(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dvec,
                                       const sdt_tensor *dout)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp), *dv = acc(&s, dvec);
    const float *dy = in(&s, dout);
    int64_t B, HW, C;
    image_dims(dout, &B, &HW, &C);
    if (!s.failed)
        cpu_add_channel_vector_backward(dx, dv, dy, B, HW, C);
    return finish(&s);
}

static int concat_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *a, const sdt_tensor *b)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *af = in(&s, a), *bf = in(&s, b);
    if (!s.failed)
        cpu_concat_forward(y, af, bf, rows(a), last_dim(a), last_dim(b));
    return finish(&s);
}

static int concat_backward(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout)
{
    staging s = {.e = e};
    float *daf = acc(&s, da), *dbf = acc(&s, db);
    const float *dy = in(&s, dout);
    if (!s.failed)
        cpu_concat_backward(daf, dbf, dy, rows(dout), last_dim(da), last_dim(db));
    return finish(&s);
}

static int upsample2x_forward(sdt_engine *e, sdt_tensor *o, const sdt_tensor *inp)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *x = in(&s, inp);
    if (!s.failed)
        cpu_upsample2x_forward(y, x, inp->shape[0], inp->shape[1], inp->shape[2], inp->shape[3]);
    return finish(&s);
}

static int upsample2x_backward(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout)
{
    staging s = {.e = e};
    float *dx = acc(&s, dinp);
    const float *dy = in(&s, dout);
    if (!s.failed)
        cpu_upsample2x_backward(dx, dy, dinp->shape[0], dinp->shape[1], dinp->shape[2], dinp->shape[3]);
    return finish(&s);
}

static int timestep_embedding(sdt_engine *e, sdt_tensor *o, const sdt_tensor *timesteps, int flip_sin_to_cos,
                              float freq_shift, float max_period)
{
    staging s = {.e = e};
    float *y = out(&s, o);
    const float *t = in(&s, timesteps);
    if (!s.failed)
        cpu_timestep_embedding(y, t, o->shape[0], o->shape[1], flip_sin_to_cos, freq_shift, max_period);
    return finish(&s);
}

static int mse_loss_forward(sdt_engine *e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
                            const sdt_tensor *target, const sdt_tensor *weights)
{
    staging s = {.e = e};
    float *per = out(&s, per_sample);
    const float *p = in(&s, pred), *t = in(&s, target), *w = in(&s, weights);
    int64_t B = pred->shape[0];
    if (!s.failed)
        *(float *)loss->data = cpu_mse_loss_forward(per, p, t, w, B, sdt_tensor_numel(pred) / B);
    return finish(&s);
}

static int mse_loss_backward(sdt_engine *e, sdt_tensor *dpred, const sdt_tensor *pred,
                             const sdt_tensor *target, const sdt_tensor *weights, float dloss)
{
    staging s = {.e = e};
    float *dp = acc(&s, dpred);
    const float *p = in(&s, pred), *t = in(&s, target), *w = in(&s, weights);
    int64_t B = pred->shape[0];
    if (!s.failed)
        cpu_mse_loss_backward(dp, p, t, w, dloss, B, sdt_tensor_numel(pred) / B);
    return finish(&s);
}

static int fill(sdt_engine *e, sdt_tensor *t, float value)
{
    staging s = {.e = e};
    float *y = out(&s, t);
    if (!s.failed)
        cpu_fill(y, value, sdt_tensor_numel(t));
    return finish(&s);
}

static int scale(sdt_engine *e, sdt_tensor *t, float alpha)
{
    staging s = {.e = e};
    float *y = acc(&s, t);
    if (!s.failed)
        cpu_scale(y, alpha, sdt_tensor_numel(t));
    return finish(&s);
}

static int dropout_scale(sdt_engine *e, sdt_tensor *t, const sdt_dropout_args *args)
{
    (void)e; /* F32 only (backend.c): no staging */
    int64_t n = sdt_tensor_numel(t);
    cpu_dropout_scale(t->data, n, n / t->shape[0], t->shape[t->ndim - 1], args);
    return 0;
}

static int axpy(sdt_engine *e, sdt_tensor *y, float alpha, const sdt_tensor *x)
{
    staging s = {.e = e};
    float *yf = acc(&s, y);
    const float *xf = in(&s, x);
    if (!s.failed)
        cpu_axpy(yf, alpha, xf, sdt_tensor_numel(y));
    return finish(&s);
}

static int copy(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src)
{
    (void)e;
    if (dst->data == src->data && dst->dtype == src->dtype)
        return 0;
    sdt_convert(dst->data, dst->dtype, src->data, src->dtype, (size_t)sdt_tensor_numel(dst));
    return 0;
}

static int optimizer_update(sdt_engine *e, const sdt_optimizer_update_args *args)
{
    return cpu_optimizer_update(args) == 0
               ? 0
               : sdt_engine_fail(e, "optimizer_update: out of memory for the F32 values of a half parameter");
}

/* In list order, in double, rounded to F32 once (cpu_reduce.c says why one thread). */
static int sum_squares(sdt_engine *e, sdt_tensor *out, const sdt_tensor *tensors, size_t count)
{
    (void)e;
    double sum = 0.0;
    for (size_t i = 0; i < count; i++)
        sum = cpu_add_squares(sum, tensors[i].data, tensors[i].dtype, sdt_tensor_numel(&tensors[i]));
    *(float *)out->data = (float)sum;
    return 0;
}

static const sdt_backend_ops cpu_ops_table = {
    .name = "cpu",
    .init = cpu_init,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .upload = cpu_copy_bytes,
    .download = cpu_copy_bytes,
    .linear_forward = linear_forward,
    .linear_backward = linear_backward,
    .conv2d_forward = conv2d_forward,
    .conv2d_backward = conv2d_backward,
    .group_norm_forward = group_norm_forward,
    .group_norm_backward = group_norm_backward,
    .layer_norm_forward = layer_norm_forward,
    .layer_norm_backward = layer_norm_backward,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .softmax_forward = softmax_forward,
    .softmax_backward = softmax_backward,
    .activation_forward = activation_forward,
    .activation_backward = activation_backward,
    .geglu_forward = geglu_forward,
    .geglu_backward = geglu_backward,
    .add_forward = add_forward,
    .add_backward = add_backward,
    .add_channel_vector_forward = add_channel_vector_forward,
    .add_channel_vector_backward = add_channel_vector_backward,
    .concat_forward = concat_forward,
    .concat_backward = concat_backward,
    .upsample2x_forward = upsample2x_forward,
    .upsample2x_backward = upsample2x_backward,
    .timestep_embedding = timestep_embedding,
    .mse_loss_forward = mse_loss_forward,
    .mse_loss_backward = mse_loss_backward,
    .fill = fill,
    .scale = scale,
    .axpy = axpy,
    .copy = copy,
    .optimizer_update = optimizer_update,
    .sum_squares = sum_squares,
    .dropout_scale = dropout_scale,
};

const sdt_backend_ops *sdt_cpu_backend_ops(void) { return &cpu_ops_table; }
