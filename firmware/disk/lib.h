/* Support library of the virtio-blk guest images (see lib.c). */
#ifndef DISK_LIB_H
#define DISK_LIB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- devices (QEMU virt layout) ---- */
#define UART_BASE       0x10000000UL    /* 16550A, byte registers */
#define UART_THR        0               /* transmit holding (write) */
#define UART_LSR        5               /* line status */
#define UART_LSR_THRE   0x20            /* THR empty */

#define FINISHER_BASE   0x100000UL      /* sifive test finisher */
#define FINISHER_PASS   0x5555
#define FINISHER_FAIL   0x3333          /* | (code << 16) */
#define FINISHER_RESET  0x7777

#define CLINT_MTIME     (*(volatile uint64_t *)0x200bff8UL)
#define MTIME_HZ        10000000UL      /* virt's CLINT timebase: 10 MHz */

static inline uint64_t mtime(void)
{
    return CLINT_MTIME;
}

/* Memory/IO ordering (RISC-V fence): "rw" = RAM accesses, "io" = MMIO. */
#define fence_rw()      __asm__ volatile ("fence rw, rw" ::: "memory")
#define fence_all()     __asm__ volatile ("fence iorw, iorw" ::: "memory")
#define barrier()       __asm__ volatile ("" ::: "memory")

/* Each image defines its name; fail() prefixes its message with it. */
extern const char fw_name[];

void uart_putc(char c);
void uart_puts(const char *s);
int  printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  vprintf(const char *fmt, va_list ap);
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int  memcmp(const void *a, const void *b, size_t n);

/* Finisher: 0 = power off (pass), otherwise fail with exit code `code`. */
__attribute__((noreturn)) void fw_exit(int code);
/* Finisher 0x7777 (warm reset); fails if the board does not reset. */
__attribute__((noreturn)) void fw_reboot(void);
/* Print "<fw_name>: FAIL: <message>\n" and exit with code 1. */
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);

/* 32-bit load that survives an access fault: returns 1 and stores the
 * value, or returns 0 if the load trapped (nothing mapped there). */
int probe_read32(uintptr_t addr, uint32_t *val);

#endif
