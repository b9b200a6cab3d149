/* format.h - a minimal vsnprintf: %d %ld %x %lx %s %c %%.
 *
 * Included by both kernel.c and user.c, so each gets its own private copy:
 * user code runs in U-mode from its own pages and cannot call into the kernel.
 */
#ifndef FORMAT_H
#define FORMAT_H
#include <stdarg.h>

static int vformat(char *buf, int size, const char *fmt, va_list ap)
{
    int n = 0;
#define PUT(c) do { if (n < size - 1) buf[n++] = (c); } while (0)
    for (; *fmt; fmt++) {
        if (*fmt != '%') { PUT(*fmt); continue; }
        int is_long = (*++fmt == 'l');
        if (is_long) fmt++;

        unsigned long v;
        unsigned base = 10;
        if (*fmt == 's') {
            for (const char *s = va_arg(ap, const char *); *s; s++) PUT(*s);
            continue;
        } else if (*fmt == 'c') {
            PUT((char)va_arg(ap, int));
            continue;
        } else if (*fmt == 'd') {
            long d = is_long ? va_arg(ap, long) : va_arg(ap, int);
            if (d < 0) PUT('-');
            v = d < 0 ? -(unsigned long)d : (unsigned long)d;
        } else if (*fmt == 'x') {
            v = is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            base = 16;
        } else {                        /* "%%" or unknown: print literally */
            PUT('%');
            if (!*fmt) break;
            if (*fmt != '%') PUT(*fmt);
            continue;
        }
        char digits[24];
        int i = 0;
        do { digits[i++] = "0123456789abcdef"[v % base]; v /= base; } while (v);
        while (i) PUT(digits[--i]);
    }
#undef PUT
    buf[n] = '\0';
    return n;
}
#endif
