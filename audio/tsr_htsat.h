/* Internal: HTSAT, CLAP's audio tower (transformers' ClapAudioEncoder), on
 * the compute layer:
 *
 *   features (B, Cin, T, F) -> per-bin batch norm, bicubic to r*S frames,
 *   folded into an S x S image -> p x p patches -> linear (+ with fusion:
 *   the three local crops through a p x 3p convolution, arranged side by
 *   side and fused by the attentional feature fusion block) -> layernorm ->
 *   stages of Swin blocks (windowed attention with a relative position
 *   bias, every second block on windows shifted by half, padded to whole
 *   windows), patch merging between stages -> layernorm -> mean of the
 *   tokens -> projection (linear, ReLU, linear) -> L2.
 *
 *   tsr_htsat_plan(q, &cfg, B, &arena, &io, err);
 *   ... commit the arena, then tsr_htsat_upload_tables(q, &cfg, &io, err) ...
 *   tsr_htsat_forward(q, &cfg, &w, &io, feats, B, out, err);
 */
#ifndef TSR_HTSAT_H
#define TSR_HTSAT_H

#include "tsr_tower.h"

#define TSR_HTSAT_MAX_STAGES 6

typedef struct {
    int n_mels;     /* F */
    int frames;     /* T: feature frames per window (1001) */
    int in_ch;      /* Cin: feature channels given (4 with the fusion truncation) */
    int spec;       /* S: spec_size, the image's side */
    int ratio;      /* r = spec_size / n_mels; the time axis is stretched to r*S frames */
    int patch;      /* p: patch_size = patch_stride */
    int grid;       /* G = S / p tokens per side */
    int fusion;     /* 1: the aff_2d fusion branch */
    int aff_inter;  /* the fusion block's inner width */
    int patch_ln;   /* enable_patch_layer_norm */
    int window;     /* window_size */
    int stages;
    int depth[TSR_HTSAT_MAX_STAGES], heads[TSR_HTSAT_MAX_STAGES];
    int dim[TSR_HTSAT_MAX_STAGES], ffn[TSR_HTSAT_MAX_STAGES], res[TSR_HTSAT_MAX_STAGES];
    float eps;      /* the blocks' layernorms (layer_norm_eps) */
    tsr_act act;
    int proj_dim;   /* P */
    tsr_act proj_act;
} tsr_htsat_cfg;

typedef struct {
    cl_mem mean, var, g, b;
} tsr_bn_w;

typedef struct {
    cl_mem ln1_g, ln1_b, qkv_w, qkv_b, table, o_w, o_b, ln2_g, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} tsr_swin_block_w;

typedef struct {
    tsr_bn_w mel_bn;             /* (F) */
    cl_mem patch_w, patch_b;     /* (C0, p*p) as a linear weight, (C0) */
    cl_mem pln_g, pln_b;         /* (C0) */
    cl_mem mel_w, mel_b;         /* fusion: (C0, p*3p), (C0) */
    cl_mem la1_w, la1_b, la2_w, la2_b, ga1_w, ga1_b, ga2_w, ga2_b; /* 1x1 convolutions */
    tsr_bn_w la1_bn, la2_bn, ga1_bn, ga2_bn;
    tsr_swin_block_w *blocks[TSR_HTSAT_MAX_STAGES];
    cl_mem merge_g[TSR_HTSAT_MAX_STAGES], merge_b[TSR_HTSAT_MAX_STAGES];
    cl_mem merge_w[TSR_HTSAT_MAX_STAGES]; /* (2C, 4C) */
    cl_mem fin_g, fin_b;
    cl_mem p1_w, p1_b, p2_w, p2_b;
} tsr_htsat_w;

typedef struct {
    cl_mem mel, img, cols, x, tmp, win, qkv, att, ffn, mrg;
    cl_mem lraw, loc, aff_a, aff_l, la, gm, ga, gb;
    cl_mem pooled, p1, out;
    cl_mem part[TSR_HTSAT_MAX_STAGES][2], rev[TSR_HTSAT_MAX_STAGES][2];
    cl_mem region[TSR_HTSAT_MAX_STAGES], merge[TSR_HTSAT_MAX_STAGES], local;
    int max_b;
} tsr_htsat_io;

/* Derives res[] and checks the configuration (what names it in messages). */
tsr_status tsr_htsat_check(tsr_htsat_cfg *c, const char *what, tsr_error *err);
/* The shift (0 or window / 2) and padded side of block i of stage s. */
int tsr_htsat_shift(const tsr_htsat_cfg *c, int s, int i);
int tsr_htsat_padded(const tsr_htsat_cfg *c, int s);
tsr_status tsr_htsat_plan(tsr_queue *q, const tsr_htsat_cfg *c, int B, tsr_arena *a,
                          tsr_htsat_io *io, tsr_error *err);
/* Writes the index tables (windows, merging, fusion layout) once the arena
 * is committed. */
tsr_status tsr_htsat_upload_tables(tsr_queue *q, const tsr_htsat_cfg *c, tsr_htsat_io *io,
                                   tsr_error *err);
/* feats: (B, Cin, T, F) on the host; out: (B, P) L2-normalised embeddings. */
tsr_status tsr_htsat_forward(tsr_queue *q, const tsr_htsat_cfg *c, const tsr_htsat_w *w,
                             tsr_htsat_io *io, const float *feats, int B, float *out,
                             tsr_error *err);

#endif
