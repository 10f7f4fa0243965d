/* Step 3: the vdso stays usable across checkpoint/restore. Time is read through glibc (which
 * calls the vdso) and through __vdso_* symbols looked up in the vdso ELF (AT_SYSINFO_EHDR) and
 * called directly, and compared with the real system calls; the [vdso]/[vvar]/[vvar_vclock]
 * lines of /proc/self/maps must not change. While waiting for SIGUSR2 the program spins reading
 * the clocks through the vdso, so the checkpoint usually catches it inside vdso code. */
#include "survival.h"

#include <elf.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#define NAME "vdso"

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef int (*getcpu_fn)(unsigned *, unsigned *, void *);
typedef int (*clock_getres_fn)(clockid_t, struct timespec *);

struct vdso_syms {
    unsigned long base;
    clock_gettime_fn clock_gettime;
    gettimeofday_fn gettimeofday;
    time_fn time;
    getcpu_fn getcpu;
    clock_getres_fn clock_getres;
};

/* Look `name` up in the vdso's dynamic symbol table (DT_HASH gives the symbol count). */
static void *vdso_sym(unsigned long base, const char *name)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return NULL;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    long load_offset = 0;
    const Elf64_Dyn *dyn = NULL;
    int have_load = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !have_load) {
            load_offset = (long)base + (long)ph[i].p_offset - (long)ph[i].p_vaddr;
            have_load = 1;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
        }
    }
    if (!have_load || !dyn)
        return NULL;
    const Elf64_Sym *symtab = NULL;
    const char *strtab = NULL;
    const Elf64_Word *hash = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        unsigned long p = (unsigned long)((long)dyn->d_un.d_ptr + load_offset);
        if (dyn->d_tag == DT_SYMTAB)
            symtab = (const Elf64_Sym *)p;
        else if (dyn->d_tag == DT_STRTAB)
            strtab = (const char *)p;
        else if (dyn->d_tag == DT_HASH)
            hash = (const Elf64_Word *)p;
    }
    if (!symtab || !strtab || !hash)
        return NULL;
    Elf64_Word nchain = hash[1];
    for (Elf64_Word i = 0; i < nchain; i++) {
        const Elf64_Sym *s = &symtab[i];
        if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_shndx == SHN_UNDEF)
            continue;
        if (strcmp(strtab + s->st_name, name) == 0)
            return (void *)(s->st_value + load_offset);
    }
    return NULL;
}

static void lookup(struct vdso_syms *v)
{
    memset(v, 0, sizeof *v);
    v->base = getauxval(AT_SYSINFO_EHDR);
    if (!v->base)
        return;
    v->clock_gettime = (clock_gettime_fn)vdso_sym(v->base, "__vdso_clock_gettime");
    v->gettimeofday = (gettimeofday_fn)vdso_sym(v->base, "__vdso_gettimeofday");
    v->time = (time_fn)vdso_sym(v->base, "__vdso_time");
    v->getcpu = (getcpu_fn)vdso_sym(v->base, "__vdso_getcpu");
    v->clock_getres = (clock_getres_fn)vdso_sym(v->base, "__vdso_clock_getres");
}

/* The [vdso]/[vvar]/[vvar_vclock] lines of /proc/self/maps, concatenated. */
static void vdso_maps(char *out, size_t size)
{
    static char maps[65536];
    out[0] = '\0';
    if (sv_read_file("/proc/self/maps", maps, sizeof maps) < 0)
        return;
    size_t used = 0;
    for (char *l = strtok(maps, "\n"); l; l = strtok(NULL, "\n")) {
        if (strstr(l, "[vdso]") || strstr(l, "[vvar]") || strstr(l, "[vvar_vclock]")) {
            int n = snprintf(out + used, size - used, "%s\n", l);
            if (n < 0 || (size_t)n >= size - used)
                return;
            used += (size_t)n;
        }
    }
}

static long long ns(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static long long sys_clock(clockid_t c)
{
    struct timespec t;
    syscall(SYS_clock_gettime, c, &t);
    return ns(&t);
}

static const clockid_t clocks[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC_RAW,
                                   CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE};
#define NCLOCKS (sizeof clocks / sizeof clocks[0])
/* Coarse clocks lag by up to a tick; everything else should agree within a few ms. */
#define SLACK_NS 100000000LL

/* Every way of reading time agrees with the system calls, now. */
static void check_agree(const struct vdso_syms *v, const char *when)
{
    for (size_t i = 0; i < NCLOCKS; i++) {
        struct timespec a, b;
        long long s0 = sys_clock(clocks[i]);
        int r1 = clock_gettime(clocks[i], &a);
        int r2 = v->clock_gettime(clocks[i], &b);
        long long s1 = sys_clock(clocks[i]);
        SV_CHECK(r1 == 0 && r2 == 0, "%s: clock %d: libc %d, vdso %d", when, clocks[i], r1, r2);
        SV_CHECK(ns(&a) >= s0 - SLACK_NS && ns(&a) <= s1 + SLACK_NS,
                 "%s: clock %d via libc %lld outside syscall [%lld, %lld]", when, clocks[i], ns(&a), s0, s1);
        SV_CHECK(ns(&b) >= s0 - SLACK_NS && ns(&b) <= s1 + SLACK_NS,
                 "%s: clock %d via __vdso_clock_gettime %lld outside syscall [%lld, %lld]", when, clocks[i],
                 ns(&b), s0, s1);
        struct timespec res;
        SV_CHECK(v->clock_getres(clocks[i], &res) == 0 && ns(&res) > 0, "%s: __vdso_clock_getres(%d)", when,
                 clocks[i]);
    }
    struct timeval tv0, tv1, tv2, tv3;
    syscall(SYS_gettimeofday, &tv0, NULL);
    gettimeofday(&tv1, NULL);
    v->gettimeofday(&tv2, NULL);
    syscall(SYS_gettimeofday, &tv3, NULL);
    long long u0 = tv0.tv_sec * 1000000LL + tv0.tv_usec, u3 = tv3.tv_sec * 1000000LL + tv3.tv_usec;
    long long u1 = tv1.tv_sec * 1000000LL + tv1.tv_usec, u2 = tv2.tv_sec * 1000000LL + tv2.tv_usec;
    SV_CHECK(u1 >= u0 && u1 <= u3, "%s: gettimeofday via libc %lld outside [%lld, %lld]", when, u1, u0, u3);
    SV_CHECK(u2 >= u0 && u2 <= u3, "%s: __vdso_gettimeofday %lld outside [%lld, %lld]", when, u2, u0, u3);
    time_t t0 = (time_t)syscall(SYS_time, NULL);
    time_t t1 = time(NULL), t2 = v->time(NULL);
    time_t t3 = (time_t)syscall(SYS_time, NULL);
    SV_CHECK(t1 >= t0 && t1 <= t3 + 1, "%s: time() via libc %ld outside [%ld, %ld]", when, (long)t1, (long)t0,
             (long)t3);
    SV_CHECK(t2 >= t0 && t2 <= t3 + 1, "%s: __vdso_time %ld outside [%ld, %ld]", when, (long)t2, (long)t0,
             (long)t3);
    unsigned cpu = ~0u, node = ~0u;
    SV_CHECK(v->getcpu(&cpu, &node, NULL) == 0 && cpu < 4096, "%s: __vdso_getcpu: cpu %u", when, cpu);
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    static struct vdso_syms v, again;
    lookup(&v);
    if (!v.base || !v.clock_gettime || !v.gettimeofday || !v.time || !v.getcpu || !v.clock_getres) {
        sv_fail(NAME, "vdso symbols not found (base 0x%lx, clock_gettime %p, gettimeofday %p, time %p, getcpu %p)",
                v.base, (void *)v.clock_gettime, (void *)v.gettimeofday, (void *)v.time, (void *)v.getcpu);
        return 1;
    }
    static char maps_before[4096], maps_after[4096];
    vdso_maps(maps_before, sizeof maps_before);
    if (!strstr(maps_before, "[vdso]")) {
        sv_fail(NAME, "no [vdso] in /proc/self/maps");
        return 1;
    }
    check_agree(&v, "before");
    if (sv_failures)
        return sv_finish(NAME);
    struct timespec mono0, real0;
    v.clock_gettime(CLOCK_MONOTONIC, &mono0);
    v.clock_gettime(CLOCK_REALTIME, &real0);

    sv_ready(NAME);
    /* spin in the vdso until SIGUSR2: time must never go backwards */
    sv_unblock_go();
    struct timespec prev = mono0, now;
    long long spins = 0, backwards = 0;
    while (!sv_go) {
        v.clock_gettime(CLOCK_MONOTONIC, &now);
        if (ns(&now) < ns(&prev))
            backwards++;
        prev = now;
        spins++;
    }

    SV_CHECK(backwards == 0, "CLOCK_MONOTONIC via the vdso went backwards %lld times in %lld reads", backwards,
             spins);
    vdso_maps(maps_after, sizeof maps_after);
    SV_CHECK(strcmp(maps_before, maps_after) == 0, "vdso maps changed:\n%s->\n%s", maps_before, maps_after);
    lookup(&again);
    SV_CHECK(again.base == v.base && again.clock_gettime == v.clock_gettime && again.time == v.time,
             "vdso moved: base 0x%lx -> 0x%lx", v.base, again.base);
    /* the pointers found before the checkpoint still work, and so does libc */
    check_agree(&v, "after");
    struct timespec mono1, real1;
    v.clock_gettime(CLOCK_MONOTONIC, &mono1);
    v.clock_gettime(CLOCK_REALTIME, &real1);
    long long dm = ns(&mono1) - ns(&mono0), dr = ns(&real1) - ns(&real0);
    SV_CHECK(dm > 0 && dm < 600LL * 1000000000LL, "CLOCK_MONOTONIC moved by %lld ns across the restore", dm);
    SV_CHECK(dr > 0 && dr < 600LL * 1000000000LL, "CLOCK_REALTIME moved by %lld ns across the restore", dr);
    return sv_finish(NAME);
}
