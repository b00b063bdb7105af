/* SHA-256 against the FIPS 180-4 examples and digests computed by Python's hashlib: the padding edges
 * (55, 56 and 64 bytes), a million bytes, and streaming in uneven pieces equal to one call. */
#include "check.h"
#include "sdtune/sha256.h"

static void check_digest(test_state *t, const void *data, size_t len, const char *expected)
{
    char hex[65];
    sdt_sha256_hex(data, len, hex);
    CHECK_MSG(t, strcmp(hex, expected) == 0, "%zu bytes: %s, expected %s", len, hex, expected);
}

static void fips_examples(test_state *t)
{
    check_digest(t, "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_digest(t, "abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_digest(t, two_blocks, strlen(two_blocks),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void padding_edges(test_state *t)
{
    char a[64];
    memset(a, 'a', sizeof a);
    check_digest(t, a, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    check_digest(t, a, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    check_digest(t, a, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

static void million_and_streaming(test_state *t)
{
    size_t n = 1000000;
    char *a = malloc(n);
    CHECK(t, a != NULL);
    if (!a)
        return;
    memset(a, 'a', n);
    check_digest(t, a, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* The same bytes fed in pieces of 1, 2, 3, ... bytes. */
    sdt_sha256 h;
    uint8_t digest[32];
    char hex[65];
    sdt_sha256_init(&h);
    size_t done = 0;
    for (size_t piece = 1; done < n; piece = piece % 200 + 1) {
        size_t take = n - done < piece ? n - done : piece;
        sdt_sha256_update(&h, a + done, take);
        done += take;
    }
    sdt_sha256_final(&h, digest);
    sdt_sha256_digest_hex(digest, hex);
    CHECK_MSG(t, strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0, "%s",
              hex);
    free(a);

    uint8_t bytes[2560];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)i;
    check_digest(t, bytes, sizeof bytes, "e392378f849d67bbb1a7bbec84f1098ae3faa751049c009a850130ce6073d91a");
}

TEST_MAIN("sha256", TEST(fips_examples), TEST(padding_edges), TEST(million_and_streaming))
