/* canary.elf: keeps a canary in its RAM for the isolation test of several VMs on one
 * host (probe.elf, in another VM, looks for it): 1 MiB at RAM + 16 MiB filled with
 * CANARY ^ address, checked again and again; prints "canary: ready" once written and
 * fails if it ever changes.  Runs until it is stopped. */
#include "fw.h"

#define CANARY  0x6876656d75cafe42ULL
#define START   (RAM_BASE + (16UL << 20))
#define END     (START + (1UL << 20))

int main(void)
{
    uintptr_t a;
    unsigned long rounds;

    for (a = START; a < END; a += 8)
        *(volatile uint64_t *)a = CANARY ^ a;
    printf("canary: ready\n");
    for (rounds = 0;; rounds++) {
        for (a = START; a < END; a += 8)
            if (*(volatile uint64_t *)a != (CANARY ^ a)) {
                printf("canary: CORRUPTED at 0x%lx after %lu rounds\n", (unsigned long)a,
                       rounds);
                return 1;
            }
    }
}
