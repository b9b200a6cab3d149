/* ecallloop.elf: 100,000 `ecall`s from M-mode, each reflected into the
 * image's own trap handler (crt0's trap_entry, which saves every register)
 * and returned from with mret, to time an ecall's round trip; then prints
 * "ecallloop: done" and powers off. */
#include "fw.h"

#define CALLS   100000

static volatile unsigned long calls;

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    (void)frame;
    if (mcause != CAUSE_ECALL_M)
        trap_unexpected(mcause, mepc, mtval);
    calls++;
    return mepc + 4;
}

int main(void)
{
    for (unsigned i = 0; i < CALLS; i++)
        __asm__ volatile ("ecall" ::: "memory");
    if (calls != CALLS) {
        printf("ecallloop: %lu calls handled\n", calls);
        return 1;
    }
    printf("ecallloop: done\n");
    return 0;
}
