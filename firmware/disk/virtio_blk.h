/* Minimal polled virtio-blk driver over modern (Version 2) virtio-mmio. */
#ifndef VIRTIO_BLK_H
#define VIRTIO_BLK_H

#include "lib.h"

/* virt board: 8 virtio-mmio transports, 0x1000 apart. */
#define VIRTIO_MMIO_BASE        0x10001000UL
#define VIRTIO_MMIO_STRIDE      0x1000UL
#define VIRTIO_MMIO_SLOTS       8

#define SECTOR_SIZE             512u

/* Request types (virtio 1.1, 5.2.6). */
#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_T_GET_ID     8
#define VIRTIO_BLK_ID_BYTES     20

/* Feature bits this driver accepts when offered (nothing else). */
#define VIRTIO_BLK_F_FLUSH      (1ULL << 9)
#define VIRTIO_F_VERSION_1      (1ULL << 32)

struct vblk {
    uintptr_t base;             /* transport registers */
    int slot;                   /* 0..7 */
    int index;                  /* disk number, in slot order */
    int ready;                  /* vblk_open has initialised it */
    uint64_t offered;           /* device features */
    uint64_t accepted;          /* features written back */
    uint64_t capacity;          /* in 512-byte sectors */
    uint16_t qsize;             /* queue 0 size in use */
    uint16_t avail_idx;         /* next avail->idx to publish */
    uint16_t used_idx;          /* next used->idx to consume */
    struct vblk_ring *ring;
};

/* Scan the 8 slots in order, print one line per virtio-blk transport
 * and return how many modern block devices were found (disk 0, 1, ...). */
int vblk_scan(void);
/* Initialise disk n (fails clearly if there is no such disk). */
struct vblk *vblk_open(int n);

/* Synchronous requests; any status other than VIRTIO_BLK_S_OK, a timeout
 * or a device error fails the image.  len is a multiple of 512. */
void vblk_read(struct vblk *d, uint64_t sector, void *buf, uint32_t len);
void vblk_write(struct vblk *d, uint64_t sector, const void *buf, uint32_t len);
/* FLUSH if VIRTIO_BLK_F_FLUSH was negotiated; returns 1 if it was sent,
 * 0 if the device did not offer it (then it is write-through). */
int vblk_flush(struct vblk *d);
/* Any request, data at any guest-physical address (the hostile probe's):
 * the status byte (0 OK, 1 IOERR, 2 UNSUPP), or -1 if the device set
 * DEVICE_NEEDS_RESET instead; then vblk_reopen() resets and re-initialises. */
int vblk_raw(struct vblk *d, uint32_t type, uint64_t sector, uintptr_t addr, uint32_t len);
struct vblk *vblk_reopen(struct vblk *d);
/* GET_ID: the serial, NUL-terminated (at most 20 characters). */
void vblk_get_id(struct vblk *d, char id[VIRTIO_BLK_ID_BYTES + 1]);

#endif
