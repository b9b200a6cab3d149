/* kernel.c - a tiny Unix-like teaching kernel for RISC-V (RV64, S-mode, Sv39).
 *
 * What it does, in order:
 *   1. prints a banner, sets stvec and turns on Sv39 paging (kernel RAM is
 *      identity-mapped with one 1 GiB "gigapage", without the U bit);
 *   2. creates three user processes, each with its own page table, from the
 *      programs in user.c (copied out of the .user section of this image);
 *   3. runs them round-robin, preempting on the supervisor timer interrupt;
 *   4. serves system calls (write, exit, getpid, sbrk), maps heap and stack
 *      pages on demand from the page-fault handler, and kills a process that
 *      touches memory it must not;
 *   5. shuts the machine down through SBI when every process has exited.
 *
 * Other harts (SMP): the boot hart starts every other hart the SBI reports
 * stopped with HSM hart_start.  Each one turns on paging with the kernel's
 * table, prints that it started, runs its own task -- a few ticks of its own
 * SBI timer, counted into a shared total with an AMO -- and stops itself
 * (hart_stop).  The processes all run on the boot hart; it waits for the other
 * harts' tasks before it shuts down.
 *
 * Firmware interface: only SBI (console putchar, set_timer, system reset, and
 * HSM on several harts).  There is one kernel stack for the boot hart: every
 * trap runs to completion and then returns to some user process, so the
 * kernel needs no threads of its own; each other hart has a small stack.
 */
#include "common.h"
#include "format.h"

typedef unsigned long u64;
typedef u64 pte_t;

/* ---------------------------------------------------------------- CSRs */

#define csr_read(csr)      ({ u64 v_; asm volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define csr_write(csr, v)  asm volatile("csrw " #csr ", %0" :: "r"((u64)(v)))
#define csr_set(csr, v)    asm volatile("csrs " #csr ", %0" :: "r"((u64)(v)))
#define csr_clear(csr, v)  asm volatile("csrc " #csr ", %0" :: "r"((u64)(v)))

#define SSTATUS_SPIE   (1UL << 5)     /* interrupts enabled after sret */
#define SSTATUS_SPP    (1UL << 8)     /* previous mode: 0 = user */
#define SSTATUS_SUM    (1UL << 18)    /* S-mode may access U pages */
#define SIE_STIE       (1UL << 5)     /* supervisor timer interrupt enable */
#define SIP_STIP       (1UL << 5)     /* ... and pending */
#define SCOUNTEREN_TM  (1UL << 1)     /* U-mode may read the `time` CSR */

#define SCAUSE_INTR    (1UL << 63)
#define IRQ_S_TIMER    5
#define EXC_ECALL_U    8
#define EXC_INST_PF    12
#define EXC_LOAD_PF    13
#define EXC_STORE_PF   15

static inline u64 rdtime(void) { u64 t; asm volatile("rdtime %0" : "=r"(t)); return t; }
static inline void sfence_vma(void) { asm volatile("sfence.vma zero, zero" ::: "memory"); }

/* ----------------------------------------------------------------- SBI */

#define SBI_LEGACY_SET_TIMER  0x00
#define SBI_LEGACY_PUTCHAR    0x01
#define SBI_LEGACY_SHUTDOWN   0x08
#define SBI_EXT_BASE          0x10        /* FID 3: probe_extension */
#define SBI_EXT_TIME          0x54494D45  /* "TIME", FID 0: set_timer */
#define SBI_EXT_SRST          0x53525354  /* "SRST", FID 0: system_reset */
#define SBI_EXT_HSM           0x48534D    /* "HSM": 0 hart_start, 1 hart_stop, 2 get_status */
#define HSM_STOPPED           1

struct sbiret { long error, value; };

static struct sbiret sbi_call3(long eid, long fid, long arg0, long arg1, long arg2)
{
    register long a0 asm("a0") = arg0;
    register long a1 asm("a1") = arg1;
    register long a2 asm("a2") = arg2;
    register long a6 asm("a6") = fid;
    register long a7 asm("a7") = eid;
    asm volatile("ecall" : "+r"(a0), "+r"(a1) : "r"(a2), "r"(a6), "r"(a7) : "memory");
    return (struct sbiret){ a0, a1 };
}

static struct sbiret sbi_call(long eid, long fid, long arg0, long arg1)
{
    return sbi_call3(eid, fid, arg0, arg1, 0);
}

static void kputc(char c) { sbi_call(SBI_LEGACY_PUTCHAR, 0, c, 0); }

/* One hart prints at a time: a spinlock (amoswap.w.aq / amoswap.w.rl). */
static volatile int console_lock;

static __attribute__((format(printf, 1, 2))) void kprintf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, sizeof buf, fmt, ap);
    va_end(ap);
    while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
        ;
    for (char *s = buf; *s; s++) kputc(*s);
    __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

static int have_time_ext;               /* SBI TIME extension present? */

static void set_timer(u64 when)         /* also clears a pending timer irq */
{
    if (have_time_ext) sbi_call(SBI_EXT_TIME, 0, when, 0);
    else               sbi_call(SBI_LEGACY_SET_TIMER, 0, when, 0);
}

static __attribute__((noreturn)) void shutdown(int failure)
{
    /* SRST: type 0 = shutdown, reason 0 = none, 1 = system failure */
    sbi_call(SBI_EXT_SRST, 0, 0, failure ? 1 : 0);
    sbi_call(SBI_LEGACY_SHUTDOWN, 0, 0, 0);     /* only if SRST returned */
    for (;;) asm volatile("wfi");
}

static __attribute__((noreturn)) void panic(const char *msg)
{
    kprintf("kernel: panic: %s\n", msg);
    shutdown(1);
}

/* ------------------------------------------------ physical page allocator */

extern char _end[], _user_start[], _user_end[];  /* from kernel.ld */
#define POOL_SIZE  (1UL << 20)           /* 1 MiB of RAM after the image */
static u64 next_free, pool_end;

/* Hand out zeroed 4 KiB pages; never freed (this kernel is short-lived). */
static void *alloc_page(void)
{
    if (next_free >= pool_end) panic("out of memory");
    u64 *page = (u64 *)next_free;
    next_free += PAGE_SIZE;
    for (int i = 0; i < 512; i++) page[i] = 0;
    return page;
}

/* ---------------------------------------------------------- Sv39 paging */

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_U (1UL << 4)
#define PTE_G (1UL << 5)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)

#define PA2PTE(pa)       (((u64)(pa) >> 12) << 10)
#define PTE2PA(pte)      (((pte) >> 10) << 12)
#define VPN(va, level)   (((u64)(va) >> (12 + 9 * (level))) & 0x1ff)
#define SATP_SV39(root)  ((8UL << 60) | ((u64)(root) >> 12))

/* The kernel's page table: a single gigapage maps 0x80000000..0xbfffffff
 * (all of RAM, including this kernel) 1:1, R/W/X, supervisor only.  Its A
 * and D bits are preset; user PTEs leave A/D clear for the hardware to set. */
static pte_t kernel_pt[512] __attribute__((aligned(4096)));
#define RAM_BASE 0x80000000UL

/* Find the level-0 PTE for va, creating intermediate tables if alloc.
 * Returns 0 if a table is missing (or va lies in a gigapage/megapage). */
static pte_t *walk(pte_t *root, u64 va, int alloc)
{
    pte_t *table = root;
    for (int level = 2; level > 0; level--) {
        pte_t *pte = &table[VPN(va, level)];
        if (*pte & PTE_V) {
            if (*pte & (PTE_R | PTE_W | PTE_X)) return 0;   /* a leaf */
            table = (pte_t *)PTE2PA(*pte);
        } else {
            if (!alloc) return 0;
            table = alloc_page();
            *pte = PA2PTE(table) | PTE_V;                    /* pointer */
        }
    }
    return &table[VPN(va, 0)];
}

static void map_page(pte_t *root, u64 va, void *pa, u64 flags)
{
    *walk(root, va, 1) = PA2PTE(pa) | flags | PTE_V;
}

static int is_mapped_user(pte_t *root, u64 va)
{
    pte_t *pte = walk(root, va, 0);
    return pte && (*pte & PTE_V) && (*pte & PTE_U);
}

/* ------------------------------------------------------------- processes */

/* User address space layout (all below 1 GiB, i.e. root-table slot 0): */
#define USER_BASE       0x00010000UL    /* program blob (copy of .user) */
#define HEAP_BASE       0x01000000UL    /* sbrk area, paged in on demand */
#define HEAP_MAX        0x02000000UL
#define USER_STACK_TOP  0x40000000UL    /* one page mapped at start ... */
#define STACK_MAX       (16 * PAGE_SIZE) /* ... grows on demand to 64 KiB */
#define USER_TOP        0x40000000UL

#define TIMER_QUANTUM   100000UL        /* 10 ms at the 10 MHz timebase */

/* Saved user registers: x[i] = register xi (x[0] unused).  start.S knows
 * this layout, and that the frame is the first member of struct proc. */
struct trapframe { u64 x[32]; u64 sepc; };

enum { UNUSED, RUNNABLE, DEAD };

struct proc {
    struct trapframe tf;
    int pid, state;
    const char *name;
    pte_t *pagetable;
    u64 brk;                    /* current end of the heap */
};

#define NPROC 3
static struct proc procs[NPROC];
static struct proc *current;
static long context_switches;

extern void user_proc_a(void), user_proc_b(void), user_proc_c(void); /* user.c */
extern void trap_vector(void);                                        /* start.S */
extern __attribute__((noreturn)) void user_return(struct trapframe *tf);

static void proc_create(void (*entry)(void), const char *name)
{
    static int npids;
    struct proc *p = &procs[npids++];
    p->pid = npids;
    p->name = name;
    p->pagetable = alloc_page();

    /* Share the kernel gigapage: the kernel keeps running after a satp
     * switch, and the missing U bit keeps the process out of it. */
    p->pagetable[VPN(RAM_BASE, 2)] = kernel_pt[VPN(RAM_BASE, 2)];

    /* A private copy of the user program blob (one RWX segment, for brevity). */
    for (u64 off = 0; off < (u64)(_user_end - _user_start); off += PAGE_SIZE) {
        char *page = alloc_page();
        for (u64 i = 0; i < PAGE_SIZE; i++) page[i] = _user_start[off + i];
        map_page(p->pagetable, USER_BASE + off, page, PTE_R | PTE_W | PTE_X | PTE_U);
    }
    /* The first stack page; more are paged in on demand. */
    map_page(p->pagetable, USER_STACK_TOP - PAGE_SIZE, alloc_page(), PTE_R | PTE_W | PTE_U);

    p->brk = HEAP_BASE;
    p->tf.sepc = USER_BASE + ((u64)entry - (u64)_user_start);
    p->tf.x[2] = USER_STACK_TOP;                                  /* sp */
    p->state = RUNNABLE;
    kprintf("kernel: created pid %d (%s), entry 0x%lx, page table at 0x%lx\n",
            p->pid, name, p->tf.sepc, (u64)p->pagetable);
}

static void harts_wait(void);

/* Round robin: pick the next RUNNABLE process after the current one and
 * switch to its address space.  Shuts down when none is left. */
static struct trapframe *schedule(void)
{
    int cur = current ? (int)(current - procs) : NPROC - 1;
    for (int i = 1; i <= NPROC; i++) {
        struct proc *p = &procs[(cur + i) % NPROC];
        if (p->state != RUNNABLE) continue;
        if (p != current) {
            if (current) context_switches++;
            current = p;
            csr_write(satp, SATP_SV39(p->pagetable));
            sfence_vma();               /* no ASIDs: flush the whole TLB */
        }
        return &p->tf;
    }
    kprintf("kernel: %ld context switches\n", context_switches);
    harts_wait();
    kprintf("kernel: all processes exited\n");
    shutdown(0);
}

/* Prepare the CPU for sret into the process owning tf. */
static struct trapframe *resume(struct trapframe *tf)
{
    csr_write(sepc, tf->sepc);
    csr_clear(sstatus, SSTATUS_SPP);    /* return to U-mode ...          */
    csr_set(sstatus, SSTATUS_SPIE);     /* ... with interrupts enabled   */
    return tf;
}

/* ---------------------------------------------------------- system calls */

static long sys_write(struct proc *p, long fd, u64 buf, long len)
{
    if ((fd != 1 && fd != 2) || len < 0 || buf >= USER_TOP || (u64)len > USER_TOP - buf)
        return -1;
    for (u64 va = buf & ~(PAGE_SIZE - 1); va < buf + len; va += PAGE_SIZE)
        if (!is_mapped_user(p->pagetable, va)) return -1;
    /* The process's page table is still active, so read its buffer in
     * place.  sstatus.SUM opens the U pages to the kernel just for this. */
    csr_set(sstatus, SSTATUS_SUM);
    for (long i = 0; i < len; i++) kputc(((volatile char *)buf)[i]);
    csr_clear(sstatus, SSTATUS_SUM);
    return len;
}

static long sys_sbrk(struct proc *p, long increment)
{
    u64 old = p->brk;
    if (increment < 0 || (u64)increment > HEAP_MAX - old) return -1;
    p->brk += increment;        /* no mapping now: pages come on demand */
    return old;
}

static void syscall(struct proc *p)
{
    struct trapframe *tf = &p->tf;
    long a0 = tf->x[10], a1 = tf->x[11], a2 = tf->x[12], ret;
    switch (tf->x[17]) {                                          /* a7 */
    case SYS_write:  ret = sys_write(p, a0, a1, a2); break;
    case SYS_getpid: ret = p->pid; break;
    case SYS_sbrk:   ret = sys_sbrk(p, a0); break;
    case SYS_exit:
        kprintf("kernel: pid %d exited with code %ld\n", p->pid, a0);
        p->state = DEAD;
        return;
    default:
        kprintf("kernel: pid %d: unknown system call %ld\n", p->pid, tf->x[17]);
        ret = -1;
    }
    tf->x[10] = ret;
}

/* ------------------------------------------------------------------ traps */

static const char *fault_name(u64 scause)
{
    return scause == EXC_INST_PF ? "instruction page fault"
         : scause == EXC_LOAD_PF ? "load page fault" : "store page fault";
}

static void page_fault(struct proc *p, u64 scause, u64 va)
{
    u64 page = va & ~(PAGE_SIZE - 1);
    int in_heap  = va >= HEAP_BASE && va < p->brk;
    int in_stack = va >= USER_STACK_TOP - STACK_MAX && va < USER_STACK_TOP;
    pte_t *pte = walk(p->pagetable, page, 0);

    if (scause != EXC_INST_PF && (in_heap || in_stack) && !(pte && (*pte & PTE_V))) {
        /* Demand paging: a fresh zeroed page, then retry the instruction
         * (sepc is left pointing at it). */
        map_page(p->pagetable, page, alloc_page(), PTE_R | PTE_W | PTE_U);
        sfence_vma();
        kprintf("kernel: demand-paged 0x%lx for pid %d\n", page, p->pid);
        return;
    }
    kprintf("kernel: killed pid %d (%s at 0x%lx, scause=%ld)\n",
            p->pid, fault_name(scause), va, scause);
    p->state = DEAD;
}

/* Called from trap_vector for every trap from U-mode, with the registers
 * already saved in tf (== &current->tf).  Returns the frame to resume. */
struct trapframe *trap_handler(struct trapframe *tf)
{
    u64 scause = csr_read(scause), stval = csr_read(stval);
    struct proc *p = current;
    tf->sepc = csr_read(sepc);

    if (scause == (SCAUSE_INTR | IRQ_S_TIMER)) {
        set_timer(rdtime() + TIMER_QUANTUM);
        return resume(schedule());              /* preemption */
    } else if (scause == EXC_ECALL_U) {
        tf->sepc += 4;                          /* continue after the ecall */
        syscall(p);
    } else if (scause == EXC_INST_PF || scause == EXC_LOAD_PF || scause == EXC_STORE_PF) {
        page_fault(p, scause, stval);
    } else {
        kprintf("kernel: unexpected trap from pid %d: scause=0x%lx sepc=0x%lx stval=0x%lx\n",
                p->pid, scause, tf->sepc, stval);
        shutdown(1);
    }
    return resume(p->state == RUNNABLE ? tf : schedule());
}

/* Called from trap_vector if the kernel itself traps: always a bug. */
void kernel_trap(void)
{
    kprintf("kernel: unexpected trap in kernel: scause=0x%lx sepc=0x%lx stval=0x%lx\n",
            csr_read(scause), csr_read(sepc), csr_read(stval));
    shutdown(1);
}

/* ------------------------------------------------------------ other harts */

#define MAX_HARTS   64                  /* hart ids probed with hart_get_status */
#define MAX_OTHERS  7                   /* harts started besides the boot hart */
#define HART_TICKS  3                   /* each other hart's task: its own timer ticks */
#define HART_STACK  4096

static char hart_stacks[MAX_OTHERS][HART_STACK] __attribute__((aligned(16)));
static int harts_started;
static volatile int harts_done, ticks_total;

/* Entered from secondary_start (start.S) on a hart started by hart_start, in
 * S-mode with satp = 0, sp = its stack. */
void secondary_main(u64 hartid)
{
    csr_write(stvec, trap_vector);
    csr_write(satp, SATP_SV39(kernel_pt));
    sfence_vma();
    kprintf("kernel: hart %ld started (SBI HSM), sv39 paging on\n", hartid);

    /* The task: HART_TICKS ticks of this hart's own timer, waited for in WFI
     * with the interrupt enabled in sie but sstatus.SIE off (not taken). */
    csr_set(sie, SIE_STIE);
    for (int i = 0; i < HART_TICKS; i++) {
        set_timer(rdtime() + TIMER_QUANTUM);
        while (!(csr_read(sip) & SIP_STIP))
            asm volatile("wfi");
        __atomic_fetch_add(&ticks_total, 1, __ATOMIC_RELAXED);
    }
    set_timer(-1UL);                            /* no more ticks: STIP clears */
    csr_clear(sie, SIE_STIE);
    kprintf("kernel: hart %ld: task done, %d timer ticks\n", hartid, HART_TICKS);
    __atomic_fetch_add(&harts_done, 1, __ATOMIC_RELEASE);
    sbi_call(SBI_EXT_HSM, 1, 0, 0);             /* hart_stop: does not return */
    for (;;)
        asm volatile("wfi");
}

/* Start every hart the SBI reports stopped (HSM present), up to MAX_OTHERS. */
static void harts_start(u64 boot_hart)
{
    extern char secondary_start[];                                   /* start.S */
    struct sbiret hsm = sbi_call(SBI_EXT_BASE, 3, SBI_EXT_HSM, 0);  /* probe_extension */
    int present = 1;
    if (hsm.error == 0 && hsm.value != 0) {
        for (u64 h = 0; h < MAX_HARTS; h++) {
            if (h == boot_hart) continue;
            struct sbiret st = sbi_call(SBI_EXT_HSM, 2, h, 0);      /* hart_get_status */
            if (st.error) continue;                                  /* no such hart */
            present++;
            if (st.value != HSM_STOPPED || harts_started == MAX_OTHERS) continue;
            u64 stack_top = (u64)hart_stacks[harts_started] + HART_STACK;
            if (sbi_call3(SBI_EXT_HSM, 0, h, (u64)secondary_start, stack_top).error == 0)
                harts_started++;
        }
    }
    kprintf("kernel: %d hart%s, %d started with SBI HSM\n", present,
            present == 1 ? "" : "s", harts_started);
}

/* Before the shutdown: wait until every started hart has done its task. */
static void harts_wait(void)
{
    if (!harts_started) return;
    while (__atomic_load_n(&harts_done, __ATOMIC_ACQUIRE) != harts_started)
        ;
    kprintf("kernel: %d other harts ran their tasks, %d timer ticks in all\n",
            harts_started, ticks_total);
}

/* ------------------------------------------------------------------- boot */

void kmain(u64 hartid, u64 dtb)
{
    kprintf("kernel: hvemu teaching kernel booting on hart %ld\n", hartid);
    kprintf("kernel: device tree at 0x%lx (unused), image ends at 0x%lx\n", dtb, (u64)_end);

    next_free = (u64)_end;
    pool_end = next_free + POOL_SIZE;
    csr_write(stvec, trap_vector);

    kernel_pt[VPN(RAM_BASE, 2)] = PA2PTE(RAM_BASE) | PTE_V | PTE_R | PTE_W | PTE_X
                                | PTE_G | PTE_A | PTE_D;
    csr_write(satp, SATP_SV39(kernel_pt));
    sfence_vma();
    kprintf("kernel: satp=0x%lx (Sv39, root table at 0x%lx)\n", csr_read(satp), (u64)kernel_pt);
    kprintf("kernel: sv39 paging on\n");

    struct sbiret probe = sbi_call(SBI_EXT_BASE, 3, SBI_EXT_TIME, 0);  /* probe_extension */
    have_time_ext = probe.error == 0 && probe.value != 0;
    kprintf("kernel: timer via SBI %s, quantum %ld ticks\n",
            have_time_ext ? "TIME extension" : "legacy set_timer", TIMER_QUANTUM);
    csr_write(scounteren, SCOUNTEREN_TM);       /* user programs use rdtime */
    harts_start(hartid);

    proc_create(user_proc_a, "A: ticks, then heap via sbrk");
    proc_create(user_proc_b, "B: ticks, then a big stack array");
    proc_create(user_proc_c, "C: reads kernel memory");

    csr_set(sie, SIE_STIE);     /* taken in U-mode; the kernel runs with SIE=0 */
    set_timer(rdtime() + TIMER_QUANTUM);
    user_return(resume(schedule()));
}
