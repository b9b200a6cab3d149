/* journal.elf: a journal whose every acknowledged sector must survive a crash.
 *
 * Sector s written by this image holds: bytes 0..3 "JRNL", bytes 4..7 the
 * little-endian u32 s, byte k (8..511) (s*7 + k*13 + 0x5a) mod 256.
 * ROUNDS rounds; round r writes
 *     record   sectors 16r .. 16r+7 (4 KiB, one request)
 *     commit   sector  16r+8        (512 bytes)
 * then FLUSH, and only when the FLUSH has completed prints one line per
 * range of sectors it covers:
 *     journal: acked A-B
 * (16r..16r+8, and the scratch sector of the round before).  After that the
 * round writes its scratch sector 16r+9, which stays unflushed until the
 * next round's FLUSH: a crash in between may lose it, and it is not acked
 * before.  The last scratch write is never flushed by the guest; then
 * "journal: done" and power off.  The host side (tests/test_durability.py)
 * records hvemu's system calls and checks that every acked sector was
 * fsync'd before its line reached the UART. */
#include "virtio_blk.h"

const char fw_name[] = "journal";

#define ROUNDS          16u
#define STRIDE          16u             /* sectors per round */
#define RECORD          8u              /* sectors in a record */

static uint8_t buf[RECORD * 512] __attribute__((aligned(4096)));

static void fill(uint8_t *p, uint32_t sector, unsigned count)
{
    unsigned i, k;

    for (i = 0; i < count; i++, sector++, p += 512) {
        p[0] = 'J'; p[1] = 'R'; p[2] = 'N'; p[3] = 'L';
        p[4] = (uint8_t)sector;
        p[5] = (uint8_t)(sector >> 8);
        p[6] = (uint8_t)(sector >> 16);
        p[7] = (uint8_t)(sector >> 24);
        for (k = 8; k < 512; k++)
            p[k] = (uint8_t)(sector * 7 + k * 13 + 0x5a);
    }
}

static void write_sectors(struct vblk *d, uint32_t sector, unsigned count)
{
    fill(buf, sector, count);
    vblk_write(d, sector, buf, count * 512);
}

int main(void)
{
    struct vblk *d;
    uint32_t r, base;

    vblk_scan();
    d = vblk_open(0);
    printf("journal: disk0 capacity %lu sectors\n", (unsigned long)d->capacity);
    if (d->capacity < ROUNDS * STRIDE)
        fail("disk0 has %lu sectors, need at least %u",
             (unsigned long)d->capacity, ROUNDS * STRIDE);
    for (r = 0; r < ROUNDS; r++) {
        base = r * STRIDE;
        write_sectors(d, base, RECORD);
        write_sectors(d, base + RECORD, 1);
        if (!vblk_flush(d))
            fail("the device offers no FLUSH: nothing can be acknowledged");
        printf("journal: acked %u-%u\n", base, base + RECORD);
        if (r > 0)
            printf("journal: acked %u-%u\n", base - STRIDE + RECORD + 1,
                   base - STRIDE + RECORD + 1);
        write_sectors(d, base + RECORD + 1, 1);
    }
    printf("journal: done\n");
    return 0;
}
