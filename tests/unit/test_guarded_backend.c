/* The guarded test backend: the CPU ops through upload and download, the engine's device checks refusing
 * host buffers, page accounting, and the point of it all: host code touching its memory between ops
 * faults. */
#define _DEFAULT_SOURCE /* fork, waitpid */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"

static sdt_engine *guarded_engine(test_state *t)
{
    sdt_engine_options options = {.device = SDT_DEVICE_GUARDED, .threads = 1};
    sdt_engine *e = NULL;
    char *error = NULL;
    CHECK_MSG(t, sdt_engine_create(&options, &e, &error) == 0, "%s", error ? error : "");
    free(error);
    return e;
}

/* A tensor of the engine's device over n floats it allocated. */
static sdt_tensor device_vector(sdt_engine *e, int64_t n)
{
    sdt_tensor v = sdt_tensor_view(sdt_engine_alloc(e, (size_t)n * sizeof(float)), SDT_F32, 1, &n);
    v.device = sdt_engine_device(e);
    return v;
}

static void test_ops_through_copies(test_state *t)
{
    sdt_engine *e = guarded_engine(t);
    if (!e)
        return;
    CHECK(t, strcmp(sdt_engine_backend_name(e), "guarded") == 0);
    CHECK(t, sdt_engine_device(e) == SDT_DEVICE_GUARDED);
    sdt_tensor x = device_vector(e, 5), y = device_vector(e, 5); /* [5] each */
    CHECK(t, x.data && y.data);
    float xs[5] = {1, 2, 3, 4, 5}, ys[5];
    CHECK(t, sdt_engine_upload(e, &x, xs, sizeof xs) == 0);
    CHECK(t, sdt_fill(e, &y, 10.0f) == 0);
    CHECK(t, sdt_axpy(e, &y, 2.0f, &x) == 0);
    CHECK(t, sdt_engine_download(e, ys, &y, sizeof ys) == 0);
    for (int i = 0; i < 5; i++)
        CHECK_MSG(t, ys[i] == 10.0f + 2.0f * xs[i], "y[%d] = %g", i, ys[i]);

    /* A host buffer handed to a guarded op is a bug the checks name, as on a GPU. */
    float host[5] = {0};
    sdt_tensor h = sdt_tensor_view(host, SDT_F32, 1, (int64_t[]){5});
    CHECK(t, sdt_axpy(e, &y, 1.0f, &h) == -1);
    CHECK_STR_CONTAINS(t, sdt_engine_error(e), "is on the CPU but the engine runs on the guarded device");
    sdt_engine_dealloc(e, x.data);
    sdt_engine_dealloc(e, y.data);
    sdt_engine_free(e);
}

static void test_page_accounting(test_state *t)
{
    sdt_engine *e = guarded_engine(t);
    if (!e)
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *a = sdt_engine_alloc(e, 1), *b = sdt_engine_alloc(e, page + 1);
    CHECK(t, a && b && (uintptr_t)a % page == 0 && (uintptr_t)b % page == 0);
    CHECK(t, sdt_engine_live_bytes(e) == 3 * page);
    sdt_engine_dealloc(e, b);
    CHECK(t, sdt_engine_live_bytes(e) == page && sdt_engine_peak_bytes(e) == 3 * page);
    sdt_engine_dealloc(e, a);
    CHECK(t, sdt_engine_live_bytes(e) == 0);
    sdt_engine_free(e);
}

/* A child writes to device memory between two ops: it must not survive the write. A plain build sees
 * SIGSEGV; under AddressSanitizer its own SEGV handler reports and exits non-zero instead. */
static void test_host_access_faults(test_state *t)
{
    sdt_engine *e = guarded_engine(t);
    if (!e)
        return;
    sdt_tensor x = device_vector(e, 4); /* [4] */
    CHECK(t, sdt_fill(e, &x, 1.0f) == 0);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        /* The expected crash report (AddressSanitizer's) is not the test's output. */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        ((volatile float *)x.data)[0] = 2.0f;
        _exit(0);
    }
    int status = 0;
    CHECK(t, child > 0 && waitpid(child, &status, 0) == child);
#ifdef SDTUNE_SANITIZED_BUILD
    CHECK_MSG(t, !(WIFEXITED(status) && WEXITSTATUS(status) == 0), "the host write went through");
#else
    CHECK_MSG(t, WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
              "the host write went through (status %d)", status);
#endif
    /* The parent's own ops still see the value the op wrote. */
    float got = 0;
    CHECK(t, sdt_engine_download(e, &got, &x, sizeof got) == 0 && got == 1.0f);
    sdt_engine_dealloc(e, x.data);
    sdt_engine_free(e);
}

/* The guarded and CPU engines report the host's memory (MemAvailable of MemTotal). */
static void test_memory_info(test_state *t)
{
    sdt_engine *g = guarded_engine(t);
    sdt_engine_options options = {.device = SDT_DEVICE_CPU, .threads = 1};
    sdt_engine *c = NULL;
    CHECK(t, sdt_engine_create(&options, &c, NULL) == 0);
    sdt_engine *engines[2] = {g, c};
    for (int i = 0; i < 2; i++) {
        size_t free_bytes = 0, total = 0;
        if (!engines[i])
            continue;
        CHECK_MSG(t, sdt_engine_memory_info(engines[i], &free_bytes, &total) == 0, "%s",
                  sdt_engine_error(engines[i]));
        CHECK_MSG(t, free_bytes > 0 && total >= free_bytes, "free %zu of %zu", free_bytes, total);
    }
    sdt_engine_free(g);
    sdt_engine_free(c);
}

TEST_MAIN("guarded_backend", TEST(test_memory_info), TEST(test_ops_through_copies),
          TEST(test_page_accounting), TEST(test_host_access_faults))
