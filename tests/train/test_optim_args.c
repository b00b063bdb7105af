/* kohya's optimizer_args parsed into optimizer configs (every optimizer's keys, Python literal forms,
 * errors naming the key and value) and the ss_optimizer text built from them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "unit/check.h"

static test_state state;
#define EXPECT(cond, ...) CHECK_MSG(&state, cond, __VA_ARGS__)

/* Applies args to kind's defaults; returns the result and keeps the error text (or "") in *message. */
static int apply(sdt_optim_kind kind, sdt_optim_config *c, const char *const *args, size_t n, char *message,
                 size_t size)
{
    sdt_optim_config_default(c, kind);
    char *error = NULL;
    int rc = sdt_optim_apply_args(c, args, n, &error);
    snprintf(message, size, "%s", error ? error : "");
    free(error);
    return rc;
}

#define APPLY(kind, c, ...)                                                                                  \
    apply(kind, c, (const char *const[]){__VA_ARGS__},                                                       \
          sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *), msg, sizeof msg)

static void test_values(void)
{
    sdt_optim_config c;
    char msg[512];
    EXPECT(APPLY(SDT_OPTIM_ADAMW, &c, "betas=(0.8,0.99)", " eps = 1e-6 ", "weight_decay=0",
                 "amsgrad=False") == 0,
           "AdamW args: %s", msg);
    EXPECT(c.beta1 == 0.8 && c.beta2 == 0.99 && c.eps == 1e-6 && c.weight_decay == 0.0, "AdamW values");
    /* ast.literal_eval("0.6,0.7") is a tuple: kohya configs write betas that way. */
    EXPECT(APPLY(SDT_OPTIM_ADAMW, &c, "betas=0.6,0.7") == 0 && c.beta1 == 0.6 && c.beta2 == 0.7,
           "bare tuple");
    EXPECT(APPLY(SDT_OPTIM_ADAMW, &c, "betas=[0.5, 0.75]") == 0 && c.beta1 == 0.5 && c.beta2 == 0.75,
           "a list is a pair too: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_SGD, &c, "momentum=0.9", "dampening=0.1", "nesterov=False", "weight_decay=1e-4") ==
                   0 &&
               c.momentum == 0.9 && c.dampening == 0.1 && !c.nesterov && c.weight_decay == 1e-4,
           "SGD args: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_SGD, &c, "nesterov=True", "momentum=.5") == 0 && c.nesterov && c.momentum == 0.5,
           "SGD nesterov: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_LION, &c, "betas=(0.95, 0.98)", "weight_decay=1") == 0 && c.beta1 == 0.95 &&
               c.weight_decay == 1.0,
           "Lion: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_ADAFACTOR, &c, "scale_parameter=False", "relative_step=False",
                 "warmup_init=False") == 0 &&
               !c.scale_parameter && !c.relative_step && !c.warmup_init,
           "kohya's Adafactor recipe: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_ADAFACTOR, &c, "beta1=0.9", "eps=(1e-30, 1e-3)", "clip_threshold=2",
                 "decay_rate=-0.5") == 0 &&
               c.use_first_moment && c.beta1 == 0.9 && c.eps1 == 1e-30 && c.eps2 == 1e-3 &&
               c.clip_threshold == 2.0 && c.decay_rate == -0.5,
           "Adafactor values: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_ADAFACTOR, &c, "beta1=0.9", "beta1=None") == 0 && !c.use_first_moment,
           "beta1=None turns the first moment off: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_PRODIGY, &c, "decouple=True", "use_bias_correction=True", "safeguard_warmup=True",
                 "d_coef=0.5", "d0=1e-5", "growth_rate=1.02", "beta3=0.99", "betas=(0.9,0.99)",
                 "weight_decay=0.01") == 0 &&
               c.decouple && c.use_bias_correction && c.safeguard_warmup && c.d_coef == 0.5 && c.d0 == 1e-5 &&
               c.growth_rate == 1.02 && c.beta3 == 0.99 && c.beta2 == 0.99 && c.weight_decay == 0.01,
           "Prodigy values: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_PRODIGY, &c, "beta3=None") == 0 && c.beta3 < 0, "beta3=None: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_ADAMW8BIT, &c, "min_8bit_size=16384", "percentile_clipping=100",
                 "block_wise=True") == 0 &&
               c.min_8bit_size == 16384,
           "AdamW8bit: %s", msg);
    EXPECT(APPLY(SDT_OPTIM_ADAMW, &c, "weight_decay=-1e-2") == 0 && c.weight_decay == -0.01,
           "negative numbers parse (the range check is sdt_optim_config_check's): %s", msg);
    EXPECT(sdt_optim_config_check(&c, NULL) != 0, "negative weight decay is refused by the check");
}

/* Each bad argument must fail with a message containing every one of the `want` strings. */
static void expect_error(sdt_optim_kind kind, const char *arg, const char *want1, const char *want2)
{
    sdt_optim_config c;
    char msg[512];
    int rc = apply(kind, &c, &arg, 1, msg, sizeof msg);
    EXPECT(rc != 0, "%s: accepted", arg);
    EXPECT(strstr(msg, want1) && (!want2 || strstr(msg, want2)), "%s: message \"%s\" lacks \"%s\"/\"%s\"",
           arg, msg, want1, want2 ? want2 : "");
}

static void test_errors(void)
{
    expect_error(SDT_OPTIM_ADAMW, "momentum=0.9", "unknown key \"momentum\"", "0.9");
    expect_error(SDT_OPTIM_ADAMW, "betas=0.9", "betas", "0.9");
    expect_error(SDT_OPTIM_ADAMW, "betas=(0.9, 0.99, 0.5)", "betas", "(0.9, 0.99, 0.5)");
    expect_error(SDT_OPTIM_ADAMW, "eps=abc", "eps", "abc");
    expect_error(SDT_OPTIM_ADAMW, "eps=", "eps", NULL);
    expect_error(SDT_OPTIM_ADAMW, "eps=1e-8x", "eps", "1e-8x");
    expect_error(SDT_OPTIM_ADAMW, "eps=inf", "eps", "inf");
    expect_error(SDT_OPTIM_ADAMW, "eps=0x10", "eps", "0x10");
    expect_error(SDT_OPTIM_ADAMW, "eps=True", "eps", "True");
    expect_error(SDT_OPTIM_ADAMW, "amsgrad=True", "amsgrad", "not implemented");
    expect_error(SDT_OPTIM_ADAMW, "weight_decay", "key=value", NULL);
    expect_error(SDT_OPTIM_ADAMW, "=1", "key=value", NULL);
    expect_error(SDT_OPTIM_SGD, "nesterov=1", "nesterov", "True or False");
    expect_error(SDT_OPTIM_SGD, "nesterov=true", "nesterov", "true");
    expect_error(SDT_OPTIM_LION, "eps=1e-8", "unknown key \"eps\"", "1e-8");
    expect_error(SDT_OPTIM_ADAFACTOR, "eps=1e-3", "eps", "pair");
    expect_error(SDT_OPTIM_ADAFACTOR, "lr=1e-3", "unknown key \"lr\"", "1e-3");
    expect_error(SDT_OPTIM_ADAFACTOR, "beta1=(0.9,)", "beta1", "None");
    expect_error(SDT_OPTIM_PRODIGY, "fsdp_in_use=True", "fsdp_in_use", "not implemented");
    expect_error(SDT_OPTIM_ADAMW8BIT, "min_8bit_size=1.5", "min_8bit_size", "integer");
    expect_error(SDT_OPTIM_ADAMW8BIT, "percentile_clipping=95", "percentile_clipping", "95");
    expect_error(SDT_OPTIM_ADAMW8BIT, "block_wise=False", "block_wise", "not implemented");

    /* Adafactor: warmup_init needs relative_step, as transformers says. */
    sdt_optim_config c;
    char msg[512];
    EXPECT(APPLY(SDT_OPTIM_ADAFACTOR, &c, "relative_step=False", "warmup_init=True") == 0, "parse: %s", msg);
    EXPECT(sdt_optim_config_check(&c, NULL) != 0, "warmup_init without relative_step is refused");
}

static void expect_text(sdt_optim_kind kind, const char *const *args, size_t n, const char *want)
{
    sdt_optim_config c;
    sdt_optim_config_default(&c, kind);
    if (kind == SDT_OPTIM_SGD && strstr(want, "momentum=0.9"))
        c.nesterov = 1; /* SGDNesterov */
    char *text = sdt_optim_describe(&c, args, n);
    EXPECT(text && strcmp(text, want) == 0, "describe: \"%s\", expected \"%s\"", text ? text : "(null)",
           want);
    free(text);
}

static void test_describe(void)
{
    const char *recipe[] = {"scale_parameter=False", "relative_step=False", "warmup_init=False"};
    expect_text(
        SDT_OPTIM_ADAFACTOR, recipe, 3,
        "transformers.optimization.Adafactor(scale_parameter=False,relative_step=False,warmup_init=False)");
    expect_text(SDT_OPTIM_ADAFACTOR, NULL, 0, "transformers.optimization.Adafactor(relative_step=True)");
    expect_text(SDT_OPTIM_ADAMW, NULL, 0, "torch.optim.adamw.AdamW");
    const char *adamw[] = {"weight_decay=0.01", "betas=(0.9,0.999)", "eps=1e-8", "amsgrad=False"};
    expect_text(SDT_OPTIM_ADAMW, adamw, 4,
                "torch.optim.adamw.AdamW(weight_decay=0.01,betas=(0.9, 0.999),eps=1e-08,amsgrad=False)");
    expect_text(SDT_OPTIM_SGD, NULL, 0, "torch.optim.sgd.SGD(momentum=0.9)");
    const char *prodigy[] = {"d_coef=2", "growth_rate=1e20", "beta3=None", "d0=0.0001",
                             "safeguard_warmup=True"};
    expect_text(
        SDT_OPTIM_PRODIGY, prodigy, 5,
        "prodigyopt.prodigy.Prodigy(d_coef=2,growth_rate=1e+20,beta3=None,d0=0.0001,safeguard_warmup=True)");
    const char *bnb[] = {"min_8bit_size=4096", "eps=100.", "weight_decay=1234567.5"};
    expect_text(SDT_OPTIM_ADAMW8BIT, bnb, 3,
                "bitsandbytes.optim.adamw.AdamW8bit(min_8bit_size=4096,eps=100.0,weight_decay=1234567.5)");
    expect_text(SDT_OPTIM_LION, NULL, 0, "lion_pytorch.lion_pytorch.Lion");
}

int main(void)
{
    test_values();
    test_errors();
    test_describe();
    if (state.failures) {
        fprintf(stderr, "%d failure(s)\n", state.failures);
        return 1;
    }
    printf("optim_args: ok\n");
    return 0;
}
