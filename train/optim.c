/* Optimizers. Each update follows the reference implementation's element operations in the same order
 * and precision (F32 tensors, scalars computed in double and applied as F32) so a run matches PyTorch to
 * rounding; see docs/training.md. */
#include "optim.h"
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
    }
}

/* Optimizer names kohya accepts that this trainer does not (yet) provide. */
static const char *const unimplemented[] = {
    "AdamW8bit",     "PagedAdamW",      "PagedAdamW8bit",    "PagedAdamW32bit",    "Lion8bit",
    "PagedLion8bit", "SGDNesterov8bit", "DAdaptation",       "DAdaptAdamPreprint", "DAdaptAdaGrad",
    "DAdaptAdam",    "DAdaptAdan",      "DAdaptAdanIP",      "DAdaptLion",         "DAdaptSGD",
    "Prodigy",       "Adafactor",       "RAdamScheduleFree", "AdamWScheduleFree",  "SGDScheduleFree",
};

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
    if (strcasecmp(name, "SGDNesterov") == 0) {
        /* kohya: torch SGD with nesterov=True and momentum 0.9 unless optimizer_args say otherwise. */
        sdt_optim_config_default(out, SDT_OPTIM_SGD);
        out->momentum = 0.9;
        out->nesterov = 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof unimplemented / sizeof unimplemented[0]; i++)
        if (strcasecmp(name, unimplemented[i]) == 0) {
            sdt_set_error(error,
                          "optimizer %s is not implemented yet (available: AdamW, Lion, SGD, SGDNesterov)",
                          unimplemented[i]);
            return -1;
        }
    sdt_set_error(error, "unknown optimizer \"%s\" (available: AdamW, Lion, SGD, SGDNesterov)", name);
    return -1;
}

const char *sdt_optim_kind_name(sdt_optim_kind kind)
{
    switch (kind) {
    case SDT_OPTIM_ADAMW: return "AdamW";
    case SDT_OPTIM_SGD: return "SGD";
    case SDT_OPTIM_LION: return "Lion";
    }
    return "?";
}

static int beta_ok(double b) { return b >= 0.0 && b < 1.0; }

int sdt_optim_config_check(const sdt_optim_config *c, char **error)
{
    switch (c->kind) {
    case SDT_OPTIM_ADAMW:
    case SDT_OPTIM_LION:
        if (!beta_ok(c->beta1) || !beta_ok(c->beta2)) {
            sdt_set_error(error, "%s: betas must be in [0, 1), got (%g, %g)", sdt_optim_kind_name(c->kind),
                          c->beta1, c->beta2);
            return -1;
        }
        if (c->kind == SDT_OPTIM_ADAMW && !(c->eps >= 0.0)) {
            sdt_set_error(error, "AdamW: eps must be >= 0, got %g", c->eps);
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
    return 0;
}

void sdt_optim_free(sdt_optimizer *o)
{
    for (size_t i = 0; i < o->count; i++) {
        free(o->entries[i].name);
        free(o->entries[i].state[0]);
        free(o->entries[i].state[1]);
    }
    free(o->entries);
    free(o->lr);
    memset(o, 0, sizeof *o);
}

static int state_slots(sdt_optim_kind kind)
{
    switch (kind) {
    case SDT_OPTIM_ADAMW: return 2;
    case SDT_OPTIM_SGD: return 1;
    case SDT_OPTIM_LION: return 1;
    }
    return 0;
}

static const char *state_name(sdt_optim_kind kind, int slot)
{
    switch (kind) {
    case SDT_OPTIM_ADAMW: return slot == 0 ? "exp_avg" : "exp_avg_sq";
    case SDT_OPTIM_SGD: return "momentum_buffer";
    case SDT_OPTIM_LION: return "exp_avg";
    }
    return "?";
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
    int ok = e->name != NULL;
    /* SGD without momentum keeps no state. */
    int slots = (o->cfg.kind == SDT_OPTIM_SGD && o->cfg.momentum == 0.0) ? 0 : state_slots(o->cfg.kind);
    for (int s = 0; s < slots && ok; s++) {
        e->state[s] = calloc(count ? count : 1, sizeof(float));
        ok = e->state[s] != NULL;
    }
    if (!ok) {
        free(e->name);
        free(e->state[0]);
        free(e->state[1]);
        sdt_set_error(error, "optimizer: out of memory");
        return -1;
    }
    o->count++;
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
        if (p->value.dtype != SDT_F32 || p->grad.dtype != SDT_F32 || p->value.device != SDT_DEVICE_CPU ||
            p->grad.device != SDT_DEVICE_CPU || !p->value.data || !p->grad.data) {
            sdt_set_error(error, "optimizer: %s.%s needs F32 host value and gradient", t->component, p->name);
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

/* torch.optim.AdamW (single-tensor path) for one buffer; `step` is the count after this update. */
static void adamw(const sdt_optim_config *c, sdt_optim_entry *e, double lr, int64_t step)
{
    const float decay = (float)(1.0 - lr * c->weight_decay);
    const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
    const float b2 = (float)c->beta2, one_b2 = (float)(1.0 - c->beta2);
    const double bc1 = 1.0 - pow(c->beta1, (double)step);
    const double bc2 = 1.0 - pow(c->beta2, (double)step);
    const float step_size = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)c->eps;
    float *p = e->value, *g = e->grad, *m = e->state[0], *v = e->state[1];
    for (size_t i = 0; i < e->count; i++) {
        float pi = p[i] * decay;
        float mi = m[i] * b1;
        mi = mi + one_b1 * g[i];
        float vi = v[i] * b2;
        vi = vi + one_b2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + step_size * (mi / denom);
        m[i] = mi;
        v[i] = vi;
    }
}

/* torch.optim.SGD (single-tensor path). The momentum buffer starts as a copy of the first update. Each
 * add-with-alpha is fused as PyTorch's CPU kernel fuses it, which keeps the result identical to rounding. */
static void sgd(const sdt_optim_config *c, sdt_optim_entry *e, double lr, int first)
{
    const float wd = (float)c->weight_decay, mom = (float)c->momentum;
    const float one_damp = (float)(1.0 - c->dampening), neg_lr = (float)(-lr);
    float *p = e->value, *g = e->grad, *buf = e->state[0];
    for (size_t i = 0; i < e->count; i++) {
        float d = g[i];
        if (c->weight_decay != 0.0)
            d = fmaf(wd, p[i], d);
        if (c->momentum != 0.0) {
            float b = first ? d : fmaf(one_damp, d, buf[i] * mom);
            buf[i] = b;
            d = c->nesterov ? fmaf(mom, b, d) : b;
        }
        p[i] = fmaf(neg_lr, d, p[i]);
    }
}

static float signf(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* Lion: decoupled decay, p -= lr * sign(b1*m + (1-b1)*g), then m = b2*m + (1-b2)*g. */
static void lion(const sdt_optim_config *c, sdt_optim_entry *e, double lr)
{
    const float decay = (float)(1.0 - lr * c->weight_decay), neg_lr = (float)(-lr);
    const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
    const float b2 = (float)c->beta2, one_b2 = (float)(1.0 - c->beta2);
    float *p = e->value, *g = e->grad, *m = e->state[0];
    for (size_t i = 0; i < e->count; i++) {
        float pi = p[i] * decay;
        float u = signf(m[i] * b1 + one_b1 * g[i]);
        p[i] = pi + neg_lr * u;
        m[i] = m[i] * b2 + one_b2 * g[i];
    }
}

int sdt_optim_step(sdt_optimizer *o, char **error)
{
    for (int gi = 0; gi < o->groups; gi++)
        if (!isfinite(o->lr[gi]) || o->lr[gi] < 0.0) {
            sdt_set_error(error, "optimizer: invalid learning rate %g for group %d", o->lr[gi], gi);
            return -1;
        }
    const int64_t step = o->step + 1;
    for (size_t i = 0; i < o->count; i++) {
        sdt_optim_entry *e = &o->entries[i];
        double lr = o->lr[e->group];
        switch (o->cfg.kind) {
        case SDT_OPTIM_ADAMW: adamw(&o->cfg, e, lr, step); break;
        case SDT_OPTIM_SGD: sgd(&o->cfg, e, lr, step == 1); break;
        case SDT_OPTIM_LION: lion(&o->cfg, e, lr); break;
        }
    }
    o->step = step;
    return 0;
}

void sdt_optim_scale_grads(sdt_optimizer *o, float factor)
{
    for (size_t i = 0; i < o->count; i++) {
        float *g = o->entries[i].grad;
        for (size_t j = 0; j < o->entries[i].count; j++)
            g[j] *= factor;
    }
}

void sdt_optim_zero_grads(sdt_optimizer *o)
{
    for (size_t i = 0; i < o->count; i++)
        memset(o->entries[i].grad, 0, o->entries[i].count * sizeof(float));
}

void sdt_optim_clip_grad_norm(sdt_optimizer *o, double max_norm, double *total_norm)
{
    double sum = 0.0;
    for (size_t i = 0; i < o->count; i++) {
        const float *g = o->entries[i].grad;
        for (size_t j = 0; j < o->entries[i].count; j++)
            sum += (double)g[j] * (double)g[j];
    }
    double norm = sqrt(sum);
    if (total_norm)
        *total_norm = norm;
    if (!(max_norm > 0.0))
        return;
    double coef = max_norm / (norm + 1e-6);
    /* PyTorch clamps the coefficient at 1; skipping the multiply by 1 changes nothing. */
    if (coef < 1.0)
        sdt_optim_scale_grads(o, (float)coef);
}

static int entry_slots(const sdt_optimizer *o, const sdt_optim_entry *e)
{
    (void)o;
    return e->state[1] ? 2 : e->state[0] ? 1 : 0;
}

int sdt_optim_state_list(const sdt_optimizer *o, sdt_optim_state *out, char **error)
{
    memset(out, 0, sizeof *out);
    size_t n = 0, chars = 0;
    for (size_t i = 0; i < o->count; i++) {
        int slots = entry_slots(o, &o->entries[i]);
        for (int s = 0; s < slots; s++) {
            n++;
            chars += strlen(o->entries[i].name) + strlen(state_name(o->cfg.kind, s)) + 2;
        }
    }
    out->items = calloc(n ? n : 1, sizeof *out->items);
    out->names = malloc(chars ? chars : 1);
    if (!out->items || !out->names) {
        sdt_optim_state_free(out);
        sdt_set_error(error, "optimizer: out of memory");
        return -1;
    }
    char *w = out->names;
    for (size_t i = 0; i < o->count; i++) {
        const sdt_optim_entry *e = &o->entries[i];
        int slots = entry_slots(o, e);
        for (int s = 0; s < slots; s++) {
            int len = sprintf(w, "%s.%s", e->name, state_name(o->cfg.kind, s));
            out->items[out->count++] = (sdt_optim_buffer){w, e->state[s], e->count};
            w += len + 1;
        }
    }
    return 0;
}

void sdt_optim_state_free(sdt_optim_state *s)
{
    free(s->items);
    free(s->names);
    memset(s, 0, sizeof *s);
}

int sdt_optim_state_set(sdt_optimizer *o, const char *name, const float *data, size_t count, char **error)
{
    for (size_t i = 0; i < o->count; i++) {
        sdt_optim_entry *e = &o->entries[i];
        size_t len = strlen(e->name);
        if (strncmp(name, e->name, len) != 0 || name[len] != '.')
            continue;
        int slots = entry_slots(o, e);
        for (int s = 0; s < slots; s++) {
            if (strcmp(name + len + 1, state_name(o->cfg.kind, s)) != 0)
                continue;
            if (count != e->count) {
                sdt_set_error(error, "optimizer state %s: %zu values, expected %zu", name, count, e->count);
                return -1;
            }
            memcpy(e->state[s], data, count * sizeof(float));
            return 0;
        }
    }
    sdt_set_error(error, "optimizer state %s: no such buffer for %s", name, sdt_optim_kind_name(o->cfg.kind));
    return -1;
}

int sdt_optim_state_import(sdt_optimizer *o, const sdt_optim_state *s, int64_t step, char **error)
{
    size_t expected = 0;
    for (size_t i = 0; i < o->count; i++)
        expected += (size_t)entry_slots(o, &o->entries[i]);
    if (s->count != expected) {
        sdt_set_error(error, "optimizer state: %zu buffers, expected %zu", s->count, expected);
        return -1;
    }
    if (step < 0) {
        sdt_set_error(error, "optimizer state: negative step count %lld", (long long)step);
        return -1;
    }
    for (size_t i = 0; i < s->count; i++)
        if (sdt_optim_state_set(o, s->items[i].name, s->items[i].data, s->items[i].count, error) != 0)
            return -1;
    o->step = step;
    return 0;
}
