/* traps.elf: trap entry/return semantics that the privileged spec fixes.
 *
 * Each case runs through run() (lib.c) and prints, one name=0x... per line,
 * the S-mode trap records (scause, sepc, stval, sstatus & SIE|SPIE|SPP|SUM|MXR)
 * and the final M-mode trap (mcause, mepc, mtval, mstatus & MIE|MPIE|MPP|
 * SIE|SPIE|SPP|MPRV|SUM|MXR).  epc values are absolute: both emulators load
 * the image at 0x8000_0000.  Fields the spec leaves open are not printed:
 * the tval of a breakpoint (0 or the pc), WARL read-backs of medeleg/mideleg/
 * mie/mtvec, mip.MTIP (mtimecmp's reset value is the platform's).  No
 * misaligned loads/stores/AMOs (a hart may perform them or trap, and pick the
 * misaligned or the access-fault cause), no timers, no misa/mvendorid/...
 * Interrupts are raised by CSR writes or by the CLINT's msip with a bounded
 * wait until mip shows it, and the spec makes a hart evaluate pending
 * interrupts right after xRET and after writes to mstatus/mip/mie/sip/sie,
 * so every epc printed is fixed. */
#include "cmp.h"

/* The code the cases run.  M-mode snippets are called (they return with
 * ret if nothing traps); S/U snippets are entered with mret and always end
 * in a trap to M. */
__asm__(
    ".text\n"
    ".balign 4\n"
    "m_ecall:       ecall\n"
    "               ret\n"
    "m_ebreak:      ebreak\n"
    "               ret\n"
    "m_cebreak:     c.ebreak\n"
    "               ret\n"
    "m_illegal32:   .4byte 0x0000000b\n"    /* custom-0 opcode: no such insn */
    "               ret\n"
    "m_illegal16:   .2byte 0x0000\n"        /* the all-zero parcel is illegal */
    "               ret\n"
    "m_csrw_ro:     csrw mhartid, zero\n"   /* write to a read-only CSR */
    "               ret\n"
    "m_load:        ld a0, 0(a0)\n"
    "               ret\n"
    "m_store:       sd a1, 0(a0)\n"
    "               ret\n"
    "m_jump:        jr a0\n"
    "m_enable_mie:  csrsi mstatus, 8\n"     /* a pending MSI is taken right here */
    "m_after_mie:   nop\n"
    "               csrci mstatus, 8\n"
    "               ret\n"
    ".balign 4\n"
    "m_sret:        sret\n"                 /* M may run sret: to S at sepc */
    "s_ecall:       ecall\n"
    "               j s_ecall\n"
    "s_nop_ecall:   nop\n"
    "               ecall\n"
    "s_illegal_ecall: .4byte 0x0000000b\n"
    "               ecall\n"
    "s_ecall_illegal: ecall\n"
    "               .4byte 0x0000000b\n"
    "s_ssip:        csrsi sip, 2\n"        /* delegated SSI: taken right after */
    "s_after_ssip:  nop\n"
    "               ecall\n"
    "s_csrr_mstatus: csrr a0, mstatus\n"
    "               ecall\n"
    "s_sret:        sret\n"
    "               ecall\n"
    "s_csrr_satp:   csrr a0, satp\n"
    "               ecall\n"
    "s_sfence:      sfence.vma\n"
    "               ecall\n"
    "s_mret:        mret\n"
    "               ecall\n"
    "s_enable_sie:  csrsi sstatus, 2\n"     /* a pending delegated SSI is taken */
    "s_after_sie:   nop\n"
    "               ecall\n"
    "s_ssip_sret:   csrsi sip, 2\n"        /* SIE = 0: stays pending */
    "               la t0, u_nop_ecall\n"
    "               csrw sepc, t0\n"
    "               li t0, 0x100\n"
    "               csrc sstatus, t0\n"
    "               sret\n"                 /* to U: taken at once, at sepc */
    "               ecall\n"
    "s_to_u:        .4byte 0x0000000b\n"    /* delegated to S, skipped */
    "               la t0, u_part\n"
    "               csrw sepc, t0\n"
    "               li t0, 0x100\n"
    "               csrc sstatus, t0\n"     /* SPP = U */
    "               sret\n"
    "u_part:        ecall\n"                /* delegated to S, skipped */
    "               .4byte 0x0000000b\n"    /* delegated to S, skipped */
    "               ebreak\n"               /* not delegated: M */
    "u_illegal:     .4byte 0x0000000b\n"
    "               ecall\n"
    "u_ecall:       ecall\n"
    "               j u_ecall\n"
    "u_nop_ecall:   nop\n"
    "               ecall\n"
);
extern char m_ecall[], m_ebreak[], m_cebreak[], m_illegal32[], m_illegal16[],
    m_csrw_ro[], m_sret[], m_load[], m_store[], m_jump[], m_enable_mie[], m_after_mie[],
    s_ecall[], s_nop_ecall[], s_illegal_ecall[], s_ecall_illegal[], s_ssip[],
    s_after_ssip[], s_csrr_mstatus[], s_sret[], s_csrr_satp[], s_sfence[], s_mret[], s_enable_sie[], s_after_sie[], s_ssip_sret[],
    s_to_u[], u_part[], u_illegal[], u_ecall[], u_nop_ecall[];

#define MIP_SSIP        (1UL << 1)
#define MIP_MSIP        (1UL << 3)

static void set_deleg(u64 medeleg, u64 mideleg)
{
    csr_write(medeleg, medeleg);
    csr_write(mideleg, mideleg);
}

/* Raise MSIP through the CLINT and wait (bounded) until mip shows it. */
static u64 msip_raise(void)
{
    CLINT_MSIP = 1;
    for (int i = 0; i < 100000; i++)
        if (csr_read(mip) & MIP_MSIP)
            return 1;
    return 0;
}

static u64 msip_lower(void)
{
    CLINT_MSIP = 0;
    for (int i = 0; i < 100000; i++)
        if (!(csr_read(mip) & MIP_MSIP))
            return 1;
    return 0;
}

static void m_mode_exceptions(void)
{
    run(m_ecall, 0, 0, PRV_M, 0, 0);
    dump("m_ecall", 0);
    run(m_ecall, 0, 0, PRV_M, MS_MIE, 0);           /* MIE -> MPIE, MIE = 0 */
    dump("m_ecall_mie", 0);
    run(m_ebreak, 0, 0, PRV_M, 0, 0);
    dump("m_ebreak", HIDE_MTVAL);
    run(m_cebreak, 0, 0, PRV_M, 0, 0);
    dump("m_c_ebreak", HIDE_MTVAL);
    run(m_illegal32, 0, 0, PRV_M, 0, 0);
    dump("m_illegal32", 0);
    run(m_illegal16, 0, 0, PRV_M, 0, 0);
    dump("m_illegal16", 0);
    run(m_csrw_ro, 0, 0, PRV_M, 0, 0);
    dump("m_csrw_mhartid", 0);

    /* physical addresses with nothing behind them on the virt board */
    run(m_load, 0x0, 0, PRV_M, 0, 0);
    dump("m_load_0", 0);
    run(m_store, 0x0, 0x1234, PRV_M, 0, 0);
    dump("m_store_0", 0);
    run(m_jump, 0x0, 0, PRV_M, 0, 0);
    dump("m_fetch_0", 0);
    /* a successful load, for contrast */
    static u64 word = 0x0123456789abcdefUL;
    long r = run(m_load, (u64)&word, 0, PRV_M, 0, 0);
    put("m_load_ram.trapped", (u64)r);

    /* vectored mtvec: exceptions still go to the base */
    csr_write(mtvec, (u64)m_vectors | 1);
    run(m_ecall, 0, 0, PRV_M, 0, 0);
    dump("m_ecall_vectored", 0);
    put("m_ecall_vectored.vector", mrec.vector);
    csr_write(mtvec, (u64)m_trap);
}

static void interrupts(void)
{
    /* MSI in M, taken right after the csrsi that sets mstatus.MIE */
    put("msi.raised", msip_raise());
    csr_write(mie, MIP_MSIP);
    csr_write(mtvec, (u64)m_vectors | 1);
    run(m_enable_mie, 0, 0, PRV_M, 0, 0);
    dump("m_msi_vectored", 0);
    put("m_msi_vectored.vector", mrec.vector);
    put("m_msi_vectored.epc_is_next", mrec.epc == (u64)m_after_mie);
    csr_write(mtvec, (u64)m_trap);

    /* an M interrupt is taken in S whatever mstatus.MIE says */
    run(s_nop_ecall, 0, 0, PRV_S, 0, 0);
    dump("s_msi", 0);
    put("msi.lowered", msip_lower());
    csr_write(mie, 0);

    /* SSI not delegated, pending when mret enters S: taken into M at once */
    csr_write(mip, MIP_SSIP);
    csr_write(mie, MIP_SSIP);
    run(s_nop_ecall, 0, 0, PRV_S, MS_SIE, 0);
    dump("s_ssi_to_m", 0);

    /* STI not delegated, set by M in mip, pending when mret enters S */
    csr_write(mip, 1UL << 5);
    csr_write(mie, 1UL << 5);
    run(s_nop_ecall, 0, 0, PRV_S, 0, 0);
    dump("s_sti_to_m", 0);
    csr_write(mie, 0);
    csr_clear(mip, 1UL << 5);

    /* MSI and SSI both pending and not delegated: MSI has priority */
    csr_set(mip, MIP_SSIP);
    put("msi2.raised", msip_raise());
    csr_write(mie, MIP_SSIP | MIP_MSIP);
    run(s_nop_ecall, 0, 0, PRV_S, 0, 0);
    dump("s_msi_before_ssi", 0);
    put("msi2.lowered", msip_lower());
    csr_write(mie, 0);
    csr_clear(mip, MIP_SSIP);

    /* SSI delegated: S sets sip.SSIP with SIE=1, the trap follows at once */
    set_deleg(0, MIP_SSIP);
    csr_write(mie, MIP_SSIP);
    run(s_ssip, 0, 0, PRV_S, MS_SIE, 0);
    dump("s_ssi_delegated", 0);
    put("s_ssi_delegated.epc_is_next",
        sarea.n == 1 && sarea.rec[0].epc == (u64)s_after_ssip);

    /* SSI delegated, pending when mret enters U: taken into S although
     * sstatus.SIE = 0 (S interrupts are always enabled while in U) */
    csr_write(mip, MIP_SSIP);
    run(u_nop_ecall, 0, 0, PRV_U, 0, 0);
    dump("u_ssi_delegated", 0);

    /* SSI delegated and pending, S sets sstatus.SIE: taken right after */
    csr_write(mip, MIP_SSIP);
    run(s_enable_sie, 0, 0, PRV_S, 0, 0);
    dump("s_enable_sie", 0);
    put("s_enable_sie.epc_is_next",
        sarea.n == 1 && sarea.rec[0].epc == (u64)s_after_sie);

    /* SSI delegated, raised in S with SIE = 0, taken right after sret to U */
    run(s_ssip_sret, 0, 0, PRV_S, 0, 0);
    dump("s_sret_to_u_ssi", 0);

    /* SSI delegated and pending in S with SIE = 0: not taken */
    csr_write(mip, MIP_SSIP);
    run(s_nop_ecall, 0, 0, PRV_S, 0, 0);
    dump("s_ssi_masked", 0);
    put("s_ssi_masked.sip", csr_read(sip) & MIP_SSIP);
    csr_clear(mip, MIP_SSIP);
    csr_write(mie, 0);
    set_deleg(0, 0);
}

static void delegation(void)
{
    /* nothing delegated: S and U exceptions go to M */
    set_deleg(0, 0);
    run(s_ecall, 0, 0, PRV_S, 0, 0);
    dump("s_ecall", 0);
    run(s_ecall, 0, 0, PRV_S, MS_MPIE, 0);          /* mret: MIE = MPIE = 1 */
    dump("s_ecall_mpie", 0);
    run(s_ecall, 0, 0, PRV_S, MS_MPRV | MS_SIE, 0); /* mret to S clears MPRV */
    dump("s_ecall_mprv", 0);
    /* sret from M to S also clears MPRV */
    csr_write(sepc, (u64)s_ecall);
    run(m_sret, 0, 0, PRV_M, MS_MPRV | (3UL << MS_MPP_SHIFT) | MS_SPP | MS_SPIE, 0);
    dump("m_sret_mprv", 0);
    run(s_illegal_ecall, 0, 0, PRV_S, 0, 0);
    dump("s_illegal", 0);
    run(u_ecall, 0, 0, PRV_U, MS_SPP | MS_SPIE, 0);
    dump("u_ecall", 0);
    run(u_illegal, 0, 0, PRV_U, 0, 0);
    dump("u_illegal", 0);
    run(s_csrr_mstatus, 0, 0, PRV_S, 0, 0);
    dump("s_csrr_mstatus", 0);
    run(s_mret, 0, 0, PRV_S, 0, 0);
    dump("s_mret", 0);
    /* whatever medeleg holds, a trap taken in M stays in M */
    csr_write(medeleg, ~0UL);
    run(m_ecall, 0, 0, PRV_M, 0, 1);
    dump("m_ecall_medeleg_all", 0);
    run(m_illegal32, 0, 0, PRV_M, 0, 1);
    dump("m_illegal_medeleg_all", 0);
    set_deleg(0, 0);

    /* illegal instruction delegated to S: taken in S, skipped, sret back */
    set_deleg(1UL << 2, 0);
    run(s_illegal_ecall, 0, 0, PRV_S, MS_SIE, 1);
    dump("s_illegal_delegated", 0);
    run(s_illegal_ecall, 0, 0, PRV_S, 0, 1);
    dump("s_illegal_delegated_sie0", 0);
    /* ... but an M-mode illegal instruction still goes to M */
    run(m_illegal32, 0, 0, PRV_M, 0, 1);
    dump("m_illegal_with_deleg", 0);

    /* S -> U: illegal in S and ecall/illegal in U delegated, ebreak to M */
    set_deleg((1UL << 2) | (1UL << 8), 0);
    run(s_to_u, 0, 0, PRV_S, MS_SIE, 1);
    dump("s_to_u", HIDE_MTVAL);
    put("s_to_u.u_part", (u64)u_part);

    /* ecall from U delegated, then an illegal instruction in U that is not */
    set_deleg(1UL << 8, 0);
    run(u_part, 0, 0, PRV_U, MS_SUM | MS_MXR, 1);
    dump("u_ecall_then_illegal", HIDE_MTVAL);

    /* ecall from S delegated to S (medeleg bit 9) */
    set_deleg(1UL << 9, 0);
    run(s_ecall_illegal, 0, 0, PRV_S, 0, 1);
    dump("s_ecall_delegated", 0);
    set_deleg(0, 0);

    /* mstatus.TSR: sret in S is illegal; TVM: satp and sfence.vma are */
    run(s_sret, 0, 0, PRV_S, MS_TSR, 0);
    dump("s_sret_tsr", 0);
    run(s_csrr_satp, 0, 0, PRV_S, MS_TVM, 0);
    dump("s_satp_tvm", 0);
    run(s_sfence, 0, 0, PRV_S, MS_TVM, 0);
    dump("s_sfence_tvm", 0);
}

/* sstatus is a view of mstatus; sie/sip show only delegated interrupts. */
static void views(void)
{
    u64 ms = csr_read(mstatus) & ~MS_MASK;
    csr_write(mstatus, ms | MS_SIE | MS_SPIE | MS_SPP | MS_SUM | MS_MXR | MS_MPIE |
              (1UL << MS_MPP_SHIFT));
    put("view.sstatus", csr_read(sstatus) & (MS_MASK | MS_TVM | MS_TSR));
    csr_write(sstatus, 0);
    put("view.mstatus_after_sstatus_0", csr_read(mstatus) & MS_MASK);
    csr_write(mstatus, ms);

    set_deleg(0, MIP_SSIP);
    csr_write(mie, MIP_SSIP | MIP_MSIP);
    csr_write(mip, MIP_SSIP);
    put("view.sie", csr_read(sie) & 0xaaa);
    put("view.sip", csr_read(sip) & 0xaaa);
    put("view.mip", csr_read(mip) & 0x00a);   /* MTIP: mtimecmp's reset value differs */
    csr_write(sie, 0);
    csr_write(sip, 0);
    put("view.mie_after_sie_0", csr_read(mie) & 0xaaa);
    put("view.mip_after_sip_0", csr_read(mip) & 0x00a);
    set_deleg(0, 0);
    csr_write(mie, MIP_SSIP);
    put("view.sie_undelegated", csr_read(sie) & 0xaaa);
    csr_write(mie, 0);

    /* M can write the S-level pending bits of mip */
    csr_write(mip, 0x222);
    put("view.mip_s_bits", csr_read(mip) & 0x222);
    csr_write(mip, 0);
    put("view.mip_s_bits_cleared", csr_read(mip) & 0x222);

    /* xepc: bit 0 is always zero, bit 1 is writable (C is implemented) */
    u64 old = csr_read(mepc);
    csr_write(mepc, 0x80001003UL);
    put("view.mepc_odd", csr_read(mepc));
    csr_write(mepc, old);
    csr_write(sepc, 0x80001007UL);
    put("view.sepc_odd", csr_read(sepc));
}

int main(void)
{
    printf("compare: traps\n");
    m_mode_exceptions();
    interrupts();
    delegation();
    views();
    printf("compare: end\n");
    return 0;
}
