/* The text tower: token + position (+ token type) embeddings on the device,
 * then the shared encoder tower. */
#include <stdlib.h>
#include <string.h>

#include "tsr_textenc.h"
#include "tsr_textutil.h"

int tsr_textenc_pool_index(const tsr_textenc_cfg *c, const int *ids, int len)
{
    int best = 0;
    if (c->eos_id == 2) { /* legacy configs: the highest id is the end token */
        for (int i = 1; i < len; i++)
            if (ids[i] > ids[best])
                best = i;
        return best;
    }
    for (int i = 0; i < len; i++)
        if (ids[i] == c->eos_id)
            return i;
    return 0;
}

tsr_status tsr_textenc_plan(tsr_queue *q, const tsr_textenc_cfg *c, int B, int S, tsr_arena *a,
                            tsr_textenc_io *io, size_t scratch[TSR_SCRATCH_N], tsr_error *err)
{
    free(io->rows);
    io->rows = malloc(sizeof(int) * (size_t)B);
    if (!io->rows)
        return tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
    tsr_arena_reserve(a, &io->ids, sizeof(cl_int) * (size_t)B * S);
    return tsr_encoder_plan(q, &c->enc, B, S, a, &io->enc, scratch, err);
}

void tsr_textenc_io_free(tsr_textenc_io *io)
{
    free(io->rows);
    io->rows = NULL;
    tsr_encoder_io_free(&io->enc);
}

tsr_status tsr_textenc_forward(tsr_queue *q, const tsr_textenc_cfg *c, const tsr_textenc_w *w,
                               tsr_textenc_io *io, tsr_enc_scratch *s, const int *ids,
                               const int *lens, int B, int S, int l2, float *out, tsr_error *err)
{
    tsr_status rc = tsr_text_check_batch(ids, lens, B, S, c->max_pos - c->pos0, c->vocab, err);
    if (rc != TSR_OK)
        return rc;
    if (B > io->enc.max_b || S > io->enc.max_s)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                             "a batch of %d x %d tokens exceeds the planned %d x %d", B, S,
                             io->enc.max_b, io->enc.max_s);
    for (int b = 0; b < B; b++)
        io->rows[b] = c->pool_last    ? S - 1
                      : c->pool_first ? 0
                                      : tsr_textenc_pool_index(c, ids + (size_t)b * S, lens[b]);
    /* ids belong to the caller: the forward ends with a blocking read, and
     * with an error the queue is drained before returning */
    TSR_TRY(rc, tsr_buf_write_async(q, io->ids, 0, ids, sizeof(cl_int) * (size_t)B * S, err));
    TSR_TRY(rc, tsr_k_embed_tokens(q, io->enc.x, io->ids, w->tok, w->pos,
                                   c->type_vocab > 0 ? w->type0 : NULL, B, S, c->pos0,
                                   c->enc.layer.dim, err));
    TSR_TRY(rc, tsr_encoder_run(q, &c->enc, &w->enc, &io->enc, s, B, S, lens, io->rows, l2, out,
                                err));
    if (rc != TSR_OK)
        tsr_queue_finish(q, NULL);
    return rc;
}
