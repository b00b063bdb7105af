/* Typed values: conversion from TOML nodes and from text, formatting, range checks. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"
#include "sdtune/strutil.h"

void sdt_value_free(sdt_value *value)
{
    free(value->s);
    for (size_t i = 0; i < value->count; i++)
        sdt_value_free(&value->items[i]);
    free(value->items);
    memset(value, 0, sizeof *value);
}

int sdt_value_copy(sdt_value *dst, const sdt_value *src)
{
    *dst = (sdt_value){.type = src->type, .b = src->b, .i = src->i, .f = src->f};
    if (src->s && !(dst->s = sdt_strdup(src->s)))
        goto fail;
    if (src->count) {
        dst->items = calloc(src->count, sizeof *dst->items);
        if (!dst->items)
            goto fail;
        for (size_t k = 0; k < src->count; k++) {
            if (sdt_value_copy(&dst->items[k], &src->items[k]) != 0)
                goto fail;
            dst->count = k + 1;
        }
    }
    return 0;
fail:
    sdt_value_free(dst);
    return -1;
}

bool sdt_value_equal(const sdt_value *a, const sdt_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SDT_T_BOOL: return a->b == b->b;
    case SDT_T_INT: return a->i == b->i;
    case SDT_T_FLOAT: return a->f == b->f;
    case SDT_T_STRING:
    case SDT_T_PATH:
    case SDT_T_ENUM: return strcmp(a->s ? a->s : "", b->s ? b->s : "") == 0;
    case SDT_T_LIST:
        if (a->count != b->count)
            return false;
        for (size_t k = 0; k < a->count; k++)
            if (!sdt_value_equal(&a->items[k], &b->items[k]))
                return false;
        return true;
    }
    return false;
}

static const char *expected_for_type(sdt_type type)
{
    switch (type) {
    case SDT_T_BOOL: return "true or false";
    case SDT_T_INT: return "an integer";
    case SDT_T_FLOAT: return "a number";
    case SDT_T_STRING: return "a string";
    case SDT_T_PATH: return "a path (a string)";
    case SDT_T_ENUM: return "a string";
    case SDT_T_LIST: return "a list";
    }
    return "a value";
}

const char *sdt_expected_text(const sdt_setting *s)
{
    if (s->type != SDT_T_LIST)
        return expected_for_type(s->type);
    switch (s->elem_type) {
    case SDT_T_BOOL: return "a list of true/false values";
    case SDT_T_INT: return "a list of integers";
    case SDT_T_FLOAT: return "a list of numbers";
    case SDT_T_PATH: return "a list of paths (strings)";
    default: return "a list of strings";
    }
}

/* Converts a scalar node into a value of the given scalar type. */
static int scalar_from_toml(sdt_type type, const sdt_toml_node *node, sdt_value *out)
{
    *out = (sdt_value){.type = type};
    switch (type) {
    case SDT_T_BOOL:
        if (node->kind != SDT_TOML_BOOL)
            return -1;
        out->b = node->b;
        return 0;
    case SDT_T_INT:
        if (node->kind != SDT_TOML_INT)
            return -1;
        out->i = node->i;
        return 0;
    case SDT_T_FLOAT:
        if (node->kind == SDT_TOML_INT)
            out->f = (double)node->i;
        else if (node->kind == SDT_TOML_FLOAT && isfinite(node->f))
            out->f = node->f;
        else
            return -1;
        return 0;
    case SDT_T_STRING:
    case SDT_T_PATH:
    case SDT_T_ENUM:
        if (node->kind != SDT_TOML_STRING || strlen(node->s) != node->s_len)
            return -1; /* a NUL byte inside a string cannot be a path, a name or a prompt */
        out->s = sdt_strdup(node->s);
        return out->s ? 0 : -2;
    case SDT_T_LIST: return -1;
    }
    return -1;
}

/* A short spelling of what a node holds, for messages. */
static char *describe_node(const sdt_toml_node *node)
{
    switch (node->kind) {
    case SDT_TOML_STRING:
        if (node->s_len > 40)
            return sdt_format("a string (\"%.37s...\")", node->s);
        return sdt_format("a string (\"%s\")", node->s);
    case SDT_TOML_INT: return sdt_format("an integer (%lld)", (long long)node->i);
    case SDT_TOML_FLOAT: return sdt_format("a float (%g)", node->f);
    case SDT_TOML_BOOL: return sdt_format("a boolean (%s)", node->b ? "true" : "false");
    case SDT_TOML_ARRAY: return sdt_format("an array of %zu items", node->count);
    case SDT_TOML_TABLE: return sdt_format("a table");
    case SDT_TOML_DATETIME: return sdt_format("a date/time");
    }
    return sdt_format("a value");
}

static void canonicalise_enum(const sdt_setting *s, sdt_value *value)
{
    if (s->type != SDT_T_ENUM || !s->enum_values)
        return;
    for (const char *const *v = s->enum_values; *v; v++) {
        if (strcasecmp(*v, value->s) == 0 && strcmp(*v, value->s) != 0) {
            char *canonical = sdt_strdup(*v);
            if (canonical) {
                free(value->s);
                value->s = canonical;
            }
            return;
        }
    }
}

int sdt_value_from_toml(const sdt_setting *s, const sdt_toml_node *node, sdt_value *out, char **error)
{
    *error = NULL;
    if (s->type != SDT_T_LIST) {
        int rc = scalar_from_toml(s->type, node, out);
        if (rc == 0) {
            canonicalise_enum(s, out);
            return 0;
        }
        char *got = describe_node(node);
        if (node->kind == SDT_TOML_FLOAT && s->type == SDT_T_FLOAT)
            *error = sdt_format("%s: expected a finite number, got %s", s->key, got ? got : "a float");
        else if (node->kind == SDT_TOML_STRING && s->type != SDT_T_LIST && strlen(node->s) != node->s_len)
            *error = sdt_format("%s: the string contains a NUL character", s->key);
        else
            *error =
                sdt_format("%s: expected %s, got %s", s->key, sdt_expected_text(s), got ? got : "a value");
        free(got);
        return -1;
    }
    /* A list: an array of items, or one item standing for a one-item list ("resolution = 512"). */
    const sdt_toml_node *items = node->kind == SDT_TOML_ARRAY ? node->children : node;
    size_t count = node->kind == SDT_TOML_ARRAY ? node->count : 1;
    *out = (sdt_value){.type = SDT_T_LIST};
    if (count) {
        out->items = calloc(count, sizeof *out->items);
        if (!out->items) {
            *error = sdt_format("out of memory");
            return -1;
        }
    }
    for (size_t k = 0; k < count; k++) {
        if (scalar_from_toml(s->elem_type, &items[k], &out->items[k]) != 0) {
            char *got = describe_node(&items[k]);
            if (node->kind == SDT_TOML_ARRAY)
                *error = sdt_format("%s: expected %s, but item %zu is %s", s->key, sdt_expected_text(s),
                                    k + 1, got ? got : "a value");
            else
                *error = sdt_format("%s: expected %s, got %s", s->key, sdt_expected_text(s),
                                    got ? got : "a value");
            free(got);
            sdt_value_free(out);
            return -1;
        }
        out->count = k + 1;
    }
    return 0;
}

/* Parses a whole-string integer or finite float. */
static int parse_int_text(const char *text, int64_t *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static int parse_float_text(const char *text, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static char *trim_copy(const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t n = strlen(text);
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    return sdt_strndup(text, n);
}

int sdt_value_parse_text(const sdt_setting *s, const char *text, sdt_value *out, char **error)
{
    *error = NULL;
    *out = (sdt_value){.type = s->type};
    if (s->type == SDT_T_STRING || s->type == SDT_T_PATH || s->type == SDT_T_ENUM) {
        out->s = sdt_strdup(text);
        if (!out->s) {
            *error = sdt_format("out of memory");
            return -1;
        }
        canonicalise_enum(s, out);
        return 0;
    }
    char *t = trim_copy(text);
    if (!t) {
        *error = sdt_format("out of memory");
        return -1;
    }
    int rc = -1;
    switch (s->type) {
    case SDT_T_BOOL:
        if (strcmp(t, "true") == 0 || strcmp(t, "false") == 0) {
            out->b = t[0] == 't';
            rc = 0;
        }
        break;
    case SDT_T_INT: rc = parse_int_text(t, &out->i); break;
    case SDT_T_FLOAT: rc = parse_float_text(t, &out->f); break;
    case SDT_T_LIST: {
        /* The text form of a list is a TOML array literal, so it goes through the TOML parser. */
        char *doc = sdt_format("v = %s\n", t[0] ? t : "[]");
        sdt_diag_list diags;
        sdt_diag_list_init(&diags);
        sdt_toml_node *root = NULL;
        if (doc && sdt_toml_parse(doc, strlen(doc), "", &root, &diags) == 0 && root->count == 1) {
            rc = sdt_value_from_toml(s, &root->children[0], out, error);
        }
        sdt_toml_free(root);
        sdt_diag_list_free(&diags);
        free(doc);
        break;
    }
    default: break;
    }
    if (rc != 0 && !*error)
        *error = sdt_format("%s: expected %s, got \"%s\"", s->key, sdt_expected_text(s), t);
    free(t);
    if (rc != 0)
        sdt_value_free(out);
    return rc;
}

/* The shortest decimal spelling of x that reads back as exactly x. */
static void format_double(double x, char *out, size_t size)
{
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, size, "%.*g", precision, x);
        if (strtod(out, NULL) == x)
            return;
    }
}

static void append_toml_string(sdt_buf *out, const char *s)
{
    sdt_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sdt_buf_puts(out, "\\\""); break;
        case '\\': sdt_buf_puts(out, "\\\\"); break;
        case '\n': sdt_buf_puts(out, "\\n"); break;
        case '\t': sdt_buf_puts(out, "\\t"); break;
        case '\r': sdt_buf_puts(out, "\\r"); break;
        default:
            if (*p < 0x20 || *p == 0x7F)
                sdt_buf_printf(out, "\\u%04X", *p);
            else
                sdt_buf_append(out, (const char *)p, 1);
        }
    }
    sdt_buf_puts(out, "\"");
}

void sdt_value_append_toml(const sdt_value *value, sdt_buf *out)
{
    char number[40];
    switch (value->type) {
    case SDT_T_BOOL: sdt_buf_puts(out, value->b ? "true" : "false"); break;
    case SDT_T_INT: sdt_buf_printf(out, "%lld", (long long)value->i); break;
    case SDT_T_FLOAT:
        format_double(value->f, number, sizeof number);
        sdt_buf_puts(out, number);
        /* "1" would read back as an integer; TOML floats need a fraction or an exponent. */
        if (!strpbrk(number, ".eEn"))
            sdt_buf_puts(out, ".0");
        break;
    case SDT_T_STRING:
    case SDT_T_PATH:
    case SDT_T_ENUM: append_toml_string(out, value->s ? value->s : ""); break;
    case SDT_T_LIST:
        sdt_buf_puts(out, "[");
        for (size_t k = 0; k < value->count; k++) {
            if (k)
                sdt_buf_puts(out, ", ");
            sdt_value_append_toml(&value->items[k], out);
        }
        sdt_buf_puts(out, "]");
        break;
    }
}

char *sdt_value_to_text(const sdt_value *value)
{
    char number[40];
    switch (value->type) {
    case SDT_T_BOOL: return sdt_strdup(value->b ? "true" : "false");
    case SDT_T_INT: return sdt_format("%lld", (long long)value->i);
    case SDT_T_FLOAT: format_double(value->f, number, sizeof number); return sdt_strdup(number);
    case SDT_T_STRING:
    case SDT_T_PATH:
    case SDT_T_ENUM: return sdt_strdup(value->s ? value->s : "");
    case SDT_T_LIST: {
        sdt_buf buf;
        sdt_buf_init(&buf);
        sdt_value_append_toml(value, &buf);
        return sdt_buf_take(&buf);
    }
    }
    return NULL;
}

/* A list whose default is empty treats [] as "off", whatever its item-count bounds. */
static bool empty_list_allowed(const sdt_setting *s) { return strcmp(s->default_text, "[]") == 0; }

static void append_bound(sdt_buf *buf, double x, sdt_type type)
{
    char number[40];
    if (type == SDT_T_INT || (type == SDT_T_LIST && x == (double)(long long)x))
        sdt_buf_printf(buf, "%lld", (long long)x);
    else {
        format_double(x, number, sizeof number);
        sdt_buf_puts(buf, number);
    }
}

char *sdt_setting_allowed_text(const sdt_setting *s)
{
    sdt_buf buf;
    sdt_buf_init(&buf);
    sdt_type number_type = s->type == SDT_T_LIST ? s->elem_type : s->type;
    if (s->type == SDT_T_ENUM && s->enum_values) {
        sdt_buf_puts(&buf, "one of: ");
        for (const char *const *v = s->enum_values; *v; v++)
            sdt_buf_printf(&buf, "%s%s", v == s->enum_values ? "" : ", ", *v);
    } else if (s->has_min && s->has_max) {
        sdt_buf_puts(&buf, "between ");
        append_bound(&buf, s->min, number_type);
        sdt_buf_puts(&buf, " and ");
        append_bound(&buf, s->max, number_type);
    } else if (s->has_min) {
        sdt_buf_puts(&buf, "at least ");
        append_bound(&buf, s->min, number_type);
    } else if (s->has_max) {
        sdt_buf_puts(&buf, "at most ");
        append_bound(&buf, s->max, number_type);
    }
    if (s->type == SDT_T_LIST && (s->list_min || s->list_max)) {
        if (buf.len)
            sdt_buf_puts(&buf, "; ");
        if (empty_list_allowed(s))
            sdt_buf_puts(&buf, "[] or ");
        if (s->list_min == s->list_max)
            sdt_buf_printf(&buf, "%d item%s", s->list_min, s->list_min == 1 ? "" : "s");
        else if (s->list_max)
            sdt_buf_printf(&buf, "%d to %d items", s->list_min, s->list_max);
        else
            sdt_buf_printf(&buf, "at least %d item%s", s->list_min, s->list_min == 1 ? "" : "s");
    }
    return sdt_buf_take(&buf);
}

static const char *enum_value_at(const void *ctx, size_t i) { return ((const char *const *)ctx)[i]; }

static bool number_in_range(const sdt_setting *s, double x)
{
    return !(s->has_min && x < s->min) && !(s->has_max && x > s->max);
}

char *sdt_value_check(const sdt_setting *s, const sdt_value *value)
{
    bool ok = true;
    switch (s->type) {
    case SDT_T_INT: ok = number_in_range(s, (double)value->i); break;
    case SDT_T_FLOAT: ok = number_in_range(s, value->f); break;
    case SDT_T_ENUM:
        ok = false;
        for (const char *const *v = s->enum_values; v && *v; v++)
            ok = ok || strcmp(*v, value->s) == 0;
        break;
    case SDT_T_LIST:
        if (!(value->count == 0 && empty_list_allowed(s)) &&
            ((s->list_min && value->count < (size_t)s->list_min) ||
             (s->list_max && value->count > (size_t)s->list_max)))
            ok = false;
        for (size_t k = 0; ok && k < value->count; k++) {
            const sdt_value *item = &value->items[k];
            if (item->type == SDT_T_INT)
                ok = number_in_range(s, (double)item->i);
            else if (item->type == SDT_T_FLOAT)
                ok = number_in_range(s, item->f);
        }
        break;
    default: break;
    }
    if (ok)
        return NULL;
    char *shown = sdt_value_to_text(value);
    char *allowed = sdt_setting_allowed_text(s);
    char *message = NULL;
    if (s->type == SDT_T_ENUM) {
        /* A near miss gets a suggestion: "adamw8bit" -> AdamW8bit is handled by canonicalising case,
         * this catches real typos such as "consine". */
        size_t n_values = 0;
        while (s->enum_values && s->enum_values[n_values])
            n_values++;
        int guess = sdt_closest_match(value->s, enum_value_at, s->enum_values, n_values);
        const char *best = guess >= 0 ? s->enum_values[guess] : NULL;
        if (best)
            message = sdt_format("%s = \"%s\" is not allowed (did you mean \"%s\"?); %s", s->key,
                                 shown ? shown : "", best, allowed ? allowed : "");
    }
    if (!message)
        message =
            sdt_format("%s = %s%s%s is not allowed: must be %s", s->key, s->type == SDT_T_ENUM ? "\"" : "",
                       shown ? shown : "", s->type == SDT_T_ENUM ? "\"" : "", allowed ? allowed : "");
    free(shown);
    free(allowed);
    return message;
}
