/* Device discovery and selection, the context, and the kernel program with
 * its disk cache. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cl_internal.h"

extern const char tsr_kernel_source[]; /* generated from the .cl files in kernels/ */

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

typedef struct {
    cl_platform_id platform;
    cl_device_id device;
} dev_ref;

static int list_refs(dev_ref *refs, int max, tsr_error *err)
{
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    cl_int e = clGetPlatformIDs(MAX_PLATFORMS, plats, &np);
    if (e == CL_PLATFORM_NOT_FOUND_KHR || (e == CL_SUCCESS && np == 0)) {
        tsr_error_set(err, TSR_ERR_NO_DEVICE,
                      "no OpenCL platform found (install an ICD such as pocl-opencl-icd, "
                      "or your GPU vendor's OpenCL driver)");
        return -1;
    }
    if (e != CL_SUCCESS) {
        tsr_cl_fail(err, e, "clGetPlatformIDs");
        return -1;
    }
    int n = 0;
    for (cl_uint p = 0; p < np && p < MAX_PLATFORMS; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd && n < max; d++) {
            refs[n].platform = plats[p];
            refs[n].device = devs[d];
            n++;
        }
    }
    if (n == 0) {
        tsr_error_set(err, TSR_ERR_NO_DEVICE, "OpenCL platforms exist but expose no device");
        return -1;
    }
    return n;
}

static void fill_info(const dev_ref *r, int index, tsr_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->index = index;
    clGetDeviceInfo(r->device, CL_DEVICE_NAME, sizeof info->name - 1, info->name, NULL);
    clGetPlatformInfo(r->platform, CL_PLATFORM_NAME, sizeof info->platform - 1, info->platform,
                      NULL);
    clGetDeviceInfo(r->device, CL_DEVICE_VENDOR, sizeof info->vendor - 1, info->vendor, NULL);
    clGetDeviceInfo(r->device, CL_DEVICE_VERSION, sizeof info->version - 1, info->version, NULL);
    clGetDeviceInfo(r->device, CL_DRIVER_VERSION, sizeof info->driver - 1, info->driver, NULL);
    cl_device_type t = 0;
    clGetDeviceInfo(r->device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    info->is_gpu = (t & CL_DEVICE_TYPE_GPU) != 0;
    cl_uint cu = 0;
    clGetDeviceInfo(r->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    info->compute_units = (int)cu;
    cl_ulong v = 0;
    clGetDeviceInfo(r->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof v, &v, NULL);
    info->global_mem = v;
    v = 0;
    clGetDeviceInfo(r->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof v, &v, NULL);
    info->max_alloc = v;
    char ext[4096] = {0};
    clGetDeviceInfo(r->device, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
    info->has_fp16 = strstr(ext, "cl_khr_fp16") != NULL;
}

tsr_status tsr_devices_list(tsr_device_info *out, int max, int *count, tsr_error *err)
{
    dev_ref refs[MAX_DEVICES];
    *count = 0;
    int n = list_refs(refs, MAX_DEVICES, err);
    if (n < 0)
        return TSR_ERR_NO_DEVICE;
    for (int i = 0; i < n && i < max; i++)
        fill_info(&refs[i], i, &out[i]);
    *count = n;
    return TSR_OK;
}

tsr_ctx_params tsr_ctx_default_params(void)
{
    tsr_ctx_params p = {0};
    p.xgemm_min_indirect = -1;
    return p;
}

static int ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* Picks the device named by spec: a decimal index or a name substring. */
static int select_device(const dev_ref *refs, int n, const char *spec, tsr_error *err)
{
    if (!spec || !*spec)
        return 0;
    int numeric = 1;
    for (const char *c = spec; *c; c++)
        if (!isdigit((unsigned char)*c))
            numeric = 0;
    if (numeric) {
        long idx = strtol(spec, NULL, 10);
        if (idx < 0 || idx >= n) {
            tsr_error_set(err, TSR_ERR_NO_DEVICE,
                          "device %s does not exist: %d device(s) found (see 'tessera devices')",
                          spec, n);
            return -1;
        }
        return (int)idx;
    }
    for (int i = 0; i < n; i++) {
        tsr_device_info info;
        fill_info(&refs[i], i, &info);
        if (ci_contains(info.name, spec) || ci_contains(info.platform, spec))
            return i;
    }
    tsr_error_set(err, TSR_ERR_NO_DEVICE,
                  "no OpenCL device matches \"%s\" (see 'tessera devices')", spec);
    return -1;
}

void tsr_ctx_logf(const tsr_ctx *ctx, const char *fmt, ...)
{
    if (!ctx->verbose || !ctx->log)
        return;
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, msg);
}

static tsr_status build_log(tsr_ctx *ctx, cl_int e, tsr_error *err)
{
    char log[700] = {0};
    clGetProgramBuildInfo(ctx->program, ctx->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                          NULL);
    return tsr_error_set(err, TSR_ERR_OPENCL, "kernel build failed on %s: %s (%d): %s",
                         ctx->info.name, tsr_cl_errstr(e), (int)e, log);
}

/* Builds the kernel program, from the disk cache when a binary for this exact
 * source, options, device and driver exists. */
static tsr_status build_program(tsr_ctx *ctx, tsr_error *err)
{
    char opts[128];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DWG=%d -DGT_STRIPS=%d", ctx->wg,
             ctx->gemm_strips);
    const char *src = tsr_kernel_source;
    uint64_t h = 1469598103934665603ULL;
    h = tsr_fnv1a(h, src, strlen(src) + 1);
    h = tsr_fnv1a(h, opts, strlen(opts) + 1);
    h = tsr_fnv1a(h, ctx->info.name, strlen(ctx->info.name) + 1);
    h = tsr_fnv1a(h, ctx->info.driver, strlen(ctx->info.driver) + 1);
    h = tsr_fnv1a(h, ctx->info.platform, strlen(ctx->info.platform) + 1);
    char dir[1000], path[1100];
    snprintf(dir, sizeof dir, "%s/kernels", ctx->cache_dir);
    snprintf(path, sizeof path, "%s/%016llx.bin", dir, (unsigned long long)h);
    cl_int e;
    if (ctx->cache_dir[0]) {
        size_t len = 0;
        unsigned char *bin = tsr_read_file(path, (size_t)1 << 30, &len, NULL);
        if (bin && len > 0) {
            const unsigned char *bins[1] = {bin};
            cl_int status = CL_SUCCESS;
            ctx->program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &len, bins,
                                                     &status, &e);
            if (e == CL_SUCCESS && status == CL_SUCCESS &&
                clBuildProgram(ctx->program, 1, &ctx->device, opts, NULL, NULL) == CL_SUCCESS) {
                free(bin);
                ctx->from_cache = 1;
                tsr_ctx_logf(ctx, "kernels loaded from %s", path);
                return TSR_OK;
            }
            if (ctx->program)
                clReleaseProgram(ctx->program);
            ctx->program = NULL;
        }
        free(bin);
    }
    ctx->from_cache = 0;
    ctx->program = clCreateProgramWithSource(ctx->context, 1, &src, NULL, &e);
    if (e != CL_SUCCESS)
        return tsr_cl_fail(err, e, "clCreateProgramWithSource");
    e = clBuildProgram(ctx->program, 1, &ctx->device, opts, NULL, NULL);
    if (e != CL_SUCCESS)
        return build_log(ctx, e, err);
    tsr_ctx_logf(ctx, "kernels compiled for %s", ctx->info.name);
    if (ctx->cache_dir[0]) {
        size_t len = 0;
        if (clGetProgramInfo(ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) ==
                CL_SUCCESS &&
            len > 0) {
            unsigned char *bin = malloc(len);
            unsigned char *bins[1] = {bin};
            if (bin && clGetProgramInfo(ctx->program, CL_PROGRAM_BINARIES, sizeof bins, bins,
                                        NULL) == CL_SUCCESS) {
                tsr_mkdirs(dir);
                tsr_write_atomic(path, bin, len);
            }
            free(bin);
        }
    }
    return TSR_OK;
}

/* Per-device table of work-group sizes: the first row whose substring matches
 * the device name or vendor wins; the last row is the default. */
static const struct {
    const char *match;
    int wg;
} wg_table[] = {
    {"NVIDIA", 128},
    {"", 64},
};

/* Per-device split of tsr_k_topk, keyed on the device type: GPUs want many
 * short chunks read with adjacent work-items on adjacent scores, CPUs a few
 * long contiguous chunks per core (PoCL runs one work-group per core at a
 * time). The last row is the default. */
static const struct {
    int gpu;
    tsr_topk_cfg cfg;
} topk_table[] = {
    {1, {256, 4, 64, 1}},
    {0, {16, 16, 1, 0}},
};

tsr_status tsr_ctx_create(const tsr_ctx_params *p, tsr_ctx **out, tsr_error *err)
{
    tsr_ctx_params defaults = tsr_ctx_default_params();
    if (!p)
        p = &defaults;
    *out = NULL;
    /* the weight type first: a bad one is the caller's error, device or not */
    int wdt = TSR_WDT_F32;
    if (p->dtype && *p->dtype && strcmp(p->dtype, "f32") != 0) {
        if (strcmp(p->dtype, "f16") == 0)
            wdt = TSR_WDT_F16;
        else if (strcmp(p->dtype, "bf16") == 0)
            wdt = TSR_WDT_BF16;
        else if (strcmp(p->dtype, "int8") == 0)
            wdt = TSR_WDT_I8;
        else
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "weight type \"%s\" is not f32, f16, bf16 or int8", p->dtype);
    }
    dev_ref refs[MAX_DEVICES];
    int n = list_refs(refs, MAX_DEVICES, err);
    if (n < 0)
        return TSR_ERR_NO_DEVICE;
    int sel = select_device(refs, n, p->device, err);
    if (sel < 0)
        return TSR_ERR_NO_DEVICE;
    tsr_ctx *ctx = calloc(1, sizeof *ctx);
    tsr_mem_acct *mem = calloc(1, sizeof *mem);
    if (!ctx || !mem) {
        free(ctx);
        free(mem);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    atomic_init(&ctx->refs, 1);
    atomic_init(&mem->refs, 1);
    ctx->mem = mem;
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->platform = refs[sel].platform;
    ctx->device = refs[sel].device;
    ctx->verbose = p->verbose;
    ctx->log = p->log;
    ctx->log_user = p->log_user;
    ctx->gemm_strips = TSR_GEMM_STRIPS_DEFAULT;
    ctx->wdt = wdt;
    if (p->cache_dir && *p->cache_dir)
        snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s", p->cache_dir);
    fill_info(&refs[sel], sel, &ctx->info);
    cl_uint align_bits = 1024;
    clGetDeviceInfo(ctx->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits,
                    NULL);
    ctx->align = align_bits >= 8 * 64 ? align_bits / 8 : 64;
    cl_int e;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform,
                                     0};
    ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &e);
    if (e != CL_SUCCESS) {
        tsr_cl_fail(err, e, "clCreateContext");
        tsr_error_prefix(err, "device %s", ctx->info.name);
        tsr_ctx_free(ctx);
        return TSR_ERR_NO_DEVICE;
    }
    size_t maxwg = 1;
    clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof maxwg, &maxwg, NULL);
    for (size_t i = 0; i < sizeof wg_table / sizeof wg_table[0]; i++) {
        if (strstr(ctx->info.name, wg_table[i].match) ||
            strstr(ctx->info.vendor, wg_table[i].match)) {
            ctx->wg = wg_table[i].wg;
            break;
        }
    }
    while ((size_t)ctx->wg > maxwg && ctx->wg > 1)
        ctx->wg /= 2;
    size_t ntopk = sizeof topk_table / sizeof topk_table[0];
    ctx->topk = topk_table[ntopk - 1].cfg;
    for (size_t i = 0; i < ntopk; i++)
        if (topk_table[i].gpu == ctx->info.is_gpu) {
            ctx->topk = topk_table[i].cfg;
            break;
        }
    if ((size_t)ctx->topk.local > maxwg)
        ctx->topk.local = (int)maxwg;
    tsr_status st = tsr_gemm_configure(ctx, p, err);
    TSR_TRY(st, build_program(ctx, err));
    TSR_TRY(st, tsr_queue_create_weak(ctx, &ctx->util, err));
    if (st != TSR_OK) {
        tsr_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return TSR_OK;
}

tsr_ctx *tsr_ctx_retain(tsr_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

tsr_status tsr_ctx_set_gemm_strips(tsr_ctx *ctx, int strips, tsr_error *err)
{
    if (strips != 1 && strips != 2 && strips != 4 && strips != 8)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "GEMM strips must be 1, 2, 4 or 8, not %d",
                             strips);
    if (strips == ctx->gemm_strips)
        return TSR_OK;
    /* build the new program and its queue before letting go of the old ones */
    cl_program old = ctx->program;
    tsr_queue *old_util = ctx->util;
    int old_strips = ctx->gemm_strips, old_cached = ctx->from_cache;
    ctx->program = NULL;
    ctx->gemm_strips = strips;
    tsr_status st = build_program(ctx, err);
    TSR_TRY(st, tsr_queue_create_weak(ctx, &ctx->util, err));
    if (st != TSR_OK) {
        if (ctx->program)
            clReleaseProgram(ctx->program);
        ctx->program = old;
        ctx->util = old_util;
        ctx->gemm_strips = old_strips;
        ctx->from_cache = old_cached;
        return st;
    }
    tsr_queue_free(old_util);
    if (old)
        clReleaseProgram(old);
    return TSR_OK;
}

void tsr_ctx_free(tsr_ctx *ctx)
{
    if (!ctx || atomic_fetch_sub(&ctx->refs, 1) > 1)
        return;
    tsr_queue_free(ctx->util);
    if (ctx->program)
        clReleaseProgram(ctx->program);
    if (ctx->context)
        clReleaseContext(ctx->context);
    pthread_mutex_destroy(&ctx->lock);
    if (atomic_fetch_sub(&ctx->mem->refs, 1) == 1)
        free(ctx->mem);
    free(ctx);
}

const char *tsr_ctx_device_name(const tsr_ctx *ctx) { return ctx->info.name; }

const tsr_device_info *tsr_ctx_device_info(const tsr_ctx *ctx) { return &ctx->info; }

const char *tsr_ctx_warning(const tsr_ctx *ctx) { return ctx->warning; }

const char *tsr_ctx_tuning(const tsr_ctx *ctx) { return ctx->tuning; }

int tsr_ctx_program_from_cache(const tsr_ctx *ctx) { return ctx->from_cache; }

const char *tsr_ctx_dtype(const tsr_ctx *ctx) { return tsr_wdt_name(ctx->wdt); }

void tsr_ctx_device_memory(const tsr_ctx *ctx, size_t *now, size_t *peak)
{
    *now = atomic_load(&ctx->mem->bytes);
    *peak = atomic_load(&ctx->mem->peak);
}
