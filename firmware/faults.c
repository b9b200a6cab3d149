/* faults.elf: S-mode under Sv39 with an S-mode trap handler (stvec;
 * medeleg delegates the page faults).  100,000 times: store to the
 * unmapped page SV39_WINDOW; the store page fault handler maps it onto a
 * backing page (writes the PTE, `sfence.vma`) and returns to retry the
 * store; then the loop checks the value landed, that the hart set the
 * PTE's A and D bits, and unmaps the page again
 * (PTE = 0, `sfence.vma`).  Prints "faults: 100000 page faults handled"
 * and powers off; it measures page-fault round trips. */
#include "fw.h"

#define FAULTS  100000

static uint64_t backing[512] __attribute__((aligned(4096)));
static volatile uint64_t *window_pte;
static volatile unsigned long n_faults;

uintptr_t handle_strap(uintptr_t scause, uintptr_t sepc, uintptr_t stval,
                       uintptr_t *frame)
{
    (void)frame;
    if (scause == CAUSE_STORE_PAGE_FAULT && stval == SV39_WINDOW
        && !(*window_pte & PTE_V)) {
        *window_pte = PTE_LEAF(backing, PTE_R | PTE_W);
        sfence_vma(SV39_WINDOW);
        n_faults++;
        return sepc;                    /* retry the store */
    }
    printf("faults: unexpected S-mode trap scause=0x%016lx sepc=0x%016lx stval=0x%016lx\n",
           scause, sepc, stval);
    s_exit(1);
}

static int s_faults(void)
{
    volatile uint64_t *window = (volatile uint64_t *)SV39_WINDOW;

    csr_write(stvec, (uintptr_t)s_trap_entry);
    for (unsigned long i = 0; i < FAULTS; i++) {
        *window = i;                    /* page faults, gets mapped */
        if (n_faults != i + 1 || window[0] != i
            || ((volatile uint64_t *)backing)[0] != i
            || *window_pte != (PTE_LEAF(backing, PTE_R | PTE_W) | PTE_A | PTE_D)) {
            printf("faults: FAILED at iteration %lu (faults=%lu, pte=0x%016lx)\n",
                   i, n_faults, *window_pte);
            return 1;
        }
        *window_pte = 0;                /* unmap again */
        sfence_vma(SV39_WINDOW);
    }
    printf("faults: %lu page faults handled\n", n_faults);
    return 0;
}

int main(void)
{
    sv39_setup();
    window_pte = sv39_pte(SV39_WINDOW, 0);      /* tables now, leaf invalid */
    csr_write(medeleg, (1UL << CAUSE_FETCH_PAGE_FAULT)
                       | (1UL << CAUSE_LOAD_PAGE_FAULT)
                       | (1UL << CAUSE_STORE_PAGE_FAULT));
    sv39_run_smode(s_faults);
}
