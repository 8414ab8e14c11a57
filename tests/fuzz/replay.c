/* Runs a fuzz target over files (seed inputs, or crashes to reproduce) and
 * over mutated copies of them, so CTest exercises every target without
 * libFuzzer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    unsigned seed = 1;
    int runs = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            printf("FAIL cannot open %s\n", argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc((size_t)n + 1), *mut = malloc((size_t)n + 1);
        if (!buf || !mut || fread(buf, 1, (size_t)n, f) != (size_t)n) {
            fclose(f);
            return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        runs++;
        /* truncations and byte flips */
        for (int k = 0; k < 64 && n > 0; k++) {
            memcpy(mut, buf, (size_t)n);
            size_t len = (size_t)n;
            seed = seed * 1103515245u + 12345u;
            if (k % 4 == 0)
                len = (seed >> 8) % (size_t)n;
            for (int m = 0; m < 1 + k % 8; m++) {
                seed = seed * 1103515245u + 12345u;
                mut[(seed >> 8) % (size_t)n] ^= (uint8_t)(seed >> 24 | 1);
            }
            LLVMFuzzerTestOneInput(mut, len);
            runs++;
        }
        free(buf);
        free(mut);
    }
    printf("%d inputs ran without a crash\n%d passed, 0 failed\n", runs, argc - 1);
    return 0;
}
