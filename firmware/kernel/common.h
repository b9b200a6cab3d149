/* common.h - constants shared by the kernel (kernel.c) and the user programs (user.c). */
#ifndef COMMON_H
#define COMMON_H

/* System call numbers (the RISC-V Linux numbers, for familiarity).
 * Calling convention: a7 = number, a0..a2 = arguments, result in a0. */
#define SYS_write   64      /* write(fd, buf, len) -> len or -1           */
#define SYS_exit    93      /* exit(code)          -> does not return      */
#define SYS_getpid  172     /* getpid()            -> pid                  */
#define SYS_sbrk    214     /* sbrk(n) -> old break; pages appear on demand */

/* Where the kernel image lives; user code must NOT be able to read it. */
#define KERNEL_BASE 0x80200000UL

#define PAGE_SIZE   4096UL

#endif
