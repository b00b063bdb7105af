/* The analytic FLOP count against the anchors of perf_anchors.md sec. 0, 1.2 and 1.3 (SD1.5 at 512 px:
 * 401.6 G MAC forward, 338.6 G with weights, 63.0 G attention; 859.6 M parameters; training 2.47 TFLOP
 * full, 1.80 TFLOP LoRA, 3.28 / 2.60 with checkpointing; the VAE and CLIP rows), the parameter count
 * against the table, scaling with batch and area, adapters, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "arch.h"
#include "flops.h"
#include "unit/check.h"

/* |got / want - 1| <= tol. */
static int near(double got, double want, double tol) { return fabs(got / want - 1.0) <= tol; }

#define ANCHOR_TOL 0.005

static const sdt_model_arch *arch(const char *name)
{
    const sdt_model_arch *a = sdt_model_arch_find(name);
    if (!a) {
        fprintf(stderr, "no preset %s\n", name);
        exit(1);
    }
    return a;
}

static int unet_count(test_state *t, const char *name, int64_t batch, int64_t side, sdt_flop_count *f)
{
    char *error = NULL;
    int rc = sdt_flops_unet(&arch(name)->unet, NULL, batch, side, side, 77, f, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    return rc;
}

static void test_sd15_forward_anchor(test_state *t)
{
    sdt_flop_count f;
    if (unet_count(t, "sd15", 1, 64, &f) != 0)
        return;
    double total = sdt_flop_forward_mac(&f) / 1e9, weights = sdt_flop_weight_mac(&f) / 1e9;
    double attention = f.attention_mac / 1e9;
    printf("  sd15 @64x64: %.1f G MAC (weights %.1f, attention %.1f; conv %.1f, linear %.1f), %lld params\n",
           total, weights, attention, f.conv_mac / 1e9, f.linear_mac / 1e9, (long long)f.params);
    CHECK_MSG(t, near(total, 401.6, ANCHOR_TOL), "forward %.2f G MAC, anchor 401.6", total);
    CHECK_MSG(t, near(weights, 338.6, ANCHOR_TOL), "weight MACs %.2f G, anchor 338.6", weights);
    CHECK_MSG(t, near(attention, 63.0, ANCHOR_TOL), "attention MACs %.2f G, anchor 63.0", attention);
    CHECK_MSG(t, near((double)f.params / 1e6, 859.6, 0.0005), "params %lld, anchor 859.6 M",
              (long long)f.params);
    CHECK(t, f.adapter_mac == 0);
    /* the other rows of sec. 1.2: 256 px and 768 px */
    sdt_flop_count s, l;
    if (unet_count(t, "sd15", 1, 32, &s) == 0)
        CHECK_MSG(t, near(sdt_flop_forward_mac(&s) / 1e9, 90.1, ANCHOR_TOL), "32x32: %.2f G MAC, anchor 90.1",
                  sdt_flop_forward_mac(&s) / 1e9);
    if (unet_count(t, "sd15", 1, 96, &l) == 0)
        CHECK_MSG(t, near(sdt_flop_forward_mac(&l) / 1e9, 1074, ANCHOR_TOL), "96x96: %.1f G MAC, anchor 1074",
                  sdt_flop_forward_mac(&l) / 1e9);
}

static void test_sd15_training_anchor(test_state *t)
{
    sdt_flop_count f;
    if (unet_count(t, "sd15", 1, 64, &f) != 0)
        return;
    double full = sdt_flops_training(&f, SDT_FLOP_TRAIN_FULL, 0) / 1e12;
    double lora = sdt_flops_training(&f, SDT_FLOP_TRAIN_LORA, 0) / 1e12;
    double full_ckpt = sdt_flops_training(&f, SDT_FLOP_TRAIN_FULL, 1) / 1e12;
    double lora_ckpt = sdt_flops_training(&f, SDT_FLOP_TRAIN_LORA, 1) / 1e12;
    printf("  sd15 training per image: full %.3f T, LoRA %.3f T, with checkpointing %.3f / %.3f T\n", full,
           lora, full_ckpt, lora_ckpt);
    CHECK_MSG(t, near(full, 2.47, ANCHOR_TOL), "full %.3f TFLOP, anchor 2.47", full);
    CHECK_MSG(t, near(lora, 1.80, ANCHOR_TOL), "LoRA %.3f TFLOP, anchor 1.80", lora);
    CHECK_MSG(t, near(full_ckpt, 3.28, ANCHOR_TOL), "full + checkpointing %.3f TFLOP, anchor 3.28",
              full_ckpt);
    CHECK_MSG(t, near(lora_ckpt, 2.60, ANCHOR_TOL), "LoRA + checkpointing %.3f TFLOP, anchor 2.60",
              lora_ckpt);
    /* the forward is 0.803 TFLOP */
    CHECK(t, near(2.0 * sdt_flop_forward_mac(&f) / 1e12, 0.803, ANCHOR_TOL));
}

/* VAE and text encoder rows of sec. 1.2 (the anchors round to 3 digits). */
static void test_vae_and_clip_anchor(test_state *t)
{
    const sdt_model_arch *a = arch("sd15");
    sdt_flop_count enc, dec, clip;
    char *error = NULL;
    int rc = sdt_flops_vae(&a->vae, NULL, 1, 1, 512, 512, &enc, &error);
    rc |= sdt_flops_vae(&a->vae, NULL, 0, 1, 512, 512, &dec, &error);
    rc |= sdt_flops_clip(&a->text_encoder, NULL, 1, 77, &clip, &error);
    CHECK_MSG(t, rc == 0, "%s", error ? error : "");
    free(error);
    if (rc != 0)
        return;
    double e = sdt_flop_forward_mac(&enc) / 1e9, d = sdt_flop_forward_mac(&dec) / 1e9;
    double c = sdt_flop_forward_mac(&clip) / 1e9;
    printf("  VAE encoder %.1f G MAC (attention %.1f), decoder %.1f G MAC, CLIP-L %.2f G MAC\n", e,
           enc.attention_mac / 1e9, d, c);
    CHECK_MSG(t, near(e, 558, ANCHOR_TOL), "VAE encoder %.1f G MAC, anchor 558", e);
    CHECK_MSG(t, near(d, 1257, ANCHOR_TOL), "VAE decoder %.1f G MAC, anchor 1257", d);
    CHECK_MSG(t, near(enc.attention_mac / 1e9, 17, 0.05), "VAE attention %.2f G MAC, anchor 17",
              enc.attention_mac / 1e9);
    CHECK_MSG(t, near(c, 6.6, 0.01), "CLIP %.2f G MAC, anchor 6.6", c);
}

/* The count's parameter total is the table's: the walk sees every tensor the model has. */
static void test_params_match_table(test_state *t)
{
    const char *names[] = {"sd15", "sd15-tiny"};
    for (size_t i = 0; i < 2; i++) {
        const sdt_model_arch *a = arch(names[i]);
        sdt_param_table table;
        char *error = NULL;
        if (sdt_unet_params(&a->unet, &table, &error) != 0) {
            CHECK_MSG(t, 0, "%s", error);
            free(error);
            sdt_param_table_free(NULL, &table);
            continue;
        }
        sdt_flop_count with_table, fresh;
        int64_t side = 8; /* the tiny model's smallest legal latent */
        CHECK(t, sdt_flops_unet(&a->unet, &table, 1, side, side, 77, &with_table, &error) == 0);
        CHECK(t, sdt_flops_unet(&a->unet, NULL, 1, side, side, 77, &fresh, &error) == 0);
        CHECK_MSG(t, with_table.params == sdt_param_table_numel(&table), "%s: %lld vs %lld", names[i],
                  (long long)with_table.params, (long long)sdt_param_table_numel(&table));
        CHECK(t, fresh.params == with_table.params &&
                     sdt_flop_forward_mac(&fresh) == sdt_flop_forward_mac(&with_table));
        CHECK(t, with_table.conv_mac > 0 && with_table.linear_mac > 0 && with_table.attention_mac > 0);
        sdt_param_table_free(NULL, &table);
    }
}

static void test_scaling(test_state *t)
{
    const char *names[] = {"sd15", "sd15-tiny"};
    for (size_t i = 0; i < 2; i++) {
        sdt_flop_count one, two, big;
        if (unet_count(t, names[i], 1, 32, &one) != 0 || unet_count(t, names[i], 2, 32, &two) != 0 ||
            unet_count(t, names[i], 1, 64, &big) != 0)
            return;
        double f1 = sdt_flop_forward_mac(&one), f2 = sdt_flop_forward_mac(&two),
               f4 = sdt_flop_forward_mac(&big);
        CHECK_MSG(t, near(f2, 2.0 * f1, 1e-12), "%s: batch 2 is %.6gx batch 1", names[i], f2 / f1);
        CHECK(t, near(sdt_flops_training(&two, SDT_FLOP_TRAIN_LORA, 1),
                      2.0 * sdt_flops_training(&one, SDT_FLOP_TRAIN_LORA, 1), 1e-12));
        /* 4x the area: weights scale by 4 (the context projections a little less), self-attention by 16
         * and cross-attention by 4 */
        CHECK_MSG(t, f4 > 4.0 * f1, "%s: 4x area gives %.3fx", names[i], f4 / f1);
        double attention = big.attention_mac / one.attention_mac;
        CHECK_MSG(t, attention > 8.0 && attention < 16.0, "%s: attention x%.2f", names[i], attention);
        CHECK(t, big.linear_mac < 4.0 * one.linear_mac + 1 && big.conv_mac == 4.0 * one.conv_mac);
        CHECK(t, big.params == one.params);
    }
}

/* Adapters attached to the table add rank x (in + out) per position; a 3x3 conv's down is a conv. */
static void test_adapters(test_state *t)
{
    const sdt_model_arch *a = arch("sd15-tiny");
    sdt_param_table table;
    char *error = NULL;
    if (sdt_unet_params(&a->unet, &table, &error) != 0) {
        CHECK_MSG(t, 0, "%s", error);
        free(error);
        sdt_param_table_free(NULL, &table);
        return;
    }
    sdt_flop_count base, with;
    CHECK(t, sdt_flops_unet(&a->unet, &table, 1, 16, 16, 77, &base, &error) == 0);
    sdt_adapter lin = {.rank = 4}, conv = {.rank = 2};
    sdt_param *q = sdt_param_find(&table, "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight");
    sdt_param *c = sdt_param_find(&table, "input_blocks.1.0.in_layers.2.weight");
    CHECK(t, q && c);
    if (!q || !c) {
        sdt_param_table_free(NULL, &table);
        return;
    }
    q->adapter = &lin;
    c->adapter = &conv;
    CHECK(t, sdt_flops_unet(&a->unet, &table, 1, 16, 16, 77, &with, &error) == 0);
    /* level 0 of a 16x16 latent: 256 positions; to_q [32, 32]; the conv [32, 3, 3, 32] */
    double want = 256.0 * 4 * (32 + 32) + 256.0 * 2 * (9 * 32 + 32);
    CHECK_MSG(t, with.adapter_mac == want, "adapter MACs %.0f, expected %.0f", with.adapter_mac, want);
    CHECK(t, with.linear_mac == base.linear_mac && with.conv_mac == base.conv_mac);
    /* LoRA training: adapters cost 3x their forward */
    double delta =
        sdt_flops_training(&with, SDT_FLOP_TRAIN_LORA, 0) - sdt_flops_training(&base, SDT_FLOP_TRAIN_LORA, 0);
    CHECK(t, near(delta, 2.0 * 3.0 * want, 1e-9));
    q->adapter = NULL;
    c->adapter = NULL;
    sdt_param_table_free(NULL, &table);
}

static void test_bad_input(test_state *t)
{
    const sdt_model_arch *a = arch("sd15");
    sdt_flop_count f;
    char *error = NULL;
    CHECK(t, sdt_flops_unet(&a->unet, NULL, 1, 60, 64, 77, &f, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "multiples of 8");
    free(error);
    error = NULL;
    CHECK(t, sdt_flops_unet(&a->unet, NULL, 0, 64, 64, 77, &f, &error) == -1);
    free(error);
    error = NULL;
    /* a table with a weight the walk cannot place */
    sdt_param_table table;
    CHECK(t, sdt_unet_params(&a->unet, &table, &error) == 0);
    CHECK(t, sdt_param_add_linear(&table, "mystery_block.0", 4, 4, 0) == 0);
    CHECK(t, sdt_flops_unet(&a->unet, &table, 1, 64, 64, 77, &f, &error) == -1);
    CHECK_STR_CONTAINS(t, error, "mystery_block.0.weight");
    free(error);
    sdt_param_table_free(NULL, &table);
}

TEST_MAIN("flops", TEST(test_sd15_forward_anchor), TEST(test_sd15_training_anchor),
          TEST(test_vae_and_clip_anchor), TEST(test_params_match_table), TEST(test_scaling),
          TEST(test_adapters), TEST(test_bad_input))
