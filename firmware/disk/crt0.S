/* Startup code for the virtio-blk images: stack, .bss, trap vector, then
 * main(hartid, dtb); main's return value becomes the exit code. */

    .file   "crt0.S"                /* fixed STT_FILE name: reproducible */
    .section .text.init, "ax", @progbits
    .globl _start
_start:
    csrw    mie, zero               /* polling only: no interrupts taken */
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    csrr    t0, mhartid
    bnez    t0, park                /* only hart 0 runs the image */

    la      sp, __stack_top
    la      t0, trap_entry
    csrw    mtvec, t0               /* direct mode (low bits 00) */

    la      t0, __bss_start         /* zero .bss (8-byte aligned by link.ld) */
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b

2:  call    main                    /* a0 = hart id, a1 = dtb (untouched) */
    call    fw_exit                 /* never returns */

park:
    wfi
    j       park

/* M-mode trap entry.  Saves x1..x31 in a 32-slot frame on the stack,
 * calls  uintptr_t handle_trap(mcause, mepc, mtval, frame)  and resumes
 * at the returned pc (lib.c: skips a faulting probe load, else fails). */
    .text
    .balign 4
    .globl  trap_entry
trap_entry:
    addi    sp, sp, -256
    sd      x1, 8(sp)
    .irp    n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd      x\n, (\n * 8)(sp)
    .endr
    addi    t0, sp, 256
    sd      t0, 16(sp)              /* original sp */

    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    mv      a3, sp
    call    handle_trap
    csrw    mepc, a0

    ld      x1, 8(sp)
    .irp    n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      x\n, (\n * 8)(sp)
    .endr
    addi    sp, sp, 256
    mret
