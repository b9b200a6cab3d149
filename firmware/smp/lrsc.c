/* smp-lrsc: every hart hammers an LR/SC spinlock and LR/SC read-modify-write
 * loops; hart 0 checks the totals.
 *
 * ITER times per hart: take a spinlock (lr.w.aq / sc.w.rl), increment a plain
 * counter (a load and a store: only mutual exclusion makes it exact) and check
 * that no other hart is inside; release it.  Then add to a 64-bit counter with
 * an lr.d / sc.d loop (12 ALU instructions between LR and SC) and to a 32-bit one with lr.w / sc.w, retrying when the
 * SC fails.  An SC that succeeded although another hart stored to the
 * reservation set in between loses an update: the totals come out short. */
#include "smp.h"

#define ITER 20000
/* Between each LR and its SC: 12 ALU instructions that leave the loaded value
 * as it was (a constrained LR/SC loop allows 16), so that a hart is often
 * descheduled while it holds a reservation. */
#define WORK_XOR "xori %0, %0, 0x5a5\n"
#define WORK WORK_XOR WORK_XOR WORK_XOR WORK_XOR WORK_XOR WORK_XOR \
             WORK_XOR WORK_XOR WORK_XOR WORK_XOR WORK_XOR WORK_XOR

static volatile uint32_t spin;
static volatile uint64_t plain_counter;
static volatile uint32_t inside, overlaps;
static volatile uint64_t counter_d;
static volatile uint32_t counter_w;

static void lock(volatile uint32_t *l)
{
    uint32_t busy, failed;
    do {
        __asm__ volatile ("lr.w.aq %0, (%1)" : "=r"(busy) : "r"(l) : "memory");
        failed = 1;
        if (!busy)
            __asm__ volatile ("sc.w.rl %0, %2, (%1)"
                              : "=r"(failed) : "r"(l), "r"(1) : "memory");
    } while (failed);
}

static void unlock(volatile uint32_t *l)
{
    __asm__ volatile ("amoswap.w.rl zero, zero, (%0)" :: "r"(l) : "memory");
}

static void add_d(volatile uint64_t *p, uint64_t v)
{
    uint64_t old, failed;
    do {
        __asm__ volatile ("lr.d %0, (%2)\n" WORK "add %0, %0, %3\n"
                          "sc.d %1, %0, (%2)"
                          : "=&r"(old), "=&r"(failed) : "r"(p), "r"(v) : "memory");
    } while (failed);
}

static void add_w(volatile uint32_t *p, uint32_t v)
{
    uint32_t old, failed;
    do {
        __asm__ volatile ("lr.w %0, (%2)\n" WORK "addw %0, %0, %3\n"
                          "sc.w %1, %0, (%2)"
                          : "=&r"(old), "=&r"(failed) : "r"(p), "r"(v) : "memory");
    } while (failed);
}

static int check(const char *what, uint64_t got, uint64_t want)
{
    printf("smp-lrsc: %s = %lu (expected %lu) %s\n", what, got, want,
           got == want ? "PASS" : "FAIL");
    return got != want;
}

int main(unsigned long h)
{
    for (uint32_t i = 0; i < ITER; i++) {
        lock(&spin);
        if (inside)
            overlaps++;
        inside = 1;
        plain_counter = plain_counter + 1;
        inside = 0;
        unlock(&spin);
        add_d(&counter_d, (1UL << 32) | (h + 1));
        add_w(&counter_w, 3);
    }
    barrier();
    if (h != 0)
        return 0;

    uint64_t n = nharts, fails = 0;
    printf("smp-lrsc: %u harts, %u iterations each\n", nharts, ITER);
    fails += check("counter under the spinlock", plain_counter, n * ITER);
    fails += check("harts found inside the lock", overlaps, 0);
    fails += check("lr.d/sc.d counter", counter_d, ITER * ((n << 32) + n * (n + 1) / 2));
    fails += check("lr.w/sc.w counter", counter_w, 3 * n * ITER);
    fails += check("lock word at the end", spin, 0);
    printf("smp-lrsc: %s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
