/* `train`: one training run from a config, for a person at a terminal or for the UI (--protocol).
 *
 * This is the process side of a run (docs/protocol.md): arguments, the config's checks before anything
 * heavy starts, the event sink (stdout JSON Lines or human lines, and the journal), the signal handlers
 * and the command reader. The run itself is sdt_train_run (train/trainer.h), whose result is the exit
 * code: 0 done or stopped, 1 failed, 2 usage or config error, 3 aborted. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "command_reader.h"
#include "demo.h"
#include "device.h"
#include "event_sink.h"
#include "sdtune/config.h"
#include "sdtune/strutil.h"
#include "signals.h"
#include "train_support.h"
#include "trainer.h"

static void usage(FILE *out)
{
    fputs(
        "usage: sdtune-engine train CONFIG [--protocol] [--threads N] [--quiet] [--memory-limit MIB]\n"
        "  CONFIG       the run's config (config.toml trains the built-in demo)\n"
        "  --protocol   talk JSON Lines: events on stdout, commands on stdin (docs/protocol.md)\n"
        "  --threads N  CPU threads (default: the config's cpu_threads, else every core)\n"
        "  --quiet      print only warnings, errors and the first and last progress lines\n"
        "  --memory-limit MIB\n"
        "               check the memory plan against this much memory instead of the device's free memory\n"
        "exit 0 when done or stopped and saved, 1 when the run failed, 2 on usage or config errors,\n"
        "3 when aborted\n",
        out);
}

typedef struct train_args {
    const char *config_path;
    bool protocol, quiet;
    int threads;
    size_t memory_limit; /* bytes; 0: the device's free memory */
} train_args;

/* Fills *args; returns -1 after printing the problem for a usage error, 1 for --help. */
static int parse_args(int argc, char **argv, train_args *args)
{
    memset(args, 0, sizeof *args);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--protocol") == 0) {
            args->protocol = true;
        } else if (strcmp(arg, "--quiet") == 0) {
            args->quiet = true;
        } else if (strcmp(arg, "--threads") == 0) {
            char *end = NULL;
            long n = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || end == argv[i + 1] || *end != '\0' || n < 1 || n > 4096) {
                fprintf(stderr, "sdtune-engine train: --threads needs a number of threads from 1 to 4096\n");
                return -1;
            }
            args->threads = (int)n;
            i++;
        } else if (strcmp(arg, "--memory-limit") == 0) {
            char *end = NULL;
            double mib = i + 1 < argc ? strtod(argv[i + 1], &end) : 0;
            if (i + 1 >= argc || end == argv[i + 1] || *end != '\0' || !(mib > 0) || mib > 1e9) {
                fprintf(stderr, "sdtune-engine train: --memory-limit needs a positive number of MiB\n");
                return -1;
            }
            args->memory_limit = (size_t)(mib * 1024.0 * 1024.0);
            i++;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            return 1;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "sdtune-engine train: unknown option '%s'\n", arg);
            return -1;
        } else if (args->config_path) {
            fprintf(stderr, "sdtune-engine train: one config at a time\n");
            return -1;
        } else {
            args->config_path = arg;
        }
    }
    if (!args->config_path) {
        fprintf(stderr, "sdtune-engine train: name the config to train\n");
        return -1;
    }
    return 0;
}

typedef struct train_session {
    const train_args *args;
    sdt_event_sink *sink;
} train_session;

/* `hello` comes before the config is read, so it says what the machine offers: the backend `backend =
 * "auto"` would pick on it (CUDA device 0 when the build has the backend and a device answers, else the
 * CPU) and that device. The run's real device is its `device` event (docs/protocol.md). Only the device's
 * properties are asked for: that creates no CUDA context, so a run on another GPU (gpu_index) or on the
 * CPU holds no memory on device 0 for this. */
static void emit_hello(sdt_event_sink *sink)
{
    sdt_device_info device;
    sdt_cpu_device_info(&device);
    const char *backend = "cpu";
    int64_t vram_total = 0;
    char *why = NULL;
    if (sdt_cuda_device_count(&why) > 0) {
        sdt_device_info gpu;
        char *info_error = NULL;
        if (sdt_cuda_device_info(0, &gpu, &info_error) == 0) {
            device = gpu;
            backend = "cuda";
            vram_total = (int64_t)(gpu.memory_gib * 1024.0 * 1024.0 * 1024.0);
        }
        free(info_error);
    }
    free(why);
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    sdt_event ev = {.type = SDT_EV_HELLO};
    ev.hello.version = SDT_PROTOCOL_VERSION;
    ev.hello.backend = (char *)backend;
    ev.hello.device = device.name[0] ? device.name : "CPU";
    ev.hello.vram_total = vram_total;
    ev.hello.ram_total = pages > 0 && page_size > 0 ? (int64_t)pages * page_size : 0;
    ev.hello.pid = (int64_t)getpid();
    sdt_event_sink_emit(sink, &ev);
}

/* Reports the diagnostics of the checks before the run: `config_error` events (errors) and `log` warnings in
 * protocol mode, FILE:LINE:COL lines on stderr otherwise. */
static void report_diags(train_session *s, const sdt_diag_list *diags)
{
    if (!s->args->protocol) {
        sdt_diag_list_print(diags, stderr);
        return;
    }
    const sdt_setting *settings = sdt_schema_settings();
    for (size_t i = 0; i < diags->count; i++) {
        const sdt_diag *d = &diags->items[i];
        char *place = d->line > 0 ? sdt_format("%s:%d:%d: ", d->file, d->line, d->col)
                                  : (d->file[0] ? sdt_format("%s: ", d->file) : sdt_strdup(""));
        if (d->severity == SDT_SEV_WARNING) {
            sdt_event_sink_logf(s->sink, SDT_LOG_WARNING, "%s%s", place ? place : "", d->message);
        } else {
            char *field = d->setting >= 0
                              ? sdt_format("%s.%s", sdt_section_name(settings[d->setting].section),
                                           settings[d->setting].key)
                              : sdt_strdup("");
            char *message = sdt_format("%s%s", place ? place : "", d->message);
            sdt_event ev = {.type = SDT_EV_CONFIG_ERROR};
            ev.config_error.field = field ? field : "";
            ev.config_error.message = message ? message : d->message;
            sdt_event_sink_emit(s->sink, &ev);
            free(field);
            free(message);
        }
        free(place);
    }
}

/* Ends a run refused before it started: the diagnostics, then an `error` event; exit 2. */
static int refuse_config(train_session *s, const sdt_diag_list *diags)
{
    report_diags(s, diags);
    size_t errors = sdt_diag_count(diags, SDT_SEV_ERROR);
    char *message = sdt_format("%s: %zu error%s in the config; nothing was trained", s->args->config_path,
                               errors, errors == 1 ? "" : "s");
    if (s->args->protocol)
        sdt_event_sink_error(s->sink, message ? message : "the config has errors", NULL);
    else
        fprintf(stderr, "%s\n", message ? message : "the config has errors");
    free(message);
    return SDT_TRAIN_CONFIG_ERROR;
}

/* Adds the diagnostics of from to into, less the validator's own "not implemented" errors about settings
 * sdt_train_check_supported (whose results are in into) already refused: one error per refusal. */
static void merge_diags(sdt_diag_list *into, const sdt_diag_list *from)
{
    size_t refused = into->count;
    for (size_t i = 0; i < from->count; i++) {
        const sdt_diag *d = &from->items[i];
        bool repeated = false;
        for (size_t j = 0; j < refused && d->setting >= 0 && !repeated; j++)
            repeated = into->items[j].setting == d->setting && strstr(d->message, "not implemented") != NULL;
        if (!repeated)
            sdt_diag_add(into, d->severity, d->file, d->line, d->col, d->setting, "%s", d->message);
    }
    sdt_diag_list_sort(into);
}

/* Loads the config, resolves "builtin:" names and runs every check a run needs before it starts. Returns the
 * config, or NULL with *status set (the problems reported). */
static sdt_config *load_checked_config(train_session *s, int *status)
{
    sdt_diag_list diags, support;
    sdt_diag_list_init(&diags);
    sdt_diag_list_init(&support);
    sdt_config *cfg = sdt_config_load_file(s->args->config_path, &diags);
    if (!cfg || sdt_diag_count(&diags, SDT_SEV_ERROR) > 0) {
        *status = refuse_config(s, &diags);
        goto fail;
    }
    /* The demo's files are made (first use) before the checks so its paths check like any other. */
    char *error = NULL;
    if (sdt_demo_resolve(cfg, &error) != 0) {
        char *message = sdt_format("%s: %s", s->args->config_path, error ? error : "cannot prepare the demo");
        sdt_event_sink_error(s->sink, message ? message : "cannot prepare the demo", NULL);
        free(message);
        free(error);
        *status = SDT_TRAIN_FAILED;
        goto fail;
    }
    sdt_device_info cpu;
    sdt_cpu_device_info(&cpu);
    sdt_validate_options options = {.check_filesystem = true, .preflight = true, .device = &cpu};
    sdt_config_validate(cfg, &options, &diags);
    sdt_train_check_supported(cfg, &support);
    merge_diags(&support, &diags);
    if (sdt_diag_count(&support, SDT_SEV_ERROR) > 0) {
        *status = refuse_config(s, &support);
        goto fail;
    }
    if (support.count)
        report_diags(s, &support);
    sdt_diag_list_free(&diags);
    sdt_diag_list_free(&support);
    return cfg;
fail:
    sdt_diag_list_free(&diags);
    sdt_diag_list_free(&support);
    sdt_config_free(cfg);
    return NULL;
}

/* SDTUNE_TEST_DEVICE=guarded runs training on the guarded test backend (docs/ops.md), which makes host code
 * that touches device tensors fault on the CPU. Testing only, hence an environment variable and not a
 * config setting: anything else, or nothing, is the config's backend. */
static sdt_device_kind test_device_from_environment(void)
{
    const char *value = getenv("SDTUNE_TEST_DEVICE");
    return value && strcmp(value, "guarded") == 0 ? SDT_DEVICE_GUARDED : SDT_DEVICE_CPU;
}

static void emit_to_sink(void *ctx, const sdt_event *ev) { sdt_event_sink_emit(ctx, ev); }

/* outputs_ready: the journal goes beside the run's outputs. A journal that cannot be opened is reported (by
 * the sink) and the run goes on: the events still reach stdout or stderr. */
static int open_journal(void *ctx, const char *output_dir, const char *output_name, char **error)
{
    (void)error;
    train_session *s = ctx;
    char *path = sdt_format("%s/%s.events.jsonl", output_dir, output_name);
    char *why = NULL;
    if (!path || sdt_event_sink_open_journal(s->sink, path, &why) != 0)
        sdt_event_sink_logf(s->sink, SDT_LOG_WARNING, "no journal: %s", why ? why : "out of memory");
    free(why);
    free(path);
    return 0;
}

/* Starts the event sink; NULL after printing why. */
static sdt_event_sink *open_sink(const train_args *args)
{
    sdt_event_sink_options options;
    sdt_event_sink_options_init(&options);
    options.protocol = args->protocol;
    options.stdout_fd = args->protocol ? STDOUT_FILENO : -1;
    if (args->quiet) {
        options.human_level = SDT_LOG_WARNING;
        options.progress_every = 1 << 30; /* the first and the last line only */
    }
    sdt_event_sink *sink = NULL;
    char *error = NULL;
    if (sdt_event_sink_open(&options, &sink, &error) != 0) {
        fprintf(stderr, "sdtune-engine train: %s\n", error ? error : "cannot start");
        free(error);
        return NULL;
    }
    return sink;
}

int cli_train(int argc, char **argv)
{
    train_args args;
    int parsed = parse_args(argc, argv, &args);
    if (parsed != 0) {
        usage(parsed > 0 ? stdout : stderr);
        return parsed > 0 ? 0 : 2;
    }
    /* The handlers go in before the first event: they also ignore SIGPIPE, and a UI that dies while the
     * config is checked must not kill the engine with it. A signal before the run starts is a stop (or an
     * abort) the run honours at its first step. */
    sdt_run_control control;
    sdt_run_control_init(&control);
    char *error = NULL;
    bool signals_installed = sdt_signals_install(&control, &error) == 0;
    train_session session = {.args = &args, .sink = open_sink(&args)};
    if (!session.sink) {
        if (signals_installed)
            sdt_signals_restore();
        free(error);
        return SDT_TRAIN_FAILED;
    }
    emit_hello(session.sink);
    if (!signals_installed) {
        sdt_event_sink_logf(session.sink, SDT_LOG_WARNING, "signals: %s", error ? error : "cannot install");
        free(error);
        error = NULL;
    }

    int status = SDT_TRAIN_DONE;
    sdt_config *cfg = load_checked_config(&session, &status);
    sdt_command_reader *reader = NULL;
    if (cfg && args.protocol &&
        sdt_command_reader_start(STDIN_FILENO, &control, session.sink, &reader, &error) != 0) {
        sdt_event_sink_error(session.sink, error ? error : "cannot read commands", NULL);
        free(error);
        error = NULL;
        status = SDT_TRAIN_FAILED;
        sdt_config_free(cfg);
        cfg = NULL;
    }
    if (cfg) {
        sdt_train_options options = {
            .cfg = cfg,
            .config_path = args.config_path,
            .threads = args.threads,
            .memory_free_bytes = args.memory_limit,
            .test_device = test_device_from_environment(),
            .emit = emit_to_sink,
            .emit_ctx = session.sink,
            .control = &control,
            .outputs_ready = open_journal,
            .outputs_ready_ctx = &session,
        };
        /* The run reports its own failure as an `error` event; *error only repeats it. */
        status = (int)sdt_train_run(&options, &error);
        free(error);
        sdt_command_reader_stop(reader);
        sdt_config_free(cfg);
    }
    if (signals_installed)
        sdt_signals_restore();
    sdt_event_sink_close(session.sink);
    return status;
}
