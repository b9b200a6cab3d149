/* M-mode entry of the SMP guests: every hart comes here from the boot ROM.
 * Stacks: 8 KiB per hart below __stacks_top (hart h at __stacks_top - h*8K).
 * Hart 0 zeroes .bss; smp_boot (lib.c) holds the others until it is done. */

    .file   "start.S"
    .section .text.init, "ax", @progbits
    .globl _start
_start:
    csrw    mie, zero
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    csrr    a0, mhartid
    li      t0, 64                  /* MAX_HARTS */
    bgeu    a0, t0, park
    la      sp, __stacks_top
    slli    t0, a0, 13
    sub     sp, sp, t0
    la      t0, trap_entry
    csrw    mtvec, t0
    bnez    a0, 3f
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 3f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
3:  call    smp_boot                /* smp_boot(hartid, dtb): runs main */
park:
    wfi
    j       park

/* Trap entry: x1..x31 in a 32-slot frame on this hart's stack, then
 *     uintptr_t handle_trap(mcause, mepc, mtval, frame)
 * and mret to the pc it returns. */
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
    sd      t0, 16(sp)
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
