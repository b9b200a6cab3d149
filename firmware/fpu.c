/* fpu.elf: the F and D extensions, checked against what the spec fixes.
 *
 * Prints one `name=0x<16 hex digits>` line per value between `compare: fpu` and
 * `compare: end`, then powers off with 0; tests/test_fpu_firmware.py runs it on
 * hvemu (both engines) and on qemu-system-riscv64 and requires the same text.
 *
 *   fs_off.*     with mstatus.FS = Off an FP instruction of each kind, and an fcsr
 *                access, raise an illegal-instruction exception (mcause, mtval)
 *   fs.*         mstatus.FS and SD after FP instructions from Initial and Clean
 *   fcsr.*       frm/fflags/fcsr read and write (WARL bits)
 *   rm.*         reserved rounding modes: rm 5/6 and the dynamic mode with frm 5-7
 *   <op>.<mode>  for each operation and rounding mode (frm 0-4, used through the
 *                dynamic mode): a hash of the result bits (f registers as 64 raw
 *                bits, so NaN boxing shows) and accrued flags over every pair of
 *                operands from the tables below, and the OR of the flags
 *   static.*     a few instructions with a static rounding mode in their encoding
 *   box.*, nan.* NaN boxing of singles and the canonical NaN, value by value
 *
 * Built with -march=rv64imafdc -mabi=lp64d (see the Makefile).  main() turns the
 * FPU on before any FP instruction runs; the trap handler records the cause and
 * skips the instruction, so traps are part of the dump. */
#include "fw.h"

typedef uint64_t u64;

#define MSTATUS_FS      (3UL << 13)
#define MSTATUS_SD      (1UL << 63)
#define FS_INITIAL      (1UL << 13)
#define FS_CLEAN        (2UL << 13)

static void put(const char *name, u64 v) { printf("%s=0x%016lx\n", name, v); }

/* ---- traps: recorded, the instruction skipped ---- */
static volatile u64 trap_cause, trap_tval;
void trap_unexpected(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval);

uintptr_t handle_trap(uintptr_t mcause, uintptr_t mepc, uintptr_t mtval, uintptr_t *frame)
{
    (void)frame;
    if (mcause != CAUSE_ILLEGAL_INSN)
        trap_unexpected(mcause, mepc, mtval);
    trap_cause = mcause;
    trap_tval = mtval;
    return mepc + ((*(volatile uint16_t *)mepc & 3) == 3 ? 4 : 2);
}

static void clear_trap(void) { trap_cause = trap_tval = 0; }

static void put_trap(const char *name)
{
    printf("%s.mcause=0x%016lx\n%s.mtval=0x%016lx\n", name, trap_cause, name, trap_tval);
    clear_trap();
}

static u64 fs_bits(void) { return csr_read(mstatus) & (MSTATUS_FS | MSTATUS_SD); }

static void set_fs(u64 fs)
{
    csr_clear(mstatus, MSTATUS_FS);
    csr_set(mstatus, fs);
}

/* fflags, read and cleared */
static inline u64 take_flags(void)
{
    u64 f;
    __asm__ volatile ("csrrw %0, fflags, zero" : "=r"(f) :: "memory");
    return f;
}

/* ---- operand tables (raw bits; singles as NaN-boxed f-register values) ---- */
static const u64 doubles[] = {
    0x0000000000000000, 0x8000000000000000,                     /* +-0 */
    0x0000000000000001, 0x800fffffffffffff,                     /* subnormals */
    0x0010000000000000, 0x3fefffffffffffff,                     /* min normal, 1-ulp */
    0x3ff0000000000000, 0xbff8000000000000,                     /* 1, -1.5 */
    0x3fb999999999999a, 0x4004000000000000,                     /* 0.1, 2.5 */
    0x41dfffffffe00000, 0xc3e0000000000000,                     /* 2^31-0.5, -2^63 */
    0x43f0000000000000, 0x7fefffffffffffff,                     /* 2^64, max */
    0x7ff0000000000000, 0xfff0000000000000,                     /* +-inf */
    0x7ff8000000000000, 0xfff8000000000123,                     /* qNaNs */
    0x7ff0000000000001, 0x3ca0000000000000,                     /* sNaN, 2^-53 */
};
#define N_D (sizeof doubles / sizeof doubles[0])

static const u64 singles[] = {
    0xffffffff00000000, 0xffffffff80000000,                     /* +-0 */
    0xffffffff00000001, 0xffffffff807fffff,                     /* subnormals */
    0xffffffff00800000, 0xffffffff3f7fffff,                     /* min normal, 1-ulp */
    0xffffffff3f800000, 0xffffffffbfc00000,                     /* 1, -1.5 */
    0xffffffff3dcccccd, 0xffffffff40200000,                     /* 0.1, 2.5 */
    0xffffffff4effffff, 0xffffffffdf000000,                     /* < 2^31, -2^63 */
    0xffffffff5f800000, 0xffffffff7f7fffff,                     /* 2^64, max */
    0xffffffff7f800000, 0xffffffffff800000,                     /* +-inf */
    0xffffffff7fc00000, 0xffffffffffc00123,                     /* qNaNs */
    0xffffffff7f800001, 0xffffffff33800000,                     /* sNaN, 2^-24 */
    0x000000003f800000, 0x123456783f800000,                     /* not NaN-boxed */
};
#define N_S (sizeof singles / sizeof singles[0])

static const u64 integers[] = {
    0, 1, 0xffffffffffffffff, 7, 0x1000001, 0x20000000000001, 0x7fffffff,
    0xffffffff80000000, 0x80000000, 0xffffffff, 0x100000000, 0x7fffffffffffffff,
    0x8000000000000000, 0x8000000000000401, 0xfffffffffffffffe, 0x123456789abcdef1,
};
#define N_X (sizeof integers / sizeof integers[0])

/* ---- one instruction each, on raw register bits ---- */
#define FN2(name, insn)                                                         \
    static u64 name(u64 a, u64 b, u64 c) {                                      \
        u64 r; (void)c;                                                         \
        __asm__ volatile ("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\t"              \
                          insn " ft2, ft0, ft1\n\tfmv.x.d %0, ft2"               \
                          : "=r"(r) : "r"(a), "r"(b) : "ft0", "ft1", "ft2");     \
        return r; }
#define FN2DYN(name, insn) FN2(name, insn)
#define FN3(name, insn)                                                         \
    static u64 name(u64 a, u64 b, u64 c) {                                      \
        u64 r;                                                                  \
        __asm__ volatile ("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\tfmv.d.x ft2, %3\n\t" \
                          insn " ft3, ft0, ft1, ft2, dyn\n\tfmv.x.d %0, ft3"     \
                          : "=r"(r) : "r"(a), "r"(b), "r"(c)                     \
                          : "ft0", "ft1", "ft2", "ft3");                         \
        return r; }
#define FN1(name, insn, rm)                                                     \
    static u64 name(u64 a, u64 b, u64 c) {                                      \
        u64 r; (void)b; (void)c;                                                \
        __asm__ volatile ("fmv.d.x ft0, %1\n\t" insn " ft2, ft0" rm "\n\t"      \
                          "fmv.x.d %0, ft2" : "=r"(r) : "r"(a) : "ft0", "ft2");  \
        return r; }
#define TOX(name, insn, rm)                      /* f -> x */                    \
    static u64 name(u64 a, u64 b, u64 c) {                                      \
        u64 r; (void)c;                                                         \
        __asm__ volatile ("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\t" insn rm      \
                          : "=r"(r) : "r"(a), "r"(b) : "ft0", "ft1");            \
        return r; }
#define FROMX(name, insn, rm)                    /* x -> f */                    \
    static u64 name(u64 a, u64 b, u64 c) {                                      \
        u64 r; (void)b; (void)c;                                                \
        __asm__ volatile (insn " ft2, %1" rm "\n\tfmv.x.d %0, ft2"               \
                          : "=r"(r) : "r"(a) : "ft2");                           \
        return r; }

FN2(fadd_d, "fadd.d") FN2(fsub_d, "fsub.d") FN2(fmul_d, "fmul.d") FN2(fdiv_d, "fdiv.d")
FN2(fadd_s, "fadd.s") FN2(fsub_s, "fsub.s") FN2(fmul_s, "fmul.s") FN2(fdiv_s, "fdiv.s")
FN2(fmin_d, "fmin.d") FN2(fmax_d, "fmax.d") FN2(fmin_s, "fmin.s") FN2(fmax_s, "fmax.s")
FN2(fsgnj_d, "fsgnj.d") FN2(fsgnjn_d, "fsgnjn.d") FN2(fsgnjx_d, "fsgnjx.d")
FN2(fsgnj_s, "fsgnj.s") FN2(fsgnjn_s, "fsgnjn.s") FN2(fsgnjx_s, "fsgnjx.s")
FN3(fmadd_d, "fmadd.d") FN3(fmsub_d, "fmsub.d") FN3(fnmsub_d, "fnmsub.d") FN3(fnmadd_d, "fnmadd.d")
FN3(fmadd_s, "fmadd.s") FN3(fmsub_s, "fmsub.s") FN3(fnmsub_s, "fnmsub.s") FN3(fnmadd_s, "fnmadd.s")
FN1(fsqrt_d, "fsqrt.d", ", dyn") FN1(fsqrt_s, "fsqrt.s", ", dyn")
FN1(fcvt_s_d, "fcvt.s.d", ", dyn") FN1(fcvt_d_s, "fcvt.d.s", "")
TOX(feq_d, "feq.d %0, ft0, ft1", "") TOX(flt_d, "flt.d %0, ft0, ft1", "")
TOX(fle_d, "fle.d %0, ft0, ft1", "") TOX(feq_s, "feq.s %0, ft0, ft1", "")
TOX(flt_s, "flt.s %0, ft0, ft1", "") TOX(fle_s, "fle.s %0, ft0, ft1", "")
TOX(fclass_d, "fclass.d %0, ft0", "") TOX(fclass_s, "fclass.s %0, ft0", "")
TOX(fmv_x_w, "fmv.x.w %0, ft0", "")
TOX(fcvt_w_d, "fcvt.w.d %0, ft0", ", dyn") TOX(fcvt_wu_d, "fcvt.wu.d %0, ft0", ", dyn")
TOX(fcvt_l_d, "fcvt.l.d %0, ft0", ", dyn") TOX(fcvt_lu_d, "fcvt.lu.d %0, ft0", ", dyn")
TOX(fcvt_w_s, "fcvt.w.s %0, ft0", ", dyn") TOX(fcvt_wu_s, "fcvt.wu.s %0, ft0", ", dyn")
TOX(fcvt_l_s, "fcvt.l.s %0, ft0", ", dyn") TOX(fcvt_lu_s, "fcvt.lu.s %0, ft0", ", dyn")
FROMX(fcvt_d_w, "fcvt.d.w", "") FROMX(fcvt_d_wu, "fcvt.d.wu", "")
FROMX(fcvt_d_l, "fcvt.d.l", ", dyn") FROMX(fcvt_d_lu, "fcvt.d.lu", ", dyn")
FROMX(fcvt_s_w, "fcvt.s.w", ", dyn") FROMX(fcvt_s_wu, "fcvt.s.wu", ", dyn")
FROMX(fcvt_s_l, "fcvt.s.l", ", dyn") FROMX(fcvt_s_lu, "fcvt.s.lu", ", dyn")
FROMX(fmv_w_x, "fmv.w.x", "")

typedef u64 (*fn_t)(u64, u64, u64);
enum { D, S, X };           /* operand table */
struct op { const char *name; fn_t fn; int table; int arity; int rounds; };

static const struct op ops[] = {
    {"fadd.d", fadd_d, D, 2, 1}, {"fsub.d", fsub_d, D, 2, 1}, {"fmul.d", fmul_d, D, 2, 1},
    {"fdiv.d", fdiv_d, D, 2, 1}, {"fsqrt.d", fsqrt_d, D, 1, 1},
    {"fmadd.d", fmadd_d, D, 3, 1}, {"fmsub.d", fmsub_d, D, 3, 1},
    {"fnmsub.d", fnmsub_d, D, 3, 1}, {"fnmadd.d", fnmadd_d, D, 3, 1},
    {"fadd.s", fadd_s, S, 2, 1}, {"fsub.s", fsub_s, S, 2, 1}, {"fmul.s", fmul_s, S, 2, 1},
    {"fdiv.s", fdiv_s, S, 2, 1}, {"fsqrt.s", fsqrt_s, S, 1, 1},
    {"fmadd.s", fmadd_s, S, 3, 1}, {"fmsub.s", fmsub_s, S, 3, 1},
    {"fnmsub.s", fnmsub_s, S, 3, 1}, {"fnmadd.s", fnmadd_s, S, 3, 1},
    {"fcvt.s.d", fcvt_s_d, D, 1, 1}, {"fcvt.d.s", fcvt_d_s, S, 1, 0},
    {"fcvt.w.d", fcvt_w_d, D, 1, 1}, {"fcvt.wu.d", fcvt_wu_d, D, 1, 1},
    {"fcvt.l.d", fcvt_l_d, D, 1, 1}, {"fcvt.lu.d", fcvt_lu_d, D, 1, 1},
    {"fcvt.w.s", fcvt_w_s, S, 1, 1}, {"fcvt.wu.s", fcvt_wu_s, S, 1, 1},
    {"fcvt.l.s", fcvt_l_s, S, 1, 1}, {"fcvt.lu.s", fcvt_lu_s, S, 1, 1},
    {"fcvt.d.w", fcvt_d_w, X, 1, 0}, {"fcvt.d.wu", fcvt_d_wu, X, 1, 0},
    {"fcvt.d.l", fcvt_d_l, X, 1, 1}, {"fcvt.d.lu", fcvt_d_lu, X, 1, 1},
    {"fcvt.s.w", fcvt_s_w, X, 1, 1}, {"fcvt.s.wu", fcvt_s_wu, X, 1, 1},
    {"fcvt.s.l", fcvt_s_l, X, 1, 1}, {"fcvt.s.lu", fcvt_s_lu, X, 1, 1},
    {"fmin.d", fmin_d, D, 2, 0}, {"fmax.d", fmax_d, D, 2, 0},
    {"fmin.s", fmin_s, S, 2, 0}, {"fmax.s", fmax_s, S, 2, 0},
    {"fsgnj.d", fsgnj_d, D, 2, 0}, {"fsgnjn.d", fsgnjn_d, D, 2, 0},
    {"fsgnjx.d", fsgnjx_d, D, 2, 0}, {"fsgnj.s", fsgnj_s, S, 2, 0},
    {"fsgnjn.s", fsgnjn_s, S, 2, 0}, {"fsgnjx.s", fsgnjx_s, S, 2, 0},
    {"feq.d", feq_d, D, 2, 0}, {"flt.d", flt_d, D, 2, 0}, {"fle.d", fle_d, D, 2, 0},
    {"feq.s", feq_s, S, 2, 0}, {"flt.s", flt_s, S, 2, 0}, {"fle.s", fle_s, S, 2, 0},
    {"fclass.d", fclass_d, D, 1, 0}, {"fclass.s", fclass_s, S, 1, 0},
    {"fmv.x.w", fmv_x_w, S, 1, 0}, {"fmv.w.x", fmv_w_x, X, 1, 0},
};

static const char *const mode_names[] = {"rne", "rtz", "rdn", "rup", "rmm"};

/* FNV-1a over 64-bit words */
static u64 mix(u64 h, u64 v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3UL;
    }
    return h;
}

static void run_op(const struct op *op, int mode)
{
    const u64 *t = op->table == D ? doubles : op->table == S ? singles : integers;
    unsigned n = op->table == D ? N_D : op->table == S ? N_S : N_X;
    u64 h = 0xcbf29ce484222325UL, all = 0;
    char name[40];
    __asm__ volatile ("fsrm %0" :: "r"((u64)mode));
    take_flags();
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < (op->arity > 1 ? n : 1); j++)
            for (unsigned k = 0; k < (op->arity > 2 ? n : 1); k += op->arity > 2 ? 3 : 1) {
                u64 r = op->fn(t[i], t[j], t[k]);
                u64 f = take_flags();
                h = mix(mix(h, r), f);
                all |= f;
            }
    int len = 0;
    for (const char *p = op->name; *p; p++)
        name[len++] = *p;
    name[len++] = '.';
    for (const char *p = op->rounds ? mode_names[mode] : "any"; *p; p++)
        name[len++] = *p;
    name[len] = 0;
    printf("%s.hash=0x%016lx\n%s.flags=0x%016lx\n", name, h, name, all);
}

/* ---- mstatus.FS Off: every kind of FP instruction and fcsr traps ---- */
static u64 scratch[4];

static void fs_off(void)
{
    set_fs(0);
    clear_trap();
    __asm__ volatile ("fadd.d ft0, ft1, ft2" ::: "ft0");
    put_trap("fs_off.fadd_d");
    __asm__ volatile ("fmadd.s ft0, ft1, ft2, ft3" ::: "ft0");
    put_trap("fs_off.fmadd_s");
    __asm__ volatile ("fld ft0, 0(%0)" :: "r"(scratch) : "ft0");
    put_trap("fs_off.fld");
    __asm__ volatile ("fsw ft0, 0(%0)" :: "r"(scratch) : "memory");
    put_trap("fs_off.fsw");
    __asm__ volatile ("c.fldsp ft0, 8(sp)" ::: "ft0");
    put_trap("fs_off.c_fldsp");
    __asm__ volatile ("fmv.x.d a0, ft0" ::: "a0");
    put_trap("fs_off.fmv_x_d");
    __asm__ volatile ("csrr a0, fcsr" ::: "a0");
    put_trap("fs_off.csrr_fcsr");
    __asm__ volatile ("csrwi frm, 1");
    put_trap("fs_off.csrwi_frm");
    put("fs_off.mstatus", fs_bits());
}

/* ---- mstatus.FS Initial/Clean -> Dirty when FP state changes ----
 * Only what the spec fixes is printed: an instruction that alters f registers or
 * fcsr makes FS Dirty, and SD says so.  Whether FS stays Initial/Clean after one that
 * does not (a store, a move to x) is up to the implementation, and so is the value
 * read back right after writing Initial or Clean (FS may track no dirtiness). */
static void fs_tracking(void)
{
    __asm__ volatile ("fmv.d.x ft0, zero\n\tfmv.d.x ft1, %0\n\tfmv.d.x ft2, %0\n\t"
                      "fmv.d.x ft3, %0" :: "r"(0x3ff0000000000000UL) : "ft0", "ft1", "ft2", "ft3");
    take_flags();
    set_fs(FS_INITIAL);
    __asm__ volatile ("fadd.d ft0, ft1, ft2" ::: "ft0");           /* ft0: 0 -> 2.0 */
    put("fs.initial_fadd", fs_bits());
    set_fs(FS_CLEAN);
    __asm__ volatile ("fsd ft0, 0(%0)" :: "r"(scratch) : "memory");
    __asm__ volatile ("fld ft3, 0(%0)" :: "r"(scratch) : "ft3");  /* ft3: 1.0 -> 2.0 */
    put("fs.clean_fld", fs_bits());
    set_fs(FS_CLEAN);
    __asm__ volatile ("fmv.w.x ft3, zero" ::: "ft3");
    put("fs.clean_fmv_w_x", fs_bits());
    set_fs(FS_CLEAN);
    __asm__ volatile ("csrwi fflags, 1");                           /* 0 -> NX */
    put("fs.clean_csrwi_fflags", fs_bits());
    take_flags();
    set_fs(FS_CLEAN);
    __asm__ volatile ("csrwi frm, 3");
    put("fs.clean_csrwi_frm", fs_bits());
    __asm__ volatile ("fsrm zero");
    take_flags();
    set_fs(FS_CLEAN);
    __asm__ volatile ("fmv.d.x ft1, %0\n\tflt.d a0, ft1, ft1" :: "r"(0x7ff8000000000000UL)
                      : "a0", "ft1");                               /* NV: fflags 0 -> 0x10 */
    put("fs.clean_flt_qnan", fs_bits());
    take_flags();
    put("fs.dirty_sstatus", csr_read(sstatus) & (MSTATUS_FS | MSTATUS_SD));
}

static void fcsr_fields(void)
{
    u64 old, v;
    __asm__ volatile ("csrrw %0, fcsr, %1" : "=r"(old) : "r"(0xffffffffffffffffUL));
    put("fcsr.after_all_ones", csr_read(fcsr));
    put("fcsr.frm", csr_read(frm));
    put("fcsr.fflags", csr_read(fflags));
    __asm__ volatile ("csrrwi %0, frm, 2" : "=r"(v));
    put("fcsr.frm_old", v);
    __asm__ volatile ("csrrci %0, fflags, 0x11" : "=r"(v));
    put("fcsr.fflags_old", v);
    put("fcsr.final", csr_read(fcsr));
    csr_write(fcsr, 0);
    (void)old;
}

/* ---- reserved rounding modes ---- */
static void reserved_modes(void)
{
    clear_trap();
    __asm__ volatile (".insn r 0x53, 5, 0x01, ft0, ft1, ft2" ::: "ft0");   /* fadd.d rm=5 */
    put_trap("rm.static5");
    __asm__ volatile (".insn r 0x53, 6, 0x00, ft0, ft1, ft2" ::: "ft0");   /* fadd.s rm=6 */
    put_trap("rm.static6");
    __asm__ volatile (".insn r 0x53, 5, 0x21, ft0, ft1, f0" ::: "ft0");    /* fcvt.d.s rm=5 */
    put_trap("rm.fcvt_d_s_static5");
    for (u64 frm = 5; frm < 8; frm++) {
        char name[] = "rm.dyn_frm5";
        name[10] = (char)('0' + frm);
        __asm__ volatile ("fsrm %0" :: "r"(frm));
        __asm__ volatile ("fmul.d ft0, ft1, ft2, dyn" ::: "ft0");
        put_trap(name);
        __asm__ volatile ("fsgnj.d ft0, ft1, ft2" ::: "ft0");          /* does not round */
        char name2[] = "rm.fsgnj_frm5";
        name2[12] = (char)('0' + frm);
        put_trap(name2);
    }
    __asm__ volatile ("fsrm zero");
}

/* ---- a few values printed one by one ---- */
static void values(void)
{
    u64 r;
    r = fadd_s(0x3f800000, 0xffffffff3f800000, 0);        /* an operand not NaN-boxed */
    put("box.fadd_s_unboxed", r);
    put("box.fmv_w_x", fmv_w_x(0x12345678deadbeef, 0, 0));
    put("box.fcvt_s_d", fcvt_s_d(0x3ff0000000000000, 0, 0));
    put("box.fmv_x_w_unboxed", fmv_x_w(0x1234567887654321, 0, 0));
    put("box.fclass_s_unboxed", fclass_s(0x000000007f800000, 0, 0));
    put("nan.fadd_d_payload", fadd_d(0x7ff8000000000123, 0x3ff0000000000000, 0));
    put("nan.fsgnjn_d_payload", fsgnjn_d(0x7ff0000000000001, 0, 0));
    take_flags();
    put("nan.fmin_snan_number", fmin_d(0x7ff0000000000001, 0x3ff0000000000000, 0));
    put("nan.fmin_snan_number.flags", take_flags());
    put("nan.fmadd_inf_zero_qnan", fmadd_d(0x7ff0000000000000, 0, 0x7ff8000000000000));
    put("nan.fmadd_inf_zero_qnan.flags", take_flags());
}

static void statics(void)
{
    u64 r;
    take_flags();
    __asm__ volatile ("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\tfadd.d ft2, ft0, ft1, rmm\n\t"
                      "fmv.x.d %0, ft2" : "=r"(r) : "r"(0x3ff0000000000000UL),
                      "r"(0x3ca0000000000000UL) : "ft0", "ft1", "ft2");
    put("static.fadd_d_rmm_tie", r);
    __asm__ volatile ("fmv.d.x ft0, %1\n\tfmv.d.x ft1, %2\n\tfadd.d ft2, ft0, ft1, rup\n\t"
                      "fmv.x.d %0, ft2" : "=r"(r) : "r"(0x3ff0000000000000UL),
                      "r"(0x0000000000000001UL) : "ft0", "ft1", "ft2");
    put("static.fadd_d_rup", r);
    __asm__ volatile ("fmv.d.x ft0, %1\n\tfcvt.w.d %0, ft0, rdn"
                      : "=r"(r) : "r"(0xc004000000000000UL) : "ft0");
    put("static.fcvt_w_d_rdn", r);
    __asm__ volatile ("fmv.d.x ft0, %1\n\tfcvt.lu.d %0, ft0, rtz"
                      : "=r"(r) : "r"(0x43efffffffffffffUL) : "ft0");
    put("static.fcvt_lu_d_rtz", r);
    put("static.flags", take_flags());
}

static void loads_stores(void)
{
    u64 r;
    scratch[0] = 0x7ff4000000000abcUL;          /* an sNaN: bits kept by loads/stores */
    scratch[1] = 0xaaaaaaaa7fa00001UL;
    __asm__ volatile ("fld ft0, 0(%1)\n\tfsd ft0, 16(%1)\n\tflw ft1, 8(%1)\n\t"
                      "fsw ft1, 24(%1)\n\tfmv.x.d %0, ft1" : "=r"(r) : "r"(scratch)
                      : "ft0", "ft1", "memory");
    put("mem.fsd", scratch[2]);
    put("mem.flw_boxed", r);
    put("mem.fsw_low_half", scratch[3]);
    register u64 *p __asm__("a5") = scratch;                     /* rs1' in x8..x15 */
    __asm__ volatile ("c.fld fa0, 0(%1)\n\tc.fsd fa0, 8(%1)\n\tfmv.x.d %0, fa0"
                      : "=r"(r) : "r"(p) : "fa0", "memory");
    put("mem.c_fld_c_fsd", scratch[1]);
    put("mem.flags", take_flags());
}

__attribute__((noinline)) static int run(void)
{
    printf("compare: fpu\n");
    u64 misa = csr_read(misa);
    put("misa.fd", misa & ((1UL << 3) | (1UL << 5)));
    fs_off();
    set_fs(MSTATUS_FS);
    csr_write(fcsr, 0);
    fs_tracking();
    fcsr_fields();
    reserved_modes();
    values();
    statics();
    loads_stores();
    for (unsigned i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (int mode = 0; mode < (ops[i].rounds ? 5 : 1); mode++)
            run_op(&ops[i], mode);
    printf("compare: end\n");
    return 0;
}

int main(void)
{
    csr_set(mstatus, FS_INITIAL);   /* before the first FP instruction */
    return run();
}
