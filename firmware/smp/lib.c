/* Support for the SMP guests: hart bring-up, the device tree's hart count, a
 * barrier that sleeps in WFI, and SBI calls (see smp.h). */
#include "smp.h"

unsigned nharts;
/* in .data, not .bss: the other harts read it while hart 0 zeroes .bss */
static volatile uint32_t go __attribute__((section(".data")));

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int name_is(const char *name, const char *want, int prefix)
{
    while (*want)
        if (*name++ != *want++)
            return 0;
    return prefix || *name == '\0';
}

unsigned fdt_cpus(const void *fdt)
{
    const uint8_t *f = fdt, *p;
    unsigned n = 0;
    int depth = 0, in_cpus = 0;

    if (f == NULL || be32(f) != 0xd00dfeed)
        return 1;
    p = f + be32(f + 8);                        /* off_dt_struct */
    for (;;) {
        uint32_t token = be32(p);
        p += 4;
        if (token == 1) {                       /* FDT_BEGIN_NODE, name, padding */
            const char *name = (const char *)p;
            unsigned len = 0;
            while (name[len])
                len++;
            p += (len + 4) & ~3u;
            depth++;
            if (depth == 2 && name_is(name, "cpus", 0))
                in_cpus = 1;
            else if (depth == 3 && in_cpus && name_is(name, "cpu@", 1))
                n++;
        } else if (token == 2) {                /* FDT_END_NODE */
            if (depth == 2)
                in_cpus = 0;
            depth--;
        } else if (token == 3) {                /* FDT_PROP: len, nameoff, value */
            p += 8 + ((be32(p) + 3) & ~3u);
        } else if (token != 4) {                /* FDT_NOP; FDT_END or garbage: done */
            break;
        }
    }
    return n ? n : 1;
}

/* From start.S on every hart, with its own stack (hart 0 has zeroed .bss). */
void smp_boot(unsigned long hartid, const void *dtb)
{
    if (hartid == 0) {
        nharts = fdt_cpus(dtb);
        if (nharts > MAX_HARTS)
            nharts = MAX_HARTS;
        __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    } else {
        while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
            ;
    }
    if (hartid < nharts) {
        int code = main(hartid);
        if (hartid == 0)
            fw_exit(code);
    }
    for (;;)
        __asm__ volatile ("wfi");
}

static volatile uint32_t bar_count, bar_gen, bar_cleared;

/* The last hart to arrive bumps bar_gen and raises every other hart's msip;
 * each of those clears its msip and counts itself in bar_cleared.  Nobody
 * leaves before every msip of this barrier is cleared: an IPI sent right after
 * the barrier cannot merge with the barrier's own and be lost. */
void barrier(void)
{
    unsigned long me = csr_read(mhartid);
    uint32_t gen = __atomic_load_n(&bar_gen, __ATOMIC_ACQUIRE);
    unsigned long mstatus = csr_read(mstatus), mie = csr_read(mie);

    csr_clear(mstatus, MSTATUS_MIE);
    if (__atomic_add_fetch(&bar_count, 1, __ATOMIC_ACQ_REL) == nharts) {
        __atomic_store_n(&bar_count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar_gen, gen + 1, __ATOMIC_RELEASE);
        __asm__ volatile ("fence rw, rw" ::: "memory");
        for (unsigned h = 0; h < nharts; h++)
            if (h != me)
                CLINT_MSIP_OF(h) = 1;
    } else {
        csr_set(mie, MIE_MSIE);
        do {                        /* an msip before the new generation is not ours */
            while (!(csr_read(mip) & MIP_MSIP))
                __asm__ volatile ("wfi");
            CLINT_MSIP_OF(me) = 0;
            while (csr_read(mip) & MIP_MSIP)
                ;
            __asm__ volatile ("fence rw, rw" ::: "memory");
        } while (__atomic_load_n(&bar_gen, __ATOMIC_ACQUIRE) == gen);
        __atomic_add_fetch(&bar_cleared, 1, __ATOMIC_ACQ_REL);
    }
    while (__atomic_load_n(&bar_cleared, __ATOMIC_ACQUIRE) != (gen + 1) * (nharts - 1))
        ;
    csr_write(mie, mie);
    csr_write(mstatus, mstatus);
}

struct sbiret sbi_call(long eid, long fid, long a0, long a1, long a2, long a3, long a4)
{
    register long r0 __asm__("a0") = a0;
    register long r1 __asm__("a1") = a1;
    register long r2 __asm__("a2") = a2;
    register long r3 __asm__("a3") = a3;
    register long r4 __asm__("a4") = a4;
    register long r6 __asm__("a6") = fid;
    register long r7 __asm__("a7") = eid;
    __asm__ volatile ("ecall" : "+r"(r0), "+r"(r1)
                      : "r"(r2), "r"(r3), "r"(r4), "r"(r6), "r"(r7) : "memory");
    return (struct sbiret){ r0, r1 };
}
