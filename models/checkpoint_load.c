/* Loading a model: a single-file (LDM) safetensors checkpoint or a diffusers folder, optionally with a VAE
 * from elsewhere.
 *
 * 1. Sources: the files are opened (mapped and validated; nothing is read yet) and every key is sorted
 *    into a component (with its name inside that component), the known extra keys (ignored), or the rest
 *    (checkpoint_files.c).
 * 2. Family: names and shapes say what the model is (sd_arch_spec §7.1); what the tables cannot express
 *    yet (SD2, SDXL, inpainting) is refused here with what was detected (checkpoint_detect.c).
 * 3. Configs: from the shapes of the tensors (channels, levels, depths, widths, vocabulary), plus what
 *    shapes cannot tell (heads, norm groups, token ids) from the config JSON the file carries, or from the
 *    preset of the same topology, or SD1.x's values. A diffusers folder has its config.json files
 *    (checkpoint_detect.c).
 * 4. Tables are built from the configs and every tensor is matched: missing, unexpected, misshapen,
 *    duplicated and badly typed tensors are all reported, each with its file and key.
 * 5. Values (unless header-only): allocated on the engine, converted to the requested dtype, conv weights
 *    permuted to [OC, KH, KW, C].
 *
 * This file holds the session and its report, the matching (4), the values (5), the two layouts' order of
 * steps and sdt_model_load. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint_internal.h"

/* How many problems the error message lists (the report keeps all of them). */
#define ERROR_LIST_CAP 25

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

/* ---- session ----------------------------------------------------------------------------------------- */

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

/* ---- report -------------------------------------------------------------------------------------------- */

void fatal(session *s, const char *fmt, ...)
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

void problem(session *s, sdt_problem_kind kind, int comp, const char *file, const char *key, const char *fmt,
             ...)
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

void ignored(session *s, const char *file, const char *key, const char *reason)
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
    int failed = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT && !failed; c++) {
        sdt_param_table *table = sdt_model_table(s->m, c);
        table->f8_weights = (s->opt.f8_components >> c) & 1u;
        int f32 = (c == SDT_COMPONENT_VAE && s->opt.vae_f32) || ((s->opt.f32_components >> c) & 1u);
        failed = sdt_param_table_alloc(e, table, f32 ? SDT_F32 : dtype, &err) != 0;
    }
    if (failed) {
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
            /* An F8 weight is quantised from its fp32 values (its scale needs all of them first). */
            int through_f32 = permute || p->value.dtype == SDT_F8_E4M3;
            if (through_f32) {
                tmp = malloc((n ? n : 1) * sizeof *tmp);   /* [numel] file layout */
                perm = malloc((n ? n : 1) * sizeof *perm); /* [numel] engine layout */
            }
            int ok = dst && (!through_f32 || (tmp && perm)), upload_failed = 0;
            if (ok && !through_f32) {
                ok = sdt_convert(dst, p->value.dtype, src->data, src->dtype, n) == 0;
            } else if (ok) {
                ok = sdt_convert(tmp, SDT_F32, src->data, src->dtype, n) == 0;
                if (permute) {
                    index_walk w;
                    index_walk_start(&w, p, 0);
                    for (size_t f = 0; ok && f < n; f++, index_walk_next(&w))
                        perm[index_walk_engine(&w)] = tmp[f];
                } else if (ok) {
                    memcpy(perm, tmp, n * sizeof *perm);
                }
                ok = ok && sdt_param_encode(p, dst, perm, n) == 0;
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
            r->family = SDT_MODEL_FAMILY_SDXL;
            fatal(s, "%s: SDXL models are not supported yet (model_index.json names %s)", path, cls);
        }
        json_decref(root);
        if (r->fatal)
            goto done;
    }
    if (is_dir(te2)) {
        r->family = SDT_MODEL_FAMILY_SDXL;
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
