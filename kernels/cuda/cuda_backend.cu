// The CUDA backend's table and its plumbing: the engine's state (device, stream, memory pool, library
// handles, workspace), device memory, host <-> device copies and synchronisation. The ops live in the other
// cuda_*.cu files; this file only puts their entry points in the table.
//
// Every op is queued on the one stream of cuda_state and returns as soon as its work is queued; a fault in
// a kernel shows at the next synchronising call (download, sync), which turns it into the engine's error.
//
// Device memory is counted per engine, as the CPU backend counts its blocks: every block the backend
// allocates (the engine's tensors, the GEMM/conv staging buffers, the library workspace) adds its size,
// rounded up to the allocator's 256-byte alignment, to sdt_engine_live_bytes and the peak, and its free
// takes it off. A table of live blocks gives the size at free (cuda_track_*). Counting here rather than
// reading the pool's cudaMemPoolAttrUsedMemCurrent / UsedMemHigh: the pool is the device's default pool,
// shared with any other engine or library in the process, its high mark can only be reset to zero (not
// to what is live, as sdt_engine_reset_peak does), and the counters stay those backend.c keeps for every
// backend. A block counts as freed when its cudaFreeAsync is queued: on the one stream every later
// allocation is ordered after that free, so the pool can hand the memory out again from then on. Not
// counted: the CUDA context, the library handles' own memory and the pool's reserve (freed blocks it
// keeps); cudaMemGetInfo sees those (docs/cuda.md, "Peak memory").
#include <cstdint>
#include <cstdlib>

#include "cuda_internal.h"

// ---- device memory accounting ------------------------------------------------------------------------

namespace
{

constexpr size_t CUDA_ALLOC_ALIGN = 256; // cudaMallocAsync's minimum alignment: the counting granularity
constexpr size_t BLOCK_TABLE_MIN = 1024; // slots of the first table (a UNet session holds a few hundred)

size_t counted_bytes(size_t bytes)
{
    return (bytes + CUDA_ALLOC_ALIGN - 1) / CUDA_ALLOC_ALIGN * CUDA_ALLOC_ALIGN;
}

// splitmix64's finaliser: block addresses share their low bits (alignment) and often their high bits.
size_t block_slot(uintptr_t ptr, size_t capacity)
{
    uint64_t x = uint64_t(ptr);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return size_t(x ^ (x >> 31)) & (capacity - 1);
}

void block_insert(uintptr_t *ptrs, size_t *bytes, size_t capacity, uintptr_t ptr, size_t size)
{
    size_t i = block_slot(ptr, capacity);
    while (ptrs[i] != 0)
        i = (i + 1) & (capacity - 1);
    ptrs[i] = ptr;
    bytes[i] = size;
}

// Doubles the table (or makes the first one); host memory only here, amortised over the allocations.
int block_table_grow(cuda_state *s)
{
    size_t capacity = s->block_capacity ? s->block_capacity * 2 : BLOCK_TABLE_MIN;
    uintptr_t *ptrs = static_cast<uintptr_t *>(std::calloc(capacity, sizeof *ptrs)); // [capacity]
    size_t *bytes = static_cast<size_t *>(std::calloc(capacity, sizeof *bytes));     // [capacity]
    if (!ptrs || !bytes) {
        std::free(ptrs);
        std::free(bytes);
        return -1;
    }
    for (size_t i = 0; i < s->block_capacity; i++)
        if (s->block_ptrs[i] != 0)
            block_insert(ptrs, bytes, capacity, s->block_ptrs[i], s->block_bytes[i]);
    std::free(s->block_ptrs);
    std::free(s->block_bytes);
    s->block_ptrs = ptrs;
    s->block_bytes = bytes;
    s->block_capacity = capacity;
    return 0;
}

void count_live(sdt_engine *e, size_t bytes)
{
    e->live_bytes += bytes;
    if (e->live_bytes > e->peak_bytes)
        e->peak_bytes = e->live_bytes;
}

} // namespace

int cuda_track_alloc(cuda_state *s, void *ptr, size_t bytes)
{
    if (2 * (s->block_count + 1) > s->block_capacity && block_table_grow(s) != 0)
        return sdt_engine_fail(s->engine, "CUDA device %d: out of host memory for the block table",
                               s->device);
    size_t size = counted_bytes(bytes ? bytes : 1);
    block_insert(s->block_ptrs, s->block_bytes, s->block_capacity, uintptr_t(ptr), size);
    s->block_count++;
    count_live(s->engine, size);
    return 0;
}

void cuda_track_free(cuda_state *s, void *ptr)
{
    if (!ptr || s->block_count == 0)
        return;
    size_t mask = s->block_capacity - 1, i = block_slot(uintptr_t(ptr), s->block_capacity);
    while (s->block_ptrs[i] != uintptr_t(ptr)) {
        if (s->block_ptrs[i] == 0)
            return; // not a block of this table
        i = (i + 1) & mask;
    }
    s->engine->live_bytes -= s->block_bytes[i];
    s->block_count--;
    // Backward-shift deletion: each later entry of the run moves into the hole when its home slot is not
    // after the hole, so every remaining entry stays reachable from its home without tombstones.
    for (size_t j = (i + 1) & mask; s->block_ptrs[j] != 0; j = (j + 1) & mask) {
        size_t home = block_slot(s->block_ptrs[j], s->block_capacity);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->block_ptrs[i] = s->block_ptrs[j];
            s->block_bytes[i] = s->block_bytes[j];
            i = j;
        }
    }
    s->block_ptrs[i] = 0;
}

namespace
{

// Frees whatever init made, in reverse order; every member may still be empty (a failed init). The device
// must be current.
void destroy_state(cuda_state *s)
{
    if (!s)
        return;
    if (s->stream)
        cudaStreamSynchronize(s->stream); // nothing queued may still use what is freed below
    // The plan caches belong to cuda_gemm.cu and cuda_conv.cu; they are made on first use, so a state that
    // never ran a GEMM or a convolution has none to free.
    if (s->gemm_plans)
        cuda_gemm_plans_free(s);
    if (s->conv_plans)
        cuda_conv_plans_free(s);
    if (s->workspace) {
        cudaFree(s->workspace);
        s->engine->live_bytes -= s->workspace_bytes;
    }
    if (s->dnn)
        cudnnDestroy(s->dnn);
    if (s->lt)
        cublasLtDestroy(s->lt);
    if (s->stream)
        cudaStreamDestroy(s->stream);
    // The pool keeps freed blocks (release threshold UINT64_MAX); hand them back to the driver now that
    // this engine, their only user, is gone.
    if (s->pool)
        cudaMemPoolTrimTo(s->pool, 0);
    std::free(s->block_ptrs);
    std::free(s->block_bytes);
    std::free(s);
}

// init's failure path: the message names the device and the call, the partial state is freed.
int init_fail(sdt_engine *e, cuda_state *s, const char *what, const char *why)
{
    int device = e->options.device_index;
    destroy_state(s);
    e->backend_state = nullptr;
    return sdt_engine_fail(e, "CUDA device %d: %s: %s", device, what, why);
}

#define INIT_CUDA(call)                                                                                      \
    do {                                                                                                     \
        cudaError_t rc_ = (call);                                                                            \
        if (rc_ != cudaSuccess) {                                                                            \
            cudaGetLastError(); /* clear a non-sticky error so later calls start clean */                    \
            return init_fail(e, s, #call, cudaGetErrorString(rc_));                                          \
        }                                                                                                    \
    } while (0)

// cublasLtGetStatusString: the build links cuBLASLt only (cublasGetStatusString lives in cuBLAS).
#define INIT_CUBLAS(call)                                                                                    \
    do {                                                                                                     \
        cublasStatus_t rc_ = (call);                                                                         \
        if (rc_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            return init_fail(e, s, #call, cublasLtGetStatusString(rc_));                                     \
    } while (0)

#define INIT_CUDNN(call)                                                                                     \
    do {                                                                                                     \
        cudnnStatus_t rc_ = (call);                                                                          \
        if (rc_ != CUDNN_STATUS_SUCCESS)                                                                     \
            return init_fail(e, s, #call, cudnnGetErrorString(rc_));                                         \
    } while (0)

int cuda_init(sdt_engine *e)
{
    // Host memory once per engine: the state itself. Every member starts empty so that destroy_state can
    // free a partial one.
    cuda_state *s = static_cast<cuda_state *>(std::calloc(1, sizeof(cuda_state)));
    if (!s)
        return sdt_engine_fail(e, "CUDA device %d: out of host memory for the backend state",
                               e->options.device_index);
    e->backend_state = s;
    s->engine = e;
    s->device = e->options.device_index;

    int count = 0;
    INIT_CUDA(cudaGetDeviceCount(&count));
    if (s->device < 0 || s->device >= count) {
        destroy_state(s);
        e->backend_state = nullptr;
        return sdt_engine_fail(e, "CUDA device %d: no such device (%d found)", e->options.device_index,
                               count);
    }
    INIT_CUDA(cudaSetDevice(s->device));
    INIT_CUDA(cudaDeviceGetAttribute(&s->sm_count, cudaDevAttrMultiProcessorCount, s->device));

    // Non-blocking: the stream never waits on the legacy default stream, which other code in the process
    // (a library, a debugger) might use.
    INIT_CUDA(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));

    // Stream-ordered allocations come from the device's default pool. With the release threshold at its
    // maximum the pool keeps every freed block instead of returning it at each synchronisation, so the
    // models' per-step activations reuse the same memory from the second step on.
    INIT_CUDA(cudaDeviceGetDefaultMemPool(&s->pool, s->device));
    uint64_t threshold = UINT64_MAX;
    INIT_CUDA(cudaMemPoolSetAttribute(s->pool, cudaMemPoolAttrReleaseThreshold, &threshold));

    INIT_CUBLAS(cublasLtCreate(&s->lt));
    INIT_CUDNN(cudnnCreate(&s->dnn));
    INIT_CUDNN(cudnnSetStream(s->dnn, s->stream));

    // The workspace lives as long as the engine: a plain allocation, outside the pool.
    // Counted in the engine's live bytes (it is device memory the engine holds), not in the block table.
    INIT_CUDA(cudaMalloc(&s->workspace, CUDA_WORKSPACE_BYTES));
    s->workspace_bytes = CUDA_WORKSPACE_BYTES;
    count_live(e, s->workspace_bytes);
    s->gemm_plans = nullptr;
    s->conv_plans = nullptr;
    return 0;
}

void cuda_shutdown(sdt_engine *e)
{
    cuda_state *s = cuda_of(e);
    if (!s)
        return;
    cudaSetDevice(s->device); // the plans and handles belong to this device
    destroy_state(s);
    e->backend_state = nullptr;
}

void *cuda_alloc(sdt_engine *e, size_t bytes)
{
    cuda_state *s = cuda_of(e);
    // Zero bytes still get a real (smallest) block, as on the CPU, so callers can tell success by non-NULL.
    void *ptr = nullptr;
    cudaError_t rc = cudaMallocAsync(&ptr, bytes ? bytes : 256, s->stream);
    if (rc != cudaSuccess) {
        cudaGetLastError(); // an out-of-memory is not sticky: clear it so the next launch check is clean
        sdt_engine_fail(e, "CUDA device %d: cannot allocate %zu bytes: %s", s->device, bytes,
                        cudaGetErrorString(rc));
        return nullptr;
    }
    if (cuda_track_alloc(s, ptr, bytes ? bytes : 256) != 0) {
        cudaFreeAsync(ptr, s->stream);
        return nullptr;
    }
    return ptr;
}

void cuda_dealloc(sdt_engine *e, void *ptr)
{
    // Stream-ordered: the block returns to the pool once the work queued so far (which may still read it)
    // is done, without waiting here.
    if (ptr) {
        cuda_track_free(cuda_of(e), ptr);
        cudaFreeAsync(ptr, cuda_of(e)->stream);
    }
}

// A failed synchronisation: the error of some earlier queued kernel or copy. Faults such as an illegal
// address are sticky (every later call fails the same way); a message that says so beats a bare string.
int sync_fail(sdt_engine *e, const char *what, cudaError_t rc)
{
    return sdt_engine_fail(e,
                           "CUDA device %d: %s: %s (%s); it may come from any op queued before this point "
                           "(run with CUDA_LAUNCH_BLOCKING=1 to find which)",
                           cuda_of(e)->device, what, cudaGetErrorString(rc), cudaGetErrorName(rc));
}

int cuda_upload(sdt_engine *e, void *dst, const void *host, size_t bytes)
{
    // dst [bytes] on the device, host [bytes] pageable host memory.
    cuda_state *s = cuda_of(e);
    if (bytes == 0)
        return 0;
    cudaError_t rc = cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, s->stream);
    if (rc != cudaSuccess)
        return sync_fail(e, "upload", rc);
    // Callers reuse or free the host buffer as soon as upload returns; pageable copies are staged by the
    // driver, but pinned buffers would be read later, so waiting is the only rule that is always safe.
    rc = cudaStreamSynchronize(s->stream);
    if (rc != cudaSuccess)
        return sync_fail(e, "upload", rc);
    return 0;
}

int cuda_download(sdt_engine *e, void *host, const void *src, size_t bytes)
{
    // host [bytes] pageable host memory, src [bytes] on the device. Waits: the caller reads host next.
    cuda_state *s = cuda_of(e);
    if (bytes == 0)
        return 0;
    cudaError_t rc = cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, s->stream);
    if (rc != cudaSuccess)
        return sync_fail(e, "download", rc);
    rc = cudaStreamSynchronize(s->stream);
    if (rc != cudaSuccess)
        return sync_fail(e, "download", rc);
    return 0;
}

int cuda_sync(sdt_engine *e)
{
    cudaError_t rc = cudaStreamSynchronize(cuda_of(e)->stream);
    if (rc != cudaSuccess)
        return sync_fail(e, "sync", rc);
    return 0;
}

// The device's free memory as cudaMemGetInfo sees it, plus what the stream-ordered pool holds without
// using (freed blocks it keeps for reuse, release threshold UINT64_MAX): both can take new allocations.
int cuda_memory_info(sdt_engine *e, size_t *free_bytes, size_t *total_bytes)
{
    cuda_state *s = cuda_of(e);
    CUDA_TRY(e, cudaMemGetInfo(free_bytes, total_bytes));
    uint64_t reserved = 0, used = 0;
    CUDA_TRY(e, cudaMemPoolGetAttribute(s->pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
    CUDA_TRY(e, cudaMemPoolGetAttribute(s->pool, cudaMemPoolAttrUsedMemCurrent, &used));
    if (reserved > used)
        *free_bytes += size_t(reserved - used);
    return 0;
}

// Built field by field by name: many slots share a signature (fill and scale, the forward ops of two
// tensors), so a positional initializer could swap two of them without a compiler error.
constexpr sdt_backend_ops make_cuda_ops()
{
    sdt_backend_ops t{};
    t.name = "cuda";
    t.init = cuda_init;
    t.shutdown = cuda_shutdown;
    t.alloc = cuda_alloc;
    t.dealloc = cuda_dealloc;
    t.upload = cuda_upload;
    t.download = cuda_download;
    t.sync = cuda_sync;
    t.memory_info = cuda_memory_info;
    t.linear_forward = cuda_linear_forward;
    t.linear_backward = cuda_linear_backward;
    t.conv2d_forward = cuda_conv2d_forward;
    t.conv2d_backward = cuda_conv2d_backward;
    t.group_norm_forward = cuda_group_norm_forward;
    t.group_norm_backward = cuda_group_norm_backward;
    t.layer_norm_forward = cuda_layer_norm_forward;
    t.layer_norm_backward = cuda_layer_norm_backward;
    t.attention_forward = cuda_attention_forward;
    t.attention_backward = cuda_attention_backward;
    t.softmax_forward = cuda_softmax_forward;
    t.softmax_backward = cuda_softmax_backward;
    t.activation_forward = cuda_activation_forward;
    t.activation_backward = cuda_activation_backward;
    t.geglu_forward = cuda_geglu_forward;
    t.geglu_backward = cuda_geglu_backward;
    t.add_forward = cuda_add_forward;
    t.add_backward = cuda_add_backward;
    t.add_channel_vector_forward = cuda_add_channel_vector_forward;
    t.add_channel_vector_backward = cuda_add_channel_vector_backward;
    t.concat_forward = cuda_concat_forward;
    t.concat_backward = cuda_concat_backward;
    t.upsample2x_forward = cuda_upsample2x_forward;
    t.upsample2x_backward = cuda_upsample2x_backward;
    t.timestep_embedding = cuda_timestep_embedding;
    t.mse_loss_forward = cuda_mse_loss_forward;
    t.mse_loss_backward = cuda_mse_loss_backward;
    t.fill = cuda_fill;
    t.scale = cuda_scale;
    t.axpy = cuda_axpy;
    t.copy = cuda_copy;
    t.optimizer_update = cuda_optimizer_update;
    t.sum_squares = cuda_sum_squares;
    t.dropout_scale = cuda_dropout_scale;
    return t;
}

// Constant-initialised: no constructor runs at load time.
constexpr sdt_backend_ops cuda_ops_table = make_cuda_ops();

} // namespace

extern "C" const sdt_backend_ops *sdt_cuda_backend_ops(void) { return &cuda_ops_table; }
