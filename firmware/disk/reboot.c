/* reboot.elf: data on disk0 survives a warm reset (finisher 0x7777).
 *
 * Pattern (4 KiB = sectors 1..8, i = byte offset 0..4095 from the start
 * of sector 1, i.e. disk byte offset 512 + i):
 *     i < 13:  the ASCII bytes "HVEMU-PATTERN"
 *     i >= 13: (i*31 + (i/512)*37 + 7) mod 256
 * First boot: sector 1 lacks "HVEMU-PATTERN" -> write the 4 KiB, FLUSH,
 * read back, reboot.  Next boot: the magic is there -> verify all 8
 * sectors, power off.  A marker in RAM past the image (not reloaded by
 * the ELF loader) turns "pattern still missing after our own reboot"
 * into a failure instead of an endless reboot loop, on boards that keep
 * RAM across the reset (QEMU does). */
#include "virtio_blk.h"

const char fw_name[] = "disk";

#define PAT_SECTOR      1
#define PAT_BYTES       4096u
#define MAGIC_LEN       13
#define MARKER_MAGIC    0x48564d5242544d4bULL   /* "KMTBRMVH" */

static const char magic[MAGIC_LEN + 1] = "HVEMU-PATTERN";
static uint8_t buf[PAT_BYTES] __attribute__((aligned(4096)));

extern volatile uint64_t __noinit[];    /* link.ld: page past the image */

static uint8_t pattern_byte(unsigned i)
{
    if (i < MAGIC_LEN)
        return (uint8_t)magic[i];
    return (uint8_t)(i * 31 + (i / 512) * 37 + 7);
}

static void verify(const char *when)
{
    unsigned i;

    for (i = 0; i < PAT_BYTES; i++)
        if (buf[i] != pattern_byte(i))
            fail("%s: sector %u byte %u is 0x%02x, expected 0x%02x",
                 when, PAT_SECTOR + i / 512, i % 512, buf[i], pattern_byte(i));
}

int main(void)
{
    struct vblk *d;
    char id[VIRTIO_BLK_ID_BYTES + 1];
    int rebooted;
    unsigned i;

    /* Did this image request the reset that started this boot? */
    rebooted = __noinit[0] == MARKER_MAGIC;
    __noinit[0] = 0;

    vblk_scan();
    d = vblk_open(0);
    printf("disk: capacity %lu sectors\n", (unsigned long)d->capacity);
    vblk_get_id(d, id);
    printf("disk: id %s\n", id[0] ? id : "(empty)");
    if (d->capacity < PAT_SECTOR + PAT_BYTES / 512)
        fail("disk0 has %lu sectors, need at least %u",
             (unsigned long)d->capacity, PAT_SECTOR + PAT_BYTES / 512);

    memset(buf, 0, sizeof(buf));
    vblk_read(d, PAT_SECTOR, buf, 512);
    if (memcmp(buf, magic, MAGIC_LEN) != 0) {
        if (rebooted)
            fail("pattern missing after reboot: the data written and "
                 "flushed before the reset is gone");
        printf("disk: sector 1 holds no pattern: writing 4 KiB to sectors 1..8\n");
        for (i = 0; i < PAT_BYTES; i++)
            buf[i] = pattern_byte(i);
        vblk_write(d, PAT_SECTOR, buf, PAT_BYTES);
        vblk_flush(d);
        memset(buf, 0, sizeof(buf));
        vblk_read(d, PAT_SECTOR, buf, PAT_BYTES);
        verify("read-back before reboot");
        printf("disk: pattern written and flushed, rebooting\n");
        __noinit[0] = MARKER_MAGIC;
        fw_reboot();
    }

    printf("disk: sector 1 holds the pattern: verifying sectors 1..8\n");
    memset(buf, 0, sizeof(buf));
    vblk_read(d, PAT_SECTOR, buf, PAT_BYTES);
    verify("after reboot");
    printf("disk: pattern found after reboot: ok\n");
    return 0;
}
