/* Shared between the files of src/config; not part of the public API. */
#ifndef SDTUNE_CONFIG_INTERNAL_H
#define SDTUNE_CONFIG_INTERNAL_H

#include "sdtune/config.h"
#include "toml_tree.h"

/* Converts a TOML node to a value of setting s (type only, no range). -1 with *error (caller frees). */
int sdt_value_from_toml(const sdt_setting *s, const sdt_toml_node *node, sdt_value *out, char **error);

/* "an integer", "a number", "true or false", "a list of numbers", ... */
const char *sdt_expected_text(const sdt_setting *s);

/* The closest schema key to name within the edit-distance budget, or -1. */
int sdt_schema_suggest(const char *name);

/* Replaces the config's source file name, taking ownership of source. */
void sdt_config_set_source(sdt_config *cfg, char *source);

#endif
