/* Layers: parameter binding, forward with saved tensors, backward into gradients. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adapter.h"
#include "layers.h"
#include "sdtune/strutil.h"

/* ---- activation tensors ------------------------------------------------------------------------ */

int sdt_act_alloc(sdt_engine *e, sdt_tensor *t, sdt_dtype dtype, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > SDT_MAX_DIMS)
        return sdt_engine_fail(e, "activation of rank %d (at most %d)", ndim, SDT_MAX_DIMS);
    sdt_tensor shaped = sdt_tensor_view(NULL, dtype, ndim, shape);
    shaped.device = sdt_engine_device(e);
    size_t bytes = sdt_tensor_bytes(&shaped);
    /* A zero-size tensor still gets a distinct pointer so "has data" means "allocated". */
    shaped.data = sdt_engine_alloc(e, bytes ? bytes : 1);
    if (!shaped.data) {
        char desc[96];
        sdt_tensor_describe(&shaped, desc, sizeof desc);
        return sdt_engine_fail(e, "out of memory for an activation of %s (%zu bytes)", desc, bytes);
    }
    *t = shaped;
    return 0;
}

int sdt_act_zeros(sdt_engine *e, sdt_tensor *t, sdt_dtype dtype, int ndim, const int64_t *shape)
{
    if (sdt_act_alloc(e, t, dtype, ndim, shape) != 0)
        return -1;
    if (sdt_fill(e, t, 0.0f) != 0) {
        sdt_act_free(e, t);
        return -1;
    }
    return 0;
}

int sdt_act_upload_f32(sdt_engine *e, sdt_tensor *t, sdt_dtype dtype, int ndim, const int64_t *shape,
                       const float *host)
{
    sdt_tensor staged = {0}; /* shape, F32 */
    if (sdt_act_alloc(e, &staged, SDT_F32, ndim, shape) != 0)
        return -1;
    if (sdt_engine_upload(e, &staged, host, sdt_tensor_bytes(&staged)) != 0) {
        sdt_act_free(e, &staged);
        return -1;
    }
    if (dtype == SDT_F32) {
        *t = staged;
        return 0;
    }
    int rc = sdt_act_alloc(e, t, dtype, ndim, shape) != 0 || sdt_copy(e, t, &staged) != 0 ? -1 : 0;
    sdt_act_free(e, &staged);
    if (rc != 0)
        sdt_act_free(e, t);
    return rc;
}

int sdt_act_zeros_like(sdt_engine *e, sdt_tensor *t, const sdt_tensor *like)
{
    return sdt_act_zeros(e, t, like->dtype, like->ndim, like->shape);
}

void sdt_act_free(sdt_engine *e, sdt_tensor *t)
{
    if (t->data)
        sdt_engine_dealloc(e, t->data);
    memset(t, 0, sizeof *t);
}

sdt_tensor sdt_view(const sdt_tensor *t, int ndim, const int64_t *shape)
{
    sdt_tensor v = *t;
    v.ndim = ndim;
    memset(v.shape, 0, sizeof v.shape);
    memcpy(v.shape, shape, (size_t)ndim * sizeof *shape);
    return v;
}

/* ---- binding ----------------------------------------------------------------------------------- */

sdt_param *sdt_bind_param(sdt_param_table *t, const char *name, char **error)
{
    sdt_param *p = sdt_param_find(t, name);
    if (!p && error && !*error)
        *error = sdt_format("%s: no parameter \"%s\"", t->component, name);
    return p;
}

/* base + "." + part into buf; a name too long for the buffer yields "" (found nowhere, so reported). */
static const char *join_name(char *buf, size_t size, const char *base, const char *part)
{
    size_t a = strlen(base), b = strlen(part);
    if (a + 1 + b + 1 > size) {
        buf[0] = '\0';
        return buf;
    }
    memcpy(buf, base, a);
    buf[a] = '.';
    memcpy(buf + a + 1, part, b + 1);
    return buf;
}

static sdt_param *bind_part(sdt_param_table *t, const char *base, const char *part, int required,
                            char **error)
{
    char name[320];
    join_name(name, sizeof name, base, part);
    return required ? sdt_bind_param(t, name, error) : sdt_param_find(t, name);
}

/* The value of a parameter and its gradient (NULL when frozen). */
static const sdt_tensor *value_of(const sdt_param *p) { return p ? &p->value : NULL; }

static sdt_tensor *grad_of(const sdt_param *p) { return p && p->grad.data ? (sdt_tensor *)&p->grad : NULL; }

/* ---- linear ------------------------------------------------------------------------------------ */

int sdt_linear_bind(sdt_linear *l, sdt_param_table *t, const char *base, char **error)
{
    l->weight = bind_part(t, base, "weight", 1, error);
    l->bias = bind_part(t, base, "bias", 0, error);
    return l->weight ? 0 : -1;
}

int sdt_linear_fwd(sdt_engine *e, const sdt_linear *l, sdt_tensor *out, const sdt_tensor *inp)
{
    int64_t shape[SDT_MAX_DIMS];
    memcpy(shape, inp->shape, sizeof shape);
    shape[inp->ndim - 1] = l->weight->value.shape[0];
    if (sdt_act_alloc(e, out, inp->dtype, inp->ndim, shape) != 0)
        return -1;
    const sdt_adapter *adapter = l->weight->adapter;
    if (sdt_linear_forward(e, out, inp, &l->weight->value, value_of(l->bias)) != 0 ||
        (adapter && sdt_adapter_linear_fwd(e, adapter, out, inp) != 0)) {
        sdt_act_free(e, out);
        return -1;
    }
    return 0;
}

int sdt_linear_bwd(sdt_engine *e, const sdt_linear *l, sdt_tensor *dinp, const sdt_tensor *dout,
                   const sdt_tensor *inp)
{
    sdt_tensor *dw = grad_of(l->weight), *db = grad_of(l->bias);
    /* The adapter's own gradients and its share of dinp; the frozen base weight still passes dinp on. */
    const sdt_adapter *adapter = l->weight->adapter;
    if (adapter && sdt_adapter_linear_bwd(e, adapter, dinp, dout, inp) != 0)
        return -1;
    if (!dinp && !dw && !db)
        return 0;
    return sdt_linear_backward(e, dinp, dw, db, dout, inp, &l->weight->value);
}

/* ---- conv2d ------------------------------------------------------------------------------------ */

int sdt_conv_bind(sdt_conv *c, sdt_param_table *t, const char *base, int stride, int pad, char **error)
{
    c->weight = bind_part(t, base, "weight", 1, error);
    c->bias = bind_part(t, base, "bias", 0, error);
    c->p = (sdt_conv2d_params){
        .stride = stride, .pad_top = pad, .pad_left = pad, .pad_bottom = pad, .pad_right = pad};
    return c->weight ? 0 : -1;
}

int sdt_conv_fwd(sdt_engine *e, const sdt_conv *c, sdt_tensor *out, const sdt_tensor *inp)
{
    const int64_t *w = c->weight->value.shape; /* [OC, KH, KW, C] */
    if (inp->ndim != 4)
        return sdt_engine_fail(e, "conv %s: input has rank %d, expected [B, H, W, C]", c->weight->name,
                               inp->ndim);
    int64_t oh = (inp->shape[1] + c->p.pad_top + c->p.pad_bottom - w[1]) / c->p.stride + 1;
    int64_t ow = (inp->shape[2] + c->p.pad_left + c->p.pad_right - w[2]) / c->p.stride + 1;
    if (sdt_act_alloc(e, out, inp->dtype, 4, SDT_SHAPE(inp->shape[0], oh, ow, w[0])) != 0)
        return -1;
    const sdt_adapter *adapter = c->weight->adapter;
    if (sdt_conv2d_forward(e, out, inp, &c->weight->value, value_of(c->bias), &c->p) != 0 ||
        (adapter && sdt_adapter_conv_fwd(e, adapter, out, inp, &c->p) != 0)) {
        sdt_act_free(e, out);
        return -1;
    }
    return 0;
}

int sdt_conv_bwd(sdt_engine *e, const sdt_conv *c, sdt_tensor *dinp, const sdt_tensor *dout,
                 const sdt_tensor *inp)
{
    sdt_tensor *dw = grad_of(c->weight), *db = grad_of(c->bias);
    const sdt_adapter *adapter = c->weight->adapter;
    if (adapter && sdt_adapter_conv_bwd(e, adapter, dinp, dout, inp, &c->p) != 0)
        return -1;
    if (!dinp && !dw && !db)
        return 0;
    return sdt_conv2d_backward(e, dinp, dw, db, dout, inp, &c->weight->value, &c->p);
}

/* ---- norms ------------------------------------------------------------------------------------- */

int sdt_norm_bind(sdt_norm *n, sdt_param_table *t, const char *base, int groups, float eps, char **error)
{
    n->weight = bind_part(t, base, "weight", 1, error);
    n->bias = bind_part(t, base, "bias", 1, error);
    n->groups = groups;
    n->eps = eps;
    return n->weight && n->bias ? 0 : -1;
}

/* Statistics shape: [B, groups] for a group norm, the leading dims for a layer norm. */
static int alloc_stats(sdt_engine *e, const sdt_norm *n, const sdt_tensor *inp, sdt_norm_saved *s)
{
    int64_t shape[SDT_MAX_DIMS];
    int ndim;
    if (n->groups > 0) {
        shape[0] = inp->shape[0];
        shape[1] = n->groups;
        ndim = 2;
    } else {
        ndim = inp->ndim > 1 ? inp->ndim - 1 : 1;
        memcpy(shape, inp->shape, (size_t)ndim * sizeof *shape);
        if (inp->ndim == 1)
            shape[0] = 1;
    }
    if (sdt_act_alloc(e, &s->mean, SDT_F32, ndim, shape) != 0)
        return -1;
    if (sdt_act_alloc(e, &s->rstd, SDT_F32, ndim, shape) != 0) {
        sdt_act_free(e, &s->mean);
        return -1;
    }
    return 0;
}

void sdt_norm_saved_free(sdt_engine *e, sdt_norm_saved *saved)
{
    sdt_act_free(e, &saved->mean);
    sdt_act_free(e, &saved->rstd);
}

int sdt_norm_fwd(sdt_engine *e, const sdt_norm *n, sdt_tensor *out, sdt_norm_saved *saved,
                 const sdt_tensor *inp, int fuse_silu)
{
    sdt_norm_saved local = {0};
    sdt_norm_saved *s = saved ? saved : &local;
    if (alloc_stats(e, n, inp, s) != 0)
        return -1;
    if (sdt_act_alloc(e, out, inp->dtype, inp->ndim, inp->shape) != 0)
        goto fail;
    int status;
    if (n->groups > 0)
        status = sdt_group_norm_forward(e, out, &s->mean, &s->rstd, inp, &n->weight->value, &n->bias->value,
                                        n->groups, n->eps, fuse_silu);
    else if (fuse_silu)
        status = sdt_engine_fail(e, "layer norm %s: SiLU fusion is a group norm feature", n->weight->name);
    else
        status = sdt_layer_norm_forward(e, out, &s->mean, &s->rstd, inp, &n->weight->value, &n->bias->value,
                                        n->eps);
    if (status != 0) {
        sdt_act_free(e, out);
        goto fail;
    }
    sdt_norm_saved_free(e, &local);
    return 0;
fail:
    sdt_norm_saved_free(e, s);
    return -1;
}

int sdt_norm_bwd(sdt_engine *e, const sdt_norm *n, sdt_tensor *dinp, const sdt_tensor *dout,
                 const sdt_tensor *inp, const sdt_norm_saved *saved, int fuse_silu)
{
    sdt_tensor *dw = grad_of(n->weight), *db = grad_of(n->bias);
    if (!dinp && !dw && !db)
        return 0;
    if (n->groups > 0)
        return sdt_group_norm_backward(e, dinp, dw, db, dout, inp, &n->weight->value, &n->bias->value,
                                       &saved->mean, &saved->rstd, n->groups, fuse_silu);
    return sdt_layer_norm_backward(e, dinp, dw, db, dout, inp, &n->weight->value, &saved->mean, &saved->rstd);
}

/* ---- multi-head attention ---------------------------------------------------------------------- */

int sdt_mha_bind(sdt_mha *m, sdt_param_table *t, const char *base, const char *const names[4], int heads,
                 int causal, char **error)
{
    sdt_linear *parts[4] = {&m->q, &m->k, &m->v, &m->out};
    for (int i = 0; i < 4; i++) {
        char name[320];
        if (sdt_linear_bind(parts[i], t, join_name(name, sizeof name, base, names[i]), error) != 0)
            return -1;
    }
    m->heads = heads;
    m->causal = causal;
    return 0;
}

static float mha_scale(const sdt_mha *m)
{
    int64_t channels = m->q.weight->value.shape[0];
    return 1.0f / sqrtf((float)(channels / m->heads));
}

void sdt_mha_saved_free(sdt_engine *e, sdt_mha_saved *saved)
{
    sdt_act_free(e, &saved->q);
    sdt_act_free(e, &saved->k);
    sdt_act_free(e, &saved->v);
    sdt_act_free(e, &saved->attn);
    sdt_act_free(e, &saved->lse);
}

int sdt_mha_fwd(sdt_engine *e, const sdt_mha *m, sdt_tensor *out, sdt_mha_saved *saved, const sdt_tensor *x,
                const sdt_tensor *ctx)
{
    sdt_mha_saved local = {0};
    sdt_mha_saved *s = saved ? saved : &local;
    memset(s, 0, sizeof *s);
    if (x->ndim != 3 || ctx->ndim != 3)
        return sdt_engine_fail(e, "attention %s: inputs must be [B, L, C] token sequences",
                               m->q.weight->name);
    if (sdt_linear_fwd(e, &m->q, &s->q, x) != 0 || sdt_linear_fwd(e, &m->k, &s->k, ctx) != 0 ||
        sdt_linear_fwd(e, &m->v, &s->v, ctx) != 0)
        goto fail;
    if (sdt_act_alloc(e, &s->attn, x->dtype, 3, s->q.shape) != 0 ||
        sdt_act_alloc(e, &s->lse, SDT_F32, 3, SDT_SHAPE(x->shape[0], m->heads, x->shape[1])) != 0)
        goto fail;
    if (sdt_attention_forward(e, &s->attn, &s->lse, &s->q, &s->k, &s->v, m->heads, mha_scale(m), m->causal) !=
        0)
        goto fail;
    if (sdt_linear_fwd(e, &m->out, out, &s->attn) != 0)
        goto fail;
    sdt_mha_saved_free(e, &local);
    return 0;
fail:
    sdt_mha_saved_free(e, s);
    return -1;
}

int sdt_mha_bwd(sdt_engine *e, const sdt_mha *m, sdt_tensor *dx, sdt_tensor *dctx, const sdt_tensor *dout,
                const sdt_tensor *x, const sdt_tensor *ctx, const sdt_mha_saved *saved)
{
    /* For self-attention with one gradient tensor, both paths add into dx. */
    sdt_tensor *dkv = dctx ? dctx : (ctx == x ? dx : NULL);
    sdt_tensor dattn = {0}, dq = {0}, dk = {0}, dv = {0};
    int status = -1;
    if (sdt_act_zeros_like(e, &dattn, &saved->attn) != 0)
        goto done;
    if (sdt_linear_bwd(e, &m->out, &dattn, dout, &saved->attn) != 0)
        goto done;
    if (sdt_act_zeros_like(e, &dq, &saved->q) != 0 || sdt_act_zeros_like(e, &dk, &saved->k) != 0 ||
        sdt_act_zeros_like(e, &dv, &saved->v) != 0)
        goto done;
    if (sdt_attention_backward(e, &dq, &dk, &dv, &dattn, &saved->q, &saved->k, &saved->v, &saved->attn,
                               &saved->lse, m->heads, mha_scale(m), m->causal) != 0)
        goto done;
    if (sdt_linear_bwd(e, &m->q, dx, &dq, x) != 0 || sdt_linear_bwd(e, &m->k, dkv, &dk, ctx) != 0 ||
        sdt_linear_bwd(e, &m->v, dkv, &dv, ctx) != 0)
        goto done;
    status = 0;
done:
    sdt_act_free(e, &dattn);
    sdt_act_free(e, &dq);
    sdt_act_free(e, &dk);
    sdt_act_free(e, &dv);
    return status;
}

/* ---- ResNet block ------------------------------------------------------------------------------ */

int sdt_resnet_bind(sdt_resnet *r, sdt_param_table *t, const char *base, const char *const names[6],
                    int groups, float eps, char **error)
{
    memset(r, 0, sizeof *r);
    char name[320];
#define PART(i) join_name(name, sizeof name, base, names[i])
    if (sdt_norm_bind(&r->norm1, t, PART(0), groups, eps, error) != 0 ||
        sdt_conv_bind(&r->conv1, t, PART(1), 1, 1, error) != 0 ||
        sdt_norm_bind(&r->norm2, t, PART(3), groups, eps, error) != 0 ||
        sdt_conv_bind(&r->conv2, t, PART(4), 1, 1, error) != 0)
        return -1;
    if (names[2] && sdt_linear_bind(&r->emb_proj, t, PART(2), error) != 0)
        return -1;
#undef PART
    /* The shortcut exists only when the block changes the channel count. */
    char shortcut[320];
    join_name(shortcut, sizeof shortcut, base, names[5]);
    if (bind_part(t, shortcut, "weight", 0, error) && sdt_linear_bind(&r->shortcut, t, shortcut, error) != 0)
        return -1;
    return 0;
}

void sdt_resnet_saved_free(sdt_engine *e, sdt_resnet_saved *saved)
{
    sdt_norm_saved_free(e, &saved->n1);
    sdt_norm_saved_free(e, &saved->n2);
    sdt_act_free(e, &saved->h1);
    sdt_act_free(e, &saved->h2);
    sdt_act_free(e, &saved->h3);
    sdt_act_free(e, &saved->emb_act);
}

int sdt_resnet_fwd(sdt_engine *e, const sdt_resnet *r, sdt_tensor *out, sdt_resnet_saved *saved,
                   const sdt_tensor *x, const sdt_tensor *emb)
{
    sdt_resnet_saved local = {0};
    sdt_resnet_saved *s = saved ? saved : &local;
    memset(s, 0, sizeof *s);
    sdt_tensor emb_vec = {0}; /* [B, out] the time embedding's per-channel shift */
    memset(out, 0, sizeof *out);
    if (sdt_norm_fwd(e, &r->norm1, &s->h1, &s->n1, x, 1) != 0 ||
        sdt_conv_fwd(e, &r->conv1, &s->h2, &s->h1) != 0)
        goto fail;
    if (!saved) /* inference: conv1's input is done with */
        sdt_act_free(e, &s->h1);
    if (r->emb_proj.weight) {
        if (!emb) {
            sdt_engine_fail(e, "resnet %s: needs the time embedding", r->conv1.weight->name);
            goto fail;
        }
        if (sdt_act_alloc(e, &s->emb_act, emb->dtype, emb->ndim, emb->shape) != 0 ||
            sdt_activation_forward(e, &s->emb_act, emb, SDT_ACT_SILU) != 0 ||
            sdt_linear_fwd(e, &r->emb_proj, &emb_vec, &s->emb_act) != 0 ||
            sdt_add_channel_vector_forward(e, &s->h2, &s->h2, &emb_vec) != 0)
            goto fail;
        sdt_act_free(e, &emb_vec);
    }
    if (sdt_norm_fwd(e, &r->norm2, &s->h3, &s->n2, &s->h2, 1) != 0)
        goto fail;
    if (!saved) /* inference: norm2's input is done with before conv2 allocates its output */
        sdt_act_free(e, &s->h2);
    if (sdt_conv_fwd(e, &r->conv2, out, &s->h3) != 0)
        goto fail;
    if (!saved)
        sdt_act_free(e, &s->h3);
    if (r->shortcut.weight) {
        sdt_tensor shortcut = {0}; /* [B, H, W, out] */
        if (sdt_linear_fwd(e, &r->shortcut, &shortcut, x) != 0)
            goto fail;
        int status = sdt_add_forward(e, out, out, &shortcut);
        sdt_act_free(e, &shortcut);
        if (status != 0)
            goto fail;
    } else if (sdt_add_forward(e, out, out, x) != 0) {
        goto fail;
    }
    sdt_resnet_saved_free(e, &local);
    return 0;
fail:
    sdt_act_free(e, &emb_vec);
    sdt_act_free(e, out);
    sdt_resnet_saved_free(e, s);
    return -1;
}

int sdt_resnet_bwd(sdt_engine *e, const sdt_resnet *r, sdt_tensor *dx, sdt_tensor *demb,
                   const sdt_tensor *dout, const sdt_tensor *x, const sdt_tensor *emb,
                   const sdt_resnet_saved *s)
{
    sdt_tensor dh3 = {0}, dh2 = {0}, dh1 = {0}, demb_vec = {0}, demb_act = {0};
    int status = -1;
    if (r->emb_proj.weight && !emb) /* its shape and SiLU's backward need it */
        return sdt_engine_fail(e, "resnet %s: backward needs the time embedding", r->conv1.weight->name);
    /* The residual path: dout flows to x directly or through the shortcut. */
    if (r->shortcut.weight) {
        if (sdt_linear_bwd(e, &r->shortcut, dx, dout, x) != 0)
            goto done;
    } else if (dx && sdt_axpy(e, dx, 1.0f, dout) != 0) {
        goto done;
    }
    if (sdt_act_zeros_like(e, &dh3, &s->h3) != 0 || sdt_conv_bwd(e, &r->conv2, &dh3, dout, &s->h3) != 0)
        goto done;
    if (sdt_act_zeros_like(e, &dh2, &s->h2) != 0 ||
        sdt_norm_bwd(e, &r->norm2, &dh2, &dh3, &s->h2, &s->n2, 1) != 0)
        goto done;
    sdt_act_free(e, &dh3);
    if (r->emb_proj.weight) {
        /* h2 = conv1 + vec[b, c]: the vector's gradient is dh2 summed over the pixels. */
        int64_t channels = r->emb_proj.weight->value.shape[0];
        if (sdt_act_zeros(e, &demb_vec, SDT_F32, 2, SDT_SHAPE(emb->shape[0], channels)) != 0 ||
            sdt_add_channel_vector_backward(e, NULL, &demb_vec, &dh2) != 0)
            goto done;
        if (demb) {
            if (sdt_act_zeros_like(e, &demb_act, &s->emb_act) != 0 ||
                sdt_linear_bwd(e, &r->emb_proj, &demb_act, &demb_vec, &s->emb_act) != 0 ||
                sdt_activation_backward(e, demb, &demb_act, emb, SDT_ACT_SILU) != 0)
                goto done;
        } else if (sdt_linear_bwd(e, &r->emb_proj, NULL, &demb_vec, &s->emb_act) != 0) {
            goto done;
        }
    }
    if (sdt_act_zeros_like(e, &dh1, &s->h1) != 0 || sdt_conv_bwd(e, &r->conv1, &dh1, &dh2, &s->h1) != 0)
        goto done;
    if (sdt_norm_bwd(e, &r->norm1, dx, &dh1, x, &s->n1, 1) != 0)
        goto done;
    status = 0;
done:
    sdt_act_free(e, &dh3);
    sdt_act_free(e, &dh2);
    sdt_act_free(e, &dh1);
    sdt_act_free(e, &demb_vec);
    sdt_act_free(e, &demb_act);
    return status;
}
