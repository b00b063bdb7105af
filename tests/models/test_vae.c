/* The VAE against diffusers' AutoencoderKL (tests/data/models/vae_tiny_io.safetensors, the weights in
 * sd15_tiny.safetensors): moments = quant_conv(encoder(image)), decoded = decoder(post_quant_conv(z)), for
 * one image and for a batch of two; the latent sampling helper against the formula; argument errors. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "models/fixture.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "vae.h"

#define NMSE_LIMIT 1e-8
#define SIDE 32  /* image side of the fixture */
#define LSIDE 4  /* latent side */
#define LATENT 4 /* latent channels */

typedef struct vae_fixture {
    sdt_engine *e;
    sdt_safetensors *io;
    sdt_vae_config config;
    sdt_param_table table;
    sdt_vae *vae;
} vae_fixture;

static void fixture_close(vae_fixture *f)
{
    sdt_vae_free(f->vae);
    fixture_release(f->e, &f->table, f->io);
    memset(f, 0, sizeof *f);
}

/* The sd15-tiny preset's VAE must be the network the fixture was made with (its vae_config metadata). */
static void check_config(test_state *t, const sdt_vae_config *c)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(FIXTURE_DIR "/sd15_tiny.safetensors", &st, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        return;
    }
    const char *text = sdt_safetensors_metadata(st, "vae_config");
    json_t *root = text ? json_loads(text, 0, NULL) : NULL;
    CHECK_MSG(t, root != NULL, "sd15_tiny.safetensors has no vae_config");
    if (root) {
        json_t *boc = json_object_get(root, "block_out_channels");
        int same = json_array_size(boc) == (size_t)c->levels;
        for (int i = 0; same && i < c->levels; i++)
            same = json_integer_value(json_array_get(boc, (size_t)i)) == c->block_out_channels[i];
        same &= json_integer_value(json_object_get(root, "layers_per_block")) == c->layers_per_block;
        same &= json_integer_value(json_object_get(root, "norm_num_groups")) == c->norm_groups;
        same &= json_integer_value(json_object_get(root, "latent_channels")) == c->latent_channels;
        same &= json_integer_value(json_object_get(root, "in_channels")) == c->in_channels;
        same &= (float)json_number_value(json_object_get(root, "scaling_factor")) == c->scaling_factor;
        CHECK_MSG(t, same, "the sd15-tiny VAE preset differs from the fixture's vae_config");
        json_decref(root);
    }
    sdt_safetensors_close(st);
}

static int fixture_open(test_state *t, vae_fixture *f)
{
    memset(f, 0, sizeof *f);
    char *error = NULL;
    f->e = test_cpu_engine(t, 1);
    if (!f->e)
        goto fail;
    const sdt_model_arch *arch = sdt_model_arch_find("sd15-tiny");
    CHECK(t, arch != NULL);
    if (!arch)
        goto fail;
    f->config = arch->vae;
    check_config(t, &f->config);
    if (fixture_step_failed(t, sdt_vae_params(&f->config, &f->table, &error), &error))
        goto fail;
    if (fixture_load_params(f->e, &f->table, FIXTURE_DIR "/sd15_tiny.safetensors") != 0) {
        CHECK_MSG(t, 0, "cannot load the VAE weights");
        goto fail;
    }
    if (fixture_step_failed(t, sdt_safetensors_open(FIXTURE_DIR "/vae_tiny_io.safetensors", &f->io, &error),
                            &error))
        goto fail;
    if (fixture_step_failed(t, sdt_vae_create(&f->config, &f->table, &f->vae, &error), &error))
        goto fail;
    return 0;
fail:
    free(error);
    fixture_close(f);
    return -1;
}

/* A fixture tensor [1, C, H, W] as NHWC, repeated `copies` times along the batch (malloc'd). */
static float *read_nhwc(vae_fixture *f, const char *name, int64_t c, int64_t h, int64_t w, int copies)
{
    float *nchw = fixture_read_f32(f->io, name, c * h * w);
    float *nhwc = malloc((size_t)(copies * c * h * w) * sizeof *nhwc);
    if (nchw && nhwc) {
        for (int i = 0; i < copies; i++)
            fixture_nchw_to_nhwc(nhwc + i * c * h * w, nchw, 1, c, h, w);
    } else {
        free(nhwc);
        nhwc = NULL;
    }
    free(nchw);
    return nhwc;
}

static void test_encode_decode(test_state *t)
{
    vae_fixture f;
    if (fixture_open(t, &f) != 0)
        return;
    const float scale = f.config.scaling_factor;
    for (int batch = 1; batch <= 2; batch++) {
        char what[96];
        float *image = read_nhwc(&f, "image", 3, SIDE, SIDE, batch);
        float *moments = read_nhwc(&f, "moments", 2 * LATENT, LSIDE, LSIDE, batch);
        float *z = read_nhwc(&f, "z", LATENT, LSIDE, LSIDE, batch);
        float *decoded = read_nhwc(&f, "decoded", 3, SIDE, SIDE, batch);
        CHECK(t, image && moments && z && decoded);
        if (image && moments && z && decoded) {
            sdt_tensor in = sdt_tensor_view(image, SDT_F32, 4, (int64_t[]){batch, SIDE, SIDE, 3});
            sdt_tensor out = {0};
            int ok = sdt_vae_encode(f.e, f.vae, &out, &in) == 0;
            CHECK_MSG(t, ok, "encode: %s", sdt_engine_error(f.e));
            if (ok) {
                CHECK(t, out.ndim == 4 && out.shape[0] == batch && out.shape[1] == LSIDE &&
                             out.shape[2] == LSIDE && out.shape[3] == 2 * LATENT);
                snprintf(what, sizeof what, "moments = quant_conv(encoder(image)), batch %d", batch);
                CHECK(t, !fixture_expect_close(what, out.data, moments, (size_t)sdt_tensor_numel(&out),
                                               NMSE_LIMIT));
            }
            sdt_act_free(f.e, &out);

            /* decode takes latents in the UNet's space: z * scaling_factor. */
            int64_t nz = (int64_t)batch * LSIDE * LSIDE * LATENT;
            for (int64_t i = 0; i < nz; i++)
                z[i] *= scale;
            sdt_tensor lat = sdt_tensor_view(z, SDT_F32, 4, (int64_t[]){batch, LSIDE, LSIDE, LATENT});
            ok = sdt_vae_decode(f.e, f.vae, &out, &lat) == 0;
            CHECK_MSG(t, ok, "decode: %s", sdt_engine_error(f.e));
            if (ok) {
                CHECK(t, out.ndim == 4 && out.shape[0] == batch && out.shape[1] == SIDE &&
                             out.shape[2] == SIDE && out.shape[3] == 3);
                snprintf(what, sizeof what, "decoded = decoder(post_quant_conv(z)), batch %d", batch);
                CHECK(t, !fixture_expect_close(what, out.data, decoded, (size_t)sdt_tensor_numel(&out),
                                               NMSE_LIMIT));
            }
            sdt_act_free(f.e, &out);
            /* The caller's latents are left alone. */
            CHECK(t, z[0] == z[0] && lat.data == z);
        }
        free(image);
        free(moments);
        free(z);
        free(decoded);
    }
    fixture_close(&f);
}

static void test_latents(test_state *t)
{
    vae_fixture f;
    if (fixture_open(t, &f) != 0)
        return;
    /* Moments [1, 2, 3, 2 * 4]: means and log-variances, with log-variances beyond both clamp limits. */
    enum { H = 2, W = 3, N = H * W };
    float mom[N * 2 * LATENT], noise[N * LATENT];
    for (int p = 0; p < N; p++)
        for (int c = 0; c < LATENT; c++) {
            mom[p * 2 * LATENT + c] = 0.1f * (float)(p - c);
            mom[p * 2 * LATENT + LATENT + c] = -1.0f + 0.25f * (float)(p + c);
            noise[p * LATENT + c] = 0.3f * (float)(c - p) + 0.05f;
        }
    mom[0 * 2 * LATENT + LATENT + 1] = -45.0f; /* clamped to -30 */
    mom[1 * 2 * LATENT + LATENT + 2] = 25.0f;  /* clamped to 20 */
    sdt_tensor tm = sdt_tensor_view(mom, SDT_F32, 4, (int64_t[]){1, H, W, 2 * LATENT});
    sdt_tensor tn = sdt_tensor_view(noise, SDT_F32, 4, (int64_t[]){1, H, W, LATENT});
    sdt_tensor sample = {0}, mode = {0};
    CHECK_MSG(t, sdt_vae_latents(f.e, f.vae, &sample, &tm, &tn) == 0, "%s", sdt_engine_error(f.e));
    CHECK_MSG(t, sdt_vae_latents(f.e, f.vae, &mode, &tm, NULL) == 0, "%s", sdt_engine_error(f.e));
    if (sample.data && mode.data) {
        double worst = 0.0;
        for (int p = 0; p < N; p++)
            for (int c = 0; c < LATENT; c++) {
                double mean = mom[p * 2 * LATENT + c];
                double logvar = fmin(fmax(mom[p * 2 * LATENT + LATENT + c], -30.0), 20.0);
                double want = (mean + exp(0.5 * logvar) * noise[p * LATENT + c]) * f.config.scaling_factor;
                double got = ((const float *)sample.data)[p * LATENT + c];
                worst = fmax(worst, fabs(got - want) / fmax(fabs(want), 1e-6));
                double want_mode = mean * f.config.scaling_factor;
                worst = fmax(worst, fabs(((const float *)mode.data)[p * LATENT + c] - want_mode) /
                                        fmax(fabs(want_mode), 1e-6));
            }
        CHECK_MSG(t, worst < 1e-6, "latents differ from the formula by %g (relative)", worst);
        printf("%-6s %-60s max rel %.1e\n", worst < 1e-6 ? "ok" : "FAIL",
               "latents = (mean + exp(logvar / 2) noise) * scaling, mode", worst);
    }
    sdt_act_free(f.e, &sample);
    sdt_act_free(f.e, &mode);
    fixture_close(&f);
}

static void test_errors(test_state *t)
{
    vae_fixture f;
    if (fixture_open(t, &f) != 0)
        return;
    static float buf[1 * 30 * 30 * 3];
    sdt_tensor out = {0};
    sdt_tensor odd = sdt_tensor_view(buf, SDT_F32, 4, (int64_t[]){1, 30, 30, 3});
    CHECK(t, sdt_vae_encode(f.e, f.vae, &out, &odd) == -1 && out.data == NULL);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "multiples of 8");
    sdt_tensor rgba = sdt_tensor_view(buf, SDT_F32, 4, (int64_t[]){1, 8, 8, 4});
    CHECK(t, sdt_vae_encode(f.e, f.vae, &out, &rgba) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "expected [B, H, W, 3]");
    sdt_tensor lat = sdt_tensor_view(buf, SDT_F32, 4, (int64_t[]){1, 4, 4, 8});
    CHECK(t, sdt_vae_decode(f.e, f.vae, &out, &lat) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "the latents");
    sdt_tensor mom = sdt_tensor_view(buf, SDT_F32, 4, (int64_t[]){1, 4, 4, 8});
    sdt_tensor noise = sdt_tensor_view(buf, SDT_F32, 4, (int64_t[]){1, 4, 3, 4});
    CHECK(t, sdt_vae_latents(f.e, f.vae, &out, &mom, &noise) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(f.e), "the noise must be [1, 4, 4, 4]");
    fixture_close(&f);
}

TEST_MAIN("vae", TEST(test_encode_decode), TEST(test_latents), TEST(test_errors))
