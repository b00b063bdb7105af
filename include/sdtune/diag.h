/* Diagnostics: the errors and warnings a load or a validation produces, each tied to a place in a file.
 *
 * Library code never prints and never exits: it appends diagnostics here and returns a status. Programs
 * print them as `FILE:LINE:COL: error|warning: message`, the format compilers use, so editors and
 * terminals can jump to the place. */
#ifndef SDTUNE_DIAG_H
#define SDTUNE_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdt_severity { SDT_SEV_ERROR, SDT_SEV_WARNING } sdt_severity;

typedef struct sdt_diag {
    sdt_severity severity;
    char *file;    /* owned; "" when the problem has no file */
    int line, col; /* 1-based; 0 when unknown */
    int setting;   /* schema index of the setting concerned, or -1 */
    char *message; /* owned, one line */
} sdt_diag;

typedef struct sdt_diag_list {
    sdt_diag *items;
    size_t count, capacity;
    /* Set when memory ran out while adding: the list is then incomplete, and says so when printed. */
    bool truncated;
} sdt_diag_list;

void sdt_diag_list_init(sdt_diag_list *list);
void sdt_diag_list_free(sdt_diag_list *list);
void sdt_diag_list_clear(sdt_diag_list *list);

#if defined(__GNUC__)
#define SDT_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define SDT_PRINTF(fmt_index, first_arg)
#endif

/* Appends one diagnostic; file may be NULL. */
void sdt_diag_add(sdt_diag_list *list, sdt_severity severity, const char *file, int line, int col,
                  int setting, const char *fmt, ...) SDT_PRINTF(7, 8);
void sdt_diag_addv(sdt_diag_list *list, sdt_severity severity, const char *file, int line, int col,
                   int setting, const char *fmt, va_list args);

size_t sdt_diag_count(const sdt_diag_list *list, sdt_severity severity);

/* Sorts by file, line, column, keeping the order of equal places (errors of one line stay together). */
void sdt_diag_list_sort(sdt_diag_list *list);

/* Prints every diagnostic as `FILE:LINE:COL: error|warning: message`, one per line. */
void sdt_diag_list_print(const sdt_diag_list *list, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
