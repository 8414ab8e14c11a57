/* Internal: where a model's files come from, a directory or a set of named
 * buffers in memory (tsr_model_load_memory), behind one interface.
 *
 *   tsr_source src;
 *   tsr_source_dir(&src, "models/clip");
 *   cJSON *cfg = tsr_src_json(&src, "config.json", 1 << 20, err);
 *   tsr_st *st = NULL;
 *   tsr_st_open_source(&src, &st, err);   // model.safetensors or its shards
 */
#ifndef TSR_SOURCE_H
#define TSR_SOURCE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "tsr_fusion.h"

#define TSR_MAX_TOKENIZER_BYTES (64u << 20)

typedef struct tsr_source_s {
    const char *dir;      /* a directory, or NULL for files in memory */
    const tsr_file *files;
    int n;
    char label[2048];     /* the directory, or "(memory)", for messages */
} tsr_source;

void tsr_source_dir(tsr_source *s, const char *dir);
void tsr_source_memory(tsr_source *s, const tsr_file *files, int n);
/* "<label>/<name>" for messages and for file paths. */
void tsr_src_path(const tsr_source *s, const char *name, char *out, size_t cap);
int tsr_src_exists(const tsr_source *s, const char *name);
/* A NUL-terminated copy of the whole file (at most max bytes); *len may be NULL. */
char *tsr_src_read(const tsr_source *s, const char *name, size_t max, size_t *len,
                   tsr_error *err);
/* A JSON object, or NULL with err ("<label>/<name>: not valid JSON"). */
cJSON *tsr_src_json(const tsr_source *s, const char *name, size_t max, tsr_error *err);

/* A tokenizer's files: tokenizer.json when there is one (json = 1, text[0]),
 * else the older pair, first (required) and second (required unless
 * second_optional; text[1] NULL when absent). */
typedef struct {
    int json;
    char *text[2];
    size_t len[2];
    char path[2][4200]; /* the files' paths, for messages */
} tsr_tok_files;
tsr_status tsr_src_tokenizer(const tsr_source *s, const char *first, const char *second,
                             int second_optional, tsr_tok_files *f, tsr_error *err);
void tsr_tok_files_free(tsr_tok_files *f);
/* A BERT WordPiece tokenizer: tokenizer.json, or vocab.txt with
 * tokenizer_config.json's do_lower_case. */
tsr_status tsr_src_wordpiece(const tsr_source *s, tsr_wordpiece **out, tsr_error *err);
/* preprocessor_config.json (when absent and not required: CLIP's defaults
 * for image_size), checked to give images of image_size x image_size. */
tsr_status tsr_src_preprocess(const tsr_source *s, int image_size, int required,
                              tsr_preprocess_cfg *cfg, tsr_error *err);

/* A whole file in memory: mapped from a directory, borrowed from memory. */
typedef struct {
    const unsigned char *data;
    size_t size;
    int mapped;
} tsr_mapping;
tsr_status tsr_src_map(const tsr_source *s, const char *name, tsr_mapping *m, tsr_error *err);
void tsr_src_unmap(tsr_mapping *m);

#endif
