/* The preflight that refuses what the engine cannot do yet (see train_support.h). */
#include "train_support.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lr_schedule.h"
#include "optim.h"
#include "optim_settings.h"
#include "sample.h"
#include "sdtune/schema.h"
#include "sdtune/strutil.h"
#include "sdtune/value.h"

typedef struct support_check {
    const sdt_config *cfg;
    sdt_diag_list *diags;
    bool *refused; /* [sdt_schema_count()]: one error per setting is enough */
    int errors;
} support_check;

/* Adds "<section>.<key> = <value>: <why>" at the place the value was written. */
static void refuse(support_check *c, int setting, const char *why)
{
    if (c->refused[setting])
        return;
    c->refused[setting] = true;
    c->errors++;
    const sdt_setting *s = &sdt_schema_settings()[setting];
    sdt_buf value;
    sdt_buf_init(&value);
    sdt_value_append_toml(sdt_config_get(c->cfg, setting), &value);
    int line = 0, col = 0;
    sdt_config_origin(c->cfg, setting, &line, &col);
    sdt_diag_add(c->diags, SDT_SEV_ERROR, sdt_config_source(c->cfg), line, col, setting, "%s.%s = %s: %s",
                 sdt_section_name(s->section), s->key, value.data ? value.data : "?", why);
    sdt_buf_free(&value);
}

/* Refuses `key` when parse (one of the name parsers of train/) rejects its value; the parser's message says
 * whether the name is unknown or only not implemented yet. */
static void check_parsed(support_check *c, const char *key, int (*parse)(const char *name, char **error))
{
    char *error = NULL;
    if (parse(sdt_config_str(c->cfg, key), &error) != 0)
        refuse(c, sdt_schema_find(key), error ? error : "not implemented yet");
    free(error);
}

/* Refuses optimizer_type (a name not implemented) or optimizer_args (a key or value the optimizer does not
 * take), whichever is at fault. */
static void check_optimizer(support_check *c)
{
    sdt_optim_config config;
    const char *bad_key = "optimizer_type";
    char *error = NULL;
    if (sdt_optim_from_settings(c->cfg, &config, &bad_key, &error) != 0)
        refuse(c, sdt_schema_find(bad_key), error ? error : "not implemented yet");
    free(error);
}

static int parse_lr_scheduler(const char *name, char **error)
{
    sdt_lr_kind kind;
    return sdt_lr_kind_parse(name, &kind, error);
}

static int parse_sampler(const char *name, char **error)
{
    sdt_sampler_kind kind;
    return sdt_sampler_parse(name, &kind, error);
}

/* Refuses `key` unless its (string or enum) value is one of `allowed` (NULL-terminated). */
static void check_one_of(support_check *c, const char *key, const char *const *allowed, const char *why)
{
    const char *value = sdt_config_str(c->cfg, key);
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(value, allowed[i]) == 0)
            return;
    refuse(c, sdt_schema_find(key), why);
}

static bool build_has_cuda(void)
{
#ifdef SDTUNE_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

/* full_bf16 / full_fp16: DreamBooth and fine-tuning train the weights themselves in half precision, with
 * the matching mixed_precision (as kohya requires), through the fused update of AdamW, Lion or SGD (the
 * only optimizers that update a half weight in place, with stochastic rounding). */
static void check_full_half(support_check *c)
{
    static const char *const keys[2] = {"full_bf16", "full_fp16"}, *const wanted[2] = {"bf16", "fp16"};
    int set[2] = {sdt_config_bool(c->cfg, keys[0]), sdt_config_bool(c->cfg, keys[1])};
    const char *mp = sdt_config_str(c->cfg, "mixed_precision");
    for (int k = 0; k < 2; k++) {
        if (!set[k])
            continue;
        int setting = sdt_schema_find(keys[k]);
        char why[200];
        if (sdt_config_training(c->cfg) == SDT_TRAIN_LORA) {
            refuse(c, setting,
                   "not implemented yet for LoRA (the network keeps fp32 masters); it trains the model's own "
                   "weights in DreamBooth and fine-tuning");
        } else if (set[1 - k]) {
            refuse(c, setting, "full_bf16 and full_fp16 are both set: choose one");
        } else if (strcmp(mp, wanted[k]) != 0) {
            snprintf(why, sizeof why, "needs mixed_precision = \"%s\" (it is \"%s\")", wanted[k], mp);
            refuse(c, setting, why);
        } else {
            sdt_optim_config oc;
            if (sdt_optim_from_settings(c->cfg, &oc, NULL, NULL) == 0 && oc.kind != SDT_OPTIM_ADAMW &&
                oc.kind != SDT_OPTIM_LION && oc.kind != SDT_OPTIM_SGD) {
                snprintf(why, sizeof why,
                         "the half-precision weights are updated by AdamW, Lion or SGD (SGDNesterov); not "
                         "implemented yet for %s",
                         sdt_optim_kind_name(oc.kind));
                refuse(c, setting, why);
            }
        }
    }
}

/* The values of implemented settings the engine cannot honour. */
static void check_values(support_check *c)
{
    static const char *const sd1_only[] = {"sd1", NULL};
    check_one_of(c, "model_family", sd1_only, "not implemented yet (the engine trains sd1 models)");
    static const char *const safetensors_only[] = {"safetensors", NULL};
    check_one_of(c, "save_model_as", safetensors_only, "not implemented yet (the engine saves .safetensors)");

    /* The metadata settings are written into LoRA files; a full checkpoint is saved without them. */
    if (sdt_config_training(c->cfg) != SDT_TRAIN_LORA) {
        const sdt_setting *settings = sdt_schema_settings();
        for (size_t k = 0; k < sdt_schema_count(); k++)
            if ((settings[k].section == SDT_SEC_METADATA ||
                 strcmp(settings[k].key, "training_comment") == 0 ||
                 strcmp(settings[k].key, "no_metadata") == 0) &&
                sdt_config_is_changed(c->cfg, (int)k))
                refuse(c, (int)k,
                       "not implemented yet for full checkpoints (only LoRA files carry metadata)");
    }

    /* Every backend has one attention kernel, the fused (flash-style) one: it never stores the L x L
     * scores, which is what kohya's xformers / sdpa / mem_eff_attn ask for. "math" would store them. */
    static const char *const fused_attention[] = {"auto", "flash", NULL};
    check_one_of(
        c, "attention", fused_attention,
        "not implemented yet (auto and flash select the fused attention kernel, the only one the engine "
        "has)");

    check_optimizer(c);
    check_parsed(c, "lr_scheduler", parse_lr_scheduler);
    check_parsed(c, "sample_sampler", parse_sampler);

    /* The CUDA backend trains when the build has it (whether a GPU answers is found when the engine
     * starts); the loop computes in fp32 on either backend. */
    const char *backend = sdt_config_str(c->cfg, "backend");
    if (strcmp(backend, "cuda") == 0 && !build_has_cuda())
        refuse(c, sdt_schema_find("backend"), "this build has no CUDA backend (use cpu or auto)");
    /* Every training type trains in any mixed_precision (precision.h): LoRA with its network in fp32,
     * DreamBooth and fine-tuning with fp32 master weights and working copies in bf16 or fp16. */
    check_full_half(c);
}

int sdt_train_check_supported(const sdt_config *cfg, sdt_diag_list *diags)
{
    size_t n = sdt_schema_count();
    support_check c = {.cfg = cfg, .diags = diags, .refused = calloc(n, sizeof(bool))};
    if (!c.refused) {
        sdt_diag_add(diags, SDT_SEV_ERROR, sdt_config_source(cfg), 0, 0, -1, "out of memory");
        return -1;
    }
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t k = 0; k < n; k++)
        if (settings[k].impl == SDT_IMPL_PLANNED && sdt_config_is_changed(cfg, (int)k))
            refuse(&c, (int)k, "not implemented yet");
    check_values(&c);
    free(c.refused);
    return c.errors ? -1 : 0;
}
