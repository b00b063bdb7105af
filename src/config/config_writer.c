/* Writing a config back as TOML: every section and setting, with the schema's help as comments. */
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "sdtune/atomic_file.h"
#include "sdtune/strutil.h"

static void append_setting(sdt_buf *out, const sdt_config *cfg, int k)
{
    const sdt_setting *s = &sdt_schema_settings()[k];
    sdt_buf_printf(out, "# %s\n", s->help);
    char *allowed = sdt_setting_allowed_text(s);
    const char *type =
        s->type == SDT_T_LIST ? sdt_expected_text(s) + 2 /* skip "a " */ : sdt_type_name(s->type);
    sdt_buf_printf(out, "# %s", type);
    if (allowed && allowed[0])
        sdt_buf_printf(out, ", %s", allowed);
    if (s->relevance != SDT_REL_ALWAYS)
        sdt_buf_printf(out, "; %s", sdt_relevance_text(s->relevance));
    if (s->dynamic_defaults)
        sdt_buf_puts(out, "; the default depends on model_family / training_type");
    sdt_buf_puts(out, "\n");
    free(allowed);
    if (sdt_config_is_set(cfg, k)) {
        sdt_buf_printf(out, "%s = ", s->key);
        sdt_value_append_toml(sdt_config_get(cfg, k), out);
    } else {
        sdt_buf_printf(out, "# %s = ", s->key);
        if (s->flags & SDT_FLAG_SECRET)
            sdt_buf_puts(out, "\"\"");
        else
            sdt_value_append_toml(sdt_config_default(cfg, k), out);
    }
    sdt_buf_puts(out, "\n\n");
}

char *sdt_config_to_toml(const sdt_config *cfg)
{
    sdt_buf out;
    sdt_buf_init(&out);
    sdt_buf_puts(
        &out, "# sdtune configuration.\n"
              "#\n"
              "# `key = value` sets a value. A commented `# key = value` line shows the default, which\n"
              "# applies while the line stays commented. Check a file with `sdtune-engine validate FILE`;\n"
              "# docs/config.md describes every setting.\n\n");
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (int section = 0; section < SDT_SEC_COUNT; section++) {
        sdt_buf_printf(&out, "[%s]\n\n", sdt_section_name((sdt_section)section));
        for (size_t k = 0; k < n; k++)
            if ((int)settings[k].section == section)
                append_setting(&out, cfg, (int)k);
    }
    sdt_buf_end_with_one_newline(&out);
    return sdt_buf_take(&out);
}

int sdt_config_save(sdt_config *cfg, const char *path, char **error)
{
    *error = NULL;
    char *text = sdt_config_to_toml(cfg);
    char *new_source = sdt_strdup(path);
    if (!text || !new_source) {
        free(text);
        free(new_source);
        *error = sdt_format("out of memory");
        return -1;
    }
    int rc = sdt_atomic_write(path, text, strlen(text), error);
    free(text);
    if (rc != 0) {
        free(new_source);
        return -1;
    }
    sdt_config_set_source(cfg, new_source);
    return 0;
}
