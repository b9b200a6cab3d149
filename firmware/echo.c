/* echo.elf: prints "echo: ready", then echoes every byte it receives on the UART,
 * upper-cased, until it receives 'q' (then powers off with 0): for console tests. */
#include "fw.h"

#define UART_RBR        0
#define UART_LSR_DR     0x01

int main(void)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;

    printf("echo: ready\n");
    for (;;) {
        char c;

        while (!(uart[UART_LSR] & UART_LSR_DR))
            ;
        c = (char)uart[UART_RBR];
        if (c == 'q')
            return 0;
        uart_putc(c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c);
    }
}
