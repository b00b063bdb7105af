/* Shared by the checkpoint sources (model_init.c, checkpoint_load.c, checkpoint_save.c); not an interface. */
#ifndef SDTUNE_MODELS_CHECKPOINT_INTERNAL_H
#define SDTUNE_MODELS_CHECKPOINT_INTERNAL_H

#include "checkpoint.h"

/* The generator of one parameter's initial values: a constant, U(-bound, bound) or N(0, std), each element
 * a pure function of (key, element index). */
typedef enum init_mode { INIT_CONSTANT, INIT_UNIFORM, INIT_NORMAL } init_mode;

typedef struct init_gen {
    init_mode mode;
    float constant;
    double scale; /* the bound or the standard deviation */
    uint64_t key;
} init_gen;

void init_gen_for(init_gen *g, const sdt_param *p, uint64_t seed, int component, size_t param);
float init_gen_value(const init_gen *g, uint64_t index);

/* Walks the elements of p in file order and gives each one's engine-layout index: conv weights are
 * [OC, C, KH, KW] in files and [OC, KH, KW, C] in the engine; every other tensor has the same order in
 * both. Incremental, so that a pass over a billion elements does no division per element. */
typedef struct index_walk {
    int conv;
    uint64_t kh, kw, c;    /* conv dims */
    uint64_t oc, ci, y, x; /* the current file position */
    uint64_t f;            /* the current file index */
} index_walk;

static inline void index_walk_start(index_walk *w, const sdt_param *p, uint64_t f)
{
    *w = (index_walk){.conv = p->kind == SDT_PARAM_CONV_WEIGHT && p->ndim == 4, .f = f};
    if (!w->conv)
        return;
    w->kh = (uint64_t)p->shape[1];
    w->kw = (uint64_t)p->shape[2];
    w->c = (uint64_t)p->shape[3];
    w->x = f % w->kw;
    w->y = (f / w->kw) % w->kh;
    w->ci = (f / (w->kw * w->kh)) % w->c;
    w->oc = f / (w->kw * w->kh * w->c);
}

static inline uint64_t index_walk_engine(const index_walk *w)
{
    return w->conv ? ((w->oc * w->kh + w->y) * w->kw + w->x) * w->c + w->ci : w->f;
}

static inline void index_walk_next(index_walk *w)
{
    w->f++;
    if (w->conv && ++w->x == w->kw) {
        w->x = 0;
        if (++w->y == w->kh) {
            w->y = 0;
            if (++w->ci == w->c) {
                w->ci = 0;
                w->oc++;
            }
        }
    }
}

/* Writes "[320, 4, 3, 3]" into buf. */
void shape_text(char *buf, size_t size, int ndim, const int64_t *shape);

#endif
