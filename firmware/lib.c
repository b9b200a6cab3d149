/* Tiny support library: polled 16550 UART output, a small printf,
 * memcpy/memset, power-off and a default trap handler. */
#include "fw.h"

void uart_putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;

    while (!(uart[UART_LSR] & UART_LSR_THRE))
        ;
    uart[UART_THR] = (uint8_t)c;
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

/* Print v in base 10 or 16, padded to width with pad (' ' or '0'). */
static int put_num(unsigned long v, unsigned base, int neg, int width, char pad)
{
    char buf[24];
    int n = 0, len;

    do {
        unsigned d = v % base;
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    len = n + neg;
    if (neg && pad == '0')
        uart_putc('-');
    for (; len < width; len++)
        uart_putc(pad);
    if (neg && pad != '0')
        uart_putc('-');
    while (n)
        uart_putc(buf[--n]);
    return len;
}

/* Supports %[0][width][l|ll|z]{d,i,u,x,p,s,c,%}. */
int vprintf(const char *fmt, va_list ap)
{
    int count = 0;

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            uart_putc(*fmt);
            count++;
            continue;
        }
        char pad = ' ';
        int width = 0, lng = 0;
        fmt++;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 'd': case 'i': {
            long v = lng ? va_arg(ap, long) : va_arg(ap, int);
            unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
            count += put_num(u, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            count += put_num(lng ? va_arg(ap, unsigned long)
                                 : va_arg(ap, unsigned), 10, 0, width, pad);
            break;
        case 'x':
            count += put_num(lng ? va_arg(ap, unsigned long)
                                 : va_arg(ap, unsigned), 16, 0, width, pad);
            break;
        case 'p':
            uart_puts("0x");
            count += 2 + put_num((uintptr_t)va_arg(ap, void *), 16, 0, 16, '0');
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            for (; *s; s++, count++)
                uart_putc(*s);
            break;
        }
        case 'c':
            uart_putc((char)va_arg(ap, int));
            count++;
            break;
        case '\0':
            return count;
        default:                /* "%%" and unknown conversions */
            uart_putc(*fmt);
            count++;
            break;
        }
    }
    return count;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

/* Word-at-a-time when both pointers are 8-byte aligned, else bytewise.
 * (-fno-tree-loop-distribute-patterns keeps GCC from turning these loops
 * back into calls to memcpy/memset.) */
void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    if ((((uintptr_t)d | (uintptr_t)s) & 7) == 0) {
        for (; n >= 8; n -= 8, d += 8, s += 8)
            *(uint64_t *)d = *(const uint64_t *)s;
    }
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;

    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

void fw_exit(int code)
{
    volatile uint32_t *finisher = (volatile uint32_t *)FINISHER_BASE;

    *finisher = code ? ((uint32_t)code << 16) | FINISHER_FAIL : FINISHER_PASS;
    for (;;)
        __asm__ volatile ("wfi");
}

void trap_unexpected(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval)
{
    printf("trap: unexpected trap mcause=0x%016lx mepc=0x%016lx mtval=0x%016lx\n",
           mcause, mepc, mtval);
    fw_exit(1);
}

__attribute__((weak))
uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    (void)frame;
    trap_unexpected(mcause, mepc, mtval);
}
