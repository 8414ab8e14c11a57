/* sentence-transformers BERT models (all-MiniLM-L6-v2 and the like): the HF
 * BertModel config and tensor table, modules.json and the pooling config,
 * the text tower with BERT's options, and pooling as SentenceTransformer
 * does it. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cfg.h"
#include "tsr_model.h"
#include "tsr_st.h"
#include "tsr_textenc.h"
#include "tsr_wtable.h"

enum { POOL_MEAN, POOL_CLS, POOL_MAX, POOL_MEAN_SQRT };

typedef struct {
    tsr_textenc_cfg txt;
    tsr_textenc_w w;
    tsr_wordpiece *tok;
    int max_seq;   /* sentence_bert_config.json's max_seq_length */
    int pooling;
    int normalize; /* a Normalize module follows the pooling */
} bert_model;

typedef struct {
    int want_b, want_s, plan_b, plan_s;
    tsr_textenc_io io;
} bert_session;

#define BERT(m) ((bert_model *)(m)->data)

static tsr_status parse_config(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    bert_model *b = BERT(m);
    char path[4200];
    tsr_src_path(src, "config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "config.json", 1 << 20, err);
    if (!root)
        return err->code;
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    tsr_status rc = TSR_OK;
    if (cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute") != 0)
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: position_embedding_type \"%s\" is not supported", path,
                           pe->valuestring);
    tsr_cfg_reader r = {root, path, "config", err, rc != TSR_OK};
    tsr_textenc_cfg *c = &b->txt;
    c->vocab = tsr_cfg_int(&r, "vocab_size", 30522, 1, 1 << 22);
    c->max_pos = tsr_cfg_int(&r, "max_position_embeddings", 512, 1, 1 << 16);
    int dim = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    int heads = tsr_cfg_int(&r, "num_attention_heads", 12, 1, 1024);
    int ffn = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    int layers = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    c->type_vocab = tsr_cfg_int(&r, "type_vocab_size", 2, 1, 1 << 16);
    float eps = tsr_cfg_float(&r, "layer_norm_eps", 1e-12f);
    tsr_act act = tsr_cfg_act(&r, "gelu");
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    c->eos_id = -1;
    /* embedding layernorm, post-layernorm layers with key-length masks, every
     * hidden state out */
    c->enc = (tsr_encoder_cfg){{dim, heads, ffn, eps, act, 0, 1}, layers, 1, TSR_LN_NONE, 0, 0, 1};
    rc = tsr_enc_cfg_check(&c->enc.layer, path, err);
    /* sentence_bert_config.json: the sequence length sentence-transformers uses */
    b->max_seq = c->max_pos;
    if (rc == TSR_OK && tsr_src_exists(src, "sentence_bert_config.json")) {
        tsr_src_path(src, "sentence_bert_config.json", path, sizeof path);
        if (!(root = tsr_src_json(src, "sentence_bert_config.json", 1 << 20, err)))
            return err->code;
        tsr_cfg_reader s = {root, path, "sentence_bert_config", err, 0};
        b->max_seq = tsr_cfg_int(&s, "max_seq_length", c->max_pos, 2, c->max_pos);
        cJSON_Delete(root);
        if (s.bad)
            return err->code;
    }
    return rc;
}

/* modules.json: which Pooling config, and whether a Normalize module follows.
 * Without modules.json: mean pooling, no normalisation (sentence-transformers'
 * default for a plain transformers model). */
static tsr_status parse_modules(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    bert_model *b = BERT(m);
    char path[4200], pool_name[4096] = "", pool_path[4200];
    b->pooling = POOL_MEAN;
    if (!tsr_src_exists(src, "modules.json"))
        return TSR_OK;
    tsr_src_path(src, "modules.json", path, sizeof path);
    char *text = tsr_src_read(src, "modules.json", 1 << 20, NULL, err);
    if (!text)
        return err->code;
    cJSON *root = cJSON_Parse(text);
    free(text);
    tsr_status rc = TSR_OK;
    if (!cJSON_IsArray(root))
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: not a JSON array of modules", path);
    const cJSON *mod;
    cJSON_ArrayForEach(mod, root)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(mod, "type");
        const cJSON *mp = cJSON_GetObjectItemCaseSensitive(mod, "path");
        if (rc != TSR_OK || !cJSON_IsString(type))
            continue;
        const char *t = type->valuestring;
        if (strcmp(t, "sentence_transformers.models.Transformer") == 0)
            continue;
        if (strcmp(t, "sentence_transformers.models.Normalize") == 0)
            b->normalize = 1;
        else if (strcmp(t, "sentence_transformers.models.Pooling") == 0 && cJSON_IsString(mp) &&
                 !strstr(mp->valuestring, ".."))
            snprintf(pool_name, sizeof pool_name, "%s/config.json", mp->valuestring);
        else
            rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: module \"%s\" is not supported",
                               path, t);
    }
    cJSON_Delete(root);
    if (rc != TSR_OK || !pool_name[0])
        return rc;
    tsr_src_path(src, pool_name, pool_path, sizeof pool_path);
    if (!(root = tsr_src_json(src, pool_name, 1 << 20, err)))
        return err->code;
    static const char *modes[4] = {"pooling_mode_mean_tokens", "pooling_mode_cls_token",
                                   "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"};
    int n_on = 0;
    for (int i = 0; i < 4; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, modes[i]))) {
            b->pooling = i;
            n_on++;
        }
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(root, "word_embedding_dimension");
    if (n_on != 1)
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: exactly one pooling mode (mean, cls, max, mean_sqrt_len) must be "
                           "on; %d are",
                           pool_path, n_on);
    else if (cJSON_IsNumber(dim) && (int)dim->valuedouble != b->txt.enc.layer.dim)
        rc = tsr_error_set(err, TSR_ERR_SHAPE,
                           "%s: word_embedding_dimension %d does not match hidden_size %d",
                           pool_path, (int)dim->valuedouble, b->txt.enc.layer.dim);
    cJSON_Delete(root);
    return rc;
}

/* ---- the HF BertModel tensor table ---- */

enum { OBJ_TXT, OBJ_LAYER };
enum { D = 1, F, V, POS, TYPES };

static int64_t bert_dim(const void *cfg, int code)
{
    const tsr_textenc_cfg *c = cfg;
    switch (code) {
    case D: return c->enc.layer.dim;
    case F: return c->enc.layer.ffn;
    case V: return c->vocab;
    case POS: return c->max_pos;
    case TYPES: return c->type_vocab;
    }
    return -1;
}

#define LW(f) offsetof(tsr_enc_weights, f)
#define TW(f) offsetof(tsr_textenc_w, f)
#define LIN TSR_W_LINEAR
#define L(n) "encoder.layer.%d." n
static const tsr_wrow bert_table[] = {
    {"embeddings.word_embeddings.weight", NULL, OBJ_TXT, TW(tok), 0, 0, {V, D}, 0},
    {"embeddings.position_embeddings.weight", NULL, OBJ_TXT, TW(pos), 0, 0, {POS, D}, 0},
    {"embeddings.token_type_embeddings.weight", NULL, OBJ_TXT, TW(type0), 0, 0, {TYPES, D}, TSR_W_ROW0},
    {"embeddings.LayerNorm.weight", NULL, OBJ_TXT, TW(enc.pre_g), 0, 0, {D}, 0},
    {"embeddings.LayerNorm.bias", NULL, OBJ_TXT, TW(enc.pre_b), 0, 0, {D}, 0},
    {L("attention.self.query.weight"), NULL, OBJ_LAYER, LW(qkv_w), 0, 3, {D, D}, LIN},
    {L("attention.self.key.weight"), NULL, OBJ_LAYER, LW(qkv_w), 1, 3, {D, D}, LIN},
    {L("attention.self.value.weight"), NULL, OBJ_LAYER, LW(qkv_w), 2, 3, {D, D}, LIN},
    {L("attention.self.query.bias"), NULL, OBJ_LAYER, LW(qkv_b), 0, 3, {D}, 0},
    {L("attention.self.key.bias"), NULL, OBJ_LAYER, LW(qkv_b), 1, 3, {D}, 0},
    {L("attention.self.value.bias"), NULL, OBJ_LAYER, LW(qkv_b), 2, 3, {D}, 0},
    {L("attention.output.dense.weight"), NULL, OBJ_LAYER, LW(o_w), 0, 0, {D, D}, LIN},
    {L("attention.output.dense.bias"), NULL, OBJ_LAYER, LW(o_b), 0, 0, {D}, 0},
    {L("attention.output.LayerNorm.weight"), NULL, OBJ_LAYER, LW(ln1_g), 0, 0, {D}, 0},
    {L("attention.output.LayerNorm.bias"), NULL, OBJ_LAYER, LW(ln1_b), 0, 0, {D}, 0},
    {L("intermediate.dense.weight"), NULL, OBJ_LAYER, LW(fc1_w), 0, 0, {F, D}, LIN},
    {L("intermediate.dense.bias"), NULL, OBJ_LAYER, LW(fc1_b), 0, 0, {F}, 0},
    {L("output.dense.weight"), NULL, OBJ_LAYER, LW(fc2_w), 0, 0, {D, F}, LIN},
    {L("output.dense.bias"), NULL, OBJ_LAYER, LW(fc2_b), 0, 0, {D}, 0},
    {L("output.LayerNorm.weight"), NULL, OBJ_LAYER, LW(ln2_g), 0, 0, {D}, 0},
    {L("output.LayerNorm.bias"), NULL, OBJ_LAYER, LW(ln2_b), 0, 0, {D}, 0},
};

static tsr_status load_weights(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    bert_model *b = BERT(m);
    int layers = b->txt.enc.n_layers;
    if (!(b->w.enc.layers = calloc((size_t)layers + 1, sizeof *b->w.enc.layers)))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    /* BertModel saves its tensors bare; BertForMaskedLM and others under "bert." */
    const char *prefix = !tsr_st_find(st, "embeddings.word_embeddings.weight") &&
                                 tsr_st_find(st, "bert.embeddings.word_embeddings.weight")
                             ? "bert."
                             : "";
    tsr_wtable t = {bert_table,
                    (int)(sizeof bert_table / sizeof bert_table[0]),
                    {{&b->w, 0, 1}, {b->w.enc.layers, sizeof(tsr_enc_weights), layers}},
                    prefix,
                    bert_dim,
                    &b->txt};
    return tsr_model_load_table(m, &t, st, NULL, err);
}

static int bert_detect(const tsr_source *src, const cJSON *config)
{
    return tsr_model_type_is(config, "bert");
}

static tsr_status bert_load(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    if (!(m->data = calloc(1, sizeof(bert_model))))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    bert_model *b = BERT(m);
    tsr_st *st = NULL;
    tsr_status rc = parse_config(m, src, err);
    TSR_TRY(rc, parse_modules(m, src, err));
    TSR_TRY(rc, tsr_src_wordpiece(src, &b->tok, err));
    if (rc == TSR_OK && tsr_wordpiece_vocab_size(b->tok) > b->txt.vocab)
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: the tokenizer has %d tokens but the model's vocab_size is %d",
                           m->name, tsr_wordpiece_vocab_size(b->tok), b->txt.vocab);
    TSR_TRY(rc, tsr_st_open_source(src, &st, err));
    TSR_TRY(rc, load_weights(m, st, err));
    tsr_st_close(st);
    return rc;
}

static void bert_free(tsr_model *m)
{
    bert_model *b = BERT(m);
    tsr_wordpiece_free(b->tok);
    free(b->w.enc.layers);
    free(b);
    m->data = NULL;
}

static void bert_session_free(tsr_session *s)
{
    bert_session *bs = s->data;
    tsr_textenc_io_free(&bs->io);
}


static int bert_embed_dim(const tsr_model *m) { return BERT(m)->txt.enc.layer.dim; }
static int bert_max_text_len(const tsr_model *m) { return BERT(m)->max_seq; }

const tsr_wordpiece *tsr_model_wordpiece(const tsr_model *m)
{
    return m->fam == &tsr_family_bert ? BERT(m)->tok : NULL;
}

/* ---- embedding ---- */

static void pool(const bert_model *b, const float *h, int len, int normalize, float *out)
{
    int D = b->txt.enc.layer.dim;
    if (b->pooling == POOL_CLS) {
        memcpy(out, h, sizeof(float) * (size_t)D);
    } else if (b->pooling == POOL_MAX) {
        for (int d = 0; d < D; d++) {
            float mx = h[d];
            for (int i = 1; i < len; i++)
                mx = fmaxf(mx, h[(size_t)i * D + d]);
            out[d] = mx;
        }
    } else {
        float div = b->pooling == POOL_MEAN ? (float)len : sqrtf((float)len);
        for (int d = 0; d < D; d++) {
            float s = 0;
            for (int i = 0; i < len; i++)
                s += h[(size_t)i * D + d];
            out[d] = s / div;
        }
    }
    if (b->normalize || normalize)
        tsr_l2_normalize(out, D);
}

static tsr_status bert_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    bert_session *bs = s->data;
    bs->plan_b = bs->plan_s = 0;
    return tsr_textenc_plan(s->q, &BERT(s->m)->txt, bs->want_b, bs->want_s, &s->arena, &bs->io,
                            scratch, err);
}

/* Plans the session for batches of B texts of up to S tokens (growing only). */
static tsr_status bert_ready(tsr_session *s, int B, int S, tsr_error *err)
{
    bert_session *bs = tsr_session_data(s, sizeof *bs, err);
    if (!bs)
        return TSR_ERR_NOMEM;
    bs->want_b = B > bs->want_b ? B : bs->want_b;
    bs->want_s = S > bs->want_s ? S : bs->want_s;
    if (bs->plan_b == bs->want_b && bs->plan_s == bs->want_s)
        return TSR_OK;
    tsr_status rc = tsr_session_plan(s, bert_plan, err);
    if (rc == TSR_OK) {
        bs->plan_b = bs->want_b;
        bs->plan_s = bs->want_s;
    } else {
        /* nothing is planned now: a later, smaller call plans afresh */
        bs->plan_b = bs->plan_s = bs->want_b = bs->want_s = 0;
    }
    return rc;
}

typedef struct {
    int len, index;
} len_index;

/* Longest first; ties keep the input order (qsort is not stable). */
static int by_len_desc(const void *a, const void *b)
{
    const len_index *x = a, *y = b;
    if (x->len != y->len)
        return y->len - x->len;
    return x->index - y->index;
}

static tsr_status bert_embed_texts(tsr_session *s, const char *const *texts, int n, int normalize,
                                float *out, int *n_truncated, tsr_error *err)
{
    bert_model *b = BERT(s->m);
    int L = b->max_seq, D = b->txt.enc.layer.dim;
    int NB = s->p.text_batch > 0 ? s->p.text_batch : 32;
    if (n <= 0)
        return TSR_OK;
    int *all = malloc(sizeof(int) * (size_t)L * n), *lens = malloc(sizeof(int) * (size_t)n);
    len_index *order = malloc(sizeof *order * (size_t)n);
    int *ids = malloc(sizeof(int) * (size_t)L * NB);
    float *hidden = malloc(sizeof(float) * (size_t)L * D * NB);
    tsr_status rc = all && lens && order && ids && hidden
                        ? TSR_OK
                        : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        int cut = 0;
        rc = tsr_wordpiece_encode(b->tok, texts[i], L, all + (size_t)i * L, &lens[i], &cut, err);
        if (rc != TSR_OK)
            tsr_error_prefix(err, "text %d", i + 1);
        if (cut && n_truncated)
            (*n_truncated)++;
        order[i] = (len_index){lens[i], i};
    }
    if (rc == TSR_OK) { /* longest first, so that each batch pads little */
        qsort(order, (size_t)n, sizeof *order, by_len_desc);
        rc = bert_ready(s, n < NB ? n : NB, order[0].len, err);
    }
    for (int k0 = 0; k0 < n && rc == TSR_OK; k0 += NB) {
        int nb = n - k0 < NB ? n - k0 : NB, S = order[k0].len;
        int blens[4096];
        for (int i = 0; i < nb; i++) {
            int k = order[k0 + i].index;
            blens[i] = lens[k];
            for (int j = 0; j < S; j++)
                ids[(size_t)i * S + j] =
                    j < lens[k] ? all[(size_t)k * L + j] : tsr_wordpiece_pad(b->tok);
        }
        rc = tsr_textenc_forward(s->q, &b->txt, &b->w, &((bert_session *)s->data)->io,
                                 &s->scratch, ids, blens, nb, S, 0, hidden, err);
        for (int i = 0; i < nb && rc == TSR_OK; i++)
            pool(b, hidden + (size_t)i * S * D, blens[i], normalize,
                 out + (size_t)order[k0 + i].index * D);
    }
    free(all);
    free(lens);
    free(order);
    free(ids);
    free(hidden);
    return rc;
}

const tsr_family tsr_family_bert = {"bert",         bert_detect,       bert_load,
                                    bert_free,      bert_session_free, bert_embed_dim,
                                    bert_max_text_len, bert_embed_texts};
