/* Cross-field rules: what no single value can tell. Each rule reports at the place of the setting the
 * user most likely has to change, so `validate` output jumps to the right line. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "config_internal.h"
#include "sdtune/strutil.h"

typedef struct rule_context {
    const sdt_config *cfg;
    const sdt_validate_options *options;
    sdt_diag_list *diags;
} rule_context;

static int key_index(const char *key)
{
    int k = sdt_schema_find(key);
    /* Every key named below exists; tests/unit/test_validate.c runs every rule. */
    return k;
}

/* Reports at the first of the keys (a NULL-terminated list) that is set in the file, else at the first. */
static void report(rule_context *ctx, sdt_severity severity, const char *const *keys, const char *fmt, ...)
    SDT_PRINTF(4, 5);

static void report(rule_context *ctx, sdt_severity severity, const char *const *keys, const char *fmt, ...)
{
    int line = 0, col = 0, setting = key_index(keys[0]);
    for (const char *const *key = keys; *key; key++) {
        int k = key_index(*key);
        if (sdt_config_is_set(ctx->cfg, k)) {
            sdt_config_origin(ctx->cfg, k, &line, &col);
            setting = k;
            break;
        }
    }
    va_list args;
    va_start(args, fmt);
    sdt_diag_addv(ctx->diags, severity, sdt_config_source(ctx->cfg), line, col, setting, fmt, args);
    va_end(args);
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ERROR(ctx, keys, ...) report((ctx), SDT_SEV_ERROR, keys, __VA_ARGS__)
#define WARN(ctx, keys, ...) report((ctx), SDT_SEV_WARNING, keys, __VA_ARGS__)

static bool B(const rule_context *ctx, const char *key) { return sdt_config_bool(ctx->cfg, key); }
static long long I(const rule_context *ctx, const char *key) { return sdt_config_int(ctx->cfg, key); }
static double F(const rule_context *ctx, const char *key) { return sdt_config_float(ctx->cfg, key); }
static const char *S(const rule_context *ctx, const char *key) { return sdt_config_str(ctx->cfg, key); }
static bool is(const rule_context *ctx, const char *key, const char *value)
{
    return strcmp(S(ctx, key), value) == 0;
}
static bool given(const rule_context *ctx, const char *key) { return S(ctx, key)[0] != '\0'; }

/* ---- relevance: values that would have no effect ----------------------------------------------- */

static void check_relevance(rule_context *ctx)
{
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++) {
        if (!sdt_config_is_changed(ctx->cfg, (int)k) || sdt_config_relevant(ctx->cfg, (int)k))
            continue;
        const sdt_setting *s = &settings[k];
        /* An SDXL-only setting on another family is a wrong model, not just a no-op. */
        sdt_severity severity = s->relevance == SDT_REL_SDXL ? SDT_SEV_ERROR : SDT_SEV_WARNING;
        report(ctx, severity, KEYS(s->key), "%s has no effect: it applies only %s", s->key,
               sdt_relevance_text(s->relevance));
    }
}

/* ---- model, text encoder ----------------------------------------------------------------------- */

static void check_model(rule_context *ctx)
{
    sdt_family family = sdt_config_family(ctx->cfg);
    long long tokens = I(ctx, "max_token_length");
    if (tokens != 75 && tokens != 150 && tokens != 225)
        ERROR(ctx, KEYS("max_token_length"), "max_token_length = %lld is not allowed: must be 75, 150 or 225",
              tokens);
    if (I(ctx, "clip_skip") > 1 && family != SDT_FAMILY_SD1)
        WARN(ctx, KEYS("clip_skip"),
             "clip_skip = %lld with model_family = %s: clip_skip is meant for SD1.x models trained that way",
             I(ctx, "clip_skip"), S(ctx, "model_family"));
    if (B(ctx, "v_parameterization") && family == SDT_FAMILY_SD1)
        WARN(ctx, KEYS("v_parameterization", "model_family"),
             "v_parameterization with model_family = sd1: SD1.x models predict noise (epsilon), not v");
    if (B(ctx, "zero_terminal_snr") && !B(ctx, "v_parameterization"))
        WARN(ctx, KEYS("zero_terminal_snr"),
             "zero_terminal_snr without v_parameterization: an epsilon model cannot predict at zero SNR");
    if (B(ctx, "scale_v_pred_loss_like_noise_pred") && !B(ctx, "v_parameterization"))
        ERROR(ctx, KEYS("scale_v_pred_loss_like_noise_pred"),
              "scale_v_pred_loss_like_noise_pred needs v_parameterization = true");
    if (F(ctx, "v_pred_like_loss") > 0 && B(ctx, "v_parameterization"))
        ERROR(
            ctx, KEYS("v_pred_like_loss", "v_parameterization"),
            "v_pred_like_loss adds a v-prediction-like term to an epsilon model; it cannot be combined with "
            "v_parameterization");
    if (is(ctx, "mixed_precision", "fp16") && family == SDT_FAMILY_SDXL && !B(ctx, "no_half_vae"))
        WARN(ctx, KEYS("no_half_vae", "mixed_precision"),
             "the SDXL VAE overflows in fp16 (black or NaN latents); set no_half_vae = true");
}

/* ---- dataset and buckets ----------------------------------------------------------------------- */

static void check_dataset(rule_context *ctx)
{
    sdt_family family = sdt_config_family(ctx->cfg);
    long long steps = I(ctx, "bucket_reso_steps");
    long long multiple = family == SDT_FAMILY_SDXL ? 32 : 64;
    if (steps % multiple != 0)
        ERROR(ctx, KEYS("bucket_reso_steps", "model_family"),
              "bucket_reso_steps = %lld must be a multiple of %lld for model_family = %s", steps, multiple,
              S(ctx, "model_family"));
    if (I(ctx, "min_bucket_reso") > I(ctx, "max_bucket_reso"))
        ERROR(ctx, KEYS("min_bucket_reso", "max_bucket_reso"),
              "min_bucket_reso = %lld is larger than max_bucket_reso = %lld", I(ctx, "min_bucket_reso"),
              I(ctx, "max_bucket_reso"));
    const sdt_value *resolution = sdt_config_get(ctx->cfg, key_index("resolution"));
    for (size_t k = 0; k < resolution->count; k++) {
        long long side = resolution->items[k].i;
        if (side % 8 != 0)
            ERROR(ctx, KEYS("resolution"),
                  "resolution %lld is not a multiple of 8 (the VAE works in 8x8 blocks)", side);
        else if (steps > 0 && side % steps != 0)
            WARN(ctx, KEYS("resolution", "bucket_reso_steps"),
                 "resolution %lld is not a multiple of bucket_reso_steps = %lld; images are cropped to the "
                 "grid",
                 side, steps);
    }
    if (B(ctx, "cache_latents") || B(ctx, "cache_latents_to_disk")) {
        const char *why = B(ctx, "cache_latents") ? "cache_latents" : "cache_latents_to_disk";
        if (B(ctx, "random_crop"))
            ERROR(ctx, KEYS("random_crop", why),
                  "random_crop changes every epoch, so its latents cannot be cached: turn off %s or "
                  "random_crop",
                  why);
        if (B(ctx, "color_aug"))
            ERROR(ctx, KEYS("color_aug", why),
                  "color_aug changes the pixels every epoch, so latents cannot be cached: turn off %s or "
                  "color_aug",
                  why);
    }
    if (B(ctx, "cache_latents_to_disk") && !B(ctx, "cache_latents"))
        WARN(ctx, KEYS("cache_latents_to_disk", "cache_latents"),
             "cache_latents_to_disk implies cache_latents; set cache_latents = true to say so");
    if (given(ctx, "dataset_config")) {
        const char *ignored[] = {"train_data_dir", "reg_data_dir", "in_json"};
        for (size_t k = 0; k < 3; k++)
            if (given(ctx, ignored[k]))
                WARN(ctx, KEYS(ignored[k]),
                     "%s is ignored when dataset_config is given (the dataset config "
                     "names the image folders)",
                     ignored[k]);
    }
    if (sdt_config_training(ctx->cfg) != SDT_TRAIN_FINETUNE && given(ctx, "in_json"))
        WARN(ctx, KEYS("in_json", "training_type"),
             "in_json is fine-tune metadata: set training_type = finetune");
}

/* ---- captions and text-encoder caching ---------------------------------------------------------- */

static void check_text_encoder_cache(rule_context *ctx)
{
    if (!B(ctx, "cache_text_encoder_outputs") && !B(ctx, "cache_text_encoder_outputs_to_disk"))
        return;
    const char *cache = B(ctx, "cache_text_encoder_outputs") ? "cache_text_encoder_outputs"
                                                             : "cache_text_encoder_outputs_to_disk";
    bool te_trained = sdt_config_training(ctx->cfg) == SDT_TRAIN_LORA ? !B(ctx, "network_train_unet_only")
                                                                      : B(ctx, "train_text_encoder");
    if (te_trained)
        ERROR(ctx, KEYS(cache), "%s needs a frozen text encoder: %s", cache,
              sdt_config_training(ctx->cfg) == SDT_TRAIN_LORA ? "set network_train_unet_only = true"
                                                              : "set train_text_encoder = false");
    /* Cached outputs are computed once per caption; anything that changes a caption per epoch breaks them. */
    if (F(ctx, "caption_dropout_rate") > 0)
        ERROR(ctx, KEYS("caption_dropout_rate"), "caption_dropout_rate cannot be used with %s", cache);
    if (I(ctx, "caption_dropout_every_n_epochs") > 0)
        ERROR(ctx, KEYS("caption_dropout_every_n_epochs"),
              "caption_dropout_every_n_epochs cannot be used with %s", cache);
    if (F(ctx, "caption_tag_dropout_rate") > 0)
        ERROR(ctx, KEYS("caption_tag_dropout_rate"), "caption_tag_dropout_rate cannot be used with %s",
              cache);
    if (B(ctx, "shuffle_caption"))
        ERROR(ctx, KEYS("shuffle_caption"), "shuffle_caption cannot be used with %s", cache);
    if (F(ctx, "token_warmup_step") > 0)
        ERROR(ctx, KEYS("token_warmup_step"), "token_warmup_step cannot be used with %s", cache);
}

/* ---- network ----------------------------------------------------------------------------------- */

static void check_block_list(rule_context *ctx, const char *key, size_t expected)
{
    const sdt_value *list = sdt_config_get(ctx->cfg, key_index(key));
    if (list->count && list->count != expected)
        ERROR(ctx, KEYS(key), "%s has %zu values; model_family = %s needs %zu", key, list->count,
              S(ctx, "model_family"), expected);
}

static void check_network(rule_context *ctx)
{
    if (sdt_config_training(ctx->cfg) != SDT_TRAIN_LORA)
        return;
    double alpha = F(ctx, "network_alpha");
    long long dim = I(ctx, "network_dim");
    if (alpha > (double)dim)
        WARN(ctx, KEYS("network_alpha", "network_dim"),
             "network_alpha = %g is larger than network_dim = %lld: the LoRA output is scaled up by %.3g, "
             "which is rarely intended",
             alpha, dim, alpha / (double)dim);
    long long conv_dim = I(ctx, "conv_dim");
    if (conv_dim > 0 && F(ctx, "conv_alpha") > (double)conv_dim)
        WARN(ctx, KEYS("conv_alpha", "conv_dim"), "conv_alpha = %g is larger than conv_dim = %lld",
             F(ctx, "conv_alpha"), conv_dim);
    if (B(ctx, "network_train_unet_only") && B(ctx, "network_train_text_encoder_only"))
        ERROR(ctx, KEYS("network_train_text_encoder_only", "network_train_unet_only"),
              "network_train_unet_only and network_train_text_encoder_only together leave nothing to train");
    size_t blocks = sdt_config_family(ctx->cfg) == SDT_FAMILY_SDXL ? 23 : 25;
    check_block_list(ctx, "block_dims", blocks);
    check_block_list(ctx, "block_alphas", blocks);
    check_block_list(ctx, "conv_block_dims", blocks);
    check_block_list(ctx, "conv_block_alphas", blocks);
}

/* ---- optimizer, schedule, loop ----------------------------------------------------------------- */

static void check_step_count(rule_context *ctx, const char *key)
{
    double v = F(ctx, key);
    if (v >= 1 && v != floor(v))
        ERROR(ctx, KEYS(key),
              "%s = %g: a value of 1 or more is a number of steps and must be whole (below 1 it is "
              "a fraction of all steps)",
              key, v);
}

static void check_training_loop(rule_context *ctx)
{
    check_step_count(ctx, "lr_warmup_steps");
    check_step_count(ctx, "lr_decay_steps");
    if (I(ctx, "min_timestep") >= I(ctx, "max_timestep"))
        ERROR(ctx, KEYS("min_timestep", "max_timestep"),
              "min_timestep = %lld must be below max_timestep = %lld", I(ctx, "min_timestep"),
              I(ctx, "max_timestep"));
    if (F(ctx, "adaptive_noise_scale") != 0 && F(ctx, "noise_offset") <= 0)
        ERROR(ctx, KEYS("adaptive_noise_scale"), "adaptive_noise_scale needs noise_offset > 0");
    if (B(ctx, "fused_backward_pass")) {
        if (!is(ctx, "optimizer_type", "Adafactor"))
            ERROR(ctx, KEYS("fused_backward_pass", "optimizer_type"),
                  "fused_backward_pass works only with optimizer_type = Adafactor");
        if (I(ctx, "gradient_accumulation_steps") > 1)
            ERROR(ctx, KEYS("fused_backward_pass", "gradient_accumulation_steps"),
                  "fused_backward_pass updates weights inside the backward pass, so "
                  "gradient_accumulation_steps "
                  "must be 1");
    }
    int steps_key = key_index("max_train_steps");
    if (I(ctx, "max_train_epochs") > 0 && sdt_config_is_set(ctx->cfg, steps_key))
        WARN(ctx, KEYS("max_train_steps", "max_train_epochs"),
             "max_train_epochs = %lld decides the length of the run; max_train_steps is ignored",
             I(ctx, "max_train_epochs"));
    if (B(ctx, "cpu_offload_checkpointing") && !B(ctx, "gradient_checkpointing"))
        ERROR(ctx, KEYS("cpu_offload_checkpointing"),
              "cpu_offload_checkpointing needs gradient_checkpointing = true");
    if (I(ctx, "stop_text_encoder_training") > 0 && !B(ctx, "train_text_encoder") &&
        sdt_config_training(ctx->cfg) == SDT_TRAIN_DREAMBOOTH)
        WARN(ctx, KEYS("stop_text_encoder_training"),
             "stop_text_encoder_training has no effect while train_text_encoder = false");
}

/* ---- precision and device ---------------------------------------------------------------------- */

static void check_precision(rule_context *ctx)
{
    const char *mp = S(ctx, "mixed_precision");
    if (B(ctx, "full_fp16") && strcmp(mp, "fp16") != 0)
        ERROR(ctx, KEYS("full_fp16", "mixed_precision"), "full_fp16 needs mixed_precision = fp16 (it is %s)",
              mp);
    if (B(ctx, "full_bf16") && strcmp(mp, "bf16") != 0)
        ERROR(ctx, KEYS("full_bf16", "mixed_precision"), "full_bf16 needs mixed_precision = bf16 (it is %s)",
              mp);
    if (B(ctx, "full_fp16") && B(ctx, "full_bf16"))
        ERROR(ctx, KEYS("full_bf16"), "full_fp16 and full_bf16 cannot both be on");
    /* fp8_base stores frozen weights that every backend dequantises before use, so it needs neither fp8
     * hardware nor mixed precision (kohya needs both: it upcasts to the autocast dtype); it does need the
     * weights to be frozen. */
    bool fp8 = B(ctx, "fp8_base") || B(ctx, "fp8_base_unet");
    const char *fp8_key = B(ctx, "fp8_base") ? "fp8_base" : "fp8_base_unet";
    if (fp8 && sdt_config_training(ctx->cfg) != SDT_TRAIN_LORA)
        ERROR(ctx, KEYS(fp8_key, "training_type"),
              "%s stores the frozen weights in fp8; training_type = %s trains them (fp8_base is for LoRA)",
              fp8_key, S(ctx, "training_type"));
    const sdt_device_info *device = ctx->options ? ctx->options->device : NULL;
    if (!device || !device->known)
        return;
    int cc = device->cc_major * 10 + device->cc_minor;
    if (strcmp(mp, "bf16") == 0 && device->is_gpu && cc < 80)
        ERROR(ctx, KEYS("mixed_precision"),
              "mixed_precision = bf16 needs an Ampere or newer GPU (compute capability 8.0+); %s is %d.%d: "
              "use fp16",
              device->name, device->cc_major, device->cc_minor);
}

/* ---- saving and sampling ----------------------------------------------------------------------- */

static void check_saving(rule_context *ctx)
{
    if (I(ctx, "save_every_n_epochs") > 0 && I(ctx, "save_every_n_steps") > 0)
        WARN(ctx, KEYS("save_every_n_steps", "save_every_n_epochs"),
             "both save_every_n_epochs and save_every_n_steps are set: models are saved on both schedules");
    if (I(ctx, "save_last_n_epochs") > 0 && I(ctx, "save_every_n_epochs") <= 0)
        WARN(ctx, KEYS("save_last_n_epochs"), "save_last_n_epochs has no effect without save_every_n_epochs");
    if (I(ctx, "save_last_n_steps") > 0 && I(ctx, "save_every_n_steps") <= 0)
        WARN(ctx, KEYS("save_last_n_steps"), "save_last_n_steps has no effect without save_every_n_steps");
    bool sampling = I(ctx, "sample_every_n_steps") > 0 || I(ctx, "sample_every_n_epochs") > 0 ||
                    B(ctx, "sample_at_first");
    if (sampling && !given(ctx, "sample_prompts"))
        WARN(ctx, KEYS("sample_every_n_steps", "sample_every_n_epochs", "sample_at_first"),
             "sample images are requested but sample_prompts is empty: no samples will be made");
}

/* ---- filesystem -------------------------------------------------------------------------------- */

/* Paths the run creates; every other path setting names something that must already exist. */
static bool is_output_path(const char *key)
{
    return strcmp(key, "output_dir") == 0 || strcmp(key, "logging_dir") == 0;
}

/* "~/x" -> "$HOME/x"; other paths unchanged. Caller frees. */
static char *expand_home(const char *path)
{
    const char *home = getenv("HOME");
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') && home)
        return sdt_format("%s%s", home, path + 1);
    return sdt_strdup(path);
}

/* Whether a folder exists and is writable, or could be created: its nearest existing ancestor is a
 * writable folder. Returns NULL when fine, else why not (caller frees). */
static char *output_folder_problem(const char *path)
{
    char *p = sdt_strdup(path);
    if (!p)
        return NULL;
    char *problem = NULL;
    bool is_self = true; /* p is still the folder itself, not one of its parents */
    for (;;) {
        struct stat st;
        struct statvfs fs;
        if (stat(p, &st) == 0) {
            const char *what = is_self ? "it" : p;
            if (!S_ISDIR(st.st_mode))
                problem =
                    sdt_format(is_self ? "is not a folder" : "cannot be created: %s is not a folder", what);
            else if (access(p, W_OK | X_OK) != 0)
                problem =
                    sdt_format(is_self ? "is not writable" : "cannot be created: %s is not writable", what);
            else if (statvfs(p, &fs) == 0 && (fs.f_flag & ST_RDONLY))
                problem = sdt_format("is on a read-only file system");
            break;
        }
        char *slash = strrchr(p, '/');
        if (!slash) { /* a relative path whose first part does not exist: it goes in the working folder */
            if (access(".", W_OK | X_OK) != 0)
                problem = sdt_format("cannot be created: the current folder is not writable");
            break;
        }
        if (slash == p) {
            problem = sdt_format("cannot be created");
            break;
        }
        *slash = '\0';
        is_self = false;
    }
    free(p);
    return problem;
}

static void check_one_path(rule_context *ctx, const sdt_setting *s, const char *path)
{
    /* "builtin:" names (the demo's model, data and prompts) are generated by the run itself. */
    if (strncmp(path, "builtin:", 8) == 0)
        return;
    char *expanded = expand_home(path);
    if (!expanded)
        return;
    if (is_output_path(s->key)) {
        char *problem = output_folder_problem(expanded);
        if (problem)
            ERROR(ctx, KEYS(s->key), "%s = \"%s\" %s", s->key, path, problem);
        free(problem);
    } else if (access(expanded, F_OK) != 0) {
        ERROR(ctx, KEYS(s->key), "%s = \"%s\" does not exist", s->key, path);
    } else if (access(expanded, R_OK) != 0) {
        ERROR(ctx, KEYS(s->key), "%s = \"%s\" is not readable", s->key, path);
    }
    free(expanded);
}

static void check_filesystem(rule_context *ctx)
{
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++) {
        const sdt_setting *s = &settings[k];
        const sdt_value *v = sdt_config_get(ctx->cfg, (int)k);
        if (!sdt_config_relevant(ctx->cfg, (int)k))
            continue;
        if (s->type == SDT_T_PATH && v->s && v->s[0])
            check_one_path(ctx, s, v->s);
        else if (s->type == SDT_T_LIST && s->elem_type == SDT_T_PATH)
            for (size_t m = 0; m < v->count; m++)
                if (v->items[m].s[0])
                    check_one_path(ctx, s, v->items[m].s);
    }
}

/* ---- preflight: what a run needs ---------------------------------------------------------------- */

static void check_preflight(rule_context *ctx)
{
    if (!given(ctx, "pretrained_model_name_or_path"))
        ERROR(ctx, KEYS("pretrained_model_name_or_path"),
              "pretrained_model_name_or_path is empty: name the base model "
              "(a .safetensors file or a diffusers folder)");
    if (!given(ctx, "output_dir"))
        ERROR(ctx, KEYS("output_dir"), "output_dir is empty: name the folder for the trained model");
    sdt_training training = sdt_config_training(ctx->cfg);
    if (given(ctx, "dataset_config")) {
        /* The dataset config names its folders. */
    } else if (training == SDT_TRAIN_FINETUNE && !given(ctx, "in_json")) {
        ERROR(ctx, KEYS("in_json", "training_type"),
              "training_type = finetune needs in_json (caption metadata) or "
              "dataset_config");
    } else if (training != SDT_TRAIN_FINETUNE && !given(ctx, "train_data_dir")) {
        ERROR(ctx, KEYS("train_data_dir"),
              "train_data_dir is empty: name the folder of <repeats>_<name> image "
              "folders, or give dataset_config");
    }
    const sdt_setting *settings = sdt_schema_settings();
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++)
        if (settings[k].impl == SDT_IMPL_PLANNED && sdt_config_is_changed(ctx->cfg, (int)k) &&
            sdt_config_relevant(ctx->cfg, (int)k))
            ERROR(ctx, KEYS(settings[k].key),
                  "%s is not implemented by the engine yet; remove it (or set it to its default) to train",
                  settings[k].key);
}

void sdt_config_validate(const sdt_config *cfg, const sdt_validate_options *options, sdt_diag_list *diags)
{
    rule_context ctx = {.cfg = cfg, .options = options, .diags = diags};
    check_relevance(&ctx);
    check_model(&ctx);
    check_dataset(&ctx);
    check_text_encoder_cache(&ctx);
    check_network(&ctx);
    check_training_loop(&ctx);
    check_precision(&ctx);
    check_saving(&ctx);
    if (options && (options->check_filesystem || options->preflight))
        check_filesystem(&ctx);
    if (options && options->preflight)
        check_preflight(&ctx);
    sdt_diag_list_sort(diags);
}
