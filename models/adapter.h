/* Low-rank adapters (LoRA, LoCon) attached to the weights of linear and conv layers.
 *
 * A parameter table entry may point at an adapter (sdt_param.adapter). The layer functions of layers.h
 * then compute, for the weight W of that entry,
 *
 *     y = W x + b  +  multiplier * scale * up(mask(down(x)))
 *
 * where down is a linear map [R, C] (linear layers, 1x1 convs run as linear) or a convolution
 * [R, KH, KW, C] with the base layer's stride and padding (3x3 convs, LoCon), up is a linear map [OC, R]
 * (a 1x1 conv on the conv's output grid), and mask applies the dropouts below. The base weight is never
 * changed; its gradient is not computed unless the entry itself is trainable. Backward adds into
 * down_grad / up_grad (when their data is non-NULL) and into the input gradient.
 *
 * Dropout masks are drawn from a counter-based generator keyed by (seed, the adapter's index, the
 * element), so the backward regenerates exactly the forward's mask without saving it and a resumed run
 * draws the same masks. The owner (train/lora.c) sets `seed` before every training step and clears
 * `training` for inference (sampling), which disables every dropout.
 *
 * A conv adapter's down has the base kernel's size (a 1x1 base conv gets a [R, 1, 1, C] down); its output
 * grid must be the base output's. down(x) is recomputed in the backward, not saved, so a checkpointed
 * block's recomputation costs one more rank-R product and no memory. The masks are built on the host (on
 * a GPU the [..., R] tensor makes a round trip). */
#ifndef SDTUNE_MODELS_ADAPTER_H
#define SDTUNE_MODELS_ADAPTER_H

#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_adapter {
    /* Weights, F32, in the engine's layout (channels-last convs):
     *   down: linear [R, C]; conv [R, KH, KW, C]
     *   up:   [OC, R]
     * The grads have the same shapes; data NULL = frozen (no gradient wanted). */
    sdt_tensor down, up;
    sdt_tensor down_grad, up_grad;
    int rank;         /* R */
    float scale;      /* alpha / rank */
    float multiplier; /* kohya's network_multiplier; 1 in training */
    int enabled;      /* 0: the adapter adds nothing (module dropout skipped it this step, or switched off) */
    /* Dropouts, applied only while `training` is set. */
    int training;
    float dropout;      /* network_dropout: elementwise on down's output [.., R], kept values * 1/(1-p) */
    float rank_dropout; /* rank_dropout: per sample (first dim of the input) and rank, kept ones * 1/(1-p) */
    uint64_t seed;      /* the step's key for the masks */
    uint64_t index;     /* this adapter's number within its network (decorrelates the masks) */
} sdt_adapter;

/* Adds the adapter's contribution to out [..., OC] (the base layer's output, already computed) for the
 * input inp [..., C] of a linear layer. Does nothing when !a->enabled. Returns 0, or -1 with the reason in
 * sdt_engine_error(). */
int sdt_adapter_linear_fwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *out, const sdt_tensor *inp);
/* Backward of the above given dout: down_grad and up_grad += (when their data is set); dinp += (when not
 * NULL). The forward's intermediate (down(x)) is recomputed. */
int sdt_adapter_linear_bwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *dinp, const sdt_tensor *dout,
                           const sdt_tensor *inp);

/* The same for a convolution with parameters p: inp [B, H, W, C], out [B, OH, OW, OC]. */
int sdt_adapter_conv_fwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *out, const sdt_tensor *inp,
                         const sdt_conv2d_params *p);
int sdt_adapter_conv_bwd(sdt_engine *e, const sdt_adapter *a, sdt_tensor *dinp, const sdt_tensor *dout,
                         const sdt_tensor *inp, const sdt_conv2d_params *p);

/* The weight change the adapter stands for (no dropout), in the base weight's engine layout, F32:
 * linear [OC, C] = multiplier * scale * up @ down; conv [OC, KH, KW, C] likewise per tap. delta is
 * allocated by the caller with the base weight's shape. Used to merge a LoRA into a model and by the
 * tests. */
int sdt_adapter_delta(sdt_engine *e, const sdt_adapter *a, sdt_tensor *delta);

#ifdef __cplusplus
}
#endif
#endif
