/* Optimizers over F32 host buffers (value, gradient) with per-group learning rates (UNet, text encoders),
 * global gradient-norm clipping and the gradient-accumulation helpers. The state (moments, step count) is
 * exposed as named buffers so a checkpoint can store it and a resumed run continues bit for bit. See
 * docs/training.md, "Optimizers and learning-rate schedules". */
#ifndef SDTUNE_TRAIN_OPTIM_H
#define SDTUNE_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_optim_kind {
    SDT_OPTIM_ADAMW,     /* torch.optim.AdamW */
    SDT_OPTIM_SGD,       /* torch.optim.SGD (kohya's SGDNesterov is this with nesterov and momentum 0.9) */
    SDT_OPTIM_LION,      /* the published Lion update (lion-pytorch) */
    SDT_OPTIM_ADAMW8BIT, /* bitsandbytes' AdamW8bit: block-wise 8-bit moments (optim_adamw8bit.c) */
    SDT_OPTIM_ADAFACTOR, /* transformers.optimization.Adafactor (optim_adafactor.c) */
    SDT_OPTIM_PRODIGY,   /* prodigyopt.Prodigy 1.0 (optim_prodigy.c) */
} sdt_optim_kind;

typedef struct sdt_optim_config {
    sdt_optim_kind kind;
    double beta1, beta2; /* AdamW(8bit) (0.9, 0.999), Lion (0.9, 0.99), Prodigy (0.9, 0.999); Adafactor:
                            beta1 only when use_first_moment */
    double eps;          /* AdamW 1e-8, added after the square root; Prodigy 1e-8 (times d) */
    double weight_decay; /* AdamW 0.01, SGD 0, Lion 0; decoupled (lr*wd*p) for AdamW and Lion, added to
                            the gradient for SGD */
    double momentum;     /* SGD */
    double dampening;    /* SGD */
    int nesterov;        /* SGD; needs momentum > 0 and dampening 0 */
    /* AdamW8bit */
    int64_t min_8bit_size; /* smaller tensors keep F32 moments (bitsandbytes' 4096) */
    /* Adafactor */
    int use_first_moment;  /* beta1 is not None */
    double eps1, eps2;     /* eps=(1e-30, 1e-3): added to g^2; floor of the parameter RMS */
    double clip_threshold; /* 1.0: the update's RMS is clipped to this */
    double decay_rate;     /* -0.8: beta2_t = 1 - t^decay_rate */
    int scale_parameter;   /* step size times max(eps2, RMS(p)) */
    int relative_step;     /* step size min(1e-2, 1/sqrt(t)) instead of the learning rate */
    int warmup_init;       /* relative step min(1e-6 t, 1/sqrt(t)) */
    /* Prodigy */
    double beta3;                   /* < 0: sqrt(beta2) (prodigyopt's None) */
    double d0, d_coef, growth_rate; /* 1e-6, 1.0, inf */
    int decouple;                   /* 1: AdamW-style decay; 0: added to the gradient */
    int use_bias_correction;        /* 0 */
    int safeguard_warmup;           /* 0 */
} sdt_optim_config;

/* PyTorch's (and lion-pytorch's) defaults for `kind`. */
void sdt_optim_config_default(sdt_optim_config *c, sdt_optim_kind kind);

/* kohya's optimizer_type (case-insensitive; "" is AdamW): AdamW, AdamW8bit, Lion, SGDNesterov, torch's
 * SGD, Adafactor and Prodigy fill *out with their defaults. The other names kohya knows (DAdapt*, paged,
 * schedule-free, ...) return -1 with "optimizer X is not implemented yet"; anything else is unknown.
 * *error: caller frees. */
int sdt_optim_parse_name(const char *name, sdt_optim_config *out, char **error);
const char *sdt_optim_kind_name(sdt_optim_kind kind);
int sdt_optim_config_check(const sdt_optim_config *c, char **error);

/* kohya's optimizer_args: "key=value" strings whose values are Python literals (numbers, True/False,
 * None, tuples such as "betas=(0.9,0.99)"), applied over the defaults in *c (optim_args.c). An unknown key
 * or a bad value is an error naming the key and the value. */
int sdt_optim_apply_args(sdt_optim_config *c, const char *const *args, size_t count, char **error);

/* kohya's ss_optimizer text: "<module>.<Class>(<args>)", e.g.
 * "transformers.optimization.Adafactor(scale_parameter=False,relative_step=False,warmup_init=False)";
 * args are the optimizer_args as given, joined with ",". NULL when out of memory; caller frees. */
char *sdt_optim_describe(const sdt_optim_config *c, const char *const *args, size_t count);

typedef struct sdt_optim_entry {
    char *name;   /* unique; the state buffers are named "<name>.<buffer>" */
    float *value; /* F32 master copy, updated in place (BF16 / F16 elements when dtype says so) */
    float *grad;  /* F32 gradient (scaled/clipped in place by the helpers below; of dtype too) */
    size_t count; /* elements */
    /* SDT_F32, or SDT_BF16 / SDT_F16: a half-precision weight and gradient without a master (full_bf16 /
     * full_fp16; sdt_optim_add_table), updated in place by the backend's fused update with stochastic
     * rounding (AdamW, Lion and SGD only); its state stays F32. */
    sdt_dtype dtype;
    int group; /* index into the optimizer's learning rates */
    /* State buffers, named by state_names; each state_count[s] floats. AdamW: exp_avg, exp_avg_sq; SGD:
     * momentum_buffer; Lion: exp_avg; AdamW8bit: state1, absmax1, state2, absmax2 (8-bit codes packed
     * four to a float) or exp_avg, exp_avg_sq below min_8bit_size; Adafactor: [exp_avg],
     * exp_avg_sq_row, exp_avg_sq_col (factored) or exp_avg_sq; Prodigy: exp_avg, exp_avg_sq, s, p0. */
    float *state[4];
    size_t state_count[4];
    const char *state_names[4]; /* static strings; NULL past the last buffer */
    /* The tensor's shape seen as [outer, rows, cols] over its last two dimensions (Adafactor factors
     * over them); rows 0 for a 1-D tensor. */
    size_t outer, rows, cols;
} sdt_optim_entry;

typedef struct sdt_optimizer {
    sdt_optim_config cfg;
    sdt_optim_entry *entries;
    size_t count, capacity;
    double *lr; /* per group; set before every step (the schedule's value) */
    int groups;
    int64_t step; /* optimizer steps taken */
    /* State of the whole optimizer (Prodigy: d, d_max, d_numerator, k as doubles), exported as the
     * buffer "optimizer.scalars" so a resumed run continues bit for bit. */
    double scalars[4];
    int scalar_count;
    double last_d; /* Prodigy: d after the last step (d * lr is the effective learning rate) */
    /* AdamW, Lion and SGD run as the backend's optimizer_update op (kernels/backend.h) on this engine:
     * the optimizer's own CPU engine, or the training engine handed over by sdt_optim_use_engine (then
     * values, gradients and state are memory of that engine's device). */
    sdt_engine *engine;
    int owns_engine;
    size_t half_entries;    /* entries of a BF16 / F16 dtype: scaling, zeroing and the norm go through ops */
    uint64_t rounding_seed; /* the stochastic rounding of half entries draws from (seed, step, ...) */
} sdt_optimizer;

int sdt_optim_init(sdt_optimizer *o, const sdt_optim_config *cfg, int groups, char **error);
void sdt_optim_free(sdt_optimizer *o);
/* Runs the optimizer on `engine` (borrowed), the one the buffers to register live on, instead of its own
 * CPU engine: state is allocated there, the update, gradient scaling, zeroing and clipping go through its
 * ops, and the state list downloads (sdt_optim_state_set uploads). Call before the first sdt_optim_add.
 * AdamW8bit, Adafactor and Prodigy are host loops and refuse an engine off the CPU. */
int sdt_optim_use_engine(sdt_optimizer *o, sdt_engine *engine, char **error);

/* Registers a buffer pair (the optimizer keeps pointers, not copies). State is zero-initialised (Prodigy's
 * p0 is the value, taken again at the first step). */
int sdt_optim_add(sdt_optimizer *o, const char *name, float *value, float *grad, size_t count, int group,
                  char **error);
/* Declares the shape of a registered buffer (its element count must match); needed before the first step
 * by Adafactor, which factors the second moment over the last two dimensions of >= 2-D tensors. */
int sdt_optim_set_shape(sdt_optimizer *o, const char *name, int ndim, const int64_t *shape, char **error);
/* Registers every trainable entry of an allocated table as "<component>.<name>": F32 values and gradients,
 * or (AdamW, Lion and SGD only) BF16 / F16 values with gradients of the same dtype, which train without a
 * master (full_bf16 / full_fp16). */
int sdt_optim_add_table(sdt_optimizer *o, sdt_param_table *t, int group, char **error);

int sdt_optim_set_lr(sdt_optimizer *o, int group, double lr, char **error);

/* One update of every registered buffer with the current learning rates. */
int sdt_optim_step(sdt_optimizer *o, char **error);

/* Gradient accumulation: multiply every gradient (1 / accumulation steps), or zero them. */
void sdt_optim_scale_grads(sdt_optimizer *o, float factor);
void sdt_optim_zero_grads(sdt_optimizer *o);

/* torch.nn.utils.clip_grad_norm_: the total L2 norm of all gradients (the squares added in double, the sum
 * rounded to F32 as the sum_squares op gives it on every backend, then the square root) is
 * returned in *total_norm; when it exceeds max_norm every gradient is multiplied by
 * max_norm / (norm + 1e-6). max_norm <= 0 only measures. */
void sdt_optim_clip_grad_norm(sdt_optimizer *o, double max_norm, double *total_norm);

/* The state as named buffers, for saving: "<name>.<state_names[s]>" per entry and "optimizer.scalars"
 * when o->scalar_count > 0 (doubles, two floats each); the step count is o->step. Every buffer is F32 by
 * count, some hold other bits (8-bit codes, doubles): copy them as bytes. */
typedef struct sdt_optim_buffer {
    const char *name; /* owned by the list */
    float *data;      /* points into the optimizer's state */
    size_t count;
} sdt_optim_buffer;

typedef struct sdt_optim_state {
    sdt_optim_buffer *items;
    size_t count;
    char *names; /* storage of the names */
    float *host; /* [sum of counts] host copies of the buffers when the state lives off the CPU */
} sdt_optim_state;

/* Lists the state buffers (views valid until the optimizer is freed; copies, downloaded now, when the
 * optimizer runs off the CPU). */
int sdt_optim_state_list(const sdt_optimizer *o, sdt_optim_state *out, char **error);
void sdt_optim_state_free(sdt_optim_state *s);
/* Restores one buffer by name (for loading); size must match. */
int sdt_optim_state_set(sdt_optimizer *o, const char *name, const float *data, size_t count, char **error);
/* Copies the value of entry `index` (entries[index].count floats) to or from host memory, through the
 * engine when the optimizer runs off the CPU. A half entry is widened to F32 on the way out and rounded
 * to nearest on the way in (exact for the values it held). */
int sdt_optim_value_download(const sdt_optimizer *o, size_t index, float *host, char **error);
int sdt_optim_value_upload(sdt_optimizer *o, size_t index, const float *host, char **error);
/* Restores everything from a list made by sdt_optim_state_list of an optimizer with the same entries;
 * every buffer must be present. */
int sdt_optim_state_import(sdt_optimizer *o, const sdt_optim_state *s, int64_t step, char **error);

#ifdef __cplusplus
}
#endif

#endif
