/* Step 5 (registers): general registers, the x87 stack and control word, MXCSR, xmm0-15, (with
 * AVX) the upper halves of ymm0-15 and (with AVX-512) zmm0-31 and k0-7 hold distinctive values
 * across checkpoint/restore. One asm
 * block loads them, then spins until SIGUSR2 sets the go flag, checking the general registers
 * and xmm registers against the expected values on every iteration (the checkpoint lands inside
 * this loop); on exit it saves everything (xsave/fxsave) for C to compare. Between loading and
 * saving no compiled code runs, so any difference is the engine's doing (a signal handler cannot
 * clobber: the kernel saves and restores the full register state around it). */
#include "survival.h"

#include <cpuid.h>
#include <stddef.h>
#include <stdint.h>

#define NAME "fpu"
#define NGPR 13 /* rbx rcx rdx rsi rbp r8 r9 r10 r11 r12 r13 r14 r15 (rdi = ctx, rax = scratch) */
#define FCW 0x0E7F    /* all exceptions masked, 53-bit precision, round toward zero */
#define MXCSR 0xDFC0  /* masked, round up, FTZ and DAZ on (default 0x1F80) */

static const char *gpr_names[NGPR] = {"rbx", "rcx", "rdx", "rsi", "rbp", "r8", "r9",
                                      "r10", "r11", "r12", "r13", "r14", "r15"};

struct fpu_ctx {
    uint64_t exp_gpr[NGPR];
    uint64_t got_gpr[NGPR];
    unsigned char exp_ymm[16][32];
    unsigned char exp_zmm[32][64]; /* zmm0-15 start with exp_ymm */
    uint64_t exp_k[8];
    double x87[8];
    volatile sig_atomic_t *go;
    uint64_t iterations;
    uint32_t failed;   /* a per-iteration check failed ... */
    uint32_t fail_idx; /* ... this one: GPR index, or 100 + xmm number */
    uint32_t avx;
    uint32_t avx512;
    uint32_t mxcsr;
    uint32_t default_mxcsr;
    uint16_t fcw;
    unsigned char area[8192] __attribute__((aligned(64)));
};

static struct fpu_ctx ctx __attribute__((aligned(64)));

#define S_(x) #x
#define S(x) S_(x)
#define GPR_CHECK(i, reg) "movl $" #i ", %c[fi](%%rdi)\n\tcmp %c[eg]+8*" #i "(%%rdi), %%" reg "\n\tjne 90f\n\t"
#define XMM_CHECK(n)                                                                                              \
    "movl $100+" #n ", %c[fi](%%rdi)\n\t"                                                                         \
    "movq %%xmm" #n ", %%rax\n\tcmp %c[ey]+32*" #n "(%%rdi), %%rax\n\tjne 90f\n\t"                              \
    "pextrq $1, %%xmm" #n ", %%rax\n\tcmp %c[ey]+32*" #n "+8(%%rdi), %%rax\n\tjne 90f\n\t"
#define GPR_LOAD(i, reg) "mov %c[eg]+8*" #i "(%%rdi), %%" reg "\n\t"
#define GPR_SAVE(i, reg) "mov %%" reg ", %c[gg]+8*" #i "(%%rdi)\n\t"
#define YMM_LOAD(n) "vmovdqu %c[ey]+32*" #n "(%%rdi), %%ymm" #n "\n\t"
#define XMM_LOAD(n) "movdqu %c[ey]+32*" #n "(%%rdi), %%xmm" #n "\n\t"
#define ZMM_LOAD(n) "vmovdqu64 %c[ez]+64*" #n "(%%rdi), %%zmm" #n "\n\t"
#define K_LOAD(n) "kmovq %c[ek]+8*" #n "(%%rdi), %%k" #n "\n\t"
#define ALL8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define ALL32(M) ALL16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define ALL_GPR(M)                                                                                                 \
    M(0, "rbx") M(1, "rcx") M(2, "rdx") M(3, "rsi") M(4, "rbp") M(5, "r8") M(6, "r9") M(7, "r10") M(8, "r11")     \
        M(9, "r12") M(10, "r13") M(11, "r14") M(12, "r15")
#define ALL16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define FLD(k) "fldl %c[x87]+8*" #k "(%%rdi)\n\t"

static void spin(struct fpu_ctx *c)
{
    __asm__ volatile(
        /* below the red zone, then keep the callee-saved registers we use */
        "lea -128(%%rsp), %%rsp\n\t"
        "push %%rbx\n\tpush %%rbp\n\tpush %%r12\n\tpush %%r13\n\tpush %%r14\n\tpush %%r15\n\t"
        "fninit\n\tfldcw %c[fcw](%%rdi)\n\t"
        FLD(0) FLD(1) FLD(2) FLD(3) FLD(4) FLD(5) FLD(6) FLD(7)
        "ldmxcsr %c[mx](%%rdi)\n\t"
        "cmpl $0, %c[avx512](%%rdi)\n\tje 69f\n\t"
        ALL32(ZMM_LOAD)
        ALL8(K_LOAD)
        "jmp 71f\n"
        "69:\n\t"
        "cmpl $0, %c[avx](%%rdi)\n\tje 70f\n\t"
        ALL16(YMM_LOAD)
        "jmp 71f\n"
        "70:\n\t"
        ALL16(XMM_LOAD)
        "71:\n\t"
        ALL_GPR(GPR_LOAD)
        /* spin until the go flag is set, checking on every round */
        "1:\n\t"
        "mov %c[go](%%rdi), %%rax\n\tmovl (%%rax), %%eax\n\ttest %%eax, %%eax\n\tjnz 80f\n\t"
        ALL_GPR(GPR_CHECK)
        ALL16(XMM_CHECK)
        "incq %c[it](%%rdi)\n\t"
        "jmp 1b\n"
        "90:\n\t"
        "movl $1, %c[fa](%%rdi)\n"
        "80:\n\t"
        ALL_GPR(GPR_SAVE)
        "cmpl $0, %c[avx](%%rdi)\n\tje 81f\n\t"
        /* components 0-7 only (x87 ... Hi16_ZMM): the area has no room for AMX tiles */
        "mov $0xff, %%eax\n\txor %%edx, %%edx\n\txsave %c[area](%%rdi)\n\tvzeroupper\n\tjmp 82f\n"
        "81:\n\t"
        "fxsave %c[area](%%rdi)\n"
        "82:\n\t"
        "fninit\n\tldmxcsr %c[dmx](%%rdi)\n\t"
        "pop %%r15\n\tpop %%r14\n\tpop %%r13\n\tpop %%r12\n\tpop %%rbp\n\tpop %%rbx\n\t"
        "lea 128(%%rsp), %%rsp\n\t"
        :
        : "D"(c), [eg] "i"(offsetof(struct fpu_ctx, exp_gpr)), [gg] "i"(offsetof(struct fpu_ctx, got_gpr)),
          [ey] "i"(offsetof(struct fpu_ctx, exp_ymm)), [ez] "i"(offsetof(struct fpu_ctx, exp_zmm)),
          [ek] "i"(offsetof(struct fpu_ctx, exp_k)), [avx512] "i"(offsetof(struct fpu_ctx, avx512)), [x87] "i"(offsetof(struct fpu_ctx, x87)),
          [go] "i"(offsetof(struct fpu_ctx, go)), [it] "i"(offsetof(struct fpu_ctx, iterations)),
          [fa] "i"(offsetof(struct fpu_ctx, failed)), [fi] "i"(offsetof(struct fpu_ctx, fail_idx)),
          [avx] "i"(offsetof(struct fpu_ctx, avx)), [mx] "i"(offsetof(struct fpu_ctx, mxcsr)),
          [dmx] "i"(offsetof(struct fpu_ctx, default_mxcsr)), [fcw] "i"(offsetof(struct fpu_ctx, fcw)),
          [area] "i"(offsetof(struct fpu_ctx, area))
        : "rax", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3",
          "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
          "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
}

static int have_avx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6; /* the OS saves xmm and ymm state */
}

/* AVX-512 usable: the CPU has AVX512F and the OS saves opmask, ZMM_Hi256 and Hi16_ZMM state. */
static int have_avx512(void)
{
    unsigned a, b, c, d;
    if (!have_avx() || __get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & bit_AVX512F))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe0) == 0xe0;
}

/* Offset of xsave component `i` in a standard-format xsave area (2: AVX, 5: opmask, 6:
 * ZMM_Hi256, 7: Hi16_ZMM). */
static unsigned xsave_offset(unsigned i)
{
    unsigned a, b, c, d;
    __cpuid_count(0xd, i, a, b, c, d);
    (void)a;
    (void)c;
    (void)d;
    return b;
}

static void hex(char *out, const unsigned char *p, int n)
{
    for (int i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[n - 1 - i]);
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    ctx.avx = have_avx();
    ctx.avx512 = have_avx512();
    sv_log("avx: %s, avx-512: %s", ctx.avx ? "yes" : "no", ctx.avx512 ? "yes" : "no");
    for (int i = 0; i < NGPR; i++)
        ctx.exp_gpr[i] = 0x0123456789abcdefULL * (uint64_t)(i + 3) ^ ((uint64_t)i << 56);
    for (int n = 0; n < 16; n++)
        for (int k = 0; k < 32; k++)
            ctx.exp_ymm[n][k] = (unsigned char)(0x5a ^ (n * 31 + k * 7 + (k >= 16 ? 0x80 : 0)));
    for (int n = 0; n < 32; n++)
        for (int k = 0; k < 64; k++)
            ctx.exp_zmm[n][k] = n < 16 && k < 32 ? ctx.exp_ymm[n][k] : (unsigned char)(0xc3 ^ (n * 13 + k * 5));
    for (int k = 0; k < 8; k++)
        ctx.exp_k[k] = 0x8040201008040201ULL * (uint64_t)(k + 1) ^ 0x1234;
    for (int k = 0; k < 8; k++)
        ctx.x87[k] = (k + 1) * 3.14159265358979 + 1e-7 * k - (k & 1 ? 1234.5 : 0);
    ctx.fcw = FCW;
    ctx.mxcsr = MXCSR;
    ctx.default_mxcsr = 0x1F80;
    ctx.go = &sv_go;
    unsigned ymm_off = ctx.avx ? xsave_offset(2) : 0;

    sv_ready(NAME);
    sv_unblock_go();
    spin(&ctx);

    if (ctx.failed) {
        if (ctx.fail_idx < 100)
            SV_CHECK(0, "%s changed while spinning: %#llx, expected %#llx (round %llu)", gpr_names[ctx.fail_idx],
                     (unsigned long long)ctx.got_gpr[ctx.fail_idx],
                     (unsigned long long)ctx.exp_gpr[ctx.fail_idx], (unsigned long long)ctx.iterations);
        else
            SV_CHECK(0, "xmm%u changed while spinning (round %llu)", ctx.fail_idx - 100,
                     (unsigned long long)ctx.iterations);
    }
    SV_CHECK(ctx.iterations > 0, "the loop never ran");
    for (int i = 0; i < NGPR; i++)
        SV_CHECK(ctx.got_gpr[i] == ctx.exp_gpr[i], "%s %#llx, expected %#llx", gpr_names[i],
                 (unsigned long long)ctx.got_gpr[i], (unsigned long long)ctx.exp_gpr[i]);
    const unsigned char *a = ctx.area;
    uint16_t fcw, fsw;
    uint32_t mxcsr;
    memcpy(&fcw, a + 0, 2);
    memcpy(&fsw, a + 2, 2);
    memcpy(&mxcsr, a + 24, 4);
    SV_CHECK(fcw == FCW, "x87 control word %#x, expected %#x", fcw, FCW);
    SV_CHECK(((fsw >> 11) & 7) == 0, "x87 TOP %u, expected 0 (status word %#x)", (fsw >> 11) & 7, fsw);
    SV_CHECK(a[4] == 0xff, "x87 tag word (abridged) %#x, expected 0xff", a[4]);
    SV_CHECK(mxcsr == MXCSR, "MXCSR %#x, expected %#x", mxcsr, MXCSR);
    for (int i = 0; i < 8; i++) {
        long double want = ctx.x87[7 - i];
        char w[21], g[21];
        hex(w, (const unsigned char *)&want, 10);
        hex(g, a + 32 + 16 * i, 10);
        SV_CHECK(memcmp(&want, a + 32 + 16 * i, 10) == 0, "st(%d) %s, expected %s", i, g, w);
    }
    for (int n = 0; n < 16; n++) {
        char w[65], g[65];
        hex(w, ctx.exp_ymm[n], 16);
        hex(g, a + 160 + 16 * n, 16);
        SV_CHECK(memcmp(a + 160 + 16 * n, ctx.exp_ymm[n], 16) == 0, "xmm%d %s, expected %s", n, g, w);
    }
    if (ctx.avx) {
        uint64_t xstate_bv;
        memcpy(&xstate_bv, a + 512, 8);
        SV_CHECK(xstate_bv & 4, "AVX state in init state after restore (XSTATE_BV %#llx)",
                 (unsigned long long)xstate_bv);
        for (int n = 0; n < 16; n++) {
            char w[65], g[65];
            hex(w, ctx.exp_ymm[n] + 16, 16);
            hex(g, a + ymm_off + 16 * n, 16);
            SV_CHECK(memcmp(a + ymm_off + 16 * n, ctx.exp_ymm[n] + 16, 16) == 0, "ymm%d upper half %s, expected %s",
                     n, g, w);
        }
    }
    if (ctx.avx512) {
        uint64_t xstate_bv;
        memcpy(&xstate_bv, a + 512, 8);
        SV_CHECK((xstate_bv & 0xe0) == 0xe0, "AVX-512 state in init state after restore (XSTATE_BV %#llx)",
                 (unsigned long long)xstate_bv);
        unsigned k_off = xsave_offset(5), hi256_off = xsave_offset(6), hi16_off = xsave_offset(7);
        for (int k = 0; k < 8; k++) {
            uint64_t got;
            memcpy(&got, a + k_off + 8 * k, 8);
            SV_CHECK(got == ctx.exp_k[k], "k%d %#llx, expected %#llx", k, (unsigned long long)got,
                     (unsigned long long)ctx.exp_k[k]);
        }
        for (int n = 0; n < 16; n++) {
            char w[65], g[65];
            hex(w, ctx.exp_zmm[n] + 32, 32);
            hex(g, a + hi256_off + 32 * n, 32);
            SV_CHECK(memcmp(a + hi256_off + 32 * n, ctx.exp_zmm[n] + 32, 32) == 0, "zmm%d upper 256 bits %s, expected %s",
                     n, g, w);
        }
        for (int n = 16; n < 32; n++) {
            char w[129], g[129];
            hex(w, ctx.exp_zmm[n], 64);
            hex(g, a + hi16_off + 64 * (n - 16), 64);
            SV_CHECK(memcmp(a + hi16_off + 64 * (n - 16), ctx.exp_zmm[n], 64) == 0, "zmm%d %s, expected %s", n, g, w);
        }
    }
    sv_log("%llu rounds", (unsigned long long)ctx.iterations);
    return sv_finish(NAME);
}
