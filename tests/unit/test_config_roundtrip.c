/* Saving: a config written back loads to the same values, and the write is atomic. */
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "diag_text.h"
#include "sdtune/atomic_file.h"
#include "sdtune/config.h"

static void set(test_state *t, sdt_config *cfg, const char *key, const char *text)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    int rc = sdt_config_set_text(cfg, sdt_schema_find(key), text, &diags);
    char *msg = diag_text(&diags);
    CHECK_MSG(t, rc == 0, "%s = %s: %s", key, text, msg);
    free(msg);
    sdt_diag_list_free(&diags);
}

/* Every setting of a and b agrees: set-ness and value. */
static void check_same(test_state *t, const sdt_config *a, const sdt_config *b)
{
    size_t n = sdt_schema_count();
    for (size_t k = 0; k < n; k++) {
        const char *key = sdt_schema_settings()[k].key;
        CHECK_MSG(t, sdt_config_is_set(a, (int)k) == sdt_config_is_set(b, (int)k), "%s: set-ness differs",
                  key);
        CHECK_MSG(t, sdt_value_equal(sdt_config_get(a, (int)k), sdt_config_get(b, (int)k)),
                  "%s: value differs", key);
    }
}

static sdt_config *reload(test_state *t, const char *text)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(text, strlen(text), "saved.toml", &diags);
    char *msg = diag_text(&diags);
    CHECK_MSG(t, cfg && diags.count == 0, "reload: %s", msg);
    free(msg);
    sdt_diag_list_free(&diags);
    return cfg;
}

static void tricky_values_survive(test_state *t)
{
    sdt_config *cfg = sdt_config_new();
    set(t, cfg, "model_family", "sdxl");
    set(t, cfg, "training_type", "dreambooth");
    set(t, cfg, "learning_rate", "1e-4");
    set(t, cfg, "max_grad_norm", "0.1");
    set(t, cfg, "network_alpha", "3"); /* a whole float must stay a float */
    set(t, cfg, "noise_offset", "0.0357");
    set(t, cfg, "seed", "4294967295");
    set(t, cfg, "max_train_steps", "1");
    set(t, cfg, "resolution", "[1024, 768]");
    set(t, cfg, "optimizer_args", "[\"weight_decay=0.01\", \"betas=0.9,0.999\"]");
    set(t, cfg, "face_crop_aug_range", "[2.0, 4.0]");
    set(t, cfg, "output_name", "my \"best\" model\\ \t\xC3\xA9\xE2\x9C\x93 #1 [x] = y");
    set(t, cfg, "training_comment", "line one\nline two\r\x01\x7F");
    set(t, cfg, "caption_prefix", "");
    set(t, cfg, "flip_aug", "true");
    set(t, cfg, "lr_scheduler", "cosine_with_restarts");
    char *text = sdt_config_to_toml(cfg);
    CHECK(t, text != NULL);
    sdt_config *back = text ? reload(t, text) : NULL;
    if (back)
        check_same(t, cfg, back);
    /* Saving the reloaded config gives the same text: the format is a fixed point. */
    char *again = back ? sdt_config_to_toml(back) : NULL;
    CHECK(t, text && again && strcmp(text, again) == 0);
    free(text);
    free(again);
    sdt_config_free(back);
    sdt_config_free(cfg);
}

static void unset_settings_stay_unset(test_state *t)
{
    /* A default written as a comment keeps following the training type after a reload. */
    sdt_config *cfg = sdt_config_new();
    char *text = sdt_config_to_toml(cfg);
    CHECK_STR_CONTAINS(t, text, "# learning_rate = 0.0001\n");
    sdt_config *back = text ? reload(t, text) : NULL;
    CHECK(t, back && !sdt_config_is_set(back, sdt_schema_find("learning_rate")));
    if (back) {
        set(t, back, "training_type", "dreambooth");
        CHECK(t, fabs(sdt_config_float(back, "learning_rate") - 1e-6) < 1e-15);
    }
    free(text);
    sdt_config_free(back);
    sdt_config_free(cfg);
}

static void template_round_trips(test_state *t)
{
    sdt_config *cfg = sdt_config_new_template();
    char *text = sdt_config_to_toml(cfg);
    sdt_config *back = text ? reload(t, text) : NULL;
    if (back)
        check_same(t, cfg, back);
    CHECK(t, back && sdt_config_is_set(back, sdt_schema_find("model_family")));
    free(text);
    sdt_config_free(back);
    sdt_config_free(cfg);
}

static void save_is_atomic(test_state *t)
{
    char dir[] = "/tmp/sdtune-save-XXXXXX";
    CHECK(t, mkdtemp(dir) != NULL);
    char path[300];
    snprintf(path, sizeof path, "%s/run.toml", dir);
    sdt_config *cfg = sdt_config_new_template();
    set(t, cfg, "network_dim", "64");
    char *error = NULL;
    CHECK(t, sdt_config_save(cfg, path, &error) == 0);
    CHECK(t, strcmp(sdt_config_source(cfg), path) == 0);
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *back = sdt_config_load_file(path, &diags);
    CHECK(t, back && diags.count == 0 && sdt_config_int(back, "network_dim") == 64);
    sdt_config_free(back);

    /* Permissions of an existing file are kept. */
    CHECK(t, chmod(path, 0600) == 0);
    set(t, cfg, "network_dim", "16");
    CHECK(t, sdt_config_save(cfg, path, &error) == 0);
    struct stat st;
    CHECK(t, stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    /* A save that cannot happen leaves the old file whole and no temporary file behind. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no-such-folder/run.toml", dir);
    CHECK(t, sdt_config_save(cfg, bad, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "cannot create a temporary file in");
    free(error);
    error = NULL;
    CHECK(t, strcmp(sdt_config_source(cfg), path) == 0);
    /* Saving over a folder fails at the rename; the temporary file is removed. */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(t, mkdir(sub, 0755) == 0);
    char marker[310];
    snprintf(marker, sizeof marker, "%s/keep", sub);
    int fd = open(marker, O_WRONLY | O_CREAT, 0644);
    close(fd);
    CHECK(t, sdt_config_save(cfg, sub, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "cannot rename");
    free(error);
    char listing[400];
    snprintf(listing, sizeof listing, "ls -A %s | grep -c tmp >/dev/null", dir);
    CHECK(t, system(listing) != 0); /* grep found no temporary file */
    unlink(marker);
    rmdir(sub);

    sdt_diag_list_clear(&diags);
    back = sdt_config_load_file(path, &diags);
    CHECK(t, back && sdt_config_int(back, "network_dim") == 16);
    sdt_config_free(back);
    sdt_diag_list_free(&diags);
    unlink(path);
    rmdir(dir);
    sdt_config_free(cfg);
}

TEST_MAIN("config_roundtrip", TEST(tricky_values_survive), TEST(unset_settings_stay_unset),
          TEST(template_round_trips), TEST(save_is_atomic))
