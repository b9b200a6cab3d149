/* Tiny support library shared by the hvemu guest images (see lib.c). */
#ifndef FW_H
#define FW_H

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

#define CLINT_BASE      0x2000000UL
#define CLINT_MSIP      (*(volatile uint32_t *)(CLINT_BASE + 0x0))
#define CLINT_MTIMECMP  (*(volatile uint64_t *)(CLINT_BASE + 0x4000))
#define CLINT_MTIME     (*(volatile uint64_t *)(CLINT_BASE + 0xbff8))

/* ---- CSRs ---- */
#define csr_read(csr) ({ unsigned long __v;                             \
        __asm__ volatile ("csrr %0, " #csr : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, v) \
        __asm__ volatile ("csrw " #csr ", %0" :: "rK"(v) : "memory")
#define csr_set(csr, v) \
        __asm__ volatile ("csrs " #csr ", %0" :: "rK"(v) : "memory")
#define csr_clear(csr, v) \
        __asm__ volatile ("csrc " #csr ", %0" :: "rK"(v) : "memory")

#define MSTATUS_MIE     (1UL << 3)
#define MIE_MTIE        (1UL << 7)
#define MCAUSE_INT      (1UL << 63)
#define CAUSE_ILLEGAL_INSN  2
#define CAUSE_ECALL_M       11
#define IRQ_M_TIMER         (MCAUSE_INT | 7)

/* ---- lib.c ---- */
void uart_putc(char c);
void uart_puts(const char *s);
int  printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  vprintf(const char *fmt, va_list ap);
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

/* Power off through the finisher: 0 = pass, otherwise fail with code. */
__attribute__((noreturn)) void fw_exit(int code);

/* Called from crt0's trap_entry; images may override (lib.c has a weak
 * default that treats every trap as unexpected).  Returns the resume pc. */
uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame);
/* Print mcause/mepc/mtval and fail with exit code 1. */
__attribute__((noreturn)) void trap_unexpected(uintptr_t mcause,
                                               uintptr_t mepc, uintptr_t mtval);

#endif
