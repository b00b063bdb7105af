/* Learning-rate schedules against diffusers' get_scheduler (tests/data/train/lr_schedule_reference.json,
 * made by tools/train/make_optim_fixtures.py), plus the warmup-ratio helper and name parsing. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lr_schedule.h"
#include "unit/check.h"

/* One state for the whole file: the checks run from plain functions. */
static test_state state;
#define EXPECT(cond, ...) CHECK_MSG(&state, cond, __VA_ARGS__)

static void test_reference(void)
{
    json_error_t jerr;
    json_t *root = json_load_file("tests/data/train/lr_schedule_reference.json", 0, &jerr);
    EXPECT(root != NULL, "cannot read fixture: %s", jerr.text);
    if (!root)
        return;
    json_t *list = json_object_get(root, "schedules");
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        char *error = NULL;
        sdt_lr_kind kind;
        EXPECT(sdt_lr_kind_parse(name, &kind, &error) == 0, "%s: %s", name, error ? error : "");
        free(error);
        double base = json_real_value(json_object_get(c, "base_lr"));
        sdt_lr_schedule s;
        sdt_lr_schedule_default(&s, kind, json_integer_value(json_object_get(c, "training_steps")), base);
        s.warmup_steps = json_integer_value(json_object_get(c, "warmup_steps"));
        s.num_cycles = json_number_value(json_object_get(c, "num_cycles"));
        s.power = json_number_value(json_object_get(c, "power"));
        s.lr_end = json_number_value(json_object_get(c, "lr_end"));
        error = NULL;
        EXPECT(sdt_lr_schedule_check(&s, &error) == 0, "%s: %s", name, error ? error : "");
        free(error);
        json_t *lrs = json_object_get(c, "lrs");
        size_t step;
        json_t *v;
        json_array_foreach(lrs, step, v)
        {
            double want = json_number_value(v), got = sdt_lr_at(&s, base, (int64_t)step);
            EXPECT(fabs(got - want) <= 1e-12 * fabs(want) + 1e-300,
                   "%s power %g step %zu: %.17g, expected %.17g", name, s.power, step, got, want);
        }
    }
    json_decref(root);
}

static void test_helpers(void)
{
    EXPECT(sdt_lr_resolve_warmup(0.0, 1000) == 0, "zero warmup");
    EXPECT(sdt_lr_resolve_warmup(0.1, 1000) == 100, "ratio warmup");
    EXPECT(sdt_lr_resolve_warmup(0.05, 333) == 16, "ratio truncates");
    EXPECT(sdt_lr_resolve_warmup(250.0, 1000) == 250, "step warmup");

    char *error = NULL;
    sdt_lr_kind kind;
    EXPECT(sdt_lr_kind_parse("", &kind, &error) == 0 && kind == SDT_LR_CONSTANT, "default is constant");
    EXPECT(sdt_lr_kind_parse("Cosine", &kind, &error) == 0 && kind == SDT_LR_COSINE, "case-insensitive");
    EXPECT(sdt_lr_kind_parse("adafactor", &kind, &error) == 0 && kind == SDT_LR_ADAFACTOR, "adafactor");
    {
        /* AdafactorSchedule is a constant factor, warmup or not */
        sdt_lr_schedule a;
        sdt_lr_schedule_default(&a, SDT_LR_ADAFACTOR, 100, 1e-3);
        a.warmup_steps = 10;
        EXPECT(sdt_lr_schedule_check(&a, NULL) == 0 && sdt_lr_at(&a, 1e-3, 0) == 1e-3 &&
                   sdt_lr_at(&a, 1e-3, 99) == 1e-3 &&
                   strcmp(sdt_lr_kind_name(SDT_LR_ADAFACTOR), "adafactor") == 0,
               "adafactor schedule is constant");
    }
    EXPECT(sdt_lr_kind_parse("inverse_sqrt", &kind, &error) != 0 && error &&
               strstr(error, "not implemented yet") != NULL,
           "inverse_sqrt: %s", error ? error : "(no message)");
    free(error);
    error = NULL;
    EXPECT(sdt_lr_kind_parse("bogus", &kind, &error) != 0 && error && strstr(error, "unknown") != NULL,
           "unknown scheduler");
    free(error);
    error = NULL;

    sdt_lr_schedule s;
    sdt_lr_schedule_default(&s, SDT_LR_POLYNOMIAL, 100, 1e-8);
    EXPECT(sdt_lr_schedule_check(&s, &error) != 0, "polynomial with lr_end above lr_init is refused");
    free(error);
    error = NULL;
    /* Degenerate: no decay steps at all must not divide by zero. */
    sdt_lr_schedule_default(&s, SDT_LR_POLYNOMIAL, 10, 1e-3);
    s.warmup_steps = 10;
    EXPECT(isfinite(sdt_lr_factor(&s, 10)), "polynomial at warmup == total");
    sdt_lr_schedule_default(&s, SDT_LR_LINEAR, 0, 1e-3);
    EXPECT(isfinite(sdt_lr_factor(&s, 0)) && isfinite(sdt_lr_factor(&s, 5)), "linear with no steps");
}

int main(void)
{
    test_reference();
    test_helpers();
    if (state.failures) {
        fprintf(stderr, "%d failure(s)\n", state.failures);
        return 1;
    }
    printf("lr_schedule: ok\n");
    return 0;
}
