/* Test helper: a diagnostics list printed into one string, to look for messages in it. */
#ifndef SDTUNE_TEST_DIAG_TEXT_H
#define SDTUNE_TEST_DIAG_TEXT_H

#include <stdio.h>
#include <stdlib.h>

#include "sdtune/diag.h"

static inline char *diag_text(const sdt_diag_list *diags)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    sdt_diag_list_print(diags, f);
    fclose(f);
    return text;
}

#endif
