/* Shared by the checkpoint sources (model_init.c, checkpoint_save.c, and the loader: checkpoint_load.c,
 * checkpoint_files.c, checkpoint_detect.c); not an interface. */
#ifndef SDTUNE_MODELS_CHECKPOINT_INTERNAL_H
#define SDTUNE_MODELS_CHECKPOINT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <strings.h>

#include "checkpoint.h"
#include "keymap.h"
#include "name_index.h"
#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"

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

/* ---- the loader's session ------------------------------------------------------------------------------ */

/* Bound on the count of layers, depths and shards a file may claim, so that a malformed header cannot make
 * a table absurdly large. */
#define MAX_COUNT 256

typedef enum layout { LAYOUT_LDM, LAYOUT_DIFFUSERS } layout;

typedef struct source {
    char *path;
    sdt_safetensors *st;
} source;

/* A file tensor that belongs to a component. */
typedef struct candidate {
    size_t source;
    const sdt_st_tensor *t; /* t->name is the whole key */
    const char *name;       /* the name inside the component (LDM or diffusers, by layout) */
    char *owned;            /* backs name when it is not a suffix of the key */
    layout layout;
} candidate;

typedef struct comp_state {
    candidate *cands;
    size_t n, cap;
    sdt_name_index by_name; /* name -> candidate (the first one), for the config probes */
    layout layout;          /* the naming the probes use */
    sdt_buf files;          /* the source files, for the report */
    char *config_json;      /* the config this component's source carries (metadata or config.json) */
    char *config_origin;    /* where config_json came from, for messages */
    int config_is_file;     /* from a diffusers config.json: authoritative, not a hint */
    const char *key_prefix; /* what the LDM names carry in this component's files ("" when bare) */
    long long *match;       /* [table count]: candidate per entry, -1 */
    sdt_keymap km;
    int km_built;
} comp_state;

typedef struct session {
    const char *path;
    sdt_model_load_options opt;
    source *sources;
    size_t n_sources, cap_sources;
    comp_state comp[SDT_COMPONENT_COUNT];
    sdt_ckpt_report *r;
    sdt_model *m;
    sdt_prediction prediction;
    int oom;
} session;

static inline int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return 0;
    if (rest)
        *rest = s + n;
    return 1;
}

static inline int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* The report (checkpoint_load.c). fatal keeps the first reason only; problem and ignored add entries. */
void fatal(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void problem(session *s, sdt_problem_kind kind, int comp, const char *file, const char *key, const char *fmt,
             ...) __attribute__((format(printf, 6, 7)));
void ignored(session *s, const char *file, const char *key, const char *reason);

/* Files (checkpoint_files.c). */
long long open_source(session *s, const char *path);
void note_file(comp_state *cs, const char *path);
int read_text_file(session *s, const char *path, char **text, int required);
int is_dir(const char *path);
int is_file(const char *path);
void classify_ldm(session *s, size_t src, int vae_replaced);
int open_diffusers_weights(session *s, int c, const char *dir, const char *base);
void classify_diffusers(session *s, int c, size_t first);
int open_vae_source(session *s, const char *path);
int read_component_config(session *s, int c, const char *dir);

/* Family and configs (checkpoint_detect.c). */
int any_key_starts(const sdt_safetensors *st, const char *prefix);
int any_key_contains(const sdt_safetensors *st, const char *part);
void detect_ldm_family(session *s, const sdt_safetensors *st, const char *path);
void detect_diffusers_family(session *s, const sdt_unet_config *u, const sdt_clip_config *t, int have_text);
void build_probe_index(session *s, int c);
const sdt_model_arch *preset_for_unet(const sdt_unet_config *c);
void derive_configs(session *s, sdt_model_arch *arch, int want_unet, int want_text, int want_vae);
void name_arch(sdt_model *m);

#endif
