/* The demo's assets: built once in a cache folder and reused (same files, not rewritten), a tokenizer that
 * gives CLIP's special ids, a model that loads as the sd15-tiny arch, deterministic images with captions,
 * and an error naming a cache folder that cannot be made. The config side is in test_demo_config.c (the
 * config and model headers cannot share a file). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch.h"
#include "checkpoint.h"
#include "demo.h"
#include "image.h"
#include "tokenizer.h"
#include "unit/check.h"
#include "unit/test_files.h"

static char root[256];
static sdt_demo_assets assets;

static int same_file_state(const char *path, const struct stat *before)
{
    struct stat now;
    return stat(path, &now) == 0 && now.st_ino == before->st_ino &&
           now.st_mtim.tv_sec == before->st_mtim.tv_sec && now.st_mtim.tv_nsec == before->st_mtim.tv_nsec &&
           now.st_size == before->st_size;
}

static void test_prepare_then_reuse(test_state *t)
{
    char *error = NULL;
    CHECK(t, test_make_temp_dir(root, sizeof root, "demo") == 0);
    CHECK_MSG(t, sdt_demo_prepare(root, &assets, &error) == 0, "%s", error);
    CHECK_STR_CONTAINS(t, assets.model_path, "/demo/tiny-sd15.safetensors");
    CHECK(t, access(assets.model_path, R_OK) == 0);
    CHECK(t, access(assets.sample_prompts, R_OK) == 0);
    CHECK(t, test_count_files_named(root, ".tmp") == 0); /* neither the build folder nor atomic temporaries */
    struct stat model_st, prompt_st;
    CHECK(t, stat(assets.model_path, &model_st) == 0);
    CHECK(t, stat(assets.sample_prompts, &prompt_st) == 0);
    CHECK(t, model_st.st_size > 100000);

    sdt_demo_assets again;
    CHECK_MSG(t, sdt_demo_prepare(root, &again, &error) == 0, "%s", error);
    CHECK(t, again.model_path && strcmp(again.model_path, assets.model_path) == 0);
    CHECK(t, again.tokenizer_dir && strcmp(again.tokenizer_dir, assets.tokenizer_dir) == 0);
    CHECK(t, same_file_state(assets.model_path, &model_st));
    CHECK(t, same_file_state(assets.sample_prompts, &prompt_st));
    sdt_demo_assets_free(&again);
    CHECK(t, again.model_path == NULL);

    char *prompts = NULL, *why = NULL;
    size_t len = 0;
    CHECK(t, sdt_read_file(assets.sample_prompts, 1 << 16, &prompts, &len, &why) == 0);
    CHECK_STR_CONTAINS(t, prompts, "a red circle on a blue background --w 64 --h 64 --d 1 --s 12\n");
    free(prompts);
    free(why);
    free(error);
}

static void test_images_and_captions(test_state *t)
{
    char *error = NULL;
    char *dir = sdt_format("%s/%d_shapes", assets.train_data_dir, SDT_DEMO_REPEATS);
    CHECK(t, test_count_files_named(dir, ".png") == SDT_DEMO_IMAGE_COUNT);
    CHECK(t, test_count_files_named(dir, ".txt") == SDT_DEMO_IMAGE_COUNT);
    char *png = sdt_format("%s/shape_00.png", dir), *txt = sdt_format("%s/shape_00.txt", dir);
    sdt_image img;
    CHECK_MSG(t, sdt_image_decode_file(png, 0, &img, &error) == 0, "%s", error);
    CHECK(t, img.width == SDT_DEMO_RESOLUTION && img.height == SDT_DEMO_RESOLUTION);
    /* Image 0: a red circle at the centre on a green background (colour index 1). */
    if (img.rgb) {
        const uint8_t *centre = img.rgb + ((size_t)32 * 64 + 32) * 3, *corner = img.rgb;
        CHECK(t, centre[0] == 220 && centre[1] == 40 && centre[2] == 40);
        CHECK(t, corner[0] == 40 && corner[1] == 170 && corner[2] == 60);
    }
    sdt_image_free(&img);
    char *caption = NULL, *why = NULL;
    size_t len = 0;
    CHECK(t, sdt_read_file(txt, 4096, &caption, &len, &why) == 0);
    CHECK(t, caption && strcmp(caption, "a red circle on a green background") == 0);
    free(caption);
    free(why);
    free(png);
    free(txt);
    free(dir);
    free(error);
}

static void test_tokenizer_ids(test_state *t)
{
    sdt_tokenizer *tok = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_tokenizer_open(assets.tokenizer_dir, NULL, NULL, &tok, &error) == 0, "%s", error);
    if (!tok) {
        free(error);
        return;
    }
    CHECK(t, sdt_tokenizer_bos(tok) == 49406 && sdt_tokenizer_eos(tok) == 49407);
    int32_t ids[SDT_TOKENIZER_WINDOW];
    const char *caption = "a red circle on a blue background";
    CHECK(t, sdt_tokenizer_encode_padded(tok, caption, strlen(caption), SDT_TOKENIZER_WINDOW, 49407, ids,
                                         NULL, &error) == 0);
    CHECK(t, ids[0] == 49406);
    /* The ids between BOS and EOS spell the caption (words end in "</w>"); padding follows. */
    int eos_at = 1;
    while (eos_at < SDT_TOKENIZER_WINDOW && ids[eos_at] != 49407)
        eos_at++;
    CHECK(t, eos_at > 7 && eos_at < 20 && ids[76] == 49407);
    sdt_buf spelled;
    sdt_buf_init(&spelled);
    for (int i = 1; i < eos_at; i++) {
        CHECK_MSG(t, ids[i] >= 0 && ids[i] < 49406, "id %d at %d", ids[i], i);
        const char *token = sdt_tokenizer_token(tok, ids[i]);
        sdt_buf_puts(&spelled, token ? token : "?");
    }
    CHECK_MSG(t,
              spelled.data &&
                  strcmp(spelled.data, "a</w>red</w>circle</w>on</w>a</w>blue</w>background</w>") == 0,
              "%s", spelled.data);
    sdt_buf_free(&spelled);
    /* Most caption words are a single token. */
    CHECK(t, strcmp(sdt_tokenizer_token(tok, ids[2]), "red</w>") == 0);
    CHECK(t, strcmp(sdt_tokenizer_token(tok, ids[3]), "circle</w>") == 0);
    /* Text outside the demo's words still encodes, byte by byte. */
    int32_t *other = NULL;
    size_t count = 0;
    CHECK(t, sdt_tokenizer_encode(tok, "zebra!", 6, &other, &count, &error) == 0);
    CHECK(t, count == 6);
    for (size_t i = 0; i < count; i++)
        CHECK(t, other[i] >= 0 && other[i] < 512);
    free(other);
    sdt_tokenizer_free(tok);
    free(error);
}

static void test_model_is_sd15_tiny(test_state *t)
{
    const sdt_model_arch *tiny = sdt_model_arch_find(SDT_DEMO_ARCH);
    CHECK(t, tiny != NULL);
    sdt_model m;
    sdt_ckpt_report report;
    char *error = NULL;
    sdt_model_load_options options = {.dtype = SDT_F32, .header_only = 1};
    int rc = sdt_model_load(NULL, assets.model_path, &options, &m, &report, &error);
    CHECK_MSG(t, rc == 0, "%s", error);
    if (rc == 0 && tiny) {
        CHECK(t, report.n_problems == 0);
        CHECK(t, report.family == SDT_MODEL_FAMILY_SD1);
        CHECK(t, memcmp(m.arch.unet.block_out_channels, tiny->unet.block_out_channels,
                        sizeof tiny->unet.block_out_channels) == 0);
        CHECK(t, m.arch.text_encoder.width == tiny->text_encoder.width);
        CHECK(t, m.arch.text_encoder.layers == tiny->text_encoder.layers);
        CHECK(t, m.arch.text_encoder.vocab_size == 49408);
        CHECK(t, memcmp(m.arch.vae.block_out_channels, tiny->vae.block_out_channels,
                        sizeof tiny->vae.block_out_channels) == 0);
    }
    sdt_ckpt_report_free(&report);
    sdt_model_free(NULL, &m);
    free(error);
}

static void test_unwritable_cache(test_state *t)
{
    char *file = sdt_format("%s/not_a_folder", root);
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    char *bad_root = sdt_format("%s/cache", file);
    sdt_demo_assets a;
    char *error = NULL;
    CHECK(t, sdt_demo_prepare(bad_root, &a, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "not_a_folder");
    CHECK(t, a.model_path == NULL);
    CHECK(t, sdt_builtin_is("builtin:tiny-sd15") && !sdt_builtin_is("/models/builtin:x") &&
                 !sdt_builtin_is(NULL));
    free(error);
    free(bad_root);
    free(file);
    sdt_demo_assets_free(&assets);
    test_remove_tree(root);
}

TEST_MAIN("demo", TEST(test_prepare_then_reuse), TEST(test_images_and_captions), TEST(test_tokenizer_ids),
          TEST(test_model_is_sd15_tiny), TEST(test_unwritable_cache))
