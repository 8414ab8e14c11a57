/* Fused multi-head attention for CPU devices: one work-item per (batch, head,
 * query row) computes the scores against every key, the masked softmax and
 * the weighted sum of the values, reading packed qkv (B*S, 3D) and writing
 * out (B*S, D). Consecutive work-items share one (batch, head), so its keys
 * and values stay in cache. Masking follows softmax_rows. */
#define ATT_MAX_S 1024

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
