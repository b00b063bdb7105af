/* Memory by lifetime class. A model lists every tensor it needs (name, class, dtype, shape); the planner
 * lays each class out in one block before the first step, so the whole footprint is known (and reported
 * in MiB) before anything is allocated, and nothing is allocated while training runs. */
#ifndef SDTUNE_KERNELS_ARENA_H
#define SDTUNE_KERNELS_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "sdtune/strutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_lifetime {
    SDT_LIFE_FROZEN,      /* base weights: loaded once, never written */
    SDT_LIFE_TRAINABLE,   /* LoRA or fine-tuned weights (fp32 master copies) */
    SDT_LIFE_GRADS,       /* gradients of the trainable weights */
    SDT_LIFE_OPTIMIZER,   /* optimizer moments */
    SDT_LIFE_ACTIVATIONS, /* forward results saved for backward */
    SDT_LIFE_SCRATCH,     /* temporaries reused from block to block (a stack: see sdt_scratch_*) */
    SDT_LIFE_COUNT
} sdt_lifetime;

/* "frozen weights", "trainable weights", ... */
const char *sdt_lifetime_name(sdt_lifetime life);

/* One tensor the model needs. `bind` receives the tensor view once the arenas exist (may be NULL for
 * SDT_LIFE_SCRATCH specs, which only reserve room). */
typedef struct sdt_tensor_spec {
    const char *name;
    sdt_lifetime life;
    sdt_dtype dtype;
    int ndim;
    int64_t shape[SDT_MAX_DIMS];
    sdt_tensor *bind;
} sdt_tensor_spec;

/* Every tensor starts on this boundary: what vectorised CPU loops and cuBLASLt/cuDNN want. */
#define SDT_ARENA_ALIGN 256

typedef struct sdt_arena_plan {
    const sdt_tensor_spec *specs; /* borrowed: must outlive the plan */
    size_t count;
    size_t *offsets;                /* [count] byte offset of each spec inside its class's block */
    size_t bytes[SDT_LIFE_COUNT];   /* block size per class */
    size_t tensors[SDT_LIFE_COUNT]; /* tensors per class */
} sdt_arena_plan;

/* Lays out specs[0..count). Returns 0, or -1 with *error set (caller frees) naming the bad spec: a
 * dtype tensors cannot have (F8_E4M3 is accepted: frozen weights), a negative dimension, a size that
 * overflows. */
int sdt_arena_plan_build(sdt_arena_plan *plan, const sdt_tensor_spec *specs, size_t count, char **error);
void sdt_arena_plan_free(sdt_arena_plan *plan);
size_t sdt_arena_plan_total(const sdt_arena_plan *plan);
/* Appends one line per non-empty class and a total, in MiB:
 *   frozen weights        1640.28 MiB   686 tensors */
void sdt_arena_plan_report(const sdt_arena_plan *plan, sdt_buf *out);

/* The allocated blocks, one per class, on the engine's device. */
typedef struct sdt_arenas {
    void *block[SDT_LIFE_COUNT];
    size_t bytes[SDT_LIFE_COUNT];
    size_t scratch_top; /* bytes of the scratch block in use */
} sdt_arenas;

/* Allocates every class's block and binds each spec's tensor (an empty tensor gets data NULL). Returns 0,
 * or -1 with *error set and nothing left allocated. */
int sdt_arenas_alloc(sdt_engine *e, const sdt_arena_plan *plan, sdt_arenas *arenas, char **error);
void sdt_arenas_free(sdt_engine *e, sdt_arenas *arenas);

/* Scratch as a stack: take room for a temporary, and give back everything above a mark when a block is
 * done. Returns NULL when the planned scratch block is too small (a planning bug: the error says so). */
size_t sdt_scratch_mark(const sdt_arenas *arenas);
void *sdt_scratch_take(sdt_engine *e, sdt_arenas *arenas, size_t bytes);
void sdt_scratch_release(sdt_arenas *arenas, size_t mark);

#ifdef __cplusplus
}
#endif
#endif
