/* The op table of the runner (see op_defs.h) and its built-in cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_defs.h"

/* ---- dimensions ---------------------------------------------------------------------------------------- */

int op_dims_set(op_dims *dims, const char *key, double value)
{
    for (int i = 0; i < dims->count; i++) {
        if (strcmp(dims->key[i], key) == 0) {
            dims->value[i] = value;
            return 0;
        }
    }
    if (dims->count == OP_MAX_DIMS || strlen(key) >= sizeof dims->key[0])
        return -1;
    snprintf(dims->key[dims->count], sizeof dims->key[0], "%s", key);
    dims->value[dims->count++] = value;
    return 0;
}

double op_dims_get(const op_dims *dims, const char *key)
{
    for (int i = 0; i < dims->count; i++)
        if (strcmp(dims->key[i], key) == 0)
            return dims->value[i];
    return 0;
}

int op_dims_has(const op_dims *dims, const char *key)
{
    for (int i = 0; i < dims->count; i++)
        if (strcmp(dims->key[i], key) == 0)
            return 1;
    return 0;
}

int op_dims_parse(const char *text, char *op_name, size_t op_name_size, op_dims *dims, char *why,
                  size_t why_size)
{
    memset(dims, 0, sizeof *dims);
    const char *p = text;
    size_t n = strcspn(p, " ");
    if (n == 0 || n >= op_name_size) {
        snprintf(why, why_size, "case \"%s\" does not start with an op name", text);
        return -1;
    }
    memcpy(op_name, p, n);
    op_name[n] = '\0';
    p += n;
    while (*p) {
        p += strspn(p, " ");
        if (!*p)
            break;
        size_t len = strcspn(p, " ");
        const char *eq = memchr(p, '=', len);
        char key[24];
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof key) {
            snprintf(why, why_size, "case \"%s\": \"%.*s\" is not key=value", text, (int)len, p);
            return -1;
        }
        memcpy(key, p, (size_t)(eq - p));
        key[eq - p] = '\0';
        char number[64];
        size_t vlen = len - (size_t)(eq - p) - 1;
        if (vlen == 0 || vlen >= sizeof number) {
            snprintf(why, why_size, "case \"%s\": key %s has no value", text, key);
            return -1;
        }
        memcpy(number, eq + 1, vlen);
        number[vlen] = '\0';
        char *end;
        double value = strtod(number, &end);
        if (*end || op_dims_set(dims, key, value) != 0) {
            snprintf(why, why_size, "case \"%s\": bad value \"%s\" for %s", text, number, key);
            return -1;
        }
        p += len;
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------------------- */

#define D(name) ((int64_t)op_dims_get(d, name))

static op_shape shape_of(int ndim, int64_t a, int64_t b, int64_t c, int64_t e)
{
    op_shape s = {ndim, {a, b, c, e, 0}};
    return s;
}

static op_shape absent(void)
{
    op_shape s = {-1, {0}};
    return s;
}

static op_shape s1(int64_t a) { return shape_of(1, a, 0, 0, 0); }

static op_shape s2(int64_t a, int64_t b) { return shape_of(2, a, b, 0, 0); }

static op_shape s3(int64_t a, int64_t b, int64_t c) { return shape_of(3, a, b, c, 0); }

static op_shape s4(int64_t a, int64_t b, int64_t c, int64_t e) { return shape_of(4, a, b, c, e); }

static int positive(const op_dims *d, const char *keys, char *why, size_t why_size)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", keys);
    for (char *save = NULL, *k = strtok_r(copy, " ", &save); k; k = strtok_r(NULL, " ", &save)) {
        if (op_dims_get(d, k) < 1) {
            snprintf(why, why_size, "%s must be at least 1", k);
            return -1;
        }
    }
    return 0;
}

static sdt_tensor *opt_in(op_tensors *t, int i) { return t->present[i] ? &t->in[i] : NULL; }

static sdt_tensor *opt_grad(op_tensors *t, int i) { return t->grad_present[i] ? &t->grad[i] : NULL; }

/* ---- linear -------------------------------------------------------------------------------------------- */

static int linear_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                         size_t n)
{
    (void)saved;
    if (positive(d, "N C OC", why, n) != 0)
        return -1;
    in[0] = s2(D("N"), D("C"));
    in[1] = s2(D("OC"), D("C"));
    in[2] = D("bias") ? s1(D("OC")) : absent();
    *out = s2(D("N"), D("OC"));
    return 0;
}

static int linear_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_linear_forward(e, &t->out, &t->in[0], &t->in[1], opt_in(t, 2));
}

static int linear_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_linear_backward(e, opt_grad(t, 0), opt_grad(t, 1), opt_grad(t, 2), &t->dout, &t->in[0],
                               &t->in[1]);
}

/* ---- conv2d -------------------------------------------------------------------------------------------- */

static sdt_conv2d_params conv_params(const op_dims *d)
{
    sdt_conv2d_params p = {(int)D("stride"), (int)D("pad_top"), (int)D("pad_left"), (int)D("pad_bottom"),
                           (int)D("pad_right")};
    return p;
}

static int conv2d_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                         size_t n)
{
    (void)saved;
    if (positive(d, "B H W C OC KH KW stride", why, n) != 0)
        return -1;
    int64_t oh = (D("H") + D("pad_top") + D("pad_bottom") - D("KH")) / D("stride") + 1;
    int64_t ow = (D("W") + D("pad_left") + D("pad_right") - D("KW")) / D("stride") + 1;
    if (oh < 1 || ow < 1) {
        snprintf(why, n, "the kernel does not fit the padded input");
        return -1;
    }
    in[0] = s4(D("B"), D("H"), D("W"), D("C"));
    in[1] = s4(D("OC"), D("KH"), D("KW"), D("C"));
    in[2] = D("bias") ? s1(D("OC")) : absent();
    *out = s4(D("B"), oh, ow, D("OC"));
    return 0;
}

static int conv2d_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    sdt_conv2d_params p = conv_params(d);
    return sdt_conv2d_forward(e, &t->out, &t->in[0], &t->in[1], opt_in(t, 2), &p);
}

static int conv2d_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    sdt_conv2d_params p = conv_params(d);
    return sdt_conv2d_backward(e, opt_grad(t, 0), opt_grad(t, 1), opt_grad(t, 2), &t->dout, &t->in[0],
                               &t->in[1], &p);
}

/* ---- norms --------------------------------------------------------------------------------------------- */

static int group_norm_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                             size_t n)
{
    if (positive(d, "B HW C G", why, n) != 0)
        return -1;
    if (D("C") % D("G") != 0) {
        snprintf(why, n, "C must be a multiple of G");
        return -1;
    }
    in[0] = s3(D("B"), D("HW"), D("C"));
    in[1] = in[2] = s1(D("C"));
    *out = in[0];
    saved[0] = saved[1] = s2(D("B"), D("G"));
    return 0;
}

static int group_norm_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    return sdt_group_norm_forward(e, &t->out, &t->saved[0], &t->saved[1], &t->in[0], &t->in[1], &t->in[2],
                                  (int)D("G"), (float)op_dims_get(d, "eps"), (int)D("silu"));
}

static int group_norm_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    return sdt_group_norm_backward(e, opt_grad(t, 0), opt_grad(t, 1), opt_grad(t, 2), &t->dout, &t->in[0],
                                   &t->in[1], &t->in[2], &t->saved[0], &t->saved[1], (int)D("G"),
                                   (int)D("silu"));
}

static int layer_norm_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                             size_t n)
{
    if (positive(d, "N C", why, n) != 0)
        return -1;
    in[0] = s2(D("N"), D("C"));
    in[1] = in[2] = s1(D("C"));
    *out = in[0];
    saved[0] = saved[1] = s1(D("N"));
    return 0;
}

static int layer_norm_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    return sdt_layer_norm_forward(e, &t->out, &t->saved[0], &t->saved[1], &t->in[0], &t->in[1], &t->in[2],
                                  (float)op_dims_get(d, "eps"));
}

static int layer_norm_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_layer_norm_backward(e, opt_grad(t, 0), opt_grad(t, 1), opt_grad(t, 2), &t->dout, &t->in[0],
                                   &t->in[1], &t->saved[0], &t->saved[1]);
}

/* ---- attention and softmax ----------------------------------------------------------------------------- */

static int attention_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                            size_t n)
{
    if (positive(d, "B Lq Lk H D", why, n) != 0)
        return -1;
    in[0] = s3(D("B"), D("Lq"), D("H") * D("D"));
    in[1] = in[2] = s3(D("B"), D("Lk"), D("H") * D("D"));
    *out = in[0];
    saved[0] = s3(D("B"), D("H"), D("Lq"));
    return 0;
}

static float attention_scale(const op_dims *d) { return (float)(1.0 / sqrt(op_dims_get(d, "D"))); }

static int attention_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    return sdt_attention_forward(e, &t->out, &t->saved[0], &t->in[0], &t->in[1], &t->in[2], (int)D("H"),
                                 attention_scale(d), (int)D("causal"));
}

static int attention_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    return sdt_attention_backward(e, opt_grad(t, 0), opt_grad(t, 1), opt_grad(t, 2), &t->dout, &t->in[0],
                                  &t->in[1], &t->in[2], &t->out, &t->saved[0], (int)D("H"),
                                  attention_scale(d), (int)D("causal"));
}

static int rows_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why, size_t n)
{
    (void)saved;
    if (positive(d, "N C", why, n) != 0)
        return -1;
    in[0] = *out = s2(D("N"), D("C"));
    return 0;
}

static int softmax_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_softmax_forward(e, &t->out, &t->in[0]);
}

static int softmax_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_softmax_backward(e, opt_grad(t, 0), &t->dout, &t->out);
}

/* ---- elementwise --------------------------------------------------------------------------------------- */

static int vector_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                         size_t n)
{
    (void)saved;
    if (positive(d, "N", why, n) != 0)
        return -1;
    in[0] = in[1] = *out = s1(D("N"));
    return 0;
}

#define ACTIVATION_OP(fn, act)                                                                               \
    static int fn##_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)                                      \
    {                                                                                                        \
        (void)d;                                                                                             \
        return sdt_activation_forward(e, &t->out, &t->in[0], act);                                           \
    }                                                                                                        \
    static int fn##_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)                                      \
    {                                                                                                        \
        (void)d;                                                                                             \
        return sdt_activation_backward(e, opt_grad(t, 0), &t->dout, &t->in[0], act);                         \
    }
ACTIVATION_OP(silu, SDT_ACT_SILU)
ACTIVATION_OP(gelu, SDT_ACT_GELU)
ACTIVATION_OP(gelu_tanh, SDT_ACT_GELU_TANH)
ACTIVATION_OP(quick_gelu, SDT_ACT_QUICK_GELU)

static int geglu_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why, size_t n)
{
    (void)saved;
    if (positive(d, "N F", why, n) != 0)
        return -1;
    in[0] = s2(D("N"), 2 * D("F"));
    *out = s2(D("N"), D("F"));
    return 0;
}

static int geglu_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_geglu_forward(e, &t->out, &t->in[0]);
}

static int geglu_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_geglu_backward(e, opt_grad(t, 0), &t->dout, &t->in[0]);
}

static int add_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_add_forward(e, &t->out, &t->in[0], &t->in[1]);
}

static int add_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_add_backward(e, opt_grad(t, 0), opt_grad(t, 1), &t->dout);
}

static int channel_vector_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                                 size_t n)
{
    (void)saved;
    if (positive(d, "B HW C", why, n) != 0)
        return -1;
    in[0] = *out = s3(D("B"), D("HW"), D("C"));
    in[1] = s2(D("B"), D("C"));
    return 0;
}

static int channel_vector_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_add_channel_vector_forward(e, &t->out, &t->in[0], &t->in[1]);
}

static int channel_vector_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_add_channel_vector_backward(e, opt_grad(t, 0), opt_grad(t, 1), &t->dout);
}

static int concat_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                         size_t n)
{
    (void)saved;
    if (positive(d, "N Ca Cb", why, n) != 0)
        return -1;
    in[0] = s2(D("N"), D("Ca"));
    in[1] = s2(D("N"), D("Cb"));
    *out = s2(D("N"), D("Ca") + D("Cb"));
    return 0;
}

static int concat_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_concat_forward(e, &t->out, &t->in[0], &t->in[1]);
}

static int concat_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_concat_backward(e, opt_grad(t, 0), opt_grad(t, 1), &t->dout);
}

static int upsample_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                           size_t n)
{
    (void)saved;
    if (positive(d, "B H W C", why, n) != 0)
        return -1;
    in[0] = s4(D("B"), D("H"), D("W"), D("C"));
    *out = s4(D("B"), 2 * D("H"), 2 * D("W"), D("C"));
    return 0;
}

static int upsample_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_upsample2x_forward(e, &t->out, &t->in[0]);
}

static int upsample_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_upsample2x_backward(e, opt_grad(t, 0), &t->dout);
}

static int timestep_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                           size_t n)
{
    (void)saved;
    if (positive(d, "B dim max_period", why, n) != 0)
        return -1;
    in[0] = s1(D("B"));
    *out = s2(D("B"), D("dim"));
    return 0;
}

/* Timesteps as training draws them: anywhere in [0, 1000), fractional too. */
static void timestep_prepare(const op_dims *d, int slot, float *values, int64_t n)
{
    (void)d;
    (void)slot;
    for (int64_t i = 0; i < n; i++)
        values[i] = (float)fmod(fabs((double)values[i]) * 397.0, 1000.0);
}

static int timestep_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    return sdt_timestep_embedding(e, &t->out, &t->in[0], (int)D("flip"), (float)op_dims_get(d, "shift"),
                                  (float)op_dims_get(d, "max_period"));
}

static int mse_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why, size_t n)
{
    (void)saved;
    if (positive(d, "B N", why, n) != 0)
        return -1;
    in[0] = in[1] = s2(D("B"), D("N"));
    in[2] = D("weighted") ? s1(D("B")) : absent();
    *out = s1(1);
    return 0;
}

/* Loss weights are positive (min-SNR and friends give values around 0.1..5). */
static void mse_prepare(const op_dims *d, int slot, float *values, int64_t n)
{
    (void)d;
    if (slot != 2)
        return;
    for (int64_t i = 0; i < n; i++)
        values[i] = 0.25f + fabsf(values[i]);
}

static int mse_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_mse_loss_forward(e, &t->out, NULL, &t->in[0], &t->in[1], opt_in(t, 2));
}

/* The loss is a scalar: its upstream gradient is dout[0], handed to the op as a float. */
static int mse_bwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    float dloss;
    if (sdt_engine_download(e, &dloss, &t->dout, sizeof dloss) != 0)
        return -1;
    return sdt_mse_loss_backward(e, opt_grad(t, 0), &t->in[0], &t->in[1], opt_in(t, 2), dloss);
}

/* Three tensors of Na, Nb and Nc elements (Nc = 0: an empty one, which adds nothing); c stays F32 while a
 * and b take the tested dtype, so the list mixes dtypes as a model's gradients may. a is [Na] and b
 * [Nb / 4, 4] when 4 divides it: the op takes any shapes. */
static int sum_squares_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                              size_t n)
{
    (void)saved;
    if (positive(d, "Na Nb", why, n) != 0)
        return -1;
    if (D("Nc") < 0) {
        snprintf(why, n, "Nc must be at least 0");
        return -1;
    }
    in[0] = s1(D("Na"));
    in[1] = D("Nb") % 4 == 0 ? s2(D("Nb") / 4, 4) : s1(D("Nb"));
    in[2] = s1(D("Nc"));
    *out = s1(1);
    return 0;
}

static int sum_squares_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    (void)d;
    return sdt_sum_squares(e, &t->out, t->in, 3);
}

/* The LoRA adapters' dropout on h [B, L, R] F32: out = dropout_scale(copy of h) with element dropout p and
 * rank dropout rp (fixed keys, factor 0.8). The mask is integer hashing and kept values scaled by the same
 * floats on every backend: the outputs must match bit for bit, so any element dropped on one backend and
 * kept on the other fails the NMSE bound. */
static int dropout_shapes(const op_dims *d, op_shape in[], op_shape *out, op_shape saved[], char *why,
                          size_t n)
{
    (void)saved;
    if (positive(d, "B L R", why, n) != 0)
        return -1;
    double p = op_dims_get(d, "p"), rp = op_dims_get(d, "rp");
    if (!(p >= 0 && p < 1) || !(rp >= 0 && rp < 1)) {
        snprintf(why, n, "p and rp must be in [0, 1)");
        return -1;
    }
    in[0] = s3(D("B"), D("L"), D("R"));
    *out = in[0];
    return 0;
}

static int dropout_fwd(sdt_engine *e, const op_dims *d, op_tensors *t)
{
    sdt_dropout_args args = {.factor = 0.8f,
                             .p = (float)op_dims_get(d, "p"),
                             .key = 0x5DEECE66Dull,
                             .rank_p = (float)op_dims_get(d, "rp"),
                             .rank_key = 0x2545F4914F6CDD1Dull};
    if (sdt_copy(e, &t->out, &t->in[0]) != 0)
        return -1;
    return sdt_dropout_scale(e, &t->out, &args);
}

/* ---- the table ----------------------------------------------------------------------------------------- */

/* Thresholds of a backend against the CPU: f32 differs only in summation order; f16/bf16 round every
 * stored tensor (and a GPU may keep intermediates in them). */
#define NMSE_DEFAULT                                                                                         \
    {                                                                                                        \
        1e-9, 1e-5, 1e-4                                                                                     \
    }

/* Ops whose backends compute the same floats in the same order: any difference is a bug. */
#define NMSE_EXACT                                                                                           \
    {                                                                                                        \
        1e-30, 1e-30, 1e-30                                                                                  \
    }

/* Both backends add exact double squares in double and round the sum to F32 once: they differ only where
 * the double sums round to different F32 neighbours, an NMSE of at most ~4e-15. */
#define NMSE_SUM_SQUARES                                                                                     \
    {                                                                                                        \
        1e-13, 1e-13, 1e-13                                                                                  \
    }

/* The embedding's sin/cos arguments are t * freq with t up to 1000: an expf that rounds a frequency one or
 * two ulps away from the C library's (CUDA's expf is within 2 ulps) moves arguments by up to ~2e-4, an
 * NMSE of up to ~2e-9 over a case, so f32 gets 1e-7 here; a wrong frequency or a swapped sin/cos half
 * gives ~1. */
#define NMSE_TIMESTEP                                                                                        \
    {                                                                                                        \
        1e-7, 1e-5, 1e-4                                                                                     \
    }

static const op_def op_table[] = {
    {"linear",
     "N C OC bias",
     {"x", "weight", "bias"},
     7,
     0,
     0,
     0,
     linear_shapes,
     NULL,
     linear_fwd,
     linear_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"conv2d",
     "B H W C OC KH KW stride pad_top pad_left pad_bottom pad_right bias",
     {"x", "weight", "bias"},
     7,
     0,
     0,
     0,
     conv2d_shapes,
     NULL,
     conv2d_fwd,
     conv2d_bwd,
     NMSE_DEFAULT,
     0,
     0},
    /* The same layers with a frozen F8_E4M3 weight (per-tensor scale): gradients of x and bias only. */
    {"linear_f8w",
     "N C OC bias",
     {"x", "weight", "bias"},
     5,
     0,
     0,
     0,
     linear_shapes,
     NULL,
     linear_fwd,
     linear_bwd,
     NMSE_DEFAULT,
     0,
     2},
    {"conv2d_f8w",
     "B H W C OC KH KW stride pad_top pad_left pad_bottom pad_right bias",
     {"x", "weight", "bias"},
     5,
     0,
     0,
     0,
     conv2d_shapes,
     NULL,
     conv2d_fwd,
     conv2d_bwd,
     NMSE_DEFAULT,
     0,
     2},
    {"group_norm",
     "B HW C G eps silu",
     {"x", "weight", "bias"},
     7,
     0,
     0,
     2,
     group_norm_shapes,
     NULL,
     group_norm_fwd,
     group_norm_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"layer_norm",
     "N C eps",
     {"x", "weight", "bias"},
     7,
     0,
     0,
     2,
     layer_norm_shapes,
     NULL,
     layer_norm_fwd,
     layer_norm_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"attention",
     "B Lq Lk H D causal",
     {"q", "k", "v"},
     7,
     0,
     0,
     1,
     attention_shapes,
     NULL,
     attention_fwd,
     attention_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"softmax", "N C", {"x"}, 1, 0, 0, 0, rows_shapes, NULL, softmax_fwd, softmax_bwd, NMSE_DEFAULT, 0, 0},
    {"silu", "N", {"x"}, 1, 0, 0, 0, vector_shapes, NULL, silu_fwd, silu_bwd, NMSE_DEFAULT, 0, 0},
    {"gelu", "N", {"x"}, 1, 0, 0, 0, vector_shapes, NULL, gelu_fwd, gelu_bwd, NMSE_DEFAULT, 0, 0},
    {"gelu_tanh",
     "N",
     {"x"},
     1,
     0,
     0,
     0,
     vector_shapes,
     NULL,
     gelu_tanh_fwd,
     gelu_tanh_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"quick_gelu",
     "N",
     {"x"},
     1,
     0,
     0,
     0,
     vector_shapes,
     NULL,
     quick_gelu_fwd,
     quick_gelu_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"geglu", "N F", {"x"}, 1, 0, 0, 0, geglu_shapes, NULL, geglu_fwd, geglu_bwd, NMSE_DEFAULT, 0, 0},
    {"add", "N", {"a", "b"}, 3, 0, 0, 0, vector_shapes, NULL, add_fwd, add_bwd, NMSE_DEFAULT, 0, 0},
    {"add_channel_vector",
     "B HW C",
     {"x", "vec"},
     3,
     0,
     0,
     0,
     channel_vector_shapes,
     NULL,
     channel_vector_fwd,
     channel_vector_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"concat",
     "N Ca Cb",
     {"a", "b"},
     3,
     0,
     0,
     0,
     concat_shapes,
     NULL,
     concat_fwd,
     concat_bwd,
     NMSE_DEFAULT,
     1,
     0},
    {"upsample2x",
     "B H W C",
     {"x"},
     1,
     0,
     0,
     0,
     upsample_shapes,
     NULL,
     upsample_fwd,
     upsample_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"timestep_embedding",
     "B dim flip shift max_period",
     {"t"},
     0,
     1,
     0,
     0,
     timestep_shapes,
     timestep_prepare,
     timestep_fwd,
     NULL,
     NMSE_TIMESTEP,
     0,
     0},
    {"mse_loss",
     "B N weighted",
     {"pred", "target", "weight"},
     1,
     4,
     1,
     0,
     mse_shapes,
     mse_prepare,
     mse_fwd,
     mse_bwd,
     NMSE_DEFAULT,
     0,
     0},
    {"dropout_scale",
     "B L R p rp",
     {"h"},
     0,
     1,
     1,
     0,
     dropout_shapes,
     NULL,
     dropout_fwd,
     NULL,
     NMSE_EXACT,
     0,
     0},
    {"sum_squares",
     "Na Nb Nc",
     {"a", "b", "c"},
     0,
     4,
     1,
     0,
     sum_squares_shapes,
     NULL,
     sum_squares_fwd,
     NULL,
     NMSE_SUM_SQUARES,
     0,
     0},
};

const op_def *op_find(const char *name)
{
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (strcmp(op_table[i].name, name) == 0)
            return &op_table[i];
    return NULL;
}

size_t op_count(void) { return sizeof op_table / sizeof op_table[0]; }

const op_def *op_at(size_t i) { return i < op_count() ? &op_table[i] : NULL; }

/* Small shapes with the structure of the real ones (odd sizes, strides, asymmetric padding, the head sizes
 * of SD1.5, SDXL and CLIP): finite differences need one forward per perturbed element. */
static const char *const cases[] = {
    "linear N=5 C=7 OC=3 bias=1",
    "linear N=4 C=6 OC=5 bias=0",
    "conv2d B=2 H=5 W=6 C=3 OC=4 KH=3 KW=3 stride=1 pad_top=1 pad_left=1 pad_bottom=1 pad_right=1 bias=1",
    "conv2d B=1 H=7 W=6 C=3 OC=2 KH=3 KW=3 stride=2 pad_top=1 pad_left=1 pad_bottom=1 pad_right=1 bias=1",
    "conv2d B=2 H=6 W=6 C=2 OC=3 KH=3 KW=3 stride=2 pad_top=0 pad_left=0 pad_bottom=1 pad_right=1 bias=1",
    "conv2d B=2 H=4 W=3 C=5 OC=3 KH=1 KW=1 stride=1 pad_top=0 pad_left=0 pad_bottom=0 pad_right=0 bias=0",
    "linear_f8w N=5 C=7 OC=3 bias=1",
    "conv2d_f8w B=2 H=5 W=6 C=3 OC=4 KH=3 KW=3 stride=1 pad_top=1 pad_left=1 pad_bottom=1 pad_right=1 bias=1",
    "conv2d_f8w B=2 H=4 W=3 C=5 OC=3 KH=1 KW=1 stride=1 pad_top=0 pad_left=0 pad_bottom=0 pad_right=0 bias=0",
    "group_norm B=2 HW=6 C=8 G=4 eps=1e-05 silu=0",
    "group_norm B=2 HW=5 C=6 G=2 eps=1e-06 silu=1",
    "group_norm B=1 HW=9 C=4 G=1 eps=1e-05 silu=1",
    "layer_norm N=6 C=10 eps=1e-05",
    "attention B=1 Lq=6 Lk=6 H=2 D=4 causal=0",
    "attention B=2 Lq=5 Lk=3 H=2 D=3 causal=0",
    "attention B=1 Lq=7 Lk=7 H=3 D=2 causal=1",
    "attention B=1 Lq=3 Lk=4 H=1 D=40 causal=0",
    "softmax N=4 C=9",
    "silu N=40",
    "gelu N=40",
    "gelu_tanh N=40",
    "quick_gelu N=40",
    "geglu N=3 F=7",
    "add N=17",
    "add_channel_vector B=2 HW=5 C=3",
    "concat N=6 Ca=3 Cb=4",
    "upsample2x B=2 H=3 W=2 C=3",
    "timestep_embedding B=4 dim=320 flip=1 shift=0 max_period=10000",
    "timestep_embedding B=3 dim=33 flip=0 shift=1 max_period=10000",
    "mse_loss B=3 N=8 weighted=1",
    "mse_loss B=2 N=5 weighted=0",
    "sum_squares Na=7 Nb=12 Nc=5",
    "dropout_scale B=2 L=5 R=4 p=0.3 rp=0",
    "dropout_scale B=3 L=4 R=2 p=0 rp=0.25",
    "dropout_scale B=2 L=6 R=3 p=0.5 rp=0.4",
    "sum_squares Na=3 Nb=1 Nc=0",
};

size_t op_case_count(void) { return sizeof cases / sizeof cases[0]; }

const char *op_case_at(size_t i) { return i < op_case_count() ? cases[i] : NULL; }

static const char *const device_cases[] = {
    /* GEMMs: M, N, K off every tile size; K = 320 as in SD1.5's first level. */
    "linear N=130 C=320 OC=96 bias=1",
    "linear N=77 C=768 OC=40 bias=0",
    "linear N=33 C=8 OC=1 bias=1",
    /* Convolutions with channel counts tensor cores take, SD's asymmetric downsample padding, a 1x1. */
    "conv2d B=2 H=16 W=16 C=32 OC=64 KH=3 KW=3 stride=1 pad_top=1 pad_left=1 pad_bottom=1 pad_right=1 bias=1",
    "conv2d B=1 H=17 W=15 C=16 OC=32 KH=3 KW=3 stride=2 pad_top=0 pad_left=0 pad_bottom=1 pad_right=1 bias=1",
    "conv2d B=2 H=9 W=7 C=64 OC=32 KH=1 KW=1 stride=1 pad_top=0 pad_left=0 pad_bottom=0 pad_right=0 bias=1",
    "conv2d B=1 H=8 W=8 C=4 OC=320 KH=3 KW=3 stride=1 pad_top=1 pad_left=1 pad_bottom=1 pad_right=1 bias=1",
    /* Frozen F8_E4M3 weights: dequantised on the device, then the GEMM / cuDNN paths above. */
    "linear_f8w N=130 C=320 OC=96 bias=1",
    "conv2d_f8w B=2 H=16 W=16 C=32 OC=64 KH=3 KW=3 stride=1 pad_top=1 pad_left=1 pad_bottom=1 pad_right=1 "
    "bias=1",
    "conv2d_f8w B=2 H=9 W=7 C=64 OC=32 KH=1 KW=1 stride=1 pad_top=0 pad_left=0 pad_bottom=0 pad_right=0 "
    "bias=1",
    /* Norms: 32 groups of SD's channel counts; CLIP's layer norm over 768. */
    "group_norm B=2 HW=64 C=320 G=32 eps=1e-05 silu=1",
    "group_norm B=1 HW=100 C=640 G=32 eps=1e-06 silu=0",
    "layer_norm N=77 C=768 eps=1e-05",
    "layer_norm N=64 C=320 eps=1e-05",
    /* Attention at the real head sizes: SD1.5 40/80/160, SDXL 64; cross-attention's 77 keys; CLIP's
     * causal 77 tokens. */
    "attention B=2 Lq=64 Lk=64 H=2 D=40 causal=0",
    "attention B=1 Lq=64 Lk=77 H=2 D=40 causal=0",
    "attention B=1 Lq=48 Lk=48 H=2 D=80 causal=0",
    "attention B=1 Lq=16 Lk=77 H=2 D=160 causal=0",
    "attention B=2 Lq=32 Lk=32 H=2 D=64 causal=0",
    "attention B=1 Lq=77 Lk=77 H=2 D=64 causal=1",
    "softmax N=8 C=1000",
    /* Elementwise: odd lengths past any vector width and block size. */
    "silu N=65537",
    "gelu N=4099",
    "gelu_tanh N=4099",
    "quick_gelu N=4099",
    "geglu N=64 F=1280",
    "add N=100003",
    "add_channel_vector B=2 HW=64 C=320",
    "concat N=64 Ca=320 Cb=640",
    "upsample2x B=1 H=8 W=8 C=64",
    "timestep_embedding B=8 dim=320 flip=1 shift=0 max_period=10000",
    "mse_loss B=4 N=16384 weighted=1",
    "mse_loss B=1 N=4097 weighted=0",
    /* Past one slab of the CUDA kernel (4096 elements), one tensor of many slabs, an empty one. */
    "sum_squares Na=4097 Nb=1000000 Nc=0",
    /* An SD1.5 attention projection's rank-8 input at 64x64 latents, batch 4: past 2^20 elements. */
    "dropout_scale B=4 L=4096 R=8 p=0.1 rp=0.1",
    "sum_squares Na=1 Nb=4096 Nc=70001",
};

size_t op_device_case_count(void) { return sizeof device_cases / sizeof device_cases[0]; }

const char *op_device_case_at(size_t i) { return i < op_device_case_count() ? device_cases[i] : NULL; }
