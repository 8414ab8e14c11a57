/* CLIP (HF CLIPModel): the config, the tensor-name table, the builder of the
 * ViT and text towers, and the embedding entry points. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_cfg.h"
#include "tsr_hash.h"
#include "tsr_model.h"
#include "tsr_st.h"
#include "tsr_textenc.h"
#include "tsr_vit.h"
#include "tsr_wtable.h"

#include "tsr_clip.h"

/* ---- configuration ---- */

/* The towers of a CLIP from its sizes (the open_clip architectures and the
 * HF config share this). */
static void build_towers(clip_model *c, int image, int patch, int vd, int vl, int vh, int vf,
                         int td, int tl, int th, int tf, int proj, float veps, float teps,
                         tsr_act vact, tsr_act tact)
{
    c->proj_dim = proj;
    c->vit.image_size = image;
    c->vit.patch = patch;
    c->vit.channels = 3;
    c->vit.cls = 1;
    c->vit.enc = (tsr_encoder_cfg){{vd, vh, vf, veps, vact, 0, 0}, vl, 1, TSR_LN_POOLED, 1, proj, 0};
    c->txt.enc = (tsr_encoder_cfg){{td, th, tf, teps, tact, 1, 0}, tl, 0, TSR_LN_POOLED, 1, proj, 0};
}

/* Defaults are transformers' CLIPTextConfig / CLIPVisionConfig defaults,
 * since save_pretrained omits values equal to them. */
static tsr_status parse_config(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clip_model *c = CLIP(m);
    char path[4200];
    tsr_src_path(src, "config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "config.json", 1 << 20, err);
    if (!root)
        return err->code;
    tsr_cfg_reader r = {root, path, "", err, 0};
    int proj = tsr_cfg_int(&r, "projection_dim", 512, 1, 16384);
    r.obj = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    r.section = "text_config";
    c->txt.vocab = tsr_cfg_int(&r, "vocab_size", 49408, 1, 1 << 22);
    c->txt.max_pos = tsr_cfg_int(&r, "max_position_embeddings", 77, 2, 1 << 16);
    int td = tsr_cfg_int(&r, "hidden_size", 512, 1, 16384);
    int tf = tsr_cfg_int(&r, "intermediate_size", 2048, 1, 65536);
    int th = tsr_cfg_int(&r, "num_attention_heads", 8, 1, 1024);
    int tl = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    c->txt.eos_id = tsr_cfg_int(&r, "eos_token_id", 49407, 0, 1 << 22);
    float teps = tsr_cfg_float(&r, "layer_norm_eps", 1e-5f);
    tsr_act tact = tsr_cfg_act(&r, "quick_gelu");
    r.obj = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    r.section = "vision_config";
    int vd = tsr_cfg_int(&r, "hidden_size", 768, 1, 16384);
    int vf = tsr_cfg_int(&r, "intermediate_size", 3072, 1, 65536);
    int vh = tsr_cfg_int(&r, "num_attention_heads", 12, 1, 1024);
    int vl = tsr_cfg_int(&r, "num_hidden_layers", 12, 0, 256);
    tsr_cfg_int(&r, "num_channels", 3, 3, 3);
    int image = tsr_cfg_int(&r, "image_size", 224, 1, 4096);
    int patch = tsr_cfg_int(&r, "patch_size", 32, 1, 4096);
    float veps = tsr_cfg_float(&r, "layer_norm_eps", 1e-5f);
    tsr_act vact = tsr_cfg_act(&r, "quick_gelu");
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    build_towers(c, image, patch, vd, vl, vh, vf, td, tl, th, tf, proj, veps, teps, vact, tact);
    if (patch > image)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: patch_size %d exceeds image_size %d", path,
                             patch, image);
    tsr_status rc = tsr_enc_cfg_check(&c->txt.enc.layer, path, err);
    TSR_TRY(rc, tsr_enc_cfg_check(&c->vit.enc.layer, path, err));
    return rc;
}

/* ---- the open_clip layout (open_clip_config.json, open_clip_model.safetensors) ---- */

/* A setting of open_clip's CLIPVisionCfg / CLIPTextCfg that changes what
 * the tower computes: accepted only at the value tessera computes. */
typedef struct {
    const char *key;
    int kind;          /* 0: must be absent or null, false, 0, "" or {}; 1: a string that must
                        * equal want; 2: must be absent or null (0 would still mean "on") */
    const char *want;
} oc_setting;

static const oc_setting oc_vision_fixed[] = {
    {"timm_model_name", 0, NULL}, {"ls_init_value", 2, NULL},   {"attentional_pool", 0, NULL},
    {"no_ln_pre", 0, NULL},       {"final_ln_after_pool", 0, NULL}, {"output_tokens", 0, NULL},
    {"pool_type", 1, "tok"},      {"pos_embed_type", 1, "learnable"}, {"block_type", 1, "default"},
    {"qk_norm", 0, NULL},         {"scaled_cosine_attn", 0, NULL}, {"scale_heads", 0, NULL},
    {"scale_attn_inner", 0, NULL}, {"scale_attn", 0, NULL},     {"scale_fc", 0, NULL},
    {"act_kwargs", 0, NULL},      {NULL, 0, NULL}};
static const oc_setting oc_text_fixed[] = {
    {"hf_model_name", 0, NULL},   {"ls_init_value", 2, NULL},   {"embed_cls", 0, NULL},
    {"no_causal_mask", 0, NULL},  {"final_ln_after_pool", 0, NULL}, {"proj_bias", 0, NULL},
    {"pool_type", 1, "argmax"},   {"proj_type", 1, "linear"},   {"block_type", 1, "default"},
    {"qk_norm", 0, NULL},         {"scaled_cosine_attn", 0, NULL}, {"scale_heads", 0, NULL},
    {"scale_attn_inner", 0, NULL}, {"scale_attn", 0, NULL},     {"scale_fc", 0, NULL},
    {"act_kwargs", 0, NULL},      {"hf_tokenizer_name", 0, NULL}, {"tokenizer_kwargs", 0, NULL},
    {NULL, 0, NULL}};

/* CoCa's towers: the attentional pooler and output tokens of the image
 * tower, the class token of the text tower (which overrides pool_type) */
static const oc_setting oc_coca_vision_fixed[] = {
    {"timm_model_name", 0, NULL}, {"ls_init_value", 2, NULL},   {"no_ln_pre", 0, NULL},
    {"final_ln_after_pool", 0, NULL}, {"pool_type", 1, "tok"},  {"pos_embed_type", 1, "learnable"},
    {"block_type", 1, "default"}, {"qk_norm", 0, NULL},         {"scaled_cosine_attn", 0, NULL},
    {"scale_heads", 0, NULL},     {"scale_attn_inner", 0, NULL}, {"scale_attn", 0, NULL},
    {"scale_fc", 0, NULL},        {"act_kwargs", 0, NULL},      {NULL, 0, NULL}};
static const oc_setting oc_coca_text_fixed[] = {
    {"hf_model_name", 0, NULL},   {"ls_init_value", 2, NULL},   {"no_causal_mask", 0, NULL},
    {"final_ln_after_pool", 0, NULL}, {"proj_bias", 0, NULL},   {"proj_type", 1, "linear"},
    {"block_type", 1, "default"}, {"qk_norm", 0, NULL},         {"scaled_cosine_attn", 0, NULL},
    {"scale_heads", 0, NULL},     {"scale_attn_inner", 0, NULL}, {"scale_attn", 0, NULL},
    {"scale_fc", 0, NULL},        {"act_kwargs", 0, NULL},      {"hf_tokenizer_name", 0, NULL},
    {"tokenizer_kwargs", 0, NULL}, {"correct_cls_mask", 0, NULL}, {"pad_id", 0, NULL},
    {"use_pad_mask", 0, NULL},    {NULL, 0, NULL}};
/* the multimodal decoder: open_clip builds it from width, heads, layers,
 * context_length and ls_init_value only (mlp_ratio 4, PyTorch's eps) */
static const oc_setting oc_coca_mm_fixed[] = {{"ls_init_value", 2, NULL}, {NULL, 0, NULL}};

static int oc_refuse(tsr_cfg_reader *r, const oc_setting *fixed)
{
    for (int i = 0; fixed[i].key && !r->bad; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, fixed[i].key);
        int ok = !it || cJSON_IsNull(it) || cJSON_IsFalse(it) ||
                 (cJSON_IsNumber(it) && it->valuedouble == 0) ||
                 (cJSON_IsString(it) && !it->valuestring[0]) ||
                 ((cJSON_IsObject(it) || cJSON_IsArray(it)) && !it->child);
        if (fixed[i].kind == 2)
            ok = !it || cJSON_IsNull(it);
        if (fixed[i].kind == 1)
            ok = !it || cJSON_IsNull(it) ||
                 (cJSON_IsString(it) && strcmp(it->valuestring, fixed[i].want) == 0);
        if (!ok) {
            char *v = cJSON_PrintUnformatted(it);
            tsr_error_set(r->err, TSR_ERR_UNSUPPORTED,
                          "%s: %s.%s = %s is not supported (tessera loads open_clip's standard "
                          "ViT CLIP towers)",
                          r->path, r->section, fixed[i].key, v ? v : "?");
            free(v);
            r->bad = 1;
        }
    }
    return !r->bad;
}

/* open_clip's mlp_ratio: the MLP is int(width * mlp_ratio) wide. */
static int oc_mlp(tsr_cfg_reader *r, int width)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, "mlp_ratio");
    if (!it || r->bad)
        return 4 * width;
    if (!cJSON_IsNumber(it) || !(it->valuedouble > 0 && it->valuedouble <= 64)) {
        tsr_error_set(r->err, TSR_ERR_FORMAT, "%s: %s.mlp_ratio must be a number in (0, 64]",
                      r->path, r->section);
        r->bad = 1;
        return 4 * width;
    }
    return (int)(width * it->valuedouble);
}

/* LayerNorm's eps: norm_kwargs.eps, else PyTorch's 1e-5. */
static float oc_eps(tsr_cfg_reader *r)
{
    tsr_cfg_reader n = *r;
    n.obj = cJSON_GetObjectItemCaseSensitive(r->obj, "norm_kwargs");
    if (!n.obj)
        return 1e-5f;
    float eps = tsr_cfg_float(&n, "eps", 1e-5f);
    r->bad |= n.bad;
    return eps;
}

/* An int or a [h, w] pair with h == w (image_size). */
static int oc_square(tsr_cfg_reader *r, const char *key, int def)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2) {
        const cJSON *h = cJSON_GetArrayItem(it, 0), *w = cJSON_GetArrayItem(it, 1);
        if (cJSON_IsNumber(h) && cJSON_IsNumber(w) && h->valuedouble == w->valuedouble &&
            h->valuedouble >= 1 && h->valuedouble <= 4096)
            return (int)h->valuedouble;
        if (!r->bad)
            tsr_error_set(r->err, TSR_ERR_UNSUPPORTED,
                          "%s: %s.%s: only square sizes are supported", r->path, r->section, key);
        r->bad = 1;
        return def;
    }
    return tsr_cfg_int(r, key, def, 1, 4096);
}

/* open_clip's preprocess_cfg: mean, std, bicubic, and "shortest" (resize the
 * shorter side, centre crop) or "squash" (resize to the square). */
static void oc_preprocess(clip_model *c, const cJSON *pp, tsr_cfg_reader *r)
{
    static const float mean0[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std0[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    int size = c->vit.image_size;
    c->pp = tsr_preprocess_cfg_default(size);
    c->pp.crop_half_even = 1; /* torchvision's CenterCrop rounds the offset */
    memcpy(c->pp.mean, mean0, sizeof mean0);
    memcpy(c->pp.std, std0, sizeof std0);
    c->pp_known = 1;
    if (!pp || r->bad)
        return;
    const char *names[2] = {"mean", "std"};
    float *dst[2] = {c->pp.mean, c->pp.std};
    for (int k = 0; k < 2 && !r->bad; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(pp, names[k]);
        if (!a || cJSON_IsNull(a)) /* None: open_clip's defaults */
            continue;
        int n = cJSON_GetArraySize(a), ok = cJSON_IsArray(a) && (n == 3 || n == 1);
        for (int i = 0; ok && i < 3; i++) {
            const cJSON *v = cJSON_GetArrayItem(a, n == 1 ? 0 : i);
            ok = cJSON_IsNumber(v) && isfinite(v->valuedouble) && (k == 0 || v->valuedouble > 0);
            if (ok)
                dst[k][i] = (float)v->valuedouble;
        }
        if (!ok) {
            tsr_error_set(r->err, TSR_ERR_FORMAT,
                          "%s: preprocess_cfg.%s must be 3 finite numbers%s", r->path, names[k],
                          k ? ", all positive" : "");
            r->bad = 1;
        }
    }
    const cJSON *interp = cJSON_GetObjectItemCaseSensitive(pp, "interpolation");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(pp, "resize_mode");
    if (cJSON_IsNull(interp))
        interp = NULL;
    if (cJSON_IsNull(mode))
        mode = NULL;
    /* "random" is bicubic at inference (open_clip's image_transform) */
    if (!r->bad && interp &&
        !(cJSON_IsString(interp) && (strcmp(interp->valuestring, "bicubic") == 0 ||
                                     strcmp(interp->valuestring, "random") == 0))) {
        tsr_error_set(r->err, TSR_ERR_UNSUPPORTED,
                      "%s: preprocess_cfg.interpolation: only \"bicubic\" (and \"random\", "
                      "bicubic at inference) is supported", r->path);
        r->bad = 1;
    }
    if (!r->bad && mode && cJSON_IsString(mode) && strcmp(mode->valuestring, "squash") == 0) {
        c->pp.shortest_edge = 0;
        c->pp.resize_w = c->pp.resize_h = size;
    } else if (!r->bad && mode &&
               !(cJSON_IsString(mode) && strcmp(mode->valuestring, "shortest") == 0)) {
        tsr_error_set(r->err, TSR_ERR_UNSUPPORTED,
                      "%s: preprocess_cfg.resize_mode: only \"shortest\" and \"squash\" are "
                      "supported",
                      r->path);
        r->bad = 1;
    }
}

/* open_clip_config.json: {"model_cfg": {embed_dim, quick_gelu, custom_text,
 * vision_cfg, text_cfg}, "preprocess_cfg": {...}}, with open_clip's defaults. */
static tsr_status parse_openclip_config(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clip_model *c = CLIP(m);
    char path[4200];
    tsr_src_path(src, "open_clip_config.json", path, sizeof path);
    cJSON *root = tsr_src_json(src, "open_clip_config.json", 1 << 20, err);
    if (!root)
        return err->code;
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(root, "model_cfg");
    tsr_cfg_reader r = {mc, path, "model_cfg", err, 0};
    if (!cJSON_IsObject(mc)) {
        tsr_error_set(err, TSR_ERR_FORMAT, "%s: no \"model_cfg\" object", path);
        r.bad = 1;
    }
    int proj = tsr_cfg_int(&r, "embed_dim", 512, 1, 16384);
    const cJSON *qg = cJSON_GetObjectItemCaseSensitive(mc, "quick_gelu");
    tsr_act act = cJSON_IsTrue(qg) ? TSR_ACT_QUICK_GELU : TSR_ACT_GELU;
    c->openclip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mc, "custom_text")) ? 2 : 1;
    const cJSON *mm = cJSON_GetObjectItemCaseSensitive(mc, "multimodal_cfg");
    c->coca = mm && !cJSON_IsNull(mm);
    if (c->coca)
        c->openclip = 2; /* CoCa's text tower is `text.` */
    if (!r.bad && c->coca && !cJSON_IsObject(mm)) {
        tsr_error_set(err, TSR_ERR_FORMAT, "%s: model_cfg.multimodal_cfg is not an object", path);
        r.bad = 1;
    }
    if (!r.bad && c->coca &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mc, "custom_text"))) {
        tsr_error_set(err, TSR_ERR_FORMAT,
                      "%s: model_cfg.multimodal_cfg without \"custom_text\": true; open_clip "
                      "builds a CoCa only with it (and fails on this config)", path);
        r.bad = 1;
    }
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(mc, "pad_id");
    if (!r.bad && c->coca && pid && !cJSON_IsNull(pid) &&
        !(cJSON_IsNumber(pid) && pid->valuedouble == 0)) {
        tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                      "%s: model_cfg.pad_id other than 0 is not supported (open_clip's "
                      "tokenizer pads with 0)", path);
        r.bad = 1;
    }
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(mc, "init_logit_bias");
    if (!r.bad && lb && !cJSON_IsNull(lb)) {
        tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                      "%s: model_cfg.init_logit_bias: a SigLIP checkpoint (sigmoid scores); "
                      "tessera does not load SigLIP yet",
                      path);
        r.bad = 1;
    }
    r.obj = cJSON_GetObjectItemCaseSensitive(mc, "text_cfg");
    r.section = "model_cfg.text_cfg";
    oc_refuse(&r, c->coca ? oc_coca_text_fixed : oc_text_fixed);
    if (!r.bad && c->coca &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.obj, "embed_cls"))) {
        tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                      "%s: a CoCa whose text_cfg.embed_cls is not true; tessera loads CoCa with "
                      "its class token", path);
        r.bad = 1;
    }
    c->txt.vocab = c->vocab = tsr_cfg_int(&r, "vocab_size", 49408, 1, 1 << 22);
    c->txt.max_pos = c->ctx = tsr_cfg_int(&r, "context_length", 77, 2, 1 << 16);
    if (c->coca)
        c->txt.max_pos = c->ctx + 1; /* the class token's position */
    int td = tsr_cfg_int(&r, "width", 512, 1, 16384);
    int th = tsr_cfg_int(&r, "heads", 8, 1, 1024);
    int tl = tsr_cfg_int(&r, "layers", 12, 0, 256);
    int tf = oc_mlp(&r, td);
    float teps = oc_eps(&r);
    r.obj = cJSON_GetObjectItemCaseSensitive(mc, "vision_cfg");
    r.section = "model_cfg.vision_cfg";
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(r.obj, "layers");
    if (!r.bad && cJSON_IsArray(layers)) {
        tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                      "%s: vision_cfg.layers is a list: a ResNet image tower, which tessera does "
                      "not load (ViT towers only)",
                      path);
        r.bad = 1;
    }
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(r.obj, "attentional_pool");
    int pool = cJSON_IsTrue(ap);
    if (!r.bad && (c->coca ? !pool : ap && !cJSON_IsBool(ap) && !cJSON_IsNull(ap))) {
        char *v = ap ? cJSON_PrintUnformatted(ap) : NULL;
        tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                      "%s: vision_cfg.attentional_pool = %s is not supported (tessera loads "
                      "open_clip's single attentional pooler%s)",
                      path, v ? v : "absent", c->coca ? ", which CoCa has" : "");
        free(v);
        r.bad = 1;
    }
    oc_refuse(&r, pool ? oc_coca_vision_fixed : oc_vision_fixed);
    int nq = pool ? tsr_cfg_int(&r, "attn_pooler_queries", 256, 1, 4096) : 0;
    int ph = pool ? tsr_cfg_int(&r, "attn_pooler_heads", 8, 1, 1024) : 0;
    int vd = tsr_cfg_int(&r, "width", 768, 1, 16384);
    int hw = tsr_cfg_int(&r, "head_width", 64, 1, 16384);
    int vl = tsr_cfg_int(&r, "layers", 12, 0, 256);
    int vf = oc_mlp(&r, vd);
    int image = oc_square(&r, "image_size", 224);
    int patch = oc_square(&r, "patch_size", 16);
    float veps = oc_eps(&r);
    if (!r.bad && (vd % hw)) {
        tsr_error_set(err, TSR_ERR_FORMAT, "%s: vision_cfg.width %d is not a multiple of head_width %d",
                      path, vd, hw);
        r.bad = 1;
    }
    int vh = hw > 0 && vd % hw == 0 ? vd / hw : 1;
    c->txt.eos_id = -1; /* set from the tokenizer: open_clip pools at its end token */
    if (!r.bad && pool && (proj % ph || proj / ph > TSR_ATT_MAX_DH)) {
        tsr_error_set(err, TSR_ERR_FORMAT,
                      "%s: embed_dim %d does not split into vision_cfg.attn_pooler_heads %d heads "
                      "of at most %d", path, proj, ph, TSR_ATT_MAX_DH);
        r.bad = 1;
    }
    /* the multimodal decoder */
    int md = 0, mh = 0, ml = 0, mctx = 0;
    if (c->coca && !r.bad) {
        r.obj = mm;
        r.section = "model_cfg.multimodal_cfg";
        oc_refuse(&r, oc_coca_mm_fixed);
        md = tsr_cfg_int(&r, "width", 512, 1, 16384);
        mh = tsr_cfg_int(&r, "heads", 8, 1, 1024);
        ml = tsr_cfg_int(&r, "layers", 12, 0, 256);
        mctx = tsr_cfg_int(&r, "context_length", 77, 2, 1 << 16);
        if (!r.bad && (md != proj || md != td)) {
            tsr_error_set(err, TSR_ERR_FORMAT,
                          "%s: multimodal_cfg.width %d must equal embed_dim %d and text_cfg.width "
                          "%d (the decoder reads the text tokens and the image tokens)",
                          path, md, proj, td);
            r.bad = 1;
        }
    }
    if (!r.bad) {
        build_towers(c, image, patch, vd, vl, vh, vf, td, tl, th, tf, proj, veps, teps, act, act);
        if (pool) { /* every token to the pooler, then ln_post and proj over P */
            c->vit.enc.final_ln = TSR_LN_NONE;
            c->vit.enc.pool = 0;
            c->vit.enc.proj_dim = 0;
            c->vit.pool_queries = nq;
            c->vit.pool_heads = ph;
            c->vit.pool_eps = 1e-5f; /* AttentionalPooler's own LayerNorms */
            c->vit.post = (tsr_encoder_cfg){{proj, 1, 1, veps, act, 0, 0}, 0, 0, TSR_LN_ALL, 1,
                                            proj, 0};
            c->pool_same = vd == proj;
        }
        if (c->coca) { /* the class token last, after padding that it does not attend to */
            c->txt.pool_last = 1;
            c->txt.enc.use_lens = 1;
            int n = tl + 2 * ml;
            c->dcfg = calloc((size_t)n + 1, sizeof *c->dcfg);
            if (!c->dcfg) {
                tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
                r.bad = 1;
            }
            for (int i = 0; i < n && c->dcfg; i++) {
                if (i < tl)
                    c->dcfg[i] = (tsr_dec_cfg){td, th, tf, teps, act, 0, 0, 0, 1, 0};
                else if ((i - tl) % 2 == 0)
                    c->dcfg[i] = (tsr_dec_cfg){md, mh, 4 * md, 1e-5f, act, 0, 0, 0, 1, 0};
                else
                    c->dcfg[i] = (tsr_dec_cfg){md, mh, 4 * md, 1e-5f, act, 0, proj, 1, 0, 1};
            }
            c->dec = (tsr_decoder_cfg){{td, th, tf, teps, act, 0, 0, 0, 1, 0}, n, c->vocab,
                                       c->ctx < mctx ? c->ctx : mctx, 1, 0, TSR_ACT_NONE, c->dcfg,
                                       1e-5f}; /* its ln_final: PyTorch's eps */
        }
        if (patch > image) {
            tsr_error_set(err, TSR_ERR_FORMAT, "%s: patch_size %d exceeds image_size %d", path,
                          patch, image);
            r.bad = 1;
        }
    }
    r.section = "preprocess_cfg";
    oc_preprocess(c, cJSON_GetObjectItemCaseSensitive(root, "preprocess_cfg"), &r);
    cJSON_Delete(root);
    if (r.bad)
        return err->code;
    tsr_status rc = tsr_enc_cfg_check(&c->txt.enc.layer, path, err);
    TSR_TRY(rc, tsr_enc_cfg_check(&c->vit.enc.layer, path, err));
    for (int i = 0; c->coca && i < c->dec.n_layers && rc == TSR_OK; i++) {
        tsr_enc_cfg e = tsr_dec_enc_cfg(&c->dcfg[i]);
        rc = tsr_enc_cfg_check(&e, path, err);
    }
    return rc;
}

/* ---- the HF CLIPModel tensor table ---- */

enum { OBJ_TXT, OBJ_TXT_L, OBJ_VIT, OBJ_VIT_L, OBJ_DEC, OBJ_DSELF, OBJ_DCROSS };
/* symbolic dimensions (0 ends a shape) */
enum { TD = 1, TF, TV, TPOS, P, VD, VF, VC, VPATCH, VNP1, TD3, VD3, NQ, P2, P3, TV1, MF };

static int64_t clip_dim(const void *cfg, int code)
{
    const clip_model *c = cfg;
    switch (code) {
    case TD: return c->txt.enc.layer.dim;
    case TF: return c->txt.enc.layer.ffn;
    case TV: return c->txt.vocab;
    case TPOS: return c->txt.max_pos;
    case P: return c->proj_dim;
    case VD: return c->vit.enc.layer.dim;
    case VF: return c->vit.enc.layer.ffn;
    case VC: return c->vit.channels;
    case VPATCH: return c->vit.patch;
    case VNP1: return tsr_vit_seq_len(&c->vit);
    case TD3: return 3 * (int64_t)c->txt.enc.layer.dim;
    case VD3: return 3 * (int64_t)c->vit.enc.layer.dim;
    case NQ: return c->vit.pool_queries;
    case P2: return 2 * (int64_t)c->proj_dim;
    case P3: return 3 * (int64_t)c->proj_dim;
    case TV1: return (int64_t)c->vocab + 1;
    case MF: return 4 * (int64_t)c->proj_dim;
    }
    return -1;
}

#define LW(f) offsetof(tsr_enc_weights, f)
#define LIN TSR_W_LINEAR
/* one encoder layer of a tower: name prefix, layer object, width and MLP symbols */
#define LAYER(pfx, obj, D, F)                                                              \
    {pfx ".self_attn.q_proj.weight", NULL, obj, LW(qkv_w), 0, 3, {D, D}, LIN},             \
    {pfx ".self_attn.k_proj.weight", NULL, obj, LW(qkv_w), 1, 3, {D, D}, LIN},             \
    {pfx ".self_attn.v_proj.weight", NULL, obj, LW(qkv_w), 2, 3, {D, D}, LIN},             \
    {pfx ".self_attn.q_proj.bias", NULL, obj, LW(qkv_b), 0, 3, {D}, 0},                    \
    {pfx ".self_attn.k_proj.bias", NULL, obj, LW(qkv_b), 1, 3, {D}, 0},                    \
    {pfx ".self_attn.v_proj.bias", NULL, obj, LW(qkv_b), 2, 3, {D}, 0},                    \
    {pfx ".self_attn.out_proj.weight", NULL, obj, LW(o_w), 0, 0, {D, D}, LIN},             \
    {pfx ".self_attn.out_proj.bias", NULL, obj, LW(o_b), 0, 0, {D}, 0},                    \
    {pfx ".layer_norm1.weight", NULL, obj, LW(ln1_g), 0, 0, {D}, 0},                       \
    {pfx ".layer_norm1.bias", NULL, obj, LW(ln1_b), 0, 0, {D}, 0},                         \
    {pfx ".layer_norm2.weight", NULL, obj, LW(ln2_g), 0, 0, {D}, 0},                       \
    {pfx ".layer_norm2.bias", NULL, obj, LW(ln2_b), 0, 0, {D}, 0},                         \
    {pfx ".mlp.fc1.weight", NULL, obj, LW(fc1_w), 0, 0, {F, D}, LIN},                      \
    {pfx ".mlp.fc1.bias", NULL, obj, LW(fc1_b), 0, 0, {F}, 0},                             \
    {pfx ".mlp.fc2.weight", NULL, obj, LW(fc2_w), 0, 0, {D, F}, LIN},                      \
    {pfx ".mlp.fc2.bias", NULL, obj, LW(fc2_b), 0, 0, {D}, 0}

#define TW(f) offsetof(tsr_textenc_w, f)
#define VW(f) offsetof(tsr_vit_w, f)
static const tsr_wrow clip_table[] = {
    {"text_model.embeddings.token_embedding.weight", NULL, OBJ_TXT, TW(tok), 0, 0, {TV, TD}, 0},
    {"text_model.embeddings.position_embedding.weight", NULL, OBJ_TXT, TW(pos), 0, 0, {TPOS, TD}, 0},
    LAYER("text_model.encoder.layers.%d", OBJ_TXT_L, TD, TF),
    {"text_model.final_layer_norm.weight", NULL, OBJ_TXT, TW(enc.fin_g), 0, 0, {TD}, 0},
    {"text_model.final_layer_norm.bias", NULL, OBJ_TXT, TW(enc.fin_b), 0, 0, {TD}, 0},
    {"text_projection.weight", NULL, OBJ_TXT, TW(enc.proj), 0, 0, {P, TD}, LIN},
    {"vision_model.embeddings.class_embedding", NULL, OBJ_VIT, VW(cls), 0, 0, {VD}, 0},
    {"vision_model.embeddings.patch_embedding.weight", NULL, OBJ_VIT, VW(patch_w), 0, 0, {VD, VC, VPATCH, VPATCH}, LIN},
    {"vision_model.embeddings.position_embedding.weight", NULL, OBJ_VIT, VW(pos), 0, 0, {VNP1, VD}, 0},
    {"vision_model.pre_layrnorm.weight", NULL, OBJ_VIT, VW(enc.pre_g), 0, 0, {VD}, 0},
    {"vision_model.pre_layrnorm.bias", NULL, OBJ_VIT, VW(enc.pre_b), 0, 0, {VD}, 0},
    LAYER("vision_model.encoder.layers.%d", OBJ_VIT_L, VD, VF),
    {"vision_model.post_layernorm.weight", NULL, OBJ_VIT, VW(enc.fin_g), 0, 0, {VD}, 0},
    {"vision_model.post_layernorm.bias", NULL, OBJ_VIT, VW(enc.fin_b), 0, 0, {VD}, 0},
    {"visual_projection.weight", NULL, OBJ_VIT, VW(enc.proj), 0, 0, {P, VD}, LIN},
};

/* open_clip's names: nn.MultiheadAttention's stacked in_proj, c_fc/c_proj,
 * and the projections stored (width, embed_dim) for `x @ proj`. */
#define OC_LAYER(pfx, obj, D, D3, F)                                                       \
    {pfx ".attn.in_proj_weight", NULL, obj, LW(qkv_w), 0, 0, {D3, D}, LIN},               \
    {pfx ".attn.in_proj_bias", NULL, obj, LW(qkv_b), 0, 0, {D3}, 0},                      \
    {pfx ".attn.out_proj.weight", NULL, obj, LW(o_w), 0, 0, {D, D}, LIN},                 \
    {pfx ".attn.out_proj.bias", NULL, obj, LW(o_b), 0, 0, {D}, 0},                        \
    {pfx ".ln_1.weight", NULL, obj, LW(ln1_g), 0, 0, {D}, 0},                             \
    {pfx ".ln_1.bias", NULL, obj, LW(ln1_b), 0, 0, {D}, 0},                               \
    {pfx ".ln_2.weight", NULL, obj, LW(ln2_g), 0, 0, {D}, 0},                             \
    {pfx ".ln_2.bias", NULL, obj, LW(ln2_b), 0, 0, {D}, 0},                               \
    {pfx ".mlp.c_fc.weight", NULL, obj, LW(fc1_w), 0, 0, {F, D}, LIN},                    \
    {pfx ".mlp.c_fc.bias", NULL, obj, LW(fc1_b), 0, 0, {F}, 0},                           \
    {pfx ".mlp.c_proj.weight", NULL, obj, LW(fc2_w), 0, 0, {D, F}, LIN},                  \
    {pfx ".mlp.c_proj.bias", NULL, obj, LW(fc2_b), 0, 0, {D}, 0}
#define OC_TEXT(t)                                                                          \
    {t "token_embedding.weight", NULL, OBJ_TXT, TW(tok), 0, 0, {TV, TD}, 0},                 \
    {t "positional_embedding", NULL, OBJ_TXT, TW(pos), 0, 0, {TPOS, TD}, 0},                 \
    OC_LAYER(t "transformer.resblocks.%d", OBJ_TXT_L, TD, TD3, TF),                          \
    {t "ln_final.weight", NULL, OBJ_TXT, TW(enc.fin_g), 0, 0, {TD}, 0},                      \
    {t "ln_final.bias", NULL, OBJ_TXT, TW(enc.fin_b), 0, 0, {TD}, 0},                        \
    {t "text_projection", NULL, OBJ_TXT, TW(enc.proj), 0, 0, {TD, P}, LIN | TSR_W_T}
#define OC_VISION                                                                           \
    {"visual.class_embedding", NULL, OBJ_VIT, VW(cls), 0, 0, {VD}, 0},                       \
    {"visual.conv1.weight", NULL, OBJ_VIT, VW(patch_w), 0, 0, {VD, VC, VPATCH, VPATCH}, LIN}, \
    {"visual.positional_embedding", NULL, OBJ_VIT, VW(pos), 0, 0, {VNP1, VD}, 0},            \
    {"visual.ln_pre.weight", NULL, OBJ_VIT, VW(enc.pre_g), 0, 0, {VD}, 0},                   \
    {"visual.ln_pre.bias", NULL, OBJ_VIT, VW(enc.pre_b), 0, 0, {VD}, 0},                     \
    OC_LAYER("visual.transformer.resblocks.%d", OBJ_VIT_L, VD, VD3, VF),                     \
    {"visual.ln_post.weight", NULL, OBJ_VIT, VW(enc.fin_g), 0, 0, {VD}, 0},                  \
    {"visual.ln_post.bias", NULL, OBJ_VIT, VW(enc.fin_b), 0, 0, {VD}, 0},                    \
    {"visual.proj", NULL, OBJ_VIT, VW(enc.proj), 0, 0, {VD, P}, LIN | TSR_W_T}
static const tsr_wrow openclip_table[] = {OC_TEXT(""), OC_VISION};
static const tsr_wrow openclip_custom_table[] = {OC_TEXT("text."), OC_VISION};
#define N_ROWS(t) (int)(sizeof t / sizeof t[0])

/* CoCa (and a CLIP with open_clip's attentional pooler): the image tower
 * without ln_post and proj, the pooler, then ln_post and proj over P. */
#define PW(f) offsetof(tsr_vit_w, f)
#define DL(f) offsetof(tsr_dec_weights, f)
#define DW(f) offsetof(tsr_decoder_w, f)
#define PL "visual.attn_pool."
static const tsr_wrow oc_vision_pooled[] = {
    {"visual.class_embedding", NULL, OBJ_VIT, VW(cls), 0, 0, {VD}, 0},
    {"visual.conv1.weight", NULL, OBJ_VIT, VW(patch_w), 0, 0, {VD, VC, VPATCH, VPATCH}, LIN},
    {"visual.positional_embedding", NULL, OBJ_VIT, VW(pos), 0, 0, {VNP1, VD}, 0},
    {"visual.ln_pre.weight", NULL, OBJ_VIT, VW(enc.pre_g), 0, 0, {VD}, 0},
    {"visual.ln_pre.bias", NULL, OBJ_VIT, VW(enc.pre_b), 0, 0, {VD}, 0},
    OC_LAYER("visual.transformer.resblocks.%d", OBJ_VIT_L, VD, VD3, VF),
    {PL "query", NULL, OBJ_VIT, PW(pool_query), 0, 0, {NQ, P}, 0},
    {PL "ln_q.weight", NULL, OBJ_VIT, PW(pool_lnq_g), 0, 0, {P}, 0},
    {PL "ln_q.bias", NULL, OBJ_VIT, PW(pool_lnq_b), 0, 0, {P}, 0},
    {PL "ln_k.weight", NULL, OBJ_VIT, PW(pool_lnk_g), 0, 0, {VD}, 0},
    {PL "ln_k.bias", NULL, OBJ_VIT, PW(pool_lnk_b), 0, 0, {VD}, 0},
    {PL "attn.in_proj_bias", NULL, OBJ_VIT, PW(pool_q_b), 0, 0, {P3}, 0, 0, P},
    {PL "attn.in_proj_bias", NULL, OBJ_VIT, PW(pool_kv_b), 0, 0, {P3}, 0, P, P2},
    {PL "attn.out_proj.weight", NULL, OBJ_VIT, PW(pool_o_w), 0, 0, {P, P}, LIN},
    {PL "attn.out_proj.bias", NULL, OBJ_VIT, PW(pool_o_b), 0, 0, {P}, 0},
    {"visual.ln_post.weight", NULL, OBJ_VIT, PW(post.fin_g), 0, 0, {P}, 0},
    {"visual.ln_post.bias", NULL, OBJ_VIT, PW(post.fin_b), 0, 0, {P}, 0},
    {"visual.proj", NULL, OBJ_VIT, PW(post.proj), 0, 0, {P, P}, LIN | TSR_W_T},
};
/* nn.MultiheadAttention with kdim != embed_dim keeps q, k, v apart */
static const tsr_wrow oc_pool_apart[] = {
    {PL "attn.q_proj_weight", NULL, OBJ_VIT, PW(pool_q_w), 0, 0, {P, P}, LIN},
    {PL "attn.k_proj_weight", NULL, OBJ_VIT, PW(pool_kv_w), 0, 2, {P, VD}, LIN},
    {PL "attn.v_proj_weight", NULL, OBJ_VIT, PW(pool_kv_w), 1, 2, {P, VD}, LIN},
};
static const tsr_wrow oc_pool_same[] = {
    {PL "attn.in_proj_weight", NULL, OBJ_VIT, PW(pool_q_w), 0, 0, {P3, P}, LIN, 0, P},
    {PL "attn.in_proj_weight", NULL, OBJ_VIT, PW(pool_kv_w), 0, 0, {P3, P}, LIN, P, P2},
};
/* CoCa's text tower: the class embedding is token row `vocab` */
static const tsr_wrow oc_coca_text[] = {
    {"text.token_embedding.weight", NULL, OBJ_TXT, TW(tok), 0, 0, {TV, TD}, TSR_W_PLACE, 0, TV1},
    {"text.cls_emb", NULL, OBJ_TXT, TW(tok), 0, 0, {TD}, TSR_W_PLACE, TV, TV1},
    {"text.positional_embedding", NULL, OBJ_TXT, TW(pos), 0, 0, {TPOS, TD}, 0},
    OC_LAYER("text.transformer.resblocks.%d", OBJ_TXT_L, TD, TD3, TF),
    {"text.ln_final.weight", NULL, OBJ_TXT, TW(enc.fin_g), 0, 0, {TD}, 0},
    {"text.ln_final.bias", NULL, OBJ_TXT, TW(enc.fin_b), 0, 0, {TD}, 0},
    {"text.text_projection", NULL, OBJ_TXT, TW(enc.proj), 0, 0, {TD, P}, LIN | TSR_W_T},
};
/* the multimodal decoder: layer i's self-attention block and its
 * cross-attention block (ln_1_kv on the image tokens), each with an MLP */
#define DB(pfx, obj)                                                                        \
    {pfx ".ln_2.weight", NULL, obj, DL(ln2_g), 0, 0, {P}, 0},                                 \
    {pfx ".ln_2.bias", NULL, obj, DL(ln2_b), 0, 0, {P}, 0},                                   \
    {pfx ".mlp.c_fc.weight", NULL, obj, DL(fc1_w), 0, 0, {MF, P}, LIN},                       \
    {pfx ".mlp.c_fc.bias", NULL, obj, DL(fc1_b), 0, 0, {MF}, 0},                              \
    {pfx ".mlp.c_proj.weight", NULL, obj, DL(fc2_w), 0, 0, {P, MF}, LIN},                     \
    {pfx ".mlp.c_proj.bias", NULL, obj, DL(fc2_b), 0, 0, {P}, 0}
#define DS "text_decoder.resblocks.%d"
#define DX "text_decoder.cross_attn.%d"
static const tsr_wrow oc_coca_decoder[] = {
    {"text_decoder.ln_final.weight", NULL, OBJ_DEC, DW(fin_g), 0, 0, {P}, 0},
    {"text_decoder.ln_final.bias", NULL, OBJ_DEC, DW(fin_b), 0, 0, {P}, 0},
    {"text_decoder.text_projection", NULL, OBJ_DEC, DW(proj), 0, 0, {P, TV}, LIN | TSR_W_T},
    {DS ".ln_1.weight", NULL, OBJ_DSELF, DL(ln1_g), 0, 0, {P}, 0},
    {DS ".ln_1.bias", NULL, OBJ_DSELF, DL(ln1_b), 0, 0, {P}, 0},
    {DS ".attn.in_proj_weight", NULL, OBJ_DSELF, DL(qkv_w), 0, 0, {P3, P}, LIN},
    {DS ".attn.in_proj_bias", NULL, OBJ_DSELF, DL(qkv_b), 0, 0, {P3}, 0},
    {DS ".attn.out_proj.weight", NULL, OBJ_DSELF, DL(o_w), 0, 0, {P, P}, LIN},
    {DS ".attn.out_proj.bias", NULL, OBJ_DSELF, DL(o_b), 0, 0, {P}, 0},
    DB(DS, OBJ_DSELF),
    {DX ".ln_1.weight", NULL, OBJ_DCROSS, DL(lnx_g), 0, 0, {P}, 0},
    {DX ".ln_1.bias", NULL, OBJ_DCROSS, DL(lnx_b), 0, 0, {P}, 0},
    {DX ".ln_1_kv.weight", NULL, OBJ_DCROSS, DL(lnkv_g), 0, 0, {P}, 0},
    {DX ".ln_1_kv.bias", NULL, OBJ_DCROSS, DL(lnkv_b), 0, 0, {P}, 0},
    {DX ".attn.in_proj_weight", NULL, OBJ_DCROSS, DL(xq_w), 0, 0, {P3, P}, LIN, 0, P},
    {DX ".attn.in_proj_weight", NULL, OBJ_DCROSS, DL(xkv_w), 0, 0, {P3, P}, LIN, P, P2},
    {DX ".attn.in_proj_bias", NULL, OBJ_DCROSS, DL(xq_b), 0, 0, {P3}, 0, 0, P},
    {DX ".attn.in_proj_bias", NULL, OBJ_DCROSS, DL(xkv_b), 0, 0, {P3}, 0, P, P2},
    {DX ".attn.out_proj.weight", NULL, OBJ_DCROSS, DL(xo_w), 0, 0, {P, P}, LIN},
    {DX ".attn.out_proj.bias", NULL, OBJ_DCROSS, DL(xo_b), 0, 0, {P}, 0},
    DB(DX, OBJ_DCROSS),
};

/* Appends n rows to a growing table. */
static int rows_add(tsr_wrow *dst, int at, const tsr_wrow *src, int n)
{
    memcpy(dst + at, src, sizeof *src * (size_t)n);
    return at + n;
}

static const tsr_wrow oc_text_plain[] = {OC_TEXT("")};
static const tsr_wrow oc_text_custom[] = {OC_TEXT("text.")};

/* The rows of an open_clip checkpoint with the attentional pooler (and of
 * CoCa), malloc'd. */
static tsr_wrow *pooled_table(const clip_model *c, int *n)
{
    size_t cap = N_ROWS(oc_coca_text) + N_ROWS(oc_text_plain) + N_ROWS(oc_vision_pooled) +
                 N_ROWS(oc_pool_apart) + N_ROWS(oc_coca_decoder);
    tsr_wrow *t = malloc(sizeof *t * cap);
    if (!t)
        return NULL;
    int k = c->coca             ? rows_add(t, 0, oc_coca_text, N_ROWS(oc_coca_text))
            : c->openclip == 2 ? rows_add(t, 0, oc_text_custom, N_ROWS(oc_text_custom))
                               : rows_add(t, 0, oc_text_plain, N_ROWS(oc_text_plain));
    k = rows_add(t, k, oc_vision_pooled, N_ROWS(oc_vision_pooled));
    k = c->pool_same ? rows_add(t, k, oc_pool_same, N_ROWS(oc_pool_same))
                     : rows_add(t, k, oc_pool_apart, N_ROWS(oc_pool_apart));
    if (c->coca)
        k = rows_add(t, k, oc_coca_decoder, N_ROWS(oc_coca_decoder));
    *n = k;
    return t;
}

/* An open_clip checkpoint with the attentional pooler, CoCa's decoder
 * too: its text layers are the text tower's. */
static tsr_status load_pooled(tsr_model *m, const tsr_st *st, uint64_t *rng, tsr_error *err)
{
    clip_model *c = CLIP(m);
    int vl = c->vit.enc.n_layers, tl = c->txt.enc.n_layers, n = 0;
    int nd = c->coca ? c->dec.n_layers : 0, ml = c->coca ? (nd - tl) / 2 : 0;
    tsr_wrow *rows = pooled_table(c, &n);
    c->dlayers = calloc((size_t)nd + 1, sizeof *c->dlayers);
    if (!rows || !c->dlayers) {
        free(rows);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    tsr_wtable t = {rows,
                    n,
                    {{&c->txt_w, 0, 1},
                     {c->txt_w.enc.layers, sizeof(tsr_enc_weights), tl},
                     {&c->vit_w, 0, 1},
                     {c->vit_w.enc.layers, sizeof(tsr_enc_weights), vl},
                     {&c->dec_w, 0, 1},
                     {c->dlayers + tl, 2 * sizeof(tsr_dec_weights), ml},
                     {c->dlayers + tl + 1, 2 * sizeof(tsr_dec_weights), ml}},
                    "",
                    clip_dim,
                    c};
    tsr_status rc = tsr_model_load_table(m, &t, st, rng, err);
    free(rows);
    if (rc != TSR_OK || !c->coca)
        return rc;
    for (int i = 0; i < tl; i++) { /* the text layers, shared */
        const tsr_enc_weights *e = &c->txt_w.enc.layers[i];
        tsr_dec_weights *d = &c->dlayers[i];
        d->ln1_g = e->ln1_g, d->ln1_b = e->ln1_b, d->qkv_w = e->qkv_w, d->qkv_b = e->qkv_b;
        d->o_w = e->o_w, d->o_b = e->o_b, d->ln2_g = e->ln2_g, d->ln2_b = e->ln2_b;
        d->fc1_w = e->fc1_w, d->fc1_b = e->fc1_b, d->fc2_w = e->fc2_w, d->fc2_b = e->fc2_b;
    }
    c->dec_w.tok = c->txt_w.tok;
    c->dec_w.pos = c->txt_w.pos;
    c->dec_w.layers = c->dlayers;
    c->txt.vocab = c->vocab + 1; /* the class embedding is the last token row */
    return rc;
}

/* Uploads the table's weights (random ones when st is NULL). */
static tsr_status load_weights(tsr_model *m, const tsr_st *st, uint64_t *rng, tsr_error *err)
{
    clip_model *c = CLIP(m);
    int vl = c->vit.enc.n_layers, tl = c->txt.enc.n_layers;
    c->layers = calloc((size_t)vl + tl + 1, sizeof *c->layers);
    if (!c->layers)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    c->vit_w.enc.layers = c->layers;
    c->txt_w.enc.layers = c->layers + vl;
    if (c->vit.pool_queries > 0)
        return load_pooled(m, st, rng, err);
    tsr_wtable t = {c->openclip == 2   ? openclip_custom_table
                    : c->openclip == 1 ? openclip_table
                                       : clip_table,
                    c->openclip == 2   ? N_ROWS(openclip_custom_table)
                    : c->openclip == 1 ? N_ROWS(openclip_table)
                                       : N_ROWS(clip_table),
                    {{&c->txt_w, 0, 1},
                     {c->txt_w.enc.layers, sizeof(tsr_enc_weights), tl},
                     {&c->vit_w, 0, 1},
                     {c->vit_w.enc.layers, sizeof(tsr_enc_weights), vl}},
                    "",
                    clip_dim,
                    c};
    return tsr_model_load_table(m, &t, st, rng, err);
}

static tsr_status read_logit_scale(tsr_model *m, const tsr_st *st, tsr_error *err)
{
    const tsr_st_tensor *ls = tsr_st_find(st, "logit_scale");
    if (!ls)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: missing tensor 'logit_scale'", m->name);
    if (ls->numel != 1 || ls->ndim > 1) {
        char got[128];
        tsr_st_shape_str(ls->shape, ls->ndim, got, sizeof got);
        return tsr_error_set(err, TSR_ERR_SHAPE,
                             "%s: tensor 'logit_scale' has shape %s, config expects []", ls->file,
                             got);
    }
    float v;
    tsr_status rc = tsr_st_to_f32(ls, &v, err);
    CLIP(m)->logit_scale = expf(v);
    return rc;
}

static tsr_status load_tokenizer(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clip_model *c = CLIP(m);
    tsr_tok_files f;
    tsr_status rc = tsr_src_tokenizer(src, "vocab.json", "merges.txt", 0, &f, err);
    if (rc == TSR_OK && f.json)
        rc = tsr_tokenizer_load_json(f.text[0], f.len[0], f.path[0], &c->tok, err);
    else if (rc == TSR_OK)
        rc = tsr_tokenizer_load_vocab_merges(f.text[0], f.len[0], f.path[0], f.text[1], f.len[1],
                                             f.path[1], &c->tok, err);
    tsr_tok_files_free(&f);
    return rc;
}

static int clip_detect(const tsr_source *src, const cJSON *config)
{
    return tsr_model_type_is(config, "clip") ||
           (!config && tsr_src_exists(src, "open_clip_config.json"));
}

/* open_clip's tokenizer files: those of the repository (vocab.json and
 * merges.txt, or tokenizer.json), encoding as open_clip's SimpleTokenizer. */
static tsr_status load_openclip_tokenizer(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    clip_model *c = CLIP(m);
    if (!tsr_src_exists(src, "tokenizer.json") && !tsr_src_exists(src, "vocab.json"))
        return tsr_error_set(
            err, TSR_ERR_FORMAT,
            "%s: no tokenizer (tokenizer.json, or vocab.json and merges.txt); open_clip uses "
            "its built-in CLIP tokenizer for this model: copy vocab.json and merges.txt from "
            "openai/clip-vit-base-patch32 into the directory",
            m->name);
    tsr_status rc = load_tokenizer(m, src, err);
    if (rc == TSR_OK)
        tsr_tokenizer_set_openclip(c->tok, 1);
    if (rc == TSR_OK) /* open_clip pools at the highest id, its end token */
        c->txt.eos_id = tsr_tokenizer_eos(c->tok);
    return rc;
}

static tsr_status clip_load(tsr_model *m, const tsr_source *src, tsr_error *err)
{
    if (!(m->data = calloc(1, sizeof(clip_model))))
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    clip_model *c = CLIP(m);
    tsr_st *st = NULL;
    tsr_status rc;
    if (!tsr_src_exists(src, "config.json")) { /* detect() saw open_clip_config.json */
        rc = parse_openclip_config(m, src, err);
        TSR_TRY(rc, load_openclip_tokenizer(m, src, err));
        tsr_src_path(src, "open_clip_config.json", c->pp_path, sizeof c->pp_path);
    } else {
        rc = parse_config(m, src, err);
        TSR_TRY(rc, load_tokenizer(m, src, err));
        TSR_TRY(rc, tsr_src_preprocess(src, c->vit.image_size, 0, &c->pp, err));
        c->pp_known = tsr_src_exists(src, "preprocessor_config.json");
        tsr_src_path(src, "preprocessor_config.json", c->pp_path, sizeof c->pp_path);
    }
    TSR_TRY(rc, tsr_st_open_source(src, &st, err));
    TSR_TRY(rc, load_weights(m, st, NULL, err));
    TSR_TRY(rc, read_logit_scale(m, st, err));
    tsr_st_close(st);
    if (rc == TSR_OK && tsr_tokenizer_vocab_size(c->tok) > c->txt.vocab)
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: the tokenizer has %d tokens but the model's vocab_size is %d",
                           m->name, tsr_tokenizer_vocab_size(c->tok), c->txt.vocab);
    return rc;
}

static void clip_free(tsr_model *m)
{
    clip_model *c = CLIP(m);
    tsr_tokenizer_free(c->tok);
    free(c->layers);
    free(c->dcfg);
    free(c->dlayers);
    free(c);
    m->data = NULL;
}

static void clip_session_free(tsr_session *s)
{
    clip_session *cs = s->data;
    tsr_vit_io_free(&cs->vit);
    tsr_textenc_io_free(&cs->txt);
    tsr_coca_session_free(cs);
    free(cs->px);
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
#define N_ARCH (int)(sizeof arch_table / sizeof arch_table[0])

int tsr_arch_names(const char **names, int max)
{
    for (int i = 0; i < N_ARCH && i < max; i++)
        names[i] = arch_table[i].name;
    return N_ARCH;
}

static int arch_index(const char *arch)
{
    for (int i = 0; i < N_ARCH; i++)
        if (strcmp(arch, arch_table[i].name) == 0)
            return i;
    return -1;
}

static void arch_towers(clip_model *c, int a)
{
    c->txt.vocab = 49408;
    c->txt.max_pos = 77;
    c->txt.eos_id = 49407;
    build_towers(c, arch_table[a].image, arch_table[a].patch, arch_table[a].v_dim,
                 arch_table[a].v_layers, arch_table[a].v_heads, 4 * arch_table[a].v_dim,
                 arch_table[a].t_dim, arch_table[a].t_layers, arch_table[a].t_heads,
                 4 * arch_table[a].t_dim, arch_table[a].proj, 1e-5f, 1e-5f, TSR_ACT_QUICK_GELU,
                 TSR_ACT_QUICK_GELU);
}

tsr_status tsr_model_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                   tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    if (strncmp(arch, "blip", 4) == 0)
        return tsr_blip_create_random(ctx, arch, out, err);
    if (strcmp(arch, "clap-htsat") == 0)
        return tsr_clap_create_random(ctx, arch, out, err);
    int a = arch_index(arch);
    if (a < 0)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "unknown architecture '%s' (known: ViT-B-32, ViT-B-16, ViT-L-14, "
                             "blip-base, blip-large, clap-htsat)", arch);
    tsr_model *m = calloc(1, sizeof *m);
    clip_model *c = calloc(1, sizeof *c);
    if (!m || !c) {
        free(m);
        free(c);
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    }
    m->ctx = tsr_ctx_retain(ctx);
    m->fam = &tsr_family_clip;
    m->data = c;
    tsr_arena_init(&m->weights, ctx);
    snprintf(m->name, sizeof m->name, "(random %s)", arch);
    tsr_sha256_hex(m->name, strlen(m->name), m->fingerprint); /* the weights follow from it */
    arch_towers(c, a);
    c->pp = tsr_preprocess_cfg_default(arch_table[a].image);
    c->pp_known = 1;
    c->logit_scale = 100.0f;
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    tsr_status rc = load_weights(m, NULL, &rng, err);
    if (rc != TSR_OK) {
        tsr_model_free(m);
        return rc;
    }
    *out = m;
    return TSR_OK;
}

/* ---- model information ---- */

#define IF_CLIP(m, expr, other) ((m)->fam == &tsr_family_clip ? (expr) : (other))

int tsr_model_image_channels(const tsr_model *m) { return IF_CLIP(m, CLIP(m)->vit.channels, 0); }
int tsr_model_image_size(const tsr_model *m) { return IF_CLIP(m, CLIP(m)->vit.image_size, 0); }
float tsr_model_logit_scale(const tsr_model *m)
{
    if (m && m->fam == &tsr_family_clap)
        return tsr_clap_logit_scale(m);
    return IF_CLIP(m, CLIP(m)->logit_scale, 1.0f);
}
const tsr_tokenizer *tsr_model_tokenizer(const tsr_model *m) { return IF_CLIP(m, CLIP(m)->tok, NULL); }
const tsr_preprocess_cfg *tsr_model_preprocess_cfg(const tsr_model *m)
{
    return IF_CLIP(m, &CLIP(m)->pp, NULL);
}

int tsr_model_preprocess_known(const tsr_model *m) { return IF_CLIP(m, CLIP(m)->pp_known, 0); }

tsr_status tsr_model_set_preprocess(tsr_model *m, const tsr_preprocess_cfg *cfg, tsr_error *err)
{
    if (!m || m->fam != &tsr_family_clip || !cfg)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "image preprocessing is set on CLIP models");
    clip_model *c = CLIP(m);
    if (cfg->crop_h != c->vit.image_size || cfg->crop_w != c->vit.image_size)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "images would come out %dx%d but the model's image size is %d",
                             cfg->crop_w, cfg->crop_h, c->vit.image_size);
    for (int i = 0; i < 3; i++)
        if (!(cfg->std[i] > 0) || cfg->mean[i] != cfg->mean[i])
            return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                 "the normalisation needs finite means and positive std");
    c->pp = *cfg;
    c->pp_known = 1;
    return TSR_OK;
}

/* Images need to know their preprocessing. */
static tsr_status need_pp(const clip_model *c, tsr_error *err)
{
    if (c->pp_known)
        return TSR_OK;
    return tsr_error_set(err, TSR_ERR_FORMAT,
                         "%s: missing, so the image size, mean and std are unknown: copy it from "
                         "the checkpoint (CLIP's is usually 224, mean 0.4815,0.4578,0.4082, std "
                         "0.2686,0.2613,0.2758), or give them (--image-size N --mean R,G,B --std "
                         "R,G,B; tsr_model_set_preprocess)",
                         c->pp_path);
}

static int clip_embed_dim(const tsr_model *m) { return CLIP(m)->proj_dim; }
static int clip_max_text_len(const tsr_model *m)
{
    return CLIP(m)->coca ? CLIP(m)->ctx : CLIP(m)->txt.max_pos;
}

/* ---- sessions ---- */

static tsr_status clip_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    cs->plan_img = cs->plan_txt = 0;
    cs->plan_cap_img = cs->plan_cap_rows = cs->plan_cap_len = 0;
    tsr_status rc = TSR_OK;
    int img = cs->want_img > cs->want_cap_img ? cs->want_img : cs->want_cap_img;
    if (cs->want_img) {
        float *px = realloc(cs->px, sizeof(float) * (size_t)cs->want_img * c->vit.channels *
                                        c->vit.image_size * c->vit.image_size);
        if (!px)
            return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        cs->px = px;
    }
    if (img)
        TSR_TRY(rc, tsr_vit_plan(s->q, &c->vit, img, &s->arena, &cs->vit, scratch, err));
    if (cs->want_cap_img)
        TSR_TRY(rc, tsr_coca_plan(s, scratch, err));
    if (cs->want_txt)
        TSR_TRY(rc, tsr_textenc_plan(s->q, &c->txt, cs->want_txt, c->txt.max_pos, &s->arena,
                                     &cs->txt, scratch, err));
    return rc;
}

/* Plans the session for images and/or texts, once. */
static tsr_status clip_ready(tsr_session *s, int images, int texts, tsr_error *err)
{
    tsr_status rc = tsr_session_need(s, &tsr_family_clip,
                                     images ? "embed images" : "embed texts with CLIP", err);
    clip_session *cs = rc == TSR_OK ? tsr_session_data(s, sizeof *cs, err) : NULL;
    if (!cs)
        return rc != TSR_OK ? rc : TSR_ERR_NOMEM;
    int text_batch = s->p.text_batch > 0 ? s->p.text_batch : 64;
    if (images)
        cs->want_img = s->p.image_batch;
    if (texts)
        cs->want_txt = text_batch;
    if (cs->plan_img == cs->want_img && cs->plan_txt == cs->want_txt)
        return TSR_OK;
    return tsr_clip_replan(s, err);
}

tsr_status tsr_clip_replan(tsr_session *s, tsr_error *err)
{
    clip_session *cs = s->data;
    tsr_status rc = tsr_session_plan(s, clip_plan, err);
    if (rc == TSR_OK) {
        cs->plan_img = cs->want_img;
        cs->plan_txt = cs->want_txt;
        cs->plan_cap_img = cs->want_cap_img;
        cs->plan_cap_rows = cs->want_cap_rows;
        cs->plan_cap_len = cs->want_cap_len;
    } else {
        /* nothing is planned now; the next call plans only what it needs, so
         * an image batch too big for the device does not stop text calls */
        cs->plan_img = cs->plan_txt = cs->want_img = cs->want_txt = 0;
        cs->plan_cap_img = cs->plan_cap_rows = cs->plan_cap_len = 0;
        cs->want_cap_img = cs->want_cap_rows = cs->want_cap_len = 0;
    }
    return rc;
}

static size_t image_floats(const clip_model *c)
{
    return (size_t)c->vit.channels * c->vit.image_size * c->vit.image_size;
}

/* Where the pixels of images [b, b+nb) come from: the caller's array as it
 * is, or staged into the session (decoded and preprocessed). */
typedef tsr_status (*pixels_fn)(const void *src, int b, int nb, const clip_model *c,
                                float *stage, const float **px, tsr_error *err);

/* Runs the image tower over n images in batches of the planned size. */
static tsr_status embed_images(tsr_session *s, int n, int normalize, float *out, pixels_fn get,
                               const void *src, tsr_error *err)
{
    tsr_status rc = clip_ready(s, 1, 0, err);
    if (rc != TSR_OK)
        return tsr_session_fail(s, rc, err);
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    for (int b = 0; b < n && rc == TSR_OK; b += cs->plan_img) {
        int nb = n - b < cs->plan_img ? n - b : cs->plan_img;
        const float *px = NULL;
        rc = get(src, b, nb, c, cs->px, &px, err);
        TSR_TRY(rc, tsr_vit_forward(s->q, &c->vit, &c->vit_w, &cs->vit, &s->scratch, px, nb,
                                    normalize, out + (size_t)b * c->proj_dim, err));
    }
    return tsr_session_fail(s, rc, err);
}

static tsr_status from_pixels(const void *src, int b, int nb, const clip_model *c, float *stage,
                              const float **px, tsr_error *err)
{
    *px = (const float *)src + image_floats(c) * b;
    return TSR_OK;
}

static tsr_status from_images(const void *src, int b, int nb, const clip_model *c, float *stage,
                              const float **px, tsr_error *err)
{
    const tsr_image *const *images = src;
    tsr_status rc = need_pp(c, err);
    for (int i = 0; i < nb && rc == TSR_OK; i++)
        rc = images[b + i] ? tsr_image_preprocess(images[b + i], &c->pp,
                                                  stage + image_floats(c) * i, err)
                           : tsr_error_set(err, TSR_ERR_INVALID_ARG, "image %d is NULL", b + i + 1);
    *px = stage;
    return rc;
}

static tsr_status from_files(const void *src, int b, int nb, const clip_model *c, float *stage,
                             const float **px, tsr_error *err)
{
    const char *const *paths = src;
    tsr_status rc = need_pp(c, err);
    for (int i = 0; i < nb && rc == TSR_OK; i++) {
        tsr_image *img = NULL;
        rc = tsr_image_load_file(paths[b + i], &img, err);
        TSR_TRY(rc, tsr_image_preprocess(img, &c->pp, stage + image_floats(c) * i, err));
        if (rc != TSR_OK && img)
            tsr_error_prefix(err, "%s", paths[b + i]);
        tsr_image_free(img);
    }
    *px = stage;
    return rc;
}

tsr_status tsr_session_embed_pixels(tsr_session *s, const float *pixels, int B, int normalize,
                                    float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    return embed_images(s, B, normalize, out, from_pixels, pixels, err);
}

tsr_status tsr_session_embed_images(tsr_session *s, const tsr_image *const *images, int n,
                                    int normalize, float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    return embed_images(s, n, normalize, out, from_images, images, err);
}

tsr_status tsr_session_embed_image_files(tsr_session *s, const char *const *paths, int n,
                                         int normalize, float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    return embed_images(s, n, normalize, out, from_files, paths, err);
}

/* CoCa's texts as open_clip runs them: padded with 0 to the context, then
 * the class token (id vocab), which attends to the first len + 1
 * positions (open_clip's legacy mask lets it see the first padding
 * position, and itself only when nothing is padding); that mask also hides
 * every position after a token 0 ("!" inside a punctuation run) from every
 * row, which tessera does not reproduce, so such texts are refused. */
static tsr_status coca_pack(const clip_model *c, const int *ids, const int *lens, int nb, int S,
                            int *out, int *olens, int first, tsr_error *err)
{
    int L = c->ctx;
    for (int i = 0; i < nb; i++) {
        int n = lens[i];
        if (n < 1 || n > L || n > S)
            return tsr_error_set(err, TSR_ERR_INVALID_ARG, "text %d: length %d outside 1..%d",
                                 first + i + 1, n, L < S ? L : S);
        int *o = out + (size_t)i * (L + 1);
        for (int j = 0; j < L; j++)
            o[j] = j < n ? ids[(size_t)i * S + j] : 0;
        for (int j = 0; j < n; j++)
            if (o[j] == 0)
                return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                                     "text %d: token 0 at position %d, which open_clip's CoCa "
                                     "masks as padding; tessera does not reproduce that mask "
                                     "(rewrite the text without \"!\" inside a run of "
                                     "punctuation)",
                                     first + i + 1, j);
        o[L] = c->vocab;
        olens[i] = n + 1;
    }
    return TSR_OK;
}

static tsr_status coca_embed_ids(tsr_session *s, const int *ids, const int *lens, int B, int S,
                                 int normalize, float *out, int first, tsr_error *err)
{
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    int L = c->ctx + 1, NB = cs->plan_txt;
    int *pk = malloc(sizeof(int) * (size_t)L * NB), *pl = malloc(sizeof(int) * (size_t)NB);
    tsr_status rc = pk && pl ? TSR_OK : tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int b = 0; b < B && rc == TSR_OK; b += NB) {
        int nb = B - b < NB ? B - b : NB;
        rc = coca_pack(c, ids + (size_t)b * S, lens + b, nb, S, pk, pl, first + b, err);
        TSR_TRY(rc, tsr_textenc_forward(s->q, &c->txt, &c->txt_w, &cs->txt, &s->scratch, pk, pl,
                                        nb, L, normalize, out + (size_t)b * c->proj_dim, err));
    }
    free(pk);
    free(pl);
    return rc;
}

tsr_status tsr_session_embed_ids(tsr_session *s, const int *ids, const int *lens, int B, int S,
                                 int normalize, float *out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    tsr_status rc = clip_ready(s, 0, 1, err);
    if (rc != TSR_OK)
        return tsr_session_fail(s, rc, err);
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    if (c->coca)
        return tsr_session_fail(s, coca_embed_ids(s, ids, lens, B, S, normalize, out, 0, err),
                                err);
    for (int b = 0; b < B && rc == TSR_OK; b += cs->plan_txt) {
        int nb = B - b < cs->plan_txt ? B - b : cs->plan_txt;
        rc = tsr_textenc_forward(s->q, &c->txt, &c->txt_w, &cs->txt, &s->scratch,
                                 ids + (size_t)b * S, lens + b, nb, S, normalize,
                                 out + (size_t)b * c->proj_dim, err);
    }
    return tsr_session_fail(s, rc, err);
}

/* CLIP texts: tokenized and embedded in batches, padded to the longest. */
static tsr_status clip_embed_texts(tsr_session *s, const char *const *texts, int n, int normalize,
                                float *out, int *n_truncated, tsr_error *err)
{
    tsr_status rc = clip_ready(s, 0, 1, err);
    if (rc != TSR_OK)
        return rc;
    clip_model *c = CLIP(s->m);
    clip_session *cs = s->data;
    if (!c->tok)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: the model has no tokenizer", s->m->name);
    int L = c->coca ? c->ctx : c->txt.max_pos, NB = cs->plan_txt, pad = tsr_tokenizer_pad(c->tok);
    int *ids = malloc(sizeof(int) * (size_t)L * NB);
    int *lens = malloc(sizeof(int) * (size_t)NB);
    int *buf = malloc(sizeof(int) * (size_t)L);
    if (!ids || !lens || !buf)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    for (int b = 0; b < n && rc == TSR_OK; b += NB) {
        int nb = n - b < NB ? n - b : NB, S = 1;
        for (int i = 0; i < nb && rc == TSR_OK; i++) {
            int cut = 0;
            rc = tsr_tokenizer_encode(c->tok, texts[b + i], L, ids + (size_t)i * L, &lens[i],
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
        for (int i = 0; i < nb; i++) { /* repack to (nb, S), padded with the pad token */
            memcpy(buf, ids + (size_t)i * L, sizeof(int) * (size_t)lens[i]);
            for (int j = lens[i]; j < S; j++)
                buf[j] = pad;
            memcpy(ids + (size_t)i * S, buf, sizeof(int) * (size_t)S);
        }
        rc = c->coca ? coca_embed_ids(s, ids, lens, nb, S, normalize,
                                      out + (size_t)b * c->proj_dim, b, err)
                     : tsr_textenc_forward(s->q, &c->txt, &c->txt_w, &cs->txt, &s->scratch, ids,
                                           lens, nb, S, normalize, out + (size_t)b * c->proj_dim,
                                           err);
    }
    free(ids);
    free(lens);
    free(buf);
    return rc;
}

/* ---- benchmarks ---- */

/* Forward FLOPs of an encoder stack: S tokens, D wide, F hidden, L layers
 * (QKV, scores, weighted sum, output projection, MLP). */
static double stack_flops(double S, double D, double F, double L)
{
    return L * (2 * S * 3 * D * D + 4 * S * S * D + 2 * S * D * D + 4 * S * D * F);
}

/* The linear layers' GEMMs of both towers at each batch size, weighted by
 * calls per item, so that each batch size counts as much as another. */
static int gemm_shapes(const clip_model *c, const int *batches, int nb, tsr_gemm_shape *out,
                       int max)
{
    int n = 0;
    for (int i = 0; i < nb; i++) {
        for (int tw = 0; tw < 2; tw++) {
            const tsr_encoder_cfg *e = tw ? &c->txt.enc : &c->vit.enc;
            int S = tw ? c->txt.max_pos : tsr_vit_seq_len(&c->vit);
            int D = e->layer.dim, F = e->layer.ffn, L = e->n_layers;
            const int mnk[4][2] = {{3 * D, D}, {D, D}, {F, D}, {D, F}};
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
    int a = arch_index(arch);
    if (a < 0)
        return -1;
    clip_model c = {0};
    arch_towers(&c, a);
    return gemm_shapes(&c, batches, nb, out, max);
}

int tsr_model_gemm_shapes(const tsr_model *m, const int *batches, int nb, tsr_gemm_shape *out,
                          int max)
{
    return IF_CLIP(m, gemm_shapes(CLIP(m), batches, nb, out, max), -1);
}

void tsr_model_flops(const tsr_model *m, double *image, double *text)
{
    *image = *text = 0;
    if (m->fam != &tsr_family_clip)
        return;
    const clip_model *c = CLIP(m);
    const tsr_encoder_cfg *v = &c->vit.enc, *t = &c->txt.enc;
    double np = tsr_vit_num_patches(&c->vit);
    *image = 2 * np * v->layer.dim * c->vit.channels * c->vit.patch * c->vit.patch +
             stack_flops(np + 1, v->layer.dim, v->layer.ffn, v->n_layers) +
             2.0 * v->layer.dim * c->proj_dim;
    *text = stack_flops(c->txt.max_pos, t->layer.dim, t->layer.ffn, t->n_layers) +
            2.0 * t->layer.dim * c->proj_dim;
}

const tsr_family tsr_family_clip = {"clip",         clip_detect,       clip_load,
                                    clip_free,      clip_session_free, clip_embed_dim,
                                    clip_max_text_len, clip_embed_texts};
