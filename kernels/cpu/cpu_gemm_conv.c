/* Linear layers and 2D convolutions of the CPU backend, all reduced to OpenBLAS sgemm.
 *
 * Activations are channels-last, so a 1x1, stride-1, unpadded conv is a linear layer over the B*H*W pixels
 * and goes straight to one sgemm. Every other conv is im2col + sgemm: row p of the column matrix is the
 * KH x KW x C patch under output pixel p, laid out [kh][kw][c] so that it lines up with a weight row
 * [OC][KH][KW][C] and forward is cols @ weight^T. The column matrix of a whole batch is KH*KW times the
 * input (2.4 GB for a 512x512x128 VAE conv), so it is built a chunk of output rows at a time in a heap
 * scratch (see conv_chunk_rows), the one allocation these functions make. A chunk runs over the output rows
 * of the whole batch, not of one image, so the small late-UNet images still make GEMMs of a useful height
 * when the batch is larger than one.
 *
 * Threads: only sgemm is parallel, on OpenBLAS's own thread pool (the pthread build). The copies and sums
 * around it (bias fill, im2col, col2im, bias gradient) run on the calling thread, because measuring said
 * so: with libgomp's default spin-wait, an OpenMP region just before an sgemm leaves its workers spinning
 * for milliseconds on the cores OpenBLAS is about to use, which made a 64x64x320 3x3 conv 27-49% slower
 * (forward) and a 4096x320->320 linear 1.9x slower on the 2-core VM (docs/perf.md); with
 * OMP_WAIT_POLICY=passive the parallel copies gained at most a few percent. They are memory-bound and small
 * next to the GEMM once a chunk stays in cache. So nothing here depends on the OpenMP thread count (results
 * can depend on OpenBLAS's own thread count, see docs/perf.md). col2im is written as a gather, each input
 * row pulling its contributions in a fixed order, so it can be split over input rows without two threads
 * ever adding into one element.
 */
#include "cpu_ops.h"

#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The im2col chunk: whole output rows, aiming at CONV_CHUNK_BYTES of columns so that the GEMM reads them
 * back from cache, but at least CONV_MIN_GEMM_ROWS output pixels so that the GEMM stays tall enough to run
 * near OpenBLAS's peak, and never more than CONV_SCRATCH_BYTES. Measured on the 2-core VM (32 MiB L3):
 * against one 32 MiB chunk, 4 MiB chunks made the VAE's 256x256x128 conv 20-70% faster and left the UNet
 * shapes unchanged, except where they cut the GEMM short: 180 rows at K = 5,760 (32x32x640) lost 13%. */
#define CONV_CHUNK_BYTES ((int64_t)4 << 20)
#define CONV_MIN_GEMM_ROWS 1024
#define CONV_SCRATCH_BYTES ((int64_t)32 << 20)

/* Channels per pass over the rows in the bias-gradient sums: 8 KB of double accumulators, which stay in L1
 * while whole 4 KB row segments stream past. Blocks of 16 channels, one cache line per row, took 29 ms
 * instead of 8 for a [4096, 2560] gradient: every pass then strides through memory a line at a time. */
#define BIAS_BLOCK 1024

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* OpenBLAS takes 32-bit dimensions. The backend's shape checks keep every GEMM dimension far below 2^31
 * (conv chunks are bounded by the scratch size); one that is not would be a bug upstream, and a silently
 * truncated size would corrupt memory, so it stops the process. */
static blasint blas_dim(int64_t v)
{
    if (v > INT_MAX) {
        fprintf(stderr, "sdtune: GEMM dimension %lld exceeds the BLAS's 32-bit range\n", (long long)v);
        abort();
    }
    return (blasint)v;
}

/* Row-major Cm [M, N] = op(A) @ op(B) + beta * Cm, beta 0 or 1. op(A) is [M, K]: A is stored [M, K], or
 * [K, M] when trans_a. op(B) is [K, N]: B is stored [K, N], or [N, K] when trans_b. */
static void gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *Cm, int64_t ldc)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        /* An empty sum; OpenBLAS would reject the zero leading dimension of A or B. */
        if (beta == 0.0f)
            for (int64_t m = 0; m < M; m++)
                memset(Cm + m * ldc, 0, (size_t)N * sizeof *Cm);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                blas_dim(M), blas_dim(N), blas_dim(K), 1.0f, A, blas_dim(lda), B, blas_dim(ldb), beta, Cm,
                blas_dim(ldc));
}

/* out [N, OC] = bias [OC] in every row; the GEMM then accumulates onto it with beta = 1. */
static void fill_rows_with_bias(float *out, const float *bias, int64_t N, int64_t OC)
{
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * OC, bias, (size_t)OC * sizeof *out);
}

/* dbias [OC] += the sum over rows of dout [N, OC], in double, BIAS_BLOCK channels at a time. */
static void add_column_sums(float *dbias, const float *dout, int64_t N, int64_t OC)
{
    const int64_t nblocks = (OC + BIAS_BLOCK - 1) / BIAS_BLOCK;
    for (int64_t blk = 0; blk < nblocks; blk++) {
        const int64_t c0 = blk * BIAS_BLOCK, nc = min64(BIAS_BLOCK, OC - c0);
        double acc[BIAS_BLOCK] = {0}; /* [nc] */
        for (int64_t n = 0; n < N; n++) {
            const float *row = dout + n * OC + c0; /* [nc] */
            for (int64_t j = 0; j < nc; j++)
                acc[j] += row[j];
        }
        for (int64_t j = 0; j < nc; j++)
            dbias[c0 + j] = (float)(dbias[c0 + j] + acc[j]);
    }
}

void cpu_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t N,
                        int64_t C, int64_t OC)
{
    if (bias)
        fill_rows_with_bias(out, bias, N, OC);
    gemm(0, 1, N, OC, C, inp, C, weight, C, bias ? 1.0f : 0.0f, out, OC);
}

void cpu_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int64_t N, int64_t C, int64_t OC)
{
    if (dinp) /* [N, C] += dout [N, OC] @ weight [OC, C] */
        gemm(0, 0, N, C, OC, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) /* [OC, C] += dout^T [OC, N] @ inp [N, C] */
        gemm(1, 0, OC, C, N, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias)
        add_column_sums(dbias, dout, N, OC);
}

/* ---- convolutions ---------------------------------------------------------------------------------- */

static int conv_is_pointwise(const cpu_conv2d_geometry *g)
{
    return g->KH == 1 && g->KW == 1 && g->stride == 1 && g->pad_top == 0 && g->pad_left == 0 &&
           g->pad_bottom == 0 && g->pad_right == 0;
}

/* The scratch for chunks of *rows output rows of row_floats floats each. When malloc fails the chunk is
 * halved and tried again; NULL only when a single output row (OW * KH*KW*C floats, 2.4 MB at the largest
 * VAE shape) cannot be had, and the caller then reports out of memory before touching any output. */
static float *alloc_scratch(int64_t *rows, int64_t row_floats)
{
    for (;;) {
        float *p = malloc((size_t)(*rows * row_floats) * sizeof *p);
        if (p || *rows == 1)
            return p;
        *rows = (*rows + 1) / 2;
    }
}

/* Output rows per chunk (see CONV_CHUNK_BYTES), at least one, at most the whole batch. */
static int64_t conv_chunk_rows(const cpu_conv2d_geometry *g, int64_t row_floats)
{
    const int64_t row_bytes = row_floats * (int64_t)sizeof(float);
    const int64_t min_rows = (CONV_MIN_GEMM_ROWS + g->OW - 1) / g->OW;
    int64_t rows = CONV_CHUNK_BYTES / row_bytes;
    if (rows < min_rows)
        rows = min_rows;
    if (rows > CONV_SCRATCH_BYTES / row_bytes) /* the ceiling wins over the minimum height */
        rows = CONV_SCRATCH_BYTES / row_bytes;
    return clamp64(rows, 1, g->B * g->OH);
}

/* cols [(r1 - r0) * OW, KH*KW*C] = the patches under the output pixels of batch output rows [r0, r1)
 * (row r is row r % OH of image r / OH), zeros where a patch hangs over the padding. The taps of one kernel
 * row are adjacent input pixels whatever the stride, so each kernel row is one copy plus zero fills. */
static void im2col(float *cols, const float *inp, const cpu_conv2d_geometry *g, int64_t r0, int64_t r1)
{
    const int64_t H = g->H, W = g->W, C = g->C, KH = g->KH, KW = g->KW, OH = g->OH, OW = g->OW;
    const int64_t K = KH * KW * C, npix = (r1 - r0) * OW;
    for (int64_t p = 0; p < npix; p++) {
        const int64_t r = r0 + p / OW, ow = p % OW, b = r / OH, oh = r % OH;
        const int64_t iw0 = ow * g->stride - g->pad_left;
        /* taps kw in [kw_lo, kw_hi) land inside the image */
        const int64_t kw_lo = clamp64(-iw0, 0, KW), kw_hi = clamp64(W - iw0, kw_lo, KW);
        float *patch = cols + p * K; /* [KH, KW, C] */
        for (int64_t kh = 0; kh < KH; kh++) {
            const int64_t ih = oh * g->stride - g->pad_top + kh;
            float *dst = patch + kh * KW * C; /* [KW, C] */
            if (ih < 0 || ih >= H || kw_lo == kw_hi) {
                memset(dst, 0, (size_t)(KW * C) * sizeof *dst);
                continue;
            }
            const float *src = inp + ((b * H + ih) * W + iw0 + kw_lo) * C; /* [kw_hi - kw_lo, C] */
            memset(dst, 0, (size_t)(kw_lo * C) * sizeof *dst);
            memcpy(dst + kw_lo * C, src, (size_t)((kw_hi - kw_lo) * C) * sizeof *dst);
            memset(dst + kw_hi * C, 0, (size_t)((KW - kw_hi) * C) * sizeof *dst);
        }
    }
}

/* dinp [B, H, W, C] += dcols [(r1 - r0) * OW, KH*KW*C] folded back: every patch element is added onto the
 * input pixel im2col copied it from. Written as a gather: each input row (over the batch) pulls in every
 * patch element that came from it, in a fixed (kh, iw, kw) order, rather than each patch scattering into
 * up to KH*KW rows. */
static void col2im_add(float *dinp, const float *dcols, const cpu_conv2d_geometry *g, int64_t r0, int64_t r1)
{
    const int64_t H = g->H, W = g->W, C = g->C, KH = g->KH, KW = g->KW, OH = g->OH, OW = g->OW;
    const int64_t s = g->stride, K = KH * KW * C;
    /* Batch input rows [q0, q1) cover every row the chunk's first to last output row reads (a few more
     * at most; those find no patch below and are left alone). */
    const int64_t q0 = (r0 / OH) * H + clamp64((r0 % OH) * s - g->pad_top, 0, H - 1);
    const int64_t q1 = ((r1 - 1) / OH) * H + clamp64(((r1 - 1) % OH) * s - g->pad_top + KH - 1, 0, H - 1) + 1;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t b = q / H, ih = q % H;
        for (int64_t kh = 0; kh < KH; kh++) {
            const int64_t t = ih + g->pad_top - kh; /* = oh * stride for the output row using this tap */
            if (t < 0 || t % s != 0 || t / s >= OH)
                continue;
            const int64_t r = b * OH + t / s;
            if (r < r0 || r >= r1)
                continue;
            const float *src_row = dcols + (r - r0) * OW * K + kh * KW * C; /* [OW, K], at tap row kh */
            for (int64_t iw = 0; iw < W; iw++) {
                float *restrict dst = dinp + (q * W + iw) * C; /* [C] */
                for (int64_t kw = 0; kw < KW; kw++) {
                    const int64_t u = iw + g->pad_left - kw; /* = ow * stride */
                    if (u < 0 || u % s != 0 || u / s >= OW)
                        continue;
                    const float *restrict src = src_row + (u / s) * K + kw * C; /* [C] */
                    for (int64_t c = 0; c < C; c++)
                        dst[c] += src[c];
                }
            }
        }
    }
}

int cpu_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       const cpu_conv2d_geometry *g)
{
    if (conv_is_pointwise(g)) {
        cpu_linear_forward(out, inp, weight, bias, g->B * g->H * g->W, g->C, g->OC);
        return 0;
    }
    const int64_t K = g->KH * g->KW * g->C, rows = g->B * g->OH, OW = g->OW, OC = g->OC;
    if (rows * OW == 0 || OC == 0)
        return 0;
    if (K == 0) { /* no input channels: the output is the bias (or zero), which an empty linear writes */
        cpu_linear_forward(out, inp, weight, bias, rows * OW, 0, OC);
        return 0;
    }
    int64_t chunk = conv_chunk_rows(g, OW * K);
    float *cols = alloc_scratch(&chunk, OW * K); /* [chunk * OW, K] */
    if (!cols)
        return -1;
    if (bias)
        fill_rows_with_bias(out, bias, rows * OW, OC);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const int64_t r1 = min64(rows, r0 + chunk);
        im2col(cols, inp, g, r0, r1);
        /* out rows [r0 * OW, r1 * OW) [M, OC] (+)= cols [M, K] @ weight^T [K, OC] */
        gemm(0, 1, (r1 - r0) * OW, OC, K, cols, K, weight, K, bias ? 1.0f : 0.0f, out + r0 * OW * OC, OC);
    }
    free(cols);
    return 0;
}

int cpu_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const cpu_conv2d_geometry *g)
{
    if (conv_is_pointwise(g)) {
        cpu_linear_backward(dinp, dweight, dbias, dout, inp, weight, g->B * g->H * g->W, g->C, g->OC);
        return 0;
    }
    const int64_t K = g->KH * g->KW * g->C, rows = g->B * g->OH, OW = g->OW, OC = g->OC;
    int needs_columns = (dinp || dweight) && rows * OW > 0 && OC > 0 && K > 0;
    /* One buffer serves both gradients of a chunk: the weight gradient consumes the patches before the
     * column gradients overwrite them, so a chunk is as tall as in forward. Taken before any gradient is
     * touched, so running out of memory leaves them as they were. */
    int64_t chunk = needs_columns ? conv_chunk_rows(g, OW * K) : 0;
    float *buf = needs_columns ? alloc_scratch(&chunk, OW * K) : NULL; /* [chunk * OW, K]: cols, then dcols */
    if (needs_columns && !buf)
        return -1;
    if (dbias)
        add_column_sums(dbias, dout, rows * OW, OC);
    if (!needs_columns)
        return 0;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const int64_t r1 = min64(rows, r0 + chunk), M = (r1 - r0) * OW;
        const float *dout_chunk = dout + r0 * OW * OC; /* [M, OC] */
        if (dweight) {
            im2col(buf, inp, g, r0, r1);
            /* dweight [OC, K] += dout_chunk^T [OC, M] @ cols [M, K] */
            gemm(1, 0, OC, K, M, dout_chunk, OC, buf, K, 1.0f, dweight, K);
        }
        if (dinp) {
            /* dcols [M, K] = dout_chunk [M, OC] @ weight [OC, K] */
            gemm(0, 0, M, K, OC, dout_chunk, OC, weight, K, 0.0f, buf, K);
            col2im_add(dinp, buf, g, r0, r1);
        }
    }
    free(buf);
    return 0;
}
