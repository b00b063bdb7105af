/* The one table of every setting (see include/sdtune/schema.h).
 *
 * Keys are sd-scripts' argument names wherever sd-scripts has the setting; kohya_aliases lists the other
 * names kohya (the kohya_ss GUI, legacy spellings) uses for the same thing. kohya's "None = unset" numbers
 * are 0 here, and the help says what 0 means. kohya's network_args list is split into one row per known
 * argument in [network]. Rows are grouped by section in the order of sdt_section, the most used first. */
#include "sdtune/schema.h"

/* The table is laid out by hand, one setting per row, for reading; the formatter would scatter it. */
// clang-format off
/* Row building blocks; each expands to designated initializers. */
/* A row is SDT_IMPL_PLANNED (0) unless marked DONE: the engine reads and honours the setting. A planned
 * setting given a non-default value is refused by a run (train/train_support.h), never ignored. */
#define ROW(sec, k, t, def) .section = SDT_SEC_##sec, .key = (k), .type = SDT_T_##t, .default_text = (def)
#define DONE .impl = SDT_IMPL_DONE
#define REL(r) .relevance = SDT_REL_##r
#define ALIAS(a) .kohya_aliases = (a)
#define FLAGS(f) .flags = (f)
#define ADV .flags = SDT_FLAG_ADVANCED
#define TEMPLATE .flags = SDT_FLAG_TEMPLATE
#define TEMPLATE_VALUE(v) .flags = SDT_FLAG_TEMPLATE, .template_text = (v)
#define RANGE(lo, hi) .has_min = true, .min = (lo), .has_max = true, .max = (hi)
#define AT_LEAST(lo) .has_min = true, .min = (lo)
#define VALUES(v) .enum_values = (v)
#define ITEMS(t, lo, hi) .elem_type = SDT_T_##t, .list_min = (lo), .list_max = (hi)
#define DYN(d) .dynamic_defaults = (d)
#define HELP(h) .help = (h)

#define SEED_MAX 4294967295.0

/* Closed value sets. */
static const char *const model_family_values[] = {"sd1", "sd2", "sdxl", NULL};
static const char *const training_type_values[] = {"lora", "dreambooth", "finetune", NULL};
static const char *const resize_interpolation_values[] = {
    "auto", "lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area", NULL,
};
static const char *const optimizer_type_values[] = {
    "AdamW", "AdamW8bit", "Lion", "Lion8bit", "SGDNesterov", "SGDNesterov8bit", "Adafactor", "Prodigy",
    "DAdaptAdam", "DAdaptLion", "DAdaptAdaGrad", "DAdaptAdan", "DAdaptSGD", "PagedAdamW", "PagedAdamW8bit",
    "PagedAdamW32bit", "PagedLion8bit", "AdamWScheduleFree", "SGDScheduleFree", "RAdamScheduleFree", NULL,
};
static const char *const lr_scheduler_values[] = {
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay", "piecewise_constant", "adafactor", NULL,
};
static const char *const network_module_values[] = {"lora", "lora_fa", "dylora", NULL};
static const char *const loss_type_values[] = {"l2", "l1", "huber", "smooth_l1", NULL};
static const char *const huber_schedule_values[] = {"constant", "exponential", "snr", NULL};
static const char *const sample_sampler_values[] = {
    "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++",
    "dpmsingle", "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a", "dpm++2m", "dpm++2m_karras", NULL,
};
static const char *const save_model_as_values[] = {
    "safetensors", "ckpt", "diffusers", "diffusers_safetensors", NULL,
};
static const char *const save_precision_values[] = {"fp32", "fp16", "bf16", NULL};
static const char *const log_with_values[] = {"none", "tensorboard", "wandb", "all", NULL};
static const char *const mixed_precision_values[] = {"auto", "no", "fp16", "bf16", NULL};
static const char *const backend_values[] = {"auto", "cuda", "cpu", NULL};
static const char *const attention_values[] = {"auto", "flash", "math", NULL};
static const char *const nan_policy_values[] = {"stop", "skip", NULL};

/* Defaults that depend on the family or the training type. */
static const sdt_dynamic_default no_half_vae_dyn[] = {
    {SDT_FAMILY_SDXL, SDT_ANY, "true"},
    {SDT_ANY, SDT_ANY, NULL},
};
static const sdt_dynamic_default resolution_dyn[] = {
    {SDT_FAMILY_SDXL, SDT_ANY, "[1024]"},
    {SDT_FAMILY_DEMO, SDT_ANY, "[64]"},
    {SDT_ANY, SDT_ANY, NULL},
};
static const sdt_dynamic_default max_bucket_reso_dyn[] = {
    {SDT_FAMILY_SDXL, SDT_ANY, "2048"},
    {SDT_ANY, SDT_ANY, NULL},
};
static const sdt_dynamic_default bucket_reso_steps_dyn[] = {
    {SDT_FAMILY_SDXL, SDT_ANY, "32"},
    {SDT_ANY, SDT_ANY, NULL},
};
static const sdt_dynamic_default learning_rate_dyn[] = {
    {SDT_FAMILY_DEMO, SDT_TRAIN_LORA, "1e-3"},
    {SDT_ANY, SDT_TRAIN_LORA, "1e-4"},
    {SDT_ANY, SDT_TRAIN_DREAMBOOTH, "1e-6"},
    {SDT_ANY, SDT_TRAIN_FINETUNE, "2e-6"},
    {SDT_ANY, SDT_ANY, NULL},
};
/* The built-in demo (pretrained_model_name_or_path = "builtin:tiny-sd15", docs/demo.md): a LoRA on a tiny
 * model and 64x64 shapes that trains on the CPU in about a minute. */
#define DEMO_DYN(name, value)                                                                                \
    static const sdt_dynamic_default name[] = {                                                              \
        {SDT_FAMILY_DEMO, SDT_ANY, value},                                                                   \
        {SDT_ANY, SDT_ANY, NULL},                                                                            \
    }
DEMO_DYN(train_data_dir_dyn, "builtin:shapes");
DEMO_DYN(sample_prompts_dyn, "builtin:shapes");
DEMO_DYN(enable_bucket_dyn, "false");
DEMO_DYN(train_batch_size_dyn, "4");
DEMO_DYN(max_train_steps_dyn, "300");
DEMO_DYN(network_dim_dyn, "8");
DEMO_DYN(network_alpha_dyn, "8");
DEMO_DYN(sample_every_n_steps_dyn, "100");
DEMO_DYN(save_every_n_steps_dyn, "150");
DEMO_DYN(backend_dyn, "cpu");

static const sdt_setting settings[] = {
    /* ---- [model] ---- */
    {ROW(MODEL, "model_family", ENUM, "sd1"), DONE, VALUES(model_family_values), ALIAS("v2 sdxl"), TEMPLATE,
     HELP("base model family: sd1 (SD 1.x), sd2 (SD 2.x) or sdxl")},
    {ROW(MODEL, "training_type", ENUM, "lora"), DONE, VALUES(training_type_values), TEMPLATE,
     HELP("what to train: a LoRA, a DreamBooth model or a full fine-tune from captions")},
    {ROW(MODEL, "pretrained_model_name_or_path", PATH, ""), DONE, TEMPLATE_VALUE("builtin:tiny-sd15"),
     HELP("base model: a .safetensors checkpoint, a diffusers folder, or builtin:tiny-sd15 (demo)")},
    {ROW(MODEL, "v_parameterization", BOOL, "false"), DONE,
     HELP("the model predicts v (v-prediction), e.g. SD 2.x 768-v models")},
    {ROW(MODEL, "vae", PATH, ""), DONE,
     HELP("replacement VAE (.safetensors file or diffusers folder); empty = the model's own")},
    {ROW(MODEL, "no_half_vae", BOOL, "false"), DONE, DYN(no_half_vae_dyn), ALIAS("sdxl_no_half_vae"),
     HELP("keep the VAE in fp32 under mixed precision (avoids NaNs with the SDXL VAE)")},
    {ROW(MODEL, "clip_skip", INT, "1"), DONE, RANGE(1, 12),
     HELP("use the text encoder's Nth layer from the end (1 = last; 2 is common for anime models)")},
    {ROW(MODEL, "max_token_length", INT, "75"), DONE, RANGE(75, 225),
     HELP("caption length in tokens: 75, 150 or 225 (150/225 = 2 or 3 chunks of 75)")},
    {ROW(MODEL, "train_text_encoder", BOOL, "false"), DONE, REL(FULL),
     HELP("also train the text encoder(s) in DreamBooth/fine-tune (needs more memory)")},
    {ROW(MODEL, "stop_text_encoder_training", INT, "0"), DONE, AT_LEAST(0), REL(DREAMBOOTH),
     HELP("stop training the text encoder after N steps; 0 = train it to the end")},
    {ROW(MODEL, "tokenizer_dir", PATH, ""), DONE, ADV,
     HELP("vocab.json + merges.txt folder; empty = the model's tokenizer/, then the HF cache")},
    {ROW(MODEL, "disable_mmap_load_safetensors", BOOL, "false"), REL(SDXL), ADV,
     HELP("read the model file fully into memory instead of memory-mapping it")},
    {ROW(MODEL, "no_token_padding", BOOL, "false"), REL(DREAMBOOTH), ADV,
     HELP("do not pad captions to max_token_length (old DreamBooth behaviour)")},

    /* ---- [folders] ---- */
    {ROW(FOLDERS, "train_data_dir", PATH, ""), DONE, DYN(train_data_dir_dyn), TEMPLATE,
     HELP("parent of <repeats>_<name> image folders (DreamBooth/LoRA) or the fine-tune image folder")},
    {ROW(FOLDERS, "output_dir", PATH, "./outputs"), DONE, TEMPLATE,
     HELP("folder the trained model, sample images and states are written to")},
    {ROW(FOLDERS, "output_name", STRING, "last"), DONE, TEMPLATE,
     HELP("base file name of the saved model, without extension")},
    {ROW(FOLDERS, "reg_data_dir", PATH, ""), DONE,
     HELP("parent of <repeats>_<class> regularization image folders; empty = none")},
    {ROW(FOLDERS, "logging_dir", PATH, ""), DONE,
     HELP("folder for training logs; setting it turns TensorBoard logging on")},
    {ROW(FOLDERS, "dataset_config", PATH, ""), DONE,
     HELP("dataset TOML/JSON in kohya's format; when set, the image folders above are ignored")},
    {ROW(FOLDERS, "in_json", PATH, ""), DONE, REL(FINETUNE),
     HELP("fine-tune metadata JSON with the caption and tags of each image")},
    {ROW(FOLDERS, "conditioning_data_dir", PATH, ""), ADV,
     HELP("folder of mask images for masked_loss (red channel = loss weight)")},

    /* ---- [dataset] ---- */
    {ROW(DATASET, "resolution", LIST, "[512]"), DONE, ITEMS(INT, 1, 2), RANGE(64, 8192), DYN(resolution_dyn),
     ALIAS("max_resolution"), HELP("training size: [size] or [width, height] in pixels")},
    {ROW(DATASET, "caption_extension", STRING, ".txt"), DONE, ALIAS("caption_extention"),
     HELP("extension of the caption file next to each image")},
    {ROW(DATASET, "enable_bucket", BOOL, "true"), DONE, DYN(enable_bucket_dyn),
     HELP("group images into aspect-ratio buckets instead of cropping them all to one size")},
    {ROW(DATASET, "min_bucket_reso", INT, "256"), DONE, RANGE(64, 8192), REL(BUCKETS),
     HELP("smallest bucket side in pixels")},
    {ROW(DATASET, "max_bucket_reso", INT, "1024"), DONE, RANGE(64, 8192), DYN(max_bucket_reso_dyn), REL(BUCKETS),
     HELP("largest bucket side in pixels")},
    {ROW(DATASET, "bucket_no_upscale", BOOL, "false"), DONE, REL(BUCKETS),
     HELP("bucket each image at its own size, never upscaling small images")},
    {ROW(DATASET, "bucket_reso_steps", INT, "64"), DONE, RANGE(8, 512), DYN(bucket_reso_steps_dyn), REL(BUCKETS),
     ADV, HELP("bucket side granularity in pixels (SD 1.x/2.x: multiple of 64; SDXL: of 32)")},
    {ROW(DATASET, "cache_latents", BOOL, "true"), DONE,
     HELP("encode all images with the VAE once before training (faster, less VRAM)")},
    {ROW(DATASET, "cache_latents_to_disk", BOOL, "false"), DONE,
     HELP("also store cached latents as .npz files next to the images, reused by later runs")},
    {ROW(DATASET, "shuffle_caption", BOOL, "false"), DONE,
     HELP("shuffle the comma-separated tags of a caption each time it is used")},
    {ROW(DATASET, "keep_tokens", INT, "0"), DONE, AT_LEAST(0),
     HELP("keep the first N tags in place when shuffling or dropping tags; 0 = none")},
    {ROW(DATASET, "flip_aug", BOOL, "false"), DONE,
     HELP("randomly mirror images horizontally (avoid for asymmetric subjects)")},
    {ROW(DATASET, "caption_dropout_rate", FLOAT, "0"), DONE, RANGE(0, 1),
     HELP("chance that a caption is left empty for a step; 0 = never")},
    {ROW(DATASET, "caption_tag_dropout_rate", FLOAT, "0"), DONE, RANGE(0, 1),
     HELP("chance that each shuffled tag is dropped for a step; 0 = never")},
    {ROW(DATASET, "caption_prefix", STRING, ""), DONE, HELP("text added in front of every caption")},
    {ROW(DATASET, "caption_suffix", STRING, ""), DONE, HELP("text added at the end of every caption")},
    {ROW(DATASET, "alpha_mask", BOOL, "false"),
     HELP("use each image's alpha channel as a loss mask (transparent parts are ignored)")},
    {ROW(DATASET, "validation_split", FLOAT, "0"), RANGE(0, 1),
     HELP("fraction of the images held out to compute a validation loss; 0 = no validation")},
    {ROW(DATASET, "validate_every_n_steps", INT, "0"), AT_LEAST(0), REL(VALIDATION),
     HELP("compute the validation loss every N steps; 0 = off")},
    {ROW(DATASET, "validate_every_n_epochs", INT, "0"), AT_LEAST(0), REL(VALIDATION),
     HELP("compute the validation loss every N epochs; 0 = every epoch")},
    {ROW(DATASET, "max_validation_steps", INT, "0"), AT_LEAST(0), REL(VALIDATION), ADV,
     HELP("use at most N validation batches each time; 0 = all")},
    {ROW(DATASET, "validation_seed", INT, "0"), RANGE(0, SEED_MAX), REL(VALIDATION), ADV,
     HELP("seed for choosing the validation images; 0 = use seed")},
    {ROW(DATASET, "dataset_repeats", INT, "1"), DONE, AT_LEAST(1), REL(FINETUNE),
     HELP("times each image is repeated per epoch in fine-tune (in_json) mode")},
    {ROW(DATASET, "resize_interpolation", ENUM, "auto"), VALUES(resize_interpolation_values), ADV,
     HELP("resize filter; auto = area when shrinking, lanczos when enlarging")},
    {ROW(DATASET, "caption_separator", STRING, ","), DONE, ADV, HELP("separator between the tags of a caption")},
    {ROW(DATASET, "keep_tokens_separator", STRING, ""), DONE, ADV,
     HELP("marker splitting fixed from shuffled tags (e.g. |||); empty = use keep_tokens")},
    {ROW(DATASET, "secondary_separator", STRING, ""), DONE, ADV,
     HELP("separator inside a tag group that is shuffled as one tag; empty = none")},
    {ROW(DATASET, "enable_wildcard", BOOL, "false"), DONE, ADV,
     HELP("expand {a|b|c} choices and pick a random line of multi-line captions")},
    {ROW(DATASET, "weighted_captions", BOOL, "false"), ADV,
     HELP("honour (tag:1.3) and [tag] attention weights in captions")},
    {ROW(DATASET, "caption_dropout_every_n_epochs", INT, "0"), DONE, AT_LEAST(0), ADV,
     HELP("use empty captions for a whole epoch every N epochs; 0 = off")},
    {ROW(DATASET, "token_warmup_min", INT, "1"), DONE, AT_LEAST(0), ADV,
     HELP("number of tags used at the start of the tag warmup")},
    {ROW(DATASET, "token_warmup_step", FLOAT, "0"), DONE, AT_LEAST(0), ADV,
     HELP("steps (or fraction of all steps if < 1) until all tags are used; 0 = off")},
    {ROW(DATASET, "color_aug", BOOL, "false"), ADV,
     HELP("slight random hue/gamma changes (cannot be combined with cache_latents)")},
    {ROW(DATASET, "random_crop", BOOL, "false"), ADV,
     HELP("crop at a random place instead of the centre (cannot be combined with cache_latents)")},
    {ROW(DATASET, "face_crop_aug_range", LIST, "[]"), ITEMS(FLOAT, 2, 2), AT_LEAST(0.01), ADV,
     HELP("[lo, hi] face-centred crop scale range (face box from the file name); [] = off")},
    {ROW(DATASET, "vae_batch_size", INT, "1"), DONE, RANGE(1, 1024), ADV,
     HELP("images encoded at once while caching latents")},
    {ROW(DATASET, "skip_cache_check", BOOL, "false"), DONE, ADV,
     HELP("trust existing latent cache files without checking their contents")},
    {ROW(DATASET, "cache_info", BOOL, "false"), DONE, ADV,
     HELP("cache image sizes and captions per folder in metadata_cache.json")},

    /* ---- [training] ---- */
    {ROW(TRAINING, "train_batch_size", INT, "1"), DONE, RANGE(1, 1024), DYN(train_batch_size_dyn),
     HELP("images per step on each device")},
    {ROW(TRAINING, "max_train_epochs", INT, "0"), DONE, AT_LEAST(0), ALIAS("epoch"),
     HELP("epochs to train; 0 = use max_train_steps")},
    {ROW(TRAINING, "max_train_steps", INT, "1600"), DONE, AT_LEAST(1), DYN(max_train_steps_dyn),
     HELP("optimizer steps to train (ignored when max_train_epochs is set)")},
    {ROW(TRAINING, "seed", INT, "42"), DONE, RANGE(0, SEED_MAX),
     HELP("random seed (the same seed repeats a run exactly)")},
    {ROW(TRAINING, "gradient_checkpointing", BOOL, "false"), DONE,
     HELP("recompute activations during the backward pass: much less VRAM, ~20-30% slower")},
    {ROW(TRAINING, "gradient_accumulation_steps", INT, "1"), DONE, RANGE(1, 1024),
     HELP("batches summed per optimizer step (larger effective batch, same VRAM)")},
    {ROW(TRAINING, "cache_text_encoder_outputs", BOOL, "false"), REL(SDXL),
     ALIAS("sdxl_cache_text_encoder_outputs"),
     HELP("encode captions once before training (needs network_train_unet_only, fixed captions)")},
    {ROW(TRAINING, "cache_text_encoder_outputs_to_disk", BOOL, "false"), DONE, REL(SDXL), ADV,
     HELP("also store cached text encoder outputs as _te_outputs.npz files")},
    {ROW(TRAINING, "fused_backward_pass", BOOL, "false"), REL(SDXL), ADV,
     HELP("apply optimizer updates during the backward pass (SDXL full fine-tune, Adafactor)")},
    {ROW(TRAINING, "fused_optimizer_groups", INT, "0"), AT_LEAST(0), REL(SDXL), ADV,
     HELP("split the optimizer into N groups stepped during backward (SDXL full); 0 = off")},
    {ROW(TRAINING, "initial_epoch", INT, "0"), AT_LEAST(0), ADV,
     HELP("start counting epochs at N (e.g. when continuing a run); 0 = from the start")},
    {ROW(TRAINING, "initial_step", INT, "0"), AT_LEAST(0), ADV,
     HELP("start counting steps at N (overrides initial_epoch); 0 = from the start")},
    {ROW(TRAINING, "skip_until_initial_step", BOOL, "false"), ADV,
     HELP("really skip the batches before initial_step instead of only renumbering")},
    {ROW(TRAINING, "nan_policy", ENUM, "stop"), DONE, VALUES(nan_policy_values),
     HELP("when a step's loss or gradient is NaN/Inf: stop the run, or skip that step")},

    /* ---- [optimizer] ---- */
    {ROW(OPTIMIZER, "optimizer_type", ENUM, "AdamW"), DONE, VALUES(optimizer_type_values),
     ALIAS("optimizer use_8bit_adam use_lion_optimizer"),
     HELP("optimizer (AdamW8bit saves memory; Prodigy and DAdapt* find the LR themselves)")},
    {ROW(OPTIMIZER, "learning_rate", FLOAT, "1e-4"), DONE, RANGE(0, 1), DYN(learning_rate_dyn),
     HELP("base learning rate (used where unet_lr / text_encoder_lr are 0)")},
    {ROW(OPTIMIZER, "unet_lr", FLOAT, "0"), DONE, RANGE(0, 1), REL(LORA),
     HELP("learning rate of the U-Net LoRA; 0 = learning_rate")},
    {ROW(OPTIMIZER, "text_encoder_lr", FLOAT, "0"), DONE, RANGE(0, 1), REL(TEXT_ENCODER),
     HELP("learning rate of the text encoder LoRA; 0 = learning_rate")},
    {ROW(OPTIMIZER, "learning_rate_te", FLOAT, "0"), RANGE(0, 1), REL(FULL),
     HELP("text encoder learning rate in DreamBooth/fine-tune; 0 = learning_rate")},
    {ROW(OPTIMIZER, "learning_rate_te1", FLOAT, "0"), RANGE(0, 1), REL(SDXL),
     HELP("SDXL full: learning rate of text encoder 1 (CLIP ViT-L); 0 = learning_rate")},
    {ROW(OPTIMIZER, "learning_rate_te2", FLOAT, "0"), RANGE(0, 1), REL(SDXL),
     HELP("SDXL full: learning rate of text encoder 2 (OpenCLIP bigG); 0 = learning_rate")},
    {ROW(OPTIMIZER, "optimizer_args", LIST, "[]"), DONE, ITEMS(STRING, 0, 0),
     HELP("extra optimizer options as \"k=v\" strings, e.g. [\"weight_decay=0.01\"]")},
    {ROW(OPTIMIZER, "max_grad_norm", FLOAT, "1.0"), DONE, AT_LEAST(0),
     HELP("clip the gradient norm to this value; 0 = no clipping")},
    {ROW(OPTIMIZER, "block_lr", LIST, "[]"), ITEMS(FLOAT, 0, 23), RANGE(0, 1), REL(SDXL), ADV,
     HELP("SDXL full: 23 learning rates, one per U-Net block; [] = off")},

    /* ---- [lr_scheduler] ---- */
    {ROW(LR_SCHEDULER, "lr_scheduler", ENUM, "constant"), DONE, VALUES(lr_scheduler_values),
     HELP("how the learning rate changes over the run")},
    {ROW(LR_SCHEDULER, "lr_warmup_steps", FLOAT, "0"), DONE, AT_LEAST(0), ALIAS("lr_warmup"),
     HELP("warmup length: steps if >= 1, fraction of all steps if < 1; 0 = no warmup")},
    {ROW(LR_SCHEDULER, "lr_scheduler_num_cycles", INT, "1"), DONE, AT_LEAST(1), REL(RESTARTS),
     HELP("number of cosine cycles (restarts)")},
    {ROW(LR_SCHEDULER, "lr_scheduler_power", FLOAT, "1"), DONE, AT_LEAST(0), REL(POLYNOMIAL),
     HELP("power of the polynomial decay (1 = linear)")},
    {ROW(LR_SCHEDULER, "lr_scheduler_min_lr_ratio", FLOAT, "0"), RANGE(0, 1), ADV,
     HELP("lowest LR as a fraction of the LR (cosine_with_min_lr, warmup_stable_decay)")},
    {ROW(LR_SCHEDULER, "lr_decay_steps", FLOAT, "0"), AT_LEAST(0), ADV,
     HELP("warmup_stable_decay decay length: steps if >= 1, fraction of all steps if < 1")},
    {ROW(LR_SCHEDULER, "lr_scheduler_timescale", INT, "0"), AT_LEAST(0), ADV,
     HELP("inverse_sqrt timescale in steps; 0 = the warmup length (or 10000)")},
    {ROW(LR_SCHEDULER, "lr_scheduler_args", LIST, "[]"), ITEMS(STRING, 0, 0), ADV,
     HELP("extra scheduler options as \"k=v\" strings")},

    /* ---- [network] ---- */
    {ROW(NETWORK, "network_module", ENUM, "lora"), VALUES(network_module_values), REL(LORA),
     ALIAS("LoRA_type"), HELP("network kind: lora (networks.lora; LoCon with conv_dim), lora_fa or dylora")},
    {ROW(NETWORK, "network_dim", INT, "32"), DONE, RANGE(1, 1024), REL(LORA), DYN(network_dim_dyn),
     HELP("LoRA rank: higher learns more detail but gives larger files")},
    {ROW(NETWORK, "network_alpha", FLOAT, "16"), DONE, RANGE(0, 1024), REL(LORA), DYN(network_alpha_dyn),
     HELP("LoRA alpha; updates are scaled by alpha/dim (0 = equal to network_dim)")},
    {ROW(NETWORK, "conv_dim", INT, "0"), DONE, RANGE(0, 1024), REL(LORA),
     HELP("rank for 3x3 convolutions (LoCon); 0 = no LoCon")},
    {ROW(NETWORK, "conv_alpha", FLOAT, "1"), DONE, RANGE(0, 1024), REL(CONV),
     HELP("alpha of the convolution LoRA (scale = conv_alpha/conv_dim)")},
    {ROW(NETWORK, "network_weights", PATH, ""), DONE, REL(LORA),
     HELP("LoRA file to start from (to continue training); empty = start fresh")},
    {ROW(NETWORK, "network_train_unet_only", BOOL, "false"), DONE, REL(LORA),
     HELP("train only the U-Net LoRA, no text encoder LoRA")},
    {ROW(NETWORK, "network_dropout", FLOAT, "0"), DONE, RANGE(0, 1), REL(LORA),
     HELP("dropout on the LoRA's hidden units; 0 = off")},
    {ROW(NETWORK, "loraplus_lr_ratio", FLOAT, "0"), AT_LEAST(0), REL(LORA),
     HELP("LoRA+: the up matrices learn this many times faster (16 suggested); 0 = off")},
    {ROW(NETWORK, "rank_dropout", FLOAT, "0"), DONE, RANGE(0, 1), REL(LORA), ADV,
     HELP("chance of dropping each rank of a LoRA module per sample; 0 = off")},
    {ROW(NETWORK, "module_dropout", FLOAT, "0"), DONE, RANGE(0, 1), REL(LORA), ADV,
     HELP("chance of skipping a whole LoRA module for a step; 0 = off")},
    {ROW(NETWORK, "network_train_text_encoder_only", BOOL, "false"), DONE, REL(LORA), ADV,
     HELP("train only the text encoder LoRA, no U-Net LoRA")},
    {ROW(NETWORK, "dim_from_weights", BOOL, "false"), REL(LORA), ADV,
     HELP("take the ranks and alphas from network_weights")},
    {ROW(NETWORK, "scale_weight_norms", FLOAT, "0"), AT_LEAST(0), REL(LORA), ADV,
     HELP("cap the norm of each module's weight update (1 suggested); 0 = off")},
    {ROW(NETWORK, "loraplus_unet_lr_ratio", FLOAT, "0"), AT_LEAST(0), REL(LORA), ADV,
     HELP("LoRA+ ratio for the U-Net only; 0 = loraplus_lr_ratio")},
    {ROW(NETWORK, "loraplus_text_encoder_lr_ratio", FLOAT, "0"), AT_LEAST(0), REL(LORA), ADV,
     HELP("LoRA+ ratio for the text encoder only; 0 = loraplus_lr_ratio")},
    {ROW(NETWORK, "base_weights", LIST, "[]"), ITEMS(PATH, 0, 0), REL(LORA), ADV,
     HELP("LoRA files merged into the base model before training")},
    {ROW(NETWORK, "base_weights_multiplier", LIST, "[]"), ITEMS(FLOAT, 0, 0), REL(LORA), ADV,
     HELP("strength of each base_weights file, in the same order (default 1 each)")},
    {ROW(NETWORK, "network_multiplier", FLOAT, "1"), REL(LORA), ADV,
     HELP("strength the LoRA is applied with during training (1 = full)")},
    {ROW(NETWORK, "dylora_unit", INT, "1"), RANGE(1, 1024), REL(LORA), ADV,
     HELP("DyLoRA: ranks trained together as one unit (network_dim must be a multiple)")},
    {ROW(NETWORK, "block_dims", LIST, "[]"), ITEMS(INT, 0, 25), RANGE(0, 1024), REL(LORA), ADV,
     HELP("per-block ranks (25 for SD 1.x/2.x, 23 for SDXL); [] = network_dim everywhere")},
    {ROW(NETWORK, "block_alphas", LIST, "[]"), ITEMS(FLOAT, 0, 25), RANGE(0, 1024), REL(LORA), ADV,
     HELP("per-block alphas, laid out like block_dims; [] = network_alpha everywhere")},
    {ROW(NETWORK, "conv_block_dims", LIST, "[]"), ITEMS(INT, 0, 25), RANGE(0, 1024), REL(CONV), ADV,
     HELP("per-block convolution ranks, laid out like block_dims; [] = conv_dim everywhere")},
    {ROW(NETWORK, "conv_block_alphas", LIST, "[]"), ITEMS(FLOAT, 0, 25), RANGE(0, 1024), REL(CONV), ADV,
     HELP("per-block convolution alphas, laid out like block_dims; [] = conv_alpha everywhere")},
    {ROW(NETWORK, "down_lr_weight", STRING, ""), REL(LORA), ADV,
     HELP("down-block LR weights: comma list (SD 12, SDXL 9) or preset (cosine, sine, linear...)")},
    {ROW(NETWORK, "mid_lr_weight", STRING, ""), REL(LORA), ADV,
     HELP("mid-block LR weight (SDXL: comma list of 3); empty = 1")},
    {ROW(NETWORK, "up_lr_weight", STRING, ""), REL(LORA), ADV,
     HELP("up-block LR weights: comma list (SD 12, SDXL 9) or preset; empty = all 1")},
    {ROW(NETWORK, "block_lr_zero_threshold", FLOAT, "0"), AT_LEAST(0), REL(LORA), ADV,
     HELP("blocks whose LR weight is at or below this get no LoRA")},

    /* ---- [noise_loss] ---- */
    {ROW(NOISE_LOSS, "prior_loss_weight", FLOAT, "1.0"), DONE, AT_LEAST(0),
     HELP("loss weight of regularization images (1 = same as training images)")},
    {ROW(NOISE_LOSS, "min_snr_gamma", FLOAT, "0"), DONE, AT_LEAST(0),
     HELP("Min-SNR loss weighting gamma (5 recommended); 0 = off")},
    {ROW(NOISE_LOSS, "noise_offset", FLOAT, "0"), DONE, RANGE(0, 1),
     HELP("noise offset for darker darks and brighter brights (~0.1 suggested); 0 = off")},
    {ROW(NOISE_LOSS, "noise_offset_random_strength", BOOL, "false"), DONE, REL(NOISE_OFFSET), ADV,
     HELP("use a random offset between 0 and noise_offset each step")},
    {ROW(NOISE_LOSS, "adaptive_noise_scale", FLOAT, "0"), DONE, RANGE(-1, 1), REL(NOISE_OFFSET), ADV,
     HELP("add this times the latents' mean to the noise offset (needs noise_offset); 0 = off")},
    {ROW(NOISE_LOSS, "multires_noise_iterations", INT, "0"), DONE, RANGE(0, 64),
     HELP("levels of pyramid (multi-resolution) noise (6-10 suggested); 0 = off")},
    {ROW(NOISE_LOSS, "multires_noise_discount", FLOAT, "0.3"), DONE, RANGE(0, 1), REL(MULTIRES),
     HELP("weight factor from one pyramid noise level to the next")},
    {ROW(NOISE_LOSS, "debiased_estimation_loss", BOOL, "false"), DONE,
     HELP("weight the loss by 1/sqrt(SNR) (debiased estimation)")},
    {ROW(NOISE_LOSS, "loss_type", ENUM, "l2"), DONE, VALUES(loss_type_values),
     HELP("per-pixel loss: l2 (squared error), l1, huber or smooth_l1")},
    {ROW(NOISE_LOSS, "huber_c", FLOAT, "0.1"), DONE, RANGE(0, 1), REL(HUBER),
     HELP("Huber loss threshold parameter")},
    {ROW(NOISE_LOSS, "huber_schedule", ENUM, "snr"), DONE, VALUES(huber_schedule_values), REL(HUBER), ADV,
     HELP("how the Huber threshold changes with the timestep")},
    {ROW(NOISE_LOSS, "huber_scale", FLOAT, "1"), DONE, AT_LEAST(0), REL(HUBER), ADV,
     HELP("Huber threshold scale (constant and exponential schedules)")},
    {ROW(NOISE_LOSS, "masked_loss", BOOL, "false"),
     HELP("weight the loss by mask images (conditioning_data_dir) or the alpha channel")},
    {ROW(NOISE_LOSS, "ip_noise_gamma", FLOAT, "0"), DONE, RANGE(0, 1), ADV,
     HELP("input perturbation noise strength (~0.1 suggested); 0 = off")},
    {ROW(NOISE_LOSS, "ip_noise_gamma_random_strength", BOOL, "false"), DONE, REL(IP_NOISE), ADV,
     HELP("use a random strength between 0 and ip_noise_gamma each step")},
    {ROW(NOISE_LOSS, "zero_terminal_snr", BOOL, "false"), DONE, ADV,
     HELP("rescale the noise schedule to zero terminal SNR (use with v_parameterization)")},
    {ROW(NOISE_LOSS, "min_timestep", INT, "0"), DONE, RANGE(0, 1000), ADV,
     HELP("lowest diffusion timestep trained (0..1000)")},
    {ROW(NOISE_LOSS, "max_timestep", INT, "1000"), DONE, RANGE(1, 1000), ADV,
     HELP("highest diffusion timestep trained, exclusive (1..1000)")},
    {ROW(NOISE_LOSS, "scale_v_pred_loss_like_noise_pred", BOOL, "false"), DONE, ADV,
     HELP("scale v-prediction loss like noise-prediction loss (needs v_parameterization)")},
    {ROW(NOISE_LOSS, "v_pred_like_loss", FLOAT, "0"), DONE, AT_LEAST(0), ADV,
     HELP("add a v-prediction-like loss of this weight (not with v_parameterization); 0 = off")},

    /* ---- [sampling] ---- */
    {ROW(SAMPLING, "sample_prompts", PATH, ""), DONE, REL(SAMPLING), DYN(sample_prompts_dyn),
     HELP("prompt file (.txt, .toml or .json) for sample images, re-read at each sampling")},
    {ROW(SAMPLING, "sample_every_n_epochs", INT, "0"), DONE, AT_LEAST(0),
     HELP("make sample images every N epochs (overrides steps); 0 = off")},
    {ROW(SAMPLING, "sample_every_n_steps", INT, "0"), DONE, AT_LEAST(0), DYN(sample_every_n_steps_dyn),
     HELP("make sample images every N steps; 0 = off")},
    {ROW(SAMPLING, "sample_at_first", BOOL, "false"), DONE, HELP("also make sample images before training starts")},
    {ROW(SAMPLING, "sample_sampler", ENUM, "euler_a"), DONE, VALUES(sample_sampler_values), REL(SAMPLING),
     HELP("sampler for sample images (a prompt's --ss overrides it)")},

    /* ---- [saving] ---- */
    {ROW(SAVING, "save_model_as", ENUM, "safetensors"), DONE, VALUES(save_model_as_values),
     HELP("model file format (the diffusers formats only for DreamBooth/fine-tune)")},
    {ROW(SAVING, "save_precision", ENUM, "fp16"), DONE, VALUES(save_precision_values),
     HELP("precision of the saved weights (fp32 is kohya's \"float\")")},
    {ROW(SAVING, "save_every_n_epochs", INT, "0"), DONE, AT_LEAST(0),
     HELP("also save the model every N epochs; 0 = only at the end")},
    {ROW(SAVING, "save_every_n_steps", INT, "0"), DONE, AT_LEAST(0), DYN(save_every_n_steps_dyn),
     HELP("also save the model every N steps; 0 = off")},
    {ROW(SAVING, "save_state", BOOL, "false"), DONE,
     HELP("save the full training state with every model save, to resume later")},
    {ROW(SAVING, "save_state_on_train_end", BOOL, "false"), DONE,
     HELP("save the full training state once, at the end")},
    {ROW(SAVING, "resume", PATH, ""), DONE, HELP("training state folder to resume from; empty = start fresh")},
    {ROW(SAVING, "save_last_n_epochs", INT, "0"), DONE, AT_LEAST(0), ADV,
     HELP("keep only the last N epoch saves; 0 = keep all")},
    {ROW(SAVING, "save_last_n_steps", INT, "0"), DONE, AT_LEAST(0), ADV,
     HELP("keep only the step saves of the last N steps; 0 = keep all")},
    {ROW(SAVING, "save_last_n_epochs_state", INT, "0"), DONE, AT_LEAST(0), REL(STATE), ADV,
     HELP("keep only the last N epoch states; 0 = as save_last_n_epochs")},
    {ROW(SAVING, "save_last_n_steps_state", INT, "0"), DONE, AT_LEAST(0), REL(STATE), ADV,
     HELP("keep only the states of the last N steps; 0 = as save_last_n_steps")},
    {ROW(SAVING, "save_n_epoch_ratio", INT, "0"), AT_LEAST(0), ADV,
     HELP("save about N times over the run (sets save_every_n_epochs); 0 = off")},
    {ROW(SAVING, "training_comment", STRING, ""), DONE, HELP("comment stored in the model's metadata")},
    {ROW(SAVING, "no_metadata", BOOL, "false"), DONE, ADV,
     HELP("write only the minimal metadata into the model file")},

    /* ---- [logging] ---- */
    {ROW(LOGGING, "log_with", ENUM, "none"), VALUES(log_with_values),
     HELP("tracker for loss and LR curves: none, tensorboard, wandb or all")},
    {ROW(LOGGING, "log_every_n_steps", INT, "1"), AT_LEAST(1), HELP("write a progress event every N steps")},
    {ROW(LOGGING, "log_tracker_name", STRING, ""), REL(TRACKER),
     HELP("project name shown in the tracker; empty = network_train")},
    {ROW(LOGGING, "wandb_run_name", STRING, ""), REL(WANDB),
     HELP("name of the run in Weights & Biases; empty = automatic")},
    {ROW(LOGGING, "wandb_api_key", STRING, ""), REL(WANDB), FLAGS(SDT_FLAG_SECRET),
     HELP("Weights & Biases API key (never written to logs or model metadata)")},
    {ROW(LOGGING, "log_prefix", STRING, ""), REL(TRACKER), ADV, DONE,
     HELP("prefix of the run's log folder name")},
    {ROW(LOGGING, "log_tracker_config", PATH, ""), REL(TRACKER), ADV,
     HELP("TOML file with extra tracker start-up settings")},
    {ROW(LOGGING, "log_config", BOOL, "false"), REL(TRACKER), ADV,
     HELP("send the settings (without paths and keys) to the tracker")},

    /* ---- [precision_memory] ---- */
    {ROW(PRECISION_MEMORY, "mixed_precision", ENUM, "auto"), DONE, VALUES(mixed_precision_values),
     HELP("compute precision: auto (bf16 on a GPU, fp32 on the CPU), bf16, fp16 or no (fp32)")},
    {ROW(PRECISION_MEMORY, "fp8_base", BOOL, "false"), DONE,
     HELP("store the frozen U-Net and text encoder layer weights in fp8 (LoRA; saves memory)")},
    {ROW(PRECISION_MEMORY, "vram_limit_gb", FLOAT, "0"), DONE, AT_LEAST(0),
     HELP("refuse to start when planned GPU memory exceeds this (GiB); 0 = the free memory")},
    {ROW(PRECISION_MEMORY, "full_bf16", BOOL, "false"), DONE, ADV,
     HELP("keep the trained weights and gradients in bf16 too (needs mixed_precision bf16)")},
    {ROW(PRECISION_MEMORY, "full_fp16", BOOL, "false"), DONE, ADV,
     HELP("keep the trained weights and gradients in fp16 too (needs mixed_precision fp16)")},
    {ROW(PRECISION_MEMORY, "fp8_base_unet", BOOL, "false"), ADV, DONE,
     HELP("store only the frozen U-Net's layer weights in fp8; the text encoder stays as is")},
    {ROW(PRECISION_MEMORY, "cpu_offload_checkpointing", BOOL, "false"), ADV,
     HELP("move checkpointed activations to CPU memory (experimental)")},

    /* ---- [hardware] ---- */
    {ROW(HARDWARE, "backend", ENUM, "auto"), DONE, VALUES(backend_values), DYN(backend_dyn),
     HELP("compute backend: auto (CUDA when available), cuda or cpu")},
    {ROW(HARDWARE, "gpu_index", INT, "0"), DONE, AT_LEAST(0), ALIAS("gpu_ids"),
     HELP("index of the GPU to train on")},
    {ROW(HARDWARE, "deterministic", BOOL, "false"), DONE, ADV,
     HELP("only deterministic GPU algorithms, so that two runs give identical losses (may be slower)")},
    {ROW(HARDWARE, "attention", ENUM, "auto"), DONE, VALUES(attention_values), ALIAS("xformers sdpa mem_eff_attn"),
     ADV, HELP("attention kernel: auto or flash (fused, memory-efficient); math (reference) is planned")},
    {ROW(HARDWARE, "cpu_threads", INT, "0"), DONE, AT_LEAST(0), ALIAS("num_cpu_threads_per_process"), ADV,
     HELP("CPU threads for work on the host; 0 = all cores")},
    {ROW(HARDWARE, "max_data_loader_n_workers", INT, "8"), RANGE(0, 256), ADV,
     HELP("worker threads loading images; 0 = load on the main thread")},
    {ROW(HARDWARE, "persistent_data_loader_workers", BOOL, "false"), ADV,
     HELP("keep the image loader workers alive between epochs")},
    {ROW(HARDWARE, "num_processes", INT, "1"), RANGE(1, 64), ADV, HELP("number of GPUs to train on at once")},

    /* ---- [metadata] ---- */
    {ROW(METADATA, "metadata_title", STRING, ""), DONE,
     HELP("model title stored in the file; empty = output_name")},
    {ROW(METADATA, "metadata_author", STRING, ""), DONE, HELP("author stored in the model file")},
    {ROW(METADATA, "metadata_description", STRING, ""), DONE, HELP("description stored in the model file")},
    {ROW(METADATA, "metadata_license", STRING, ""), DONE, HELP("license stored in the model file")},
    {ROW(METADATA, "metadata_tags", STRING, ""), DONE, HELP("comma-separated tags stored in the model file")},
    {ROW(METADATA, "metadata_trigger_phrase", STRING, ""), DONE,
     HELP("phrase that activates the model in prompts")},
    {ROW(METADATA, "metadata_usage_hint", STRING, ""), DONE, HELP("usage hint stored in the model file")},
    {ROW(METADATA, "metadata_thumbnail", PATH, ""),
     HELP("image embedded in the model file as its thumbnail")},
    {ROW(METADATA, "metadata_merged_from", STRING, ""), DONE, ADV, HELP("models this one was merged from")},
    {ROW(METADATA, "metadata_preprocessor", STRING, ""), DONE, ADV,
     HELP("preprocessor the model expects (for control models)")},
    {ROW(METADATA, "metadata_is_negative_embedding", BOOL, "false"), DONE, ADV,
     HELP("mark the model as a negative embedding")},
};

#undef ROW
#undef REL
#undef ALIAS
#undef FLAGS
#undef ADV
#undef TEMPLATE
#undef RANGE
#undef AT_LEAST
#undef VALUES
#undef ITEMS
#undef DYN
#undef HELP
#undef SEED_MAX

// clang-format on

const sdt_setting *sdt_schema_settings(void) { return settings; }

size_t sdt_schema_count(void) { return sizeof settings / sizeof settings[0]; }
