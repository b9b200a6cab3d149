/* memwrite.elf: a memory-writing workload for live-migration benchmarks (bench/,
 * tests/test_migration.py) in a 128 MiB guest, M-mode, no paging.
 *
 * 1. fills 96 MiB (RAM + 4 MiB .. RAM + 100 MiB) with a pseudo-random pattern;
 * 2. PASSES passes, each rewriting a hot 2 MiB (every word from its old value, so a
 *    store lost anywhere changes the end result) and 16 cold words at pseudo-random
 *    places in the 96 MiB -- a writable working set of ~2 MiB, as pre-copy likes it;
 *    a line every 250 passes;
 * 3. a checksum of the whole 96 MiB, printed: the same on every correct machine
 *    (QEMU prints it too), with or without a migration in the middle. */
#include "fw.h"

#define REGION          ((uint64_t *)(RAM_BASE + (4UL << 20)))
#define REGION_WORDS    ((96UL << 20) / 8)
#define HOT_WORDS       ((2UL << 20) / 8)
#define PASSES          2000
#define COLD_PER_PASS   16

static uint64_t next(uint64_t *s)
{
    *s = *s * 6364136223846793005UL + 1442695040888963407UL;
    return *s;
}

int main(void)
{
    uint64_t *w = REGION;
    uint64_t seed = 0x9e3779b97f4a7c15UL;

    for (uint64_t i = 0; i < REGION_WORDS; i++)
        w[i] = next(&seed);
    printf("memwrite: filled %lu MiB\n", (REGION_WORDS * 8) >> 20);
    for (uint64_t p = 1; p <= PASSES; p++) {
        uint64_t *hot = w + (p & 7) * HOT_WORDS / 8;    /* the hot 2 MiB moves a little */
        for (uint64_t i = 0; i < HOT_WORDS; i++)
            hot[i] = hot[i] * 0x100000001b3UL + p;
        for (int c = 0; c < COLD_PER_PASS; c++) {
            uint64_t r = next(&seed);
            w[(r >> 16) % REGION_WORDS] ^= r;
        }
        if (p % 250 == 0)
            printf("memwrite: pass %lu\n", p);
    }
    uint64_t sum = 0xcbf29ce484222325UL;
    for (uint64_t i = 0; i < REGION_WORDS; i++)
        sum = (sum ^ w[i]) * 0x100000001b3UL;
    printf("memwrite: checksum=0x%016lx\n", sum);
    return 0;
}
