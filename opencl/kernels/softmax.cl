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
