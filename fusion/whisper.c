/* Whisper: a CTranslate2 directory (model.bin, faster-whisper's format) or a
 * HF WhisperForConditionalGeneration directory, each through its tensor
 * table; the audio encoder and the decoder stack on the compute layer;
 * decoding through the generation module; transcription of long audio in
 * consecutive 30-second windows following faster-whisper's defaults
 * (without timestamps). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_audio.h"
#include "tsr_cfg.h"
#include "tsr_generate.h"
#include "tsr_model.h"
#include "tsr_st.h"
#include "tsr_wenc.h"
#include "tsr_wtable.h"

#define MAX_SUPPRESS 512
#define MAX_BEAMS 16

typedef struct {
    int ct2; /* 1: CTranslate2 layout */
    tsr_wenc_cfg enc;
    tsr_wenc_w enc_w;
    tsr_decoder_cfg dec;
    tsr_decoder_w dec_w;
    tsr_bytelevel *tok;
    int eot, sot, no_ts, transcribe, translate, sot_prev, sot_lm, no_speech, ts_begin;
    int multilingual;
    int suppress[MAX_SUPPRESS], n_suppress;
    int suppress_begin[8], n_suppress_begin;
} whisper_model;

typedef struct {
    int want_beams, plan_beams;
    tsr_wenc_io enc;
    tsr_decoder_io dec;
    int encoded; /* enc.enc.x holds an encoding */
} whisper_session;

#define WHISPER(m) ((whisper_model *)(m)->data)

/* ---- the tensor tables ---- */

enum { OBJ_ENC, OBJ_ENC_L, OBJ_DEC, OBJ_DEC_L };
/* symbolic dimensions */
enum { D = 1, D2, D3, EF, DF, NM, K3, ECTX, V, TCTX };

static int64_t whisper_dim(const void *cfg, int code)
{
    const whisper_model *w = cfg;
    int d = w->enc.enc.layer.dim;
    switch (code) {
    case D: return d;
    case D2: return 2 * d;
    case D3: return 3 * d;
    case EF: return w->enc.enc.layer.ffn;
    case DF: return w->dec.layer.ffn;
    case NM: return w->enc.n_mels;
    case K3: return 3;
    case ECTX: return w->enc.n_ctx;
    case V: return w->dec.vocab;
    case TCTX: return w->dec.n_ctx;
    }
    return -1;
}

#define EW(f) offsetof(tsr_wenc_w, f)
#define DW(f) offsetof(tsr_decoder_w, f)
#define LIN TSR_W_LINEAR
#define OPT TSR_W_OPTIONAL

/* CTranslate2: self-attention (fused qkv in linear_0) and MLP of a layer
 * whose weights are a T, under the prefix pf ("encoder/layer_%d/") */
#define CT2_BLOCK(pf, obj, T, F)                                                           \
    {pf "self_attention/layer_norm/gamma", NULL, obj, offsetof(T, ln1_g), 0, 0, {D}, 0},   \
    {pf "self_attention/layer_norm/beta", NULL, obj, offsetof(T, ln1_b), 0, 0, {D}, 0},    \
    {pf "self_attention/linear_0/weight", NULL, obj, offsetof(T, qkv_w), 0, 0, {D3, D}, LIN}, \
    {pf "self_attention/linear_0/bias", NULL, obj, offsetof(T, qkv_b), 0, 0, {D3}, 0},     \
    {pf "self_attention/linear_1/weight", NULL, obj, offsetof(T, o_w), 0, 0, {D, D}, LIN}, \
    {pf "self_attention/linear_1/bias", NULL, obj, offsetof(T, o_b), 0, 0, {D}, 0},        \
    {pf "ffn/layer_norm/gamma", NULL, obj, offsetof(T, ln2_g), 0, 0, {D}, 0},              \
    {pf "ffn/layer_norm/beta", NULL, obj, offsetof(T, ln2_b), 0, 0, {D}, 0},               \
    {pf "ffn/linear_0/weight", NULL, obj, offsetof(T, fc1_w), 0, 0, {F, D}, LIN},          \
    {pf "ffn/linear_0/bias", NULL, obj, offsetof(T, fc1_b), 0, 0, {F}, 0},                 \
    {pf "ffn/linear_1/weight", NULL, obj, offsetof(T, fc2_w), 0, 0, {D, F}, LIN},          \
    {pf "ffn/linear_1/bias", NULL, obj, offsetof(T, fc2_b), 0, 0, {D}, 0}

static const tsr_wrow ct2_table[] = {
    {"encoder/conv1/weight", NULL, OBJ_ENC, EW(conv1_w), 0, 0, {D, NM, K3}, LIN},
    {"encoder/conv1/bias", NULL, OBJ_ENC, EW(conv1_b), 0, 0, {D}, 0},
    {"encoder/conv2/weight", NULL, OBJ_ENC, EW(conv2_w), 0, 0, {D, D, K3}, LIN},
    {"encoder/conv2/bias", NULL, OBJ_ENC, EW(conv2_b), 0, 0, {D}, 0},
    {"encoder/position_encodings/encodings", NULL, OBJ_ENC, EW(pos), 0, 0, {ECTX, D}, 0},
    {"encoder/layer_norm/gamma", NULL, OBJ_ENC, EW(enc.fin_g), 0, 0, {D}, 0},
    {"encoder/layer_norm/beta", NULL, OBJ_ENC, EW(enc.fin_b), 0, 0, {D}, 0},
    CT2_BLOCK("encoder/layer_%d/", OBJ_ENC_L, tsr_enc_weights, EF),
    {"decoder/embeddings/weight", NULL, OBJ_DEC, DW(tok), 0, 0, {V, D}, 0},
    {"decoder/position_encodings/encodings", NULL, OBJ_DEC, DW(pos), 0, 0, {TCTX, D}, 0},
    {"decoder/layer_norm/gamma", NULL, OBJ_DEC, DW(fin_g), 0, 0, {D}, 0},
    {"decoder/layer_norm/beta", NULL, OBJ_DEC, DW(fin_b), 0, 0, {D}, 0},
    {"decoder/projection/weight", "decoder/embeddings/weight", OBJ_DEC, DW(proj), 0, 0, {V, D}, LIN},
    CT2_BLOCK("decoder/layer_%d/", OBJ_DEC_L, tsr_dec_weights, DF),
#define X(f) offsetof(tsr_dec_weights, f)
    {"decoder/layer_%d/attention/layer_norm/gamma", NULL, OBJ_DEC_L, X(lnx_g), 0, 0, {D}, 0},
    {"decoder/layer_%d/attention/layer_norm/beta", NULL, OBJ_DEC_L, X(lnx_b), 0, 0, {D}, 0},
    {"decoder/layer_%d/attention/linear_0/weight", NULL, OBJ_DEC_L, X(xq_w), 0, 0, {D, D}, LIN},
    {"decoder/layer_%d/attention/linear_0/bias", NULL, OBJ_DEC_L, X(xq_b), 0, 0, {D}, 0},
    {"decoder/layer_%d/attention/linear_1/weight", NULL, OBJ_DEC_L, X(xkv_w), 0, 0, {D2, D}, LIN},
    {"decoder/layer_%d/attention/linear_1/bias", NULL, OBJ_DEC_L, X(xkv_b), 0, 0, {D2}, 0},
    {"decoder/layer_%d/attention/linear_2/weight", NULL, OBJ_DEC_L, X(xo_w), 0, 0, {D, D}, LIN},
    {"decoder/layer_%d/attention/linear_2/bias", NULL, OBJ_DEC_L, X(xo_b), 0, 0, {D}, 0},
};

/* HF: self-attention (separate q, k, v; k has no bias) and MLP of a layer
 * whose weights are a T, under the prefix pf ("model.encoder.layers.%d.") */
#define HF_BLOCK(pf, obj, T, F)                                                            \
    {pf "self_attn_layer_norm.weight", NULL, obj, offsetof(T, ln1_g), 0, 0, {D}, 0},       \
    {pf "self_attn_layer_norm.bias", NULL, obj, offsetof(T, ln1_b), 0, 0, {D}, 0},         \
    {pf "self_attn.q_proj.weight", NULL, obj, offsetof(T, qkv_w), 0, 3, {D, D}, LIN},      \
    {pf "self_attn.k_proj.weight", NULL, obj, offsetof(T, qkv_w), 1, 3, {D, D}, LIN},      \
    {pf "self_attn.v_proj.weight", NULL, obj, offsetof(T, qkv_w), 2, 3, {D, D}, LIN},      \
    {pf "self_attn.q_proj.bias", NULL, obj, offsetof(T, qkv_b), 0, 3, {D}, 0},             \
    {pf "self_attn.k_proj.bias", NULL, obj, offsetof(T, qkv_b), 1, 3, {D}, OPT},           \
    {pf "self_attn.v_proj.bias", NULL, obj, offsetof(T, qkv_b), 2, 3, {D}, 0},             \
    {pf "self_attn.out_proj.weight", NULL, obj, offsetof(T, o_w), 0, 0, {D, D}, LIN},      \
    {pf "self_attn.out_proj.bias", NULL, obj, offsetof(T, o_b), 0, 0, {D}, 0},             \
    {pf "final_layer_norm.weight", NULL, obj, offsetof(T, ln2_g), 0, 0, {D}, 0},           \
    {pf "final_layer_norm.bias", NULL, obj, offsetof(T, ln2_b), 0, 0, {D}, 0},             \
    {pf "fc1.weight", NULL, obj, offsetof(T, fc1_w), 0, 0, {F, D}, LIN},                   \
    {pf "fc1.bias", NULL, obj, offsetof(T, fc1_b), 0, 0, {F}, 0},                          \
    {pf "fc2.weight", NULL, obj, offsetof(T, fc2_w), 0, 0, {D, F}, LIN},                   \
    {pf "fc2.bias", NULL, obj, offsetof(T, fc2_b), 0, 0, {D}, 0}

#define HD "model.decoder.layers.%d."
static const tsr_wrow hf_table[] = {
    {"model.encoder.conv1.weight", NULL, OBJ_ENC, EW(conv1_w), 0, 0, {D, NM, K3}, LIN},
    {"model.encoder.conv1.bias", NULL, OBJ_ENC, EW(conv1_b), 0, 0, {D}, 0},
    {"model.encoder.conv2.weight", NULL, OBJ_ENC, EW(conv2_w), 0, 0, {D, D, K3}, LIN},
    {"model.encoder.conv2.bias", NULL, OBJ_ENC, EW(conv2_b), 0, 0, {D}, 0},
    {"model.encoder.embed_positions.weight", NULL, OBJ_ENC, EW(pos), 0, 0, {ECTX, D}, 0},
    {"model.encoder.layer_norm.weight", NULL, OBJ_ENC, EW(enc.fin_g), 0, 0, {D}, 0},
    {"model.encoder.layer_norm.bias", NULL, OBJ_ENC, EW(enc.fin_b), 0, 0, {D}, 0},
    HF_BLOCK("model.encoder.layers.%d.", OBJ_ENC_L, tsr_enc_weights, EF),
    {"model.decoder.embed_tokens.weight", NULL, OBJ_DEC, DW(tok), 0, 0, {V, D}, 0},
    {"model.decoder.embed_positions.weight", NULL, OBJ_DEC, DW(pos), 0, 0, {TCTX, D}, 0},
    {"model.decoder.layer_norm.weight", NULL, OBJ_DEC, DW(fin_g), 0, 0, {D}, 0},
    {"model.decoder.layer_norm.bias", NULL, OBJ_DEC, DW(fin_b), 0, 0, {D}, 0},
    {"proj_out.weight", "model.decoder.embed_tokens.weight", OBJ_DEC, DW(proj), 0, 0, {V, D}, LIN},
    HF_BLOCK(HD, OBJ_DEC_L, tsr_dec_weights, DF),
    {HD "encoder_attn_layer_norm.weight", NULL, OBJ_DEC_L, X(lnx_g), 0, 0, {D}, 0},
    {HD "encoder_attn_layer_norm.bias", NULL, OBJ_DEC_L, X(lnx_b), 0, 0, {D}, 0},
    {HD "encoder_attn.q_proj.weight", NULL, OBJ_DEC_L, X(xq_w), 0, 0, {D, D}, LIN},
    {HD "encoder_attn.q_proj.bias", NULL, OBJ_DEC_L, X(xq_b), 0, 0, {D}, 0},
    {HD "encoder_attn.k_proj.weight", NULL, OBJ_DEC_L, X(xkv_w), 0, 2, {D, D}, LIN},
    {HD "encoder_attn.v_proj.weight", NULL, OBJ_DEC_L, X(xkv_w), 1, 2, {D, D}, LIN},
    {HD "encoder_attn.k_proj.bias", NULL, OBJ_DEC_L, X(xkv_b), 0, 2, {D}, OPT},
    {HD "encoder_attn.v_proj.bias", NULL, OBJ_DEC_L, X(xkv_b), 1, 2, {D}, 0},
    {HD "encoder_attn.out_proj.weight", NULL, OBJ_DEC_L, X(xo_w), 0, 0, {D, D}, LIN},
    {HD "encoder_attn.out_proj.bias", NULL, OBJ_DEC_L, X(xo_b), 0, 0, {D}, 0},
#undef X
};

/* ---- sizes ---- */

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

/* The towers' configurations from their sizes. */
static void build(whisper_model *w, int n_mels, int dim, int e_heads, int e_ffn, int e_layers,
                  int n_ctx, int d_heads, int d_ffn, int d_layers, int vocab, int text_ctx)
{
    const float eps = 1e-5f;
    w->enc.n_mels = n_mels;
    w->enc.n_ctx = n_ctx;
    w->enc.enc = (tsr_encoder_cfg){{dim, e_heads, e_ffn, eps, TSR_ACT_GELU, 0, 0}, e_layers, 0,
                                   TSR_LN_ALL, 0, 0, 0};
    w->dec = (tsr_decoder_cfg){{dim, d_heads, d_ffn, eps, TSR_ACT_GELU, 0, dim}, d_layers, vocab,
                               text_ctx, 1};
}

/* Sizes from the CTranslate2 variables themselves. */
static tsr_status ct2_sizes(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    int64_t c1[3], pe[2], de[2], dp[2], f1[2];
    tsr_status rc = shape_of(st, m->name, "encoder/conv1/weight", 3, c1, err);
    TSR_TRY(rc, shape_of(st, m->name, "encoder/position_encodings/encodings", 2, pe, err));
    TSR_TRY(rc, shape_of(st, m->name, "decoder/embeddings/weight", 2, de, err));
    TSR_TRY(rc, shape_of(st, m->name, "decoder/position_encodings/encodings", 2, dp, err));
    TSR_TRY(rc, shape_of(st, m->name, "encoder/layer_0/ffn/linear_0/weight", 2, f1, err));
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
                             "expected 3", m->name, (long long)c1[2]);
    int dim = (int)c1[0];
    if (eh < 1 || dh < 1 || dim % eh || dim % dh)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: num_heads (%ld, %ld) must divide %d",
                             m->name, eh, dh, dim);
    if (de[1] != dim || dp[1] != dim || pe[1] != dim)
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: embedding widths do not match d_model %d",
                             m->name, dim);
    build(WHISPER(m), (int)c1[1], dim, (int)eh, (int)f1[0],
          count_layers(st, "encoder/layer_%d/ffn/linear_0/weight"), (int)pe[0], (int)dh,
          (int)f1[0], count_layers(st, "decoder/layer_%d/ffn/linear_0/weight"), (int)de[0],
          (int)dp[0]);
    return TSR_OK;
}

static tsr_status hf_sizes(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    char path[4200];
    tsr_src_path(src, "config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "config.json", 8 << 20, err);
    if (!root)
        return err->code;
    tsr_cfg_reader r = {root, path, "config", err, 0};
    int vocab = tsr_cfg_int(&r, "vocab_size", 51865, 1, 1 << 20);
    int n_mels = tsr_cfg_int(&r, "num_mel_bins", 80, 1, 512);
    int dim = tsr_cfg_int(&r, "d_model", 384, 1, 16384);
    int e_layers = tsr_cfg_int(&r, "encoder_layers", 4, 0, 256);
    int e_heads = tsr_cfg_int(&r, "encoder_attention_heads", 6, 1, 1024);
    int e_ffn = tsr_cfg_int(&r, "encoder_ffn_dim", 1536, 1, 65536);
    int d_layers = tsr_cfg_int(&r, "decoder_layers", 4, 0, 256);
    int d_heads = tsr_cfg_int(&r, "decoder_attention_heads", 6, 1, 1024);
    int d_ffn = tsr_cfg_int(&r, "decoder_ffn_dim", 1536, 1, 65536);
    int n_ctx = tsr_cfg_int(&r, "max_source_positions", 1500, 1, 1 << 16);
    int text_ctx = tsr_cfg_int(&r, "max_target_positions", 448, 2, 1 << 16);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (!r.bad && cJSON_IsString(act) && strcmp(act->valuestring, "gelu") != 0)
        r.bad = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                              "%s: activation_function \"%s\" is not supported", path,
                              act->valuestring) != TSR_OK;
    /* HF keeps the suppression lists in generation_config.json or config.json */
    const cJSON *sup = cJSON_GetObjectItemCaseSensitive(root, "suppress_tokens");
    const cJSON *beg = cJSON_GetObjectItemCaseSensitive(root, "begin_suppress_tokens");
    const cJSON *it;
    cJSON_ArrayForEach(it, sup) if (cJSON_IsNumber(it) && w->n_suppress < MAX_SUPPRESS)
        w->suppress[w->n_suppress++] = (int)it->valuedouble;
    cJSON_ArrayForEach(it, beg) if (cJSON_IsNumber(it) && w->n_suppress_begin < 8)
        w->suppress_begin[w->n_suppress_begin++] = (int)it->valuedouble;
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    if (dim % e_heads || dim % d_heads)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: d_model must be a multiple of the attention heads", path);
    build(w, n_mels, dim, e_heads, e_ffn, e_layers, n_ctx, d_heads, d_ffn, d_layers, vocab,
          text_ctx);
    return TSR_OK;
}

/* CTranslate2's config.json (suppress_ids, suppress_ids_begin), or HF's
 * generation_config.json when config.json had no lists. */
static tsr_status read_suppress(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    const char *file = w->ct2 ? "config.json" : "generation_config.json";
    const char *k1 = w->ct2 ? "suppress_ids" : "suppress_tokens";
    const char *k2 = w->ct2 ? "suppress_ids_begin" : "begin_suppress_tokens";
    if (!tsr_src_exists(src, file) || (!w->ct2 && w->n_suppress))
        return TSR_OK;
    cJSON *root = tsr_src_json(src, file, 8 << 20, err);
    if (!root)
        return err->code;
    const cJSON *it;
    w->n_suppress = w->n_suppress_begin = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, k1))
        if (cJSON_IsNumber(it) && w->n_suppress < MAX_SUPPRESS)
            w->suppress[w->n_suppress++] = (int)it->valuedouble;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, k2))
        if (cJSON_IsNumber(it) && w->n_suppress_begin < 8)
            w->suppress_begin[w->n_suppress_begin++] = (int)it->valuedouble;
    if (!w->ct2) {
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(root, "is_multilingual");
        if (cJSON_IsBool(ml))
            w->multilingual = cJSON_IsTrue(ml);
    }
    cJSON_Delete(root);
    return TSR_OK;
}

static tsr_status special_ids(tsr_model *m, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    int V = w->dec.vocab;
    struct {
        const char *name;
        int *slot, required;
    } sp[] = {{"<|endoftext|>", &w->eot, 1},         {"<|startoftranscript|>", &w->sot, 1},
              {"<|notimestamps|>", &w->no_ts, 1},    {"<|transcribe|>", &w->transcribe, 0},
              {"<|translate|>", &w->translate, 0},   {"<|startofprev|>", &w->sot_prev, 0},
              {"<|startoflm|>", &w->sot_lm, 0},      {"<|nospeech|>", &w->no_speech, 0},
              {"<|0.00|>", &w->ts_begin, 0}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) {
        *sp[i].slot = tsr_bytelevel_id(w->tok, sp[i].name);
        if (*sp[i].slot >= V)
            *sp[i].slot = -1;
        if (*sp[i].slot < 0 && sp[i].required)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s/tokenizer.json: no '%s' token below %d",
                                 m->name, sp[i].name, V);
    }
    if (w->no_speech < 0)
        w->no_speech = tsr_bytelevel_id(w->tok, "<|nocaptions|>");
    if (w->ts_begin < 0)
        w->ts_begin = w->no_ts + 1;
    /* multilingual vocabularies have 51865 entries or more; English-only 51864 */
    if (w->ct2)
        w->multilingual = V >= 51865;
    /* as faster-whisper's get_suppressed_tokens: the special tokens too */
    int extra[6] = {w->transcribe, w->translate, w->sot, w->sot_prev, w->sot_lm, w->no_speech};
    for (int i = 0; i < 6; i++)
        if (extra[i] >= 0 && w->n_suppress < MAX_SUPPRESS)
            w->suppress[w->n_suppress++] = extra[i];
    for (int i = 0; i < w->n_suppress; i++)
        if (w->suppress[i] < 0 || w->suppress[i] >= V)
            w->suppress[i--] = w->suppress[--w->n_suppress];
    if (w->n_suppress_begin == 0) { /* " " and end of text, as Whisper does */
        int sp_id = tsr_bytelevel_id(w->tok, "\xC4\xA0"); /* "Ġ" */
        if (sp_id >= 0)
            w->suppress_begin[w->n_suppress_begin++] = sp_id;
        w->suppress_begin[w->n_suppress_begin++] = w->eot;
    }
    return TSR_OK;
}

static tsr_status load_weights(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    whisper_model *w = WHISPER(m);
    int el = w->enc.enc.n_layers, dl = w->dec.n_layers;
    w->enc_w.enc.layers = calloc((size_t)el + 1, sizeof(tsr_enc_weights));
    w->dec_w.layers = calloc((size_t)dl + 1, sizeof(tsr_dec_weights));
    if (!w->enc_w.enc.layers || !w->dec_w.layers)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_wtable t = {w->ct2 ? ct2_table : hf_table,
                    w->ct2 ? (int)(sizeof ct2_table / sizeof ct2_table[0])
                           : (int)(sizeof hf_table / sizeof hf_table[0]),
                    {{&w->enc_w, 0, 1},
                     {w->enc_w.enc.layers, sizeof(tsr_enc_weights), el},
                     {&w->dec_w, 0, 1},
                     {w->dec_w.layers, sizeof(tsr_dec_weights), dl}},
                    "",
                    whisper_dim,
                    w};
    return tsr_model_load_table(m, &t, st, NULL, err);
}

static int whisper_detect(const tsr_source *src, const cJSON *config)
{
    /* or a CTranslate2 directory: model.bin next to a config without model_type */
    return tsr_model_type_is(config, "whisper") ||
           (!cJSON_GetObjectItemCaseSensitive(config, "model_type") &&
            tsr_src_exists(src, "model.bin"));
}

static tsr_status whisper_load(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    if (!(m->data = calloc(1, sizeof(whisper_model))))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    whisper_model *w = WHISPER(m);
    w->ct2 = tsr_src_exists(src, "model.bin");
    tsr_st *st = NULL;
    tsr_status rc = w->ct2 ? tsr_st_open_ct2_source(src, "model.bin", &st, err)
                           : hf_sizes(m, src, err);
    if (rc == TSR_OK && w->ct2)
        rc = ct2_sizes(m, st, err);
    if (rc == TSR_OK && !w->ct2)
        rc = tsr_st_open_source(src, &st, err);
    if (rc == TSR_OK) {
        tsr_enc_cfg dc = tsr_dec_enc_cfg(&w->dec.layer);
        rc = tsr_enc_cfg_check(&w->enc.enc.layer, m->name, err);
        TSR_TRY(rc, tsr_enc_cfg_check(&dc, m->name, err));
    }
    if (rc == TSR_OK) { /* tokenizer.json only */
        tsr_tok_files f;
        rc = tsr_src_tokenizer(src, "tokenizer.json", NULL, 1, &f, err);
        TSR_TRY(rc, tsr_bytelevel_load_json(f.text[0], f.len[0], f.path[0], &w->tok, err));
        tsr_tok_files_free(&f);
    }
    TSR_TRY(rc, read_suppress(m, src, err));
    TSR_TRY(rc, special_ids(m, err));
    TSR_TRY(rc, load_weights(m, st, err));
    tsr_st_close(st);
    return rc;
}

static void whisper_free(tsr_model *m)
{
    whisper_model *w = WHISPER(m);
    free(w->enc_w.enc.layers);
    free(w->dec_w.layers);
    tsr_bytelevel_free(w->tok);
    free(w);
    m->data = NULL;
}

static void whisper_session_free(tsr_session *s)
{
    whisper_session *ws = s->data;
    tsr_encoder_io_free(&ws->enc.enc);
    tsr_decoder_io_free(&ws->dec);
}

const tsr_family tsr_family_whisper = {"whisper",    whisper_detect, whisper_load, whisper_free,
                                       whisper_session_free, NULL, NULL, NULL};

#define IF_WHISPER(m, expr) ((m)->fam == &tsr_family_whisper ? (expr) : 0)
int tsr_model_n_mels(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->enc.n_mels); }
int tsr_model_vocab_size(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->dec.vocab); }
int tsr_model_dim(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->dec.layer.dim); }
int tsr_model_audio_ctx(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->enc.n_ctx); }
int tsr_model_text_ctx(const tsr_model *m) { return IF_WHISPER(m, WHISPER(m)->dec.n_ctx); }
const tsr_bytelevel *tsr_model_bytelevel(const tsr_model *m)
{
    return m->fam == &tsr_family_whisper ? WHISPER(m)->tok : NULL;
}

/* ---- running ---- */

static tsr_status whisper_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    ws->plan_beams = 0;
    ws->encoded = 0;
    tsr_status rc = tsr_wenc_plan(s->q, &w->enc, &s->arena, &ws->enc, scratch, err);
    TSR_TRY(rc, tsr_decoder_plan(s->q, &w->dec, ws->want_beams, w->dec.n_ctx, 1, w->enc.n_ctx,
                                 &s->arena, &ws->dec, scratch, err));
    return rc;
}

/* The session planned for B decoder sequences (re-planned when B changes). */
static tsr_status whisper_ready(tsr_session *s, int B, tsr_error *err)
{
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    whisper_session *ws = rc == TSR_OK ? tsr_session_data(s, sizeof *ws, err) : NULL;
    if (!ws)
        return rc != TSR_OK ? rc : TSR_ERR_NOMEM;
    if (ws->plan_beams == B)
        return TSR_OK;
    ws->want_beams = B;
    rc = tsr_session_plan(s, whisper_plan, err);
    if (rc == TSR_OK)
        ws->plan_beams = B;
    return rc;
}

static tsr_status encode(tsr_session *s, const float *mel, float *out, tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    ws->encoded = 0;
    tsr_status rc = tsr_wenc_forward(s->q, &w->enc, &w->enc_w, &ws->enc, &s->scratch, mel, err);
    if (out)
        TSR_TRY(rc, tsr_buf_read(s->q, ws->enc.enc.x, out,
                                 sizeof(float) * (size_t)w->enc.n_ctx * w->enc.enc.layer.dim,
                                 err));
    ws->encoded = rc == TSR_OK;
    return rc;
}

tsr_status tsr_session_whisper_encode(tsr_session *s, const float *mel, float *out,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = whisper_ready(s, 1, err);
    TSR_TRY(rc, encode(s, mel, out, err));
    if (rc == TSR_OK && !out) /* the caller's mel may be freed once this returns */
        rc = tsr_queue_finish(s->q, err);
    return tsr_session_fail(s, rc, err);
}

/* Clears the caches for new sequences over the current encoding. */
static tsr_status start_decoding(tsr_session *s, tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    if (!ws->encoded)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio has been encoded");
    return tsr_decoder_cross(s->q, &w->dec, &w->dec_w, &ws->dec, ws->enc.enc.x, err);
}

/* Runs Sq tokens of each of the B sequences at positions past..; logits (B, V)
 * of each sequence's last token when wanted. */
static tsr_status run_tokens(tsr_session *s, const int *tokens, int B, int Sq, int past,
                             float *logits, tsr_error *err)
{
    whisper_model *w = WHISPER(s->m);
    whisper_session *ws = s->data;
    return tsr_decoder_step(s->q, &w->dec, &w->dec_w, &ws->dec, &s->scratch, tokens, B, Sq, past,
                            logits, err);
}

tsr_status tsr_session_whisper_logits(tsr_session *s, const int *tokens, int n, float *logits,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    if (rc == TSR_OK && (!s->data || ((whisper_session *)s->data)->plan_beams != 1))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio has been encoded");
    TSR_TRY(rc, start_decoding(s, err));
    int V = WHISPER(s->m)->dec.vocab;
    for (int i = 0; i < n && rc == TSR_OK; i++)
        rc = run_tokens(s, tokens + i, 1, 1, i, logits + (size_t)i * V, err);
    return tsr_session_fail(s, rc, err);
}

/* ---- decoding ---- */

typedef struct {
    tsr_session *s;
    const whisper_model *w;
} decode_ctx;

static tsr_status step_hook(void *user, const int *tokens, int B, int pos, float *logits,
                            tsr_error *err)
{
    decode_ctx *d = user;
    return run_tokens(d->s, tokens, B, 1, pos, logits, err);
}

static tsr_status reorder_hook(void *user, const int *src, int B, tsr_error *err)
{
    decode_ctx *d = user;
    whisper_session *ws = d->s->data;
    return tsr_decoder_reorder(d->s->q, &d->w->dec, &ws->dec, src, err);
}

/* faster-whisper's suppression: the configured tokens, and at the first
 * step the begin-suppressed ones. */
static void suppress_hook(void *user, int step, const int *seq, int len, float *lg)
{
    const whisper_model *w = ((decode_ctx *)user)->w;
    for (int i = 0; i < w->n_suppress; i++)
        lg[w->suppress[i]] = -INFINITY;
    if (step == 0)
        for (int i = 0; i < w->n_suppress_begin; i++)
            if (w->suppress_begin[i] >= 0 && w->suppress_begin[i] < w->dec.vocab)
                lg[w->suppress_begin[i]] = -INFINITY;
}

typedef struct {
    int *tokens;
    int n;
    double cum_logprob, no_speech_prob;
} decode_result;

/* Runs the prompt, then greedy (beam 1) or beam search over the current
 * encoding. The tokens before <|startoftranscript|> go in one pass; the
 * rest one at a time, so that the logits at sot give the no-speech
 * probability. */
static tsr_status decode(tsr_session *s, const int *prompt, int np, int sot_index, int beam,
                         float length_penalty, int max_new, decode_result *res, tsr_error *err)
{
    const whisper_model *w = WHISPER(s->m);
    int V = w->dec.vocab, B = beam < 1 ? 1 : beam;
    memset(res, 0, sizeof *res);
    if (max_new > w->dec.n_ctx - np)
        max_new = w->dec.n_ctx - np;
    if (max_new < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "the prompt fills the decoder context");
    tsr_status rc = start_decoding(s, err);
    float *lg = malloc(sizeof(float) * (size_t)V * B);
    int *rep = malloc(sizeof(int) * (size_t)B * (np > 1 ? np : 1));
    if (!lg || !rep) {
        free(lg), free(rep);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    int done_prompt = sot_index > 0 ? sot_index : 0;
    for (int b = 0; b < B && done_prompt > 0; b++)
        memcpy(rep + (size_t)b * done_prompt, prompt, sizeof(int) * (size_t)done_prompt);
    if (rc == TSR_OK && done_prompt > 0)
        rc = run_tokens(s, rep, B, done_prompt, 0, NULL, err);
    for (int i = done_prompt; i < np && rc == TSR_OK; i++) {
        for (int b = 0; b < B; b++)
            rep[b] = prompt[i];
        rc = run_tokens(s, rep, B, 1, i, lg, err);
        if (rc == TSR_OK && i == sot_index && w->no_speech >= 0) {
            float mx = -INFINITY;
            double sum = 0;
            for (int k = 0; k < V; k++)
                mx = fmaxf(mx, lg[k]);
            for (int k = 0; k < V; k++)
                sum += exp((double)(lg[k] - mx));
            res->no_speech_prob = exp((double)(lg[w->no_speech] - mx)) / sum;
        }
    }
    decode_ctx dc = {s, w};
    tsr_gen_params gp = {V, w->eot, B, max_new, length_penalty, np};
    tsr_gen_hooks hooks = {step_hook, reorder_hook, suppress_hook, &dc};
    tsr_gen_result gr = {0};
    TSR_TRY(rc, tsr_generate(&gp, &hooks, lg, &gr, err));
    if (rc == TSR_OK) {
        res->tokens = gr.tokens;
        res->n = gr.n;
        res->cum_logprob = gr.cum_logprob;
    }
    free(lg), free(rep);
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

/* Appends n bytes (or ints) to a growing buffer. */
static int append(void **buf, size_t *len, size_t *cap, const void *src, size_t n, size_t size)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (*len + n + 1 > nc)
            nc *= 2;
        void *nb = realloc(*buf, nc * size);
        if (!nb)
            return 0;
        *buf = nb;
        *cap = nc;
    }
    memcpy((char *)*buf + *len * size, src, n * size);
    *len += n;
    return 1;
}

static tsr_status transcribe(tsr_session *s, const float *pcm, size_t n,
                             const tsr_transcribe_params *p, tsr_transcript *out, tsr_error *err)
{
    const whisper_model *w = WHISPER(s->m);
    tsr_status rc = whisper_ready(s, p->beam_size, err);
    if (rc != TSR_OK)
        return rc;
    int n_mels = w->enc.n_mels, W = 2 * w->enc.n_ctx, T = 0, n_text_ctx = w->dec.n_ctx;
    float *mel = NULL;
    rc = tsr_whisper_logmel(pcm, n, n_mels, 160, &mel, &T, err);
    if (rc != TSR_OK)
        return rc;
    int content = T - 1; /* faster-whisper: the padding frame is not content */
    out->duration = (double)n / 16000.0;
    float *win = malloc(sizeof(float) * (size_t)n_mels * W);
    int *prompt = malloc(sizeof(int) * (size_t)(n_text_ctx / 2 + 8));
    void *all = NULL, *text = NULL;
    size_t n_all = 0, all_cap = 0, text_len = 0, text_cap = 0;
    if (!win || !prompt || !append(&text, &text_len, &text_cap, "", 0, 1)) {
        free(mel), free(win), free(prompt), free(text);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    ((char *)text)[0] = 0;
    int prompt_reset = 0, seg_cap = 0, kept = 0;
    double sum_lp = 0;
    int lang = -1;
    if (w->multilingual) {
        char tk[64];
        snprintf(tk, sizeof tk, "<|%s|>", p->language ? p->language : "en");
        lang = tsr_bytelevel_id(w->tok, tk);
        if (lang < 0)
            rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: unknown language '%s'", s->m->name,
                               p->language);
    }
    for (int seek = 0; seek < content && rc == TSR_OK;) {
        int size = content - seek < W ? content - seek : W;
        for (int c = 0; c < n_mels; c++) {
            memcpy(win + (size_t)c * W, mel + (size_t)c * T + seek, sizeof(float) * size);
            memset(win + (size_t)c * W + size, 0, sizeof(float) * (W - size));
        }
        rc = encode(s, win, NULL, err);
        /* the prompt: previous text, then <|startoftranscript|> [language task] <|notimestamps|> */
        int np = 0, keep = n_text_ctx / 2 - 1;
        int *all_t = all;
        int prev = p->condition_on_previous_text ? (int)n_all - prompt_reset : 0;
        if (prev > 0 && w->sot_prev >= 0) {
            prompt[np++] = w->sot_prev;
            int from = prev > keep ? (int)n_all - keep : prompt_reset;
            for (int i = from; i < (int)n_all; i++)
                prompt[np++] = all_t[i];
        }
        int sot_index = np;
        prompt[np++] = w->sot;
        if (w->multilingual && lang >= 0) {
            prompt[np++] = lang;
            if (w->transcribe >= 0)
                prompt[np++] = w->transcribe;
        }
        prompt[np++] = w->no_ts;
        decode_result r = {0};
        TSR_TRY(rc, decode(s, prompt, np, sot_index, p->beam_size, p->length_penalty,
                           p->max_new_tokens > 0 ? p->max_new_tokens : n_text_ctx, &r, err));
        if (rc != TSR_OK) {
            free(r.tokens);
            break;
        }
        double avg = r.cum_logprob / (r.n + 1);
        int skip = p->no_speech_threshold >= 0 && r.no_speech_prob > p->no_speech_threshold &&
                   !(avg > p->log_prob_threshold);
        char *seg_text = NULL;
        if (!skip)
            rc = tsr_bytelevel_decode(w->tok, r.tokens, r.n, &seg_text, err);
        if (rc == TSR_OK && out->n_segments == seg_cap) {
            seg_cap = seg_cap ? seg_cap * 2 : 8;
            void *ns = realloc(out->segments, sizeof *out->segments * (size_t)seg_cap);
            if (!ns)
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
            else
                out->segments = ns;
        }
        if (rc == TSR_OK) {
            tsr_segment *sg = &out->segments[out->n_segments++];
            *sg = (tsr_segment){seek * 0.01, (seek + size) * 0.01, seg_text, avg,
                                r.no_speech_prob, skip};
            seg_text = NULL;
            if (!skip) {
                sum_lp += avg;
                kept++;
                if (!append(&all, &n_all, &all_cap, r.tokens, (size_t)r.n, sizeof(int)) ||
                    !append(&text, &text_len, &text_cap, sg->text, strlen(sg->text), 1))
                    rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                else
                    ((char *)text)[text_len] = 0;
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
        return rc;
    }
    /* strip, as faster-whisper's segment texts are stripped when joined */
    char *t = text;
    size_t a = 0, b = text_len;
    while (a < b && is_space(t[a]))
        a++;
    while (b > a && is_space(t[b - 1]))
        b--;
    memmove(t, t + a, b - a);
    t[b - a] = 0;
    out->text = t;
    out->tokens = all ? all : calloc(1, sizeof(int));
    out->n_tokens = (int)n_all;
    out->avg_logprob = kept ? sum_lp / kept : 0;
    return out->tokens ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
}

tsr_status tsr_session_transcribe_pcm(tsr_session *s, const float *pcm, size_t n,
                                      const tsr_transcribe_params *p, tsr_transcript *out,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    memset(out, 0, sizeof *out);
    tsr_transcribe_params def = tsr_transcribe_default_params();
    if (!p)
        p = &def;
    tsr_status rc = TSR_OK;
    if (p->beam_size < 1 || p->beam_size > MAX_BEAMS)
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "beam size %d outside 1..%d", p->beam_size,
                           MAX_BEAMS);
    TSR_TRY(rc, transcribe(s, pcm, n, p, out, err));
    if (rc != TSR_OK)
        tsr_transcript_free(out);
    return tsr_session_fail(s, rc, err);
}

tsr_status tsr_session_transcribe_file(tsr_session *s, const char *path,
                                       const tsr_transcribe_params *p, tsr_transcript *out,
                                       tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    float *pcm = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    tsr_status rc = tsr_session_need(s, &tsr_family_whisper, "transcribe speech", err);
    if (rc != TSR_OK)
        return tsr_session_fail(s, rc, err);
    rc = tsr_audio_load_file(path, 16000, &pcm, &n, err);
    TSR_TRY(rc, tsr_session_transcribe_pcm(s, pcm, n, p, out, err));
    if (rc != TSR_OK && !strstr(err->msg, path))
        tsr_error_prefix(err, "%s", path);
    free(pcm);
    return tsr_session_fail(s, rc, err);
}
