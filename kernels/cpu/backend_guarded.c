/* The guarded backend, for tests only: the CPU backend's ops on memory that the host cannot touch between
 * ops. Allocations are carved, page-aligned and never reused, from one address range reserved at start;
 * the range is kept PROT_NONE except while an op, an upload or a download runs; then it is made readable
 * and writable (one mprotect for the used part), the CPU implementation runs, and it is closed again.
 * Host code that reads or writes a tensor of this device directly (which would read garbage or crash on a
 * GPU) therefore gets SIGSEGV at the very access, on a machine without a GPU; so does a freed pointer
 * used between ops (its pages are given back and never handed out again). Tensors carry
 * SDT_DEVICE_GUARDED, so the engine's device checks also refuse a host buffer handed to an op. Two
 * mprotect calls per op: a test backend, never a training one. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend_impl.h"

typedef struct guarded_region {
    void *base;   /* the caller's pointer (page-aligned, inside the reserved range) */
    size_t bytes; /* a whole number of pages */
} guarded_region;

/* The address range allocations come from: reserved (no memory behind it until touched), never reused,
 * so it bounds the bytes one engine may allocate over its life, not at once. */
#define GUARDED_RESERVE_BYTES ((size_t)1 << 40)

typedef struct guarded_state {
    char *reserve;           /* [GUARDED_RESERVE_BYTES] mapped PROT_NONE at init */
    size_t used;             /* bytes handed out from the start of reserve (a whole number of pages) */
    guarded_region *regions; /* every live allocation, in no particular order */
    size_t count, capacity;
    size_t page;
    int open_depth; /* > 0 while an op or a copy runs: the used range is then readable and writable */
} guarded_state;

static guarded_state *state_of(sdt_engine *e) { return e->backend_state; }

/* Makes every live region accessible (prot = read|write) or not (PROT_NONE). A failing mprotect leaves
 * memory the op cannot use or the host could touch unnoticed; both are reported as the op's failure. */
static int protect_all(sdt_engine *e, int prot)
{
    guarded_state *s = state_of(e);
    if (s->used > 0 && mprotect(s->reserve, s->used, prot) != 0)
        return sdt_engine_fail(e, "guarded backend: mprotect of %zu bytes failed: %s", s->used,
                               strerror(errno));
    return 0;
}

/* Ops do not nest, but the depth keeps an inner open/close pair from closing the regions under an outer
 * one. */
static int open_regions(sdt_engine *e)
{
    guarded_state *s = state_of(e);
    if (s->open_depth++ > 0)
        return 0;
    return protect_all(e, PROT_READ | PROT_WRITE);
}

static int close_regions(sdt_engine *e, int rc)
{
    guarded_state *s = state_of(e);
    if (--s->open_depth > 0)
        return rc;
    int closed = protect_all(e, PROT_NONE);
    return rc != 0 ? rc : closed;
}

/* ---- engine plumbing ----------------------------------------------------------------------------------- */

static int guarded_init(sdt_engine *e)
{
    guarded_state *s = calloc(1, sizeof *s);
    if (!s)
        return sdt_engine_fail(e, "out of memory");
    long page = sysconf(_SC_PAGESIZE);
    s->page = page > 0 ? (size_t)page : 4096;
    e->backend_state = s;
    void *reserve =
        mmap(NULL, GUARDED_RESERVE_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserve == MAP_FAILED)
        return sdt_engine_fail(e, "guarded backend: cannot reserve its address range: %s", strerror(errno));
    s->reserve = reserve;
    /* The CPU backend's own setup (its thread count). */
    const sdt_backend_ops *cpu = sdt_cpu_backend_ops();
    return cpu->init ? cpu->init(e) : 0;
}

static void guarded_shutdown(sdt_engine *e)
{
    guarded_state *s = state_of(e);
    if (!s)
        return;
    if (s->reserve)
        munmap(s->reserve, GUARDED_RESERVE_BYTES);
    free(s->regions);
    free(s);
    e->backend_state = NULL;
}

static void *guarded_alloc(sdt_engine *e, size_t bytes)
{
    guarded_state *s = state_of(e);
    size_t mapped = (bytes + s->page - 1) / s->page * s->page;
    if (mapped == 0)
        mapped = s->page;
    if (mapped < bytes)
        return NULL;
    if (s->count == s->capacity) {
        size_t capacity = s->capacity ? s->capacity * 2 : 64;
        guarded_region *grown = realloc(s->regions, capacity * sizeof *grown);
        if (!grown)
            return NULL;
        s->regions = grown;
        s->capacity = capacity;
    }
    if (mapped > GUARDED_RESERVE_BYTES - s->used) {
        sdt_engine_fail(e, "guarded backend: its %zu-byte address range is used up", GUARDED_RESERVE_BYTES);
        return NULL;
    }
    /* Born open while an op runs (none allocates today), closed otherwise (the reserve is PROT_NONE).
     * Fresh pages happen to be zero; callers must not rely on it, the other allocators promise nothing. */
    void *base = s->reserve + s->used;
    if (s->open_depth > 0 && mprotect(base, mapped, PROT_READ | PROT_WRITE) != 0)
        return NULL;
    s->used += mapped;
    s->regions[s->count++] = (guarded_region){base, mapped};
    e->live_bytes += mapped;
    if (e->live_bytes > e->peak_bytes)
        e->peak_bytes = e->live_bytes;
    return base;
}

static void guarded_dealloc(sdt_engine *e, void *ptr)
{
    guarded_state *s = state_of(e);
    for (size_t i = 0; i < s->count; i++) {
        if (s->regions[i].base != ptr)
            continue;
        /* Its memory goes back to the system; the addresses are never handed out again, so a later use
         * of the freed pointer between ops faults too (during an op it reads zeros). */
        madvise(ptr, s->regions[i].bytes, MADV_DONTNEED);
        e->live_bytes -= s->regions[i].bytes;
        s->regions[i] = s->regions[--s->count];
        return;
    }
}

static int guarded_upload(sdt_engine *e, void *dst, const void *host, size_t bytes)
{
    if (open_regions(e) != 0)
        return close_regions(e, -1);
    memcpy(dst, host, bytes);
    return close_regions(e, 0);
}

static int guarded_download(sdt_engine *e, void *host, const void *src, size_t bytes)
{
    if (open_regions(e) != 0)
        return close_regions(e, -1);
    memcpy(host, src, bytes);
    return close_regions(e, 0);
}

/* ---- ops: the CPU backend's, inside open_regions/close_regions ------------------------------------------
 */

/* GUARDED_OP(name, (parameters), (arguments)) defines guarded_name, which opens the regions, calls the
 * CPU table's entry of the same name and closes them again. */
#define GUARDED_OP(name, params, args)                                                                       \
    static int guarded_##name params                                                                         \
    {                                                                                                        \
        if (open_regions(e) != 0)                                                                            \
            return close_regions(e, -1);                                                                     \
        return close_regions(e, sdt_cpu_backend_ops()->name args);                                           \
    }

GUARDED_OP(linear_forward,
           (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
            const sdt_tensor *bias),
           (e, out, inp, weight, bias))
GUARDED_OP(linear_backward,
           (sdt_engine * e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias, const sdt_tensor *dout,
            const sdt_tensor *inp, const sdt_tensor *weight),
           (e, dinp, dweight, dbias, dout, inp, weight))
GUARDED_OP(conv2d_forward,
           (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
            const sdt_tensor *bias, const sdt_conv2d_params *p),
           (e, out, inp, weight, bias, p))
GUARDED_OP(conv2d_backward,
           (sdt_engine * e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias, const sdt_tensor *dout,
            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_conv2d_params *p),
           (e, dinp, dweight, dbias, dout, inp, weight, p))
GUARDED_OP(group_norm_forward,
           (sdt_engine * e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd, const sdt_tensor *inp,
            const sdt_tensor *weight, const sdt_tensor *bias, int groups, float eps, int fuse_silu),
           (e, out, mean, rstd, inp, weight, bias, groups, eps, fuse_silu))
GUARDED_OP(group_norm_backward,
           (sdt_engine * e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias, const sdt_tensor *dout,
            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias, const sdt_tensor *mean,
            const sdt_tensor *rstd, int groups, int fuse_silu),
           (e, dinp, dweight, dbias, dout, inp, weight, bias, mean, rstd, groups, fuse_silu))
GUARDED_OP(layer_norm_forward,
           (sdt_engine * e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd, const sdt_tensor *inp,
            const sdt_tensor *weight, const sdt_tensor *bias, float eps),
           (e, out, mean, rstd, inp, weight, bias, eps))
GUARDED_OP(layer_norm_backward,
           (sdt_engine * e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias, const sdt_tensor *dout,
            const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *mean, const sdt_tensor *rstd),
           (e, dinp, dweight, dbias, dout, inp, weight, mean, rstd))
GUARDED_OP(attention_forward,
           (sdt_engine * e, sdt_tensor *out, sdt_tensor *lse, const sdt_tensor *q, const sdt_tensor *k,
            const sdt_tensor *v, int heads, float scale, int causal),
           (e, out, lse, q, k, v, heads, scale, causal))
GUARDED_OP(attention_backward,
           (sdt_engine * e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv, const sdt_tensor *dout,
            const sdt_tensor *q, const sdt_tensor *k, const sdt_tensor *v, const sdt_tensor *out,
            const sdt_tensor *lse, int heads, float scale, int causal),
           (e, dq, dk, dv, dout, q, k, v, out, lse, heads, scale, causal))
GUARDED_OP(softmax_forward, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp), (e, out, inp))
GUARDED_OP(softmax_backward,
           (sdt_engine * e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *out),
           (e, dinp, dout, out))
GUARDED_OP(activation_forward, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp, sdt_activation act),
           (e, out, inp, act))
GUARDED_OP(activation_backward,
           (sdt_engine * e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
            sdt_activation act),
           (e, dinp, dout, inp, act))
GUARDED_OP(geglu_forward, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp), (e, out, inp))
GUARDED_OP(geglu_backward, (sdt_engine * e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp),
           (e, dinp, dout, inp))
GUARDED_OP(add_forward, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b),
           (e, out, a, b))
GUARDED_OP(add_backward, (sdt_engine * e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout),
           (e, da, db, dout))
GUARDED_OP(add_channel_vector_forward,
           (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *vec),
           (e, out, inp, vec))
GUARDED_OP(add_channel_vector_backward,
           (sdt_engine * e, sdt_tensor *dinp, sdt_tensor *dvec, const sdt_tensor *dout),
           (e, dinp, dvec, dout))
GUARDED_OP(concat_forward, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b),
           (e, out, a, b))
GUARDED_OP(concat_backward, (sdt_engine * e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout),
           (e, da, db, dout))
GUARDED_OP(upsample2x_forward, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *inp), (e, out, inp))
GUARDED_OP(upsample2x_backward, (sdt_engine * e, sdt_tensor *dinp, const sdt_tensor *dout), (e, dinp, dout))
GUARDED_OP(timestep_embedding,
           (sdt_engine * e, sdt_tensor *out, const sdt_tensor *timesteps, int flip_sin_to_cos,
            float freq_shift, float max_period),
           (e, out, timesteps, flip_sin_to_cos, freq_shift, max_period))
GUARDED_OP(mse_loss_forward,
           (sdt_engine * e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
            const sdt_tensor *target, const sdt_tensor *weights),
           (e, loss, per_sample, pred, target, weights))
GUARDED_OP(mse_loss_backward,
           (sdt_engine * e, sdt_tensor *dpred, const sdt_tensor *pred, const sdt_tensor *target,
            const sdt_tensor *weights, float dloss),
           (e, dpred, pred, target, weights, dloss))
GUARDED_OP(fill, (sdt_engine * e, sdt_tensor *t, float value), (e, t, value))
GUARDED_OP(scale, (sdt_engine * e, sdt_tensor *t, float alpha), (e, t, alpha))
GUARDED_OP(axpy, (sdt_engine * e, sdt_tensor *y, float alpha, const sdt_tensor *x), (e, y, alpha, x))
GUARDED_OP(copy, (sdt_engine * e, sdt_tensor *dst, const sdt_tensor *src), (e, dst, src))
GUARDED_OP(optimizer_update, (sdt_engine * e, const sdt_optimizer_update_args *args), (e, args))
GUARDED_OP(dropout_scale, (sdt_engine * e, sdt_tensor *t, const sdt_dropout_args *args), (e, t, args))
GUARDED_OP(sum_squares, (sdt_engine * e, sdt_tensor *out, const sdt_tensor *tensors, size_t count),
           (e, out, tensors, count))

static const sdt_backend_ops guarded_ops_table = {
    .name = "guarded",
    .init = guarded_init,
    .shutdown = guarded_shutdown,
    .alloc = guarded_alloc,
    .dealloc = guarded_dealloc,
    .upload = guarded_upload,
    .download = guarded_download,
    .linear_forward = guarded_linear_forward,
    .linear_backward = guarded_linear_backward,
    .conv2d_forward = guarded_conv2d_forward,
    .conv2d_backward = guarded_conv2d_backward,
    .group_norm_forward = guarded_group_norm_forward,
    .group_norm_backward = guarded_group_norm_backward,
    .layer_norm_forward = guarded_layer_norm_forward,
    .layer_norm_backward = guarded_layer_norm_backward,
    .attention_forward = guarded_attention_forward,
    .attention_backward = guarded_attention_backward,
    .softmax_forward = guarded_softmax_forward,
    .softmax_backward = guarded_softmax_backward,
    .activation_forward = guarded_activation_forward,
    .activation_backward = guarded_activation_backward,
    .geglu_forward = guarded_geglu_forward,
    .geglu_backward = guarded_geglu_backward,
    .add_forward = guarded_add_forward,
    .add_backward = guarded_add_backward,
    .add_channel_vector_forward = guarded_add_channel_vector_forward,
    .add_channel_vector_backward = guarded_add_channel_vector_backward,
    .concat_forward = guarded_concat_forward,
    .concat_backward = guarded_concat_backward,
    .upsample2x_forward = guarded_upsample2x_forward,
    .upsample2x_backward = guarded_upsample2x_backward,
    .timestep_embedding = guarded_timestep_embedding,
    .mse_loss_forward = guarded_mse_loss_forward,
    .mse_loss_backward = guarded_mse_loss_backward,
    .fill = guarded_fill,
    .scale = guarded_scale,
    .axpy = guarded_axpy,
    .copy = guarded_copy,
    .optimizer_update = guarded_optimizer_update,
    .sum_squares = guarded_sum_squares,
    .dropout_scale = guarded_dropout_scale,
};

const sdt_backend_ops *sdt_guarded_backend_ops(void) { return &guarded_ops_table; }
