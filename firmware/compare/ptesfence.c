/* ptesfence.elf: PTE edits against sfence.vma, and privileged instructions in U.
 *
 * Part 1 (Sv39, S-mode): S loads a word through VA 0xc000_0000 (page OLD),
 * rewrites the leaf PTE, loads again without a fence (the spec allows the
 * old or the new translation: the value is printed, a checker must accept
 * both), runs sfence.vma (all, or just that address) and loads again: now
 * the new translation is required.  The invalidation variant makes the PTE
 * not valid: the unfenced load may still hit or may fault; after the fence
 * it must fault.  The same for instruction fetches (a remapped code page
 * must run the new code after sfence.vma) and for a 2 MiB megapage fenced by
 * an address in its middle.
 *
 * Part 2 (bare, U-mode, nothing delegated): each privileged instruction traps
 * to M with an illegal-instruction exception (mcause 2) and mtval = the
 * instruction bits; the instruction word read back from memory is printed
 * next to it as name.insn.  Then rdcycle against mcounteren/scounteren, in S
 * and U.  (The u_* snippets are plain code: S runs them too.) */
#include "cmp.h"

#define PTE_V   (1UL << 0)
#define PTE_R   (1UL << 1)
#define PTE_W   (1UL << 2)
#define PTE_X   (1UL << 3)
#define PTE_A   (1UL << 6)
#define PTE_D   (1UL << 7)
#define PTE(pa, flags)  ((((u64)(pa) >> 12) << 10) | (flags))

#define VA_TEST         0xc0000000UL
#define OLD_VALUE       0x01d01d01d01d01d0UL
#define NEW_VALUE       0x0e70e70e70e70e70UL
#define VA_MEGA         0xc0200000UL    /* l1[1] */
#define PA_MEGA_OLD     0x80400000UL    /* 2 MiB aligned, above the image */
#define PA_MEGA_NEW     0x80600000UL
#define MEGA_OFFSET     0x123458UL
#define CODE_OFFSET     0x800           /* in both pages: addi a0, zero, N; c.jr ra */
#define OLD_CODE        0x0001808200100513UL    /* N = 1 (then c.nop) */
#define NEW_CODE        0x0001808200200513UL    /* N = 2 */

static u64 root[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u64 page_old[512] __attribute__((aligned(4096)));
static u64 page_new[512] __attribute__((aligned(4096)));

/* What the S-mode sequences read and write (identity-mapped). */
struct job {
    u64 va, pte_addr, new_pte;
    u64 before, nofence, fenced;        /* the three loads */
    u64 stage;                          /* loads completed */
};
static struct job job;

__asm__(
    ".text\n"
    ".balign 4\n"
    /* a0 = &job.  stage counts the loads that completed. */
    "s_edit_fence_all:\n"
    "               ld t3, 0(a0)\n"         /* va */
    "               ld t4, 8(a0)\n"         /* &pte */
    "               ld t5, 16(a0)\n"        /* new pte */
    "s_load1_all:   ld t6, 0(t3)\n"
    "               sd t6, 24(a0)\n"
    "               li t6, 1\n"
    "               sd t6, 48(a0)\n"
    "               sd t5, 0(t4)\n"         /* edit the PTE, no fence */
    "s_load2_all:   ld t6, 0(t3)\n"
    "               sd t6, 32(a0)\n"
    "               li t6, 2\n"
    "               sd t6, 48(a0)\n"
    "               sfence.vma\n"
    "s_load3_all:   ld t6, 0(t3)\n"
    "               sd t6, 40(a0)\n"
    "               li t6, 3\n"
    "               sd t6, 48(a0)\n"
    "               ecall\n"
    "s_edit_fence_va:\n"
    "               ld t3, 0(a0)\n"
    "               ld t4, 8(a0)\n"
    "               ld t5, 16(a0)\n"
    "s_load1_va:    ld t6, 0(t3)\n"
    "               sd t6, 24(a0)\n"
    "               li t6, 1\n"
    "               sd t6, 48(a0)\n"
    "               sd t5, 0(t4)\n"
    "s_load2_va:    ld t6, 0(t3)\n"
    "               sd t6, 32(a0)\n"
    "               li t6, 2\n"
    "               sd t6, 48(a0)\n"
    "               sfence.vma t3, zero\n"  /* just this address, all ASIDs */
    "s_load3_va:    ld t6, 0(t3)\n"
    "               sd t6, 40(a0)\n"
    "               li t6, 3\n"
    "               sd t6, 48(a0)\n"
    "               ecall\n"
    /* the same with calls into a remapped code page (they set a0 only) */
    "s_edit_fetch:\n"
    "               mv t2, a0\n"
    "               ld t3, 0(t2)\n"
    "               ld t4, 8(t2)\n"
    "               ld t5, 16(t2)\n"
    "               jalr t3\n"
    "               sd a0, 24(t2)\n"
    "               li t6, 1\n"
    "               sd t6, 48(t2)\n"
    "               sd t5, 0(t4)\n"
    "               jalr t3\n"
    "               sd a0, 32(t2)\n"
    "               li t6, 2\n"
    "               sd t6, 48(t2)\n"
    "               sfence.vma\n"
    "               jalr t3\n"
    "               sd a0, 40(t2)\n"
    "               li t6, 3\n"
    "               sd t6, 48(t2)\n"
    "               ecall\n"
    /* U-mode privileged instructions: each must trap; ecall if one does not */
    ".balign 4\n"
    "u_csrr_mstatus: csrr a0, mstatus\n"
    "               ecall\n"
    "u_csrr_mscratch: csrr a0, mscratch\n"
    "               ecall\n"
    "u_csrr_sstatus: csrr a0, sstatus\n"
    "               ecall\n"
    "u_csrr_satp:   csrr a0, satp\n"
    "               ecall\n"
    "u_csrw_sscratch: csrw sscratch, a0\n"
    "               ecall\n"
    "u_mret:        mret\n"
    "               ecall\n"
    "u_sret:        sret\n"
    "               ecall\n"
    "u_wfi:         wfi\n"
    "               ecall\n"
    "u_sfence_vma:  sfence.vma\n"
    "               ecall\n"
    "u_sfence_vma_a0: sfence.vma a0, a1\n"
    "               ecall\n"
    "u_csrw_cycle:  csrw cycle, a0\n"
    "               ecall\n"
    "u_csrw_instret: csrw instret, zero\n"
    "               ecall\n"
    "u_csrs_time:   csrs time, a0\n"
    "               ecall\n"
    "u_rdcycle:     rdcycle a0\n"           /* with mcounteren.CY = 0 */
    "               ecall\n"
);
extern char s_edit_fence_all[], s_load1_all[], s_load2_all[], s_load3_all[],
    s_edit_fence_va[], s_edit_fetch[], s_load1_va[], s_load2_va[], s_load3_va[],
    u_csrr_mstatus[], u_csrr_mscratch[], u_csrr_sstatus[], u_csrr_satp[],
    u_csrw_sscratch[], u_mret[], u_sret[], u_wfi[], u_sfence_vma[],
    u_sfence_vma_a0[], u_csrw_cycle[], u_csrw_instret[], u_csrs_time[], u_rdcycle[];

static void tables(void)
{
    for (int i = 0; i < 512; i++) {
        root[i] = l1[i] = l0[i] = 0;
        page_old[i] = OLD_VALUE;
        page_new[i] = NEW_VALUE;
    }
    root[2] = PTE(0x80000000UL, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
    root[3] = PTE(l1, PTE_V);
    l1[0] = PTE(l0, PTE_V);
    page_old[CODE_OFFSET / 8] = OLD_CODE;
    page_new[CODE_OFFSET / 8] = NEW_CODE;
    fence_i();
    l0[0] = PTE(page_old, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
    l1[1] = PTE(PA_MEGA_OLD, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
    *(volatile u64 *)(PA_MEGA_OLD + MEGA_OFFSET) = OLD_VALUE;
    *(volatile u64 *)(PA_MEGA_NEW + MEGA_OFFSET) = NEW_VALUE;
    sfence_vma();
}

/* Which load faulted (0 = none): 1, 2 or 3, from the S trap record. */
static u64 faulting_load(char *l1p, char *l2p, char *l3p)
{
    if (sarea.n == 0)
        return 0;
    u64 epc = sarea.rec[0].epc;
    return epc == (u64)l1p ? 1 : epc == (u64)l2p ? 2 : epc == (u64)l3p ? 3 : 0xff;
}

static void edit(const char *name, void *fn, u64 va, u64 *pte, u64 new_pte,
                 char *l1p, char *l2p, char *l3p)
{
    tables();
    job.va = va;
    job.pte_addr = (u64)pte;
    job.new_pte = new_pte;
    job.before = job.nofence = job.fenced = job.stage = 0;
    run(fn, (u64)&job, 0, PRV_S, 0, 0);
    putp(name, "loads_done", job.stage);
    putp(name, "before", job.before);
    if (job.stage >= 2)
        putp(name, "nofence", job.nofence);
    if (job.stage >= 3)
        putp(name, "fenced", job.fenced);
    u64 f = faulting_load(l1p, l2p, l3p);
    putp(name, "faulting_load", f);
    if (sarea.n) {
        putp(name, "scause", sarea.rec[0].cause);
        putp(name, "stval", sarea.rec[0].tval);
    }
    putp(name, "pte", *pte);
}

static void priv_insn(const char *name, char *insn, int mode)
{
    run(insn, 0x40, 0, mode, 0, 0);
    putp(name, "mcause", mrec.cause);
    putp(name, "mepc_is_insn", mrec.epc == (u64)insn);
    putp(name, "mtval", mrec.tval);
    putp(name, "insn", *(volatile uint32_t *)insn);
    putp(name, "mpp", (mrec.status & MS_MPP) >> MS_MPP_SHIFT);
}

int main(void)
{
    u64 pte_new = PTE(page_new, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
    u64 pte_gone = PTE(page_new, PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);   /* V = 0 */

    printf("compare: ptesfence\n");
    put("old_value", OLD_VALUE);
    put("new_value", NEW_VALUE);

    csr_write(medeleg, (1UL << 12) | (1UL << 13) | (1UL << 15));
    csr_write(mideleg, 0);
    tables();
    csr_write(satp, (8UL << 60) | ((u64)root >> 12));
    sfence_vma();
    u64 va = VA_TEST + 0x40;
    u64 *pte = &l0[0];
    edit("remap_fence_all", s_edit_fence_all, va, pte, pte_new,
         s_load1_all, s_load2_all, s_load3_all);
    edit("remap_fence_va", s_edit_fence_va, va, pte, pte_new,
         s_load1_va, s_load2_va, s_load3_va);
    edit("unmap_fence_all", s_edit_fence_all, va, pte, pte_gone,
         s_load1_all, s_load2_all, s_load3_all);
    edit("unmap_fence_va", s_edit_fence_va, va, pte, pte_gone,
         s_load1_va, s_load2_va, s_load3_va);
    edit("remap_fetch", s_edit_fetch, VA_TEST + CODE_OFFSET, pte, pte_new, 0, 0, 0);
    /* a 2 MiB megapage, fenced by an address in its middle */
    edit("remap_mega_fence_va", s_edit_fence_va, VA_MEGA + MEGA_OFFSET, &l1[1],
         PTE(PA_MEGA_NEW, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D),
         s_load1_va, s_load2_va, s_load3_va);
    csr_write(satp, 0);
    sfence_vma();

    csr_write(medeleg, 0);
    csr_write(mcounteren, 0);
    csr_write(scounteren, 0);
    priv_insn("u_csrr_mstatus", u_csrr_mstatus, PRV_U);
    priv_insn("u_csrr_mscratch", u_csrr_mscratch, PRV_U);
    priv_insn("u_csrr_sstatus", u_csrr_sstatus, PRV_U);
    priv_insn("u_csrr_satp", u_csrr_satp, PRV_U);
    priv_insn("u_csrw_sscratch", u_csrw_sscratch, PRV_U);
    priv_insn("u_mret", u_mret, PRV_U);
    priv_insn("u_sret", u_sret, PRV_U);
    priv_insn("u_wfi", u_wfi, PRV_U);
    priv_insn("u_sfence_vma", u_sfence_vma, PRV_U);
    priv_insn("u_sfence_vma_a0", u_sfence_vma_a0, PRV_U);
    priv_insn("u_csrw_cycle", u_csrw_cycle, PRV_U);
    priv_insn("u_csrw_instret", u_csrw_instret, PRV_U);
    priv_insn("u_csrs_time", u_csrs_time, PRV_U);
    priv_insn("u_rdcycle", u_rdcycle, PRV_U);
    /* S needs mcounteren.CY, U needs mcounteren.CY and scounteren.CY */
    priv_insn("s_rdcycle_mcounteren0", u_rdcycle, PRV_S);
    csr_write(mcounteren, 1);
    priv_insn("u_rdcycle_scounteren0", u_rdcycle, PRV_U);
    run(u_rdcycle, 0, 0, PRV_S, 0, 0);
    put("s_rdcycle_enabled.mcause", mrec.cause);
    csr_write(scounteren, 1);
    run(u_rdcycle, 0, 0, PRV_U, 0, 0);
    put("u_rdcycle_enabled.mcause", mrec.cause);
    printf("compare: end\n");
    return 0;
}
