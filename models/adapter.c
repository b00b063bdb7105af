/* Low-rank adapters: forward, backward and the merged weight change (models/adapter.h).
 *
 * The adapter's branch is h = down(x) [..., R] (F32), masked and scaled on the rank channels, then
 * up(h) added into the base output. R is small, so h is cheap to recompute in the backward instead of
 * keeping it for every adapted layer of a checkpointed network; the masks are recomputed from their key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "keyed_dropout.h"
#include "layers.h"

/* ---- dropout masks ----------------------------------------------------------------------------- */

/* Streams of draws per adapter and step, so the two dropouts never share a draw. */
enum { STREAM_NETWORK_DROPOUT = 1, STREAM_RANK_DROPOUT = 2 };

static int dropout_active(const sdt_adapter *a)
{
    return a->training && (a->dropout > 0.0f || a->rank_dropout > 0.0f);
}

/* t [B, ..., R] (F32) *= factor, times the dropout mask when one applies. The mask is drawn on the device
 * by the dropout_scale op from keys of (step seed, adapter index, stream) (kernels/keyed_dropout.h): no
 * host round trip, the same elements dropped on every backend, and the backward recomputes the same
 * mask. */
static int scale_masked(sdt_engine *e, const sdt_adapter *a, sdt_tensor *t, float factor)
{
    if (!dropout_active(a))
        return sdt_scale(e, t, factor);
    sdt_dropout_args args = {.factor = factor,
                             .p = a->dropout,
                             .key = sdt_dropout_key(a->seed, a->index, STREAM_NETWORK_DROPOUT),
                             .rank_p = a->rank_dropout,
                             .rank_key = sdt_dropout_key(a->seed, a->index, STREAM_RANK_DROPOUT)};
    return sdt_dropout_scale(e, t, &args);
}

/* ---- checks ------------------------------------------------------------------------------------ */

/* Prefixes the engine's last message with the adapter's number, so a failing op names the adapter. */
static int fail_in(sdt_engine *e, const sdt_adapter *a)
{
    char message[512];
    snprintf(message, sizeof message, "%s", sdt_engine_error(e));
    return sdt_engine_fail(e, "adapter %llu: %s", (unsigned long long)a->index, message);
}

static int check_adapter(sdt_engine *e, const sdt_adapter *a, int down_rank)
{
    if (a->rank < 1 || a->down.ndim != down_rank || a->down.shape[0] != a->rank || a->up.ndim != 2 ||
        a->up.shape[1] != a->rank || a->down.dtype != SDT_F32 || a->up.dtype != SDT_F32) {
        char down[96], up[96];
        sdt_tensor_describe(&a->down, down, sizeof down);
        sdt_tensor_describe(&a->up, up, sizeof up);
        return sdt_engine_fail(e,
                               "adapter %llu: rank %d with down %s and up %s; expected f32 down [R, %s] and "
                               "up [OC, R]",
                               (unsigned long long)a->index, a->rank, down, up,
                               down_rank == 2 ? "C" : "KH, KW, C");
    }
    if (a->dropout < 0.0f || a->dropout >= 1.0f || a->rank_dropout < 0.0f || a->rank_dropout >= 1.0f)
        return sdt_engine_fail(e, "adapter %llu: dropout %g and rank_dropout %g must be in [0, 1)",
                               (unsigned long long)a->index, (double)a->dropout, (double)a->rank_dropout);
    return 0;
}

/* An adapter gradient tensor, NULL when frozen. */
static sdt_tensor *grad_or_null(const sdt_tensor *g) { return g->data ? (sdt_tensor *)g : NULL; }

/* ---- the shared branch ------------------------------------------------------------------------- */

/* h (allocated, F32) = down(inp) shaped like `like` with R channels: [..., R] for a linear layer,
 * [B, OH, OW, R] for a conv (p != NULL). */
static int down_forward(sdt_engine *e, const sdt_adapter *a, sdt_tensor *h, const sdt_tensor *inp,
                        const sdt_tensor *like, const sdt_conv2d_params *p)
{
    int64_t shape[SDT_MAX_DIMS];
    memcpy(shape, like->shape, sizeof shape);
    shape[like->ndim - 1] = a->rank;
    if (sdt_act_alloc(e, h, SDT_F32, like->ndim, shape) != 0)
        return -1;
    int status =
        p ? sdt_conv2d_forward(e, h, inp, &a->down, NULL, p) : sdt_linear_forward(e, h, inp, &a->down, NULL);
    if (status != 0) {
        sdt_act_free(e, h);
        return fail_in(e, a);
    }
    return 0;
}

static int branch_forward(sdt_engine *e, const sdt_adapter *a, sdt_tensor *out, const sdt_tensor *inp,
                          const sdt_conv2d_params *p)
{
    if (!a->enabled)
        return 0;
    if (check_adapter(e, a, p ? 4 : 2) != 0)
        return -1;
    sdt_tensor h = {0};     /* [..., R] F32 down(x), then masked and scaled */
    sdt_tensor delta = {0}; /* [..., OC] like out: the branch's contribution */
    int status = -1;
    if (down_forward(e, a, &h, inp, out, p) != 0)
        return -1;
    if (scale_masked(e, a, &h, a->multiplier * a->scale) != 0)
        goto done;
    if (sdt_act_alloc(e, &delta, out->dtype, out->ndim, out->shape) != 0)
        goto done;
    if (sdt_linear_forward(e, &delta, &h, &a->up, NULL) != 0 || sdt_axpy(e, out, 1.0f, &delta) != 0) {
        fail_in(e, a);
        goto done;
    }
    status = 0;
done:
    sdt_act_free(e, &h);
    sdt_act_free(e, &delta);
    return status;
}

static int branch_backward(sdt_engine *e, const sdt_adapter *a, sdt_tensor *dinp, const sdt_tensor *dout,
                           const sdt_tensor *inp, const sdt_conv2d_params *p)
{
    sdt_tensor *ddown = grad_or_null(&a->down_grad), *dup = grad_or_null(&a->up_grad);
    if (!a->enabled || (!dinp && !ddown && !dup))
        return 0;
    if (check_adapter(e, a, p ? 4 : 2) != 0)
        return -1;
    float factor = a->multiplier * a->scale;
    sdt_tensor h = {0};  /* [..., R] F32 the recomputed, masked and scaled input of up */
    sdt_tensor dh = {0}; /* [..., R] F32 its gradient, then the gradient of down's output */
    int status = -1;
    if (down_forward(e, a, &h, inp, dout, p) != 0)
        return -1;
    if (scale_masked(e, a, &h, factor) != 0 || sdt_act_zeros_like(e, &dh, &h) != 0)
        goto done;
    if (sdt_linear_backward(e, &dh, dup, NULL, dout, &h, &a->up) != 0) {
        fail_in(e, a);
        goto done;
    }
    if (dinp || ddown) {
        /* The mask and scale are a diagonal map: the gradient goes back through the same values. */
        if (scale_masked(e, a, &dh, factor) != 0)
            goto done;
        int rc = p ? sdt_conv2d_backward(e, dinp, ddown, NULL, &dh, inp, &a->down, p)
                   : sdt_linear_backward(e, dinp, ddown, NULL, &dh, inp, &a->down);
        if (rc != 0) {
            fail_in(e, a);
            goto done;
        }
    }
    status = 0;
done:
    sdt_act_free(e, &h);
    sdt_act_free(e, &dh);
    return status;
}

/* ---- public ------------------------------------------------------------------------------------ */

int sdt_adapter_linear_fwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *out, const sdt_tensor *inp)
{
    return branch_forward(e, a, out, inp, NULL);
}

int sdt_adapter_linear_bwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *dinp, const sdt_tensor *dout,
                           const sdt_tensor *inp)
{
    return branch_backward(e, a, dinp, dout, inp, NULL);
}

int sdt_adapter_conv_fwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *out, const sdt_tensor *inp,
                         const sdt_conv2d_params *p)
{
    return branch_forward(e, a, out, inp, p);
}

int sdt_adapter_conv_bwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *dinp, const sdt_tensor *dout,
                         const sdt_tensor *inp, const sdt_conv2d_params *p)
{
    return branch_backward(e, a, dinp, dout, inp, p);
}

int sdt_adapter_delta(sdt_engine *e, const sdt_adapter *a, sdt_tensor *delta)
{
    if (check_adapter(e, a, a->down.ndim == 4 ? 4 : 2) != 0)
        return -1;
    /* delta [OC, K] with K = KH * KW * C is up [OC, R] @ down [R, K]: the input gradient of a linear
     * layer with weight down [R, K] for the output gradient up. Dropout is left out (its expectation). */
    int64_t oc = a->up.shape[0], k = sdt_tensor_numel(&a->down) / a->rank;
    if (sdt_tensor_numel(delta) != oc * k || delta->ndim != a->down.ndim || delta->shape[0] != oc) {
        char got[96];
        sdt_tensor_describe(delta, got, sizeof got);
        return sdt_engine_fail(
            e, "adapter %llu: delta is %s, expected the base weight's [%lld, ...] of %lld values",
            (unsigned long long)a->index, got, (long long)oc, (long long)(oc * k));
    }
    sdt_tensor flat_delta = sdt_view(delta, 2, SDT_SHAPE(oc, k));
    sdt_tensor flat_down = sdt_view(&a->down, 2, SDT_SHAPE(a->rank, k));
    if (sdt_fill(e, delta, 0.0f) != 0 ||
        sdt_linear_backward(e, &flat_delta, NULL, NULL, &a->up, &flat_delta, &flat_down) != 0 ||
        sdt_scale(e, delta, a->multiplier * a->scale) != 0)
        return fail_in(e, a);
    return 0;
}
