/* Fused multi-head attention for CPU devices: one work-item per (batch, head,
 * query row) computes the scores against every key, the masked softmax and
 * the weighted sum of the values, reading packed qkv (B*S, 3D) and writing
 * out (B*S, D). Consecutive work-items share one (batch, head), so its keys
 * and values stay in cache. Masking follows softmax_rows. */
#define ATT_MAX_S 1536

__kernel void attention_rows(__global const float *qkv, __global float *out, int S, int H,
                             int dh, float scale, int causal, __global const int *lens,
                             int use_lens, int n)
{
    int gid = get_global_id(0);
    if (gid >= n)
        return;
    int i = gid % S, bh = gid / S, h = bh % H, b = bh / H, D = H * dh;
    int lim = S;
    if (causal)
        lim = min(lim, i + 1);
    if (use_lens)
        lim = min(lim, lens[b]);
    if (lim < 1)
        lim = 1;
    size_t row = (size_t)3 * D;
    __global const float *q = qkv + ((size_t)b * S + i) * row + (size_t)h * dh;
    __global const float *kb = qkv + (size_t)b * S * row + D + (size_t)h * dh;
    __global const float *vb = kb + D;
    float p[ATT_MAX_S];
    float m = -INFINITY;
    for (int j = 0; j < lim; j++) {
        __global const float *k = kb + (size_t)j * row;
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
        p[j] = s * scale;
        m = fmax(m, p[j]);
    }
    float sum = 0.0f;
    for (int j = 0; j < lim; j++) {
        p[j] = exp(p[j] - m);
        sum += p[j];
    }
    float inv = 1.0f / sum;
    __global float *o = out + ((size_t)b * S + i) * D + (size_t)h * dh;
    int d = 0;
    for (; d + 16 <= dh; d += 16) {
        float16 acc = 0.0f;
        for (int j = 0; j < lim; j++)
            acc = fma((float16)p[j], vload16(0, vb + (size_t)j * row + d), acc);
        vstore16(acc * inv, 0, o + d);
    }
    for (; d < dh; d++) {
        float acc = 0.0f;
        for (int j = 0; j < lim; j++)
            acc = fma(p[j], vb[(size_t)j * row + d], acc);
        o[d] = acc * inv;
    }
}

/* Attention of Sq queries against Sk keys and values held in separate
 * buffers with their own strides: the decoder's self-attention over its KV
 * cache, its cross-attention over the encoder's keys and values, and encoder
 * sequences longer than ATT_MAX_S. One work-item per (batch, head, query)
 * with a one-pass (online) softmax, so any Sk fits; dh <= 128.
 *   q[(b*Sq + i)*q_row + q_off + h*dh + d]
 *   k[b*kv_batch + j*kv_row + k_off + h*dh + d], v likewise with v_off
 *   out[(b*Sq + i)*o_row + h*dh + d]
 * causal: query i sees keys j <= i + (Sk - Sq) (the cache holds the past).
 * use_lens: sequence b sees only its first lens[b] keys (at least one). */
__kernel void attention_kv(__global const float *q, int q_off, int q_row,
                           __global const float *kv, int k_off, int v_off, int kv_row,
                           int kv_batch, __global float *out, int o_row, int Sq, int Sk, int H,
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
    __global const float *kb = kv + (size_t)b * kv_batch + k_off + (size_t)h * dh;
    __global const float *vb = kv + (size_t)b * kv_batch + v_off + (size_t)h * dh;
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
