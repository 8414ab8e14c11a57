/* The safetensors reader against crafted bad files: header length, JSON,
 * offsets, sizes, dtypes; and F16/BF16 conversion against known bit
 * patterns. No OpenCL needed. */
#include <unistd.h>

#include "st_write.h"

static char dir[64];

static void expect_bad(const char *name, const char *header, uint64_t hlen, size_t ndata,
                       const char *needle)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    unsigned char data[64] = {0};
    write_raw_st(path, header, hlen, data, ndata);
    tsr_st *st = NULL;
    tsr_error err = {0};
    tsr_status rc = tsr_st_open_file(path, &st, &err);
    check(rc != TSR_OK && st == NULL && strstr(err.msg, path) && strstr(err.msg, needle),
          "%s refused: %s", name, err.msg);
    tsr_st_close(st);
    unlink(path);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/tessera-st-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    expect_bad("huge_header_len", "{}", (uint64_t)1 << 40, 0, "bad header length");
    expect_bad("header_past_eof", "{}", 4096, 0, "bad header length");
    expect_bad("not_json", "this is not json", 0, 0, "not a JSON object");
    expect_bad("out_of_range",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,800]}}", 0, 8,
               "out-of-range offsets");
    expect_bad("reversed_offsets",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8,
               "out-of-range offsets");
    expect_bad("size_mismatch",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8,
               "spans 8 bytes");
    expect_bad("overflowing_shape",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}",
               0, 8, "out-of-range");
    expect_bad("negative_dim",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8,
               "out-of-range");
    expect_bad("unknown_dtype",
               "{\"w\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8,
               "unknown dtype");
    expect_bad("missing_fields", "{\"w\":{\"dtype\":\"F32\"}}", 0, 0, "malformed");
    char path[256];
    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    tsr_st *st = NULL;
    tsr_error err = {0};
    check(tsr_st_open_file(path, &st, &err) == TSR_ERR_FORMAT && strstr(err.msg, "too short"),
          "3-byte file refused: %s", err.msg);
    unlink(path);

    /* F16 and BF16 conversion, little-endian bit patterns */
    const unsigned short f16[] = {0x3C00, 0xC100, 0x7BFF, 0x0400, 0x0001, 0x8000, 0x7C00, 0x3555};
    const float f16_ref[] = {1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f,
                             -0.0f, INFINITY, 0.333251953125f};
    const unsigned short bf16[] = {0x3F80, 0xC049, 0x0001, 0x7F7F};
    const float bf16_ref[] = {1.0f, -3.140625f, 9.18354961579912e-41f, 3.3895313892515355e38f};
    unsigned char data[32];
    memcpy(data, f16, 16);
    memcpy(data + 16, bf16, 8);
    snprintf(path, sizeof path, "%s/dtypes.safetensors", dir);
    write_raw_st(path,
                 "{\"h\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[0,16]},"
                 "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[16,24]},"
                 "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]},"
                 "\"__metadata__\":{\"format\":\"pt\"}}    ",
                 0, data, 28);
    int ok = tsr_st_open_file(path, &st, &err) == TSR_OK;
    check(ok, "crafted F16/BF16/F32 file opens %s", ok ? "" : err.msg);
    if (ok) {
        float out[8];
        double e = 0;
        const tsr_st_tensor *h = tsr_st_find(st, "h"), *b = tsr_st_find(st, "b"),
                            *s = tsr_st_find(st, "s");
        check(h && b && s && tsr_st_count(st) == 3 && s->ndim == 0 && s->numel == 1,
              "three tensors found, scalar has no dimensions");
        tsr_st_to_f32(h, out, &err);
        int same = 1;
        for (int i = 0; i < 8; i++)
            same &= memcmp(&out[i], &f16_ref[i], 4) == 0;
        check(same, "F16 to F32 exact, subnormals, -0 and inf included");
        tsr_st_to_f32(b, out, &err);
        int ok = close_enough(out, bf16_ref, 4, 0, 1e-7, &e);
        check(ok, "BF16 to F32 exact (max error %.3g)", e);
        tsr_st_close(st);
    }
    unlink(path);
    rmdir(dir);
    return finish();
}
