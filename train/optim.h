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
    SDT_OPTIM_ADAMW, /* torch.optim.AdamW */
    SDT_OPTIM_SGD,   /* torch.optim.SGD (kohya's SGDNesterov is this with nesterov and momentum 0.9) */
    SDT_OPTIM_LION,  /* the published Lion update (lion-pytorch) */
} sdt_optim_kind;

typedef struct sdt_optim_config {
    sdt_optim_kind kind;
    double beta1, beta2; /* AdamW (0.9, 0.999), Lion (0.9, 0.99) */
    double eps;          /* AdamW 1e-8, added after the square root */
    double weight_decay; /* AdamW 0.01, SGD 0, Lion 0; decoupled (lr*wd*p) for AdamW and Lion, added to
                            the gradient for SGD */
    double momentum;     /* SGD */
    double dampening;    /* SGD */
    int nesterov;        /* SGD; needs momentum > 0 and dampening 0 */
} sdt_optim_config;

/* PyTorch's (and lion-pytorch's) defaults for `kind`. */
void sdt_optim_config_default(sdt_optim_config *c, sdt_optim_kind kind);

/* kohya's optimizer_type (case-insensitive; "" is AdamW): AdamW, Lion, SGDNesterov and torch's SGD fill
 * *out with their defaults. The other names kohya knows (AdamW8bit, Adafactor, Prodigy, DAdapt*, ...)
 * return -1 with "optimizer X is not implemented yet"; anything else is unknown. *error: caller frees. */
int sdt_optim_parse_name(const char *name, sdt_optim_config *out, char **error);
const char *sdt_optim_kind_name(sdt_optim_kind kind);
int sdt_optim_config_check(const sdt_optim_config *c, char **error);

typedef struct sdt_optim_entry {
    char *name;      /* unique; the state buffers are named "<name>.<buffer>" */
    float *value;    /* F32 master copy, updated in place */
    float *grad;     /* F32 gradient (scaled/clipped in place by the helpers below) */
    size_t count;    /* elements */
    int group;       /* index into the optimizer's learning rates */
    float *state[2]; /* AdamW: exp_avg, exp_avg_sq; SGD: momentum_buffer; Lion: exp_avg */
} sdt_optim_entry;

typedef struct sdt_optimizer {
    sdt_optim_config cfg;
    sdt_optim_entry *entries;
    size_t count, capacity;
    double *lr; /* per group; set before every step (the schedule's value) */
    int groups;
    int64_t step; /* optimizer steps taken */
} sdt_optimizer;

int sdt_optim_init(sdt_optimizer *o, const sdt_optim_config *cfg, int groups, char **error);
void sdt_optim_free(sdt_optimizer *o);

/* Registers a buffer pair (the optimizer keeps pointers, not copies). State is zero-initialised. */
int sdt_optim_add(sdt_optimizer *o, const char *name, float *value, float *grad, size_t count, int group,
                  char **error);
/* Registers every trainable entry of an allocated table as "<component>.<name>" (F32 values only). */
int sdt_optim_add_table(sdt_optimizer *o, sdt_param_table *t, int group, char **error);

int sdt_optim_set_lr(sdt_optimizer *o, int group, double lr, char **error);

/* One update of every registered buffer with the current learning rates. */
int sdt_optim_step(sdt_optimizer *o, char **error);

/* Gradient accumulation: multiply every gradient (1 / accumulation steps), or zero them. */
void sdt_optim_scale_grads(sdt_optimizer *o, float factor);
void sdt_optim_zero_grads(sdt_optimizer *o);

/* torch.nn.utils.clip_grad_norm_: the total L2 norm of all gradients (accumulated in double) is
 * returned in *total_norm; when it exceeds max_norm every gradient is multiplied by
 * max_norm / (norm + 1e-6). max_norm <= 0 only measures. */
void sdt_optim_clip_grad_norm(sdt_optimizer *o, double max_norm, double *total_norm);

/* The state as named buffers, for saving: "<name>.exp_avg", "<name>.exp_avg_sq",
 * "<name>.momentum_buffer" per entry; the step count is o->step. */
typedef struct sdt_optim_buffer {
    const char *name; /* owned by the list */
    float *data;      /* points into the optimizer's state */
    size_t count;
} sdt_optim_buffer;

typedef struct sdt_optim_state {
    sdt_optim_buffer *items;
    size_t count;
    char *names; /* storage of the names */
} sdt_optim_state;

/* Lists the state buffers (views; valid until the optimizer is freed). */
int sdt_optim_state_list(const sdt_optimizer *o, sdt_optim_state *out, char **error);
void sdt_optim_state_free(sdt_optim_state *s);
/* Restores one buffer by name (for loading); size must match. */
int sdt_optim_state_set(sdt_optimizer *o, const char *name, const float *data, size_t count, char **error);
/* Restores everything from a list made by sdt_optim_state_list of an optimizer with the same entries;
 * every buffer must be present. */
int sdt_optim_state_import(sdt_optimizer *o, const sdt_optim_state *s, int64_t step, char **error);

#ifdef __cplusplus
}
#endif

#endif
