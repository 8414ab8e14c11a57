/* Model files from a directory or from memory. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_cl_internal.h"
#include "tsr_source.h"

void tsr_source_dir(tsr_source *s, const char *dir)
{
    memset(s, 0, sizeof *s);
    s->dir = dir;
    snprintf(s->label, sizeof s->label, "%s", dir);
}

void tsr_source_memory(tsr_source *s, const tsr_file *files, int n)
{
    memset(s, 0, sizeof *s);
    s->files = files;
    s->n = n;
    snprintf(s->label, sizeof s->label, "(memory)");
}

void tsr_src_path(const tsr_source *s, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", s->label, name);
}

static const tsr_file *find(const tsr_source *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (s->files[i].name && strcmp(s->files[i].name, name) == 0)
            return &s->files[i];
    return NULL;
}

int tsr_src_exists(const tsr_source *s, const char *name)
{
    if (!s->dir)
        return find(s, name) != NULL;
    char path[4200];
    tsr_src_path(s, name, path, sizeof path);
    struct stat sb;
    return stat(path, &sb) == 0;
}

char *tsr_src_read(const tsr_source *s, const char *name, size_t max, size_t *len,
                   tsr_error *err)
{
    char path[4200];
    tsr_src_path(s, name, path, sizeof path);
    if (s->dir)
        return (char *)tsr_read_file(path, max, len, err);
    const tsr_file *f = find(s, name);
    if (!f || (!f->data && f->size)) {
        tsr_error_set(err, TSR_ERR_IO, "%s: cannot open (not among the files given)", path);
        return NULL;
    }
    if (f->size > max) {
        tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: larger than %zu bytes", path, max);
        return NULL;
    }
    char *c = malloc(f->size + 1);
    if (!c) {
        tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
        return NULL;
    }
    if (f->size)
        memcpy(c, f->data, f->size);
    c[f->size] = 0;
    if (len)
        *len = f->size;
    return c;
}

cJSON *tsr_src_json(const tsr_source *s, const char *name, size_t max, tsr_error *err)
{
    size_t n = 0;
    char *text = tsr_src_read(s, name, max, &n, err);
    if (!text)
        return NULL;
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        char path[4200];
        tsr_src_path(s, name, path, sizeof path);
        tsr_error_set(err, TSR_ERR_FORMAT, "%s: not valid JSON", path);
        return NULL;
    }
    return root;
}

tsr_status tsr_src_tokenizer(const tsr_source *s, const char *first, const char *second,
                             int second_optional, tsr_tok_files *f, tsr_error *err)
{
    memset(f, 0, sizeof *f);
    f->json = tsr_src_exists(s, "tokenizer.json");
    const char *name = f->json ? "tokenizer.json" : first;
    tsr_src_path(s, name, f->path[0], sizeof f->path[0]);
    if (!(f->text[0] = tsr_src_read(s, name, TSR_MAX_TOKENIZER_BYTES, &f->len[0], err)))
        return err->code;
    if (f->json || !second || (second_optional && !tsr_src_exists(s, second)))
        return TSR_OK;
    tsr_src_path(s, second, f->path[1], sizeof f->path[1]);
    if (!(f->text[1] = tsr_src_read(s, second, TSR_MAX_TOKENIZER_BYTES, &f->len[1], err))) {
        tsr_tok_files_free(f);
        return err->code;
    }
    return TSR_OK;
}

void tsr_tok_files_free(tsr_tok_files *f)
{
    free(f->text[0]);
    free(f->text[1]);
    f->text[0] = f->text[1] = NULL;
}

tsr_status tsr_src_wordpiece(const tsr_source *s, tsr_wordpiece **out, tsr_error *err)
{
    tsr_tok_files f; /* vocab.txt with tokenizer_config.json's do_lower_case, if any */
    tsr_status rc = tsr_src_tokenizer(s, "vocab.txt", "tokenizer_config.json", 1, &f, err);
    if (rc == TSR_OK && f.json)
        rc = tsr_wordpiece_load_json(f.text[0], f.len[0], f.path[0], out, err);
    else if (rc == TSR_OK)
        rc = tsr_wordpiece_load_vocab(f.text[0], f.len[0], f.path[0], f.text[1], f.len[1],
                                      f.path[1], out, err);
    tsr_tok_files_free(&f);
    return rc;
}

tsr_status tsr_src_preprocess(const tsr_source *s, int image_size, int required,
                              tsr_preprocess_cfg *cfg, tsr_error *err)
{
    if (!required && !tsr_src_exists(s, "preprocessor_config.json")) {
        *cfg = tsr_preprocess_cfg_default(image_size);
        return TSR_OK;
    }
    char path[4200];
    tsr_src_path(s, "preprocessor_config.json", path, sizeof path);
    size_t n = 0;
    char *text = tsr_src_read(s, "preprocessor_config.json", 1 << 20, &n, err);
    tsr_status rc = text ? tsr_preprocess_cfg_load_json(text, n, path, cfg, err) : err->code;
    free(text);
    if (rc == TSR_OK && (cfg->crop_h != image_size || cfg->crop_w != image_size))
        rc = tsr_error_set(err, TSR_ERR_FORMAT,
                           "%s: images come out %dx%d (the crop size) but the model's image_size "
                           "is %d", path, cfg->crop_w, cfg->crop_h, image_size);
    return rc;
}

tsr_status tsr_src_map(const tsr_source *s, const char *name, tsr_mapping *m, tsr_error *err)
{
    memset(m, 0, sizeof *m);
    char path[4200];
    tsr_src_path(s, name, path, sizeof path);
    if (!s->dir) {
        const tsr_file *f = find(s, name);
        if (!f || (!f->data && f->size))
            return tsr_error_set(err, TSR_ERR_IO, "%s: cannot open (not among the files given)",
                                 path);
        m->data = f->data;
        m->size = f->size;
        return TSR_OK;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return tsr_error_set(err, TSR_ERR_IO, "%s: not a regular file", path);
    }
    m->size = (size_t)sb.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return tsr_error_set(err, TSR_ERR_IO, "%s: mmap failed", path);
        }
        m->data = p;
        m->mapped = 1;
    }
    close(fd);
    return TSR_OK;
}

void tsr_src_unmap(tsr_mapping *m)
{
    if (m->mapped && m->data)
        munmap((void *)m->data, m->size);
    memset(m, 0, sizeof *m);
}
