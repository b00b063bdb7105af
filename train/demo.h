/* The built-in demo: "builtin:" names in a config (the model "builtin:tiny-sd15", the data and sample
 * prompts "builtin:shapes") stand for files sdtune generates on first use in its cache folder: a random
 * model of the SD1.5 topology at tiny width (the "sd15-tiny" arch), a small tokenizer for it, a dataset of
 * coloured shapes with captions and a sample prompt file. The trainer resolves the names before anything
 * else reads the config, so the rest of the engine sees plain files. See docs/demo.md. */
#ifndef SDTUNE_TRAIN_DEMO_H
#define SDTUNE_TRAIN_DEMO_H

#ifdef __cplusplus
extern "C" {
#endif

/* The model name the default config.toml uses, and the name of the demo's data and sample prompts. */
#define SDT_DEMO_MODEL "builtin:tiny-sd15"
#define SDT_DEMO_SHAPES "builtin:shapes"
/* The demo's arch preset (models/arch.c), the seed its weights are drawn with, its image side. */
#define SDT_DEMO_ARCH "sd15-tiny"
#define SDT_DEMO_MODEL_SEED 1234
#define SDT_DEMO_RESOLUTION 64
/* The images of the shapes dataset and the repeats in its folder name ("<repeats>_shapes"). */
#define SDT_DEMO_IMAGE_COUNT 24
#define SDT_DEMO_REPEATS 4

/* Whether path is a "builtin:" name (NULL is not). */
int sdt_builtin_is(const char *path);

/* The cache root: $SDTUNE_CACHE_DIR, else $XDG_CACHE_HOME/sdtune, else $HOME/.cache/sdtune. Returns the
 * path (caller frees), or NULL with *error set when none of the variables is set. */
char *sdt_demo_cache_root(char **error);

/* The demo's files, all below <cache root>/demo/. */
typedef struct sdt_demo_assets {
    char *model_path;     /* tiny-sd15.safetensors: single-file LDM checkpoint, fp32 */
    char *train_data_dir; /* shapes/ (holding <repeats>_shapes/) */
    char *sample_prompts; /* sample_prompts.txt */
    char *tokenizer_dir;  /* tokenizer/ (vocab.json + merges.txt) */
} sdt_demo_assets;

/* Creates the demo's files below cache_root on first use and reuses them afterwards. Creation is atomic:
 * everything is built in a temporary folder beside <cache_root>/demo and renamed into place, so a
 * half-made folder is never used (two processes racing both succeed; one folder wins). Returns 0, or -1
 * with *error set naming the folder or file (caller frees); *out is then all NULL. */
int sdt_demo_prepare(const char *cache_root, sdt_demo_assets *out, char **error);
void sdt_demo_assets_free(sdt_demo_assets *a);

/* Replaces every "builtin:" value cfg holds by the real paths of a: pretrained_model_name_or_path,
 * train_data_dir, sample_prompts, and tokenizer_dir when it is empty and the model is the built-in one.
 * An unknown builtin name is an error naming the key. Returns 0, or -1 with *error set. */
typedef struct sdt_config sdt_config;
int sdt_demo_resolve_config(sdt_config *cfg, const sdt_demo_assets *a, char **error);

/* sdt_demo_cache_root + sdt_demo_prepare + sdt_demo_resolve_config when cfg holds any "builtin:" value;
 * nothing when it holds none. What the trainer calls first. */
int sdt_demo_resolve(sdt_config *cfg, char **error);

#ifdef __cplusplus
}
#endif
#endif
