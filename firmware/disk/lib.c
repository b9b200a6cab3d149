/* Support library of the virtio-blk guest images: polled 16550 UART
 * output, a small printf, mem* functions, the finisher and the trap
 * handler (which also lets probe_read32 survive an unmapped address). */
#include "lib.h"

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

/* Supports %[0][width][l|ll|z]{d,i,u,x,s,c,%}. */
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

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;

    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p < *q ? -1 : 1;
    return 0;
}

static void finisher(uint32_t v)
{
    fence_all();
    *(volatile uint32_t *)FINISHER_BASE = v;
    fence_all();
}

void fw_exit(int code)
{
    finisher(code ? ((uint32_t)code << 16) | FINISHER_FAIL : FINISHER_PASS);
    for (;;)
        __asm__ volatile ("wfi");
}

void fw_reboot(void)
{
    uint64_t t0;

    finisher(FINISHER_RESET);
    /* QEMU handles the reset request asynchronously: give it 2 s of mtime. */
    t0 = mtime();
    while (mtime() - t0 < 2 * MTIME_HZ)
        ;
    fail("finisher reset request (0x7777) did not reset the board");
}

void fail(const char *fmt, ...)
{
    va_list ap;

    printf("%s: FAIL: ", fw_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    uart_putc('\n');
    fw_exit(1);
}

/* ---- traps ---- */

#define CAUSE_LOAD_ACCESS   5

static volatile int probe_active, probe_faulted;

int probe_read32(uintptr_t addr, uint32_t *val)
{
    uint32_t v;

    probe_faulted = 0;
    probe_active = 1;
    barrier();
    v = *(volatile uint32_t *)addr;
    barrier();
    probe_active = 0;
    if (probe_faulted)
        return 0;
    *val = v;
    return 1;
}

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    (void)frame;
    if (probe_active && mcause == CAUSE_LOAD_ACCESS) {
        /* Skip the faulting load: 2 bytes if compressed, else 4. */
        uint16_t insn = *(volatile uint16_t *)mepc;

        probe_faulted = 1;
        probe_active = 0;
        return mepc + ((insn & 3) == 3 ? 4 : 2);
    }
    fail("unexpected trap mcause=0x%lx mepc=0x%lx mtval=0x%lx",
         mcause, mepc, mtval);
}
