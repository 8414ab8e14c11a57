/* tessera compute layer: status codes, errors, OpenCL device selection.
 *
 *   tsr_ctx_params p = tsr_ctx_default_params();
 *   p.device = "0";                      // an index, or a name substring
 *   tsr_error err = {0};
 *   tsr_ctx *ctx = NULL;
 *   if (tsr_ctx_create(&p, &ctx, &err) != TSR_OK) {
 *       fprintf(stderr, "%s\n", err.msg);
 *       return 1;
 *   }
 *   printf("running on %s\n", tsr_ctx_device_name(ctx));
 *   tsr_ctx_free(ctx);
 *
 * Errors: every fallible call returns a tsr_status and, when err is not
 * NULL, writes what failed and where into it. err may always be NULL.
 *
 * Threads: a tsr_ctx is created and freed by one thread; every other
 * function here may be called from any number of threads at once. Models
 * and sessions (tsr_fusion.h) keep their context alive, so it may be freed
 * before them. The library reads no environment variable: the caller passes
 * every setting in tsr_ctx_params. This header does not include OpenCL.
 */
#ifndef TSR_OPENCL_H
#define TSR_OPENCL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TSR_OK = 0,
    TSR_ERR_INVALID_ARG = -1001, /* bad argument from the caller or the user */
    TSR_ERR_IO = -1002,          /* a file could not be opened or read */
    TSR_ERR_FORMAT = -1003,      /* a file is corrupt or not what it claims */
    TSR_ERR_NOMEM = -1004,       /* host or device memory exhausted */
    TSR_ERR_UNSUPPORTED = -1005, /* valid input that tessera does not handle */
    TSR_ERR_NO_DEVICE = -1006,   /* no OpenCL platform or matching device */
    TSR_ERR_OPENCL = -1007,      /* an OpenCL call failed (code in the message) */
    TSR_ERR_SHAPE = -1008,       /* a tensor shape does not match the config */
    TSR_ERR_TOO_LARGE = -1009,   /* a declared size exceeds tessera's caps */
    TSR_ERR_CLBLAST = -1010,     /* a CLBlast call failed */
} tsr_status;

/* Where a failure happened and why. */
typedef struct {
    tsr_status code;
    char msg[1024];
} tsr_error;

/* Any thread. */
const char *tsr_status_str(tsr_status s);

/* Records code and a printf-style message in err (err may be NULL). Returns code. */
tsr_status tsr_error_set(tsr_error *err, tsr_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes the message already in err with "prefix: " (err may be NULL). */
void tsr_error_prefix(tsr_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

typedef struct {
    int index;             /* position in the global list, across platforms */
    char name[256];
    char platform[256];
    char vendor[256];
    char version[256];     /* CL_DEVICE_VERSION */
    char driver[256];      /* CL_DRIVER_VERSION */
    int is_gpu;
    int compute_units;
    uint64_t global_mem;   /* bytes */
    uint64_t max_alloc;    /* bytes */
    int has_fp16;
} tsr_device_info;

/* Fills up to max entries; *count receives the number of devices found. Any thread. */
tsr_status tsr_devices_list(tsr_device_info *out, int max, int *count, tsr_error *err);

typedef struct {
    const char *device;     /* "N" (an index) or a name substring; NULL or "": device 0 */
    const char *cache_dir;  /* where compiled kernels and tuning files live; NULL: nothing is
                               kept on disk and no tuning file is read */
    int verbose;            /* 1: report kernel compilation and cache hits through log */
    int no_tuning;          /* 1: ignore the tuning file and the built-in table's CLBlast
                               parameters; `tessera tune` measures from there */
    const char *gemm;       /* "own" or "clblast" forces the linear layers' GEMM; NULL: the
                               tuning file or the built-in per-device table decides */
    const char *xgemm;      /* CLBlast Xgemm parameters "NAME=VALUE ..." for experiments; NULL */
    long xgemm_min_indirect; /* with xgemm: CLBlast's direct/indirect switch; -1: its own */
    const char *dtype;      /* how models loaded on this context keep their linear layers'
                               weights on the device: "f32" (NULL, the default), "f16" (IEEE
                               half), "bf16", or "int8" (per-row scales); 16-bit weights take
                               half the memory, int8 a quarter; the arithmetic is float32 */
    /* where verbose messages go (NULL: nowhere); called from the creating thread */
    void (*log)(void *user, const char *msg);
    void *log_user;
} tsr_ctx_params;

typedef struct tsr_ctx tsr_ctx;

/* Any thread. */
tsr_ctx_params tsr_ctx_default_params(void);
/* Chooses the device, builds the kernel program (from the disk cache when it
 * can) and configures the GEMMs. */
tsr_status tsr_ctx_create(const tsr_ctx_params *p, tsr_ctx **out, tsr_error *err);
/* Releases the caller's reference; models and sessions hold their own. */
void tsr_ctx_free(tsr_ctx *ctx);
/* The rest: any thread. */
const char *tsr_ctx_device_name(const tsr_ctx *ctx);
const tsr_device_info *tsr_ctx_device_info(const tsr_ctx *ctx);
/* A problem met while creating the context that did not stop it, such as an
 * unreadable tuning file (the built-in defaults are used instead); "" if none. */
const char *tsr_ctx_warning(const tsr_ctx *ctx);
/* How the GEMMs are configured, e.g. "tuning file .../tuning/...json: own
 * GEMM kernel, strips 8" or "built-in table: CLBlast, its own parameters". */
const char *tsr_ctx_tuning(const tsr_ctx *ctx);
/* "f32", "f16", "bf16" or "int8": tsr_ctx_params.dtype. */
const char *tsr_ctx_dtype(const tsr_ctx *ctx);
/* 1 when the kernel program came from the disk cache, 0 when compiled. */
int tsr_ctx_program_from_cache(const tsr_ctx *ctx);
/* Device memory held in tessera's buffers: now, and the peak so far (bytes).
 * A buffer counts until the OpenCL runtime has released it. */
void tsr_ctx_device_memory(const tsr_ctx *ctx, size_t *now, size_t *peak);
/* Runs a float32 GEMM of the given shape `reps` times with the GEMM the
 * linear layers use; returns GFLOP/s, or a negative value on failure. Calls
 * are serialised on the context's own queue. */
double tsr_ctx_gemm_gflops(tsr_ctx *ctx, int M, int N, int K, int reps, tsr_error *err);

/* ---- GEMM tuning (`tessera tune`) ----
 *
 *   tsr_gemm_shape shapes[] = {{1600, 2304, 768, 12.0 / 32}, ...};
 *   tsr_tune_params tp = tsr_tune_default_params();
 *   tsr_tune_result r;
 *   tsr_tune_gemm(ctx, shapes, n, &tp, &r, &err); // ctx made with no_tuning = 1
 *   tsr_tune_save(ctx, &r, &err);                 // later contexts load it
 *
 * Candidates: tessera's own GEMM kernel with 1, 2, 4 or 8 column strips per
 * work-item (CPU devices), CLBlast with its own parameters, the built-in
 * table's, and `trials` random valid Xgemm configurations, then the best
 * CLBlast one with its direct kernel always or never used. Each candidate's
 * results are checked against a host reference on sampled entries of every
 * shape; one that is wrong is rejected. The score is the weighted sum of the
 * shapes' GEMM times (weight: calls per item).
 *
 * Threads: tsr_tune_gemm rebuilds the context's kernel program and changes
 * CLBlast's parameters for the device, so no model or session may use the
 * context while it runs. Afterwards the context has its own configuration
 * again (strips and the CLBlast overrides it applied); where it applied none
 * (no_tuning, or a table row without parameters), CLBlast keeps the last
 * candidate's parameters for the device for the rest of the process, as
 * CLBlast cannot return to its defaults. tsr_tune_save: any thread. */
typedef struct {
    int M, N, K;
    double weight;
} tsr_gemm_shape;

typedef struct {
    int trials;          /* random CLBlast Xgemm configurations (default 12) */
    unsigned seed;       /* for the random configurations */
    double min_seconds;  /* timing per shape and candidate (default 0.1) */
    /* called after each candidate: done of total, its description and score
     * (seconds, negative when it failed or was rejected) */
    void (*progress)(void *user, int done, int total, const char *desc, double score);
    void *user;
} tsr_tune_params;

#define TSR_TUNE_MAX 64
typedef struct {
    int n;                        /* candidates tried */
    struct {
        char desc[480];
        double score;             /* weighted seconds; < 0: failed or rejected */
        char why[200];            /* why it failed, or "" */
    } cand[TSR_TUNE_MAX];
    int best, baseline;           /* indexes into cand; baseline: what is used untuned */
    /* the best configuration, as the tuning file stores it */
    int own_gemm, strips;
    char xgemm[400];
    long min_indirect;
    char path[1024];              /* set by tsr_tune_save */
} tsr_tune_result;

tsr_tune_params tsr_tune_default_params(void);
tsr_status tsr_tune_gemm(tsr_ctx *ctx, const tsr_gemm_shape *shapes, int n,
                         const tsr_tune_params *p, tsr_tune_result *r, tsr_error *err);
/* Writes the best configuration to this device's tuning file under the
 * context's cache_dir (atomically). */
tsr_status tsr_tune_save(tsr_ctx *ctx, tsr_tune_result *r, tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
