/* Frozen F8_E4M3 weights on the op interface: linear and conv2d, forward and backward, give bit for bit
 * what the same op gives with the dequantised fp32 weight (code * scale) on the CPU backend and on the
 * guarded backend; the checks refuse a weight gradient for an F8 weight, an F8 tensor anywhere but the
 * weight, and a scale that is not finite and positive. */
#include <math.h>
#include <stdint.h>

#include "backend.h"
#include "check.h"

static void random_fill(float *v, size_t n, uint64_t seed, float amplitude)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = ((float)(s >> 40) * 0x1p-24f - 0.5f) * 2.0f * amplitude;
    }
}

/* A weight as F8 codes with its scale, and the same values dequantised to fp32. */
typedef struct f8_weight {
    uint8_t *codes;     /* [n] */
    float *dequantized; /* [n] */
    float scale;
} f8_weight;

static int f8_weight_make(f8_weight *w, size_t n, uint64_t seed)
{
    float *raw = malloc(n * sizeof *raw); /* [n] the weight before quantisation */
    w->codes = malloc(n);
    w->dequantized = malloc(n * sizeof *w->dequantized);
    if (!raw || !w->codes || !w->dequantized) {
        free(raw);
        return -1;
    }
    /* Magnitudes of a trained layer (~0.02): without the scale most would be e4m3 subnormals. */
    random_fill(raw, n, seed, 0.03f);
    w->scale = sdt_f8e4m3_scale_for(raw, n);
    sdt_f32_to_f8e4m3_scaled(w->codes, raw, n, w->scale);
    sdt_f8e4m3_to_f32_scaled(w->dequantized, w->codes, n, w->scale);
    free(raw);
    return 0;
}

static void f8_weight_free(f8_weight *w)
{
    free(w->codes);
    free(w->dequantized);
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* Copies host data into a fresh tensor of the engine's device (the guarded backend refuses host memory). */
static sdt_tensor device_copy(sdt_engine *e, const void *host, sdt_dtype dtype, int ndim,
                              const int64_t *shape)
{
    sdt_tensor t = sdt_tensor_view(NULL, dtype, ndim, shape);
    t.device = sdt_engine_device(e);
    size_t bytes = sdt_tensor_bytes(&t);
    t.data = sdt_engine_alloc(e, bytes);
    if (t.data && host)
        sdt_engine_upload(e, &t, host, bytes);
    else if (t.data)
        sdt_fill(e, &t, 0.0f);
    return t;
}

static void download(sdt_engine *e, float *host, const sdt_tensor *t)
{
    sdt_engine_download(e, host, t, sdt_tensor_bytes(t));
}

/* linear: out, dinp and dbias with the F8 weight equal those with its fp32 dequantisation. */
static void linear_matches_dequantized(test_state *t, sdt_device_kind device)
{
    enum { N = 6, C = 40, OC = 24 };
    sdt_engine_options options = {.device = device, .threads = 1};
    sdt_engine *e = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_engine_create(&options, &e, &error) == 0, "%s", error ? error : "");
    free(error);
    f8_weight w = {0};
    if (!e || f8_weight_make(&w, OC * C, 7) != 0) {
        sdt_engine_free(e);
        return;
    }
    float x[N * C], b[OC], dy[N * OC];
    random_fill(x, N * C, 1, 1.0f);
    random_fill(b, OC, 2, 0.1f);
    random_fill(dy, N * OC, 3, 1.0f);
    const int64_t xs[] = {N, C}, ws[] = {OC, C}, bs[] = {OC}, ys[] = {N, OC};
    sdt_tensor inp = device_copy(e, x, SDT_F32, 2, xs), bias = device_copy(e, b, SDT_F32, 1, bs);
    sdt_tensor dout = device_copy(e, dy, SDT_F32, 2, ys);
    sdt_tensor wf8 = device_copy(e, w.codes, SDT_F8_E4M3, 2, ws);
    wf8.scale = w.scale;
    sdt_tensor wf32 = device_copy(e, w.dequantized, SDT_F32, 2, ws);
    sdt_tensor out_a = device_copy(e, NULL, SDT_F32, 2, ys), out_b = device_copy(e, NULL, SDT_F32, 2, ys);
    sdt_tensor dx_a = device_copy(e, NULL, SDT_F32, 2, xs), dx_b = device_copy(e, NULL, SDT_F32, 2, xs);
    sdt_tensor db_a = device_copy(e, NULL, SDT_F32, 1, bs), db_b = device_copy(e, NULL, SDT_F32, 1, bs);

    CHECK_MSG(t, sdt_linear_forward(e, &out_a, &inp, &wf8, &bias) == 0, "%s", sdt_engine_error(e));
    CHECK(t, sdt_linear_forward(e, &out_b, &inp, &wf32, &bias) == 0);
    CHECK_MSG(t, sdt_linear_backward(e, &dx_a, NULL, &db_a, &dout, &inp, &wf8) == 0, "%s",
              sdt_engine_error(e));
    CHECK(t, sdt_linear_backward(e, &dx_b, NULL, &db_b, &dout, &inp, &wf32) == 0);
    float ya[N * OC], yb[N * OC], dxa[N * C], dxb[N * C], dba[OC], dbb[OC];
    download(e, ya, &out_a);
    download(e, yb, &out_b);
    download(e, dxa, &dx_a);
    download(e, dxb, &dx_b);
    download(e, dba, &db_a);
    download(e, dbb, &db_b);
    CHECK_MSG(t, same_bits(ya, yb, N * OC), "linear forward with an F8 weight differs (%s)",
              sdt_device_kind_name(device));
    CHECK_MSG(t, same_bits(dxa, dxb, N * C), "linear dinp with an F8 weight differs (%s)",
              sdt_device_kind_name(device));
    CHECK(t, same_bits(dba, dbb, OC));
    /* The values really are the scaled ones: not flushed to zero, not off by the scale. */
    double norm = 0;
    for (int i = 0; i < N * OC; i++)
        norm += (double)ya[i] * ya[i];
    CHECK(t, norm > 0.01);

    /* A weight gradient for a frozen F8 weight is refused, naming the op. */
    sdt_tensor dw = device_copy(e, NULL, SDT_F32, 2, ws);
    CHECK(t, sdt_linear_backward(e, &dx_a, &dw, NULL, &dout, &inp, &wf8) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "linear backward: the weight is F8_E4M3");
    /* F8 is for weights only. */
    sdt_tensor x8 = wf8;
    x8.ndim = 2;
    x8.shape[0] = OC;
    x8.shape[1] = C;
    CHECK(t, sdt_linear_forward(e, &out_a, &x8, &wf32, NULL) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "only the weight of linear and conv2d may be F8_E4M3");
    /* A broken scale is an error, not garbage. */
    sdt_tensor bad = wf8;
    bad.scale = -1.0f;
    CHECK(t, sdt_linear_forward(e, &out_a, &inp, &bad, NULL) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "scale");
    bad.scale = NAN;
    CHECK(t, sdt_linear_forward(e, &out_a, &inp, &bad, NULL) == -1);
    /* And F8 tensors do not go through the elementwise ops. */
    CHECK(t, sdt_copy(e, &wf32, &wf8) == -1);

    sdt_tensor *all[] = {&inp, &bias, &dout, &wf8, &wf32, &out_a, &out_b, &dx_a, &dx_b, &db_a, &db_b, &dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sdt_engine_dealloc(e, all[i]->data);
    f8_weight_free(&w);
    sdt_engine_free(e);
}

/* conv2d (3x3 with padding, and 1x1 which runs as a GEMM): the same comparison. */
static void conv_matches_dequantized(test_state *t, sdt_device_kind device, int k)
{
    enum { B = 2, H = 5, W = 4, C = 6, OC = 5 };
    sdt_engine_options options = {.device = device, .threads = 1};
    sdt_engine *e = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_engine_create(&options, &e, &error) == 0, "%s", error ? error : "");
    free(error);
    f8_weight w = {0};
    if (!e || f8_weight_make(&w, (size_t)(OC * k * k * C), 11) != 0) {
        sdt_engine_free(e);
        return;
    }
    int pad = k / 2;
    sdt_conv2d_params p = {1, pad, pad, pad, pad};
    float x[B * H * W * C], dy[B * H * W * OC], b[OC];
    random_fill(x, B * H * W * C, 4, 1.0f);
    random_fill(dy, B * H * W * OC, 5, 1.0f);
    random_fill(b, OC, 6, 0.1f);
    const int64_t xs[] = {B, H, W, C}, ws[] = {OC, k, k, C}, ys[] = {B, H, W, OC}, bs[] = {OC};
    sdt_tensor inp = device_copy(e, x, SDT_F32, 4, xs), dout = device_copy(e, dy, SDT_F32, 4, ys);
    sdt_tensor bias = device_copy(e, b, SDT_F32, 1, bs);
    sdt_tensor wf8 = device_copy(e, w.codes, SDT_F8_E4M3, 4, ws);
    wf8.scale = w.scale;
    sdt_tensor wf32 = device_copy(e, w.dequantized, SDT_F32, 4, ws);
    sdt_tensor out_a = device_copy(e, NULL, SDT_F32, 4, ys), out_b = device_copy(e, NULL, SDT_F32, 4, ys);
    sdt_tensor dx_a = device_copy(e, NULL, SDT_F32, 4, xs), dx_b = device_copy(e, NULL, SDT_F32, 4, xs);
    CHECK_MSG(t, sdt_conv2d_forward(e, &out_a, &inp, &wf8, &bias, &p) == 0, "%s", sdt_engine_error(e));
    CHECK(t, sdt_conv2d_forward(e, &out_b, &inp, &wf32, &bias, &p) == 0);
    CHECK_MSG(t, sdt_conv2d_backward(e, &dx_a, NULL, NULL, &dout, &inp, &wf8, &p) == 0, "%s",
              sdt_engine_error(e));
    CHECK(t, sdt_conv2d_backward(e, &dx_b, NULL, NULL, &dout, &inp, &wf32, &p) == 0);
    static float ya[B * H * W * OC], yb[B * H * W * OC], dxa[B * H * W * C], dxb[B * H * W * C];
    download(e, ya, &out_a);
    download(e, yb, &out_b);
    download(e, dxa, &dx_a);
    download(e, dxb, &dx_b);
    CHECK_MSG(t, same_bits(ya, yb, B * H * W * OC), "conv%dx%d forward with an F8 weight differs (%s)", k, k,
              sdt_device_kind_name(device));
    CHECK_MSG(t, same_bits(dxa, dxb, B * H * W * C), "conv%dx%d dinp with an F8 weight differs (%s)", k, k,
              sdt_device_kind_name(device));
    sdt_tensor dw = device_copy(e, NULL, SDT_F32, 4, ws);
    CHECK(t, sdt_conv2d_backward(e, &dx_a, &dw, NULL, &dout, &inp, &wf8, &p) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "conv2d backward: the weight is F8_E4M3");

    sdt_tensor *all[] = {&inp, &dout, &bias, &wf8, &wf32, &out_a, &out_b, &dx_a, &dx_b, &dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sdt_engine_dealloc(e, all[i]->data);
    f8_weight_free(&w);
    sdt_engine_free(e);
}

/* A zero scale reads as 1 (zeroed structs stay valid); other dtypes ignore it. */
static void scale_convention(test_state *t)
{
    uint8_t code = 0x38; /* 1.0 */
    sdt_tensor v = sdt_tensor_view(&code, SDT_F8_E4M3, 1, (int64_t[]){1});
    CHECK(t, v.scale == 0.0f && sdt_tensor_scale(&v) == 1.0f);
    v.scale = 0.25f;
    CHECK(t, sdt_tensor_scale(&v) == 0.25f);
    v.dtype = SDT_BF16;
    CHECK(t, sdt_tensor_scale(&v) == 1.0f);
    sdt_tensor w = sdt_tensor_view(&code, SDT_F8_E4M3, 1, (int64_t[]){1});
    CHECK(t, sdt_tensor_bytes(&w) == 1);
}

static void cpu_linear(test_state *t) { linear_matches_dequantized(t, SDT_DEVICE_CPU); }
static void guarded_linear(test_state *t) { linear_matches_dequantized(t, SDT_DEVICE_GUARDED); }
static void cpu_conv(test_state *t)
{
    conv_matches_dequantized(t, SDT_DEVICE_CPU, 3);
    conv_matches_dequantized(t, SDT_DEVICE_CPU, 1);
}
static void guarded_conv(test_state *t)
{
    conv_matches_dequantized(t, SDT_DEVICE_GUARDED, 3);
    conv_matches_dequantized(t, SDT_DEVICE_GUARDED, 1);
}

TEST_MAIN("f8_weights", TEST(scale_convention), TEST(cpu_linear), TEST(guarded_linear), TEST(cpu_conv),
          TEST(guarded_conv))
