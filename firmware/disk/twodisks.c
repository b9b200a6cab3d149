/* twodisks.elf: two virtio-blk disks are independent.
 *
 * Sector 0 patterns (i = byte offset 0..511):
 *     disk0 (A): i < 16: "HVEMU-TWODISKS-A", else (i*5 + 1) mod 256
 *     disk1 (B): i < 16: "HVEMU-TWODISKS-B", else (i*11 + 2) mod 256
 * (A and B differ in every byte from 15 on: 6i + 1 is never 0 mod 256.)
 * Writes A to disk0, then B to disk1, flushes both, reads both back and
 * checks each holds its own pattern. */
#include "virtio_blk.h"

const char fw_name[] = "twodisks";

#define TAG_LEN 16

static uint8_t wbuf[512] __attribute__((aligned(512)));
static uint8_t rbuf[512] __attribute__((aligned(512)));

static uint8_t pattern_byte(int disk, unsigned i)
{
    if (i < TAG_LEN)
        return (uint8_t)(i == TAG_LEN - 1 ? 'A' + disk : "HVEMU-TWODISKS-"[i]);
    return disk == 0 ? (uint8_t)(i * 5 + 1) : (uint8_t)(i * 11 + 2);
}

static void fill(int disk)
{
    unsigned i;

    for (i = 0; i < 512; i++)
        wbuf[i] = pattern_byte(disk, i);
}

static void check(int disk)
{
    int other = !disk;
    unsigned i;

    for (i = 0; i < 512; i++) {
        if (rbuf[i] == pattern_byte(disk, i))
            continue;
        if (memcmp(rbuf, "HVEMU-TWODISKS-", TAG_LEN - 1) == 0 &&
            rbuf[TAG_LEN - 1] == 'A' + other)
            fail("disk%d sector 0 holds disk%d's pattern %c: the disks are "
                 "not independent", disk, other, 'A' + other);
        fail("disk%d sector 0 byte %u is 0x%02x, expected 0x%02x (pattern %c)",
             disk, i, rbuf[i], pattern_byte(disk, i), 'A' + disk);
    }
}

int main(void)
{
    struct vblk *d[2];
    int n, k;

    n = vblk_scan();
    if (n < 2)
        fail("need two virtio-blk disks, found %d", n);
    for (k = 0; k < 2; k++) {
        d[k] = vblk_open(k);
        printf("twodisks: disk%d capacity %lu sectors\n", k,
               (unsigned long)d[k]->capacity);
        if (d[k]->capacity < 1)
            fail("disk%d is empty", k);
    }

    for (k = 0; k < 2; k++) {
        fill(k);
        vblk_write(d[k], 0, wbuf, 512);
        printf("twodisks: wrote pattern %c to disk%d sector 0\n", 'A' + k, k);
    }
    for (k = 0; k < 2; k++)
        vblk_flush(d[k]);
    printf("twodisks: flushed both\n");

    for (k = 0; k < 2; k++) {
        memset(rbuf, 0, sizeof(rbuf));
        vblk_read(d[k], 0, rbuf, 512);
        check(k);
        printf("twodisks: disk%d sector 0 holds pattern %c\n", k, 'A' + k);
    }
    printf("twodisks: independent: ok\n");
    return 0;
}
