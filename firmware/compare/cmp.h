/* Shared declarations of the comparison guests (start.S, lib.c). */
#ifndef CMP_H
#define CMP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t u64;

/* ---- devices (QEMU virt layout) ---- */
#define UART_BASE       0x10000000UL    /* 16550A: THR at +0, LSR at +5 */
#define FINISHER_BASE   0x100000UL      /* sifive test finisher */
#define CLINT_MSIP      (*(volatile uint32_t *)0x2000000UL)

/* ---- CSRs ---- */
#define csr_read(csr) ({ u64 __v;                                       \
        __asm__ volatile ("csrr %0, " #csr : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, v) \
        __asm__ volatile ("csrw " #csr ", %0" :: "rK"(v) : "memory")
#define csr_set(csr, v) \
        __asm__ volatile ("csrs " #csr ", %0" :: "rK"(v) : "memory")
#define csr_clear(csr, v) \
        __asm__ volatile ("csrc " #csr ", %0" :: "rK"(v) : "memory")
#define sfence_vma()    __asm__ volatile ("sfence.vma" ::: "memory")
#define fence_i()       __asm__ volatile ("fence.i" ::: "memory")

#define MS_SIE          (1UL << 1)
#define MS_MIE          (1UL << 3)
#define MS_SPIE         (1UL << 5)
#define MS_MPIE         (1UL << 7)
#define MS_SPP          (1UL << 8)
#define MS_MPP_SHIFT    11
#define MS_MPP          (3UL << 11)
#define MS_MPRV         (1UL << 17)
#define MS_SUM          (1UL << 18)
#define MS_MXR          (1UL << 19)
#define MS_TVM          (1UL << 20)
#define MS_TSR          (1UL << 22)
/* the architectural fields both emulators implement (no FS/VS/XS/SD/UXL/SXL) */
#define MS_MASK         (MS_SIE | MS_MIE | MS_SPIE | MS_MPIE | MS_SPP | MS_MPP | \
                         MS_MPRV | MS_SUM | MS_MXR)
#define SS_MASK         (MS_SIE | MS_SPIE | MS_SPP | MS_SUM | MS_MXR)

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

#define IRQ_SSI         1
#define IRQ_MSI         3

/* ---- start.S ---- */
struct mrec { u64 cause, epc, tval, status, a0, vector, valid; };
struct srec { u64 cause, epc, tval, status, a0; };
struct sarea { u64 t0, t1, t2, n, action; struct srec rec[8]; };

extern struct mrec mrec;
extern u64 probe_ret;
extern char m_trap[], m_vectors[], s_trap[];
long probe(void *fn, u64 a0, u64 a1, int mode);

/* ---- lib.c ---- */
extern struct sarea sarea;
void uart_putc(char c);
int  printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "name=0x%016lx\n" */
void put(const char *name, u64 value);
void putp(const char *prefix, const char *name, u64 value);
/* Reset mrec/sarea, set mstatus (MPP=mode) and run probe(fn, a0, a1, mode). */
long run(void *fn, u64 a0, u64 a1, int mode, u64 mstatus_bits, u64 s_action);
/* Print what run() recorded: every S-mode trap record, then the M record
 * (or name.returned=1).  hide: fields whose value the spec leaves open. */
#define HIDE_MTVAL      1
#define HIDE_STVAL      2
#define HIDE_M          4               /* the M record is s_trap's own ecall */
void dump(const char *name, int hide);
__attribute__((noreturn)) void poweroff(int code);

#endif
