/* The public API's contracts: models loaded from memory equal models loaded
 * from a directory; err may be NULL on every failing call, and the session
 * keeps the last error; device memory returns to where it started once a
 * model and its sessions are freed; the context may be freed before them;
 * a session re-plans its arena for larger inputs; calls of the wrong family
 * are refused with a message. */
#include "tsr_fusion.h"
#include "testutil.h"

#define CLIP_DIR TSR_FIXTURES "/models/clip-tiny-a"
#define WHISPER_DIR TSR_FIXTURES "/whisper/hf-tiny"

typedef struct {
    tsr_file f[8];
    char *data[8];
    int n;
} file_set;

static void read_files(file_set *fs, const char *dir, const char *const *names, int n)
{
    fs->n = 0;
    for (int i = 0; i < n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *d = malloc((size_t)len + 1);
        if (fread(d, 1, (size_t)len, f) != (size_t)len)
            len = 0;
        fclose(f);
        fs->data[fs->n] = d;
        fs->f[fs->n] = (tsr_file){names[i], d, (size_t)len};
        fs->n++;
    }
}

static void free_files(file_set *fs)
{
    for (int i = 0; i < fs->n; i++)
        free(fs->data[i]);
}

/* The image and text embeddings of the fixture's first images and texts. */
static int clip_outputs(tsr_model *m, float *img, float *txt)
{
    tsr_session *s = NULL;
    tsr_error err = {0};
    const char *paths[2] = {TSR_FIXTURES "/images/coffee.png", TSR_FIXTURES "/images/chelsea.jpg"};
    const char *texts[3] = {"a photo of a cat.", "naïve café 😀", ""};
    int ok = tsr_session_create(m, NULL, &s, &err) == TSR_OK &&
             tsr_session_embed_image_files(s, paths, 2, 1, img, &err) == TSR_OK &&
             tsr_session_embed_texts(s, texts, 3, 1, txt, NULL, &err) == TSR_OK;
    if (!ok)
        printf("     %s\n", err.msg);
    tsr_session_free(s);
    return ok;
}

static void test_memory(tsr_ctx *ctx)
{
    static const char *clip_files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                       "preprocessor_config.json"};
    file_set fs;
    read_files(&fs, CLIP_DIR, clip_files, 4);
    tsr_model *a = NULL, *b = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(ctx, CLIP_DIR, &a, &err);
    if (st == TSR_OK)
        st = tsr_model_load_memory(ctx, fs.f, fs.n, &b, &err);
    check(st == TSR_OK, "CLIP from memory (%d files) loads %s", fs.n, st ? err.msg : "");
    free_files(&fs); /* the buffers are read during the call only */
    float ia[2 * 64], ta[3 * 64], ib[2 * 64], tb[3 * 64];
    int P = a ? tsr_model_embed_dim(a) : 0;
    if (st == TSR_OK && clip_outputs(a, ia, ta) && clip_outputs(b, ib, tb))
        check(memcmp(ia, ib, sizeof(float) * 2 * P) == 0 &&
                  memcmp(ta, tb, sizeof(float) * 3 * P) == 0,
              "CLIP from memory embeds images and texts exactly as from its directory");
    else
        check(0, "CLIP embeddings from both loads");
    tsr_model_free(a);
    tsr_model_free(b);

    /* a file missing from the set is named */
    read_files(&fs, CLIP_DIR, clip_files, 4);
    b = NULL;
    st = tsr_model_load_memory(ctx, fs.f, 3, &b, &err); /* no preprocessor config: defaults */
    check(st == TSR_OK, "CLIP from memory without preprocessor_config.json (defaults) %s",
          st ? err.msg : "");
    tsr_model_free(b);
    b = NULL;
    tsr_file nocfg[3] = {fs.f[1], fs.f[2], fs.f[3]};
    st = tsr_model_load_memory(ctx, nocfg, 3, &b, &err);
    check(st == TSR_ERR_IO && !b && strstr(err.msg, "(memory)/config.json"),
          "from memory without config.json: %s", err.msg);
    tsr_file noweights[3] = {fs.f[0], fs.f[2], fs.f[3]};
    st = tsr_model_load_memory(ctx, noweights, 3, &b, &err);
    check(st == TSR_ERR_IO && !b && strstr(err.msg, "no model.safetensors"),
          "from memory without weights: %s", err.msg);
    tsr_file truncated[4] = {fs.f[0], fs.f[1], fs.f[2], fs.f[3]};
    truncated[1].size /= 2;
    st = tsr_model_load_memory(ctx, truncated, 4, &b, &err);
    check(st == TSR_ERR_FORMAT && !b, "from memory with half a safetensors file: %s", err.msg);
    check(tsr_model_load_memory(ctx, NULL, 0, &b, NULL) == TSR_ERR_INVALID_ARG && !b,
          "from memory with no files and err = NULL");
    free_files(&fs);

    /* Whisper (HF layout) from memory: the same encoder output */
    static const char *wf[] = {"config.json", "model.safetensors", "tokenizer.json",
                               "generation_config.json"};
    read_files(&fs, WHISPER_DIR, wf, 4);
    a = b = NULL;
    st = tsr_model_load(ctx, WHISPER_DIR, &a, &err);
    if (st == TSR_OK)
        st = tsr_model_load_memory(ctx, fs.f, fs.n, &b, &err);
    free_files(&fs);
    check(st == TSR_OK && strcmp(tsr_model_family(b), "whisper") == 0,
          "Whisper from memory loads %s", st ? err.msg : "");
    if (st == TSR_OK) {
        int M = tsr_model_n_mels(a), T = 2 * tsr_model_audio_ctx(a), D = tsr_model_dim(a);
        float *mel = malloc(sizeof(float) * (size_t)M * T);
        for (int i = 0; i < M * T; i++)
            mel[i] = (float)((i * 7919) % 97) / 97.0f - 0.5f;
        float *ea = malloc(sizeof(float) * (size_t)T / 2 * D), *eb = malloc(sizeof(float) * (size_t)T / 2 * D);
        tsr_session *sa = new_session(a), *sb = new_session(b);
        st = tsr_session_whisper_encode(sa, mel, ea, &err);
        if (st == TSR_OK)
            st = tsr_session_whisper_encode(sb, mel, eb, &err);
        check(st == TSR_OK && memcmp(ea, eb, sizeof(float) * (size_t)T / 2 * D) == 0,
              "Whisper from memory encodes exactly as from its directory %s", st ? err.msg : "");
        tsr_session_free(sa);
        tsr_session_free(sb);
        free(mel), free(ea), free(eb);
    }
    tsr_model_free(a);
    tsr_model_free(b);
}

/* Failing session calls with err = NULL: a status, no crash, and the message
 * kept as the session's last error. */
static void test_errors(tsr_ctx *ctx)
{
    tsr_model *clip = NULL, *whisper = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, CLIP_DIR, &clip, &err) != TSR_OK ||
        tsr_model_load(ctx, WHISPER_DIR, &whisper, &err) != TSR_OK) {
        check(0, "load the fixtures: %s", err.msg);
        tsr_model_free(clip);
        return;
    }
    tsr_session *s = new_session(clip), *w = new_session(whisper);
    float out[4 * 64];
    const char *bad_utf8[1] = {"caf\xe9"};
    const char *missing[1] = {"/nonexistent/cat.jpg"};
    const char *labels[1] = {"cat"}, *no_slot[1] = {"a photo"};
    /* each call fails with err = NULL; the session keeps why */
#define CASE(what, sess, needle, call)                                                        \
    do {                                                                                      \
        tsr_status st_ = (call);                                                              \
        const char *msg_ = tsr_session_errmsg(sess);                                          \
        check(st_ != TSR_OK && tsr_session_errcode(sess) == st_ && strstr(msg_, needle),      \
              "%s, err = NULL: %s; the session's last error: %s", what, tsr_status_str(st_),  \
              msg_);                                                                          \
    } while (0)
    tsr_transcript t;
    CASE("invalid UTF-8 text", s, "UTF-8", tsr_session_embed_texts(s, bad_utf8, 1, 1, out, NULL, NULL));
    CASE("a missing image file", s, "/nonexistent/cat.jpg",
         tsr_session_embed_image_files(s, missing, 1, 1, out, NULL));
    CASE("a template without {}", s, "has no {}",
         tsr_session_zeroshot_weights(s, labels, 1, no_slot, 1, out, NULL, NULL));
    CASE("token ids outside the vocabulary", s, "999999",
         tsr_session_embed_ids(s, (int[]){1512, 999999, 1513}, (int[]){3}, 1, 3, 1, out, NULL));
    CASE("speech through a CLIP model", s, "cannot transcribe",
         tsr_session_transcribe_file(s, TSR_FIXTURES "/whisper/clips/00.wav", NULL, &t, NULL));
    CASE("texts through a Whisper model", w, "cannot embed texts",
         tsr_session_embed_texts(w, labels, 1, 1, out, NULL, NULL));
    CASE("images through a Whisper model", w, "cannot embed images",
         tsr_session_embed_image_files(w, missing, 1, 1, out, NULL));
    CASE("logits before any audio", w, "no audio",
         tsr_session_whisper_logits(w, (int[]){1}, 1, out, NULL));
    CASE("a missing audio file", w, "/nonexistent/talk.wav",
         tsr_session_transcribe_file(w, "/nonexistent/talk.wav", NULL, &t, NULL));
#undef CASE
    /* a bad call does not spoil the session */
    const char *ok_text[1] = {"a photo of a cat."};
    check(tsr_session_embed_texts(s, ok_text, 1, 1, out, NULL, NULL) == TSR_OK,
          "the session works after its errors");
    tsr_session_free(s);
    tsr_session_free(w);
    tsr_model_free(clip);
    tsr_model_free(whisper);
    check(tsr_model_load(ctx, "/nonexistent/model", &clip, NULL) == TSR_ERR_IO && !clip,
          "a missing model directory with err = NULL");
    check(tsr_model_create_random(ctx, "ViT-X", &clip, NULL) == TSR_ERR_INVALID_ARG && !clip,
          "an unknown architecture with err = NULL");
    tsr_session_params p = tsr_session_default_params();
    p.image_batch = -3;
    tsr_session *bad = NULL;
    tsr_model *m = NULL;
    if (tsr_model_load(ctx, CLIP_DIR, &m, NULL) == TSR_OK)
        check(tsr_session_create(m, &p, &bad, NULL) == TSR_ERR_INVALID_ARG && !bad,
              "a negative batch size is refused, err = NULL");
    tsr_model_free(m);
}

/* Device memory: back to the start after models and sessions are freed; a
 * session grows its arena only when asked for more; the context may go first. */
static void test_memory_and_lifetimes(void)
{
    tsr_ctx_params cp = test_ctx_params();
    tsr_ctx *ctx = ctx_with_or_skip(&cp);
    size_t start, peak;
    tsr_ctx_device_memory(ctx, &start, &peak);
    tsr_model *m = NULL;
    tsr_error err = {0};
    tsr_status st = tsr_model_load(ctx, CLIP_DIR, &m, &err);
    size_t loaded = 0;
    tsr_ctx_device_memory(ctx, &loaded, &peak);
    check(st == TSR_OK && loaded == start + tsr_model_device_bytes(m),
          "a model holds its weights' bytes (%zu) %s", st == TSR_OK ? tsr_model_device_bytes(m) : 0,
          st ? err.msg : "");
    tsr_session *s1 = new_session(m), *s2 = new_session(m);
    float out[8 * 64];
    const char *t1[1] = {"a"}, *t2[8] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    st = tsr_session_embed_texts(s1, t1, 1, 1, out, NULL, &err);
    size_t b1 = tsr_session_device_bytes(s1);
    if (st == TSR_OK)
        st = tsr_session_embed_texts(s1, t2, 8, 1, out, NULL, &err);
    check(st == TSR_OK && b1 > 0 && tsr_session_device_bytes(s1) == b1,
          "a session plans its text arena once (%zu bytes) and reuses it", b1);
    const char *img[1] = {TSR_FIXTURES "/images/coffee.png"};
    if (st == TSR_OK)
        st = tsr_session_embed_image_files(s2, img, 1, 1, out, &err);
    check(st == TSR_OK && tsr_session_device_bytes(s2) > 0 && tsr_session_device_bytes(s2) != b1,
          "another session plans for images only (%zu bytes)", tsr_session_device_bytes(s2));
    /* the context goes first: the model and sessions keep it alive */
    tsr_ctx_free(ctx);
    if (st == TSR_OK)
        st = tsr_session_embed_image_files(s1, img, 1, 1, out, &err);
    check(st == TSR_OK, "a session still works after the caller freed the context %s",
          st ? err.msg : "");
    /* a second context: its accounting sees only its own buffers */
    tsr_ctx *watch = ctx_with_or_skip(&cp);
    tsr_session_free(s1);
    tsr_session_free(s2);
    tsr_model_free(m); /* releases the first context too */
    size_t now = device_memory_settled(watch, 0);
    check(now == 0, "a fresh context holds no device memory (%zu bytes)", now);
    tsr_ctx_free(watch);

    /* on one context: model and sessions freed, device memory back at the start */
    ctx = ctx_with_or_skip(&cp);
    tsr_ctx_device_memory(ctx, &start, &peak);
    m = NULL;
    st = tsr_model_load(ctx, WHISPER_DIR, &m, &err);
    tsr_session *w = st == TSR_OK ? new_session(m) : NULL;
    if (st == TSR_OK) {
        int M = tsr_model_n_mels(m), T = 2 * tsr_model_audio_ctx(m);
        float *mel = calloc((size_t)M * T, sizeof(float));
        st = tsr_session_whisper_encode(w, mel, NULL, &err);
        free(mel);
    }
    size_t busy;
    tsr_ctx_device_memory(ctx, &busy, &peak);
    tsr_session_free(w);
    tsr_model_free(m);
    now = device_memory_settled(ctx, start);
    check(st == TSR_OK && busy > start && now == start,
          "device memory: %zu at the start, %zu with a Whisper model and session, %zu after "
          "freeing them", start, busy, now);
    tsr_ctx_free(ctx);
}

int main(void)
{
    tsr_ctx *ctx = ctx_or_skip();
    test_memory(ctx);
    test_errors(ctx);
    tsr_ctx_free(ctx);
    test_memory_and_lifetimes();
    return finish();
}
