/* Internal: SHA-256 through OpenSSL's libcrypto. Each returns 1 on success
 * and writes 64 lower-case hex digits and a NUL. */
#ifndef TSR_HASH_H
#define TSR_HASH_H

#include <stddef.h>

typedef struct {
    void *md; /* EVP_MD_CTX */
    int ok;
} tsr_sha256;

int tsr_sha256_init(tsr_sha256 *h);
void tsr_sha256_update(tsr_sha256 *h, const void *data, size_t n);
int tsr_sha256_final(tsr_sha256 *h, char hex[65]);
int tsr_sha256_hex(const void *data, size_t n, char hex[65]);
int tsr_sha256_file(const char *path, char hex[65]);
/* git's blob id of a file: SHA-1 over "blob SIZE\0" and the content (40 hex digits). */
int tsr_git_blob_sha1_file(const char *path, char hex[41]);

#endif
