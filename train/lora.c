/* kohya's LoRA network: module creation over a model's tables, initialisation, per-step dropout state,
 * optimizer registration, and the metadata list. Files: lora_file.c; names: lora_names.c; ss_* metadata:
 * lora_metadata.c. See docs/training.md, "LoRA". */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lora_internal.h"
#include "sdtune/strutil.h"

void sdt_lora_options_default(sdt_lora_options *o)
{
    memset(o, 0, sizeof *o);
    o->network_dim = 4;
    o->network_alpha = 1.0f;
    o->unet = 1;
    o->text_encoder = 1;
    o->multiplier = 1.0f;
}

/* splitmix64's output function: a bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform value in [0, 1) that depends only on (seed, stream, counter): values can be drawn in any
 * order, by any thread. */
static double counter_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t x = mix64(seed ^ mix64(stream * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL) ^
                       mix64(counter + 0xd1b54a32d192ed03ULL));
    return (double)(x >> 11) * 0x1.0p-53;
}

/* Streams of the generator: initialisation of module i's down uses INIT + i; module dropout one draw of
 * MODULE_DROPOUT per module. */
enum { STREAM_MODULE_DROPOUT = 1, STREAM_INIT = 1 << 20 };

static sdt_tensor device_tensor(float *data, sdt_device_kind device, int ndim, const int64_t *shape)
{
    sdt_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = SDT_F32;
    t.device = device;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t.shape[i] = shape[i];
    return t;
}

/* Collects the modules of one component (without storage). */
static int collect(const sdt_model *m, int component, const sdt_lora_options *o, sdt_lora_module **modules,
                   size_t *count, size_t *capacity, char **error)
{
    const sdt_param_table *t = sdt_model_table_const(m, component);
    for (size_t i = 0; i < t->count; i++) {
        sdt_param *p = &t->items[i];
        char name[320];
        int kernel = 0;
        int rc = sdt_lora_target(&m->arch, component, p, o->conv_dim > 0, name, sizeof name, &kernel, error);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (*count == *capacity) {
            size_t cap = *capacity ? *capacity * 2 : 256;
            sdt_lora_module *grown = realloc(*modules, cap * sizeof *grown);
            if (!grown)
                return sdt_set_error(error, "LoRA: out of memory");
            *modules = grown;
            *capacity = cap;
        }
        sdt_lora_module *mod = &(*modules)[*count];
        memset(mod, 0, sizeof *mod);
        mod->name = sdt_strdup(name);
        if (!mod->name)
            return sdt_set_error(error, "LoRA: out of memory");
        (*count)++;
        mod->component = component;
        mod->target = p;
        mod->conv_kernel = kernel;
        mod->out_features = p->shape[0];
        mod->in_features = p->kind == SDT_PARAM_CONV_WEIGHT ? p->shape[3] : p->shape[1];
        int conv = kernel > 1;
        int rank = conv ? o->conv_dim : o->network_dim;
        float alpha = conv ? o->conv_alpha : o->network_alpha;
        mod->alpha = alpha == 0.0f ? (float)rank : alpha;
        mod->adapter.rank = rank;
        mod->adapter.scale = mod->alpha / (float)rank;
        mod->adapter.multiplier = o->multiplier;
        mod->adapter.enabled = 1;
        mod->adapter.dropout = o->dropout;
        mod->adapter.rank_dropout = o->rank_dropout;
    }
    return 0;
}

static size_t down_floats(const sdt_lora_module *m)
{
    size_t k = m->conv_kernel > 1 ? (size_t)m->conv_kernel * (size_t)m->conv_kernel : 1;
    return (size_t)m->adapter.rank * (size_t)m->in_features * k;
}

static size_t up_floats(const sdt_lora_module *m)
{
    return (size_t)m->out_features * (size_t)m->adapter.rank;
}

static void free_modules(sdt_lora_module *modules, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(modules[i].name);
    free(modules);
}

/* Engine shapes: down linear [R, C], conv [R, K, K, C]; up [OC, R]. */
static void set_shapes(sdt_lora_module *mod)
{
    sdt_adapter *a = &mod->adapter;
    int64_t down_shape[4] = {a->rank, mod->in_features, 0, 0};
    int down_ndim = 2;
    if (mod->conv_kernel > 1) {
        down_shape[1] = down_shape[2] = mod->conv_kernel;
        down_shape[3] = mod->in_features;
        down_ndim = 4;
    }
    int64_t up_shape[2] = {mod->out_features, a->rank};
    a->down = device_tensor(NULL, SDT_DEVICE_CPU, down_ndim, down_shape);
    a->up = device_tensor(NULL, SDT_DEVICE_CPU, 2, up_shape);
    a->down_grad = a->down;
    a->up_grad = a->up;
}

int sdt_lora_plan(const sdt_model *m, const sdt_lora_options *o, sdt_lora_network *net, char **error)
{
    memset(net, 0, sizeof *net);
    if (o->network_dim <= 0)
        return sdt_set_error(error, "LoRA: network_dim must be positive (is %d)", o->network_dim);
    if (o->conv_dim < 0)
        return sdt_set_error(error, "LoRA: conv_dim must not be negative (is %d)", o->conv_dim);
    sdt_lora_module *modules = NULL;
    size_t count = 0, capacity = 0, unet_count = 0;
    if (o->unet && collect(m, SDT_COMPONENT_UNET, o, &modules, &count, &capacity, error) != 0)
        goto fail;
    unet_count = count;
    if (o->text_encoder && collect(m, SDT_COMPONENT_TEXT_ENCODER, o, &modules, &count, &capacity, error) != 0)
        goto fail;
    for (size_t i = 0; i < count; i++) {
        modules[i].adapter.index = i;
        set_shapes(&modules[i]);
    }
    net->modules = modules;
    net->count = count;
    net->unet_count = unet_count;
    net->text_encoder_count = count - unet_count;
    net->options = *o;
    return 0;
fail:
    free_modules(modules, count);
    return -1;
}

int sdt_lora_create(sdt_engine *e, sdt_model *m, const sdt_lora_options *o, sdt_lora_network *net,
                    char **error)
{
    memset(net, 0, sizeof *net);
    if ((o->unet && !m->unet.allocated) || (o->text_encoder && !m->text_encoder.allocated))
        return sdt_set_error(error, "LoRA: the model has no values (load or initialise it first)");
    if (sdt_lora_plan(m, o, net, error) != 0)
        return -1;
    for (size_t i = 0; i < net->count; i++)
        if (net->modules[i].target->adapter) {
            sdt_set_error(error, "LoRA: %s already has an adapter", net->modules[i].name);
            sdt_lora_free(e, net);
            return -1;
        }
    size_t values = 0;
    for (size_t i = 0; i < net->count; i++)
        values += down_floats(&net->modules[i]) + up_floats(&net->modules[i]);
    /* The host image of the block: downs from the generator, ups and every gradient zero. One spare float
     * keeps the sizes non-zero for a network without modules. */
    size_t total = 2 * values + 1;
    float *host = calloc(total, sizeof *host);
    sdt_lora_storage *storage = calloc(1, sizeof *storage);
    float *block = sdt_engine_alloc(e, total * sizeof(float));
    if (!host || !storage || !block) {
        free(host);
        free(storage);
        if (block)
            sdt_engine_dealloc(e, block);
        sdt_lora_free(e, net);
        return sdt_set_error(error, "LoRA: out of memory for %zu parameters", values);
    }
    sdt_device_kind device = sdt_engine_device(e);
    size_t at = 0;
    for (size_t i = 0; i < net->count; i++) {
        sdt_lora_module *mod = &net->modules[i];
        sdt_adapter *a = &mod->adapter;
        size_t nd = down_floats(mod), nu = up_floats(mod);
        /* kaiming_uniform(a = sqrt(5)) on [R, C, KH, KW]: bound = gain * sqrt(3 / fan_in) with gain =
         * sqrt(2 / (1 + 5)), i.e. 1 / sqrt(fan_in), fan_in = C * KH * KW. */
        double bound = 1.0 / sqrt((double)(nd / (size_t)a->rank));
        for (size_t k = 0; k < nd; k++)
            host[at + k] = (float)((2.0 * counter_uniform(o->seed, STREAM_INIT + i, k) - 1.0) * bound);
        a->down = device_tensor(block + at, device, a->down.ndim, a->down.shape);
        a->up = device_tensor(block + at + nd, device, 2, a->up.shape);
        a->down_grad = device_tensor(block + values + at, device, a->down.ndim, a->down.shape);
        a->up_grad = device_tensor(block + values + at + nd, device, 2, a->up.shape);
        at += nd + nu;
    }
    sdt_tensor whole = device_tensor(block, device, 1, (int64_t[]){(int64_t)total});
    int rc = sdt_engine_upload(e, &whole, host, total * sizeof(float));
    free(host);
    storage->engine = e;
    storage->block = block;
    storage->value_floats = values;
    storage->grad_floats = values;
    net->storage = storage;
    if (rc != 0) {
        sdt_set_error(error, "LoRA: %s", sdt_engine_error(e));
        sdt_lora_free(e, net);
        return -1;
    }
    for (size_t i = 0; i < net->count; i++)
        net->modules[i].target->adapter = &net->modules[i].adapter;
    return 0;
}

void sdt_lora_free(sdt_engine *e, sdt_lora_network *net)
{
    for (size_t i = 0; i < net->count; i++)
        if (net->modules[i].target && net->modules[i].target->adapter == &net->modules[i].adapter)
            net->modules[i].target->adapter = NULL;
    free_modules(net->modules, net->count);
    sdt_lora_storage *storage = net->storage;
    if (storage) {
        sdt_engine_dealloc(e ? e : storage->engine, storage->block);
        free(storage);
    }
    memset(net, 0, sizeof *net);
}

void sdt_lora_set_training(sdt_lora_network *net, int training, uint64_t step_seed)
{
    float p = net->options.module_dropout;
    for (size_t i = 0; i < net->count; i++) {
        sdt_adapter *a = &net->modules[i].adapter;
        a->training = training;
        a->seed = step_seed;
        a->index = i;
        /* kohya: `if module_dropout is not None and torch.rand(1) < module_dropout: skip`. */
        a->enabled =
            !(training && p > 0.0f && counter_uniform(step_seed, STREAM_MODULE_DROPOUT, i) < (double)p);
    }
}

int sdt_lora_add_to_optimizer(const sdt_lora_network *net, sdt_optimizer *o, int unet_group,
                              int text_encoder_group, char **error)
{
    for (size_t i = 0; i < net->count; i++) {
        sdt_lora_module *mod = &net->modules[i];
        int group = mod->component == SDT_COMPONENT_UNET ? unet_group : text_encoder_group;
        sdt_adapter *a = &mod->adapter;
        if (group < 0) {
            /* Frozen: the layers then compute no gradient for this module. */
            a->down_grad.data = NULL;
            a->up_grad.data = NULL;
            continue;
        }
        if (a->down.device != sdt_engine_device(o->engine))
            return sdt_set_error(error, "LoRA: %s is on the %s, the optimizer on the %s", mod->name,
                                 sdt_device_kind_name(a->down.device),
                                 sdt_device_kind_name(sdt_engine_device(o->engine)));
        if (!a->down_grad.data || !a->up_grad.data)
            return sdt_set_error(error, "LoRA: %s was frozen earlier and has no gradient", mod->name);
        char name[400];
        snprintf(name, sizeof name, "%s.lora_down.weight", mod->name);
        if (sdt_optim_add(o, name, a->down.data, a->down_grad.data, (size_t)sdt_tensor_numel(&a->down), group,
                          error) != 0)
            return -1;
        snprintf(name, sizeof name, "%s.lora_up.weight", mod->name);
        if (sdt_optim_add(o, name, a->up.data, a->up_grad.data, (size_t)sdt_tensor_numel(&a->up), group,
                          error) != 0)
            return -1;
    }
    return 0;
}

void sdt_lora_zero_grads(sdt_lora_network *net)
{
    sdt_lora_storage *s = net->storage;
    if (!s || !s->grad_floats)
        return;
    float *grads = s->block + s->value_floats;
    if (sdt_engine_device(s->engine) == SDT_DEVICE_CPU) {
        memset(grads, 0, s->grad_floats * sizeof(float));
        return;
    }
    sdt_tensor t =
        device_tensor(grads, sdt_engine_device(s->engine), 1, (int64_t[]){(int64_t)s->grad_floats});
    (void)sdt_fill(s->engine, &t, 0.0f);
}

/* ---- metadata list --------------------------------------------------------------------------------- */

int sdt_kv_set(sdt_kv_list *l, const char *key, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    char *value = sdt_vformat(fmt, args);
    va_end(args);
    if (!value)
        return -1;
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].key, key) == 0) {
            free(l->items[i].value);
            l->items[i].value = value;
            return 0;
        }
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 64;
        sdt_kv *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            free(value);
            return -1;
        }
        l->items = grown;
        l->capacity = cap;
    }
    char *k = sdt_strdup(key);
    if (!k) {
        free(value);
        return -1;
    }
    l->items[l->count].key = k;
    l->items[l->count].value = value;
    l->count++;
    return 0;
}

const char *sdt_kv_get(const sdt_kv_list *l, const char *key)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].key, key) == 0)
            return l->items[i].value;
    return NULL;
}

void sdt_kv_list_free(sdt_kv_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}
