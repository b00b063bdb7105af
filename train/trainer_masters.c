/* DreamBooth / fine-tuning under mixed precision: the trained networks keep F32 master weights, owned by
 * the model's table and registered with the optimizer, while the layers run on working copies in the
 * compute dtype. See docs/training.md, "Mixed precision".
 *
 * A working copy is the master rounded to nearest (sdt_copy), made at setup and again after every
 * optimizer step and every restore of the masters. That is what kohya's autocast computes with (each op
 * casts the fp32 weight to bf16/fp16, round to nearest even), so a bf16 run here sees the weights a kohya
 * bf16 run sees. The optimizer's stochastically rounded `copies` would give other, unbiased bits, but only
 * for the three update kinds the backend fuses; a copy op covers every optimizer. */
#include <stdlib.h>

#include "trainer_internal.h"

int sdt_trainer_make_working_copies(sdt_trainer *t, sdt_param_table *table, char **error)
{
    if (t->compute_dtype == SDT_F32)
        return 0;
    size_t trained = 0;
    for (size_t i = 0; i < table->count; i++)
        trained += table->items[i].trainable != 0;
    sdt_full_copy *copies = realloc(t->full_copies, (t->full_copy_count + trained) * sizeof *copies);
    if (!copies && t->full_copy_count + trained > 0)
        return sdt_set_error(error, "out of memory");
    t->full_copies = copies;
    for (size_t i = 0; i < table->count; i++) {
        sdt_param *p = &table->items[i];
        if (!p->trainable)
            continue;
        if (p->value.dtype != SDT_F32)
            return sdt_set_error(error, "%s.%s: the master weight of full training must be F32",
                                 table->component, p->name);
        sdt_tensor working = p->value; /* the master's shape, in the compute dtype */
        working.dtype = t->compute_dtype;
        working.data = sdt_engine_alloc(t->e, sdt_tensor_bytes(&working));
        if (!working.data)
            return sdt_set_error(error, "out of memory for the %s copy of %s.%s",
                                 sdt_train_precision_name(t->compute_dtype), table->component, p->name);
        t->full_copies[t->full_copy_count++] =
            (sdt_full_copy){.param = p, .master = p->value, .working = working};
        if (sdt_copy(t->e, &working, &p->value) != 0)
            return sdt_set_error(error, "%s.%s: %s", table->component, p->name, sdt_engine_error(t->e));
        p->value = working;
    }
    return 0;
}

int sdt_trainer_refresh_working_copies(sdt_trainer *t, char **error)
{
    for (size_t i = 0; i < t->full_copy_count; i++) {
        sdt_full_copy *c = &t->full_copies[i];
        if (sdt_copy(t->e, &c->working, &c->master) != 0)
            return sdt_set_error(error, "%s: rounding the master weight: %s", c->param->name,
                                 sdt_engine_error(t->e));
    }
    return 0;
}

void sdt_trainer_show_masters(sdt_trainer *t, int masters)
{
    for (size_t i = 0; i < t->full_copy_count; i++) {
        sdt_full_copy *c = &t->full_copies[i];
        c->param->value = masters ? c->master : c->working;
    }
}

void sdt_trainer_free_working_copies(sdt_trainer *t)
{
    /* The table owns the masters' memory and frees it with the model: give it back its F32 values. */
    sdt_trainer_show_masters(t, 1);
    for (size_t i = 0; i < t->full_copy_count; i++)
        sdt_engine_dealloc(t->e, t->full_copies[i].working.data);
    free(t->full_copies);
    t->full_copies = NULL;
    t->full_copy_count = 0;
}
