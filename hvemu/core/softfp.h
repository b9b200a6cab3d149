/* IEEE 754 binary32 and binary64 arithmetic in software, as the RISC-V F and D
 * extensions define it (unprivileged spec, "F" chapter: rounding modes, fflags,
 * the canonical NaN, FMIN/FMAX, conversions with saturation).
 *
 * Every operation takes its rounding mode explicitly (RISC-V rm encoding: 0 RNE,
 * 1 RTZ, 2 RDN, 3 RUP, 4 RMM) and ORs the exceptions it raises into *fl (fflags
 * encoding: NX 1, UF 2, OF 4, DZ 8, NV 16); there is no global state, so vCPUs
 * never share any.  `d` selects the format: 1 binary64, 0 binary32 (in the low 32
 * bits of the uint64_t operands and results).  Any NaN result is the canonical NaN.
 * Tininess is detected after rounding, as RISC-V requires.
 *
 * How it works: a finite operand is unpacked into a sign, an unbiased exponent e
 * and a 64-bit significand with its leading one at bit 63 (value = sig/2^63 * 2^e);
 * each operation computes its result exactly, or exactly enough -- bits below what
 * rounding can see are OR-ed ("jammed") into a sticky bit -- in 64 or 128-bit
 * integers, and one function (hv_round_pack) rounds and packs it for every
 * operation, so the rounding rules are written once.
 */
#ifndef HV_SOFTFP_H
#define HV_SOFTFP_H

#include <stdint.h>

typedef unsigned __int128 hv_fp_u128;

enum { HV_RNE = 0, HV_RTZ = 1, HV_RDN = 2, HV_RUP = 3, HV_RMM = 4 };
enum { HV_NX = 1, HV_UF = 2, HV_OF = 4, HV_DZ = 8, HV_NV = 16 };

#define HV_FBITS(d) ((d) ? 52 : 23)                  /* fraction bits */
#define HV_EMAX(d) ((d) ? 2047 : 255)                /* the all-ones biased exponent */
#define HV_BIAS(d) ((d) ? 1023 : 127)
#define HV_SIGNBIT(d) ((d) ? (uint64_t)1 << 63 : (uint64_t)1 << 31)
#define HV_FRAC(d, x) ((x) & (((uint64_t)1 << HV_FBITS(d)) - 1))
#define HV_EXPF(d, x) ((int)(((x) >> HV_FBITS(d)) & HV_EMAX(d)))
#define HV_SIGN(d, x) ((int)(((x) >> ((d) ? 63 : 31)) & 1))
#define HV_INF(d, s) (((s) ? HV_SIGNBIT(d) : 0) | ((uint64_t)HV_EMAX(d) << HV_FBITS(d)))
#define HV_ZERO(d, s) ((s) ? HV_SIGNBIT(d) : 0)
#define HV_CNAN(d) ((d) ? (uint64_t)0x7ff8000000000000ull : (uint64_t)0x7fc00000u)

static inline int hv_fp_isnan(int d, uint64_t x) {
    return HV_EXPF(d, x) == HV_EMAX(d) && HV_FRAC(d, x) != 0; }
static inline int hv_fp_issnan(int d, uint64_t x) {
    return hv_fp_isnan(d, x) && !((x >> (HV_FBITS(d) - 1)) & 1); }
static inline int hv_fp_isinf(int d, uint64_t x) {
    return HV_EXPF(d, x) == HV_EMAX(d) && HV_FRAC(d, x) == 0; }
static inline int hv_fp_iszero(int d, uint64_t x) {
    return (x & (HV_SIGNBIT(d) - 1)) == 0; }

static inline int hv_clz64(uint64_t x) { return x ? __builtin_clzll(x) : 64; }
static inline int hv_clz128(hv_fp_u128 x) {
    uint64_t hi = (uint64_t)(x >> 64);
    return hi ? __builtin_clzll(hi) : 64 + hv_clz64((uint64_t)x); }

/* x >> n with every bit shifted out OR-ed into bit 0 */
static inline uint64_t hv_jam64(uint64_t x, int n) {
    if (n <= 0) return x;
    if (n >= 64) return x != 0;
    return (x >> n) | ((x & (((uint64_t)1 << n) - 1)) != 0); }
static inline hv_fp_u128 hv_jam128(hv_fp_u128 x, int n) {
    if (n <= 0) return x;
    if (n >= 128) return x != 0;
    return (x >> n) | ((x & ((((hv_fp_u128)1) << n) - 1)) != 0); }

/* A u128 with its leading one anywhere: its top 64 bits from the leading one, jammed. */
static inline uint64_t hv_top64(hv_fp_u128 x, int* shift_out) {
    int lz = hv_clz128(x);
    x <<= lz;
    *shift_out = lz;
    return (uint64_t)(x >> 64) | ((uint64_t)x != 0); }

/* Round and pack (-1)^sign * r/2^ref * 2^e for a nonzero u128 r (bit 0 may be sticky). */
static inline uint64_t hv_round_pack(int d, int sign, int e, uint64_t sig, int rm,
                                     uint32_t* fl);
static inline uint64_t hv_pack128(int d, int sign, int e, int ref, hv_fp_u128 r, int rm,
                                  uint32_t* fl) {
    int lz;
    uint64_t sig = hv_top64(r, &lz);
    return hv_round_pack(d, sign, e + (127 - lz) - ref, sig, rm, fl); }

/* Unpack a finite, nonzero x: the significand with its leading one at bit 63. */
static inline uint64_t hv_unpack(int d, uint64_t x, int* e) {
    int fb = HV_FBITS(d), ef = HV_EXPF(d, x);
    uint64_t sig = HV_FRAC(d, x);
    if (ef == 0) {                                   /* subnormal */
        int lz = hv_clz64(sig);
        *e = 1 - HV_BIAS(d) - (lz - (63 - fb));
        return sig << lz;
    }
    *e = ef - HV_BIAS(d);
    return (sig | ((uint64_t)1 << fb)) << (63 - fb);
}

/* Whether rounding m (with the bits below it: rest, out of half*2) goes up. */
static inline int hv_round_up(int rm, int sign, uint64_t m, uint64_t rest, uint64_t half) {
    switch (rm) {
    case HV_RNE: return rest > half || (rest == half && (m & 1));
    case HV_RMM: return rest >= half;
    case HV_RDN: return sign && rest != 0;
    case HV_RUP: return !sign && rest != 0;
    default: return 0;                               /* RTZ */
    }
}

/* Round and pack (-1)^sign * sig/2^63 * 2^e, sig's leading one at bit 63 (bit 0 may be
 * a sticky bit).  Overflow, underflow (tiny after rounding and inexact) and inexact
 * set their flags. */
static inline uint64_t hv_round_pack(int d, int sign, int e, uint64_t sig, int rm,
                                     uint32_t* fl) {
    int fb = HV_FBITS(d), shift = 63 - fb;
    uint64_t half = (uint64_t)1 << (shift - 1), mask = ((uint64_t)1 << shift) - 1;
    int biased = e + HV_BIAS(d);
    uint64_t m, rest;
    uint64_t s = sign ? HV_SIGNBIT(d) : 0;
    if (biased >= 1) {
        m = sig >> shift;
        rest = sig & mask;
        if (hv_round_up(rm, sign, m, rest, half)) {
            m++;
            if (m >> (fb + 1)) { m >>= 1; biased++; }
        }
        if (rest) *fl |= HV_NX;
        if (biased >= HV_EMAX(d)) {                  /* overflow */
            *fl |= HV_OF | HV_NX;
            if (rm == HV_RTZ || (rm == HV_RDN && !sign) || (rm == HV_RUP && sign))
                return s | (((uint64_t)HV_EMAX(d) << fb) - 1);   /* the largest finite */
            return HV_INF(d, sign);
        }
        return s | ((uint64_t)biased << fb) | (m & (((uint64_t)1 << fb) - 1));
    }
    /* below the normal range: tiny if, rounded with an unbounded exponent, the result
     * still is below the smallest normal number */
    int tiny = 1;
    if (biased == 0) {
        m = sig >> shift;
        rest = sig & mask;
        if (hv_round_up(rm, sign, m, rest, half) && (m + 1) >> (fb + 1))
            tiny = 0;
    }
    sig = hv_jam64(sig, 1 - biased);
    m = sig >> shift;
    rest = sig & mask;
    if (hv_round_up(rm, sign, m, rest, half))
        m++;                                         /* may carry into the exponent: fine */
    if (rest) {
        *fl |= HV_NX;
        if (tiny) *fl |= HV_UF;
    }
    return s | m;
}

/* A NaN operand: the canonical NaN, NV if one is signalling. */
static inline uint64_t hv_nan2(int d, uint64_t a, uint64_t b, uint32_t* fl) {
    if (hv_fp_issnan(d, a) || hv_fp_issnan(d, b)) *fl |= HV_NV;
    return HV_CNAN(d); }

/* a + b, or a - b when neg_b */
static inline uint64_t hv_fadd(int d, uint64_t a, uint64_t b, int neg_b, int rm,
                               uint32_t* fl) {
    if (neg_b && !hv_fp_isnan(d, b)) b ^= HV_SIGNBIT(d);
    if (hv_fp_isnan(d, a) || hv_fp_isnan(d, b)) return hv_nan2(d, a, b, fl);
    int sa = HV_SIGN(d, a), sb = HV_SIGN(d, b);
    if (hv_fp_isinf(d, a) || hv_fp_isinf(d, b)) {
        if (hv_fp_isinf(d, a) && hv_fp_isinf(d, b) && sa != sb) {
            *fl |= HV_NV;
            return HV_CNAN(d);
        }
        return hv_fp_isinf(d, a) ? a : b;
    }
    if (hv_fp_iszero(d, a) && hv_fp_iszero(d, b))
        return HV_ZERO(d, sa == sb ? sa : rm == HV_RDN);
    if (hv_fp_iszero(d, a)) return b;
    if (hv_fp_iszero(d, b)) return a;
    int ea, eb;
    uint64_t ma = hv_unpack(d, a, &ea), mb = hv_unpack(d, b, &eb);
    if (ea < eb || (ea == eb && ma < mb)) {          /* |a| >= |b| from here on */
        uint64_t t = ma; ma = mb; mb = t;
        int te = ea; ea = eb; eb = te;
        int ts = sa; sa = sb; sb = ts;
    }
    hv_fp_u128 x = (hv_fp_u128)ma << 62, y = hv_jam128((hv_fp_u128)mb << 62, ea - eb);
    hv_fp_u128 r = sa == sb ? x + y : x - y;         /* leading one at bit 126 at most */
    if (r == 0) return HV_ZERO(d, rm == HV_RDN);     /* exact cancellation */
    return hv_pack128(d, sa, ea, 125, r, rm, fl);
}

static inline uint64_t hv_fmul(int d, uint64_t a, uint64_t b, int rm, uint32_t* fl) {
    if (hv_fp_isnan(d, a) || hv_fp_isnan(d, b)) return hv_nan2(d, a, b, fl);
    int sign = HV_SIGN(d, a) ^ HV_SIGN(d, b);
    if (hv_fp_isinf(d, a) || hv_fp_isinf(d, b)) {
        if (hv_fp_iszero(d, a) || hv_fp_iszero(d, b)) { *fl |= HV_NV; return HV_CNAN(d); }
        return HV_INF(d, sign);
    }
    if (hv_fp_iszero(d, a) || hv_fp_iszero(d, b)) return HV_ZERO(d, sign);
    int ea, eb;
    uint64_t ma = hv_unpack(d, a, &ea), mb = hv_unpack(d, b, &eb);
    /* ma * mb / 2^126 = the product of the two values / 2^(ea+eb) */
    return hv_pack128(d, sign, ea + eb, 126, (hv_fp_u128)ma * mb, rm, fl);
}

static inline uint64_t hv_fdiv(int d, uint64_t a, uint64_t b, int rm, uint32_t* fl) {
    if (hv_fp_isnan(d, a) || hv_fp_isnan(d, b)) return hv_nan2(d, a, b, fl);
    int sign = HV_SIGN(d, a) ^ HV_SIGN(d, b);
    if (hv_fp_isinf(d, a)) {
        if (hv_fp_isinf(d, b)) { *fl |= HV_NV; return HV_CNAN(d); }
        return HV_INF(d, sign);
    }
    if (hv_fp_isinf(d, b)) return HV_ZERO(d, sign);
    if (hv_fp_iszero(d, b)) {
        if (hv_fp_iszero(d, a)) { *fl |= HV_NV; return HV_CNAN(d); }
        *fl |= HV_DZ;
        return HV_INF(d, sign);
    }
    if (hv_fp_iszero(d, a)) return HV_ZERO(d, sign);
    int ea, eb;
    uint64_t ma = hv_unpack(d, a, &ea), mb = hv_unpack(d, b, &eb);
    hv_fp_u128 n = (hv_fp_u128)ma << 64;
    hv_fp_u128 q = n / mb;                           /* 2^63 < q < 2^65 */
    q = (q << 1) | (n % mb != 0);                    /* a sticky bit below the quotient */
    /* q/2^65 = ma/mb (up to the sticky bit) */
    return hv_pack128(d, sign, ea - eb, 65, q, rm, fl);
}

/* floor(sqrt(x)) for x < 2^128, digit by digit */
static inline uint64_t hv_isqrt128(hv_fp_u128 x, int* exact) {
    hv_fp_u128 r = 0, bit = (hv_fp_u128)1 << 126, rem = x;
    while (bit > rem) bit >>= 2;
    while (bit) {
        if (rem >= r + bit) { rem -= r + bit; r = (r >> 1) + bit; }
        else r >>= 1;
        bit >>= 2;
    }
    *exact = rem == 0;
    return (uint64_t)r;
}

static inline uint64_t hv_fsqrt(int d, uint64_t a, int rm, uint32_t* fl) {
    if (hv_fp_isnan(d, a)) return hv_nan2(d, a, a, fl);
    if (hv_fp_iszero(d, a)) return a;                /* sqrt(-0) = -0 */
    if (HV_SIGN(d, a)) { *fl |= HV_NV; return HV_CNAN(d); }
    if (hv_fp_isinf(d, a)) return a;
    int ea, exact;
    uint64_t ma = hv_unpack(d, a, &ea);
    /* a = ma * 2^t with t = ea - 63; make the power of two even and ma << s 127/128 bits */
    int t = ea - 63, s = (t & 1) ? 63 : 64;
    uint64_t r = hv_isqrt128((hv_fp_u128)ma << s, &exact);   /* 2^63 <= r < 2^64 */
    /* sqrt(a) = r * 2^((t - s)/2) = r/2^63 * 2^(63 + (t - s)/2) */
    return hv_round_pack(d, 0, 63 + (t - s) / 2, r | !exact, rm, fl);
}

/* a * b + c with one rounding; neg_prod and neg_c give FMSUB, FNMSUB and FNMADD */
static inline uint64_t hv_fmadd(int d, uint64_t a, uint64_t b, uint64_t c, int neg_prod,
                                int neg_c, int rm, uint32_t* fl) {
    int an = hv_fp_isnan(d, a), bn = hv_fp_isnan(d, b), cn = hv_fp_isnan(d, c);
    int a_inf = hv_fp_isinf(d, a), b_inf = hv_fp_isinf(d, b);
    int a_zero = hv_fp_iszero(d, a), b_zero = hv_fp_iszero(d, b);
    if (an || bn || cn) {
        if (hv_fp_issnan(d, a) || hv_fp_issnan(d, b) || hv_fp_issnan(d, c) ||
                (a_inf && b_zero) || (a_zero && b_inf))  /* inf * 0 is invalid, even + qNaN */
            *fl |= HV_NV;
        return HV_CNAN(d);
    }
    int sp = HV_SIGN(d, a) ^ HV_SIGN(d, b) ^ neg_prod, sc = HV_SIGN(d, c) ^ neg_c;
    if (neg_c) c ^= HV_SIGNBIT(d);
    if (a_inf || b_inf) {
        if (a_zero || b_zero) { *fl |= HV_NV; return HV_CNAN(d); }
        if (hv_fp_isinf(d, c) && sc != sp) { *fl |= HV_NV; return HV_CNAN(d); }
        return HV_INF(d, sp);
    }
    if (hv_fp_isinf(d, c)) return c;
    if (a_zero || b_zero) {                          /* the product is an exact zero */
        if (hv_fp_iszero(d, c))
            return HV_ZERO(d, sp == sc ? sp : rm == HV_RDN);
        return c;
    }
    int ea, eb;
    uint64_t ma = hv_unpack(d, a, &ea), mb = hv_unpack(d, b, &eb);
    /* the product, exactly: p/2^124 * 2^(ea+eb) with p's leading one at bit 124 or 125
     * (the significands' low bits are zero, so nothing is lost shifting it down by 2) */
    hv_fp_u128 p = ((hv_fp_u128)ma * mb) >> 2;
    int ep = ea + eb + 1;                            /* p = P/2^125 * 2^ep */
    if (hv_fp_iszero(d, c))
        return hv_pack128(d, sp, ep, 125, p, rm, fl);
    int ec;
    hv_fp_u128 x = (hv_fp_u128)hv_unpack(d, c, &ec) << 62;   /* x/2^125 * 2^ec */
    /* align the one with the smaller exponent to the other, jamming what falls off */
    int e;
    hv_fp_u128 u = p, v = x;
    if (ep >= ec) { e = ep; v = hv_jam128(x, ep - ec); }
    else { e = ec; u = hv_jam128(p, ec - ep); }
    hv_fp_u128 r;
    int sign;
    if (sp == sc) { r = u + v; sign = sp; }
    else if (u >= v) { r = u - v; sign = sp; }
    else { r = v - u; sign = sc; }
    if (r == 0) return HV_ZERO(d, rm == HV_RDN);     /* exact cancellation */
    return hv_pack128(d, sign, e, 125, r, rm, fl);
}

/* ---- conversions (unprivileged spec, "Single-Precision Floating-Point Conversion and
 * Move Instructions": out-of-range and NaN inputs saturate and raise NV) ---- */

static inline uint64_t hv_from_u64(int d, uint64_t v, int sign, int rm, uint32_t* fl) {
    if (v == 0) return 0;
    int lz = hv_clz64(v);
    return hv_round_pack(d, sign, 63 - lz, v << lz, rm, fl);
}

static inline uint64_t hv_from_int(int d, int64_t v, int rm, uint32_t* fl) {
    return v < 0 ? hv_from_u64(d, -(uint64_t)v, 1, rm, fl) : hv_from_u64(d, (uint64_t)v, 0, rm, fl); }

/* a rounded to an integer of `bits` (32 or 64) bits, signed or not; a 32-bit result is
 * returned sign-extended, as FCVT.W[U] write it */
static inline uint64_t hv_to_int(int d, uint64_t a, int bits, int is_signed, int rm,
                                 uint32_t* fl) {
    uint64_t max = is_signed ? ((uint64_t)1 << (bits - 1)) - 1
                             : (bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << 32) - 1);
    uint64_t min = is_signed ? (uint64_t)1 << (bits - 1) : 0;     /* magnitude */
    uint64_t r;
    int sign = HV_SIGN(d, a);
    if (hv_fp_isnan(d, a)) { *fl |= HV_NV; r = max; goto out; }
    if (hv_fp_isinf(d, a)) { *fl |= HV_NV; r = sign ? (is_signed ? -min : 0) : max; goto out; }
    if (hv_fp_iszero(d, a)) return 0;
    int e;
    uint64_t m = hv_unpack(d, a, &e), mag, rest, half;
    if (e >= 64) { *fl |= HV_NV; r = sign ? (is_signed ? -min : 0) : max; goto out; }
    if (e >= 63) { mag = m; rest = 0; half = 1; }            /* |a| >= 2^63: integral */
    else if (e >= 0) {
        int sh = 63 - e;
        mag = m >> sh;
        rest = m & (((uint64_t)1 << sh) - 1);
        half = (uint64_t)1 << (sh - 1);
    } else {                                                 /* |a| < 1 */
        mag = 0;
        rest = hv_jam64(m, -e - 1);                          /* |a| = rest / 2^64 */
        half = (uint64_t)1 << 63;
    }
    int inexact = rest != 0;
    if (hv_round_up(rm, sign, mag, rest, half)) {
        mag++;
        if (mag == 0) { *fl |= HV_NV; r = sign ? (is_signed ? -min : 0) : max; goto out; }
    }
    if (sign) {
        if (mag > min || (!is_signed && mag != 0)) {
            *fl |= HV_NV;
            r = is_signed ? -min : 0;
            goto out;
        }
        r = -mag;
    } else {
        if (mag > max) { *fl |= HV_NV; r = max; goto out; }
        r = mag;
    }
    if (inexact) *fl |= HV_NX;
out:
    if (bits == 32) r = (uint64_t)(int64_t)(int32_t)(uint32_t)r;
    return r;
}

static inline uint64_t hv_f64_to_f32(uint64_t a, int rm, uint32_t* fl) {
    if (hv_fp_isnan(1, a)) return hv_nan2(1, a, a, fl), HV_CNAN(0);
    int sign = HV_SIGN(1, a);
    if (hv_fp_isinf(1, a)) return HV_INF(0, sign);
    if (hv_fp_iszero(1, a)) return HV_ZERO(0, sign);
    int e;
    uint64_t m = hv_unpack(1, a, &e);
    return hv_round_pack(0, sign, e, m, rm, fl);
}

static inline uint64_t hv_f32_to_f64(uint64_t a, uint32_t* fl) {
    if (hv_fp_isnan(0, a)) return hv_nan2(0, a, a, fl), HV_CNAN(1);
    int sign = HV_SIGN(0, a);
    if (hv_fp_isinf(0, a)) return HV_INF(1, sign);
    if (hv_fp_iszero(0, a)) return HV_ZERO(1, sign);
    int e;
    uint64_t m = hv_unpack(0, a, &e);
    return hv_round_pack(1, sign, e, m, HV_RNE, fl);          /* exact */
}

/* ---- comparisons and FMIN/FMAX (version 2.2 rules) ---- */

/* -1, 0, 1 for a < b, a == b, a > b; both ordered (not NaN) */
static inline int hv_fcmp(int d, uint64_t a, uint64_t b) {
    if (hv_fp_iszero(d, a) && hv_fp_iszero(d, b)) return 0;
    int sa = HV_SIGN(d, a), sb = HV_SIGN(d, b);
    uint64_t ma = a & (HV_SIGNBIT(d) - 1), mb = b & (HV_SIGNBIT(d) - 1);
    if (sa != sb) return sa ? -1 : 1;
    if (ma == mb) return 0;
    return ((ma < mb) ^ sa) ? -1 : 1;
}

/* FEQ (quiet: NV only for a signalling NaN), FLT and FLE (NV for any NaN) */
static inline int hv_feq(int d, uint64_t a, uint64_t b, uint32_t* fl) {
    if (hv_fp_isnan(d, a) || hv_fp_isnan(d, b)) {
        if (hv_fp_issnan(d, a) || hv_fp_issnan(d, b)) *fl |= HV_NV;
        return 0;
    }
    return hv_fcmp(d, a, b) == 0; }
static inline int hv_flt(int d, uint64_t a, uint64_t b, uint32_t* fl) {
    if (hv_fp_isnan(d, a) || hv_fp_isnan(d, b)) { *fl |= HV_NV; return 0; }
    return hv_fcmp(d, a, b) < 0; }
static inline int hv_fle(int d, uint64_t a, uint64_t b, uint32_t* fl) {
    if (hv_fp_isnan(d, a) || hv_fp_isnan(d, b)) { *fl |= HV_NV; return 0; }
    return hv_fcmp(d, a, b) <= 0; }

/* FMIN (max = 0) / FMAX (max = 1): a NaN operand gives the other one (the canonical NaN
 * if both are), -0 is less than +0, NV for a signalling NaN */
static inline uint64_t hv_fminmax(int d, uint64_t a, uint64_t b, int max, uint32_t* fl) {
    int an = hv_fp_isnan(d, a), bn = hv_fp_isnan(d, b);
    if (hv_fp_issnan(d, a) || hv_fp_issnan(d, b)) *fl |= HV_NV;
    if (an && bn) return HV_CNAN(d);
    if (an) return b;
    if (bn) return a;
    int c = hv_fcmp(d, a, b);
    if (c == 0 && hv_fp_iszero(d, a))                /* -0 < +0 */
        c = HV_SIGN(d, a) == HV_SIGN(d, b) ? 0 : (HV_SIGN(d, a) ? -1 : 1);
    return (c < 0) ^ max ? a : b;
}

#endif
