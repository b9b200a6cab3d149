/* The virtio-blk guest images' additions to ../fw.h (see lib.c). */
#ifndef DISK_LIB_H
#define DISK_LIB_H

#include "../fw.h"                       /* devices, printf, mem*, fw_exit */

#define MTIME_HZ        10000000UL      /* virt's CLINT timebase: 10 MHz */

static inline uint64_t mtime(void)
{
    return CLINT_MTIME;
}

/* Memory/IO ordering (RISC-V fence): "rw" = RAM accesses, "io" = MMIO. */
#define fence_rw()      __asm__ volatile ("fence rw, rw" ::: "memory")
#define fence_all()     __asm__ volatile ("fence iorw, iorw" ::: "memory")
#define barrier()       __asm__ volatile ("" ::: "memory")

/* Each image defines its name; fail() prefixes its message with it. */
extern const char fw_name[];

int  memcmp(const void *a, const void *b, size_t n);

/* Finisher 0x7777 (warm reset); fails if the board does not reset. */
__attribute__((noreturn)) void fw_reboot(void);
/* Print "<fw_name>: FAIL: <message>\n" and exit with code 1. */
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);

/* 32-bit load that survives an access fault: returns 1 and stores the
 * value, or returns 0 if the load trapped (nothing mapped there). */
int probe_read32(uintptr_t addr, uint32_t *val);
int probe_read64(uintptr_t addr, uint64_t *val);
/* A 64-bit store that survives an access fault: 1 if it was done, 0 if it trapped. */
int probe_write64(uintptr_t addr, uint64_t val);

#endif
