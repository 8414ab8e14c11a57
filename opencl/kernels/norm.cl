/* Row layernorm: y = (x - mean) / sqrt(var + eps) * g + b, one work-group per row.
 * x, y: (rows, dim); g, b: (dim). Two-pass variance, as PyTorch computes it. */
__kernel void layernorm(__global const float *x, __global float *y,
                        __global const float *g, __global const float *b,
                        int dim, float eps)
{
    __local float red[WG];
    size_t row = get_group_id(0);
    int lid = get_local_id(0);
    __global const float *xr = x + row * (size_t)dim;
    __global float *yr = y + row * (size_t)dim;
    float s = 0.0f;
    for (int i = lid; i < dim; i += WG)
        s += xr[i];
    float mean = wg_sum(red, s) / (float)dim;
    float v = 0.0f;
    for (int i = lid; i < dim; i += WG) {
        float d = xr[i] - mean;
        v += d * d;
    }
    float var = wg_sum(red, v) / (float)dim;
    float inv = 1.0f / sqrt(var + eps);
    for (int i = lid; i < dim; i += WG)
        yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
}

/* The same for CPU devices: one work-item per row, 16-wide along it (the
 * work-group version's barriers dominate on PoCL). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void layernorm_cpu(__global const float *x, __global float *y, __global const float *g,
                   __global const float *b, int dim, float eps, int rows)
{
    int row = get_global_id(0);
    if (row >= rows)
        return;
    __global const float *xr = x + (size_t)row * dim;
    __global float *yr = y + (size_t)row * dim;
    int i = 0;
    float16 s16 = 0.0f;
    for (; i + 16 <= dim; i += 16)
        s16 += vload16(0, xr + i);
    float s = hsum16(s16);
    for (; i < dim; i++)
        s += xr[i];
    float mean = s / (float)dim;
    float16 v16 = 0.0f;
    for (i = 0; i + 16 <= dim; i += 16) {
        float16 d = vload16(0, xr + i) - mean;
        v16 = fma(d, d, v16);
    }
    float v = hsum16(v16);
    for (; i < dim; i++) {
        float d = xr[i] - mean;
        v = fma(d, d, v);
    }
    float inv = 1.0f / sqrt(v / (float)dim + eps);
    for (i = 0; i + 16 <= dim; i += 16)
        vstore16((vload16(0, xr + i) - mean) * inv * vload16(0, g + i) + vload16(0, b + i), 0,
                 yr + i);
    for (; i < dim; i++)
        yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
}

/* Row L2 normalisation in place: x /= max(||x||, 1e-12). x: (rows, dim). */
__kernel void l2norm(__global float *x, int dim)
{
    __local float red[WG];
    size_t row = get_group_id(0);
    int lid = get_local_id(0);
    __global float *xr = x + row * (size_t)dim;
    float s = 0.0f;
    for (int i = lid; i < dim; i += WG)
        s += xr[i] * xr[i];
    float n = fmax(sqrt(wg_sum(red, s)), 1e-12f);
    for (int i = lid; i < dim; i += WG)
        xr[i] = xr[i] / n;
}
