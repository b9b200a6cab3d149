/* smp-amo: every hart hammers shared words with AMOs; hart 0 checks the totals.
 *
 * ITER times per hart: amoadd.w +1 and amoadd.d (+2^32 + hart + 1, so carries
 * cross the word halves) on two counters, amoswap.w of a value unique to the
 * hart and the iteration into one slot (every value put in comes back out
 * exactly once: what the harts got back plus what is left in the slot is the
 * sum of all values), amomax.w / amominu.d of per-hart series, and once per
 * hart amoor.w / amoand.d of its own bit and amoxor.w of its own pattern.
 * Every total is exact only if each AMO is atomic with respect to all harts. */
#include "smp.h"

#define ITER 20000

#define AMO(op, width, addr, val) ({ uint64_t __old;                          \
        __asm__ volatile (op "." width " %0, %2, (%1)"                        \
                          : "=r"(__old) : "r"(addr), "r"(val) : "memory");    \
        __old; })

static volatile uint32_t add_w;
static volatile uint64_t add_d;
static volatile uint32_t swap_slot;
static volatile int32_t max_w = -1000000;
static volatile uint64_t minu_d = ~0UL;
static volatile uint32_t or_w;
static volatile uint64_t and_d = ~0UL;
static volatile uint32_t xor_w;
static uint64_t swapped_out[MAX_HARTS];

static int check(const char *what, uint64_t got, uint64_t want)
{
    printf("smp-amo: %s = 0x%lx (expected 0x%lx) %s\n", what, got, want,
           got == want ? "PASS" : "FAIL");
    return got != want;
}

int main(unsigned long h)
{
    uint64_t out = 0;

    for (uint32_t i = 0; i < ITER; i++) {
        AMO("amoadd", "w", &add_w, 1);
        AMO("amoadd", "d", &add_d, (1UL << 32) + h + 1);
        out += (uint32_t)AMO("amoswap", "w", &swap_slot, (uint32_t)(h * ITER + i + 1));
        AMO("amomax", "w", &max_w, (int32_t)(h * 7 + i) - 50000);
        AMO("amominu", "d", &minu_d, (1UL << 40) + (h + 1) * ITER - i);
    }
    AMO("amoor", "w", &or_w, 1UL << h % 32);
    AMO("amoand", "d", &and_d, ~(1UL << h));
    AMO("amoxor", "w", &xor_w, 0x9e3779b9u * (uint32_t)(h + 1));
    swapped_out[h] = out;
    barrier();
    if (h != 0)
        return 0;

    uint64_t n = nharts, fails = 0;
    uint64_t total_out = swap_slot, all_in = 0;
    uint32_t or_want = 0, xor_want = 0;
    uint64_t and_want = ~0UL;
    for (unsigned k = 0; k < nharts; k++) {
        total_out += swapped_out[k];
        or_want |= 1u << k % 32;
        and_want &= ~(1UL << k);
        xor_want ^= 0x9e3779b9u * (k + 1);
    }
    for (uint64_t v = 1; v <= n * ITER; v++)
        all_in += v;
    printf("smp-amo: %u harts, %u iterations each\n", nharts, ITER);
    fails += check("amoadd.w total", add_w, n * ITER);
    fails += check("amoadd.d total", add_d, ITER * ((n << 32) + n * (n + 1) / 2));
    fails += check("amoswap.w values out + left", total_out, all_in);
    fails += check("amomax.w", (uint64_t)(int64_t)max_w,
                   (uint64_t)(int64_t)((int32_t)((n - 1) * 7 + ITER - 1) - 50000));
    fails += check("amominu.d", minu_d, (1UL << 40) + 1);
    fails += check("amoor.w", or_w, or_want);
    fails += check("amoand.d", and_d, and_want);
    fails += check("amoxor.w", xor_w, xor_want);
    printf("smp-amo: %s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
