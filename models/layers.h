/* Layers the networks are made of: thin structs that point at their parameters in a table, with a forward
 * that allocates its output and a backward that adds into the gradients it is given (the op convention,
 * docs/ops.md). Parameter gradients go to each parameter's `grad` when it has one (trainable) and are
 * skipped otherwise; the gradient of the input is still computed when asked for.
 *
 * Saved tensors: a forward that is given a `saved` struct fills it with what its backward needs; with
 * NULL it keeps nothing (inference). The caller keeps the layer's inputs alive until the backward. Every
 * function returns 0, or -1 with the reason in sdt_engine_error(); on failure nothing is leaked and the
 * outputs are left unallocated. */
#ifndef SDTUNE_MODELS_LAYERS_H
#define SDTUNE_MODELS_LAYERS_H

#include "backend.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- activation tensors ------------------------------------------------------------------------ */

/* Allocates t (through the engine's allocator, on its device). Shapes are at most SDT_MAX_DIMS long. */
int sdt_act_alloc(sdt_engine *e, sdt_tensor *t, sdt_dtype dtype, int ndim, const int64_t *shape);
/* Allocates and zeroes. */
int sdt_act_zeros(sdt_engine *e, sdt_tensor *t, sdt_dtype dtype, int ndim, const int64_t *shape);
/* Allocates t like `like` (dtype and shape) and zeroes it. */
int sdt_act_zeros_like(sdt_engine *e, sdt_tensor *t, const sdt_tensor *like);
/* Allocates t in dtype and shape and fills it from host F32 values [numel]: uploaded as F32, then narrowed
 * on the engine when dtype is not F32, so the host never converts. On failure nothing stays allocated. */
int sdt_act_upload_f32(sdt_engine *e, sdt_tensor *t, sdt_dtype dtype, int ndim, const int64_t *shape,
                       const float *host);
/* Frees t's data and clears it; a tensor with no data is left alone. */
void sdt_act_free(sdt_engine *e, sdt_tensor *t);
/* The same memory with another shape of the same element count. */
sdt_tensor sdt_view(const sdt_tensor *t, int ndim, const int64_t *shape);

/* Shapes as literals: SDT_SHAPE(B, H, W, C). */
#define SDT_SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* ---- binding ----------------------------------------------------------------------------------- */

/* Looks `name` up; on a miss sets *error ("unet: no parameter \"...\"") and returns NULL. */
sdt_param *sdt_bind_param(sdt_param_table *t, const char *name, char **error);

/* ---- linear ------------------------------------------------------------------------------------ */

typedef struct sdt_linear {
    sdt_param *weight; /* [OC, C] */
    sdt_param *bias;   /* [OC] or NULL */
} sdt_linear;

/* Binds base.weight and, when present in the table, base.bias. */
int sdt_linear_bind(sdt_linear *l, sdt_param_table *t, const char *base, char **error);
/* out [..., OC] (allocated) = inp [..., C] @ weight^T + bias. */
int sdt_linear_fwd(sdt_engine *e, const sdt_linear *l, sdt_tensor *out, const sdt_tensor *inp);
/* dinp [..., C] += dout @ weight (NULL: not wanted); weight and bias grads += when trainable. */
int sdt_linear_bwd(sdt_engine *e, const sdt_linear *l, sdt_tensor *dinp, const sdt_tensor *dout,
                   const sdt_tensor *inp);

/* ---- conv2d ------------------------------------------------------------------------------------ */

typedef struct sdt_conv {
    sdt_param *weight; /* [OC, KH, KW, C] */
    sdt_param *bias;   /* [OC] or NULL */
    sdt_conv2d_params p;
} sdt_conv;

/* Binds base.weight/base.bias with a stride and symmetric padding (set c->p for anything else). */
int sdt_conv_bind(sdt_conv *c, sdt_param_table *t, const char *base, int stride, int pad, char **error);
/* out [B, OH, OW, OC] (allocated) = conv(inp [B, H, W, C]). */
int sdt_conv_fwd(sdt_engine *e, const sdt_conv *c, sdt_tensor *out, const sdt_tensor *inp);
int sdt_conv_bwd(sdt_engine *e, const sdt_conv *c, sdt_tensor *dinp, const sdt_tensor *dout,
                 const sdt_tensor *inp);

/* ---- norms ------------------------------------------------------------------------------------- */

typedef struct sdt_norm {
    sdt_param *weight; /* [C] */
    sdt_param *bias;   /* [C] */
    int groups;        /* group norm: groups; layer norm: 0 */
    float eps;
} sdt_norm;

/* What a norm's backward needs besides its input. */
typedef struct sdt_norm_saved {
    sdt_tensor mean; /* [B, groups] (group norm) or [rows] (layer norm), F32 */
    sdt_tensor rstd; /* same shape */
} sdt_norm_saved;

int sdt_norm_bind(sdt_norm *n, sdt_param_table *t, const char *base, int groups, float eps, char **error);
/* Group norm over inp [B, ..., C] (then SiLU when fuse_silu), or layer norm over the last dim when
 * n->groups is 0 (fuse_silu must be 0). out is allocated. */
int sdt_norm_fwd(sdt_engine *e, const sdt_norm *n, sdt_tensor *out, sdt_norm_saved *saved,
                 const sdt_tensor *inp, int fuse_silu);
int sdt_norm_bwd(sdt_engine *e, const sdt_norm *n, sdt_tensor *dinp, const sdt_tensor *dout,
                 const sdt_tensor *inp, const sdt_norm_saved *saved, int fuse_silu);
void sdt_norm_saved_free(sdt_engine *e, sdt_norm_saved *saved);

/* ---- multi-head attention ---------------------------------------------------------------------- */

/* Projections q, k, v and out (bias or not, as the table has them), `heads` heads of C / heads channels,
 * scale head_dim^-0.5, optional causal mask (the CLIP text encoder). */
typedef struct sdt_mha {
    sdt_linear q, k, v, out;
    int heads;
    int causal;
} sdt_mha;

typedef struct sdt_mha_saved {
    sdt_tensor q, k, v; /* [B, Lq, C], [B, Lk, C], [B, Lk, C] projections */
    sdt_tensor attn;    /* [B, Lq, C] attention output before the out projection */
    sdt_tensor lse;     /* [B, heads, Lq] F32 */
} sdt_mha_saved;

/* Binds base.<q>, base.<k>, base.<v>, base.<out> (names differ per network: "to_q" / "q_proj" / "q"). */
int sdt_mha_bind(sdt_mha *m, sdt_param_table *t, const char *base, const char *const names[4], int heads,
                 int causal, char **error);
/* out [B, Lq, C] (allocated) = attention of x [B, Lq, C] over ctx [B, Lk, Cctx] (pass x for self-attention).
 */
int sdt_mha_fwd(sdt_engine *e, const sdt_mha *m, sdt_tensor *out, sdt_mha_saved *saved, const sdt_tensor *x,
                const sdt_tensor *ctx);
/* dx += d/dx, dctx += d/dctx (either NULL when not wanted; for self-attention pass the same tensor for
 * both, or dctx NULL and ctx == x). */
int sdt_mha_bwd(sdt_engine *e, const sdt_mha *m, sdt_tensor *dx, sdt_tensor *dctx, const sdt_tensor *dout,
                const sdt_tensor *x, const sdt_tensor *ctx, const sdt_mha_saved *saved);
void sdt_mha_saved_free(sdt_engine *e, sdt_mha_saved *saved);

/* ---- ResNet block (UNet and VAE) --------------------------------------------------------------- */

/* norm1 -> SiLU -> conv1 (+ emb_proj(SiLU(emb)) per channel) -> norm2 -> SiLU -> conv2, plus the input
 * or its 1x1 shortcut. The VAE's blocks have no emb_proj (weight NULL). */
typedef struct sdt_resnet {
    sdt_norm norm1, norm2;
    sdt_conv conv1, conv2;
    sdt_linear emb_proj; /* weight NULL: no time embedding */
    sdt_linear shortcut; /* weight NULL: identity (in == out) */
} sdt_resnet;

typedef struct sdt_resnet_saved {
    sdt_norm_saved n1, n2;
    sdt_tensor h1;      /* [B, H, W, in]  SiLU(norm1(x)), conv1's input */
    sdt_tensor h2;      /* [B, H, W, out] conv1 output + time embedding, norm2's input */
    sdt_tensor h3;      /* [B, H, W, out] SiLU(norm2(h2)), conv2's input */
    sdt_tensor emb_act; /* [B, T] SiLU(emb), emb_proj's input */
} sdt_resnet_saved;

/* names: UNet {"in_layers.0", "in_layers.2", "emb_layers.1", "out_layers.0", "out_layers.3",
 * "skip_connection"}, VAE {"norm1", "conv1", NULL, "norm2", "conv2", "nin_shortcut"}. */
int sdt_resnet_bind(sdt_resnet *r, sdt_param_table *t, const char *base, const char *const names[6],
                    int groups, float eps, char **error);
/* out [B, H, W, out] (allocated) from x [B, H, W, in] and emb [B, T] (NULL without emb_proj). */
int sdt_resnet_fwd(sdt_engine *e, const sdt_resnet *r, sdt_tensor *out, sdt_resnet_saved *saved,
                   const sdt_tensor *x, const sdt_tensor *emb);
/* dx += ..., demb += ... (either may be NULL). */
int sdt_resnet_bwd(sdt_engine *e, const sdt_resnet *r, sdt_tensor *dx, sdt_tensor *demb,
                   const sdt_tensor *dout, const sdt_tensor *x, const sdt_tensor *emb,
                   const sdt_resnet_saved *saved);
void sdt_resnet_saved_free(sdt_engine *e, sdt_resnet_saved *saved);

#ifdef __cplusplus
}
#endif
#endif
