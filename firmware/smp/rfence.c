/* smp-rfence: remote fences through the SBI, in S-mode under Sv39.
 *
 * An S-mode kernel (booted by an SBI: hvemu --kernel, or OpenSBI): the boot
 * hart builds one Sv39 page table for all harts and starts the others with SBI
 * HSM hart_start.  Every hart reads the window page at 0xc000_0000, so its TLB
 * holds the translation.  Then, four times, the boot hart points the window's
 * PTE at another physical page (each page holds its own marker), fences
 * locally and asks the SBI to fence the other harts -- remote sfence.vma of
 * the page, the same by ASID, a remote sfence.vma of everything -- and the
 * other harts, which run no sfence.vma of their own, must read the new page's
 * marker through the window.  Last, the boot hart rewrites a function every
 * hart has run, runs fence.i and a remote fence.i, and the others must run
 * the new code.  The harts meet in a barrier that sleeps in WFI and is woken
 * by SBI IPIs (sip.SSIP).  Exit through SBI SRST (failure: reason 1). */
#include "smp.h"

#define WINDOW      0xc0000000UL
#define SATP_MODE   (8UL << 60)
#define SSTATUS_SIE (1UL << 1)
#define HSM_STARTED 0

static uint64_t root[512] __attribute__((aligned(4096)));
static uint64_t l1[512] __attribute__((aligned(4096)));
static uint64_t l0[512] __attribute__((aligned(4096)));
static uint64_t pages[5][512] __attribute__((aligned(4096)));
/* li a0, 1; ret -- rewritten to li a0, 2 by the boot hart */
static uint32_t code[2] __attribute__((aligned(64), section(".data"))) = { 0x00100513, 0x00008067 };

static unsigned long boot_hart;
static volatile uint32_t started, bar_count, bar_gen, bar_cleared;
static volatile uint64_t seen[6][MAX_HARTS];

static void sbi_shutdown(int failure)
{
    sbi_call(SBI_EXT_SRST, 0, 0, failure ? 1 : 0, 0, 0, 0);
    for (;;)
        __asm__ volatile ("wfi");
}

static unsigned long others_mask(unsigned long me)
{
    unsigned long all = nharts >= 64 ? ~0UL : (1UL << nharts) - 1;
    return all & ~(1UL << me);
}

/* All harts meet; the last to arrive wakes the others with one SBI IPI. */
static void sbarrier(unsigned long me)
{
    uint32_t gen = __atomic_load_n(&bar_gen, __ATOMIC_ACQUIRE);

    if (__atomic_add_fetch(&bar_count, 1, __ATOMIC_ACQ_REL) == nharts) {
        __atomic_store_n(&bar_count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar_gen, gen + 1, __ATOMIC_RELEASE);
        if (nharts > 1)
            sbi_call(SBI_EXT_IPI, 0, others_mask(me), 0, 0, 0, 0);
    } else {
        csr_set(sie, SIE_SSIE);
        do {
            while (!(csr_read(sip) & MIP_SSIP))
                __asm__ volatile ("wfi");
            csr_clear(sip, MIP_SSIP);
            __asm__ volatile ("fence rw, rw" ::: "memory");
        } while (__atomic_load_n(&bar_gen, __ATOMIC_ACQUIRE) == gen);
        csr_clear(sie, SIE_SSIE);
        __atomic_add_fetch(&bar_cleared, 1, __ATOMIC_ACQ_REL);
    }
    while (__atomic_load_n(&bar_cleared, __ATOMIC_ACQUIRE) != (gen + 1) * (nharts - 1))
        ;
}

static uint64_t window_read(void)
{
    return *(volatile uint64_t *)WINDOW;
}

static void map_window(int page)
{
    l0[0] = PTE_LEAF(pages[page], PTE_R | PTE_W | PTE_A | PTE_D);
    __asm__ volatile ("fence rw, rw" ::: "memory");
    sfence_vma(WINDOW);
}

static void paging_on(void)
{
    csr_write(satp, SATP_MODE | ((uintptr_t)root >> 12));
    __asm__ volatile ("sfence.vma zero, zero" ::: "memory");
}

static int run_code(void)
{
    return ((int (*)(void))(uintptr_t)code)();
}

static int count_others(int phase, uint64_t want)
{
    int n = 0;
    for (unsigned h = 0; h < nharts; h++)
        if (h != boot_hart && seen[phase][h] == want)
            n++;
    return n;
}

/* Every hart, the boot hart too, once paging is on. */
int main(unsigned long me)
{
    int boot = me == boot_hart;
    static const struct { const char *what; long fid; } fences[4] = {
        { "remote sfence.vma of the page", 1 },
        { "remote sfence.vma of the page by ASID 0", 2 },
        { "remote sfence.vma of everything", 1 },
        { "remote sfence.vma of a range of 2 pages", 1 },
    };

    __atomic_add_fetch(&started, 1, __ATOMIC_ACQ_REL);
    paging_on();
    seen[0][me] = window_read();                /* the TLB now maps the window */
    run_code();                                 /* and the code has run */
    sbarrier(me);
    for (int f = 0; f < 4; f++) {
        if (boot) {
            map_window(f + 1);
            unsigned long start = f == 2 ? 0 : WINDOW - (f == 3 ? 4096 : 0);
            unsigned long size = f == 2 ? ~0UL : f == 3 ? 8192 : 4096;
            if (nharts > 1)
                sbi_call(SBI_EXT_RFENCE, fences[f].fid, others_mask(me), 0, start, size, 0);
        }
        sbarrier(me);
        seen[f + 1][me] = window_read();
        sbarrier(me);
    }
    if (boot) {
        code[0] = 0x00200513;                   /* li a0, 2 */
        __asm__ volatile ("fence.i" ::: "memory");
        if (nharts > 1)
            sbi_call(SBI_EXT_RFENCE, 0, others_mask(me), 0, 0, 0, 0);
    }
    sbarrier(me);
    seen[5][me] = run_code();
    sbarrier(me);
    if (!boot)
        for (;;)
            __asm__ volatile ("wfi");

    int fails = 0, others = nharts - 1, n;
    n = 0;
    for (unsigned h = 0; h < nharts; h++) {
        struct sbiret st = sbi_call(SBI_EXT_HSM, 2, h, 0, 0, 0, 0);
        n += st.error == 0 && st.value == HSM_STARTED;
    }
    printf("smp-rfence: %u harts, %u started (SBI HSM), %u in HSM state STARTED %s\n",
           nharts, started, n, started == nharts && n == (int)nharts ? "PASS" : "FAIL");
    fails += started != nharts || n != (int)nharts;
    n = count_others(0, 0xa0);
    printf("smp-rfence: before: %d of %d other harts read page 0 %s\n", n, others,
           n == others ? "PASS" : "FAIL");
    fails += n != others;
    for (int f = 0; f < 4; f++) {
        n = count_others(f + 1, 0xa1 + f);
        printf("smp-rfence: %s: %d of %d other harts read the new page %s\n",
               fences[f].what, n, others, n == others ? "PASS" : "FAIL");
        fails += n != others;
    }
    n = count_others(5, 2);
    printf("smp-rfence: remote fence.i: %d of %d other harts run the new code %s\n",
           n, others, n == others ? "PASS" : "FAIL");
    fails += n != others;
    if (nharts < 2)
        printf("smp-rfence: needs 2 harts\n");
    printf("smp-rfence: %s\n", fails || nharts < 2 ? "FAIL" : "PASS");
    sbi_shutdown(fails || nharts < 2);
    return 0;
}

void secondary_main(unsigned long hartid)
{
    main(hartid);
    for (;;)
        __asm__ volatile ("wfi");
}

void boot_main(unsigned long hartid, const void *dtb)
{
    boot_hart = hartid;
    nharts = fdt_cpus(dtb);
    if (nharts > MAX_HARTS)
        nharts = MAX_HARTS;
    for (int p = 0; p < 5; p++)
        pages[p][0] = 0xa0 + p;
    root[0] = PTE_LEAF(0, PTE_R | PTE_W | PTE_A | PTE_D);                 /* devices */
    root[2] = PTE_LEAF(RAM_BASE, PTE_R | PTE_W | PTE_X | PTE_A | PTE_D);  /* RAM */
    root[3] = PTE_LEAF(l1, 0);                  /* V only: the window's next level */
    l1[0] = PTE_LEAF(l0, 0);
    l0[0] = PTE_LEAF(pages[0], PTE_R | PTE_W | PTE_A | PTE_D);
    __asm__ volatile ("fence rw, rw" ::: "memory");
    for (unsigned h = 0; h < nharts; h++) {
        extern char secondary_start[];
        if (h == hartid)
            continue;
        struct sbiret r = sbi_call(SBI_EXT_HSM, 0, h, (uintptr_t)secondary_start, 0, 0, 0);
        if (r.error) {
            printf("smp-rfence: hart_start(%u) failed: %ld\n", h, r.error);
            sbi_shutdown(1);
        }
    }
    main(hartid);
}
