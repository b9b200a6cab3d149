/* timerloop.elf: 20,000 machine timer interrupts, each armed 100 ticks
 * ahead through the CLINT's mtimecmp and waited for with wfi, to time a
 * timer interrupt's round trip (WFI, delivery, the handler's MMIO write,
 * mret); then prints "timerloop: done" and powers off. */
#include "fw.h"

#define TICKS   20000
#define AHEAD   100

static volatile unsigned long ticks;

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    (void)frame;
    if (mcause != IRQ_M_TIMER)
        trap_unexpected(mcause, mepc, mtval);
    if (++ticks < TICKS)
        CLINT_MTIMECMP = CLINT_MTIME + AHEAD;
    else
        CLINT_MTIMECMP = ~0UL;
    return mepc;
}

int main(void)
{
    CLINT_MTIMECMP = CLINT_MTIME + AHEAD;
    csr_set(mie, MIE_MTIE);
    csr_set(mstatus, MSTATUS_MIE);
    while (ticks < TICKS)
        __asm__ volatile ("wfi" ::: "memory");
    csr_clear(mstatus, MSTATUS_MIE);
    printf("timerloop: done\n");
    return 0;
}
