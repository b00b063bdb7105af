/* The optimizer a config asks for: optimizer_type with its optimizer_args (kohya's "key=value" list), as an
 * sdt_optim_config, and kohya's ss_optimizer text for it. Kept apart from optim.h so the config headers are
 * needed only here. */
#ifndef SDTUNE_TRAIN_OPTIM_SETTINGS_H
#define SDTUNE_TRAIN_OPTIM_SETTINGS_H

#include "optim.h"

typedef struct sdt_config sdt_config;

/* 0, or -1 with *error (caller frees) naming optimizer_type or optimizer_args and the bad value;
 * *bad_key (may be NULL) gets "optimizer_type" or "optimizer_args", the setting at fault. Includes
 * sdt_optim_config_check. */
int sdt_optim_from_settings(const sdt_config *cfg, sdt_optim_config *out, const char **bad_key, char **error);

/* kohya's ss_optimizer value, e.g. "transformers.optimization.Adafactor(relative_step=True)"; NULL when the
 * settings do not parse or out of memory. Caller frees. */
char *sdt_optim_settings_text(const sdt_config *cfg);

#endif
