/* What a backend provides: the engine struct and one table of op entry points. backend.c checks devices,
 * dtypes and shapes once, in one place, and then calls the table; a backend's entry points may assume
 * tensors that passed those checks. */
#ifndef SDTUNE_KERNELS_BACKEND_IMPL_H
#define SDTUNE_KERNELS_BACKEND_IMPL_H

#include "backend.h"

typedef struct sdt_backend_ops {
    const char *name;
    /* Backend state: created with the engine, freed with it. */
    int (*init)(sdt_engine *e);
    void (*shutdown)(sdt_engine *e);
    void *(*alloc)(sdt_engine *e, size_t bytes);
    void (*dealloc)(sdt_engine *e, void *ptr);
    int (*upload)(sdt_engine *e, void *dst, const void *host, size_t bytes);
    int (*download)(sdt_engine *e, void *host, const void *src, size_t bytes);
    int (*sync)(sdt_engine *e);
    /* Free and total bytes of the device; NULL: host memory (sdt_cpu_memory_info). */
    int (*memory_info)(sdt_engine *e, size_t *free_bytes, size_t *total_bytes);

    int (*linear_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                          const sdt_tensor *bias);
    int (*linear_backward)(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                           const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight);
    int (*conv2d_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, const sdt_tensor *weight,
                          const sdt_tensor *bias, const sdt_conv2d_params *p);
    int (*conv2d_backward)(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                           const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                           const sdt_conv2d_params *p);
    int (*group_norm_forward)(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                              const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                              int groups, float eps, int fuse_silu);
    int (*group_norm_backward)(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                               const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                               const sdt_tensor *bias, const sdt_tensor *mean, const sdt_tensor *rstd,
                               int groups, int fuse_silu);
    int (*layer_norm_forward)(sdt_engine *e, sdt_tensor *out, sdt_tensor *mean, sdt_tensor *rstd,
                              const sdt_tensor *inp, const sdt_tensor *weight, const sdt_tensor *bias,
                              float eps);
    int (*layer_norm_backward)(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dweight, sdt_tensor *dbias,
                               const sdt_tensor *dout, const sdt_tensor *inp, const sdt_tensor *weight,
                               const sdt_tensor *mean, const sdt_tensor *rstd);
    int (*attention_forward)(sdt_engine *e, sdt_tensor *out, sdt_tensor *lse, const sdt_tensor *q,
                             const sdt_tensor *k, const sdt_tensor *v, int heads, float scale, int causal);
    int (*attention_backward)(sdt_engine *e, sdt_tensor *dq, sdt_tensor *dk, sdt_tensor *dv,
                              const sdt_tensor *dout, const sdt_tensor *q, const sdt_tensor *k,
                              const sdt_tensor *v, const sdt_tensor *out, const sdt_tensor *lse, int heads,
                              float scale, int causal);
    int (*softmax_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
    int (*softmax_backward)(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *out);
    int (*activation_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp, sdt_activation act);
    int (*activation_backward)(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp,
                               sdt_activation act);
    int (*geglu_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
    int (*geglu_backward)(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout, const sdt_tensor *inp);
    int (*add_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b);
    int (*add_backward)(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout);
    int (*add_channel_vector_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp,
                                      const sdt_tensor *vec);
    int (*add_channel_vector_backward)(sdt_engine *e, sdt_tensor *dinp, sdt_tensor *dvec,
                                       const sdt_tensor *dout);
    int (*concat_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *a, const sdt_tensor *b);
    int (*concat_backward)(sdt_engine *e, sdt_tensor *da, sdt_tensor *db, const sdt_tensor *dout);
    int (*upsample2x_forward)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *inp);
    int (*upsample2x_backward)(sdt_engine *e, sdt_tensor *dinp, const sdt_tensor *dout);
    int (*timestep_embedding)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *timesteps,
                              int flip_sin_to_cos, float freq_shift, float max_period);
    int (*mse_loss_forward)(sdt_engine *e, sdt_tensor *loss, sdt_tensor *per_sample, const sdt_tensor *pred,
                            const sdt_tensor *target, const sdt_tensor *weights);
    int (*mse_loss_backward)(sdt_engine *e, sdt_tensor *dpred, const sdt_tensor *pred,
                             const sdt_tensor *target, const sdt_tensor *weights, float dloss);
    int (*fill)(sdt_engine *e, sdt_tensor *t, float value);
    int (*scale)(sdt_engine *e, sdt_tensor *t, float alpha);
    int (*axpy)(sdt_engine *e, sdt_tensor *y, float alpha, const sdt_tensor *x);
    int (*copy)(sdt_engine *e, sdt_tensor *dst, const sdt_tensor *src);
    int (*optimizer_update)(sdt_engine *e, const sdt_optimizer_update_args *args);
    int (*sum_squares)(sdt_engine *e, sdt_tensor *out, const sdt_tensor *tensors, size_t count);
    int (*dropout_scale)(sdt_engine *e, sdt_tensor *t, const sdt_dropout_args *args);
} sdt_backend_ops;

/* The ops the timing hook (sdt_engine_set_op_timing) accounts for, one slot each; backend.c names them
 * as the table above does. */
typedef enum sdt_timed_op {
    SDT_OP_LINEAR_FORWARD,
    SDT_OP_LINEAR_BACKWARD,
    SDT_OP_CONV2D_FORWARD,
    SDT_OP_CONV2D_BACKWARD,
    SDT_OP_GROUP_NORM_FORWARD,
    SDT_OP_GROUP_NORM_BACKWARD,
    SDT_OP_LAYER_NORM_FORWARD,
    SDT_OP_LAYER_NORM_BACKWARD,
    SDT_OP_ATTENTION_FORWARD,
    SDT_OP_ATTENTION_BACKWARD,
    SDT_OP_SOFTMAX_FORWARD,
    SDT_OP_SOFTMAX_BACKWARD,
    SDT_OP_ACTIVATION_FORWARD,
    SDT_OP_ACTIVATION_BACKWARD,
    SDT_OP_GEGLU_FORWARD,
    SDT_OP_GEGLU_BACKWARD,
    SDT_OP_ADD_FORWARD,
    SDT_OP_ADD_BACKWARD,
    SDT_OP_ADD_CHANNEL_VECTOR_FORWARD,
    SDT_OP_ADD_CHANNEL_VECTOR_BACKWARD,
    SDT_OP_CONCAT_FORWARD,
    SDT_OP_CONCAT_BACKWARD,
    SDT_OP_UPSAMPLE2X_FORWARD,
    SDT_OP_UPSAMPLE2X_BACKWARD,
    SDT_OP_TIMESTEP_EMBEDDING,
    SDT_OP_MSE_LOSS_FORWARD,
    SDT_OP_MSE_LOSS_BACKWARD,
    SDT_OP_FILL,
    SDT_OP_SCALE,
    SDT_OP_AXPY,
    SDT_OP_COPY,
    SDT_OP_OPTIMIZER_UPDATE,
    SDT_OP_SUM_SQUARES,
    SDT_OP_DROPOUT_SCALE,
    SDT_OP_COUNT
} sdt_timed_op;

struct sdt_engine {
    sdt_engine_options options;
    const sdt_backend_ops *ops;
    void *backend_state; /* owned by the backend: init creates it, shutdown frees it */
    char error[1024];
    /* The backend's allocator keeps these (bytes as allocated, rounded to its granularity): what is live
     * now and the most that was live at once since creation or the last sdt_engine_reset_peak. */
    size_t live_bytes, peak_bytes;
    sdt_host_transfers transfers; /* counted by sdt_engine_upload, _download and _sync */
    /* Op timing for benchmarks (off unless sdt_engine_set_op_timing turned it on). */
    int op_timing;
    double op_started;               /* monotonic seconds at the start of the op being timed */
    double op_seconds[SDT_OP_COUNT]; /* wall time per op */
    int64_t op_calls[SDT_OP_COUNT];
};

/* The CPU backend's table (kernels/cpu/backend_cpu.c). */
const sdt_backend_ops *sdt_cpu_backend_ops(void);
/* The guarded test backend's table (kernels/cpu/backend_guarded.c): the CPU table's ops behind memory
 * protection. */
const sdt_backend_ops *sdt_guarded_backend_ops(void);
#ifdef SDTUNE_HAVE_CUDA_OPS
/* The CUDA backend's table, when the build has one. */
const sdt_backend_ops *sdt_cuda_backend_ops(void);
#endif

#endif
