/* sieloop.elf: 500,000 kernel-style interrupt masks (62,500 iterations of 8 unrolled
 * `csrrci t0, sstatus, SIE` / `andi t0, t0, SIE; csrs sstatus, t0`: Linux's
 * local_irq_save and local_irq_restore) to time sstatus.SIE toggles, then checks SIE is back as it was,
 * prints "sieloop: done" and powers off. */
#include "fw.h"

#define PAIRS   500000
#define UNROLL  8

int main(void)
{
    unsigned long flags;
    csr_set(sstatus, 2);                      /* SIE on: each pair clears and restores it */
    for (unsigned long i = 0; i < PAIRS / UNROLL; i++)
        __asm__ volatile (".rept 8\n\tcsrrci %0, sstatus, 2\n\tandi %0, %0, 2\n\t"
                          "csrs sstatus, %0\n\t.endr"
                          : "=&r"(flags) :: "memory");
    if (!(csr_read(sstatus) & 2)) {
        printf("sieloop: sstatus.SIE is wrong\n");
        return 1;
    }
    printf("sieloop: done\n");
    return 0;
}
