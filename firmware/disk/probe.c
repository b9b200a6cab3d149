/* probe.elf: a hostile guest, for the isolation test of several VMs on one host.
 *
 * Another VM of the same hypervisor (canary.elf) fills part of its RAM with
 * CANARY ^ address.  This guest looks for that pattern everywhere it can reach:
 * every word of its own RAM, one word of every 64 KiB of the guest-physical
 * address space below RAM, every page of the 64 MiB above its RAM's end (where a
 * contiguous host mapping would run into the next VM's memory) and of the 16 MiB
 * below it, reading through a trap handler that skips access faults; it tries to
 * store to the holes as well; and it points virtio-blk data descriptors at the same
 * addresses, reading from and writing to them through the device, then checks the
 * disk.  It prints what it found and exits 0 only if the canary never showed up and
 * no access outside its RAM succeeded, except on the devices of its own board. */
#include "virtio_blk.h"

const char fw_name[] = "probe";

#define CANARY          0x6876656d75cafe42ULL   /* canary.c writes CANARY ^ address */
#define RAM_SIZE_HERE   (128UL << 20)           /* run with --memory 128M */
#define RAM_END         (RAM_BASE + RAM_SIZE_HERE)
#define DEVICES_END     0x10010000UL            /* the board's devices end below this */

static uint8_t buf[4096] __attribute__((aligned(4096)));

static int is_device(uintptr_t a)
{
    return a < DEVICES_END && ((a >= 0x1000 && a < 0x2000) ||          /* boot ROM */
                               (a >= 0x100000 && a < 0x102000) ||      /* finisher, RTC */
                               (a >= 0x2000000 && a < 0x2010000) ||    /* CLINT */
                               (a >= 0xc000000 && a < 0xc600000) ||    /* PLIC */
                               a >= 0x10000000);                       /* UART, virtio */
}

static unsigned long found, reads_ok, reads_faulted, reads_outside, writes_ok, writes_faulted;

static void probe(uintptr_t a)
{
    uint64_t v;

    if (probe_read64(a, &v)) {
        reads_ok++;
        if (v == (CANARY ^ a))
            found++;
        if (!is_device(a)) {
            reads_outside++;
            printf("probe: a load from 0x%lx, outside RAM, succeeded\n", (unsigned long)a);
        }
    } else {
        reads_faulted++;
    }
    if (!is_device(a) && a != 0) {
        if (probe_write64(a, CANARY ^ a)) {
            writes_ok++;
            printf("probe: a store to 0x%lx, outside RAM, succeeded\n", (unsigned long)a);
        } else {
            writes_faulted++;
        }
    }
}

static unsigned long dma_tried, dma_ok, dma_resets;

static void dma(struct vblk **d, uintptr_t a)
{
    for (int type = VIRTIO_BLK_T_IN; type <= VIRTIO_BLK_T_OUT; type++) {
        int status = vblk_raw(*d, type, 0, a, 4096);

        dma_tried++;
        if (status == 0) {
            dma_ok++;
            printf("probe: DMA %s 0x%lx, outside RAM, succeeded\n",
                   type == VIRTIO_BLK_T_IN ? "to" : "from", (unsigned long)a);
        } else if (status < 0) {
            dma_resets++;
            *d = vblk_reopen(*d);
        }
    }
}

int main(void)
{
    struct vblk *d;
    uintptr_t a;

    /* 1. its own RAM, every word */
    for (a = RAM_BASE; a < RAM_END; a += 8)
        if (*(volatile uint64_t *)a == (CANARY ^ a))
            found++;
    /* 2. the address space around it */
    for (a = 0; a < RAM_BASE - (16UL << 20); a += 0x10000)
        probe(a);
    for (a = RAM_BASE - (16UL << 20); a < RAM_BASE; a += 4096)
        probe(a);
    for (a = RAM_END; a < RAM_END + (64UL << 20); a += 4096)
        probe(a);
    probe(0xfffffffffffff000UL);
    printf("probe: loads outside RAM: %lu faulted, %lu reached a device of this board; "
           "stores: %lu faulted, %lu succeeded\n", reads_faulted, reads_ok, writes_faulted,
           writes_ok);
    /* 3. the disk's DMA, pointed at the same places */
    d = vblk_open(0);
    for (a = 0; a < RAM_BASE; a += 0x1000000)
        dma(&d, a);
    for (a = RAM_END - 2048; a < RAM_END + (64UL << 20); a += 0x100000)
        dma(&d, a);
    dma(&d, 0xfffffffffffff000UL);
    /* whatever reached the disk: no canary there either */
    memset(buf, 0, sizeof(buf));
    vblk_read(d, 0, buf, sizeof(buf));
    for (unsigned i = 0; i < sizeof(buf); i += 8)
        for (a = 0; a < RAM_END + (64UL << 20); a += 8 << 20)
            if (*(uint64_t *)(buf + i) == (CANARY ^ (a + i)))
                found++;
    printf("probe: DMA outside RAM: %lu of %lu requests succeeded, %lu device resets\n",
           dma_ok, dma_tried, dma_resets);
    printf("probe: canary found %lu times\n", found);
    return found || reads_outside || writes_ok || dma_ok ? 1 : 0;
}
