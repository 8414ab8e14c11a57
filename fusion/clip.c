/* Reading a HF CLIPModel directory: config.json, the tensor-name table,
 * shape checks, upload, and the embedding entry points. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr_cfg.h"
#include "tsr_fusion.h"
#include "tsr_st.h"
#include "tsr_textenc.h"
#include "tsr_vit.h"

#define IMAGE_BATCH 16
#define TEXT_BATCH 64

struct tsr_model {
    tsr_ctx *ctx;
    char dir[2048];
    tsr_vit vit;
    tsr_textenc txt;
    int proj_dim;
    float logit_scale; /* exp'd */
    tsr_tokenizer *tok;
    tsr_preprocess_cfg pp;
    uint64_t rng; /* for random weights */
};

/* Defaults are transformers' CLIPTextConfig / CLIPVisionConfig defaults,
 * since save_pretrained omits values equal to them. */
static tsr_status parse_config(tsr_model *m, const char *path, tsr_error *err)
{
    char *text = tsr_read_small(path, 1 << 20, err);
    if (!text)
        return err ? err->code : TSR_ERR_IO;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: not valid JSON", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "clip") != 0) {
        tsr_status rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                      "%s: model_type \"%s\" is not supported (expected \"clip\")",
                                      path, cJSON_IsString(mt) ? mt->valuestring : "(missing)");
        cJSON_Delete(root);
        return rc;
    }
    tsr_cfg_reader r = {root, path, "", err, 0};
    int proj = tsr_cfg_int(&r, "projection_dim", 512, 1, 16384);
    r.obj = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    r.section = "text_config";
    tsr_textenc_cfg *t = &m->txt.cfg;
    t->vocab = tsr_cfg_int(&r, "vocab_size", 49408, 1, 1 << 22);
    t->max_pos = tsr_cfg_int(&r, "max_position_embeddings", 77, 2, 1 << 16);
    t->dim = tsr_cfg_int(&r, "hidden_size", 512, 1, 16384);
    t->ffn = tsr_cfg_int(&r, "intermediate_size", 2048, 1, 65536);
    t->heads = tsr_cfg_int(&r, "num_attention_heads", 8, 1, 1024);
    t->layers = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    t->eos_id = tsr_cfg_int(&r, "eos_token_id", 49407, 0, 1 << 22);
    t->eps = tsr_cfg_float(&r, "layer_norm_eps", 1e-5f);
    t->act = tsr_cfg_act(&r, "quick_gelu");
    t->proj_dim = proj;
    r.obj = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    r.section = "vision_config";
    tsr_vit_cfg *v = &m->vit.cfg;
    v->dim = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    v->ffn = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    v->heads = tsr_cfg_int(&r, "num_attention_heads", 12, 1, 1024);
    v->layers = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    v->channels = tsr_cfg_int(&r, "num_channels", 3, 3, 3);
    v->image_size = tsr_cfg_int(&r, "image_size", 224, 1, 4096);
    v->patch = tsr_cfg_int(&r, "patch_size", 32, 1, 4096);
    v->eps = tsr_cfg_float(&r, "layer_norm_eps", 1e-5f);
    v->act = tsr_cfg_act(&r, "quick_gelu");
    v->proj_dim = proj;
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    if (t->dim % t->heads || v->dim % v->heads)
        return tsr_error_set(err, TSR_ERR_FORMAT,
                             "%s: hidden_size must be a multiple of num_attention_heads", path);
    if (v->patch > v->image_size)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: patch_size %d exceeds image_size %d", path,
                             v->patch, v->image_size);
    m->proj_dim = proj;
    return TSR_OK;
}

/* ---- the HF CLIPModel tensor table ---- */

enum { T_TEXT, T_VISION, T_TOP };
enum { D_D, D_F, D_V, D_POS, D_P, D_C, D_PATCH, D_NP1 }; /* symbolic dimensions */

typedef struct {
    const char *name; /* "%d" stands for the layer */
    int tower, per_layer;
    size_t off;       /* of the cl_mem in the tower or in tsr_enc_weights */
    int part;         /* q, k, v go to rows part*D of the fused qkv */
    int ndim, dims[4];
    int lin;          /* a linear layer's weight (N, K...): uploaded for tsr_linear */
} wt_entry;

/* name, tower, per layer, slot, part, ndim, dims, linear weight */
#define LAYER(pfx, tower)                                                                      \
    {pfx ".self_attn.q_proj.weight", tower, 1, offsetof(tsr_enc_weights, qkv_w), 0, 2, {D_D, D_D}, 1}, \
    {pfx ".self_attn.k_proj.weight", tower, 1, offsetof(tsr_enc_weights, qkv_w), 1, 2, {D_D, D_D}, 1}, \
    {pfx ".self_attn.v_proj.weight", tower, 1, offsetof(tsr_enc_weights, qkv_w), 2, 2, {D_D, D_D}, 1}, \
    {pfx ".self_attn.q_proj.bias", tower, 1, offsetof(tsr_enc_weights, qkv_b), 0, 1, {D_D}, 0},        \
    {pfx ".self_attn.k_proj.bias", tower, 1, offsetof(tsr_enc_weights, qkv_b), 1, 1, {D_D}, 0},        \
    {pfx ".self_attn.v_proj.bias", tower, 1, offsetof(tsr_enc_weights, qkv_b), 2, 1, {D_D}, 0},        \
    {pfx ".self_attn.out_proj.weight", tower, 1, offsetof(tsr_enc_weights, o_w), 0, 2, {D_D, D_D}, 1}, \
    {pfx ".self_attn.out_proj.bias", tower, 1, offsetof(tsr_enc_weights, o_b), 0, 1, {D_D}, 0},        \
    {pfx ".layer_norm1.weight", tower, 1, offsetof(tsr_enc_weights, ln1_g), 0, 1, {D_D}, 0},           \
    {pfx ".layer_norm1.bias", tower, 1, offsetof(tsr_enc_weights, ln1_b), 0, 1, {D_D}, 0},             \
    {pfx ".layer_norm2.weight", tower, 1, offsetof(tsr_enc_weights, ln2_g), 0, 1, {D_D}, 0},           \
    {pfx ".layer_norm2.bias", tower, 1, offsetof(tsr_enc_weights, ln2_b), 0, 1, {D_D}, 0},             \
    {pfx ".mlp.fc1.weight", tower, 1, offsetof(tsr_enc_weights, fc1_w), 0, 2, {D_F, D_D}, 1},          \
    {pfx ".mlp.fc1.bias", tower, 1, offsetof(tsr_enc_weights, fc1_b), 0, 1, {D_F}, 0},                 \
    {pfx ".mlp.fc2.weight", tower, 1, offsetof(tsr_enc_weights, fc2_w), 0, 2, {D_D, D_F}, 1},          \
    {pfx ".mlp.fc2.bias", tower, 1, offsetof(tsr_enc_weights, fc2_b), 0, 1, {D_D}, 0}

static const wt_entry clip_table[] = {
    {"text_model.embeddings.token_embedding.weight", T_TEXT, 0, offsetof(tsr_textenc, tok), 0, 2, {D_V, D_D}, 0},
    {"text_model.embeddings.position_embedding.weight", T_TEXT, 0, offsetof(tsr_textenc, pos), 0, 2, {D_POS, D_D}, 0},
    LAYER("text_model.encoder.layers.%d", T_TEXT),
    {"text_model.final_layer_norm.weight", T_TEXT, 0, offsetof(tsr_textenc, fin_g), 0, 1, {D_D}, 0},
    {"text_model.final_layer_norm.bias", T_TEXT, 0, offsetof(tsr_textenc, fin_b), 0, 1, {D_D}, 0},
    {"text_projection.weight", T_TEXT, 0, offsetof(tsr_textenc, proj), 0, 2, {D_P, D_D}, 1},
    {"vision_model.embeddings.class_embedding", T_VISION, 0, offsetof(tsr_vit, cls), 0, 1, {D_D}, 0},
    {"vision_model.embeddings.patch_embedding.weight", T_VISION, 0, offsetof(tsr_vit, patch_w), 0, 4, {D_D, D_C, D_PATCH, D_PATCH}, 1},
    {"vision_model.embeddings.position_embedding.weight", T_VISION, 0, offsetof(tsr_vit, pos), 0, 2, {D_NP1, D_D}, 0},
    {"vision_model.pre_layrnorm.weight", T_VISION, 0, offsetof(tsr_vit, pre_g), 0, 1, {D_D}, 0},
    {"vision_model.pre_layrnorm.bias", T_VISION, 0, offsetof(tsr_vit, pre_b), 0, 1, {D_D}, 0},
    LAYER("vision_model.encoder.layers.%d", T_VISION),
    {"vision_model.post_layernorm.weight", T_VISION, 0, offsetof(tsr_vit, post_g), 0, 1, {D_D}, 0},
    {"vision_model.post_layernorm.bias", T_VISION, 0, offsetof(tsr_vit, post_b), 0, 1, {D_D}, 0},
    {"visual_projection.weight", T_VISION, 0, offsetof(tsr_vit, proj), 0, 2, {D_P, D_D}, 1},
};

static int64_t dim_value(const tsr_model *m, int tower, int code)
{
    const tsr_vit_cfg *v = &m->vit.cfg;
    const tsr_textenc_cfg *t = &m->txt.cfg;
    int vis = tower == T_VISION;
    switch (code) {
    case D_D: return vis ? v->dim : t->dim;
    case D_F: return vis ? v->ffn : t->ffn;
    case D_V: return t->vocab;
    case D_POS: return t->max_pos;
    case D_P: return m->proj_dim;
    case D_C: return v->channels;
    case D_PATCH: return v->patch;
    case D_NP1: return tsr_vit_num_patches(v) + 1;
    }
    return -1;
}

/* Random weights for benchmarks: uniform with variance 1/fan_in for
 * matrices, ones for layernorm scales, zeros for other vectors. */
static void random_fill(const char *name, const int64_t *shape, int ndim, float *dst,
                        uint64_t *state)
{
    size_t n = 1, fan_in = 1;
    for (int d = 0; d < ndim; d++) {
        n *= (size_t)shape[d];
        if (d > 0)
            fan_in *= (size_t)shape[d];
    }
    int is_ln = strstr(name, "norm") != NULL;
    size_t len = strlen(name);
    int weight = len > 6 && strcmp(name + len - 6, "weight") == 0;
    float a = sqrtf(3.0f / (float)fan_in);
    for (size_t i = 0; i < n; i++) {
        if (ndim < 2) {
            dst[i] = is_ln && weight ? 1.0f : 0.0f;
            continue;
        }
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        dst[i] = a * (2.0f * (float)(*state >> 40) / 16777216.0f - 1.0f);
    }
}

/* Fills one table entry from the checkpoint, or with random values when st is NULL. */
static tsr_status load_entry(tsr_model *m, const tsr_st *st, const wt_entry *e, int layer,
                             float **stage, size_t *stage_cap, float **qkv, size_t *qkv_cap,
                             tsr_error *err)
{
    char name[256];
    snprintf(name, sizeof name, e->name, layer);
    int64_t want[4];
    for (int d = 0; d < e->ndim; d++)
        want[d] = dim_value(m, e->tower, e->dims[d]);
    tsr_st_tensor rnd = {.name = name, .ndim = e->ndim, .numel = 1};
    for (int d = 0; d < e->ndim; d++) {
        rnd.shape[d] = want[d];
        rnd.numel *= (uint64_t)want[d];
    }
    const tsr_st_tensor *t = st ? tsr_st_find(st, name) : &rnd;
    if (!t)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor '%s'", m->dir, name);
    int ok = t->ndim == e->ndim;
    for (int d = 0; d < e->ndim; d++)
        ok = ok && t->shape[d] == want[d];
    if (!ok) {
        char got[128], exp[128];
        tsr_st_shape_str(t->shape, t->ndim, got, sizeof got);
        tsr_st_shape_str(want, e->ndim, exp, sizeof exp);
        return tsr_error_set(err, TSR_ERR_SHAPE, "%s: tensor '%s' has shape %s, config expects %s",
                             t->file, name, got, exp);
    }
    if (t->numel > *stage_cap) {
        float *ns = realloc(*stage, sizeof(float) * t->numel);
        if (!ns)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory loading '%s'", name);
        *stage = ns;
        *stage_cap = t->numel;
    }
    tsr_status rc = TSR_OK;
    if (st)
        rc = tsr_st_to_f32(t, *stage, err);
    else
        random_fill(name, want, e->ndim, *stage, &m->rng);
    if (rc != TSR_OK)
        return rc;
    char *base = e->tower == T_VISION ? (char *)&m->vit : (char *)&m->txt;
    if (e->per_layer) {
        tsr_stack *s = e->tower == T_VISION ? &m->vit.stack : &m->txt.stack;
        base = (char *)&s->layers[layer];
    }
    cl_mem *slot = (cl_mem *)(base + e->off);
    size_t bytes = sizeof(float) * t->numel;
    int fused = strstr(e->name, "q_proj") || strstr(e->name, "k_proj") ||
                strstr(e->name, "v_proj");
    int rows = (int)want[0], cols = (int)(t->numel / (uint64_t)want[0]);
    if (e->lin && fused) { /* q, k, v gather on the host, then go up as one (3D, D) weight */
        if (3 * t->numel > *qkv_cap) {
            float *nq = realloc(*qkv, sizeof(float) * 3 * t->numel);
            if (!nq)
                return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory loading '%s'", name);
            *qkv = nq;
            *qkv_cap = 3 * t->numel;
        }
        memcpy(*qkv + (size_t)e->part * t->numel, *stage, bytes);
        if (e->part < 2)
            return TSR_OK;
        *slot = tsr_linear_weight_upload(m->ctx, *qkv, 3 * rows, cols, err);
    } else if (e->lin) {
        *slot = tsr_linear_weight_upload(m->ctx, *stage, rows, cols, err);
    } else {
        if (!*slot)
            *slot = tsr_buf_alloc(m->ctx, fused ? 3 * bytes : bytes, err);
        if (*slot)
            return tsr_buf_write_at(m->ctx, *slot, (size_t)e->part * bytes, *stage, bytes, err);
    }
    if (!*slot) {
        tsr_error_prefix(err, "loading '%s'", name);
        return err ? err->code : TSR_ERR_NOMEM;
    }
    return TSR_OK;
}

static tsr_status load_weights(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    float *stage = NULL, *qkv = NULL;
    size_t cap = 0, qcap = 0;
    tsr_status rc = TSR_OK;
    size_t n = sizeof clip_table / sizeof clip_table[0];
    int max_layers = m->vit.cfg.layers > m->txt.cfg.layers ? m->vit.cfg.layers : m->txt.cfg.layers;
    /* tower tensors first, then layer by layer so that q, k and v arrive together */
    for (size_t i = 0; i < n && rc == TSR_OK; i++)
        if (!clip_table[i].per_layer)
            rc = load_entry(m, st, &clip_table[i], 0, &stage, &cap, &qkv, &qcap, err);
    for (int l = 0; l < max_layers && rc == TSR_OK; l++)
        for (size_t i = 0; i < n && rc == TSR_OK; i++) {
            const wt_entry *e = &clip_table[i];
            int layers = e->tower == T_VISION ? m->vit.cfg.layers : m->txt.cfg.layers;
            if (e->per_layer && l < layers)
                rc = load_entry(m, st, e, l, &stage, &cap, &qkv, &qcap, err);
        }
    free(stage);
    free(qkv);
    if (rc != TSR_OK)
        return rc;
    if (!st) {
        m->logit_scale = 100.0f;
        return TSR_OK;
    }
    const tsr_st_tensor *ls = tsr_st_find(st, "logit_scale");
    if (!ls)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor 'logit_scale'", m->dir);
    if (ls->numel != 1 || ls->ndim > 1) {
        char got[128];
        tsr_st_shape_str(ls->shape, ls->ndim, got, sizeof got);
        return tsr_error_set(err, TSR_ERR_SHAPE,
                             "%s: tensor 'logit_scale' has shape %s, config expects []", ls->file,
                             got);
    }
    float v;
    rc = tsr_st_to_f32(ls, &v, err);
    m->logit_scale = expf(v);
    return rc;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

tsr_status tsr_model_load(tsr_ctx *ctx, const char *dir, tsr_model **out, tsr_error *err)
{
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", dir);
    tsr_model *m = calloc(1, sizeof *m);
    if (!m)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    m->ctx = ctx;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    tsr_st *st = NULL;
    tsr_status rc = parse_config(m, path, err);
    if (rc == TSR_OK)
        rc = tsr_vit_init(&m->vit, err);
    if (rc == TSR_OK)
        rc = tsr_textenc_init(&m->txt, err);
    if (rc == TSR_OK)
        rc = tsr_tokenizer_load_dir(dir, &m->tok, err);
    if (rc == TSR_OK) {
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        if (file_exists(path))
            rc = tsr_preprocess_cfg_load(path, &m->pp, err);
        else
            m->pp = tsr_preprocess_cfg_default(m->vit.cfg.image_size);
        if (rc == TSR_OK &&
            (m->pp.crop_h != m->vit.cfg.image_size || m->pp.crop_w != m->vit.cfg.image_size))
            rc = tsr_error_set(err, TSR_ERR_FORMAT,
                               "%s: crop size %dx%d does not match the model's image_size %d",
                               path, m->pp.crop_w, m->pp.crop_h, m->vit.cfg.image_size);
    }
    if (rc == TSR_OK)
        rc = tsr_st_open_dir(dir, &st, err);
    if (rc == TSR_OK)
        rc = load_weights(m, st, err);
    tsr_st_close(st);
    if (rc == TSR_OK && tsr_tokenizer_vocab_size(m->tok) > m->txt.cfg.vocab)
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: the tokenizer has %d tokens but the model's vocab_size is %d", dir,
                           tsr_tokenizer_vocab_size(m->tok), m->txt.cfg.vocab);
    if (rc != TSR_OK) {
        tsr_model_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

/* Full-size CLIP architectures, as in open_clip's model configs. */
static const struct {
    const char *name;
    int image, patch, v_dim, v_layers, v_heads, t_dim, t_layers, t_heads, proj;
} arch_table[] = {
    {"ViT-B-32", 224, 32, 768, 12, 12, 512, 12, 8, 512},
    {"ViT-B-16", 224, 16, 768, 12, 12, 512, 12, 8, 512},
    {"ViT-L-14", 224, 14, 1024, 24, 16, 768, 12, 12, 768},
};

int tsr_arch_names(const char **names, int max)
{
    int n = (int)(sizeof arch_table / sizeof arch_table[0]);
    for (int i = 0; i < n && i < max; i++)
        names[i] = arch_table[i].name;
    return n;
}

tsr_status tsr_model_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                   tsr_error *err)
{
    *out = NULL;
    int a = -1;
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strcmp(arch, arch_table[i].name) == 0)
            a = (int)i;
    if (a < 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "unknown architecture '%s' (known: ViT-B-32, ViT-B-16, ViT-L-14)", arch);
    tsr_model *m = calloc(1, sizeof *m);
    if (!m)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    m->ctx = ctx;
    m->rng = 0x9E3779B97F4A7C15ULL;
    snprintf(m->dir, sizeof m->dir, "(random %s)", arch);
    m->proj_dim = arch_table[a].proj;
    m->txt.cfg = (tsr_textenc_cfg){49408, 77, arch_table[a].t_dim, arch_table[a].t_heads,
                                   4 * arch_table[a].t_dim, arch_table[a].t_layers,
                                   arch_table[a].proj, 1e-5f, TSR_ACT_QUICK_GELU, 49407};
    m->vit.cfg = (tsr_vit_cfg){arch_table[a].image, arch_table[a].patch, 3, arch_table[a].v_dim,
                               arch_table[a].v_heads, 4 * arch_table[a].v_dim,
                               arch_table[a].v_layers, arch_table[a].proj, 1e-5f,
                               TSR_ACT_QUICK_GELU};
    m->pp = tsr_preprocess_cfg_default(arch_table[a].image);
    tsr_status rc = tsr_vit_init(&m->vit, err);
    if (rc == TSR_OK)
        rc = tsr_textenc_init(&m->txt, err);
    if (rc == TSR_OK)
        rc = load_weights(m, NULL, err);
    if (rc != TSR_OK) {
        tsr_model_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

void tsr_model_free(tsr_model *m)
{
    if (!m)
        return;
    tsr_vit_free(&m->vit);
    tsr_textenc_free(&m->txt);
    tsr_tokenizer_free(m->tok);
    free(m);
}

int tsr_model_embed_dim(const tsr_model *m) { return m->proj_dim; }
int tsr_model_max_text_len(const tsr_model *m) { return m->txt.cfg.max_pos; }
int tsr_model_image_channels(const tsr_model *m) { return m->vit.cfg.channels; }
int tsr_model_image_size(const tsr_model *m) { return m->vit.cfg.image_size; }
float tsr_model_logit_scale(const tsr_model *m) { return m->logit_scale; }
const tsr_tokenizer *tsr_model_tokenizer(const tsr_model *m) { return m->tok; }
const tsr_preprocess_cfg *tsr_model_preprocess_cfg(const tsr_model *m) { return &m->pp; }

tsr_status tsr_model_embed_pixels(tsr_model *m, const float *pixels, int B, int normalize,
                                  float *out, tsr_error *err)
{
    size_t per = (size_t)m->vit.cfg.channels * m->vit.cfg.image_size * m->vit.cfg.image_size;
    for (int b = 0; b < B; b += IMAGE_BATCH) {
        int nb = B - b < IMAGE_BATCH ? B - b : IMAGE_BATCH;
        tsr_status rc = tsr_vit_forward(m->ctx, &m->vit, pixels + per * b, nb, normalize,
                                        out + (size_t)b * m->proj_dim, err);
        if (rc != TSR_OK)
            return rc;
    }
    return TSR_OK;
}

tsr_status tsr_model_embed_image_files(tsr_model *m, const char *const *paths, int n,
                                       int normalize, float *out, tsr_error *err)
{
    size_t per = (size_t)m->vit.cfg.channels * m->vit.cfg.image_size * m->vit.cfg.image_size;
    float *px = malloc(sizeof(float) * per * IMAGE_BATCH);
    if (!px)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_status rc = TSR_OK;
    for (int b = 0; b < n && rc == TSR_OK; b += IMAGE_BATCH) {
        int nb = n - b < IMAGE_BATCH ? n - b : IMAGE_BATCH;
        for (int i = 0; i < nb && rc == TSR_OK; i++) {
            tsr_image *img = NULL;
            rc = tsr_image_load_file(paths[b + i], &img, err);
            if (rc == TSR_OK)
                rc = tsr_image_preprocess(img, &m->pp, px + per * i, err);
            tsr_image_free(img);
        }
        if (rc == TSR_OK)
            rc = tsr_vit_forward(m->ctx, &m->vit, px, nb, normalize,
                                 out + (size_t)b * m->proj_dim, err);
    }
    free(px);
    return rc;
}

tsr_status tsr_model_embed_ids(tsr_model *m, const int *ids, const int *lens, int B, int S,
                               int normalize, float *out, tsr_error *err)
{
    return tsr_textenc_forward(m->ctx, &m->txt, ids, lens, B, S, normalize, out, err);
}

tsr_status tsr_model_embed_texts(tsr_model *m, const char *const *texts, int n, int normalize,
                                 float *out, int *n_truncated, tsr_error *err)
{
    if (!m->tok)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: the model has no tokenizer", m->dir);
    int L = m->txt.cfg.max_pos;
    int *ids = malloc(sizeof(int) * (size_t)L * TEXT_BATCH);
    int *lens = malloc(sizeof(int) * TEXT_BATCH);
    int *buf = malloc(sizeof(int) * (size_t)L);
    tsr_status rc = (ids && lens && buf) ? TSR_OK
                                         : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    if (n_truncated)
        *n_truncated = 0;
    for (int b = 0; b < n && rc == TSR_OK; b += TEXT_BATCH) {
        int nb = n - b < TEXT_BATCH ? n - b : TEXT_BATCH, S = 1;
        for (int i = 0; i < nb && rc == TSR_OK; i++) {
            int cut = 0;
            rc = tsr_tokenizer_encode(m->tok, texts[b + i], L, ids + (size_t)i * L, &lens[i],
                                      &cut, err);
            if (rc != TSR_OK)
                tsr_error_prefix(err, "text %d", b + i + 1);
            if (cut && n_truncated)
                (*n_truncated)++;
            if (lens[i] > S)
                S = lens[i];
        }
        if (rc != TSR_OK)
            break;
        /* repack to (nb, S), padding with the pad token */
        for (int i = 0; i < nb; i++) {
            memcpy(buf, ids + (size_t)i * L, sizeof(int) * lens[i]);
            for (int j = lens[i]; j < S; j++)
                buf[j] = tsr_tokenizer_pad(m->tok);
            memcpy(ids + (size_t)i * S, buf, sizeof(int) * S);
        }
        rc = tsr_textenc_forward(m->ctx, &m->txt, ids, lens, nb, S, normalize,
                                 out + (size_t)b * m->proj_dim, err);
    }
    free(ids);
    free(lens);
    free(buf);
    return rc;
}

/* Forward FLOPs of an encoder stack: S tokens, D wide, F hidden, L layers
 * (QKV, scores, weighted sum, output projection, MLP). */
static double stack_flops(double S, double D, double F, double L)
{
    return L * (2 * S * 3 * D * D + 4 * S * S * D + 2 * S * D * D + 4 * S * D * F);
}

/* The linear layers' GEMMs of both towers at each batch size, weighted by
 * calls per item, so that each batch size counts as much as another. */
static int gemm_shapes(const tsr_vit_cfg *v, const tsr_textenc_cfg *t, const int *batches,
                       int nb, tsr_gemm_shape *out, int max)
{
    int n = 0;
    for (int i = 0; i < nb; i++) {
        for (int tw = 0; tw < 2; tw++) {
            int S = tw ? t->max_pos : tsr_vit_num_patches(v) + 1;
            int D = tw ? t->dim : v->dim, F = tw ? t->ffn : v->ffn, L = tw ? t->layers : v->layers;
            const int mnk[4][3] = {{3 * D, D}, {D, D}, {F, D}, {D, F}};
            for (int g = 0; g < 4; g++) {
                if (n < max)
                    out[n] = (tsr_gemm_shape){batches[i] * S, mnk[g][0], mnk[g][1],
                                              (double)L / batches[i]};
                n++;
            }
        }
    }
    return n;
}

int tsr_arch_gemm_shapes(const char *arch, const int *batches, int nb, tsr_gemm_shape *out,
                         int max)
{
    for (size_t a = 0; a < sizeof arch_table / sizeof arch_table[0]; a++) {
        if (strcmp(arch, arch_table[a].name) != 0)
            continue;
        tsr_vit_cfg v = {arch_table[a].image, arch_table[a].patch, 3, arch_table[a].v_dim,
                         arch_table[a].v_heads, 4 * arch_table[a].v_dim, arch_table[a].v_layers,
                         arch_table[a].proj, 1e-5f, TSR_ACT_QUICK_GELU};
        tsr_textenc_cfg t = {49408, 77, arch_table[a].t_dim, arch_table[a].t_heads,
                             4 * arch_table[a].t_dim, arch_table[a].t_layers, arch_table[a].proj,
                             1e-5f, TSR_ACT_QUICK_GELU, 49407};
        return gemm_shapes(&v, &t, batches, nb, out, max);
    }
    return -1;
}

int tsr_model_gemm_shapes(const tsr_model *m, const int *batches, int nb, tsr_gemm_shape *out,
                          int max)
{
    return gemm_shapes(&m->vit.cfg, &m->txt.cfg, batches, nb, out, max);
}

void tsr_model_flops(const tsr_model *m, double *image, double *text)
{
    const tsr_vit_cfg *v = &m->vit.cfg;
    const tsr_textenc_cfg *t = &m->txt.cfg;
    double np = tsr_vit_num_patches(v);
    *image = 2 * np * v->dim * v->channels * v->patch * v->patch +
             stack_flops(np + 1, v->dim, v->ffn, v->layers) + 2.0 * v->dim * m->proj_dim;
    *text = stack_flops(t->max_pos, t->dim, t->ffn, t->layers) + 2.0 * t->dim * m->proj_dim;
}
