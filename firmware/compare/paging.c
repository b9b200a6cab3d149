/* paging.elf: Sv39 page-walk semantics that the privileged spec fixes.
 *
 * M-mode builds the tables, then runs one access per case in S or U mode (or
 * in M with mstatus.MPRV) and prints, one name=0x... per line: for a fault,
 * the S-mode trap record (scause, sepc, stval, sstatus & SIE|SPIE|SPP|SUM|MXR)
 * or for MPRV the M-mode one; otherwise the value the access produced; then
 * the leaf PTE as it is in memory after the access (hardware A/D updating):
 * name.pte after an access that completed (A, and D for a store, must be
 * set), name.pte_no_a after one that faulted: the spec lets a hart set A
 * speculatively (QEMU sets it for an AMO to a read-only page) but D must be
 * exact, so there the A bit is masked out.
 * Page faults (12, 13, 15) and access faults (1, 5, 7) are delegated to S; everything runs with the
 * tables freshly rebuilt and an sfence.vma unless a case builds on the one
 * before.
 *
 * Virtual layout (root table entries, 1 GiB each):
 *   [1] 0x0_4000_0000  gigapage -> 0x8000_0000, U RWX A D (user alias of the image)
 *   [2] 0x0_8000_0000  gigapage -> 0x8000_0000, RWX A D (identity: code, data, tables)
 *   [3] 0x0_c000_0000  -> l1: [0] -> l0 (4 KiB test pages, 0xc000_0000 + i * 4 KiB)
 *                            [1] megapage 0xc020_0000 -> 0x8040_0000, RW
 *                            [2] misaligned megapage (PPN[0] = 1)
 *                            [3] invalid (zero)
 *   [4] 0x1_0000_0000  gigapage -> 0x8000_0000, RW (A/D start clear)
 *   [5] 0x1_4000_0000  misaligned gigapage (PPN[1] != 0)
 *   [6] 0x1_8000_0000  not valid (V = 0, other bits set)
 *   [7] 0x1_c000_0000  gigapage -> physical 0x0 (nothing there on virt), RW
 *   [8] 0x2_0000_0000  -> a next-level table at physical 0x0: the walk itself
 *                         hits nothing (an access fault, not a page fault)
 * and an instruction that straddles a page boundary: its first half at the end
 * of an executable page, its second half on a page that is not. */
#include "cmp.h"

#define PTE_V   (1UL << 0)
#define PTE_R   (1UL << 1)
#define PTE_W   (1UL << 2)
#define PTE_X   (1UL << 3)
#define PTE_U   (1UL << 4)
#define PTE_G   (1UL << 5)
#define PTE_A   (1UL << 6)
#define PTE_D   (1UL << 7)
#define PTE_RSVD60 (1UL << 60)

#define PTE(pa, flags)  ((((u64)(pa) >> 12) << 10) | (flags))

#define VA_USER_ALIAS   0x40000000UL
#define VA_TEST         0xc0000000UL
#define VA_MEGA         0xc0200000UL
#define VA_MEGA_MIS     0xc0400000UL
#define VA_L1_INVALID   0xc0600000UL
#define VA_GIGA         0x100000000UL
#define VA_GIGA_MIS     0x140000000UL
#define VA_ROOT_INVALID 0x180000000UL
#define VA_GIGA_NOTHING 0x1c0000000UL
#define VA_WALK_NOTHING 0x200000000UL
#define PA_MEGA         0x80400000UL    /* 2 MiB aligned, above the image */

enum {                  /* the 4 KiB test pages */
    P_RW,               /* RW */
    P_RO,               /* R */
    P_INVALID,          /* RWX, V = 0 */
    P_WO,               /* W without R */
    P_WX,               /* WX without R */
    P_UDATA,            /* U RW */
    P_UCODE,            /* U RX, code */
    P_XONLY,            /* X only, code */
    P_NOX,              /* RW, code but not executable */
    P_SCODE,            /* RX, code */
    P_NONLEAF,          /* a pointer PTE at level 0 */
    P_RSVD,             /* RW with reserved bit 60 set */
    P_URO,              /* U R */
    P_UDIRTY,           /* U RW */
    P_STRADDLE,         /* RX, a 32-bit instruction in its last 2 bytes */
    P_AFTER,            /* RW (not X): the page after it */
    NPAGES
};

static u64 root[512] __attribute__((aligned(4096)));
static u64 l1[512] __attribute__((aligned(4096)));
static u64 l0[512] __attribute__((aligned(4096)));
static u64 pages[NPAGES][512] __attribute__((aligned(4096)));

static const u64 page_flags[NPAGES] = {
    [P_RW]      = PTE_V | PTE_R | PTE_W,
    [P_RO]      = PTE_V | PTE_R,
    [P_INVALID] = PTE_R | PTE_W | PTE_X,
    [P_WO]      = PTE_V | PTE_W,
    [P_WX]      = PTE_V | PTE_W | PTE_X,
    [P_UDATA]   = PTE_V | PTE_R | PTE_W | PTE_U,
    [P_UCODE]   = PTE_V | PTE_R | PTE_X | PTE_U,
    [P_XONLY]   = PTE_V | PTE_X,
    [P_NOX]     = PTE_V | PTE_R | PTE_W,
    [P_SCODE]   = PTE_V | PTE_R | PTE_X,
    [P_NONLEAF] = PTE_V,
    [P_RSVD]    = PTE_V | PTE_R | PTE_W | PTE_RSVD60,
    [P_URO]     = PTE_V | PTE_R | PTE_U,
    [P_UDIRTY]  = PTE_V | PTE_R | PTE_W | PTE_U,
    [P_STRADDLE] = PTE_V | PTE_R | PTE_X,
    [P_AFTER]   = PTE_V | PTE_R | PTE_W,
};

/* Lower-mode code: one access, then ecall to M.  The template is copied
 * into the code pages. */
__asm__(
    ".text\n"
    ".balign 4\n"
    "lo_load:       ld a0, 0(a0)\n"
    "               ecall\n"
    "lo_store:      sd a1, 0(a0)\n"
    "               ecall\n"
    "lo_amoadd:     amoadd.d a0, a1, (a0)\n"
    "               ecall\n"
    "lo_fetch:      jalr a0\n"
    "               ecall\n"
    "m_mprv_load:   csrs mstatus, a1\n"      /* MPRV: loads/stores as MPP */
    "               ld a0, 0(a0)\n"
    "               csrc mstatus, a1\n"
    "               ret\n"
    "m_mprv_store:  csrs mstatus, a1\n"
    "               sd a1, 0(a0)\n"
    "               csrc mstatus, a1\n"
    "               ret\n"
    ".balign 4\n"
    "code_tmpl:     .option push\n"
    "               .option norvc\n"
    "               addi a0, zero, 42\n"
    "               jalr zero, 0(ra)\n"
    "               .option pop\n"
);
extern char lo_load[], lo_store[], lo_amoadd[], lo_fetch[], m_mprv_load[],
    m_mprv_store[], code_tmpl[];

static u64 va_page(int p)
{
    return VA_TEST + (u64)p * 4096;
}

static u64 pattern(int p)
{
    return 0x1111000000000000UL * ((u64)p + 1) + 0xabcd0000UL + (u64)p;
}

static void poke16(u64 addr, uint16_t value)
{
    *(volatile uint16_t *)addr = value;
}

/* Rebuild every table and test page, then flush the TLB. */
static void setup(void)
{
    for (int i = 0; i < 512; i++)
        root[i] = l1[i] = l0[i] = 0;
    root[1] = PTE(0x80000000UL, PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D);
    root[2] = PTE(0x80000000UL, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);
    root[3] = PTE(l1, PTE_V);
    root[4] = PTE(0x80000000UL, PTE_V | PTE_R | PTE_W);
    root[5] = PTE(0x80200000UL, PTE_V | PTE_R | PTE_W);
    root[6] = PTE(0x80000000UL, PTE_R | PTE_W | PTE_X);
    root[7] = PTE(0x0, PTE_V | PTE_R | PTE_W);
    root[8] = PTE(0x0, PTE_V);
    l1[0] = PTE(l0, PTE_V);
    l1[1] = PTE(PA_MEGA, PTE_V | PTE_R | PTE_W);
    l1[2] = PTE(PA_MEGA + 0x1000, PTE_V | PTE_R | PTE_W);
    for (int p = 0; p < NPAGES; p++) {
        l0[p] = PTE(pages[p], page_flags[p]);
        for (int i = 0; i < 512; i++)
            pages[p][i] = pattern(p) + (u64)i * 0x100;
    }
    l0[P_NONLEAF] = PTE(l0, PTE_V);            /* a pointer where a leaf must be */
    for (int p = 0; p < NPAGES; p++) {
        if (p == P_UCODE || p == P_XONLY || p == P_NOX || p == P_SCODE)
            for (int i = 0; i < 2; i++)
                pages[p][i] = ((u64 *)code_tmpl)[0];
    }
    /* addi a0, zero, 42 split over the page boundary, then c.jr ra */
    poke16((u64)pages[P_STRADDLE] + 4094, 0x0513);
    poke16((u64)pages[P_AFTER], 0x02a0);
    poke16((u64)pages[P_AFTER] + 2, 0x8082);
    volatile u64 *mega = (volatile u64 *)(PA_MEGA + 0x1238);
    *mega = 0x4d4547410000cafeUL;
    fence_i();
    sfence_vma();
}

static u64 *pte_of_page(int p)
{
    return &l0[p];
}

/* Print the outcome of the last run(): the S trap record(s) if the access
 * faulted, else the value it produced (a0 at the ecall) and the mode it came
 * from (mcause 8 or 9). */
static void outcome(const char *name)
{
    if (sarea.n) {
        dump(name, HIDE_M);
    } else if (mrec.valid && (mrec.cause == 8 || mrec.cause == 9)) {
        putp(name, "mcause", mrec.cause);
        putp(name, "value", mrec.a0);
    } else {
        dump(name, 0);
    }
}

static void print_pte(const char *name, u64 *pte, int faulted)
{
    if (!pte)
        return;
    if (faulted)
        putp(name, "pte_no_a", *pte & ~PTE_A);
    else
        putp(name, "pte", *pte);
}

static void lower(const char *name, void *fn, u64 a0, u64 a1, int mode,
                  u64 status, u64 *pte)
{
    u64 pc = (u64)fn;
    if (mode == PRV_U)
        pc = pc - 0x80000000UL + VA_USER_ALIAS;
    run((void *)pc, a0, a1, mode, status, 0);
    outcome(name);
    print_pte(name, pte, sarea.n != 0);
}

static void mprv(const char *name, void *fn, u64 va, int mpp, u64 bits, u64 *pte)
{
    long r = run(fn, va, MS_MPRV | bits, PRV_M, (u64)mpp << MS_MPP_SHIFT, 0);
    if (r)
        dump(name, 0);
    else
        putp(name, "value", probe_ret);
    print_pte(name, pte, r != 0);
}

static void leaf_4k(void)
{
    u64 off = 0x18;

    /* A then D, on a fresh RW page */
    setup();
    lower("rw_load", lo_load, va_page(P_RW) + off, 0, PRV_S, 0, pte_of_page(P_RW));
    lower("rw_store", lo_store, va_page(P_RW) + off, 0x5151, PRV_S, 0, pte_of_page(P_RW));
    lower("rw_reload", lo_load, va_page(P_RW) + off, 0, PRV_S, 0, pte_of_page(P_RW));
    put("rw_phys", pages[P_RW][off / 8]);
    /* a store first sets A and D together */
    setup();
    lower("rw_store_first", lo_store, va_page(P_RW) + off, 0x77, PRV_S, 0, pte_of_page(P_RW));
    setup();
    lower("rw_amoadd", lo_amoadd, va_page(P_RW) + off, 5, PRV_S, 0, pte_of_page(P_RW));
    put("rw_amoadd_phys", pages[P_RW][off / 8]);

    /* read-only: stores and AMOs fault, A/D untouched; then a load sets A */
    setup();
    lower("ro_store", lo_store, va_page(P_RO) + off, 1, PRV_S, MS_SIE, pte_of_page(P_RO));
    lower("ro_amoadd", lo_amoadd, va_page(P_RO) + off, 1, PRV_S, 0, pte_of_page(P_RO));
    lower("ro_load", lo_load, va_page(P_RO) + off, 0, PRV_S, 0, pte_of_page(P_RO));

    /* V = 0 */
    setup();
    lower("invalid_load", lo_load, va_page(P_INVALID), 0, PRV_S, 0, pte_of_page(P_INVALID));
    lower("invalid_store", lo_store, va_page(P_INVALID), 1, PRV_S, 0, pte_of_page(P_INVALID));
    lower("invalid_fetch", lo_fetch, va_page(P_INVALID), 0, PRV_S, 0, pte_of_page(P_INVALID));

    /* W without R is reserved: every access faults */
    setup();
    lower("wo_load", lo_load, va_page(P_WO) + off, 0, PRV_S, 0, pte_of_page(P_WO));
    lower("wo_store", lo_store, va_page(P_WO) + off, 1, PRV_S, 0, pte_of_page(P_WO));
    lower("wx_fetch", lo_fetch, va_page(P_WX), 0, PRV_S, 0, pte_of_page(P_WX));
    lower("wx_load_mxr", lo_load, va_page(P_WX), 0, PRV_S, MS_MXR, pte_of_page(P_WX));

    /* a pointer PTE at level 0, a reserved PTE bit */
    setup();
    lower("nonleaf_l0_load", lo_load, va_page(P_NONLEAF), 0, PRV_S, 0, pte_of_page(P_NONLEAF));
    lower("rsvd_bit_load", lo_load, va_page(P_RSVD), 0, PRV_S, 0, pte_of_page(P_RSVD));
    lower("rsvd_bit_store", lo_store, va_page(P_RSVD), 0, PRV_S, 0, pte_of_page(P_RSVD));
}

static void user_supervisor(void)
{
    u64 off = 0x20;

    /* U page from S: no SUM faults, SUM allows loads/stores, never fetches */
    setup();
    lower("s_upage_load", lo_load, va_page(P_UDATA) + off, 0, PRV_S, 0, pte_of_page(P_UDATA));
    lower("s_upage_load_sum", lo_load, va_page(P_UDATA) + off, 0, PRV_S, MS_SUM,
          pte_of_page(P_UDATA));
    lower("s_upage_store_sum", lo_store, va_page(P_UDATA) + off, 9, PRV_S, MS_SUM,
          pte_of_page(P_UDATA));
    lower("s_upage_store", lo_store, va_page(P_UDATA) + off, 9, PRV_S, 0, pte_of_page(P_UDATA));
    lower("s_ucode_fetch", lo_fetch, va_page(P_UCODE), 0, PRV_S, 0, pte_of_page(P_UCODE));
    lower("s_ucode_fetch_sum", lo_fetch, va_page(P_UCODE), 0, PRV_S, MS_SUM,
          pte_of_page(P_UCODE));

    /* U mode: its own pages work, S pages fault (SUM does not matter) */
    setup();
    lower("u_load", lo_load, va_page(P_UDATA) + off, 0, PRV_U, 0, pte_of_page(P_UDATA));
    lower("u_store", lo_store, va_page(P_UDATA) + off, 0x66, PRV_U, 0, pte_of_page(P_UDATA));
    lower("u_fetch", lo_fetch, va_page(P_UCODE), 0, PRV_U, 0, pte_of_page(P_UCODE));
    lower("u_spage_load", lo_load, va_page(P_RW) + off, 0, PRV_U, MS_SUM, pte_of_page(P_RW));
    lower("u_spage_store", lo_store, va_page(P_RW) + off, 0, PRV_U, 0, pte_of_page(P_RW));
    lower("u_scode_fetch", lo_fetch, va_page(P_SCODE), 0, PRV_U, 0, pte_of_page(P_SCODE));
    lower("u_ro_store", lo_store, va_page(P_URO) + off, 1, PRV_U, 0, pte_of_page(P_URO));
    lower("u_ro_load", lo_load, va_page(P_URO) + off, 0, PRV_U, 0, pte_of_page(P_URO));
    lower("u_dirty_store", lo_store, va_page(P_UDIRTY) + off, 3, PRV_U, 0, pte_of_page(P_UDIRTY));
    lower("u_identity_load", lo_load, (u64)&pages[P_RW][0], 0, PRV_U, 0, 0);
}

static void execute(void)
{
    /* execute-only and non-executable pages */
    setup();
    lower("nox_fetch", lo_fetch, va_page(P_NOX), 0, PRV_S, 0, pte_of_page(P_NOX));
    lower("nox_load", lo_load, va_page(P_NOX), 0, PRV_S, 0, pte_of_page(P_NOX));
    setup();
    lower("xonly_load", lo_load, va_page(P_XONLY), 0, PRV_S, 0, pte_of_page(P_XONLY));
    lower("xonly_store_mxr", lo_store, va_page(P_XONLY), 0, PRV_S, MS_MXR, pte_of_page(P_XONLY));
    lower("xonly_load_mxr", lo_load, va_page(P_XONLY), 0, PRV_S, MS_MXR, pte_of_page(P_XONLY));
    setup();
    lower("xonly_fetch", lo_fetch, va_page(P_XONLY), 0, PRV_S, 0, pte_of_page(P_XONLY));
    lower("scode_fetch", lo_fetch, va_page(P_SCODE), 0, PRV_S, 0, pte_of_page(P_SCODE));
    /* an instruction across a page boundary, second half not executable:
     * sepc = the instruction, stval = the address of the part that faulted */
    setup();
    lower("straddle_fetch", lo_fetch, va_page(P_STRADDLE) + 4094, 0, PRV_S, 0,
          pte_of_page(P_AFTER));
    put("straddle_fetch.first_pte_no_a", *pte_of_page(P_STRADDLE) & ~PTE_A);
    l0[P_AFTER] |= PTE_X;
    sfence_vma();
    lower("straddle_fetch_ok", lo_fetch, va_page(P_STRADDLE) + 4094, 0, PRV_S, 0,
          pte_of_page(P_AFTER));
}

static void big_pages(void)
{
    u64 gva = VA_GIGA + ((u64)&pages[P_RW][4] - 0x80000000UL);

    setup();
    lower("mega_load", lo_load, VA_MEGA + 0x1238, 0, PRV_S, 0, &l1[1]);
    lower("mega_store", lo_store, VA_MEGA + 0x1240, 0x6d, PRV_S, 0, &l1[1]);
    put("mega_phys", *(volatile u64 *)(PA_MEGA + 0x1240));
    lower("mega_misaligned_load", lo_load, VA_MEGA_MIS + 0x1238, 0, PRV_S, 0, &l1[2]);
    lower("mega_misaligned_fetch", lo_fetch, VA_MEGA_MIS, 0, PRV_S, 0, &l1[2]);
    lower("l1_invalid_load", lo_load, VA_L1_INVALID, 0, PRV_S, 0, &l1[3]);

    lower("giga_load", lo_load, gva, 0, PRV_S, 0, &root[4]);
    lower("giga_store", lo_store, gva, 0x6767, PRV_S, 0, &root[4]);
    put("giga_phys", pages[P_RW][4]);
    lower("giga_misaligned_load", lo_load, VA_GIGA_MIS, 0, PRV_S, 0, &root[5]);
    lower("root_invalid_load", lo_load, VA_ROOT_INVALID, 0, PRV_S, 0, &root[6]);
    lower("root_invalid_store", lo_store, VA_ROOT_INVALID + 8, 0, PRV_S, 0, &root[6]);

    /* physical addresses with nothing behind them: access faults */
    lower("giga_nothing_load", lo_load, VA_GIGA_NOTHING + 0x10, 0, PRV_S, 0, &root[7]);
    lower("giga_nothing_store", lo_store, VA_GIGA_NOTHING + 0x10, 0, PRV_S, 0, &root[7]);
    lower("walk_nothing_load", lo_load, VA_WALK_NOTHING + 0x10, 0, PRV_S, 0, &root[8]);

    /* bits 63..39 must equal bit 38 */
    lower("noncanonical_load", lo_load, 0x0000004000000000UL, 0, PRV_S, 0, 0);
    lower("noncanonical_store", lo_store, 0xffff000080000000UL, 0, PRV_S, 0, 0);
    lower("noncanonical_fetch", lo_fetch, 0x0000008080000000UL, 0, PRV_S, 0, 0);
}

static void mprv_cases(void)
{
    u64 off = 0x28;

    setup();
    mprv("mprv_s_load", m_mprv_load, va_page(P_RW) + off, PRV_S, 0, pte_of_page(P_RW));
    mprv("mprv_s_store", m_mprv_store, va_page(P_RW) + off, PRV_S, 0, pte_of_page(P_RW));
    mprv("mprv_s_upage", m_mprv_load, va_page(P_UDATA) + off, PRV_S, 0, pte_of_page(P_UDATA));
    mprv("mprv_s_upage_sum", m_mprv_load, va_page(P_UDATA) + off, PRV_S, MS_SUM,
         pte_of_page(P_UDATA));
    mprv("mprv_u_upage", m_mprv_load, va_page(P_UDATA) + off, PRV_U, 0, pte_of_page(P_UDATA));
    mprv("mprv_u_spage", m_mprv_load, va_page(P_RO) + off, PRV_U, 0, pte_of_page(P_RO));
    mprv("mprv_s_ro_store", m_mprv_store, va_page(P_RO) + off, PRV_S, 0, pte_of_page(P_RO));
    mprv("mprv_s_xonly", m_mprv_load, va_page(P_XONLY), PRV_S, 0, pte_of_page(P_XONLY));
    mprv("mprv_s_xonly_mxr", m_mprv_load, va_page(P_XONLY), PRV_S, MS_MXR,
         pte_of_page(P_XONLY));
    mprv("mprv_s_invalid", m_mprv_load, va_page(P_INVALID), PRV_S, 0, pte_of_page(P_INVALID));
    /* MPP = M: no translation, the VA is a physical address */
    mprv("mprv_m_phys", m_mprv_load, (u64)&pages[P_RO][5], PRV_M, 0, 0);
}

int main(void)
{
    printf("compare: paging\n");
    csr_write(medeleg, (1UL << 1) | (1UL << 5) | (1UL << 7) |
              (1UL << 12) | (1UL << 13) | (1UL << 15));
    csr_write(mideleg, 0);
    setup();
    csr_write(satp, (8UL << 60) | ((u64)root >> 12));
    put("satp", csr_read(satp));
    sfence_vma();
    leaf_4k();
    user_supervisor();
    execute();
    big_pages();
    mprv_cases();
    csr_write(satp, 0);
    sfence_vma();
    printf("compare: end\n");
    return 0;
}
