/* The memory gauge and the progress bar of the run view, without curses.
 *
 * Both fill a caller's buffer with a bar of exactly `width` cells (UTF-8 block glyphs, or ASCII) and a
 * label, and report how many cells are filled so the drawing code can colour the parts. Sizes are bytes,
 * shown in binary units (KiB, MiB, GiB, TiB) with one decimal; an unknown value (negative) is shown as
 * "N/A", never as a zero. Durations are written like tqdm: m:ss, h:mm:ss, and "Nd h:mm:ss" past a day. */
#ifndef SDTUNE_TUI_GAUGE_H
#define SDTUNE_TUI_GAUGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gauge_kind { GAUGE_VRAM, GAUGE_RAM } gauge_kind;

/* Device or host memory in bytes; -1 where the engine does not know. */
typedef struct gauge_memory {
    gauge_kind kind;
    int64_t used, peak, total;
} gauge_memory;

/* What a bar contains, for colouring: cells [0, filled) are the used/done part; peak_cell is the cell
 * holding the peak mark (-1: none, because the peak is unknown, zero or inside the used part); known is false
 * when the bar is drawn empty because a value is unknown. */
typedef struct gauge_layout {
    int filled, peak_cell;
    bool known;
} gauge_layout;

/* Bytes a bar of width cells needs with its NUL (3 bytes a cell in UTF-8). */
size_t gauge_bar_size(int width);

/* The memory bar and its label, e.g. "VRAM 7.9/24.0 GiB (peak 9.1)", "RAM 3.2 GiB/N/A", "VRAM N/A".
 * The used part is rounded to the nearest cell, but anything used shows at least one cell. bar may be
 * NULL (label only) and so may label. Returns 0, or -1 when width < 1 or a buffer is too small. */
int gauge_memory_render(const gauge_memory *mem, int width, bool utf8, char *bar, size_t bar_size,
                        char *label, size_t label_size, gauge_layout *layout);

/* A byte count in binary units with one decimal ("512 B", "1.5 KiB", "24.0 GiB"); "N/A" when negative. */
void gauge_format_bytes(int64_t bytes, char *out, size_t out_size);

/* A duration in whole seconds like tqdm: "0:32", "12:05", "1:02:03", "2d 3:04:05"; "?" when negative or
 * not finite. Fractions are rounded to the nearest second. */
void gauge_format_duration(double seconds, char *out, size_t out_size);

/* Training progress. total <= 0: unknown; rate (steps per second) and eta_s (seconds) < 0 or NaN:
 * unknown. With eta_s unknown and a rate, the ETA is (total - step) / rate. */
typedef struct gauge_progress {
    int64_t step, total;
    double rate;
    double eta_s;
} gauge_progress;

/* The progress bar, with eighth-cell resolution in UTF-8 (tqdm's ▏▎▍▌▋▊▉█), '#' in ASCII, and its text
 * "123/300 41% 5.5 it/s ETA 0:32". The percentage is rounded down so 100% means done; rates below one
 * step a second are shown as "s/it", like tqdm. Same buffers and result as gauge_memory_render. */
int gauge_progress_render(const gauge_progress *prog, int width, bool utf8, char *bar, size_t bar_size,
                          char *label, size_t label_size, gauge_layout *layout);

#endif
