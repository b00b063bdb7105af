/* What optim.c shares with the optimizers written in their own files
 * (optim_*.c). */
#ifndef SDTUNE_TRAIN_OPTIM_INTERNAL_H
#define SDTUNE_TRAIN_OPTIM_INTERNAL_H

#include "optim.h"

/* bitsandbytes' block of 2048 values per absmax. */
#define SDT_OPTIM_8BIT_BLOCK 2048

/* State buffers (names, float counts) of an entry with the given shape, for
 * c->kind. */
void sdt_optim_layout(const sdt_optim_config *c, sdt_optim_entry *e);

/* AdamW8bit: one update of one entry; `step` counts this update. */
void sdt_adamw8bit_update(const sdt_optim_config *c, sdt_optim_entry *e, double lr, int64_t step);
/* bitsandbytes' dynamic quantisation map (create_dynamic_map): 256 ascending
 * values in [-1, 1] (signed) or [0, 1] (unsigned). */
void sdt_optim_dynamic_map(int is_signed, float out[256]);
/* Nearest code of x (already divided by the block's absmax) in an ascending
 * map; ties take the lower. */
uint8_t sdt_optim_quantize(const float map[256], float x);

/* Adafactor: one update of one entry; -1 when out of memory (nothing changed). */
int sdt_adafactor_update(const sdt_optim_config *c, sdt_optim_entry *e, double lr, int64_t step);

/* Prodigy: one update of every entry (d is shared by all of them). */
int sdt_prodigy_step(sdt_optimizer *o, char **error);
/* Prodigy's initial scalars (d = d0, d_max = d0, numerator 0, k 0). */
void sdt_prodigy_init(sdt_optimizer *o);

#endif
