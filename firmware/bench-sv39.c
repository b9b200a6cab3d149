/* bench-sv39.elf: bench's workload (benchwork.c, the same checksum as
 * bench.elf) run in S-mode under Sv39 paging.  M-mode builds the tables
 * (4 KiB pages over the image's code and data, A/D bits clear so the
 * hart sets them), sets satp and mcounteren.IR, and mret's to S-mode.
 * S-mode reads `instret` right after the workload, checks that the hart set
 * the A/D bits of the code and stack pages, prints the two result lines
 * through the mapped UART and ecalls back to M-mode to power off. */
#include "fw.h"

static int s_bench(void)
{
    uint64_t checksum;
    int rc = bench_workload(&checksum);
    unsigned long instret = csr_read(instret);

    if (rc) {
        printf("bench: self-check %d FAILED\n", rc);
        return rc;
    }
    /* The hart set A (and D where written) in the 4 KiB leaf PTEs. */
    uint64_t code = *sv39_pte((uintptr_t)s_bench, 0);
    uint64_t stack = *sv39_pte((uintptr_t)&checksum, 0);
    if (!(code & PTE_A) || (stack & (PTE_A | PTE_D)) != (PTE_A | PTE_D)) {
        printf("bench: A/D bits not set: code pte=0x%016lx stack pte=0x%016lx\n",
               code, stack);
        return 4;
    }
    printf("bench: checksum=0x%016lx\n", checksum);
    printf("bench: instret=%lu\n", instret);
    return 0;
}

int main(void)
{
    sv39_setup();
    csr_write(mcounteren, COUNTEREN_IR);
    sv39_run_smode(s_bench);
}
