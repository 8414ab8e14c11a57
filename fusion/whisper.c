/* Whisper: loading a CTranslate2 directory (model.bin) or a HF
 * WhisperForConditionalGeneration directory (model.safetensors), the text
 * decoder on the compute layer's decoder layer, greedy and beam decoding, and
 * transcription of long audio in consecutive 30-second windows, following
 * faster-whisper's defaults (without timestamps). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr_audio.h"
#include "tsr_cfg.h"
#include "tsr_fusion.h"
#include "tsr_st.h"
#include "tsr_wenc.h"

#define MAX_SUPPRESS 512
#define MAX_BEAMS 16

struct tsr_whisper {
    tsr_ctx *ctx;
    char dir[2048];
    int ct2; /* 1: CTranslate2 layout */
    tsr_wenc enc;
    int vocab, n_text_ctx, dim, heads, ffn, layers;
    float eps;
    tsr_dec_cfg dcfg;
    tsr_dec_weights *dl;
    tsr_dec_state *st;
    int st_B;
    tsr_dec_scratch scratch;
    cl_mem lnf_g, lnf_b, proj, x, logits, reorder_tmp;
    int cap_rows;
    float *tok_emb, *pos_emb; /* host copies (V, D), (n_text_ctx, D) */
    tsr_bytelevel *tok;
    int eot, sot, no_ts, transcribe, translate, sot_prev, sot_lm, no_speech, ts_begin;
    int multilingual;
    int suppress[MAX_SUPPRESS], n_suppress;
    int suppress_begin[8], n_suppress_begin;
    int encoded; /* e.x holds an encoding */
};

/* ---- loading ---- */

typedef struct {
    tsr_whisper *m;
    const tsr_st *st;
    float *buf, *cat;
    size_t cap, cat_cap;
} wloader;

/* Loads the parts (names; NULL: zeros, for Whisper's bias-free k_proj) of
 * rows[i] x cols each, stacked, then uploads them as a linear weight (lin) or
 * a plain buffer. */
static tsr_status load_stack(wloader *l, const char *const *names, int parts, int rows, int cols,
                             int lin, cl_mem *slot, tsr_error *err)
{
    size_t per = (size_t)rows * (cols ? cols : 1), need = per * parts;
    if (need > l->cat_cap) {
        float *nc = realloc(l->cat, sizeof(float) * need);
        if (!nc)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        l->cat = nc;
        l->cat_cap = need;
    }
    for (int p = 0; p < parts; p++) {
        if (!names[p]) {
            memset(l->cat + p * per, 0, sizeof(float) * per);
            continue;
        }
        int64_t shape[3] = {rows, cols, 0};
        tsr_status rc = tsr_st_load(l->st, l->m->dir, names[p], cols ? 2 : 1, shape, &l->buf,
                                    &l->cap, err);
        if (rc != TSR_OK)
            return rc;
        memcpy(l->cat + p * per, l->buf, sizeof(float) * per);
    }
    if (lin)
        *slot = tsr_linear_weight_upload(l->m->ctx, l->cat, rows * parts, cols, err);
    else if ((*slot = tsr_buf_alloc(l->m->ctx, sizeof(float) * need, err)) &&
             tsr_buf_write(l->m->ctx, *slot, l->cat, sizeof(float) * need, err) != TSR_OK)
        return err ? err->code : TSR_ERR_OPENCL;
    return *slot ? TSR_OK : (err ? err->code : TSR_ERR_NOMEM);
}

static tsr_status load_one(wloader *l, const char *name, int rows, int cols, int lin, cl_mem *slot,
                           tsr_error *err)
{
    return load_stack(l, (const char *const[]){name}, 1, rows, cols, lin, slot, err);
}

/* A conv weight (D, C, 3) uploaded as the linear weight (D, C*3). */
static tsr_status load_conv(wloader *l, const char *name, int D, int C, cl_mem *slot,
                            tsr_error *err)
{
    int64_t shape[3] = {D, C, 3};
    tsr_status rc = tsr_st_load(l->st, l->m->dir, name, 3, shape, &l->buf, &l->cap, err);
    if (rc != TSR_OK)
        return rc;
    *slot = tsr_linear_weight_upload(l->m->ctx, l->buf, D, C * 3, err);
    return *slot ? TSR_OK : (err ? err->code : TSR_ERR_NOMEM);
}

/* A host copy of a (rows, cols) table. */
static tsr_status load_host(wloader *l, const char *name, int rows, int cols, float **dst,
                            tsr_error *err)
{
    int64_t shape[2] = {rows, cols};
    tsr_status rc = tsr_st_load(l->st, l->m->dir, name, 2, shape, &l->buf, &l->cap, err);
    if (rc != TSR_OK)
        return rc;
    *dst = malloc(sizeof(float) * (size_t)rows * cols);
    if (!*dst)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    memcpy(*dst, l->buf, sizeof(float) * (size_t)rows * cols);
    return TSR_OK;
}

#define N(...) (snprintf(nm[ni % 8], sizeof nm[0], __VA_ARGS__), nm[ni++ % 8])
#define TRY(call)                                                                                \
    do {                                                                                         \
        if (rc == TSR_OK)                                                                        \
            rc = (call);                                                                         \
    } while (0)

/* The slots of a layer's self-attention and MLP, the same in encoder and decoder layers. */
typedef struct {
    cl_mem *ln1_g, *ln1_b, *qkv_w, *qkv_b, *o_w, *o_b, *ln2_g, *ln2_b, *fc1_w, *fc1_b, *fc2_w,
        *fc2_b;
} block_slots;
#define BLOCK_SLOTS(w)                                                                           \
    ((block_slots){&(w)->ln1_g, &(w)->ln1_b, &(w)->qkv_w, &(w)->qkv_b, &(w)->o_w, &(w)->o_b,     \
                   &(w)->ln2_g, &(w)->ln2_b, &(w)->fc1_w, &(w)->fc1_b, &(w)->fc2_w, &(w)->fc2_b})

/* CTranslate2 names under pf ("encoder/layer_0/"): fused qkv in linear_0. */
static tsr_status ct2_block(wloader *l, const char *pf, int D, int F, block_slots s,
                            tsr_error *err)
{
    char nm[8][160];
    int ni = 0;
    tsr_status rc = TSR_OK;
    TRY(load_one(l, N("%sself_attention/layer_norm/gamma", pf), D, 0, 0, s.ln1_g, err));
    TRY(load_one(l, N("%sself_attention/layer_norm/beta", pf), D, 0, 0, s.ln1_b, err));
    TRY(load_one(l, N("%sself_attention/linear_0/weight", pf), 3 * D, D, 1, s.qkv_w, err));
    TRY(load_one(l, N("%sself_attention/linear_0/bias", pf), 3 * D, 0, 0, s.qkv_b, err));
    TRY(load_one(l, N("%sself_attention/linear_1/weight", pf), D, D, 1, s.o_w, err));
    TRY(load_one(l, N("%sself_attention/linear_1/bias", pf), D, 0, 0, s.o_b, err));
    TRY(load_one(l, N("%sffn/layer_norm/gamma", pf), D, 0, 0, s.ln2_g, err));
    TRY(load_one(l, N("%sffn/layer_norm/beta", pf), D, 0, 0, s.ln2_b, err));
    TRY(load_one(l, N("%sffn/linear_0/weight", pf), F, D, 1, s.fc1_w, err));
    TRY(load_one(l, N("%sffn/linear_0/bias", pf), F, 0, 0, s.fc1_b, err));
    TRY(load_one(l, N("%sffn/linear_1/weight", pf), D, F, 1, s.fc2_w, err));
    TRY(load_one(l, N("%sffn/linear_1/bias", pf), D, 0, 0, s.fc2_b, err));
    return rc;
}

/* Self- or cross-attention of a HF layer: q, k (no bias), v stacked. */
static tsr_status hf_attn(wloader *l, const char *pf, const char *att, int D, int with_q,
                          cl_mem *w, cl_mem *b, tsr_error *err)
{
    char n[6][200];
    const char *parts[3] = {"q_proj", "k_proj", "v_proj"};
    for (int p = 0; p < 3; p++) {
        snprintf(n[p], sizeof n[p], "%s%s.%s.weight", pf, att, parts[p]);
        snprintf(n[3 + p], sizeof n[3 + p], "%s%s.%s.bias", pf, att, parts[p]);
    }
    const char *ws[3] = {n[0], n[1], n[2]}, *bs[3] = {n[3], NULL, n[5]};
    int s = with_q ? 0 : 1, k = with_q ? 3 : 2;
    tsr_status rc = load_stack(l, ws + s, k, D, D, 1, w, err);
    return rc == TSR_OK ? load_stack(l, bs + s, k, D, 0, 0, b, err) : rc;
}

/* HF names under pf ("model.encoder.layers.0."): separate q, k, v. */
static tsr_status hf_block(wloader *l, const char *pf, int D, int F, block_slots s,
                           tsr_error *err)
{
    char nm[8][160];
    int ni = 0;
    tsr_status rc = TSR_OK;
    TRY(load_one(l, N("%sself_attn_layer_norm.weight", pf), D, 0, 0, s.ln1_g, err));
    TRY(load_one(l, N("%sself_attn_layer_norm.bias", pf), D, 0, 0, s.ln1_b, err));
    TRY(hf_attn(l, pf, "self_attn", D, 1, s.qkv_w, s.qkv_b, err));
    TRY(load_one(l, N("%sself_attn.out_proj.weight", pf), D, D, 1, s.o_w, err));
    TRY(load_one(l, N("%sself_attn.out_proj.bias", pf), D, 0, 0, s.o_b, err));
    TRY(load_one(l, N("%sfinal_layer_norm.weight", pf), D, 0, 0, s.ln2_g, err));
    TRY(load_one(l, N("%sfinal_layer_norm.bias", pf), D, 0, 0, s.ln2_b, err));
    TRY(load_one(l, N("%sfc1.weight", pf), F, D, 1, s.fc1_w, err));
    TRY(load_one(l, N("%sfc1.bias", pf), F, 0, 0, s.fc1_b, err));
    TRY(load_one(l, N("%sfc2.weight", pf), D, F, 1, s.fc2_w, err));
    TRY(load_one(l, N("%sfc2.bias", pf), D, 0, 0, s.fc2_b, err));
    return rc;
}

static tsr_status load_ct2(tsr_whisper *m, wloader *l, tsr_error *err)
{
    char nm[8][160];
    int ni = 0, D = m->dim, F = m->enc.cfg.ffn, V = m->vocab;
    tsr_wenc *e = &m->enc;
    tsr_status rc = load_conv(l, "encoder/conv1/weight", D, e->cfg.n_mels, &e->conv1_w, err);
    TRY(load_one(l, "encoder/conv1/bias", D, 0, 0, &e->conv1_b, err));
    TRY(load_conv(l, "encoder/conv2/weight", D, D, &e->conv2_w, err));
    TRY(load_one(l, "encoder/conv2/bias", D, 0, 0, &e->conv2_b, err));
    TRY(load_one(l, "encoder/position_encodings/encodings", e->cfg.n_ctx, D, 0, &e->pos, err));
    TRY(load_one(l, "encoder/layer_norm/gamma", D, 0, 0, &e->ln_g, err));
    TRY(load_one(l, "encoder/layer_norm/beta", D, 0, 0, &e->ln_b, err));
    for (int i = 0; i < e->cfg.layers && rc == TSR_OK; i++) {
        char pf[64];
        snprintf(pf, sizeof pf, "encoder/layer_%d/", i);
        rc = ct2_block(l, pf, D, F, BLOCK_SLOTS(&e->stack.layers[i]), err);
    }
    F = m->ffn;
    TRY(load_host(l, "decoder/embeddings/weight", V, D, &m->tok_emb, err));
    TRY(load_host(l, "decoder/position_encodings/encodings", m->n_text_ctx, D, &m->pos_emb, err));
    TRY(load_one(l, "decoder/layer_norm/gamma", D, 0, 0, &m->lnf_g, err));
    TRY(load_one(l, "decoder/layer_norm/beta", D, 0, 0, &m->lnf_b, err));
    TRY(load_one(l, tsr_st_find(l->st, "decoder/projection/weight") ? "decoder/projection/weight"
                                                                   : "decoder/embeddings/weight",
                 V, D, 1, &m->proj, err));
    for (int i = 0; i < m->layers && rc == TSR_OK; i++) {
        tsr_dec_weights *w = &m->dl[i];
        char pf[64];
        snprintf(pf, sizeof pf, "decoder/layer_%d/", i);
        rc = ct2_block(l, pf, D, F, BLOCK_SLOTS(w), err);
        TRY(load_one(l, N("%sattention/layer_norm/gamma", pf), D, 0, 0, &w->lnx_g, err));
        TRY(load_one(l, N("%sattention/layer_norm/beta", pf), D, 0, 0, &w->lnx_b, err));
        TRY(load_one(l, N("%sattention/linear_0/weight", pf), D, D, 1, &w->xq_w, err));
        TRY(load_one(l, N("%sattention/linear_0/bias", pf), D, 0, 0, &w->xq_b, err));
        TRY(load_one(l, N("%sattention/linear_1/weight", pf), 2 * D, D, 1, &w->xkv_w, err));
        TRY(load_one(l, N("%sattention/linear_1/bias", pf), 2 * D, 0, 0, &w->xkv_b, err));
        TRY(load_one(l, N("%sattention/linear_2/weight", pf), D, D, 1, &w->xo_w, err));
        TRY(load_one(l, N("%sattention/linear_2/bias", pf), D, 0, 0, &w->xo_b, err));
    }
    return rc;
}

static tsr_status load_hf(tsr_whisper *m, wloader *l, tsr_error *err)
{
    char nm[8][160];
    int ni = 0, D = m->dim, F = m->enc.cfg.ffn, V = m->vocab;
    tsr_wenc *e = &m->enc;
    const char *E = "model.encoder.", *Dc = "model.decoder.";
    tsr_status rc = load_conv(l, N("%sconv1.weight", E), D, e->cfg.n_mels, &e->conv1_w, err);
    TRY(load_one(l, N("%sconv1.bias", E), D, 0, 0, &e->conv1_b, err));
    TRY(load_conv(l, N("%sconv2.weight", E), D, D, &e->conv2_w, err));
    TRY(load_one(l, N("%sconv2.bias", E), D, 0, 0, &e->conv2_b, err));
    TRY(load_one(l, N("%sembed_positions.weight", E), e->cfg.n_ctx, D, 0, &e->pos, err));
    TRY(load_one(l, N("%slayer_norm.weight", E), D, 0, 0, &e->ln_g, err));
    TRY(load_one(l, N("%slayer_norm.bias", E), D, 0, 0, &e->ln_b, err));
    for (int i = 0; i < e->cfg.layers && rc == TSR_OK; i++) {
        char pf[64];
        snprintf(pf, sizeof pf, "%slayers.%d.", E, i);
        rc = hf_block(l, pf, D, F, BLOCK_SLOTS(&e->stack.layers[i]), err);
    }
    F = m->ffn;
    TRY(load_host(l, N("%sembed_tokens.weight", Dc), V, D, &m->tok_emb, err));
    TRY(load_host(l, N("%sembed_positions.weight", Dc), m->n_text_ctx, D, &m->pos_emb, err));
    TRY(load_one(l, N("%slayer_norm.weight", Dc), D, 0, 0, &m->lnf_g, err));
    TRY(load_one(l, N("%slayer_norm.bias", Dc), D, 0, 0, &m->lnf_b, err));
    TRY(load_one(l, tsr_st_find(l->st, "proj_out.weight") ? "proj_out.weight"
                                                           : "model.decoder.embed_tokens.weight",
                 V, D, 1, &m->proj, err));
    for (int i = 0; i < m->layers && rc == TSR_OK; i++) {
        tsr_dec_weights *w = &m->dl[i];
        char pf[64];
        snprintf(pf, sizeof pf, "%slayers.%d.", Dc, i);
        rc = hf_block(l, pf, D, F, BLOCK_SLOTS(w), err);
        TRY(load_one(l, N("%sencoder_attn_layer_norm.weight", pf), D, 0, 0, &w->lnx_g, err));
        TRY(load_one(l, N("%sencoder_attn_layer_norm.bias", pf), D, 0, 0, &w->lnx_b, err));
        TRY(load_one(l, N("%sencoder_attn.q_proj.weight", pf), D, D, 1, &w->xq_w, err));
        TRY(load_one(l, N("%sencoder_attn.q_proj.bias", pf), D, 0, 0, &w->xq_b, err));
        TRY(hf_attn(l, pf, "encoder_attn", D, 0, &w->xkv_w, &w->xkv_b, err));
        TRY(load_one(l, N("%sencoder_attn.out_proj.weight", pf), D, D, 1, &w->xo_w, err));
        TRY(load_one(l, N("%sencoder_attn.out_proj.bias", pf), D, 0, 0, &w->xo_b, err));
    }
#undef TRY
    return rc;
}
#undef N

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Counts "fmt" % i names present. */
static int count_layers(const tsr_st *st, const char *fmt)
{
    char name[160];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!tsr_st_find(st, name) || n > 256)
            return n;
    }
}

static tsr_status shape_of(const tsr_st *st, const char *dir, const char *name, int ndim,
                           int64_t *shape, tsr_error *err)
{
    const tsr_st_tensor *t = tsr_st_find(st, name);
    if (!t)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor '%s'", dir, name);
    if (t->ndim != ndim)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: tensor '%s' has %d dimensions, expected %d",
                             t->file, name, t->ndim, ndim);
    for (int d = 0; d < ndim; d++) {
        if (t->shape[d] < 1 || t->shape[d] > 1 << 20)
            return tsr_error_set(err, TSR_ERR_SHAPE, "%s: tensor '%s' has dimension %lld",
                                 t->file, name, (long long)t->shape[d]);
        shape[d] = t->shape[d];
    }
    return TSR_OK;
}

/* Sizes from the CTranslate2 variables themselves. */
static tsr_status ct2_sizes(tsr_whisper *m, const tsr_st *st, tsr_error *err)
{
    int64_t c1[3], pe[2], de[2], dp[2], f1[2];
    tsr_status rc = shape_of(st, m->dir, "encoder/conv1/weight", 3, c1, err);
    if (rc == TSR_OK)
        rc = shape_of(st, m->dir, "encoder/position_encodings/encodings", 2, pe, err);
    if (rc == TSR_OK)
        rc = shape_of(st, m->dir, "decoder/embeddings/weight", 2, de, err);
    if (rc == TSR_OK)
        rc = shape_of(st, m->dir, "decoder/position_encodings/encodings", 2, dp, err);
    if (rc == TSR_OK)
        rc = shape_of(st, m->dir, "encoder/layer_0/ffn/linear_0/weight", 2, f1, err);
    long eh = 0, dh = 0;
    const tsr_st_tensor *t;
    if (rc == TSR_OK && (t = tsr_st_find(st, "encoder/num_heads")))
        rc = tsr_st_scalar_int(t, &eh, err);
    if (rc == TSR_OK && (t = tsr_st_find(st, "decoder/num_heads")))
        rc = tsr_st_scalar_int(t, &dh, err);
    if (rc != TSR_OK)
        return rc;
    if (c1[2] != 3)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: encoder/conv1/weight has kernel size %lld, "
                             "expected 3", m->dir, (long long)c1[2]);
    tsr_wenc_cfg *e = &m->enc.cfg;
    e->dim = m->dim = (int)c1[0];
    e->n_mels = (int)c1[1];
    e->n_ctx = (int)pe[0];
    e->ffn = m->ffn = (int)f1[0];
    e->layers = count_layers(st, "encoder/layer_%d/ffn/linear_0/weight");
    e->heads = (int)eh;
    m->heads = (int)dh;
    m->layers = count_layers(st, "decoder/layer_%d/ffn/linear_0/weight");
    m->vocab = (int)de[0];
    m->n_text_ctx = (int)dp[0];
    if (eh < 1 || dh < 1 || m->dim % eh || m->dim % dh)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: num_heads (%ld, %ld) must divide %d",
                             m->dir, eh, dh, m->dim);
    if (de[1] != m->dim || dp[1] != m->dim || pe[1] != m->dim)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: embedding widths do not match d_model %d",
                             m->dir, m->dim);
    return TSR_OK;
}

static tsr_status hf_sizes(tsr_whisper *m, tsr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", m->dir);
    cJSON *root = tsr_read_json(path, 8 << 20, err);
    if (!root)
        return err ? err->code : TSR_ERR_FORMAT;
    tsr_cfg_reader r = {root, path, "config", err, 0};
    tsr_wenc_cfg *e = &m->enc.cfg;
    m->vocab = tsr_cfg_int(&r, "vocab_size", 51865, 1, 1 << 20);
    e->n_mels = tsr_cfg_int(&r, "num_mel_bins", 80, 1, 512);
    m->dim = e->dim = tsr_cfg_int(&r, "d_model", 384, 1, 16384);
    e->layers = tsr_cfg_int(&r, "encoder_layers", 4, 0, 256);
    e->heads = tsr_cfg_int(&r, "encoder_attention_heads", 6, 1, 1024);
    e->ffn = tsr_cfg_int(&r, "encoder_ffn_dim", 1536, 1, 65536);
    m->layers = tsr_cfg_int(&r, "decoder_layers", 4, 0, 256);
    m->heads = tsr_cfg_int(&r, "decoder_attention_heads", 6, 1, 1024);
    m->ffn = tsr_cfg_int(&r, "decoder_ffn_dim", 1536, 1, 65536);
    e->n_ctx = tsr_cfg_int(&r, "max_source_positions", 1500, 1, 1 << 16);
    m->n_text_ctx = tsr_cfg_int(&r, "max_target_positions", 448, 2, 1 << 16);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (!r.bad && cJSON_IsString(act) && strcmp(act->valuestring, "gelu") != 0)
        r.bad = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                              "%s: activation_function \"%s\" is not supported", path,
                              act->valuestring) != TSR_OK;
    /* HF keeps the suppression lists in generation_config.json or config.json */
    const cJSON *sup = cJSON_GetObjectItemCaseSensitive(root, "suppress_tokens");
    const cJSON *beg = cJSON_GetObjectItemCaseSensitive(root, "begin_suppress_tokens");
    const cJSON *it;
    cJSON_ArrayForEach(it, sup) if (cJSON_IsNumber(it) && m->n_suppress < MAX_SUPPRESS)
        m->suppress[m->n_suppress++] = (int)it->valuedouble;
    cJSON_ArrayForEach(it, beg) if (cJSON_IsNumber(it) && m->n_suppress_begin < 8)
        m->suppress_begin[m->n_suppress_begin++] = (int)it->valuedouble;
    cJSON_Delete(root);
    if (r.bad)
        return err ? err->code : TSR_ERR_FORMAT;
    if (m->dim % e->heads || m->dim % m->heads)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: d_model must be a multiple of the attention heads", path);
    return TSR_OK;
}

/* CTranslate2's config.json (suppress_ids, suppress_ids_begin), or HF's
 * generation_config.json when config.json had no lists. */
static tsr_status read_suppress(tsr_whisper *m, tsr_error *err)
{
    char path[4096];
    const char *file = m->ct2 ? "config.json" : "generation_config.json";
    const char *k1 = m->ct2 ? "suppress_ids" : "suppress_tokens";
    const char *k2 = m->ct2 ? "suppress_ids_begin" : "begin_suppress_tokens";
    snprintf(path, sizeof path, "%s/%s", m->dir, file);
    if (!exists(path) || (!m->ct2 && m->n_suppress))
        return TSR_OK;
    cJSON *root = tsr_read_json(path, 8 << 20, err);
    if (!root)
        return err ? err->code : TSR_ERR_FORMAT;
    const cJSON *it;
    m->n_suppress = m->n_suppress_begin = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, k1))
        if (cJSON_IsNumber(it) && m->n_suppress < MAX_SUPPRESS)
            m->suppress[m->n_suppress++] = (int)it->valuedouble;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, k2))
        if (cJSON_IsNumber(it) && m->n_suppress_begin < 8)
            m->suppress_begin[m->n_suppress_begin++] = (int)it->valuedouble;
    if (!m->ct2) {
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(root, "is_multilingual");
        if (cJSON_IsBool(ml))
            m->multilingual = cJSON_IsTrue(ml);
    }
    cJSON_Delete(root);
    return TSR_OK;
}

static tsr_status special_ids(tsr_whisper *m, tsr_error *err)
{
    struct {
        const char *name;
        int *slot, required;
    } sp[] = {{"<|endoftext|>", &m->eot, 1},         {"<|startoftranscript|>", &m->sot, 1},
              {"<|notimestamps|>", &m->no_ts, 1},    {"<|transcribe|>", &m->transcribe, 0},
              {"<|translate|>", &m->translate, 0},   {"<|startofprev|>", &m->sot_prev, 0},
              {"<|startoflm|>", &m->sot_lm, 0},      {"<|nospeech|>", &m->no_speech, 0},
              {"<|0.00|>", &m->ts_begin, 0}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) {
        *sp[i].slot = tsr_bytelevel_id(m->tok, sp[i].name);
        if (*sp[i].slot >= m->vocab)
            *sp[i].slot = -1;
        if (*sp[i].slot < 0 && sp[i].required)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s/tokenizer.json: no '%s' token below %d",
                                 m->dir, sp[i].name, m->vocab);
    }
    if (m->no_speech < 0)
        m->no_speech = tsr_bytelevel_id(m->tok, "<|nocaptions|>");
    if (m->ts_begin < 0)
        m->ts_begin = m->no_ts + 1;
    /* multilingual vocabularies have 51865 entries or more; English-only 51864 */
    if (m->ct2)
        m->multilingual = m->vocab >= 51865;
    /* as faster-whisper's get_suppressed_tokens: the special tokens too */
    int extra[6] = {m->transcribe, m->translate, m->sot, m->sot_prev, m->sot_lm, m->no_speech};
    for (int i = 0; i < 6; i++)
        if (extra[i] >= 0 && m->n_suppress < MAX_SUPPRESS)
            m->suppress[m->n_suppress++] = extra[i];
    for (int i = 0; i < m->n_suppress; i++)
        if (m->suppress[i] < 0 || m->suppress[i] >= m->vocab)
            m->suppress[i--] = m->suppress[--m->n_suppress];
    if (m->n_suppress_begin == 0) { /* " " and end of text, as Whisper does */
        int sp_id = tsr_bytelevel_id(m->tok, "\xC4\xA0"); /* "Ġ" */
        if (sp_id >= 0)
            m->suppress_begin[m->n_suppress_begin++] = sp_id;
        m->suppress_begin[m->n_suppress_begin++] = m->eot;
    }
    return TSR_OK;
}

tsr_status tsr_whisper_load(tsr_ctx *ctx, const char *dir, tsr_whisper **out, tsr_error *err)
{
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", dir);
    tsr_whisper *m = calloc(1, sizeof *m);
    if (!m)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    m->ctx = ctx;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.bin", dir);
    m->ct2 = exists(path);
    tsr_st *st = NULL;
    tsr_status rc = m->ct2 ? tsr_st_open_ct2(path, &st, err) : hf_sizes(m, err);
    if (rc == TSR_OK && m->ct2)
        rc = ct2_sizes(m, st, err);
    if (rc == TSR_OK && !m->ct2)
        rc = tsr_st_open_dir(dir, &st, err);
    m->eps = 1e-5f;
    m->enc.cfg.eps = m->eps;
    m->enc.cfg.act = TSR_ACT_GELU;
    m->dcfg = (tsr_dec_cfg){m->dim, m->heads, m->ffn, m->eps, TSR_ACT_GELU, 0};
    if (rc == TSR_OK && (m->dim / (m->heads ? m->heads : 1) > 128 ||
                         m->dim / (m->enc.cfg.heads ? m->enc.cfg.heads : 1) > 128))
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: attention heads wider than 128", dir);
    if (rc == TSR_OK)
        rc = tsr_wenc_init(&m->enc, err);
    if (rc == TSR_OK && !(m->dl = calloc((size_t)m->layers + 1, sizeof *m->dl)))
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (rc == TSR_OK) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        rc = tsr_bytelevel_load(path, &m->tok, err);
    }
    if (rc == TSR_OK)
        rc = read_suppress(m, err);
    if (rc == TSR_OK)
        rc = special_ids(m, err);
    if (rc == TSR_OK) {
        wloader l = {.m = m, .st = st};
        rc = m->ct2 ? load_ct2(m, &l, err) : load_hf(m, &l, err);
        free(l.buf);
        free(l.cat);
    }
    tsr_st_close(st);
    if (rc != TSR_OK) {
        tsr_whisper_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

static void free_states(tsr_whisper *m)
{
    if (m->st)
        for (int i = 0; i < m->layers; i++)
            tsr_dec_state_free(&m->st[i]);
    free(m->st);
    m->st = NULL;
    m->st_B = 0;
}

void tsr_whisper_free(tsr_whisper *m)
{
    if (!m)
        return;
    tsr_wenc_free(&m->enc);
    if (m->dl)
        for (int i = 0; i < m->layers; i++)
            tsr_mems_free((cl_mem *)&m->dl[i], sizeof(tsr_dec_weights) / sizeof(cl_mem));
    free(m->dl);
    free_states(m);
    tsr_dec_scratch_free(&m->scratch);
    cl_mem w[] = {m->lnf_g, m->lnf_b, m->proj, m->x, m->logits, m->reorder_tmp};
    tsr_mems_free(w, 6);
    free(m->tok_emb);
    free(m->pos_emb);
    tsr_bytelevel_free(m->tok);
    free(m);
}

int tsr_whisper_n_mels(const tsr_whisper *m) { return m->enc.cfg.n_mels; }
int tsr_whisper_vocab(const tsr_whisper *m) { return m->vocab; }
int tsr_whisper_dim(const tsr_whisper *m) { return m->dim; }
int tsr_whisper_audio_ctx(const tsr_whisper *m) { return m->enc.cfg.n_ctx; }
int tsr_whisper_text_ctx(const tsr_whisper *m) { return m->n_text_ctx; }
const tsr_bytelevel *tsr_whisper_tokenizer(const tsr_whisper *m) { return m->tok; }

/* ---- running ---- */

tsr_status tsr_whisper_encode(tsr_whisper *m, const float *mel, float *out, tsr_error *err)
{
    m->encoded = 0;
    tsr_status rc = tsr_wenc_forward(m->ctx, &m->enc, mel, err);
    if (rc == TSR_OK && out)
        rc = tsr_buf_read(m->ctx, m->enc.x, out,
                          sizeof(float) * (size_t)m->enc.cfg.n_ctx * m->dim, err);
    m->encoded = rc == TSR_OK;
    return rc;
}

/* B decoder sequences over the current encoding, caches cleared. */
static tsr_status start_decoding(tsr_whisper *m, int B, tsr_error *err)
{
    if (!m->encoded)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio has been encoded");
    tsr_status rc = TSR_OK;
    if (m->st_B != B) {
        free_states(m);
        m->st = calloc((size_t)m->layers + 1, sizeof *m->st);
        if (!m->st)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        for (int i = 0; i < m->layers && rc == TSR_OK; i++)
            rc = tsr_dec_state_alloc(m->ctx, &m->dcfg, B, m->n_text_ctx, 1, m->enc.cfg.n_ctx,
                                     &m->st[i], err);
        tsr_buf_free(m->reorder_tmp);
        m->reorder_tmp = NULL;
        if (rc == TSR_OK && B > 1)
            m->reorder_tmp = tsr_buf_alloc(
                m->ctx, (size_t)B * m->n_text_ctx * 2 * m->dim * sizeof(float), err);
        if (rc == TSR_OK && B > 1 && !m->reorder_tmp)
            rc = err ? err->code : TSR_ERR_NOMEM;
        if (rc != TSR_OK) {
            free_states(m);
            return rc;
        }
        m->st_B = B;
    }
    for (int i = 0; i < m->layers && rc == TSR_OK; i++)
        rc = tsr_dec_cross_kv(m->ctx, &m->dcfg, &m->dl[i], &m->st[i], m->enc.x, err);
    return rc;
}

/* Runs Sq tokens of each of B sequences at positions past..; logits (B, V)
 * of each sequence's last token when wanted. */
static tsr_status run_tokens(tsr_whisper *m, const int *tokens, int B, int Sq, int past,
                             float *logits, tsr_error *err)
{
    int D = m->dim, V = m->vocab, R = B * Sq;
    if (past + Sq > m->n_text_ctx)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "more than %d decoder positions",
                             m->n_text_ctx);
    tsr_status rc = TSR_OK;
    if (R > m->cap_rows) {
        tsr_buf_free(m->x);
        tsr_buf_free(m->logits);
        m->logits = NULL;
        m->x = tsr_buf_alloc(m->ctx, sizeof(float) * (size_t)R * D, err);
        if (m->x)
            m->logits = tsr_buf_alloc(m->ctx, sizeof(float) * (size_t)R * V, err);
        if (!m->logits)
            return m->cap_rows = 0, (err ? err->code : TSR_ERR_NOMEM);
        m->cap_rows = R;
    }
    float *x = malloc(sizeof(float) * (size_t)R * D);
    if (!x)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int r = 0; r < R; r++) {
        int t = tokens[r], p = past + r % Sq;
        if (t < 0 || t >= V) {
            free(x);
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "token id %d outside 0..%d", t, V - 1);
        }
        for (int d = 0; d < D; d++)
            x[(size_t)r * D + d] = m->tok_emb[(size_t)t * D + d] + m->pos_emb[(size_t)p * D + d];
    }
    rc = tsr_buf_write(m->ctx, m->x, x, sizeof(float) * (size_t)R * D, err);
    free(x);
    for (int i = 0; i < m->layers && rc == TSR_OK; i++)
        rc = tsr_dec_layer(m->ctx, &m->dcfg, &m->dl[i], &m->st[i], &m->scratch, m->x, B, Sq, past,
                           err);
    if (rc != TSR_OK || !logits)
        return rc;
    rc = tsr_k_layernorm(m->ctx, m->x, m->x, m->lnf_g, m->lnf_b, R, D, m->eps, err);
    if (rc == TSR_OK)
        rc = tsr_linear(m->ctx, m->x, R, D, m->proj, NULL, V, m->logits, TSR_ACT_NONE, err);
    for (int b = 0; b < B && rc == TSR_OK; b++) /* each sequence's last row */
        rc = tsr_buf_read_at(m->ctx, m->logits, sizeof(float) * ((size_t)b * Sq + Sq - 1) * V,
                             logits + (size_t)b * V, sizeof(float) * V, err);
    return rc;
}

tsr_status tsr_whisper_logits(tsr_whisper *m, const int *tokens, int n, float *logits,
                              tsr_error *err)
{
    tsr_status rc = start_decoding(m, 1, err);
    for (int i = 0; i < n && rc == TSR_OK; i++)
        rc = run_tokens(m, tokens + i, 1, 1, i, logits + (size_t)i * m->vocab, err);
    return rc;
}

static void log_softmax(float *v, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, v[i]);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp((double)(v[i] - mx));
    float ls = (float)log(s) + mx;
    for (int i = 0; i < n; i++)
        v[i] -= ls;
}

static void suppress(const tsr_whisper *m, float *lg, int first)
{
    for (int i = 0; i < m->n_suppress; i++)
        lg[m->suppress[i]] = -INFINITY;
    if (first)
        for (int i = 0; i < m->n_suppress_begin; i++)
            if (m->suppress_begin[i] >= 0 && m->suppress_begin[i] < m->vocab)
                lg[m->suppress_begin[i]] = -INFINITY;
}

typedef struct {
    int *tokens;
    int n;
    double cum_logprob, no_speech_prob;
} decode_result;

/* Greedy (beam 1) or beam search over the current encoding. */
static tsr_status decode(tsr_whisper *m, const int *prompt, int np, int sot_index, int beam,
                         float length_penalty, int max_new, decode_result *res, tsr_error *err)
{
    int V = m->vocab, B = beam < 1 ? 1 : beam;
    res->tokens = NULL;
    res->n = 0;
    res->cum_logprob = 0;
    res->no_speech_prob = 0;
    if (max_new > m->n_text_ctx - np)
        max_new = m->n_text_ctx - np;
    if (max_new < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "the prompt fills the decoder context");
    tsr_status rc = start_decoding(m, B, err);
    float *lg = malloc(sizeof(float) * (size_t)V * B);
    int *seq = malloc(sizeof(int) * (size_t)B * (max_new + 1));
    int *nseq = malloc(sizeof(int) * (size_t)B * (max_new + 1));
    int *rep = malloc(sizeof(int) * (size_t)B * (np > 1 ? np : 1));
    int *best_tok = NULL;
    if (!lg || !seq || !nseq || !rep) {
        free(lg), free(seq), free(nseq), free(rep);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    /* the prompt: tokens before <|startoftranscript|> in one pass, then one at a
     * time so that the logits at sot give the no-speech probability */
    int done_prompt = sot_index > 0 ? sot_index : 0;
    for (int b = 0; b < B && done_prompt > 0; b++)
        memcpy(rep + (size_t)b * done_prompt, prompt, sizeof(int) * done_prompt);
    if (rc == TSR_OK && done_prompt > 0)
        rc = run_tokens(m, rep, B, done_prompt, 0, NULL, err);
    for (int i = done_prompt; i < np && rc == TSR_OK; i++) {
        for (int b = 0; b < B; b++)
            rep[b] = prompt[i];
        rc = run_tokens(m, rep, B, 1, i, lg, err);
        if (rc == TSR_OK && i == sot_index && m->no_speech >= 0) {
            float mx = -INFINITY;
            double s = 0;
            for (int k = 0; k < V; k++)
                mx = fmaxf(mx, lg[k]);
            for (int k = 0; k < V; k++)
                s += exp((double)(lg[k] - mx));
            res->no_speech_prob = exp((double)(lg[m->no_speech] - mx)) / s;
        }
    }
    double score[MAX_BEAMS] = {0}, nscore[MAX_BEAMS];
    int len = 0, alive = B;
    double best_norm = -INFINITY;
    int best_n = 0;
    double best_cum = 0;
    best_tok = malloc(sizeof(int) * (size_t)(max_new + 1));
    if (!best_tok && rc == TSR_OK)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    int finished = 0, *src = rep;
    for (int step = 0; step < max_new && rc == TSR_OK; step++) {
        if (step > 0) {
            int cur[MAX_BEAMS];
            for (int b = 0; b < B; b++)
                cur[b] = seq[(size_t)b * (max_new + 1) + len - 1];
            rc = run_tokens(m, cur, B, 1, np + len - 1, lg, err);
            if (rc != TSR_OK)
                break;
        }
        for (int b = 0; b < B; b++) {
            suppress(m, lg + (size_t)b * V, step == 0);
            log_softmax(lg + (size_t)b * V, V);
        }
        if (B == 1) { /* greedy */
            int t = 0;
            for (int k = 1; k < V; k++)
                if (lg[k] > lg[t])
                    t = k;
            res->cum_logprob += lg[t];
            if (t == m->eot) {
                finished = 1;
                break;
            }
            seq[len++] = t;
            continue;
        }
        /* beam search: the best B continuations of the live beams; a finished
         * hypothesis (end of text) is scored by its length-normalised log-prob */
        int cand_b[2 * MAX_BEAMS], cand_t[2 * MAX_BEAMS], nc = 0;
        double cand_s[2 * MAX_BEAMS];
        int beams_in = step == 0 ? 1 : alive;
        for (int b = 0; b < beams_in; b++)
            for (int k = 0; k < V; k++) {
                double s = score[b] + lg[(size_t)b * V + k];
                if (nc < 2 * B || s > cand_s[nc - 1]) {
                    int pos = nc < 2 * B ? nc++ : nc - 1;
                    while (pos > 0 && cand_s[pos - 1] < s) {
                        cand_s[pos] = cand_s[pos - 1];
                        cand_b[pos] = cand_b[pos - 1];
                        cand_t[pos] = cand_t[pos - 1];
                        pos--;
                    }
                    cand_s[pos] = s;
                    cand_b[pos] = b;
                    cand_t[pos] = k;
                }
            }
        int kept = 0;
        for (int c = 0; c < nc && kept < B; c++) {
            if (cand_t[c] == m->eot) {
                double norm = cand_s[c] / pow((double)(len + 1), length_penalty);
                if (norm > best_norm) {
                    best_norm = norm;
                    best_cum = cand_s[c];
                    best_n = len;
                    memcpy(best_tok, seq + (size_t)cand_b[c] * (max_new + 1), sizeof(int) * len);
                }
                finished++;
                continue;
            }
            memcpy(nseq + (size_t)kept * (max_new + 1), seq + (size_t)cand_b[c] * (max_new + 1),
                   sizeof(int) * len);
            nseq[(size_t)kept * (max_new + 1) + len] = cand_t[c];
            nscore[kept] = cand_s[c];
            src[kept] = cand_b[c];
            kept++;
        }
        for (int b = kept; b < B; b++) { /* pad with copies so the batch stays B */
            memcpy(nseq + (size_t)b * (max_new + 1), nseq, sizeof(int) * (len + 1));
            nscore[b] = -INFINITY;
            src[b] = src[0];
        }
        int *t = seq;
        seq = nseq;
        nseq = t;
        memcpy(score, nscore, sizeof(double) * B);
        len++;
        alive = kept;
        for (int i = 0; i < m->layers && rc == TSR_OK; i++)
            rc = tsr_dec_state_reorder(m->ctx, &m->st[i], &m->reorder_tmp, src, m->dim, err);
        if (finished >= B || kept == 0)
            break;
    }
    if (rc == TSR_OK && B > 1) {
        if (best_norm == -INFINITY) { /* no hypothesis ended: take the best live one */
            best_n = len;
            best_cum = score[0];
            memcpy(best_tok, seq, sizeof(int) * len);
        }
        res->tokens = best_tok;
        res->n = best_n;
        res->cum_logprob = best_cum;
        best_tok = NULL;
    } else if (rc == TSR_OK) {
        (void)finished;
        res->tokens = malloc(sizeof(int) * (size_t)(len ? len : 1));
        if (res->tokens)
            memcpy(res->tokens, seq, sizeof(int) * len);
        res->n = len;
    }
    free(best_tok);
    free(lg), free(seq), free(nseq), free(rep);
    return rc;
}

tsr_transcribe_params tsr_transcribe_default_params(void)
{
    return (tsr_transcribe_params){.beam_size = 1,
                                   .length_penalty = 1.0f,
                                   .condition_on_previous_text = 1,
                                   .no_speech_threshold = 0.6f,
                                   .log_prob_threshold = -1.0f,
                                   .language = "en"};
}

void tsr_transcript_free(tsr_transcript *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_segments; i++)
        free(t->segments[i].text);
    free(t->segments);
    free(t->text);
    free(t->tokens);
    memset(t, 0, sizeof *t);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

tsr_status tsr_whisper_transcribe_pcm(tsr_whisper *m, const float *pcm, size_t n,
                                      const tsr_transcribe_params *p, tsr_transcript *out,
                                      tsr_error *err)
{
    memset(out, 0, sizeof *out);
    tsr_transcribe_params def = tsr_transcribe_default_params();
    if (!p)
        p = &def;
    if (p->beam_size < 1 || p->beam_size > MAX_BEAMS)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam size %d outside 1..%d", p->beam_size,
                             MAX_BEAMS);
    int n_mels = m->enc.cfg.n_mels, W = 2 * m->enc.cfg.n_ctx, T = 0;
    float *mel = NULL;
    tsr_status rc = tsr_whisper_logmel(pcm, n, n_mels, 160, &mel, &T, err);
    if (rc != TSR_OK)
        return rc;
    int content = T - 1; /* faster-whisper: the padding frame is not content */
    out->duration = (double)n / 16000.0;
    float *win = malloc(sizeof(float) * (size_t)n_mels * W);
    int prompt_cap = m->n_text_ctx / 2 + 8;
    int *prompt = malloc(sizeof(int) * (size_t)prompt_cap);
    size_t all_cap = 256, text_len = 0, text_cap = 256;
    int *all = malloc(sizeof(int) * all_cap);
    char *text = malloc(text_cap);
    if (!win || !prompt || !all || !text) {
        free(mel), free(win), free(prompt), free(all), free(text);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    text[0] = 0;
    int n_all = 0, prompt_reset = 0, seg_cap = 0;
    double sum_lp = 0;
    int lang = -1;
    if (m->multilingual) {
        char tk[64];
        snprintf(tk, sizeof tk, "<|%s|>", p->language ? p->language : "en");
        lang = tsr_bytelevel_id(m->tok, tk);
        if (lang < 0)
            rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: unknown language '%s'", m->dir,
                               p->language);
    }
    for (int seek = 0; seek < content && rc == TSR_OK;) {
        int size = content - seek < W ? content - seek : W;
        for (int c = 0; c < n_mels; c++) {
            memcpy(win + (size_t)c * W, mel + (size_t)c * T + seek, sizeof(float) * size);
            memset(win + (size_t)c * W + size, 0, sizeof(float) * (W - size));
        }
        rc = tsr_whisper_encode(m, win, NULL, err);
        /* the prompt: previous text, then <|startoftranscript|> [language task] <|notimestamps|> */
        int np = 0, keep = m->n_text_ctx / 2 - 1;
        int prev = p->condition_on_previous_text ? n_all - prompt_reset : 0;
        if (prev > 0 && m->sot_prev >= 0) {
            prompt[np++] = m->sot_prev;
            int from = prev > keep ? n_all - keep : prompt_reset;
            for (int i = from; i < n_all; i++)
                prompt[np++] = all[i];
        }
        int sot_index = np;
        prompt[np++] = m->sot;
        if (m->multilingual && lang >= 0) {
            prompt[np++] = lang;
            if (m->transcribe >= 0)
                prompt[np++] = m->transcribe;
        }
        prompt[np++] = m->no_ts;
        decode_result r = {0};
        if (rc == TSR_OK)
            rc = decode(m, prompt, np, sot_index, p->beam_size, p->length_penalty,
                        p->max_new_tokens > 0 ? p->max_new_tokens : m->n_text_ctx, &r, err);
        if (rc != TSR_OK) {
            free(r.tokens);
            break;
        }
        double avg = r.cum_logprob / (r.n + 1);
        int skip = p->no_speech_threshold >= 0 && r.no_speech_prob > p->no_speech_threshold &&
                   !(avg > p->log_prob_threshold);
        char *seg_text = NULL;
        if (!skip)
            rc = tsr_bytelevel_decode(m->tok, r.tokens, r.n, &seg_text, err);
        if (rc == TSR_OK && out->n_segments == seg_cap) {
            seg_cap = seg_cap ? seg_cap * 2 : 8;
            void *ns = realloc(out->segments, sizeof *out->segments * (size_t)seg_cap);
            if (!ns)
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
            else
                out->segments = ns;
        }
        if (rc == TSR_OK) {
            tsr_segment *s = &out->segments[out->n_segments++];
            s->start = seek * 0.01;
            s->end = (seek + size) * 0.01;
            s->text = seg_text;
            s->avg_logprob = avg;
            s->no_speech_prob = r.no_speech_prob;
            s->skipped = skip;
            seg_text = NULL;
            if (!skip) {
                sum_lp += avg;
                if (n_all + r.n > (int)all_cap) {
                    size_t nc = all_cap;
                    while ((size_t)(n_all + r.n) > nc)
                        nc *= 2;
                    int *na = realloc(all, sizeof(int) * nc);
                    if (!na)
                        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                    else
                        all = na, all_cap = nc;
                }
                if (rc == TSR_OK) {
                    memcpy(all + n_all, r.tokens, sizeof(int) * r.n);
                    n_all += r.n;
                }
                size_t sl = strlen(s->text);
                if (rc == TSR_OK && text_len + sl + 1 > text_cap) {
                    while (text_len + sl + 1 > text_cap)
                        text_cap *= 2;
                    char *nt = realloc(text, text_cap);
                    if (!nt)
                        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                    else
                        text = nt;
                }
                if (rc == TSR_OK) {
                    memcpy(text + text_len, s->text, sl + 1);
                    text_len += sl;
                }
            }
        }
        free(seg_text);
        free(r.tokens);
        seek += size;
        if (p->progress)
            p->progress(p->user, seek * 0.01, content * 0.01);
    }
    free(mel), free(win), free(prompt);
    if (rc != TSR_OK) {
        free(all), free(text);
        tsr_transcript_free(out);
        return rc;
    }
    /* strip, as faster-whisper's segment texts are stripped when joined */
    size_t a = 0, b = text_len;
    while (a < b && is_space(text[a]))
        a++;
    while (b > a && is_space(text[b - 1]))
        b--;
    memmove(text, text + a, b - a);
    text[b - a] = 0;
    out->text = text;
    out->tokens = all;
    out->n_tokens = n_all;
    int kept = 0;
    for (int i = 0; i < out->n_segments; i++)
        kept += !out->segments[i].skipped;
    out->avg_logprob = kept ? sum_lp / kept : 0;
    return TSR_OK;
}

tsr_status tsr_whisper_transcribe_file(tsr_whisper *m, const char *path,
                                       const tsr_transcribe_params *p, tsr_transcript *out,
                                       tsr_error *err)
{
    float *pcm = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    tsr_status rc = tsr_audio_load_file(path, 16000, &pcm, &n, err);
    if (rc == TSR_OK)
        rc = tsr_whisper_transcribe_pcm(m, pcm, n, p, out, err);
    if (rc != TSR_OK && err && !strstr(err->msg, path))
        tsr_error_prefix(err, "%s", path);
    free(pcm);
    return rc;
}
