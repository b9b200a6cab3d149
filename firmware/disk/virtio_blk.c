/* Minimal polled virtio-blk driver for modern virtio-mmio (virtio 1.1,
 * 4.2.2 registers, 4.2.3 initialisation, 2.6 split virtqueues, 5.2 block
 * device).  One request in flight at a time on queue 0: a chain of
 * header (device-readable), data (readable for OUT, writable for IN and
 * GET_ID; absent for FLUSH) and a 1-byte status (device-writable).
 * Completion is found by polling used->idx; device interrupts stay
 * enabled (VIRTQ_AVAIL_F_NO_INTERRUPT is never set) and InterruptStatus is
 * acknowledged after each request, but nothing takes the interrupt. */
#include "virtio_blk.h"

/* virtio-mmio registers (4.2.2). */
#define MMIO_MAGIC              0x000
#define MMIO_VERSION            0x004
#define MMIO_DEVICE_ID          0x008
#define MMIO_VENDOR_ID          0x00c
#define MMIO_DEVICE_FEATURES    0x010
#define MMIO_DEVICE_FEATURES_SEL 0x014
#define MMIO_DRIVER_FEATURES    0x020
#define MMIO_DRIVER_FEATURES_SEL 0x024
#define MMIO_QUEUE_SEL          0x030
#define MMIO_QUEUE_NUM_MAX      0x034
#define MMIO_QUEUE_NUM          0x038
#define MMIO_QUEUE_READY        0x044
#define MMIO_QUEUE_NOTIFY       0x050
#define MMIO_INTERRUPT_STATUS   0x060
#define MMIO_INTERRUPT_ACK      0x064
#define MMIO_STATUS             0x070
#define MMIO_QUEUE_DESC_LOW     0x080
#define MMIO_QUEUE_DESC_HIGH    0x084
#define MMIO_QUEUE_DRIVER_LOW   0x090
#define MMIO_QUEUE_DRIVER_HIGH  0x094
#define MMIO_QUEUE_DEVICE_LOW   0x0a0
#define MMIO_QUEUE_DEVICE_HIGH  0x0a4
#define MMIO_CONFIG_GENERATION  0x0fc
#define MMIO_CONFIG             0x100

#define VIRTIO_MAGIC            0x74726976u     /* "virt" */
#define VIRTIO_ID_BLOCK         2

/* Device status bits (2.1). */
#define STATUS_ACKNOWLEDGE      1
#define STATUS_DRIVER           2
#define STATUS_DRIVER_OK        4
#define STATUS_FEATURES_OK      8
#define STATUS_NEEDS_RESET      64
#define STATUS_FAILED           128

/* Descriptor flags (2.6.5). */
#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2

#define VIRTIO_BLK_S_OK         0
#define VIRTIO_BLK_S_IOERR      1
#define VIRTIO_BLK_S_UNSUPP     2

#define QSIZE                   8       /* QueueNum we ask for */
#define TIMEOUT_TICKS           (60 * MTIME_HZ)  /* per request, mtime */

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[QSIZE];
    uint16_t used_event;                /* unused: no VIRTIO_F_EVENT_IDX */
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[QSIZE];
    uint16_t avail_event;
};

struct virtio_blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

/* One page per disk: the three ring parts (16-, 2- and 4-byte alignment
 * required) plus the request header, status byte and GET_ID buffer. */
struct vblk_ring {
    struct virtq_desc desc[QSIZE];
    struct virtq_avail avail __attribute__((aligned(64)));
    struct virtq_used used __attribute__((aligned(64)));
    struct virtio_blk_req_hdr hdr __attribute__((aligned(64)));
    uint8_t status __attribute__((aligned(64)));
    char id[VIRTIO_BLK_ID_BYTES] __attribute__((aligned(64)));
} __attribute__((aligned(4096)));

static struct vblk_ring rings[VIRTIO_MMIO_SLOTS];
static struct vblk disks[VIRTIO_MMIO_SLOTS];
static int ndisks = -1;                 /* -1: not scanned yet */

static inline uint32_t rd32(const struct vblk *d, unsigned off)
{
    return *(volatile uint32_t *)(d->base + off);
}

static inline void wr32(const struct vblk *d, unsigned off, uint32_t v)
{
    *(volatile uint32_t *)(d->base + off) = v;
}

static __attribute__((noreturn, format(printf, 2, 3)))
void vfail(struct vblk *d, const char *fmt, ...)
{
    va_list ap;

    if (d->base)
        wr32(d, MMIO_STATUS, rd32(d, MMIO_STATUS) | STATUS_FAILED);
    printf("%s: FAIL: disk%d (slot %d, 0x%lx): ", fw_name, d->index, d->slot,
           (unsigned long)d->base);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    uart_putc('\n');
    fw_exit(1);
}

int vblk_scan(void)
{
    int slot;

    ndisks = 0;
    for (slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
        uintptr_t base = VIRTIO_MMIO_BASE + VIRTIO_MMIO_STRIDE * slot;
        uint32_t magic, version, id;

        if (!probe_read32(base + MMIO_MAGIC, &magic) || magic != VIRTIO_MAGIC)
            continue;           /* nothing (or no virtio-mmio) there */
        version = *(volatile uint32_t *)(base + MMIO_VERSION);
        id = *(volatile uint32_t *)(base + MMIO_DEVICE_ID);
        if (id != VIRTIO_ID_BLOCK)
            continue;           /* empty transport (0) or another device */
        if (version != 2) {
            printf("%s: virtio-mmio slot %d (0x%lx): virtio-blk with Version %u "
                   "ignored (legacy; QEMU: -global virtio-mmio.force-legacy=false)\n",
                   fw_name, slot, (unsigned long)base, version);
            continue;
        }
        disks[ndisks].base = base;
        disks[ndisks].slot = slot;
        disks[ndisks].index = ndisks;
        disks[ndisks].ring = &rings[ndisks];
        printf("%s: virtio-mmio slot %d (0x%lx): virtio-blk -> disk%d\n",
               fw_name, slot, (unsigned long)base, ndisks);
        ndisks++;
    }
    printf("%s: %d virtio-blk disk(s) found\n", fw_name, ndisks);
    return ndisks;
}

/* Config space read of a le64 with 32-bit accesses (4.2.2.2), retried
 * until ConfigGeneration is stable (2.4.1). */
static uint64_t config_read64(struct vblk *d, unsigned off)
{
    uint32_t gen, lo, hi;

    do {
        gen = rd32(d, MMIO_CONFIG_GENERATION);
        lo = rd32(d, MMIO_CONFIG + off);
        hi = rd32(d, MMIO_CONFIG + off + 4);
        fence_all();
    } while (rd32(d, MMIO_CONFIG_GENERATION) != gen);
    return ((uint64_t)hi << 32) | lo;
}

struct vblk *vblk_open(int n)
{
    struct vblk *d;
    struct vblk_ring *r;
    uint32_t status, qmax;
    uint64_t t0;

    if (ndisks < 0)
        vblk_scan();
    if (n >= ndisks)
        fail("need disk%d but only %d modern virtio-blk disk(s) found "
             "(QEMU: -global virtio-mmio.force-legacy=false "
             "-drive file=IMG,format=raw,if=none,id=dN "
             "-device virtio-blk-device,drive=dN)", n, ndisks);
    d = &disks[n];
    if (d->ready)
        return d;
    r = d->ring;

    /* 1. Reset, and wait until the device reads back 0. */
    wr32(d, MMIO_STATUS, 0);
    t0 = mtime();
    while (rd32(d, MMIO_STATUS) != 0)
        if (mtime() - t0 > TIMEOUT_TICKS)
            vfail(d, "Status does not read 0 after reset");
    memset(r, 0, sizeof(*r));
    d->avail_idx = d->used_idx = 0;

    /* 2-3. ACKNOWLEDGE, DRIVER. */
    status = STATUS_ACKNOWLEDGE;
    wr32(d, MMIO_STATUS, status);
    status |= STATUS_DRIVER;
    wr32(d, MMIO_STATUS, status);

    /* 4. Features: take VERSION_1 (required) and FLUSH, nothing else. */
    wr32(d, MMIO_DEVICE_FEATURES_SEL, 0);
    d->offered = rd32(d, MMIO_DEVICE_FEATURES);
    wr32(d, MMIO_DEVICE_FEATURES_SEL, 1);
    d->offered |= (uint64_t)rd32(d, MMIO_DEVICE_FEATURES) << 32;
    if (!(d->offered & VIRTIO_F_VERSION_1))
        vfail(d, "device does not offer VIRTIO_F_VERSION_1 (features 0x%lx)",
              (unsigned long)d->offered);
    d->accepted = d->offered & (VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH);
    wr32(d, MMIO_DRIVER_FEATURES_SEL, 0);
    wr32(d, MMIO_DRIVER_FEATURES, (uint32_t)d->accepted);
    wr32(d, MMIO_DRIVER_FEATURES_SEL, 1);
    wr32(d, MMIO_DRIVER_FEATURES, (uint32_t)(d->accepted >> 32));

    /* 5-6. FEATURES_OK, and check the device kept it. */
    status |= STATUS_FEATURES_OK;
    wr32(d, MMIO_STATUS, status);
    if (!(rd32(d, MMIO_STATUS) & STATUS_FEATURES_OK))
        vfail(d, "device cleared FEATURES_OK (accepted 0x%lx)",
              (unsigned long)d->accepted);

    /* 7. Queue 0. */
    wr32(d, MMIO_QUEUE_SEL, 0);
    if (rd32(d, MMIO_QUEUE_READY) != 0)
        vfail(d, "queue 0 already live (QueueReady != 0 after reset)");
    qmax = rd32(d, MMIO_QUEUE_NUM_MAX);
    if (qmax < 3)
        vfail(d, "QueueNumMax %u is too small for a 3-descriptor chain", qmax);
    d->qsize = qmax < QSIZE ? (uint16_t)qmax : QSIZE;
    wr32(d, MMIO_QUEUE_NUM, d->qsize);
    wr32(d, MMIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)r->desc);
    wr32(d, MMIO_QUEUE_DESC_HIGH, (uint32_t)((uint64_t)(uintptr_t)r->desc >> 32));
    wr32(d, MMIO_QUEUE_DRIVER_LOW, (uint32_t)(uintptr_t)&r->avail);
    wr32(d, MMIO_QUEUE_DRIVER_HIGH, (uint32_t)((uint64_t)(uintptr_t)&r->avail >> 32));
    wr32(d, MMIO_QUEUE_DEVICE_LOW, (uint32_t)(uintptr_t)&r->used);
    wr32(d, MMIO_QUEUE_DEVICE_HIGH, (uint32_t)((uint64_t)(uintptr_t)&r->used >> 32));
    fence_all();                /* zeroed rings visible before QueueReady */
    wr32(d, MMIO_QUEUE_READY, 1);

    /* 8. DRIVER_OK. */
    status |= STATUS_DRIVER_OK;
    wr32(d, MMIO_STATUS, status);
    status = rd32(d, MMIO_STATUS);
    if (status & (STATUS_NEEDS_RESET | STATUS_FAILED))
        vfail(d, "device status 0x%x after DRIVER_OK", status);

    d->capacity = config_read64(d, 0);  /* virtio_blk_config.capacity */
    d->ready = 1;
    printf("%s: disk%d: features offered 0x%lx, accepted 0x%lx, queue size %u "
           "(max %u)\n", fw_name, d->index, (unsigned long)d->offered,
           (unsigned long)d->accepted, d->qsize, qmax);
    return d;
}

static const char *type_name(uint32_t type)
{
    switch (type) {
    case VIRTIO_BLK_T_IN:       return "IN";
    case VIRTIO_BLK_T_OUT:      return "OUT";
    case VIRTIO_BLK_T_FLUSH:    return "FLUSH";
    case VIRTIO_BLK_T_GET_ID:   return "GET_ID";
    default:                    return "?";
    }
}

/* Submit one request (header, optional data at addr, status) and poll for it:
 * the status byte, or -1 if the device asked for a reset instead (then the disk
 * must be opened again).  addr may be anything: the hostile probe points it
 * outside RAM on purpose. */
static int submit(struct vblk *d, uint32_t type, uint64_t sector, uintptr_t addr,
                  uint32_t len, int writable)
{
    struct vblk_ring *r = d->ring;
    uint16_t head = 0, n = 0, slot;
    struct virtq_used_elem e;
    uint64_t t0;
    uint32_t isr;
    unsigned spins;

    if (!d->ready)
        fail("disk%d used before vblk_open", d->index);
    r->hdr.type = type;
    r->hdr.reserved = 0;
    r->hdr.sector = sector;
    r->status = 0xff;           /* the device must overwrite it */

    r->desc[n].addr = (uintptr_t)&r->hdr;
    r->desc[n].len = sizeof(r->hdr);
    r->desc[n].flags = VIRTQ_DESC_F_NEXT;
    r->desc[n].next = n + 1;
    n++;
    if (len) {
        r->desc[n].addr = addr;
        r->desc[n].len = len;
        r->desc[n].flags = VIRTQ_DESC_F_NEXT | (writable ? VIRTQ_DESC_F_WRITE : 0);
        r->desc[n].next = n + 1;
        n++;
    }
    r->desc[n].addr = (uintptr_t)&r->status;
    r->desc[n].len = 1;
    r->desc[n].flags = VIRTQ_DESC_F_WRITE;
    r->desc[n].next = 0;

    /* Publish: descriptors and ring entry before idx (2.6.13), then
     * everything in RAM before the notify MMIO write (2.6.13.6). */
    slot = d->avail_idx % d->qsize;
    ((volatile struct virtq_avail *)&r->avail)->ring[slot] = head;
    fence_rw();
    d->avail_idx++;
    ((volatile struct virtq_avail *)&r->avail)->idx = d->avail_idx;
    fence_all();
    wr32(d, MMIO_QUEUE_NOTIFY, 0);

    /* Poll used->idx; look at the clock and device status now and then. */
    t0 = mtime();
    spins = 0;
    while (((volatile struct virtq_used *)&r->used)->idx == d->used_idx) {
        if (++spins % 4096 == 0) {
            uint32_t st = rd32(d, MMIO_STATUS);

            if (st & STATUS_NEEDS_RESET)
                return -1;
            if (mtime() - t0 > TIMEOUT_TICKS)
                vfail(d, "%s sector %lu len %u: no completion in used ring "
                      "after %lu s (used.idx %u, avail.idx %u)",
                      type_name(type), (unsigned long)sector, len,
                      TIMEOUT_TICKS / MTIME_HZ,
                      ((volatile struct virtq_used *)&r->used)->idx,
                      d->avail_idx);
        }
    }
    fence_all();                /* used entry and data after seeing idx */
    e.id = ((volatile struct virtq_used *)&r->used)->ring[d->used_idx % d->qsize].id;
    e.len = ((volatile struct virtq_used *)&r->used)->ring[d->used_idx % d->qsize].len;
    d->used_idx++;
    if (((volatile struct virtq_used *)&r->used)->idx != d->used_idx)
        vfail(d, "used.idx jumped to %u, expected %u",
              ((volatile struct virtq_used *)&r->used)->idx, d->used_idx);
    if (e.id != head)
        vfail(d, "used ring returned descriptor %u, expected %u", e.id, head);

    /* Acknowledge the used-buffer notification (no one takes the IRQ). */
    isr = rd32(d, MMIO_INTERRUPT_STATUS);
    if (isr)
        wr32(d, MMIO_INTERRUPT_ACK, isr);
    return ((volatile struct vblk_ring *)r)->status;
}

/* A request that must succeed: anything but status OK fails the image. */
static void request(struct vblk *d, uint32_t type, uint64_t sector,
                    void *buf, uint32_t len)
{
    int status;

    if (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT) {
        if (len == 0 || len % SECTOR_SIZE)
            fail("bad %s length %u", type_name(type), len);
        if (sector > d->capacity || len / SECTOR_SIZE > d->capacity - sector)
            fail("%s of sectors %lu..%lu is beyond capacity %lu",
                 type_name(type), (unsigned long)sector,
                 (unsigned long)(sector + len / SECTOR_SIZE - 1),
                 (unsigned long)d->capacity);
    }
    status = submit(d, type, sector, (uintptr_t)buf, len, type != VIRTIO_BLK_T_OUT);
    switch (status) {
    case VIRTIO_BLK_S_OK:
        return;
    case -1:
        vfail(d, "DEVICE_NEEDS_RESET (status 0x%x) during %s", rd32(d, MMIO_STATUS),
              type_name(type));
    case VIRTIO_BLK_S_IOERR:
        vfail(d, "%s sector %lu len %u: status IOERR", type_name(type),
              (unsigned long)sector, len);
    case VIRTIO_BLK_S_UNSUPP:
        vfail(d, "%s sector %lu len %u: status UNSUPP", type_name(type),
              (unsigned long)sector, len);
    default:
        vfail(d, "%s sector %lu len %u: status byte 0x%x", type_name(type),
              (unsigned long)sector, len, status);
    }
}

int vblk_raw(struct vblk *d, uint32_t type, uint64_t sector, uintptr_t addr, uint32_t len)
{
    return submit(d, type, sector, addr, len, type != VIRTIO_BLK_T_OUT);
}

struct vblk *vblk_reopen(struct vblk *d)
{
    d->ready = 0;
    return vblk_open(d->index);
}

void vblk_read(struct vblk *d, uint64_t sector, void *buf, uint32_t len)
{
    request(d, VIRTIO_BLK_T_IN, sector, buf, len);
}

void vblk_write(struct vblk *d, uint64_t sector, const void *buf, uint32_t len)
{
    request(d, VIRTIO_BLK_T_OUT, sector, (void *)buf, len);
}

int vblk_flush(struct vblk *d)
{
    if (!(d->accepted & VIRTIO_BLK_F_FLUSH)) {
        printf("%s: disk%d: VIRTIO_BLK_F_FLUSH not offered: no FLUSH sent "
               "(the device is write-through)\n", fw_name, d->index);
        return 0;
    }
    request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
    return 1;
}

void vblk_get_id(struct vblk *d, char id[VIRTIO_BLK_ID_BYTES + 1])
{
    struct vblk_ring *r = d->ring;
    int i;

    memset(r->id, 0, sizeof(r->id));
    request(d, VIRTIO_BLK_T_GET_ID, 0, r->id, VIRTIO_BLK_ID_BYTES);
    for (i = 0; i < VIRTIO_BLK_ID_BYTES; i++) {
        char c = ((volatile char *)r->id)[i];

        if (c == 0)
            break;
        id[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    id[i] = 0;
}
