/* A typed setting value, and its two spellings: the text form people edit and the TOML literal. */
#ifndef SDTUNE_VALUE_H
#define SDTUNE_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdtune/schema.h"
#include "sdtune/strutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_value {
    sdt_type type;           /* as the setting's type */
    bool b;                  /* SDT_T_BOOL */
    int64_t i;               /* SDT_T_INT */
    double f;                /* SDT_T_FLOAT */
    char *s;                 /* SDT_T_STRING, SDT_T_PATH, SDT_T_ENUM; owned, never NULL once set */
    struct sdt_value *items; /* SDT_T_LIST: [count] items of the setting's elem_type; owned */
    size_t count;
} sdt_value;

void sdt_value_free(sdt_value *value);
/* Deep copy; -1 when out of memory (dst is then empty). */
int sdt_value_copy(sdt_value *dst, const sdt_value *src);
bool sdt_value_equal(const sdt_value *a, const sdt_value *b);

/* Parses the text form of a value of setting `s` (see schema.h). Checks the type, not the range.
 * On failure returns -1 and sets *error to a message (caller frees) saying what was expected. */
int sdt_value_parse_text(const sdt_setting *s, const char *text, sdt_value *out, char **error);

/* The text form (what the TUI shows and edits); NULL when out of memory. */
char *sdt_value_to_text(const sdt_value *value);

/* Appends the value as a TOML literal (strings quoted and escaped, floats that read back exactly). */
void sdt_value_append_toml(const sdt_value *value, sdt_buf *out);

/* Checks range, enum membership and list length against the schema. Returns NULL when the value is
 * allowed, else a message (caller frees) that names the value and what is allowed. */
char *sdt_value_check(const sdt_setting *s, const sdt_value *value);

/* "between 0 and 1", "one of: a, b, c", "at least 1", ... ; "" when unconstrained. Caller frees. */
char *sdt_setting_allowed_text(const sdt_setting *s);

#ifdef __cplusplus
}
#endif
#endif
