/* csrwloop.elf: 1,000,000 writes of mscratch (125,000 iterations of 8
 * unrolled `csrw mscratch, t0`) to time CSR-write exits, then checks the
 * last value, prints "csrwloop: done" and powers off. */
#include "fw.h"

#define WRITES  1000000
#define UNROLL  8

int main(void)
{
    for (unsigned long i = 0; i < WRITES / UNROLL; i++)
        __asm__ volatile (".rept 8\n\tcsrw mscratch, %0\n\t.endr" :: "r"(i) : "memory");
    if (csr_read(mscratch) != WRITES / UNROLL - 1) {
        printf("csrwloop: mscratch is wrong\n");
        return 1;
    }
    printf("csrwloop: done\n");
    return 0;
}
