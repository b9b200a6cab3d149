/* smp-bench: every hart runs bench's workload (../benchwork.c) on its own data.
 *
 * benchwork.c keeps its buffers in static variables, so the Makefile links
 * eight copies of it (bench_workload_0 .. _7, each with its own statics);
 * hart h runs copy h, so up to 8 harts work side by side with nothing
 * shared but the code's page-table-free RAM and the UART.  Each hart reads
 * minstret around its workload; hart 0 waits for all (in the WFI barrier) and
 * prints every hart's checksum and instret.  bench/test_smp_speed.py times it
 * with 4 harts against 1: the aggregate guest MIPS of one VM's harts. */
#include "smp.h"

#define COPIES 8
#define BENCH_CHECKSUM 0xa47dc73cf0f33c42UL     /* what bench.elf prints */

int bench_workload_0(uint64_t *), bench_workload_1(uint64_t *), bench_workload_2(uint64_t *),
    bench_workload_3(uint64_t *), bench_workload_4(uint64_t *), bench_workload_5(uint64_t *),
    bench_workload_6(uint64_t *), bench_workload_7(uint64_t *);
static int (*const workload[COPIES])(uint64_t *) = {
    bench_workload_0, bench_workload_1, bench_workload_2, bench_workload_3,
    bench_workload_4, bench_workload_5, bench_workload_6, bench_workload_7,
};

static uint64_t sums[COPIES], instret[COPIES];
static int rcs[COPIES];

int main(unsigned long h)
{
    if (h < COPIES) {
        uint64_t start = csr_read(minstret);
        rcs[h] = workload[h](&sums[h]);
        instret[h] = csr_read(minstret) - start;
    }
    barrier();
    if (h != 0)
        return 0;

    int fails = 0;
    unsigned n = nharts < COPIES ? nharts : COPIES;
    printf("smp-bench: %u harts ran bench's workload side by side\n", n);
    for (unsigned k = 0; k < n; k++) {
        int ok = rcs[k] == 0 && sums[k] == BENCH_CHECKSUM;
        printf("smp-bench: hart %u checksum=0x%016lx instret=%lu %s\n", k, sums[k],
               instret[k], ok ? "PASS" : "FAIL");
        fails += !ok;
    }
    printf("smp-bench: %s\n", fails ? "FAIL" : "PASS");
    return fails ? 1 : 0;
}
