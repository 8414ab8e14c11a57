/* Models and sessions: loading a directory or files in memory through the
 * family that recognises them, and the session's planned arena. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tsr_hash.h"
#include "tsr_model.h"
#include "tsr_st.h"

void tsr_l2_normalize(float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    double norm = sqrt(s);
    float inv = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
    for (int i = 0; i < n; i++)
        v[i] *= inv;
}

/* The family of a source, or NULL with err. */
static const tsr_family *family_of(const tsr_source *src, tsr_error *err)
{
    cJSON *root = NULL;
    if (tsr_src_exists(src, "config.json")) {
        root = tsr_src_json(src, "config.json", 8u << 20, err);
        if (!root)
            return NULL;
    } else if (!tsr_src_exists(src, "model.bin") && !tsr_src_exists(src, "open_clip_config.json")) {
        tsr_error_set(err, TSR_ERR_IO, "%s/config.json: cannot open (not a model directory)",
                      src->label);
        return NULL;
    }
    const tsr_family *f = NULL;
    for (int i = 0; tsr_families[i] && !f; i++)
        if (tsr_families[i]->detect(src, root))
            f = tsr_families[i];
    if (!f) {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                      "%s/config.json: model_type \"%s\" is not supported (tessera loads clip, "
                      "bert and whisper)",
                      src->label, cJSON_IsString(mt) ? mt->valuestring : "(missing)");
    }
    cJSON_Delete(root);
    return f;
}

const char *tsr_model_kind(const char *dir, tsr_error *err)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", dir);
        return NULL;
    }
    tsr_source src;
    tsr_source_dir(&src, dir);
    const tsr_family *f = family_of(&src, err);
    return f ? f->name : NULL;
}

/* The files besides the weights that change what a model computes: its
 * configuration, preprocessing and tokenizer, in every layout tessera reads. */
static const char *const fingerprint_files[] = {
    "config.json", "preprocessor_config.json", "open_clip_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt",
    "added_tokens.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
    "vocabulary.json", "vocabulary.txt", NULL};

/* SHA-256 over the family, those files (name, length, bytes) and the tensor
 * table (name, dtype, shape of every tensor) with up to 64 samples of 16
 * bytes spread over each tensor's data, so that two checkpoints of one
 * architecture differ without reading gigabytes of weights. */
static void fingerprint(tsr_model *m, const tsr_source *src)
{
    tsr_sha256 h;
    tsr_sha256_init(&h);
    tsr_sha256_update(&h, m->fam->name, strlen(m->fam->name) + 1);
    for (int i = 0; fingerprint_files[i]; i++) {
        if (!tsr_src_exists(src, fingerprint_files[i]))
            continue;
        tsr_mapping map;
        tsr_error e = {0};
        if (tsr_src_map(src, fingerprint_files[i], &map, &e) != TSR_OK)
            continue;
        uint64_t len = map.size;
        tsr_sha256_update(&h, fingerprint_files[i], strlen(fingerprint_files[i]) + 1);
        tsr_sha256_update(&h, &len, sizeof len);
        tsr_sha256_update(&h, map.data, map.size);
        tsr_src_unmap(&map);
    }
    tsr_st *st = NULL;
    tsr_error e = {0};
    tsr_status rc = tsr_src_exists(src, "model.bin")
                        ? tsr_st_open_ct2_source(src, "model.bin", &st, &e)
                        : tsr_st_open_source(src, &st, &e);
    if (rc == TSR_OK) {
        for (int i = 0; i < tsr_st_count(st); i++) {
            const tsr_st_tensor *t = tsr_st_get(st, i);
            int64_t head[2 + TSR_ST_MAX_DIMS] = {t->dtype, t->ndim};
            for (int d = 0; d < t->ndim && d < TSR_ST_MAX_DIMS; d++)
                head[2 + d] = t->shape[d];
            tsr_sha256_update(&h, t->name, strlen(t->name) + 1);
            tsr_sha256_update(&h, head, sizeof head);
            if (!t->data || t->nbytes == 0)
                continue;
            uint64_t piece = t->nbytes < 16 ? t->nbytes : 16, spots = 64;
            for (uint64_t k = 0; k < spots; k++)
                tsr_sha256_update(&h, t->data + (t->nbytes - piece) * k / (spots - 1), piece);
            tsr_st_release(t); /* the samples' pages (and those read around them) */
        }
        tsr_st_close(st);
    }
    if (!tsr_sha256_final(&h, m->fingerprint))
        snprintf(m->fingerprint, sizeof m->fingerprint, "unavailable");
}

const char *tsr_model_fingerprint(const tsr_model *m) { return m->fingerprint; }

static tsr_status load_source(tsr_ctx *ctx, const tsr_source *src, tsr_model **out,
                              tsr_error *err)
{
    *out = NULL;
    const tsr_family *f = family_of(src, err);
    if (!f)
        return err->code;
    tsr_model *m = calloc(1, sizeof *m);
    if (!m)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    m->ctx = tsr_ctx_retain(ctx);
    m->fam = f;
    snprintf(m->name, sizeof m->name, "%s", src->label);
    tsr_arena_init(&m->weights, ctx);
    tsr_status rc = f->load(m, src, err);
    if (rc != TSR_OK) {
        tsr_model_free(m);
        return rc;
    }
    fingerprint(m, src);
    *out = m;
    return TSR_OK;
}

tsr_status tsr_model_load(tsr_ctx *ctx, const char *dir, tsr_model **out, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    struct stat sb;
    if (!dir || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return tsr_error_set(err, TSR_ERR_IO, "%s: model directory not found", dir ? dir : "");
    tsr_source src;
    tsr_source_dir(&src, dir);
    return load_source(ctx, &src, out, err);
}

tsr_status tsr_model_load_memory(tsr_ctx *ctx, const tsr_file *files, int n, tsr_model **out,
                                 tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    if (!files || n < 1)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no model files given");
    tsr_source src;
    tsr_source_memory(&src, files, n);
    return load_source(ctx, &src, out, err);
}

void tsr_model_free(tsr_model *m)
{
    if (!m)
        return;
    tsr_arena_release(&m->weights); /* its slots live in the family's data */
    if (m->fam && m->data)
        m->fam->free(m);
    tsr_ctx_free(m->ctx);
    free(m);
}

tsr_status tsr_model_load_table(tsr_model *m, const tsr_wtable *t, const tsr_st *st,
                                uint64_t *rng, tsr_error *err)
{
    tsr_queue *q = NULL;
    tsr_status rc = tsr_queue_create(m->ctx, &q, err);
    TSR_TRY(rc, tsr_wtable_load(t, q, &m->weights, st, m->name, rng, err));
    tsr_queue_free(q);
    return rc;
}

int tsr_model_type_is(const cJSON *config, const char *type)
{
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(config, "model_type");
    return cJSON_IsString(mt) && strcmp(mt->valuestring, type) == 0;
}

const char *tsr_model_family(const tsr_model *m) { return m->fam->name; }

size_t tsr_model_device_bytes(const tsr_model *m) { return m->weights.total; }

/* ---- sessions ---- */

tsr_session_params tsr_session_default_params(void)
{
    return (tsr_session_params){16, 0};
}

tsr_status tsr_session_create(tsr_model *m, const tsr_session_params *p, tsr_session **out,
                              tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    *out = NULL;
    tsr_session_params def = tsr_session_default_params();
    if (!p)
        p = &def;
    if (p->image_batch < 0 || p->image_batch > 4096 || p->text_batch < 0 || p->text_batch > 4096)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "batch sizes must be 0 (the default) to 4096, not %d and %d",
                             p->image_batch, p->text_batch);
    tsr_session *s = calloc(1, sizeof *s);
    if (!s)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    s->m = m;
    s->p = *p;
    if (s->p.image_batch == 0)
        s->p.image_batch = 16;
    tsr_arena_init(&s->arena, m->ctx);
    tsr_status rc = tsr_queue_create(m->ctx, &s->q, err);
    if (rc != TSR_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return TSR_OK;
}

void tsr_session_free(tsr_session *s)
{
    if (!s)
        return;
    if (s->q)
        clFinish(s->q->q);
    tsr_arena_release(&s->arena); /* its slots live in the family's state */
    if (s->data && s->m->fam->session_free)
        s->m->fam->session_free(s);
    free(s->data);
    tsr_queue_free(s->q);
    free(s);
}

const char *tsr_session_errmsg(const tsr_session *s) { return s->last.msg; }

tsr_status tsr_session_errcode(const tsr_session *s) { return s->last.code; }

size_t tsr_session_device_bytes(const tsr_session *s) { return s->arena.total; }

static tsr_launch_counts pub(tsr_counters c)
{
    return (tsr_launch_counts){c.launches, c.gemms, c.syncs, c.buffers};
}

void tsr_session_counters(const tsr_session *s, tsr_launch_counts *per_layer,
                          tsr_launch_counts *per_step)
{
    if (per_layer)
        *per_layer = pub(s->q->per_layer);
    if (per_step)
        *per_step = pub(s->q->per_step);
}

tsr_status tsr_session_fail(tsr_session *s, tsr_status rc, const tsr_error *err)
{
    if (rc != TSR_OK) {
        s->last.code = rc;
        snprintf(s->last.msg, sizeof s->last.msg, "%s", err && err->code == rc ? err->msg : "");
    }
    return rc;
}

void *tsr_session_data(tsr_session *s, size_t size, tsr_error *err)
{
    if (!s->data && !(s->data = calloc(1, size)))
        tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    return s->data;
}

tsr_status tsr_session_need(tsr_session *s, const tsr_family *f, const char *what,
                            tsr_error *err)
{
    if (s->m->fam == f)
        return TSR_OK;
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: a %s model cannot %s", s->m->name,
                         s->m->fam->name, what);
}

tsr_status tsr_session_plan(tsr_session *s, tsr_plan_fn plan, tsr_error *err)
{
    tsr_queue_finish(s->q, NULL);
    tsr_arena_release(&s->arena);
    s->q->gemm_tmp_need = 0;
    s->q->wide_need = 0;
    size_t scratch[TSR_SCRATCH_N] = {0};
    tsr_status rc = plan(s, scratch, err);
    if (rc == TSR_OK) {
        tsr_scratch_reserve(&s->arena, &s->scratch, scratch);
        tsr_linear_plan_reserve(s->q, &s->arena);
        rc = tsr_arena_commit(&s->arena, err);
    }
    if (rc != TSR_OK) {
        tsr_arena_release(&s->arena);
        s->q->gemm_tmp_bytes = 0;
        s->q->wide_bytes = 0;
    }
    return rc;
}

/* ---- text embeddings: any family that has them ---- */

int tsr_model_embed_dim(const tsr_model *m)
{
    return m->fam->embed_dim ? m->fam->embed_dim(m) : 0;
}

int tsr_model_max_text_len(const tsr_model *m)
{
    return m->fam->max_text_len ? m->fam->max_text_len(m) : 0;
}

tsr_status tsr_session_embed_texts(tsr_session *s, const char *const *texts, int n, int normalize,
                                   float *out, int *n_truncated, tsr_error *err)
{
    TSR_ERR_LOCAL(err);
    if (n_truncated)
        *n_truncated = 0;
    tsr_status rc;
    if (n < 0 || (n > 0 && (!texts || !out)))
        rc = tsr_error_set(err, TSR_ERR_INVALID_ARG, "no texts or no output given");
    else if (!s->m->fam->embed_texts)
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: a %s model cannot embed texts",
                           s->m->name, s->m->fam->name);
    else
        rc = s->m->fam->embed_texts(s, texts, n, normalize, out, n_truncated, err);
    return tsr_session_fail(s, rc, err);
}
