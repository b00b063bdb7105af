/* Learning-rate schedules: each factor function mirrors the corresponding lambda in diffusers'
 * optimization.py operation by operation (in double, as Python does) so the rates agree to rounding. */
#include "lr_schedule.h"
#include "sdtune/strutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const kind_names[] = {
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial", "adafactor",
};

/* kohya accepts these too; they are recognised so that a config naming one gets a clear message. */
static const char *const unimplemented[] = {
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
    "piecewise_constant",
};

void sdt_lr_schedule_default(sdt_lr_schedule *s, sdt_lr_kind kind, int64_t training_steps, double lr_init)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->training_steps = training_steps;
    s->num_cycles = 1.0;
    s->power = 1.0;
    s->lr_end = 1e-7;
    s->lr_init = lr_init;
}

int sdt_lr_kind_parse(const char *name, sdt_lr_kind *out, char **error)
{
    if (!name || !*name) {
        *out = SDT_LR_CONSTANT; /* kohya's default */
        return 0;
    }
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (strcasecmp(name, kind_names[i]) == 0) {
            *out = (sdt_lr_kind)i;
            return 0;
        }
    for (size_t i = 0; i < sizeof unimplemented / sizeof unimplemented[0]; i++)
        if (strcasecmp(name, unimplemented[i]) == 0) {
            sdt_set_error(error, "learning-rate scheduler %s is not implemented yet", name);
            return -1;
        }
    sdt_set_error(error,
                  "unknown learning-rate scheduler \"%s\" (known: constant, constant_with_warmup, linear, "
                  "cosine, cosine_with_restarts, polynomial, adafactor)",
                  name);
    return -1;
}

const char *sdt_lr_kind_name(sdt_lr_kind kind)
{
    if ((unsigned)kind < sizeof kind_names / sizeof kind_names[0])
        return kind_names[kind];
    return "?";
}

int sdt_lr_schedule_check(const sdt_lr_schedule *s, char **error)
{
    if ((unsigned)s->kind >= sizeof kind_names / sizeof kind_names[0]) {
        sdt_set_error(error, "invalid learning-rate schedule kind %d", (int)s->kind);
        return -1;
    }
    if (s->warmup_steps < 0 || s->training_steps < 0) {
        sdt_set_error(error, "learning-rate schedule: warmup and training steps must be >= 0");
        return -1;
    }
    if (s->kind == SDT_LR_COSINE_WITH_RESTARTS && !(s->num_cycles > 0)) {
        sdt_set_error(error, "cosine_with_restarts: num_cycles must be > 0");
        return -1;
    }
    /* diffusers refuses this too: the decay would have to rise. */
    if (s->kind == SDT_LR_POLYNOMIAL && !(s->lr_init > s->lr_end)) {
        sdt_set_error(error, "polynomial schedule: lr_end (%g) must be smaller than the initial lr (%g)",
                      s->lr_end, s->lr_init);
        return -1;
    }
    return 0;
}

/* Python's math.pi; M_PI is not part of strict C11. */
static const double pi = 3.141592653589793;

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

static double warmup(const sdt_lr_schedule *s, int64_t step)
{
    return (double)step / (double)max1(s->warmup_steps);
}

double sdt_lr_factor(const sdt_lr_schedule *s, int64_t step)
{
    const int64_t w = s->warmup_steps, t = s->training_steps;
    switch (s->kind) {
    case SDT_LR_CONSTANT:
    case SDT_LR_ADAFACTOR: return 1.0;
    case SDT_LR_CONSTANT_WITH_WARMUP: return step < w ? warmup(s, step) : 1.0;
    case SDT_LR_LINEAR: {
        if (step < w)
            return warmup(s, step);
        double f = (double)(t - step) / (double)max1(t - w);
        return f > 0.0 ? f : 0.0;
    }
    case SDT_LR_COSINE: {
        if (step < w)
            return warmup(s, step);
        double progress = (double)(step - w) / (double)max1(t - w);
        /* diffusers' get_scheduler passes no num_cycles for "cosine": its default 0.5 is a half wave. */
        double f = 0.5 * (1.0 + cos(pi * 0.5 * 2.0 * progress));
        return f > 0.0 ? f : 0.0;
    }
    case SDT_LR_COSINE_WITH_RESTARTS: {
        if (step < w)
            return warmup(s, step);
        double progress = (double)(step - w) / (double)max1(t - w);
        if (progress >= 1.0)
            return 0.0;
        double f = 0.5 * (1.0 + cos(pi * fmod(s->num_cycles * progress, 1.0)));
        return f > 0.0 ? f : 0.0;
    }
    case SDT_LR_POLYNOMIAL: {
        if (step < w)
            return warmup(s, step);
        if (step > t || t <= w) /* the second: diffusers would divide by zero */
            return s->lr_end / s->lr_init;
        double range = s->lr_init - s->lr_end;
        int64_t decay_steps = t - w;
        double remaining = 1.0 - (double)(step - w) / (double)decay_steps;
        double decay = range * pow(remaining, s->power) + s->lr_end;
        return decay / s->lr_init;
    }
    }
    return 1.0;
}

double sdt_lr_at(const sdt_lr_schedule *s, double base_lr, int64_t step)
{
    return base_lr * sdt_lr_factor(s, step);
}

int64_t sdt_lr_resolve_warmup(double value, int64_t training_steps)
{
    if (!(value > 0.0))
        return 0;
    if (value < 1.0)
        return (int64_t)(value * (double)training_steps);
    return (int64_t)value;
}
