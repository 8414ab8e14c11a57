/* Activations. The codes match enum tsr_act in tsr_cl_internal.h. */
#define ACT_NONE 0
#define ACT_GELU 1       /* exact, erf */
#define ACT_QUICK_GELU 2 /* x * sigmoid(1.702 x) */
#define ACT_GELU_TANH 3  /* tanh approximation */
#define ACT_RELU 4
#define ACT_TANH 5

/* One body for every vector width: act_apply (float) and act16 (float16). */
#define DEFINE_ACT(T, NAME)                                                                     \
    inline T NAME(T x, int act)                                                                 \
    {                                                                                           \
        if (act == ACT_GELU)                                                                    \
            return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f));                           \
        if (act == ACT_QUICK_GELU)                                                              \
            return x / (1.0f + exp(-1.702f * x));                                               \
        if (act == ACT_GELU_TANH)                                                               \
            return 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))); \
        if (act == ACT_RELU)                                                                    \
            return fmax(x, (T)0.0f);                                                            \
        if (act == ACT_TANH)                                                                    \
            return tanh(x);                                                                     \
        return x;                                                                               \
    }
DEFINE_ACT(float, act_apply)
DEFINE_ACT(float16, act16)

/* y (rows, cols) = act(y + bias[col]); bias may be unused (has_bias 0). */
__kernel void bias_act(__global float *y, __global const float *bias, int cols,
                       int has_bias, int act, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    float v = y[i];
    if (has_bias)
        v += bias[i % cols];
    y[i] = act_apply(v, act);
}

/* y += x, n elements. */
__kernel void add_inplace(__global float *y, __global const float *x, int n)
{
    int i = get_global_id(0);
    if (i < n)
        y[i] += x[i];
}

/* out (B*S, D) = tok[ids] + pos[pos0 + s] (+ type[0] when has_type: BERT's
 * token type 0). ids are range-checked on the host. */
__kernel void embed_tokens(__global float *out, __global const int *ids,
                           __global const float *tok, __global const float *pos,
                           __global const float *type, int has_type, int S, int pos0, int D,
                           int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int d = i % D;
    int t = i / D;
    int s = t % S;
    float v = tok[(size_t)ids[t] * D + d] + pos[(size_t)(pos0 + s) * D + d];
    if (has_type)
        v += type[d];
    out[i] = v;
}

/* The input of a kernel-3, padding-1 1-D convolution as rows:
 * cols[t, c*3 + k] = in(c, t*stride + k - 1), zero outside 0..T_in-1, where
 * in(c, s) = x[c*cs + s*ss]. cols: (T_out, C*3), n = T_out*C*3. */
__kernel void im2col_1d(__global const float *x, __global float *cols, int C, int T_in,
                        int cs, int ss, int stride, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int k = i % 3;
    int c = (i / 3) % C;
    int t = i / (3 * C);
    int s = t * stride + k - 1;
    cols[i] = s >= 0 && s < T_in ? x[(size_t)c * cs + (size_t)s * ss] : 0.0f;
}

/* Patch extraction for a stride-p, kernel-p convolution without padding.
 * px: (B, C, H, W). cols: (B*gh*gw, C*p*p), column = c*p*p + ky*p + kx. */
__kernel void im2col_patches(__global const float *px, __global float *cols,
                             int C, int H, int W, int p, int gh, int gw, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int K = C * p * p;
    int k = i % K;
    int r = i / K;
    int np = gh * gw;
    int b = r / np;
    int t = r % np;
    int py = t / gw, pxx = t % gw;
    int c = k / (p * p);
    int ky = (k / p) % p;
    int kx = k % p;
    cols[i] = px[(((size_t)b * C + c) * H + py * p + ky) * W + pxx * p + kx];
}

/* out (B, has_cls+np, D): with a class token row 0 = cls + pos[0] and row
 * 1+t = patches[b*np+t] + pos[1+t]; without, row t = patches[b*np+t] + pos[t]. */
__kernel void vit_embed(__global float *out, __global const float *patches,
                        __global const float *cls, __global const float *pos,
                        int has_cls, int np, int D, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int d = i % D;
    int r = i / D;
    int S = np + has_cls;
    int t = r % S;
    int b = r / S;
    float v = has_cls && t == 0 ? cls[d] : patches[((size_t)b * np + t - has_cls) * D + d];
    out[i] = v + pos[(size_t)t * D + d];
}

/* dst (rows, D) = src[idx[row]]. */
__kernel void gather_rows(__global float *dst, __global const float *src,
                          __global const int *idx, int D, int n)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    int d = i % D;
    int r = i / D;
    dst[i] = src[(size_t)idx[r] * D + d];
}
