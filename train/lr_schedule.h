/* Learning-rate schedules with the semantics of diffusers' get_scheduler (what kohya's trainers use): the
 * learning rate of a parameter group at optimizer step s (counted from 0, the step about to be taken) is
 * base_lr * factor(s). See docs/training.md, "Optimizers and learning-rate schedules". */
#ifndef SDTUNE_TRAIN_LR_SCHEDULE_H
#define SDTUNE_TRAIN_LR_SCHEDULE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_lr_kind {
    SDT_LR_CONSTANT,
    SDT_LR_CONSTANT_WITH_WARMUP,
    SDT_LR_LINEAR,
    SDT_LR_COSINE,
    SDT_LR_COSINE_WITH_RESTARTS,
    SDT_LR_POLYNOMIAL,
    SDT_LR_ADAFACTOR, /* transformers' AdafactorSchedule: constant; only with the Adafactor optimizer, whose
                         own step size (relative_step) it stands for */
} sdt_lr_kind;

typedef struct sdt_lr_schedule {
    sdt_lr_kind kind;
    int64_t warmup_steps;   /* linear ramp from 0 over these steps (ignored by "constant") */
    int64_t training_steps; /* total optimizer steps (kohya: max_train_steps x processes) */
    double num_cycles;      /* cosine_with_restarts: hard restarts; diffusers' default 1 */
    double power;           /* polynomial: exponent, default 1 */
    double lr_end;          /* polynomial: final learning rate, default 1e-7 as diffusers */
    double lr_init;         /* polynomial: the optimizer's default learning rate the decay is relative to */
} sdt_lr_schedule;

/* Fills defaults for `kind` (no warmup, num_cycles 1, power 1, lr_end 1e-7). */
void sdt_lr_schedule_default(sdt_lr_schedule *s, sdt_lr_kind kind, int64_t training_steps, double lr_init);

/* "constant", "linear", ... (diffusers names). Returns 0, or -1 with *error set (caller frees): names
 * kohya knows that are not implemented here are reported as such. */
int sdt_lr_kind_parse(const char *name, sdt_lr_kind *out, char **error);
const char *sdt_lr_kind_name(sdt_lr_kind kind);

/* Checks the fields (non-negative steps, lr_end below lr_init for polynomial, ...). */
int sdt_lr_schedule_check(const sdt_lr_schedule *s, char **error);

/* The multiplier at step `step` (>= 0). */
double sdt_lr_factor(const sdt_lr_schedule *s, int64_t step);
/* base_lr * factor, as torch's LambdaLR computes it. */
double sdt_lr_at(const sdt_lr_schedule *s, double base_lr, int64_t step);

/* kohya's lr_warmup_steps: a value below 1 is a ratio of the total steps (truncated like Python's int()),
 * anything else a step count. */
int64_t sdt_lr_resolve_warmup(double value, int64_t training_steps);

#ifdef __cplusplus
}
#endif

#endif
