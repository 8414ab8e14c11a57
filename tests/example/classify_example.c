/* A zero-shot image classifier written only against tessera's installed
 * public headers, as a user's program would be:
 *
 *   classify_example MODEL_DIR "label a,label b,..." IMAGE...
 *
 * prints "IMAGE: LABEL PROBABILITY" per image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tsr_fusion.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL_DIR \"label a,label b,...\" IMAGE...\n", argv[0]);
        return 2;
    }
    const char *labels[64];
    int L = 0;
    char *list = strdup(argv[2]);
    for (char *tok = strtok(list, ","); tok && L < 64; tok = strtok(NULL, ","))
        labels[L++] = tok;
    const char *templates[] = {"a photo of a {}."};
    tsr_error err = {0};
    tsr_ctx *ctx = NULL;
    tsr_model *m = NULL;
    tsr_session *s = NULL;
    float *weights = NULL, *img = NULL, *probs = NULL;
    int rc = 1;
    if (tsr_ctx_create(NULL, &ctx, &err) != TSR_OK || tsr_model_load(ctx, argv[1], &m, &err) ||
        tsr_session_create(m, NULL, &s, &err))
        goto out;
    int P = tsr_model_embed_dim(m), n = argc - 3;
    weights = malloc(sizeof(float) * (size_t)L * P);
    img = malloc(sizeof(float) * (size_t)n * P);
    probs = malloc(sizeof(float) * (size_t)n * L);
    if (!weights || !img || !probs ||
        tsr_session_zeroshot_weights(s, labels, L, templates, 1, weights, NULL, &err) ||
        tsr_session_embed_image_files(s, (const char *const *)argv + 3, n, 1, img, &err))
        goto out;
    tsr_zeroshot_probs(m, img, n, weights, L, probs);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int l = 1; l < L; l++)
            best = probs[i * L + l] > probs[i * L + best] ? l : best;
        printf("%s: %s %.4f\n", argv[3 + i], labels[best], probs[i * L + best]);
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "classify_example: %s\n", err.msg);
    free(weights), free(img), free(probs), free(list);
    tsr_session_free(s);
    tsr_model_free(m);
    tsr_ctx_free(ctx);
    return rc;
}
