/* The compute dtype of a run and the fp16 loss scaler (precision.h). */
#include "precision.h"

#include <string.h>

sdt_dtype sdt_train_compute_dtype(const sdt_config *cfg, sdt_device_kind device)
{
    const char *mp = sdt_config_str(cfg, "mixed_precision");
    if (strcmp(mp, "bf16") == 0)
        return SDT_BF16;
    if (strcmp(mp, "fp16") == 0)
        return SDT_F16;
    /* auto: bf16 on the GPU for every training type (DreamBooth and fine-tuning keep fp32 masters of the
     * weights they train and run on bf16 copies, as a LoRA keeps its network in fp32). */
    if (strcmp(mp, "auto") == 0 && device == SDT_DEVICE_CUDA)
        return SDT_BF16;
    return SDT_F32;
}

const char *sdt_train_precision_name(sdt_dtype compute)
{
    return compute == SDT_BF16 ? "bf16" : compute == SDT_F16 ? "fp16" : "no";
}

void sdt_loss_scaler_init(sdt_loss_scaler *s, sdt_dtype compute)
{
    s->enabled = compute == SDT_F16;
    s->scale = s->enabled ? SDT_LOSS_SCALE_INIT : 1.0;
    s->good_steps = 0;
    s->growth_interval = SDT_LOSS_SCALE_GROWTH_INTERVAL;
}

int sdt_loss_scaler_update(sdt_loss_scaler *s, int finite)
{
    if (!s->enabled)
        return 0;
    if (!finite) {
        s->scale *= 0.5;
        s->good_steps = 0;
        return 1;
    }
    if (++s->good_steps < s->growth_interval)
        return 0;
    s->scale *= 2.0;
    s->good_steps = 0;
    return 1;
}
