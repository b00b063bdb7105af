/* Optimizers. Each update follows the reference implementation's element
 * operations in the same order and precision (F32 tensors, scalars computed in
 * double and applied as F32) so a run matches PyTorch to rounding; see
 * docs/training.md. AdamW, Lion and SGD run as the backend op
 * sdt_optimizer_update (their loops are in kernels/cpu/cpu_optim.c); the
 * others are written in optim_*.c. */
#include "optim.h"
#include "optim_internal.h"
#include "sdtune/strutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void sdt_optim_config_default(sdt_optim_config *c, sdt_optim_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    switch (kind) {
    case SDT_OPTIM_ADAMW:
        c->beta1 = 0.9;
        c->beta2 = 0.999;
        c->eps = 1e-8;
        c->weight_decay = 0.01;
        break;
    case SDT_OPTIM_SGD: break;
    case SDT_OPTIM_LION:
        c->beta1 = 0.9;
        c->beta2 = 0.99;
        break;
    case SDT_OPTIM_ADAMW8BIT: /* bitsandbytes.optim.AdamW8bit */
        c->beta1 = 0.9;
        c->beta2 = 0.999;
        c->eps = 1e-8;
        c->weight_decay = 0.01;
        c->min_8bit_size = 4096;
        break;
    case SDT_OPTIM_ADAFACTOR: /* transformers.optimization.Adafactor */
        c->eps1 = 1e-30;
        c->eps2 = 1e-3;
        c->clip_threshold = 1.0;
        c->decay_rate = -0.8;
        c->scale_parameter = 1;
        c->relative_step = 1;
        break;
    case SDT_OPTIM_PRODIGY: /* prodigyopt.Prodigy 1.0 */
        c->beta1 = 0.9;
        c->beta2 = 0.999;
        c->beta3 = -1.0;
        c->eps = 1e-8;
        c->decouple = 1;
        c->d0 = 1e-6;
        c->d_coef = 1.0;
        c->growth_rate = INFINITY;
        break;
    }
}

/* Optimizer names kohya accepts that this trainer does not (yet) provide. */
static const char *const unimplemented[] = {
    "PagedAdamW",        "PagedAdamW8bit",  "PagedAdamW32bit",    "Lion8bit",      "PagedLion8bit",
    "SGDNesterov8bit",   "DAdaptation",     "DAdaptAdamPreprint", "DAdaptAdaGrad", "DAdaptAdam",
    "DAdaptAdan",        "DAdaptAdanIP",    "DAdaptLion",         "DAdaptSGD",     "RAdamScheduleFree",
    "AdamWScheduleFree", "SGDScheduleFree",
};

#define AVAILABLE "AdamW, AdamW8bit, Lion, SGD, SGDNesterov, Adafactor, Prodigy"

int sdt_optim_parse_name(const char *name, sdt_optim_config *out, char **error)
{
    if (!name || !*name || strcasecmp(name, "AdamW") == 0) {
        sdt_optim_config_default(out, SDT_OPTIM_ADAMW);
        return 0;
    }
    if (strcasecmp(name, "Lion") == 0) {
        sdt_optim_config_default(out, SDT_OPTIM_LION);
        return 0;
    }
    if (strcasecmp(name, "SGD") == 0) {
        sdt_optim_config_default(out, SDT_OPTIM_SGD);
        return 0;
    }
    if (strcasecmp(name, "AdamW8bit") == 0) {
        sdt_optim_config_default(out, SDT_OPTIM_ADAMW8BIT);
        return 0;
    }
    if (strcasecmp(name, "Adafactor") == 0) {
        sdt_optim_config_default(out, SDT_OPTIM_ADAFACTOR);
        return 0;
    }
    if (strcasecmp(name, "Prodigy") == 0) {
        sdt_optim_config_default(out, SDT_OPTIM_PRODIGY);
        return 0;
    }
    if (strcasecmp(name, "SGDNesterov") == 0) {
        /* kohya: torch SGD with nesterov=True and momentum 0.9 unless
         * optimizer_args say otherwise. */
        sdt_optim_config_default(out, SDT_OPTIM_SGD);
        out->momentum = 0.9;
        out->nesterov = 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof unimplemented / sizeof unimplemented[0]; i++)
        if (strcasecmp(name, unimplemented[i]) == 0) {
            sdt_set_error(error, "optimizer %s is not implemented yet (available: " AVAILABLE ")",
                          unimplemented[i]);
            return -1;
        }
    sdt_set_error(error, "unknown optimizer \"%s\" (available: " AVAILABLE ")", name);
    return -1;
}

const char *sdt_optim_kind_name(sdt_optim_kind kind)
{
    switch (kind) {
    case SDT_OPTIM_ADAMW: return "AdamW";
    case SDT_OPTIM_SGD: return "SGD";
    case SDT_OPTIM_LION: return "Lion";
    case SDT_OPTIM_ADAMW8BIT: return "AdamW8bit";
    case SDT_OPTIM_ADAFACTOR: return "Adafactor";
    case SDT_OPTIM_PRODIGY: return "Prodigy";
    }
    return "?";
}

static int beta_ok(double b) { return b >= 0.0 && b < 1.0; }

int sdt_optim_config_check(const sdt_optim_config *c, char **error)
{
    switch (c->kind) {
    case SDT_OPTIM_ADAMW:
    case SDT_OPTIM_ADAMW8BIT:
    case SDT_OPTIM_PRODIGY:
    case SDT_OPTIM_LION:
        if (!beta_ok(c->beta1) || !beta_ok(c->beta2)) {
            sdt_set_error(error, "%s: betas must be in [0, 1), got (%g, %g)", sdt_optim_kind_name(c->kind),
                          c->beta1, c->beta2);
            return -1;
        }
        if (c->kind != SDT_OPTIM_LION && !(c->eps >= 0.0)) {
            sdt_set_error(error, "%s: eps must be >= 0, got %g", sdt_optim_kind_name(c->kind), c->eps);
            return -1;
        }
        if (c->kind == SDT_OPTIM_ADAMW8BIT && c->min_8bit_size < 0) {
            sdt_set_error(error, "AdamW8bit: min_8bit_size must be >= 0");
            return -1;
        }
        if (c->kind == SDT_OPTIM_PRODIGY) {
            if (!(c->beta3 < 1.0) || !(c->d0 > 0.0) || !(c->d_coef > 0.0) || !(c->growth_rate >= 1.0)) {
                sdt_set_error(error,
                              "Prodigy: needs beta3 < 1 (or None), d0 > 0, d_coef > 0, "
                              "growth_rate >= 1 "
                              "(got %g, %g, %g, %g)",
                              c->beta3, c->d0, c->d_coef, c->growth_rate);
                return -1;
            }
        }
        break;
    case SDT_OPTIM_ADAFACTOR:
        if (c->use_first_moment && !beta_ok(c->beta1)) {
            sdt_set_error(error, "Adafactor: beta1 must be in [0, 1) or None, got %g", c->beta1);
            return -1;
        }
        if (!(c->eps1 >= 0.0) || !(c->eps2 >= 0.0) || !(c->clip_threshold > 0.0) || !(c->decay_rate < 0.0)) {
            sdt_set_error(error, "Adafactor: needs eps >= 0, clip_threshold > 0, decay_rate < 0");
            return -1;
        }
        /* transformers refuses the same combination. */
        if (c->warmup_init && !c->relative_step) {
            sdt_set_error(error, "Adafactor: warmup_init=True requires relative_step=True");
            return -1;
        }
        break;
    case SDT_OPTIM_SGD:
        if (!(c->momentum >= 0.0)) {
            sdt_set_error(error, "SGD: momentum must be >= 0, got %g", c->momentum);
            return -1;
        }
        /* PyTorch refuses the same combination. */
        if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0)) {
            sdt_set_error(error, "SGD: Nesterov momentum requires a momentum and zero dampening");
            return -1;
        }
        break;
    default: sdt_set_error(error, "invalid optimizer kind %d", (int)c->kind); return -1;
    }
    if (!(c->weight_decay >= 0.0)) {
        sdt_set_error(error, "%s: weight_decay must be >= 0, got %g", sdt_optim_kind_name(c->kind),
                      c->weight_decay);
        return -1;
    }
    return 0;
}

int sdt_optim_init(sdt_optimizer *o, const sdt_optim_config *cfg, int groups, char **error)
{
    memset(o, 0, sizeof *o);
    if (sdt_optim_config_check(cfg, error) != 0)
        return -1;
    if (groups < 1) {
        sdt_set_error(error, "optimizer: at least one parameter group is needed");
        return -1;
    }
    o->cfg = *cfg;
    o->lr = calloc((size_t)groups, sizeof *o->lr);
    if (!o->lr) {
        sdt_set_error(error, "optimizer: out of memory");
        return -1;
    }
    o->groups = groups;
    sdt_engine_options host = {.device = SDT_DEVICE_CPU};
    if (sdt_engine_create(&host, &o->engine, error) != 0) {
        free(o->lr);
        o->lr = NULL;
        return -1;
    }
    o->owns_engine = 1;
    if (cfg->kind == SDT_OPTIM_PRODIGY)
        sdt_prodigy_init(o);
    return 0;
}

/* The optimizer's buffers are host memory (its own CPU engine, or a CPU training engine). */
static int on_host(const sdt_optimizer *o)
{
    return !o->engine || sdt_engine_device(o->engine) == SDT_DEVICE_CPU;
}

/* State buffers come from calloc on the host and from the engine's allocator elsewhere. */
static void free_state(const sdt_optimizer *o, sdt_optim_entry *e)
{
    for (int s = 0; s < 4; s++) {
        if (on_host(o))
            free(e->state[s]);
        else if (e->state[s])
            sdt_engine_dealloc(o->engine, e->state[s]);
        e->state[s] = NULL;
    }
}

void sdt_optim_free(sdt_optimizer *o)
{
    for (size_t i = 0; i < o->count; i++) {
        free(o->entries[i].name);
        free_state(o, &o->entries[i]);
    }
    free(o->entries);
    free(o->lr);
    if (o->owns_engine)
        sdt_engine_free(o->engine);
    memset(o, 0, sizeof *o);
}

int sdt_optim_use_engine(sdt_optimizer *o, sdt_engine *engine, char **error)
{
    if (!engine)
        return sdt_set_error(error, "optimizer: no engine given");
    if (o->count > 0)
        return sdt_set_error(error, "optimizer: the engine must be chosen before buffers are registered");
    const sdt_device_kind device = sdt_engine_device(engine);
    const sdt_optim_kind kind = o->cfg.kind;
    if (device != SDT_DEVICE_CPU && kind != SDT_OPTIM_ADAMW && kind != SDT_OPTIM_LION &&
        kind != SDT_OPTIM_SGD)
        return sdt_set_error(error,
                             "optimizer %s runs on the host only: it cannot train tensors on the %s (AdamW, "
                             "Lion and SGD can)",
                             sdt_optim_kind_name(kind), sdt_device_kind_name(device));
    if (o->owns_engine)
        sdt_engine_free(o->engine);
    o->engine = engine;
    o->owns_engine = 0;
    return 0;
}

/* A flat tensor of count elements of dtype on the optimizer's device. */
static sdt_tensor typed_view(const sdt_optimizer *o, void *data, sdt_dtype dtype, size_t count)
{
    int64_t shape[1] = {(int64_t)count};
    sdt_tensor t = sdt_tensor_view(data, dtype, 1, shape);
    t.device = o->engine ? sdt_engine_device(o->engine) : SDT_DEVICE_CPU;
    return t;
}

/* A flat F32 tensor of count floats of the optimizer's device. */
static sdt_tensor flat_view(const sdt_optimizer *o, float *data, size_t count)
{
    return typed_view(o, data, SDT_F32, count);
}

/* The gradient of an entry as a tensor of its dtype. */
static sdt_tensor grad_view(const sdt_optimizer *o, const sdt_optim_entry *e)
{
    return typed_view(o, e->grad, e->dtype, e->count);
}

void sdt_optim_layout(const sdt_optim_config *c, sdt_optim_entry *e)
{
    memset(e->state_names, 0, sizeof e->state_names);
    memset(e->state_count, 0, sizeof e->state_count);
    int n = 0;
#define BUFFER(label, floats) (e->state_names[n] = (label), e->state_count[n++] = (floats))
    switch (c->kind) {
    case SDT_OPTIM_ADAMW:
        BUFFER("exp_avg", e->count);
        BUFFER("exp_avg_sq", e->count);
        break;
    case SDT_OPTIM_SGD:
        /* SGD without momentum keeps no state. */
        if (c->momentum != 0.0)
            BUFFER("momentum_buffer", e->count);
        break;
    case SDT_OPTIM_LION: BUFFER("exp_avg", e->count); break;
    case SDT_OPTIM_ADAMW8BIT:
        if ((int64_t)e->count >= c->min_8bit_size) {
            size_t blocks = (e->count + SDT_OPTIM_8BIT_BLOCK - 1) / SDT_OPTIM_8BIT_BLOCK;
            BUFFER("state1", (e->count + 3) / 4);
            BUFFER("absmax1", blocks);
            BUFFER("state2", (e->count + 3) / 4);
            BUFFER("absmax2", blocks);
        } else {
            BUFFER("exp_avg", e->count);
            BUFFER("exp_avg_sq", e->count);
        }
        break;
    case SDT_OPTIM_ADAFACTOR:
        if (c->use_first_moment)
            BUFFER("exp_avg", e->count);
        if (e->rows) {
            BUFFER("exp_avg_sq_row", e->outer * e->rows);
            BUFFER("exp_avg_sq_col", e->outer * e->cols);
        } else {
            BUFFER("exp_avg_sq", e->count);
        }
        break;
    case SDT_OPTIM_PRODIGY:
        BUFFER("exp_avg", e->count);
        BUFFER("exp_avg_sq", e->count);
        BUFFER("s", e->count);
        BUFFER("p0", e->count);
        break;
    }
#undef BUFFER
}

/* (Re)allocates the state buffers of e from its layout, zeroed; Prodigy's p0
 * starts as the value (Prodigy runs on the host only). */
static int allocate_state(const sdt_optimizer *o, sdt_optim_entry *e)
{
    const sdt_optim_config *c = &o->cfg;
    free_state(o, e);
    sdt_optim_layout(c, e);
    for (int s = 0; s < 4 && e->state_names[s]; s++) {
        size_t floats = e->state_count[s] ? e->state_count[s] : 1;
        if (!on_host(o)) {
            e->state[s] = sdt_engine_alloc(o->engine, floats * sizeof(float)); /* [state_count[s]] */
            if (!e->state[s])
                return -1;
            sdt_tensor t = flat_view(o, e->state[s], floats);
            if (sdt_fill(o->engine, &t, 0.0f) != 0)
                return -1;
            continue;
        }
        e->state[s] = calloc(floats, sizeof(float)); /* [state_count[s]] */
        if (!e->state[s])
            return -1;
        if (c->kind == SDT_OPTIM_PRODIGY && strcmp(e->state_names[s], "p0") == 0)
            memcpy(e->state[s], e->value, e->count * sizeof(float));
    }
    return 0;
}

int sdt_optim_add(sdt_optimizer *o, const char *name, float *value, float *grad, size_t count, int group,
                  char **error)
{
    if (!name || !value || !grad || group < 0 || group >= o->groups) {
        sdt_set_error(error, "optimizer: invalid entry \"%s\" (group %d of %d)", name ? name : "(null)",
                      group, o->groups);
        return -1;
    }
    for (size_t i = 0; i < o->count; i++)
        if (strcmp(o->entries[i].name, name) == 0) {
            sdt_set_error(error, "optimizer: duplicate entry \"%s\"", name);
            return -1;
        }
    if (o->count == o->capacity) {
        size_t cap = o->capacity ? 2 * o->capacity : 64;
        sdt_optim_entry *grown = realloc(o->entries, cap * sizeof *grown);
        if (!grown) {
            sdt_set_error(error, "optimizer: out of memory");
            return -1;
        }
        o->entries = grown;
        o->capacity = cap;
    }
    sdt_optim_entry *e = &o->entries[o->count];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->value = value;
    e->grad = grad;
    e->count = count;
    e->group = group;
    e->outer = 1;
    if (!e->name || allocate_state(o, e) != 0) {
        free(e->name);
        free_state(o, e);
        sdt_set_error(error, "optimizer: out of memory");
        return -1;
    }
    o->count++;
    return 0;
}

int sdt_optim_set_shape(sdt_optimizer *o, const char *name, int ndim, const int64_t *shape, char **error)
{
    sdt_optim_entry *e = NULL;
    for (size_t i = 0; i < o->count && !e; i++)
        if (strcmp(o->entries[i].name, name) == 0)
            e = &o->entries[i];
    if (!e)
        return sdt_set_error(error, "optimizer: no entry \"%s\"", name);
    size_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= (size_t)shape[d];
    if (ndim < 1 || numel != e->count)
        return sdt_set_error(error, "optimizer: %s: shape of %zu values given for %zu", name, numel,
                             e->count);
    if (o->step > 0)
        return sdt_set_error(error, "optimizer: %s: shape set after the first step", name);
    e->outer = 1;
    e->rows = e->cols = 0;
    if (ndim >= 2) {
        e->rows = (size_t)shape[ndim - 2];
        e->cols = (size_t)shape[ndim - 1];
        e->outer = e->rows * e->cols > 0 ? e->count / (e->rows * e->cols) : 1;
    }
    if (allocate_state(o, e) != 0)
        return sdt_set_error(error, "optimizer: out of memory");
    return 0;
}

int sdt_optim_add_table(sdt_optimizer *o, sdt_param_table *t, int group, char **error)
{
    if (!t->allocated) {
        sdt_set_error(error, "optimizer: table %s is not allocated", t->component);
        return -1;
    }
    for (size_t i = 0; i < t->count; i++) {
        sdt_param *p = &t->items[i];
        if (!p->trainable)
            continue;
        const sdt_device_kind device = sdt_engine_device(o->engine);
        const sdt_dtype dtype = p->value.dtype;
        int half = dtype == SDT_BF16 || dtype == SDT_F16;
        if ((dtype != SDT_F32 && !half) || p->grad.dtype != dtype || p->value.device != device ||
            p->grad.device != device || !p->value.data || !p->grad.data) {
            sdt_set_error(error, "optimizer: %s.%s needs F32 (or BF16 / F16) value and gradient on the %s",
                          t->component, p->name, sdt_device_kind_name(device));
            return -1;
        }
        if (half && o->cfg.kind != SDT_OPTIM_ADAMW && o->cfg.kind != SDT_OPTIM_LION &&
            o->cfg.kind != SDT_OPTIM_SGD) {
            sdt_set_error(error,
                          "optimizer: %s.%s is %s: half-precision weights without a master train with "
                          "AdamW, Lion or SGD only, not %s",
                          t->component, p->name, sdt_dtype_name(dtype), sdt_optim_kind_name(o->cfg.kind));
            return -1;
        }
        size_t len = strlen(t->component) + strlen(p->name) + 2;
        char *name = malloc(len);
        if (!name) {
            sdt_set_error(error, "optimizer: out of memory");
            return -1;
        }
        snprintf(name, len, "%s.%s", t->component, p->name);
        int rc = sdt_optim_add(o, name, p->value.data, p->grad.data, (size_t)sdt_tensor_numel(&p->value),
                               group, error);
        if (rc == 0 && half) {
            o->entries[o->count - 1].dtype = dtype;
            o->half_entries++;
        }
        if (rc == 0)
            rc = sdt_optim_set_shape(o, name, p->value.ndim, p->value.shape, error);
        free(name);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int sdt_optim_set_lr(sdt_optimizer *o, int group, double lr, char **error)
{
    if (group < 0 || group >= o->groups) {
        sdt_set_error(error, "optimizer: no parameter group %d (of %d)", group, o->groups);
        return -1;
    }
    o->lr[group] = lr;
    return 0;
}

/* The per-step scalars of AdamW, Lion and SGD for one learning rate, computed in double and rounded to
 * F32 once, as the reference implementations do; `step` is the count after this update. */
static void update_scalars(const sdt_optim_config *c, double lr, int64_t step, sdt_optimizer_update_args *a)
{
    a->decay = (float)(1.0 - lr * c->weight_decay);
    a->b1 = (float)c->beta1;
    a->one_b1 = (float)(1.0 - c->beta1);
    a->b2 = (float)c->beta2;
    a->one_b2 = (float)(1.0 - c->beta2);
    a->neg_lr = (float)(-lr);
    a->step = step;
    switch (c->kind) {
    case SDT_OPTIM_ADAMW: {
        a->kind = SDT_UPDATE_ADAMW;
        const double bc1 = 1.0 - pow(c->beta1, (double)step);
        const double bc2 = 1.0 - pow(c->beta2, (double)step);
        a->step_size = (float)(-(lr / bc1));
        a->bc2_sqrt = (float)sqrt(bc2);
        a->eps = (float)c->eps;
        break;
    }
    case SDT_OPTIM_LION: a->kind = SDT_UPDATE_LION; break;
    default:
        a->kind = SDT_UPDATE_SGD;
        a->weight_decay = (float)c->weight_decay;
        a->momentum = (float)c->momentum;
        a->one_dampening = (float)(1.0 - c->dampening);
        a->use_weight_decay = c->weight_decay != 0.0;
        a->use_momentum = c->momentum != 0.0;
        a->nesterov = c->nesterov;
        a->first_step = step == 1;
        break;
    }
}

/* AdamW, Lion, SGD: one optimizer_update op per parameter group (the scalars depend on its learning
 * rate) over every entry of the group. */
static int fused_step(sdt_optimizer *o, int64_t step, char **error)
{
    /* params, grads, state[0], state[1]: [o->count] views each */
    sdt_tensor *views = malloc((o->count ? o->count : 1) * 4 * sizeof *views);
    if (!views)
        return sdt_set_error(error, "optimizer: out of memory");
    sdt_tensor *params = views, *grads = views + o->count, *first = views + 2 * o->count,
               *second = views + 3 * o->count;
    int rc = 0;
    for (int gi = 0; gi < o->groups && rc == 0; gi++) {
        sdt_optimizer_update_args a;
        memset(&a, 0, sizeof a);
        update_scalars(&o->cfg, o->lr[gi], step, &a);
        size_t n = 0;
        for (size_t i = 0; i < o->count; i++) {
            sdt_optim_entry *e = &o->entries[i];
            if (e->group != gi)
                continue;
            params[n] = typed_view(o, e->value, e->dtype, e->count);
            grads[n] = grad_view(o, e);
            first[n] = flat_view(o, e->state[0], e->state[0] ? e->count : 0);
            second[n] = flat_view(o, e->state[1], e->state[1] ? e->count : 0);
            n++;
        }
        if (n == 0)
            continue;
        a.count = n;
        /* half entries round from (seed, step, position in the group, element) */
        a.seed = o->rounding_seed ^ (uint64_t)gi * 0x9e3779b97f4a7c15u;
        a.params = params;
        a.grads = grads;
        a.state[0] = first;
        a.state[1] = second;
        if (sdt_optimizer_update(o->engine, &a) != 0)
            rc = sdt_set_error(error, "optimizer: %s", sdt_engine_error(o->engine));
    }
    free(views);
    return rc;
}

int sdt_optim_step(sdt_optimizer *o, char **error)
{
    for (int gi = 0; gi < o->groups; gi++)
        if (!isfinite(o->lr[gi]) || o->lr[gi] < 0.0) {
            sdt_set_error(error, "optimizer: invalid learning rate %g for group %d", o->lr[gi], gi);
            return -1;
        }
    if (o->cfg.kind == SDT_OPTIM_PRODIGY) {
        if (sdt_prodigy_step(o, error) != 0)
            return -1;
        o->step++;
        return 0;
    }
    const int64_t step = o->step + 1;
    if (o->cfg.kind == SDT_OPTIM_ADAMW || o->cfg.kind == SDT_OPTIM_LION || o->cfg.kind == SDT_OPTIM_SGD) {
        if (fused_step(o, step, error) != 0)
            return -1;
        o->step = step;
        return 0;
    }
    for (size_t i = 0; i < o->count; i++) {
        sdt_optim_entry *e = &o->entries[i];
        double lr = o->lr[e->group];
        switch (o->cfg.kind) {
        case SDT_OPTIM_ADAMW:
        case SDT_OPTIM_SGD:
        case SDT_OPTIM_LION: break;
        case SDT_OPTIM_ADAMW8BIT: sdt_adamw8bit_update(&o->cfg, e, lr, step); break;
        case SDT_OPTIM_ADAFACTOR:
            /* an entry cut short leaves the others of this step updated: the run stops on the error */
            if (sdt_adafactor_update(&o->cfg, e, lr, step) != 0)
                return sdt_set_error(error, "optimizer: out of memory");
            break;
        case SDT_OPTIM_PRODIGY: break;
        }
    }
    o->step = step;
    return 0;
}

/* Half entries are scaled, zeroed and measured by ops on the host too (the loops below read F32). */
static int through_ops(const sdt_optimizer *o) { return !on_host(o) || o->half_entries > 0; }

void sdt_optim_scale_grads(sdt_optimizer *o, float factor)
{
    if (through_ops(o)) {
        /* x * factor in F32 (rounded back to a half gradient's dtype), as the loop below */
        for (size_t i = 0; i < o->count; i++) {
            sdt_tensor g = grad_view(o, &o->entries[i]);
            (void)sdt_scale(o->engine, &g, factor);
        }
        return;
    }
    for (size_t i = 0; i < o->count; i++) {
        float *g = o->entries[i].grad;
        for (size_t j = 0; j < o->entries[i].count; j++)
            g[j] *= factor;
    }
}

void sdt_optim_zero_grads(sdt_optimizer *o)
{
    if (through_ops(o)) {
        for (size_t i = 0; i < o->count; i++) {
            sdt_tensor g = grad_view(o, &o->entries[i]);
            (void)sdt_fill(o->engine, &g, 0.0f);
        }
        return;
    }
    for (size_t i = 0; i < o->count; i++)
        memset(o->entries[i].grad, 0, o->entries[i].count * sizeof(float));
}

/* The sum of squares of every gradient: added in double in entry order and rounded to F32 once, which is
 * what the sum_squares op gives (kernels/backend.h), so a host optimizer and one on an engine measure the
 * same norm bit for bit. Off the CPU the op reduces on the device and the host downloads its 4 bytes. NAN
 * when the op fails. */
static double gradient_sum_squares(sdt_optimizer *o)
{
    if (!through_ops(o)) {
        double sum = 0.0;
        for (size_t i = 0; i < o->count; i++) {
            const float *g = o->entries[i].grad;
            for (size_t j = 0; j < o->entries[i].count; j++)
                sum += (double)g[j] * (double)g[j];
        }
        return (double)(float)sum;
    }
    sdt_tensor *grads = malloc((o->count ? o->count : 1) * sizeof *grads); /* [count] views */
    float *device_sum = sdt_engine_alloc(o->engine, sizeof(float));        /* [1] on the engine */
    float sum = NAN;
    if (grads && device_sum) {
        for (size_t i = 0; i < o->count; i++)
            grads[i] = grad_view(o, &o->entries[i]);
        sdt_tensor out = flat_view(o, device_sum, 1);
        if (sdt_sum_squares(o->engine, &out, grads, o->count) != 0 ||
            sdt_engine_download(o->engine, &sum, &out, sizeof sum) != 0)
            sum = NAN;
    }
    if (device_sum)
        sdt_engine_dealloc(o->engine, device_sum);
    free(grads);
    return sum;
}

void sdt_optim_clip_grad_norm(sdt_optimizer *o, double max_norm, double *total_norm)
{
    double norm = sqrt(gradient_sum_squares(o));
    if (total_norm)
        *total_norm = norm;
    if (!(max_norm > 0.0))
        return;
    double coef = max_norm / (norm + 1e-6);
    /* PyTorch clamps the coefficient at 1; skipping the multiply by 1 changes
     * nothing. */
    if (coef < 1.0)
        sdt_optim_scale_grads(o, (float)coef);
}
