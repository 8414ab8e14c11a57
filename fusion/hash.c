/* SHA-256 (OpenSSL's libcrypto) for content hashes, downloads and model
 * fingerprints. */
#include <openssl/evp.h>
#include <stdio.h>

#include "tsr_hash.h"

int tsr_sha256_init(tsr_sha256 *h)
{
    h->md = EVP_MD_CTX_new();
    h->ok = h->md && EVP_DigestInit_ex((EVP_MD_CTX *)h->md, EVP_sha256(), NULL);
    return h->ok;
}

void tsr_sha256_update(tsr_sha256 *h, const void *data, size_t n)
{
    if (h->ok && n)
        h->ok = EVP_DigestUpdate((EVP_MD_CTX *)h->md, data, n);
}

int tsr_sha256_final(tsr_sha256 *h, char hex[65])
{
    unsigned char md[32];
    unsigned len = 0;
    int ok = h->ok && EVP_DigestFinal_ex((EVP_MD_CTX *)h->md, md, &len) && len == 32;
    EVP_MD_CTX_free((EVP_MD_CTX *)h->md);
    h->md = NULL;
    hex[0] = 0;
    for (unsigned i = 0; ok && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return ok;
}

int tsr_sha256_hex(const void *data, size_t n, char hex[65])
{
    tsr_sha256 h;
    tsr_sha256_init(&h);
    tsr_sha256_update(&h, data, n);
    return tsr_sha256_final(&h, hex);
}

int tsr_sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    hex[0] = 0;
    if (!f)
        return 0;
    tsr_sha256 h;
    tsr_sha256_init(&h);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        tsr_sha256_update(&h, buf, n);
    if (ferror(f))
        h.ok = 0;
    fclose(f);
    return tsr_sha256_final(&h, hex);
}

int tsr_git_blob_sha1_file(const char *path, char hex[41])
{
    hex[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int ok = fseek(f, 0, SEEK_END) == 0;
    long size = ok ? ftell(f) : -1;
    ok = ok && size >= 0 && fseek(f, 0, SEEK_SET) == 0;
    EVP_MD_CTX *c = ok ? EVP_MD_CTX_new() : NULL;
    ok = c && EVP_DigestInit_ex(c, EVP_sha1(), NULL);
    char head[32];
    int hn = snprintf(head, sizeof head, "blob %ld", size);
    ok = ok && EVP_DigestUpdate(c, head, (size_t)hn + 1); /* with its NUL */
    unsigned char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(c, buf, n);
    ok = ok && !ferror(f);
    fclose(f);
    unsigned char md[20];
    unsigned len = 0;
    ok = ok && EVP_DigestFinal_ex(c, md, &len) && len == 20;
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; ok && i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return ok;
}
