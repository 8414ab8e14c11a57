/* CLAP (transformers' ClapModel: laion/clap-htsat-unfused, -fused,
 * larger_clap_*): the HF config with its text_config and audio_config,
 * preprocessor_config.json (ClapFeatureExtractor), the RoBERTa byte-level
 * BPE, one tensor table for both towers, the RoBERTa text tower with its
 * pooler and projection, HTSAT with its projection, and the window modes
 * that make long audio deterministic. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_audio.h"
#include "tsr_cfg.h"
#include "tsr_hash.h"
#include "tsr_htsat.h"
#include "tsr_model.h"
#include "tsr_st.h"
#include "tsr_textenc.h"
#include "tsr_wtable.h"

typedef struct {
    tsr_textenc_cfg txt;
    tsr_textenc_w tw;
    cl_mem pool_w, pool_b, tp1_w, tp1_b, tp2_w, tp2_b;
    tsr_act tproj_act;
    tsr_htsat_cfg au;
    tsr_htsat_w aw;
    tsr_clapfe *fe;
    tsr_bytelevel *tok;
    int bos, eos, pad;
    int P;              /* projection_dim */
    float scale_a, scale_t; /* exp(logit_scale_a), exp(logit_scale_t) */
    char *names;        /* the tensor table's names */
    tsr_wrow *rows;
} clap_model;

typedef struct {
    int want_tb, want_ts, want_ab, plan_tb, plan_ts, plan_ab;
    tsr_textenc_io tio;
    cl_mem t0, t1, tout;
    tsr_htsat_io aio;
} clap_session;

#define CLAP(m) ((clap_model *)(m)->data)

/* ---- configuration ---- */

static tsr_act proj_act(tsr_cfg_reader *r)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, "projection_hidden_act");
    const char *s = cJSON_IsString(it) ? it->valuestring : "relu";
    if (strcmp(s, "relu") == 0)
        return TSR_ACT_RELU;
    if (strcmp(s, "tanh") == 0)
        return TSR_ACT_TANH;
    if (strcmp(s, "gelu") == 0)
        return TSR_ACT_GELU;
    if (strcmp(s, "quick_gelu") == 0)
        return TSR_ACT_QUICK_GELU;
    if (!r->bad)
        tsr_error_set(r->err, TSR_ERR_UNSUPPORTED, "%s: %s.projection_hidden_act \"%s\" is not "
                      "supported", r->path, r->section, s);
    r->bad = 1;
    return TSR_ACT_NONE;
}

/* An int or a list of ints (n of them, all kept in v); returns the count. */
static int int_list(tsr_cfg_reader *r, const char *key, const int *def, int ndef, int *v, int cap,
                    int lo, int hi)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    if (!it) {
        memcpy(v, def, sizeof(int) * (size_t)ndef);
        return ndef;
    }
    int n = 0;
    if (cJSON_IsNumber(it))
        v[n++] = it->valueint;
    else if (cJSON_IsArray(it)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, it)
        {
            if (!cJSON_IsNumber(e) || n >= cap) {
                n = -1;
                break;
            }
            v[n++] = e->valueint;
        }
    } else
        n = -1;
    for (int i = 0; i < n; i++)
        if (v[i] < lo || v[i] > hi || v[i] != (int)v[i])
            n = -1;
    if (n < 1 && !r->bad) {
        tsr_error_set(r->err, TSR_ERR_FORMAT, "%s: %s.%s must be an integer or a list of at most "
                      "%d integers in %d..%d", r->path, r->section, key, cap, lo, hi);
        r->bad = 1;
    }
    return n < 1 ? 0 : n;
}

static double num(const cJSON *o, const char *key, double def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

static tsr_status parse_text(clap_model *c, const cJSON *tc, const char *path, int P,
                             tsr_error *err)
{
    tsr_cfg_reader r = {tc, path, "text_config", err, 0};
    tsr_textenc_cfg *t = &c->txt;
    t->vocab = tsr_cfg_int(&r, "vocab_size", 50265, 1, 1 << 22);
    t->max_pos = tsr_cfg_int(&r, "max_position_embeddings", 514, 3, 1 << 16);
    int dim = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    int heads = tsr_cfg_int(&r, "num_attention_heads", 12, 1, 1024);
    int ffn = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    int layers = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    t->type_vocab = tsr_cfg_int(&r, "type_vocab_size", 1, 1, 1 << 16);
    int pad = tsr_cfg_int(&r, "pad_token_id", 1, 0, 1 << 22);
    float eps = tsr_cfg_float(&r, "layer_norm_eps", 1e-12f);
    tsr_act act = tsr_cfg_act(&r, "gelu");
    c->tproj_act = proj_act(&r);
    int tp = tsr_cfg_int(&r, "projection_dim", P, 1, 65536);
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(tc, "position_embedding_type");
    if (r.bad)
        return err->code;
    if (cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute") != 0)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: text_config.position_embedding_type \"%s\" is not supported",
                             path, pe->valuestring);
    if (tp != P)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: text_config.projection_dim %d differs from projection_dim %d",
                             path, tp, P);
    if (pad + 2 > t->max_pos)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: pad_token_id %d leaves no positions of %d", path, pad,
                             t->max_pos);
    c->pad = pad;
    t->eos_id = -1;
    t->pool_first = 1;
    t->pos0 = pad + 1; /* RoBERTa's create_position_ids_from_input_ids */
    /* embedding layernorm, post-layernorm layers with key-length masks, row 0 */
    t->enc = (tsr_encoder_cfg){{dim, heads, ffn, eps, act, 0, 1}, layers, 1, TSR_LN_NONE, 1, 0, 1};
    return tsr_enc_cfg_check(&t->enc.layer, path, err);
}

static tsr_status parse_audio(clap_model *c, const cJSON *ac, const char *path, int P,
                              tsr_error *err)
{
    tsr_cfg_reader r = {ac, path, "audio_config", err, 0};
    tsr_htsat_cfg *h = &c->au;
    static const int ddepth[] = {2, 2, 6, 2}, dheads[] = {4, 8, 16, 32}, dstride[] = {4, 4};
    int stride[4];
    h->window = tsr_cfg_int(&r, "window_size", 8, 1, 64);
    h->n_mels = tsr_cfg_int(&r, "num_mel_bins", 64, 1, 4096);
    h->spec = tsr_cfg_int(&r, "spec_size", 256, 1, 8192);
    h->patch = tsr_cfg_int(&r, "patch_size", 4, 1, 1024);
    int ns = int_list(&r, "patch_stride", dstride, 2, stride, 2, 1, 1024);
    int hidden = tsr_cfg_int(&r, "hidden_size", 768, 1, 65536);
    int C0 = tsr_cfg_int(&r, "patch_embeds_hidden_size", 96, 1, 65536);
    int in_ch = tsr_cfg_int(&r, "patch_embed_input_channels", 1, 1, 16);
    int nd = int_list(&r, "depths", ddepth, 4, h->depth, TSR_HTSAT_MAX_STAGES, 0, 256);
    int nh = int_list(&r, "num_attention_heads", dheads, 4, h->heads, TSR_HTSAT_MAX_STAGES, 1,
                      1024);
    h->eps = tsr_cfg_float(&r, "layer_norm_eps", 1e-5f);
    h->act = tsr_cfg_act(&r, "gelu");
    h->proj_act = proj_act(&r);
    int ap = tsr_cfg_int(&r, "projection_dim", P, 1, 65536);
    int aff_r = tsr_cfg_int(&r, "aff_block_r", 4, 1, 65536);
    if (r.bad)
        return err->code;
    const cJSON *fu = cJSON_GetObjectItemCaseSensitive(ac, "enable_fusion");
    const cJSON *ft = cJSON_GetObjectItemCaseSensitive(ac, "fusion_type");
    const cJSON *pln = cJSON_GetObjectItemCaseSensitive(ac, "enable_patch_layer_norm");
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(ac, "flatten_patch_embeds");
    const cJSON *qb = cJSON_GetObjectItemCaseSensitive(ac, "qkv_bias");
    h->fusion = cJSON_IsTrue(fu);
    h->patch_ln = !cJSON_IsFalse(pln);
    double mlp = num(ac, "mlp_ratio", 4.0);
    if (h->fusion && !(cJSON_IsString(ft) && strcmp(ft->valuestring, "aff_2d") == 0))
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: audio_config.fusion_type %s is not supported (only \"aff_2d\", "
                             "which the LAION fused checkpoints use)",
                             path, cJSON_IsString(ft) ? ft->valuestring : "null");
    if (cJSON_IsFalse(fl) || cJSON_IsFalse(qb) || in_ch != 1)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: audio_config with flatten_patch_embeds false, qkv_bias false or "
                             "%d input channels is not supported", path, in_ch);
    for (int i = 0; i < ns; i++)
        if (stride[i] != h->patch)
            return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                 "%s: audio_config.patch_stride %d differs from patch_size %d "
                                 "(overlapping patches are not supported)",
                                 path, stride[i], h->patch);
    if (nd != nh)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: audio_config has %d depths but %d head counts", path, nd, nh);
    if (ap != P)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: audio_config.projection_dim %d differs from projection_dim %d",
                             path, ap, P);
    if (!(mlp > 0 && mlp <= 64))
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: audio_config.mlp_ratio %g", path, mlp);
    h->stages = nd;
    h->ratio = h->spec / h->n_mels;
    if (h->ratio < 1)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: spec_size %d is smaller than num_mel_bins %d", path, h->spec,
                             h->n_mels);
    for (int s = 0; s < nd; s++) {
        h->dim[s] = C0 << s;
        h->ffn[s] = (int)(mlp * h->dim[s]);
    }
    if (h->dim[nd - 1] != hidden)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: audio_config.hidden_size %d is not patch_embeds_hidden_size %d "
                             "times 2^%d", path, hidden, C0, nd - 1);
    h->aff_inter = C0 / aff_r;
    h->proj_dim = P;
    return TSR_OK;
}

static tsr_status parse_fe(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clap_model *c = CLAP(m);
    tsr_clapfe_cfg f = tsr_clapfe_default_cfg();
    char path[4200];
    tsr_src_path(src, "preprocessor_config.json", path, sizeof path);
    if (tsr_src_exists(src, "preprocessor_config.json")) {
        cJSON *root = tsr_src_json(src, "preprocessor_config.json", 1 << 20, err);
        if (!root)
            return err->code;
        tsr_cfg_reader r = {root, path, "preprocessor", err, 0};
        f.n_mels = tsr_cfg_int(&r, "feature_size", 64, 1, 4096);
        f.rate = tsr_cfg_int(&r, "sampling_rate", 48000, 1000, 384000);
        f.hop = tsr_cfg_int(&r, "hop_length", 480, 1, 1 << 20);
        f.n_fft = tsr_cfg_int(&r, "fft_window_size", 1024, 16, 65536);
        double secs = num(root, "max_length_s", 10);
        f.fmin = num(root, "frequency_min", 0);
        f.fmax = num(root, "frequency_max", 14000);
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "truncation");
        const cJSON *pd = cJSON_GetObjectItemCaseSensitive(root, "padding");
        const cJSON *tdb = cJSON_GetObjectItemCaseSensitive(root, "top_db");
        tsr_status rc = r.bad ? err->code : TSR_OK;
        if (rc == TSR_OK && !(secs > 0 && secs * f.rate < (1 << 28)))
            rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: max_length_s %g", path, secs);
        f.max_samples = (int)(secs * f.rate);
        const char *ts = cJSON_IsString(tr) ? tr->valuestring : "fusion";
        const char *ps = cJSON_IsString(pd) ? pd->valuestring : "repeatpad";
        if (rc == TSR_OK && strcmp(ts, "fusion") && strcmp(ts, "rand_trunc"))
            rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: truncation \"%s\" is not supported",
                               path, ts);
        f.truncation = strcmp(ts, "fusion") == 0 ? TSR_CLAP_TRUNC_FUSION : TSR_CLAP_TRUNC_RAND;
        f.padding = strcmp(ps, "repeatpad") == 0 ? TSR_CLAP_PAD_REPEATPAD
                    : strcmp(ps, "repeat") == 0  ? TSR_CLAP_PAD_REPEAT
                                                 : TSR_CLAP_PAD_ZERO;
        if (rc == TSR_OK && tdb && !cJSON_IsNull(tdb))
            rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: top_db is not supported", path);
        cJSON_Delete(root);
        if (rc != TSR_OK)
            return rc;
    }
    tsr_htsat_cfg *h = &c->au;
    if (f.n_mels != h->n_mels)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: feature_size %d differs from the model's num_mel_bins %d", path,
                             f.n_mels, h->n_mels);
    if (h->fusion && f.truncation != TSR_CLAP_TRUNC_FUSION)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: a fused checkpoint needs the \"fusion\" truncation", path);
    if (!h->fusion && f.truncation == TSR_CLAP_TRUNC_FUSION)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: the \"fusion\" truncation gives four channels, which an unfused "
                             "checkpoint cannot take (transformers fails on it too); use "
                             "\"rand_trunc\"", path);
    tsr_status rc = tsr_clapfe_new(&f, &c->fe, err);
    if (rc != TSR_OK)
        return tsr_error_prefix(err, "%s", path), rc;
    h->frames = tsr_clapfe_window_frames(c->fe);
    h->in_ch = tsr_clapfe_channels(c->fe);
    return tsr_htsat_check(h, m->name, err);
}

static tsr_status parse_config(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clap_model *c = CLAP(m);
    char path[4200];
    tsr_src_path(src, "config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "config.json", 1 << 20, err);
    if (!root)
        return err->code;
    tsr_cfg_reader r = {root, path, "config", err, 0};
    c->P = tsr_cfg_int(&r, "projection_dim", 512, 1, 65536);
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    const cJSON *ac = cJSON_GetObjectItemCaseSensitive(root, "audio_config");
    tsr_status rc = r.bad ? err->code : TSR_OK;
    if (rc == TSR_OK && (!cJSON_IsObject(tc) || !cJSON_IsObject(ac)))
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: a CLAP config needs both text_config and audio_config (%s is "
                           "missing)", path, !cJSON_IsObject(tc) ? "text_config" : "audio_config");
    TSR_TRY(rc, parse_text(c, tc, path, c->P, err));
    TSR_TRY(rc, parse_audio(c, ac, path, c->P, err));
    cJSON_Delete(root);
    return rc;
}

/* ---- the tensor table ---- */

enum {
    ONE = 1, TD, TV, TPOS, TTYPES, TF, PD, MELS, C0, I0, PATCH, PATCH3, DL, TBL,
    DS = 32, FS = DS + TSR_HTSAT_MAX_STAGES, HS = FS + TSR_HTSAT_MAX_STAGES,
    M4 = HS + TSR_HTSAT_MAX_STAGES, M2 = M4 + TSR_HTSAT_MAX_STAGES
};

static int64_t clap_dim(const void *cfg, int code)
{
    const clap_model *c = cfg;
    const tsr_htsat_cfg *h = &c->au;
    if (code >= DS && code < M2 + TSR_HTSAT_MAX_STAGES) {
        int kind = (code - DS) / TSR_HTSAT_MAX_STAGES, s = (code - DS) % TSR_HTSAT_MAX_STAGES;
        int d = h->dim[s];
        return kind == 0 ? d : kind == 1 ? h->ffn[s] : kind == 2 ? h->heads[s] : kind == 3 ? 4 * d
                                                                                           : 2 * d;
    }
    switch (code) {
    case ONE: return 1;
    case TD: return c->txt.enc.layer.dim;
    case TV: return c->txt.vocab;
    case TPOS: return c->txt.max_pos;
    case TTYPES: return c->txt.type_vocab;
    case TF: return c->txt.enc.layer.ffn;
    case PD: return c->P;
    case MELS: return h->n_mels;
    case C0: return h->dim[0];
    case I0: return h->aff_inter;
    case PATCH: return h->patch;
    case PATCH3: return 3 * h->patch;
    case DL: return h->dim[h->stages - 1];
    case TBL: return (int64_t)(2 * h->window - 1) * (2 * h->window - 1);
    }
    return -1;
}

enum { OBJ_TOP, OBJ_TLAYER, OBJ_STAGE0 };
#define LIN TSR_W_LINEAR
#define NAME_CAP 160

typedef struct {
    clap_model *c;
    int n, cap;
} table_builder;

/* A row named pfx + name. */
static void add(table_builder *b, const char *name, const char *pfx, int obj, size_t off, int part,
                int parts, int d0, int d1, int d2, int d3, int flags)
{
    size_t lp = strlen(pfx), ln = strlen(name);
    if (b->n >= b->cap || lp + ln >= NAME_CAP)
        return;
    char *dst = b->c->names + (size_t)b->n * NAME_CAP;
    memcpy(dst, pfx, lp);
    memcpy(dst + lp, name, ln + 1);
    b->c->rows[b->n++] = (tsr_wrow){dst, NULL, obj, off, part, parts, {d0, d1, d2, d3}, flags,
                                    0, 0};
}

#define TOP(f) offsetof(clap_model, f)
#define LW(f) offsetof(tsr_enc_weights, f)
#define BW(f) offsetof(tsr_swin_block_w, f)
#define AE "audio_model.audio_encoder."

static void bn_rows(table_builder *b, const char *pfx, size_t off, int dim)
{
    add(b, "running_mean", pfx, OBJ_TOP, off + offsetof(tsr_bn_w, mean), 0, 0, dim, 0, 0, 0, 0);
    add(b, "running_var", pfx, OBJ_TOP, off + offsetof(tsr_bn_w, var), 0, 0, dim, 0, 0, 0, 0);
    add(b, "weight", pfx, OBJ_TOP, off + offsetof(tsr_bn_w, g), 0, 0, dim, 0, 0, 0, 0);
    add(b, "bias", pfx, OBJ_TOP, off + offsetof(tsr_bn_w, b), 0, 0, dim, 0, 0, 0, 0);
}

static int build_table(clap_model *c)
{
    int cap = 64 + 24 * TSR_HTSAT_MAX_STAGES + 40;
    c->names = malloc((size_t)cap * NAME_CAP);
    c->rows = malloc(sizeof(tsr_wrow) * (size_t)cap);
    if (!c->names || !c->rows)
        return -1;
    table_builder b = {c, 0, cap};
    const char *T = "text_model.";
    add(&b, "embeddings.word_embeddings.weight", T, OBJ_TOP, TOP(tw.tok), 0, 0, TV, TD, 0, 0, 0);
    add(&b, "embeddings.position_embeddings.weight", T, OBJ_TOP, TOP(tw.pos), 0, 0, TPOS, TD, 0,
        0, 0);
    add(&b, "embeddings.token_type_embeddings.weight", T, OBJ_TOP, TOP(tw.type0), 0, 0, TTYPES,
        TD, 0, 0, TSR_W_ROW0);
    add(&b, "embeddings.LayerNorm.weight", T, OBJ_TOP, TOP(tw.enc.pre_g), 0, 0, TD, 0, 0, 0, 0);
    add(&b, "embeddings.LayerNorm.bias", T, OBJ_TOP, TOP(tw.enc.pre_b), 0, 0, TD, 0, 0, 0, 0);
    static const char *qkv[3] = {"query", "key", "value"};
    char f[NAME_CAP];
    for (int p = 0; p < 3; p++) {
        snprintf(f, sizeof f, "%s.weight", qkv[p]);
        add(&b, f, "text_model.encoder.layer.%d.attention.self.", OBJ_TLAYER, LW(qkv_w), p, 3, TD,
            TD, 0, 0, LIN);
    }
    for (int p = 0; p < 3; p++) {
        snprintf(f, sizeof f, "%s.bias", qkv[p]);
        add(&b, f, "text_model.encoder.layer.%d.attention.self.", OBJ_TLAYER, LW(qkv_b), p, 3, TD,
            0, 0, 0, 0);
    }
#define TL(n, field, d0, d1, fl) \
    add(&b, n, "text_model.encoder.layer.%d.", OBJ_TLAYER, LW(field), 0, 0, d0, d1, 0, 0, fl)
    TL("attention.output.dense.weight", o_w, TD, TD, LIN);
    TL("attention.output.dense.bias", o_b, TD, 0, 0);
    TL("attention.output.LayerNorm.weight", ln1_g, TD, 0, 0);
    TL("attention.output.LayerNorm.bias", ln1_b, TD, 0, 0);
    TL("intermediate.dense.weight", fc1_w, TF, TD, LIN);
    TL("intermediate.dense.bias", fc1_b, TF, 0, 0);
    TL("output.dense.weight", fc2_w, TD, TF, LIN);
    TL("output.dense.bias", fc2_b, TD, 0, 0);
    TL("output.LayerNorm.weight", ln2_g, TD, 0, 0);
    TL("output.LayerNorm.bias", ln2_b, TD, 0, 0);
#undef TL
    add(&b, "pooler.dense.weight", T, OBJ_TOP, TOP(pool_w), 0, 0, TD, TD, 0, 0, LIN);
    add(&b, "pooler.dense.bias", T, OBJ_TOP, TOP(pool_b), 0, 0, TD, 0, 0, 0, 0);
    add(&b, "linear1.weight", "text_projection.", OBJ_TOP, TOP(tp1_w), 0, 0, PD, TD, 0, 0, LIN);
    add(&b, "linear1.bias", "text_projection.", OBJ_TOP, TOP(tp1_b), 0, 0, PD, 0, 0, 0, 0);
    add(&b, "linear2.weight", "text_projection.", OBJ_TOP, TOP(tp2_w), 0, 0, PD, PD, 0, 0, LIN);
    add(&b, "linear2.bias", "text_projection.", OBJ_TOP, TOP(tp2_b), 0, 0, PD, 0, 0, 0, 0);
    /* audio */
    const tsr_htsat_cfg *h = &c->au;
    bn_rows(&b, AE "batch_norm.", TOP(aw.mel_bn), MELS);
    add(&b, "patch_embed.proj.weight", AE, OBJ_TOP, TOP(aw.patch_w), 0, 0, C0, ONE, PATCH, PATCH,
        LIN);
    add(&b, "patch_embed.proj.bias", AE, OBJ_TOP, TOP(aw.patch_b), 0, 0, C0, 0, 0, 0, 0);
    if (h->patch_ln) {
        add(&b, "patch_embed.norm.weight", AE, OBJ_TOP, TOP(aw.pln_g), 0, 0, C0, 0, 0, 0, 0);
        add(&b, "patch_embed.norm.bias", AE, OBJ_TOP, TOP(aw.pln_b), 0, 0, C0, 0, 0, 0, 0);
    }
    if (h->fusion) {
        const char *F = AE "patch_embed.";
        add(&b, "mel_conv2d.weight", F, OBJ_TOP, TOP(aw.mel_w), 0, 0, C0, ONE, PATCH, PATCH3,
            LIN);
        add(&b, "mel_conv2d.bias", F, OBJ_TOP, TOP(aw.mel_b), 0, 0, C0, 0, 0, 0, 0);
        const char *L = AE "patch_embed.fusion_model.local_att.";
        const char *G = AE "patch_embed.fusion_model.global_att.";
        add(&b, "0.weight", L, OBJ_TOP, TOP(aw.la1_w), 0, 0, I0, C0, ONE, ONE, LIN);
        add(&b, "0.bias", L, OBJ_TOP, TOP(aw.la1_b), 0, 0, I0, 0, 0, 0, 0);
        char pfx[NAME_CAP];
        snprintf(pfx, sizeof pfx, "%s1.", L);
        bn_rows(&b, pfx, TOP(aw.la1_bn), I0);
        add(&b, "3.weight", L, OBJ_TOP, TOP(aw.la2_w), 0, 0, C0, I0, ONE, ONE, LIN);
        add(&b, "3.bias", L, OBJ_TOP, TOP(aw.la2_b), 0, 0, C0, 0, 0, 0, 0);
        snprintf(pfx, sizeof pfx, "%s4.", L);
        bn_rows(&b, pfx, TOP(aw.la2_bn), C0);
        add(&b, "1.weight", G, OBJ_TOP, TOP(aw.ga1_w), 0, 0, I0, C0, ONE, ONE, LIN);
        add(&b, "1.bias", G, OBJ_TOP, TOP(aw.ga1_b), 0, 0, I0, 0, 0, 0, 0);
        snprintf(pfx, sizeof pfx, "%s2.", G);
        bn_rows(&b, pfx, TOP(aw.ga1_bn), I0);
        add(&b, "4.weight", G, OBJ_TOP, TOP(aw.ga2_w), 0, 0, C0, I0, ONE, ONE, LIN);
        add(&b, "4.bias", G, OBJ_TOP, TOP(aw.ga2_b), 0, 0, C0, 0, 0, 0, 0);
        snprintf(pfx, sizeof pfx, "%s5.", G);
        bn_rows(&b, pfx, TOP(aw.ga2_bn), C0);
    }
    for (int s = 0; s < h->stages; s++) {
        char pfx[NAME_CAP];
        snprintf(pfx, sizeof pfx, AE "layers.%d.blocks.%%d.", s);
        int obj = OBJ_STAGE0 + s, D = DS + s, Fd = FS + s, H = HS + s;
#define SB(n, field, part, parts, d0, d1, fl) \
    add(&b, n, pfx, obj, BW(field), part, parts, d0, d1, 0, 0, fl)
        SB("layernorm_before.weight", ln1_g, 0, 0, D, 0, 0);
        SB("layernorm_before.bias", ln1_b, 0, 0, D, 0, 0);
        SB("attention.self.query.weight", qkv_w, 0, 3, D, D, LIN);
        SB("attention.self.key.weight", qkv_w, 1, 3, D, D, LIN);
        SB("attention.self.value.weight", qkv_w, 2, 3, D, D, LIN);
        SB("attention.self.query.bias", qkv_b, 0, 3, D, 0, 0);
        SB("attention.self.key.bias", qkv_b, 1, 3, D, 0, 0);
        SB("attention.self.value.bias", qkv_b, 2, 3, D, 0, 0);
        SB("attention.self.relative_position_bias_table", table, 0, 0, TBL, H, 0);
        SB("attention.output.dense.weight", o_w, 0, 0, D, D, LIN);
        SB("attention.output.dense.bias", o_b, 0, 0, D, 0, 0);
        SB("layernorm_after.weight", ln2_g, 0, 0, D, 0, 0);
        SB("layernorm_after.bias", ln2_b, 0, 0, D, 0, 0);
        SB("intermediate.dense.weight", fc1_w, 0, 0, Fd, D, LIN);
        SB("intermediate.dense.bias", fc1_b, 0, 0, Fd, 0, 0);
        SB("output.dense.weight", fc2_w, 0, 0, D, Fd, LIN);
        SB("output.dense.bias", fc2_b, 0, 0, D, 0, 0);
#undef SB
        if (s + 1 < h->stages) {
            snprintf(pfx, sizeof pfx, AE "layers.%d.downsample.", s);
            add(&b, "norm.weight", pfx, OBJ_TOP, TOP(aw.merge_g[s]), 0, 0, M4 + s, 0, 0, 0, 0);
            add(&b, "norm.bias", pfx, OBJ_TOP, TOP(aw.merge_b[s]), 0, 0, M4 + s, 0, 0, 0, 0);
            add(&b, "reduction.weight", pfx, OBJ_TOP, TOP(aw.merge_w[s]), 0, 0, M2 + s, M4 + s,
                0, 0, LIN);
        }
    }
    add(&b, "norm.weight", AE, OBJ_TOP, TOP(aw.fin_g), 0, 0, DL, 0, 0, 0, 0);
    add(&b, "norm.bias", AE, OBJ_TOP, TOP(aw.fin_b), 0, 0, DL, 0, 0, 0, 0);
    add(&b, "linear1.weight", "audio_projection.", OBJ_TOP, TOP(aw.p1_w), 0, 0, PD, DL, 0, 0, LIN);
    add(&b, "linear1.bias", "audio_projection.", OBJ_TOP, TOP(aw.p1_b), 0, 0, PD, 0, 0, 0, 0);
    add(&b, "linear2.weight", "audio_projection.", OBJ_TOP, TOP(aw.p2_w), 0, 0, PD, PD, 0, 0, LIN);
    add(&b, "linear2.bias", "audio_projection.", OBJ_TOP, TOP(aw.p2_b), 0, 0, PD, 0, 0, 0, 0);
    return b.n;
}

static tsr_status load_weights(tsr_model *m, const tsr_st *st, uint64_t *rng, tsr_error *err)
{
    clap_model *c = CLAP(m);
    int L = c->txt.enc.n_layers;
    if (!(c->tw.enc.layers = calloc((size_t)L + 1, sizeof *c->tw.enc.layers)))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int s = 0; s < c->au.stages; s++)
        if (!(c->aw.blocks[s] = calloc((size_t)c->au.depth[s] + 1, sizeof(tsr_swin_block_w))))
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    int n = build_table(c);
    if (n < 0)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_wtable t = {c->rows, n, {{c, 0, 1}, {c->tw.enc.layers, sizeof(tsr_enc_weights), L}}, "",
                    clap_dim, c};
    for (int s = 0; s < c->au.stages; s++)
        t.obj[OBJ_STAGE0 + s] =
            (tsr_wobj){c->aw.blocks[s], sizeof(tsr_swin_block_w), c->au.depth[s]};
    tsr_status rc = tsr_model_load_table(m, &t, st, rng, err);
    if (rc != TSR_OK || !st) {
        c->scale_a = c->scale_t = 1.0f / 0.07f;
        return rc;
    }
    static const char *names[2] = {"logit_scale_a", "logit_scale_t"};
    float *dst[2] = {&c->scale_a, &c->scale_t};
    for (int i = 0; i < 2 && rc == TSR_OK; i++) {
        const tsr_st_tensor *ls = tsr_st_find(st, names[i]);
        if (!ls || ls->numel != 1 || ls->ndim > 1)
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s: %s tensor '%s'", m->name,
                                 ls ? "a non-scalar" : "missing", names[i]);
        float v;
        rc = tsr_st_to_f32(ls, &v, err);
        *dst[i] = expf(v);
    }
    return rc;
}

static tsr_status load_tokenizer(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clap_model *c = CLAP(m);
    tsr_tok_files f;
    tsr_status rc = tsr_src_tokenizer(src, "tokenizer.json", NULL, 1, &f, err);
    TSR_TRY(rc, tsr_bytelevel_load_json(f.text[0], f.len[0], f.path[0], &c->tok, err));
    if (rc == TSR_OK)
        tsr_tok_files_free(&f);
    if (rc != TSR_OK)
        return rc;
    c->bos = tsr_bytelevel_id(c->tok, "<s>");
    c->eos = tsr_bytelevel_id(c->tok, "</s>");
    int pad = tsr_bytelevel_id(c->tok, "<pad>");
    if (c->bos < 0 || c->eos < 0)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: tokenizer.json has no <s> or </s> token (a RoBERTa tokenizer "
                             "has both)", f.path[0]);
    if (pad >= 0 && pad != c->pad)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: <pad> is token %d but text_config.pad_token_id is %d",
                             f.path[0], pad, c->pad);
    if (tsr_bytelevel_size(c->tok) > c->txt.vocab)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: the tokenizer has %d tokens but text_config.vocab_size is %d",
                             m->name, tsr_bytelevel_size(c->tok), c->txt.vocab);
    return TSR_OK;
}

static int clap_detect(const tsr_source *src, const cJSON *config)
{
    (void)src;
    return tsr_model_type_is(config, "clap");
}

static tsr_status clap_load(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    if (!(m->data = calloc(1, sizeof(clap_model))))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_st *st = NULL;
    tsr_status rc = parse_config(m, src, err);
    TSR_TRY(rc, parse_fe(m, src, err));
    TSR_TRY(rc, load_tokenizer(m, src, err));
    TSR_TRY(rc, tsr_st_open_source(src, &st, err));
    TSR_TRY(rc, load_weights(m, st, NULL, err));
    tsr_st_close(st);
    return rc;
}

static void clap_free(tsr_model *m)
{
    clap_model *c = CLAP(m);
    if (!c)
        return;
    tsr_bytelevel_free(c->tok);
    tsr_clapfe_free(c->fe);
    free(c->tw.enc.layers);
    for (int s = 0; s < TSR_HTSAT_MAX_STAGES; s++)
        free(c->aw.blocks[s]);
    free(c->names);
    free(c->rows);
    free(c);
    m->data = NULL;
}

static void clap_session_free(tsr_session *s)
{
    clap_session *cs = s->data;
    tsr_textenc_io_free(&cs->tio);
}

static int clap_embed_dim(const tsr_model *m) { return CLAP(m)->P; }
static int clap_max_text_len(const tsr_model *m)
{
    return CLAP(m)->txt.max_pos - CLAP(m)->txt.pos0;
}

/* ---- sessions ---- */

static tsr_status clap_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    clap_model *c = CLAP(s->m);
    clap_session *cs = s->data;
    tsr_status rc = TSR_OK;
    int D = c->txt.enc.layer.dim, P = c->P, B = cs->want_tb;
    if (B > 0) {
        rc = tsr_textenc_plan(s->q, &c->txt, B, cs->want_ts, &s->arena, &cs->tio, scratch, err);
        TSR_TRY(rc, tsr_linear_plan(s->q, B, D, D, err));
        TSR_TRY(rc, tsr_linear_plan(s->q, B, P, D, err));
        TSR_TRY(rc, tsr_linear_plan(s->q, B, P, P, err));
        tsr_arena_reserve(&s->arena, &cs->t0, sizeof(float) * (size_t)B * D);
        tsr_arena_reserve(&s->arena, &cs->t1, sizeof(float) * (size_t)B * P);
        tsr_arena_reserve(&s->arena, &cs->tout, sizeof(float) * (size_t)B * P);
    }
    if (rc == TSR_OK && cs->want_ab > 0)
        rc = tsr_htsat_plan(s->q, &c->au, cs->want_ab, &s->arena, &cs->aio, err);
    return rc;
}

/* Plans for text batches of tb x ts tokens and audio batches of ab clips
 * (each only grows; 0 keeps what was asked before). */
static tsr_status clap_ready(tsr_session *s, int tb, int ts, int ab, tsr_error *err)
{
    clap_session *cs = tsr_session_data(s, sizeof *cs, err);
    if (!cs)
        return TSR_ERR_NOMEM;
    cs->want_tb = tb > cs->want_tb ? tb : cs->want_tb;
    cs->want_ts = ts > cs->want_ts ? ts : cs->want_ts;
    cs->want_ab = ab > cs->want_ab ? ab : cs->want_ab;
    if (cs->plan_tb == cs->want_tb && cs->plan_ts == cs->want_ts && cs->plan_ab == cs->want_ab)
        return TSR_OK;
    tsr_status rc = tsr_session_plan(s, clap_plan, err);
    if (rc == TSR_OK && cs->want_ab > 0)
        rc = tsr_htsat_upload_tables(s->q, &CLAP(s->m)->au, &cs->aio, err);
    if (rc == TSR_OK) {
        cs->plan_tb = cs->want_tb, cs->plan_ts = cs->want_ts, cs->plan_ab = cs->want_ab;
    } else {
        tsr_arena_release(&s->arena);
        cs->plan_tb = cs->plan_ts = cs->plan_ab = cs->want_tb = cs->want_ts = cs->want_ab = 0;
    }
    return rc;
}

/* ---- text ---- */

static tsr_status clap_embed_texts(tsr_session *s, const char *const *texts, int n, int normalize,
                                   float *out, int *n_truncated, tsr_error *err)
{
    clap_model *c = CLAP(s->m);
    (void)normalize; /* CLAP's text features are always normalised */
    if (!c->tok)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s has no tokenizer", s->m->name);
    int L = clap_max_text_len(s->m), P = c->P, D = c->txt.enc.layer.dim;
    int NB = s->p.text_batch > 0 ? s->p.text_batch : 32;
    if (n <= 0)
        return TSR_OK;
    int *all = malloc(sizeof(int) * (size_t)L * n), *lens = malloc(sizeof(int) * (size_t)n);
    int *ids = malloc(sizeof(int) * (size_t)L * NB);
    tsr_status rc =
        all && lens && ids ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    int longest = 1;
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        int cut = 0;
        rc = tsr_roberta_encode(c->tok, texts[i], L, all + (size_t)i * L, &lens[i], &cut, err);
        if (rc != TSR_OK)
            tsr_error_prefix(err, "text %d", i + 1);
        if (cut && n_truncated)
            (*n_truncated)++;
        if (rc == TSR_OK && lens[i] > longest)
            longest = lens[i];
    }
    if (rc == TSR_OK)
        rc = clap_ready(s, n < NB ? n : NB, longest, 0, err);
    clap_session *cs = s->data;
    for (int k0 = 0; k0 < n && rc == TSR_OK; k0 += NB) {
        int nb = n - k0 < NB ? n - k0 : NB, S = 1;
        for (int i = 0; i < nb; i++)
            S = lens[k0 + i] > S ? lens[k0 + i] : S;
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < S; j++)
                ids[(size_t)i * S + j] = j < lens[k0 + i] ? all[(size_t)(k0 + i) * L + j] : c->pad;
        rc = tsr_textenc_forward(s->q, &c->txt, &c->tw, &cs->tio, &s->scratch, ids, lens + k0, nb,
                                 S, 0, NULL, err);
        TSR_TRY(rc, tsr_linear(s->q, cs->tio.enc.pooled, nb, D, c->pool_w, c->pool_b, D, cs->t0,
                               TSR_ACT_TANH, err));
        TSR_TRY(rc, tsr_linear(s->q, cs->t0, nb, D, c->tp1_w, c->tp1_b, P, cs->t1, c->tproj_act,
                               err));
        TSR_TRY(rc, tsr_linear(s->q, cs->t1, nb, P, c->tp2_w, c->tp2_b, P, cs->tout,
                               TSR_ACT_NONE, err));
        TSR_TRY(rc, tsr_k_l2norm(s->q, cs->tout, nb, P, err));
        TSR_TRY(rc, tsr_buf_read(s->q, cs->tout, out + (size_t)k0 * P,
                                 sizeof(float) * (size_t)nb * P, err));
        if (rc != TSR_OK)
            tsr_queue_finish(s->q, NULL);
    }
    free(all);
    free(lens);
    free(ids);
    return rc;
}

/* ---- audio ---- */

int tsr_model_audio_rate(const tsr_model *m)
{
    return m && m->fam == &tsr_family_clap ? tsr_clapfe_config(CLAP(m)->fe)->rate : 0;
}

int tsr_model_audio_fused(const tsr_model *m)
{
    return m && m->fam == &tsr_family_clap ? CLAP(m)->au.fusion : 0;
}

float tsr_clap_logit_scale(const tsr_model *m) { return CLAP(m)->scale_a; }

const tsr_bytelevel *tsr_clap_tokenizer(const tsr_model *m)
{
    return m->fam == &tsr_family_clap ? CLAP(m)->tok : NULL;
}

int tsr_model_audio_feature_shape(const tsr_model *m, int *channels, int *frames, int *mels)
{
    if (!m || m->fam != &tsr_family_clap)
        return 0;
    const clap_model *c = CLAP(m);
    *channels = c->au.in_ch, *frames = c->au.frames, *mels = c->au.n_mels;
    return 1;
}

tsr_status tsr_session_embed_audio_features(tsr_session *s, const float *feats, int B, float *out,
                                            tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = tsr_session_need(s, &tsr_family_clap, "embedding audio", err);
    if (rc == TSR_OK && (B < 1 || !feats || !out))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "no features or no output given");
    int NB = s->p.text_batch > 0 && s->p.text_batch < 8 ? s->p.text_batch : 8;
    TSR_TRY(rc, clap_ready(s, 0, 0, B < NB ? B : NB, err));
    clap_model *c = rc == TSR_OK ? CLAP(s->m) : NULL;
    size_t per = c ? (size_t)c->au.in_ch * c->au.frames * c->au.n_mels : 0;
    for (int k = 0; k < B && rc == TSR_OK; k += NB) {
        int nb = B - k < NB ? B - k : NB;
        rc = tsr_htsat_forward(s->q, &c->au, &c->aw, &((clap_session *)s->data)->aio,
                               feats + per * k, nb, out + (size_t)k * c->P, err);
    }
    return rc == TSR_OK ? rc : tsr_session_fail(s, rc, err);
}

/* The reference's features of the windows a mode cuts from pcm: *feats
 * malloc'd (n_win, Cin, T, F). */
static tsr_status window_features(const clap_model *c, const float *pcm, size_t n,
                                  tsr_audio_window mode, float **feats, int *n_win,
                                  tsr_error *err)
{
    size_t L = (size_t)tsr_clapfe_config(c->fe)->max_samples;
    size_t per = (size_t)c->au.in_ch * c->au.frames * c->au.n_mels;
    size_t k = mode == TSR_AUDIO_WINDOW_MEAN && n > L ? (n + L - 1) / L : 1;
    if (k > 100000)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "%zu windows of audio", k);
    *feats = malloc(sizeof(float) * per * k);
    *n_win = (int)k;
    if (!*feats)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_status rc = TSR_OK;
    if (mode == TSR_AUDIO_WINDOW_FUSION) {
        int longer;
        rc = tsr_clapfe_fusion(c->fe, pcm, n, *feats, &longer, err);
    } else
        for (size_t i = 0; i < k && rc == TSR_OK; i++) {
            /* windows at i*L, the last one ending at the clip's end */
            size_t start = i + 1 < k || mode == TSR_AUDIO_WINDOW_FIRST ? i * L : (n > L ? n - L : 0);
            size_t len = n - start < L ? n - start : L;
            rc = tsr_clapfe_window(c->fe, pcm + start, len, *feats + per * i, err);
        }
    if (rc != TSR_OK) {
        free(*feats);
        *feats = NULL;
    }
    return rc;
}

tsr_status tsr_model_audio_features(const tsr_model *m, const float *pcm, size_t n,
                                    tsr_audio_window mode, float **feats, int *n_windows,
                                    tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *feats = NULL;
    *n_windows = 0;
    if (!m || m->fam != &tsr_family_clap)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: not an audio-text (CLAP) model",
                             m ? m->name : "(no model)");
    if (!pcm || n < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio samples");
    if (mode == TSR_AUDIO_WINDOW_FUSION && !CLAP(m)->au.fusion)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: the fusion window needs a fused checkpoint (enable_fusion); use "
                             "the mean or first window", m->name);
    return window_features(CLAP(m), pcm, n, mode, feats, n_windows, err);
}

tsr_status tsr_session_audio_features(tsr_session *s, const float *pcm, size_t n,
                                      tsr_audio_window mode, float **feats, int *n_windows,
                                      tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = tsr_model_audio_features(s->m, pcm, n, mode, feats, n_windows, err);
    return rc == TSR_OK ? rc : tsr_session_fail(s, rc, err);
}

tsr_status tsr_session_embed_audio_windows(tsr_session *s, const float *feats, int n_windows,
                                           float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = tsr_session_need(s, &tsr_family_clap, "embedding audio", err);
    int P = rc == TSR_OK ? CLAP(s->m)->P : 0;
    float *e = rc == TSR_OK && n_windows > 0 ? malloc(sizeof(float) * (size_t)n_windows * P) : NULL;
    if (rc == TSR_OK && !e)
        rc = n_windows > 0 ? tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory")
                           : tsr_error_set(err, TSR_ERR_INVALID_ARG, "no windows");
    TSR_TRY(rc, tsr_session_embed_audio_features(s, feats, n_windows, e, err));
    if (rc == TSR_OK) { /* the mean of the windows' normalised embeddings, normalised */
        for (int j = 0; j < P; j++) {
            double acc = 0;
            for (int i = 0; i < n_windows; i++)
                acc += e[(size_t)i * P + j];
            out[j] = (float)acc;
        }
        if (n_windows > 1)
            tsr_l2_normalize(out, P);
    }
    free(e);
    return rc == TSR_OK ? rc : tsr_session_fail(s, rc, err);
}

tsr_status tsr_session_embed_audio_pcm(tsr_session *s, const float *pcm, size_t n,
                                       tsr_audio_window mode, float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    float *feats = NULL;
    int k = 0;
    tsr_status rc = tsr_session_audio_features(s, pcm, n, mode, &feats, &k, err);
    TSR_TRY(rc, tsr_session_embed_audio_windows(s, feats, k, out, err));
    free(feats);
    return rc;
}

tsr_status tsr_session_embed_audio_file(tsr_session *s, const char *path, tsr_audio_window mode,
                                        float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = tsr_session_need(s, &tsr_family_clap, "embedding audio", err);
    float *pcm = NULL;
    size_t n = 0;
    TSR_TRY(rc, tsr_audio_load_file(path, tsr_model_audio_rate(s->m), &pcm, &n, err));
    TSR_TRY(rc, tsr_session_embed_audio_pcm(s, pcm, n, mode, out, err));
    if (rc != TSR_OK && pcm)
        tsr_error_prefix(err, "%s", path);
    free(pcm);
    return rc == TSR_OK ? rc : tsr_session_fail(s, rc, err);
}

/* ---- random full-size models (benchmarks) ---- */

tsr_status tsr_clap_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out, tsr_error *err)
{
    *out = NULL;
    if (strcmp(arch, "clap-htsat") != 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "unknown architecture '%s'", arch);
    tsr_model *m = calloc(1, sizeof *m);
    clap_model *c = calloc(1, sizeof *c);
    if (!m || !c) {
        free(m), free(c);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    m->ctx = tsr_ctx_retain(ctx);
    m->fam = &tsr_family_clap;
    m->data = c;
    tsr_arena_init(&m->weights, ctx);
    snprintf(m->name, sizeof m->name, "(random %s)", arch);
    tsr_sha256_hex(m->name, strlen(m->name), m->fingerprint);
    /* transformers' ClapConfig() defaults: laion/clap-htsat-unfused's sizes */
    cJSON *empty = cJSON_CreateObject();
    c->P = 512;
    tsr_status rc = parse_text(c, empty, m->name, c->P, err);
    TSR_TRY(rc, parse_audio(c, empty, m->name, c->P, err));
    cJSON_Delete(empty);
    tsr_clapfe_cfg f = tsr_clapfe_default_cfg();
    f.truncation = TSR_CLAP_TRUNC_RAND;
    f.fmin = 50;
    TSR_TRY(rc, tsr_clapfe_new(&f, &c->fe, err));
    if (rc == TSR_OK) {
        c->au.frames = tsr_clapfe_window_frames(c->fe);
        c->au.in_ch = tsr_clapfe_channels(c->fe);
        rc = tsr_htsat_check(&c->au, m->name, err);
    }
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    TSR_TRY(rc, load_weights(m, NULL, &rng, err));
    if (rc != TSR_OK) {
        tsr_model_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

const tsr_family tsr_family_clap = {"clap",          clap_detect,       clap_load,
                                    clap_free,       clap_session_free, clap_embed_dim,
                                    clap_max_text_len, clap_embed_texts};
