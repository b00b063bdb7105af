/* A minimal test harness: CHECK records a failure with its place and goes on, so one run reports every
 * broken expectation; TEST_MAIN runs the listed test functions and exits non-zero on any failure. */
#ifndef SDTUNE_TEST_CHECK_H
#define SDTUNE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct test_state {
    int checks, failures;
} test_state;

#define CHECK(t, cond)                                                                                       \
    do {                                                                                                     \
        (t)->checks++;                                                                                       \
        if (!(cond)) {                                                                                       \
            (t)->failures++;                                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                         \
        }                                                                                                    \
    } while (0)

#define CHECK_MSG(t, cond, ...)                                                                              \
    do {                                                                                                     \
        (t)->checks++;                                                                                       \
        if (!(cond)) {                                                                                       \
            (t)->failures++;                                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                         \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
        }                                                                                                    \
    } while (0)

#define CHECK_STR_CONTAINS(t, haystack, needle)                                                              \
    CHECK_MSG(t, (haystack) && strstr((haystack), (needle)), "\"%s\" does not contain \"%s\"",               \
              (haystack) ? (haystack) : "(null)", (needle))

typedef void (*test_fn)(test_state *t);
typedef struct test_case {
    const char *name;
    test_fn fn;
} test_case;

#define TEST(fn)                                                                                             \
    {                                                                                                        \
#fn, fn                                                                                              \
    }

static inline int run_tests(const char *suite, const test_case *cases, size_t n)
{
    test_state t = {0, 0};
    for (size_t i = 0; i < n; i++) {
        int before = t.failures;
        cases[i].fn(&t);
        printf("%s %s.%s\n", t.failures == before ? "ok  " : "FAIL", suite, cases[i].name);
    }
    printf("%s: %d checks, %d failed\n", suite, t.checks, t.failures);
    return t.failures ? 1 : 0;
}

#define TEST_MAIN(suite, ...)                                                                                \
    int main(void)                                                                                           \
    {                                                                                                        \
        static const test_case cases[] = {__VA_ARGS__};                                                      \
        return run_tests(suite, cases, sizeof cases / sizeof cases[0]);                                      \
    }

#endif
