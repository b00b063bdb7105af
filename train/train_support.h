/* What a training run can do today, checked before it starts.
 *
 * The schema accepts every setting kohya knows, so configs stay stable while the engine grows; a run must
 * never silently ignore one. This check refuses (1) every setting the engine does not implement yet (schema
 * impl = SDT_IMPL_PLANNED) that is given a value other than its default, and (2) values of implemented
 * settings the engine cannot honour (an optimizer, scheduler or sampler not written yet, SD2 and SDXL, the
 * CUDA backend, mixed precision for full training, ...). See docs/training.md, "Running a training". */
#ifndef SDTUNE_TRAIN_TRAIN_SUPPORT_H
#define SDTUNE_TRAIN_TRAIN_SUPPORT_H

#include "sdtune/config.h"
#include "sdtune/diag.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends one error per refused setting to diags, each naming the config file, the line and column of the
 * value (sdt_config_origin; 0 when the value is not from the file) and the setting, as
 * "<section>.<key> = <value>: not implemented yet" or "<section>.<key> = <value>: <why>" (the value in its
 * TOML form). Returns 0 when the run can go ahead, -1 when something was refused. */
int sdt_train_check_supported(const sdt_config *cfg, sdt_diag_list *diags);

#ifdef __cplusplus
}
#endif
#endif
