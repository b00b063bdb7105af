/* A plain C tree of a parsed TOML document, with source positions.
 *
 * The parser itself is toml++ (C++17); toml_reader.cpp converts its DOM into this tree so that all
 * config logic stays in C. Internal to src/config. */
#ifndef SDTUNE_TOML_TREE_H
#define SDTUNE_TOML_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdtune/diag.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_toml_kind {
    SDT_TOML_TABLE,
    SDT_TOML_ARRAY,
    SDT_TOML_STRING,
    SDT_TOML_INT,
    SDT_TOML_FLOAT,
    SDT_TOML_BOOL,
    SDT_TOML_DATETIME, /* date, time or date-time: never valid for a setting, kept to name the type */
} sdt_toml_kind;

/* Deeper documents are refused: a config is at most table.key = [list]. */
#define SDT_TOML_MAX_DEPTH 32

typedef struct sdt_toml_node {
    sdt_toml_kind kind;
    char *key;             /* member name inside a table; NULL for array items and the root */
    int key_line, key_col; /* where the key is written (members); else as line/col */
    int line, col;         /* where the value starts */
    bool b;
    int64_t i;
    double f;
    char *s; /* STRING (may hold NUL bytes: s_len is its length) */
    size_t s_len;
    struct sdt_toml_node *children; /* TABLE members (in source order) or ARRAY items */
    size_t count;
} sdt_toml_node;

/* Parses text (len bytes, need not be NUL-terminated). On success returns 0 and *root (a TABLE; free with
 * sdt_toml_free). On failure returns -1 and adds one diagnostic at the place of the problem. */
int sdt_toml_parse(const char *text, size_t len, const char *file, sdt_toml_node **root,
                   sdt_diag_list *diags);
void sdt_toml_free(sdt_toml_node *node);

const char *sdt_toml_kind_name(sdt_toml_kind kind); /* "string", "integer", "table", ... */

#ifdef __cplusplus
}
#endif
#endif
