/* Internal: the model and session handles, and what a family provides.
 *
 * A tsr_model is the family's configuration and weights (one arena on the
 * device), read-only once loaded. A tsr_session owns everything a forward
 * pass writes: its queue with its own kernel objects, one arena planned for
 * what it has been asked to run, and the family's per-session state.
 *
 * Adding a family (see README, "Adding a model family"):
 *   1. a tensor-name table (tsr_wtable.h) and a dim() for its symbols;
 *   2. a builder: read the config, fill the towers' tsr_*_cfg, load the
 *      table, and a plan function that reserves the session's buffers;
 *   3. the entry points it serves (embed images or texts, transcribe);
 *   4. a row in tsr_families (families.c).
 */
#ifndef TSR_MODEL_H
#define TSR_MODEL_H

#include "tsr_fusion.h"
#include "tsr_source.h"
#include "tsr_tower.h"
#include "tsr_wtable.h"

typedef struct tsr_family {
    const char *name;
    /* 1 when the directory's config.json (root, may be NULL) is this family's */
    int (*detect)(const tsr_source *src, const cJSON *config);
    /* reads the config, tokenizer and weights into m (m->data is the family's) */
    tsr_status (*load)(tsr_model *m, const tsr_source *src, tsr_error *err);
    /* frees the host parts of m->data (the weights are the model's arena) */
    void (*free)(tsr_model *m);
    /* frees the host parts of a session's s->data */
    void (*session_free)(tsr_session *s);
    /* text embeddings (NULL: the family has none): their width, the longest
     * text in tokens, and the embedding of n texts */
    int (*embed_dim)(const tsr_model *m);
    int (*max_text_len)(const tsr_model *m);
    tsr_status (*embed_texts)(tsr_session *s, const char *const *texts, int n, int normalize,
                              float *out, int *n_truncated, tsr_error *err);
} tsr_family;

extern const tsr_family tsr_family_clip, tsr_family_bert, tsr_family_whisper, tsr_family_blip,
    tsr_family_clap;
/* Every family tessera loads, in the order they are tried (families.c). */
extern const tsr_family *const tsr_families[];

struct tsr_model {
    tsr_ctx *ctx;
    const tsr_family *fam;
    char name[2048];  /* the directory, or "(memory)", for messages */
    char fingerprint[65]; /* tsr_model_fingerprint */
    tsr_arena weights;
    void *data;       /* the family's model */
};

struct tsr_session {
    tsr_model *m;
    tsr_queue *q;
    tsr_session_params p;
    tsr_arena arena;
    tsr_enc_scratch scratch;
    tsr_error last;   /* the last failure on this session */
    void *data;       /* the family's session state */
};

/* Loads a family's weight table into the model's arena (st NULL: random
 * weights from rng, for benchmarks). */
tsr_status tsr_model_load_table(tsr_model *m, const tsr_wtable *t, const tsr_st *st,
                                uint64_t *rng, tsr_error *err);
/* 1 when config.json's model_type is type. */
int tsr_model_type_is(const cJSON *config, const char *type);

/* Reserves a session's buffers: plan() reserves into s->arena and adds the
 * layers' scratch; then the scratch and the GEMM temporary buffer are
 * reserved and the arena is committed once. Any earlier plan is released
 * first (the queue is drained). */
typedef tsr_status (*tsr_plan_fn)(tsr_session *s, size_t scratch[TSR_SCRATCH_N], tsr_error *err);
tsr_status tsr_session_plan(tsr_session *s, tsr_plan_fn plan, tsr_error *err);

/* Records err as the session's last error; returns its code. */
tsr_status tsr_session_fail(tsr_session *s, tsr_status rc, const tsr_error *err);
/* The family's state of a session, created on first use (zeroed, size bytes). */
void *tsr_session_data(tsr_session *s, size_t size, tsr_error *err);
/* TSR_ERR_UNSUPPORTED unless the session's model is of family f. */
tsr_status tsr_session_need(tsr_session *s, const tsr_family *f, const char *what,
                            tsr_error *err);

/* A full-size BLIP with random weights ("blip-base", "blip-large"). */
tsr_status tsr_blip_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                  tsr_error *err);

/* A full-size CLAP with random weights ("clap-htsat": ClapConfig()'s sizes,
 * no tokenizer). */
tsr_status tsr_clap_create_random(tsr_ctx *ctx, const char *arch, tsr_model **out,
                                  tsr_error *err);
/* CLAP's exp(logit_scale_a) and tokenizer (clap.c). */
float tsr_clap_logit_scale(const tsr_model *m);
const tsr_bytelevel *tsr_clap_tokenizer(const tsr_model *m);

/* Host helpers shared by the families. */
void tsr_l2_normalize(float *v, int n);

#endif
