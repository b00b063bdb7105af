/* The protocol's names: event and command types and the enum values carried in fields. These strings are
 * the wire format (docs/protocol.md), so they never change once released. */
#include <string.h>

#include "sdtune/protocol.h"

static const char *const event_names[SDT_EV_COUNT] = {
    "hello",      "config_error", "phase", "progress", "memory", "log",    "sample",
    "checkpoint", "done",         "error", "ack",      "pong",   "device",
};

static const char *const phase_names[SDT_PHASE_COUNT] = {
    "loading", "caching", "training", "sampling", "saving", "paused", "done",
};

static const char *const command_names[SDT_CMD_COUNT] = {
    "stop", "abort", "pause", "resume", "sample_now", "save_now", "ping",
};

const char *sdt_event_type_name(sdt_event_type t)
{
    return (unsigned)t < SDT_EV_COUNT ? event_names[t] : "unknown";
}

const char *sdt_phase_name(sdt_phase p) { return (unsigned)p < SDT_PHASE_COUNT ? phase_names[p] : "unknown"; }

const char *sdt_log_level_name(sdt_log_level l)
{
    switch (l) {
    case SDT_LOG_DEBUG: return "debug";
    case SDT_LOG_INFO: return "info";
    case SDT_LOG_WARNING: return "warning";
    case SDT_LOG_ERROR: return "error";
    }
    return "unknown";
}

const char *sdt_memory_kind_name(sdt_memory_kind k)
{
    return k == SDT_MEMORY_VRAM ? "vram" : k == SDT_MEMORY_RAM ? "ram" : "unknown";
}

const char *sdt_checkpoint_kind_name(sdt_checkpoint_kind k)
{
    switch (k) {
    case SDT_CHECKPOINT_MODEL: return "model";
    case SDT_CHECKPOINT_STATE: return "state";
    case SDT_CHECKPOINT_REMOVED: return "removed";
    }
    return "unknown";
}

const char *sdt_command_type_name(sdt_command_type t)
{
    return (unsigned)t < SDT_CMD_COUNT ? command_names[t] : "unknown";
}

int sdt_event_type_from_name(const char *name, sdt_event_type *out)
{
    for (int i = 0; i < SDT_EV_COUNT; i++)
        if (strcmp(name, event_names[i]) == 0) {
            *out = (sdt_event_type)i;
            return 0;
        }
    return -1;
}

int sdt_command_type_from_name(const char *name, sdt_command_type *out)
{
    for (int i = 0; i < SDT_CMD_COUNT; i++)
        if (strcmp(name, command_names[i]) == 0) {
            *out = (sdt_command_type)i;
            return 0;
        }
    return -1;
}
