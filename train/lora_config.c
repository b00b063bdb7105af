/* Config reads for the LoRA metadata, rendered the way kohya's metadata renders argparse values (str()). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora_internal.h"
#include "sdtune/config.h"
#include "sdtune/strutil.h"

void sdt_lora_python_float(double value, char *buf, size_t size)
{
    if (isnan(value)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(value)) {
        snprintf(buf, size, "%s", value < 0 ? "-inf" : "inf");
        return;
    }
    /* The shortest digits that read back as value, as Python's repr finds them. */
    char digits[40];
    int precision = 1;
    for (; precision <= 17; precision++) {
        snprintf(digits, sizeof digits, "%.*e", precision - 1, value);
        if (strtod(digits, NULL) == value)
            break;
    }
    /* digits: [-]d[.ddd]e[+-]XX */
    const char *p = digits;
    int negative = *p == '-';
    if (negative)
        p++;
    char mantissa[24];
    size_t n = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && n + 1 < sizeof mantissa)
            mantissa[n++] = *p;
    mantissa[n] = '\0';
    while (n > 1 && mantissa[n - 1] == '0')
        mantissa[--n] = '\0';
    int exponent = atoi(p + 1);
    int decpt = exponent + 1; /* digits before the point */
    char out[64];
    size_t at = 0;
    if (negative)
        out[at++] = '-';
    if (value == 0.0) {
        snprintf(out + at, sizeof out - at, "0.0");
    } else if (decpt > 16 || decpt < -3) {
        /* Python switches to exponent notation for 1e16 and above and below 1e-4. */
        at += (size_t)snprintf(out + at, sizeof out - at, "%c", mantissa[0]);
        if (n > 1)
            at += (size_t)snprintf(out + at, sizeof out - at, ".%s", mantissa + 1);
        snprintf(out + at, sizeof out - at, "e%c%02d", exponent < 0 ? '-' : '+', abs(exponent));
    } else if (decpt <= 0) {
        /* 0.000ddd */
        at += (size_t)snprintf(out + at, sizeof out - at, "0.");
        for (int z = 0; z < -decpt; z++)
            out[at++] = '0';
        snprintf(out + at, sizeof out - at, "%s", mantissa);
    } else if ((size_t)decpt >= n) {
        /* ddd000.0 */
        at += (size_t)snprintf(out + at, sizeof out - at, "%s", mantissa);
        for (size_t z = n; z < (size_t)decpt; z++)
            out[at++] = '0';
        snprintf(out + at, sizeof out - at, ".0");
    } else {
        snprintf(out + at, sizeof out - at, "%.*s.%s", decpt, mantissa, mantissa + decpt);
    }
    snprintf(buf, size, "%s", out);
}

int sdt_lora_cfg_is_set(const struct sdt_config *cfg, const char *key)
{
    int index = sdt_schema_find(key);
    return index >= 0 && sdt_config_is_set(cfg, index);
}

static void append_python(sdt_buf *out, const sdt_value *v, sdt_type type)
{
    char number[64];
    switch (type) {
    case SDT_T_BOOL: sdt_buf_puts(out, v->b ? "True" : "False"); break;
    case SDT_T_INT: sdt_buf_printf(out, "%lld", (long long)v->i); break;
    case SDT_T_FLOAT:
        sdt_lora_python_float(v->f, number, sizeof number);
        sdt_buf_puts(out, number);
        break;
    default: sdt_buf_puts(out, v->s ? v->s : ""); break;
    }
}

char *sdt_lora_cfg_python(const struct sdt_config *cfg, const char *key)
{
    int index = sdt_schema_find(key);
    if (index < 0)
        return NULL;
    const sdt_setting *s = &sdt_schema_settings()[index];
    const sdt_value *v = sdt_config_get(cfg, index);
    sdt_buf out;
    sdt_buf_init(&out);
    if (s->type == SDT_T_LIST) {
        /* kohya takes these as comma-separated strings (face_crop_aug_range "2.0,4.0"). */
        for (size_t i = 0; i < v->count; i++) {
            if (i)
                sdt_buf_puts(&out, ",");
            append_python(&out, &v->items[i], s->elem_type);
        }
    } else {
        append_python(&out, v, s->type);
    }
    return sdt_buf_take(&out);
}

char *sdt_lora_cfg_python_or_none(const struct sdt_config *cfg, const char *key)
{
    int index = sdt_schema_find(key);
    const sdt_value *v = index >= 0 ? sdt_config_get(cfg, index) : NULL;
    /* an empty list is kohya's None too (face_crop_aug_range = []) */
    if (!sdt_lora_cfg_is_set(cfg, key) ||
        (v && sdt_schema_settings()[index].type == SDT_T_LIST && v->count == 0))
        return sdt_strdup("None");
    return sdt_lora_cfg_python(cfg, key);
}

void sdt_lora_cfg_resolution(const struct sdt_config *cfg, long long *width, long long *height)
{
    const sdt_value *v = sdt_config_get(cfg, sdt_schema_find("resolution"));
    *width = *height = 512;
    if (v && v->count >= 1)
        *width = *height = v->items[0].i;
    if (v && v->count >= 2)
        *height = v->items[1].i;
}
