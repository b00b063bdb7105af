/* optimizer_type and optimizer_args read from a config (see optim_settings.h). */
#include "optim_settings.h"

#include <stdlib.h>

#include "sdtune/config.h"
#include "sdtune/schema.h"
#include "sdtune/strutil.h"
#include "sdtune/value.h"

/* The optimizer_args strings as an array of views into the config (NULL when empty); *count set. */
static const char **args_of(const sdt_config *cfg, size_t *count)
{
    *count = 0;
    int key = sdt_schema_find("optimizer_args");
    const sdt_value *v = key >= 0 ? sdt_config_get(cfg, key) : NULL;
    if (!v || v->type != SDT_T_LIST || v->count == 0)
        return NULL;
    const char **args = calloc(v->count, sizeof *args);
    if (!args)
        return NULL;
    for (size_t i = 0; i < v->count; i++)
        args[i] = v->items[i].s ? v->items[i].s : "";
    *count = v->count;
    return args;
}

int sdt_optim_from_settings(const sdt_config *cfg, sdt_optim_config *out, const char **bad_key, char **error)
{
    if (bad_key)
        *bad_key = "optimizer_type";
    if (sdt_optim_parse_name(sdt_config_str(cfg, "optimizer_type"), out, error) != 0)
        return -1;
    if (bad_key)
        *bad_key = "optimizer_args";
    size_t count = 0;
    const char **args = args_of(cfg, &count);
    int rc = sdt_optim_apply_args(out, args, count, error);
    free(args);
    /* kohya turns relative_step on for warmup_init rather than letting transformers refuse it */
    if (rc == 0 && out->kind == SDT_OPTIM_ADAFACTOR && out->warmup_init)
        out->relative_step = 1;
    if (rc == 0)
        rc = sdt_optim_config_check(out, error);
    return rc;
}

char *sdt_optim_settings_text(const sdt_config *cfg)
{
    sdt_optim_config c;
    if (sdt_optim_from_settings(cfg, &c, NULL, NULL) != 0)
        return NULL;
    size_t count = 0;
    const char **args = args_of(cfg, &count);
    char *text = sdt_optim_describe(&c, args, count);
    free(args);
    return text;
}
