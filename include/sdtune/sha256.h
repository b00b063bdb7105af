/* SHA-256 (FIPS 180-4), streaming. Used for kohya's model hashes (sshs_model_hash, sshs_legacy_hash). */
#ifndef SDTUNE_SHA256_H
#define SDTUNE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_sha256 {
    uint32_t state[8];
    uint64_t length;   /* bytes hashed so far */
    uint8_t block[64]; /* pending input */
    size_t block_used;
} sdt_sha256;

void sdt_sha256_init(sdt_sha256 *h);
void sdt_sha256_update(sdt_sha256 *h, const void *data, size_t len);
/* Writes the 32-byte digest; h must be initialised again before reuse. */
void sdt_sha256_final(sdt_sha256 *h, uint8_t digest[32]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sdt_sha256_digest_hex(const uint8_t digest[32], char hex[65]);
/* One-shot: the digest of data as 64 lowercase hex digits and a NUL in hex[65]. */
void sdt_sha256_hex(const void *data, size_t len, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
