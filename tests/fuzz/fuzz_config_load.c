/* libFuzzer target: any bytes given to the config loader give diagnostics, never a crash, a leak or
 * undefined behaviour. A loaded config is also validated, saved to text and reloaded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdtune/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text((const char *)data, size, "fuzz.toml", &diags);
    if (cfg) {
        sdt_validate_options options = {0}; /* no filesystem: the fuzzer must not depend on the machine */
        sdt_config_validate(cfg, &options, &diags);
        char *text = sdt_config_to_toml(cfg);
        if (text) {
            /* What we write must load again without a single problem. */
            sdt_diag_list again;
            sdt_diag_list_init(&again);
            sdt_config *back = sdt_config_load_text(text, strlen(text), "saved.toml", &again);
            if (!back || sdt_diag_count(&again, SDT_SEV_ERROR) != 0)
                abort();
            sdt_config_free(back);
            sdt_diag_list_free(&again);
            free(text);
        }
    }
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
    return 0;
}
