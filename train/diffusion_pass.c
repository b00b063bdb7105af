/* One micro-batch through the UNet: objective sampling on the host, forward on the engine, the loss and
 * its gradient on the engine (l2) or on the host (objective.c), backward on the engine. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion_pass.h"
#include "layers.h"
#include "sdtune/strutil.h"

/* Host and engine buffers of one pass. */
struct sdt_diffusion_batch {
    int on_engine;        /* the loss runs on the engine (sdt_diffusion_loss_on_engine) */
    size_t n;             /* B * h * w * C */
    float *noise;         /* [B, h, w, C] */
    float *noisy;         /* [B, h, w, C] the UNet's input */
    float *target;        /* [B, h, w, C] */
    float *weights;       /* [B] engine path: timestep weight x sample weight, the loss's per-sample factor */
    int *timesteps;       /* [B] */
    float *ts;            /* [B] timesteps as F32 */
    float *pred;          /* [B, h, w, C] host path: the UNet's output, downloaded */
    float *dpred;         /* [B, h, w, C] host path: dL/dpred */
    double host_loss;     /* host path: the loss, set by compute */
    sdt_tensor x_t;       /* [B, h, w, C] the UNet's input, compute dtype */
    sdt_tensor ts_t;      /* [B] F32 timesteps */
    sdt_tensor target_t;  /* [B, h, w, C] F32 engine path: the target */
    sdt_tensor weights_t; /* [B] F32 engine path: the per-sample factors */
    sdt_tensor loss_t;    /* [1] F32 engine path: the loss, on the device until finish */
    sdt_tensor out_t;     /* [B, h, w, C] the UNet's output, compute dtype */
    sdt_tensor dout_t;    /* [B, h, w, C] dL/dout (times the loss scale), compute dtype */
    sdt_tensor f32_t;     /* [B, h, w, C] F32 staging of a half-precision output on its way to the host */
};

int sdt_diffusion_loss_on_engine(const sdt_loss_options *o)
{
    /* The mse_loss ops compute mean_b w_b * mean(d^2) with any per-sample w_b: every l2 weighting is
     * one. l1, huber and smooth_l1 have per-element shapes (and a per-timestep threshold) no op has. */
    return o->loss_type == SDT_LOSS_L2;
}

void sdt_diffusion_batch_free(sdt_engine *e, sdt_diffusion_batch *b)
{
    if (!b)
        return;
    free(b->noise);
    free(b->noisy);
    free(b->target);
    free(b->weights);
    free(b->timesteps);
    free(b->ts);
    free(b->pred);
    free(b->dpred);
    sdt_act_free(e, &b->x_t);
    sdt_act_free(e, &b->ts_t);
    sdt_act_free(e, &b->target_t);
    sdt_act_free(e, &b->weights_t);
    sdt_act_free(e, &b->loss_t);
    sdt_act_free(e, &b->out_t);
    sdt_act_free(e, &b->dout_t);
    sdt_act_free(e, &b->f32_t);
    free(b);
}

static int engine_error(sdt_engine *e, char **error, const char *what)
{
    return sdt_set_error(error, "%s: %s", what, sdt_engine_error(e));
}

/* host [B, h, w, C] F32 = src (any dtype), widened on the engine first when src is not F32. */
static int download_f32(sdt_engine *e, sdt_diffusion_batch *b, float *host, const sdt_tensor *src)
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

/* The engine path's extra inputs: the target (F32 whatever the compute dtype, as the host path's) and the
 * per-sample factors w_b = timestep weight x sample weight, rounded to F32 once. */
static int upload_loss_inputs(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch *b,
                              const int64_t *xs, char **error)
{
    b->weights = malloc((size_t)p->B * sizeof *b->weights);
    if (!b->weights)
        return sdt_set_error(error, "out of memory");
    for (int i = 0; i < p->B; i++)
        b->weights[i] = (float)(sdt_loss_timestep_weight(p->schedule, p->loss, b->timesteps[i]) *
                                (p->sample_weights ? (double)p->sample_weights[i] : 1.0));
    int64_t ws[1] = {p->B}, ls[1] = {1};
    if (sdt_act_alloc(e, &b->target_t, SDT_F32, 4, xs) != 0 ||
        sdt_engine_upload(e, &b->target_t, b->target, sdt_tensor_bytes(&b->target_t)) != 0 ||
        sdt_act_alloc(e, &b->weights_t, SDT_F32, 1, ws) != 0 ||
        sdt_engine_upload(e, &b->weights_t, b->weights, sdt_tensor_bytes(&b->weights_t)) != 0 ||
        sdt_act_alloc(e, &b->loss_t, SDT_F32, 1, ls) != 0)
        return engine_error(e, error, "loss upload");
    return 0;
}

static int prepare(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch *b, char **error)
{
    size_t n = (size_t)p->B * (size_t)p->h * (size_t)p->w * (size_t)p->C;
    b->n = n;
    b->on_engine = !p->host_loss && sdt_diffusion_loss_on_engine(p->loss);
    b->noise = malloc(n * sizeof *b->noise);
    b->noisy = malloc(n * sizeof *b->noisy);
    b->target = malloc(n * sizeof *b->target);
    b->timesteps = malloc((size_t)p->B * sizeof *b->timesteps);
    b->ts = malloc((size_t)p->B * sizeof *b->ts);
    if (!b->noise || !b->noisy || !b->target || !b->timesteps || !b->ts)
        return sdt_set_error(error, "out of memory");
    char msg[256];
    /* The host path checks the options in sdt_objective_loss; the engine path must before it uploads. */
    if (sdt_loss_options_check(p->loss, msg, sizeof msg) != 0 ||
        sdt_objective_sample_batch(p->schedule, p->noise, p->prediction, p->rng, p->x0, p->B, p->h, p->w,
                                   p->C, b->timesteps, b->noise, b->noisy, b->target, msg, sizeof msg) != 0)
        return sdt_set_error(error, "%s", msg);
    for (int i = 0; i < p->B; i++)
        b->ts[i] = (float)b->timesteps[i];
    int64_t xs[4] = {p->B, p->h, p->w, p->C}, tss[1] = {p->B};
    /* The timesteps stay F32 whatever the compute dtype: the embedding op takes them so, and bf16 could
     * not even hold them (999 rounds to 1000); the embedding itself comes out in the compute dtype. */
    if (sdt_act_upload_f32(e, &b->x_t, p->dtype, 4, xs, b->noisy) != 0 ||
        sdt_act_alloc(e, &b->ts_t, SDT_F32, 1, tss) != 0 ||
        sdt_engine_upload(e, &b->ts_t, b->ts, sdt_tensor_bytes(&b->ts_t)) != 0)
        return engine_error(e, error, "upload");
    return b->on_engine ? upload_loss_inputs(e, p, b, xs, error) : 0;
}

int sdt_diffusion_pass_prepare(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch **out,
                               char **error)
{
    *out = NULL;
    sdt_diffusion_batch *b = calloc(1, sizeof *b);
    if (!b)
        return sdt_set_error(error, "out of memory");
    if (prepare(e, p, b, error) != 0) {
        sdt_diffusion_batch_free(e, b);
        return -1;
    }
    *out = b;
    return 0;
}

static float dloss_of(const sdt_diffusion_pass *p) { return p->loss_scale > 0 ? p->loss_scale : 1.0f; }

/* Loss and dL/dout by ops on the device: nothing crosses to the host. dL/dout is made in the compute
 * dtype directly (the op widens, adds into zero and rounds once, as the host path's copy rounds its F32
 * gradient). fp16's loss scale is the op's dloss; 1/accumulation is applied to the parameters' gradients
 * by the trainer afterwards, as on the host path. */
static int loss_on_engine(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch *b)
{
    if (sdt_mse_loss_forward(e, &b->loss_t, NULL, &b->out_t, &b->target_t, &b->weights_t) != 0 ||
        sdt_act_zeros_like(e, &b->dout_t, &b->out_t) != 0 ||
        sdt_mse_loss_backward(e, &b->dout_t, &b->out_t, &b->target_t, &b->weights_t, dloss_of(p)) != 0)
        return -1;
    sdt_act_free(e, &b->out_t);
    return 0;
}

/* Loss and dL/dout on the host (sdt_objective_loss). Returns 1 when the loss is not finite. */
static int loss_on_host(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch *b, char **error)
{
    b->pred = malloc(b->n * sizeof *b->pred);
    b->dpred = malloc(b->n * sizeof *b->dpred);
    if (!b->pred || !b->dpred)
        return sdt_set_error(error, "out of memory");
    if (download_f32(e, b, b->pred, &b->out_t) != 0)
        return engine_error(e, error, "UNet forward");
    char msg[256];
    b->host_loss = 0.0;
    if (sdt_objective_loss(p->schedule, p->loss, p->B, (int64_t)p->h * p->w, p->C, b->pred, b->target,
                           b->timesteps, p->sample_weights, NULL, &b->host_loss, b->dpred, NULL, msg,
                           sizeof msg) != 0)
        return isfinite(b->host_loss) ? sdt_set_error(error, "%s", msg) : 1;
    if (p->poison_loss)
        b->host_loss = NAN;
    if (!isfinite(b->host_loss))
        return 1;
    /* fp16: the loss gradient is scaled before it is rounded to the compute dtype, so that small
     * gradients of the backward stay above fp16's smallest numbers; the trainer unscales the parameters'
     * F32 gradients. A scale too large overflows here or in the backward: the gradients become non-finite
     * and the trainer's scaler skips the step. */
    float scale = dloss_of(p);
    if (scale != 1.0f)
        for (size_t i = 0; i < b->n; i++)
            b->dpred[i] *= scale;
    int64_t xs[4] = {p->B, p->h, p->w, p->C};
    if (sdt_act_upload_f32(e, &b->dout_t, p->dtype, 4, xs, b->dpred) != 0)
        return engine_error(e, error, "loss gradient upload");
    return 0;
}

int sdt_diffusion_pass_compute(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p,
                               sdt_diffusion_batch *b, char **error)
{
    if (sdt_unet_forward(e, u, &b->out_t, &b->x_t, &b->ts_t, p->context, NULL, 1) != 0)
        return engine_error(e, error, "UNet forward");
    if (b->on_engine) {
        if (loss_on_engine(e, p, b) != 0)
            return engine_error(e, error, "loss");
    } else {
        int rc = loss_on_host(e, p, b, error);
        if (rc != 0)
            return rc;
    }
    if (sdt_unet_backward(e, u, NULL, p->dcontext, NULL, &b->dout_t) != 0)
        return engine_error(e, error, "UNet backward");
    sdt_act_free(e, &b->dout_t);
    return 0;
}

int sdt_diffusion_pass_finish(sdt_engine *e, const sdt_diffusion_pass *p, sdt_diffusion_batch *b,
                              double *loss, char **error)
{
    if (!b->on_engine) {
        *loss = b->host_loss;
        return isfinite(*loss) ? 0 : 1;
    }
    float value = 0.0f;
    if (sdt_engine_download(e, &value, &b->loss_t, sizeof value) != 0)
        return engine_error(e, error, "loss download");
    *loss = p->poison_loss ? NAN : (double)value;
    return isfinite(*loss) ? 0 : 1;
}

int sdt_diffusion_pass_run(sdt_engine *e, sdt_unet *u, const sdt_diffusion_pass *p, double *loss,
                           char **error)
{
    sdt_diffusion_batch *b = NULL;
    int rc = sdt_diffusion_pass_prepare(e, p, &b, error);
    if (rc == 0)
        rc = sdt_diffusion_pass_compute(e, u, p, b, error);
    if (rc >= 0) {
        int finished = sdt_diffusion_pass_finish(e, p, b, loss, error);
        rc = finished != 0 ? finished : rc;
    }
    sdt_diffusion_batch_free(e, b);
    sdt_unet_release(e, u); /* a forward whose backward did not run (an error, a non-finite loss) */
    return rc;
}
