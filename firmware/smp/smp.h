/* Shared support of the SMP guests (firmware/smp/): every hart runs the image.
 *
 * M-mode images (start.S, link.ld): the ROM starts every hart at _start with
 * a0 = hart id, a1 = device tree, as QEMU's virt does for -bios none.  Each
 * hart gets its own stack; hart 0 zeroes .bss and counts the harts in the
 * device tree, then lets the others into main(hartid).  main's return value on
 * hart 0 is the exit code (test finisher); on the other harts it parks them.
 *
 * The S-mode image (sstart.S, slink.ld: rfence.elf) is entered by the SBI on
 * one boot hart (any id) and starts the others with SBI HSM hart_start. */
#ifndef SMP_H
#define SMP_H

#include "../fw.h"

#define MAX_HARTS       64
#define CLINT_MSIP_OF(h) (*(volatile uint32_t *)(CLINT_BASE + 4UL * (h)))
#define MIP_MSIP        (1UL << 3)
#define MIE_MSIE        (1UL << 3)
#define MIP_SSIP        (1UL << 1)
#define SIE_SSIE        (1UL << 1)
#define IRQ_M_SOFT      (MCAUSE_INT | 3)

extern unsigned nharts;                 /* harts in the device tree's /cpus */

/* Each image's test, run by every hart 0..nharts-1 (M-mode images). */
int main(unsigned long hartid);

/* The number of /cpus/cpu@N nodes in a flattened device tree (1 if unreadable). */
unsigned fdt_cpus(const void *fdt);

/* M-mode: every hart calls it; returns when all nharts have.  A waiting hart
 * sleeps in WFI (mie.MSIE on, mstatus.MIE off) until the last one arrives and
 * raises its msip; the caller must not have an IPI of its own in flight. */
void barrier(void);

/* ---- SBI (the S-mode image) ---- */
struct sbiret { long error, value; };
struct sbiret sbi_call(long eid, long fid, long a0, long a1, long a2, long a3, long a4);
#define SBI_EXT_IPI     0x735049
#define SBI_EXT_RFENCE  0x52464E43
#define SBI_EXT_HSM     0x48534D
#define SBI_EXT_SRST    0x53525354

#endif
