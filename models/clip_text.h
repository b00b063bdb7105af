/* The CLIP text encoder (Hugging Face CLIPTextModel; sd_arch_spec §3.1): token + position embedding, pre-LN
 * encoder layers with a causal mask, final layer norm. One forward yields what SD1.x, SD2.x and SDXL ask
 * of it (§3.2-3.4):
 *
 *   context  final_layer_norm(hidden_states[layers + 1 - clip_skip]), kohya's clip_skip (1 = last layer,
 *            2 = penultimate);
 *   hidden   hidden_states[k] without the final layer norm (SDXL: k = 11 of CLIP-L, layers - 1 of bigG);
 *   pooled   the last layer through the final layer norm, at the EOS token (§3.1's rule), then through
 *            text_projection when the table has one (CLIPTextModelWithProjection's text_embeds).
 *
 * hidden_states[0] is the embedding output and hidden_states[i] the output of layer i. Only the layers the
 * requested outputs depend on are run (clip skip 2 without pooled skips the last layer).
 *
 * For text-encoder training the forward keeps what the backward needs: every layer's input and its saved
 * tensors, or with `checkpoint` only the inputs (each layer is recomputed in the backward; both give
 * identical gradients). The backward takes a gradient for each output it was given (any may be NULL),
 * adds parameter gradients to the trainable parameters and, when asked, the gradient w.r.t. the embedding
 * output.
 *
 * Token ids are host ints. The embedding lookup is a gather of single rows done with sdt_copy/sdt_axpy on
 * one-row views (and its backward adds rows into the embedding gradients the same way): one small op per
 * token, which is cheap next to the encoder layers at 77 tokens. */
#ifndef SDTUNE_MODELS_CLIP_TEXT_H
#define SDTUNE_MODELS_CLIP_TEXT_H

#include <stdint.h>

#include "arch.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One encoder layer: x = x + out_proj(MHA(layer_norm1(x))); x = x + fc2(act(fc1(layer_norm2(x)))). */
typedef struct sdt_clip_layer {
    sdt_norm ln1, ln2;
    sdt_mha attn; /* q_proj, k_proj, v_proj, out_proj; causal */
    sdt_linear fc1, fc2;
} sdt_clip_layer;

typedef struct sdt_clip_text {
    sdt_clip_config config;
    sdt_param *token_embedding;    /* [vocab, W] */
    sdt_param *position_embedding; /* [max_positions, W] */
    sdt_clip_layer *layers;        /* config.layers of them */
    sdt_norm final_norm;
    sdt_linear projection; /* text_projection [P, W], no bias; weight NULL when the config has none */
} sdt_clip_text;

/* Binds every layer to its parameters in `t` (built by sdt_clip_params from the same config; the table
 * outlives the encoder). Returns 0, or -1 with *error set (caller frees). */
int sdt_clip_text_create(const sdt_clip_config *c, sdt_param_table *t, sdt_clip_text **out, char **error);
void sdt_clip_text_free(sdt_clip_text *m);

typedef struct sdt_clip_text_options {
    int clip_skip;    /* >= 1: produce `context` from hidden_states[layers + 1 - clip_skip]; 0: no context */
    int hidden_layer; /* 0..layers: produce `hidden` = hidden_states[hidden_layer]; -1: none */
    int pooled;       /* 1: produce `pooled` */
    int keep_for_backward;
    int checkpoint;  /* with keep_for_backward: keep only each layer's input, recompute in the backward */
    sdt_dtype dtype; /* activations (F32 when zero-initialised) */
} sdt_clip_text_options;

/* What a layer's backward needs besides its input. */
typedef struct sdt_clip_layer_saved {
    sdt_norm_saved n1, n2;
    sdt_tensor a1;      /* [B, L, W] layer_norm1(x), the attention's input */
    sdt_mha_saved attn; /* projections, attention output, lse */
    sdt_tensor mid;     /* [B, L, W] x + attention, layer_norm2's input */
    sdt_tensor a2;      /* [B, L, W] layer_norm2(mid), fc1's input */
    sdt_tensor f1;      /* [B, L, M] fc1 output, the activation's input */
    sdt_tensor g;       /* [B, L, M] act(f1), fc2's input */
} sdt_clip_layer_saved;

/* The outputs of one forward and, when kept, the state of its backward. Zero-initialise before the
 * forward; sdt_clip_text_result_free releases everything (outputs included). */
typedef struct sdt_clip_text_result {
    sdt_tensor context; /* [B, L, W] or no data */
    sdt_tensor hidden;  /* [B, L, W] or no data */
    sdt_tensor pooled;  /* [B, W], or [B, P] through text_projection; or no data */
    int *eos_position;  /* [B] the token each pooled row was taken from (when pooled) */

    /* Backward state (private). */
    sdt_clip_text_options options;
    int batch, length;
    int32_t *ids;                /* [B, L] copy of the token ids */
    int top;                     /* hidden_states[0..top] were computed */
    sdt_tensor *hs;              /* [top + 1] hidden_states[n], [B, L, W] each, kept for backward */
    sdt_clip_layer_saved *saved; /* [top] per layer (empty with checkpointing) */
    sdt_norm_saved context_norm; /* final layer norm statistics of the context */
    sdt_tensor pool_rows;        /* [B, W] hidden_states[layers] at the EOS tokens */
    sdt_norm_saved pool_norm;    /* final layer norm statistics of pool_rows */
    sdt_tensor pool_normed;      /* [B, W] final_layer_norm(pool_rows), text_projection's input */
    int kept;                    /* the backward may run */
} sdt_clip_text_result;

/* ids: host int32 [B, L] with 1 <= L <= max_positions and every id in [0, vocab). Returns 0, or -1 with the
 * reason in sdt_engine_error() (the result is then empty). */
int sdt_clip_text_forward(sdt_engine *e, const sdt_clip_text *m, sdt_clip_text_result *r, const int32_t *ids,
                          int batch, int length, const sdt_clip_text_options *options);

/* Gradients of the outputs (each NULL when that output gets none; the ones given must have been produced):
 * adds into the trainable parameters' gradients and, when dembed [B, L, W] is given, into the gradient of
 * the embedding output (hidden_states[0]). Runs once per forward (it frees the saved state as it goes). */
int sdt_clip_text_backward(sdt_engine *e, const sdt_clip_text *m, sdt_clip_text_result *r,
                           const sdt_tensor *dcontext, const sdt_tensor *dhidden, const sdt_tensor *dpooled,
                           sdt_tensor *dembed);

void sdt_clip_text_result_free(sdt_engine *e, sdt_clip_text_result *r);

/* The pooled row of each sequence (§3.1): when every row's largest id is 49407 (the real CLIP vocabulary,
 * padded with EOS or not), the first position of the largest id; otherwise the first position holding
 * eos_id, or 0 when the row has none (as transformers does). */
void sdt_clip_eos_positions(const int32_t *ids, int batch, int length, int eos_id, int *positions);

/* ---- kohya long prompts (§3.6) ------------------------------------------------------------------ */

/* Splits token sequences of length 2 + 75n ([BOS] + up to 75n ids + [EOS] + padding, as the tokenizer
 * writes them with max_length = 75n + 2) into n windows of 77: [ids[0]] + ids[1 + 75w .. 75 + 75w] +
 * [ids[last]]. With pad_id != eos_id (SD2, SDXL's second tokenizer) each window gets kohya's fix-ups: a
 * window whose token 75 is neither EOS nor PAD ends with EOS, and one that starts with PAD starts with EOS
 * instead. ids [B, 2 + 75n] -> windows [B * n, 77], window w of sequence b at row b * n + w. */
void sdt_clip_make_windows(const int32_t *ids, int batch, int windows, int eos_id, int pad_id, int32_t *out);

/* Stitches the encodings of the windows back into one sequence per prompt: enc [B * n, T, W] (T = 77) ->
 * out [B, 1 + (T - 2) n + 1, W] (allocated): the first token of window 0, tokens 1..T-2 of every window in
 * order, then the last token of the last window. Pooled vectors are not stitched: kohya uses window 0's,
 * row b * n of the pooled output. */
int sdt_clip_stitch_windows(sdt_engine *e, sdt_tensor *out, const sdt_tensor *enc, int windows);
/* denc [B * n, T, W] += the gradient of the stitch given dout [B, 1 + (T - 2) n + 1, W]. */
int sdt_clip_stitch_windows_backward(sdt_engine *e, sdt_tensor *denc, const sdt_tensor *dout, int windows);

#ifdef __cplusplus
}
#endif
#endif
