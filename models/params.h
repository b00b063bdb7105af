/* Parameter tables: every tensor of a network, described by data. A network's builder fills its table
 * from a config (names, shapes, kinds); loading, allocation, initialisation, saving, inspection and later
 * LoRA injection and optimizers all iterate over the table. See docs/models.md. */
#ifndef SDTUNE_MODELS_PARAMS_H
#define SDTUNE_MODELS_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "backend.h"
#include "name_index.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a tensor is; decides its initialisation and which LoRA targets may wrap it. */
typedef enum sdt_param_kind {
    SDT_PARAM_LINEAR_WEIGHT, /* [OC, C]; includes 1x1 convs the engine runs as linear layers */
    SDT_PARAM_CONV_WEIGHT,   /* engine [OC, KH, KW, C], file [OC, C, KH, KW] */
    SDT_PARAM_BIAS,          /* [OC] of a linear or conv layer */
    SDT_PARAM_NORM_WEIGHT,   /* [C] scale of a group or layer norm */
    SDT_PARAM_NORM_BIAS,     /* [C] shift of a group or layer norm */
    SDT_PARAM_EMBEDDING,     /* [N, C] lookup table (token and position embeddings) */
} sdt_param_kind;

const char *sdt_param_kind_name(sdt_param_kind kind); /* "linear", "conv", "bias", ... */

typedef struct sdt_param {
    char *name;          /* the LDM checkpoint key without the component prefix */
    sdt_param_kind kind; /* */
    int ndim;            /* engine shape (conv weights channels-last) */
    int64_t shape[SDT_MAX_DIMS];
    int file_ndim; /* shape in a single-file (LDM) checkpoint */
    int64_t file_shape[SDT_MAX_DIMS];
    int64_t fan_in;   /* inputs per output of the layer this tensor belongs to (initialisation) */
    int trainable;    /* gets a gradient tensor when the table is allocated */
    sdt_tensor value; /* bound by sdt_param_table_alloc */
    sdt_tensor grad;  /* bound when trainable; data NULL otherwise */
    /* A low-rank adapter the layer functions apply on top of this weight (models/adapter.h); NULL: none.
     * Owned by whoever attached it (train/lora.c), which detaches it before freeing. */
    struct sdt_adapter *adapter;
} sdt_param;

typedef struct sdt_param_table {
    char *component; /* "unet", "text_encoder", "text_encoder_2", "vae" */
    char *prefix;    /* the LDM key prefix: "model.diffusion_model.", ... */
    sdt_param *items;
    size_t count, capacity;
    sdt_name_index index; /* item name -> position in items */
    /* Set before allocation: the frozen linear and conv weights are stored as F8_E4M3 with a per-tensor
     * scale (sdt_param_storage_dtype; docs/training.md, "Frozen weights in fp8", says why only those). */
    int f8_weights;
    /* Storage, once allocated. */
    sdt_tensor_spec *specs;
    sdt_arena_plan plan;
    sdt_arenas arenas;
    int allocated;
} sdt_param_table;

void sdt_param_table_init(sdt_param_table *t, const char *component, const char *prefix);
/* Frees the names and, when allocated, the storage (engine may be NULL if nothing was allocated). */
void sdt_param_table_free(sdt_engine *e, sdt_param_table *t);

/* Adds one tensor (engine shape given; the file shape is derived: conv weights are permuted back to
 * [OC, C, KH, KW], 1x1-conv-as-linear weights get their trailing [1, 1] when file_conv1x1 is set).
 * Returns the new entry, or NULL on a duplicate name or out of memory (the builder treats both as bugs). */
sdt_param *sdt_param_add(sdt_param_table *t, const char *name, sdt_param_kind kind, int ndim,
                         const int64_t *shape, int64_t fan_in);

/* Layer helpers: `base` is the layer's name ("input_blocks.1.0.in_layers.2"); they add base.weight and,
 * when has_bias, base.bias. Return 0, or -1 (duplicate name / out of memory). */
int sdt_param_add_linear(sdt_param_table *t, const char *base, int64_t out, int64_t in, int has_bias);
/* A 1x1 convolution in the checkpoint that the engine runs as a linear layer on tokens. */
int sdt_param_add_linear_conv1x1(sdt_param_table *t, const char *base, int64_t out, int64_t in, int has_bias);
int sdt_param_add_conv(sdt_param_table *t, const char *base, int64_t out, int64_t in, int kh, int kw,
                       int has_bias);
int sdt_param_add_norm(sdt_param_table *t, const char *base, int64_t channels);
int sdt_param_add_embedding(sdt_param_table *t, const char *name, int64_t rows, int64_t dim);

/* printf-style name building; returns NULL when not found. */
sdt_param *sdt_param_find(sdt_param_table *t, const char *name);
sdt_param *sdt_param_findf(sdt_param_table *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

int64_t sdt_param_numel(const sdt_param *p);
/* Total elements over the table (the "parameter count" of the component). */
int64_t sdt_param_table_numel(const sdt_param_table *t);

/* The dtype p's value is stored in when its table is allocated with `dtype`: F32 for trainable entries
 * (master weights), F8_E4M3 for frozen linear and conv weights when f8_weights (the table's flag), else
 * dtype. */
sdt_dtype sdt_param_storage_dtype(const sdt_param *p, sdt_dtype dtype, int f8_weights);
/* Encodes n fp32 values (engine layout) into dst (host memory of p->value's size) in p->value's dtype; for
 * F8_E4M3 the per-tensor scale is computed from the values and stored in p->value.scale. Returns 0, or -1
 * when the dtype is not one a parameter can have. */
int sdt_param_encode(sdt_param *p, void *dst, const float *values, size_t n);

/* Allocates every value in `dtype` (frozen class, or trainable class for trainable entries) and a grad
 * (F32, zeroed) for each trainable entry, one arena block per class, on the engine's device. Values are
 * left uninitialised. Returns 0, or -1 with *error set (caller frees). */
int sdt_param_table_alloc(sdt_engine *e, sdt_param_table *t, sdt_dtype dtype, char **error);
/* Zeroes every gradient. */
int sdt_param_table_zero_grads(sdt_engine *e, sdt_param_table *t);

#ifdef __cplusplus
}
#endif
#endif
