/* What the virtio-blk guest images add to the shared library (../lib.c, which
 * they link with ../crt0.S): memcmp, a checked reboot, fail(), and a trap
 * handler (overriding lib.c's weak one) that lets probe_read32/64 and
 * probe_write64 survive an access to an address with nothing behind it. */
#include "lib.h"

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;

    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p < *q ? -1 : 1;
    return 0;
}

static void finisher(uint32_t v)
{
    fence_all();
    *(volatile uint32_t *)FINISHER_BASE = v;
    fence_all();
}

void fw_reboot(void)
{
    uint64_t t0;

    finisher(FINISHER_RESET);
    /* QEMU handles the reset request asynchronously: give it 2 s of mtime. */
    t0 = mtime();
    while (mtime() - t0 < 2 * MTIME_HZ)
        ;
    fail("finisher reset request (0x7777) did not reset the board");
}

void fail(const char *fmt, ...)
{
    va_list ap;

    printf("%s: FAIL: ", fw_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    uart_putc('\n');
    fw_exit(1);
}

/* ---- traps ---- */

#define CAUSE_LOAD_ACCESS   5
#define CAUSE_STORE_ACCESS  7

static volatile int probe_active, probe_faulted;

int probe_read32(uintptr_t addr, uint32_t *val)
{
    uint32_t v;

    probe_faulted = 0;
    probe_active = 1;
    barrier();
    v = *(volatile uint32_t *)addr;
    barrier();
    probe_active = 0;
    if (probe_faulted)
        return 0;
    *val = v;
    return 1;
}

int probe_read64(uintptr_t addr, uint64_t *val)
{
    uint64_t v;

    probe_faulted = 0;
    probe_active = 1;
    barrier();
    v = *(volatile uint64_t *)addr;
    barrier();
    probe_active = 0;
    if (probe_faulted)
        return 0;
    *val = v;
    return 1;
}

int probe_write64(uintptr_t addr, uint64_t val)
{
    probe_faulted = 0;
    probe_active = 1;
    barrier();
    *(volatile uint64_t *)addr = val;
    barrier();
    probe_active = 0;
    return !probe_faulted;
}

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval,
                      uintptr_t *frame)
{
    (void)frame;
    if (probe_active && (mcause == CAUSE_LOAD_ACCESS || mcause == CAUSE_STORE_ACCESS)) {
        /* Skip the faulting access: 2 bytes if compressed, else 4. */
        uint16_t insn = *(volatile uint16_t *)mepc;

        probe_faulted = 1;
        probe_active = 0;
        return mepc + ((insn & 3) == 3 ? 4 : 2);
    }
    fail("unexpected trap mcause=0x%lx mepc=0x%lx mtval=0x%lx",
         mcause, mepc, mtval);
}
