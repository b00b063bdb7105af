/* Sample image generation (sample.h): text encoding, latents from the seed, the sampler with
 * classifier-free guidance around the UNet, the VAE decode, 8-bit pixels, kohya's file name and the PNG
 * with its text chunks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "layers.h"
#include "samplers.h"
#include "sdtune/dtype.h"
#include "sdtune/strutil.h"

/* Random streams of a sample's seed: the initial latents, then one per ancestral step. */
#define SAMPLE_STREAM_LATENTS 0x5a4d504c45ull
#define SAMPLE_STREAM_STEP_NOISE 0x5a4d504c46ull

void sdt_rgb_image_free(sdt_rgb_image *img)
{
    free(img->pixels);
    img->pixels = NULL;
    img->width = img->height = 0;
}

/* What the model callback needs: the UNet and the guidance inputs on the engine. */
typedef struct guided_unet {
    sdt_engine *e;
    sdt_unet *unet;
    int batch;      /* 2: uncond and cond; 1: cond only (scale <= 1, as diffusers skips guidance) */
    float scale;    /* classifier-free guidance scale */
    size_t n;       /* elements of one latent */
    sdt_tensor x;   /* [batch, h, w, C] F32 */
    sdt_tensor t;   /* [batch] F32 */
    sdt_tensor ctx; /* [batch, L, width] F32: uncond first */
    float *host_x;  /* [batch, n] */
    float *host_out;
} guided_unet;

static int engine_error(sdt_engine *e, const char *what, char **error)
{
    return sdt_set_error(error, "sample image: %s: %s", what, sdt_engine_error(e));
}

static int guided_predict(void *ctx, const float *x_in, double timestep, float *out, char **error)
{
    guided_unet *g = ctx;
    for (int b = 0; b < g->batch; b++)
        memcpy(g->host_x + (size_t)b * g->n, x_in, g->n * sizeof(float));
    float t[2] = {(float)timestep, (float)timestep};
    if (sdt_engine_upload(g->e, &g->x, g->host_x, g->n * g->batch * sizeof(float)) != 0 ||
        sdt_engine_upload(g->e, &g->t, t, (size_t)g->batch * sizeof(float)) != 0)
        return engine_error(g->e, "upload", error);
    sdt_tensor y = {0};
    if (sdt_unet_forward(g->e, g->unet, &y, &g->x, &g->t, &g->ctx, NULL, 0) != 0)
        return engine_error(g->e, "UNet", error);
    size_t count = g->n * (size_t)g->batch;
    int rc = 0;
    if (y.dtype == SDT_F32) {
        rc = sdt_engine_download(g->e, g->host_out, &y, count * sizeof(float));
    } else { /* a half-precision UNet: fetch its dtype, widen here */
        void *raw = malloc(sdt_tensor_bytes(&y));
        rc = !raw || sdt_engine_download(g->e, raw, &y, sdt_tensor_bytes(&y)) != 0 ||
             sdt_convert(g->host_out, SDT_F32, raw, y.dtype, count) != 0;
        free(raw);
    }
    sdt_act_free(g->e, &y);
    if (rc != 0)
        return engine_error(g->e, "download", error);
    if (g->batch == 1) {
        memcpy(out, g->host_out, g->n * sizeof(float));
    } else {
        const float *uncond = g->host_out, *cond = g->host_out + g->n;
        for (size_t i = 0; i < g->n; i++)
            out[i] = uncond[i] + g->scale * (cond[i] - uncond[i]);
    }
    return 0;
}

static void seeded_noise(void *ctx, int step, float *noise, size_t n)
{
    const uint64_t *seed = ctx;
    sdt_rng rng;
    sdt_rng_init(&rng, *seed, SAMPLE_STREAM_STEP_NOISE + (uint64_t)step);
    sdt_rng_fill_normal(&rng, noise, n);
}

/* The context [length, width] of a caption as F32 into dst (length and width checked against want_*). */
static int encode_caption(const sdt_sample_models *m, const char *caption, float **dst, int *length,
                          int *width, char **error)
{
    sdt_text_request r = {caption, m->clip_skip, m->max_token_length, 0};
    sdt_text_embedding emb = {0};
    if (sdt_text_cache_encode(m->text, &r, &emb, error) != 0)
        return -1;
    size_t count = (size_t)emb.length * (size_t)emb.width;
    *dst = malloc(count * sizeof(float));
    int rc = *dst ? sdt_convert(*dst, SDT_F32, emb.context, emb.dtype, count) : -1;
    *length = emb.length;
    *width = emb.width;
    sdt_text_embedding_free(&emb);
    if (rc != 0) {
        free(*dst);
        *dst = NULL;
        return sdt_set_error(error, "sample image: cannot convert the text embedding");
    }
    return 0;
}

static uint8_t to_byte(float v)
{
    float x = (v + 1.0f) * 0.5f;
    x = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
    return (uint8_t)lrintf(x * 255.0f);
}

int sdt_sample_generate(const sdt_sample_models *m, const sdt_sample_prompt *p, sdt_sampler_kind sampler,
                        uint64_t seed, sdt_rgb_image *out, char **error)
{
    memset(out, 0, sizeof *out);
    const sdt_unet_config *uc = sdt_unet_get_config(m->unet);
    const sdt_vae_config *vc = &m->vae->config;
    if (uc->adm_in_channels > 0)
        return sdt_set_error(error, "sample image: SDXL sampling is not implemented yet");
    int factor = 1 << (vc->levels - 1);             /* image pixels per latent pixel */
    int unet_multiple = factor << (uc->levels - 1); /* the UNet halves the latent levels - 1 times */
    if (p->width % unet_multiple || p->height % unet_multiple)
        return sdt_set_error(error, "sample image: %dx%d is not a multiple of %d, which this model needs",
                             p->width, p->height, unet_multiple);
    const int h = p->height / factor, w = p->width / factor, C = vc->latent_channels;
    const size_t n = (size_t)h * w * C;

    guided_unet g = {.e = m->e, .unet = m->unet, .batch = p->scale > 1.0f ? 2 : 1, .scale = p->scale, .n = n};
    float *cond = NULL, *uncond = NULL, *latents = NULL, *context = NULL, *pixels = NULL;
    sdt_tensor lat_t = {0}, image = {0};
    sdt_sampler_plan plan = {0};
    int length = 0, width = 0, rc = -1;
    if (encode_caption(m, p->prompt, &cond, &length, &width, error) != 0)
        goto done;
    if (g.batch == 2) {
        int ulength = 0, uwidth = 0;
        if (encode_caption(m, p->negative ? p->negative : "", &uncond, &ulength, &uwidth, error) != 0)
            goto done;
        if (ulength != length || uwidth != width) {
            sdt_set_error(error, "sample image: prompt and negative prompt encode to different shapes");
            goto done;
        }
    }
    /* context [batch, L, width]: uncond first, as diffusers concatenates them */
    size_t ctx_count = (size_t)length * width;
    context = malloc(ctx_count * g.batch * sizeof(float));
    g.host_x = malloc(n * g.batch * sizeof(float));
    g.host_out = malloc(n * g.batch * sizeof(float));
    latents = malloc(n * sizeof(float)); /* [1, h, w, C] */
    if (!context || !g.host_x || !g.host_out || !latents) {
        sdt_set_error(error, "sample image: out of memory");
        goto done;
    }
    if (g.batch == 2)
        memcpy(context, uncond, ctx_count * sizeof(float));
    memcpy(context + (g.batch - 1) * ctx_count, cond, ctx_count * sizeof(float));
    if (sdt_act_alloc(m->e, &g.x, SDT_F32, 4, SDT_SHAPE(g.batch, h, w, C)) != 0 ||
        sdt_act_alloc(m->e, &g.t, SDT_F32, 1, SDT_SHAPE(g.batch)) != 0 ||
        sdt_act_alloc(m->e, &g.ctx, SDT_F32, 3, SDT_SHAPE(g.batch, length, width)) != 0 ||
        sdt_engine_upload(m->e, &g.ctx, context, ctx_count * g.batch * sizeof(float)) != 0) {
        engine_error(m->e, "buffers", error);
        goto done;
    }

    /* N(0, 1) latents from the seed; the sampler scales them by its initial sigma */
    sdt_rng rng;
    sdt_rng_init(&rng, seed, SAMPLE_STREAM_LATENTS);
    sdt_rng_fill_normal(&rng, latents, n);
    if (sdt_sampler_plan_init(&plan, sampler, p->steps, m->zero_terminal_snr, error) != 0 ||
        sdt_sampler_run(&plan, m->prediction, latents, n, guided_predict, &g, seeded_noise, &seed, error) !=
            0)
        goto done;

    if (sdt_act_alloc(m->e, &lat_t, SDT_F32, 4, SDT_SHAPE(1, h, w, C)) != 0 ||
        sdt_engine_upload(m->e, &lat_t, latents, n * sizeof(float)) != 0) {
        engine_error(m->e, "latents", error);
        goto done;
    }
    /* sdt_vae_decode divides by the scaling factor itself */
    if (sdt_vae_decode(m->e, m->vae, &image, &lat_t) != 0) {
        engine_error(m->e, "VAE decode", error);
        goto done;
    }
    size_t pixel_count = (size_t)p->width * p->height * 3;
    pixels = malloc(pixel_count * sizeof(float)); /* [H, W, 3] in [-1, 1] */
    out->pixels = malloc(pixel_count);
    if (!pixels || !out->pixels || (size_t)sdt_tensor_numel(&image) != pixel_count) {
        sdt_set_error(error, "sample image: the VAE gave %lld values for %dx%d pixels",
                      (long long)sdt_tensor_numel(&image), p->width, p->height);
        goto done;
    }
    if (image.dtype == SDT_F32 ? sdt_engine_download(m->e, pixels, &image, pixel_count * sizeof(float)) != 0
                               : 1) {
        /* a half-precision VAE */
        void *raw = malloc(sdt_tensor_bytes(&image));
        int bad = !raw || sdt_engine_download(m->e, raw, &image, sdt_tensor_bytes(&image)) != 0 ||
                  sdt_convert(pixels, SDT_F32, raw, image.dtype, pixel_count) != 0;
        free(raw);
        if (bad) {
            engine_error(m->e, "download", error);
            goto done;
        }
    }
    for (size_t i = 0; i < pixel_count; i++)
        out->pixels[i] = to_byte(pixels[i]);
    out->width = p->width;
    out->height = p->height;
    rc = 0;
done:
    if (rc != 0)
        sdt_rgb_image_free(out);
    sdt_sampler_plan_free(&plan);
    sdt_act_free(m->e, &image);
    sdt_act_free(m->e, &lat_t);
    sdt_act_free(m->e, &g.x);
    sdt_act_free(m->e, &g.t);
    sdt_act_free(m->e, &g.ctx);
    free(g.host_x);
    free(g.host_out);
    free(cond);
    free(uncond);
    free(context);
    free(latents);
    free(pixels);
    return rc;
}

char *sdt_sample_file_name(const char *output_name, int at_epoch, int64_t number, int index,
                           int64_t unix_time, int64_t seed)
{
    time_t when = (time_t)unix_time;
    struct tm local;
    char stamp[32] = "00000000000000";
    if (localtime_r(&when, &local))
        strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &local);
    char tag[32], seed_part[32] = "";
    if (at_epoch)
        snprintf(tag, sizeof tag, "e%06lld", (long long)number);
    else
        snprintf(tag, sizeof tag, "%06lld", (long long)number);
    if (seed >= 0)
        snprintf(seed_part, sizeof seed_part, "_%lld", (long long)seed);
    int has_name = output_name && output_name[0];
    return sdt_format("%s%s%s_%02d_%s%s.png", has_name ? output_name : "", has_name ? "_" : "", tag, index,
                      stamp, seed_part);
}

/* AUTOMATIC1111's sampler names, for the "parameters" chunk. */
static const char *a1111_sampler_name(sdt_sampler_kind kind)
{
    switch (kind) {
    case SDT_SAMPLER_DDIM: return "DDIM";
    case SDT_SAMPLER_EULER: return "Euler";
    case SDT_SAMPLER_EULER_A: return "Euler a";
    case SDT_SAMPLER_DPMPP_2M: return "DPM++ 2M";
    case SDT_SAMPLER_DPMPP_2M_KARRAS: return "DPM++ 2M Karras";
    }
    return "?";
}

int sdt_sample_write_png(const char *path, const sdt_rgb_image *img, const sdt_sample_prompt *p,
                         sdt_sampler_kind sampler, uint64_t seed, int64_t training_step, char **error)
{
    const char *negative = p->negative ? p->negative : "";
    char seed_s[32], steps_s[16], scale_s[32], width_s[16], height_s[16], step_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    snprintf(steps_s, sizeof steps_s, "%d", p->steps);
    snprintf(scale_s, sizeof scale_s, "%g", (double)p->scale);
    snprintf(width_s, sizeof width_s, "%d", img->width);
    snprintf(height_s, sizeof height_s, "%d", img->height);
    snprintf(step_s, sizeof step_s, "%lld", (long long)training_step);
    /* A1111 leaves the negative prompt line out when there is none */
    char *parameters = sdt_format("%s\n%s%s%sSteps: %d, Sampler: %s, CFG scale: %s, Seed: %s, Size: %dx%d",
                                  p->prompt ? p->prompt : "", negative[0] ? "Negative prompt: " : "",
                                  negative, negative[0] ? "\n" : "", p->steps, a1111_sampler_name(sampler),
                                  scale_s, seed_s, img->width, img->height);
    const char *kv[] = {
        "prompt",
        p->prompt ? p->prompt : "",
        "negative_prompt",
        negative,
        "seed",
        seed_s,
        "steps",
        steps_s,
        "scale",
        scale_s,
        "sampler",
        sdt_sampler_name(sampler),
        "width",
        width_s,
        "height",
        height_s,
        "step",
        step_s,
        "parameters",
        parameters,
    };
    int rc =
        sdt_png_write(path, img->pixels, img->width, img->height, 3, kv, sizeof kv / sizeof kv[0] / 2, error);
    free(parameters);
    return rc;
}
