/* The memory gauge and the progress bar (see gauge.h). */
#include "widgets/gauge.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const unit_names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
enum { UNIT_COUNT = sizeof unit_names / sizeof unit_names[0] };

/* The unit that shows bytes as less than 1024 after rounding to one decimal. */
static int unit_for(int64_t bytes)
{
    double v = (double)bytes;
    int u = 0;
    while (u + 1 < UNIT_COUNT && round(v * 10) / 10 >= 1024) {
        v /= 1024;
        u++;
    }
    return u;
}

static double in_unit(int64_t bytes, int unit) { return (double)bytes / pow(1024, unit); }

/* bytes as a number in unit, without the unit's name. */
static void format_in_unit(int64_t bytes, int unit, char *out, size_t out_size)
{
    if (unit == 0)
        snprintf(out, out_size, "%lld", (long long)bytes);
    else
        snprintf(out, out_size, "%.1f", in_unit(bytes, unit));
}

void gauge_format_bytes(int64_t bytes, char *out, size_t out_size)
{
    if (bytes < 0) {
        snprintf(out, out_size, "N/A");
        return;
    }
    int unit = unit_for(bytes);
    char number[32];
    format_in_unit(bytes, unit, number, sizeof number);
    snprintf(out, out_size, "%s %s", number, unit_names[unit]);
}

void gauge_format_duration(double seconds, char *out, size_t out_size)
{
    if (!(seconds >= 0) || !isfinite(seconds) || seconds > 1e12) {
        snprintf(out, out_size, "?");
        return;
    }
    long long s = llround(seconds);
    long long days = s / 86400, hours = s % 86400 / 3600, minutes = s % 3600 / 60, secs = s % 60;
    if (days)
        snprintf(out, out_size, "%lldd %lld:%02lld:%02lld", days, hours, minutes, secs);
    else if (hours)
        snprintf(out, out_size, "%lld:%02lld:%02lld", hours, minutes, secs);
    else
        snprintf(out, out_size, "%lld:%02lld", minutes, secs);
}

size_t gauge_bar_size(int width) { return width < 1 ? 1 : (size_t)width * 3 + 1; }

static char *put_glyph(char *p, const char *glyph)
{
    size_t n = strlen(glyph);
    memcpy(p, glyph, n);
    return p + n;
}

/* Checks the buffers and clears what is returned. */
static int start_render(int width, char *bar, size_t bar_size, char *label, size_t label_size,
                        gauge_layout *layout)
{
    if (bar && bar_size > 0)
        bar[0] = '\0';
    if (label && label_size > 0)
        label[0] = '\0';
    if (layout)
        *layout = (gauge_layout){0, -1, false};
    if (width < 1 || (bar && bar_size < gauge_bar_size(width)) || (label && label_size < 1))
        return -1;
    return 0;
}

int gauge_memory_render(const gauge_memory *mem, int width, bool utf8, char *bar, size_t bar_size,
                        char *label, size_t label_size, gauge_layout *layout)
{
    if (!mem || start_render(width, bar, bar_size, label, label_size, layout) < 0)
        return -1;
    const char *kind = mem->kind == GAUGE_RAM ? "RAM" : "VRAM";
    bool used_known = mem->used >= 0, total_known = mem->total > 0, peak_known = mem->peak >= 0;

    if (label) {
        char used[32], total[32], peak[48] = "";
        if (used_known && total_known) {
            int unit = unit_for(mem->total);
            format_in_unit(mem->used, unit, used, sizeof used);
            if (peak_known) {
                char number[32];
                format_in_unit(mem->peak, unit, number, sizeof number);
                snprintf(peak, sizeof peak, " (peak %s)", number);
            }
            snprintf(label, label_size, "%s %s/%.1f %s%s", kind, used, in_unit(mem->total, unit),
                     unit_names[unit], peak);
        } else if (used_known) {
            gauge_format_bytes(mem->used, used, sizeof used);
            if (peak_known) {
                char number[32];
                gauge_format_bytes(mem->peak, number, sizeof number);
                snprintf(peak, sizeof peak, " (peak %s)", number);
            }
            snprintf(label, label_size, "%s %s / N/A%s", kind, used, peak);
        } else if (total_known) {
            gauge_format_bytes(mem->total, total, sizeof total);
            snprintf(label, label_size, "%s N/A / %s", kind, total);
        } else {
            snprintf(label, label_size, "%s N/A", kind);
        }
    }

    gauge_layout lay = {0, -1, used_known && total_known};
    if (lay.known) {
        double cells = (double)mem->used / (double)mem->total * width;
        lay.filled = (int)fmin(width, lround(cells));
        if (mem->used > 0 && lay.filled == 0)
            lay.filled = 1;                /* something is used: never draw it as empty */
        if (peak_known && mem->peak > 0) { /* a peak of nothing has no mark */
            int cell = (int)ceil((double)mem->peak / (double)mem->total * width) - 1;
            cell = cell < 0 ? 0 : cell >= width ? width - 1 : cell;
            lay.peak_cell = cell >= lay.filled ? cell : -1;
        }
    }
    if (layout)
        *layout = lay;
    if (bar) {
        char *p = bar;
        for (int x = 0; x < width; x++) {
            const char *glyph = x < lay.filled       ? (utf8 ? "█" : "#")
                                : x == lay.peak_cell ? (utf8 ? "│" : "|")
                                                     : (utf8 ? "░" : ".");
            p = put_glyph(p, glyph);
        }
        *p = '\0';
    }
    return 0;
}

/* n with thousands separators: 1234567 -> "1,234,567". */
static void format_count(int64_t n, char *out, size_t out_size)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t len = strlen(digits), o = 0;
    char buf[48];
    if (n < 0)
        buf[o++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    snprintf(out, out_size, "%s", buf);
}

int gauge_progress_render(const gauge_progress *prog, int width, bool utf8, char *bar, size_t bar_size,
                          char *label, size_t label_size, gauge_layout *layout)
{
    if (!prog || start_render(width, bar, bar_size, label, label_size, layout) < 0)
        return -1;
    bool total_known = prog->total > 0;
    bool rate_known = prog->rate >= 0 && isfinite(prog->rate);
    double fraction = 0;
    if (total_known) {
        fraction = (double)prog->step / (double)prog->total;
        fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    }

    if (label) {
        char step[32], total[32], counts[80], rate[32], eta[32];
        format_count(prog->step, step, sizeof step);
        if (total_known) {
            format_count(prog->total, total, sizeof total);
            snprintf(counts, sizeof counts, "%s/%s %d%%", step, total, (int)floor(fraction * 100 + 1e-9));
        } else {
            snprintf(counts, sizeof counts, "%s", step);
        }
        if (!rate_known)
            snprintf(rate, sizeof rate, "? it/s");
        else if (prog->rate > 0 && prog->rate < 1)
            snprintf(rate, sizeof rate, "%.1f s/it", 1 / prog->rate);
        else
            snprintf(rate, sizeof rate, "%.1f it/s", prog->rate);
        double eta_s = prog->eta_s;
        if (!(eta_s >= 0) || !isfinite(eta_s)) {
            eta_s = NAN;
            if (total_known && prog->step >= prog->total)
                eta_s = 0;
            else if (total_known && rate_known && prog->rate > 0)
                eta_s = (double)(prog->total - prog->step) / prog->rate;
        }
        gauge_format_duration(eta_s, eta, sizeof eta);
        snprintf(label, label_size, "%s %s ETA %s", counts, rate, eta);
    }

    gauge_layout lay = {0, -1, total_known};
    int eighths = (int)floor(fraction * width * 8 + 1e-9);
    int full = utf8 ? eighths / 8 : (int)floor(fraction * width + 1e-9);
    int partial = utf8 && full < width ? eighths % 8 : 0;
    lay.filled = full + (partial ? 1 : 0);
    if (layout)
        *layout = lay;
    if (bar) {
        static const char *const partials[8] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
        char *p = bar;
        for (int x = 0; x < width; x++) {
            const char *glyph = x < full               ? (utf8 ? "█" : "#")
                                : x == full && partial ? partials[partial]
                                                       : (utf8 ? "░" : ".");
            p = put_glyph(p, glyph);
        }
        *p = '\0';
    }
    return 0;
}
