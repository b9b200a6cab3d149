/* csrloop.elf: 1,000,000 reads of mscratch (125,000 iterations of 8
 * unrolled `csrr t0, mscratch`) to time privileged-instruction round
 * trips, then prints "csrloop: done" and powers off. */
#include "fw.h"

#define READS   1000000
#define UNROLL  8

int main(void)
{
    for (unsigned i = 0; i < READS / UNROLL; i++)
        __asm__ volatile (".rept 8\n\tcsrr t0, mscratch\n\t.endr" ::: "t0");
    printf("csrloop: done\n");
    return 0;
}
