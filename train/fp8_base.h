/* fp8_base and fp8_base_unet (kohya's settings): which components of a run keep their frozen linear and
 * conv weights as F8_E4M3 with a per-tensor scale (models/params.h, sdt_param_table.f8_weights). The
 * backends dequantise such a weight before every GEMM or convolution, so it saves the weights' memory on
 * any device; docs/training.md says what stays in the compute dtype and why. */
#ifndef SDTUNE_TRAIN_FP8_BASE_H
#define SDTUNE_TRAIN_FP8_BASE_H

#include "sdtune/config.h"

/* Bit c (1u << SDT_COMPONENT_*) for every component stored in F8: fp8_base = the UNet and the text
 * encoder, fp8_base_unet = the UNet only; 0 when neither is set. */
unsigned sdt_fp8_base_components(const sdt_config *cfg);

/* 0 when the run can store its frozen weights in F8; -1 with *error set when it trains them (DreamBooth
 * and fine-tuning update the UNet's own weights, which must stay F32 master weights: LoRA only). */
int sdt_fp8_base_check(const sdt_config *cfg, char **error);

#endif
