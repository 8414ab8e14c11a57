/* The launch counter as a regression guard: a forward pass enqueues a known
 * number of kernels per encoder layer and per decoder step, and makes no
 * host synchronisation and creates no buffer inside them.
 *
 * Two independent counts are checked. The library's own counter
 * (tsr_session_counters) and the OpenCL calls themselves, counted by
 * wrappers around clFinish, clWaitForEvents, clCreateBuffer,
 * clCreateSubBuffer, clEnqueueNDRangeKernel and the blocking transfers.
 * The test executable exports the wrappers, so the calls that CLBlast makes
 * from its own shared library are counted too. A whole image forward pass
 * may wait once (reading the embeddings back), and a decoding step once
 * (reading the logits). */
#define _GNU_SOURCE
#include <dlfcn.h>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "tsr_cl_internal.h"
#include "tsr_fusion.h"
#include "testutil.h"

static struct {
    long finish, wait, buffers, kernels, blocking;
} calls;

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

CL_API_ENTRY cl_int CL_API_CALL clFinish(cl_command_queue q)
{
    calls.finish++;
    return REAL(clFinish)(q);
}

CL_API_ENTRY cl_int CL_API_CALL clWaitForEvents(cl_uint n, const cl_event *e)
{
    calls.wait++;
    return REAL(clWaitForEvents)(n, e);
}

CL_API_ENTRY cl_mem CL_API_CALL clCreateBuffer(cl_context c, cl_mem_flags f, size_t size, void *p,
                                               cl_int *e)
{
    calls.buffers++;
    return REAL(clCreateBuffer)(c, f, size, p, e);
}

CL_API_ENTRY cl_mem CL_API_CALL clCreateSubBuffer(cl_mem m, cl_mem_flags f,
                                                  cl_buffer_create_type t, const void *info,
                                                  cl_int *e)
{
    calls.buffers++;
    return REAL(clCreateSubBuffer)(m, f, t, info, e);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k,
                                                       cl_uint dim, const size_t *off,
                                                       const size_t *global, const size_t *local,
                                                       cl_uint n, const cl_event *w, cl_event *e)
{
    calls.kernels++;
    return REAL(clEnqueueNDRangeKernel)(q, k, dim, off, global, local, n, w, e);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueReadBuffer(cl_command_queue q, cl_mem m, cl_bool blocking,
                                                    size_t off, size_t size, void *p, cl_uint n,
                                                    const cl_event *w, cl_event *e)
{
    calls.blocking += blocking != CL_FALSE;
    return REAL(clEnqueueReadBuffer)(q, m, blocking, off, size, p, n, w, e);
}

CL_API_ENTRY cl_int CL_API_CALL clEnqueueWriteBuffer(cl_command_queue q, cl_mem m,
                                                     cl_bool blocking, size_t off, size_t size,
                                                     const void *p, cl_uint n, const cl_event *w,
                                                     cl_event *e)
{
    calls.blocking += blocking != CL_FALSE;
    return REAL(clEnqueueWriteBuffer)(q, m, blocking, off, size, p, n, w, e);
}

static int clblast_path(tsr_ctx *ctx) { return strstr(tsr_ctx_tuning(ctx), "forced: clblast") ||
                                               strncmp(tsr_ctx_tuning(ctx), "built-in table: CLBlast", 23) == 0; }

/* 16-bit weights: on CLBlast every GEMM widens its weight in one more kernel. */
static int w16(const tsr_ctx *ctx) { return strcmp(tsr_ctx_dtype(ctx), "f32") != 0; }

static void print_counts(const char *what, const tsr_launch_counts *c)
{
    printf("     %s: %llu kernels, %llu CLBlast calls, %llu host waits, %llu buffers\n", what,
           (unsigned long long)c->launches, (unsigned long long)c->gemms,
           (unsigned long long)c->syncs, (unsigned long long)c->buffers);
}

/* A CLIP image and text forward pass (clip-tiny-b: 3 layers per tower). */
static void test_encoder(tsr_ctx *ctx, int blast)
{
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, TSR_FIXTURES "/models/clip-tiny-b", &m, &err) != TSR_OK) {
        check(0, "load clip-tiny-b: %s", err.msg);
        return;
    }
    tsr_session *s = new_session(m);
    int S = tsr_model_image_size(m);
    float *px = calloc((size_t)3 * S * S * 2, sizeof(float)), out[2 * 64];
    const char *texts[2] = {"a photo of a cat", "a red circle"};
    /* the first calls plan the session and compile CLBlast's programs */
    tsr_status st = tsr_session_embed_pixels(s, px, 2, 1, out, &err);
    if (st == TSR_OK)
        st = tsr_session_embed_texts(s, texts, 2, 1, out, NULL, &err);
    for (int tower = 0; tower < 2 && st == TSR_OK; tower++) {
        memset(&calls, 0, sizeof calls);
        st = tower ? tsr_session_embed_texts(s, texts, 2, 1, out, NULL, &err)
                   : tsr_session_embed_pixels(s, px, 2, 1, out, &err);
        tsr_launch_counts layer;
        tsr_session_counters(s, &layer, NULL);
        const char *name = tower ? "text" : "image";
        print_counts(tower ? "per text encoder layer" : "per image encoder layer", &layer);
        printf("     a whole %s forward pass: %ld kernels enqueued (CLBlast's included), "
               "%ld clFinish, %ld waits, %ld buffers, %ld blocking transfers\n",
               name, calls.kernels, calls.finish, calls.wait, calls.buffers, calls.blocking);
        /* pre-layernorm layer: LN, qkv, attention, out, add, LN, fc1, fc2, add; on
         * CLBlast the four GEMMs are CLBlast calls, each adding its bias in a kernel,
         * and with 16-bit weights each widening its weight in one more */
        uint64_t want = 9 + (blast && w16(ctx) ? 4 : 0);
        check(st == TSR_OK && layer.launches == want &&
                  layer.gemms == (blast ? 4u : 0u) && layer.syncs == 0 && layer.buffers == 0,
              "%s encoder layer (%s, %s weights): %llu kernels, %llu CLBlast calls, no wait, no "
              "buffer", name, blast ? "CLBlast" : "tessera's GEMM", tsr_ctx_dtype(ctx),
              (unsigned long long)layer.launches,
              (unsigned long long)layer.gemms);
        check(st == TSR_OK && calls.finish == 0 && calls.wait == 0 && calls.buffers == 0 &&
                  calls.blocking == 1,
              "%s forward pass, counted at OpenCL: no clFinish, no buffer, one blocking read",
              name);
    }
    if (st != TSR_OK)
        check(0, "encoder forward: %s", err.msg);
    free(px);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* Decoding steps of the tiny HF Whisper (2 layers, cross-attention). */
static void test_decoder(tsr_ctx *ctx, int blast)
{
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, TSR_FIXTURES "/whisper/hf-tiny", &m, &err) != TSR_OK) {
        check(0, "load hf-tiny: %s", err.msg);
        return;
    }
    tsr_session *s = new_session(m);
    int M = tsr_model_n_mels(m), T = 2 * tsr_model_audio_ctx(m), V = tsr_model_vocab_size(m);
    float *mel = calloc((size_t)M * T, sizeof(float)), *lg = malloc(sizeof(float) * 4 * V);
    int toks[4] = {257, 258, 259, 1};
    tsr_status st = tsr_session_whisper_encode(s, mel, NULL, &err);
    if (st == TSR_OK) /* a warm-up */
        st = tsr_session_whisper_logits(s, toks, 4, lg, &err);
    memset(&calls, 0, sizeof calls);
    if (st == TSR_OK)
        st = tsr_session_whisper_logits(s, toks, 4, lg, &err);
    tsr_launch_counts step;
    tsr_session_counters(s, NULL, &step);
    print_counts("per decoder step", &step);
    printf("     4 steps and the cross-attention set-up: %ld kernels, %ld clFinish, %ld waits, "
           "%ld buffers, %ld blocking transfers\n",
           calls.kernels, calls.finish, calls.wait, calls.buffers, calls.blocking);
    /* the token embedding, per layer 15 kernels (self-attention 6 with the cache
     * append, cross-attention 5, MLP 4), then gather, layernorm and the vocabulary
     * projection. On CLBlast the 6 GEMMs of a layer are CLBlast calls that add their
     * bias in a kernel, and the bias-free projection is a CLBlast call alone. */
    uint64_t L = 2, want = 1 + 15 * L + (blast ? 2 : 3) + (blast && w16(ctx) ? 6 * L + 1 : 0);
    check(st == TSR_OK && step.launches == want && step.gemms == (blast ? 6 * L + 1 : 0) &&
              step.syncs == 1 && step.buffers == 0,
          "decoder step (%s, %s weights): %llu kernels (%llu expected), one wait (the logits), "
          "no buffer", blast ? "CLBlast" : "tessera's GEMM", tsr_ctx_dtype(ctx),
          (unsigned long long)step.launches,
          (unsigned long long)want);
    check(st == TSR_OK && calls.finish == 0 && calls.wait == 0 && calls.buffers == 0 &&
              calls.blocking == 4,
          "4 decoder steps, counted at OpenCL: no clFinish, no buffer, one blocking read each");
    if (st != TSR_OK)
        check(0, "decoder: %s", err.msg);
    free(mel), free(lg);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* Decoding steps of a captioner: the kernels and CLBlast calls of one step
 * (after a warm-up), and four steps counted at OpenCL. */
static void caption_steps(tsr_ctx *ctx, const char *dir, const char *what, uint64_t want,
                          uint64_t gemms, int blast)
{
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(ctx, dir, &m, &err) != TSR_OK) {
        check(0, "load %s: %s", dir, err.msg);
        return;
    }
    tsr_session *s = new_session(m);
    int S = tsr_model_caption_image_size(m);
    float *px = calloc(3 * (size_t)S * S, sizeof(float)), *lg = malloc(sizeof(float) * 4 * 4096);
    int toks[4] = {5, 6, 7, 8};
    tsr_status st = tsr_session_caption_encode(s, px, NULL, &err);
    if (st == TSR_OK) /* a warm-up */
        st = tsr_session_caption_logits(s, toks, 4, lg, &err);
    memset(&calls, 0, sizeof calls);
    if (st == TSR_OK)
        st = tsr_session_caption_logits(s, toks, 4, lg, &err);
    tsr_launch_counts step;
    tsr_session_counters(s, NULL, &step);
    char label[64];
    snprintf(label, sizeof label, "per %s decoder step", what);
    print_counts(label, &step);
    check(st == TSR_OK && step.launches == want && step.gemms == (blast ? gemms : 0) &&
              step.syncs == 1 && step.buffers == 0,
          "%s decoder step (%s): %llu kernels (%llu expected), %llu CLBlast calls, one wait "
          "(the logits), no buffer", what, blast ? "CLBlast" : "tessera's GEMM",
          (unsigned long long)step.launches, (unsigned long long)want,
          (unsigned long long)step.gemms);
    check(st == TSR_OK && calls.finish == 0 && calls.wait == 0 && calls.buffers == 0 &&
              calls.blocking == 4,
          "4 %s decoder steps, counted at OpenCL: no clFinish, no buffer, one blocking read each "
          "(%ld, %ld, %ld, %ld)", what, calls.finish, calls.wait, calls.buffers, calls.blocking);
    if (st != TSR_OK)
        check(0, "%s decoder: %s", what, err.msg);
    free(px), free(lg);
    tsr_session_free(s);
    tsr_model_free(m);
}

/* The tiny BLIP (2 post-LN layers with cross-attention, an embedding
 * layernorm and BERT's prediction head): the token embedding and its
 * layernorm, per layer 15 kernels (post-LN: the layernorms take the place of
 * the pre-LN ones), then gather, the head's dense layer and layernorm, and
 * the vocabulary projection with its bias; on CLBlast the two head GEMMs are
 * CLBlast calls too. The tiny CoCa (coca-tiny-a: 2 text layers without
 * cross-attention, 2 multimodal layers, each a self-attention block and a
 * cross-attention block): the token embedding; per text layer 10 kernels
 * (self-attention 6 with the cache append, MLP 4); per multimodal layer 10
 * for its self-attention block and 9 for its cross-attention block
 * (cross-attention 5, MLP 4); then gather, layernorm and the bias-free
 * projection (one CLBlast call alone). */
static void test_caption_decoders(tsr_ctx *ctx, int blast)
{
    uint64_t L = 2;
    caption_steps(ctx, TSR_FIXTURES "/models/blip-tiny", "BLIP", 2 + 15 * L + 4, 6 * L + 2, blast);
    uint64_t T = 2, M = 2;
    caption_steps(ctx, TSR_FIXTURES "/models/coca-tiny-a", "CoCa",
                  1 + 10 * T + 19 * M + (blast ? 2 : 3), 4 * T + 8 * M + 1, blast);
}

/* CLBlast's indirect GEMM (large shapes) pads its operands into temporary
 * matrices. Without a temporary buffer it allocates them on every call,
 * which these wrappers see; with the buffer a session plans, it allocates
 * nothing. */
static void test_gemm_tmp(tsr_ctx *ctx)
{
    const int M = 1601, N = 3000, K = 770;
    tsr_error err = {0};
    tsr_queue *q = NULL;
    tsr_status st = tsr_queue_create(ctx, &q, &err);
    cl_mem x = NULL, w = NULL, y = NULL;
    tsr_arena a;
    tsr_arena_init(&a, ctx);
    tsr_arena_reserve(&a, &x, sizeof(float) * (size_t)M * K);
    tsr_arena_reserve(&a, &w, sizeof(float) * (size_t)N * K);
    tsr_arena_reserve(&a, &y, sizeof(float) * (size_t)M * N);
    if (st == TSR_OK)
        st = tsr_arena_commit(&a, &err);
    long unplanned = -1, planned = -1;
    for (int plan = 0; plan < 2 && st == TSR_OK; plan++) {
        tsr_arena t;
        tsr_arena_init(&t, ctx);
        if (plan) {
            st = tsr_linear_plan(q, M, N, K, &err);
            tsr_linear_plan_reserve(q, &t);
            if (st == TSR_OK)
                st = tsr_arena_commit(&t, &err);
        }
        if (st == TSR_OK) /* compiles CLBlast's kernels */
            st = tsr_linear(q, x, M, K, w, NULL, N, y, TSR_ACT_NONE, &err);
        if (st == TSR_OK)
            st = tsr_queue_finish(q, &err);
        memset(&calls, 0, sizeof calls);
        if (st == TSR_OK)
            st = tsr_linear(q, x, M, K, w, NULL, N, y, TSR_ACT_NONE, &err);
        *(plan ? &planned : &unplanned) = calls.buffers + calls.finish;
        if (st == TSR_OK)
            st = tsr_queue_finish(q, &err);
        tsr_arena_release(&t);
        q->gemm_tmp_bytes = q->gemm_tmp_need = 0;
    }
    printf("     CLBlast GEMM %dx%dx%d: %ld buffers and waits without a planned temporary "
           "buffer, %ld with one\n", M, N, K, unplanned, planned);
    check(st == TSR_OK && unplanned > 0, "without a plan CLBlast allocates, and the wrappers "
          "see it (%ld) %s", unplanned, st ? err.msg : "");
    check(st == TSR_OK && planned == 0, "with the planned temporary buffer: no buffer, no wait");
    tsr_arena_release(&a);
    tsr_queue_free(q);
}

int main(void)
{
    tsr_ctx *ctx = ctx_or_skip();
    int blast = clblast_path(ctx);
    printf("GEMM: %s\n", tsr_ctx_tuning(ctx));
    test_encoder(ctx, blast);
    test_decoder(ctx, blast);
    test_caption_decoders(ctx, blast);
    if (blast)
        test_gemm_tmp(ctx);
    tsr_ctx_free(ctx);
    /* half weights: the same counts (plus the widening on CLBlast), still no
     * wait and no buffer inside a layer or a step */
    tsr_ctx_params p = test_ctx_params();
    p.dtype = "f16";
    ctx = ctx_with_or_skip(&p);
    test_encoder(ctx, blast);
    test_decoder(ctx, blast);
    tsr_ctx_free(ctx);
    return finish();
}
