/* Startup and trap plumbing shared by the comparison guests.
 *
 * _start (M-mode, hart 0): stack, gp, mtvec = m_trap, PMP entry 0 opened to
 * the whole address space for S/U (QEMU enforces PMP: with entries
 * implemented and none matching, every S/U access would fail), .bss zeroed,
 * then main(); main's return value goes to the test finisher.
 *
 * probe(fn, a0, a1, mode) runs one experiment and comes back whatever it does:
 *   mode == 3: calls fn(a0, a1) in M-mode; returns 0 if fn returns (and
 *              leaves fn's return value in probe_ret).
 *   otherwise: mepc = fn, a0/a1 set, mret (the caller has put MPP, MPIE, ...
 *              in mstatus).  Code below M ends with a trap to M.
 * Every trap taken into M (m_trap) is recorded in `mrec` (mcause, mepc, mtval,
 * mstatus, a0 at the trap, vector number) and makes probe return 1: a longjmp
 * to the context probe saved.  A trap taken into S (s_trap) is appended to
 * `srec`; then, for an interrupt, sip.SSIP is cleared and sret resumes the
 * interrupted code; for an exception, `s_action` says: 1 = skip the 4-byte
 * instruction (sepc += 4) and sret, 0 = end the probe with an ecall to M.
 * s_trap saves t0-t2 in `sarea` through sscratch (it needs no stack), so
 * the caller must set sscratch = &sarea before an S-mode probe. */

    .file   "start.S"
    .section .text.init, "ax", @progbits
    .globl  _start
_start:
    csrw    mie, zero
    csrr    t0, mhartid
    bnez    t0, park
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top
    la      t0, m_trap
    csrw    mtvec, t0
    li      t0, -1
    csrw    pmpaddr0, t0            /* NAPOT, all ones: the whole space */
    li      t0, 0x1f                /* A=NAPOT, X, W, R */
    csrw    pmpcfg0, t0
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    main
    call    poweroff
park:
    wfi
    j       park

    .text
/* long probe(long fn, long a0, long a1, long mode) */
    .balign 4
    .globl  probe
probe:
    la      t0, probe_ctx
    sd      ra, 0(t0)
    sd      sp, 8(t0)
    sd      s0, 16(t0)
    sd      s1, 24(t0)
    sd      s2, 32(t0)
    sd      s3, 40(t0)
    sd      s4, 48(t0)
    sd      s5, 56(t0)
    sd      s6, 64(t0)
    sd      s7, 72(t0)
    sd      s8, 80(t0)
    sd      s9, 88(t0)
    sd      s10, 96(t0)
    sd      s11, 104(t0)
    mv      t1, a0
    mv      a0, a1
    mv      a1, a2
    li      t2, 3
    bne     a3, t2, 1f
    jalr    t1                      /* M-mode: plain call */
    la      t0, probe_ret
    sd      a0, 0(t0)               /* fn's return value */
    la      t0, probe_ctx           /* t0 is caller-saved: reload it */
    ld      ra, 0(t0)
    li      a0, 0
    ret
1:  csrw    mepc, t1
    mret

/* Machine trap entry (direct mode), also the common tail of the vector table. */
    .balign 256
    .globl  m_trap
m_trap:
    li      t0, -1                  /* vector number: -1 = direct entry */
m_trap_common:
    la      t1, mrec
    sd      t0, 40(t1)
    csrr    t0, mcause
    sd      t0, 0(t1)
    csrr    t0, mepc
    sd      t0, 8(t1)
    csrr    t0, mtval
    sd      t0, 16(t1)
    csrr    t0, mstatus
    sd      t0, 24(t1)
    sd      a0, 32(t1)
    li      t0, 1
    sd      t0, 48(t1)              /* valid */
    la      t0, probe_ctx
    ld      ra, 0(t0)
    ld      sp, 8(t0)
    ld      s0, 16(t0)
    ld      s1, 24(t0)
    ld      s2, 32(t0)
    ld      s3, 40(t0)
    ld      s4, 48(t0)
    ld      s5, 56(t0)
    ld      s6, 64(t0)
    ld      s7, 72(t0)
    ld      s8, 80(t0)
    ld      s9, 88(t0)
    ld      s10, 96(t0)
    ld      s11, 104(t0)
    li      a0, 1
    ret

/* Vectored machine trap table (mtvec = m_vectors | 1): entry n records n. */
    .balign 256
    .globl  m_vectors
m_vectors:
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    j       m_vec\n
    .endr
    .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
m_vec\n:
    li      t0, \n
    j       m_trap_common
    .endr

/* Supervisor trap entry (direct mode). */
    .balign 256
    .globl  s_trap
s_trap:
    csrrw   t0, sscratch, t0        /* t0 = &sarea, sscratch = old t0 */
    sd      t1, 8(t0)
    sd      t2, 16(t0)
    csrr    t1, sscratch
    sd      t1, 0(t0)
    csrw    sscratch, t0
    ld      t1, 24(t0)              /* number of records so far */
    li      t2, 8
    bgeu    t1, t2, s_end           /* full: stop */
    li      t2, 40
    mul     t2, t1, t2
    add     t2, t2, t0
    addi    t1, t1, 1
    sd      t1, 24(t0)
    csrr    t1, scause
    sd      t1, 40(t2)
    csrr    t1, sepc
    sd      t1, 48(t2)
    csrr    t1, stval
    sd      t1, 56(t2)
    csrr    t1, sstatus
    sd      t1, 64(t2)
    sd      a0, 72(t2)
    csrr    t1, scause
    bltz    t1, s_interrupt
    ld      t1, 32(t0)              /* s_action */
    beqz    t1, s_end
    csrr    t1, sepc
    addi    t1, t1, 4
    csrw    sepc, t1
s_ret:
    ld      t1, 8(t0)
    ld      t2, 16(t0)
    ld      t0, 0(t0)
    sret
s_interrupt:
    csrci   sip, 2                  /* SSIP */
    j       s_ret
s_end:
    ecall
    j       s_end

    .bss
    .balign 8
    .globl  probe_ctx, probe_ret, mrec
probe_ctx:  .zero   112
probe_ret:  .zero   8
mrec:       .zero   56
