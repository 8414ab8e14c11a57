/* Internal: the CLIP family's model and session (fusion/clip.c), shared
 * with CoCa's captioning (fusion/coca.c): an open_clip CoCa is a CLIP with
 * an attentional pooler, a class token after its texts and a multimodal
 * decoder. */
#ifndef TSR_CLIP_H
#define TSR_CLIP_H

#include "tsr_model.h"
#include "tsr_textenc.h"
#include "tsr_vit.h"

typedef struct {
    tsr_vit_cfg vit;
    tsr_vit_w vit_w;
    tsr_textenc_cfg txt;
    tsr_textenc_w txt_w;
    tsr_enc_weights *layers; /* the vision layers, then the text layers */
    int proj_dim;
    float logit_scale;       /* exp'd */
    tsr_tokenizer *tok;
    tsr_preprocess_cfg pp;
    int openclip;       /* 0: HF CLIPModel; 1: open_clip CLIP; 2: its CustomTextCLIP (text.*) */
    int pp_known;       /* from preprocessor_config.json, the caller or a random model */
    char pp_path[600];  /* for the message when it is not */
    /* open_clip CoCa (coca = 1): the text tower's class embedding is token
     * `vocab` of txt (txt.vocab = vocab + 1), after ctx tokens; generation
     * runs the text layers, then each multimodal layer's self-attention
     * block and cross-attention block, as one decoder stack */
    int coca;
    int vocab;             /* the checkpoint's token embeddings */
    int ctx;               /* CoCa: tokens of a text (its class token follows) */
    int pool_same;         /* the pooler's keys are P wide: one stacked in_proj */
    tsr_decoder_cfg dec;
    tsr_decoder_w dec_w;
    tsr_dec_cfg *dcfg;         /* dec.n_layers */
    tsr_dec_weights *dlayers;  /* dec.n_layers */
    tsr_caption_params gen;    /* open_clip generate()'s defaults */
} clip_model;

typedef struct {
    int want_img, want_txt; /* batch sizes asked for */
    int plan_img, plan_txt; /* what the session's arena holds */
    tsr_vit_io vit;
    tsr_textenc_io txt;
    float *px;              /* host staging of preprocessed images */
    /* CoCa captions (fusion/coca.c): images per batch, decoder rows each, positions */
    int want_cap_img, want_cap_rows, want_cap_len;
    int plan_cap_img, plan_cap_rows, plan_cap_len;
    tsr_decoder_cfg cap_dcfg;
    tsr_decoder_io cap_dec;
    cl_mem cap_tokens;      /* (images * (Q - 1), P): the image tokens the decoder reads */
    cl_mem cap_idx;         /* int (images * (Q - 1)): their rows in the pooler's output */
    float *cap_px;
} clip_session;

#define CLIP(m) ((clip_model *)(m)->data)

/* Plans the session again for everything its want_* fields ask for. */
tsr_status tsr_clip_replan(tsr_session *s, tsr_error *err);

/* fusion/coca.c */
tsr_status tsr_coca_plan(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err);
void tsr_coca_session_free(clip_session *cs);
tsr_status tsr_coca_caption(tsr_session *s, int n, const tsr_caption_params *p,
                            tsr_caption *out, const float *pixels, const tsr_image *const *images,
                            tsr_error *err);
tsr_caption_params tsr_coca_default_params(const clip_model *c);
tsr_status tsr_coca_encode(tsr_session *s, const float *pixels, tsr_error *err);
tsr_status tsr_coca_logits(tsr_session *s, const int *ids, int n, float *logits, tsr_error *err);

#endif
