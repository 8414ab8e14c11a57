/* Fuzz target: opening an index file and every reader of its rows (info,
 * listing, lookup, export), then a write and a removal. */
#include <stdio.h>
#include <string.h>

#include "tsr_fusion.h"

#include "fuzz_file.h"

static int visit(void *user, const char *path, int64_t size, int64_t mtime, const char *hash)
{
    (*(int *)user)++;
    return 0;
}

static void cleanup(const char *path)
{
    char p[128];
    const char *ext[] = {"", "-wal", "-shm", ".npy", ".jsonl"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        unlink(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], npy[96], jsonl[96];
    if (!fuzz_temp_file(data, size, "index", path, sizeof path))
        return 0;
    snprintf(npy, sizeof npy, "%s.npy", path);
    snprintf(jsonl, sizeof jsonl, "%s.jsonl", path);
    tsr_index *ix = NULL;
    tsr_error err = {0};
    if (tsr_index_open(path, 1, &ix, &err) == TSR_OK) {
        tsr_index_info info;
        int n = 0, found = 0;
        int64_t rows = 0, removed = 0;
        char hash[65];
        tsr_index_get_info(ix, &info, &err);
        tsr_index_foreach(ix, NULL, visit, &n, &err);
        tsr_index_lookup(ix, "assets/red_circle.png", &found, NULL, NULL, hash, &err);
        tsr_index_export(ix, npy, jsonl, NULL, &rows, &err);
        int dim = tsr_index_dim(ix);
        float *e = calloc((size_t)dim, sizeof *e);
        if (e) {
            e[0] = 1;
            tsr_index_embedding(ix, "assets/blue_star.png", e, &found, &err);
            tsr_index_item it = {"x.png", 1, 1, "00", TSR_MOD_IMAGE, "{\"a\":1}", e};
            tsr_index_put(ix, &it, 1, &err);
            const char *gone = "assets";
            tsr_index_remove(ix, &gone, 1, &removed, &err);
            free(e);
        }
        tsr_index_close(ix);
    }
    cleanup(path);
    return 0;
}
