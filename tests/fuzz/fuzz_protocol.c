/* libFuzzer target: any bytes given to the protocol decoders (commands and events) give an error message
 * or a decoded message, never a crash, a leak or undefined behaviour. A decoded message re-encodes, and the
 * re-encoded line is a fixed point: it decodes and encodes to itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_event_fixed_point(const char *line)
{
    sdt_event ev;
    char *error = NULL, *again = NULL;
    if (sdt_event_decode(line, strlen(line), &ev, &error) != 0)
        abort(); /* the encoder's output always decodes */
    if (sdt_event_encode(&ev, &again, &error) != 0 || strcmp(again, line) != 0)
        abort();
    free(again);
    sdt_event_clear(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char *error = NULL, *line = NULL;

    sdt_command command;
    if (sdt_command_decode(text, size, &command, &error) == 0) {
        if (error || (unsigned)command.type >= SDT_CMD_COUNT ||
            sdt_command_encode(&command, &line, &error) != 0)
            abort();
        sdt_command again;
        if (sdt_command_decode(line, strlen(line), &again, &error) != 0 || again.type != command.type ||
            (again.id == NULL) != (command.id == NULL) || (again.id && strcmp(again.id, command.id) != 0))
            abort();
        sdt_command_clear(&again);
        sdt_command_clear(&command);
        free(line);
        line = NULL;
    } else {
        if (!error || !error[0] || command.id)
            abort(); /* a failure always explains itself and leaves nothing allocated */
        free(error);
        error = NULL;
    }

    sdt_event ev;
    if (sdt_event_decode(text, size, &ev, &error) == 0) {
        if (error || sdt_event_encode(&ev, &line, &error) != 0)
            abort();
        sdt_event_clear(&ev);
        check_event_fixed_point(line);
        free(line);
    } else {
        if (!error || !error[0])
            abort();
        free(error);
    }
    return 0;
}
