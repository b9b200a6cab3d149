/* htif.elf: ISA-test-style image that talks only through the HTIF mailbox
 * (tohost/fromhost, as in riscv-tests).  Prints "htif: hello" on the HTIF
 * console (device 1, command 1 = putchar) and exits with code 0 by
 * writing (0 << 1) | 1 to tohost.  Uses neither the UART nor the finisher. */
#include "fw.h"

/* 64-byte aligned like riscv-tests; the host finds them by symbol name. */
volatile uint64_t tohost   __attribute__((section(".tohost"), aligned(64)));
volatile uint64_t fromhost __attribute__((section(".tohost"), aligned(64)));

#define HTIF_CMD(dev, cmd, payload) \
    (((uint64_t)(dev) << 56) | ((uint64_t)(cmd) << 48) | (payload))

static void htif_putc(char c)
{
    tohost = HTIF_CMD(1, 1, (uint8_t)c);
    while (tohost != 0)         /* host clears tohost once it is done */
        ;
    fromhost = 0;               /* acknowledge the host's response */
}

__attribute__((noreturn)) static void htif_exit(unsigned code)
{
    tohost = ((uint64_t)code << 1) | 1;
    for (;;)
        ;
}

int main(void)
{
    for (const char *s = "htif: hello\n"; *s; s++)
        htif_putc(*s);
    htif_exit(0);
}
