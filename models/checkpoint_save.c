/* Saving a model: one single-file (LDM) safetensors checkpoint, or a diffusers folder. Tensor data is
 * streamed through the safetensors writer's fill callback, converted to the stored dtype and permuted back
 * to the file layout one chunk at a time, so nothing is held twice in memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint_internal.h"
#include "keymap.h"
#include "sdtune/atomic_file.h"
#include "sdtune/safetensors.h"

/* Where values come from: the tables (through the engine) or the random initialiser. */
typedef struct save_source {
    sdt_engine *e; /* NULL: generate from seed */
    uint64_t seed;
    char *error; /* the first failure of a fill callback (the writer's own message is generic) */
} save_source;

/* The safetensors writer asks for at most 1 MiB at a time: 256 Ki F32 elements or 512 Ki F16 ones. */
enum { MAX_FILL_ELEMENTS = (1 << 20) / 2 };

typedef struct tensor_fill {
    save_source *src;
    const sdt_param *p;
    int component;
    size_t index;
    sdt_dtype dtype; /* stored */
    uint64_t nbytes; /* stored */
    float *scratch;  /* [MAX_FILL_ELEMENTS], shared by all tensors of a file */
    /* The table's values on the host, fetched at the first chunk and dropped after the last. */
    const void *host;
    void *owned;
} tensor_fill;

/* Element i of a value as the engine holds it (an F8_E4M3 weight dequantised with its scale). */
static float host_value(const void *host, const sdt_tensor *value, uint64_t i)
{
    switch (value->dtype) {
    case SDT_F16: return sdt_f16_to_f32(((const uint16_t *)host)[i]);
    case SDT_BF16: return sdt_bf16_to_f32(((const uint16_t *)host)[i]);
    case SDT_F8_E4M3: return sdt_f8e4m3_to_f32(((const uint8_t *)host)[i]) * sdt_tensor_scale(value);
    default: return ((const float *)host)[i];
    }
}

static int fill_tensor(void *ctx, uint64_t offset, void *buf, size_t len)
{
    tensor_fill *f = ctx;
    const sdt_param *p = f->p;
    size_t es = sdt_dtype_bits(f->dtype) / 8;
    if (offset % es != 0 || len % es != 0 || len / es > MAX_FILL_ELEMENTS) {
        if (!f->src->error)
            f->src->error = sdt_format("%s: unexpected chunk of %zu bytes at %llu", p->name, len,
                                       (unsigned long long)offset);
        return -1;
    }
    if (f->src->e && !f->host) {
        sdt_engine *e = f->src->e;
        if (!p->value.data) {
            if (!f->src->error)
                f->src->error =
                    sdt_format("%s has no value (the model was not loaded or initialised)", p->name);
            return -1;
        }
        if (sdt_engine_device(e) == SDT_DEVICE_CPU) {
            f->host = p->value.data;
        } else {
            size_t bytes = sdt_tensor_bytes(&p->value);
            if (!(f->owned = malloc(bytes ? bytes : 1)) ||
                sdt_engine_download(e, f->owned, &p->value, bytes) != 0) {
                if (!f->src->error)
                    f->src->error = sdt_format("%s: cannot read the value: %s", p->name,
                                               f->owned ? sdt_engine_error(e) : "out of memory");
                free(f->owned);
                f->owned = NULL;
                return -1;
            }
            f->host = f->owned;
        }
    }
    uint64_t first = offset / es;
    int64_t n = (int64_t)(len / es);
    float *out = f->scratch; /* [n] file layout */
    if (f->src->e) {
        index_walk w;
        index_walk_start(&w, p, first);
        for (int64_t i = 0; i < n; i++, index_walk_next(&w))
            out[i] = host_value(f->host, &p->value, index_walk_engine(&w));
    } else {
        init_gen g;
        init_gen_for(&g, p, f->src->seed, f->component, f->index);
        /* One thread: a chunk is about 2 ms of work, and on a loaded machine a parallel region per chunk
         * waits for its slowest thread (measured 3x slower than serial with another job on the cores). */
        index_walk w;
        index_walk_start(&w, p, first);
        for (int64_t i = 0; i < n; i++, index_walk_next(&w))
            out[i] = init_gen_value(&g, index_walk_engine(&w));
    }
    sdt_convert(buf, f->dtype, out, SDT_F32, (size_t)n);
    if (offset + len >= f->nbytes) {
        free(f->owned);
        f->owned = NULL;
        f->host = NULL;
    }
    return 0;
}

/* The tensors of one file being written. */
typedef struct file_plan {
    sdt_st_write_tensor *tensors;
    tensor_fill *fills;
    char **names;
    int64_t (*shapes)[SDT_MAX_DIMS];
    size_t n, cap;
} file_plan;

static void plan_free(file_plan *fp)
{
    for (size_t i = 0; i < fp->n; i++) {
        free(fp->names[i]);
        free(fp->fills[i].owned);
    }
    free(fp->tensors);
    free(fp->fills);
    free(fp->names);
    free(fp->shapes);
    memset(fp, 0, sizeof *fp);
}

static int plan_add(file_plan *fp, save_source *src, float *scratch, const sdt_param *p, int component,
                    size_t index, char *name, int ndim, const int64_t *shape, sdt_dtype dtype)
{
    if (!name)
        return -1;
    if (fp->n == fp->cap) {
        size_t cap = fp->cap ? fp->cap * 2 : 256;
        sdt_st_write_tensor *t = realloc(fp->tensors, cap * sizeof *t);
        if (t)
            fp->tensors = t;
        tensor_fill *f = realloc(fp->fills, cap * sizeof *f);
        if (f)
            fp->fills = f;
        char **names = realloc(fp->names, cap * sizeof *names);
        if (names)
            fp->names = names;
        int64_t(*shapes)[SDT_MAX_DIMS] = realloc(fp->shapes, cap * sizeof *shapes);
        if (shapes)
            fp->shapes = shapes;
        if (!t || !f || !names || !shapes) {
            free(name);
            return -1;
        }
        fp->cap = cap;
    }
    size_t i = fp->n++;
    fp->names[i] = name;
    memcpy(fp->shapes[i], shape, (size_t)ndim * sizeof *shape);
    uint64_t nbytes = sdt_dtype_bits(dtype) / 8;
    for (int d = 0; d < ndim; d++)
        nbytes *= (uint64_t)shape[d];
    fp->fills[i] = (tensor_fill){.src = src,
                                 .p = p,
                                 .component = component,
                                 .index = index,
                                 .dtype = dtype,
                                 .nbytes = nbytes,
                                 .scratch = scratch};
    fp->tensors[i] = (sdt_st_write_tensor){.name = name,
                                           .dtype = dtype,
                                           .ndim = ndim,
                                           .shape = fp->shapes[i],
                                           .fill = fill_tensor,
                                           .fill_ctx = &fp->fills[i]};
    return 0;
}

/* The fill contexts live in fp->fills, which plan_add may move: point the tensors at them once complete. */
static void plan_fix_pointers(file_plan *fp)
{
    for (size_t i = 0; i < fp->n; i++) {
        fp->tensors[i].fill_ctx = &fp->fills[i];
        fp->tensors[i].shape = fp->shapes[i];
    }
}

static int write_plan(file_plan *fp, save_source *src, const char *path, const char *const *meta,
                      size_t n_meta, char **error)
{
    plan_fix_pointers(fp);
    char *werr = NULL;
    if (sdt_safetensors_write(path, fp->tensors, fp->n, meta, n_meta, &werr) != 0) {
        if (src->error) {
            *error = sdt_format("%s: %s", path, src->error);
            free(werr);
        } else {
            *error = werr;
        }
        return -1;
    }
    return 0;
}

static int check_options(const sdt_model_save_options *o, char **error)
{
    if (o->dtype != SDT_F32 && o->dtype != SDT_F16 && o->dtype != SDT_BF16) {
        *error = sdt_format("models are saved as F32, F16 or BF16, not %s", sdt_dtype_name(o->dtype));
        return -1;
    }
    if (o->format != SDT_CKPT_LDM && o->format != SDT_CKPT_DIFFUSERS) {
        *error = sdt_format("unknown checkpoint format %d", (int)o->format);
        return -1;
    }
    return 0;
}

static int save_ldm(const sdt_model *m, save_source *src, float *scratch, const char *path, sdt_dtype dtype,
                    char **error)
{
    file_plan fp = {0};
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        const sdt_param_table *t = sdt_model_table_const(m, c);
        for (size_t i = 0; i < t->count; i++) {
            const sdt_param *p = &t->items[i];
            if (plan_add(&fp, src, scratch, p, c, i, sdt_format("%s%s", t->prefix, p->name), p->file_ndim,
                         p->file_shape, dtype) != 0) {
                plan_free(&fp);
                *error = sdt_format("%s: out of memory", path);
                return -1;
            }
        }
    }
    /* The configs go into the metadata so that a load gets back what the shapes cannot tell (heads, norm
     * groups, token ids); the values are strings, as the format requires. */
    char *unet = sdt_unet_config_to_json(&m->arch.unet, 1);
    char *text = sdt_clip_config_to_json(&m->arch.text_encoder, m->arch.pad_id, dtype, 1);
    char *vae = sdt_vae_config_to_json(&m->arch.vae, 1);
    int rc = -1;
    if (unet && text && vae) {
        const char *meta[] = {"format",
                              "pt",
                              "sdtune.arch",
                              m->arch.name ? m->arch.name : "",
                              "sdtune.version",
                              SDTUNE_VERSION,
                              "unet_config",
                              unet,
                              "text_encoder_config",
                              text,
                              "vae_config",
                              vae};
        rc = write_plan(&fp, src, path, meta, sizeof meta / sizeof meta[0] / 2, error);
    } else {
        *error = sdt_format("%s: out of memory", path);
    }
    free(unet);
    free(text);
    free(vae);
    plan_free(&fp);
    return rc;
}

static int make_dir(const char *path, char **error)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        *error = sdt_format("%s: exists and is not a folder", path);
        return -1;
    }
    *error = sdt_format("%s: cannot create the folder: %s", path, strerror(errno));
    return -1;
}

static int write_text(const char *path, char *text, char **error)
{
    if (!text) {
        *error = sdt_format("%s: out of memory", path);
        return -1;
    }
    int rc = sdt_atomic_write(path, text, strlen(text), error);
    free(text);
    return rc;
}

static int save_diffusers_component(const sdt_model *m, int c, save_source *src, float *scratch,
                                    const char *dir, sdt_dtype dtype, char **error)
{
    static const char *const weights[] = {"diffusion_pytorch_model.safetensors", "model.safetensors",
                                          "diffusion_pytorch_model.safetensors"};
    sdt_param_table *t = (sdt_param_table *)sdt_model_table_const(m, c);
    char *sub = sdt_format("%s/%s", dir, sdt_component_name(c));
    char *config_path = sdt_format("%s/%s/config.json", dir, sdt_component_name(c));
    char *weights_path = sdt_format("%s/%s/%s", dir, sdt_component_name(c), weights[c]);
    sdt_keymap km;
    file_plan fp = {0};
    int rc = -1;
    if (!sub || !config_path || !weights_path) {
        *error = sdt_format("%s: out of memory", dir);
        goto done;
    }
    if (make_dir(sub, error) != 0)
        goto done;
    if (sdt_keymap_build(&km, t, &m->arch, error) != 0)
        goto done;
    int failed = 0;
    for (size_t i = 0; i < t->count && !failed; i++)
        failed = plan_add(&fp, src, scratch, &t->items[i], c, i, sdt_strdup(km.diffusers[i]),
                          km.diffusers_ndim[i], km.diffusers_shape[i], dtype) != 0;
    sdt_keymap_free(&km);
    if (failed) {
        *error = sdt_format("%s: out of memory", weights_path);
        goto done;
    }
    static const char *const meta[] = {"format", "pt"};
    if (write_plan(&fp, src, weights_path, meta, 1, error) != 0)
        goto done;
    if (c == SDT_COMPONENT_UNET)
        rc = write_text(config_path, sdt_unet_config_to_json(&m->arch.unet, 0), error);
    else if (c == SDT_COMPONENT_TEXT_ENCODER)
        rc = write_text(config_path, sdt_clip_config_to_json(&m->arch.text_encoder, m->arch.pad_id, dtype, 0),
                        error);
    else
        rc = write_text(config_path, sdt_vae_config_to_json(&m->arch.vae, 0), error);
done:
    plan_free(&fp);
    free(sub);
    free(config_path);
    free(weights_path);
    return rc;
}

/* The pipeline's index. The tokenizer is not written (sdtune has no tokenizer files to copy), so it is listed
 * as absent; diffusers then needs one passed in (docs/checkpoints.md). */
static const char model_index[] =
    "{\n"
    "  \"_class_name\": \"StableDiffusionPipeline\",\n"
    "  \"_diffusers_version\": \"0.30.3\",\n"
    "  \"feature_extractor\": [\n    null,\n    null\n  ],\n"
    "  \"image_encoder\": [\n    null,\n    null\n  ],\n"
    "  \"requires_safety_checker\": false,\n"
    "  \"safety_checker\": [\n    null,\n    null\n  ],\n"
    "  \"scheduler\": [\n    \"diffusers\",\n    \"PNDMScheduler\"\n  ],\n"
    "  \"text_encoder\": [\n    \"transformers\",\n    \"CLIPTextModel\"\n  ],\n"
    "  \"tokenizer\": [\n    null,\n    null\n  ],\n"
    "  \"unet\": [\n    \"diffusers\",\n    \"UNet2DConditionModel\"\n  ],\n"
    "  \"vae\": [\n    \"diffusers\",\n    \"AutoencoderKL\"\n  ]\n"
    "}\n";

static int save_diffusers(const sdt_model *m, save_source *src, float *scratch, const char *dir,
                          sdt_dtype dtype, char **error)
{
    if (make_dir(dir, error) != 0)
        return -1;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
        if (save_diffusers_component(m, c, src, scratch, dir, dtype, error) != 0)
            return -1;
    char *sched_dir = sdt_format("%s/scheduler", dir);
    int rc = sched_dir ? make_dir(sched_dir, error) : -1;
    free(sched_dir);
    if (rc != 0)
        return -1;
    char *path = sdt_format("%s/scheduler/scheduler_config.json", dir);
    rc = path ? write_text(path, sdt_scheduler_config_to_json(m->arch.unet.prediction), error) : -1;
    free(path);
    if (rc != 0)
        return -1;
    /* Last, so that a folder whose save was interrupted has no index and is not taken for a pipeline. */
    path = sdt_format("%s/model_index.json", dir);
    rc = path ? sdt_atomic_write(path, model_index, strlen(model_index), error) : -1;
    free(path);
    return rc;
}

static int save_with(const sdt_model *m, save_source *src, const char *path,
                     const sdt_model_save_options *options, char **error)
{
    sdt_model_save_options defaults = {0};
    const sdt_model_save_options *o = options ? options : &defaults;
    if (check_options(o, error) != 0)
        return -1;
    float *scratch = malloc(MAX_FILL_ELEMENTS * sizeof *scratch);
    if (!scratch) {
        *error = sdt_format("%s: out of memory", path);
        return -1;
    }
    int rc = o->format == SDT_CKPT_LDM ? save_ldm(m, src, scratch, path, o->dtype, error)
                                       : save_diffusers(m, src, scratch, path, o->dtype, error);
    free(scratch);
    free(src->error);
    return rc;
}

int sdt_model_save(sdt_engine *e, const sdt_model *m, const char *path, const sdt_model_save_options *options,
                   char **error)
{
    if (!e) {
        *error = sdt_format("%s: saving a model's values needs its engine", path);
        return -1;
    }
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        if (!sdt_model_table_const(m, c)->allocated) {
            *error = sdt_format("%s: the %s has no values to save", path, sdt_component_name(c));
            return -1;
        }
    }
    save_source src = {.e = e};
    return save_with(m, &src, path, options, error);
}

int sdt_model_save_random(const sdt_model *m, uint64_t seed, const char *path,
                          const sdt_model_save_options *options, char **error)
{
    save_source src = {.seed = seed};
    return save_with(m, &src, path, options, error);
}
