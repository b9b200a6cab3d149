/* Sv39 support for the S-mode images (bench-sv39, sfence, faults): page
 * tables built in M-mode, the drop to S-mode with mret, and the way back
 * (an ecall from S-mode, which the M-mode handler turns into power-off).
 *
 * Layout of the identity map (all PTEs RWX or RW, A = D = 0, no U, no G):
 *   RAM_BASE .. end of image (rounded up to 2 MiB)   4 KiB pages
 *   the rest of RAM (128 MiB in all)                 2 MiB pages
 *   UART page (0x1000_0000), finisher page (0x10_0000)  4 KiB pages, RW
 * Tables come from a small pool in .bss, so they are mapped by 4 KiB
 * pages themselves and S-mode can edit PTEs through the identity map. */
#include "fw.h"

#define PT_POOL 10      /* root + RAM L1 + image L0 + 3 MMIO + 2 window + spare */

extern char __stack_top[];      /* end of the image (link.ld) */

static uint64_t pt_pool[PT_POOL][512] __attribute__((aligned(4096)));
static unsigned pt_used;

static uint64_t *pt_alloc(void)
{
    if (pt_used == PT_POOL) {
        printf("sv39: page-table pool exhausted\n");
        fw_exit(1);
    }
    return pt_pool[pt_used++];          /* .bss: already zero */
}

static uint64_t *pt_root(void)
{
    if (!pt_used)
        pt_alloc();
    return pt_pool[0];
}

uint64_t *sv39_pte(uintptr_t va, int level)
{
    uint64_t *table = pt_root();

    for (int l = 2; l > level; l--) {
        uint64_t *pte = &table[(va >> (12 + 9 * l)) & 511];
        if (!(*pte & PTE_V))
            *pte = (((uintptr_t)pt_alloc() >> 12) << 10) | PTE_V;
        table = (uint64_t *)((*pte >> 10) << 12);
    }
    return &table[(va >> (12 + 9 * level)) & 511];
}

void sv39_setup(void)
{
    uintptr_t end = ((uintptr_t)__stack_top + MEGAPAGE_SIZE - 1)
                    & ~(MEGAPAGE_SIZE - 1);
    uintptr_t pa;

    /* With PMP implemented but no entry matching, S-mode accesses fail:
     * one NAPOT entry over the whole address space, RWX. */
    csr_write(pmpaddr0, -1UL >> 10);
    csr_write(pmpcfg0, 0x1f);

    for (pa = RAM_BASE; pa < end; pa += PAGE_SIZE)
        *sv39_pte(pa, 0) = PTE_LEAF(pa, PTE_R | PTE_W | PTE_X);
    for (; pa < RAM_BASE + RAM_SIZE; pa += MEGAPAGE_SIZE)
        *sv39_pte(pa, 1) = PTE_LEAF(pa, PTE_R | PTE_W | PTE_X);
    *sv39_pte(UART_BASE, 0) = PTE_LEAF(UART_BASE, PTE_R | PTE_W);
    *sv39_pte(FINISHER_BASE, 0) = PTE_LEAF(FINISHER_BASE, PTE_R | PTE_W);

    csr_write(satp, SATP_SV39 | ((uintptr_t)pt_root() >> 12));
    __asm__ volatile ("sfence.vma" ::: "memory");
}

static int (*s_main)(void);

__attribute__((noreturn)) static void s_start(void)
{
    s_exit(s_main());
}

void sv39_run_smode(int (*fn)(void))
{
    s_main = fn;
    csr_clear(mstatus, MSTATUS_MPP);
    csr_set(mstatus, MSTATUS_MPP_S);
    csr_write(mepc, (uintptr_t)s_start);
    __asm__ volatile ("mret" ::: "memory");
    __builtin_unreachable();
}

void s_exit(int code)
{
    register long a0 __asm__("a0") = code;

    for (;;)
        __asm__ volatile ("ecall" :: "r"(a0) : "memory");
}

/* M-mode: an ecall from S-mode powers off with a0 as the exit code;
 * anything else is unexpected. */
uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    if (mcause == CAUSE_ECALL_S)
        fw_exit((int)frame[10]);
    trap_unexpected(mcause, mepc, mtval);
}

__attribute__((weak))
uintptr_t handle_strap(uintptr_t scause, uintptr_t sepc, uintptr_t stval,
                       uintptr_t *frame)
{
    (void)frame;
    printf("trap: unexpected S-mode trap scause=0x%016lx sepc=0x%016lx stval=0x%016lx\n",
           scause, sepc, stval);
    s_exit(1);
}
