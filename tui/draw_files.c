/* The open / save-as overlay (see app.h, app_files.c): a box over the view, centred, with the path line,
 * the recent files when opening, and a last line of keys or the question being asked.
 *
 *   ┌ Open a config ──────────────────────────────┐
 *   │ Path /home/me/configs/_                      │
 *   │                                              │
 *   │ Recent files                                 │
 *   │ ▶ /home/me/configs/lora.toml                 │
 *   │   /home/me/other.toml                        │
 *   │                                              │
 *   │ Enter opens · Tab completes · ...            │
 *   └──────────────────────────────────────────────┘ */
#include <stdlib.h>

#include "draw.h"
#include "sdtune/strutil.h"
#include "text.h"

/* The last line: the question being asked, or the keys. */
static void draw_footer(const app *a, int row, int x, int cols)
{
    const files_state *f = &a->files;
    char *text = NULL;
    if (f->question == FILES_ASK_OVERWRITE)
        text = sdt_format("%s exists. Replace it? y/n", f->target);
    else if (f->question == FILES_ASK_UNSAVED)
        text = sdt_format("%s has unsaved changes. Save them first? y/n/c", a->name);
    else if (f->mode == FILES_OPEN)
        text = sdt_format("Enter opens%sTab completes%sUp/Down: a recent file%sEsc backs out", a->g.sep,
                          a->g.sep, a->g.sep);
    else
        text = sdt_format("Enter saves%sTab completes%sEsc backs out", a->g.sep, a->g.sep);
    attrset(f->question != FILES_ASK_NONE ? A_REVERSE | A_BOLD : A_DIM);
    if (f->question != FILES_ASK_NONE)
        text_fill(row, x, cols);
    text_put(row, x, text ? text : "(out of memory)", cols);
    attrset(A_NORMAL);
    free(text);
}

static void draw_recent(app *a, int y, int x, int cols, int rows)
{
    files_state *f = &a->files;
    int n = (int)f->recent.count;
    f->rows = rows;
    attrset(A_BOLD);
    text_put(y, x, "Recent files", cols);
    attrset(A_NORMAL);
    if (n == 0) {
        attrset(A_DIM);
        text_put(y + 1, x + 2, "(none yet: configs you open or save are listed here)", cols - 2);
        attrset(A_NORMAL);
        return;
    }
    if (f->selected >= 0 && f->selected < f->top)
        f->top = f->selected;
    if (f->selected >= f->top + rows)
        f->top = f->selected - rows + 1;
    if (f->top > n - rows)
        f->top = n - rows > 0 ? n - rows : 0;
    for (int r = 0; r < rows && f->top + r < n; r++) {
        int i = f->top + r;
        bool selected = i == f->selected;
        attrset(selected ? A_REVERSE | A_BOLD : A_NORMAL);
        text_fill(y + 1 + r, x, cols);
        if (selected)
            text_put(y + 1 + r, x, a->g.selected, 1);
        text_put(y + 1 + r, x + 2, f->recent.paths[i], cols - 2);
    }
    attrset(A_NORMAL);
}

void files_draw(app *a, int width, int height)
{
    files_state *f = &a->files;
    bool open = f->mode == FILES_OPEN;
    int w = width - 4 > 100 ? 100 : width - 4, cols = w - 4;
    /* Borders, path line, blank, footer; opening adds a heading, the list and a blank. */
    int fixed = open ? 7 : 5, wanted = open ? (f->recent.count ? (int)f->recent.count : 1) : 0;
    int room = height - 4; /* rows 1 .. height-4: the message line and the key bar stay visible */
    int h = fixed + wanted < room ? fixed + wanted : room;
    if (h < fixed + (open ? 1 : 0))
        return; /* the screen is too small; the view's size message covers it */
    int y = 1 + (room - h) / 3, x = (width - w) / 2;
    for (int r = 0; r < h; r++) {
        attrset(A_NORMAL);
        text_fill(y + r, x, w);
    }
    draw_box(a, y, x, h, w, open ? "Open a config" : "Save the config as", true, NULL);
    int label = text_put(y + 1, x + 2, "Path ", cols);
    draw_line_edit(a, &f->line, y + 1, x + 2 + label, cols - label, false);
    if (open)
        draw_recent(a, y + 3, x + 2, cols, h - fixed);
    draw_footer(a, y + h - 2, x + 2, cols);
}
