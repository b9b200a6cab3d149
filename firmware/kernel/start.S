/* start.S - boot entry and the trap vector (the only assembly in the kernel).
 *
 * Trap frame layout (struct trapframe in kernel.c): 32 doublewords x[0..31],
 * x[i] holds register xi (x[0] is unused), followed by sepc at offset 256.
 *
 * sscratch convention: while a user process runs, sscratch points to its
 * trap frame; while the kernel runs, sscratch is 0.  That is how the trap
 * vector tells a trap from U-mode (normal) from a trap in the kernel (a bug).
 */
#define REGBYTES 8

    .section .text.entry
    .globl _start
_start:                         /* a0 = hart id, a1 = device tree (from SBI) */
    la      sp, stack_top       /* one kernel stack, see kernel.ld */
    la      t0, _bss_start      /* zero .bss (the stack is in it, unused yet) */
    la      t1, _bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  csrw    sscratch, zero      /* "we are in the kernel" */
    call    kmain               /* kmain(hartid, dtb) never returns */
3:  wfi
    j       3b

    /* A hart started by SBI HSM hart_start: a0 = hart id, a1 = its stack top. */
    .globl  secondary_start
secondary_start:
    mv      sp, a1
    csrw    sscratch, zero
    call    secondary_main      /* never returns */
4:  wfi
    j       4b

    .text
    .globl  trap_vector
    .balign 4                   /* stvec direct mode: 4-byte aligned */
trap_vector:
    csrrw   a0, sscratch, a0    /* a0 = trap frame, sscratch = user a0 */
    beqz    a0, trap_from_kernel

    /* save x1..x31 except a0 (x10) */
    .irp n, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd      x\n, \n*REGBYTES(a0)
    .endr
    csrr    t0, sscratch        /* the user's a0 */
    sd      t0, 10*REGBYTES(a0)
    csrw    sscratch, zero      /* now in the kernel */

    la      sp, stack_top       /* every trap starts on an empty kernel stack */
    call    trap_handler        /* a0 = frame in, a0 = frame to resume out */

    /* user_return(frame): enter/resume user mode with the registers in frame.
     * The C code has already set satp, sepc and sstatus.SPP=0/SPIE=1. */
    .globl  user_return
user_return:
    csrw    sscratch, a0        /* next trap from U-mode lands in this frame */
    .irp n, 1,2,3,4,5,6,7,8,9,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      x\n, \n*REGBYTES(a0)
    .endr
    ld      a0, 10*REGBYTES(a0) /* a0 last: it was our base register */
    sret

trap_from_kernel:               /* the kernel itself faulted: report and stop */
    csrrw   a0, sscratch, a0    /* restore a0 and sscratch = 0 */
    j       kernel_trap         /* C, never returns; uses the current sp */
