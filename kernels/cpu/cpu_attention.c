/* Scaled dot-product attention and row softmax for the fp32 reference backend.
 *
 * Attention never holds the whole [Lq, Lk] score matrix of a head (4096 x 4096 floats = 64 MiB at 512 px):
 * it works on blocks of ATTN_ROWS query rows of one (batch, head) against all the keys that block may see.
 * A block's scores become probabilities in place and are multiplied by V. Forward saves each row's
 * log-sum-exp; backward recomputes the block's scores with the same code and gets the probabilities back as
 * exp(s - lse), as flash attention does, instead of keeping them.
 *
 * Parallelism: OpenMP over independent units, each unit's products computed by the small blocked matmuls
 * below on the thread that owns it. Forward's unit is a (batch, head, query block): it writes only its own
 * rows of out and lse. Backward's unit is a whole (batch, head): dK and dV of a head sum over all its query
 * blocks, and one owner adding them in block order makes the sums race-free and the same whatever the
 * thread count (the heads are disjoint column slices of dq, dk and dv).
 *
 * Why not OpenBLAS: the alternative, (batch, head) and blocks in serial order with each product an sgemm
 * that OpenBLAS threads itself, was measured against this code on B = 1, 8 heads, D = 40, forward / backward
 * in ms (2-core AMD EPYC Zen 4 VM, OpenBLAS 0.3.21 pthreads, best of 3):
 *
 *                                          4096 x 4096 self     4096 x 77 cross
 *     this code, 1 thread                    1999 / 4632          39.0 / 82.6
 *     this code, 2 threads                    985 / 2383          19.3 / 39.8
 *     serial + sgemm, 1 thread                888 / 1255          17.2 / 28.6
 *     serial + sgemm, 2 threads               962 / 1539          15.4 / 23.7
 *     serial + sgemm, row work in OpenMP     2654 / 4972          13.1 / 25.3   (2 threads)
 *
 * sgemm is about 4.5 times faster per core than these portable loops, but the serial version does not get
 * faster with more cores: OpenBLAS gained nothing from threading these products (inner dimension 40), and
 * the exp of every score (about half its time) stays on one thread. Moving that row work into OpenMP loops
 * between the sgemm calls made self-attention 3 times slower: OpenMP's idle threads spin while OpenBLAS's
 * pthreads run, and the two pools fight over the cores. Calling sgemm inside an OpenMP region is no way
 * out either: the pthread build of OpenBLAS (Debian's default) would thread each call again or serialise
 * the calls on its lock. This code halved its time from 1 to 2 threads and, its units being independent,
 * should keep scaling to every core in forward and to B*H cores in backward; by that count it overtakes
 * the serial version from about 4 cores on (no larger machine was at hand to measure). Its results also
 * depend on no library's internal partitioning.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_ops.h"

#ifdef _OPENMP
#define CPU_PRAGMA(x) _Pragma(#x)
#define CPU_OMP(directive) CPU_PRAGMA(omp directive)
#else
#define CPU_OMP(directive)
#endif

/* Below this many elements a loop stays on the calling thread: waking the team costs more than the work. */
#define CPU_PAR_MIN ((int64_t)1 << 15)

/* Query rows per block: 64 rows of a 4096-key self-attention are 1 MiB of scores per thread. */
#define ATTN_ROWS 64

/* Register tile of the matmuls: TILE_R rows by TILE_W columns of the product accumulate in 8 SSE registers
 * (the build targets baseline x86-64); wider tiles spilled and ran slower. */
#define TILE_R 4
#define TILE_W 8

static int thread_count(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_index(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The scratch is a few MiB per thread, taken before any output is written: when it cannot be had the op
 * returns -1 with every output untouched, and the backend reports out of memory. */
static float *attn_scratch(int64_t count) { return malloc((size_t)count * sizeof(float)); }

/* y [n] = softmax(x [n]) (y may be x); returns the row's log-sum-exp, which attention saves for backward.
 * Subtracting the row maximum keeps every exp <= 1; the sum is then at least 1. n >= 1. */
static float softmax_row(float *y, const float *x, int64_t n)
{
    float mx = x[0];
    for (int64_t j = 1; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        y[j] = expf(x[j] - mx);
        sum += y[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++)
        y[j] *= inv;
    return mx + (float)log(sum);
}

/* ---- blocked matmuls ----------------------------------------------------------------------------------- */

/* rows (1 or TILE_R) rows of c [rows, nw] (row stride ldc) = alpha * a [rows, K] (row stride lda) times a
 * packed strip pack [K, TILE_W] (zero beyond column nw). Called with a constant rows, so it unrolls. */
static inline void tile_abt(float *c, int64_t ldc, const float *a, int64_t lda, const float *pack, int64_t K,
                            int rows, int64_t nw, float alpha)
{
    float acc[TILE_R][TILE_W] = {{0}}; /* [rows, TILE_W] */
    for (int64_t k = 0; k < K; k++)
        for (int r = 0; r < rows; r++) {
            float x = a[r * lda + k];
            for (int w = 0; w < TILE_W; w++)
                acc[r][w] += x * pack[k * TILE_W + w];
        }
    for (int r = 0; r < rows; r++)
        for (int64_t w = 0; w < nw; w++)
            c[r * ldc + w] = alpha * acc[r][w];
}

/* c [M, N] (row stride ldc) = alpha * a [M, K] (row stride lda) b [N, K]^T (row stride ldb): the scores
 * Q K^T and dP = dO V^T. pack [K, TILE_W]: b's rows are copied a strip of TILE_W at a time into columns, so
 * the inner loop reads contiguous memory; K^T is never stored whole. */
static void matmul_abt(float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb,
                       int64_t M, int64_t N, int64_t K, float alpha, float *pack)
{
    for (int64_t n0 = 0; n0 < N; n0 += TILE_W) {
        int64_t nw = N - n0 < TILE_W ? N - n0 : TILE_W;
        for (int64_t k = 0; k < K; k++)
            for (int64_t w = 0; w < TILE_W; w++)
                pack[k * TILE_W + w] = w < nw ? b[(n0 + w) * ldb + k] : 0.0f;
        int64_t m = 0;
        for (; m + TILE_R <= M; m += TILE_R)
            tile_abt(c + m * ldc + n0, ldc, a + m * lda, lda, pack, K, TILE_R, nw, alpha);
        for (; m < M; m++)
            tile_abt(c + m * ldc + n0, ldc, a + m * lda, lda, pack, K, 1, nw, alpha);
    }
}

/* rows (1 or TILE_R) rows of c [rows, nw] (row stride ldc) (+)= alpha * a b, where a(r, k) = a[r*ars + k*acs]
 * and b [K, nw] has row stride ldb. A full-width tile runs a fixed-length inner loop that vectorises; a
 * narrower one (the last columns when N is no multiple of TILE_W) must not read past column nw. */
static inline void tile_ab(float *c, int64_t ldc, const float *a, int64_t ars, int64_t acs, const float *b,
                           int64_t ldb, int64_t K, int rows, int64_t nw, float alpha, int accumulate)
{
    float acc[TILE_R][TILE_W] = {{0}}; /* [rows, TILE_W] */
    if (nw == TILE_W)
        for (int64_t k = 0; k < K; k++)
            for (int r = 0; r < rows; r++) {
                float x = a[r * ars + k * acs];
                for (int w = 0; w < TILE_W; w++)
                    acc[r][w] += x * b[k * ldb + w];
            }
    else
        for (int64_t k = 0; k < K; k++)
            for (int r = 0; r < rows; r++) {
                float x = a[r * ars + k * acs];
                for (int64_t w = 0; w < nw; w++)
                    acc[r][w] += x * b[k * ldb + w];
            }
    for (int r = 0; r < rows; r++)
        for (int64_t w = 0; w < nw; w++)
            c[r * ldc + w] = (accumulate ? c[r * ldc + w] : 0.0f) + alpha * acc[r][w];
}

/* c [M, N] (row stride ldc) = alpha * a b, or c += alpha * a b with accumulate; a(m, k) = a[m*ars + k*acs]
 * (ars = 1 reads a transposed, as in dV += P^T dO), b [K, N] with row stride ldb: the products P V, P^T dO,
 * dS K and dS^T Q. */
static void matmul_ab(float *c, int64_t ldc, const float *a, int64_t ars, int64_t acs, const float *b,
                      int64_t ldb, int64_t M, int64_t N, int64_t K, float alpha, int accumulate)
{
    for (int64_t n0 = 0; n0 < N; n0 += TILE_W) {
        int64_t nw = N - n0 < TILE_W ? N - n0 : TILE_W;
        int64_t m = 0;
        for (; m + TILE_R <= M; m += TILE_R)
            tile_ab(c + m * ldc + n0, ldc, a + m * ars, ars, acs, b + n0, ldb, K, TILE_R, nw, alpha,
                    accumulate);
        for (; m < M; m++)
            tile_ab(c + m * ldc + n0, ldc, a + m * ars, ars, acs, b + n0, ldb, K, 1, nw, alpha, accumulate);
    }
}

/* ---- attention ----------------------------------------------------------------------------------------- */

/* Keys query row i may see: all of them, or with the causal mask keys 0..i. The mask is top-left aligned,
 * so with Lq > Lk the rows from Lk on see every key and no row is ever fully masked. Masked keys are never
 * read, which is what a -inf score would give after the exp. */
static inline int64_t attn_visible(int64_t i, int64_t Lk, int causal)
{
    return causal && i + 1 < Lk ? i + 1 : Lk;
}

/* One forward unit: query rows i0 .. i0+M-1 of one (batch, head).
 * q_blk, out_blk [M, D] and k_bh, v_bh [Lk, D] are slices with row stride HD; lse_blk [M].
 * p [M, nk] is the thread's score block, pack [D, TILE_W] its strip buffer. */
static void attn_forward_block(float *out_blk, float *lse_blk, const float *q_blk, const float *k_bh,
                               const float *v_bh, int64_t i0, int64_t M, int64_t Lk, int64_t D, int64_t HD,
                               float scale, int causal, float *p, float *pack)
{
    /* Under the causal mask no row of the block sees past its last row's keys. */
    int64_t nk = attn_visible(i0 + M - 1, Lk, causal);
    matmul_abt(p, nk, q_blk, HD, k_bh, HD, M, nk, D, scale, pack);
    for (int64_t r = 0; r < M; r++) {
        float *row = p + r * nk; /* [nk] */
        int64_t vis = attn_visible(i0 + r, Lk, causal);
        lse_blk[r] = softmax_row(row, row, vis);
        for (int64_t j = vis; j < nk; j++)
            row[j] = 0.0f;
    }
    matmul_ab(out_blk, HD, p, nk, 1, v_bh, HD, M, D, nk, 1.0f, 0);
}

int cpu_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int64_t B,
                          int64_t Lq, int64_t Lk, int64_t H, int64_t D, float scale, int causal)
{
    /* out [B, Lq, H*D], lse [B, H, Lq], q [B, Lq, H*D], k [B, Lk, H*D], v [B, Lk, H*D]. */
    if (B <= 0 || Lq <= 0 || Lk <= 0 || H <= 0 || D <= 0)
        return 0;
    int64_t HD = H * D, rows = Lq < ATTN_ROWS ? Lq : ATTN_ROWS;
    int64_t blocks = (Lq + rows - 1) / rows, units = B * H * blocks;
    int threads = thread_count();
    int64_t per_thread = rows * Lk + D * TILE_W;
    float *scratch = attn_scratch(per_thread * threads); /* per thread: p [rows, Lk], pack [D, TILE_W] */
    if (!scratch)
        return -1;
    /* Units differ in cost under the causal mask (a triangle), so they are handed out dynamically; which
     * thread computes a unit changes nothing in its result. */
    CPU_OMP(parallel num_threads(threads) if (units > 1 && B * H * Lq * Lk >= CPU_PAR_MIN))
    {
        float *p = scratch + (int64_t)thread_index() * per_thread, *pack = p + rows * Lk;
        CPU_OMP(for schedule(dynamic))
        for (int64_t u = 0; u < units; u++) {
            int64_t b = u / (H * blocks), h = (u / blocks) % H, i0 = (u % blocks) * rows;
            int64_t M = Lq - i0 < rows ? Lq - i0 : rows;
            attn_forward_block(out + (b * Lq + i0) * HD + h * D, lse + (b * H + h) * Lq + i0,
                               q + (b * Lq + i0) * HD + h * D, k + b * Lk * HD + h * D,
                               v + b * Lk * HD + h * D, i0, M, Lk, D, HD, scale, causal, p, pack);
        }
    }
    free(scratch);
    return 0;
}

/* One backward unit: a whole (batch, head), its query blocks in order.
 * dq_bh, q_bh, out_bh, dout_bh [Lq, D] and dk_bh, dv_bh, k_bh, v_bh [Lk, D] are slices with row stride HD
 * (the gradients NULL when not wanted); lse_bh [Lq]. p and ds [rows, nk] and pack [D, TILE_W] are the
 * thread's scratch. */
static void attn_backward_head(float *dq_bh, float *dk_bh, float *dv_bh, const float *dout_bh,
                               const float *q_bh, const float *k_bh, const float *v_bh, const float *out_bh,
                               const float *lse_bh, int64_t Lq, int64_t Lk, int64_t D, int64_t HD,
                               int64_t rows, float scale, int causal, float *p, float *ds, float *pack)
{
    for (int64_t i0 = 0; i0 < Lq; i0 += rows) {
        int64_t M = Lq - i0 < rows ? Lq - i0 : rows;
        int64_t nk = attn_visible(i0 + M - 1, Lk, causal);
        const float *q_blk = q_bh + i0 * HD, *dout_blk = dout_bh + i0 * HD; /* [M, D], stride HD */
        /* The same product as forward's, so the same scores bit for bit; P = exp(s - lse). */
        matmul_abt(p, nk, q_blk, HD, k_bh, HD, M, nk, D, scale, pack);
        for (int64_t r = 0; r < M; r++) {
            float *row = p + r * nk; /* [nk] */
            int64_t vis = attn_visible(i0 + r, Lk, causal);
            float l = lse_bh[i0 + r];
            for (int64_t j = 0; j < vis; j++)
                row[j] = expf(row[j] - l);
            for (int64_t j = vis; j < nk; j++)
                row[j] = 0.0f;
        }
        /* dV [nk, D] += P^T dO */
        if (dv_bh)
            matmul_ab(dv_bh, HD, p, 1, nk, dout_blk, HD, nk, D, M, 1.0f, 1);
        if (!dq_bh && !dk_bh)
            continue;
        /* dP [M, nk] = dO V^T, then in place dS = P * (dP - Di) with Di = rowsum(dO * O): the softmax
         * backward, Di being sum_j P_ij dP_ij computed the cheap way. */
        matmul_abt(ds, nk, dout_blk, HD, v_bh, HD, M, nk, D, 1.0f, pack);
        for (int64_t r = 0; r < M; r++) {
            const float *o = out_bh + (i0 + r) * HD, *d_o = dout_blk + r * HD; /* [D] each */
            double di = 0.0;
            for (int64_t d = 0; d < D; d++)
                di += (double)d_o[d] * (double)o[d];
            float dif = (float)di;
            const float *prow = p + r * nk; /* [nk] */
            float *dsrow = ds + r * nk;     /* [nk] */
            for (int64_t j = 0; j < nk; j++)
                dsrow[j] = prow[j] * (dsrow[j] - dif);
        }
        /* dQ [M, D] += scale dS K;  dK [nk, D] += scale dS^T Q */
        if (dq_bh)
            matmul_ab(dq_bh + i0 * HD, HD, ds, nk, 1, k_bh, HD, M, D, nk, scale, 1);
        if (dk_bh)
            matmul_ab(dk_bh, HD, ds, 1, nk, q_blk, HD, nk, D, M, scale, 1);
    }
}

int cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, int64_t B, int64_t Lq,
                           int64_t Lk, int64_t H, int64_t D, float scale, int causal)
{
    /* dq [B, Lq, H*D] +=, dk [B, Lk, H*D] +=, dv [B, Lk, H*D] +=, dout [B, Lq, H*D], q [B, Lq, H*D],
     * k [B, Lk, H*D], v [B, Lk, H*D], out [B, Lq, H*D], lse [B, H, Lq]. */
    if ((!dq && !dk && !dv) || B <= 0 || Lq <= 0 || Lk <= 0 || H <= 0 || D <= 0)
        return 0;
    int64_t HD = H * D, rows = Lq < ATTN_ROWS ? Lq : ATTN_ROWS, units = B * H;
    int threads = thread_count();
    int64_t per_thread = 2 * rows * Lk + D * TILE_W;
    float *scratch = attn_scratch(per_thread * threads); /* per thread: p, ds [rows, Lk], pack [D, TILE_W] */
    if (!scratch)
        return -1;
    CPU_OMP(parallel num_threads(threads) if (units > 1 && B * H * Lq * Lk >= CPU_PAR_MIN))
    {
        float *p = scratch + (int64_t)thread_index() * per_thread, *ds = p + rows * Lk,
              *pack = ds + rows * Lk;
        CPU_OMP(for schedule(dynamic))
        for (int64_t u = 0; u < units; u++) {
            int64_t b = u / H, h = u % H;
            int64_t qo = b * Lq * HD + h * D, ko = b * Lk * HD + h * D; /* offsets of the head's slices */
            attn_backward_head(dq ? dq + qo : NULL, dk ? dk + ko : NULL, dv ? dv + ko : NULL, dout + qo,
                               q + qo, k + ko, v + ko, out + qo, lse + (b * H + h) * Lq, Lq, Lk, D, HD, rows,
                               scale, causal, p, ds, pack);
        }
    }
    free(scratch);
    return 0;
}

/* ---- row softmax --------------------------------------------------------------------------------------- */

void cpu_softmax_forward(float *out, const float *inp, int64_t N, int64_t C)
{
    /* out [N, C], inp [N, C]. Rows are independent: one thread per row, each summed in order. */
    if (C <= 0)
        return;
    CPU_OMP(parallel for schedule(static) if (N * C >= CPU_PAR_MIN))
    for (int64_t r = 0; r < N; r++)
        softmax_row(out + r * C, inp + r * C, C);
}

void cpu_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N, int64_t C)
{
    /* dinp [N, C] +=, dout [N, C], out [N, C]: dx = y * (dy - sum(dy * y)). */
    if (!dinp)
        return;
    CPU_OMP(parallel for schedule(static) if (N * C >= CPU_PAR_MIN))
    for (int64_t r = 0; r < N; r++) {
        const float *y = out + r * C, *dy = dout + r * C;
        float *dx = dinp + r * C;
        double dot = 0.0;
        for (int64_t c = 0; c < C; c++)
            dot += (double)dy[c] * (double)y[c];
        float dotf = (float)dot;
        for (int64_t c = 0; c < C; c++)
            dx[c] += y[c] * (dy[c] - dotf);
    }
}
