/* benchwork.c: bench's deterministic integer workload (~300 million
 * instructions), shared by bench.elf (M-mode, bare) and bench-sv39.elf
 * (S-mode under Sv39 paging).  Phases: ALU loop, mul/div/rem loop, memcpy
 * of a buffer, bitwise CRC32 over it, and heapsorts of xorshift32
 * numbers.  Every phase feeds a 64-bit checksum; the CRC and the sort are
 * also self-checked, so a wrong result fails with a non-zero exit code. */
#include "fw.h"

#define ALU_ITERS       5300000
#define MULDIV_ITERS    3000000
#define BUF_BYTES       (64 * 1024)
#define COPY_ROUNDS     480
#define CRC_ROUNDS      13
#define SORT_N          (64 * 1024)
#define SORT_ROUNDS     3

static uint64_t buf_a[BUF_BYTES / 8], buf_b[BUF_BYTES / 8];
static uint32_t sort_data[SORT_N];
static uint64_t checksum = 0xcbf29ce484222325UL;

static void mix(uint64_t v)
{
    checksum = (checksum ^ v) * 0x100000001b3UL;  /* FNV-1a style */
}

static uint32_t xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* 1. Plain 32-bit ALU work: add/xor/rotate/and/branches. */
static uint32_t alu_loop(uint32_t n)
{
    uint32_t a = 0x12345678, b = 0x9abcdef0, c = 0;

    for (uint32_t i = 0; i < n; i++) {
        a += b ^ i;
        b = (b << 3) | (b >> 29);
        c ^= a - (b & 0xff);
        if ((int32_t)c < 0)
            c += 0x1234;
        else
            c -= 7;
    }
    return a ^ b ^ c;
}

/* 2. mul, mulhu, divu, remu, divw, remw with run-time divisors. */
static uint64_t muldiv_loop(uint32_t n)
{
    uint64_t x = 0x243f6a8885a308d3UL, acc = 1;

    for (uint32_t i = 0; i < n; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        uint64_t d = (x >> 33) | 1;             /* 1 .. 2^31-1, odd */
        acc += x / d;
        acc ^= x % (d + 2);
        acc += (uint64_t)(((unsigned __int128)x * acc) >> 64);
        int32_t s = (int32_t)(x >> 16), sd = (int32_t)d;  /* sd > 0 */
        acc += (uint64_t)(int64_t)(s / sd + s % (sd | 3));
    }
    return acc;
}

/* 3. Bitwise (table-less) reflected CRC32, polynomial 0xedb88320. */
static uint32_t crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320U & -(crc & 1));
    }
    return ~crc;
}

/* 4. In-place heapsort. */
static void sift_down(uint32_t *a, size_t root, size_t n)
{
    uint32_t v = a[root];

    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            break;
        if (child + 1 < n && a[child + 1] > a[child])
            child++;
        if (a[child] <= v)
            break;
        a[root] = a[child];
        root = child;
    }
    a[root] = v;
}

static void heapsort(uint32_t *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end);
    }
}

/* The whole workload; stores the 64-bit checksum and returns 0, or the
 * number of the self-check that failed (2 = CRC32, 3 = sort order). */
int bench_workload(uint64_t *sum_out)
{
    uint32_t rng = 2463534242U;

    if (crc32(0, "123456789", 9) != 0xcbf43926U)    /* standard check value */
        return 2;

    mix(alu_loop(ALU_ITERS));
    mix(muldiv_loop(MULDIV_ITERS));

    /* memcpy: ping-pong a 64 KiB buffer, perturbing one word per round. */
    for (size_t i = 0; i < BUF_BYTES / 8; i++)
        buf_a[i] = ((uint64_t)xorshift32(&rng) << 32) | xorshift32(&rng);
    for (uint32_t r = 0; r < COPY_ROUNDS; r++) {
        memcpy(buf_b, buf_a, BUF_BYTES);
        buf_b[(r * 97) % (BUF_BYTES / 8)] += r;
        memcpy(buf_a, buf_b, BUF_BYTES);
    }
    mix(buf_a[0] ^ buf_a[BUF_BYTES / 8 - 1]);

    uint32_t crc = 0;
    for (uint32_t r = 0; r < CRC_ROUNDS; r++)
        crc = crc32(crc, buf_a, BUF_BYTES);
    mix(crc);

    for (uint32_t r = 0; r < SORT_ROUNDS; r++) {
        for (size_t i = 0; i < SORT_N; i++)
            sort_data[i] = xorshift32(&rng);
        heapsort(sort_data, SORT_N);
        uint64_t sum = 0;
        for (size_t i = 0; i < SORT_N; i++) {
            if (i > 0 && sort_data[i - 1] > sort_data[i])
                return 3;
            sum = sum * 31 + sort_data[i];
        }
        mix(sum);
    }
    *sum_out = checksum;
    return 0;
}
