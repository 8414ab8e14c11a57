/* C (M, N) = act(A (M, K) . B^T + bias) for CPU devices (PoCL).
 *
 * The weights are stored packed (tsr_linear_weight_write): in panels of
 * GT_N = 64 columns, panel p holding its K rows of 64 floats contiguously at
 * Bp + p * 64 * K; a last, narrower panel of w columns holds K rows of w
 * floats. A work-item computes a 6 x 64 tile in twenty-four 16-wide
 * accumulators: per k it loads one contiguous 256-byte row of the panel and
 * broadcasts six values of A, so the inner loop streams through memory in
 * order (the unpacked (K, N) layout jumped a whole row of N floats per k,
 * which left the kernel waiting on cache and TLB misses). Dimension 0 walks
 * the M tiles, so consecutive work-groups reuse the same panels from cache. */
#define GT_M 6
#define GT_N 64

#define ROW(i)                                                                                  \
    {                                                                                           \
        float16 av = (float16)(a##i[k]);                                                        \
        c##i##0 = fma(av, b0, c##i##0);                                                         \
        c##i##1 = fma(av, b1, c##i##1);                                                         \
        c##i##2 = fma(av, b2, c##i##2);                                                         \
        c##i##3 = fma(av, b3, c##i##3);                                                         \
    }
#define STORE(i)                                                                                \
    if ((i) < rows) {                                                                           \
        __global float *cr = C + (size_t)(m0 + (i)) * ldc + n0;                                 \
        vstore16(act16(c##i##0 + bias0, act), 0, cr);                                           \
        vstore16(act16(c##i##1 + bias1, act), 0, cr + 16);                                      \
        vstore16(act16(c##i##2 + bias2, act), 0, cr + 32);                                      \
        vstore16(act16(c##i##3 + bias3, act), 0, cr + 48);                                      \
    }
#define SCALE(i)                                                                                \
    c##i##0 *= s0, c##i##1 *= s1, c##i##2 *= s2, c##i##3 *= s3;
#define ROW1(i)                                                                                 \
    c##i##0 = fma((float16)(a##i[k]), b0, c##i##0);
#define STORE1(i)                                                                               \
    if ((i) < rows)                                                                             \
        vstore16(act16(c##i##0 + bias0, act), 0, C + (size_t)(m0 + (i)) * ldc + n0 + j0);

/* Each work-item covers GT_M rows and GT_STRIPS panels; the host passes
 * GT_STRIPS (1, 2, 4 or 8, chosen by `tessera tune`). */
#ifndef GT_STRIPS
#define GT_STRIPS 1
#endif

/* Element off of the packed weights, widened to float32; wdt as tsr_wdt
 * (int8: the integer, its row's scale applied after the sum). */
inline float16 wload16(__global const uchar *p, size_t off, const int wdt)
{
    if (wdt == 3)
        return convert_float16(vload16(0, (__global const char *)p + off));
    if (wdt == 1)
        return vload_half16(0, (__global const half *)p + off);
    if (wdt == 2)
        return as_float16(convert_uint16(vload16(0, (__global const ushort *)p + off)) << 16);
    return vload16(0, (__global const float *)p + off);
}

inline float wload1(__global const uchar *p, size_t off, const int wdt)
{
    if (wdt == 3)
        return (float)((__global const char *)p)[off];
    if (wdt == 1)
        return vload_half(0, (__global const half *)p + off);
    if (wdt == 2)
        return as_float((uint)((__global const ushort *)p)[off] << 16);
    return ((__global const float *)p)[off];
}

inline __attribute__((always_inline))
void gemm_tn_body(__global const float *A, __global const uchar *Bp, __global float *C,
                  __global const float *bias, int M, int N, int K, int lda, int ldc,
                  int has_bias, int act, const int wdt, size_t b_base)
{
    int m0 = get_global_id(0) * GT_M;
    if (m0 >= M)
        return;
    int rows = min(GT_M, M - m0);
    /* int8: the rows' scales follow the integers, from the next 64 bytes */
    __global const float *wsc =
        (__global const float *)(Bp + ((size_t)N * K + 63) / 64 * 64);
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
        size_t b = b_base + (size_t)n0 * K; /* the panel's first element: every earlier panel
                                               * is full */
        if (n0 + GT_N <= N) {
            float16 c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
            float16 c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
            float16 c40 = 0, c41 = 0, c42 = 0, c43 = 0, c50 = 0, c51 = 0, c52 = 0, c53 = 0;
            for (int k = 0; k < K; k++) {
                size_t bk = b + (size_t)k * GT_N;
                float16 b0 = wload16(Bp, bk, wdt), b1 = wload16(Bp, bk + 16, wdt),
                        b2 = wload16(Bp, bk + 32, wdt), b3 = wload16(Bp, bk + 48, wdt);
                ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
            }
            if (wdt == 3) {
                float16 s0 = vload16(0, wsc + n0), s1 = vload16(1, wsc + n0),
                        s2 = vload16(2, wsc + n0), s3 = vload16(3, wsc + n0);
                SCALE(0) SCALE(1) SCALE(2) SCALE(3) SCALE(4) SCALE(5)
            }
            float16 bias0 = 0.0f, bias1 = 0.0f, bias2 = 0.0f, bias3 = 0.0f;
            if (has_bias) {
                bias0 = vload16(0, bias + n0);
                bias1 = vload16(1, bias + n0);
                bias2 = vload16(2, bias + n0);
                bias3 = vload16(3, bias + n0);
            }
            STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
            continue;
        }
        /* the last, narrow panel: w columns, rows of w floats; 16 columns at
         * a time, then a scalar rest */
        int w = N - n0, j0 = 0;
        for (; j0 + 16 <= w; j0 += 16) {
            float16 c00 = 0, c10 = 0, c20 = 0, c30 = 0, c40 = 0, c50 = 0;
            for (int k = 0; k < K; k++) {
                float16 b0 = wload16(Bp, b + (size_t)k * w + j0, wdt);
                ROW1(0) ROW1(1) ROW1(2) ROW1(3) ROW1(4) ROW1(5)
            }
            if (wdt == 3) {
                float16 s0 = vload16(0, wsc + n0 + j0);
                c00 *= s0, c10 *= s0, c20 *= s0, c30 *= s0, c40 *= s0, c50 *= s0;
            }
            float16 bias0 = has_bias ? vload16(0, bias + n0 + j0) : (float16)0.0f;
            STORE1(0) STORE1(1) STORE1(2) STORE1(3) STORE1(4) STORE1(5)
        }
        for (int i = m0; i < m0 + rows; i++)
            for (int j = j0; j < w; j++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++)
                    acc = fma(A[(size_t)i * lda + k], wload1(Bp, b + (size_t)k * w + j, wdt), acc);
                if (wdt == 3)
                    acc *= wsc[n0 + j];
                C[(size_t)i * ldc + n0 + j] =
                    act_apply(acc + (has_bias ? bias[n0 + j] : 0.0f), act);
            }
    }
}

#define GEMM_TN_KERNEL(NAME, WT, WDT)                                                            \
    __kernel __attribute__((reqd_work_group_size(1, 1, 1))) void NAME(                           \
        __global const float *A, __global const WT *Bp, __global float *C,                     \
        __global const float *bias, int M, int N, int K, int lda, int ldc, int has_bias,       \
        int act)                                                                                \
    {                                                                                           \
        gemm_tn_body(A, (__global const uchar *)Bp, C, bias, M, N, K, lda, ldc, has_bias, act, \
                     WDT, 0);                                                                   \
    }
GEMM_TN_KERNEL(gemm_tn, float, 0)
GEMM_TN_KERNEL(gemm_tn_f16, ushort, 1)
GEMM_TN_KERNEL(gemm_tn_bf16, ushort, 2)
GEMM_TN_KERNEL(gemm_tn_i8, char, 3)

/* Strided batched products for attention over long sequences: product z of
 * nz multiplies A + a_off + (z / nh) * sa_b + (z % nh) * sa_h by the packed
 * float32 matrix at Bp + b_off + z * sb into C + c_off + (z / nh) * sc_b +
 * (z % nh) * sc_h (dimension 2 walks z). No bias, no activation. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm_tn_batched(__global const float *A, int a_off, int sa_b, int sa_h,
                     __global const float *Bp, int b_off, int sb, __global float *C, int c_off,
                     int sc_b, int sc_h, int nh, int M, int N, int K, int lda, int ldc)
{
    int z = get_global_id(2), zb = z / nh, zh = z % nh;
    gemm_tn_body(A + a_off + (size_t)zb * sa_b + (size_t)zh * sa_h, (__global const uchar *)Bp,
                 C + c_off + (size_t)zb * sc_b + (size_t)zh * sc_h, C, M, N, K, lda, ldc, 0, 0,
                 0, (size_t)b_off + (size_t)z * sb);
}

/* Packs nz matrices W (N, K), W[n][k] at src[off + (z / nh) * s_b + (z % nh) *
 * s_h + n * rs + k * cs], into gemm_tn's panels, matrix z at dst + dst_off +
 * z * N * K (total = nz * N * K); rows n >= n_valid are zeros (padding):
 * the keys (rs the row of qkv, cs 1) and the values (rs 1, cs the row) of
 * each head, read in place from packed qkv. */
__kernel void pack_panels(__global const float *src, __global float *dst, int dst_off, int N,
                          int K, int n_valid, int off, int nh, int s_b, int s_h, int rs, int cs,
                          int total)
{
    int gid = get_global_id(0);
    if (gid >= total)
        return;
    dst += dst_off;
    int nk = N * K, z = gid / nk, r = gid % nk;
    int n0 = r / (GT_N * K) * GT_N, w = min(GT_N, N - n0), t = r - n0 * K;
    int k = t / w, n = n0 + t % w;
    dst[gid] = n < n_valid ? src[off + (size_t)(z / nh) * s_b + (size_t)(z % nh) * s_h +
                                 (size_t)n * rs + (size_t)k * cs]
                           : 0.0f;
}

/* Attention on CPU devices, flash style: a work-item takes GT_M query rows
 * (dimension 0) of head h (dimension 1) of sequence b (dimension 2), and
 * computes their scores against all S keys with gemm_tn's register tile
 * (the keys packed in 64-column panels by pack_panels, so that no dot
 * product is reduced across a vector), keeps them in private memory, takes
 * the softmax there and multiplies by the values read in place from qkv
 * (B*S, 3D). Nothing of size S*S leaves the caches. Kp: the keys of each
 * (sequence, head), (S, dh), packed with the panels padded to 64 keys (pack_panels with N the
 * multiple of 64 from S and n_valid S). dh: a multiple of 16; S <= FA_MAX_S.
 * causal: row i sees keys j <= i. */
#define FA_MAX_S 1536
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void attention_flash_cpu(__global const float *qkv, __global const float *Kp,
                         __global float *out, int S, int H, int dh, float scale, int causal)
{
    int i0 = get_global_id(0) * GT_M, h = get_global_id(1), b = get_global_id(2);
    if (i0 >= S)
        return;
    int D = H * dh, row = 3 * D, nq = min(GT_M, S - i0), nv = dh / 16;
    __global const float *q0 = qkv + ((size_t)b * S + i0) * row + (size_t)h * dh;
    __global const float *qr[GT_M];
    for (int r = 0; r < GT_M; r++)
        qr[r] = q0 + (size_t)min(r, nq - 1) * row; /* rows past S repeat the last */
    __global const float *kp = Kp + ((size_t)b * H + h) * ((S + GT_N - 1) / GT_N * GT_N) * dh;
    int lim[GT_M], most = 0;
    for (int r = 0; r < GT_M; r++) {
        lim[r] = causal ? min(S, i0 + min(r, nq - 1) + 1) : S;
        most = max(most, lim[r]);
    }
    float p[GT_M][FA_MAX_S];
    /* scores, 64 keys at a time: the keys are packed in full panels (those
     * past S are zeros, and past each row's limit the softmax ignores them) */
    for (int n0 = 0; n0 < most; n0 += GT_N) {
        __global const float *pb = kp + (size_t)n0 * dh;
        float16 c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float16 c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        float16 c40 = 0, c41 = 0, c42 = 0, c43 = 0, c50 = 0, c51 = 0, c52 = 0, c53 = 0;
        __global const float *a0 = qr[0], *a1 = qr[1], *a2 = qr[2], *a3 = qr[3], *a4 = qr[4],
                             *a5 = qr[5];
        for (int k = 0; k < dh; k++) {
            __global const float *bk = pb + (size_t)k * GT_N;
            float16 b0 = vload16(0, bk), b1 = vload16(1, bk), b2 = vload16(2, bk),
                    b3 = vload16(3, bk);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
        }
#define FA_STORE(i)                                                                              \
    vstore16(c##i##0 * scale, 0, p[i] + n0);                                                    \
    vstore16(c##i##1 * scale, 0, p[i] + n0 + 16);                                               \
    vstore16(c##i##2 * scale, 0, p[i] + n0 + 32);                                               \
    vstore16(c##i##3 * scale, 0, p[i] + n0 + 48);
        FA_STORE(0) FA_STORE(1) FA_STORE(2) FA_STORE(3) FA_STORE(4) FA_STORE(5)
#undef FA_STORE
    }
    /* softmax of each row over its keys */
    float inv[GT_M];
    for (int r = 0; r < GT_M; r++) {
        int L = lim[r];
        inv[r] = 1.0f / exp_sum_private(p[r], L, max_private(p[r], L));
        for (int j = L; j < most; j++)
            p[r][j] = 0.0f; /* masked (causal) */
    }
    /* out = P V, the values read in place: 64 columns of the head at a time
     * (6 x 4 accumulators, as the scores), then 16 */
    __global const float *vb = qkv + (size_t)b * S * row + 2 * D + (size_t)h * dh;
    __global float *ob = out + ((size_t)b * S + i0) * D + (size_t)h * dh;
    int c = 0;
    for (; c + 4 <= nv; c += 4) {
        float16 c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float16 c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        float16 c40 = 0, c41 = 0, c42 = 0, c43 = 0, c50 = 0, c51 = 0, c52 = 0, c53 = 0;
        float *a0 = p[0], *a1 = p[1], *a2 = p[2], *a3 = p[3], *a4 = p[4], *a5 = p[5];
        for (int k = 0; k < most; k++) {
            __global const float *vk = vb + (size_t)k * row + 16 * c;
            float16 b0 = vload16(0, vk), b1 = vload16(1, vk), b2 = vload16(2, vk),
                    b3 = vload16(3, vk);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
        }
#define FA_OUT(i)                                                                                \
    if ((i) < nq) {                                                                             \
        __global float *o = ob + (size_t)(i) * D + 16 * c;                                      \
        vstore16(c##i##0 * inv[i], 0, o);                                                       \
        vstore16(c##i##1 * inv[i], 0, o + 16);                                                  \
        vstore16(c##i##2 * inv[i], 0, o + 32);                                                  \
        vstore16(c##i##3 * inv[i], 0, o + 48);                                                  \
    }
        FA_OUT(0) FA_OUT(1) FA_OUT(2) FA_OUT(3) FA_OUT(4) FA_OUT(5)
#undef FA_OUT
    }
    for (; c < nv; c++) {
        float16 o[GT_M] = {0, 0, 0, 0, 0, 0};
        for (int j = 0; j < most; j++) {
            float16 v = vload16(c, vb + (size_t)j * row);
            for (int r = 0; r < GT_M; r++)
                o[r] = fma((float16)p[r][j], v, o[r]);
        }
        for (int r = 0; r < nq; r++)
            vstore16(o[r] * inv[r], c, ob + (size_t)r * D);
    }
}

/* CLBlast with 16-bit weights: the weight widened to float32 before its GEMM. */
__kernel void widen_f16(__global const ushort *src, __global float *dst, int n)
{
    int i = get_global_id(0);
    if (i < n)
        dst[i] = vload_half(i, (__global const half *)src);
}

__kernel void widen_bf16(__global const ushort *src, __global float *dst, int n)
{
    int i = get_global_id(0);
    if (i < n)
        dst[i] = as_float((uint)src[i] << 16);
}

/* int8 (N, K) rows, their N scales from the next 64 bytes after the N * K
 * integers. */
__kernel void widen_i8(__global const char *src, __global float *dst, int n, int K)
{
    int i = get_global_id(0);
    if (i < n) {
        __global const float *sc = (__global const float *)(src + ((size_t)n + 63) / 64 * 64);
        dst[i] = (float)src[i] * sc[i / K];
    }
}
