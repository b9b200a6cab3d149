/* user.c - the user programs, run in U-mode.
 *
 * The linker puts all of this file (code, strings, data) into the .user
 * section; the kernel copies that blob to USER_BASE in each process and
 * starts the process at user_proc_a/b/c.  The code must be self-contained
 * (it cannot call kernel functions) and position independent: medany code
 * addresses everything pc-relative, so it runs wherever the blob is copied.
 */
#include "common.h"
#include "format.h"

/* ------------------------------------------------- a very small "libc" */

static long syscall3(long n, long arg0, long arg1, long arg2)
{
    register long a0 asm("a0") = arg0;
    register long a1 asm("a1") = arg1;
    register long a2 asm("a2") = arg2;
    register long a7 asm("a7") = n;
    asm volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
    return a0;
}

static long write(int fd, const void *buf, long len) { return syscall3(SYS_write, fd, (long)buf, len); }
static long getpid(void)          { return syscall3(SYS_getpid, 0, 0, 0); }
static void *sbrk(long increment) { return (void *)syscall3(SYS_sbrk, increment, 0, 0); }
static __attribute__((noreturn)) void exit(int code)
{
    syscall3(SYS_exit, code, 0, 0);
    for (;;) ;
}

/* Format a whole line, then write it with ONE system call, so a timer
 * preemption can never split a line in the middle. */
static __attribute__((format(printf, 1, 2))) void printf(const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vformat(buf, sizeof buf, fmt, ap);
    va_end(ap);
    write(1, buf, n);
}

/* Busy-wait on the `time` CSR (the kernel set scounteren.TM for us).
 * 300000 ticks = 30 ms = 3 timer quanta, so the timer interrupt must
 * preempt us at least once between two prints. */
#define TICK_DELAY 300000UL
static void spin(unsigned long ticks)
{
    unsigned long t0, t;
    asm volatile("rdtime %0" : "=r"(t0));
    do asm volatile("rdtime %0" : "=r"(t)); while (t - t0 < ticks);
}

static void ticks(const char *name)
{
    for (int i = 1; i <= 5; i++) {
        spin(TICK_DELAY);
        printf("proc %s: tick %d\n", name, i);
    }
}

/* --------------------------------------------------------- the programs */

/* A: counts, then grows its heap; the new pages exist only once touched. */
void user_proc_a(void)
{
    printf("proc A: hello, I am pid %ld\n", getpid());
    ticks("A");

    unsigned long *heap = sbrk(2 * PAGE_SIZE);
    printf("proc A: sbrk(%ld) returned 0x%lx, writing two pages\n", 2 * PAGE_SIZE, (unsigned long)heap);
    int words = 2 * PAGE_SIZE / sizeof *heap, bad = 0;
    for (int i = 0; i < words; i++) heap[i] = i * 0x9e3779b97f4a7c15UL;    /* faults here */
    for (int i = 0; i < words; i++) bad += heap[i] != i * 0x9e3779b97f4a7c15UL;
    printf("proc A: read back %d words from the heap, %d wrong: %s\n", words, bad, bad ? "FAIL" : "ok");
    exit(bad ? 1 : 0);
}

/* B: counts, then uses a stack array larger than its one initial stack page. */
static __attribute__((noinline)) int big_stack_array(void)
{
    volatile unsigned char big[3 * PAGE_SIZE];
    int bad = 0;
    for (unsigned i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 7);
    for (unsigned i = 0; i < sizeof big; i++) bad += big[i] != (unsigned char)(i * 7);
    return bad;
}

void user_proc_b(void)
{
    printf("proc B: hello, I am pid %ld\n", getpid());
    ticks("B");
    printf("proc B: using a %ld-byte array on the stack\n", 3 * PAGE_SIZE);
    int bad = big_stack_array();
    printf("proc B: read back the stack array, %d bytes wrong: %s\n", bad, bad ? "FAIL" : "ok");
    exit(bad ? 1 : 0);
}

/* C: tries to read the kernel image; its PTE lacks the U bit. */
void user_proc_c(void)
{
    printf("proc C: hello, I am pid %ld\n", getpid());
    spin(TICK_DELAY);
    printf("proc C: reading kernel memory at 0x%lx\n", KERNEL_BASE);
    unsigned long v = *(volatile unsigned long *)KERNEL_BASE;       /* faults */
    printf("proc C: read 0x%lx from the kernel - this must not happen!\n", v);
    exit(1);
}
