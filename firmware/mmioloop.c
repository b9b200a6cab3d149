/* mmioloop.elf: M-mode, 1,000,000 reads of the UART line status register
 * (0x1000_0005; 125,000 iterations of 8 unrolled `lbu`) to time MMIO
 * round trips, then prints "mmioloop: done" and powers off. */
#include "fw.h"

#define READS   1000000
#define UNROLL  8

int main(void)
{
    volatile uint8_t *lsr = (volatile uint8_t *)(UART_BASE + UART_LSR);

    for (unsigned i = 0; i < READS / UNROLL; i++)
        __asm__ volatile (".rept 8\n\tlbu t0, 0(%0)\n\t.endr"
                          :: "r"(lsr) : "t0", "memory");
    printf("mmioloop: done\n");
    return 0;
}
