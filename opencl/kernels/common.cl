/* Shared helpers. WG (the work-group size of row kernels, a power of two)
 * arrives as a -D define from the per-device tuning table. */
#ifndef WG
#define WG 64
#endif

/* Sum of v over the work-group; every work-item gets the result. */
inline float wg_sum(__local float *red, float v)
{
    int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline float wg_max(__local float *red, float v)
{
    int lid = get_local_id(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            red[lid] = fmax(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Horizontal sum and maximum of a 16-wide vector, pairwise. */
inline float hsum16(float16 v)
{
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    return (b.x + b.y) + (b.z + b.w);
}

inline float hmax16(float16 v)
{
    float8 a = fmax(v.lo, v.hi);
    float4 b = fmax(a.lo, a.hi);
    return fmax(fmax(b.x, b.y), fmax(b.z, b.w));
}

/* The largest of p[0..n) in private memory (n >= 1). */
inline float max_private(const float *p, int n)
{
    int j = 0;
    float16 m16 = -INFINITY;
    for (; j + 16 <= n; j += 16)
        m16 = fmax(m16, vload16(0, p + j));
    float m = hmax16(m16);
    for (; j < n; j++)
        m = fmax(m, p[j]);
    return m;
}

/* p[j] = exp(p[j] - m) for j < n in private memory, 16 at a time; returns
 * their sum (the softmax of a row kept in private memory). */
inline float exp_sum_private(float *p, int n, float m)
{
    int j = 0;
    float16 s16 = 0.0f;
    for (; j + 16 <= n; j += 16) {
        float16 e = exp(vload16(0, p + j) - m);
        s16 += e;
        vstore16(e, 0, p + j);
    }
    float s = hsum16(s16);
    for (; j < n; j++) {
        p[j] = exp(p[j] - m);
        s += p[j];
    }
    return s;
}
