/* Output and probe helpers of the comparison guests.  The UART code and the
 * number printer are trimmed copies of firmware/lib.c. */
#include "cmp.h"

struct sarea sarea;

void uart_putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;

    while (!(uart[5] & 0x20))
        ;
    uart[0] = (uint8_t)c;
}

static void put_hex(u64 v, int width)
{
    char buf[16];
    int n = 0;

    do {
        unsigned d = v & 15;
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v >>= 4;
    } while (v);
    for (; n < width; width--)
        uart_putc('0');
    while (n)
        uart_putc(buf[--n]);
}

/* Supports %s, %c, %d (non-negative), %x / %lx with an optional 0-padded width. */
int printf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            uart_putc(*fmt);
            continue;
        }
        int width = 0, lng = 0;
        fmt++;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 'x':
            put_hex(lng ? va_arg(ap, u64) : va_arg(ap, unsigned), width);
            break;
        case 'd': {
            char buf[24];
            int n = 0;
            u64 v = lng ? va_arg(ap, u64) : (u64)va_arg(ap, int);
            do {
                buf[n++] = (char)('0' + v % 10);
                v /= 10;
            } while (v);
            while (n)
                uart_putc(buf[--n]);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s)
                uart_putc(*s++);
            break;
        }
        case 'c':
            uart_putc((char)va_arg(ap, int));
            break;
        case '\0':
            va_end(ap);
            return 0;
        default:
            uart_putc(*fmt);
            break;
        }
    }
    va_end(ap);
    return 0;
}

void put(const char *name, u64 value)
{
    printf("%s=0x%016lx\n", name, value);
}

void putp(const char *prefix, const char *name, u64 value)
{
    printf("%s.%s=0x%016lx\n", prefix, name, value);
}

long run(void *fn, u64 a0, u64 a1, int mode, u64 mstatus_bits, u64 s_action)
{
    u64 ms = csr_read(mstatus);

    ms &= ~(MS_SIE | MS_MIE | MS_SPIE | MS_MPIE | MS_SPP | MS_MPP | MS_MPRV |
            MS_SUM | MS_MXR | MS_TVM | MS_TSR);
    ms |= mstatus_bits;
    if (mode != PRV_M)
        ms |= (u64)mode << MS_MPP_SHIFT;
    struct mrec zero = { 0 };
    mrec = zero;
    sarea.n = 0;
    sarea.action = s_action;
    csr_write(sscratch, (u64)&sarea);
    csr_write(stvec, (u64)s_trap);
    csr_write(mstatus, ms);
    long r = probe(fn, a0, a1, mode);
    /* back in M: drop MPRV (a trap taken with MPRV set leaves it set) */
    csr_clear(mstatus, MS_MPRV | MS_MIE);
    return r;
}

void dump(const char *name, int hide)
{
    char sname[48];
    for (u64 i = 0; i < sarea.n && i < 8; i++) {
        struct srec *r = &sarea.rec[i];
        /* name.sN */
        const char *p = name;
        int k = 0;
        while (*p && k < 40)
            sname[k++] = *p++;
        sname[k++] = '.';
        sname[k++] = 's';
        sname[k++] = (char)('0' + i);
        sname[k] = 0;
        putp(sname, "scause", r->cause);
        putp(sname, "sepc", r->epc);
        if (!(hide & HIDE_STVAL))
            putp(sname, "stval", r->tval);
        putp(sname, "sstatus", r->status & SS_MASK);
    }
    if (hide & HIDE_M)
        return;
    if (mrec.valid) {
        putp(name, "mcause", mrec.cause);
        putp(name, "mepc", mrec.epc);
        if (!(hide & HIDE_MTVAL))
            putp(name, "mtval", mrec.tval);
        putp(name, "mstatus", mrec.status & MS_MASK);
    } else {
        putp(name, "returned", 1);
    }
}

void poweroff(int code)
{
    volatile uint32_t *finisher = (volatile uint32_t *)FINISHER_BASE;

    *finisher = code ? ((uint32_t)code << 16) | 0x3333 : 0x5555;
    for (;;)
        __asm__ volatile ("wfi");
}
