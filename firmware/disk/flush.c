/* flush.elf: 64 KiB written and flushed to disk0 reaches the host file.
 *
 * Pattern: byte at disk offset i (0..65535, sectors 0..127) is
 *     (i*7 + 3) mod 256
 * Written as 16 requests of 4 KiB, read back in one 64 KiB request and
 * checked, then FLUSH; "flush: done" is printed after the FLUSH completes
 * and the image spins forever (the host kills it and checks the file). */
#include "virtio_blk.h"

const char fw_name[] = "flush";

#define TOTAL   (64u * 1024)
#define CHUNK   4096u

static uint8_t buf[TOTAL] __attribute__((aligned(4096)));

static uint8_t pattern_byte(unsigned i)
{
    return (uint8_t)(i * 7 + 3);
}

int main(void)
{
    struct vblk *d;
    unsigned i, off;

    vblk_scan();
    d = vblk_open(0);
    printf("flush: disk0 capacity %lu sectors\n", (unsigned long)d->capacity);
    if (d->capacity < TOTAL / 512)
        fail("disk0 has %lu sectors, need at least %u",
             (unsigned long)d->capacity, TOTAL / 512);

    printf("flush: writing 64 KiB to sectors 0..127, byte i = (i*7+3) mod 256\n");
    for (i = 0; i < TOTAL; i++)
        buf[i] = pattern_byte(i);
    for (off = 0; off < TOTAL; off += CHUNK)
        vblk_write(d, off / 512, buf + off, CHUNK);

    memset(buf, 0, sizeof(buf));
    vblk_read(d, 0, buf, TOTAL);
    for (i = 0; i < TOTAL; i++)
        if (buf[i] != pattern_byte(i))
            fail("read-back: byte %u (sector %u) is 0x%02x, expected 0x%02x",
                 i, i / 512, buf[i], pattern_byte(i));
    printf("flush: read-back ok\n");

    vblk_flush(d);
    printf("flush: done\n");
    for (;;)
        __asm__ volatile ("j .");
}
