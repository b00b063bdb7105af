/* docs/config.md, generated from the schema so the reference can never drift from the code. */
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "sdtune/strutil.h"

/* Appends text with the characters that would break a Markdown table cell (or read as HTML) escaped. */
static void append_cell(sdt_buf *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '|')
            sdt_buf_puts(out, "\\|");
        else if (*p == '<')
            sdt_buf_puts(out, "&lt;");
        else if (*p == '>')
            sdt_buf_puts(out, "&gt;");
        else
            sdt_buf_append(out, p, 1);
    }
}

static void append_default_literal(sdt_buf *out, const sdt_setting *s, const char *text)
{
    sdt_value value;
    char *error = NULL;
    if (sdt_value_parse_text(s, text, &value, &error) != 0) {
        free(error);
        sdt_buf_puts(out, "?");
        return;
    }
    sdt_buf tmp;
    sdt_buf_init(&tmp);
    sdt_value_append_toml(&value, &tmp);
    char *literal = sdt_buf_take(&tmp);
    sdt_buf_puts(out, "`");
    append_cell(out, literal ? literal : "?");
    sdt_buf_puts(out, "`");
    free(literal);
    sdt_value_free(&value);
}

static void append_default(sdt_buf *out, const sdt_setting *s)
{
    append_default_literal(out, s, s->default_text);
    for (const sdt_dynamic_default *d = s->dynamic_defaults; d && d->value; d++) {
        sdt_buf_puts(out, "; ");
        append_default_literal(out, s, d->value);
        sdt_buf_puts(out, " for ");
        if (d->family != SDT_ANY)
            sdt_buf_puts(out, sdt_family_name((sdt_family)d->family));
        if (d->family != SDT_ANY && d->training != SDT_ANY)
            sdt_buf_puts(out, " ");
        if (d->training != SDT_ANY)
            sdt_buf_puts(out, sdt_training_name((sdt_training)d->training));
    }
}

char *sdt_schema_markdown(void)
{
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    sdt_buf out;
    sdt_buf_init(&out);
    sdt_buf_printf(
        &out,
        "# Configuration reference\n\n"
        "Generated from the schema (`src/config/schema_table.c`) by `make regen`; do not edit by hand.\n"
        "%zu settings in %d sections. A config file is TOML with one table per section:\n\n"
        "```toml\n[optimizer]\nlearning_rate = 1e-4\n```\n\n"
        "- **type**: `bool`, `int`, `float`, `string`, `path` (a string; `~/` is your home folder), "
        "`enum` (one of the listed strings) or a list (a TOML array; a single value stands for a "
        "one-item list).\n"
        "- **default**: used while the key is absent or commented out. Some defaults depend on "
        "`model_family` and `training_type`; the column lists each case.\n"
        "- **when**: the setting only has an effect then; giving it a value otherwise is a warning "
        "(an error for SDXL-only settings on other families).\n"
        "- **kohya**: other names kohya_ss or sd-scripts use for the same setting. sdtune rejects them "
        "with a pointer to its own name.\n"
        "- **planned**: accepted and validated, but the engine does not implement it yet: a run "
        "refuses a non-default value rather than ignoring it.\n\n",
        n, (int)SDT_SEC_COUNT);
    for (int section = 0; section < SDT_SEC_COUNT; section++) {
        sdt_buf_printf(&out, "## [%s] %s\n\n", sdt_section_name((sdt_section)section),
                       sdt_section_title((sdt_section)section));
        sdt_buf_puts(&out, "| key | type | default | allowed | description |\n|---|---|---|---|---|\n");
        for (size_t k = 0; k < n; k++) {
            const sdt_setting *s = &settings[k];
            if ((int)s->section != section)
                continue;
            sdt_buf_printf(&out, "| `%s` | ", s->key);
            if (s->type == SDT_T_LIST)
                sdt_buf_printf(&out, "list of %s", sdt_type_name(s->elem_type));
            else
                sdt_buf_puts(&out, sdt_type_name(s->type));
            sdt_buf_puts(&out, " | ");
            append_default(&out, s);
            sdt_buf_puts(&out, " | ");
            char *allowed = sdt_setting_allowed_text(s);
            append_cell(&out, allowed ? allowed : "");
            free(allowed);
            sdt_buf_puts(&out, " | ");
            append_cell(&out, s->help);
            if (s->relevance != SDT_REL_ALWAYS) {
                sdt_buf_puts(&out, ". *When:* ");
                append_cell(&out, sdt_relevance_text(s->relevance) + strlen("when "));
            }
            if (s->kohya_aliases) {
                sdt_buf_puts(&out, ". *kohya:* ");
                append_cell(&out, s->kohya_aliases);
            }
            if (s->impl == SDT_IMPL_PLANNED)
                sdt_buf_puts(&out, ". *planned*");
            sdt_buf_puts(&out, " |\n");
        }
        sdt_buf_puts(&out, "\n");
    }
    sdt_buf_end_with_one_newline(&out);
    return sdt_buf_take(&out);
}
