/* The data pipeline's random numbers: a seeded, counter-based generator. Every draw is a pure function of
 * (key, counter), and the key is derived from the seed and a few "stream" numbers (what the draws are for:
 * epoch, step, sample). So the random choices of one sample never depend on how many draws another sample
 * made, or in which order samples were loaded, and a resumed run repeats them exactly. No global state: a
 * generator is a small value owned by its caller. */
#ifndef SDTUNE_DATASET_RNG_H
#define SDTUNE_DATASET_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Domains keep the streams of different uses apart even when their other numbers coincide. */
enum {
    SDT_RNG_CAPTION = 1,        /* caption processing: (epoch, step, sample) */
    SDT_RNG_CROP = 2,           /* random_crop offsets: (epoch, sample) */
    SDT_RNG_BUCKET_SHUFFLE = 3, /* the order of samples within each bucket: (epoch, bucket) */
    SDT_RNG_BATCH_SHUFFLE = 4,  /* the order of batches within an epoch: (epoch) */
};

typedef struct sdt_ds_rng {
    uint64_t key;
    uint64_t counter;
} sdt_ds_rng;

/* splitmix64's output function: a bijective mix with full avalanche. */
static inline uint64_t sdt_ds_rng_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A generator for (seed, domain, a, b, c); the three numbers' meaning is up to the domain. Each is folded in
 * through the mix so that (a, b) and (b, a) give unrelated streams. */
static inline sdt_ds_rng sdt_ds_rng_make(uint64_t seed, uint64_t domain, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t k = sdt_ds_rng_mix(seed + 0x9E3779B97F4A7C15ull);
    k = sdt_ds_rng_mix(k ^ (domain + 0x632BE59BD9B4E019ull));
    k = sdt_ds_rng_mix(k ^ (a + 0x8CB92BA72F3D8DD7ull));
    k = sdt_ds_rng_mix(k ^ (b + 0xA0761D6478BD642Full));
    k = sdt_ds_rng_mix(k ^ (c + 0xE7037ED1A0B428DBull));
    sdt_ds_rng r = {k, 0};
    return r;
}

static inline uint64_t sdt_ds_rng_next(sdt_ds_rng *r)
{
    uint64_t x = r->key + (++r->counter) * 0x9E3779B97F4A7C15ull;
    return sdt_ds_rng_mix(x);
}

/* Uniform in [0, 1) with 53 random bits (like Python's random.random()). */
static inline double sdt_ds_rng_uniform(sdt_ds_rng *r)
{
    return (double)(sdt_ds_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), without modulo bias (rejection); n = 0 gives 0. */
static inline uint64_t sdt_ds_rng_below(sdt_ds_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* draws at or above this would favour small values */
    for (;;) {
        uint64_t x = sdt_ds_rng_next(r);
        if (x < limit)
            return x % n;
    }
}

/* Uniform integer in [lo, hi] inclusive (Python's random.randint); hi < lo gives lo. */
static inline int64_t sdt_ds_rng_int_inclusive(sdt_ds_rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)sdt_ds_rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* Fisher-Yates from the end, as Python's random.shuffle walks. */
static inline void sdt_ds_rng_shuffle_size(sdt_ds_rng *r, size_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)sdt_ds_rng_below(r, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

#endif
