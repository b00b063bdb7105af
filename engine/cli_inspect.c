/* `inspect`: what a checkpoint is and whether it is complete, from its headers alone (no value is read, so a
 * 2 GB file takes milliseconds). Text for people, --json for programs (docs/checkpoints.md lists the fields).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "sdtune/strutil.h"

/* How many problems the text output lists before it summarises (--json lists all). */
#define TEXT_PROBLEM_CAP 40

static void usage(void)
{
    fputs("usage: sdtune-engine inspect MODEL [--vae FILE] [--json]\n"
          "  MODEL       a single-file .safetensors checkpoint or a diffusers model folder\n"
          "  --vae FILE  a VAE that replaces the model's (a .safetensors file or a diffusers vae/ folder)\n"
          "  --json      print one JSON object instead of text\n"
          "exit 0 when the model is complete, 1 when it has problems, 2 on usage errors\n",
          stderr);
}

/* 1234567 -> "1,234,567" */
static void grouped(char *buf, size_t size, long long n)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", n);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

static void dtype_counts(const sdt_ckpt_component *c, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 0; d < SDT_DTYPE_COUNT && o < size; d++)
        if (c->dtypes[d])
            o += (size_t)snprintf(buf + o, size - o, "%s%s %zu", o ? ", " : "", sdt_dtype_name((sdt_dtype)d),
                                  c->dtypes[d]);
    if (!buf[0])
        snprintf(buf, size, "-");
}

static const char *format_name(const char *format)
{
    if (strcmp(format, "pickle") == 0)
        return "PyTorch pickle (refused)";
    return strcmp(format, "ldm") == 0 ? "single-file (LDM) safetensors checkpoint" : "diffusers model folder";
}

static void print_text(const char *path, const sdt_model *m, const sdt_ckpt_report *r, int ok)
{
    if (r->format) /* NULL when the file could not be read as anything */
        printf("%s: %s\n", path, format_name(r->format));
    if (r->family != SDT_MODEL_FAMILY_UNKNOWN)
        printf("family        %s (%s)\n", sdt_model_family_description(r->family),
               sdt_model_family_name(r->family));
    if (r->fatal) {
        printf("%s: error: %s\n", path, r->fatal);
        return;
    }
    printf("arch          %s: %s\n", m->arch.name, m->arch.description);
    if (m->arch_notes)
        printf("              %s\n", m->arch_notes);
    printf("%-13s %15s %11s  %-18s %s\n", "component", "parameters", "tensors", "dtypes", "source");
    long long total = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT; c++) {
        const sdt_ckpt_component *cc = &r->components[c];
        char params[32], tensors[32], dtypes[96];
        grouped(params, sizeof params, (long long)cc->parameters);
        snprintf(tensors, sizeof tensors, "%zu/%zu", cc->found, cc->tensors);
        dtype_counts(cc, dtypes, sizeof dtypes);
        printf("%-13s %15s %11s  %-18s %s\n", sdt_component_name(c), params, tensors, dtypes,
               cc->source ? cc->source : "-");
        total += cc->parameters;
    }
    char all[32];
    grouped(all, sizeof all, total);
    printf("%-13s %15s\n", "total", all);

    /* Ignored keys, counted by reason. */
    printf("ignored       %zu key%s", r->n_ignored, r->n_ignored == 1 ? "" : "s");
    const char *seen[16];
    size_t n_seen = 0;
    for (size_t i = 0; i < r->n_ignored && n_seen < 16; i++) {
        size_t k = 0;
        while (k < n_seen && strcmp(seen[k], r->ignored[i].reason) != 0)
            k++;
        if (k < n_seen)
            continue;
        seen[n_seen++] = r->ignored[i].reason;
        size_t count = 0;
        for (size_t j = 0; j < r->n_ignored; j++)
            count += strcmp(r->ignored[j].reason, r->ignored[i].reason) == 0;
        printf("%s %zu %s", n_seen == 1 ? ":" : ",", count, r->ignored[i].reason);
    }
    printf("\n");

    for (size_t i = 0; i < r->n_problems && i < TEXT_PROBLEM_CAP; i++)
        printf("error: %s\n", r->problems[i].message);
    if (r->n_problems > TEXT_PROBLEM_CAP)
        printf("... and %zu more problems (--json lists them all)\n", r->n_problems - TEXT_PROBLEM_CAP);
    if (ok) {
        printf("%s: OK, the model is complete\n", path);
    } else {
        size_t kinds[6] = {0};
        for (size_t i = 0; i < r->n_problems; i++)
            kinds[r->problems[i].kind]++;
        printf("%s: %zu problem%s (", path, r->n_problems, r->n_problems == 1 ? "" : "s");
        const char *sep = "";
        for (int k = 0; k < 6; k++) {
            if (kinds[k]) {
                printf("%s%zu %s", sep, kinds[k], sdt_problem_kind_name((sdt_problem_kind)k));
                sep = ", ";
            }
        }
        printf(")\n");
    }
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* A config as the object its config.json would hold. */
static json_t *config_object(char *text)
{
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return o ? o : json_null();
}

static int print_json(const char *path, const char *vae, const sdt_model *m, const sdt_ckpt_report *r, int ok,
                      const char *error)
{
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "vae_path", string_or_null(vae));
    json_object_set_new(o, "ok", json_boolean(ok));
    json_object_set_new(o, "error", string_or_null(ok ? NULL : error));
    json_object_set_new(o, "format", string_or_null(r->format));
    json_object_set_new(o, "family", json_string(sdt_model_family_name(r->family)));
    json_object_set_new(o, "family_description", json_string(sdt_model_family_description(r->family)));
    int have_model = !r->fatal && m->arch.name;
    json_object_set_new(o, "arch", string_or_null(have_model ? m->arch.name : NULL));
    json_object_set_new(o, "arch_description", string_or_null(have_model ? m->arch.description : NULL));
    json_object_set_new(o, "arch_notes", string_or_null(have_model ? m->arch_notes : NULL));
    json_t *comps = json_object();
    long long total = 0;
    for (int c = 0; c < SDT_COMPONENT_COUNT && have_model; c++) {
        const sdt_ckpt_component *cc = &r->components[c];
        json_t *co = json_object(), *dt = json_object();
        for (int d = 0; d < SDT_DTYPE_COUNT; d++)
            if (cc->dtypes[d])
                json_object_set_new(dt, sdt_dtype_name((sdt_dtype)d),
                                    json_integer((json_int_t)cc->dtypes[d]));
        json_object_set_new(co, "source", string_or_null(cc->source));
        json_object_set_new(co, "parameters", json_integer(cc->parameters));
        json_object_set_new(co, "tensors", json_integer((json_int_t)cc->tensors));
        json_object_set_new(co, "found", json_integer((json_int_t)cc->found));
        json_object_set_new(co, "dtypes", dt);
        json_object_set_new(co, "missing", json_integer((json_int_t)cc->missing));
        json_object_set_new(co, "unexpected", json_integer((json_int_t)cc->unexpected));
        json_object_set_new(co, "wrong_shape", json_integer((json_int_t)cc->bad_shape));
        json_object_set_new(co, "wrong_dtype", json_integer((json_int_t)cc->bad_dtype));
        json_object_set_new(co, "duplicate", json_integer((json_int_t)cc->duplicate));
        char *config = c == SDT_COMPONENT_UNET ? sdt_unet_config_to_json(&m->arch.unet, 1)
                       : c == SDT_COMPONENT_TEXT_ENCODER
                           ? sdt_clip_config_to_json(&m->arch.text_encoder, m->arch.pad_id, SDT_F32, 1)
                           : sdt_vae_config_to_json(&m->arch.vae, 1);
        json_object_set_new(co, "config", config_object(config));
        json_object_set_new(comps, sdt_component_name(c), co);
        total += cc->parameters;
    }
    json_object_set_new(o, "parameters", have_model ? json_integer(total) : json_null());
    json_object_set_new(o, "components", comps);
    json_t *problems = json_array();
    for (size_t i = 0; i < r->n_problems; i++) {
        const sdt_ckpt_problem *p = &r->problems[i];
        json_t *po = json_object();
        json_object_set_new(po, "kind", json_string(sdt_problem_kind_name(p->kind)));
        json_object_set_new(po, "component",
                            p->component >= 0 ? json_string(sdt_component_name(p->component)) : json_null());
        json_object_set_new(po, "file", json_string(p->file));
        json_object_set_new(po, "key", p->key && p->key[0] ? json_string(p->key) : json_null());
        json_object_set_new(po, "message", json_string(p->message));
        json_array_append_new(problems, po);
    }
    json_object_set_new(o, "problems", problems);
    json_t *ign = json_array();
    for (size_t i = 0; i < r->n_ignored; i++) {
        json_t *io = json_object();
        json_object_set_new(io, "file", json_string(r->ignored[i].file));
        json_object_set_new(io, "key", json_string(r->ignored[i].key));
        json_object_set_new(io, "reason", json_string(r->ignored[i].reason));
        json_array_append_new(ign, io);
    }
    json_object_set_new(o, "ignored", ign);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) {
        fputs("sdtune-engine inspect: out of memory\n", stderr);
        return -1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

int cli_inspect(int argc, char **argv)
{
    const char *path = NULL, *vae = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--vae") == 0) {
            if (i + 1 >= argc) {
                fputs("sdtune-engine inspect: --vae needs a file\n", stderr);
                usage();
                return 2;
            }
            vae = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "sdtune-engine inspect: unknown option '%s'\n", argv[i]);
            usage();
            return 2;
        } else if (path) {
            fprintf(stderr, "sdtune-engine inspect: one model at a time ('%s' and '%s')\n", path, argv[i]);
            usage();
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage();
        return 2;
    }
    sdt_model m;
    sdt_ckpt_report r;
    char *error = NULL;
    sdt_model_load_options options = {.vae_path = vae, .header_only = 1};
    int ok = sdt_model_load(NULL, path, &options, &m, &r, &error) == 0;
    int status = ok ? 0 : 1;
    if (json) {
        if (print_json(path, vae, &m, &r, ok, error) != 0)
            status = 1;
    } else {
        print_text(path, &m, &r, ok);
        if (!ok && !r.fatal && !r.n_problems) /* out of memory and the like */
            printf("%s: error: %s\n", path, error ? error : "failed");
    }
    free(error);
    sdt_ckpt_report_free(&r);
    sdt_model_free(NULL, &m);
    return fflush(stdout) == 0 ? status : 1;
}
