/* C (M, N) = act(A (M, K) . Bt (K, N) + bias) for CPU devices (PoCL).
 * Each work-item computes a 6 x 32 tile held in twelve 16-wide vectors:
 * per k it loads two vectors of Bt and broadcasts six values of A. Weights
 * are stored transposed (K, N) so those loads are contiguous. Dimension 0
 * walks the M tiles, so consecutive work-groups reuse the same strips of Bt
 * from cache. A last strip narrower than 32 columns takes a scalar path. */
#define GT_M 6
#define GT_N 32

#define ROW(i)                                                                                  \
    {                                                                                           \
        float16 av = (float16)(a##i[k]);                                                        \
        c##i##0 = fma(av, b0, c##i##0);                                                         \
        c##i##1 = fma(av, b1, c##i##1);                                                         \
    }
#define STORE(i)                                                                                \
    if ((i) < rows) {                                                                           \
        __global float *cr = C + (size_t)(m0 + (i)) * ldc + n0;                                 \
        vstore16(act16(c##i##0 + bias0, act), 0, cr);                                           \
        vstore16(act16(c##i##1 + bias1, act), 0, cr + 16);                                      \
    }

/* Each work-item covers GT_M rows and GT_STRIPS strips of GT_N columns; the
 * host passes GT_STRIPS (1, 2, 4 or 8, chosen by `tessera tune`). */
#ifndef GT_STRIPS
#define GT_STRIPS 4
#endif

__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_tn(__global const float *A, __global const float *Bt, __global float *C,
             __global const float *bias, int M, int N, int K, int lda, int ldb, int ldc,
             int has_bias, int act)
{
    int m0 = get_global_id(0) * GT_M;
    if (m0 >= M)
        return;
    int rows = min(GT_M, M - m0);
    /* rows past M read the last row again and are not stored */
    __global const float *a0 = A + (size_t)m0 * lda;
    __global const float *a1 = A + (size_t)min(m0 + 1, M - 1) * lda;
    __global const float *a2 = A + (size_t)min(m0 + 2, M - 1) * lda;
    __global const float *a3 = A + (size_t)min(m0 + 3, M - 1) * lda;
    __global const float *a4 = A + (size_t)min(m0 + 4, M - 1) * lda;
    __global const float *a5 = A + (size_t)min(m0 + 5, M - 1) * lda;
    for (int s = 0; s < GT_STRIPS; s++) {
        int n0 = (get_global_id(1) * GT_STRIPS + s) * GT_N;
        if (n0 >= N)
            return;
        if (n0 + GT_N <= N) {
            float16 c00 = 0, c01 = 0, c10 = 0, c11 = 0, c20 = 0, c21 = 0;
            float16 c30 = 0, c31 = 0, c40 = 0, c41 = 0, c50 = 0, c51 = 0;
            __global const float *b = Bt + n0;
            for (int k = 0; k < K; k++) {
                float16 b0 = vload16(0, b + (size_t)k * ldb);
                float16 b1 = vload16(0, b + (size_t)k * ldb + 16);
                ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
            }
            float16 bias0 = has_bias ? vload16(0, bias + n0) : (float16)0.0f;
            float16 bias1 = has_bias ? vload16(0, bias + n0 + 16) : (float16)0.0f;
            STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
            continue;
        }
        /* the last, narrow strip */
        for (int i = m0; i < m0 + rows; i++)
            for (int j = n0; j < N; j++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++)
                    acc = fma(A[(size_t)i * lda + k], Bt[(size_t)k * ldb + j], acc);
                C[(size_t)i * ldc + j] = act_apply(acc + (has_bias ? bias[j] : 0.0f), act);
            }
    }
}
