# The F and D extensions (unprivileged spec, "F" and "D" chapters, version 2.2; RV64):
# f0-f31 (HartState.f, 64 bits each), fflags and frm (the two fields of fcsr), and
# every F/D instruction.  One decoder (`fp_decode`) and one executor (`fp_execute`,
# `fp_load_store`) serve both engines: the fast path pre-decodes OP-FP and the fused
# multiply-adds into OP_FP slots that call fp_execute, and FLW/FLD/FSW/FSD and their
# compressed forms into OP_FPMEM slots that call fp_mem_fast (the TLB hit; the rest is
# fp_load_store's).  Both are calls, not inline arms, so the integer arms of the fast
# path keep their registers.  What is illegal (FS off, an invalid dynamic rounding mode,
# a reserved encoding) goes to the reference interpreter, which calls the same
# functions and raises the illegal-instruction exception.
#
# The arithmetic is hvemu's own software IEEE implementation, core/softfp.h: every
# operation takes the rounding mode and gives its exception flags explicitly (RISC-V's
# rm and fflags encodings), NaN results are the canonical NaN, tininess is detected
# after rounding, and conversions to integers saturate as the spec's table says.
# Software rather than the host FPU, decided by measurement: SSE has no
# round-to-nearest-max-magnitude mode (RMM needs software anyway), its NaN, FMA-invalid,
# min/max and conversion results all need RISC-V fix-ups, and under valgrind -- the perf
# gate's instrument -- MXCSR rounding modes and exception flags are not emulated, so
# host-FPU results would differ there (a host-FPU prototype printed 149 of fpu.elf's 448
# lines wrong under valgrind).
#
# The hypervisor sees this state through VCpu (get_f/set_f, fflags, frm, fs): fcsr
# accesses exit to its CSR file like every CSR instruction, and mstatus.FS lives here,
# in HartState.fs, because the core sets it to Dirty as instructions change FP state.

cdef extern from "softfp.h" nogil:
    uint64_t hv_fadd(int d, uint64_t a, uint64_t b, int neg_b, int rm, uint32_t* fl)
    uint64_t hv_fmul(int d, uint64_t a, uint64_t b, int rm, uint32_t* fl)
    uint64_t hv_fdiv(int d, uint64_t a, uint64_t b, int rm, uint32_t* fl)
    uint64_t hv_fsqrt(int d, uint64_t a, int rm, uint32_t* fl)
    uint64_t hv_fmadd(int d, uint64_t a, uint64_t b, uint64_t c, int neg_prod, int neg_c,
                      int rm, uint32_t* fl)
    uint64_t hv_from_int(int d, int64_t v, int rm, uint32_t* fl)
    uint64_t hv_from_u64(int d, uint64_t v, int sign, int rm, uint32_t* fl)
    uint64_t hv_to_int(int d, uint64_t a, int bits, int is_signed, int rm, uint32_t* fl)
    uint64_t hv_f64_to_f32(uint64_t a, int rm, uint32_t* fl)
    uint64_t hv_f32_to_f64(uint64_t a, uint32_t* fl)
    int hv_feq(int d, uint64_t a, uint64_t b, uint32_t* fl)
    int hv_flt(int d, uint64_t a, uint64_t b, uint32_t* fl)
    int hv_fle(int d, uint64_t a, uint64_t b, uint32_t* fl)
    uint64_t hv_fminmax(int d, uint64_t a, uint64_t b, int max, uint32_t* fl)

cdef extern from *:
    """
    #define HV_BOX ((uint64_t)0xffffffff00000000ull)
    #define HV_CNAN32 ((uint32_t)0x7fc00000u)
    #define HV_CNAN64 ((uint64_t)0x7ff8000000000000ull)
    #define HV_SIGN32 ((uint32_t)0x80000000u)
    #define HV_SIGN64 ((uint64_t)0x8000000000000000ull)
    """
    const uint64_t NAN_BOX "HV_BOX"         # the upper half of a NaN-boxed single
    const uint32_t CNAN32 "HV_CNAN32"       # the canonical NaNs
    const uint64_t CNAN64 "HV_CNAN64"
    const uint32_t SIGN32 "HV_SIGN32"
    const uint64_t SIGN64 "HV_SIGN64"

cdef enum:
    FS_OFF = 0
    FS_DIRTY = 3
    FLAG_NV = 16
    RM_DYN = 7

# The F/D computational operations, as fp_decode gives them (0: a reserved encoding).
# The ones before FOP_NO_RM round (their rm field is a rounding mode: 7 = frm).
cdef enum:
    FOP_ILLEGAL = 0
    FOP_FADD_S
    FOP_FSUB_S
    FOP_FMUL_S
    FOP_FDIV_S
    FOP_FSQRT_S
    FOP_FMADD_S
    FOP_FMSUB_S
    FOP_FNMSUB_S
    FOP_FNMADD_S
    FOP_FADD_D
    FOP_FSUB_D
    FOP_FMUL_D
    FOP_FDIV_D
    FOP_FSQRT_D
    FOP_FMADD_D
    FOP_FMSUB_D
    FOP_FNMSUB_D
    FOP_FNMADD_D
    FOP_FCVT_S_D
    FOP_FCVT_D_S
    FOP_FCVT_S_W
    FOP_FCVT_S_WU
    FOP_FCVT_S_L
    FOP_FCVT_S_LU
    FOP_FCVT_D_W
    FOP_FCVT_D_WU
    FOP_FCVT_D_L
    FOP_FCVT_D_LU
    FOP_FCVT_W_S          # FCVT to an integer register: x[rd]
    FOP_FCVT_WU_S
    FOP_FCVT_L_S
    FOP_FCVT_LU_S
    FOP_FCVT_W_D
    FOP_FCVT_WU_D
    FOP_FCVT_L_D
    FOP_FCVT_LU_D
    FOP_NO_RM
    FOP_FSGNJ_S = FOP_NO_RM
    FOP_FSGNJN_S
    FOP_FSGNJX_S
    FOP_FSGNJ_D
    FOP_FSGNJN_D
    FOP_FSGNJX_D
    FOP_FMIN_S
    FOP_FMAX_S
    FOP_FMIN_D
    FOP_FMAX_D
    FOP_FMV_W_X
    FOP_FMV_D_X
    FOP_TO_X              # from here on the result goes to x[rd]
    FOP_FLE_S = FOP_TO_X
    FOP_FLT_S
    FOP_FEQ_S
    FOP_FLE_D
    FOP_FLT_D
    FOP_FEQ_D
    FOP_FCLASS_S
    FOP_FCLASS_D
    FOP_FMV_X_W
    FOP_FMV_X_D

cdef uint8_t FOPS_ARITH[2][4]       # [fmt][funct5 >> 0 for 0x00, 0x04, 0x08, 0x0c]
cdef uint8_t FOPS_FMA[2][4]         # [fmt][(opcode >> 2) & 3]
FOPS_ARITH[0][:] = [FOP_FADD_S, FOP_FSUB_S, FOP_FMUL_S, FOP_FDIV_S]
FOPS_ARITH[1][:] = [FOP_FADD_D, FOP_FSUB_D, FOP_FMUL_D, FOP_FDIV_D]
FOPS_FMA[0][:] = [FOP_FMADD_S, FOP_FMSUB_S, FOP_FNMSUB_S, FOP_FNMADD_S]
FOPS_FMA[1][:] = [FOP_FMADD_D, FOP_FMSUB_D, FOP_FNMSUB_D, FOP_FNMADD_D]


cdef uint32_t fp_decode(uint32_t insn) noexcept nogil:
    """The operation of an OP-FP or fused multiply-add instruction, with its rm and rs3:
    fop | rm << 8 | rs3 << 16, or 0 for a reserved encoding (an illegal instruction
    whatever the state; the state-dependent checks are fp_execute's)."""
    cdef uint32_t opcode = insn & 0x7f, rm = (insn >> 12) & 7, rs2 = (insn >> 20) & 31
    cdef uint32_t f7 = insn >> 25, fmt = f7 & 3, fop = FOP_ILLEGAL
    if opcode != 0x53:                          # FMADD, FMSUB, FNMSUB, FNMADD
        if fmt <= 1:
            fop = FOPS_FMA[fmt][(opcode >> 2) & 3]
    elif fmt > 1:
        return 0                                # H and Q formats: not implemented
    elif f7 <= 0x0d:                            # FADD, FSUB, FMUL, FDIV
        fop = FOPS_ARITH[fmt][f7 >> 2]
    elif f7 == 0x2c or f7 == 0x2d:
        if rs2 == 0:
            fop = FOP_FSQRT_S + 9 * fmt
    elif f7 == 0x10 or f7 == 0x11:
        if rm <= 2:
            fop = FOP_FSGNJ_S + 3 * fmt + rm
    elif f7 == 0x14 or f7 == 0x15:
        if rm <= 1:
            fop = FOP_FMIN_S + 2 * fmt + rm
    elif f7 == 0x20:
        if rs2 == 1:
            fop = FOP_FCVT_S_D
    elif f7 == 0x21:
        if rs2 == 0:
            fop = FOP_FCVT_D_S
    elif f7 == 0x50 or f7 == 0x51:
        if rm <= 2:
            fop = FOP_FLE_S + 3 * fmt + rm
    elif f7 == 0x60 or f7 == 0x61:
        if rs2 <= 3:
            fop = FOP_FCVT_W_S + 4 * fmt + rs2
    elif f7 == 0x68 or f7 == 0x69:
        if rs2 <= 3:
            fop = FOP_FCVT_S_W + 4 * fmt + rs2
    elif f7 == 0x70 or f7 == 0x71:
        if rs2 == 0 and rm == 0:
            fop = FOP_FMV_X_W + fmt
        elif rs2 == 0 and rm == 1:
            fop = FOP_FCLASS_S + fmt
    elif f7 == 0x78 or f7 == 0x79:
        if rs2 == 0 and rm == 0:
            fop = FOP_FMV_W_X + fmt
    if fop == FOP_ILLEGAL or (fop < FOP_NO_RM and (rm == 5 or rm == 6)):
        return 0                                # rm 5 and 6 are reserved
    return fop | (rm << 8) | ((insn >> 27) << 16)


# ---- operands and results ----

cdef inline uint32_t unbox(uint64_t v) noexcept nogil:
    """A single-precision operand: the low half if NaN-boxed, else the canonical NaN."""
    return <uint32_t>v if (v >> 32) == 0xffffffffu else CNAN32


cdef inline uint64_t fclass(uint64_t sign, uint64_t exp_all_ones, uint64_t exp_zero,
                            uint64_t frac, uint64_t quiet) noexcept nogil:
    """FCLASS's one-hot result from a value's fields (spec table "Format of result of
    FCLASS"): bit 0 -inf ... 7 +inf, 8 signalling NaN, 9 quiet NaN."""
    if exp_all_ones:
        if frac == 0:
            return 1 if sign else 1 << 7
        return 1 << 9 if quiet else 1 << 8
    if exp_zero:
        if frac == 0:
            return 1 << 3 if sign else 1 << 4
        return 1 << 2 if sign else 1 << 5
    return 1 << 1 if sign else 1 << 6


cdef inline uint64_t fclass32(uint32_t v) noexcept nogil:
    cdef uint32_t e = (v >> 23) & 0xff
    return fclass(v >> 31, e == 0xff, e == 0, v & 0x7fffff, v & 0x400000)


cdef inline uint64_t fclass64(uint64_t v) noexcept nogil:
    cdef uint64_t e = (v >> 52) & 0x7ff
    return fclass(v >> 63, e == 0x7ff, e == 0, v & 0xfffffffffffffu, v & 0x8000000000000u)


cdef inline int fp_set_x(HartState* s, uint32_t rd, uint64_t v, uint32_t flags) noexcept nogil:
    """Finish an F/D instruction whose result goes to x[rd]: FP state changes (and FS
    becomes Dirty) only if it raised exception flags."""
    if rd:
        s.x[rd] = v
    if flags:
        s.fflags |= flags
        s.fs = FS_DIRTY
    return 0


# ---- the executor ----

cdef inline uint64_t S(uint64_t* f, uint32_t r) noexcept nogil:
    """f[r] as a single-precision operand (the canonical NaN unless NaN-boxed)."""
    return unbox(f[r])


cdef int fp_execute(HartState* s, uint32_t op, uint32_t rd, uint32_t rs1,
                    uint32_t rs2) noexcept nogil:
    """Execute a computational F/D instruction that fp_decode gave op for.

    Returns 0 when it is done, 1 when it must raise an illegal-instruction exception
    (mstatus.FS is Off, or its dynamic rounding mode finds frm invalid): then nothing
    has changed.  Results that are singles are NaN-boxed; exception flags accrue in
    fflags; an instruction that writes an f register or raises a flag sets FS Dirty.
    (One flat `if fop == ...` chain: Cython makes it a C switch, one indirect jump.)"""
    cdef uint32_t fop = op & 0xff, rm = (op >> 8) & 7, rs3 = op >> 16
    cdef uint64_t* f = s.f
    cdef uint64_t* x = s.x
    cdef uint64_t r, a
    cdef uint32_t fl = 0
    if s.fs == FS_OFF:
        return 1
    if fop < FOP_NO_RM and rm == RM_DYN:
        rm = s.frm
        if rm > 4:
            return 1
    # ---- results in f[rd] ----
    if fop == FOP_FADD_S:
        r = NAN_BOX | hv_fadd(0, S(f, rs1), S(f, rs2), 0, rm, &fl)
    elif fop == FOP_FSUB_S:
        r = NAN_BOX | hv_fadd(0, S(f, rs1), S(f, rs2), 1, rm, &fl)
    elif fop == FOP_FMUL_S:
        r = NAN_BOX | hv_fmul(0, S(f, rs1), S(f, rs2), rm, &fl)
    elif fop == FOP_FDIV_S:
        r = NAN_BOX | hv_fdiv(0, S(f, rs1), S(f, rs2), rm, &fl)
    elif fop == FOP_FSQRT_S:
        r = NAN_BOX | hv_fsqrt(0, S(f, rs1), rm, &fl)
    # the fused multiply-adds: rs1 * rs2 + rs3 with the product and/or addend negated
    elif fop == FOP_FMADD_S:
        r = NAN_BOX | hv_fmadd(0, S(f, rs1), S(f, rs2), S(f, rs3), 0, 0, rm, &fl)
    elif fop == FOP_FMSUB_S:
        r = NAN_BOX | hv_fmadd(0, S(f, rs1), S(f, rs2), S(f, rs3), 0, 1, rm, &fl)
    elif fop == FOP_FNMSUB_S:
        r = NAN_BOX | hv_fmadd(0, S(f, rs1), S(f, rs2), S(f, rs3), 1, 0, rm, &fl)
    elif fop == FOP_FNMADD_S:
        r = NAN_BOX | hv_fmadd(0, S(f, rs1), S(f, rs2), S(f, rs3), 1, 1, rm, &fl)
    elif fop == FOP_FADD_D:
        r = hv_fadd(1, f[rs1], f[rs2], 0, rm, &fl)
    elif fop == FOP_FSUB_D:
        r = hv_fadd(1, f[rs1], f[rs2], 1, rm, &fl)
    elif fop == FOP_FMUL_D:
        r = hv_fmul(1, f[rs1], f[rs2], rm, &fl)
    elif fop == FOP_FDIV_D:
        r = hv_fdiv(1, f[rs1], f[rs2], rm, &fl)
    elif fop == FOP_FSQRT_D:
        r = hv_fsqrt(1, f[rs1], rm, &fl)
    elif fop == FOP_FMADD_D:
        r = hv_fmadd(1, f[rs1], f[rs2], f[rs3], 0, 0, rm, &fl)
    elif fop == FOP_FMSUB_D:
        r = hv_fmadd(1, f[rs1], f[rs2], f[rs3], 0, 1, rm, &fl)
    elif fop == FOP_FNMSUB_D:
        r = hv_fmadd(1, f[rs1], f[rs2], f[rs3], 1, 0, rm, &fl)
    elif fop == FOP_FNMADD_D:
        r = hv_fmadd(1, f[rs1], f[rs2], f[rs3], 1, 1, rm, &fl)
    elif fop == FOP_FCVT_S_D:
        r = NAN_BOX | hv_f64_to_f32(f[rs1], rm, &fl)
    elif fop == FOP_FCVT_D_S:
        r = hv_f32_to_f64(S(f, rs1), &fl)
    elif fop == FOP_FCVT_S_W:
        r = NAN_BOX | hv_from_int(0, <int32_t>x[rs1], rm, &fl)
    elif fop == FOP_FCVT_S_WU:
        r = NAN_BOX | hv_from_u64(0, <uint32_t>x[rs1], 0, rm, &fl)
    elif fop == FOP_FCVT_S_L:
        r = NAN_BOX | hv_from_int(0, <int64_t>x[rs1], rm, &fl)
    elif fop == FOP_FCVT_S_LU:
        r = NAN_BOX | hv_from_u64(0, x[rs1], 0, rm, &fl)
    elif fop == FOP_FCVT_D_W:
        r = hv_from_int(1, <int32_t>x[rs1], rm, &fl)
    elif fop == FOP_FCVT_D_WU:
        r = hv_from_u64(1, <uint32_t>x[rs1], 0, rm, &fl)
    elif fop == FOP_FCVT_D_L:
        r = hv_from_int(1, <int64_t>x[rs1], rm, &fl)
    elif fop == FOP_FCVT_D_LU:
        r = hv_from_u64(1, x[rs1], 0, rm, &fl)
    # sign injection: bit operations, no flags, NaNs keep their payload
    elif fop == FOP_FSGNJ_S:
        r = NAN_BOX | (unbox(f[rs1]) & ~SIGN32) | (unbox(f[rs2]) & SIGN32)
    elif fop == FOP_FSGNJN_S:
        r = NAN_BOX | (unbox(f[rs1]) & ~SIGN32) | (~unbox(f[rs2]) & SIGN32)
    elif fop == FOP_FSGNJX_S:
        r = NAN_BOX | (unbox(f[rs1]) ^ (unbox(f[rs2]) & SIGN32))
    elif fop == FOP_FSGNJ_D:
        r = (f[rs1] & ~SIGN64) | (f[rs2] & SIGN64)
    elif fop == FOP_FSGNJN_D:
        r = (f[rs1] & ~SIGN64) | (~f[rs2] & SIGN64)
    elif fop == FOP_FSGNJX_D:
        r = f[rs1] ^ (f[rs2] & SIGN64)
    # FMIN/FMAX (F 2.2: IEEE 754-2019 minimumNumber/maximumNumber)
    elif fop == FOP_FMIN_S:
        r = NAN_BOX | hv_fminmax(0, S(f, rs1), S(f, rs2), 0, &fl)
    elif fop == FOP_FMAX_S:
        r = NAN_BOX | hv_fminmax(0, S(f, rs1), S(f, rs2), 1, &fl)
    elif fop == FOP_FMIN_D:
        r = hv_fminmax(1, f[rs1], f[rs2], 0, &fl)
    elif fop == FOP_FMAX_D:
        r = hv_fminmax(1, f[rs1], f[rs2], 1, &fl)
    elif fop == FOP_FMV_W_X:
        r = NAN_BOX | <uint32_t>x[rs1]
    elif fop == FOP_FMV_D_X:
        r = x[rs1]
    # ---- results in x[rd]: conversions saturate; 32-bit results are sign-extended ----
    else:
        if fop == FOP_FCVT_W_S:
            a = hv_to_int(0, S(f, rs1), 32, 1, rm, &fl)
        elif fop == FOP_FCVT_WU_S:
            a = hv_to_int(0, S(f, rs1), 32, 0, rm, &fl)
        elif fop == FOP_FCVT_L_S:
            a = hv_to_int(0, S(f, rs1), 64, 1, rm, &fl)
        elif fop == FOP_FCVT_LU_S:
            a = hv_to_int(0, S(f, rs1), 64, 0, rm, &fl)
        elif fop == FOP_FCVT_W_D:
            a = hv_to_int(1, f[rs1], 32, 1, rm, &fl)
        elif fop == FOP_FCVT_WU_D:
            a = hv_to_int(1, f[rs1], 32, 0, rm, &fl)
        elif fop == FOP_FCVT_L_D:
            a = hv_to_int(1, f[rs1], 64, 1, rm, &fl)
        elif fop == FOP_FCVT_LU_D:
            a = hv_to_int(1, f[rs1], 64, 0, rm, &fl)
        elif fop == FOP_FLE_S:
            a = hv_fle(0, S(f, rs1), S(f, rs2), &fl)
        elif fop == FOP_FLT_S:
            a = hv_flt(0, S(f, rs1), S(f, rs2), &fl)
        elif fop == FOP_FEQ_S:
            a = hv_feq(0, S(f, rs1), S(f, rs2), &fl)
        elif fop == FOP_FLE_D:
            a = hv_fle(1, f[rs1], f[rs2], &fl)
        elif fop == FOP_FLT_D:
            a = hv_flt(1, f[rs1], f[rs2], &fl)
        elif fop == FOP_FEQ_D:
            a = hv_feq(1, f[rs1], f[rs2], &fl)
        elif fop == FOP_FCLASS_S:
            a = fclass32(unbox(f[rs1]))
        elif fop == FOP_FCLASS_D:
            a = fclass64(f[rs1])
        elif fop == FOP_FMV_X_W:       # the low 32 bits, boxed or not, sign-extended
            a = <uint64_t><int64_t><int32_t><uint32_t>f[rs1]
        else:                          # FMV.X.D
            a = f[rs1]
        return fp_set_x(s, rd, a, fl)
    f[rd] = r
    s.fflags |= fl
    s.fs = FS_DIRTY
    return 0


# ---- loads and stores (the reference interpreter's; the fast path inlines its own) ----

cdef int fp_load_store(HartState* s, uint32_t insn, uint64_t pc) noexcept nogil:
    """Execute FLW, FLD, FSW, FSD, C.FLD, C.FSD, C.FLDSP or C.FSDSP at pc.

    Returns 0 when done, else the exit reason with the exit record filled in: an
    illegal instruction (FS off, a reserved width), a fault, or MMIO (a load's record
    says is_fp, and VCpu.complete_load writes f[rd])."""
    cdef uint32_t reg, size, length = 4
    cdef uint64_t addr, v = 0
    cdef bint store
    cdef uint8_t* p
    if (insn & 3) != 3:                         # compressed: funct3 001 loads, 101 stores
        length = 2
        size = 8
        store = (insn >> 15) & 1
        if (insn & 3) == 0:                     # C.FLD, C.FSD: rd'/rs2', rs1'
            reg = 8 + ((insn >> 2) & 7)
            addr = s.x[8 + ((insn >> 7) & 7)] + (((insn >> 7) & 0x38) | ((insn << 1) & 0xc0))
        elif store:                             # C.FSDSP
            reg = (insn >> 2) & 31
            addr = s.x[2] + (((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0))
        else:                                   # C.FLDSP
            reg = (insn >> 7) & 31
            addr = s.x[2] + (((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0))
    else:
        store = (insn & 0x7f) == 0x27
        size = (insn >> 12) & 7                 # funct3: 2 W, 3 D
        if size != 2 and size != 3:
            set_exception(s, pc, CAUSE_ILLEGAL, insn)
            return EXIT_EXCEPTION
        size = 1 << size
        addr = s.x[(insn >> 15) & 31]
        if store:
            reg = (insn >> 20) & 31
            addr += <uint64_t>((<int64_t>(<int32_t>(insn & 0xfe000000u)) >> 20) |
                               ((insn >> 7) & 31))
        else:
            reg = (insn >> 7) & 31
            addr += <uint64_t>(<int64_t><int32_t>insn >> 20)
    if s.fs == FS_OFF:
        set_exception(s, pc, CAUSE_ILLEGAL, insn)
        return EXIT_EXCEPTION
    s.exit.pc = pc
    if store:
        v = s.f[reg]
        p = tlb_lookup(s, addr, ACC_STORE, size)
        if p != NULL:
            memcpy(p, &v, size)
        elif store_slow(s, addr, size, v) != MEM_OK:
            s.exit.insn = insn
            s.exit.insn_len = length
            return s.exit.reason
        return 0
    p = tlb_lookup(s, addr, ACC_LOAD, size)
    if p != NULL:
        memcpy(&v, p, size)
    elif load_slow(s, addr, size, &v) != MEM_OK:
        s.exit.rd = reg
        s.exit.is_fp = 1
        s.exit.is_signed = 0
        s.exit.insn = insn
        s.exit.insn_len = length
        return s.exit.reason
    s.f[reg] = v | NAN_BOX if size == 4 else v
    s.fs = FS_DIRTY
    return 0


cdef int fp_mem_fast(HartState* s, Decoded* d, uint64_t pc) noexcept nogil:
    """The fast path's OP_FPMEM (decode.pxi): the shadow-TLB hit here, from the slot's
    fields; anything else -- a miss, a page crossing, FS Off -- is fp_load_store's,
    which redoes it from the instruction word.  0 when done, else the exit reason."""
    cdef uint32_t size = d.rs2 & 15
    cdef uint64_t addr = s.x[d.rs1] + <uint64_t><int64_t>d.imm, v = 0
    cdef uint8_t* p
    if s.fs == FS_OFF:
        return fp_load_store(s, d.raw, pc)
    if d.rs2 & FPMEM_STORE:
        p = tlb_lookup(s, addr, ACC_STORE, size)
        if p == NULL:
            return fp_load_store(s, d.raw, pc)
        v = s.f[d.rd]
        if size == 8:
            memcpy(p, &v, 8)
        else:
            memcpy(p, &v, 4)
    else:
        p = tlb_lookup(s, addr, ACC_LOAD, size)
        if p == NULL:
            return fp_load_store(s, d.raw, pc)
        if size == 8:
            memcpy(&v, p, 8)
        else:
            memcpy(&v, p, 4)
            v |= NAN_BOX
        s.f[d.rd] = v
        s.fs = FS_DIRTY
    s.tlb_hits += 1
    return 0
