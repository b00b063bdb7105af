/* Loading: every kind of bad input gives a clear message at the right file:line:column, never a crash. */
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "diag_text.h"
#include "sdtune/config.h"

/* Loads text; returns the printed diagnostics (caller frees) and the config through *out (may be NULL). */
static char *load(const char *text, sdt_config **out, size_t *errors)
{
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_text(text, strlen(text), "my.toml", &diags);
    char *printed = diag_text(&diags);
    if (errors)
        *errors = sdt_diag_count(&diags, SDT_SEV_ERROR);
    sdt_diag_list_free(&diags);
    if (out)
        *out = cfg;
    else
        sdt_config_free(cfg);
    return printed;
}

static void clean_file_loads_values(test_state *t)
{
    sdt_config *cfg;
    size_t errors;
    char *msg =
        load("[model]\nmodel_family = \"sdxl\"\n\n[optimizer]\nlearning_rate = 5e-5\noptimizer_type = "
             "\"Lion\"\n[dataset]\nresolution = 768\n[network]\nnetwork_dim = 8\nnetwork_alpha = 4\n",
             &cfg, &errors);
    CHECK_MSG(t, errors == 0, "%s", msg);
    CHECK(t, cfg && sdt_config_family(cfg) == SDT_FAMILY_SDXL);
    CHECK(t, cfg && fabs(sdt_config_float(cfg, "learning_rate") - 5e-5) < 1e-15);
    CHECK(t, cfg && strcmp(sdt_config_str(cfg, "optimizer_type"), "Lion") == 0);
    CHECK(t, cfg && sdt_config_int(cfg, "network_dim") == 8);
    CHECK(t, cfg && fabs(sdt_config_float(cfg, "network_alpha") - 4.0) < 1e-12); /* int accepted for float */
    /* A single value stands for a one-item list. */
    const sdt_value *res = cfg ? sdt_config_get(cfg, sdt_schema_find("resolution")) : NULL;
    CHECK(t, res && res->count == 1 && res->items[0].i == 768);
    int line = 0, col = 0;
    if (cfg)
        sdt_config_origin(cfg, sdt_schema_find("learning_rate"), &line, &col);
    CHECK(t, line == 5 && col == 17);
    CHECK(t, cfg && strcmp(sdt_config_source(cfg), "my.toml") == 0);
    free(msg);
    sdt_config_free(cfg);
}

static void misspelt_key_suggests(test_state *t)
{
    size_t errors;
    char *msg = load("[optimizer]\n\nlearnig_rate = 1e-4\n", NULL, &errors);
    CHECK(t, errors == 1);
    CHECK_STR_CONTAINS(t, msg,
                       "my.toml:3:1: error: unknown key 'learnig_rate' in [optimizer]; did you mean "
                       "'learning_rate'?");
    free(msg);
    /* A typo whose nearest key lives in another section says where that key belongs. */
    msg = load("[training]\nlearnig_rate = 1e-4\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "did you mean 'learning_rate' (in [optimizer])?");
    free(msg);
    msg = load("[training]\nzzzzzzzz = 1\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "unknown key 'zzzzzzzz' in [training] (docs/config.md lists every setting)");
    free(msg);
}

static void key_in_wrong_place(test_state *t)
{
    size_t errors;
    char *msg = load("[training]\nlearning_rate = 1e-4\n", NULL, &errors);
    CHECK(t, errors == 1);
    CHECK_STR_CONTAINS(t, msg, "my.toml:2:1: error: learning_rate belongs in [optimizer], not in [training]");
    free(msg);
    msg = load("learning_rate = 1e-4\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "learning_rate belongs in [optimizer], not at the top level");
    free(msg);
    msg = load("[optimizer]\noptimizer = \"AdamW\"\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "that is kohya's name; sdtune calls it 'optimizer_type' (in [optimizer])");
    free(msg);
    msg = load("[trainng]\nseed = 1\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "my.toml:1:2: error: unknown section [trainng]; did you mean [training]?");
    free(msg);
    msg = load("training = 3\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "'training' is a section: write it as a table, [training]");
    free(msg);
}

static void wrong_types_name_key_and_type(test_state *t)
{
    size_t errors;
    char *msg = load("[network]\nnetwork_dim = \"32\"\n", NULL, &errors);
    CHECK(t, errors == 1);
    CHECK_STR_CONTAINS(t, msg,
                       "my.toml:2:15: error: network_dim: expected an integer, got a string (\"32\")");
    free(msg);
    msg = load("[network]\nnetwork_dim = 32.0\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "network_dim: expected an integer, got a float (32)");
    free(msg);
    msg = load("[dataset]\nflip_aug = \"yes\"\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "flip_aug: expected true or false, got a string (\"yes\")");
    free(msg);
    msg = load("[optimizer]\nlearning_rate = inf\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "learning_rate: expected a finite number");
    free(msg);
    msg = load("[training]\nseed = 1979-05-27\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "seed: expected an integer, got a date/time");
    free(msg);
    msg = load("[folders]\noutput_dir = \"a\\u0000b\"\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "output_dir: the string contains a NUL character");
    free(msg);
    msg = load("[dataset]\nresolution = [512, \"x\"]\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "resolution: expected a list of integers, but item 2 is a string (\"x\")");
    free(msg);
}

static void ranges_and_enums(test_state *t)
{
    size_t errors;
    char *msg = load("[network]\nnetwork_dropout = 1.5\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "network_dropout = 1.5 is not allowed: must be between 0 and 1");
    free(msg);
    msg = load("[lr_scheduler]\nlr_scheduler = \"consine\"\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "lr_scheduler = \"consine\" is not allowed (did you mean \"cosine\"?)");
    free(msg);
    msg = load("[optimizer]\noptimizer_type = \"Bogus\"\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg, "optimizer_type = \"Bogus\" is not allowed: must be one of: AdamW, AdamW8bit");
    free(msg);
    msg = load("[dataset]\nresolution = [512, 512, 512]\n", NULL, &errors);
    CHECK_STR_CONTAINS(t, msg,
                       "resolution = [512, 512, 512] is not allowed: must be between 64 and 8192; 1 to 2 "
                       "items");
    free(msg);
    sdt_config *cfg;
    msg = load("[optimizer]\noptimizer_type = \"adamw8BIT\"\n", &cfg, &errors);
    CHECK(t, errors == 0 && cfg && strcmp(sdt_config_str(cfg, "optimizer_type"), "AdamW8bit") == 0);
    free(msg);
    sdt_config_free(cfg);
}

static void every_problem_is_reported(test_state *t)
{
    size_t errors;
    char *msg = load("[optimizer]\nlearnig_rate = 1\nmax_grad_norm = \"x\"\n[network]\nnetwork_dim = 0\n",
                     NULL, &errors);
    CHECK_MSG(t, errors == 3, "%s", msg);
    /* In file order. */
    char *a = msg ? strstr(msg, ":2:") : NULL, *b = msg ? strstr(msg, ":3:") : NULL;
    char *c = msg ? strstr(msg, ":5:") : NULL;
    CHECK(t, a && b && c && a < b && b < c);
    free(msg);
}

static void syntax_and_encoding_errors(test_state *t)
{
    size_t errors;
    sdt_config *cfg;
    char *msg = load("[optimizer]\nlearning_rate = = 3\n", &cfg, &errors);
    CHECK(t, cfg == NULL && errors == 1);
    CHECK_STR_CONTAINS(t, msg, "my.toml:2:");
    CHECK_STR_CONTAINS(t, msg, "TOML syntax");
    free(msg);
    msg = load("[model]\n# caf\xC3\xA9 ok\nvae = \"x\xFF\"\n", &cfg, &errors);
    CHECK(t, cfg == NULL);
    CHECK_STR_CONTAINS(t, msg, "my.toml:3:9: error: not valid UTF-8 (byte 0xFF)");
    free(msg);
    msg = load("[model]\nvae = \"x\"\nvae = \"y\"\n", &cfg, &errors);
    CHECK(t, cfg == NULL && errors == 1);
    CHECK_STR_CONTAINS(t, msg, "my.toml:3:");
    free(msg);
    /* Deep nesting: refused with a message, no stack overflow. */
    char deep[20000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "[training]\nseed = ");
    for (int i = 0; i < 5000; i++)
        deep[n++] = '[';
    for (int i = 0; i < 5000; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    msg = load(deep, &cfg, &errors);
    CHECK(t, cfg == NULL && errors == 1);
    free(msg);
    char dotted[20000];
    n = (size_t)snprintf(dotted, sizeof dotted, "[a");
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(dotted + n, sizeof dotted - n, ".b");
    snprintf(dotted + n, sizeof dotted - n, "]\nx = 1\n");
    msg = load(dotted, &cfg, &errors);
    CHECK_MSG(t, errors >= 1, "%s", msg);
    CHECK_STR_CONTAINS(t, msg, "my.toml:1:");
    free(msg);
    sdt_config_free(cfg);
    /* Binary garbage. */
    char garbage[4096];
    unsigned state = 12345;
    for (size_t i = 0; i < sizeof garbage - 1; i++) {
        state = state * 1103515245u + 12345u;
        garbage[i] = (char)((state >> 16) & 0xFF);
        if (!garbage[i])
            garbage[i] = 1;
    }
    garbage[sizeof garbage - 1] = '\0';
    msg = load(garbage, &cfg, &errors);
    CHECK(t, cfg == NULL && errors == 1);
    free(msg);
}

static void file_errors(test_state *t)
{
    char dir[] = "/tmp/sdtune-test-XXXXXX";
    CHECK(t, mkdtemp(dir) != NULL);
    char path[256];
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);

    snprintf(path, sizeof path, "%s/missing.toml", dir);
    CHECK(t, sdt_config_load_file(path, &diags) == NULL);
    char *msg = diag_text(&diags);
    CHECK_STR_CONTAINS(t, msg, "missing.toml: error: cannot open: No such file or directory");
    free(msg);
    sdt_diag_list_clear(&diags);

    CHECK(t, sdt_config_load_file(dir, &diags) == NULL);
    msg = diag_text(&diags);
    CHECK_STR_CONTAINS(t, msg, "error: is a directory, not a file");
    free(msg);
    sdt_diag_list_clear(&diags);

    /* A 50 MB file is refused before it is read. */
    snprintf(path, sizeof path, "%s/big.toml", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(t, fd >= 0 && ftruncate(fd, 50L * 1024 * 1024) == 0);
    close(fd);
    CHECK(t, sdt_config_load_file(path, &diags) == NULL);
    msg = diag_text(&diags);
    CHECK_STR_CONTAINS(t, msg, "big.toml: error: is too large (52428800 bytes; at most 1048576 accepted)");
    free(msg);
    sdt_diag_list_clear(&diags);
    unlink(path);

    /* Unreadable (skipped as root, who can read anything). */
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/locked.toml", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0000);
        close(fd);
        CHECK(t, sdt_config_load_file(path, &diags) == NULL);
        msg = diag_text(&diags);
        CHECK_STR_CONTAINS(t, msg, "cannot open: Permission denied");
        free(msg);
        sdt_diag_list_clear(&diags);
        unlink(path);
    }

    snprintf(path, sizeof path, "%s/empty.toml", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    close(fd);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    CHECK(t, cfg != NULL && diags.count == 0); /* an empty file is all defaults */
    sdt_config_free(cfg);
    unlink(path);
    rmdir(dir);
    sdt_diag_list_free(&diags);
}

TEST_MAIN("config_load", TEST(clean_file_loads_values), TEST(misspelt_key_suggests), TEST(key_in_wrong_place),
          TEST(wrong_types_name_key_and_type), TEST(ranges_and_enums), TEST(every_problem_is_reported),
          TEST(syntax_and_encoding_errors), TEST(file_errors))
