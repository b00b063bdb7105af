#include "sdtune/diag.h"

#include <stdlib.h>
#include <string.h>

#include "sdtune/strutil.h"

void sdt_diag_list_init(sdt_diag_list *list) { memset(list, 0, sizeof *list); }

void sdt_diag_list_clear(sdt_diag_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i].file);
        free(list->items[i].message);
    }
    list->count = 0;
    list->truncated = false;
}

void sdt_diag_list_free(sdt_diag_list *list)
{
    sdt_diag_list_clear(list);
    free(list->items);
    sdt_diag_list_init(list);
}

void sdt_diag_addv(sdt_diag_list *list, sdt_severity severity, const char *file, int line, int col,
                   int setting, const char *fmt, va_list args)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        sdt_diag *items = realloc(list->items, capacity * sizeof *items);
        if (!items) {
            list->truncated = true;
            return;
        }
        list->items = items;
        list->capacity = capacity;
    }
    char *message = sdt_vformat(fmt, args);
    char *file_copy = sdt_strdup(file ? file : "");
    if (!message || !file_copy) {
        free(message);
        free(file_copy);
        list->truncated = true;
        return;
    }
    list->items[list->count++] = (sdt_diag){
        .severity = severity,
        .file = file_copy,
        .line = line,
        .col = col,
        .setting = setting,
        .message = message,
    };
}

void sdt_diag_add(sdt_diag_list *list, sdt_severity severity, const char *file, int line, int col,
                  int setting, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    sdt_diag_addv(list, severity, file, line, col, setting, fmt, args);
    va_end(args);
}

size_t sdt_diag_count(const sdt_diag_list *list, sdt_severity severity)
{
    size_t n = 0;
    for (size_t i = 0; i < list->count; i++)
        n += list->items[i].severity == severity;
    return n;
}

static int compare_place(const sdt_diag *a, const sdt_diag *b)
{
    int c = strcmp(a->file, b->file);
    if (c)
        return c;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return 0;
}

void sdt_diag_list_sort(sdt_diag_list *list)
{
    /* Insertion sort: stable, and lists are short (one entry per problem in a config). */
    for (size_t i = 1; i < list->count; i++) {
        sdt_diag item = list->items[i];
        size_t j = i;
        while (j > 0 && compare_place(&list->items[j - 1], &item) > 0) {
            list->items[j] = list->items[j - 1];
            j--;
        }
        list->items[j] = item;
    }
}

void sdt_diag_list_print(const sdt_diag_list *list, FILE *out)
{
    for (size_t i = 0; i < list->count; i++) {
        const sdt_diag *d = &list->items[i];
        const char *kind = d->severity == SDT_SEV_ERROR ? "error" : "warning";
        if (d->file[0] && d->line > 0)
            fprintf(out, "%s:%d:%d: %s: %s\n", d->file, d->line, d->col > 0 ? d->col : 1, kind, d->message);
        else if (d->file[0])
            fprintf(out, "%s: %s: %s\n", d->file, kind, d->message);
        else
            fprintf(out, "%s: %s\n", kind, d->message);
    }
    if (list->truncated)
        fprintf(out, "error: out of memory: some problems were not recorded\n");
}
