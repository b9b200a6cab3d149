# Integer arithmetic the execution engines share: the M extension's wide multiplies,
# divisions and remainders (unprivileged spec, "M" extension: division by zero and
# overflow), and the A extension's AMO operations.

cdef extern from *:
    """
    typedef __int128 hv_i128;
    typedef unsigned __int128 hv_u128;
    static inline uint64_t hv_mulh(int64_t a, int64_t b) {
        return (uint64_t)(((hv_i128)a * (hv_i128)b) >> 64); }
    static inline uint64_t hv_mulhu(uint64_t a, uint64_t b) {
        return (uint64_t)(((hv_u128)a * (hv_u128)b) >> 64); }
    static inline uint64_t hv_mulhsu(int64_t a, uint64_t b) {
        return (uint64_t)(((hv_i128)a * (hv_i128)(hv_u128)b) >> 64); }
    """
    uint64_t hv_mulh(int64_t a, int64_t b) noexcept nogil
    uint64_t hv_mulhu(uint64_t a, uint64_t b) noexcept nogil
    uint64_t hv_mulhsu(int64_t a, uint64_t b) noexcept nogil



cdef inline uint64_t op_div(int64_t a, int64_t b) noexcept nogil:
    if b == 0:
        return <uint64_t>-1
    if a == INT64_MIN and b == -1:
        return <uint64_t>a
    return <uint64_t>(a / b)

cdef inline uint64_t op_divu(uint64_t a, uint64_t b) noexcept nogil:
    if b == 0:
        return <uint64_t>-1
    return a / b

cdef inline uint64_t op_rem(int64_t a, int64_t b) noexcept nogil:
    if b == 0:
        return <uint64_t>a
    if a == INT64_MIN and b == -1:
        return 0
    return <uint64_t>(a % b)

cdef inline uint64_t op_remu(uint64_t a, uint64_t b) noexcept nogil:
    if b == 0:
        return a
    return a % b

cdef inline uint64_t op_divw(uint64_t a, uint64_t b) noexcept nogil:
    cdef int32_t x = <int32_t>a, y = <int32_t>b
    if y == 0:
        return <uint64_t>-1
    if x == -2147483648 and y == -1:
        return <uint64_t><int64_t>x
    return <uint64_t><int64_t>(x / y)

cdef inline uint64_t op_divuw(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint32_t x = <uint32_t>a, y = <uint32_t>b
    if y == 0:
        return <uint64_t>-1
    return <uint64_t>sx32(x / y)

cdef inline uint64_t op_remw(uint64_t a, uint64_t b) noexcept nogil:
    cdef int32_t x = <int32_t>a, y = <int32_t>b
    if y == 0:
        return <uint64_t><int64_t>x
    if x == -2147483648 and y == -1:
        return 0
    return <uint64_t><int64_t>(x % y)

cdef inline uint64_t op_remuw(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint32_t x = <uint32_t>a, y = <uint32_t>b
    if y == 0:
        return <uint64_t>sx32(x)
    return <uint64_t>sx32(x % y)


cdef inline uint64_t amo_op(uint32_t f5, uint64_t old, uint64_t src, bint word) noexcept nogil:
    """The new memory value of AMO<f5> (unprivileged spec, "A" extension)."""
    cdef int64_t a, b
    if word:
        a = sx32(old)
        b = sx32(src)
    else:
        a = <int64_t>old
        b = <int64_t>src
    if f5 == 0x01:
        return src
    if f5 == 0x00:
        return old + src
    if f5 == 0x04:
        return old ^ src
    if f5 == 0x0c:
        return old & src
    if f5 == 0x08:
        return old | src
    if f5 == 0x10:
        return <uint64_t>(a if a < b else b)
    if f5 == 0x14:
        return <uint64_t>(a if a > b else b)
    if word:
        old &= 0xffffffffu
        src &= 0xffffffffu
    if f5 == 0x18:
        return old if old < src else src
    return old if old > src else src      # 0x1c AMOMAXU


