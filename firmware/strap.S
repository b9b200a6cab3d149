/* S-mode trap entry for the Sv39 images (put its address in stvec).
 * Saves x1..x31 in a 32-slot frame on the stack (frame[i] = xi,
 * frame[2] = sp before the trap), calls
 *     uintptr_t handle_strap(scause, sepc, stval, frame)
 * and resumes at the returned pc with sret.  Handlers may modify the frame. */

    .file   "strap.S"               /* fixed STT_FILE name: reproducible */
    .text
    .balign 4
    .globl  s_trap_entry
s_trap_entry:
    addi    sp, sp, -256
    sd      x1, 8(sp)
    .irp    n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd      x\n, (\n * 8)(sp)
    .endr
    addi    t0, sp, 256
    sd      t0, 16(sp)              /* original sp */

    csrr    a0, scause
    csrr    a1, sepc
    csrr    a2, stval
    mv      a3, sp
    call    handle_strap
    csrw    sepc, a0

    ld      x1, 8(sp)
    .irp    n, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      x\n, (\n * 8)(sp)
    .endr
    addi    sp, sp, 256
    sret
