/* sentence-transformers BERT models (all-MiniLM-L6-v2 and the like): the HF
 * BertModel directory, modules.json, the pooling config, and embedding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr_bert.h"
#include "tsr_cfg.h"
#include "tsr_fusion.h"
#include "tsr_st.h"

#define SENTENCE_BATCH 32

enum { POOL_MEAN, POOL_CLS, POOL_MAX, POOL_MEAN_SQRT };

struct tsr_sentence_model {
    tsr_ctx *ctx;
    char dir[2048];
    tsr_bert bert;
    tsr_wordpiece *tok;
    int max_seq;
    int pooling;
    int normalize;
};

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static tsr_status parse_config(tsr_sentence_model *m, tsr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", m->dir);
    cJSON *root = tsr_read_json(path, 1 << 20, err);
    if (!root)
        return err ? err->code : TSR_ERR_FORMAT;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    tsr_status rc = TSR_OK;
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "bert") != 0)
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: model_type \"%s\" is not supported (expected \"bert\")", path,
                           cJSON_IsString(mt) ? mt->valuestring : "(missing)");
    else if (cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute") != 0)
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: position_embedding_type \"%s\" is not supported", path,
                           pe->valuestring);
    tsr_cfg_reader r = {root, path, "config", err, rc != TSR_OK};
    tsr_bert_cfg *c = &m->bert.cfg;
    c->vocab = tsr_cfg_int(&r, "vocab_size", 30522, 1, 1 << 22);
    c->max_pos = tsr_cfg_int(&r, "max_position_embeddings", 512, 1, 1 << 16);
    c->dim = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    c->heads = tsr_cfg_int(&r, "num_attention_heads", 12, 1, 1024);
    c->ffn = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    c->layers = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    tsr_cfg_int(&r, "type_vocab_size", 2, 1, 1 << 16);
    c->eps = tsr_cfg_float(&r, "layer_norm_eps", 1e-12f);
    c->act = tsr_cfg_act(&r, "gelu");
    cJSON_Delete(root);
    if (r.bad)
        return err ? err->code : TSR_ERR_FORMAT;
    if (c->dim % c->heads)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: hidden_size must be a multiple of num_attention_heads", path);
    /* sentence_bert_config.json: the sequence length sentence-transformers uses */
    m->max_seq = c->max_pos;
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", m->dir);
    if (exists(path)) {
        if (!(root = tsr_read_json(path, 1 << 20, err)))
            return err ? err->code : TSR_ERR_FORMAT;
        tsr_cfg_reader s = {root, path, "sentence_bert_config", err, 0};
        m->max_seq = tsr_cfg_int(&s, "max_seq_length", c->max_pos, 2, c->max_pos);
        cJSON_Delete(root);
        if (s.bad)
            return err ? err->code : TSR_ERR_FORMAT;
    }
    return TSR_OK;
}

/* modules.json: which Pooling config, and whether a Normalize module follows.
 * Without modules.json: mean pooling, no normalisation (sentence-transformers'
 * default for a plain transformers model). */
static tsr_status parse_modules(tsr_sentence_model *m, tsr_error *err)
{
    char path[4096], pool_path[4096] = "";
    m->pooling = POOL_MEAN;
    snprintf(path, sizeof path, "%s/modules.json", m->dir);
    if (!exists(path))
        return TSR_OK;
    char *text = tsr_read_small(path, 1 << 20, err);
    if (!text)
        return err ? err->code : TSR_ERR_IO;
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
            m->normalize = 1;
        else if (strcmp(t, "sentence_transformers.models.Pooling") == 0 && cJSON_IsString(mp) &&
                 !strstr(mp->valuestring, ".."))
            snprintf(pool_path, sizeof pool_path, "%s/%s/config.json", m->dir, mp->valuestring);
        else
            rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: module \"%s\" is not supported",
                               path, t);
    }
    cJSON_Delete(root);
    if (rc != TSR_OK || !pool_path[0])
        return rc;
    if (!(root = tsr_read_json(pool_path, 1 << 20, err)))
        return err ? err->code : TSR_ERR_FORMAT;
    static const char *modes[4] = {"pooling_mode_mean_tokens", "pooling_mode_cls_token",
                                   "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"};
    int n_on = 0;
    for (int i = 0; i < 4; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, modes[i]))) {
            m->pooling = i;
            n_on++;
        }
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(root, "word_embedding_dimension");
    if (n_on != 1)
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                           "%s: exactly one pooling mode (mean, cls, max, mean_sqrt_len) must be "
                           "on; %d are",
                           pool_path, n_on);
    else if (cJSON_IsNumber(dim) && (int)dim->valuedouble != m->bert.cfg.dim)
        rc = tsr_error_set(err, TSR_ERR_SHAPE,
                           "%s: word_embedding_dimension %d does not match hidden_size %d",
                           pool_path, (int)dim->valuedouble, m->bert.cfg.dim);
    cJSON_Delete(root);
    return rc;
}

typedef struct {
    tsr_sentence_model *m;
    const tsr_st *st;
    char prefix[16]; /* "" or "bert." */
    float *buf, *buf2;
    size_t cap, cap2;
} loader;

static tsr_status get(loader *l, const char *name, int ndim, int64_t a, int64_t b, float **dst,
                      tsr_error *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", l->prefix, name);
    int64_t shape[2] = {a, b};
    *dst = NULL;
    tsr_status rc = tsr_st_load(l->st, l->m->dir, full, ndim, shape, &l->buf, &l->cap, err);
    if (rc == TSR_OK)
        *dst = l->buf;
    return rc;
}

static tsr_status upload_vec(loader *l, const char *name, int64_t n, cl_mem *slot, tsr_error *err)
{
    float *v;
    tsr_status rc = get(l, name, 1, n, 0, &v, err);
    if (rc != TSR_OK)
        return rc;
    *slot = tsr_buf_alloc(l->m->ctx, sizeof(float) * (size_t)n, err);
    if (!*slot)
        return err ? err->code : TSR_ERR_NOMEM;
    return tsr_buf_write(l->m->ctx, *slot, v, sizeof(float) * (size_t)n, err);
}

static tsr_status upload_lin(loader *l, const char *name, int64_t n, int64_t k, cl_mem *slot,
                             tsr_error *err)
{
    float *w;
    tsr_status rc = get(l, name, 2, n, k, &w, err);
    if (rc != TSR_OK)
        return rc;
    *slot = tsr_linear_weight_upload(l->m->ctx, w, (int)n, (int)k, err);
    return *slot ? TSR_OK : (err ? err->code : TSR_ERR_NOMEM);
}

/* q, k and v of one layer, stacked into one (3D, D) weight and (3D) bias. */
static tsr_status upload_qkv(loader *l, int layer, tsr_enc_weights *w, tsr_error *err)
{
    int64_t D = l->m->bert.cfg.dim;
    size_t need = (size_t)(3 * D * D + 3 * D);
    if (need > l->cap2) {
        float *nb = realloc(l->buf2, sizeof(float) * need);
        if (!nb)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        l->buf2 = nb;
        l->cap2 = need;
    }
    static const char *parts[3] = {"query", "key", "value"};
    char name[160];
    tsr_status rc = TSR_OK;
    for (int p = 0; p < 3 && rc == TSR_OK; p++) {
        float *v;
        snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.weight", layer, parts[p]);
        rc = get(l, name, 2, D, D, &v, err);
        if (rc == TSR_OK)
            memcpy(l->buf2 + p * D * D, v, sizeof(float) * (size_t)(D * D));
        snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.bias", layer, parts[p]);
        if (rc == TSR_OK)
            rc = get(l, name, 1, D, 0, &v, err);
        if (rc == TSR_OK)
            memcpy(l->buf2 + 3 * D * D + p * D, v, sizeof(float) * (size_t)D);
    }
    if (rc != TSR_OK)
        return rc;
    w->qkv_w = tsr_linear_weight_upload(l->m->ctx, l->buf2, (int)(3 * D), (int)D, err);
    if (w->qkv_w)
        w->qkv_b = tsr_buf_alloc(l->m->ctx, sizeof(float) * 3 * (size_t)D, err);
    if (!w->qkv_b)
        return err ? err->code : TSR_ERR_NOMEM;
    return tsr_buf_write(l->m->ctx, w->qkv_b, l->buf2 + 3 * D * D, sizeof(float) * 3 * (size_t)D,
                         err);
}

static tsr_status load_weights(tsr_sentence_model *m, const tsr_st *st, tsr_error *err)
{
    loader l = {.m = m, .st = st};
    if (!tsr_st_find(st, "embeddings.word_embeddings.weight") &&
        tsr_st_find(st, "bert.embeddings.word_embeddings.weight"))
        snprintf(l.prefix, sizeof l.prefix, "bert.");
    tsr_bert_cfg *c = &m->bert.cfg;
    int64_t D = c->dim, F = c->ffn;
    float *v;
    /* position embeddings with token type 0 folded in (any number of types) */
    char tname[128];
    snprintf(tname, sizeof tname, "%sembeddings.token_type_embeddings.weight", l.prefix);
    const tsr_st_tensor *tt = tsr_st_find(st, tname);
    tsr_status rc = get(&l, "embeddings.token_type_embeddings.weight", 2,
                        tt && tt->ndim == 2 ? tt->shape[0] : 2, D, &v, err);
    float *type0 = NULL;
    if (rc == TSR_OK && !(type0 = malloc(sizeof(float) * (size_t)D)))
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (rc == TSR_OK) {
        memcpy(type0, v, sizeof(float) * (size_t)D);
        rc = get(&l, "embeddings.position_embeddings.weight", 2, c->max_pos, D, &v, err);
    }
    if (rc == TSR_OK) {
        for (int64_t i = 0; i < c->max_pos * D; i++)
            v[i] += type0[i % D];
        m->bert.pos = tsr_buf_alloc(m->ctx, sizeof(float) * (size_t)(c->max_pos * D), err);
        rc = m->bert.pos ? tsr_buf_write(m->ctx, m->bert.pos, v,
                                         sizeof(float) * (size_t)(c->max_pos * D), err)
                         : (err ? err->code : TSR_ERR_NOMEM);
    }
    free(type0);
    if (rc == TSR_OK)
        rc = get(&l, "embeddings.word_embeddings.weight", 2, c->vocab, D, &v, err);
    if (rc == TSR_OK) {
        m->bert.tok = tsr_buf_alloc(m->ctx, sizeof(float) * (size_t)(c->vocab * D), err);
        rc = m->bert.tok ? tsr_buf_write(m->ctx, m->bert.tok, v,
                                         sizeof(float) * (size_t)(c->vocab * D), err)
                         : (err ? err->code : TSR_ERR_NOMEM);
    }
    if (rc == TSR_OK)
        rc = upload_vec(&l, "embeddings.LayerNorm.weight", D, &m->bert.ln_g, err);
    if (rc == TSR_OK)
        rc = upload_vec(&l, "embeddings.LayerNorm.bias", D, &m->bert.ln_b, err);
    for (int i = 0; i < c->layers && rc == TSR_OK; i++) {
        tsr_enc_weights *w = &m->bert.stack.layers[i];
        char n[8][128];
        const char *fmt[8] = {"attention.output.dense.weight", "attention.output.dense.bias",
                              "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                              "intermediate.dense.weight", "intermediate.dense.bias",
                              "output.dense.weight", "output.dense.bias"};
        for (int k = 0; k < 8; k++)
            snprintf(n[k], sizeof n[k], "encoder.layer.%d.%s", i, fmt[k]);
        char g2[128], b2[128];
        snprintf(g2, sizeof g2, "encoder.layer.%d.output.LayerNorm.weight", i);
        snprintf(b2, sizeof b2, "encoder.layer.%d.output.LayerNorm.bias", i);
        rc = upload_qkv(&l, i, w, err);
        if (rc == TSR_OK)
            rc = upload_lin(&l, n[0], D, D, &w->o_w, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, n[1], D, &w->o_b, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, n[2], D, &w->ln1_g, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, n[3], D, &w->ln1_b, err);
        if (rc == TSR_OK)
            rc = upload_lin(&l, n[4], F, D, &w->fc1_w, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, n[5], F, &w->fc1_b, err);
        if (rc == TSR_OK)
            rc = upload_lin(&l, n[6], D, F, &w->fc2_w, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, n[7], D, &w->fc2_b, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, g2, D, &w->ln2_g, err);
        if (rc == TSR_OK)
            rc = upload_vec(&l, b2, D, &w->ln2_b, err);
    }
    free(l.buf);
    free(l.buf2);
    return rc;
}

tsr_status tsr_sentence_load(tsr_ctx *ctx, const char *dir, tsr_sentence_model **out,
                             tsr_error *err)
{
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", dir);
    tsr_sentence_model *m = calloc(1, sizeof *m);
    if (!m)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    m->ctx = ctx;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    tsr_st *st = NULL;
    tsr_status rc = parse_config(m, err);
    if (rc == TSR_OK)
        rc = parse_modules(m, err);
    if (rc == TSR_OK)
        rc = tsr_bert_init(&m->bert, err);
    if (rc == TSR_OK)
        rc = tsr_wordpiece_load_dir(dir, &m->tok, err);
    if (rc == TSR_OK && tsr_wordpiece_vocab_size(m->tok) > m->bert.cfg.vocab)
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: the tokenizer has %d tokens but the model's vocab_size is %d", dir,
                           tsr_wordpiece_vocab_size(m->tok), m->bert.cfg.vocab);
    if (rc == TSR_OK)
        rc = tsr_st_open_dir(dir, &st, err);
    if (rc == TSR_OK)
        rc = load_weights(m, st, err);
    tsr_st_close(st);
    if (rc != TSR_OK) {
        tsr_sentence_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

void tsr_sentence_free(tsr_sentence_model *m)
{
    if (!m)
        return;
    tsr_bert_free(&m->bert);
    tsr_wordpiece_free(m->tok);
    free(m);
}

int tsr_sentence_dim(const tsr_sentence_model *m) { return m->bert.cfg.dim; }
int tsr_sentence_max_len(const tsr_sentence_model *m) { return m->max_seq; }
const tsr_wordpiece *tsr_sentence_tokenizer(const tsr_sentence_model *m) { return m->tok; }

static void pool(const tsr_sentence_model *m, const float *h, int len, float *out)
{
    int D = m->bert.cfg.dim;
    if (m->pooling == POOL_CLS) {
        memcpy(out, h, sizeof(float) * (size_t)D);
    } else if (m->pooling == POOL_MAX) {
        for (int d = 0; d < D; d++) {
            float mx = h[d];
            for (int i = 1; i < len; i++)
                mx = fmaxf(mx, h[(size_t)i * D + d]);
            out[d] = mx;
        }
    } else {
        float div = m->pooling == POOL_MEAN ? (float)len : sqrtf((float)len);
        for (int d = 0; d < D; d++) {
            float s = 0;
            for (int i = 0; i < len; i++)
                s += h[(size_t)i * D + d];
            out[d] = s / div;
        }
    }
    if (m->normalize) {
        double n = 0;
        for (int d = 0; d < D; d++)
            n += (double)out[d] * out[d];
        float inv = 1.0f / fmaxf((float)sqrt(n), 1e-12f);
        for (int d = 0; d < D; d++)
            out[d] *= inv;
    }
}

static const int *sort_lens;
static int by_len_desc(const void *a, const void *b)
{
    int ia = *(const int *)a, ib = *(const int *)b;
    if (sort_lens[ia] != sort_lens[ib])
        return sort_lens[ib] - sort_lens[ia];
    return ia - ib;
}

tsr_status tsr_sentence_embed(tsr_sentence_model *m, const char *const *texts, int n, float *out,
                              int *n_truncated, tsr_error *err)
{
    int L = m->max_seq, D = m->bert.cfg.dim;
    if (n_truncated)
        *n_truncated = 0;
    if (n <= 0)
        return TSR_OK;
    int *all = malloc(sizeof(int) * (size_t)L * n), *lens = malloc(sizeof(int) * n);
    int *order = malloc(sizeof(int) * n);
    int *ids = malloc(sizeof(int) * (size_t)L * SENTENCE_BATCH);
    int *blens = malloc(sizeof(int) * SENTENCE_BATCH);
    float *hidden = malloc(sizeof(float) * (size_t)L * D * SENTENCE_BATCH);
    tsr_status rc = all && lens && order && ids && blens && hidden
                        ? TSR_OK
                        : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < n && rc == TSR_OK; i++) {
        int cut = 0;
        rc = tsr_wordpiece_encode(m->tok, texts[i], L, all + (size_t)i * L, &lens[i], &cut, err);
        if (rc != TSR_OK)
            tsr_error_prefix(err, "text %d", i + 1);
        if (cut && n_truncated)
            (*n_truncated)++;
        order[i] = i;
    }
    if (rc == TSR_OK) { /* longest first, so that each batch pads little */
        sort_lens = lens;
        qsort(order, (size_t)n, sizeof(int), by_len_desc);
    }
    for (int b = 0; b < n && rc == TSR_OK; b += SENTENCE_BATCH) {
        int nb = n - b < SENTENCE_BATCH ? n - b : SENTENCE_BATCH, S = lens[order[b]];
        for (int i = 0; i < nb; i++) {
            int k = order[b + i];
            blens[i] = lens[k];
            for (int j = 0; j < S; j++)
                ids[(size_t)i * S + j] = j < lens[k] ? all[(size_t)k * L + j]
                                                     : tsr_wordpiece_pad(m->tok);
        }
        rc = tsr_bert_forward(m->ctx, &m->bert, ids, blens, nb, S, hidden, err);
        for (int i = 0; i < nb && rc == TSR_OK; i++)
            pool(m, hidden + (size_t)i * S * D, blens[i], out + (size_t)order[b + i] * D);
    }
    free(all);
    free(lens);
    free(order);
    free(ids);
    free(blens);
    free(hidden);
    return rc;
}

const char *tsr_model_kind(const char *dir, tsr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", dir);
        return NULL;
    }
    cJSON *root = tsr_read_json(path, 1 << 20, err);
    if (!root)
        return NULL;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    static const char *kinds[] = {"clip", "bert", "whisper"};
    const char *kind = NULL;
    for (int i = 0; i < 3; i++)
        if (cJSON_IsString(mt) && strcmp(mt->valuestring, kinds[i]) == 0)
            kind = kinds[i];
    /* a CTranslate2 Whisper directory: model.bin next to a config without model_type */
    snprintf(path, sizeof path, "%s/model.bin", dir);
    if (!kind && !mt && exists(path))
        kind = "whisper";
    if (!kind)
        tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s/config.json: model_type \"%s\" is not supported",
                      dir, cJSON_IsString(mt) ? mt->valuestring : "(missing)");
    cJSON_Delete(root);
    return kind;
}
