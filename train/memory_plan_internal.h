/* Shared by memory_plan.c and memory_plan_walk.c; not part of the interface. */
#ifndef SDTUNE_TRAIN_MEMORY_PLAN_INTERNAL_H
#define SDTUNE_TRAIN_MEMORY_PLAN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "memory_plan.h"

/* The walk's counters and the step's shapes. */
typedef struct sdt_walk {
    size_t live, peak; /* bytes the engine allocator would hold now, and the most so far */
    size_t act_bytes;  /* bytes per activation element */
    int64_t batch;     /* B */
    int64_t context_length;
    int checkpointing;  /* gradient checkpointing per block */
    int unet_rank;      /* LoRA rank of the transformers' linear layers; 0: no adapters there */
    int unet_conv_rank; /* LoCon rank of the ResNets' and resamplers' layers; 0: none */
    size_t unet_saved;  /* set by sdt_walk_unet: the UNet's saved state at the end of its forward */
} sdt_walk;

/* Counts an allocation of bytes, rounded as the engine allocator rounds. */
void sdt_walk_take(sdt_walk *w, size_t bytes);

/* One forward kept for backward and its backward of the UNet at latent_h x latent_w, from the context
 * and the time embedding to the output's gradient; adds to w's counters and leaves w->live as it found
 * it. Returns 0, or -1 with *error set when the config has a shape the walk does not follow. */
int sdt_walk_unet(sdt_walk *w, const sdt_unet_config *c, int64_t latent_h, int64_t latent_w, char **error);

/* The text encoder kept for backward (it trains): its forward leaves hs[0..layers], each layer's saved
 * state (none when checkpointing) and the context with its final norm's statistics; the backward frees
 * all but the context, which the caller frees with the step. */
typedef struct sdt_walk_clip {
    int layers;
    size_t saved; /* bytes the forward left, the context included */
} sdt_walk_clip;

void sdt_walk_text_encoder_forward(sdt_walk *w, const sdt_clip_config *c, int64_t length, int rank,
                                   sdt_walk_clip *state);
void sdt_walk_text_encoder_backward(sdt_walk *w, const sdt_clip_config *c, int64_t length, int rank,
                                    const sdt_walk_clip *state);

#endif
