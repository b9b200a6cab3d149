/* hello.elf: M-mode smoke test.  Prints a banner and some CSRs, then
 * exercises the trap path with an ecall, an illegal instruction and a
 * machine timer interrupt.  Powers off with 0x5555 when everything
 * worked; any unexpected trap or mismatch fails with exit code 1. */
#include "fw.h"

static volatile int n_ecall, n_illegal, n_timer;

/* Length of the instruction at pc: 4 if the low two bits are 11, else 2. */
static unsigned insn_len(uintptr_t pc)
{
    return (*(volatile uint16_t *)pc & 3) == 3 ? 4 : 2;
}

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    switch (mcause) {
    case CAUSE_ECALL_M:
        printf("trap: ecall from M-mode (mcause=%lu)\n", mcause);
        frame[10] *= 6;                 /* "syscall" result in a0 */
        n_ecall++;
        return mepc + 4;
    case CAUSE_ILLEGAL_INSN:
        printf("trap: illegal instruction (mcause=%lu, mtval=0x%lx)\n",
               mcause, mtval);
        n_illegal++;
        return mepc + insn_len(mepc);
    case IRQ_M_TIMER:
        printf("trap: machine timer interrupt (mcause=0x%016lx)\n", mcause);
        CLINT_MTIMECMP = ~0UL;          /* disarm: never fires again */
        n_timer++;
        return mepc;                    /* interrupts resume at mepc */
    }
    trap_unexpected(mcause, mepc, mtval);
}

static int check(int ok, const char *what)
{
    if (!ok)
        printf("hello: FAILED: %s\n", what);
    return ok ? 0 : 1;
}

int main(unsigned long hartid, unsigned long dtb)
{
    int fails = 0;

    printf("hvemu hello: RV64 guest kernel, hart %lu\n", hartid);
    printf("hello: dtb=0x%lx\n", dtb);

    /* misa: MXL in the top two bits, one bit per extension letter. */
    unsigned long misa = csr_read(misa);
    char ext[27];
    int n = 0;
    for (int i = 0; i < 26; i++)
        if (misa & (1UL << i))
            ext[n++] = (char)('A' + i);
    ext[n] = '\0';
    printf("csr: misa=0x%016lx (MXL=%lu, %s)\n", misa, misa >> 62, ext);
    printf("csr: mvendorid=0x%lx\n", csr_read(mvendorid));
    printf("csr: marchid=0x%lx\n", csr_read(marchid));
    printf("csr: mimpid=0x%lx\n", csr_read(mimpid));
    printf("csr: mhartid=%lu\n", csr_read(mhartid));

    const unsigned long pattern = 0x0123456789abcdefUL;
    csr_write(mscratch, pattern);
    unsigned long scratch = csr_read(mscratch);
    printf("csr: mscratch=0x%016lx (wrote 0x%016lx)\n", scratch, pattern);
    fails += check(scratch == pattern, "mscratch readback");

    /* 1. ecall: a0 = 7 goes in, the handler multiplies it by 6. */
    register unsigned long a0 __asm__("a0") = 7;
    __asm__ volatile ("ecall" : "+r"(a0) :: "memory");
    fails += check(n_ecall == 1 && a0 == 42, "ecall");

    /* 2. Illegal instruction: a 32-bit word in the custom-0 opcode space
     *    (0x0000000b), which RV64IMAC does not implement. */
    __asm__ volatile (".4byte 0x0000000b" ::: "memory");
    fails += check(n_illegal == 1, "illegal instruction");

    /* 3. Machine timer interrupt, 1 ms (10000 ticks at 10 MHz) from now. */
    CLINT_MTIMECMP = CLINT_MTIME + 10000;
    csr_set(mie, MIE_MTIE);
    csr_set(mstatus, MSTATUS_MIE);
    while (n_timer == 0)
        __asm__ volatile ("wfi");
    csr_clear(mstatus, MSTATUS_MIE);
    csr_clear(mie, MIE_MTIE);
    fails += check(n_timer == 1, "timer interrupt");

    if (fails)
        return 1;
    printf("hello: all tests passed\n");
    return 0;
}
