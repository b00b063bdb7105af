/* Checkpoints: the SD1.5 tables' sizes, the LDM <-> diffusers key map against the one diffusers and
 * transformers give (tests/data/models/keymap_sd15.json), the real config.json files against the presets,
 * the fixture checkpoint written by the Python libraries, save -> load round trips in both layouts and
 * three dtypes, determinism of the initialiser, and every kind of bad input failing with its message. */
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
/* The fixture reader is the independent check of the loader; not all of its helpers are used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fixture.h"
#pragma GCC diagnostic pop
#include "keymap.h"
#include "sdtune/atomic_file.h"
#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"
#include "unit/check.h"
#include "unit/test_engine.h"
#include "unit/test_files.h"

#define TINY_FIXTURE FIXTURE_DIR "/sd15_tiny.safetensors"
#define KEYMAP_JSON FIXTURE_DIR "/keymap_sd15.json"
#define CONFIG_DIR FIXTURE_DIR "/diffusers_configs"

/* ---- helpers ------------------------------------------------------------------------------------------ */

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *da = test_read_file(a, &la), *db = test_read_file(b, &lb);
    int same = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

/* The sd15-tiny preset, allocated in F32 and initialised with seed. */
static void tiny_model(test_state *t, sdt_engine *e, sdt_model *m, uint64_t seed)
{
    char *error = NULL;
    int rc = sdt_model_init(m, sdt_model_arch_find("sd15-tiny"), &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    rc = rc == 0 ? sdt_model_alloc(e, m, SDT_F32, &error) : rc;
    rc = rc == 0 ? sdt_model_init_random(e, m, seed, &error) : rc;
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
}

/* Every value of b equals a's rounded to dtype (F32: bit for bit). Returns the count of differing values. */
static size_t compare_models(sdt_model *a, sdt_model *b, sdt_dtype rounded_to)
{
    size_t bad = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        sdt_param_table *ta = sdt_model_table(a, c), *tb = sdt_model_table(b, c);
        if (ta->count != tb->count)
            return (size_t)-1;
        for (size_t i = 0; i < ta->count; i++) {
            sdt_param *pa = &ta->items[i], *pb = sdt_param_find(tb, pa->name);
            if (!pb || sdt_param_numel(pa) != sdt_param_numel(pb)) {
                bad++;
                continue;
            }
            int64_t n = sdt_param_numel(pa);
            for (int64_t k = 0; k < n; k++) {
                float va = ((const float *)pa->value.data)[k], vb = ((const float *)pb->value.data)[k];
                float want = va;
                if (rounded_to == SDT_F16)
                    want = sdt_f16_to_f32(sdt_f32_to_f16(va));
                else if (rounded_to == SDT_BF16)
                    want = sdt_bf16_to_f32(sdt_f32_to_bf16(va));
                if (memcmp(&want, &vb, sizeof vb) != 0 && bad++ < 5)
                    fprintf(stderr, "  %s[%lld]: %g, expected %g\n", pa->name, (long long)k, (double)vb,
                            (double)want);
            }
        }
    }
    return bad;
}

/* Loads path (values in F32 unless header_only); returns the status and leaves *error / report set. */
static int load(sdt_engine *e, const char *path, const char *vae, int header_only, sdt_model *m,
                sdt_ckpt_report *r, char **error)
{
    sdt_model_load_options o = {.vae_path = vae, .dtype = SDT_F32, .header_only = header_only};
    return sdt_model_load(e, path, &o, m, r, error);
}

static size_t count_kind(const sdt_ckpt_report *r, sdt_problem_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_problems; i++)
        n += r->problems[i].kind == kind;
    return n;
}

/* A CPU engine and a fresh temporary folder for one test; NULL (the test is skipped) without an engine. */
static sdt_engine *begin_in_temp_dir(test_state *t, char *dir, size_t size)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (e)
        CHECK(t, test_make_temp_dir(dir, size, "ckpt") == 0);
    return e;
}

static void end_in_temp_dir(sdt_engine *e, const char *dir)
{
    test_remove_tree(dir);
    sdt_engine_free(e);
}

/* Loads path (with vae) in F32 and expects m's values bit for bit. */
static void expect_loads_as(test_state *t, sdt_engine *e, const char *path, const char *vae, sdt_model *m)
{
    sdt_model back;
    char *error = NULL;
    CHECK_MSG(t, load(e, path, vae, 0, &back, NULL, &error) == 0, "%s", error ? error : "");
    CHECK(t, back.has_values && compare_models(m, &back, SDT_F32) == 0);
    sdt_model_free(e, &back);
    free(error);
}

/* ---- rewriting a checkpoint ------------------------------------------------------------------------------
 */

/* One change to apply while copying a file: drop, rename or replace a tensor, or add one. */
typedef struct edit {
    const char *key;     /* the tensor concerned (NULL: add new_key) */
    const char *new_key; /* rename to / add as; NULL with replace == 0: drop */
    int replace;         /* give it new_shape / new_dtype (zeros) */
    int ndim;
    int64_t shape[4];
    sdt_dtype dtype;
} edit;

/* Copies src to dst applying edits (metadata is kept). Returns 0 or -1. */
static int rewrite(const char *src, const char *dst, const edit *edits, size_t n_edits)
{
    sdt_safetensors *st = NULL;
    char *error = NULL;
    if (sdt_safetensors_open(src, &st, &error) != 0) {
        fprintf(stderr, "%s\n", error);
        free(error);
        return -1;
    }
    size_t n = sdt_safetensors_count(st);
    sdt_st_write_tensor *w = calloc(n + n_edits, sizeof *w);
    void **zeros = calloc(n + n_edits, sizeof *zeros);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const sdt_st_tensor *t = sdt_safetensors_tensor(st, i);
        const edit *ed = NULL;
        for (size_t j = 0; j < n_edits; j++)
            if (edits[j].key && strcmp(edits[j].key, t->name) == 0)
                ed = &edits[j];
        if (ed && !ed->new_key && !ed->replace)
            continue;
        w[k] = (sdt_st_write_tensor){
            .name = t->name, .dtype = t->dtype, .ndim = t->ndim, .shape = t->shape, .data = t->data};
        if (ed && ed->new_key)
            w[k].name = ed->new_key;
        if (ed && ed->replace) {
            size_t count = 1;
            for (int d = 0; d < ed->ndim; d++)
                count *= (size_t)ed->shape[d];
            zeros[k] = calloc(count ? count : 1, sdt_dtype_bits(ed->dtype) / 8);
            w[k].dtype = ed->dtype;
            w[k].ndim = ed->ndim;
            w[k].shape = ed->shape;
            w[k].data = zeros[k];
        }
        k++;
    }
    for (size_t j = 0; j < n_edits; j++) {
        const edit *ed = &edits[j];
        if (ed->key)
            continue;
        size_t count = 1;
        for (int d = 0; d < ed->ndim; d++)
            count *= (size_t)ed->shape[d];
        zeros[k] = calloc(count ? count : 1, sdt_dtype_bits(ed->dtype) / 8);
        w[k] = (sdt_st_write_tensor){
            .name = ed->new_key, .dtype = ed->dtype, .ndim = ed->ndim, .shape = ed->shape, .data = zeros[k]};
        k++;
    }
    size_t n_meta = sdt_safetensors_metadata_count(st);
    const char **meta = calloc(2 * n_meta + 1, sizeof *meta);
    for (size_t i = 0; i < n_meta; i++)
        sdt_safetensors_metadata_at(st, i, &meta[2 * i], &meta[2 * i + 1]);
    int rc = sdt_safetensors_write(dst, w, k, meta, n_meta, &error);
    if (rc != 0) {
        fprintf(stderr, "%s\n", error);
        free(error);
    }
    for (size_t i = 0; i < n + n_edits; i++)
        free(zeros[i]);
    free(zeros);
    free(w);
    free(meta);
    sdt_safetensors_close(st);
    return rc;
}

/* ---- tables and key map ---------------------------------------------------------------------------------
 */

static void test_sd15_tables(test_state *t)
{
    sdt_model m;
    char *error = NULL;
    CHECK(t, sdt_model_init(&m, sdt_model_arch_find("sd15"), &error) == 0);
    CHECK(t, sdt_param_table_numel(&m.unet) == 859520964 && m.unet.count == 686);
    CHECK(t, sdt_param_table_numel(&m.text_encoder) == 123060480 && m.text_encoder.count == 196);
    CHECK(t, sdt_param_table_numel(&m.vae) == 83653863 && m.vae.count == 248);
    free(error);
    sdt_model_free(NULL, &m);
}

/* The arch the fixtures were made with: the configs of diffusers_configs/<which>/ (a real folder's files). */
static int arch_from_config_dir(test_state *t, const char *which, sdt_model_arch *arch)
{
    *arch = *sdt_model_arch_find("sd15");
    static const char *const comp[] = {"unet", "text_encoder", "vae"};
    for (int c = 0; c < 3; c++) {
        char *path = sdt_format("%s/%s/%s/config.json", CONFIG_DIR, which, comp[c]);
        size_t len;
        char *text = test_read_file(path, &len), *error = NULL, *uns = NULL;
        int rc = -1;
        if (text && c == 0)
            rc = sdt_unet_config_from_json(text, path, &arch->unet, &uns, &error);
        else if (text && c == 1)
            rc = sdt_clip_config_from_json(text, path, &arch->text_encoder, &uns, &error);
        else if (text)
            rc = sdt_vae_config_from_json(text, path, &arch->vae, &uns, &error);
        CHECK_MSG(t, rc == 0 && !uns, "%s: %s", path, error ? error : uns ? uns : "unreadable");
        free(text);
        free(error);
        free(uns);
        free(path);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void test_diffusers_configs(test_state *t)
{
    sdt_model_arch arch;
    sdt_buf diff;
    sdt_buf_init(&diff);
    const sdt_model_arch *sd15 = sdt_model_arch_find("sd15"), *tiny = sdt_model_arch_find("sd15-tiny");
    if (arch_from_config_dir(t, "sd15", &arch) == 0) {
        CHECK_MSG(t, sdt_unet_config_diff(&arch.unet, &sd15->unet, &diff) == 0, "%s", diff.data);
        /* the file's legacy token ids (bos 0, eos 2) mean the vocabulary's last two */
        CHECK_MSG(t, sdt_clip_config_diff(&arch.text_encoder, &sd15->text_encoder, 0, &diff) == 0, "%s",
                  diff.data);
        CHECK_MSG(t, sdt_vae_config_diff(&arch.vae, &sd15->vae, &diff) == 0, "%s", diff.data);
    }
    if (arch_from_config_dir(t, "sd15_tiny", &arch) == 0) {
        CHECK_MSG(t, sdt_unet_config_diff(&arch.unet, &tiny->unet, &diff) == 0, "%s", diff.data);
        CHECK_MSG(t, sdt_vae_config_diff(&arch.vae, &tiny->vae, &diff) == 0, "%s", diff.data);
        /* the fixture shrinks the vocabulary to 1000 ids; everything else is the preset's */
        CHECK_MSG(t, sdt_clip_config_diff(&arch.text_encoder, &tiny->text_encoder, 1, &diff) == 0, "%s",
                  diff.data);
        CHECK(t, arch.text_encoder.vocab_size == 1000 && arch.text_encoder.bos_id == 998 &&
                     arch.text_encoder.eos_id == 999);
    }
    /* What sdtune writes reads back to the same config. */
    for (size_t i = 0; sdt_model_arch_at(i); i++) {
        const sdt_model_arch *p = sdt_model_arch_at(i);
        char *u = sdt_unet_config_to_json(&p->unet, 0),
             *c = sdt_clip_config_to_json(&p->text_encoder, 1, SDT_F16, 1),
             *v = sdt_vae_config_to_json(&p->vae, 0), *error = NULL, *uns = NULL;
        sdt_model_arch back = *p;
        memset(&back.unet, 0, sizeof back.unet);
        CHECK(t, sdt_unet_config_from_json(u, "unet", &back.unet, &uns, &error) == 0 && !uns);
        CHECK(t, sdt_clip_config_from_json(c, "text", &back.text_encoder, &uns, &error) == 0 && !uns);
        CHECK(t, sdt_vae_config_from_json(v, "vae", &back.vae, &uns, &error) == 0 && !uns);
        CHECK_MSG(t, sdt_unet_config_diff(&back.unet, &p->unet, &diff) == 0, "%s: %s", p->name, diff.data);
        CHECK_MSG(t, sdt_clip_config_diff(&back.text_encoder, &p->text_encoder, 0, &diff) == 0, "%s",
                  diff.data);
        CHECK_MSG(t, sdt_vae_config_diff(&back.vae, &p->vae, &diff) == 0, "%s", diff.data);
        CHECK_STR_CONTAINS(t, u, "\"attention_head_dim\": 8");
        CHECK_STR_CONTAINS(t, v, "\"scaling_factor\": 0.18215");
        free(u);
        free(c);
        free(v);
        free(error);
        free(uns);
    }
    /* The naming trap: num_attention_heads wins over attention_head_dim; a list gives heads per level. */
    sdt_unet_config u;
    char *error = NULL, *uns = NULL;
    CHECK(t, sdt_unet_config_from_json(
                 "{\"attention_head_dim\": [5, 10, 20, 20], \"cross_attention_dim\": 1024}", "x", &u, &uns,
                 &error) == 0);
    CHECK(t, u.heads[0] == 5 && u.heads[2] == 20 && u.mid_heads == 20 && u.cross_attention_dim == 1024);
    CHECK(t, sdt_unet_config_from_json("{\"attention_head_dim\": 64, \"num_attention_heads\": 4}", "x", &u,
                                       &uns, &error) == 0);
    CHECK(t, u.heads[0] == 4 && u.mid_heads == 4);
    CHECK(t,
          sdt_unet_config_from_json("{\"layers_per_block\": \"two\"}", "cfg.json", &u, &uns, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "cfg.json: layers_per_block: expected an integer");
    free(error);
    error = NULL;
    CHECK(t, sdt_unet_config_from_json("{\"down_block_types\": [\"CrossAttnDownBlock2D\", \"SimpleBlock\", "
                                       "\"DownBlock2D\", \"DownBlock2D\"]}",
                                       "cfg.json", &u, &uns, &error) == 0);
    CHECK_STR_CONTAINS(t, uns, "down block type SimpleBlock is not supported");
    free(uns);
    uns = NULL;
    CHECK(t, sdt_unet_config_from_json("not json", "cfg.json", &u, &uns, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "cfg.json:1:");
    free(error);
    sdt_buf_free(&diff);
}

static int64_t json_dim(json_t *a, size_t i) { return (int64_t)json_integer_value(json_array_get(a, i)); }

/* One component's rows: [diffusers_name, ldm_name, diffusers_shape, ldm_shape]. */
static void check_keymap_rows(test_state *t, const char *which, sdt_param_table *table, const sdt_keymap *km,
                              json_t *rows, int64_t count)
{
    CHECK_MSG(t, json_array_size(rows) == table->count, "%s %s: %zu rows, table has %zu", which,
              table->component, json_array_size(rows), table->count);
    CHECK_MSG(t, sdt_param_table_numel(table) == count, "%s %s: %lld parameters, diffusers has %lld", which,
              table->component, (long long)sdt_param_table_numel(table), (long long)count);
    size_t bad = 0;
    for (size_t r = 0; r < json_array_size(rows); r++) {
        json_t *row = json_array_get(rows, r);
        const char *dname = json_string_value(json_array_get(row, 0));
        const char *lname = json_string_value(json_array_get(row, 1));
        json_t *dshape = json_array_get(row, 2), *lshape = json_array_get(row, 3);
        long long i = dname ? sdt_keymap_find(km, dname) : -1;
        int ok = i >= 0 && strcmp(table->items[i].name, lname) == 0;
        if (ok) {
            const sdt_param *p = &table->items[i];
            ok = json_array_size(dshape) == (size_t)km->diffusers_ndim[i] &&
                 json_array_size(lshape) == (size_t)p->file_ndim;
            for (int d = 0; ok && d < p->file_ndim; d++)
                ok = json_dim(lshape, (size_t)d) == p->file_shape[d];
            for (int d = 0; ok && d < km->diffusers_ndim[i]; d++)
                ok = json_dim(dshape, (size_t)d) == km->diffusers_shape[i][d];
            ok = ok && strcmp(km->diffusers[i], dname) == 0;
        }
        if (!ok && bad++ < 5)
            fprintf(stderr, "  %s %s: %s -> %s (ours: %s)\n", which, table->component, dname, lname,
                    i >= 0 ? table->items[i].name : "no entry");
    }
    CHECK_MSG(t, bad == 0, "%s %s: %zu rows differ", which, table->component, bad);
}

static void test_keymap_against_diffusers(test_state *t)
{
    if (access(KEYMAP_JSON, R_OK) != 0) {
        printf("skip: %s is not there yet (tools/golden/make_model_fixtures.py writes it)\n", KEYMAP_JSON);
        return;
    }
    json_error_t jerr;
    json_t *root = json_load_file(KEYMAP_JSON, 0, &jerr);
    CHECK_MSG(t, root != NULL, "%s:%d: %s", KEYMAP_JSON, jerr.line, jerr.text);
    if (!root)
        return;
    static const char *const which[] = {"sd15", "sd15_tiny"};
    for (int w = 0; w < 2; w++) {
        json_t *entry = json_object_get(root, which[w]);
        sdt_model_arch arch;
        if (arch_from_config_dir(t, which[w], &arch) != 0)
            continue;
        sdt_model m;
        char *error = NULL;
        CHECK_MSG(t, sdt_model_init(&m, &arch, &error) == 0, "%s", error ? error : "");
        for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
            sdt_param_table *table = sdt_model_table(&m, c);
            sdt_keymap km;
            if (sdt_keymap_build(&km, table, &m.arch, &error) != 0) {
                CHECK_MSG(t, 0, "%s", error);
                continue;
            }
            json_t *counts = json_object_get(entry, "counts");
            check_keymap_rows(t, which[w], table, &km, json_object_get(entry, sdt_component_name(c)),
                              (int64_t)json_integer_value(json_object_get(counts, sdt_component_name(c))));
            sdt_keymap_free(&km);
        }
        free(error);
        sdt_model_free(NULL, &m);
    }
    json_decref(root);
}

/* ---- the fixture made by the Python libraries ------------------------------------------------------------
 */

static void test_fixture_checkpoint(test_state *t)
{
    sdt_engine *e = test_cpu_engine(t, 0);
    if (!e)
        return;
    sdt_model m;
    sdt_ckpt_report r;
    char *error = NULL;
    int rc = load(e, TINY_FIXTURE, NULL, 1, &m, &r, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    CHECK(t, r.family == SDT_MODEL_FAMILY_SD1 && strcmp(r.format, "ldm") == 0 && r.n_problems == 0);
    CHECK_MSG(t, m.arch.name && strcmp(m.arch.name, "sd15-tiny") == 0, "arch %s", m.arch.name);
    CHECK_STR_CONTAINS(t, m.arch_notes, "text_encoder vocab_size 1000 (preset 49408)");
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        CHECK(t, r.components[c].found == r.components[c].tensors && r.components[c].tensors > 0);
        CHECK(t, r.components[c].dtypes[SDT_F16] == r.components[c].tensors);
    }
    CHECK(t, r.components[SDT_COMPONENT_UNET].parameters == 2469316);
    CHECK(t, r.components[SDT_COMPONENT_TEXT_ENCODER].parameters == 136608);
    CHECK(t, r.components[SDT_COMPONENT_VAE].parameters == 354391);
    CHECK(t, m.arch.text_encoder.eos_id == 999 && m.arch.text_encoder.bos_id == 998);
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &m);
    free(error);
    error = NULL;

    /* Values: the same as the tests' own reader gives (conv weights permuted, F16 widened). */
    rc = load(e, TINY_FIXTURE, NULL, 0, &m, NULL, &error);
    CHECK_MSG(t, rc == 0 && m.has_values, "%s", error ? error : "");
    sdt_model ref;
    CHECK(t, sdt_model_init(&ref, &m.arch, &error) == 0);
    size_t bad = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT && rc == 0; c++) {
        sdt_param_table *tr = sdt_model_table(&ref, c);
        CHECK(t, fixture_load_params(e, tr, TINY_FIXTURE) == 0);
        for (size_t i = 0; i < tr->count; i++) {
            sdt_param *a = &tr->items[i], *b = sdt_param_find(sdt_model_table(&m, c), a->name);
            if (!b || memcmp(a->value.data, b->value.data, sdt_tensor_bytes(&a->value)) != 0)
                bad++;
        }
    }
    CHECK_MSG(t, bad == 0, "%zu tensors differ from the fixture reader's", bad);
    sdt_model_free(e, &ref);
    sdt_model_free(e, &m);
    free(error);
    sdt_engine_free(e);
}

/* ---- round trips ----------------------------------------------------------------------------------------
 */

static void roundtrip(test_state *t, sdt_engine *e, sdt_model *orig, const char *dir, sdt_ckpt_format format,
                      sdt_dtype dtype)
{
    const char *fmt_name = format == SDT_CKPT_LDM ? "ldm" : "diffusers";
    char *path = sdt_format("%s/rt-%s-%s%s", dir, fmt_name, sdt_dtype_name(dtype),
                            format == SDT_CKPT_LDM ? ".safetensors" : "");
    sdt_model_save_options so = {.format = format, .dtype = dtype};
    char *error = NULL;
    int rc = sdt_model_save(e, orig, path, &so, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    sdt_model back;
    sdt_ckpt_report r;
    free(error);
    error = NULL;
    rc = load(e, path, NULL, 0, &back, &r, &error);
    CHECK_MSG(t, rc == 0, "%s %s: %s", fmt_name, sdt_dtype_name(dtype), error ? error : "");
    if (rc == 0) {
        CHECK(t, strcmp(r.format, fmt_name) == 0);
        CHECK_MSG(t, strcmp(back.arch.name, "sd15-tiny") == 0 && !back.arch_notes, "%s %s", back.arch.name,
                  back.arch_notes ? back.arch_notes : "");
        size_t bad = compare_models(orig, &back, dtype);
        CHECK_MSG(t, bad == 0, "%s %s: %zu values differ", fmt_name, sdt_dtype_name(dtype), bad);
        for (int c = 0; c < SDT_COMPONENT_COUNT; c++)
            CHECK(t, r.components[c].dtypes[dtype] == r.components[c].tensors);
    }
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &back);
    free(error);
    free(path);
}

static void test_roundtrips(test_state *t)
{
    char dir[256];
    sdt_engine *e = begin_in_temp_dir(t, dir, sizeof dir);
    if (!e)
        return;
    sdt_model m;
    tiny_model(t, e, &m, 42);
    roundtrip(t, e, &m, dir, SDT_CKPT_LDM, SDT_F32);
    roundtrip(t, e, &m, dir, SDT_CKPT_DIFFUSERS, SDT_F32);
    roundtrip(t, e, &m, dir, SDT_CKPT_LDM, SDT_F16);
    roundtrip(t, e, &m, dir, SDT_CKPT_DIFFUSERS, SDT_BF16);

    /* A diffusers folder has what diffusers reads: configs, weights with diffusers names and shapes. */
    char *path = sdt_format("%s/rt-diffusers-F32/vae/diffusion_pytorch_model.safetensors", dir);
    sdt_safetensors *st = NULL;
    char *error = NULL;
    CHECK(t, sdt_safetensors_open(path, &st, &error) == 0);
    const sdt_st_tensor *q =
        st ? sdt_safetensors_find(st, "decoder.mid_block.attentions.0.to_q.weight") : NULL;
    CHECK(t, q && q->ndim == 2 && q->shape[0] == 32 && q->shape[1] == 32);
    CHECK(t, st && sdt_safetensors_find(st, "decoder.up_blocks.0.upsamplers.0.conv.weight"));
    sdt_safetensors_close(st);
    free(path);
    static const char *const files[] = {"model_index.json",         "unet/config.json",
                                        "text_encoder/config.json", "text_encoder/model.safetensors",
                                        "vae/config.json",          "scheduler/scheduler_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        path = sdt_format("%s/rt-diffusers-F32/%s", dir, files[i]);
        CHECK_MSG(t, access(path, R_OK) == 0, "%s is missing", path);
        free(path);
    }
    /* The LDM file keeps the keys with their prefixes and says what it is. */
    path = sdt_format("%s/rt-ldm-F16.safetensors", dir);
    CHECK(t, sdt_safetensors_open(path, &st, &error) == 0);
    if (st) {
        CHECK(t, sdt_safetensors_find(st, "model.diffusion_model.input_blocks.0.0.weight") != NULL);
        CHECK(t, sdt_safetensors_find(
                     st, "cond_stage_model.transformer.text_model.final_layer_norm.weight") != NULL);
        CHECK(t, sdt_safetensors_find(st, "first_stage_model.decoder.mid.attn_1.q.weight")->ndim == 4);
        const char *fmt = sdt_safetensors_metadata(st, "format"),
                   *arch = sdt_safetensors_metadata(st, "sdtune.arch");
        CHECK(t, fmt && strcmp(fmt, "pt") == 0 && arch && strcmp(arch, "sd15-tiny") == 0);
        CHECK(t, sdt_safetensors_metadata(st, "unet_config") != NULL);
    }
    sdt_safetensors_close(st);
    free(path);

    /* A load in F16 holds the values rounded once. */
    path = sdt_format("%s/rt-ldm-F32.safetensors", dir);
    sdt_model half;
    sdt_model_load_options lo = {.dtype = SDT_F16};
    CHECK(t, sdt_model_load(e, path, &lo, &half, NULL, &error) == 0);
    const sdt_param *a = sdt_param_find(&m.unet, "input_blocks.1.0.in_layers.2.weight");
    const sdt_param *b =
        half.has_values ? sdt_param_find(&half.unet, "input_blocks.1.0.in_layers.2.weight") : NULL;
    CHECK(t, b && b->value.dtype == SDT_F16);
    if (a && b) {
        size_t diff = 0;
        for (int64_t k = 0; k < sdt_param_numel(a); k++)
            diff += sdt_f32_to_f16(((const float *)a->value.data)[k]) != ((const uint16_t *)b->value.data)[k];
        CHECK(t, diff == 0);
    }
    sdt_model_free(e, &half);
    free(path);
    free(error);

    sdt_model_free(e, &m);
    end_in_temp_dir(e, dir);
}

/* The initialiser: same seed -> same bytes, whether streamed or saved from memory; the scheme's values. */
static void test_init_deterministic(test_state *t)
{
    char dir[256];
    sdt_engine *e = begin_in_temp_dir(t, dir, sizeof dir);
    if (!e)
        return;
    sdt_model m;
    tiny_model(t, e, &m, 7);
    char *saved = sdt_format("%s/saved.safetensors", dir),
         *streamed = sdt_format("%s/streamed.safetensors", dir),
         *again = sdt_format("%s/again.safetensors", dir), *other = sdt_format("%s/other.safetensors", dir);
    sdt_model_save_options so = {.format = SDT_CKPT_LDM, .dtype = SDT_F16};
    char *error = NULL;
    CHECK(t, sdt_model_save(e, &m, saved, &so, &error) == 0);
    CHECK(t, sdt_model_save_random(&m, 7, streamed, &so, &error) == 0);
    CHECK(t, sdt_model_save_random(&m, 7, again, &so, &error) == 0);
    CHECK(t, sdt_model_save_random(&m, 8, other, &so, &error) == 0);
    CHECK(t, same_file(saved, streamed));
    CHECK(t, same_file(streamed, again));
    CHECK(t, !same_file(streamed, other));

    /* Norms 1 and 0, weights within 1/sqrt(fan_in), embeddings with a standard deviation near 0.02. */
    const sdt_param *nw = sdt_param_find(&m.unet, "out.0.weight"),
                    *nb = sdt_param_find(&m.unet, "out.0.bias");
    CHECK(t, ((const float *)nw->value.data)[3] == 1.0f && ((const float *)nb->value.data)[3] == 0.0f);
    const sdt_param *w = sdt_param_find(&m.unet, "input_blocks.1.0.in_layers.2.weight");
    float bound = 1.0f / sqrtf((float)w->fan_in), maxabs = 0.0f;
    for (int64_t k = 0; k < sdt_param_numel(w); k++) {
        float v = fabsf(((const float *)w->value.data)[k]);
        maxabs = v > maxabs ? v : maxabs;
    }
    CHECK_MSG(t, maxabs <= bound && maxabs > 0.9f * bound, "max |w| %g, bound %g", (double)maxabs,
              (double)bound);
    const sdt_param *emb = sdt_param_find(&m.text_encoder, "text_model.embeddings.token_embedding.weight");
    double sum2 = 0.0;
    int64_t n = sdt_param_numel(emb);
    for (int64_t k = 0; k < n; k++) {
        double v = ((const float *)emb->value.data)[k];
        sum2 += v * v;
    }
    double sd = sqrt(sum2 / (double)n);
    CHECK_MSG(t, sd > 0.0195 && sd < 0.0205, "embedding std %g", sd);
    CHECK(t, sdt_init_value(w, 7, SDT_COMPONENT_UNET, (size_t)(w - m.unet.items), 5) ==
                 ((const float *)w->value.data)[5]);

    free(error);
    free(saved);
    free(streamed);
    free(again);
    free(other);
    sdt_model_free(e, &m);
    end_in_temp_dir(e, dir);
}

/* ---- bad input ---------------------------------------------------------------------------------------- */

/* Expects load to fail with a message containing want (and, header-only, the same). */
static void expect_fail(test_state *t, sdt_engine *e, const char *path, const char *vae, const char *want)
{
    for (int header_only = 1; header_only >= 0; header_only--) {
        sdt_model m;
        char *error = NULL;
        int rc = load(e, path, vae, header_only, &m, NULL, &error);
        CHECK_MSG(t, rc == -1, "%s loaded", path);
        CHECK_STR_CONTAINS(t, error, want);
        CHECK(t, !m.has_values);
        sdt_model_free(e, &m);
        free(error);
    }
}

static void test_bad_files(test_state *t)
{
    char dir[256];
    sdt_engine *e = begin_in_temp_dir(t, dir, sizeof dir);
    if (!e)
        return;
    char path[512], msg[700];

    /* Pickles: by name, and by contents whatever the name. */
    static const struct {
        const char *file, *bytes;
        size_t len;
        const char *want[2];
    } pickles[] = {
        {"model.ckpt", "PK\x03\x04 not really", 15, {"is a PyTorch pickle file", "weights_only=True"}},
        {"zip.safetensors",
         "PK\x03\x04\x14\x00\x00\x00\x08\x00",
         10,
         {"a zip archive, as torch.save writes"}},
        {"pickle.safetensors",
         "\x80\x02}q\x00(X\x05\x00\x00\x00",
         12,
         {"is a PyTorch pickle file (by its contents)"}},
    };
    for (size_t i = 0; i < sizeof pickles / sizeof pickles[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, pickles[i].file);
        CHECK(t, test_write_file(path, pickles[i].bytes, pickles[i].len) == 0);
        for (int w = 0; w < 2 && pickles[i].want[w]; w++)
            expect_fail(t, e, path, NULL, pickles[i].want[w]);
    }

    /* Garbage, truncation, nothing at all. */
    snprintf(path, sizeof path, "%s/garbage.safetensors", dir);
    CHECK(t, test_write_file(path, "this is not a checkpoint at all, just some text", 47) == 0);
    expect_fail(t, e, path, NULL, path);
    size_t len;
    char *data = test_read_file(TINY_FIXTURE, &len);
    snprintf(path, sizeof path, "%s/truncated.safetensors", dir);
    if (data) {
        CHECK(t, test_write_file(path, data, len / 2) == 0);
        expect_fail(t, e, path, NULL, "truncated.safetensors");
    }
    free(data);
    snprintf(path, sizeof path, "%s/nothing-here.safetensors", dir);
    expect_fail(t, e, path, NULL, "cannot open: No such file or directory");

    /* A missing tensor, a wrong shape, an unexpected tensor, a bad dtype: each named with its file. Then
     * families the tables do not cover yet, refused by name. */
    static const struct {
        const char *file;
        edit edits[2];
        size_t n_edits;
        const char *in_file; /* expected after "file PATH: " */
        const char *want[2];
    } cases[] = {
        {"missing.safetensors",
         {{.key = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"},
          {.key = "first_stage_model.decoder.up.1.block.2.conv1.bias"}},
         2,
         "missing tensor model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight [32, "
         "48]",
         {"first_stage_model.decoder.up.1.block.2.conv1.bias [16]", "2 problems: 2 missing"}},
        {"shape.safetensors",
         {{.key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
           .replace = 1,
           .ndim = 4,
           .shape = {32, 4, 3, 3},
           .dtype = SDT_F16}},
         1,
         "model.diffusion_model.input_blocks.1.0.in_layers.2.weight is [32, 4, 3, 3], expected [32, 32, 3, "
         "3]",
         {NULL}},
        {"unexpected.safetensors",
         {{.new_key = "model.diffusion_model.input_blocks.1.2.weight",
           .ndim = 1,
           .shape = {4},
           .dtype = SDT_F16},
          {.new_key = "something_else", .ndim = 1, .shape = {2}, .dtype = SDT_F32}},
         2,
         "unexpected tensor model.diffusion_model.input_blocks.1.2.weight [4] F16",
         {"unexpected tensor something_else (it belongs to no network of the model)"}},
        {"dtype.safetensors",
         {{.key = "model.diffusion_model.out.2.bias",
           .replace = 1,
           .ndim = 1,
           .shape = {4},
           .dtype = SDT_I32}},
         1,
         NULL,
         {"model.diffusion_model.out.2.bias has dtype I32; expected F32, F16 or BF16"}},
        {"duplicate.safetensors",
         {{.new_key = "cond_stage_model.transformer.final_layer_norm.weight",
           .ndim = 1,
           .shape = {48},
           .dtype = SDT_F16}},
         1,
         NULL,
         {"are both cond_stage_model.transformer.text_model.final_layer_norm.weight"}},
        {"sdxl.safetensors",
         {{.new_key = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
           .ndim = 1,
           .shape = {8},
           .dtype = SDT_F16}},
         1,
         NULL,
         {"SDXL checkpoints are not supported yet"}},
        {"sd2.safetensors",
         {{.new_key = "cond_stage_model.model.ln_final.weight", .ndim = 1, .shape = {8}, .dtype = SDT_F16}},
         1,
         NULL,
         {"SD2.x checkpoints are not supported yet"}},
        {"inpaint.safetensors",
         {{.key = "model.diffusion_model.input_blocks.0.0.weight",
           .replace = 1,
           .ndim = 4,
           .shape = {32, 9, 3, 3},
           .dtype = SDT_F16}},
         1,
         NULL,
         {"SD1.x inpainting checkpoints are not supported yet (the UNet takes 9 input"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
        CHECK(t, rewrite(TINY_FIXTURE, path, cases[i].edits, cases[i].n_edits) == 0);
        if (cases[i].in_file) {
            snprintf(msg, sizeof msg, "file %s: %s", path, cases[i].in_file);
            expect_fail(t, e, path, NULL, msg);
        }
        for (int w = 0; w < 2 && cases[i].want[w]; w++)
            expect_fail(t, e, path, NULL, cases[i].want[w]);
    }
    /* The report counts the missing ones per component. */
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    sdt_model m;
    sdt_ckpt_report r;
    char *error = NULL;
    CHECK(t, load(e, path, NULL, 1, &m, &r, &error) == -1);
    CHECK(t, count_kind(&r, SDT_PROBLEM_MISSING) == 2 && r.components[SDT_COMPONENT_UNET].missing == 1 &&
                 r.components[SDT_COMPONENT_VAE].missing == 1);
    CHECK(t, r.components[SDT_COMPONENT_UNET].found == r.components[SDT_COMPONENT_UNET].tensors - 1);
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &m);
    free(error);
    error = NULL;

    snprintf(path, sizeof path, "%s/lora.safetensors", dir);
    edit lora[] = {{.new_key = "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
                    .ndim = 2,
                    .shape = {4, 32},
                    .dtype = SDT_F16}};
    char *empty_src = sdt_format("%s/one.safetensors", dir);
    edit one[] = {{.new_key = "x", .ndim = 1, .shape = {1}, .dtype = SDT_F32}};
    sdt_st_write_tensor none = {
        .name = "x", .dtype = SDT_F32, .ndim = 1, .shape = one[0].shape, .data = "\0\0\0"};
    CHECK(t, sdt_safetensors_write(empty_src, &none, 1, NULL, 0, &error) == 0);
    edit drop_x[] = {{.key = "x"}, lora[0]};
    CHECK(t, rewrite(empty_src, path, drop_x, 2) == 0);
    expect_fail(t, e, path, NULL, "is a LoRA (lora_unet_* / lora_te* keys), not a model checkpoint");
    free(empty_src);

    /* Folders: an empty one, and a component's folder instead of the model's. */
    expect_fail(t, e, dir, NULL, "not a diffusers model folder (no unet/ in it)");
    expect_fail(t, e, CONFIG_DIR "/sd15/vae", NULL, "is one component's folder");

    free(error);
    end_in_temp_dir(e, dir);
}

/* Extra keys real checkpoints carry are ignored and listed; old text-encoder names load. */
static void test_ignored_and_old_names(test_state *t)
{
    char dir[256];
    sdt_engine *e = begin_in_temp_dir(t, dir, sizeof dir);
    if (!e)
        return;
    char *path = sdt_format("%s/extras.safetensors", dir);
    edit extras[] = {
        {.new_key = "alphas_cumprod", .ndim = 1, .shape = {1000}, .dtype = SDT_F32},
        {.new_key = "model_ema.decay", .ndim = 0, .dtype = SDT_F32},
        {.new_key = "model_ema.diffusion_modelinput_blocks00weight",
         .ndim = 1,
         .shape = {2},
         .dtype = SDT_F32},
        {.new_key = "cond_stage_model.transformer.text_model.embeddings.position_ids",
         .ndim = 2,
         .shape = {1, 77},
         .dtype = SDT_I64},
        /* pre-text_model names */
        {.key = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
         .new_key = "cond_stage_model.transformer.encoder.layers.0.mlp.fc1.weight"},
    };
    CHECK(t, rewrite(TINY_FIXTURE, path, extras, sizeof extras / sizeof extras[0]) == 0);
    sdt_model m;
    sdt_ckpt_report r;
    char *error = NULL;
    CHECK_MSG(t, load(e, path, NULL, 0, &m, &r, &error) == 0, "%s", error ? error : "");
    CHECK(t, r.n_ignored == 4 && r.n_problems == 0);
    int reasons = 0;
    for (size_t i = 0; i < r.n_ignored; i++)
        reasons += strcmp(r.ignored[i].reason, "noise schedule buffer") == 0 ||
                   strcmp(r.ignored[i].reason, "EMA copy") == 0 ||
                   strcmp(r.ignored[i].reason, "position_ids buffer") == 0;
    CHECK(t, reasons == 4);
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &m);
    free(error);
    free(path);
    end_in_temp_dir(e, dir);
}

/* A VAE from elsewhere: bare LDM names, diffusers names in a folder, or none in the checkpoint. */
static void test_separate_vae(test_state *t)
{
    char dir[256];
    sdt_engine *e = begin_in_temp_dir(t, dir, sizeof dir);
    if (!e)
        return;
    char *error = NULL;
    sdt_model m, back;
    sdt_ckpt_report r;
    tiny_model(t, e, &m, 99);

    /* The VAE alone with bare LDM names (as vae-ft-mse-840000-ema-pruned.safetensors has them). */
    char *full = sdt_format("%s/full.safetensors", dir), *vae = sdt_format("%s/vae.safetensors", dir),
         *novae = sdt_format("%s/novae.safetensors", dir), *folder = sdt_format("%s/folder", dir);
    sdt_model_save_options so = {.format = SDT_CKPT_LDM, .dtype = SDT_F32};
    CHECK(t, sdt_model_save(e, &m, full, &so, &error) == 0);
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_safetensors_open(full, &st, &error) == 0);
    size_t n = st ? sdt_safetensors_count(st) : 0;
    edit *keep_vae = calloc(n, sizeof *keep_vae), *drop_vae = calloc(n, sizeof *drop_vae);
    size_t nk = 0, nd = 0;
    for (size_t i = 0; i < n; i++) {
        const char *key = sdt_safetensors_tensor(st, i)->name;
        if (strncmp(key, "first_stage_model.", 18) == 0) {
            keep_vae[nk].key = key;
            keep_vae[nk++].new_key = key + 18;
            drop_vae[nd++].key = key;
        } else {
            keep_vae[nk++].key = key;
        }
    }
    /* keep_vae renames the VAE's keys and drops every other one */
    for (size_t i = 0; i < nk; i++)
        if (strncmp(keep_vae[i].key, "first_stage_model.", 18) != 0)
            keep_vae[i].new_key = NULL;
    CHECK(t, rewrite(full, vae, keep_vae, nk) == 0);
    CHECK(t, rewrite(full, novae, drop_vae, nd) == 0);
    free(keep_vae);
    free(drop_vae);
    sdt_safetensors_close(st);

    expect_fail(t, e, novae, NULL, "no VAE tensors (first_stage_model.*); give a VAE with --vae");
    expect_fail(t, e, vae, NULL, "is a VAE on its own, not a model checkpoint; give it with --vae");
    CHECK_MSG(t, load(e, novae, vae, 0, &back, &r, &error) == 0, "%s", error ? error : "");
    CHECK(t, back.has_values && compare_models(&m, &back, SDT_F32) == 0);
    CHECK(t,
          r.components[SDT_COMPONENT_VAE].source && strcmp(r.components[SDT_COMPONENT_VAE].source, vae) == 0);
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &back);

    /* The checkpoint's own VAE is replaced (and its keys listed as ignored). */
    CHECK_MSG(t, load(e, full, vae, 1, &back, &r, &error) == 0, "%s", error ? error : "");
    CHECK_MSG(t,
              r.n_ignored == r.components[SDT_COMPONENT_VAE].tensors &&
                  strcmp(r.ignored[0].reason, "replaced by the --vae file") == 0,
              "%zu ignored, %s", r.n_ignored, r.n_ignored ? r.ignored[0].reason : "");
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &back);

    /* A diffusers vae/ folder, and its weights file on its own. */
    so.format = SDT_CKPT_DIFFUSERS;
    CHECK(t, sdt_model_save(e, &m, folder, &so, &error) == 0);
    char *vae_dir = sdt_format("%s/vae", folder),
         *vae_file = sdt_format("%s/vae/diffusion_pytorch_model.safetensors", folder);
    expect_loads_as(t, e, novae, vae_dir, &m);
    expect_loads_as(t, e, novae, vae_file, &m);
    /* and into a diffusers model folder */
    expect_loads_as(t, e, folder, vae, &m);

    free(vae_dir);
    free(vae_file);
    free(full);
    free(vae);
    free(novae);
    free(folder);
    free(error);
    sdt_model_free(e, &m);
    end_in_temp_dir(e, dir);
}

/* diffusers folders as they come: fp16 variant names, sharded weights, pickle-only weights, other families.
 */
static void test_diffusers_variants(test_state *t)
{
    char dir[256];
    sdt_engine *e = begin_in_temp_dir(t, dir, sizeof dir);
    if (!e)
        return;
    char *folder = sdt_format("%s/model", dir), *error = NULL;
    sdt_model m, back;
    tiny_model(t, e, &m, 5);
    sdt_model_save_options so = {.format = SDT_CKPT_DIFFUSERS, .dtype = SDT_F16};
    CHECK(t, sdt_model_save(e, &m, folder, &so, &error) == 0);

    /* text_encoder/model.fp16.safetensors instead of model.safetensors */
    char *plain = sdt_format("%s/text_encoder/model.safetensors", folder);
    char *fp16 = sdt_format("%s/text_encoder/model.fp16.safetensors", folder);
    CHECK(t, rename(plain, fp16) == 0);
    /* the UNet in two shards with an index */
    char *unet = sdt_format("%s/unet/diffusion_pytorch_model.safetensors", folder);
    char *shard1 = sdt_format("%s/unet/diffusion_pytorch_model-00001-of-00002.safetensors", folder);
    char *shard2 = sdt_format("%s/unet/diffusion_pytorch_model-00002-of-00002.safetensors", folder);
    char *index = sdt_format("%s/unet/diffusion_pytorch_model.safetensors.index.json", folder);
    sdt_safetensors *st = NULL;
    CHECK(t, sdt_safetensors_open(unet, &st, &error) == 0);
    size_t n = st ? sdt_safetensors_count(st) : 0;
    edit *first_half = calloc(n + 1, sizeof *first_half), *second_half = calloc(n + 1, sizeof *second_half);
    json_t *map = json_object();
    for (size_t i = 0; i < n; i++) {
        const char *key = sdt_safetensors_tensor(st, i)->name;
        (i < n / 2 ? second_half : first_half)[i].key = key; /* dropped from the other shard */
        json_object_set_new(map, key,
                            json_string(i < n / 2 ? "diffusion_pytorch_model-00001-of-00002.safetensors"
                                                  : "diffusion_pytorch_model-00002-of-00002.safetensors"));
    }
    /* edits with key NULL would add tensors: give the unused slots a key no tensor has */
    for (size_t i = 0; i < n; i++) {
        if (!first_half[i].key)
            first_half[i].key = "-";
        if (!second_half[i].key)
            second_half[i].key = "-";
    }
    CHECK(t, rewrite(unet, shard1, second_half, n) == 0);
    CHECK(t, rewrite(unet, shard2, first_half, n) == 0);
    json_t *root = json_object();
    json_object_set_new(root, "metadata", json_object());
    json_object_set_new(root, "weight_map", map);
    CHECK(t, json_dump_file(root, index, JSON_INDENT(2)) == 0);
    json_decref(root);
    free(first_half);
    free(second_half);
    sdt_safetensors_close(st);
    CHECK(t, unlink(unet) == 0);

    sdt_ckpt_report r;
    CHECK_MSG(t, load(e, folder, NULL, 0, &back, &r, &error) == 0, "%s", error ? error : "");
    CHECK(t, back.has_values && compare_models(&m, &back, SDT_F16) == 0);
    CHECK_STR_CONTAINS(t, r.components[SDT_COMPONENT_UNET].source, "-00002-of-00002.safetensors");
    CHECK_STR_CONTAINS(t, r.components[SDT_COMPONENT_TEXT_ENCODER].source, "model.fp16.safetensors");
    sdt_ckpt_report_free(&r);
    sdt_model_free(e, &back);

    /* A shard missing from the folder names itself. */
    char *aside = sdt_format("%s.aside", shard2);
    CHECK(t, rename(shard2, aside) == 0);
    expect_fail(t, e, folder, NULL, "-00002-of-00002.safetensors: cannot open");
    CHECK(t, rename(aside, shard2) == 0);
    free(aside);

    /* Only pickle weights: refused with how to convert. */
    char *vae = sdt_format("%s/vae/diffusion_pytorch_model.safetensors", folder);
    char *vae_bin = sdt_format("%s/vae/diffusion_pytorch_model.bin", folder);
    CHECK(t, rename(vae, vae_bin) == 0);
    expect_fail(t, e, folder, NULL, "has only PyTorch pickle weights (diffusion_pytorch_model.bin)");
    expect_fail(t, e, folder, NULL, "safe_serialization=True");

    /* An SD2 UNet config is refused by name. */
    char *config = sdt_format("%s/unet/config.json", folder);
    sdt_unet_config sd2 = sdt_model_arch_find("sd15")->unet; /* SD2's heads, context and projections */
    const int sd2_heads[SDT_UNET_MAX_LEVELS] = {5, 10, 20, 20};
    memcpy(sd2.heads, sd2_heads, sizeof sd2.heads);
    sd2.mid_heads = 20;
    sd2.cross_attention_dim = 1024;
    sd2.use_linear_projection = 1;
    char *text = sdt_unet_config_to_json(&sd2, 0);
    CHECK(t, test_write_file(config, text, strlen(text)) == 0);
    expect_fail(t, e, folder, NULL, "SD2.x models are not supported yet");
    free(text);

    free(config);
    free(vae);
    free(vae_bin);
    free(plain);
    free(fp16);
    free(unet);
    free(shard1);
    free(shard2);
    free(index);
    free(folder);
    free(error);
    sdt_model_free(e, &m);
    end_in_temp_dir(e, dir);
}

TEST_MAIN("checkpoint", TEST(test_sd15_tables), TEST(test_diffusers_configs),
          TEST(test_keymap_against_diffusers), TEST(test_fixture_checkpoint), TEST(test_roundtrips),
          TEST(test_init_deterministic), TEST(test_bad_files), TEST(test_ignored_and_old_names),
          TEST(test_separate_vae), TEST(test_diffusers_variants))
