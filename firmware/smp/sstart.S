/* S-mode entry of rfence.elf: the SBI enters _start on one boot hart (any hart
 * id: OpenSBI on QEMU picks the first to arrive) with a0 = hart id, a1 = device
 * tree; the boot hart starts the others at secondary_start with SBI HSM
 * hart_start (a0 = hart id).  8 KiB of stack per hart, as in start.S. */

    .file   "sstart.S"
    .section .text.init, "ax", @progbits
    .globl _start
_start:
    csrw    sie, zero
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    set_stack
    call    boot_main               /* boot_main(hartid, dtb), never returns */
    j       park

    .globl  secondary_start
secondary_start:
    csrw    sie, zero
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    call    set_stack
    call    secondary_main          /* secondary_main(hartid), never returns */
park:
    wfi
    j       park

/* sp = __stacks_top - a0 * 8K (hart ids up to 63); a0 is kept */
set_stack:
    li      t0, 64
    bgeu    a0, t0, park
    la      sp, __stacks_top
    slli    t0, a0, 13
    sub     sp, sp, t0
    ret
