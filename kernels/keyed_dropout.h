/* The dropout masks of the LoRA adapters (models/adapter.c), shared by the CPU backend (C) and the CUDA
 * kernels (compiled as __host__ __device__ there) so that every backend drops the same elements.
 *
 * A draw is a pure function of its key and the element's index: no generator state, the same value for
 * the same coordinates on any device and any thread count. The caller derives one key per adapter, step
 * and kind of dropout (sdt_dropout_key); the op draws element i of a tensor from (key, i), or from
 * (key, cell) for a dropout that shares one draw between elements. Integer arithmetic only, and a float
 * made from 24 bits: exact on every device. */
#ifndef SDTUNE_KERNELS_KEYED_DROPOUT_H
#define SDTUNE_KERNELS_KEYED_DROPOUT_H

#include <stdint.h>

#if defined(__CUDACC__)
#define SDT_DROPOUT_FN static __host__ __device__ __forceinline__
#else
#define SDT_DROPOUT_FN static inline
#endif

/* splitmix64's output function (with its increment): a bijective 64-bit mix, so distinct inputs give
 * independent-looking outputs. */
SDT_DROPOUT_FN uint64_t sdt_dropout_mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The key of one stream of draws: (seed of the step, adapter index, stream number). */
SDT_DROPOUT_FN uint64_t sdt_dropout_key(uint64_t seed, uint64_t index, uint64_t stream)
{
    uint64_t key = sdt_dropout_mix64(sdt_dropout_mix64(seed) ^ index);
    return sdt_dropout_mix64(key ^ (stream * 0xD1B54A32D192ED03ull));
}

/* A uniform draw in [0, 1) with 24 random bits for element `element` of the stream `key`. */
SDT_DROPOUT_FN float sdt_dropout_uniform(uint64_t key, uint64_t element)
{
    return (float)(sdt_dropout_mix64(key + element) >> 40) * (1.0f / 16777216.0f);
}

/* The mask value of element i of a [B, ..., R] tensor with per_sample = numel / B values per sample:
 * element dropout p (kept values 1 / (1 - p), passed as keep) drawn per element, times rank dropout
 * rank_p (keep_rank) drawn once per (sample, rank channel). A probability of 0 switches its dropout off. */
SDT_DROPOUT_FN float sdt_dropout_mask_at(int64_t i, int64_t per_sample, int64_t rank, float p, float keep,
                                         uint64_t key, float rank_p, float keep_rank, uint64_t rank_key)
{
    float m = 1.0f;
    if (p > 0.0f)
        m = sdt_dropout_uniform(key, (uint64_t)i) < p ? 0.0f : keep;
    if (rank_p > 0.0f) {
        uint64_t cell = (uint64_t)((i / per_sample) * rank + i % rank);
        m *= sdt_dropout_uniform(rank_key, cell) < rank_p ? 0.0f : keep_rank;
    }
    return m;
}

#endif
