/* diskbench.elf: sequential throughput over the first 8 MiB of disk0.
 *
 * Four timed phases, one request in flight at a time:
 *     4k write, 4k read    2048 requests of 4 KiB
 *     64k write, 64k read  128 requests of 64 KiB (one data descriptor)
 * mtime (CLINT, 10 MHz) is read before and after each phase.
 * Data: the 64 KiB buffer is filled once with byte j = (j*13 + 5) mod 256
 * (j = offset in the buffer); before each write the first 8 bytes of
 * every 512-byte sector are stamped with the little-endian u64
 * (tag << 48) | sector, tag 0x4b34 (bytes "4K", 4k phases) or 0x4b36
 * ("6K", 64k phases), and each read checks those stamps (cleared before
 * the read), so the timed loops cost the guest only a few stores per
 * sector.  The last buffer of each read phase is compared in full after
 * the timer stops.  Afterwards disk bytes 0..8 MiB hold the 64k-phase
 * data: sector s = stamp(0x4b36, s) then byte k (8..511) =
 * ((s mod 128)*512 + k)*13 + 5 mod 256. */
#include "virtio_blk.h"

const char fw_name[] = "diskbench";

#define AREA_BYTES      (8u << 20)
#define AREA_SECTORS    (AREA_BYTES / 512)
#define BIG             (64u * 1024)
#define TAG_4K          0x4b34ULL
#define TAG_64K         0x4b36ULL

static uint8_t buf[BIG] __attribute__((aligned(4096)));

static inline uint64_t stamp(uint64_t tag, uint64_t sector)
{
    return (tag << 48) | sector;
}

static uint64_t write_phase(struct vblk *d, uint32_t req, uint64_t tag)
{
    uint64_t t0 = mtime(), s;
    unsigned j;

    for (s = 0; s < AREA_SECTORS; s += req / 512) {
        for (j = 0; j < req / 512; j++)
            *(uint64_t *)(buf + j * 512) = stamp(tag, s + j);
        vblk_write(d, s, buf, req);
    }
    return mtime() - t0;
}

static uint64_t read_phase(struct vblk *d, uint32_t req, uint64_t tag,
                           const char *name)
{
    uint64_t t0 = mtime(), t, s, bad_sector = 0, bad_val = 0;
    unsigned j, bad = 0;

    for (s = 0; s < AREA_SECTORS; s += req / 512) {
        for (j = 0; j < req / 512; j++)
            *(uint64_t *)(buf + j * 512) = 0;
        vblk_read(d, s, buf, req);
        for (j = 0; j < req / 512; j++) {
            uint64_t v = *(uint64_t *)(buf + j * 512);

            if (v != stamp(tag, s + j) && !bad++) {
                bad_sector = s + j;
                bad_val = v;
            }
        }
    }
    t = mtime() - t0;
    if (bad)
        fail("%s: %u sector(s) with a wrong stamp, first sector %lu: 0x%lx, "
             "expected 0x%lx", name, bad, (unsigned long)bad_sector,
             (unsigned long)bad_val, (unsigned long)stamp(tag, bad_sector));
    /* Untimed: the rest of the last request's sectors. */
    for (j = 0; j < req; j++)
        if (j % 512 >= 8 && buf[j] != (uint8_t)(j * 13 + 5))
            fail("%s: last request, buffer byte %u is 0x%02x, expected 0x%02x",
                 name, j, buf[j], (uint8_t)(j * 13 + 5));
    return t;
}

static unsigned long kib_per_s(uint64_t ticks)
{
    return ticks ? (unsigned long)((AREA_BYTES / 1024) * MTIME_HZ / ticks) : 0;
}

int main(void)
{
    struct vblk *d;
    uint64_t w4, r4, w64, r64;
    unsigned j;

    vblk_scan();
    d = vblk_open(0);
    printf("diskbench: disk0 capacity %lu sectors\n", (unsigned long)d->capacity);
    if (d->capacity < AREA_SECTORS)
        fail("disk0 has %lu sectors, need at least %u (8 MiB; use a 16M image)",
             (unsigned long)d->capacity, AREA_SECTORS);
    for (j = 0; j < BIG; j++)
        buf[j] = (uint8_t)(j * 13 + 5);

    printf("diskbench: 8 MiB sequential per phase, mtime at 10 MHz\n");
    /* a line after each phase lets the host time the phases on its own clock */
    printf("diskbench: phase 4k-write start\n");
    w4 = write_phase(d, 4096, TAG_4K);
    printf("diskbench: phase 4k-read start\n");
    r4 = read_phase(d, 4096, TAG_4K, "4k read");
    printf("diskbench: phase 64k-write start\n");
    w64 = write_phase(d, BIG, TAG_64K);
    printf("diskbench: phase 64k-read start\n");
    r64 = read_phase(d, BIG, TAG_64K, "64k read");
    printf("diskbench: phase end\n");

    printf("diskbench: 4k write %lu ticks, 4k read %lu, 64k write %lu, "
           "64k read %lu\n", (unsigned long)w4, (unsigned long)r4,
           (unsigned long)w64, (unsigned long)r64);
    printf("diskbench: KiB/s (mtime): 4k write %lu, 4k read %lu, "
           "64k write %lu, 64k read %lu\n", kib_per_s(w4), kib_per_s(r4),
           kib_per_s(w64), kib_per_s(r64));
    printf("diskbench: done\n");
    return 0;
}
