/* The encoder layer shared by every tower, and the layers' shared scratch. */
#include <limits.h>
#include <math.h>

#include "tsr_tower.h"

void tsr_scratch_need(const tsr_enc_cfg *c, int rows, size_t need[TSR_SCRATCH_N])
{
    size_t r = (size_t)rows, f = sizeof(float);
    size_t want[TSR_SCRATCH_N] = {r * c->dim * f, r * 3 * c->dim * f, r * c->dim * f,
                                  r * c->ffn * f};
    for (int i = 0; i < TSR_SCRATCH_N; i++)
        if (want[i] > need[i])
            need[i] = want[i];
}

/* The GEMM path's scores of one sequence (all heads) may take this much. */
#define ATT_SCORES_MAX ((size_t)64 << 20)

/* The scratch attention as GEMMs needs: the padded keys alone for the flash
 * kernel, else the keys, the values and the scores; 0 and 0 where neither
 * applies (longer than TSR_ATT_MAX_S, scores over ATT_SCORES_MAX, or offsets
 * past the kernels' ints): the fused or online kernels run there. */
static void att_gemm_bytes(const tsr_enc_cfg *c, int B, int S, size_t *scores, size_t *kvp)
{
    size_t f = sizeof(float), dh = (size_t)(c->dim / c->heads);
    size_t Sp = ((size_t)S + TSR_GEMM_PANEL - 1) / TSR_GEMM_PANEL * TSR_GEMM_PANEL;
    *scores = *kvp = 0;
    if (S > TSR_ATT_MAX_S || (double)B * S * 3 * c->dim > INT_MAX ||
        (double)B * Sp * c->dim > INT_MAX)
        return;
    if (tsr_att_flash_ok(S, (int)dh)) {
        *kvp = (size_t)B * c->heads * Sp * dh * f;
    } else if ((size_t)c->heads * S * S * f <= ATT_SCORES_MAX) {
        *scores = (size_t)c->heads * S * S * f;
        *kvp = 2 * (size_t)S * c->dim * f;
    }
}

void tsr_scratch_need_att(tsr_queue *q, const tsr_enc_cfg *c, int B, int S,
                          size_t need[TSR_SCRATCH_N])
{
    if (!q->ctx->own_gemm || S < TSR_ATT_GEMM_MIN_S)
        return;
    size_t scores, kvp;
    att_gemm_bytes(c, B, S, &scores, &kvp);
    if (scores > need[TSR_SCRATCH_SCORES])
        need[TSR_SCRATCH_SCORES] = scores;
    if (kvp > need[TSR_SCRATCH_KVP])
        need[TSR_SCRATCH_KVP] = kvp;
}

void tsr_scratch_reserve(tsr_arena *a, tsr_enc_scratch *s, const size_t need[TSR_SCRATCH_N])
{
    tsr_arena_reserve(a, &s->h, need[TSR_SCRATCH_H]);
    tsr_arena_reserve(a, &s->qkv, need[TSR_SCRATCH_QKV]);
    tsr_arena_reserve(a, &s->attn, need[TSR_SCRATCH_ATTN]);
    tsr_arena_reserve(a, &s->ffn, need[TSR_SCRATCH_FFN]);
    s->scores = s->kvp = NULL;
    s->scores_bytes = need[TSR_SCRATCH_SCORES];
    s->kvp_bytes = need[TSR_SCRATCH_KVP];
    if (s->kvp_bytes)
        tsr_arena_reserve(a, &s->kvp, s->kvp_bytes);
    if (s->kvp_bytes && s->scores_bytes)
        tsr_arena_reserve(a, &s->scores, s->scores_bytes);
    else
        s->scores_bytes = 0;
}

tsr_status tsr_enc_cfg_check(const tsr_enc_cfg *c, const char *what, tsr_error *err)
{
    if (c->dim < 1 || c->heads < 1 || c->dim % c->heads)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: the width %d is not a multiple of the %d attention heads", what,
                             c->dim, c->heads);
    if (c->dim / c->heads > TSR_ATT_MAX_DH)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: attention heads of %d are wider than tessera's %d", what,
                             c->dim / c->heads, TSR_ATT_MAX_DH);
    return TSR_OK;
}

int tsr_att_uses_gemm(const tsr_queue *q, const tsr_enc_cfg *c, const tsr_enc_scratch *s, int B,
                      int S, cl_mem lens)
{
    size_t scores, kvp;
    att_gemm_bytes(c, B, S, &scores, &kvp);
    return q->ctx->own_gemm && !lens && S >= TSR_ATT_GEMM_MIN_S && kvp && s->kvp &&
           s->kvp_bytes >= kvp && (!scores || (s->scores && s->scores_bytes >= scores));
}

/* Multi-head attention over packed qkv (B*S, 3D) into s->attn (B*S, D): on
 * CPU devices as GEMMs for long sequences without padding (when the plan
 * reserved their scratch), else the fused CPU kernel for sequences it
 * holds, otherwise the online-softmax kernel, which takes any length and
 * needs no scores buffer. */
static tsr_status attention(tsr_queue *q, const tsr_enc_cfg *c, tsr_enc_scratch *s, int B, int S,
                            cl_mem lens, tsr_error *err)
{
    int D = c->dim, H = c->heads, dh = D / H;
    float scale = 1.0f / sqrtf((float)dh);
    if (tsr_att_uses_gemm(q, c, s, B, S, lens))
        return tsr_attention_gemm(q, s->qkv, s->attn, B, S, H, dh, scale, c->causal, s->scores,
                                  s->kvp, err);
    if (q->ctx->own_gemm && S <= TSR_ATT_MAX_S)
        return tsr_k_attention(q, s->qkv, s->attn, B, S, H, dh, scale, c->causal, lens, err);
    tsr_att_io io = {s->qkv, 0, 3 * D, s->qkv, D, 2 * D, 3 * D, S * 3 * D, s->attn, D, lens, 1};
    return tsr_k_attention_kv(q, &io, B, S, S, H, dh, scale, c->causal, err);
}

tsr_status tsr_enc_layer(tsr_queue *q, const tsr_enc_cfg *c, const tsr_enc_weights *w,
                         tsr_enc_scratch *s, cl_mem x, int B, int S, cl_mem lens,
                         tsr_error *err)
{
    int D = c->dim, rows = B * S;
    size_t n = (size_t)rows * D;
    tsr_status rc = TSR_OK;
    if (c->post_ln) {
        TSR_TRY(rc, tsr_linear(q, x, rows, D, w->qkv_w, w->qkv_b, 3 * D, s->qkv, TSR_ACT_NONE,
                               err));
        TSR_TRY(rc, attention(q, c, s, B, S, lens, err));
        TSR_TRY(rc, tsr_linear(q, s->attn, rows, D, w->o_w, w->o_b, D, s->h, TSR_ACT_NONE, err));
        TSR_TRY(rc, tsr_k_add(q, s->h, x, n, err));
        TSR_TRY(rc, tsr_k_layernorm(q, s->h, x, w->ln1_g, w->ln1_b, rows, D, c->eps, err));
        TSR_TRY(rc, tsr_linear(q, x, rows, D, w->fc1_w, w->fc1_b, c->ffn, s->ffn, c->act, err));
        TSR_TRY(rc, tsr_linear(q, s->ffn, rows, c->ffn, w->fc2_w, w->fc2_b, D, s->h,
                               TSR_ACT_NONE, err));
        TSR_TRY(rc, tsr_k_add(q, s->h, x, n, err));
        TSR_TRY(rc, tsr_k_layernorm(q, s->h, x, w->ln2_g, w->ln2_b, rows, D, c->eps, err));
        return rc;
    }
    TSR_TRY(rc, tsr_k_layernorm(q, x, s->h, w->ln1_g, w->ln1_b, rows, D, c->eps, err));
    TSR_TRY(rc, tsr_linear(q, s->h, rows, D, w->qkv_w, w->qkv_b, 3 * D, s->qkv, TSR_ACT_NONE,
                           err));
    TSR_TRY(rc, attention(q, c, s, B, S, lens, err));
    TSR_TRY(rc, tsr_linear(q, s->attn, rows, D, w->o_w, w->o_b, D, s->h, TSR_ACT_NONE, err));
    TSR_TRY(rc, tsr_k_add(q, x, s->h, n, err));
    TSR_TRY(rc, tsr_k_layernorm(q, x, s->h, w->ln2_g, w->ln2_b, rows, D, c->eps, err));
    TSR_TRY(rc, tsr_linear(q, s->h, rows, D, w->fc1_w, w->fc1_b, c->ffn, s->ffn, c->act, err));
    TSR_TRY(rc, tsr_linear(q, s->ffn, rows, c->ffn, w->fc2_w, w->fc2_b, D, s->h, TSR_ACT_NONE,
                           err));
    TSR_TRY(rc, tsr_k_add(q, x, s->h, n, err));
    return rc;
}
