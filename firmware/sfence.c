/* sfence.elf: S-mode under Sv39.  200,000 times: point the PTE of one
 * virtual page (SV39_WINDOW) at the other of two physical pages, run
 * `sfence.vma` for that address, and read a word through the window,
 * which must come from the page just mapped; the hart must have set the
 * PTE's A bit (and not D) on the way.  Prints
 * "sfence: 200000 remaps ok" and powers off; it measures sfence.vma
 * round trips (and the page walks after them). */
#include "fw.h"

#define REMAPS  200000

static uint64_t page[2][512] __attribute__((aligned(4096)));
static volatile uint64_t *window_pte;

static int s_sfence(void)
{
    volatile uint64_t *window = (volatile uint64_t *)SV39_WINDOW;

    for (unsigned i = 0; i < REMAPS; i++) {
        unsigned which = i & 1, word = i & 511;
        uint64_t pte = PTE_LEAF(page[which], PTE_R | PTE_W);
        *window_pte = pte;
        sfence_vma(SV39_WINDOW);
        uint64_t got = window[word];
        if (got != page[which][word]) {
            printf("sfence: FAILED at remap %u: read 0x%016lx, want 0x%016lx\n",
                   i, got, page[which][word]);
            return 1;
        }
        if (*window_pte != (pte | PTE_A)) {
            printf("sfence: FAILED at remap %u: pte=0x%016lx, want 0x%016lx\n",
                   i, *window_pte, pte | PTE_A);
            return 1;
        }
    }
    printf("sfence: %u remaps ok\n", REMAPS);
    return 0;
}

int main(void)
{
    for (unsigned k = 0; k < 512; k++) {
        page[0][k] = 0xaaaa000000000000UL | k;
        page[1][k] = 0xbbbb000000000000UL | k;
    }
    sv39_setup();
    window_pte = sv39_pte(SV39_WINDOW, 0);      /* tables now, leaf invalid */
    sv39_run_smode(s_sfence);
}
