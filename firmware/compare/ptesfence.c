/* ptesfence.elf: PTE edits against sfence.vma, and privileged instructions in U.
 *
 * Part 1 (Sv39, S-mode): S loads a word through VA 0xc000_0000 (page OLD),
 * rewrites the leaf PTE, loads again without a fence (the spec allows the
 * old or the new translation: the value is printed, a checker must accept
 * both), runs sfence.vma (all, or just that address) and loads again: now
 * the new translation is required.  The invalidation variant makes the PTE
 * not valid: the unfenced load may still hit or may fault; after the fence
 * it must fault.  The same for instruction fetches: a remapped code page
 * must run the new code after sfence.vma.
 *
 * Part 2 (bare, U-mode, nothing delegated): each privileged instruction traps
 * to M with an illegal-instruction exception (mcause 2) and mtval = the
 * instruction bits; the instruction word read back from memory is printed
 * next to it as name.insn. */
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

static void edit(const char *name, void *fn, u64 va, u64 new_pte,
                 char *l1p, char *l2p, char *l3p)
{
    tables();
    job.va = va;
    job.pte_addr = (u64)&l0[0];
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
    putp(name, "pte", l0[0]);
}

static void u_priv(const char *name, char *insn)
{
    run(insn, 0x40, 0, PRV_U, 0, 0);
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
    edit("remap_fence_all", s_edit_fence_all, va, pte_new, s_load1_all, s_load2_all,
         s_load3_all);
    edit("remap_fence_va", s_edit_fence_va, va, pte_new, s_load1_va, s_load2_va, s_load3_va);
    edit("unmap_fence_all", s_edit_fence_all, va, pte_gone, s_load1_all, s_load2_all,
         s_load3_all);
    edit("unmap_fence_va", s_edit_fence_va, va, pte_gone, s_load1_va, s_load2_va, s_load3_va);
    edit("remap_fetch", s_edit_fetch, VA_TEST + CODE_OFFSET, pte_new, 0, 0, 0);
    csr_write(satp, 0);
    sfence_vma();

    csr_write(medeleg, 0);
    csr_write(mcounteren, 0);
    csr_write(scounteren, 0);
    u_priv("u_csrr_mstatus", u_csrr_mstatus);
    u_priv("u_csrr_mscratch", u_csrr_mscratch);
    u_priv("u_csrr_sstatus", u_csrr_sstatus);
    u_priv("u_csrr_satp", u_csrr_satp);
    u_priv("u_csrw_sscratch", u_csrw_sscratch);
    u_priv("u_mret", u_mret);
    u_priv("u_sret", u_sret);
    u_priv("u_wfi", u_wfi);
    u_priv("u_sfence_vma", u_sfence_vma);
    u_priv("u_sfence_vma_a0", u_sfence_vma_a0);
    u_priv("u_csrw_cycle", u_csrw_cycle);
    u_priv("u_csrw_instret", u_csrw_instret);
    u_priv("u_csrs_time", u_csrs_time);
    u_priv("u_rdcycle", u_rdcycle);
    /* cycle readable from U once both counter-enable registers allow it */
    csr_write(mcounteren, 1);
    csr_write(scounteren, 1);
    run(u_rdcycle, 0, 0, PRV_U, 0, 0);
    put("u_rdcycle_enabled.mcause", mrec.cause);
    printf("compare: end\n");
    return 0;
}
