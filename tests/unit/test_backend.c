/* The op interface's contract: engine creation, the checks every op makes before it computes (and their
 * messages), F16/BF16 staging on the CPU, and the arena planner. The numbers themselves are the op
 * runner's business (tests/ops). */
#include <math.h>
#include <stdint.h>

#include "arena.h"
#include "backend.h"
#include "check.h"
#include "sdtune/strutil.h"
#include "test_engine.h"

static void test_engine_create(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    CHECK(t, e && strcmp(sdt_engine_backend_name(e), "cpu") == 0);
    CHECK(t, e && sdt_engine_device(e) == SDT_DEVICE_CPU);
    sdt_engine_free(e);

    /* No CUDA ops in this version: asking for them is a clear error, not a crash. */
    sdt_engine_options cuda = {.device = SDT_DEVICE_CUDA};
    char *error = NULL;
    sdt_engine *g = NULL;
    CHECK(t, sdt_engine_create(&cuda, &g, &error) == -1 && g == NULL);
    CHECK_STR_CONTAINS(t, error, "CUDA");
    free(error);
}

static void test_shape_errors(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    float x[2 * 4 * 4 * 3] = {0}, w[8 * 3 * 3 * 4] = {0}, y[2 * 4 * 4 * 8];
    sdt_tensor inp = sdt_tensor_view(x, SDT_F32, 4, (int64_t[]){2, 4, 4, 3});
    sdt_tensor weight = sdt_tensor_view(w, SDT_F32, 4, (int64_t[]){8, 3, 3, 4});
    sdt_tensor out = sdt_tensor_view(y, SDT_F32, 4, (int64_t[]){2, 4, 4, 8});
    sdt_conv2d_params p = {1, 1, 1, 1, 1};
    CHECK(t, sdt_conv2d_forward(e, &out, &inp, &weight, NULL, &p) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "conv2d: weight [OC, KH, KW, C] has C = 4");

    weight = sdt_tensor_view(w, SDT_F32, 4, (int64_t[]){8, 3, 3, 3});
    out = sdt_tensor_view(y, SDT_F32, 4, (int64_t[]){2, 4, 4, 7});
    CHECK(t, sdt_conv2d_forward(e, &out, &inp, &weight, NULL, &p) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "conv2d: output is [2, 4, 4, 7] f32, expected [2, 4, 4, 8]");

    p.stride = 0;
    out = sdt_tensor_view(y, SDT_F32, 4, (int64_t[]){2, 4, 4, 8});
    CHECK(t, sdt_conv2d_forward(e, &out, &inp, &weight, NULL, &p) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "stride 0");

    /* Statistics must be F32, whatever the activations are. */
    uint16_t half[2 * 4 * 8], half_out[2 * 4 * 8], gw[8], gb[8];
    float mean[4], rstd[4];
    sdt_tensor gn_in = sdt_tensor_view(half, SDT_F16, 3, (int64_t[]){2, 4, 8});
    sdt_tensor gn_out = sdt_tensor_view(half_out, SDT_F16, 3, (int64_t[]){2, 4, 8});
    sdt_tensor gn_w = sdt_tensor_view(gw, SDT_F16, 1, (int64_t[]){8});
    sdt_tensor gn_b = sdt_tensor_view(gb, SDT_F16, 1, (int64_t[]){8});
    sdt_tensor gn_mean = sdt_tensor_view(mean, SDT_F16, 2, (int64_t[]){2, 2});
    sdt_tensor gn_rstd = sdt_tensor_view(rstd, SDT_F32, 2, (int64_t[]){2, 2});
    CHECK(t, sdt_group_norm_forward(e, &gn_out, &gn_mean, &gn_rstd, &gn_in, &gn_w, &gn_b, 2, 1e-5f, 0) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "group_norm: mean is [2, 2] f16; it must be f32");
    gn_mean.dtype = SDT_F32;
    CHECK(t, sdt_group_norm_forward(e, &gn_out, &gn_mean, &gn_rstd, &gn_in, &gn_w, &gn_b, 3, 1e-5f, 0) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "8 channels do not split into 3 groups");

    /* Tensors on another device are refused before anything touches them. */
    sdt_tensor a = sdt_tensor_view(x, SDT_F32, 1, (int64_t[]){4});
    sdt_tensor b = a;
    b.device = SDT_DEVICE_CUDA;
    CHECK(t, sdt_add_forward(e, &a, &a, &b) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "add: b is on the GPU but the engine runs on the CPU");

    /* Integer tensors are not compute tensors. */
    int32_t ints[4] = {0};
    sdt_tensor it = sdt_tensor_view(ints, SDT_I32, 1, (int64_t[]){4});
    CHECK(t, sdt_fill(e, &it, 1.0f) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "fill: tensor is [4] I32; ops compute with f32, f16 or bf16");
    sdt_engine_free(e);
}

/* An F16 and a BF16 linear layer agree with the F32 one on the same (representable) values, and
 * gradients are accumulated in place of rounding them away. */
static void test_low_precision_staging(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    enum { N = 3, C = 4, OC = 2 };
    float x[N * C], w[OC * C], y32[N * OC];
    for (int i = 0; i < N * C; i++)
        x[i] = (float)(i % 5) * 0.25f - 0.5f;
    for (int i = 0; i < OC * C; i++)
        w[i] = (float)(i % 3) * 0.5f - 0.25f;
    sdt_tensor x32 = sdt_tensor_view(x, SDT_F32, 2, (int64_t[]){N, C});
    sdt_tensor w32 = sdt_tensor_view(w, SDT_F32, 2, (int64_t[]){OC, C});
    sdt_tensor o32 = sdt_tensor_view(y32, SDT_F32, 2, (int64_t[]){N, OC});
    CHECK(t, sdt_linear_forward(e, &o32, &x32, &w32, NULL) == 0);

    const sdt_dtype types[] = {SDT_F16, SDT_BF16};
    for (int k = 0; k < 2; k++) {
        uint16_t xh[N * C], wh[OC * C], yh[N * OC];
        sdt_convert(xh, types[k], x, SDT_F32, N * C);
        sdt_convert(wh, types[k], w, SDT_F32, OC * C);
        sdt_tensor xt = sdt_tensor_view(xh, types[k], 2, (int64_t[]){N, C});
        sdt_tensor wt = sdt_tensor_view(wh, types[k], 2, (int64_t[]){OC, C});
        sdt_tensor ot = sdt_tensor_view(yh, types[k], 2, (int64_t[]){N, OC});
        CHECK(t, sdt_linear_forward(e, &ot, &xt, &wt, NULL) == 0);
        float back[N * OC];
        sdt_convert(back, SDT_F32, yh, types[k], N * OC);
        /* These inputs are exact in both formats and the products are short sums of quarters: exact too. */
        for (int i = 0; i < N * OC; i++)
            CHECK_MSG(t, back[i] == y32[i], "%s out[%d] = %g, f32 gives %g", sdt_dtype_name(types[k]), i,
                      (double)back[i], (double)y32[i]);

        /* Backward adds into an F16/BF16 gradient that already holds values. */
        uint16_t dw[OC * C], dy[N * OC];
        float ones[N * OC], start[OC * C];
        for (int i = 0; i < N * OC; i++)
            ones[i] = 1.0f;
        for (int i = 0; i < OC * C; i++)
            start[i] = 1.0f;
        sdt_convert(dy, types[k], ones, SDT_F32, N * OC);
        sdt_convert(dw, types[k], start, SDT_F32, OC * C);
        sdt_tensor dyt = sdt_tensor_view(dy, types[k], 2, (int64_t[]){N, OC});
        sdt_tensor dwt = sdt_tensor_view(dw, types[k], 2, (int64_t[]){OC, C});
        CHECK(t, sdt_linear_backward(e, NULL, &dwt, NULL, &dyt, &xt, &wt) == 0);
        float got[OC * C];
        sdt_convert(got, SDT_F32, dw, types[k], OC * C);
        for (int o = 0; o < OC; o++) {
            for (int c = 0; c < C; c++) {
                float column = 0;
                for (int n = 0; n < N; n++)
                    column += x[n * C + c];
                CHECK(t, got[o * C + c] == 1.0f + column);
            }
        }
    }
    sdt_engine_free(e);
}

static void test_arena_plan(test_state *t)
{
    sdt_tensor w1, w2, lora, grad, empty;
    const sdt_tensor_spec specs[] = {
        {"unet.conv_in.weight", SDT_LIFE_FROZEN, SDT_F16, 4, {320, 3, 3, 4}, &w1},
        {"unet.conv_in.bias", SDT_LIFE_FROZEN, SDT_F16, 1, {320}, &w2},
        {"lora.down", SDT_LIFE_TRAINABLE, SDT_F32, 2, {4, 320}, &lora},
        {"lora.down.grad", SDT_LIFE_GRADS, SDT_F32, 2, {4, 320}, &grad},
        {"nothing", SDT_LIFE_ACTIVATIONS, SDT_F32, 2, {0, 320}, &empty},
        {"attention scratch", SDT_LIFE_SCRATCH, SDT_F32, 1, {1000}, NULL},
    };
    sdt_arena_plan plan;
    char *error = NULL;
    CHECK(t, sdt_arena_plan_build(&plan, specs, 6, &error) == 0);
    /* 320*3*3*4 halves = 23040 bytes (a multiple of 256), then 640 bytes rounded to 768. */
    CHECK(t, plan.offsets[0] == 0 && plan.offsets[1] == 23040);
    CHECK(t, plan.bytes[SDT_LIFE_FROZEN] == 23040 + 768);
    CHECK(t, plan.bytes[SDT_LIFE_TRAINABLE] == 5120 && plan.bytes[SDT_LIFE_GRADS] == 5120);
    CHECK(t, plan.bytes[SDT_LIFE_ACTIVATIONS] == 0 && plan.tensors[SDT_LIFE_ACTIVATIONS] == 1);
    CHECK(t, plan.bytes[SDT_LIFE_SCRATCH] == 4096);
    CHECK(t, sdt_arena_plan_total(&plan) == 23808 + 5120 + 5120 + 4096);

    sdt_buf report;
    sdt_buf_init(&report);
    sdt_arena_plan_report(&plan, &report);
    CHECK_STR_CONTAINS(t, report.data, "frozen weights");
    CHECK_STR_CONTAINS(t, report.data, "0.02 MiB");
    CHECK_STR_CONTAINS(t, report.data, "total");
    CHECK(t, strstr(report.data, "optimizer state") == NULL); /* empty classes are not listed */
    sdt_buf_free(&report);

    sdt_engine *e = test_cpu_engine(t, 1);
    sdt_arenas arenas;
    if (e && sdt_arenas_alloc(e, &plan, &arenas, &error) == 0) {
        CHECK(t, w1.data == arenas.block[SDT_LIFE_FROZEN] && w1.dtype == SDT_F16 && w1.shape[0] == 320);
        CHECK(t, (char *)w2.data == (char *)arenas.block[SDT_LIFE_FROZEN] + 23040);
        CHECK(t, (uintptr_t)arenas.block[SDT_LIFE_TRAINABLE] % 64 == 0);
        CHECK(t, lora.data == arenas.block[SDT_LIFE_TRAINABLE] && grad.data == arenas.block[SDT_LIFE_GRADS]);
        CHECK(t, empty.data == NULL && sdt_tensor_numel(&empty) == 0);
        /* Scratch is a stack with marks. */
        size_t mark = sdt_scratch_mark(&arenas);
        void *a = sdt_scratch_take(e, &arenas, 1000);
        void *b = sdt_scratch_take(e, &arenas, 2000);
        CHECK(t, a && b && (char *)b == (char *)a + 1024);
        CHECK(t, sdt_scratch_take(e, &arenas, 2000) == NULL);
        CHECK_STR_CONTAINS(t, sdt_engine_error(e), "scratch arena exhausted");
        sdt_scratch_release(&arenas, mark);
        CHECK(t, sdt_scratch_take(e, &arenas, 4096) == a);
        sdt_arenas_free(e, &arenas);
    } else {
        CHECK_MSG(t, 0, "arena allocation failed: %s", error ? error : "");
    }
    sdt_engine_free(e);
    sdt_arena_plan_free(&plan);

    /* A bad spec is named. */
    const sdt_tensor_spec bad[] = {{"ids", SDT_LIFE_FROZEN, SDT_I64, 1, {77}, NULL}};
    CHECK(t, sdt_arena_plan_build(&plan, bad, 1, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "tensor \"ids\": I64 is not a compute dtype");
    free(error);
    error = NULL;
    const sdt_tensor_spec negative[] = {{"w", SDT_LIFE_FROZEN, SDT_F32, 2, {4, -1}, NULL}};
    CHECK(t, sdt_arena_plan_build(&plan, negative, 1, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "tensor \"w\": dimension 1 is negative");
    free(error);
}

/* The CPU allocator's live and peak counters: blocks counted in 64-byte units, the peak kept after frees
 * until a reset, which brings it down to what is live. */
static void test_allocator_peak(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    CHECK(t, sdt_engine_live_bytes(e) == 0 && sdt_engine_peak_bytes(e) == 0);
    void *a = sdt_engine_alloc(e, 100); /* 128 */
    void *b = sdt_engine_alloc(e, 64);  /* 64 */
    void *c = sdt_engine_alloc(e, 0);   /* 64: never a zero-byte block */
    CHECK(t, a && b && c);
    CHECK(t, ((uintptr_t)a % 64) == 0 && ((uintptr_t)b % 64) == 0);
    CHECK(t, sdt_engine_live_bytes(e) == 256 && sdt_engine_peak_bytes(e) == 256);
    sdt_engine_dealloc(e, a);
    CHECK(t, sdt_engine_live_bytes(e) == 128 && sdt_engine_peak_bytes(e) == 256);
    sdt_engine_reset_peak(e);
    CHECK(t, sdt_engine_peak_bytes(e) == 128);
    void *d = sdt_engine_alloc(e, 1000); /* 1024 */
    sdt_engine_dealloc(e, d);
    CHECK(t, sdt_engine_peak_bytes(e) == 1152 && sdt_engine_live_bytes(e) == 128);
    sdt_engine_dealloc(e, b);
    sdt_engine_dealloc(e, c);
    sdt_engine_dealloc(e, NULL);
    CHECK(t, sdt_engine_live_bytes(e) == 0);
    sdt_engine_free(e);
}

/* The op timing hook: off by default (nothing counted), on counts each op's calls under its name, and
 * turning it on again starts from zero. */
static void test_op_timing(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 1);
    if (!e)
        return;
    float a[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, 0, 1, 1, 1}, out[4];
    sdt_tensor inp = sdt_tensor_view(a, SDT_F32, 2, (int64_t[]){2, 3});    /* [2, 3] */
    sdt_tensor weight = sdt_tensor_view(w, SDT_F32, 2, (int64_t[]){2, 3}); /* [2, 3] */
    sdt_tensor y = sdt_tensor_view(out, SDT_F32, 2, (int64_t[]){2, 2});    /* [2, 2] */
    sdt_op_time times[8];
    CHECK(t, sdt_linear_forward(e, &y, &inp, &weight, NULL) == 0);
    CHECK(t, sdt_engine_op_times(e, times, 8) == 0);
    sdt_engine_set_op_timing(e, 1);
    for (int i = 0; i < 3; i++)
        CHECK(t, sdt_linear_forward(e, &y, &inp, &weight, NULL) == 0);
    CHECK(t, sdt_fill(e, &y, 0.0f) == 0);
    /* a call rejected by the checks never reaches the backend and is not counted */
    CHECK(t, sdt_linear_forward(e, &inp, &inp, &weight, NULL) == -1);
    size_t n = sdt_engine_op_times(e, times, 8);
    CHECK(t, n == 2);
    for (size_t i = 0; i < n; i++) {
        CHECK(t, times[i].seconds >= 0);
        if (strcmp(times[i].op, "linear_forward") == 0)
            CHECK(t, times[i].calls == 3);
        else
            CHECK(t, strcmp(times[i].op, "fill") == 0 && times[i].calls == 1);
    }
    CHECK(t, sdt_engine_op_times(e, times, 1) == 1);
    sdt_engine_set_op_timing(e, 1);
    CHECK(t, sdt_engine_op_times(e, times, 8) == 0);
    sdt_engine_set_op_timing(e, 0);
    CHECK(t, sdt_fill(e, &y, 0.0f) == 0);
    CHECK(t, sdt_engine_op_times(e, times, 8) == 0);
    sdt_engine_free(e);
}

TEST_MAIN("backend", TEST(test_engine_create), TEST(test_shape_errors), TEST(test_low_precision_staging),
          TEST(test_arena_plan), TEST(test_allocator_peak), TEST(test_op_timing))
