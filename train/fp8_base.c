/* fp8_base / fp8_base_unet: the components whose frozen weights are stored in F8_E4M3 (fp8_base.h). */
#include "fp8_base.h"

#include "checkpoint.h"
#include "sdtune/strutil.h"

unsigned sdt_fp8_base_components(const sdt_config *cfg)
{
    if (sdt_config_bool(cfg, "fp8_base"))
        return (1u << SDT_COMPONENT_UNET) | (1u << SDT_COMPONENT_TEXT_ENCODER);
    if (sdt_config_bool(cfg, "fp8_base_unet"))
        return 1u << SDT_COMPONENT_UNET;
    return 0;
}

int sdt_fp8_base_check(const sdt_config *cfg, char **error)
{
    if (!sdt_fp8_base_components(cfg) || sdt_config_training(cfg) == SDT_TRAIN_LORA)
        return 0;
    const char *key = sdt_config_bool(cfg, "fp8_base") ? "fp8_base" : "fp8_base_unet";
    return sdt_set_error(error,
                         "%s stores the frozen weights in fp8, but this run trains the UNet's own weights "
                         "(training_type is not lora): use LoRA, or turn %s off",
                         key, key);
}
