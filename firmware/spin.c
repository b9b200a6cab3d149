/* spin.elf: a guest that spins with interrupts off and never exits or waits, for the
 * fairness test of several VMs on one host: it may take only its share. */
#include "fw.h"

int main(void)
{
    volatile unsigned long n = 0;

    printf("spin: spinning\n");
    csr_clear(mstatus, MSTATUS_MIE);
    for (;;)
        n++;
}
