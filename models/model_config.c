/* config.json for diffusers' UNet2DConditionModel and AutoencoderKL and transformers' CLIPTextConfig: parse
 * (with the libraries' defaults for absent keys, and the attention_head_dim trap of sd_arch_spec §1.6),
 * write (every key the libraries write, so that they load what sdtune saves), compare. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_config.h"

const char *sdt_model_family_name(sdt_model_family f)
{
    switch (f) {
    case SDT_MODEL_FAMILY_SD1: return "sd1";
    case SDT_MODEL_FAMILY_SD1_INPAINTING: return "sd1-inpainting";
    case SDT_MODEL_FAMILY_SD2: return "sd2";
    case SDT_MODEL_FAMILY_SD2_INPAINTING: return "sd2-inpainting";
    case SDT_MODEL_FAMILY_SDXL: return "sdxl";
    case SDT_MODEL_FAMILY_SDXL_REFINER: return "sdxl-refiner";
    case SDT_MODEL_FAMILY_UNKNOWN: break;
    }
    return "unknown";
}

const char *sdt_model_family_description(sdt_model_family f)
{
    switch (f) {
    case SDT_MODEL_FAMILY_SD1: return "Stable Diffusion 1.x";
    case SDT_MODEL_FAMILY_SD1_INPAINTING: return "Stable Diffusion 1.x inpainting";
    case SDT_MODEL_FAMILY_SD2: return "Stable Diffusion 2.x";
    case SDT_MODEL_FAMILY_SD2_INPAINTING: return "Stable Diffusion 2.x inpainting";
    case SDT_MODEL_FAMILY_SDXL: return "SDXL";
    case SDT_MODEL_FAMILY_SDXL_REFINER: return "SDXL refiner";
    case SDT_MODEL_FAMILY_UNKNOWN: break;
    }
    return "unknown";
}

/* ---- reading ------------------------------------------------------------------------------------------- */

typedef struct reader {
    json_t *root;
    const char *source;
    char *error;   /* the first type error */
    sdt_buf unsup; /* "; "-separated settings the tables cannot express */
} reader;

static void type_error(reader *r, const char *key, const char *expected)
{
    if (!r->error)
        r->error = sdt_format("%s: %s: expected %s", r->source, key, expected);
}

static void unsupported(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void unsupported(reader *r, const char *fmt, ...)
{
    if (r->unsup.len)
        sdt_buf_puts(&r->unsup, "; ");
    va_list args;
    va_start(args, fmt);
    char *text = sdt_vformat(fmt, args);
    va_end(args);
    sdt_buf_puts(&r->unsup, text ? text : "?");
    free(text);
}

/* A value that is absent or JSON null takes the default. */
static json_t *value_of(reader *r, const char *key)
{
    json_t *v = json_object_get(r->root, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int as_int(json_t *v, int *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < -1000000000 || i > 1000000000)
            return -1;
        *out = (int)i;
        return 0;
    }
    /* Python writes 1.0 for some integer settings that went through a float. */
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) <= 1e9) {
            *out = (int)d;
            return 0;
        }
    }
    return -1;
}

static int get_int(reader *r, const char *key, int def)
{
    json_t *v = value_of(r, key);
    int out = def;
    if (v && as_int(v, &out) != 0)
        type_error(r, key, "an integer");
    return out;
}

static double get_number(reader *r, const char *key, double def)
{
    json_t *v = value_of(r, key);
    if (!v)
        return def;
    if (!json_is_number(v)) {
        type_error(r, key, "a number");
        return def;
    }
    return json_number_value(v);
}

static int get_bool(reader *r, const char *key, int def)
{
    json_t *v = value_of(r, key);
    if (!v)
        return def;
    if (!json_is_boolean(v)) {
        type_error(r, key, "true or false");
        return def;
    }
    return json_is_true(v);
}

static const char *get_string(reader *r, const char *key, const char *def)
{
    json_t *v = value_of(r, key);
    if (!v)
        return def;
    if (!json_is_string(v)) {
        type_error(r, key, "a string");
        return def;
    }
    return json_string_value(v);
}

/* An int, or a list of ints (one per level): out[0..max) gets the values (an int is repeated); returns the
 * list length, 0 for a single int, -1 when absent (out untouched) or malformed. */
static int get_int_or_list(reader *r, const char *key, int *out, int max)
{
    json_t *v = value_of(r, key);
    if (!v)
        return -1;
    int x;
    if (as_int(v, &x) == 0) {
        for (int i = 0; i < max; i++)
            out[i] = x;
        return 0;
    }
    if (!json_is_array(v)) {
        type_error(r, key, "an integer or a list of integers");
        return -1;
    }
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        if (as_int(json_array_get(v, i), &x) != 0) {
            type_error(r, key, "a list of integers");
            return -1;
        }
        if (i < (size_t)max)
            out[i] = x;
    }
    return (int)n;
}

/* A list of strings; returns its length (entries past max are counted, not stored), -1 when absent or
 * malformed. */
static int get_string_list(reader *r, const char *key, const char **out, int max)
{
    json_t *v = value_of(r, key);
    if (!v)
        return -1;
    if (!json_is_array(v)) {
        type_error(r, key, "a list of strings");
        return -1;
    }
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) {
            type_error(r, key, "a list of strings");
            return -1;
        }
        if (i < (size_t)max)
            out[i] = json_string_value(s);
    }
    return (int)n;
}

static int begin(reader *r, const char *text, const char *source, char **error)
{
    memset(r, 0, sizeof *r);
    r->source = source;
    sdt_buf_init(&r->unsup);
    json_error_t jerr;
    r->root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!r->root) {
        *error = sdt_format("%s:%d:%d: not valid JSON: %s", source, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(r->root)) {
        *error = sdt_format("%s: expected a JSON object", source);
        json_decref(r->root);
        return -1;
    }
    return 0;
}

static int finish(reader *r, char **unsupported_out, char **error)
{
    json_decref(r->root);
    if (r->error) {
        *error = r->error;
        sdt_buf_free(&r->unsup);
        return -1;
    }
    char *text = r->unsup.len ? sdt_format("%s: %s", r->source, r->unsup.data) : NULL;
    sdt_buf_free(&r->unsup);
    if (unsupported_out)
        *unsupported_out = text;
    else
        free(text);
    return 0;
}

/* A setting that must keep its default for the tables to describe the network. */
static void want_string(reader *r, const char *key, const char *want)
{
    const char *v = get_string(r, key, want);
    if (strcmp(v, want) != 0)
        unsupported(r, "%s \"%s\" is not supported (only \"%s\")", key, v, want);
}

static void want_null(reader *r, const char *key)
{
    if (value_of(r, key))
        unsupported(r, "%s is set; only null is supported", key);
}

int sdt_unet_config_from_json(const char *text, const char *source, sdt_unet_config *c, char **unsup,
                              char **error)
{
    if (unsup)
        *unsup = NULL;
    reader r;
    if (begin(&r, text, source, error) != 0)
        return -1;
    /* diffusers' UNet2DConditionModel defaults (the SD1.x layout, but cross_attention_dim 1280). */
    memset(c, 0, sizeof *c);
    c->in_channels = get_int(&r, "in_channels", 4);
    c->out_channels = get_int(&r, "out_channels", 4);
    int boc[8] = {320, 640, 1280, 1280};
    int levels = get_int_or_list(&r, "block_out_channels", boc, 8);
    if (levels < 0)
        levels = 4;
    else if (levels == 0)
        levels = 1;
    if (levels > SDT_UNET_MAX_LEVELS) {
        unsupported(&r, "block_out_channels has %d levels; at most %d are supported", levels,
                    SDT_UNET_MAX_LEVELS);
        levels = SDT_UNET_MAX_LEVELS;
    }
    c->levels = levels;
    memcpy(c->block_out_channels, boc, sizeof c->block_out_channels);

    const char *down[8] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                           "DownBlock2D"};
    const char *up[8] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
    int n_down = get_string_list(&r, "down_block_types", down, 8);
    int n_up = get_string_list(&r, "up_block_types", up, 8);
    if (n_down < 0)
        n_down = 4;
    if (n_up < 0)
        n_up = 4;
    int types_ok = n_down == levels && n_up == levels;
    if (!types_ok)
        unsupported(&r, "%d down and %d up block types for %d levels", n_down, n_up, levels);
    for (int i = 0; i < levels && i < n_down; i++) {
        if (strcmp(down[i], "CrossAttnDownBlock2D") == 0)
            c->level_has_attention[i] = 1;
        else if (strcmp(down[i], "DownBlock2D") != 0)
            unsupported(&r, "down block type %s is not supported", down[i]);
    }
    /* up level k mirrors down level levels - 1 - k */
    for (int k = 0; types_ok && k < levels; k++) {
        int want = c->level_has_attention[levels - 1 - k];
        if (strcmp(up[k], want ? "CrossAttnUpBlock2D" : "UpBlock2D") != 0)
            unsupported(&r, "up block type %s does not mirror down block type %s", up[k],
                        down[levels - 1 - k]);
    }

    int layers[8] = {2, 2, 2, 2, 2, 2, 2, 2};
    int n_layers = get_int_or_list(&r, "layers_per_block", layers, 8);
    c->layers_per_block = layers[0];
    for (int i = 1; i < n_layers && i < 8; i++)
        if (layers[i] != layers[0])
            unsupported(&r, "layers_per_block differs between levels");

    /* The naming trap (§1.6): num_attention_heads when given, else attention_head_dim, is the NUMBER of
     * heads, per level; the mid block uses the last level's. */
    int heads[8] = {8, 8, 8, 8, 8, 8, 8, 8};
    int n_heads = get_int_or_list(&r, "num_attention_heads", heads, 8);
    if (n_heads < 0)
        n_heads = get_int_or_list(&r, "attention_head_dim", heads, 8);
    if (n_heads > 0 && n_heads != levels)
        unsupported(&r, "%d attention head counts for %d levels", n_heads, levels);
    int depth[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int n_depth = get_int_or_list(&r, "transformer_layers_per_block", depth, 8);
    if (n_depth > 0 && n_depth != levels)
        unsupported(&r, "%d transformer depths for %d levels", n_depth, levels);
    for (int i = 0; i < levels; i++) {
        c->heads[i] = heads[i];
        c->transformer_depth[i] = c->level_has_attention[i] ? depth[i] : 0;
    }
    c->mid_heads = heads[levels - 1];
    c->mid_transformer_depth = depth[levels - 1];
    want_null(&r, "reverse_transformer_layers_per_block");

    json_t *ctx = value_of(&r, "cross_attention_dim");
    if (ctx && json_is_array(ctx))
        unsupported(&r, "a cross_attention_dim per level is not supported");
    else
        c->cross_attention_dim = get_int(&r, "cross_attention_dim", 1280);
    c->use_linear_projection = get_bool(&r, "use_linear_projection", 0);
    c->norm_groups = get_int(&r, "norm_num_groups", 32);
    c->norm_eps = (float)get_number(&r, "norm_eps", 1e-5);
    c->transformer_norm_eps = 1e-6f; /* Transformer2DModel's GroupNorm, fixed in diffusers */
    c->prediction = SDT_PREDICT_EPSILON;

    const char *add = get_string(&r, "addition_embed_type", NULL);
    if (add) {
        if (strcmp(add, "text_time") == 0) {
            c->adm_in_channels = get_int(&r, "projection_class_embeddings_input_dim", 0);
            c->addition_time_embed_dim = get_int(&r, "addition_time_embed_dim", 0);
        } else {
            unsupported(&r, "addition_embed_type \"%s\" is not supported", add);
        }
    }
    want_string(&r, "act_fn", "silu");
    want_string(&r, "mid_block_type", "UNetMidBlock2DCrossAttn");
    want_string(&r, "time_embedding_type", "positional");
    want_string(&r, "resnet_time_scale_shift", "default");
    want_string(&r, "attention_type", "default");
    want_null(&r, "class_embed_type");
    want_null(&r, "num_class_embeds");
    want_null(&r, "time_cond_proj_dim");
    want_null(&r, "encoder_hid_dim");
    want_null(&r, "time_embedding_dim");
    want_null(&r, "time_embedding_act_fn");
    want_null(&r, "timestep_post_act");
    if (get_int(&r, "conv_in_kernel", 3) != 3 || get_int(&r, "conv_out_kernel", 3) != 3)
        unsupported(&r, "conv_in_kernel and conv_out_kernel must be 3");
    if (get_bool(&r, "dual_cross_attention", 0))
        unsupported(&r, "dual_cross_attention is not supported");
    json_t *only = value_of(&r, "only_cross_attention");
    if (only && !(json_is_false(only) || json_is_array(only)))
        unsupported(&r, "only_cross_attention is not supported");
    if (!get_bool(&r, "flip_sin_to_cos", 1) || get_number(&r, "freq_shift", 0) != 0)
        unsupported(&r, "flip_sin_to_cos false or freq_shift other than 0 is not supported");
    if (get_bool(&r, "center_input_sample", 0))
        unsupported(&r, "center_input_sample is not supported");
    return finish(&r, unsup, error);
}

int sdt_clip_config_from_json(const char *text, const char *source, sdt_clip_config *c, char **unsup,
                              char **error)
{
    if (unsup)
        *unsup = NULL;
    reader r;
    if (begin(&r, text, source, error) != 0)
        return -1;
    /* transformers' CLIPTextConfig defaults */
    memset(c, 0, sizeof *c);
    c->vocab_size = get_int(&r, "vocab_size", 49408);
    c->width = get_int(&r, "hidden_size", 512);
    c->mlp_width = get_int(&r, "intermediate_size", 2048);
    c->layers = get_int(&r, "num_hidden_layers", 12);
    c->heads = get_int(&r, "num_attention_heads", 8);
    c->max_positions = get_int(&r, "max_position_embeddings", 77);
    c->norm_eps = (float)get_number(&r, "layer_norm_eps", 1e-5);
    c->bos_id = get_int(&r, "bos_token_id", 49406);
    c->eos_id = get_int(&r, "eos_token_id", 49407);
    /* openai/clip-vit-large-patch14's config (and so SD1.x folders) carries the pre-2023 ids bos 0 / eos 2;
     * transformers treats eos_token_id == 2 as that legacy case and pools at argmax(input_ids), i.e. at the
     * real end-of-text token, the vocabulary's last id (§3.1). */
    if (c->eos_id == 2 && c->vocab_size > 2) {
        c->bos_id = c->vocab_size - 2;
        c->eos_id = c->vocab_size - 1;
    }
    const char *act = get_string(&r, "hidden_act", "quick_gelu");
    if (strcmp(act, "quick_gelu") == 0)
        c->act = SDT_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0)
        c->act = SDT_ACT_GELU;
    else
        unsupported(&r, "hidden_act \"%s\" is not supported (quick_gelu or gelu)", act);
    c->layout = SDT_TEXT_HF;
    /* CLIPTextModel ignores projection_dim; only CLIPTextModelWithProjection has text_projection. */
    const char *arch[4] = {NULL};
    int n_arch = get_string_list(&r, "architectures", arch, 4);
    for (int i = 0; i < n_arch && i < 4; i++) {
        if (strcmp(arch[i], "CLIPTextModelWithProjection") == 0)
            c->projection_dim = get_int(&r, "projection_dim", 512);
        else if (strcmp(arch[i], "CLIPTextModel") != 0)
            unsupported(&r, "architecture %s is not supported (CLIPTextModel)", arch[i]);
    }
    const char *type = get_string(&r, "model_type", "clip_text_model");
    if (strcmp(type, "clip_text_model") != 0)
        unsupported(&r, "model_type \"%s\" is not supported (clip_text_model)", type);
    return finish(&r, unsup, error);
}

int sdt_vae_config_from_json(const char *text, const char *source, sdt_vae_config *c, char **unsup,
                             char **error)
{
    if (unsup)
        *unsup = NULL;
    reader r;
    if (begin(&r, text, source, error) != 0)
        return -1;
    /* diffusers' AutoencoderKL defaults (one level of 64 channels: every real config sets these). */
    memset(c, 0, sizeof *c);
    c->in_channels = get_int(&r, "in_channels", 3);
    int out_channels = get_int(&r, "out_channels", 3);
    if (out_channels != c->in_channels)
        unsupported(&r, "out_channels %d differs from in_channels %d", out_channels, c->in_channels);
    int boc[8] = {64};
    int levels = get_int_or_list(&r, "block_out_channels", boc, 8);
    if (levels <= 0)
        levels = 1;
    if (levels > SDT_VAE_MAX_LEVELS) {
        unsupported(&r, "block_out_channels has %d levels; at most %d are supported", levels,
                    SDT_VAE_MAX_LEVELS);
        levels = SDT_VAE_MAX_LEVELS;
    }
    c->levels = levels;
    memcpy(c->block_out_channels, boc, sizeof c->block_out_channels);
    c->layers_per_block = get_int(&r, "layers_per_block", 1);
    c->latent_channels = get_int(&r, "latent_channels", 4);
    c->norm_groups = get_int(&r, "norm_num_groups", 32);
    c->norm_eps = 1e-6f; /* fixed in diffusers' VAE */
    c->scaling_factor = (float)get_number(&r, "scaling_factor", 0.18215);
    const char *types[8];
    int n = get_string_list(&r, "down_block_types", types, 8);
    for (int i = 0; i < n && i < 8; i++)
        if (strcmp(types[i], "DownEncoderBlock2D") != 0)
            unsupported(&r, "down block type %s is not supported", types[i]);
    if (n >= 0 && n != levels)
        unsupported(&r, "%d down block types for %d levels", n, levels);
    n = get_string_list(&r, "up_block_types", types, 8);
    for (int i = 0; i < n && i < 8; i++)
        if (strcmp(types[i], "UpDecoderBlock2D") != 0)
            unsupported(&r, "up block type %s is not supported", types[i]);
    if (n >= 0 && n != levels)
        unsupported(&r, "%d up block types for %d levels", n, levels);
    want_string(&r, "act_fn", "silu");
    if (!get_bool(&r, "mid_block_add_attention", 1))
        unsupported(&r, "a VAE without mid-block attention is not supported");
    if (!get_bool(&r, "use_quant_conv", 1) || !get_bool(&r, "use_post_quant_conv", 1))
        unsupported(&r, "a VAE without quant_conv / post_quant_conv is not supported");
    want_null(&r, "shift_factor");
    return finish(&r, unsup, error);
}

/* ---- writing ------------------------------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float, as a double: 1e-5f is written 1e-05, not
 * 9.9999997473787516e-06. */
static json_t *real_of_float(float f)
{
    char text[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)f);
        if ((float)strtod(text, NULL) == f)
            break;
    }
    return json_real(strtod(text, NULL));
}

static json_t *int_list(const int *values, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(values[i]));
    return a;
}

static int all_equal(const int *v, int n)
{
    for (int i = 1; i < n; i++)
        if (v[i] != v[0])
            return 0;
    return 1;
}

static char *dump(json_t *o, int compact)
{
    if (!o)
        return NULL;
    size_t flags = JSON_SORT_KEYS | JSON_REAL_PRECISION(9) | (compact ? JSON_COMPACT : JSON_INDENT(2));
    char *text = json_dumps(o, flags);
    json_decref(o);
    if (!text || compact)
        return text;
    char *with_newline = sdt_format("%s\n", text); /* as the libraries write it */
    free(text);
    return with_newline;
}

#define DIFFUSERS_VERSION "0.30.3"

char *sdt_unet_config_to_json(const sdt_unet_config *c, int compact)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int n = c->levels;
    json_t *down = json_array(), *up = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(
            down, json_string(c->level_has_attention[i] ? "CrossAttnDownBlock2D" : "DownBlock2D"));
        json_array_append_new(
            up, json_string(c->level_has_attention[n - 1 - i] ? "CrossAttnUpBlock2D" : "UpBlock2D"));
    }
    /* Heads: one number when every level agrees (as SD1.5's config has it), else a list. The mid block takes
     * the last level's in diffusers, so a different mid count cannot be written. */
    int heads[SDT_UNET_MAX_LEVELS], depth[SDT_UNET_MAX_LEVELS];
    for (int i = 0; i < n; i++) {
        heads[i] = c->heads[i];
        depth[i] = c->level_has_attention[i] ? c->transformer_depth[i] : 1;
    }
    depth[n - 1] = c->mid_transformer_depth;
    json_object_set_new(o, "_class_name", json_string("UNet2DConditionModel"));
    json_object_set_new(o, "_diffusers_version", json_string(DIFFUSERS_VERSION));
    json_object_set_new(o, "act_fn", json_string("silu"));
    json_object_set_new(o, "addition_embed_type",
                        c->adm_in_channels ? json_string("text_time") : json_null());
    json_object_set_new(o, "addition_embed_type_num_heads", json_integer(64));
    json_object_set_new(o, "addition_time_embed_dim",
                        c->adm_in_channels ? json_integer(c->addition_time_embed_dim) : json_null());
    json_object_set_new(o, "attention_head_dim",
                        all_equal(heads, n) ? json_integer(heads[0]) : int_list(heads, n));
    json_object_set_new(o, "attention_type", json_string("default"));
    json_object_set_new(o, "block_out_channels", int_list(c->block_out_channels, n));
    json_object_set_new(o, "center_input_sample", json_false());
    json_object_set_new(o, "class_embed_type", json_null());
    json_object_set_new(o, "class_embeddings_concat", json_false());
    json_object_set_new(o, "conv_in_kernel", json_integer(3));
    json_object_set_new(o, "conv_out_kernel", json_integer(3));
    json_object_set_new(o, "cross_attention_dim", json_integer(c->cross_attention_dim));
    json_object_set_new(o, "cross_attention_norm", json_null());
    json_object_set_new(o, "down_block_types", down);
    json_object_set_new(o, "downsample_padding", json_integer(1));
    json_object_set_new(o, "dropout", json_real(0.0));
    json_object_set_new(o, "dual_cross_attention", json_false());
    json_object_set_new(o, "encoder_hid_dim", json_null());
    json_object_set_new(o, "encoder_hid_dim_type", json_null());
    json_object_set_new(o, "flip_sin_to_cos", json_true());
    json_object_set_new(o, "freq_shift", json_integer(0));
    json_object_set_new(o, "in_channels", json_integer(c->in_channels));
    json_object_set_new(o, "layers_per_block", json_integer(c->layers_per_block));
    json_object_set_new(o, "mid_block_only_cross_attention", json_null());
    json_object_set_new(o, "mid_block_scale_factor", json_integer(1));
    json_object_set_new(o, "mid_block_type", json_string("UNetMidBlock2DCrossAttn"));
    json_object_set_new(o, "norm_eps", real_of_float(c->norm_eps));
    json_object_set_new(o, "norm_num_groups", json_integer(c->norm_groups));
    json_object_set_new(o, "num_attention_heads", json_null());
    json_object_set_new(o, "num_class_embeds", json_null());
    json_object_set_new(o, "only_cross_attention", json_false());
    json_object_set_new(o, "out_channels", json_integer(c->out_channels));
    json_object_set_new(o, "projection_class_embeddings_input_dim",
                        c->adm_in_channels ? json_integer(c->adm_in_channels) : json_null());
    json_object_set_new(o, "resnet_out_scale_factor", json_real(1.0));
    json_object_set_new(o, "resnet_skip_time_act", json_false());
    json_object_set_new(o, "resnet_time_scale_shift", json_string("default"));
    json_object_set_new(o, "reverse_transformer_layers_per_block", json_null());
    /* Pipelines' default latent size (not held by the config structs): SD1.x's 64 for full-width models, the
     * tiny fixtures' 16 otherwise. */
    json_object_set_new(o, "sample_size", json_integer(c->block_out_channels[0] >= 320 ? 64 : 16));
    json_object_set_new(o, "time_cond_proj_dim", json_null());
    json_object_set_new(o, "time_embedding_act_fn", json_null());
    json_object_set_new(o, "time_embedding_dim", json_null());
    json_object_set_new(o, "time_embedding_type", json_string("positional"));
    json_object_set_new(o, "timestep_post_act", json_null());
    json_object_set_new(o, "transformer_layers_per_block",
                        all_equal(depth, n) ? json_integer(depth[0]) : int_list(depth, n));
    json_object_set_new(o, "up_block_types", up);
    json_object_set_new(o, "upcast_attention", json_false());
    json_object_set_new(o, "use_linear_projection", json_boolean(c->use_linear_projection));
    return dump(o, compact);
}

char *sdt_clip_config_to_json(const sdt_clip_config *c, int pad_id, sdt_dtype dtype, int compact)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *arch = json_array();
    json_array_append_new(arch,
                          json_string(c->projection_dim ? "CLIPTextModelWithProjection" : "CLIPTextModel"));
    const char *torch_dtype = dtype == SDT_F16 ? "float16" : dtype == SDT_BF16 ? "bfloat16" : "float32";
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "bos_token_id", json_integer(c->bos_id));
    json_object_set_new(o, "eos_token_id", json_integer(c->eos_id));
    json_object_set_new(o, "hidden_act", json_string(c->act == SDT_ACT_GELU ? "gelu" : "quick_gelu"));
    json_object_set_new(o, "hidden_size", json_integer(c->width));
    json_object_set_new(o, "initializer_factor", json_real(1.0));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "intermediate_size", json_integer(c->mlp_width));
    json_object_set_new(o, "layer_norm_eps", real_of_float(c->norm_eps));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_positions));
    json_object_set_new(o, "model_type", json_string("clip_text_model"));
    json_object_set_new(o, "num_attention_heads", json_integer(c->heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->layers));
    json_object_set_new(o, "pad_token_id", json_integer(pad_id));
    json_object_set_new(o, "projection_dim", json_integer(c->projection_dim ? c->projection_dim : c->width));
    json_object_set_new(o, "torch_dtype", json_string(torch_dtype));
    json_object_set_new(o, "transformers_version", json_string("4.44.2"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    return dump(o, compact);
}

char *sdt_vae_config_to_json(const sdt_vae_config *c, int compact)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *down = json_array(), *up = json_array();
    for (int i = 0; i < c->levels; i++) {
        json_array_append_new(down, json_string("DownEncoderBlock2D"));
        json_array_append_new(up, json_string("UpDecoderBlock2D"));
    }
    json_object_set_new(o, "_class_name", json_string("AutoencoderKL"));
    json_object_set_new(o, "_diffusers_version", json_string(DIFFUSERS_VERSION));
    json_object_set_new(o, "act_fn", json_string("silu"));
    json_object_set_new(o, "block_out_channels", int_list(c->block_out_channels, c->levels));
    json_object_set_new(o, "down_block_types", down);
    json_object_set_new(o, "force_upcast", json_true());
    json_object_set_new(o, "in_channels", json_integer(c->in_channels));
    json_object_set_new(o, "latent_channels", json_integer(c->latent_channels));
    json_object_set_new(o, "latents_mean", json_null());
    json_object_set_new(o, "latents_std", json_null());
    json_object_set_new(o, "layers_per_block", json_integer(c->layers_per_block));
    json_object_set_new(o, "mid_block_add_attention", json_true());
    json_object_set_new(o, "norm_num_groups", json_integer(c->norm_groups));
    json_object_set_new(o, "out_channels", json_integer(c->in_channels));
    /* Pipelines' default image size, which the config structs do not hold: SD1.x's for full-width models,
     * the tiny fixtures' otherwise. */
    json_object_set_new(o, "sample_size", json_integer(c->block_out_channels[0] >= 128 ? 512 : 32));
    json_object_set_new(o, "scaling_factor", real_of_float(c->scaling_factor));
    json_object_set_new(o, "shift_factor", json_null());
    json_object_set_new(o, "up_block_types", up);
    json_object_set_new(o, "use_post_quant_conv", json_true());
    json_object_set_new(o, "use_quant_conv", json_true());
    return dump(o, compact);
}

char *sdt_scheduler_config_to_json(sdt_prediction prediction)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "_class_name", json_string("PNDMScheduler"));
    json_object_set_new(o, "_diffusers_version", json_string(DIFFUSERS_VERSION));
    json_object_set_new(o, "beta_end", json_real(0.012));
    json_object_set_new(o, "beta_schedule", json_string("scaled_linear"));
    json_object_set_new(o, "beta_start", json_real(0.00085));
    json_object_set_new(o, "clip_sample", json_false());
    json_object_set_new(o, "num_train_timesteps", json_integer(1000));
    json_object_set_new(o, "prediction_type",
                        json_string(prediction == SDT_PREDICT_V ? "v_prediction" : "epsilon"));
    json_object_set_new(o, "set_alpha_to_one", json_false());
    json_object_set_new(o, "skip_prk_steps", json_true());
    json_object_set_new(o, "steps_offset", json_integer(1));
    json_object_set_new(o, "trained_betas", json_null());
    return dump(o, 0);
}

/* ---- comparing ----------------------------------------------------------------------------------------- */

typedef struct differ {
    sdt_buf *out;
    int count;
} differ;

static void diff_int(differ *d, const char *name, int a, int b)
{
    if (a == b)
        return;
    if (d->out)
        sdt_buf_printf(d->out, "%s%s %d (preset %d)", d->count ? ", " : "", name, a, b);
    d->count++;
}

static void diff_float(differ *d, const char *name, float a, float b)
{
    if (a == b)
        return;
    if (d->out)
        sdt_buf_printf(d->out, "%s%s %g (preset %g)", d->count ? ", " : "", name, (double)a, (double)b);
    d->count++;
}

static void diff_levels(differ *d, const char *name, const int *a, const int *b, int n)
{
    for (int i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            char label[64];
            snprintf(label, sizeof label, "%s[%d]", name, i);
            diff_int(d, label, a[i], b[i]);
        }
    }
}

int sdt_unet_config_diff(const sdt_unet_config *a, const sdt_unet_config *b, sdt_buf *out)
{
    differ d = {out, 0};
    diff_int(&d, "unet in_channels", a->in_channels, b->in_channels);
    diff_int(&d, "unet out_channels", a->out_channels, b->out_channels);
    diff_int(&d, "unet levels", a->levels, b->levels);
    int n = a->levels < b->levels ? a->levels : b->levels;
    diff_levels(&d, "unet block_out_channels", a->block_out_channels, b->block_out_channels, n);
    diff_int(&d, "unet layers_per_block", a->layers_per_block, b->layers_per_block);
    diff_levels(&d, "unet attention", a->level_has_attention, b->level_has_attention, n);
    for (int i = 0; i < n; i++) {
        if (!a->level_has_attention[i] || !b->level_has_attention[i])
            continue;
        char label[64];
        snprintf(label, sizeof label, "unet transformer_depth[%d]", i);
        diff_int(&d, label, a->transformer_depth[i], b->transformer_depth[i]);
        snprintf(label, sizeof label, "unet heads[%d]", i);
        diff_int(&d, label, a->heads[i], b->heads[i]);
    }
    diff_int(&d, "unet mid_transformer_depth", a->mid_transformer_depth, b->mid_transformer_depth);
    diff_int(&d, "unet mid_heads", a->mid_heads, b->mid_heads);
    diff_int(&d, "unet cross_attention_dim", a->cross_attention_dim, b->cross_attention_dim);
    diff_int(&d, "unet use_linear_projection", a->use_linear_projection, b->use_linear_projection);
    diff_int(&d, "unet norm_num_groups", a->norm_groups, b->norm_groups);
    diff_float(&d, "unet norm_eps", a->norm_eps, b->norm_eps);
    diff_float(&d, "unet transformer_norm_eps", a->transformer_norm_eps, b->transformer_norm_eps);
    diff_int(&d, "unet projection_class_embeddings_input_dim", a->adm_in_channels, b->adm_in_channels);
    diff_int(&d, "unet addition_time_embed_dim", a->addition_time_embed_dim, b->addition_time_embed_dim);
    diff_int(&d, "unet v_prediction", a->prediction == SDT_PREDICT_V, b->prediction == SDT_PREDICT_V);
    return d.count;
}

int sdt_clip_config_diff(const sdt_clip_config *a, const sdt_clip_config *b, int ignore_vocab, sdt_buf *out)
{
    differ d = {out, 0};
    if (!ignore_vocab) {
        diff_int(&d, "text_encoder vocab_size", a->vocab_size, b->vocab_size);
        diff_int(&d, "text_encoder bos_token_id", a->bos_id, b->bos_id);
        diff_int(&d, "text_encoder eos_token_id", a->eos_id, b->eos_id);
    }
    diff_int(&d, "text_encoder max_position_embeddings", a->max_positions, b->max_positions);
    diff_int(&d, "text_encoder hidden_size", a->width, b->width);
    diff_int(&d, "text_encoder num_hidden_layers", a->layers, b->layers);
    diff_int(&d, "text_encoder num_attention_heads", a->heads, b->heads);
    diff_int(&d, "text_encoder intermediate_size", a->mlp_width, b->mlp_width);
    diff_int(&d, "text_encoder quick_gelu", a->act == SDT_ACT_QUICK_GELU, b->act == SDT_ACT_QUICK_GELU);
    diff_float(&d, "text_encoder layer_norm_eps", a->norm_eps, b->norm_eps);
    diff_int(&d, "text_encoder projection_dim", a->projection_dim, b->projection_dim);
    diff_int(&d, "text_encoder openclip_layout", a->layout == SDT_TEXT_OPENCLIP,
             b->layout == SDT_TEXT_OPENCLIP);
    return d.count;
}

int sdt_vae_config_diff(const sdt_vae_config *a, const sdt_vae_config *b, sdt_buf *out)
{
    differ d = {out, 0};
    diff_int(&d, "vae in_channels", a->in_channels, b->in_channels);
    diff_int(&d, "vae latent_channels", a->latent_channels, b->latent_channels);
    diff_int(&d, "vae levels", a->levels, b->levels);
    int n = a->levels < b->levels ? a->levels : b->levels;
    diff_levels(&d, "vae block_out_channels", a->block_out_channels, b->block_out_channels, n);
    diff_int(&d, "vae layers_per_block", a->layers_per_block, b->layers_per_block);
    diff_int(&d, "vae norm_num_groups", a->norm_groups, b->norm_groups);
    diff_float(&d, "vae norm_eps", a->norm_eps, b->norm_eps);
    diff_float(&d, "vae scaling_factor", a->scaling_factor, b->scaling_factor);
    return d.count;
}
