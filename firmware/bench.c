/* bench.elf: deterministic integer workload for benchmarking the emulator
 * (~300 million instructions, see benchwork.c), run in M-mode without
 * paging.  minstret is read right after the workload, before any UART
 * output, so the printed count does not depend on how the UART is
 * modelled. */
#include "fw.h"

int main(void)
{
    uint64_t checksum;
    int rc = bench_workload(&checksum);
    unsigned long instret = csr_read(minstret);

    if (rc) {
        printf("bench: self-check %d FAILED\n", rc);
        return rc;
    }
    printf("bench: checksum=0x%016lx\n", checksum);
    printf("bench: instret=%lu\n", instret);
    return 0;
}
