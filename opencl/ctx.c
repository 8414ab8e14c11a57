/* Device discovery and selection, context and queue, and the kernel program
 * with its disk cache. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        return err ? err->code : TSR_ERR_NO_DEVICE;
    for (int i = 0; i < n && i < max; i++)
        fill_info(&refs[i], i, &out[i]);
    *count = n;
    return TSR_OK;
}

tsr_ctx_params tsr_ctx_default_params(void)
{
    tsr_ctx_params p = {0};
    p.disk_cache = 1;
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

uint64_t tsr_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void tsr_cache_dir(const char *override, char *out, size_t cap)
{
    const char *d = override ? override : getenv("TESSERA_CACHE_DIR");
    if (d && *d) {
        snprintf(out, cap, "%s", d);
        return;
    }
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && *x) {
        snprintf(out, cap, "%s/tessera", x);
        return;
    }
    const char *home = getenv("HOME");
    snprintf(out, cap, "%s/.cache/tessera", home && *home ? home : "/tmp");
}

void tsr_mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *c = tmp + 1; *c; c++) {
        if (*c == '/') {
            *c = 0;
            mkdir(tmp, 0755);
            *c = '/';
        }
    }
    mkdir(tmp, 0755);
}

unsigned char *tsr_read_all(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && (size_t)n <= max && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            }
            if (buf)
                buf[n] = 0; /* text files can be parsed in place */
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

int tsr_write_atomic(const char *path, const void *data, size_t n)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (ok)
        ok = rename(tmp, path) == 0;
    if (!ok)
        remove(tmp);
    return ok;
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
    char dir[900], path[1024];
    tsr_cache_dir(ctx->cache_dir[0] ? ctx->cache_dir : NULL, dir, sizeof dir - 16);
    strcat(dir, "/kernels");
    snprintf(path, sizeof path, "%s/%016llx.bin", dir, (unsigned long long)h);
    cl_int e;
    if (ctx->disk_cache) {
        size_t len = 0;
        unsigned char *bin = tsr_read_all(path, (size_t)1 << 30, &len);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int status = CL_SUCCESS;
            ctx->program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &len, bins,
                                                     &status, &e);
            free(bin);
            if (e == CL_SUCCESS && status == CL_SUCCESS &&
                clBuildProgram(ctx->program, 1, &ctx->device, opts, NULL, NULL) == CL_SUCCESS) {
                ctx->from_cache = 1;
                if (ctx->verbose)
                    fprintf(stderr, "tessera: kernels loaded from %s\n", path);
                return TSR_OK;
            }
            if (ctx->program)
                clReleaseProgram(ctx->program);
            ctx->program = NULL;
        }
    }
    ctx->program = clCreateProgramWithSource(ctx->context, 1, &src, NULL, &e);
    if (e != CL_SUCCESS)
        return tsr_cl_fail(err, e, "clCreateProgramWithSource");
    e = clBuildProgram(ctx->program, 1, &ctx->device, opts, NULL, NULL);
    if (e != CL_SUCCESS)
        return build_log(ctx, e, err);
    if (ctx->verbose)
        fprintf(stderr, "tessera: kernels compiled for %s\n", ctx->info.name);
    if (ctx->disk_cache) {
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

static const char *kernel_names[TSR_K_COUNT] = {
    [TSR_K_LAYERNORM] = "layernorm",       [TSR_K_L2NORM] = "l2norm",
    [TSR_K_SOFTMAX] = "softmax_rows",      [TSR_K_BIAS_ACT] = "bias_act",
    [TSR_K_ADD] = "add_inplace",           [TSR_K_EMBED_TOKENS] = "embed_tokens",
    [TSR_K_IM2COL] = "im2col_patches",     [TSR_K_VIT_EMBED] = "vit_embed",
    [TSR_K_GATHER_ROWS] = "gather_rows",  [TSR_K_GEMM_TN] = "gemm_tn",
    [TSR_K_ATTENTION] = "attention_rows", [TSR_K_ATTENTION_KV] = "attention_kv",
    [TSR_K_KV_APPEND] = "kv_append",
};

/* Per-device tuning table: the first row whose substring matches the device
 * name wins; the last row is the default. */
static const struct {
    const char *match;
    int wg;
} tuning[] = {
    {"NVIDIA", 128},
    {"", 64},
};

static tsr_status create_kernels(tsr_ctx *ctx, tsr_error *err)
{
    for (int k = 0; k < TSR_K_COUNT; k++) {
        cl_int e;
        ctx->kernels[k] = clCreateKernel(ctx->program, kernel_names[k], &e);
        if (e != CL_SUCCESS)
            return tsr_cl_fail(err, e, kernel_names[k]);
    }
    return TSR_OK;
}

tsr_status tsr_ctx_create(const tsr_ctx_params *p, tsr_ctx **out, tsr_error *err)
{
    tsr_ctx_params defaults = tsr_ctx_default_params();
    if (!p)
        p = &defaults;
    *out = NULL;
    dev_ref refs[MAX_DEVICES];
    int n = list_refs(refs, MAX_DEVICES, err);
    if (n < 0)
        return err ? err->code : TSR_ERR_NO_DEVICE;
    const char *spec = p->device ? p->device : getenv("TESSERA_DEVICE");
    int sel = select_device(refs, n, spec, err);
    if (sel < 0)
        return TSR_ERR_NO_DEVICE;
    tsr_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    ctx->platform = refs[sel].platform;
    ctx->device = refs[sel].device;
    ctx->verbose = p->verbose;
    ctx->disk_cache = p->disk_cache;
    ctx->gemm_strips = 4;
    if (p->cache_dir)
        snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s", p->cache_dir);
    fill_info(&refs[sel], sel, &ctx->info);
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
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &e);
    if (e != CL_SUCCESS) {
        tsr_cl_fail(err, e, "clCreateCommandQueue");
        tsr_ctx_free(ctx);
        return TSR_ERR_OPENCL;
    }
    size_t maxwg = 1;
    clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof maxwg, &maxwg, NULL);
    for (size_t i = 0; i < sizeof tuning / sizeof tuning[0]; i++) {
        if (strstr(ctx->info.name, tuning[i].match) || strstr(ctx->info.vendor, tuning[i].match)) {
            ctx->wg = tuning[i].wg;
            break;
        }
    }
    while ((size_t)ctx->wg > maxwg && ctx->wg > 1)
        ctx->wg /= 2;
    tsr_status st = tsr_gemm_configure(ctx, p->no_tuning, err);
    if (st == TSR_OK)
        st = build_program(ctx, err);
    if (st == TSR_OK)
        st = create_kernels(ctx, err);
    if (st != TSR_OK) {
        tsr_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return TSR_OK;
}

tsr_status tsr_ctx_set_gemm_strips(tsr_ctx *ctx, int strips, tsr_error *err)
{
    if (strips != 1 && strips != 2 && strips != 4 && strips != 8)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "GEMM strips must be 1, 2, 4 or 8, not %d",
                             strips);
    if (strips == ctx->gemm_strips)
        return TSR_OK;
    clFinish(ctx->queue);
    for (int k = 0; k < TSR_K_COUNT; k++) {
        if (ctx->kernels[k])
            clReleaseKernel(ctx->kernels[k]);
        ctx->kernels[k] = NULL;
    }
    if (ctx->program)
        clReleaseProgram(ctx->program);
    ctx->program = NULL;
    ctx->gemm_strips = strips;
    tsr_status st = build_program(ctx, err);
    return st == TSR_OK ? create_kernels(ctx, err) : st;
}

void tsr_ctx_free(tsr_ctx *ctx)
{
    if (!ctx)
        return;
    for (int k = 0; k < TSR_K_COUNT; k++)
        if (ctx->kernels[k])
            clReleaseKernel(ctx->kernels[k]);
    if (ctx->program)
        clReleaseProgram(ctx->program);
    if (ctx->queue) {
        clFinish(ctx->queue);
        clReleaseCommandQueue(ctx->queue);
    }
    if (ctx->context)
        clReleaseContext(ctx->context);
    free(ctx);
}

const char *tsr_ctx_device_name(const tsr_ctx *ctx) { return ctx->info.name; }

const char *tsr_ctx_warning(const tsr_ctx *ctx) { return ctx->warning; }

const char *tsr_ctx_tuning(const tsr_ctx *ctx) { return ctx->tuning; }

int tsr_ctx_program_from_cache(const tsr_ctx *ctx) { return ctx->from_cache; }

tsr_status tsr_ctx_finish(tsr_ctx *ctx, tsr_error *err)
{
    cl_int e = clFinish(ctx->queue);
    return e == CL_SUCCESS ? TSR_OK : tsr_cl_fail(err, e, "clFinish");
}
