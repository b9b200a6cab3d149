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
#define CAUSE_ECALL_S       9
#define CAUSE_ECALL_M       11
#define CAUSE_FETCH_PAGE_FAULT  12
#define CAUSE_LOAD_PAGE_FAULT   13
#define CAUSE_STORE_PAGE_FAULT  15
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

/* ---- benchwork.c (bench.elf, bench-sv39.elf) ---- */
/* bench's workload: stores the checksum, returns 0 or a failed self-check. */
int bench_workload(uint64_t *checksum);

/* ---- sv39.c and strap.S (bench-sv39.elf, sfence.elf, faults.elf) ---- */
#define RAM_BASE        0x80000000UL
#define RAM_SIZE        (128UL << 20)
#define PAGE_SIZE       4096UL
#define MEGAPAGE_SIZE   (2UL << 20)

#define PTE_V           (1UL << 0)
#define PTE_R           (1UL << 1)
#define PTE_W           (1UL << 2)
#define PTE_X           (1UL << 3)
#define PTE_A           (1UL << 6)
#define PTE_D           (1UL << 7)
/* Leaf PTE for physical address pa (A and D clear: the hart sets them). */
#define PTE_LEAF(pa, perm)  ((((uintptr_t)(pa) >> 12) << 10) | (perm) | PTE_V)

#define SATP_SV39       (8UL << 60)
#define MSTATUS_MPP     (3UL << 11)
#define MSTATUS_MPP_S   (1UL << 11)
#define COUNTEREN_IR    (1UL << 2)

/* A virtual page outside the identity map, free for the images to remap. */
#define SV39_WINDOW     0xc0000000UL

static inline void sfence_vma(uintptr_t va)
{
    __asm__ volatile ("sfence.vma %0, zero" :: "r"(va) : "memory");
}

/* M-mode: PMP open for S-mode, Sv39 tables identity-mapping RAM (4 KiB
 * pages over the image, 2 MiB pages above it) and the UART and finisher
 * pages, satp set.  Every PTE has A = D = 0. */
void sv39_setup(void);
/* The PTE that maps va at level (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB);
 * missing tables below the root are allocated (M-mode setup only). */
uint64_t *sv39_pte(uintptr_t va, int level);
/* M-mode: mret to S-mode running fn() on the same stack; fn's return
 * value is passed to s_exit. */
__attribute__((noreturn)) void sv39_run_smode(int (*fn)(void));
/* S-mode: ecall to M-mode, which powers off with exit code `code`. */
__attribute__((noreturn)) void s_exit(int code);

/* S-mode trap entry (strap.S, for stvec): like crt0's trap_entry, saves
 * x1..x31 in a frame on the stack, calls handle_strap and sret's to the
 * returned pc.  sv39.c has a weak handle_strap that fails on every trap. */
void s_trap_entry(void);
uintptr_t handle_strap(uintptr_t scause, uintptr_t sepc, uintptr_t stval,
                       uintptr_t *frame);

#endif
