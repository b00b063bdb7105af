/* kohya's optimizer_args ("key=value" strings, values Python literals) applied
 * to an optimizer config, and kohya's ss_optimizer text describing the
 * optimizer with them. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "sdtune/strutil.h"

/* A parsed literal: a number, True/False, None, or a tuple/list of up to 4
 * numbers. */
typedef enum literal_kind { LIT_NUMBER, LIT_BOOL, LIT_NONE, LIT_TUPLE } literal_kind;

typedef struct literal {
    literal_kind kind;
    double number[4]; /* LIT_NUMBER: [0]; LIT_TUPLE: [count]; LIT_BOOL: [0] is 0
                         or 1 */
    int is_int[4];    /* written without '.', exponent or "inf" (Python int) */
    int count;
} literal;

static const char *skip_space(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* A Python int or float literal (with optional sign); *end after it. */
static int parse_number(const char *s, double *out, int *is_int, const char **end)
{
    const char *start = s;
    if (*s == '+' || *s == '-')
        s++;
    if (!isdigit((unsigned char)*s) && !(*s == '.' && isdigit((unsigned char)s[1])))
        return -1;
    char *stop = NULL;
    *out = strtod(start, &stop);
    if (stop == start)
        return -1;
    *is_int = 1;
    for (const char *c = start; c < stop; c++)
        if (*c == '.' || *c == 'e' || *c == 'E')
            *is_int = 0;
    /* strtod also reads hex floats, "inf" and "nan", which are no Python literals
     */
    for (const char *c = start; c < stop; c++)
        if (*c == 'x' || *c == 'X' || (isalpha((unsigned char)*c) && *c != 'e' && *c != 'E'))
            return -1;
    *end = stop;
    return 0;
}

/* The numbers of a tuple between p and end ("0.9, 0.999", a trailing comma allowed) into out. */
static int parse_tuple_items(const char *p, const char *end, literal *out)
{
    out->kind = LIT_TUPLE;
    p = skip_space(p);
    while (p < end) {
        if (out->count == 4)
            return -1;
        if (parse_number(p, &out->number[out->count], &out->is_int[out->count], &p) != 0)
            return -1;
        out->count++;
        p = skip_space(p);
        if (p < end && *p == ',')
            p = skip_space(p + 1);
        else if (p != end)
            return -1;
    }
    return out->count > 0 ? 0 : -1;
}

static int parse_literal(const char *text, literal *out)
{
    memset(out, 0, sizeof *out);
    const char *s = skip_space(text);
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 4 && strncmp(s, "True", 4) == 0) {
        out->kind = LIT_BOOL;
        out->number[0] = 1;
        return 0;
    }
    if (len == 5 && strncmp(s, "False", 5) == 0) {
        out->kind = LIT_BOOL;
        return 0;
    }
    if (len == 4 && strncmp(s, "None", 4) == 0) {
        out->kind = LIT_NONE;
        return 0;
    }
    const char *end = s + len;
    if (*s == '(' || *s == '[') {
        char close = *s == '(' ? ')' : ']';
        if (end[-1] != close)
            return -1;
        return parse_tuple_items(s + 1, end - 1, out);
    }
    /* A bare "0.9,0.999" is a tuple to Python's ast.literal_eval too. */
    if (memchr(s, ',', len))
        return parse_tuple_items(s, end, out);
    const char *stop;
    out->kind = LIT_NUMBER;
    out->count = 1;
    if (parse_number(s, &out->number[0], &out->is_int[0], &stop) != 0 || stop != end)
        return -1;
    return 0;
}

/* What a key of an optimizer takes, and where it goes. */
typedef enum arg_type {
    ARG_NUMBER,
    ARG_INT,
    ARG_BOOL,
    ARG_PAIR,
    ARG_NUMBER_OR_NONE,
    ARG_FALSE_ONLY,
    ARG_TRUE_ONLY,
    ARG_FIXED
} arg_type;

typedef struct arg_spec {
    const char *key;
    arg_type type;
    size_t offset;  /* of the double/int field in sdt_optim_config (ARG_PAIR: the
                       first of two doubles,  eps: eps1 then eps2; betas: beta1 then
                       beta2) */
    size_t offset2; /* ARG_PAIR: the second field; ARG_NUMBER_OR_NONE: the int
                       flag set to 1 for a number */
    double fixed;   /* ARG_FIXED: the only accepted number */
} arg_spec;

#define F(field) offsetof(sdt_optim_config, field)
#define END                                                                                                  \
    {                                                                                                        \
        NULL, ARG_NUMBER, 0, 0, 0                                                                            \
    }

static const arg_spec adamw_args[] = {{"betas", ARG_PAIR, F(beta1), F(beta2), 0},
                                      {"eps", ARG_NUMBER, F(eps), 0, 0},
                                      {"weight_decay", ARG_NUMBER, F(weight_decay), 0, 0},
                                      {"amsgrad", ARG_FALSE_ONLY, 0, 0, 0},
                                      END};
static const arg_spec adamw8bit_args[] = {{"betas", ARG_PAIR, F(beta1), F(beta2), 0},
                                          {"eps", ARG_NUMBER, F(eps), 0, 0},
                                          {"weight_decay", ARG_NUMBER, F(weight_decay), 0, 0},
                                          {"amsgrad", ARG_FALSE_ONLY, 0, 0, 0},
                                          {"min_8bit_size", ARG_INT, F(min_8bit_size), 0, 0},
                                          {"block_wise", ARG_TRUE_ONLY, 0, 0, 0},
                                          {"percentile_clipping", ARG_FIXED, 0, 0, 100},
                                          {"is_paged", ARG_FALSE_ONLY, 0, 0, 0},
                                          END};
static const arg_spec sgd_args[] = {
    {"momentum", ARG_NUMBER, F(momentum), 0, 0}, {"dampening", ARG_NUMBER, F(dampening), 0, 0},
    {"nesterov", ARG_BOOL, F(nesterov), 0, 0},   {"weight_decay", ARG_NUMBER, F(weight_decay), 0, 0},
    {"maximize", ARG_FALSE_ONLY, 0, 0, 0},       END};
static const arg_spec lion_args[] = {
    {"betas", ARG_PAIR, F(beta1), F(beta2), 0}, {"weight_decay", ARG_NUMBER, F(weight_decay), 0, 0}, END};
static const arg_spec adafactor_args[] = {{"eps", ARG_PAIR, F(eps1), F(eps2), 0},
                                          {"clip_threshold", ARG_NUMBER, F(clip_threshold), 0, 0},
                                          {"decay_rate", ARG_NUMBER, F(decay_rate), 0, 0},
                                          {"beta1", ARG_NUMBER_OR_NONE, F(beta1), F(use_first_moment), 0},
                                          {"weight_decay", ARG_NUMBER, F(weight_decay), 0, 0},
                                          {"scale_parameter", ARG_BOOL, F(scale_parameter), 0, 0},
                                          {"relative_step", ARG_BOOL, F(relative_step), 0, 0},
                                          {"warmup_init", ARG_BOOL, F(warmup_init), 0, 0},
                                          END};
static const arg_spec prodigy_args[] = {{"betas", ARG_PAIR, F(beta1), F(beta2), 0},
                                        {"beta3", ARG_NUMBER_OR_NONE, F(beta3), 0, 0},
                                        {"eps", ARG_NUMBER, F(eps), 0, 0},
                                        {"weight_decay", ARG_NUMBER, F(weight_decay), 0, 0},
                                        {"decouple", ARG_BOOL, F(decouple), 0, 0},
                                        {"use_bias_correction", ARG_BOOL, F(use_bias_correction), 0, 0},
                                        {"safeguard_warmup", ARG_BOOL, F(safeguard_warmup), 0, 0},
                                        {"d0", ARG_NUMBER, F(d0), 0, 0},
                                        {"d_coef", ARG_NUMBER, F(d_coef), 0, 0},
                                        {"growth_rate", ARG_NUMBER, F(growth_rate), 0, 0},
                                        {"fsdp_in_use", ARG_FALSE_ONLY, 0, 0, 0},
                                        END};

static const arg_spec *specs_of(sdt_optim_kind kind)
{
    switch (kind) {
    case SDT_OPTIM_ADAMW: return adamw_args;
    case SDT_OPTIM_SGD: return sgd_args;
    case SDT_OPTIM_LION: return lion_args;
    case SDT_OPTIM_ADAMW8BIT: return adamw8bit_args;
    case SDT_OPTIM_ADAFACTOR: return adafactor_args;
    case SDT_OPTIM_PRODIGY: return prodigy_args;
    }
    return NULL;
}

static double *dbl(sdt_optim_config *c, size_t offset) { return (double *)(void *)((char *)c + offset); }
static int *flag(sdt_optim_config *c, size_t offset) { return (int *)(void *)((char *)c + offset); }

/* Splits "key=value" into the trimmed key (into buf) and the value text. */
static int split_arg(const char *arg, char *key, size_t key_size, const char **value)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return -1;
    const char *k = skip_space(arg), *k_end = eq;
    while (k_end > k && isspace((unsigned char)k_end[-1]))
        k_end--;
    if (k_end == k || (size_t)(k_end - k) >= key_size)
        return -1;
    memcpy(key, k, (size_t)(k_end - k));
    key[k_end - k] = '\0';
    *value = eq + 1;
    return 0;
}

static int apply_one(sdt_optim_config *c, const arg_spec *spec, const char *key, const char *text,
                     const literal *v, char **error)
{
    const char *kind = sdt_optim_kind_name(c->kind);
    switch (spec->type) {
    case ARG_NUMBER:
        if (v->kind != LIT_NUMBER)
            return sdt_set_error(error, "optimizer_args: %s: %s expects a number, got \"%s\"", kind, key,
                                 text);
        *dbl(c, spec->offset) = v->number[0];
        return 0;
    case ARG_INT:
        if (v->kind != LIT_NUMBER || !v->is_int[0])
            return sdt_set_error(error, "optimizer_args: %s: %s expects an integer, got \"%s\"", kind, key,
                                 text);
        *(int64_t *)(void *)((char *)c + spec->offset) = (int64_t)v->number[0];
        return 0;
    case ARG_BOOL:
        if (v->kind != LIT_BOOL)
            return sdt_set_error(error, "optimizer_args: %s: %s expects True or False, got \"%s\"", kind, key,
                                 text);
        *flag(c, spec->offset) = (int)v->number[0];
        return 0;
    case ARG_PAIR:
        if (v->kind != LIT_TUPLE || v->count != 2)
            return sdt_set_error(error,
                                 "optimizer_args: %s: %s expects a pair such as "
                                 "(0.9, 0.999), got \"%s\"",
                                 kind, key, text);
        *dbl(c, spec->offset) = v->number[0];
        *dbl(c, spec->offset2) = v->number[1];
        return 0;
    case ARG_NUMBER_OR_NONE:
        if (v->kind != LIT_NUMBER && v->kind != LIT_NONE)
            return sdt_set_error(error, "optimizer_args: %s: %s expects a number or None, got \"%s\"", kind,
                                 key, text);
        if (spec->offset2) { /* Adafactor's beta1: None turns the first moment off
                              */
            *flag(c, spec->offset2) = v->kind == LIT_NUMBER;
            *dbl(c, spec->offset) = v->kind == LIT_NUMBER ? v->number[0] : 0.0;
        } else { /* Prodigy's beta3: None is sqrt(beta2), kept as -1 */
            *dbl(c, spec->offset) = v->kind == LIT_NUMBER ? v->number[0] : -1.0;
        }
        return 0;
    case ARG_FALSE_ONLY:
    case ARG_TRUE_ONLY: {
        int want = spec->type == ARG_TRUE_ONLY;
        if (v->kind != LIT_BOOL)
            return sdt_set_error(error, "optimizer_args: %s: %s expects True or False, got \"%s\"", kind, key,
                                 text);
        if ((int)v->number[0] != want)
            return sdt_set_error(error, "optimizer_args: %s: %s=%s is not implemented (only %s)", kind, key,
                                 text, want ? "True" : "False");
        return 0;
    }
    case ARG_FIXED:
        if (v->kind != LIT_NUMBER || v->number[0] != spec->fixed)
            return sdt_set_error(error, "optimizer_args: %s: %s=%s is not implemented (only %g)", kind, key,
                                 text, spec->fixed);
        return 0;
    }
    return -1;
}

int sdt_optim_apply_args(sdt_optim_config *c, const char *const *args, size_t count, char **error)
{
    const arg_spec *specs = specs_of(c->kind);
    for (size_t i = 0; i < count; i++) {
        char key[64];
        const char *text;
        if (!args[i] || split_arg(args[i], key, sizeof key, &text) != 0)
            return sdt_set_error(error, "optimizer_args: \"%s\" is not of the form key=value",
                                 args[i] ? args[i] : "(null)");
        const arg_spec *spec = NULL;
        for (const arg_spec *s = specs; s && s->key && !spec; s++)
            if (strcmp(s->key, key) == 0)
                spec = s;
        if (!spec) {
            char known[512] = "";
            for (const arg_spec *s = specs; s && s->key; s++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", *known ? ", " : "",
                         s->key);
            return sdt_set_error(error,
                                 "optimizer_args: unknown key \"%s\" (value \"%s\") "
                                 "for %s (known: %s)",
                                 key, skip_space(text), sdt_optim_kind_name(c->kind), known);
        }
        literal v;
        if (parse_literal(text, &v) != 0)
            return sdt_set_error(error, "optimizer_args: %s: \"%s\" is not a Python literal", key,
                                 skip_space(text));
        if (apply_one(c, spec, key, skip_space(text), &v, error) != 0)
            return -1;
    }
    return 0;
}

/* Python's repr of a float: the shortest digits that read back, positional for
 * exponents -4..15, with
 * ".0" on whole numbers. */
static void python_float(double x, char *out, size_t size)
{
    if (isinf(x)) {
        snprintf(out, size, "%s", x > 0 ? "inf" : "-inf");
        return;
    }
    char digits[40];
    int precision = 1;
    for (; precision < 17; precision++) {
        snprintf(digits, sizeof digits, "%.*e", precision - 1, x);
        if (strtod(digits, NULL) == x)
            break;
    }
    snprintf(digits, sizeof digits, "%.*e", precision - 1, x);
    int exponent = atoi(strchr(digits, 'e') + 1);
    if (exponent < -4 || exponent >= 16) {
        /* 1e-05, 1.5e+16 */
        char *e = strchr(digits, 'e');
        snprintf(out, size, "%.*s%c%c%02d", (int)(e - digits), digits, 'e', exponent < 0 ? '-' : '+',
                 abs(exponent));
        return;
    }
    int decimals = precision - 1 - exponent;
    snprintf(out, size, "%.*f", decimals > 0 ? decimals : 0, x);
    if (decimals <= 0)
        snprintf(out + strlen(out), size - strlen(out), ".0");
}

static void python_number(double x, int is_int, char *out, size_t size)
{
    if (is_int)
        snprintf(out, size, "%.0f", x);
    else
        python_float(x, out, size);
}

/* str() of a parsed value, as kohya's f"{k}={v}" writes it. */
static void python_str(const literal *v, char *out, size_t size)
{
    switch (v->kind) {
    case LIT_BOOL: snprintf(out, size, "%s", v->number[0] ? "True" : "False"); return;
    case LIT_NONE: snprintf(out, size, "None"); return;
    case LIT_NUMBER: python_number(v->number[0], v->is_int[0], out, size); return;
    case LIT_TUPLE: {
        size_t n = (size_t)snprintf(out, size, "(");
        for (int i = 0; i < v->count && n < size; i++) {
            char num[40];
            python_number(v->number[i], v->is_int[i], num, sizeof num);
            n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : "", num);
        }
        if (n < size)
            snprintf(out + n, size - n, "%s)", v->count == 1 ? "," : "");
        return;
    }
    }
}

static const char *class_name(sdt_optim_kind kind)
{
    switch (kind) {
    case SDT_OPTIM_ADAMW: return "torch.optim.adamw.AdamW";
    case SDT_OPTIM_SGD: return "torch.optim.sgd.SGD";
    case SDT_OPTIM_LION: return "lion_pytorch.lion_pytorch.Lion";
    case SDT_OPTIM_ADAMW8BIT: return "bitsandbytes.optim.adamw.AdamW8bit";
    case SDT_OPTIM_ADAFACTOR: return "transformers.optimization.Adafactor";
    case SDT_OPTIM_PRODIGY: return "prodigyopt.prodigy.Prodigy";
    }
    return "?";
}

char *sdt_optim_describe(const sdt_optim_config *c, const char *const *args, size_t count)
{
    size_t size = 256;
    for (size_t i = 0; i < count; i++)
        size += (args[i] ? strlen(args[i]) : 0) + 80;
    char *out = malloc(size);
    if (!out)
        return NULL;
    size_t n = (size_t)snprintf(out, size, "%s", class_name(c->kind));
    int listed = 0, has_momentum = 0, has_relative_step = 0;
    for (size_t i = 0; i < count; i++) {
        char key[64], value[200];
        const char *text;
        literal v;
        if (!args[i] || split_arg(args[i], key, sizeof key, &text) != 0 || parse_literal(text, &v) != 0)
            continue;
        python_str(&v, value, sizeof value);
        has_momentum |= strcmp(key, "momentum") == 0;
        has_relative_step |= strcmp(key, "relative_step") == 0;
        n += (size_t)snprintf(out + n, size - n, "%s%s=%s", listed++ ? "," : "(", key, value);
    }
    /* kohya adds these to the keyword arguments it reports. */
    if (c->kind == SDT_OPTIM_SGD && c->nesterov && !has_momentum)
        n += (size_t)snprintf(out + n, size - n, "%smomentum=0.9", listed++ ? "," : "(");
    if (c->kind == SDT_OPTIM_ADAFACTOR && !has_relative_step)
        n += (size_t)snprintf(out + n, size - n, "%srelative_step=True", listed++ ? "," : "(");
    if (listed)
        snprintf(out + n, size - n, ")");
    return out;
}
