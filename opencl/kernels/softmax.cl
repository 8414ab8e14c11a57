/* Masked softmax over attention scores, one work-group per row.
 * s: (batch, heads, sq, sk). Row r = (b*heads + h)*sq + i.
 * Key j is kept when j < lens[b] (if use_lens) and j <= i + (sk - sq) (if causal).
 * Masked entries become 0. scale multiplies the scores first. */
__kernel void softmax_rows(__global float *s, int sq, int sk, int heads, float scale,
                           int causal, __global const int *lens, int use_lens)
{
    __local float red[WG];
    size_t row = get_group_id(0);
    int lid = get_local_id(0);
    int i = (int)(row % (size_t)sq);
    int b = (int)(row / ((size_t)sq * heads));
    int lim = sk;
    if (causal)
        lim = min(lim, i + 1 + (sk - sq));
    if (use_lens)
        lim = min(lim, lens[b]);
    if (lim < 1)
        lim = 1;
    __global float *r = s + row * (size_t)sk;
    float m = -INFINITY;
    for (int j = lid; j < lim; j += WG)
        m = fmax(m, r[j] * scale);
    m = wg_max(red, m);
    float sum = 0.0f;
    for (int j = lid; j < lim; j += WG)
        sum += exp(r[j] * scale - m);
    sum = wg_sum(red, sum);
    float inv = 1.0f / sum;
    for (int j = lid; j < sk; j += WG)
        r[j] = j < lim ? exp(r[j] * scale - m) * inv : 0.0f;
}

/* The same for CPU devices, one work-item per row (the rows of long
 * attention run as GEMMs): 16-wide vectors along the row and no barriers,
 * where the work-group version's local reductions dominate on PoCL. The
 * exponentials are written in the second pass and rescaled in the third. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void softmax_rows_cpu(__global float *s, int sq, int sk, int heads, float scale, int causal,
                      __global const int *lens, int use_lens, int nrows)
{
    int row = get_global_id(0);
    if (row >= nrows)
        return;
    int i = row % sq, b = row / (sq * heads), lim = sk;
    if (causal)
        lim = min(lim, i + 1 + (sk - sq));
    if (use_lens)
        lim = min(lim, lens[b]);
    lim = max(lim, 1);
    __global float *r = s + (size_t)row * sk;
    int j = 0;
    float16 m16 = -INFINITY;
    for (; j + 16 <= lim; j += 16)
        m16 = fmax(m16, vload16(0, r + j));
    float m = hmax16(m16);
    for (; j < lim; j++)
        m = fmax(m, r[j]);
    m *= scale; /* scale > 0: the largest scaled score */
    float16 sum16 = 0.0f;
    for (j = 0; j + 16 <= lim; j += 16) {
        float16 e = exp(vload16(0, r + j) * scale - m);
        sum16 += e;
        vstore16(e, 0, r + j);
    }
    float sum = hsum16(sum16);
    for (; j < lim; j++) {
        float e = exp(r[j] * scale - m);
        sum += e;
        r[j] = e;
    }
    float inv = 1.0f / sum;
    for (j = 0; j + 16 <= lim; j += 16)
        vstore16(vload16(0, r + j) * inv, 0, r + j);
    for (; j < lim; j++)
        r[j] *= inv;
    for (; j < sk; j++)
        r[j] = 0.0f;
}
