/* Locating and opening a model's files: single safetensors files, the diffusers folder layout (component
 * folders, their config.json, fp16 and other variants, sharded indexes), a VAE given on its own (a file or
 * a folder), and the refusal of PyTorch pickles. Every key opened is sorted into a component, the ignored
 * extras or the unexpected rest. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint_internal.h"
#include "sdtune/atomic_file.h"

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
long long open_source(session *s, const char *path)
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

void note_file(comp_state *cs, const char *path)
{
    if (cs->files.len)
        sdt_buf_puts(&cs->files, ", ");
    sdt_buf_puts(&cs->files, path);
}

int read_text_file(session *s, const char *path, char **text, int required)
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

int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- single-file checkpoints --------------------------------------------------------------------------- */

static const char *replaced_reason = "replaced by the --vae file";

void classify_ldm(session *s, size_t src, int vae_replaced)
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

/* ---- diffusers folders --------------------------------------------------------------------------------- */

/* Opens the weights of one diffusers model folder (dir/base.safetensors, its fp16 variant, a sharded
 * index, another variant) into component c. Returns 0, or -1 with fatal set. */
int open_diffusers_weights(session *s, int c, const char *dir, const char *base)
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
void classify_diffusers(session *s, int c, size_t first)
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

int open_vae_source(session *s, const char *path)
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

/* ---- component folders --------------------------------------------------------------------------------- */

/* config.json of a component folder; 0 when read, -1 when absent (fatal when unreadable). */
int read_component_config(session *s, int c, const char *dir)
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
