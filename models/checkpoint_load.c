/* Loading a model: a single-file (LDM) safetensors checkpoint or a diffusers folder, optionally with a VAE
 * from elsewhere.
 *
 * 1. Sources: the files are opened (mapped and validated; nothing is read yet) and every key is sorted
 *    into a component (with its name inside that component), the known extra keys (ignored), or the rest.
 * 2. Family: names and shapes say what the model is (sd_arch_spec §7.1); what the tables cannot express
 *    yet (SD2, SDXL, inpainting) is refused here with what was detected.
 * 3. Configs: from the shapes of the tensors (channels, levels, depths, widths, vocabulary), plus what
 *    shapes cannot tell (heads, norm groups, token ids) from the config JSON the file carries, or from the
 *    preset of the same topology, or SD1.x's values. A diffusers folder has its config.json files.
 * 4. Tables are built from the configs and every tensor is matched: missing, unexpected, misshapen,
 *    duplicated and badly typed tensors are all reported, each with its file and key.
 * 5. Values (unless header-only): allocated on the engine, converted to the requested dtype, conv weights
 *    permuted to [OC, KH, KW, C]. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "checkpoint_internal.h"
#include "keymap.h"
#include "sdtune/atomic_file.h"
#include "sdtune/safetensors.h"

/* How many problems the error message lists (the report keeps all of them). */
#define ERROR_LIST_CAP 25
/* Bounds on what a file may claim, so that a malformed header cannot make a table absurdly large. */
#define MAX_CHANNELS (1 << 20)
#define MAX_VOCAB (1 << 24)
#define MAX_COUNT 256 /* layers, depths, shards */

const char *sdt_problem_kind_name(sdt_problem_kind kind)
{
    switch (kind) {
    case SDT_PROBLEM_MISSING: return "missing";
    case SDT_PROBLEM_MISSING_COMPONENT: return "missing component";
    case SDT_PROBLEM_UNEXPECTED: return "unexpected";
    case SDT_PROBLEM_SHAPE: return "wrong shape";
    case SDT_PROBLEM_DTYPE: return "wrong dtype";
    case SDT_PROBLEM_DUPLICATE: return "duplicate";
    }
    return "?";
}

void sdt_ckpt_report_free(sdt_ckpt_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_problems; i++) {
        free(r->problems[i].file);
        free(r->problems[i].key);
        free(r->problems[i].message);
    }
    for (size_t i = 0; i < r->n_ignored; i++) {
        free(r->ignored[i].file);
        free(r->ignored[i].key);
    }
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        free(r->components[c].source);
    free(r->problems);
    free(r->ignored);
    free(r->fatal);
    memset(r, 0, sizeof *r);
}

/* ---- session state ------------------------------------------------------------------------------------- */

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

static void session_free(session *s)
{
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        comp_state *cs = &s->comp[c];
        for (size_t i = 0; i < cs->n; i++)
            free(cs->cands[i].owned);
        free(cs->cands);
        sdt_name_index_free(&cs->by_name);
        sdt_buf_free(&cs->files);
        free(cs->config_json);
        free(cs->config_origin);
        free(cs->match);
        if (cs->km_built)
            sdt_keymap_free(&cs->km);
    }
    for (size_t i = 0; i < s->n_sources; i++) {
        sdt_safetensors_close(s->sources[i].st);
        free(s->sources[i].path);
    }
    free(s->sources);
}

static int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return 0;
    if (rest)
        *rest = s + n;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* ---- report -------------------------------------------------------------------------------------------- */

static void fatal(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fatal(session *s, const char *fmt, ...)
{
    if (s->r->fatal)
        return;
    va_list args;
    va_start(args, fmt);
    s->r->fatal = sdt_vformat(fmt, args);
    va_end(args);
    if (!s->r->fatal)
        s->oom = 1;
}

static void problem(session *s, sdt_problem_kind kind, int comp, const char *file, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void problem(session *s, sdt_problem_kind kind, int comp, const char *file, const char *key,
                    const char *fmt, ...)
{
    sdt_ckpt_report *r = s->r;
    if (r->n_problems == r->cap_problems) {
        size_t cap = r->cap_problems ? r->cap_problems * 2 : 32;
        sdt_ckpt_problem *p = realloc(r->problems, cap * sizeof *p);
        if (!p) {
            s->oom = 1;
            return;
        }
        r->problems = p;
        r->cap_problems = cap;
    }
    va_list args;
    va_start(args, fmt);
    char *message = sdt_vformat(fmt, args);
    va_end(args);
    sdt_ckpt_problem *p = &r->problems[r->n_problems++];
    p->kind = kind;
    p->component = comp;
    p->file = sdt_strdup(file);
    p->key = sdt_strdup(key ? key : "");
    p->message = message;
    if (!p->file || !p->key || !message)
        s->oom = 1;
    if (comp >= 0) {
        sdt_ckpt_component *cc = &r->components[comp];
        switch (kind) {
        case SDT_PROBLEM_MISSING: cc->missing++; break;
        case SDT_PROBLEM_MISSING_COMPONENT: cc->missing += cc->tensors; break;
        case SDT_PROBLEM_UNEXPECTED: cc->unexpected++; break;
        case SDT_PROBLEM_SHAPE: cc->bad_shape++; break;
        case SDT_PROBLEM_DTYPE: cc->bad_dtype++; break;
        case SDT_PROBLEM_DUPLICATE: cc->duplicate++; break;
        }
    } else if (kind == SDT_PROBLEM_UNEXPECTED) {
        r->n_unexpected_other++;
    }
}

static void ignored(session *s, const char *file, const char *key, const char *reason)
{
    sdt_ckpt_report *r = s->r;
    if (r->n_ignored == r->cap_ignored) {
        size_t cap = r->cap_ignored ? r->cap_ignored * 2 : 32;
        sdt_ckpt_ignored *p = realloc(r->ignored, cap * sizeof *p);
        if (!p) {
            s->oom = 1;
            return;
        }
        r->ignored = p;
        r->cap_ignored = cap;
    }
    sdt_ckpt_ignored *g = &r->ignored[r->n_ignored++];
    g->file = sdt_strdup(file);
    g->key = sdt_strdup(key);
    g->reason = reason;
    if (!g->file || !g->key)
        s->oom = 1;
}

/* ---- sources ------------------------------------------------------------------------------------------- */

static const char *pickle_hint_file =
    "%s is a PyTorch pickle file%s; sdtune does not load pickles, because unpickling can run arbitrary code. "
    "Convert it once to safetensors, for example:\n"
    "  python -c \"import torch; from safetensors.torch import save_file; "
    "sd = torch.load('%s', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); "
    "save_file({k: v.clone().contiguous() for k, v in sd.items() if isinstance(v, torch.Tensor)}, "
    "'%.*s.safetensors')\"\n"
    "(or make a diffusers folder with diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py "
    "--checkpoint_path %s --dump_path OUT --to_safetensors)";

static const char *pickle_hint_folder =
    "%s has only PyTorch pickle weights (%s); sdtune does not load pickles, because unpickling can run "
    "arbitrary code. Save the folder again with safetensors weights, for example:\n"
    "  python -c \"from diffusers import StableDiffusionPipeline; "
    "StableDiffusionPipeline.from_pretrained('%s').save_pretrained('%s-safetensors', "
    "safe_serialization=True)\"";

/* Refuses pickles by name or by their first bytes: a zip archive (torch.save since 1.6) or a pickle
 * protocol 2-5 header, unless the bytes are those of a safetensors header (length, then '{'). Returns 1
 * when path is a pickle (fatal set). */
static int refuse_pickle(session *s, const char *path)
{
    /* The model's format, when the model itself is the pickle (not its --vae). */
    const char *format = s->r->format ? s->r->format : "pickle";
    static const char *const exts[] = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"};
    /* The suggested output: the path without its extension (model.ckpt -> model.safetensors). */
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    int stem = (int)(dot && (!slash || dot > slash + 1) ? dot - path : (ptrdiff_t)strlen(path));
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        if (ends_with(path, exts[i])) {
            fatal(s, pickle_hint_file, path, " (by its name)", path, stem, path, path);
            s->r->format = format;
            return 1;
        }
    }
    unsigned char head[9] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    int safetensors_like = n == 9 && head[8] == '{';
    int zip = n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0;
    int pickle = n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5;
    if (!safetensors_like && (zip || pickle)) {
        fatal(s, pickle_hint_file, path,
              zip ? " (a zip archive, as torch.save writes)" : " (by its contents)", path, stem, path, path);
        s->r->format = format;
        return 1;
    }
    return 0;
}

/* Opens one safetensors file; returns its index, or -1 with fatal set. */
static long long open_source(session *s, const char *path)
{
    if (refuse_pickle(s, path))
        return -1;
    sdt_safetensors *st = NULL;
    char *err = NULL;
    if (sdt_safetensors_open(path, &st, &err) != 0) {
        fatal(s, "%s", err ? err : "cannot open");
        free(err);
        return -1;
    }
    if (s->n_sources == s->cap_sources) {
        size_t cap = s->cap_sources ? s->cap_sources * 2 : 8;
        source *src = realloc(s->sources, cap * sizeof *src);
        if (!src) {
            sdt_safetensors_close(st);
            s->oom = 1;
            return -1;
        }
        s->sources = src;
        s->cap_sources = cap;
    }
    s->sources[s->n_sources].path = sdt_strdup(path);
    s->sources[s->n_sources].st = st;
    return (long long)s->n_sources++;
}

static void add_candidate(session *s, int c, size_t src, const sdt_st_tensor *t, const char *name,
                          char *owned, layout lay)
{
    comp_state *cs = &s->comp[c];
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 256;
        candidate *p = realloc(cs->cands, cap * sizeof *p);
        if (!p) {
            free(owned);
            s->oom = 1;
            return;
        }
        cs->cands = p;
        cs->cap = cap;
    }
    cs->cands[cs->n++] =
        (candidate){.source = src, .t = t, .name = owned ? owned : name, .owned = owned, .layout = lay};
}

static void note_file(comp_state *cs, const char *path)
{
    if (cs->files.len)
        sdt_buf_puts(&cs->files, ", ");
    sdt_buf_puts(&cs->files, path);
}

static int read_text_file(session *s, const char *path, char **text, int required)
{
    size_t len;
    char *err = NULL;
    if (sdt_read_file(path, 16u << 20, text, &len, &err) != 0) {
        if (required)
            fatal(s, "%s: %s", path, err ? err : "cannot read");
        free(err);
        return -1;
    }
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- single-file checkpoints --------------------------------------------------------------------------- */

static const char *replaced_reason = "replaced by the --vae file";

static void classify_ldm(session *s, size_t src, int vae_replaced)
{
    sdt_safetensors *st = s->sources[src].st;
    const char *file = s->sources[src].path;
    for (size_t i = 0; i < sdt_safetensors_count(st) && !s->oom; i++) {
        const sdt_st_tensor *t = sdt_safetensors_tensor(st, i);
        const char *key = t->name, *rest, *why = sdt_ckpt_ignore_reason(key);
        if (why) {
            ignored(s, file, key, why);
        } else if (starts(key, SDT_PREFIX_UNET, &rest)) {
            add_candidate(s, SDT_COMPONENT_UNET, src, t, rest, NULL, LAYOUT_LDM);
        } else if (starts(key, SDT_PREFIX_CLIP_L, &rest)) {
            /* Old files lack the text_model. level (§7.1); the table's names have it. */
            if (starts(rest, "text_model.", NULL))
                add_candidate(s, SDT_COMPONENT_TEXT_ENCODER, src, t, rest, NULL, LAYOUT_LDM);
            else
                add_candidate(s, SDT_COMPONENT_TEXT_ENCODER, src, t, NULL, sdt_format("text_model.%s", rest),
                              LAYOUT_LDM);
        } else if (starts(key, SDT_PREFIX_VAE, &rest)) {
            if (vae_replaced)
                ignored(s, file, key, replaced_reason);
            else
                add_candidate(s, SDT_COMPONENT_VAE, src, t, rest, NULL, LAYOUT_LDM);
        } else {
            problem(s, SDT_PROBLEM_UNEXPECTED, -1, file, key,
                    "file %s: unexpected tensor %s (it belongs to no network of the model)", file, key);
        }
    }
}

static int any_key_starts(const sdt_safetensors *st, const char *prefix)
{
    for (size_t i = 0; i < sdt_safetensors_count(st); i++)
        if (starts(sdt_safetensors_tensor(st, i)->name, prefix, NULL))
            return 1;
    return 0;
}

static int any_key_contains(const sdt_safetensors *st, const char *part)
{
    for (size_t i = 0; i < sdt_safetensors_count(st); i++)
        if (strstr(sdt_safetensors_tensor(st, i)->name, part))
            return 1;
    return 0;
}

/* What a file without UNet tensors is, for the message. */
static void refuse_not_a_checkpoint(session *s, const sdt_safetensors *st, const char *path)
{
    if (any_key_starts(st, "lora_unet_") || any_key_starts(st, "lora_te"))
        fatal(s, "%s is a LoRA (lora_unet_* / lora_te* keys), not a model checkpoint", path);
    else if (any_key_starts(st, SDT_PREFIX_VAE) || any_key_starts(st, "encoder.down") ||
             any_key_starts(st, "decoder.up"))
        fatal(s, "%s is a VAE on its own, not a model checkpoint; give it with --vae", path);
    else if (any_key_starts(st, "down_blocks.") || any_key_starts(st, "mid_block."))
        fatal(s,
              "%s holds diffusers UNet weights; open the diffusers model folder (the one with unet/, "
              "text_encoder/ and vae/) instead",
              path);
    else if (any_key_starts(st, "text_model."))
        fatal(s, "%s holds a text encoder on its own, not a model checkpoint", path);
    else
        fatal(s, "%s: no Stable Diffusion UNet in the file (no %s* keys)", path, SDT_PREFIX_UNET);
}

/* Detection from the keys of a single file (§7.1); sets fatal for what is not SD1.x. */
static void detect_ldm_family(session *s, const sdt_safetensors *st, const char *path)
{
    sdt_ckpt_report *r = s->r;
    if (any_key_starts(st, "conditioner.embedders.")) {
        int base = any_key_starts(st, "conditioner.embedders.1.model.");
        r->family = base ? SDT_FAMILY_SDXL : SDT_FAMILY_SDXL_REFINER;
        fatal(s, "%s: %s checkpoints are not supported yet (detected by its conditioner.embedders.* keys)",
              path, base ? "SDXL" : "SDXL refiner");
        return;
    }
    comp_state *u = &s->comp[SDT_COMPONENT_UNET];
    if (u->n == 0) {
        refuse_not_a_checkpoint(s, st, path);
        return;
    }
    int sd2 = any_key_starts(st, "cond_stage_model.model.");
    const char *why = "its OpenCLIP text encoder, cond_stage_model.model.*";
    for (size_t i = 0; i < u->n && !sd2; i++) {
        const sdt_st_tensor *t = u->cands[i].t;
        if (ends_with(u->cands[i].name, ".attn2.to_k.weight") && t->ndim == 2 && t->shape[1] == 1024) {
            sd2 = 1;
            why = "cross-attention keys 1024 wide";
        }
    }
    const sdt_st_tensor *conv_in = sdt_safetensors_find(st, SDT_PREFIX_UNET "input_blocks.0.0.weight");
    long long in_ch = conv_in && conv_in->ndim == 4 ? (long long)conv_in->shape[1] : 4;
    if (in_ch == 9) {
        r->family = sd2 ? SDT_FAMILY_SD2_INPAINTING : SDT_FAMILY_SD1_INPAINTING;
        fatal(s, "%s: %s inpainting checkpoints are not supported yet (the UNet takes 9 input channels)",
              path, sd2 ? "SD2.x" : "SD1.x");
        return;
    }
    if (sd2) {
        r->family = SDT_FAMILY_SD2;
        fatal(s, "%s: SD2.x checkpoints are not supported yet (detected by %s)", path, why);
        return;
    }
    if (any_key_starts(st, SDT_PREFIX_UNET "label_emb.")) {
        fatal(s,
              "%s: the UNet has a class/vector embedding (label_emb.*, as SDXL and SD2 unCLIP models do); "
              "not supported yet",
              path);
        return;
    }
    r->family = SDT_FAMILY_SD1;
    if (in_ch != 4)
        fatal(s, "%s: the UNet takes %lld input channels; only 4 (text-to-image) are supported", path, in_ch);
}

/* ---- diffusers folders --------------------------------------------------------------------------------- */

/* Opens the weights of one diffusers model folder (dir/base.safetensors, its fp16 variant, a sharded
 * index, another variant) into component c. Returns 0, or -1 with fatal set. */
static int open_diffusers_weights(session *s, int c, const char *dir, const char *base)
{
    comp_state *cs = &s->comp[c];
    char *path = NULL;
    const char *variants[] = {"", ".fp16"};
    for (size_t v = 0; v < 2 && !path; v++) {
        char *single = sdt_format("%s/%s%s.safetensors", dir, base, variants[v]);
        char *index = sdt_format("%s/%s%s.safetensors.index.json", dir, base, variants[v]);
        if (single && is_file(single))
            path = sdt_strdup(single);
        else if (index && is_file(index))
            path = sdt_strdup(index);
        free(single);
        free(index);
    }
    /* Any other variant (model.bf16.safetensors, ...): the first in name order. */
    DIR *d = path ? NULL : opendir(dir);
    char *best = NULL, *pickle = NULL;
    if (d) {
        struct dirent *e;
        size_t blen = strlen(base);
        while ((e = readdir(d)) != NULL) {
            const char *n = e->d_name;
            if (strncmp(n, base, blen) == 0 && n[blen] == '.' && ends_with(n, ".safetensors") &&
                (!best || strcmp(n, best) < 0)) {
                free(best);
                best = sdt_strdup(n);
            }
            if (!pickle && (ends_with(n, ".bin") || ends_with(n, ".ckpt") || ends_with(n, ".pt")))
                pickle = sdt_strdup(n);
        }
        closedir(d);
    }
    if (!path && best)
        path = sdt_format("%s/%s", dir, best);
    free(best);
    if (!path) {
        if (pickle)
            fatal(s, pickle_hint_folder, dir, pickle, s->path, s->path);
        else
            fatal(s, "%s: no %s.safetensors (nor an fp16 variant or a sharded index) in the folder", dir,
                  base);
        free(pickle);
        return -1;
    }
    free(pickle);

    int rc = 0;
    if (ends_with(path, ".index.json")) {
        char *text = NULL;
        if (read_text_file(s, path, &text, 1) != 0) {
            free(path);
            return -1;
        }
        json_error_t jerr;
        json_t *root = json_loads(text, 0, &jerr);
        free(text);
        json_t *map = root ? json_object_get(root, "weight_map") : NULL;
        if (!json_is_object(map)) {
            fatal(s, "%s: not a sharded-weights index (no \"weight_map\" object)", path);
            json_decref(root);
            free(path);
            return -1;
        }
        /* The distinct shard files, in the order they first appear. */
        const char *shards[MAX_COUNT];
        size_t n_shards = 0;
        const char *key;
        json_t *value;
        json_object_foreach(map, key, value)
        {
            const char *file = json_string_value(value);
            if (!file || strchr(file, '/') || file[0] == '.' || file[0] == '\0') {
                fatal(s, "%s: %s: the shard name must be a plain file name in the folder", path, key);
                rc = -1;
                break;
            }
            size_t k = 0;
            while (k < n_shards && strcmp(shards[k], file) != 0)
                k++;
            if (k == n_shards) {
                if (n_shards == MAX_COUNT) {
                    fatal(s, "%s: more than %d shards", path, MAX_COUNT);
                    rc = -1;
                    break;
                }
                shards[n_shards++] = file;
            }
        }
        for (size_t k = 0; k < n_shards && rc == 0; k++) {
            char *shard = sdt_format("%s/%s", dir, shards[k]);
            long long src = shard ? open_source(s, shard) : -1;
            if (src < 0)
                rc = -1;
            else
                note_file(cs, shard);
            free(shard);
        }
        json_decref(root);
    } else {
        long long src = open_source(s, path);
        if (src < 0)
            rc = -1;
        else
            note_file(cs, path);
    }
    free(path);
    return rc;
}

/* Sorts the keys of every source opened since `first` into component c (diffusers names). */
static void classify_diffusers(session *s, int c, size_t first)
{
    for (size_t src = first; src < s->n_sources && !s->oom; src++) {
        sdt_safetensors *st = s->sources[src].st;
        for (size_t i = 0; i < sdt_safetensors_count(st); i++) {
            const sdt_st_tensor *t = sdt_safetensors_tensor(st, i);
            const char *why = sdt_ckpt_ignore_reason(t->name);
            if (why)
                ignored(s, s->sources[src].path, t->name, why);
            else
                add_candidate(s, c, src, t, t->name, NULL, LAYOUT_DIFFUSERS);
        }
    }
}

/* ---- a VAE from elsewhere ------------------------------------------------------------------------------ */

static int open_vae_source(session *s, const char *path)
{
    comp_state *cs = &s->comp[SDT_COMPONENT_VAE];
    if (is_dir(path)) {
        char *config = sdt_format("%s/config.json", path);
        if (!config || read_text_file(s, config, &cs->config_json, 1) != 0) {
            free(config);
            return -1;
        }
        cs->config_origin = config;
        cs->config_is_file = 1;
        size_t first = s->n_sources;
        if (open_diffusers_weights(s, SDT_COMPONENT_VAE, path, "diffusion_pytorch_model") != 0)
            return -1;
        cs->layout = LAYOUT_DIFFUSERS;
        classify_diffusers(s, SDT_COMPONENT_VAE, first);
        return 0;
    }
    long long src = open_source(s, path);
    if (src < 0)
        return -1;
    sdt_safetensors *st = s->sources[src].st;
    note_file(cs, path);
    int prefixed = any_key_starts(st, SDT_PREFIX_VAE);
    int diffusers = !prefixed && (any_key_contains(st, "down_blocks.") || any_key_contains(st, "mid_block."));
    cs->layout = diffusers ? LAYOUT_DIFFUSERS : LAYOUT_LDM;
    cs->key_prefix = prefixed ? SDT_PREFIX_VAE : "";
    /* A diffusers weights file may sit in its vae/ folder beside config.json. */
    if (diffusers) {
        const char *slash = strrchr(path, '/');
        char *config =
            slash ? sdt_format("%.*s/config.json", (int)(slash - path), path) : sdt_strdup("config.json");
        if (config && is_file(config) && read_text_file(s, config, &cs->config_json, 0) == 0) {
            cs->config_origin = config;
            cs->config_is_file = 1;
        } else {
            free(config);
        }
    }
    const char *meta = sdt_safetensors_metadata(st, "vae_config");
    if (!cs->config_json && meta) {
        cs->config_json = sdt_strdup(meta);
        cs->config_origin = sdt_format("%s: metadata vae_config", path);
    }
    for (size_t i = 0; i < sdt_safetensors_count(st) && !s->oom; i++) {
        const sdt_st_tensor *t = sdt_safetensors_tensor(st, i);
        const char *key = t->name, *rest, *why = sdt_ckpt_ignore_reason(key);
        if (why)
            ignored(s, path, key, why);
        else if (prefixed && starts(key, SDT_PREFIX_VAE, &rest))
            add_candidate(s, SDT_COMPONENT_VAE, (size_t)src, t, rest, NULL, LAYOUT_LDM);
        else if (starts(key, SDT_PREFIX_UNET, NULL) || starts(key, "cond_stage_model.", NULL))
            ignored(s, path, key, "not part of the VAE");
        else
            add_candidate(s, SDT_COMPONENT_VAE, (size_t)src, t, key, NULL, cs->layout);
    }
    return 0;
}

/* ---- config probes ------------------------------------------------------------------------------------- */

static void build_probe_index(session *s, int c)
{
    comp_state *cs = &s->comp[c];
    for (size_t i = 0; i < cs->n; i++)
        if (sdt_name_index_put(&cs->by_name, cs->cands[i].name, i) < 0)
            s->oom = 1;
}

static const sdt_st_tensor *probe(const comp_state *cs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const sdt_st_tensor *probe(const comp_state *cs, const char *fmt, ...)
{
    char name[512];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(name, sizeof name, fmt, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    long long i = sdt_name_index_get(&cs->by_name, name);
    return i >= 0 ? cs->cands[i].t : NULL;
}

/* Dimension d of a probed tensor of rank ndim, if it is a sane size; else -1. */
static long long dim_of(const sdt_st_tensor *t, int ndim, int d, long long max)
{
    if (!t || t->ndim != ndim || d >= ndim || t->shape[d] < 1 || t->shape[d] > max)
        return -1;
    return (long long)t->shape[d];
}

/* Sets *field from the first value >= 1 among the candidates. */
static void set_first(int *field, long long a, long long b, long long c)
{
    if (a > 0)
        *field = (int)a;
    else if (b > 0)
        *field = (int)b;
    else if (c > 0)
        *field = (int)c;
}

static int largest_divisor_at_most(int n, int limit)
{
    for (int g = limit; g > 1; g--)
        if (n % g == 0)
            return g;
    return 1;
}

/* The UNet's shape-given fields from LDM names (§7.2); the rest keep *c's values. */
static void derive_unet(session *s, const comp_state *cs, sdt_unet_config *c)
{
    const sdt_st_tensor *t = probe(cs, "input_blocks.0.0.weight");
    set_first(&c->in_channels, dim_of(t, 4, 1, 64), -1, -1);
    int ch0 = c->block_out_channels[0];
    set_first(&ch0, dim_of(t, 4, 0, MAX_CHANNELS),
              dim_of(probe(cs, "input_blocks.0.0.bias"), 1, 0, MAX_CHANNELS),
              dim_of(probe(cs, "time_embed.0.weight"), 2, 1, MAX_CHANNELS));
    set_first(&c->out_channels, dim_of(probe(cs, "out.2.weight"), 4, 0, 64),
              dim_of(probe(cs, "out.2.bias"), 1, 0, 64), -1);

    /* The first downsampler sits at input_blocks.{layers_per_block + 1} (§7.2). */
    int step = 0;
    for (int n = 2; n <= 17 && !step; n++)
        if (probe(cs, "input_blocks.%d.0.op.weight", n) || probe(cs, "input_blocks.%d.0.op.bias", n))
            step = n;
    int levels = 1;
    if (step) {
        while (probe(cs, "input_blocks.%d.0.op.weight", step * levels) ||
               probe(cs, "input_blocks.%d.0.op.bias", step * levels))
            levels++;
        if (levels > SDT_UNET_MAX_LEVELS) {
            fatal(s, "%s: the UNet has %d levels; at most %d are supported", s->path, levels,
                  SDT_UNET_MAX_LEVELS);
            return;
        }
    } else {
        /* One level and no downsampler: count its resnets. */
        int n = 1;
        while (n < 17 && probe(cs, "input_blocks.%d.0.in_layers.2.weight", n))
            n++;
        step = n > 1 ? n : c->layers_per_block + 1;
        levels = n > 1 ? 1 : c->levels;
    }
    c->layers_per_block = step - 1;
    c->levels = levels;
    int prev = ch0;
    for (int i = 0; i < levels; i++) {
        int first = step * i + 1;
        int ch = prev;
        set_first(&ch, dim_of(probe(cs, "input_blocks.%d.0.in_layers.2.weight", first), 4, 0, MAX_CHANNELS),
                  dim_of(probe(cs, "input_blocks.%d.0.out_layers.3.weight", first), 4, 0, MAX_CHANNELS),
                  dim_of(probe(cs, "input_blocks.%d.0.in_layers.2.bias", first), 1, 0, MAX_CHANNELS));
        c->block_out_channels[i] = ch;
        prev = ch;
        int attention = 0, depth = 0;
        for (int j = 0; j < c->layers_per_block; j++)
            if (probe(cs, "input_blocks.%d.1.norm.weight", first + j) ||
                probe(cs, "input_blocks.%d.1.proj_in.weight", first + j))
                attention = 1;
        if (attention) {
            while (depth < MAX_COUNT &&
                   (probe(cs, "input_blocks.%d.1.transformer_blocks.%d.norm1.weight", first, depth) ||
                    probe(cs, "input_blocks.%d.1.transformer_blocks.%d.attn1.to_q.weight", first, depth)))
                depth++;
            if (depth == 0)
                depth = 1;
        }
        c->level_has_attention[i] = attention;
        c->transformer_depth[i] = depth;
    }
    int mid = 0;
    while (mid < MAX_COUNT && (probe(cs, "middle_block.1.transformer_blocks.%d.norm1.weight", mid) ||
                               probe(cs, "middle_block.1.transformer_blocks.%d.attn1.to_q.weight", mid)))
        mid++;
    c->mid_transformer_depth = mid ? mid : 1;
    /* Context width and projection kind: from the first transformer found. */
    for (size_t i = 0; i < cs->n; i++) {
        const char *name = cs->cands[i].name;
        const sdt_st_tensor *k = cs->cands[i].t;
        if (ends_with(name, ".attn2.to_k.weight") && dim_of(k, 2, 1, MAX_CHANNELS) > 0) {
            c->cross_attention_dim = (int)k->shape[1];
            break;
        }
    }
    for (size_t i = 0; i < cs->n; i++) {
        if (ends_with(cs->cands[i].name, ".proj_in.weight")) {
            c->use_linear_projection = cs->cands[i].t->ndim == 2;
            break;
        }
    }
}

static void derive_clip(const comp_state *cs, sdt_clip_config *c)
{
    const sdt_st_tensor *tok = probe(cs, "text_model.embeddings.token_embedding.weight");
    set_first(&c->vocab_size, dim_of(tok, 2, 0, MAX_VOCAB), -1, -1);
    set_first(&c->width, dim_of(tok, 2, 1, MAX_CHANNELS),
              dim_of(probe(cs, "text_model.final_layer_norm.weight"), 1, 0, MAX_CHANNELS), -1);
    set_first(&c->max_positions,
              dim_of(probe(cs, "text_model.embeddings.position_embedding.weight"), 2, 0, 1 << 16), -1, -1);
    int layers = 0;
    while (layers < MAX_COUNT && (probe(cs, "text_model.encoder.layers.%d.self_attn.q_proj.weight", layers) ||
                                  probe(cs, "text_model.encoder.layers.%d.layer_norm1.weight", layers)))
        layers++;
    if (layers)
        c->layers = layers;
    set_first(&c->mlp_width,
              dim_of(probe(cs, "text_model.encoder.layers.0.mlp.fc1.weight"), 2, 0, MAX_CHANNELS), -1, -1);
    const sdt_st_tensor *proj = probe(cs, "text_projection.weight");
    c->projection_dim = proj ? (int)(dim_of(proj, 2, 0, MAX_CHANNELS) > 0 ? proj->shape[0] : c->width) : 0;
}

static void derive_vae(const comp_state *cs, sdt_vae_config *c)
{
    int diffusers = cs->layout == LAYOUT_DIFFUSERS;
    set_first(&c->in_channels, dim_of(probe(cs, "encoder.conv_in.weight"), 4, 1, 64), -1, -1);
    int levels = 0;
    while (levels < SDT_VAE_MAX_LEVELS) {
        const sdt_st_tensor *t = diffusers
                                     ? probe(cs, "encoder.down_blocks.%d.resnets.0.conv1.weight", levels)
                                     : probe(cs, "encoder.down.%d.block.0.conv1.weight", levels);
        long long ch = dim_of(t, 4, 0, MAX_CHANNELS);
        if (ch < 1)
            break;
        c->block_out_channels[levels++] = (int)ch;
    }
    if (levels)
        c->levels = levels;
    int layers = 0;
    while (layers < MAX_COUNT &&
           (diffusers ? probe(cs, "encoder.down_blocks.0.resnets.%d.conv1.weight", layers)
                      : probe(cs, "encoder.down.0.block.%d.conv1.weight", layers)))
        layers++;
    if (layers)
        c->layers_per_block = layers;
    long long enc_out = dim_of(probe(cs, "encoder.conv_out.weight"), 4, 0, MAX_CHANNELS);
    set_first(&c->latent_channels, dim_of(probe(cs, "decoder.conv_in.weight"), 4, 1, MAX_CHANNELS),
              dim_of(probe(cs, "post_quant_conv.weight"), 4, 0, MAX_CHANNELS),
              enc_out > 0 ? enc_out / 2 : -1);
}

/* The fields shapes cannot tell. */
static void unet_take_hidden(sdt_unet_config *dst, const sdt_unet_config *src)
{
    memcpy(dst->heads, src->heads, sizeof dst->heads);
    dst->mid_heads = src->mid_heads;
    dst->norm_groups = src->norm_groups;
    dst->norm_eps = src->norm_eps;
    dst->transformer_norm_eps = src->transformer_norm_eps;
    dst->prediction = src->prediction;
    dst->addition_time_embed_dim = src->addition_time_embed_dim;
}

static void clip_take_hidden(sdt_clip_config *dst, const sdt_clip_config *src, int ids)
{
    dst->heads = src->heads;
    dst->act = src->act;
    dst->norm_eps = src->norm_eps;
    dst->layout = src->layout;
    if (ids) {
        dst->bos_id = src->bos_id;
        dst->eos_id = src->eos_id;
    }
}

static void vae_take_hidden(sdt_vae_config *dst, const sdt_vae_config *src)
{
    dst->norm_groups = src->norm_groups;
    dst->norm_eps = src->norm_eps;
    dst->scaling_factor = src->scaling_factor;
}

/* Heads that divide the channels and groups that divide every channel count, whatever the hints said. */
static void unet_make_valid(sdt_unet_config *c)
{
    int groups = c->norm_groups >= 1 ? c->norm_groups : 32;
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] % groups != 0)
            groups = largest_divisor_at_most(c->block_out_channels[i], groups);
    c->norm_groups = groups;
    for (int i = 0; i < c->levels; i++) {
        int ch = c->block_out_channels[i];
        if (c->heads[i] < 1 || ch % c->heads[i] != 0)
            c->heads[i] = largest_divisor_at_most(ch, c->heads[i] >= 1 ? c->heads[i] : 8);
    }
    int top = c->block_out_channels[c->levels - 1];
    if (c->mid_heads < 1 || top % c->mid_heads != 0)
        c->mid_heads = largest_divisor_at_most(top, c->mid_heads >= 1 ? c->mid_heads : 8);
}

static void clip_make_valid(sdt_clip_config *c)
{
    if (c->heads < 1 || c->width % c->heads != 0)
        c->heads = c->width % 64 == 0 ? c->width / 64 : largest_divisor_at_most(c->width, 12);
    if (c->bos_id < 0 || c->bos_id >= c->vocab_size || c->eos_id < 0 || c->eos_id >= c->vocab_size) {
        c->bos_id = c->vocab_size >= 2 ? c->vocab_size - 2 : 0;
        c->eos_id = c->vocab_size - 1;
    }
}

static void vae_make_valid(sdt_vae_config *c)
{
    int groups = c->norm_groups >= 1 ? c->norm_groups : 32;
    for (int i = 0; i < c->levels; i++)
        if (c->block_out_channels[i] % groups != 0)
            groups = largest_divisor_at_most(c->block_out_channels[i], groups);
    c->norm_groups = groups;
}

/* The preset whose UNet has the same shapes, or NULL. */
static const sdt_model_arch *preset_for_unet(const sdt_unet_config *c)
{
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        sdt_unet_config tmp = *c;
        unet_take_hidden(&tmp, &p->unet);
        if (sdt_unet_config_diff(&tmp, &p->unet, NULL) == 0)
            return p;
    }
    return NULL;
}

static const sdt_model_arch *preset_for_clip(const sdt_clip_config *c)
{
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        sdt_clip_config tmp = *c;
        clip_take_hidden(&tmp, &p->text_encoder, 0);
        if (sdt_clip_config_diff(&tmp, &p->text_encoder, 1, NULL) == 0)
            return p;
    }
    return NULL;
}

static const sdt_model_arch *preset_for_vae(const sdt_vae_config *c)
{
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        sdt_vae_config tmp = *c;
        vae_take_hidden(&tmp, &p->vae);
        if (sdt_vae_config_diff(&tmp, &p->vae, NULL) == 0)
            return p;
    }
    return NULL;
}

/* Parses a component's config hint (file metadata) for its hidden fields; a bad hint is not an error, the
 * other sources take over. */
static int hint_unet(const comp_state *cs, sdt_unet_config *out)
{
    char *err = NULL;
    int ok = cs->config_json &&
             sdt_unet_config_from_json(cs->config_json, cs->config_origin, out, NULL, &err) == 0;
    free(err);
    return ok;
}

static int hint_clip(const comp_state *cs, sdt_clip_config *out)
{
    char *err = NULL;
    int ok = cs->config_json &&
             sdt_clip_config_from_json(cs->config_json, cs->config_origin, out, NULL, &err) == 0;
    free(err);
    return ok;
}

static int hint_vae(const comp_state *cs, sdt_vae_config *out)
{
    char *err = NULL;
    int ok =
        cs->config_json && sdt_vae_config_from_json(cs->config_json, cs->config_origin, out, NULL, &err) == 0;
    free(err);
    return ok;
}

/* Configs of a single-file checkpoint (and of a VAE given on its own) from shapes and hints. The VAE and
 * text encoder only when want_text / want_vae: a diffusers folder has config.json files for them. */
static void derive_configs(session *s, sdt_model_arch *arch, int want_unet, int want_text, int want_vae)
{
    const sdt_model_arch *sd15 = sdt_model_arch_find("sd15");
    comp_state *cu = &s->comp[SDT_COMPONENT_UNET], *ct = &s->comp[SDT_COMPONENT_TEXT_ENCODER],
               *cv = &s->comp[SDT_COMPONENT_VAE];
    if (want_unet) {
        sdt_unet_config hint;
        arch->unet = sd15->unet;
        derive_unet(s, cu, &arch->unet);
        if (s->r->fatal)
            return;
        const sdt_model_arch *pu = preset_for_unet(&arch->unet);
        if (hint_unet(cu, &hint))
            unet_take_hidden(&arch->unet, &hint);
        else if (pu)
            unet_take_hidden(&arch->unet, &pu->unet);
        arch->unet.prediction = s->prediction;
        unet_make_valid(&arch->unet);
    }
    /* An absent component takes the configuration of the preset the UNet matches. */
    const sdt_model_arch *pu = preset_for_unet(&arch->unet);
    const sdt_model_arch *fallback = pu ? pu : sd15;

    if (want_text && ct->n) {
        sdt_clip_config th;
        arch->text_encoder = fallback->text_encoder;
        derive_clip(ct, &arch->text_encoder);
        const sdt_model_arch *pt = preset_for_clip(&arch->text_encoder);
        if (hint_clip(ct, &th))
            clip_take_hidden(&arch->text_encoder, &th, 1);
        else if (pt)
            clip_take_hidden(&arch->text_encoder, &pt->text_encoder,
                             arch->text_encoder.vocab_size == pt->text_encoder.vocab_size);
        else
            arch->text_encoder.bos_id = -1; /* the vocabulary's last two ids, below */
        clip_make_valid(&arch->text_encoder);
    } else if (want_text) {
        arch->text_encoder = fallback->text_encoder;
    }

    if (want_vae && cv->n && cv->config_json && cv->config_is_file) {
        char *err = NULL, *uns = NULL;
        if (sdt_vae_config_from_json(cv->config_json, cv->config_origin, &arch->vae, &uns, &err) != 0)
            fatal(s, "%s", err);
        else if (uns)
            fatal(s, "%s", uns);
        free(err);
        free(uns);
    } else if (want_vae && cv->n) {
        sdt_vae_config vh;
        arch->vae = fallback->vae;
        derive_vae(cv, &arch->vae);
        const sdt_model_arch *pv = preset_for_vae(&arch->vae);
        if (hint_vae(cv, &vh))
            vae_take_hidden(&arch->vae, &vh);
        else if (pv)
            vae_take_hidden(&arch->vae, &pv->vae);
        vae_make_valid(&arch->vae);
    } else if (want_vae) {
        arch->vae = fallback->vae;
    }
}

/* Names the arch after the preset it matches (the vocabulary aside) and notes the differences. */
static void name_arch(sdt_model *m)
{
    const sdt_model_arch *best = NULL;
    int best_diffs = 1 << 30;
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        int d = sdt_unet_config_diff(&m->arch.unet, &p->unet, NULL) +
                sdt_clip_config_diff(&m->arch.text_encoder, &p->text_encoder, 1, NULL) +
                sdt_vae_config_diff(&m->arch.vae, &p->vae, NULL);
        if (d < best_diffs) {
            best = p;
            best_diffs = d;
        }
    }
    sdt_buf notes;
    sdt_buf_init(&notes);
    if (best && best_diffs == 0) {
        m->arch.name = best->name;
        m->arch.description = best->description;
        m->arch.clip_skip_default = best->clip_skip_default;
        sdt_clip_config_diff(&m->arch.text_encoder, &best->text_encoder, 0, &notes);
    } else {
        m->arch.name = "sd1-custom";
        m->arch.description = "an SD1.x-family model of its own size";
        if (best) {
            sdt_buf_printf(&notes, "closest preset %s: ", best->name);
            sdt_buf parts[3];
            for (int k = 0; k < 3; k++)
                sdt_buf_init(&parts[k]);
            sdt_unet_config_diff(&m->arch.unet, &best->unet, &parts[0]);
            sdt_clip_config_diff(&m->arch.text_encoder, &best->text_encoder, 0, &parts[1]);
            sdt_vae_config_diff(&m->arch.vae, &best->vae, &parts[2]);
            int any = 0;
            for (int k = 0; k < 3; k++) {
                if (parts[k].len) {
                    sdt_buf_printf(&notes, "%s%s", any ? ", " : "", parts[k].data);
                    any = 1;
                }
                sdt_buf_free(&parts[k]);
            }
        }
    }
    m->arch.pad_id = m->arch.text_encoder.eos_id; /* SD1.x pads with the end-of-text token */
    m->arch_notes = notes.len ? sdt_buf_take(&notes) : NULL;
    sdt_buf_free(&notes);
}

/* ---- matching ------------------------------------------------------------------------------------------ */

/* The key a table entry has (or would have) in a file of component c laid out as lay. */
static void expected_key(const session *s, int c, size_t i, layout lay, char *out, size_t size)
{
    const comp_state *cs = &s->comp[c];
    const sdt_param_table *t = sdt_model_table_const(s->m, c);
    if (lay == LAYOUT_DIFFUSERS)
        snprintf(out, size, "%s", cs->km.diffusers[i]);
    else
        snprintf(out, size, "%s%s", cs->key_prefix, t->items[i].name);
}

static void expected_shape(const session *s, int c, size_t i, layout lay, char *out, size_t size)
{
    const comp_state *cs = &s->comp[c];
    const sdt_param *p = &sdt_model_table_const(s->m, c)->items[i];
    if (lay == LAYOUT_DIFFUSERS)
        shape_text(out, size, cs->km.diffusers_ndim[i], cs->km.diffusers_shape[i]);
    else
        shape_text(out, size, p->file_ndim, p->file_shape);
}

static int same_shape(int ndim, const int64_t *a, const sdt_st_tensor *t)
{
    if (t->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (a[d] != t->shape[d])
            return 0;
    return 1;
}

/* A tensor fits entry p when it has the file shape of its layout; 1x1 convolutions that the engine runs as
 * linear layers may be [OC, C, 1, 1] or [OC, C] in either layout (the same memory). */
static int shape_fits(const comp_state *cs, const sdt_param *p, size_t i, layout lay, const sdt_st_tensor *t)
{
    if (lay == LAYOUT_DIFFUSERS ? same_shape(cs->km.diffusers_ndim[i], cs->km.diffusers_shape[i], t)
                                : same_shape(p->file_ndim, p->file_shape, t))
        return 1;
    if (p->kind == SDT_PARAM_LINEAR_WEIGHT && p->ndim == 2 && p->file_ndim == 4) {
        int64_t four[4] = {p->shape[0], p->shape[1], 1, 1};
        return same_shape(2, p->shape, t) || same_shape(4, four, t);
    }
    return 0;
}

static void match_component(session *s, int c)
{
    comp_state *cs = &s->comp[c];
    sdt_param_table *t = sdt_model_table(s->m, c);
    sdt_ckpt_component *rc = &s->r->components[c];
    rc->tensors = t->count;
    rc->parameters = sdt_param_table_numel(t);
    rc->source = cs->files.len ? sdt_strdup(cs->files.data) : NULL;
    cs->match = malloc((t->count ? t->count : 1) * sizeof *cs->match);
    if (!cs->match) {
        s->oom = 1;
        return;
    }
    for (size_t i = 0; i < t->count; i++)
        cs->match[i] = -1;
    char *err = NULL;
    if (sdt_keymap_build(&cs->km, t, &s->m->arch, &err) != 0) {
        fatal(s, "%s", err ? err : "out of memory");
        free(err);
        return;
    }
    cs->km_built = 1;
    const char *main_file = cs->n ? s->sources[cs->cands[0].source].path : s->path;
    if (cs->n == 0) {
        static const char *const what[] = {"UNet", "text encoder", "VAE"};
        if (strcmp(s->r->format, "ldm") == 0)
            problem(s, SDT_PROBLEM_MISSING_COMPONENT, c, main_file, NULL, "file %s: no %s tensors (%s*)%s",
                    main_file, what[c], cs->key_prefix,
                    c == SDT_COMPONENT_VAE ? "; give a VAE with --vae" : "");
        else
            problem(s, SDT_PROBLEM_MISSING_COMPONENT, c, main_file, NULL,
                    "%s: no %s (the %s/ folder is missing)%s", s->path, what[c], sdt_component_name(c),
                    c == SDT_COMPONENT_VAE ? "; give a VAE with --vae" : "");
        return;
    }
    char shape[96], want[96], key[600];
    for (size_t k = 0; k < cs->n && !s->oom; k++) {
        const candidate *cand = &cs->cands[k];
        const char *file = s->sources[cand->source].path;
        long long i = -1;
        if (cand->layout == LAYOUT_LDM) {
            sdt_param *p = sdt_param_find(t, cand->name);
            i = p ? p - t->items : -1;
        } else {
            i = sdt_keymap_find(&cs->km, cand->name);
        }
        shape_text(shape, sizeof shape, cand->t->ndim, cand->t->shape);
        if (i < 0) {
            problem(s, SDT_PROBLEM_UNEXPECTED, c, file, cand->t->name, "file %s: unexpected tensor %s %s %s",
                    file, cand->t->name, shape, sdt_dtype_name(cand->t->dtype));
        } else if (cs->match[i] >= 0) {
            const candidate *first = &cs->cands[cs->match[i]];
            problem(s, SDT_PROBLEM_DUPLICATE, c, file, cand->t->name, "file %s: %s and %s are both %s%s",
                    file, first->t->name, cand->t->name, t->prefix, t->items[i].name);
        } else {
            cs->match[i] = (long long)k;
        }
    }
    layout missing_layout = cs->cands[0].layout;
    for (size_t i = 0; i < t->count && !s->oom; i++) {
        const sdt_param *p = &t->items[i];
        if (cs->match[i] < 0) {
            expected_key(s, c, i, missing_layout, key, sizeof key);
            expected_shape(s, c, i, missing_layout, want, sizeof want);
            problem(s, SDT_PROBLEM_MISSING, c, main_file, key, "file %s: missing tensor %s %s", main_file,
                    key, want);
            continue;
        }
        const candidate *cand = &cs->cands[cs->match[i]];
        const char *file = s->sources[cand->source].path;
        if (!sdt_dtype_is_compute(cand->t->dtype)) {
            problem(s, SDT_PROBLEM_DTYPE, c, file, cand->t->name,
                    "file %s: %s has dtype %s; expected F32, F16 or BF16", file, cand->t->name,
                    sdt_dtype_name(cand->t->dtype));
        } else if (!shape_fits(cs, p, i, cand->layout, cand->t)) {
            shape_text(shape, sizeof shape, cand->t->ndim, cand->t->shape);
            expected_shape(s, c, i, cand->layout, want, sizeof want);
            problem(s, SDT_PROBLEM_SHAPE, c, file, cand->t->name, "file %s: %s is %s, expected %s", file,
                    cand->t->name, shape, want);
        } else {
            rc->found++;
            rc->dtypes[cand->t->dtype]++;
        }
    }
}

/* ---- values -------------------------------------------------------------------------------------------- */

static int read_values(session *s, sdt_engine *e)
{
    char *err = NULL;
    sdt_dtype dtype = s->opt.dtype;
    if (sdt_model_alloc(e, s->m, dtype, &err) != 0) {
        fatal(s, "%s: %s", s->path, err ? err : "cannot allocate the model");
        free(err);
        return -1;
    }
    int on_cpu = sdt_engine_device(e) == SDT_DEVICE_CPU;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        comp_state *cs = &s->comp[c];
        sdt_param_table *t = sdt_model_table(s->m, c);
        for (size_t i = 0; i < t->count; i++) {
            sdt_param *p = &t->items[i];
            const sdt_st_tensor *src = cs->cands[cs->match[i]].t;
            size_t n = (size_t)sdt_param_numel(p), bytes = sdt_tensor_bytes(&p->value);
            void *dst = on_cpu ? p->value.data : malloc(bytes ? bytes : 1); /* [numel] engine layout */
            float *tmp = NULL, *perm = NULL;
            int permute = p->kind == SDT_PARAM_CONV_WEIGHT;
            if (permute) {
                tmp = malloc((n ? n : 1) * sizeof *tmp);   /* [numel] file layout */
                perm = malloc((n ? n : 1) * sizeof *perm); /* [numel] engine layout */
            }
            int ok = dst && (!permute || (tmp && perm)), upload_failed = 0;
            if (ok && !permute) {
                ok = sdt_convert(dst, p->value.dtype, src->data, src->dtype, n) == 0;
            } else if (ok) {
                ok = sdt_convert(tmp, SDT_F32, src->data, src->dtype, n) == 0;
                index_walk w;
                index_walk_start(&w, p, 0);
                for (size_t f = 0; ok && f < n; f++, index_walk_next(&w))
                    perm[index_walk_engine(&w)] = tmp[f];
                ok = ok && sdt_convert(dst, p->value.dtype, perm, SDT_F32, n) == 0;
            }
            if (ok && !on_cpu && sdt_engine_upload(e, &p->value, dst, bytes) != 0) {
                fatal(s, "%s: %s: %s", s->path, src->name, sdt_engine_error(e));
                upload_failed = 1;
            }
            free(tmp);
            free(perm);
            if (!on_cpu)
                free(dst);
            if (upload_failed)
                return -1;
            if (!ok) {
                fatal(s, "%s: %s: out of memory reading the tensor", s->path, src->name);
                return -1;
            }
        }
    }
    s->m->has_values = 1;
    return 0;
}

/* ---- the two layouts ----------------------------------------------------------------------------------- */

static sdt_prediction prediction_of(const char *value)
{
    return value && (strcmp(value, "v") == 0 || strcmp(value, "v_prediction") == 0) ? SDT_PREDICT_V
                                                                                    : SDT_PREDICT_EPSILON;
}

static void load_single(session *s)
{
    long long src = open_source(s, s->path);
    if (src < 0)
        return;
    s->r->format = "ldm";
    sdt_safetensors *st = s->sources[src].st;
    classify_ldm(s, (size_t)src, s->opt.vae_path != NULL);
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        if (c != SDT_COMPONENT_VAE || !s->opt.vae_path)
            note_file(&s->comp[c], s->path);
    detect_ldm_family(s, st, s->path);
    if (s->r->fatal)
        return;
    /* What the shapes cannot tell, when the writer recorded its configs (sdtune does; so do the fixture
     * scripts): diffusers-style config JSON in the metadata. */
    static const char *const meta_keys[] = {"unet_config", "text_encoder_config", "vae_config"};
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        const char *json = sdt_safetensors_metadata(st, meta_keys[c]);
        if (json && !(c == SDT_COMPONENT_VAE && s->opt.vae_path)) {
            s->comp[c].config_json = sdt_strdup(json);
            s->comp[c].config_origin = sdt_format("%s: metadata %s", s->path, meta_keys[c]);
        }
    }
    s->prediction = prediction_of(sdt_safetensors_metadata(st, "modelspec.prediction_type"));
    if (s->opt.vae_path)
        open_vae_source(s, s->opt.vae_path);
}

/* config.json of a component folder; 0 when read, -1 when absent (fatal when unreadable). */
static int read_component_config(session *s, int c, const char *dir)
{
    comp_state *cs = &s->comp[c];
    char *path = sdt_format("%s/config.json", dir);
    if (!path || !is_file(path)) {
        fatal(s, "%s: no config.json in the folder", dir);
        free(path);
        return -1;
    }
    if (read_text_file(s, path, &cs->config_json, 1) != 0) {
        free(path);
        return -1;
    }
    cs->config_origin = path;
    cs->config_is_file = 1;
    return 0;
}

/* Refuses what the tables cannot express from a folder's configs (sd_arch_spec §7.1 by config values). */
static void detect_diffusers_family(session *s, const sdt_unet_config *u, const sdt_clip_config *t,
                                    int have_text)
{
    sdt_ckpt_report *r = s->r;
    if (u->adm_in_channels > 0 || u->cross_attention_dim == 2048) {
        r->family = SDT_FAMILY_SDXL;
        fatal(s,
              "%s: SDXL models are not supported yet (the UNet has added conditioning / a 2048-wide context)",
              s->path);
        return;
    }
    int sd2 = u->cross_attention_dim == 1024 || (have_text && t->width == 1024);
    if (u->in_channels == 9) {
        r->family = sd2 ? SDT_FAMILY_SD2_INPAINTING : SDT_FAMILY_SD1_INPAINTING;
        fatal(s, "%s: %s inpainting models are not supported yet (the UNet takes 9 input channels)", s->path,
              sd2 ? "SD2.x" : "SD1.x");
        return;
    }
    if (sd2) {
        r->family = SDT_FAMILY_SD2;
        fatal(s, "%s: SD2.x models are not supported yet (1024-wide text encoder / cross-attention)",
              s->path);
        return;
    }
    r->family = SDT_FAMILY_SD1;
    if (u->in_channels != 4)
        fatal(s, "%s: the UNet takes %d input channels; only 4 (text-to-image) are supported", s->path,
              u->in_channels);
}

static void load_folder(session *s, sdt_model_arch *arch)
{
    sdt_ckpt_report *r = s->r;
    r->format = "diffusers";
    const char *path = s->path;
    char *index = sdt_format("%s/model_index.json", path);
    char *sub[SDT_COMPONENT_COUNT];
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        sub[c] = sdt_format("%s/%s", path, sdt_component_name(c));
    char *te2 = sdt_format("%s/text_encoder_2", path);
    char *text = NULL;
    if (!index || !sub[0] || !sub[1] || !sub[2] || !te2) {
        s->oom = 1;
        goto done;
    }
    if (is_file(index) && read_text_file(s, index, &text, 0) == 0) {
        json_t *root = json_loads(text, 0, NULL);
        const char *cls = json_string_value(json_object_get(root, "_class_name"));
        if (cls && strstr(cls, "XL")) {
            r->family = SDT_FAMILY_SDXL;
            fatal(s, "%s: SDXL models are not supported yet (model_index.json names %s)", path, cls);
        }
        json_decref(root);
        if (r->fatal)
            goto done;
    }
    if (is_dir(te2)) {
        r->family = SDT_FAMILY_SDXL;
        fatal(s,
              "%s: SDXL models are not supported yet (the folder has a second text encoder, text_encoder_2/)",
              path);
        goto done;
    }
    if (!is_dir(sub[SDT_COMPONENT_UNET])) {
        char *config = sdt_format("%s/config.json", path);
        if (config && is_file(config))
            fatal(s,
                  "%s is one component's folder (it has a config.json); open the model folder above it, "
                  "the one with unet/, text_encoder/ and vae/ (a VAE folder goes with --vae)",
                  path);
        else
            fatal(s, "%s: not a diffusers model folder (no unet/ in it)", path);
        free(config);
        goto done;
    }
    int have[SDT_COMPONENT_COUNT];
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        have[c] = is_dir(sub[c]) && !(c == SDT_COMPONENT_VAE && s->opt.vae_path);
        if (have[c] && read_component_config(s, c, sub[c]) != 0)
            goto done;
    }
    /* Configs first: the family decides whether the rest is worth reading. */
    char *err = NULL, *uns[SDT_COMPONENT_COUNT] = {NULL, NULL, NULL};
    const sdt_model_arch *sd15 = sdt_model_arch_find("sd15");
    *arch = *sd15;
    int rc = sdt_unet_config_from_json(s->comp[0].config_json, s->comp[0].config_origin, &arch->unet, &uns[0],
                                       &err);
    if (rc == 0 && have[1])
        rc = sdt_clip_config_from_json(s->comp[1].config_json, s->comp[1].config_origin, &arch->text_encoder,
                                       &uns[1], &err);
    if (rc == 0 && have[2])
        rc = sdt_vae_config_from_json(s->comp[2].config_json, s->comp[2].config_origin, &arch->vae, &uns[2],
                                      &err);
    if (rc != 0)
        fatal(s, "%s", err ? err : "cannot parse the config");
    else
        detect_diffusers_family(s, &arch->unet, &arch->text_encoder, have[1]);
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        if (uns[c])
            fatal(s, "%s", uns[c]);
        free(uns[c]);
    }
    free(err);
    if (r->fatal)
        goto done;
    /* Components that are absent take the preset the UNet matches. */
    const sdt_model_arch *pu = preset_for_unet(&arch->unet);
    if (!have[1])
        arch->text_encoder = (pu ? pu : sd15)->text_encoder;
    if (!have[2] && !s->opt.vae_path)
        arch->vae = (pu ? pu : sd15)->vae;

    static const char *const weights[] = {"diffusion_pytorch_model", "model", "diffusion_pytorch_model"};
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        if (!have[c])
            continue;
        size_t first = s->n_sources;
        if (open_diffusers_weights(s, c, sub[c], weights[c]) != 0)
            goto done;
        s->comp[c].layout = LAYOUT_DIFFUSERS;
        classify_diffusers(s, c, first);
    }
    char *sched = sdt_format("%s/scheduler/scheduler_config.json", path), *sched_text = NULL;
    if (sched && is_file(sched) && read_text_file(s, sched, &sched_text, 0) == 0) {
        json_t *root = json_loads(sched_text, 0, NULL);
        s->prediction = prediction_of(json_string_value(json_object_get(root, "prediction_type")));
        json_decref(root);
    }
    free(sched);
    free(sched_text);
    arch->unet.prediction = s->prediction;
    if (s->opt.vae_path && open_vae_source(s, s->opt.vae_path) == 0) {
        build_probe_index(s, SDT_COMPONENT_VAE);
        derive_configs(s, arch, 0, 0, 1);
    }
done:
    free(index);
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        free(sub[c]);
    free(te2);
    free(text);
}

/* The error message: the fatal reason, or the problems (capped) with their count. */
static char *summarize(const session *s)
{
    const sdt_ckpt_report *r = s->r;
    if (s->oom)
        return sdt_format("%s: out of memory", s->path);
    if (r->fatal)
        return sdt_strdup(r->fatal);
    size_t count[6] = {0};
    for (size_t i = 0; i < r->n_problems; i++)
        count[r->problems[i].kind]++;
    sdt_buf b;
    sdt_buf_init(&b);
    sdt_buf_printf(&b, "%s: %zu problem%s:", s->path, r->n_problems, r->n_problems == 1 ? "" : "s");
    const char *sep = " ";
    for (int k = 0; k < 6; k++) {
        if (count[k]) {
            sdt_buf_printf(&b, "%s%zu %s", sep, count[k], sdt_problem_kind_name((sdt_problem_kind)k));
            sep = ", ";
        }
    }
    for (size_t i = 0; i < r->n_problems && i < ERROR_LIST_CAP; i++)
        sdt_buf_printf(&b, "\n  %s", r->problems[i].message);
    if (r->n_problems > ERROR_LIST_CAP)
        sdt_buf_printf(&b, "\n  ... and %zu more", r->n_problems - ERROR_LIST_CAP);
    return sdt_buf_take(&b);
}

int sdt_model_load(sdt_engine *e, const char *path, const sdt_model_load_options *options, sdt_model *m,
                   sdt_ckpt_report *report, char **error)
{
    memset(m, 0, sizeof *m);
    sdt_ckpt_report local;
    session s;
    memset(&s, 0, sizeof s);
    s.path = path;
    if (options)
        s.opt = *options;
    s.r = report ? report : &local;
    memset(s.r, 0, sizeof *s.r);
    s.m = m;
    s.comp[SDT_COMPONENT_UNET].key_prefix = SDT_PREFIX_UNET;
    s.comp[SDT_COMPONENT_TEXT_ENCODER].key_prefix = SDT_PREFIX_CLIP_L;
    s.comp[SDT_COMPONENT_VAE].key_prefix = SDT_PREFIX_VAE;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        sdt_name_index_init(&s.comp[c].by_name);
        sdt_buf_init(&s.comp[c].files);
    }

    sdt_model_arch arch = *sdt_model_arch_find("sd15");
    struct stat st;
    if (s.opt.dtype != SDT_F32 && s.opt.dtype != SDT_F16 && s.opt.dtype != SDT_BF16) {
        fatal(&s, "%s: models load as F32, F16 or BF16, not %s", path, sdt_dtype_name(s.opt.dtype));
    } else if (!s.opt.header_only && !e) {
        fatal(&s, "%s: loading values needs an engine", path);
    } else if (stat(path, &st) != 0) {
        fatal(&s, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        load_folder(&s, &arch);
    } else {
        load_single(&s);
        for (int c = 0; c < SDT_COMPONENT_COUNT && !s.r->fatal; c++)
            build_probe_index(&s, c);
        if (!s.r->fatal && !s.oom)
            derive_configs(&s, &arch, 1, 1, 1);
    }
    if (!s.r->fatal && !s.oom) {
        char *err = NULL;
        if (sdt_model_init(m, &arch, &err) != 0) {
            fatal(&s, "%s: the configuration read from the files does not make a model: %s", path,
                  err ? err : "?");
            free(err);
        } else {
            m->family = s.r->family;
            name_arch(m);
            const sdt_clip_config *tc = &m->arch.text_encoder;
            if (s.comp[SDT_COMPONENT_TEXT_ENCODER].n && s.comp[SDT_COMPONENT_UNET].n &&
                tc->width != m->arch.unet.cross_attention_dim)
                fatal(&s, "%s: the text encoder is %d wide but the UNet's cross-attention takes %d", path,
                      tc->width, m->arch.unet.cross_attention_dim);
        }
    }
    for (int c = 0; c < SDT_COMPONENT_COUNT && !s.r->fatal && !s.oom; c++)
        match_component(&s, c);
    int rc = -1;
    if (!s.r->fatal && !s.oom && s.r->n_problems == 0)
        rc = s.opt.header_only ? 0 : read_values(&s, e);
    if (rc != 0)
        *error = summarize(&s);
    session_free(&s);
    if (!report)
        sdt_ckpt_report_free(&local);
    return rc;
}
