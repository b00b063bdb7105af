/* One micro-batch through the UNet: objective sampling on the host, forward on the engine, the loss and
 * its gradient on the host (objective.c), backward on the engine. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion_pass.h"
#include "layers.h"
#include "sdtune/strutil.h"

/* Host and engine buffers of one pass. */
typedef struct pass_buffers {
    float *noise;      /* [B, h, w, C] */
    float *noisy;      /* [B, h, w, C] the UNet's input */
    float *target;     /* [B, h, w, C] */
    float *pred;       /* [B, h, w, C] the UNet's output, downloaded */
    float *dpred;      /* [B, h, w, C] dL/dpred */
    int *timesteps;    /* [B] */
    float *ts;         /* [B] timesteps as F32 */
    sdt_tensor x_t;    /* [B, h, w, C] the UNet's input, compute dtype */
    sdt_tensor ts_t;   /* [B] F32 timesteps */
    sdt_tensor out_t;  /* [B, h, w, C] the UNet's output, compute dtype */
    sdt_tensor dout_t; /* [B, h, w, C] dL/dout (times the loss scale), compute dtype */
    sdt_tensor f32_t;  /* [B, h, w, C] F32 staging between the host and a half-precision tensor */
} pass_buffers;

static void buffers_free(sdt_engine *e, pass_buffers *b)
{
    free(b->noise);
    free(b->noisy);
    free(b->target);
    free(b->pred);
    free(b->dpred);
    free(b->timesteps);
    free(b->ts);
    sdt_act_free(e, &b->x_t);
    sdt_act_free(e, &b->ts_t);
    sdt_act_free(e, &b->out_t);
    sdt_act_free(e, &b->dout_t);
    sdt_act_free(e, &b->f32_t);
}

static int engine_error(sdt_engine *e, char **error, const char *what)
{
    return sdt_set_error(error, "%s: %s", what, sdt_engine_error(e));
}

/* dst (allocated in dtype, shaped xs) = host [B, h, w, C] F32: uploaded into the F32 staging tensor and
 * converted there when dtype is not F32. */
static int upload_as(sdt_engine *e, pass_buffers *b, sdt_tensor *dst, sdt_dtype dtype, const int64_t *xs,
                     const float *host)
{
    sdt_tensor *f32 = dtype == SDT_F32 ? dst : &b->f32_t;
    if (sdt_act_alloc(e, f32, SDT_F32, 4, xs) != 0 ||
        sdt_engine_upload(e, f32, host, sdt_tensor_bytes(f32)) != 0)
        return -1;
    if (dtype == SDT_F32)
        return 0;
    int rc = sdt_act_alloc(e, dst, dtype, 4, xs) != 0 || sdt_copy(e, dst, f32) != 0 ? -1 : 0;
    sdt_act_free(e, f32);
    return rc;
}

/* host [B, h, w, C] F32 = src (any dtype), widened on the engine first when src is not F32. */
static int download_f32(sdt_engine *e, pass_buffers *b, float *host, const sdt_tensor *src)
{
    if (src->dtype == SDT_F32)
        return sdt_engine_download(e, host, src, sdt_tensor_bytes(src));
    int rc = sdt_act_alloc(e, &b->f32_t, SDT_F32, src->ndim, src->shape) != 0 ||
                     sdt_copy(e, &b->f32_t, src) != 0 ||
                     sdt_engine_download(e, host, &b->f32_t, sdt_tensor_bytes(&b->f32_t)) != 0
                 ? -1
                 : 0;
    sdt_act_free(e, &b->f32_t);
    return rc;
}

static int run(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p, pass_buffers *b, double *loss,
               char **error)
{
    size_t n = (size_t)p->B * (size_t)p->h * (size_t)p->w * (size_t)p->C;
    b->noise = malloc(n * sizeof *b->noise);
    b->noisy = malloc(n * sizeof *b->noisy);
    b->target = malloc(n * sizeof *b->target);
    b->pred = malloc(n * sizeof *b->pred);
    b->dpred = malloc(n * sizeof *b->dpred);
    b->timesteps = malloc((size_t)p->B * sizeof *b->timesteps);
    b->ts = malloc((size_t)p->B * sizeof *b->ts);
    if (!b->noise || !b->noisy || !b->target || !b->pred || !b->dpred || !b->timesteps || !b->ts)
        return sdt_set_error(error, "out of memory");
    char msg[256];
    if (sdt_objective_sample_batch(p->schedule, p->noise, p->prediction, p->rng, p->x0, p->B, p->h, p->w,
                                   p->C, b->timesteps, b->noise, b->noisy, b->target, msg, sizeof msg) != 0)
        return sdt_set_error(error, "%s", msg);
    for (int i = 0; i < p->B; i++)
        b->ts[i] = (float)b->timesteps[i];
    int64_t xs[4] = {p->B, p->h, p->w, p->C}, tss[1] = {p->B};
    /* The timesteps stay F32 whatever the compute dtype: the embedding op takes them so, and bf16 could
     * not even hold them (999 rounds to 1000); the embedding itself comes out in the compute dtype. */
    if (upload_as(e, b, &b->x_t, p->dtype, xs, b->noisy) != 0 ||
        sdt_act_alloc(e, &b->ts_t, SDT_F32, 1, tss) != 0 ||
        sdt_engine_upload(e, &b->ts_t, b->ts, sdt_tensor_bytes(&b->ts_t)) != 0)
        return engine_error(e, error, "upload");
    if (sdt_unet_forward(e, u, &b->out_t, &b->x_t, &b->ts_t, p->context, NULL, 1) != 0 ||
        download_f32(e, b, b->pred, &b->out_t) != 0)
        return engine_error(e, error, "UNet forward");
    if (sdt_objective_loss(p->schedule, p->loss, p->B, (int64_t)p->h * p->w, p->C, b->pred, b->target,
                           b->timesteps, p->sample_weights, NULL, loss, b->dpred, NULL, msg, sizeof msg) != 0)
        return sdt_set_error(error, "%s", msg);
    if (p->poison_loss)
        *loss = NAN;
    if (!isfinite(*loss))
        return 1;
    /* fp16: the loss gradient is scaled before it is rounded to the compute dtype, so that small
     * gradients of the backward stay above fp16's smallest numbers; the trainer unscales the parameters'
     * F32 gradients. A scale too large overflows here or in the backward: the gradients become non-finite
     * and the trainer's scaler skips the step. */
    if (p->loss_scale > 0 && p->loss_scale != 1.0f)
        for (size_t i = 0; i < n; i++)
            b->dpred[i] *= p->loss_scale;
    if (upload_as(e, b, &b->dout_t, p->dtype, xs, b->dpred) != 0 ||
        sdt_unet_backward(e, u, NULL, p->dcontext, NULL, &b->dout_t) != 0)
        return engine_error(e, error, "UNet backward");
    return 0;
}

int sdt_diffusion_pass_run(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p, double *loss,
                           char **error)
{
    pass_buffers b;
    memset(&b, 0, sizeof b);
    int rc = run(e, u, p, &b, loss, error);
    buffers_free(e, &b);
    sdt_unet_release(e, u); /* a forward whose backward did not run (an error, a non-finite loss) */
    return rc;
}
