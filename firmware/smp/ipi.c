/* smp-ipi: inter-processor interrupts through the CLINT's msip registers.
 *
 * 1. Self-IPI: hart 0 sets its own msip with mstatus.MIE and mie.MSIE on: the
 *    machine software interrupt is taken at once (mcause 0x8000000000000003).
 * 2. Ping-pong (needs 2 harts): ROUNDS times, hart 0 writes the round's number
 *    to `ping`, raises hart 1's msip and sleeps in WFI until its own msip is
 *    raised and `pong` holds the number; hart 1 takes each ping as an interrupt,
 *    and its trap handler clears its msip, copies `ping` to `pong` and raises
 *    hart 0's msip.
 * 3. Ring (all harts): a token goes 0 -> 1 -> ... -> N-1 -> 0, LAPS times; each
 *    hart waits in WFI with interrupts masked (mstatus.MIE off), polls mip.MSIP,
 *    clears its msip and, once `token` names it, passes the token on: it writes
 *    the next hart's id to `token` and raises that hart's msip.
 * The numbers in memory say which IPI is which: a wake-up without a new number
 * (WFI may end for no reason) is not counted, just waited past.
 * Hart 0 checks every count.  The number of round trips is fixed, so the run
 * also measures IPI round trips per second (bench/test_smp_speed.py). */
#include "smp.h"

#define ROUNDS 10000
#define LAPS   1000

static volatile uint32_t self_ipis, pings_taken, unexpected;
static volatile uint32_t ping, pong, token;
static volatile uint64_t self_cause;
static volatile uint32_t ring_seen[MAX_HARTS];

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval, uintptr_t *frame)
{
    unsigned long me = csr_read(mhartid);
    (void)frame;
    if (mcause != IRQ_M_SOFT)
        trap_unexpected(mcause, mepc, mtval);
    CLINT_MSIP_OF(me) = 0;
    if (me == 0) {
        self_cause = mcause;
        self_ipis++;
    } else if (me == 1) {
        __asm__ volatile ("fence rw, rw" ::: "memory");
        if (ping != pong) {
            pings_taken++;
            pong = ping;
            __asm__ volatile ("fence w, o" ::: "memory");
            CLINT_MSIP_OF(0) = 1;           /* pong */
        }
    } else {
        unexpected++;
    }
    return mepc;
}

static void wait_msip(unsigned long me)
{
    while (!(csr_read(mip) & MIP_MSIP))
        __asm__ volatile ("wfi");
    CLINT_MSIP_OF(me) = 0;
    while (csr_read(mip) & MIP_MSIP)
        ;
    __asm__ volatile ("fence rw, rw" ::: "memory");
}

static int check(const char *what, uint64_t got, uint64_t want)
{
    printf("smp-ipi: %s = 0x%lx (expected 0x%lx) %s\n", what, got, want,
           got == want ? "PASS" : "FAIL");
    return got != want;
}

int main(unsigned long h)
{
    int fails = 0;

    if (h == 0) {
        printf("smp-ipi: %u harts\n", nharts);
        csr_set(mie, MIE_MSIE);
        csr_set(mstatus, MSTATUS_MIE);
        CLINT_MSIP_OF(0) = 1;
        for (int i = 0; i < 100 && !self_ipis; i++)
            __asm__ volatile ("nop");
        csr_clear(mstatus, MSTATUS_MIE);
        fails += check("self-IPI interrupts taken", self_ipis, 1);
        fails += check("self-IPI mcause", self_cause, IRQ_M_SOFT);
    }
    barrier();

    /* ping-pong between harts 0 and 1 */
    if (nharts >= 2) {
        if (h == 1) {
            csr_set(mie, MIE_MSIE);
            csr_set(mstatus, MSTATUS_MIE);
            while (pings_taken < ROUNDS)
                __asm__ volatile ("wfi");
            csr_clear(mstatus, MSTATUS_MIE);
        } else if (h == 0) {
            csr_set(mie, MIE_MSIE);                 /* wakes WFI; MIE is off */
            uint32_t rounds = 0;
            for (; rounds < ROUNDS; rounds++) {
                ping = rounds + 1;
                __asm__ volatile ("fence w, o" ::: "memory");
                CLINT_MSIP_OF(1) = 1;               /* ping */
                do
                    wait_msip(0);
                while (pong != rounds + 1);
            }
            fails += check("ping-pong round trips 0<->1", rounds, ROUNDS);
        }
    }
    barrier();
    if (h == 0 && nharts >= 2)
        fails += check("pings hart 1 took as interrupts", pings_taken, ROUNDS);

    /* the ring */
    if (nharts >= 2) {
        unsigned next = (h + 1) % nharts;
        csr_set(mie, MIE_MSIE);
        for (int lap = 0; lap < LAPS; lap++) {
            if (h != 0 || lap != 0)
                do
                    wait_msip(h);
                while (token != h);
            ring_seen[h]++;
            token = next;
            __asm__ volatile ("fence w, o" ::: "memory");
            CLINT_MSIP_OF(next) = 1;
        }
        if (h == 0)                                 /* the last lap comes home */
            do
                wait_msip(h);
            while (token != 0);
    }
    barrier();
    if (h != 0)
        return 0;
    if (nharts >= 2) {
        uint64_t all = 0;
        for (unsigned k = 0; k < nharts; k++)
            all += ring_seen[k] == LAPS;
        fails += check("harts that passed the token on every lap", all, nharts);
        fails += check("ring laps", ring_seen[0], LAPS);
    }
    fails += check("interrupts on other harts", unexpected, 0);
    printf("smp-ipi: %s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
