/* Survival program: 256 MiB memory verifier (issue 7, CHECKPOINT.md §6 step 4 at scale).
 *
 * Before the checkpoint it builds, and after the restore it verifies byte for byte:
 * - 256 MiB of private anonymous memory, every 8-byte word a function of its position (so a
 *   page restored at the wrong address, a page from another run, a stale or a lost page all
 *   show), with holes: every 97th page is written back to all zeros (a present zero page, which
 *   the dump leaves out of the image and must come back as zeros) and every 1000th page is
 *   never touched at all (not present: must read as zeros and stay unpopulated-equivalent);
 * - a 1 MiB region written then made read-only, and a 1 MiB region written then made PROT_NONE
 *   (process_vm_readv cannot read it: the dump goes through /proc/pid/mem), checked after an
 *   mprotect back to readable;
 * - a private mapping of its own executable with one page written (a COWed page in the image,
 *   the others from the file), checked against the file read again;
 * - a 4 MiB region advised MADV_HUGEPAGE + MADV_DONTDUMP: its contents, and its VmFlags (hg,
 *   dd) in /proc/self/smaps.
 * The verdict names the first bad byte (region, offset, got, expected) and counts bad words.
 */
#include "survival.h"

#include <stdint.h>
#include <sys/mman.h>

#define MIB (1024ul * 1024ul)
#define PAGE 4096ul
#define BIG (256ul * MIB)

static uint64_t pattern(uint64_t salt, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ salt;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

/* What word i of the big region must hold. */
static uint64_t big_expected(uint64_t i)
{
    uint64_t page = i * 8 / PAGE;
    if (page % 1000 == 999 || page % 97 == 0)
        return 0;
    return pattern(0x6d656d323536ull, i);
}

static long bad_words;

static void check_words(const char *what, const uint64_t *mem, size_t words, uint64_t (*want)(uint64_t))
{
    for (size_t i = 0; i < words; i++) {
        uint64_t w = want(i);
        if (mem[i] != w) {
            if (bad_words++ == 0)
                sv_failf(__LINE__, "%s: byte offset %#zx holds %#llx, expected %#llx", what, i * 8,
                         (unsigned long long)mem[i], (unsigned long long)w);
        }
    }
}

static uint64_t ro_expected(uint64_t i) { return pattern(0x726f, i); }
static uint64_t adv_expected(uint64_t i) { return pattern(0x616476, i); }

/* The VmFlags line of the mapping that starts at `addr` in /proc/self/smaps ("" if none). */
static void vmflags_of(void *addr, char *out, size_t size)
{
    static char smaps[1 << 20];
    out[0] = '\0';
    if (sv_read_file("/proc/self/smaps", smaps, sizeof smaps) < 0)
        return;
    char head[64];
    snprintf(head, sizeof head, "%lx-", (unsigned long)addr);
    char *m = strstr(smaps, head);
    while (m && m != smaps && m[-1] != '\n')
        m = strstr(m + 1, head);
    if (!m)
        return;
    char *f = strstr(m, "\nVmFlags:");
    if (!f)
        return;
    f += 9;
    size_t n = strcspn(f, "\n");
    if (n + 1 > size)
        n = size - 1;
    memcpy(out, f, n);
    out[n] = '\0';
}
static uint64_t none_expected(uint64_t i) { return pattern(0x6e6f6e65, i); }

static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        sv_fail("mem256", "mmap %zu: %s", len, strerror(errno));
        exit(0);
    }
    return p;
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    uint64_t *big = map_anon(BIG);
    for (size_t i = 0; i < BIG / 8; i++) {
        uint64_t page = i * 8 / PAGE;
        if (page % 1000 == 999) {
            i += PAGE / 8 - 1; /* never touched */
            continue;
        }
        big[i] = pattern(0x6d656d323536ull, i);
    }
    for (size_t page = 0; page < BIG / PAGE; page += 97)
        memset((char *)big + page * PAGE, 0, PAGE);

    uint64_t *ro = map_anon(MIB), *none = map_anon(MIB);
    for (size_t i = 0; i < MIB / 8; i++) {
        ro[i] = ro_expected(i);
        none[i] = none_expected(i);
    }
    if (mprotect(ro, MIB, PROT_READ) < 0 || mprotect(none, MIB, PROT_NONE) < 0) {
        sv_fail("mem256", "mprotect: %s", strerror(errno));
        return 0;
    }

    /* Our own executable, privately mapped, page 1 overwritten (COW). */
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (exe < 0 || fstat(exe, &st) < 0 || st.st_size < (off_t)(3 * PAGE)) {
        sv_fail("mem256", "opening /proc/self/exe: %s", strerror(errno));
        return 0;
    }
    char *file = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, exe, 0);
    if (file == MAP_FAILED) {
        sv_fail("mem256", "mmap of the executable: %s", strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < PAGE; i++)
        file[PAGE + i] = (char)(i * 7 + 3);
    close(exe);

    uint64_t *adv = map_anon(4 * MIB);
    if (madvise(adv, 4 * MIB, MADV_HUGEPAGE) < 0 || madvise(adv, 4 * MIB, MADV_DONTDUMP) < 0) {
        sv_fail("mem256", "madvise: %s", strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < 4 * MIB / 8; i++)
        adv[i] = adv_expected(i);
    char flags[256];
    vmflags_of(adv, flags, sizeof flags);
    if (!strstr(flags, " hg") || !strstr(flags, " dd")) {
        sv_fail("mem256", "VmFlags of the advised region before the checkpoint: %s", flags);
        return 0;
    }

    sv_ready("mem256");
    sv_wait_go();

    check_words("256 MiB region", big, BIG / 8, big_expected);
    check_words("read-only region", ro, MIB / 8, ro_expected);
    SV_CHECK(mprotect(none, MIB, PROT_READ) == 0, "mprotect of the PROT_NONE region: %s", strerror(errno));
    check_words("PROT_NONE region", none, MIB / 8, none_expected);
    char orig[3 * PAGE];
    exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    SV_CHECK(exe >= 0 && pread(exe, orig, sizeof orig, 0) == (ssize_t)sizeof orig, "reading the executable again");
    for (size_t i = 0; i < 3 * PAGE; i++) {
        char want = i / PAGE == 1 ? (char)((i - PAGE) * 7 + 3) : orig[i];
        if (file[i] != want) {
            if (bad_words++ == 0)
                sv_failf(__LINE__, "private file mapping: byte %#zx holds %#x, expected %#x", i,
                         (unsigned char)file[i], (unsigned char)want);
        }
    }
    check_words("MADV_HUGEPAGE+DONTDUMP region", adv, 4 * MIB / 8, adv_expected);
    vmflags_of(adv, flags, sizeof flags);
    SV_CHECK(strstr(flags, " hg") && strstr(flags, " dd"), "VmFlags of the advised region: %s", flags);
    /* Holes stay holes: untouched pages read as zero (checked above) and the region is all there. */
    SV_CHECK(bad_words == 0, "%ld bad words in all", bad_words);
    return sv_finish("mem256");
}
