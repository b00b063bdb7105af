/* Drawing the run view (see draw.h). Layout at 80x24 (ui-sketch.md, "Run view"):
 *
 *   row 0          title: config, PHASE, epoch x/y, step a/b, it/s
 *   row 1          progress bar with the whole run's ETA
 *   row 2          loss, avg, lr; the memory gauge at the right
 *   row 3          the engine: its pid while it runs, its exit once it ended; at the right what the
 *                  run trains on ("CUDA · NVIDIA H200 · bf16", "CPU · fp32")
 *   rows 4..       the loss sparkline box (2 rows inside at 24 lines, more on taller terminals)
 *   then           the log box, and the samples box at its right from 70 columns on
 *   row H-2        prompt line (questions, messages)
 *   row H-1        key bar
 *
 * The curses-free widgets (tui/widgets) make the text; this file only places it and colours it. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draw.h"
#include "sdtune/schema.h"
#include "sdtune/strutil.h"
#include "text.h"
#include "widgets/gauge.h"
#include "widgets/sparkline.h"

/* Steps per second from the engine's samples per second and the config's batch size. */
static double step_rate(const app *a)
{
    const run_state *r = &a->run;
    if (!isfinite(r->samples_per_s) || r->samples_per_s <= 0)
        return NAN;
    int batch_setting = sdt_schema_find("train_batch_size");
    const sdt_value *batch = batch_setting >= 0 ? sdt_config_get(a->cfg, batch_setting) : NULL;
    int64_t n = batch && batch->i > 0 ? batch->i : 1;
    return r->samples_per_s / (double)n;
}

static void format_count(int64_t value, int64_t total, char *out, size_t size)
{
    if (value < 0)
        snprintf(out, size, "?");
    else if (total > 0)
        snprintf(out, size, "%lld/%lld", (long long)value, (long long)total);
    else
        snprintf(out, size, "%lld", (long long)value);
}

static void draw_run_title(const app *a, int width)
{
    const run_state *r = &a->run;
    char phase[32], epoch[48], step[48], rate[32] = "";
    snprintf(phase, sizeof phase, "%s", a->have_run ? draw_engine_word(a) : "no run");
    for (char *p = phase; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    format_count(a->have_run ? r->epoch : -1, r->total_epochs, epoch, sizeof epoch);
    format_count(a->have_run ? r->step : -1, r->total_steps, step, sizeof step);
    double steps_per_s = a->have_run ? step_rate(a) : NAN;
    if (isfinite(steps_per_s))
        snprintf(rate, sizeof rate, steps_per_s >= 1 ? "%.1f it/s" : "%.2f s/it",
                 steps_per_s >= 1 ? steps_per_s : 1 / steps_per_s);
    const char *name = a->have_run && a->run_config_name ? a->run_config_name : a->name;
    char *text = sdt_format(" sdtune  %s   %s   epoch %s   step %s   %s", name, phase, epoch, step, rate);
    attrset(a->theme.title);
    text_fill(0, 0, width);
    text_put(0, 0, text ? text : " sdtune", width);
    attrset(A_NORMAL);
    free(text);
}

/* A bar from a gauge render: the filled cells in `on`, the rest dim. */
static void put_bar(int y, int x, const char *bar, int width, const gauge_layout *layout, attr_t on)
{
    /* Every cell is one glyph (one byte in ASCII, three in UTF-8): split at the filled count. */
    size_t cell_bytes = strlen(bar) / (size_t)(width > 0 ? width : 1);
    int filled = layout->known ? layout->filled : 0;
    attrset(on);
    text_put_n(y, x, bar, (size_t)filled * cell_bytes, filled);
    attrset(A_DIM);
    text_put(y, x + filled, bar + (size_t)filled * cell_bytes, width - filled);
    attrset(A_NORMAL);
}

static void draw_progress(const app *a, int y, int width)
{
    const run_state *r = &a->run;
    gauge_progress prog = {
        .step = r->step < 0 ? 0 : r->step, .total = r->total_steps, .rate = step_rate(a), .eta_s = r->eta_s};
    char label[128];
    gauge_layout layout;
    if (gauge_progress_render(&prog, 1, a->utf8, NULL, 0, label, sizeof label, &layout) != 0)
        return;
    char *text = sdt_format("%s (run)", label);
    int label_w = text ? text_width(text) : 0, bar_w = width - label_w - 3;
    if (bar_w < 4) {
        text_put(y, 1, text ? text : "", width - 1);
    } else {
        char *bar = malloc(gauge_bar_size(bar_w));
        if (bar &&
            gauge_progress_render(&prog, bar_w, a->utf8, bar, gauge_bar_size(bar_w), NULL, 0, &layout) == 0)
            put_bar(y, 1, bar, bar_w, &layout, a->theme.gauge);
        free(bar);
        text_put(y, 2 + bar_w, text, label_w);
    }
    free(text);
}

static void format_number(double value, const char *format, char *out, size_t size)
{
    if (isfinite(value))
        snprintf(out, size, format, value);
    else
        snprintf(out, size, "N/A");
}

static void draw_numbers(const app *a, int y, int width)
{
    const run_state *r = &a->run;
    char loss[32], avg[32], lr[32];
    format_number(r->loss, "%.4f", loss, sizeof loss);
    format_number(r->loss_avg, "%.4f", avg, sizeof avg);
    format_number(r->lr, "%.2e", lr, sizeof lr);
    char *text = sdt_format("loss %s   avg %s   lr %s", loss, avg, lr);
    int used = text_put(y, 1, text ? text : "", width - 1);
    free(text);

    /* The memory gauge: VRAM on a GPU, RAM on the CPU backend, of the run's device (the `device` event)
     * once known, measured against that device's size until the first `memory` event brings its own; N/A
     * (never a zero) for what the engine has not said. */
    const char *backend = run_state_backend(r);
    bool gpu = backend && strcmp(backend, "cuda") == 0;
    gauge_memory mem = {
        .kind = gpu ? GAUGE_VRAM : GAUGE_RAM, .used = -1, .peak = -1, .total = run_state_memory_total(r)};
    if (r->have_memory) {
        mem = (gauge_memory){.kind = r->memory_kind == SDT_MEMORY_RAM ? GAUGE_RAM : GAUGE_VRAM,
                             .used = r->memory_used,
                             .peak = r->memory_peak,
                             .total = run_state_memory_total(r)};
    }
    char label[96];
    gauge_layout layout;
    if (gauge_memory_render(&mem, 1, a->utf8, NULL, 0, label, sizeof label, &layout) != 0)
        return;
    int label_w = text_width(label), bar_w = width >= 100 ? 20 : 10;
    int x = width - 1 - label_w - 1 - bar_w;
    if (x < used + 3) {
        bar_w = 0;
        x = width - 1 - label_w;
        if (x < used + 3)
            return;
    }
    if (bar_w > 0) {
        char bar[64];
        if (gauge_memory_render(&mem, bar_w, a->utf8, bar, sizeof bar, NULL, 0, &layout) == 0)
            put_bar(y, x, bar, bar_w, &layout, a->theme.gauge);
        x += bar_w + 1;
    }
    text_put(y, x, label, label_w);
}

/* The run's backend, device and precision ("CUDA · NVIDIA H200 · bf16") for the right end of the engine
 * line, as wide as it may be beside left_w columns of the line's own text in width: with the device's
 * name when that fits, else without it, else nothing (the line's text, an exit or an error, goes first).
 * Returns the label's columns, 0 when there is none. */
static int device_label_fitting(const app *a, int left_w, int width, char *label, size_t size)
{
    const char *sep = a->utf8 ? " \xc2\xb7 " : " / ";
    for (int with_name = 1; with_name >= 0; with_name--) {
        if (run_state_device_label(&a->run, with_name, sep, label, size) == 0)
            return 0;
        int label_w = text_width(label);
        if (1 + left_w + 3 + label_w <= width - 1)
            return label_w;
    }
    return 0;
}

/* How the engine is, or how it ended: the line the user looks at when a run stops. At its right end what
 * the run trains on, from the engine's `device` event (live and re-attached runs alike). */
static void draw_engine_line(const app *a, int y, int width)
{
    const run_state *r = &a->run;
    char *text = NULL;
    attr_t attr = A_NORMAL;
    if (!a->have_run) {
        text = sdt_format("No run yet: F5 (or 5) starts training %s.", a->name);
    } else if (a->attached) {
        bool good, bad;
        text = app_attach_engine_line(a, &good, &bad);
        attr = good ? a->theme.good : bad ? a->theme.error : A_NORMAL;
    } else if (r->engine_exited) {
        char *how = r->exit.signaled ? sdt_format("engine killed by signal %d", r->exit.signal)
                                     : sdt_format("engine exited with code %d", r->exit.code);
        bool good = !r->exit.signaled && r->exit.code == 0;
        const char *what = r->have_done && r->done_exit_code == 0 ? "done"
                           : r->died_silently                     ? "died"
                                                                  : run_state_status_text(r);
        text = sdt_format(
            "%s (%s)%s%s%s  F5 starts a new run", how ? how : "engine ended", what, r->have_error ? ": " : "",
            r->have_error && r->error_message ? r->error_message : "", r->have_error ? "." : "");
        attr = good ? a->theme.good : a->theme.error;
        free(how);
    } else if (!a->client) {
        text = sdt_format("The engine did not start (see the log).");
        attr = a->theme.error;
    } else if (engine_client_phase_of(a->client) == ENGINE_CLIENT_DETACHED) {
        text = sdt_format("Detached: the engine trains on and writes its journal.");
    } else if (r->have_device) {
        text = sdt_format("engine pid %ld", (long)engine_client_pid(a->client)); /* the label says where */
    } else {
        text =
            sdt_format("engine pid %ld%s%s%s%s", (long)engine_client_pid(a->client), r->backend ? " on " : "",
                       r->backend ? r->backend : "", r->device ? " " : "", r->device ? r->device : "");
    }
    char label[160];
    int label_w =
        a->have_run ? device_label_fitting(a, text ? text_width(text) : 0, width, label, sizeof label) : 0;
    attrset(attr);
    text_put(y, 1, text ? text : "", width - 1);
    attrset(A_NORMAL);
    if (label_w > 0)
        text_put(y, width - 1 - label_w, label, label_w);
    free(text);
}

static void draw_sparkline(const app *a, int y, int h, int width)
{
    const run_loss_history *hist = &a->run.loss_history;
    int inner = width - 2, rows = h - 2;
    /* The engine's running average when it sends one, else the raw losses. */
    const float *values = hist->avg;
    bool any_avg = false;
    for (size_t i = 0; i < hist->count && !any_avg; i++)
        any_avg = isfinite(hist->avg[i]);
    if (!any_avg)
        values = hist->raw;
    spark_opts opts = {.glyphs = a->utf8 ? SPARK_BRAILLE : SPARK_ASCII, .width = inner, .height = rows};
    size_t size = spark_buffer_size(inner, rows);
    char *out = malloc(size);
    double lo = NAN, hi = NAN;
    if (out && spark_render(values, hist->count, &opts, out, size, &lo, &hi) != 0)
        out[0] = '\0';
    char title[96], info[64] = "";
    long long last = hist->count ? (long long)hist->steps[hist->count - 1] + 1 : 0;
    snprintf(title, sizeof title, "loss (%lld steps%s)", last, any_avg ? ", average" : "");
    if (isfinite(lo))
        snprintf(info, sizeof info, "%.4g..%.4g", lo, hi);
    draw_box(a, y, 0, h, width, title, false, info[0] ? info : NULL);
    const char *line = out ? out : "";
    attrset(a->theme.sparkline);
    for (int r = 0; r < rows && *line; r++) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        text_put_n(y + 1 + r, 1, line, len, inner);
        line += len + (nl ? 1 : 0);
    }
    attrset(A_NORMAL);
    free(out);
}

static void draw_log(app *a, int y, int h, int x, int w)
{
    int rows = h - 2, inner = w - 2;
    a->log_rows = rows;
    a->log_cols = inner;
    const char *info = a->log.follow ? "following" : "scrolled: End follows";
    draw_box(a, y, x, h, w, "log", false, a->log.count ? info : NULL);
    sb_row *view = rows > 0 ? calloc((size_t)rows, sizeof *view) : NULL;
    int n = view ? sb_view(&a->log, rows, inner, view) : 0;
    for (int r = 0; r < n; r++) {
        attr_t attr = view[r].level == SB_ERROR     ? a->theme.error
                      : view[r].level == SB_WARNING ? a->theme.warning
                      : view[r].level == SB_DEBUG   ? a->theme.debug
                                                    : A_NORMAL;
        attrset(attr);
        text_put_n(y + 1 + r, x + 1, view[r].text, view[r].len, inner);
        draw_find_log_mark(a, y + 1 + r, x + 1, &view[r], inner);
    }
    attrset(A_NORMAL);
    free(view);
}

/* Decodes the selected sample's PNG when it is another than the one held. */
static void load_preview(app *a, const char *path)
{
    if (a->preview_path && strcmp(a->preview_path, path) == 0)
        return;
    free(a->preview_path);
    free(a->preview_error);
    a->preview_error = NULL;
    preview_image_free(&a->preview);
    free(a->preview_cells);
    a->preview_cells = NULL;
    a->have_preview = false;
    a->preview_path = sdt_format("%s", path);
    char *error = NULL;
    if (preview_load_png(path, &a->preview, &error) == 0)
        a->have_preview = true;
    else
        a->preview_error = error;
}

/* The colour pair of (fg, bg), allocated the first time it is asked for; 0 when the pairs ran out. */
static int pair_for(app *a, int fg, int bg)
{
    if (fg < 0 || fg > 255 || bg < 0 || bg > 255)
        return 0;
    if (!a->pair_of && !(a->pair_of = calloc(256 * 256, sizeof *a->pair_of)))
        return 0;
    short *slot = &a->pair_of[fg * 256 + bg];
    int limit = COLOR_PAIRS < 32767 ? COLOR_PAIRS : 32767;
    if (*slot == 0 && a->next_pair < limit && init_pair((short)a->next_pair, (short)fg, (short)bg) == OK)
        *slot = (short)a->next_pair++;
    return *slot;
}

/* The selected sample's cells for a cols x rows preview in mode: shrunk and mapped once, then reused
 * by every redraw until the image, the size or the mode changes. NULL when out of memory. */
static const preview_cell *preview_cells(app *a, int cols, int rows, preview_colors mode)
{
    if (a->preview_cells && a->preview_cols == cols && a->preview_rows == rows &&
        a->preview_mode == (int)mode)
        return a->preview_cells;
    free(a->preview_cells);
    a->preview_cells = NULL;
    size_t n = (size_t)cols * (size_t)rows;
    half_cell *cells = malloc(n * sizeof *cells);
    preview_cell *mapped = malloc(n * sizeof *mapped);
    if (!cells || !mapped || preview_render(&a->preview, cols, rows, cells) != 0) {
        free(cells);
        free(mapped);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        mapped[i] = preview_map(cells[i], mode);
        if (mode != PREVIEW_MONO && pair_for(a, mapped[i].fg, mapped[i].bg) == 0)
            mapped[i] = preview_map(cells[i], PREVIEW_MONO); /* out of colour pairs */
    }
    free(cells);
    a->preview_cells = mapped;
    a->preview_cols = cols;
    a->preview_rows = rows;
    a->preview_mode = (int)mode;
    return mapped;
}

static void draw_preview(app *a, int y, int x, int max_cols, int max_rows)
{
    if (!a->have_preview || max_cols < 1 || max_rows < 1)
        return;
    int cols, rows;
    preview_fit(a->preview.width, a->preview.height, max_cols, max_rows, &cols, &rows);
    /* Half blocks need colour and a UTF-8 terminal; otherwise one shading character per cell. */
    preview_colors mode = !a->theme.color || !a->utf8 ? PREVIEW_MONO
                          : COLORS >= 256             ? PREVIEW_256
                                                      : PREVIEW_8;
    const preview_cell *cells = preview_cells(a, cols, rows, mode);
    if (!cells)
        return;
    x += (max_cols - cols) / 2;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            preview_cell pc = cells[r * cols + c];
            int pair = pc.shade ? 0 : pair_for(a, pc.fg, pc.bg);
            attr_set(A_NORMAL, (short)pair, NULL);
            if (pc.shade)
                mvaddch(y + r, x + c, (chtype)pc.shade);
            else
                mvaddstr(y + r, x + c, "\u2580");
        }
    }
    attr_set(A_NORMAL, 0, NULL);
}

static void draw_samples(app *a, int y, int h, int x, int w)
{
    const run_state *r = &a->run;
    int rows = h - 2, inner = w - 2;
    char info[64] = "";
    if (r->n_samples)
        snprintf(info, sizeof info, "%d/%zu", a->sample + 1, r->n_samples);
    draw_box(a, y, x, h, w, "samples", false, info[0] ? info : NULL);
    if (r->n_samples == 0) {
        attrset(A_DIM);
        text_put(y + 1, x + 1, "(none yet: s samples now)", inner);
        attrset(A_NORMAL);
        return;
    }
    const run_sample *sel = &r->samples[a->sample];
    int list = rows / 3 < (int)r->n_samples ? rows / 3 : (int)r->n_samples;
    if (list < 1)
        list = 1;
    int preview_rows = rows - list - 1;
    load_preview(a, sel->path);
    if (preview_rows > 0) {
        if (a->have_preview) {
            draw_preview(a, y + 1, x + 1, inner, preview_rows);
        } else if (a->preview_error) {
            attrset(a->theme.error);
            text_put(y + 1, x + 1, a->preview_error, inner);
            attrset(A_NORMAL);
        }
    }
    int top = a->sample - list + 1 > 0 ? a->sample - list + 1 : 0;
    for (int i = 0; i < list && top + i < (int)r->n_samples; i++) {
        const run_sample *s = &r->samples[top + i];
        const char *base = s->path ? strrchr(s->path, '/') : NULL;
        char *line = sdt_format("%s step %lld #%d %s", top + i == a->sample ? a->g.selected : " ",
                                (long long)s->step, s->index,
                                base      ? base + 1
                                : s->path ? s->path
                                          : "");
        attrset(top + i == a->sample ? A_BOLD : A_NORMAL);
        text_put(y + h - 1 - list + i, x + 1, line ? line : "", inner);
        free(line);
    }
    attrset(A_NORMAL);
}

void draw_run_view(app *a, int width, int height)
{
    draw_run_title(a, width);
    if (a->have_run) {
        draw_progress(a, 1, width);
        draw_numbers(a, 2, width);
    }
    draw_engine_line(a, 3, width);
    /* The panes share rows 4..H-3: the sparkline takes about a fifth, the log and samples the rest. */
    int pane_rows = height - 2 - 4;
    int spark_h = pane_rows / 5 + 2 < 4 ? 4 : pane_rows / 5 + 2;
    int bottom_h = pane_rows - spark_h;
    if (a->have_run) {
        draw_sparkline(a, 4, spark_h, width);
        int samples_w = width >= 70 ? (width >= 120 ? width * 2 / 5 : width / 3) : 0;
        if (samples_w < 24)
            samples_w = 0;
        if (bottom_h >= 3) {
            draw_log(a, 4 + spark_h, bottom_h, 0, width - samples_w);
            if (samples_w)
                draw_samples(a, 4 + spark_h, bottom_h, width - samples_w, samples_w);
        }
    }
    draw_prompt_line(a, height - 2, width);
}
