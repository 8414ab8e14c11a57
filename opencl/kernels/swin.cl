/* The building blocks of windowed (Swin) transformers on spectrograms or
 * images: rectangular patches, row gathers with zero fill (window
 * partition with a cyclic shift and padding, window reverse, patch
 * merging), attention inside windows with a relative position bias and
 * the shifted windows' mask, attentional feature fusion, and means of rows. */

/* Non-overlapping ph x pw patches (a convolution whose stride is its kernel)
 * as rows. Image i (of the rows' batch) starts at
 * off + (i / inner) * s_outer + (i % inner) * s_inner and holds C planes of
 * H x W. cols: (images*gh*gw, C*ph*pw), column c*ph*pw + ky*pw + kx. */
__kernel void im2col_rect(__global const float *px, __global float *cols, int off, int inner,
                          int s_inner, int s_outer, int C, int H, int W, int ph, int pw, int gh,
                          int gw, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int K = C * ph * pw;
    int k = i % K;
    int r = i / K;
    int np = gh * gw;
    int img = r / np, t = r % np;
    int py = t / gw, qx = t % gw;
    int c = k / (ph * pw), ky = (k / pw) % ph, kx = k % pw;
    size_t base = (size_t)off + (size_t)(img / inner) * s_outer + (size_t)(img % inner) * s_inner;
    cols[i] = px[base + ((size_t)c * H + py * ph + ky) * W + qx * pw + kx];
}

/* dst (B, Rout, D): row r of batch b is src's row idx[r] of batch b (src
 * (B, Rin, D)), or zeros where idx[r] < 0. */
__kernel void gather_rows_pad(__global float *dst, __global const float *src,
                              __global const int *idx, int Rout, int Rin, int D, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int d = i % D;
    int r = (i / D) % Rout;
    int b = i / (D * Rout);
    int j = idx[r];
    dst[i] = j >= 0 ? src[((size_t)b * Rin + j) * D + d] : 0.0f;
}

/* dst (B, Rout, D) += src's row idx[r] of the same batch (src (B, Rin, D)). */
__kernel void gather_add_rows(__global float *dst, __global const float *src,
                              __global const int *idx, int Rout, int Rin, int D, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int d = i % D;
    int r = (i / D) % Rout;
    int b = i / (D * Rout);
    dst[i] += src[((size_t)b * Rin + idx[r]) * D + d];
}

/* Attention inside windows of N = ws*ws tokens: qkv (windows, N, 3D) packed
 * q, k, v; out (windows, N, D). One work-item per (window, head, four
 * queries), as attention_rows does it for CPU devices: each key and value
 * row read serves four queries, dot products and sums run on float8 lanes.
 * score = q.k * scale + table[rel(i, j)][h] (the relative position bias
 * table ((2ws-1)^2, H), rel as Swin's relative_position_index) and, with a
 * region map (nW, N) of the shifted windows, -100 where the regions of the
 * query and the key differ (window w uses row w % nW). */
#define WIN_MAX_N 256
#define WIN_QB 4
inline float dot_lanes(__global const float *a, __global const float *b, int n)
{
    float8 acc = 0.0f;
    int d = 0;
    for (; d + 8 <= n; d += 8)
        acc = fma(vload8(0, a + d), vload8(0, b + d), acc);
    float4 a4 = acc.lo + acc.hi;
    float s = (a4.x + a4.y) + (a4.z + a4.w);
    for (; d < n; d++)
        s = fma(a[d], b[d], s);
    return s;
}
__kernel void window_attention(__global const float *qkv, __global float *out,
                               __global const float *table, __global const int *region,
                               int has_region, int nW, int ws, int H, int dh, float scale, int n)
{
    int gid = get_global_id(0);
    if (gid >= n)
        return;
    int N = ws * ws, groups = (N + WIN_QB - 1) / WIN_QB;
    int i0 = (gid % groups) * WIN_QB, wh = gid / groups, h = wh % H, w = wh / H;
    int nq = min(WIN_QB, N - i0), D = H * dh, span = 2 * ws - 1;
    size_t row = (size_t)3 * D;
    __global const float *q0 = qkv + ((size_t)w * N + i0) * row + (size_t)h * dh;
    __global const float *kb = qkv + (size_t)w * N * row + D + (size_t)h * dh;
    __global const float *vb = kb + D;
    __global const int *reg = region + (size_t)(w % nW) * N;
    float p[WIN_QB][WIN_MAX_N];
    float m[WIN_QB] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    /* rel(i, j) = base[i] - (yj * span + xj), with base[i] = (yi + ws - 1) span + xi + ws - 1 */
    int base[WIN_QB], ri[WIN_QB];
    for (int r = 0; r < WIN_QB; r++) {
        int i = min(i0 + r, N - 1);
        base[r] = (i / ws + ws - 1) * span + i % ws + ws - 1;
        ri[r] = has_region ? reg[i] : 0;
    }
    __global const float *tb = table + h;
    for (int j = 0, yj = 0, xj = 0; j < N; j++) {
        __global const float *k = kb + (size_t)j * row;
        int kj = yj * span + xj, rj = has_region ? reg[j] : 0;
        for (int r = 0; r < nq; r++) {
            float s = dot_lanes(q0 + (size_t)r * row, k, dh) * scale +
                      tb[(size_t)(base[r] - kj) * H];
            if (ri[r] != rj)
                s += -100.0f;
            p[r][j] = s;
            m[r] = fmax(m[r], s);
        }
        if (++xj == ws)
            xj = 0, yj++;
    }
    float inv[WIN_QB];
    for (int r = 0; r < nq; r++) {
        float sum = 0.0f;
        for (int j = 0; j < N; j++) {
            p[r][j] = exp(p[r][j] - m[r]);
            sum += p[r][j];
        }
        inv[r] = 1.0f / sum;
    }
    __global float *o0 = out + ((size_t)w * N + i0) * D + (size_t)h * dh;
    int d = 0;
    for (; d + 8 <= dh; d += 8) {
        float8 acc[WIN_QB] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int j = 0; j < N; j++) {
            float8 v = vload8(0, vb + (size_t)j * row + d);
            for (int r = 0; r < nq; r++)
                acc[r] = fma((float8)p[r][j], v, acc[r]);
        }
        for (int r = 0; r < nq; r++)
            vstore8(acc[r] * inv[r], 0, o0 + (size_t)r * D + d);
    }
    for (; d < dh; d++)
        for (int r = 0; r < nq; r++) {
            float acc = 0.0f;
            for (int j = 0; j < N; j++)
                acc = fma(p[r][j], vb[(size_t)j * row + d], acc);
            o0[(size_t)r * D + d] = acc * inv[r];
        }
}

/* Batch normalisation in inference (running statistics) of y (rows, C),
 * then an activation: y = act((y - mean) / sqrt(var + eps) * g + b). */
__kernel void batchnorm_act(__global float *y, __global const float *mean,
                            __global const float *var, __global const float *g,
                            __global const float *b, float eps, int C, int act, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int c = i % C;
    y[i] = act_apply((y[i] - mean[c]) / sqrt(var[c] + eps) * g[c] + b[c], act);
}

/* Attentional feature fusion: with s = sigmoid(loc + glob[b]) (loc (B, P, C),
 * glob (B, C)), x = 2 x s + 2 r (1 - s) in place (x, r (B, P, C)). */
__kernel void aff_combine(__global float *x, __global const float *r,
                          __global const float *loc, __global const float *glob, int P, int C,
                          int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int c = i % C;
    int b = i / (P * C);
    float s = 1.0f / (1.0f + exp(-(loc[i] + glob[(size_t)b * C + c])));
    x[i] = 2.0f * x[i] * s + 2.0f * r[i] * (1.0f - s);
}

/* out (B, C) = the mean of the R rows of x (B, R, C). */
__kernel void mean_rows(__global float *out, __global const float *x, int R, int C, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int c = i % C, b = i / C;
    __global const float *p = x + (size_t)b * R * C + c;
    float s = 0.0f;
    for (int r = 0; r < R; r++)
        s += p[(size_t)r * C];
    out[i] = s / (float)R;
}

/* A CLAP spectrogram as HTSAT's image: the per-bin batch normalisation of
 * mel (B, Cm, T, F), bicubic interpolation along time to Tw frames (torch's
 * align_corners=True, A = -0.75, clamped taps; none when T == Tw), then
 * frames [k*S, (k+1)*S) of every mel bin become rows k*F.. of an image
 * (B, Cm, r*F, S), r = Tw / S. */
inline float cubic1(float x) { return ((-0.75f + 2.0f) * x - (-0.75f + 3.0f)) * x * x + 1.0f; }
inline float cubic2(float x)
{
    return ((-0.75f * x - 5.0f * -0.75f) * x + 8.0f * -0.75f) * x - 4.0f * -0.75f;
}
__kernel void clap_mel2img(__global const float *mel, __global float *img,
                           __global const float *mean, __global const float *var,
                           __global const float *g, __global const float *bb, float eps, int T,
                           int F, int Tw, int S, int r, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int col = i % S;
    int row = (i / S) % (r * F);
    int bc = i / (S * r * F);
    int k = row / F, f = row % F;
    int t = k * S + col;
    __global const float *m = mel + (size_t)bc * T * F + f;
    float sc = g[f] / sqrt(var[f] + eps);
    float mu = mean[f], beta = bb[f];
    if (T == Tw) {
        img[i] = (m[(size_t)t * F] - mu) * sc + beta;
        return;
    }
    float scale = Tw > 1 ? (float)(T - 1) / (float)(Tw - 1) : 0.0f;
    float src = scale * (float)t;
    int t0 = (int)floor(src);
    float u = src - (float)t0;
    float u2 = 1.0f - u;
    float w[4] = {cubic2(u + 1.0f), cubic1(u), cubic1(u2), cubic2(u2 + 1.0f)};
    float acc = 0.0f;
    for (int j = 0; j < 4; j++) {
        int tt = clamp(t0 - 1 + j, 0, T - 1);
        acc += ((m[(size_t)tt * F] - mu) * sc + beta) * w[j];
    }
    img[i] = acc;
}
