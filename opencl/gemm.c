/* Matrix products through CLBlast. */
#include <stdlib.h>
#include <time.h>

#include "tsr_cl_internal.h"
#include <clblast_c.h>

static tsr_status blast_fail(tsr_error *err, CLBlastStatusCode s, const char *what, int M, int N,
                             int K)
{
    tsr_status code = (s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure ||
                       s == CLBlastOpenCLOutOfHostMemory)
                          ? TSR_ERR_NOMEM
                          : TSR_ERR_CLBLAST;
    return tsr_error_set(err, code, "CLBlast %s (M=%d N=%d K=%d) failed with status %d", what, M,
                         N, K, (int)s);
}

tsr_status tsr_gemm_nt(tsr_ctx *ctx, int M, int N, int K, float alpha, cl_mem A, size_t a_off,
                       int lda, cl_mem B, size_t b_off, int ldb, float beta, cl_mem C,
                       size_t c_off, int ldc, tsr_error *err)
{
    CLBlastStatusCode s = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                       CLBlastTransposeYes, (size_t)M, (size_t)N, (size_t)K,
                                       alpha, A, a_off, (size_t)lda, B, b_off, (size_t)ldb, beta,
                                       C, c_off, (size_t)ldc, &ctx->queue, NULL);
    return s == CLBlastSuccess ? TSR_OK : blast_fail(err, s, "Sgemm", M, N, K);
}

tsr_status tsr_gemm_batched(tsr_ctx *ctx, int tb, int M, int N, int K, float alpha, cl_mem A,
                            const size_t *a_off, int lda, cl_mem B, const size_t *b_off, int ldb,
                            cl_mem C, const size_t *c_off, int ldc, int count, tsr_error *err)
{
    float *ab = malloc(sizeof(float) * 2 * (size_t)count);
    if (!ab)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < count; i++) {
        ab[i] = alpha;
        ab[count + i] = 0.0f;
    }
    CLBlastStatusCode s = CLBlastSgemmBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, tb ? CLBlastTransposeYes : CLBlastTransposeNo,
        (size_t)M, (size_t)N, (size_t)K, ab, A, a_off, (size_t)lda, B, b_off, (size_t)ldb,
        ab + count, C, c_off, (size_t)ldc, (size_t)count, &ctx->queue, NULL);
    free(ab);
    return s == CLBlastSuccess ? TSR_OK : blast_fail(err, s, "SgemmBatched", M, N, K);
}

tsr_status tsr_linear(tsr_ctx *ctx, cl_mem x, int M, int K, cl_mem w, cl_mem b, int N, cl_mem y,
                      tsr_act act, tsr_error *err)
{
    tsr_status st = tsr_gemm_nt(ctx, M, N, K, 1.0f, x, 0, K, w, 0, K, 0.0f, y, 0, N, err);
    if (st != TSR_OK)
        return st;
    return tsr_k_bias_act(ctx, y, b, M, N, act, err);
}

double tsr_ctx_gemm_gflops(tsr_ctx *ctx, int M, int N, int K, int reps, tsr_error *err)
{
    cl_mem a = tsr_buf_alloc(ctx, sizeof(float) * (size_t)M * K, err);
    cl_mem b = a ? tsr_buf_alloc(ctx, sizeof(float) * (size_t)N * K, err) : NULL;
    cl_mem c = b ? tsr_buf_alloc(ctx, sizeof(float) * (size_t)M * N, err) : NULL;
    double rate = -1;
    if (c) {
        float zero = 0.0f; /* contents do not change the speed; zeros avoid NaN paths */
        clEnqueueFillBuffer(ctx->queue, a, &zero, sizeof zero, 0, sizeof(float) * (size_t)M * K, 0, NULL, NULL);
        clEnqueueFillBuffer(ctx->queue, b, &zero, sizeof zero, 0, sizeof(float) * (size_t)N * K, 0, NULL, NULL);
        tsr_status st = tsr_gemm_nt(ctx, M, N, K, 1.0f, a, 0, K, b, 0, K, 0.0f, c, 0, N, err);
        if (st == TSR_OK)
            st = tsr_ctx_finish(ctx, err); /* the first call compiles */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < reps && st == TSR_OK; i++)
            st = tsr_gemm_nt(ctx, M, N, K, 1.0f, a, 0, K, b, 0, K, 0.0f, c, 0, N, err);
        if (st == TSR_OK)
            st = tsr_ctx_finish(ctx, err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (st == TSR_OK && s > 0)
            rate = 2.0 * M * N * K * reps / s / 1e9;
    }
    tsr_buf_free(a);
    tsr_buf_free(b);
    tsr_buf_free(c);
    return rate;
}
