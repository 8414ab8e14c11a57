/* tessera compute layer: status codes, errors, OpenCL device selection.
 *
 *   tsr_ctx_params p = tsr_ctx_default_params();
 *   p.device = "0";                      // index, or a name substring
 *   tsr_error err = {0};
 *   tsr_ctx *ctx = NULL;
 *   if (tsr_ctx_create(&p, &ctx, &err) != TSR_OK) {
 *       fprintf(stderr, "%s\n", err.msg);
 *       return 1;
 *   }
 *   printf("running on %s\n", tsr_ctx_device_name(ctx));
 *   tsr_ctx_free(ctx);
 *
 * This header does not include OpenCL: the kernels and the transformer
 * building blocks are declared in tsr_cl_internal.h for the modules.
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

/* Where a failure happened and why, written by every fallible call. */
typedef struct {
    tsr_status code;
    char msg[1024];
} tsr_error;

const char *tsr_status_str(tsr_status s);

/* Records code and a printf-style message in err (err may be NULL). Returns code. */
tsr_status tsr_error_set(tsr_error *err, tsr_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes the message already in err with "prefix: ". */
void tsr_error_prefix(tsr_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The user's tessera cache directory: override if given, else
 * $TESSERA_CACHE_DIR, $XDG_CACHE_HOME/tessera or ~/.cache/tessera. */
void tsr_cache_dir(const char *override, char *out, size_t cap);
/* Creates a directory and its missing parents (mode 0755); errors are ignored. */
void tsr_mkdirs(const char *path);

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

/* Fills up to max entries; *count receives the number of devices found. */
tsr_status tsr_devices_list(tsr_device_info *out, int max, int *count, tsr_error *err);

typedef struct {
    const char *device;    /* NULL: $TESSERA_DEVICE, else device 0. "N" or a name substring */
    const char *cache_dir; /* NULL: $TESSERA_CACHE_DIR, $XDG_CACHE_HOME/tessera or ~/.cache/tessera */
    int disk_cache;        /* 1: keep compiled kernels on disk (default) */
    int verbose;           /* 1: log compilation and cache hits on stderr */
    int no_tuning;         /* 1: ignore the tuning file and the built-in table's CLBlast
                              parameters (as TESSERA_NO_TUNING=1); `tessera tune` uses it */
} tsr_ctx_params;

typedef struct tsr_ctx tsr_ctx;

tsr_ctx_params tsr_ctx_default_params(void);
tsr_status tsr_ctx_create(const tsr_ctx_params *p, tsr_ctx **out, tsr_error *err);
void tsr_ctx_free(tsr_ctx *ctx);
const char *tsr_ctx_device_name(const tsr_ctx *ctx);
/* A problem met while creating the context that did not stop it, such as an
 * unreadable tuning file (the built-in defaults are used instead); "" if none. */
const char *tsr_ctx_warning(const tsr_ctx *ctx);
/* How the GEMMs are configured, e.g. "tuning file ~/.cache/tessera/tuning/...json:
 * own GEMM, 8 strips" or "built-in table: CLBlast". */
const char *tsr_ctx_tuning(const tsr_ctx *ctx);
/* Waits for all queued work. */
tsr_status tsr_ctx_finish(tsr_ctx *ctx, tsr_error *err);
/* 1 when the last kernel program came from the disk cache, 0 when compiled. */
int tsr_ctx_program_from_cache(const tsr_ctx *ctx);
/* Device memory held in tessera's buffers: now, and the peak so far (bytes). */
void tsr_ctx_device_memory(tsr_ctx *ctx, size_t *now, size_t *peak);
/* Runs a float32 GEMM of the given shape `reps` times; returns GFLOP/s, or a
 * negative value on failure. Used to report a fraction of the device's rate. */
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
 * shapes' GEMM times (weight: calls per item). */
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
/* Writes the best configuration to this device's tuning file (atomically). */
tsr_status tsr_tune_save(tsr_ctx *ctx, tsr_tune_result *r, tsr_error *err);

#ifdef __cplusplus
}
#endif
#endif
