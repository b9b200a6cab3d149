# Bit manipulation (unprivileged spec, "B" chapter: Zba, Zbb, Zbc, Zbs) and integer
# conditional operations (Zicond): the decoder, and the helpers the EXT_ALU table
# of fastpath.pxi.in uses.
#
# What each instruction computes is written once, in that table: the fast path has
# an arm per operation, and the reference interpreter runs the same table through
# `ext_alu` (generated beside run_loop) after `decode_bitmanip` has named the
# operation -- the same decoder the pre-decoder uses.

cdef extern from *:
    """
    static inline uint64_t hv_clz(uint64_t a) { return a ? (uint64_t)__builtin_clzll(a) : 64; }
    static inline uint64_t hv_ctz(uint64_t a) { return a ? (uint64_t)__builtin_ctzll(a) : 64; }
    static inline uint64_t hv_cpop(uint64_t a) { return (uint64_t)__builtin_popcountll(a); }
    static inline uint64_t hv_clz32(uint64_t a) {
        uint32_t w = (uint32_t)a; return w ? (uint64_t)__builtin_clz(w) : 32; }
    static inline uint64_t hv_ctz32(uint64_t a) {
        uint32_t w = (uint32_t)a; return w ? (uint64_t)__builtin_ctz(w) : 32; }
    static inline uint64_t hv_cpop32(uint64_t a) {
        return (uint64_t)__builtin_popcount((uint32_t)a); }
    static inline uint64_t hv_rol(uint64_t a, uint64_t s) {
        s &= 63; return (a << s) | (a >> ((64 - s) & 63)); }
    static inline uint64_t hv_ror(uint64_t a, uint64_t s) {
        s &= 63; return (a >> s) | (a << ((64 - s) & 63)); }
    static inline uint64_t hv_rolw(uint64_t a, uint64_t s) {
        uint32_t w = (uint32_t)a; s &= 31;
        return (uint64_t)(int64_t)(int32_t)((w << s) | (w >> ((32 - s) & 31))); }
    static inline uint64_t hv_rorw(uint64_t a, uint64_t s) {
        uint32_t w = (uint32_t)a; s &= 31;
        return (uint64_t)(int64_t)(int32_t)((w >> s) | (w << ((32 - s) & 31))); }
    static inline uint64_t hv_rev8(uint64_t a) { return __builtin_bswap64(a); }
    /* orc.b: each byte becomes 0xff if it is not zero, else stays 0 */
    static inline uint64_t hv_orc_b(uint64_t a) {
        uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL;
        uint64_t top = (((a & low7) + low7) | a) & ~low7;   /* bit 7 of each byte: byte != 0 */
        return (top >> 7) * 0xff; }
    /* carry-less products: lo and hi halves of the 128-bit product (out of line: its
       loop in the fast path's arms would cost the dispatch a register) */
    static __attribute__((noinline)) void hv_clmul128(uint64_t a, uint64_t b, uint64_t* lo, uint64_t* hi) {
        uint64_t l = 0, h = 0; int i;
        for (i = 0; i < 64; i++)
            if ((b >> i) & 1) { l ^= a << i; if (i) h ^= a >> (64 - i); }
        *lo = l; *hi = h; }
    static inline uint64_t hv_clmul(uint64_t a, uint64_t b) {
        uint64_t l, h; hv_clmul128(a, b, &l, &h); return l; }
    static inline uint64_t hv_clmulh(uint64_t a, uint64_t b) {
        uint64_t l, h; hv_clmul128(a, b, &l, &h); return h; }
    static inline uint64_t hv_clmulr(uint64_t a, uint64_t b) {       /* bits 126..63 */
        uint64_t l, h; hv_clmul128(a, b, &l, &h); return (h << 1) | (l >> 63); }
    """
    uint64_t hv_clz(uint64_t a) noexcept nogil
    uint64_t hv_ctz(uint64_t a) noexcept nogil
    uint64_t hv_cpop(uint64_t a) noexcept nogil
    uint64_t hv_clz32(uint64_t a) noexcept nogil
    uint64_t hv_ctz32(uint64_t a) noexcept nogil
    uint64_t hv_cpop32(uint64_t a) noexcept nogil
    uint64_t hv_rol(uint64_t a, uint64_t s) noexcept nogil
    uint64_t hv_ror(uint64_t a, uint64_t s) noexcept nogil
    uint64_t hv_rolw(uint64_t a, uint64_t s) noexcept nogil
    uint64_t hv_rorw(uint64_t a, uint64_t s) noexcept nogil
    uint64_t hv_rev8(uint64_t a) noexcept nogil
    uint64_t hv_orc_b(uint64_t a) noexcept nogil
    uint64_t hv_clmul(uint64_t a, uint64_t b) noexcept nogil
    uint64_t hv_clmulh(uint64_t a, uint64_t b) noexcept nogil
    uint64_t hv_clmulr(uint64_t a, uint64_t b) noexcept nogil


cdef uint8_t decode_bitmanip(uint32_t insn, int64_t* imm) noexcept nogil:
    """The Op of a Zba/Zbb/Zbc/Zbs/Zicond instruction word, or OP_GENERIC if it is none.

    rd, rs1 and rs2 are in their usual fields; *imm is the shift amount or bit index
    of the immediate forms.  Encodings: the spec's tables (RV64; zext.h is OP-32)."""
    cdef uint32_t op = insn & 0x7f, f3 = (insn >> 12) & 7, f7 = insn >> 25
    cdef uint32_t f6 = insn >> 26, f12 = insn >> 20, rs2 = (insn >> 20) & 31
    imm[0] = (insn >> 20) & 63
    if op == 0x33:                                     # OP
        if f7 == 0x10:
            if f3 == 2:
                return OP_SH1ADD
            if f3 == 4:
                return OP_SH2ADD
            if f3 == 6:
                return OP_SH3ADD
        elif f7 == 0x20:
            if f3 == 7:
                return OP_ANDN
            if f3 == 6:
                return OP_ORN
            if f3 == 4:
                return OP_XNOR
        elif f7 == 0x05:
            if f3 == 1:
                return OP_CLMUL
            if f3 == 2:
                return OP_CLMULR
            if f3 == 3:
                return OP_CLMULH
            if f3 == 4:
                return OP_MIN
            if f3 == 5:
                return OP_MINU
            if f3 == 6:
                return OP_MAX
            if f3 == 7:
                return OP_MAXU
        elif f7 == 0x30:
            if f3 == 1:
                return OP_ROL
            if f3 == 5:
                return OP_ROR
        elif f7 == 0x24:
            if f3 == 1:
                return OP_BCLR
            if f3 == 5:
                return OP_BEXT
        elif f7 == 0x34:
            if f3 == 1:
                return OP_BINV
        elif f7 == 0x14:
            if f3 == 1:
                return OP_BSET
        elif f7 == 0x07:
            if f3 == 5:
                return OP_CZERO_EQZ
            if f3 == 7:
                return OP_CZERO_NEZ
    elif op == 0x3b:                                   # OP-32
        if f7 == 0x04:
            if f3 == 0:
                return OP_ADD_UW                       # zext.w is add.uw rd, rs1, zero
            if f3 == 4 and rs2 == 0:
                return OP_ZEXT_H
        elif f7 == 0x10:
            if f3 == 2:
                return OP_SH1ADD_UW
            if f3 == 4:
                return OP_SH2ADD_UW
            if f3 == 6:
                return OP_SH3ADD_UW
        elif f7 == 0x30:
            if f3 == 1:
                return OP_ROLW
            if f3 == 5:
                return OP_RORW
    elif op == 0x13:                                   # OP-IMM
        if f3 == 1:
            if f12 == 0x600:
                return OP_CLZ
            if f12 == 0x601:
                return OP_CTZ
            if f12 == 0x602:
                return OP_CPOP
            if f12 == 0x604:
                return OP_SEXT_B
            if f12 == 0x605:
                return OP_SEXT_H
            if f6 == 0x12:
                return OP_BCLRI
            if f6 == 0x1a:
                return OP_BINVI
            if f6 == 0x0a:
                return OP_BSETI
        elif f3 == 5:
            if f6 == 0x18:
                return OP_RORI
            if f6 == 0x12:
                return OP_BEXTI
            if f12 == 0x287:
                return OP_ORC_B
            if f12 == 0x6b8:
                return OP_REV8
    elif op == 0x1b:                                   # OP-IMM-32
        if f3 == 1:
            if f6 == 0x02:
                return OP_SLLI_UW
            if f12 == 0x600:
                return OP_CLZW
            if f12 == 0x601:
                return OP_CTZW
            if f12 == 0x602:
                return OP_CPOPW
        elif f3 == 5 and f7 == 0x30:
            imm[0] = rs2
            return OP_RORIW
    return OP_GENERIC


cdef void decode_ext32(uint32_t insn, Decoded* d) noexcept nogil:
    """Pre-decode the extensions' 32-bit instructions the base decoder left generic."""
    cdef int64_t imm
    cdef uint32_t op = insn & 0x7f
    cdef uint8_t e
    if op == 0x0f:
        if ((insn >> 12) & 7) == 2:
            dset(d, OP_CBO, 0, (insn >> 15) & 31, 0, 0)    # cbo.*: cbo_exec checks the rest
        return
    e = decode_bitmanip(insn, &imm)
    if e != OP_GENERIC:
        dset(d, e, (insn >> 7) & 31, (insn >> 15) & 31, (insn >> 20) & 31, imm)


cdef bint bitmanip_exec(uint64_t* x, uint32_t insn) noexcept nogil:
    """The reference interpreter's step for a Zb*/Zicond instruction: x[rd] = its result.

    False if insn is none of them (the caller raises illegal instruction)."""
    cdef int64_t imm
    cdef uint64_t v
    cdef uint8_t e = decode_bitmanip(insn, &imm)
    if e == OP_GENERIC or not ext_alu(e, x[(insn >> 15) & 31], x[(insn >> 20) & 31], imm, &v):
        return 0
    x[(insn >> 7) & 31] = v
    return 1
