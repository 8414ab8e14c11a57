/* Fused multi-head attention for CPU devices: one work-item per (batch, head,
 * four query rows) computes the scores against every key, the masked softmax and
 * the weighted sum of the values, reading packed qkv (B*S, 3D) and writing
 * out (B*S, D). Consecutive work-items share one (batch, head), so its keys
 * and values stay in cache. Masking follows softmax_rows. */
#define ATT_MAX_S 1536

/* Four query rows per work-item, so that each key and value row read serves
 * four queries: the encoders' attention is bound by reading K and V. Each
 * row's arithmetic is what one work-item per row would do. */
#define ATT_QB 4
__kernel void attention_rows(__global const float *qkv, __global float *out, int S, int H,
                             int dh, float scale, int causal, __global const int *lens,
                             int use_lens, int n)
{
    int gid = get_global_id(0);
    if (gid >= n)
        return;
    int groups = (S + ATT_QB - 1) / ATT_QB;
    int i0 = (gid % groups) * ATT_QB, bh = gid / groups, h = bh % H, b = bh / H, D = H * dh;
    int nq = min(ATT_QB, S - i0);
    int len = use_lens ? min(S, lens[b]) : S;
    int lim[ATT_QB], most = 1;
    for (int r = 0; r < ATT_QB; r++) {
        int l = causal ? min(len, i0 + r + 1) : len;
        lim[r] = max(l, 1);
        if (r < nq)
            most = max(most, lim[r]);
    }
    size_t row = (size_t)3 * D;
    __global const float *q0 = qkv + ((size_t)b * S + i0) * row + (size_t)h * dh;
    __global const float *kb = qkv + (size_t)b * S * row + D + (size_t)h * dh;
    __global const float *vb = kb + D;
    float p[ATT_QB][ATT_MAX_S];
    float m[ATT_QB] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int j = 0; j < most; j++) {
        __global const float *k = kb + (size_t)j * row;
        for (int r = 0; r < nq; r++) {
            if (j >= lim[r])
                continue;
            __global const float *q = q0 + (size_t)r * row;
            float s = 0.0f;
            int d = 0;
            float16 acc = 0.0f;
            for (; d + 16 <= dh; d += 16)
                acc = fma(vload16(0, q + d), vload16(0, k + d), acc);
            float8 a8 = acc.lo + acc.hi;
            float4 a4 = a8.lo + a8.hi;
            s = a4.x + a4.y + a4.z + a4.w;
            for (; d < dh; d++)
                s = fma(q[d], k[d], s);
            p[r][j] = s * scale;
            m[r] = fmax(m[r], p[r][j]);
        }
    }
    float inv[ATT_QB];
    for (int r = 0; r < nq; r++) {
        float sum = 0.0f;
        for (int j = 0; j < lim[r]; j++) {
            p[r][j] = exp(p[r][j] - m[r]);
            sum += p[r][j];
        }
        inv[r] = 1.0f / sum;
    }
    for (int d = 0; d < dh; d += 16) {
        int w = min(16, dh - d);
        if (w == 16) {
            float16 acc[ATT_QB] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int j = 0; j < most; j++) {
                float16 v = vload16(0, vb + (size_t)j * row + d);
                for (int r = 0; r < nq; r++)
                    if (j < lim[r])
                        acc[r] = fma((float16)p[r][j], v, acc[r]);
            }
            for (int r = 0; r < nq; r++)
                vstore16(acc[r] * inv[r], 0, out + ((size_t)b * S + i0 + r) * D + (size_t)h * dh + d);
        } else {
            for (int e = d; e < dh; e++)
                for (int r = 0; r < nq; r++) {
                    float acc = 0.0f;
                    for (int j = 0; j < lim[r]; j++)
                        acc = fma(p[r][j], vb[(size_t)j * row + e], acc);
                    out[((size_t)b * S + i0 + r) * D + (size_t)h * dh + e] = acc * inv[r];
                }
        }
    }
}

/* Attention of Sq queries against Sk keys and values held in separate
 * buffers with their own strides: the decoder's self-attention over its KV
 * cache, its cross-attention over the encoder's keys and values, and encoder
 * sequences longer than ATT_MAX_S. One work-item per (batch, head, query)
 * with a one-pass (online) softmax, so any Sk fits; dh <= 128.
 *   q[(b*Sq + i)*q_row + q_off + h*dh + d]
 *   k[(b/kv_group)*kv_batch + j*kv_row + k_off + h*dh + d], v likewise with v_off
 *   (kv_group sequences share one set of keys and values: the beams of one image)
 *   out[(b*Sq + i)*o_row + h*dh + d]
 * causal: query i sees keys j <= i + (Sk - Sq) (the cache holds the past).
 * use_lens: sequence b sees only its first lens[b] keys (at least one). */
__kernel void attention_kv(__global const float *q, int q_off, int q_row,
                           __global const float *kv, int k_off, int v_off, int kv_row,
                           int kv_batch, int kv_group, __global float *out, int o_row, int Sq,
                           int Sk, int H,
                           int dh, float scale, int causal, __global const int *lens,
                           int use_lens, int n)
{
    int gid = get_global_id(0);
    if (gid >= n)
        return;
    int i = gid % Sq, bh = gid / Sq, h = bh % H, b = bh / H;
    int lim = causal ? min(Sk, i + 1 + (Sk - Sq)) : Sk;
    if (use_lens)
        lim = max(min(lim, lens[b]), 1);
    __global const float *qr = q + ((size_t)b * Sq + i) * q_row + q_off + (size_t)h * dh;
    __global const float *kb = kv + (size_t)(b / kv_group) * kv_batch + k_off + (size_t)h * dh;
    __global const float *vb = kv + (size_t)(b / kv_group) * kv_batch + v_off + (size_t)h * dh;
    float16 acc[8];
    float16 qv[8];
    int nv = dh / 16, rem = dh - nv * 16;
    for (int c = 0; c < nv; c++) {
        qv[c] = vload16(c, qr);
        acc[c] = 0.0f;
    }
    float accr[16], qrr[16];
    for (int d = 0; d < rem; d++) {
        qrr[d] = qr[nv * 16 + d];
        accr[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < lim; j++) {
        __global const float *k = kb + (size_t)j * kv_row;
        float16 s16 = 0.0f;
        for (int c = 0; c < nv; c++)
            s16 = fma(qv[c], vload16(c, k), s16);
        float8 a8 = s16.lo + s16.hi;
        float4 a4 = a8.lo + a8.hi;
        float s = a4.x + a4.y + a4.z + a4.w;
        for (int d = 0; d < rem; d++)
            s = fma(qrr[d], k[nv * 16 + d], s);
        s *= scale;
        float mn = fmax(m, s);
        float c = exp(m - mn), p = exp(s - mn);
        l = l * c + p;
        m = mn;
        __global const float *v = vb + (size_t)j * kv_row;
        for (int cc = 0; cc < nv; cc++)
            acc[cc] = fma((float16)p, vload16(cc, v), acc[cc] * c);
        for (int d = 0; d < rem; d++)
            accr[d] = fma(p, v[nv * 16 + d], accr[d] * c);
    }
    float inv = lim > 0 ? 1.0f / l : 0.0f;
    __global float *o = out + ((size_t)b * Sq + i) * o_row + (size_t)h * dh;
    for (int c = 0; c < nv; c++)
        vstore16(acc[c] * inv, c, o);
    for (int d = 0; d < rem; d++)
        o[nv * 16 + d] = accr[d] * inv;
}

/* attention_kv for CPU devices, where Sk <= ATT_MAX_S: the scores of a query
 * against every key first (kept in private memory), then one vectorised
 * pass of exponentials and the weighted sum of the values without
 * rescaling. The online softmax above computes two scalar exponentials and
 * rescales the accumulator at every key; on a CPU those dominate a decoding
 * step's cross-attention over 1,500 encoder positions. Same arguments. */
__kernel void attention_kv_cpu(__global const float *q, int q_off, int q_row,
                               __global const float *kv, int k_off, int v_off, int kv_row,
                               int kv_batch, int kv_group, __global float *out, int o_row, int Sq,
                               int Sk, int H, int dh, float scale, int causal,
                               __global const int *lens, int use_lens, int n)
{
    int gid = get_global_id(0);
    if (gid >= n)
        return;
    int i = gid % Sq, bh = gid / Sq, h = bh % H, b = bh / H;
    int lim = causal ? min(Sk, i + 1 + (Sk - Sq)) : Sk;
    if (use_lens)
        lim = min(lim, lens[b]);
    lim = max(lim, 1);
    __global const float *qr = q + ((size_t)b * Sq + i) * q_row + q_off + (size_t)h * dh;
    __global const float *kb = kv + (size_t)(b / kv_group) * kv_batch + k_off + (size_t)h * dh;
    __global const float *vb = kv + (size_t)(b / kv_group) * kv_batch + v_off + (size_t)h * dh;
    int nv = dh / 16, rem = dh - nv * 16;
    float16 qv[8];
    for (int c = 0; c < nv; c++)
        qv[c] = vload16(c, qr) * scale;
    float qrr[16];
    for (int d = 0; d < rem; d++)
        qrr[d] = qr[nv * 16 + d] * scale;
    float p[ATT_MAX_S];
    float m = -INFINITY;
    for (int j = 0; j < lim; j++) {
        __global const float *k = kb + (size_t)j * kv_row;
        float16 s16 = 0.0f;
        for (int c = 0; c < nv; c++)
            s16 = fma(qv[c], vload16(c, k), s16);
        float s = hsum16(s16);
        for (int d = 0; d < rem; d++)
            s = fma(qrr[d], k[nv * 16 + d], s);
        p[j] = s;
        m = fmax(m, s);
    }
    float l = exp_sum_private(p, lim, m);
    float16 acc[8];
    float accr[16];
    for (int c = 0; c < nv; c++)
        acc[c] = 0.0f;
    for (int d = 0; d < rem; d++)
        accr[d] = 0.0f;
    for (int j = 0; j < lim; j++) {
        __global const float *v = vb + (size_t)j * kv_row;
        float16 pj = (float16)p[j];
        for (int c = 0; c < nv; c++)
            acc[c] = fma(pj, vload16(c, v), acc[c]);
        for (int d = 0; d < rem; d++)
            accr[d] = fma(p[j], v[nv * 16 + d], accr[d]);
    }
    float inv = 1.0f / l;
    __global float *o = out + ((size_t)b * Sq + i) * o_row + (size_t)h * dh;
    for (int c = 0; c < nv; c++)
        vstore16(acc[c] * inv, c, o);
    for (int d = 0; d < rem; d++)
        o[nv * 16 + d] = accr[d] * inv;
}

/* Appends the keys and values of Sq new tokens to a KV cache:
 * cache[(b*cap + past + i)*2D + c] = qkv[(b*Sq + i)*3D + D + c], c < 2D. */
__kernel void kv_append(__global const float *qkv, __global float *cache, int Sq, int D, int cap,
                        int past, int n)
{
    int gid = get_global_id(0);
    if (gid >= n)
        return;
    int c = gid % (2 * D), t = gid / (2 * D), i = t % Sq, b = t / Sq;
    cache[((size_t)b * cap + past + i) * 2 * D + c] = qkv[(size_t)t * 3 * D + D + c];
}
