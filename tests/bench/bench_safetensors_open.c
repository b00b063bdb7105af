/* Benchmark: how long opening a Stable Diffusion 1.x checkpoint takes (map, parse and validate the header,
 * build the name index), plus looking up every tensor by name and closing.
 *
 *     bench_safetensors_open [FOLDER]     (default $TMPDIR or /tmp; needs ~2.2 GB free there)
 *
 * It writes a ~2.1 GB file laid out like v1-5-pruned-emaonly.safetensors (the ldm names and shapes of the
 * UNet, the VAE and the CLIP text encoder, fp16, plus the fp32 noise-schedule buffers and the int64
 * position_ids) with the library's writer, the data streamed from a small repeated pattern; then times
 * open + find all + close, one warm-up run and then the best of 10, and removes the file. The page cache
 * is warm after writing: this measures the library's work, not the disk. Results: docs/perf.md. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sdtune/safetensors.h"
#include "sdtune/strutil.h"

/* The tensors to write, grown as the layout is generated. */
typedef struct layout {
    sdt_st_write_tensor *items;
    int64_t (*shapes)[4];
    size_t n, cap;
    int failed;
} layout;

/* Appends one tensor; name is printf-formatted. dims of 0 end the shape early (so [] is a scalar). */
static void add(layout *l, sdt_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                ...) SDT_PRINTF(7, 8);

static void add(layout *l, sdt_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                ...)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        sdt_st_write_tensor *items = realloc(l->items, cap * sizeof *items);
        if (items)
            l->items = items;
        int64_t(*shapes)[4] = realloc(l->shapes, cap * sizeof *shapes);
        if (shapes)
            l->shapes = shapes;
        if (!items || !shapes) {
            l->failed = 1;
            return;
        }
        l->cap = cap;
    }
    va_list args;
    va_start(args, fmt);
    char *name = sdt_vformat(fmt, args);
    va_end(args);
    if (!name) {
        l->failed = 1;
        return;
    }
    int64_t dims[4] = {d0, d1, d2, d3};
    int ndim = 0;
    while (ndim < 4 && dims[ndim] > 0) {
        l->shapes[l->n][ndim] = dims[ndim];
        ndim++;
    }
    l->items[l->n] = (sdt_st_write_tensor){name, dtype, ndim, NULL, NULL, NULL, NULL};
    l->n++;
}

/* A weight and its bias: weight [d0, d1, d2, d3], bias [d0]. */
static void add_wb(layout *l, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *prefix)
{
    add(l, SDT_F16, d0, d1, d2, d3, "%s.weight", prefix);
    add(l, SDT_F16, d0, 0, 0, 0, "%s.bias", prefix);
}

/* A UNet residual block (ldm ResBlock) from in_ch to out_ch channels. */
static void unet_res(layout *l, const char *p, int64_t in_ch, int64_t out_ch)
{
    char n[256];
    snprintf(n, sizeof n, "%s.in_layers.0", p);
    add_wb(l, in_ch, 0, 0, 0, n);
    snprintf(n, sizeof n, "%s.in_layers.2", p);
    add_wb(l, out_ch, in_ch, 3, 3, n);
    snprintf(n, sizeof n, "%s.emb_layers.1", p);
    add_wb(l, out_ch, 1280, 0, 0, n);
    snprintf(n, sizeof n, "%s.out_layers.0", p);
    add_wb(l, out_ch, 0, 0, 0, n);
    snprintf(n, sizeof n, "%s.out_layers.3", p);
    add_wb(l, out_ch, out_ch, 3, 3, n);
    if (in_ch != out_ch) {
        snprintf(n, sizeof n, "%s.skip_connection", p);
        add_wb(l, out_ch, in_ch, 1, 1, n);
    }
}

/* A UNet spatial transformer (one basic block, context 768). */
static void unet_attn(layout *l, const char *p, int64_t ch)
{
    char n[256];
    snprintf(n, sizeof n, "%s.norm", p);
    add_wb(l, ch, 0, 0, 0, n);
    snprintf(n, sizeof n, "%s.proj_in", p);
    add_wb(l, ch, ch, 1, 1, n);
    static const char *const q[] = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_q"};
    for (int i = 0; i < 4; i++)
        add(l, SDT_F16, ch, ch, 0, 0, "%s.transformer_blocks.0.%s.weight", p, q[i]);
    add(l, SDT_F16, ch, 768, 0, 0, "%s.transformer_blocks.0.attn2.to_k.weight", p);
    add(l, SDT_F16, ch, 768, 0, 0, "%s.transformer_blocks.0.attn2.to_v.weight", p);
    for (int a = 1; a <= 2; a++) {
        snprintf(n, sizeof n, "%s.transformer_blocks.0.attn%d.to_out.0", p, a);
        add_wb(l, ch, ch, 0, 0, n);
    }
    snprintf(n, sizeof n, "%s.transformer_blocks.0.ff.net.0.proj", p);
    add_wb(l, 8 * ch, ch, 0, 0, n);
    snprintf(n, sizeof n, "%s.transformer_blocks.0.ff.net.2", p);
    add_wb(l, ch, 4 * ch, 0, 0, n);
    for (int i = 1; i <= 3; i++) {
        snprintf(n, sizeof n, "%s.transformer_blocks.0.norm%d", p, i);
        add_wb(l, ch, 0, 0, 0, n);
    }
    snprintf(n, sizeof n, "%s.proj_out", p);
    add_wb(l, ch, ch, 1, 1, n);
}

static void unet(layout *l)
{
    const char *u = "model.diffusion_model";
    char p[256];
    snprintf(p, sizeof p, "%s.time_embed.0", u);
    add_wb(l, 1280, 320, 0, 0, p);
    snprintf(p, sizeof p, "%s.time_embed.2", u);
    add_wb(l, 1280, 1280, 0, 0, p);
    snprintf(p, sizeof p, "%s.input_blocks.0.0", u);
    add_wb(l, 320, 4, 3, 3, p);
    /* Input blocks 1..11: two per level with attention on the first three levels, a downsample between. */
    static const int64_t level_ch[4] = {320, 640, 1280, 1280};
    int block = 1;
    int64_t ch = 320;
    for (int level = 0; level < 4; level++) {
        for (int i = 0; i < 2; i++, block++) {
            snprintf(p, sizeof p, "%s.input_blocks.%d.0", u, block);
            unet_res(l, p, ch, level_ch[level]);
            ch = level_ch[level];
            if (level < 3) {
                snprintf(p, sizeof p, "%s.input_blocks.%d.1", u, block);
                unet_attn(l, p, ch);
            }
        }
        if (level < 3) {
            snprintf(p, sizeof p, "%s.input_blocks.%d.0.op", u, block++);
            add_wb(l, ch, ch, 3, 3, p);
        }
    }
    snprintf(p, sizeof p, "%s.middle_block.0", u);
    unet_res(l, p, 1280, 1280);
    snprintf(p, sizeof p, "%s.middle_block.1", u);
    unet_attn(l, p, 1280);
    snprintf(p, sizeof p, "%s.middle_block.2", u);
    unet_res(l, p, 1280, 1280);
    /* Output blocks 0..11: three per level (input channels include the skip), upsample at level ends. */
    static const int64_t skip_ch[12] = {1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320, 320};
    static const int64_t out_ch[12] = {1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320};
    ch = 1280;
    for (int b = 0; b < 12; b++) {
        snprintf(p, sizeof p, "%s.output_blocks.%d.0", u, b);
        unet_res(l, p, ch + skip_ch[b], out_ch[b]);
        ch = out_ch[b];
        int next = 1;
        if (b >= 3) {
            snprintf(p, sizeof p, "%s.output_blocks.%d.1", u, b);
            unet_attn(l, p, ch);
            next = 2;
        }
        if (b == 2 || b == 5 || b == 8) {
            snprintf(p, sizeof p, "%s.output_blocks.%d.%d.conv", u, b, next);
            add_wb(l, ch, ch, 3, 3, p);
        }
    }
    snprintf(p, sizeof p, "%s.out.0", u);
    add_wb(l, 320, 0, 0, 0, p);
    snprintf(p, sizeof p, "%s.out.2", u);
    add_wb(l, 4, 320, 3, 3, p);
}

/* A VAE residual block (norm1, conv1, norm2, conv2, nin_shortcut when the channels change). */
static void vae_res(layout *l, const char *p, int64_t in_ch, int64_t out_ch)
{
    char n[256];
    snprintf(n, sizeof n, "%s.norm1", p);
    add_wb(l, in_ch, 0, 0, 0, n);
    snprintf(n, sizeof n, "%s.conv1", p);
    add_wb(l, out_ch, in_ch, 3, 3, n);
    snprintf(n, sizeof n, "%s.norm2", p);
    add_wb(l, out_ch, 0, 0, 0, n);
    snprintf(n, sizeof n, "%s.conv2", p);
    add_wb(l, out_ch, out_ch, 3, 3, n);
    if (in_ch != out_ch) {
        snprintf(n, sizeof n, "%s.nin_shortcut", p);
        add_wb(l, out_ch, in_ch, 1, 1, n);
    }
}

/* The VAE middle: resnet, single-head attention with 1x1 convolutions, resnet. */
static void vae_mid(layout *l, const char *coder)
{
    char p[256];
    snprintf(p, sizeof p, "first_stage_model.%s.mid.block_1", coder);
    vae_res(l, p, 512, 512);
    static const char *const parts[] = {"q", "k", "v", "proj_out"};
    snprintf(p, sizeof p, "first_stage_model.%s.mid.attn_1.norm", coder);
    add_wb(l, 512, 0, 0, 0, p);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "first_stage_model.%s.mid.attn_1.%s", coder, parts[i]);
        add_wb(l, 512, 512, 1, 1, p);
    }
    snprintf(p, sizeof p, "first_stage_model.%s.mid.block_2", coder);
    vae_res(l, p, 512, 512);
}

static void vae(layout *l)
{
    static const int64_t ch[4] = {128, 256, 512, 512};
    char p[256];
    add_wb(l, 128, 3, 3, 3, "first_stage_model.encoder.conv_in");
    int64_t c = 128;
    for (int level = 0; level < 4; level++) {
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "first_stage_model.encoder.down.%d.block.%d", level, i);
            vae_res(l, p, c, ch[level]);
            c = ch[level];
        }
        if (level < 3) {
            snprintf(p, sizeof p, "first_stage_model.encoder.down.%d.downsample.conv", level);
            add_wb(l, c, c, 3, 3, p);
        }
    }
    vae_mid(l, "encoder");
    add_wb(l, 512, 0, 0, 0, "first_stage_model.encoder.norm_out");
    add_wb(l, 8, 512, 3, 3, "first_stage_model.encoder.conv_out");
    add_wb(l, 512, 4, 3, 3, "first_stage_model.decoder.conv_in");
    vae_mid(l, "decoder");
    c = 512;
    for (int level = 3; level >= 0; level--) {
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "first_stage_model.decoder.up.%d.block.%d", level, i);
            vae_res(l, p, c, ch[level]);
            c = ch[level];
        }
        if (level > 0) {
            snprintf(p, sizeof p, "first_stage_model.decoder.up.%d.upsample.conv", level);
            add_wb(l, c, c, 3, 3, p);
        }
    }
    add_wb(l, 128, 0, 0, 0, "first_stage_model.decoder.norm_out");
    add_wb(l, 3, 128, 3, 3, "first_stage_model.decoder.conv_out");
    add_wb(l, 8, 8, 1, 1, "first_stage_model.quant_conv");
    add_wb(l, 4, 4, 1, 1, "first_stage_model.post_quant_conv");
}

/* CLIP ViT-L/14 text encoder: 12 layers of width 768. */
static void text_encoder(layout *l)
{
    const char *t = "cond_stage_model.transformer.text_model";
    add(l, SDT_F16, 49408, 768, 0, 0, "%s.embeddings.token_embedding.weight", t);
    add(l, SDT_F16, 77, 768, 0, 0, "%s.embeddings.position_embedding.weight", t);
    add(l, SDT_I64, 1, 77, 0, 0, "%s.embeddings.position_ids", t);
    char p[256];
    static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < 12; i++) {
        for (int j = 0; j < 4; j++) {
            snprintf(p, sizeof p, "%s.encoder.layers.%d.self_attn.%s", t, i, proj[j]);
            add_wb(l, 768, 768, 0, 0, p);
        }
        snprintf(p, sizeof p, "%s.encoder.layers.%d.layer_norm1", t, i);
        add_wb(l, 768, 0, 0, 0, p);
        snprintf(p, sizeof p, "%s.encoder.layers.%d.mlp.fc1", t, i);
        add_wb(l, 3072, 768, 0, 0, p);
        snprintf(p, sizeof p, "%s.encoder.layers.%d.mlp.fc2", t, i);
        add_wb(l, 768, 3072, 0, 0, p);
        snprintf(p, sizeof p, "%s.encoder.layers.%d.layer_norm2", t, i);
        add_wb(l, 768, 0, 0, 0, p);
    }
    snprintf(p, sizeof p, "%s.final_layer_norm", t);
    add_wb(l, 768, 0, 0, 0, p);
}

/* The DDPM schedule buffers an ldm checkpoint carries (fp32, 1000 steps). */
static void schedule(layout *l)
{
    static const char *const names[] = {"betas",
                                        "alphas_cumprod",
                                        "alphas_cumprod_prev",
                                        "sqrt_alphas_cumprod",
                                        "sqrt_one_minus_alphas_cumprod",
                                        "log_one_minus_alphas_cumprod",
                                        "sqrt_recip_alphas_cumprod",
                                        "sqrt_recipm1_alphas_cumprod",
                                        "posterior_variance",
                                        "posterior_log_variance_clipped",
                                        "posterior_mean_coef1",
                                        "posterior_mean_coef2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        add(l, SDT_F32, 1000, 0, 0, 0, "%s", names[i]);
}

/* Data for every tensor: a 64 KiB pattern repeated (the bytes do not matter to the reader). */
typedef struct pattern {
    unsigned char bytes[1 << 16];
} pattern;

static int fill_from_pattern(void *ctx, uint64_t offset, void *buf, size_t len)
{
    const pattern *p = ctx;
    unsigned char *out = buf;
    while (len) {
        size_t at = (size_t)(offset % sizeof p->bytes);
        size_t n = sizeof p->bytes - at < len ? sizeof p->bytes - at : len;
        memcpy(out, p->bytes + at, n);
        out += n;
        offset += n;
        len -= n;
    }
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One timed run; the three phases' seconds go to phases[0..2]. Returns 0, or -1 (message printed). */
static int timed_run(const char *path, const layout *l, double phases[3])
{
    char *error = NULL;
    sdt_safetensors *st = NULL;
    double t0 = now_seconds();
    if (sdt_safetensors_open(path, &st, &error) != 0) {
        fprintf(stderr, "%s\n", error);
        free(error);
        return -1;
    }
    double t1 = now_seconds();
    size_t found = 0;
    for (size_t i = 0; i < l->n; i++)
        found += sdt_safetensors_find(st, l->items[i].name) != NULL;
    double t2 = now_seconds();
    sdt_safetensors_close(st);
    double t3 = now_seconds();
    if (found != l->n) {
        fprintf(stderr, "only %zu of %zu tensors found\n", found, l->n);
        return -1;
    }
    phases[0] = t1 - t0;
    phases[1] = t2 - t1;
    phases[2] = t3 - t2;
    return 0;
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    enum { RUNS = 10 };
    const char *tmp = getenv("TMPDIR");
    const char *folder = argc > 1 ? argv[1] : tmp && tmp[0] ? tmp : "/tmp";
    layout l = {0};
    unet(&l);
    vae(&l);
    text_encoder(&l);
    schedule(&l);
    pattern *pat = malloc(sizeof *pat);
    if (l.failed || !pat) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof pat->bytes; i++)
        pat->bytes[i] = (unsigned char)(i * 31 + 7);
    for (size_t i = 0; i < l.n; i++) {
        l.items[i].shape = l.shapes[i];
        l.items[i].fill = fill_from_pattern;
        l.items[i].fill_ctx = pat;
    }
    char *path = sdt_format("%s/sdtune-bench-%ld.safetensors", folder, (long)getpid());
    const char *meta[] = {"modelspec.architecture", "stable-diffusion-v1", "format", "pt"};
    char *error = NULL;
    double w0 = now_seconds();
    if (!path || sdt_safetensors_write(path, l.items, l.n, meta, 2, &error) != 0) {
        fprintf(stderr, "%s\n", error ? error : "out of memory");
        return 1;
    }
    double write_s = now_seconds() - w0;

    double phases[3], open_s[RUNS], find_s[RUNS], close_s[RUNS], total_s[RUNS];
    int rc = timed_run(path, &l, phases); /* warm-up */
    for (int r = 0; r < RUNS && rc == 0; r++) {
        rc = timed_run(path, &l, phases);
        open_s[r] = phases[0];
        find_s[r] = phases[1];
        close_s[r] = phases[2];
        total_s[r] = phases[0] + phases[1] + phases[2];
    }
    sdt_safetensors *st = NULL;
    uint64_t header = 0, size = 0;
    if (rc == 0 && sdt_safetensors_open(path, &st, &error) == 0) {
        header = sdt_safetensors_data_start(st) - 8;
        const sdt_st_tensor *last = sdt_safetensors_tensor(st, sdt_safetensors_count(st) - 1);
        size = sdt_safetensors_data_start(st) + last->offset + last->nbytes;
        sdt_safetensors_close(st);
    }
    unlink(path);
    if (rc != 0)
        return 1;
    free(error);

    qsort(open_s, RUNS, sizeof open_s[0], by_double);
    qsort(find_s, RUNS, sizeof find_s[0], by_double);
    qsort(close_s, RUNS, sizeof close_s[0], by_double);
    qsort(total_s, RUNS, sizeof total_s[0], by_double);
    printf("file: %zu tensors, %.2f GB (%" PRIu64 " bytes), header %" PRIu64 " bytes; written in %.1f s\n",
           l.n, (double)size / 1e9, size, header, write_s);
    printf("best of %d runs after one warm-up (median in brackets):\n", RUNS);
    printf("  %-32s %10.3f ms  (%.3f)\n", "open (map + parse + validate)", open_s[0] * 1e3,
           open_s[RUNS / 2] * 1e3);
    printf("  %-32s %10.3f ms  (%.3f)\n", "find every tensor by name", find_s[0] * 1e3,
           find_s[RUNS / 2] * 1e3);
    printf("  %-32s %10.3f ms  (%.3f)\n", "close", close_s[0] * 1e3, close_s[RUNS / 2] * 1e3);
    printf("  %-32s %10.3f ms  (%.3f)\n", "total", total_s[0] * 1e3, total_s[RUNS / 2] * 1e3);

    for (size_t i = 0; i < l.n; i++)
        free((char *)l.items[i].name);
    free(l.items);
    free(l.shapes);
    free(pat);
    free(path);
    return 0;
}
