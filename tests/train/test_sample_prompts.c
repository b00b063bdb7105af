/* Prompt files of sample images: .txt lines with every option (case-insensitive, clamped, floored),
 * comments and blank lines, .toml with [prompt] defaults and subsets, .json strings and dicts, and every
 * error naming the file and line (or item). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"
#include "unit/check.h"
#include "unit/test_files.h"

static const sdt_sample_defaults defaults = {512, 512, 30, 7.5f, SDT_SAMPLER_EULER_A};

static char dir[512];

/* Writes text to dir/name and loads it; returns the load's result. */
static int load_text(const char *name, const char *text, sdt_sample_prompts *out, char **error)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (test_write_file(path, text, strlen(text)) != 0)
        return -2;
    return sdt_sample_prompts_load(path, &defaults, out, error);
}

static void test_line_every_option(test_state *t)
{
    sdt_sample_prompt p;
    char *error = NULL;
    int rc = sdt_sample_prompt_parse_line("1girl, upper body --n low quality, blurry --W 771 --h 500 --d 42 "
                                          "--l 5.5 --S 28 --ss k_euler --zz ignored",
                                          &defaults, "p.txt", 3, &p, &error);
    CHECK_MSG(t, rc == 0, "%s", error);
    CHECK(t, strcmp(p.prompt, "1girl, upper body") == 0);
    CHECK(t, strcmp(p.negative, "low quality, blurry") == 0);
    CHECK(t, p.width == 768 && p.height == 496);
    CHECK(t, p.seed == 42 && p.steps == 28 && fabsf(p.scale - 5.5f) < 1e-6f);
    CHECK(t, p.has_sampler && p.sampler == SDT_SAMPLER_EULER);
    sdt_sample_prompt_free(&p);

    /* defaults, clamping, the 64-pixel floor */
    CHECK(t, sdt_sample_prompt_parse_line("a cat", &defaults, "p.txt", 1, &p, NULL) == 0);
    CHECK(t, strcmp(p.prompt, "a cat") == 0 && strcmp(p.negative, "") == 0);
    CHECK(t, p.width == 512 && p.height == 512 && p.steps == 30 && p.seed == -1 && p.scale == 7.5f);
    CHECK(t, !p.has_sampler && p.sampler == SDT_SAMPLER_EULER_A);
    sdt_sample_prompt_free(&p);
    CHECK(t, sdt_sample_prompt_parse_line("x --s 5000 --w 10 --h 63", &defaults, "p.txt", 1, &p, NULL) == 0);
    CHECK(t, p.steps == 1000 && p.width == 64 && p.height == 64);
    sdt_sample_prompt_free(&p);
    CHECK(t, sdt_sample_prompt_parse_line("x --s 0", &defaults, "p.txt", 1, &p, NULL) == 0);
    CHECK(t, p.steps == 1);
    sdt_sample_prompt_free(&p);
    /* "--" without the space before it is part of the prompt */
    CHECK(t, sdt_sample_prompt_parse_line("a--b --l .5", &defaults, "p.txt", 1, &p, NULL) == 0);
    CHECK(t, strcmp(p.prompt, "a--b") == 0 && p.scale == 0.5f);
    sdt_sample_prompt_free(&p);
}

static void test_line_errors(test_state *t)
{
    static const struct {
        const char *line, *message;
    } cases[] = {
        {"a --w big", "p.txt:7: --w: \"big\" is not a size in pixels"},
        {"a --h -5", "p.txt:7: --h: \"-5\" is not a size in pixels"},
        {"a --d 1.5", "p.txt:7: --d: \"1.5\" is not a seed"},
        {"a --s many", "p.txt:7: --s: \"many\" is not a step count"},
        {"a --l 7,5", "p.txt:7: --l: \"7,5\" is not a guidance scale"},
        {"a --ss heun", "p.txt:7: --ss: sampler heun is not implemented yet"},
        {"a --ss nope", "p.txt:7: --ss: unknown sampler \"nope\""},
        {"a --n", "p.txt:7: option --n needs a value"},
        {"a --w", "p.txt:7: option --w needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sdt_sample_prompt p;
        char *error = NULL;
        CHECK(t, sdt_sample_prompt_parse_line(cases[i].line, &defaults, "p.txt", 7, &p, &error) == -1);
        CHECK_STR_CONTAINS(t, error, cases[i].message);
        free(error);
    }
}

static void test_txt_file(test_state *t)
{
    sdt_sample_prompts ps;
    char *error = NULL;
    int rc = load_text("p.txt",
                       "# a comment\n"
                       "\n"
                       "   \n"
                       "first --d 1\r\n"
                       "  second --w 640  \n"
                       "#third\n"
                       "fourth",
                       &ps, &error);
    CHECK_MSG(t, rc == 0, "%s", error);
    CHECK(t, ps.count == 3);
    if (ps.count == 3) {
        CHECK(t, strcmp(ps.items[0].prompt, "first") == 0 && ps.items[0].seed == 1);
        CHECK(t, strcmp(ps.items[1].prompt, "second") == 0 && ps.items[1].width == 640);
        CHECK(t, strcmp(ps.items[2].prompt, "fourth") == 0);
    }
    sdt_sample_prompts_free(&ps);

    CHECK(t, load_text("bad.txt", "ok\n\nbad --s x\n", &ps, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "bad.txt:3: --s");
    CHECK(t, ps.count == 0 && ps.items == NULL);
    free(error);
}

static void test_toml_file(test_state *t)
{
    sdt_sample_prompts ps;
    char *error = NULL;
    int rc = load_text("p.toml",
                       "[prompt]\n"
                       "negative_prompt = \"lowres\"\n"
                       "width = 768\n"
                       "sample_steps = 20\n"
                       "scale = 6\n"
                       "guidance_scale = 3.5\n"
                       "\n"
                       "[[prompt.subset]]\n"
                       "prompt = \"a dog --w 128\"\n"
                       "seed = 7\n"
                       "\n"
                       "[[prompt.subset]]\n"
                       "prompt = \"a cat\"\n"
                       "negative_prompt = \"\"\n"
                       "height = 1001\n"
                       "scale = 9.5\n"
                       "sample_sampler = \"dpm++2m_karras\"\n",
                       &ps, &error);
    CHECK_MSG(t, rc == 0, "%s", error);
    CHECK(t, ps.count == 2);
    if (ps.count == 2) {
        sdt_sample_prompt *a = &ps.items[0], *b = &ps.items[1];
        /* a dict's prompt is taken as it is: no " --" options */
        CHECK(t, strcmp(a->prompt, "a dog --w 128") == 0 && strcmp(a->negative, "lowres") == 0);
        CHECK(t, a->width == 768 && a->height == 512 && a->steps == 20 && a->scale == 6.0f && a->seed == 7);
        CHECK(t, !a->has_sampler);
        CHECK(t, strcmp(b->prompt, "a cat") == 0 && strcmp(b->negative, "") == 0);
        CHECK(t, b->height == 1000 && b->scale == 9.5f && b->seed == -1);
        CHECK(t, b->has_sampler && b->sampler == SDT_SAMPLER_DPMPP_2M_KARRAS);
    }
    sdt_sample_prompts_free(&ps);

    static const struct {
        const char *text, *message;
    } errors[] = {
        {"[prompt]\nwidth = \"wide\"\n[[prompt.subset]]\nprompt = \"x\"\n",
         "p.toml:2: width must be a non-negative integer"},
        {"[prompt]\n[[prompt.subset]]\nprompt = 3\n", "p.toml:3: prompt must be a string"},
        {"[prompt]\n[[prompt.subset]]\nscale = \"big\"\n", "p.toml:3: scale must be a number"},
        {"[prompt]\n[[prompt.subset]]\nsample_sampler = \"lms\"\n", "p.toml:3: sample_sampler: sampler lms"},
        {"[prompt]\n[[prompt.subset]]\nseed = -1\n", "p.toml:3: seed must be a non-negative integer"},
        {"[other]\nx = 1\n", "p.toml: no [prompt] table"},
        {"[prompt]\nwidth = 5\n", "p.toml:1: [prompt] has no [[prompt.subset]] entries"},
        {"[prompt\n", "p.toml:1: "},
    };
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        error = NULL;
        CHECK(t, load_text("p.toml", errors[i].text, &ps, &error) == -1);
        CHECK_STR_CONTAINS(t, error, errors[i].message);
        free(error);
    }
}

static void test_json_file(test_state *t)
{
    sdt_sample_prompts ps;
    char *error = NULL;
    int rc = load_text("p.json",
                       "[\"a cat --n dog --d 3\", {\"prompt\": \"a fox\", \"negative_prompt\": \"ugly\", "
                       "\"width\": 300, \"height\": 200, \"seed\": 9, \"sample_steps\": 12, \"scale\": 4.5, "
                       "\"sample_sampler\": \"ddim\", \"controlnet_image\": \"x.png\"}]",
                       &ps, &error);
    CHECK_MSG(t, rc == 0, "%s", error);
    CHECK(t, ps.count == 2);
    if (ps.count == 2) {
        CHECK(t, strcmp(ps.items[0].prompt, "a cat") == 0 && strcmp(ps.items[0].negative, "dog") == 0);
        CHECK(t, ps.items[0].seed == 3);
        sdt_sample_prompt *b = &ps.items[1];
        CHECK(t, strcmp(b->prompt, "a fox") == 0 && strcmp(b->negative, "ugly") == 0);
        CHECK(t, b->width == 296 && b->height == 200 && b->seed == 9 && b->steps == 12 && b->scale == 4.5f);
        CHECK(t, b->has_sampler && b->sampler == SDT_SAMPLER_DDIM);
    }
    sdt_sample_prompts_free(&ps);

    static const struct {
        const char *text, *message;
    } errors[] = {
        {"{\"prompt\": \"x\"}", "p.json: expected a list of prompts"},
        {"[1]", "p.json: item 1: a prompt must be a string or an object"},
        {"[\"ok\", \"x --w y\"]", "p.json: item 2: --w: \"y\" is not a size"},
        {"[{\"width\": 1.5}]", "p.json: item 1: width must be a non-negative integer"},
        {"[\"a\",\n", "p.json:2: "},
    };
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        error = NULL;
        CHECK(t, load_text("p.json", errors[i].text, &ps, &error) == -1);
        CHECK_STR_CONTAINS(t, error, errors[i].message);
        free(error);
    }
}

static void test_file_errors(test_state *t)
{
    sdt_sample_prompts ps;
    char *error = NULL;
    CHECK(t, load_text("p.yaml", "x", &ps, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "p.yaml: a prompt file must be .txt, .toml or .json");
    free(error);
    error = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    CHECK(t, sdt_sample_prompts_load(path, &defaults, &ps, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "missing.txt: ");
    free(error);
}

int main(void)
{
    if (test_make_temp_dir(dir, sizeof dir, "prompts") != 0)
        return 1;
    static const test_case cases[] = {TEST(test_line_every_option), TEST(test_line_errors),
                                      TEST(test_txt_file),          TEST(test_toml_file),
                                      TEST(test_json_file),         TEST(test_file_errors)};
    int rc = run_tests("train.sample_prompts", cases, sizeof cases / sizeof cases[0]);
    test_remove_tree(dir);
    return rc;
}
