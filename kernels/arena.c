/* The arena planner: offsets per lifetime class, one allocation per class, a MiB report. */
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "backend_impl.h"

const char *sdt_lifetime_name(sdt_lifetime life)
{
    static const char *const names[SDT_LIFE_COUNT] = {
        "frozen weights", "trainable weights", "gradients", "optimizer state", "saved activations", "scratch",
    };
    return (unsigned)life < SDT_LIFE_COUNT ? names[life] : "?";
}

/* Bytes of one spec, or -1 on overflow or a bad spec (with *error set). */
static int spec_bytes(const sdt_tensor_spec *spec, size_t *bytes, char **error)
{
    const char *name = spec->name ? spec->name : "(unnamed)";
    if ((unsigned)spec->life >= SDT_LIFE_COUNT) {
        *error = sdt_format("tensor \"%s\": unknown lifetime class %d", name, (int)spec->life);
        return -1;
    }
    if (!sdt_dtype_is_weight(spec->dtype)) {
        *error = sdt_format("tensor \"%s\": %s is not a compute dtype (f32, f16, bf16) or F8_E4M3 (frozen "
                            "weights)",
                            name, sdt_dtype_name(spec->dtype));
        return -1;
    }
    if (spec->ndim < 0 || spec->ndim > SDT_MAX_DIMS) {
        *error = sdt_format("tensor \"%s\": rank %d is outside 0..%d", name, spec->ndim, SDT_MAX_DIMS);
        return -1;
    }
    size_t count = 1;
    for (int i = 0; i < spec->ndim; i++) {
        if (spec->shape[i] < 0) {
            *error = sdt_format("tensor \"%s\": dimension %d is negative (%lld)", name, i,
                                (long long)spec->shape[i]);
            return -1;
        }
        size_t dim = (size_t)spec->shape[i];
        if (dim && count > SIZE_MAX / 8 / dim) {
            *error = sdt_format("tensor \"%s\": its size overflows", name);
            return -1;
        }
        count *= dim;
    }
    *bytes = count * sdt_dtype_bits(spec->dtype) / 8;
    return 0;
}

int sdt_arena_plan_build(sdt_arena_plan *plan, const sdt_tensor_spec *specs, size_t count, char **error)
{
    memset(plan, 0, sizeof *plan);
    plan->offsets = calloc(count ? count : 1, sizeof *plan->offsets);
    if (!plan->offsets) {
        *error = sdt_strdup("out of memory planning the arenas");
        return -1;
    }
    plan->specs = specs;
    plan->count = count;
    for (size_t i = 0; i < count; i++) {
        size_t bytes;
        if (spec_bytes(&specs[i], &bytes, error) != 0) {
            sdt_arena_plan_free(plan);
            return -1;
        }
        sdt_lifetime life = specs[i].life;
        size_t offset = plan->bytes[life];
        size_t padded = (bytes + SDT_ARENA_ALIGN - 1) / SDT_ARENA_ALIGN * SDT_ARENA_ALIGN;
        if (padded < bytes || offset > SIZE_MAX - padded) {
            *error = sdt_format("tensor \"%s\": the %s arena overflows", specs[i].name ? specs[i].name : "?",
                                sdt_lifetime_name(life));
            sdt_arena_plan_free(plan);
            return -1;
        }
        plan->offsets[i] = offset;
        plan->bytes[life] = offset + padded;
        plan->tensors[life]++;
    }
    return 0;
}

void sdt_arena_plan_free(sdt_arena_plan *plan)
{
    free(plan->offsets);
    memset(plan, 0, sizeof *plan);
}

size_t sdt_arena_plan_total(const sdt_arena_plan *plan)
{
    size_t total = 0;
    for (int life = 0; life < SDT_LIFE_COUNT; life++)
        total += plan->bytes[life];
    return total;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

void sdt_arena_plan_report(const sdt_arena_plan *plan, sdt_buf *out)
{
    size_t tensors = 0;
    for (int life = 0; life < SDT_LIFE_COUNT; life++) {
        tensors += plan->tensors[life];
        if (plan->bytes[life] == 0 && plan->tensors[life] == 0)
            continue;
        sdt_buf_printf(out, "  %-18s %10.2f MiB %6zu tensors\n", sdt_lifetime_name((sdt_lifetime)life),
                       mib(plan->bytes[life]), plan->tensors[life]);
    }
    sdt_buf_printf(out, "  %-18s %10.2f MiB %6zu tensors\n", "total", mib(sdt_arena_plan_total(plan)),
                   tensors);
}

int sdt_arenas_alloc(sdt_engine *e, const sdt_arena_plan *plan, sdt_arenas *arenas, char **error)
{
    memset(arenas, 0, sizeof *arenas);
    for (int life = 0; life < SDT_LIFE_COUNT; life++) {
        if (plan->bytes[life] == 0)
            continue;
        arenas->block[life] = sdt_engine_alloc(e, plan->bytes[life]);
        if (!arenas->block[life]) {
            *error = sdt_format("out of %s memory: the %s arena needs %.2f MiB",
                                e->options.device == SDT_DEVICE_CUDA ? "GPU" : "host",
                                sdt_lifetime_name((sdt_lifetime)life), mib(plan->bytes[life]));
            sdt_arenas_free(e, arenas);
            return -1;
        }
        arenas->bytes[life] = plan->bytes[life];
    }
    for (size_t i = 0; i < plan->count; i++) {
        const sdt_tensor_spec *spec = &plan->specs[i];
        if (!spec->bind)
            continue;
        sdt_tensor *t = spec->bind;
        *t = sdt_tensor_view(NULL, spec->dtype, spec->ndim, spec->shape);
        t->device = e->options.device;
        if (sdt_tensor_numel(t) > 0)
            t->data = (char *)arenas->block[spec->life] + plan->offsets[i];
    }
    /* Scratch specs only reserve room: the stack starts empty (scratch_top 0 from the memset above). */
    return 0;
}

void sdt_arenas_free(sdt_engine *e, sdt_arenas *arenas)
{
    for (int life = 0; life < SDT_LIFE_COUNT; life++)
        sdt_engine_dealloc(e, arenas->block[life]);
    memset(arenas, 0, sizeof *arenas);
}

size_t sdt_scratch_mark(const sdt_arenas *arenas) { return arenas->scratch_top; }

void *sdt_scratch_take(sdt_engine *e, sdt_arenas *arenas, size_t bytes)
{
    size_t padded = (bytes + SDT_ARENA_ALIGN - 1) / SDT_ARENA_ALIGN * SDT_ARENA_ALIGN;
    size_t capacity = arenas->bytes[SDT_LIFE_SCRATCH];
    if (padded < bytes || padded > capacity - arenas->scratch_top) {
        sdt_engine_fail(e,
                        "scratch arena exhausted: %zu bytes asked, %zu of %zu in use (the plan reserved too "
                        "little scratch)",
                        bytes, arenas->scratch_top, capacity);
        return NULL;
    }
    void *ptr = (char *)arenas->block[SDT_LIFE_SCRATCH] + arenas->scratch_top;
    arenas->scratch_top += padded;
    return ptr;
}

void sdt_scratch_release(sdt_arenas *arenas, size_t mark)
{
    if (mark <= arenas->scratch_top)
        arenas->scratch_top = mark;
}
