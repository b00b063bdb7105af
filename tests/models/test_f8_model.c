/* Frozen weights in F8_E4M3: the tiny SD1.5 fixture loaded with its UNet and text encoder linear and conv
 * weights in e4m3 with a per-tensor scale keeps norms, biases and embeddings in the compute dtype, stores
 * each quantised weight within half an e4m3 step of the f32 one, shrinks the weights' memory by the bytes
 * saved, and gives a UNet forward close to the f32 model's (the bound is derived below). */
#include <math.h>
#include <stdint.h>

#include "backend.h"
#include "checkpoint.h"
#include "layers.h"
#include "sdtune/strutil.h"
#include "unet.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "unit/test_files.h"

#define TINY_FIXTURE "tests/data/models/sd15_tiny.safetensors"

static int load(test_state *t, sdt_engine *e, sdt_model *m, unsigned f8_components, size_t *bytes)
{
    size_t before = sdt_engine_live_bytes(e);
    sdt_model_load_options lo = {.dtype = SDT_F32, .f8_components = f8_components};
    char *error = NULL;
    int rc = sdt_model_load(e, TINY_FIXTURE, &lo, m, NULL, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    *bytes = sdt_engine_live_bytes(e) - before;
    return rc;
}

static int is_layer_weight(const sdt_param *p)
{
    return p->kind == SDT_PARAM_LINEAR_WEIGHT || p->kind == SDT_PARAM_CONV_WEIGHT;
}

/* Every value of the f8 table against the f32 one: dtypes by kind, the scale amax / 448, and each stored
 * weight within half an e4m3 step (2^-4 relative, or 2^-10 * scale in the subnormal range). Returns the
 * elements stored in F8. */
static int64_t check_table(test_state *t, const sdt_param_table *a, const sdt_param_table *b, int f8)
{
    int64_t f8_elements = 0;
    int bad_dtype = 0, bad_scale = 0, bad_value = 0;
    for (size_t i = 0; i < a->count && i < b->count; i++) {
        const sdt_param *pa = &a->items[i], *pb = &b->items[i];
        int64_t n = sdt_param_numel(pa);
        const float *va = pa->value.data;
        int want_f8 = f8 && is_layer_weight(pa);
        if (pb->value.dtype != (want_f8 ? SDT_F8_E4M3 : SDT_F32)) {
            bad_dtype++;
            continue;
        }
        if (!want_f8) {
            bad_value += memcmp(va, pb->value.data, (size_t)n * sizeof(float)) != 0;
            continue;
        }
        f8_elements += n;
        float scale = pb->value.scale;
        bad_scale += scale != sdt_f8e4m3_scale_for(va, (size_t)n);
        const uint8_t *codes = pb->value.data;
        for (int64_t k = 0; k < n; k++) {
            double deq = (double)sdt_f8e4m3_to_f32(codes[k]) * scale;
            if (fabs(deq - va[k]) > fabs((double)va[k]) * 0x1p-4 + 0x1p-10 * scale)
                bad_value++;
        }
    }
    CHECK_MSG(t, bad_dtype == 0, "%s: %d values have the wrong dtype", a->component, bad_dtype);
    CHECK_MSG(t, bad_scale == 0, "%s: %d F8 weights have a scale other than amax / 448", a->component,
              bad_scale);
    CHECK_MSG(t, bad_value == 0, "%s: %d values are not the loaded ones", a->component, bad_value);
    return f8_elements;
}

/* A deterministic input in [-1, 1). */
static void fill(float *v, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)(seed >> 40) * 0x1p-23f - 1.0f;
    }
}

/* The UNet output of model m on a fixed input; NULL on failure. [B, H, W, out_channels], *n elements. */
static float *unet_output(test_state *t, sdt_engine *e, sdt_model *m, int64_t *n)
{
    const sdt_unet_config *cfg = &m->arch.unet;
    enum { B = 2, HW = 16, L = 7 };
    sdt_unet *u = NULL;
    char *error = NULL;
    float *result = NULL;
    if (sdt_unet_create(cfg, &m->unet, &u, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error ? error : "");
        free(error);
        return NULL;
    }
    int64_t xn = (int64_t)B * HW * HW * cfg->in_channels, cn = (int64_t)B * L * cfg->cross_attention_dim;
    float *x = malloc((size_t)xn * sizeof *x),
          *ctx = malloc((size_t)cn * sizeof *ctx); /* [B,H,W,C], [B,L,D] */
    float ts[B] = {10.0f, 700.0f};
    if (x && ctx) {
        fill(x, xn, 1);
        fill(ctx, cn, 2);
        sdt_tensor xt = sdt_tensor_view(x, SDT_F32, 4, (int64_t[]){B, HW, HW, cfg->in_channels});
        sdt_tensor ct = sdt_tensor_view(ctx, SDT_F32, 3, (int64_t[]){B, L, cfg->cross_attention_dim});
        sdt_tensor tt = sdt_tensor_view(ts, SDT_F32, 1, (int64_t[]){B});
        sdt_tensor out = {0}; /* [B, H, W, out_channels] */
        if (sdt_unet_forward(e, u, &out, &xt, &tt, &ct, NULL, 0) == 0) {
            *n = sdt_tensor_numel(&out);
            result = malloc((size_t)*n * sizeof *result);
            if (result)
                memcpy(result, out.data, (size_t)*n * sizeof *result);
        } else {
            CHECK_MSG(t, 0, "forward: %s", sdt_engine_error(e));
        }
        sdt_act_free(e, &out);
    }
    free(x);
    free(ctx);
    sdt_unet_free(e, u);
    return result;
}

static void test_f8_load_and_forward(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    sdt_model full, quant;
    size_t full_bytes = 0, quant_bytes = 0;
    const unsigned f8 = (1u << SDT_COMPONENT_UNET) | (1u << SDT_COMPONENT_TEXT_ENCODER);
    if (load(t, e, &full, 0, &full_bytes) != 0 || load(t, e, &quant, f8, &quant_bytes) != 0) {
        sdt_engine_free(e);
        return;
    }
    int64_t f8_elements = check_table(t, &full.unet, &quant.unet, 1) +
                          check_table(t, &full.text_encoder, &quant.text_encoder, 1);
    CHECK(t, check_table(t, &full.vae, &quant.vae, 0) == 0);
    /* Norms, biases and embeddings stay: the saving is exactly 3 bytes per quantised weight, up to the
     * arena's alignment padding (64 bytes per tensor at most). */
    int64_t saved = (int64_t)full_bytes - (int64_t)quant_bytes;
    size_t tensors = full.unet.count + full.text_encoder.count;
    CHECK_MSG(t, f8_elements > 0 && llabs(saved - 3 * f8_elements) <= (long long)(64 * tensors),
              "saved %lld bytes for %lld F8 weights", (long long)saved, (long long)f8_elements);
    printf("  weights: f32 %zu bytes, with F8 UNet and text encoder weights %zu bytes (%lld weights in F8)\n",
           full_bytes, quant_bytes, (long long)f8_elements);

    /* The forward. One e4m3 rounding (3 mantissa bits, to nearest) leaves a relative error uniform in
     * +-2^-4 of the value's binade; averaged over values spread across the binade that is a normalised
     * MSE of about (2^-3)^2 / 12 / (7/3) ~ 5.6e-4 per weight tensor, and a layer's output inherits it (its
     * errors are independent across the C products summed). Through the tiny UNet's chain of about 20
     * linear and conv layers with residual paths the errors add rather than multiply, so the output's
     * NMSE stays near 20 * 5.6e-4 ~ 1e-2 at the very worst; it must be below 2e-2, and above 1e-7 (the
     * weights really were quantised). */
    int64_t n_full = 0, n_quant = 0;
    float *a = unet_output(t, e, &full, &n_full), *b = unet_output(t, e, &quant, &n_quant);
    if (a && b && n_full == n_quant) {
        double diff2 = 0, ref2 = 0;
        for (int64_t i = 0; i < n_full; i++) {
            diff2 += ((double)b[i] - a[i]) * ((double)b[i] - a[i]);
            ref2 += (double)a[i] * a[i];
        }
        double nmse = diff2 / (ref2 > 0 ? ref2 : 1);
        printf("  UNet forward NMSE, F8 weights against f32: %.3e\n", nmse);
        CHECK_MSG(t, nmse < 2e-2 && nmse > 1e-7, "NMSE %g", nmse);
    } else {
        CHECK(t, 0);
    }
    free(a);
    free(b);
    sdt_model_free(e, &full);
    sdt_model_free(e, &quant);
    sdt_engine_free(e);
}

/* Saving a model with F8 weights writes their dequantised values (code * scale): loaded back in F32, each
 * equals its dequantisation exactly; loaded back in F8, each has the same codes and scale again. */
static void test_f8_save_round_trip(test_state *t)
{
    char dir[256];
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e || test_make_temp_dir(dir, sizeof dir, "f8-save") != 0) {
        sdt_engine_free(e);
        return;
    }
    sdt_model quant, back, again;
    size_t bytes = 0;
    const unsigned unet = 1u << SDT_COMPONENT_UNET;
    char *path = sdt_format("%s/f8.safetensors", dir), *error = NULL;
    sdt_model_save_options so = {.format = SDT_CKPT_LDM, .dtype = SDT_F32};
    int ok = load(t, e, &quant, unet, &bytes) == 0;
    ok = ok && sdt_model_save(e, &quant, path, &so, &error) == 0;
    CHECK_MSG(t, ok, "%s", error ? error : "");
    free(error);
    sdt_model_load_options lo = {.dtype = SDT_F32};
    error = NULL;
    int loaded = ok && sdt_model_load(e, path, &lo, &back, NULL, &error) == 0;
    CHECK_MSG(t, !ok || loaded, "%s", error ? error : "");
    free(error);
    lo.f8_components = unet;
    error = NULL;
    int loaded_again = ok && sdt_model_load(e, path, &lo, &again, NULL, &error) == 0;
    CHECK_MSG(t, !ok || loaded_again, "%s", error ? error : "");
    free(error);
    if (loaded && loaded_again) {
        int bad = 0, bad_codes = 0;
        for (size_t i = 0; i < quant.unet.count; i++) {
            const sdt_param *q = &quant.unet.items[i], *b = &back.unet.items[i], *a = &again.unet.items[i];
            if (q->value.dtype != SDT_F8_E4M3)
                continue;
            int64_t n = sdt_param_numel(q);
            const uint8_t *codes = q->value.data;
            for (int64_t k = 0; k < n; k++)
                bad += ((const float *)b->value.data)[k] != sdt_f8e4m3_to_f32(codes[k]) * q->value.scale;
            /* amax of the saved values is 448 * scale rounded once, so the new scale is the old one within
             * an ulp (fl(fl(448 s) / 448) need not be s), and every code is the same. */
            bad_codes += fabsf(a->value.scale - q->value.scale) > q->value.scale * 0x1p-22f ||
                         memcmp(a->value.data, codes, (size_t)n) != 0;
        }
        CHECK_MSG(t, bad == 0, "%d saved values are not code * scale", bad);
        CHECK_MSG(t, bad_codes == 0, "%d weights quantise differently after the round trip", bad_codes);
    }
    if (loaded)
        sdt_model_free(e, &back);
    if (loaded_again)
        sdt_model_free(e, &again);
    sdt_model_free(e, &quant);
    free(path);
    test_remove_tree(dir);
    sdt_engine_free(e);
}

TEST_MAIN("f8_model", TEST(test_f8_load_and_forward), TEST(test_f8_save_round_trip))
