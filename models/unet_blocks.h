/* The UNet's spatial transformer (diffusers Transformer2DModel, ldm SpatialTransformer; sd_arch_spec §1.5):
 * GroupNorm (eps 1e-6) -> proj_in -> depth x BasicTransformerBlock -> proj_out -> + input. Used by
 * models/unet.c; the same layer conventions as models/layers.h (forward allocates its output, a `saved`
 * struct or NULL for inference, backward adds into the gradients it is given). */
#ifndef SDTUNE_MODELS_UNET_BLOCKS_H
#define SDTUNE_MODELS_UNET_BLOCKS_H

#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One BasicTransformerBlock: x += attn1(LN1(x)); x += attn2(LN2(x), context); x += ff(LN3(x)), the
 * feed-forward being ff.net.0.proj (C -> 8C), GEGLU (-> 4C), ff.net.2 (4C -> C). */
typedef struct sdt_transformer_block {
    sdt_norm norm1, norm2, norm3; /* layer norms, eps 1e-5 */
    sdt_mha attn1, attn2;         /* self-attention; cross-attention over the context */
    sdt_linear ff_in, ff_out;     /* ff.net.0.proj [8C, C], ff.net.2 [C, 4C] */
} sdt_transformer_block;

typedef struct sdt_transformer_block_saved {
    sdt_norm_saved ln1, ln2, ln3;
    sdt_tensor n1, n2, n3; /* [B, L, C] LN1/2/3 outputs: the attentions' and ff.net.0.proj's inputs */
    sdt_tensor x1, x2; /* [B, L, C] the residual stream after attn1 and after attn2 (LN2's, LN3's input) */
    sdt_mha_saved attn1, attn2;
    sdt_tensor ff_h; /* [B, L, 8C] ff.net.0.proj output, the GEGLU input */
    sdt_tensor ff_g; /* [B, L, 4C] GEGLU output, ff.net.2's input */
} sdt_transformer_block_saved;

/* proj_in/proj_out are linear layers on the tokens whether the checkpoint stores them as 1x1 convs (SD1)
 * or as linear weights (SD2, SDXL): a 1x1 conv on [B, C, H, W] is the same product. */
typedef struct sdt_transformer2d {
    sdt_norm norm; /* GroupNorm, eps 1e-6 */
    sdt_linear proj_in, proj_out;
    int depth;
    sdt_transformer_block *blocks; /* depth of them */
} sdt_transformer2d;

typedef struct sdt_transformer2d_saved {
    sdt_norm_saved gn;
    sdt_tensor gn_out; /* [B, H*W, C] GroupNorm output, proj_in's input */
    /* depth + 1 tensors [B, H*W, C]: stream[d] enters block d, stream[depth] enters proj_out. */
    sdt_tensor *stream;
    sdt_transformer_block_saved *blocks; /* depth of them */
    int depth;
} sdt_transformer2d_saved;

/* Binds base.norm, base.proj_in, base.transformer_blocks.{0..depth-1}.*, base.proj_out. heads: attention
 * heads of C / heads channels each. */
int sdt_transformer2d_bind(sdt_transformer2d *tf, sdt_param_table *t, const char *base, int depth, int heads,
                           int groups, float norm_eps, char **error);
void sdt_transformer2d_free(sdt_transformer2d *tf);

/* out [B, H, W, C] (allocated) from x [B, H, W, C] and context [B, L, D]. */
int sdt_transformer2d_fwd(sdt_engine *e, const sdt_transformer2d *tf, sdt_tensor *out,
                          sdt_transformer2d_saved *saved, const sdt_tensor *x, const sdt_tensor *context);
/* dx += ..., dcontext += ... (either may be NULL). */
int sdt_transformer2d_bwd(sdt_engine *e, const sdt_transformer2d *tf, sdt_tensor *dx, sdt_tensor *dcontext,
                          const sdt_tensor *dout, const sdt_tensor *x, const sdt_tensor *context,
                          const sdt_transformer2d_saved *saved);
void sdt_transformer2d_saved_free(sdt_engine *e, sdt_transformer2d_saved *saved);

#ifdef __cplusplus
}
#endif
#endif
