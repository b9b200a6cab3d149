/* fpbench.elf: a deterministic floating-point workload (about 40 million instructions).
 *
 * Double-precision matrix multiply (FMA), an n-body step loop (sqrt, div), a
 * single-precision polynomial/Newton loop and integer<->float conversions, as an
 * FP-heavy counterpart of bench.elf.  Prints the results' bits as a checksum and the
 * instructions retired:
 *     fpbench: checksum=0x...
 *     fpbench: instret=N
 * Built with -march=rv64imafdc -mabi=lp64d; the default rounding mode (RNE) only. */
#include "fw.h"

typedef uint64_t u64;

#define N 48
static double a[N][N], b[N][N], c[N][N];

#define BODIES 16
static double px[BODIES], py[BODIES], pz[BODIES], vx[BODIES], vy[BODIES], vz[BODIES];
static double mass[BODIES];

static u64 bits(double d) { u64 u; memcpy(&u, &d, 8); return u; }
static u64 bits32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static u64 mix(u64 h, u64 v) { return (h ^ v) * 0x100000001b3UL + (h >> 29); }

static u64 matmul(void)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            a[i][j] = (double)(i * N + j) / 7.0 - 3.5;
            b[i][j] = 1.0 / (double)(1 + i + 2 * j);
        }
    u64 h = 0;
    for (int round = 0; round < 16; round++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double s = 0.0;
                for (int k = 0; k < N; k++)
                    s = __builtin_fma(a[i][k], b[k][j], s);
                c[i][j] = s;
            }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                a[i][j] = c[i][j] * 0.125;
        h = mix(h, bits(c[round][N - 1 - round]));
    }
    return h;
}

static u64 nbody(void)
{
    for (int i = 0; i < BODIES; i++) {
        px[i] = i * 1.5; py[i] = (i % 4) * 2.25 - 3.0; pz[i] = (i % 3) * 0.75;
        vx[i] = 0.01 * i; vy[i] = -0.02 * (i % 5); vz[i] = 0.0;
        mass[i] = 1.0 + 0.1 * i;
    }
    const double dt = 0.001;
    for (int step = 0; step < 1200; step++) {
        for (int i = 0; i < BODIES; i++)
            for (int j = i + 1; j < BODIES; j++) {
                double dx = px[i] - px[j], dy = py[i] - py[j], dz = pz[i] - pz[j];
                double d2 = dx * dx + dy * dy + dz * dz + 0.01;
                double inv = 1.0 / (d2 * __builtin_sqrt(d2));
                double fi = mass[j] * inv * dt, fj = mass[i] * inv * dt;
                vx[i] -= dx * fi; vy[i] -= dy * fi; vz[i] -= dz * fi;
                vx[j] += dx * fj; vy[j] += dy * fj; vz[j] += dz * fj;
            }
        for (int i = 0; i < BODIES; i++) {
            px[i] += vx[i] * dt; py[i] += vy[i] * dt; pz[i] += vz[i] * dt;
        }
    }
    u64 h = 0;
    for (int i = 0; i < BODIES; i++)
        h = mix(mix(mix(h, bits(px[i])), bits(py[i])), bits(pz[i]));
    return h;
}

static u64 singles(void)
{
    u64 h = 0;
    float x = 0.5f;
    for (int i = 0; i < 240000; i++) {
        float p = ((0.25f * x - 1.5f) * x + 2.0f) * x - 0.75f;     /* Horner */
        float r = 1.0f / (1.0f + x * x);
        x = p * r + (float)(i & 7) * 0.125f;
        if (x > 4.0f || x < -4.0f)
            x = x * 0.0625f;
        float y = __builtin_sqrtf(x * x + 1.0f);
        h = mix(h, bits32(y) ^ (u64)(long)(y * 1000.0f));
    }
    return h;
}

static u64 conversions(void)
{
    u64 h = 0;
    for (long i = -60000; i < 60000; i++) {
        double d = (double)i * 1.25 + 0.5;
        long l = (long)d;
        float f = (float)d;
        unsigned u = (unsigned)(d < 0 ? -d : d);
        h = mix(h, (u64)l ^ bits32(f) ^ (u64)u ^ bits((double)u / 3.0));
    }
    return h;
}

__attribute__((noinline)) static int run(void)
{
    u64 h = mix(mix(mix(matmul(), nbody()), singles()), conversions());
    u64 instret = csr_read(minstret);
    printf("fpbench: checksum=0x%016lx\n", h);
    printf("fpbench: instret=%lu\n", instret);
    return 0;
}

int main(void)
{
    csr_set(mstatus, 1UL << 13);    /* FS = Initial before the first FP instruction */
    return run();
}
