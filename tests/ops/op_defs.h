/* The op runner's description of each op: its dimension keys, its tensors (slots) and their shapes, and
 * how to call its forward and backward through backend.h. One table drives every mode of the runner:
 * finite differences, PyTorch fixtures, and backend-against-CPU comparisons. docs/ops.md is the prose
 * version of this table. */
#ifndef SDTUNE_TESTS_OP_DEFS_H
#define SDTUNE_TESTS_OP_DEFS_H

#include <stddef.h>

#include "backend.h"

#define OP_MAX_INPUTS 3
#define OP_MAX_SAVED 2
#define OP_MAX_DIMS 16

/* A case's dimensions: "B=2 H=5 ..." parsed into keys and values. */
typedef struct op_dims {
    int count;
    char key[OP_MAX_DIMS][24];
    double value[OP_MAX_DIMS];
} op_dims;

/* Parses "op_name key=value key=value ..." (the runner's case strings). Returns 0, or -1 with why set. */
int op_dims_parse(const char *text, char *op_name, size_t op_name_size, op_dims *dims, char *why,
                  size_t why_size);
/* Adds or replaces a key. Returns -1 when the table is full. */
int op_dims_set(op_dims *dims, const char *key, double value);
/* The value of key; 0 when absent (op_def.keys lists what must be present, checked before use). */
double op_dims_get(const op_dims *dims, const char *key);
int op_dims_has(const op_dims *dims, const char *key);

typedef struct op_shape {
    int ndim; /* -1: the slot is absent in this case (a conv without bias) */
    int64_t d[SDT_MAX_DIMS];
} op_shape;

/* The tensors of one call. Gradients line up with inputs; absent slots have data NULL and are passed as
 * NULL pointers. */
typedef struct op_tensors {
    sdt_tensor in[OP_MAX_INPUTS];
    sdt_tensor out;
    sdt_tensor saved[OP_MAX_SAVED];
    sdt_tensor grad[OP_MAX_INPUTS];
    sdt_tensor dout;
    int present[OP_MAX_INPUTS];
    int grad_present[OP_MAX_INPUTS];
} op_tensors;

typedef struct op_def {
    const char *name;
    const char *keys;                      /* dimension keys a case must give, space-separated */
    const char *inputs[OP_MAX_INPUTS + 1]; /* slot names, NULL-terminated */
    unsigned differentiable;               /* bit i: input i has a gradient */
    unsigned f32_inputs;                   /* bit i: input i is always F32 (timesteps, loss weights) */
    int out_f32;                           /* the output is always F32 (the loss) */
    int saved;                             /* number of saved tensors (always F32) */
    /* Fills every slot's shape from the dimensions; -1 with why set when they make no sense. */
    int (*shapes)(const op_dims *d, op_shape in[OP_MAX_INPUTS], op_shape *out, op_shape saved[OP_MAX_SAVED],
                  char *why, size_t why_size);
    /* Optional: adjusts random inputs to the op's domain (positive loss weights, timesteps in 0..1000). */
    void (*prepare)(const op_dims *d, int slot, float *values, int64_t n);
    int (*forward)(sdt_engine *e, const op_dims *d, op_tensors *t);
    int (*backward)(sdt_engine *e, const op_dims *d, op_tensors *t); /* NULL: no backward (data inputs) */
    /* Largest normalised MSE of a backend against the CPU, per dtype of the tensors (f32, f16, bf16). */
    double max_nmse[3];
    /* Backward needs every gradient present (concat: the two shapes say where the split is); otherwise
     * a NULL gradient is simply not computed, and the runner checks one gradient at a time too. */
    int all_grads;
    /* Bit i: input i is a frozen weight stored as F8_E4M3 with a per-tensor scale, in every dtype of the
     * case (it has no gradient: leave its bit out of differentiable). */
    unsigned f8_inputs;
} op_def;

const op_def *op_find(const char *name);
size_t op_count(void);
const op_def *op_at(size_t i);

/* The built-in cases, one string each: "conv2d B=2 H=5 W=6 ...". */
size_t op_case_count(void);
const char *op_case_at(size_t i);

/* Larger cases at the models' own shapes (SD1.5/SDXL/CLIP head sizes, 77 context tokens, 32 groups,
 * sizes that are not multiples of a tile or a vector width), for backend comparisons (--mode test) only:
 * finite differences on them would take too long. */
size_t op_device_case_count(void);
const char *op_device_case_at(size_t i);

#endif
