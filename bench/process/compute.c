/* A compute-bound program for `hvemu bench --run` and bench/test_process_speed.py:
 * integer work as a C program does it -- qsort through a comparison function, CRC-32,
 * string hashing (FNV-1a) and a matrix product.  `compute N` runs N rounds and prints one
 * checksum, the same on every emulator and on the host. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSORT 150000
#define NBYTES (1 << 20)
#define NSTR 40000
#define MAT 96

static uint32_t rng = 2463534242u;
static uint32_t next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

static int cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) { h ^= (uint8_t)*s++; h *= 1099511628211ull; }
    return h;
}

static uint32_t sortv[NSORT];
static uint8_t bytes[NBYTES];
static int64_t a[MAT][MAT], b[MAT][MAT], c[MAT][MAT];

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    uint64_t sum = 0;
    char buf[32];
    crc_init();
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < NSORT; i++) sortv[i] = next();
        qsort(sortv, NSORT, sizeof sortv[0], cmp);
        sum += sortv[NSORT / 2];
        for (int i = 0; i < NBYTES; i++) bytes[i] = (uint8_t)next();
        sum += crc32(bytes, NBYTES);
        for (int i = 0; i < NSTR; i++) {
            snprintf(buf, sizeof buf, "key-%d-%u", i, next() & 0xFFFF);
            sum ^= fnv1a(buf) + (uint64_t)strlen(buf);
        }
        for (int i = 0; i < MAT; i++)
            for (int j = 0; j < MAT; j++) { a[i][j] = (int32_t)next() >> 16; b[i][j] = (int32_t)next() >> 16; }
        for (int i = 0; i < MAT; i++)
            for (int j = 0; j < MAT; j++) {
                int64_t s = 0;
                for (int k = 0; k < MAT; k++) s += a[i][k] * b[k][j];
                c[i][j] = s;
            }
        sum += (uint64_t)c[r % MAT][(r * 7) % MAT];
    }
    printf("compute: %d rounds, checksum %016llx\n", rounds, (unsigned long long)sum);
    return 0;
}
