/* bitmanip.elf: every Zba, Zbb, Zbc and Zbs instruction on a fixed set of operands.
 *
 * For each instruction one line, name=<fold of its results>: the results over every
 * pair of the 24 operands below (rs1 x rs2), or for the immediate forms over every
 * operand and every shift amount, folded FNV-style into 64 bits -- so one differing
 * result changes the line.  Then a few single results as anchors.  Everything the
 * instructions compute is fixed by the spec (unprivileged spec, "B" chapter), so
 * the dump is the same on every correct hart; QEMU 7.2's default rv64 CPU has the
 * four extensions.  The C code is compiled with them too, so gcc's own use of them
 * (sh*add in address arithmetic, ...) runs as well. */
#include "cmp.h"

#define N_VALUES 24

static u64 values[N_VALUES] = {
    0, 1, 2, 31, 32, 63, 64, 0x7f, 0x80, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
    0x100000000, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff,
    0x0101010101010101, 0x8080808080808080, 0x00ff00000000ff00,
};

static void fill_values(void)
{
    u64 x = 0x9e3779b97f4a7c15;             /* xorshift64 for the last four */
    for (int i = 20; i < N_VALUES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values[i] = x;
    }
}

static u64 fold(u64 h, u64 v)
{
    return (h ^ v) * 0x100000001b3;
}

typedef u64 (*op2)(u64, u64);

#define RR(fn, insn) \
    static u64 fn(u64 a, u64 b) { u64 r; \
        __asm__ volatile (insn " %0, %1, %2" : "=r"(r) : "r"(a), "r"(b)); return r; }
#define R1(fn, insn) \
    static u64 fn(u64 a, u64 b) { u64 r; (void)b; \
        __asm__ volatile (insn " %0, %1" : "=r"(r) : "r"(a)); return r; }

RR(f_add_uw, "add.uw") RR(f_sh1add, "sh1add") RR(f_sh2add, "sh2add") RR(f_sh3add, "sh3add")
RR(f_sh1add_uw, "sh1add.uw") RR(f_sh2add_uw, "sh2add.uw") RR(f_sh3add_uw, "sh3add.uw")
RR(f_andn, "andn") RR(f_orn, "orn") RR(f_xnor, "xnor")
RR(f_min, "min") RR(f_minu, "minu") RR(f_max, "max") RR(f_maxu, "maxu")
RR(f_rol, "rol") RR(f_ror, "ror") RR(f_rolw, "rolw") RR(f_rorw, "rorw")
R1(f_clz, "clz") R1(f_ctz, "ctz") R1(f_cpop, "cpop")
R1(f_clzw, "clzw") R1(f_ctzw, "ctzw") R1(f_cpopw, "cpopw")
R1(f_sext_b, "sext.b") R1(f_sext_h, "sext.h") R1(f_zext_h, "zext.h")
R1(f_orc_b, "orc.b") R1(f_rev8, "rev8")
RR(f_clmul, "clmul") RR(f_clmulh, "clmulh") RR(f_clmulr, "clmulr")
RR(f_bset, "bset") RR(f_bclr, "bclr") RR(f_binv, "binv") RR(f_bext, "bext")

static const struct { const char *name; op2 fn; } ops[] = {
    { "add.uw", f_add_uw }, { "sh1add", f_sh1add }, { "sh2add", f_sh2add },
    { "sh3add", f_sh3add }, { "sh1add.uw", f_sh1add_uw }, { "sh2add.uw", f_sh2add_uw },
    { "sh3add.uw", f_sh3add_uw }, { "andn", f_andn }, { "orn", f_orn }, { "xnor", f_xnor },
    { "min", f_min }, { "minu", f_minu }, { "max", f_max }, { "maxu", f_maxu },
    { "rol", f_rol }, { "ror", f_ror }, { "rolw", f_rolw }, { "rorw", f_rorw },
    { "clz", f_clz }, { "ctz", f_ctz }, { "cpop", f_cpop }, { "clzw", f_clzw },
    { "ctzw", f_ctzw }, { "cpopw", f_cpopw }, { "sext.b", f_sext_b }, { "sext.h", f_sext_h },
    { "zext.h", f_zext_h }, { "orc.b", f_orc_b }, { "rev8", f_rev8 },
    { "clmul", f_clmul }, { "clmulh", f_clmulh }, { "clmulr", f_clmulr },
    { "bset", f_bset }, { "bclr", f_bclr }, { "binv", f_binv }, { "bext", f_bext },
};

/* The immediate forms: a table of 64 (or 32) "insn a0, a0, n; ret" pairs, 8 bytes
 * each, entered at entry n. */
#define IMM_TABLE(table, insn, count) \
    __asm__(".text\n.balign 8\n.option push\n.option norvc\n" #table ":\n" \
            ".set n, 0\n.rept " #count "\n" insn " a0, a0, n\nret\n.set n, n + 1\n.endr\n" \
            ".option pop\n");
IMM_TABLE(t_slli_uw, "slli.uw", 64)
IMM_TABLE(t_rori, "rori", 64)
IMM_TABLE(t_roriw, "roriw", 32)
IMM_TABLE(t_bseti, "bseti", 64)
IMM_TABLE(t_bclri, "bclri", 64)
IMM_TABLE(t_binvi, "binvi", 64)
IMM_TABLE(t_bexti, "bexti", 64)
extern char t_slli_uw[], t_rori[], t_roriw[], t_bseti[], t_bclri[], t_binvi[], t_bexti[];

static const struct { const char *name; char *table; int count; } imms[] = {
    { "slli.uw", t_slli_uw, 64 }, { "rori", t_rori, 64 }, { "roriw", t_roriw, 32 },
    { "bseti", t_bseti, 64 }, { "bclri", t_bclri, 64 }, { "binvi", t_binvi, 64 },
    { "bexti", t_bexti, 64 },
};

static u64 imm(char *table, int n, u64 a)
{
    return ((u64 (*)(u64))(void *)(table + 8 * n))(a);
}

/* a bit of compiled code that gcc turns into Zba/Zbb: indexing, rotates, byte swaps */
static u64 compiled(void)
{
    static u64 arr[16];
    u64 h = 0;
    for (unsigned i = 0; i < 16; i++)
        arr[i] = values[i] * 3;
    for (unsigned i = 0; i < 64; i++) {
        unsigned j = (i * 7) & 15;
        u64 v = arr[j];
        v = (v << (i & 63)) | (v >> ((64 - i) & 63));
        h = fold(h, __builtin_bswap64(v) + (u64)__builtin_popcountll(v) +
                 (u64)__builtin_ctzll(v | 1) + (u64)__builtin_clzll(v | 1));
    }
    return h;
}

int main(void)
{
    fill_values();
    printf("compare: bitmanip\n");
    for (unsigned k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        u64 h = 0xcbf29ce484222325;
        for (int i = 0; i < N_VALUES; i++)
            for (int j = 0; j < N_VALUES; j++)
                h = fold(h, ops[k].fn(values[i], values[j]));
        put(ops[k].name, h);
    }
    for (unsigned k = 0; k < sizeof imms / sizeof imms[0]; k++) {
        u64 h = 0xcbf29ce484222325;
        for (int i = 0; i < N_VALUES; i++)
            for (int n = 0; n < imms[k].count; n++)
                h = fold(h, imm(imms[k].table, n, values[i]));
        put(imms[k].name, h);
    }
    put("compiled", compiled());
    /* anchors: single results worked out by hand */
    put("one.sh3add", f_sh3add(5, 7));                             /* 47 */
    put("one.clz", f_clz(1, 0));                                   /* 63 */
    put("one.rev8", f_rev8(0x0102030405060708, 0));                /* 0x0807060504030201 */
    put("one.clmul", f_clmul(3, 3));                               /* 5 */
    put("one.orc_b", f_orc_b(0x0001020000000000, 0));              /* 0x00ffff0000000000 */
    put("one.rori", imm(t_rori, 1, 1));                            /* 1 << 63 */
    put("one.ctzw_high", f_ctzw(0x8000000000000000, 0));           /* 32: the low word is 0 */
    printf("compare: end\n");
    return 0;
}
