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
    float *noise;   /* [B, h, w, C] */
    float *noisy;   /* [B, h, w, C] the UNet's input */
    float *target;  /* [B, h, w, C] */
    float *pred;    /* [B, h, w, C] the UNet's output, downloaded */
    float *dpred;   /* [B, h, w, C] dL/dpred */
    int *timesteps; /* [B] */
    float *ts;      /* [B] timesteps as F32 */
    sdt_tensor x_t, ts_t, out_t, dout_t;
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
}

static int engine_error(sdt_engine *e, char **error, const char *what)
{
    return sdt_set_error(error, "%s: %s", what, sdt_engine_error(e));
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
    if (sdt_act_alloc(e, &b->x_t, SDT_F32, 4, xs) != 0 ||
        sdt_engine_upload(e, &b->x_t, b->noisy, sdt_tensor_bytes(&b->x_t)) != 0 ||
        sdt_act_alloc(e, &b->ts_t, SDT_F32, 1, tss) != 0 ||
        sdt_engine_upload(e, &b->ts_t, b->ts, sdt_tensor_bytes(&b->ts_t)) != 0)
        return engine_error(e, error, "upload");
    if (sdt_unet_forward(e, u, &b->out_t, &b->x_t, &b->ts_t, p->context, NULL, 1) != 0 ||
        sdt_engine_download(e, b->pred, &b->out_t, sdt_tensor_bytes(&b->out_t)) != 0)
        return engine_error(e, error, "UNet forward");
    if (sdt_objective_loss(p->schedule, p->loss, p->B, (int64_t)p->h * p->w, p->C, b->pred, b->target,
                           b->timesteps, p->sample_weights, NULL, loss, b->dpred, NULL, msg, sizeof msg) != 0)
        return sdt_set_error(error, "%s", msg);
    if (p->poison_loss)
        *loss = NAN;
    if (!isfinite(*loss))
        return 1;
    if (sdt_act_alloc(e, &b->dout_t, SDT_F32, 4, xs) != 0 ||
        sdt_engine_upload(e, &b->dout_t, b->dpred, sdt_tensor_bytes(&b->dout_t)) != 0 ||
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
