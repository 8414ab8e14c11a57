/* Top k of each row of scores (rows, N), best first, ties to the lower index,
 * NaN below everything (-INFINITY included).
 *
 * A candidate is one ulong: the score's order in the high 32 bits and the
 * complement of its index in the low 32, so that one unsigned comparison
 * ranks two candidates, equal scores going to the lower index. 0 is the
 * empty slot: below every real candidate, because indices stay under
 * 0xffffffff. -0.0 and +0.0 are equal scores.
 *
 * Each work-item keeps its k best in a min-heap in global memory (the slot
 * it writes its result to), so private memory stays small for any k; only
 * the heap's root, the weakest kept candidate, lives in a register, and the
 * heap is touched only when a candidate beats it. At the end it sorts its k
 * best, best first. topk_scan reads scores; topk_merge reads the sorted runs
 * of k candidates that earlier passes wrote, leaving a run at its first
 * candidate that does not beat the root. A final pass (one work-item per
 * row) writes indices and their scores, read back from the scores, so that
 * values come out bit for bit. */

inline uint topk_order(float x)
{
    uint u = as_uint(x);
    uint o = u ^ ((uint)((int)u >> 31) | 0x80000000u); /* monotonic for non-NaN floats */
    o = (u & 0x7fffffffu) == 0 ? 0x80000000u : o;     /* -0.0 == +0.0 */
    return (u & 0x7fffffffu) > 0x7f800000u ? 0u : o;  /* NaN: lowest; -INFINITY maps to 0x7fffff */
}

inline ulong topk_key(float x, uint i) { return (ulong)topk_order(x) << 32 | (ulong)(~i); }

/* Replaces the root of the min-heap h[0..n-1] by c and restores the heap. */
inline void topk_sift(__global ulong *h, int n, ulong c)
{
    int i = 0;
    for (;;) {
        int l = 2 * i + 1;
        if (l >= n)
            break;
        int m = l + 1 < n && h[l + 1] < h[l] ? l + 1 : l;
        if (h[m] >= c)
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = c;
}

/* Sorts the heap h[0..k-1] best first (heapsort: the weakest goes last). */
inline void topk_sort(__global ulong *h, int k)
{
    for (int n = k - 1; n > 0; n--) {
        ulong weakest = h[0];
        topk_sift(h, n, h[n]);
        h[n] = weakest;
    }
}

/* Sorts the work-item's heap; in the final pass writes row's k indices at
 * res[row*k] and their scores' bits at res[nres + row*k] (an empty slot,
 * which k <= N rules out, would give -1 and NaN). */
inline void topk_emit(__global ulong *h, int k, int final, size_t row,
                      __global const float *s, int N, __global int *res, long nres)
{
    topk_sort(h, k);
    if (!final)
        return;
    for (int j = 0; j < k; j++) {
        uint i = ~(uint)h[j];
        res[row * k + j] = i < (uint)N ? (int)i : -1;
        res[nres + row * k + j] = as_int(i < (uint)N ? s[row * N + i] : NAN);
    }
}

/* First pass: work-item g takes chunk c = g % nc of row g / nc, either
 * scores c*chunk .. (c+1)*chunk-1 (contiguous) or c, c+nc, c+2nc, ...
 * (strided: adjacent work-items read adjacent scores, for GPUs), and leaves
 * its k best, sorted, at heaps[heap_off + g*k]. n = rows * nc. */
__kernel void topk_scan(__global const float *s, int N, int k, int chunk, int nc, int strided,
                        int n, __global ulong *heaps, long heap_off, int final,
                        __global int *res, long nres)
{
    int g = get_global_id(0);
    if (g >= n)
        return;
    size_t row = (size_t)(g / nc);
    int c = g % nc;
    __global ulong *h = heaps + heap_off + (size_t)g * k;
    for (int j = 0; j < k; j++)
        h[j] = 0;
    __global const float *x = s + row * N;
    int j0 = strided ? c : c * chunk;
    int step = strided ? nc : 1;
    int end = strided ? N : min(N, j0 + chunk);
    /* Scores come in rising index order, so a score beats the root exactly
     * when it is the larger float (never when NaN), unless the root is an
     * empty slot or a NaN (order 0): then the keys decide. */
    ulong root = 0;
    int weak = 1;       /* the root has order 0 */
    float above = 0.0f; /* otherwise: the root's score */
    for (int j = j0; j < end; j += step) {
        float v = x[j];
        if (!(weak || v > above))
            continue;
        ulong key = topk_key(v, (uint)j);
        if (key > root) {
            topk_sift(h, k, key);
            root = h[0];
            uint o = (uint)(root >> 32);
            weak = o == 0;
            above = as_float(o & 0x80000000u ? o ^ 0x80000000u : ~o);
        }
    }
    topk_emit(h, k, final, row, s, N, res, nres);
}

/* Later passes: each row of cand holds `runs` sorted runs of k candidates;
 * work-item g merges runs c*m .. c*m+m-1 (c = g % nc) of row g / nc into its
 * k best at heaps[heap_off + g*k]. n = rows * nc. */
__kernel void topk_merge(__global const ulong *cand, long cand_off, int runs, int m, int k,
                         int nc, int n, __global ulong *heaps, long heap_off, int final,
                         __global const float *s, int N, __global int *res, long nres)
{
    int g = get_global_id(0);
    if (g >= n)
        return;
    size_t row = (size_t)(g / nc);
    int c = g % nc;
    __global ulong *h = heaps + heap_off + (size_t)g * k;
    for (int j = 0; j < k; j++)
        h[j] = 0;
    __global const ulong *in = cand + cand_off + row * runs * k;
    int r1 = min(runs, (c + 1) * m);
    ulong root = 0;
    for (int r = c * m; r < r1; r++) {
        __global const ulong *run = in + (size_t)r * k;
        for (int j = 0; j < k; j++) {
            ulong key = run[j];
            if (key <= root)
                break; /* the rest of the run is weaker still */
            topk_sift(h, k, key);
            root = h[0];
        }
    }
    topk_emit(h, k, final, row, s, N, res, nres);
}
