/* smp-litmus: an LR's reservation is broken by another hart's store.
 *
 * Hart A takes a reservation (lr.w or lr.d on the word x) and tells hart B
 * (a flag, then B's msip); B stores to x in one of several ways and tells A
 * back; only then does A try its sc.  The spec (unprivileged ISA, "Load-
 * Reserved/Store-Conditional") requires the sc to fail: a store from another
 * hart to the reservation set was observed between the LR and the SC.  A must
 * then see B's value in x (the failed sc wrote nothing).  Each case runs
 * REPS times for the pairs (A, B) = (0, 1), (1, 0) and, with more harts,
 * (0, N-1).  The control case -- no store between A's lr and sc -- must
 * succeed.  The flags and A's waiting live on other pages than x: A's own
 * accesses between its lr and sc never touch x's reservation set.
 *
 * B's stores that leave x's value unchanged (the same value again, amoor 0)
 * break the reservation too by the spec, but an emulator that implements SC as
 * a compare-and-swap of the value LR read (QEMU's TCG) cannot tell. */
#include "smp.h"

#define REPS 20

enum { SW_NEW, SB_NEW, AMOADD, LRSC, SD_NEW, SW_SAME, AMOOR_ZERO, NCASES };
static const char *const what[NCASES] = {
    "lr.w; B sw a new value; sc.w",
    "lr.w; B sb to a byte of the word; sc.w",
    "lr.w; B amoadd.w; sc.w",
    "lr.w; B lr.w/sc.w the word; sc.w",
    "lr.d; B sd a new value; sc.d",
    "lr.w; B sw the same value; sc.w",
    "lr.w; B amoor.w of 0; sc.w",
};

static volatile uint64_t x __attribute__((aligned(4096)));
static volatile uint32_t step __attribute__((aligned(4096)));
static volatile uint32_t action;

static void wait_msip(unsigned long me)
{
    while (!(csr_read(mip) & MIP_MSIP))
        __asm__ volatile ("wfi");
    CLINT_MSIP_OF(me) = 0;
    while (csr_read(mip) & MIP_MSIP)
        ;
    __asm__ volatile ("fence rw, rw" ::: "memory");
}

static void tell(unsigned other, uint32_t s)
{
    step = s;
    __asm__ volatile ("fence w, o" ::: "memory");
    CLINT_MSIP_OF(other) = 1;
}

static void await(unsigned long me, uint32_t s)
{
    do
        wait_msip(me);
    while (step != s);
}

/* B's side of one case: x is 0x1111 when it runs. */
static void b_store(int c)
{
    uint64_t t;
    switch (c) {
    case SW_NEW:
        __asm__ volatile ("sw %1, 0(%0)" :: "r"(&x), "r"(0x2222) : "memory");
        break;
    case SB_NEW:
        __asm__ volatile ("sb %1, 1(%0)" :: "r"(&x), "r"(0x99) : "memory");
        break;
    case AMOADD:
        __asm__ volatile ("amoadd.w zero, %1, (%0)" :: "r"(&x), "r"(0x1000) : "memory");
        break;
    case LRSC:
        do {
            __asm__ volatile ("lr.w %0, (%1)" : "=&r"(t) : "r"(&x) : "memory");
            __asm__ volatile ("sc.w %0, %2, (%1)" : "=&r"(t) : "r"(&x), "r"(t + 5) : "memory");
        } while (t);
        break;
    case SD_NEW:
        x = 0x3333000000004444UL;
        break;
    case SW_SAME:
        __asm__ volatile ("sw %1, 0(%0)" :: "r"(&x), "r"(0x1111) : "memory");
        break;
    case AMOOR_ZERO:
        __asm__ volatile ("amoor.w zero, zero, (%0)" :: "r"(&x) : "memory");
        break;
    }
}

static const uint64_t after_b[NCASES] = {
    0x2222, 0x9911, 0x2111, 0x1116, 0x3333000000004444UL, 0x1111, 0x1111,
};

/* A's side: 1 if its sc failed (and x holds B's value), 0 if it succeeded. */
static int a_try(int c, unsigned b, unsigned long me, int *wrong_value)
{
    uint64_t old, failed;
    if (c == SD_NEW)
        __asm__ volatile ("lr.d %0, (%1)" : "=&r"(old) : "r"(&x) : "memory");
    else
        __asm__ volatile ("lr.w %0, (%1)" : "=&r"(old) : "r"(&x) : "memory");
    tell(b, 1);
    await(me, 2);
    if (c == SD_NEW)
        __asm__ volatile ("sc.d %0, %2, (%1)" : "=&r"(failed) : "r"(&x), "r"(0x7777UL) : "memory");
    else
        __asm__ volatile ("sc.w %0, %2, (%1)" : "=&r"(failed) : "r"(&x), "r"(0x7777UL) : "memory");
    if (failed && x != after_b[c])
        *wrong_value = 1;
    (void)old;
    return failed != 0;
}

static uint32_t failures[NCASES], wrong[NCASES], controls;
static volatile uint32_t pair_a, pair_b, pairs_done;

int main(unsigned long h)
{
    unsigned pairs[3][2] = { {0, 1}, {1, 0}, {0, nharts - 1} };
    unsigned npairs = nharts >= 3 ? 3 : nharts == 2 ? 2 : 0;
    int fails = 0;

    csr_set(mie, MIE_MSIE);                 /* msip wakes WFI; mstatus.MIE stays off */
    for (unsigned p = 0; p < npairs; p++) {
        unsigned a = pairs[p][0], b = pairs[p][1];
        for (int c = 0; c < NCASES; c++) {
            for (int r = 0; r < REPS; r++) {
                if (h == a) {
                    int bad = 0;
                    x = 0x1111;
                    __asm__ volatile ("fence rw, rw" ::: "memory");
                    failures[c] += a_try(c, b, h, &bad);
                    wrong[c] += bad;
                    tell(b, 3);             /* B may go on */
                    await(h, 4);
                } else if (h == b) {
                    await(h, 1);
                    b_store(c);
                    tell(a, 2);
                    await(h, 3);
                    tell(a, 4);
                }
            }
        }
        barrier();
    }
    if (h != 0)
        return 0;

    for (int r = 0; r < REPS; r++) {
        uint64_t old, failed;
        __asm__ volatile ("lr.w %0, (%2)\n sc.w %1, %3, (%2)"
                          : "=&r"(old), "=&r"(failed) : "r"(&x), "r"(r) : "memory");
        controls += failed == 0;
    }

    printf("smp-litmus: %u harts, %u hart pairs, %u runs of each case per pair\n",
           nharts, npairs, REPS);
    for (int c = 0; c < NCASES; c++) {
        int ok = failures[c] == npairs * REPS && wrong[c] == 0;
        printf("smp-litmus: %s: sc failed %u of %u, x wrong after it %u times %s\n",
               what[c], failures[c], npairs * REPS, wrong[c], ok ? "PASS" : "FAIL");
        fails += !ok;
    }
    printf("smp-litmus: lr.w; sc.w with no store between: sc succeeded %u of %u %s\n",
           controls, REPS, controls == REPS ? "PASS" : "FAIL");
    fails += controls != REPS;
    if (npairs == 0)
        printf("smp-litmus: needs 2 harts\n");
    printf("smp-litmus: %s\n", fails || npairs == 0 ? "FAIL" : "PASS");
    return fails || npairs == 0 ? 1 : 0;
}
