/* Step 4: the memory map survives checkpoint/restore (zdtm maps00/01/04, maps_file_prot,
 * mprotect00, grow_map, mem-touch): private anonymous, private file (with copied-on-write
 * pages), shared file, shared anonymous memory written by parent and child before and after
 * (also one whose first page was unmapped, so it maps at a non-zero offset), a file mapped
 * private and shared and then unlinked (the shared view written by the child after the
 * restore), read-only,
 * PROT_NONE (with contents), MAP_GROWSDOWN and a big sparse mapping. /proc/self/maps must show
 * the same lines (range, permissions, offset, name; device and inode too except for shared
 * anonymous memory, a new object), and every byte must be back.
 *
 * The mappings are laid out inside one reserved range with gaps between them, so that the
 * kernel cannot merge neighbours differently after the restore. */
#include "survival.h"

#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#define NAME "maps"
#define PG 4096UL
#define GAP (1UL << 20)
#define BIG (64UL << 20)

static char *base;
static size_t cursor;

#define die(what) sv_die(NAME, what)

/* The next slot of the reserved range. */
static char *map(size_t len, int prot, int flags, int fd, off_t off)
{
    char *want = base + cursor;
    cursor += len + GAP;
    char *p = mmap(want, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static void fill(char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i += 64)
        p[i] = (char)(seed + i / 64 * 7);
}

static int check(const char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i += 64)
        if (p[i] != (char)(seed + i / 64 * 7))
            return 0;
    return 1;
}

static char maps_before[65536], maps_after[65536];

/* A restore into another container (a copy of the output dir) maps the copy: the line must
 * then name the file that is at that path now. */
static int is_file_now(const char *name, const char *dev, unsigned long ino)
{
    struct stat st;
    unsigned maj, min;
    if (name[0] != '/' || stat(name, &st) < 0 || sscanf(dev, "%x:%x", &maj, &min) != 2)
        return 0;
    return st.st_ino == ino && major(st.st_dev) == maj && minor(st.st_dev) == min;
}

/* Compare maps line by line: range, perms, offset, name always; dev:inode unless shmem. */
static void compare_maps(void)
{
    char *a = maps_before, *b = maps_after, *sa, *sb;
    int line = 0;
    for (;;) {
        char *la = strtok_r(a, "\n", &sa), *lb = strtok_r(b, "\n", &sb);
        a = b = NULL;
        line++;
        if (!la || !lb) {
            SV_CHECK(!la && !lb, "maps line %d: %s vs %s", line, la ? la : "<end>", lb ? lb : "<end>");
            return;
        }
        char ra[64], pa[8], oa[32], da[32], na[4096] = "", rb[64], pb[8], ob[32], db[32], nb[4096] = "";
        unsigned long ia, ib;
        sscanf(la, "%63s %7s %31s %31s %lu %4095[^\n]", ra, pa, oa, da, &ia, na);
        sscanf(lb, "%63s %7s %31s %31s %lu %4095[^\n]", rb, pb, ob, db, &ib, nb);
        int shmem = strstr(na, " (deleted)") != NULL; /* shmem, memfd, unlinked files: new inodes */
        SV_CHECK(!strcmp(ra, rb) && !strcmp(pa, pb) && !strcmp(oa, ob) && !strcmp(na, nb) &&
                     (shmem || (!strcmp(da, db) && ia == ib) || is_file_now(nb, db, ib)),
                 "maps line %d changed: \"%s\" -> \"%s\"", line, la, lb);
    }
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    base = mmap(NULL, 1UL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        die("reserving 1 GiB");
    munmap(base, 1UL << 30);

    /* A file of 8 pages for the file mappings. */
    char path[4096];
    snprintf(path, sizeof path, "%s/maps.file", sv_out);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 8 * PG) < 0)
        die("maps.file");
    char page[PG];
    for (int i = 0; i < 8; i++) {
        fill(page, PG, 100 + i);
        if (pwrite(fd, page, PG, i * PG) != (ssize_t)PG)
            die("pwrite");
    }

    char *anon = map(16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fill(anon, 16 * PG, 1);
    /* Private file mapping of pages 2-5; page 3 (mapping page 1) copied on write. */
    char *fpriv = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 2 * PG);
    fill(fpriv + PG, PG, 2);
    /* Read-only private file mapping (text-like). */
    char *fro = map(2 * PG, PROT_READ, MAP_PRIVATE, fd, 6 * PG);
    /* Shared file mapping of pages 0-3; page 1 written through it. */
    char *fshared = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    fill(fshared + PG, PG, 3);
    /* Read-only anonymous memory with contents. */
    char *ro = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fill(ro, 4 * PG, 4);
    mprotect(ro, 4 * PG, PROT_READ);
    /* PROT_NONE, empty, and PROT_NONE with contents. */
    map(4 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *none = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fill(none, 4 * PG, 5);
    mprotect(none, 4 * PG, PROT_NONE);
    /* Grows down. */
    char *gd = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
    fill(gd + PG, 3 * PG, 6);
    /* Big and sparse: one page in 256 touched. */
    char *big = map(BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    for (size_t i = 0; i < BIG; i += 256 * PG)
        fill(big + i, PG, 7 + i / (256 * PG));
    /* Shared anonymous: parent and child. */
    char *shm = map(8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fill(shm, PG, 8);
    /* Shared anonymous at a non-zero offset: the first page unmapped. */
    char *shm2 = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 4; i++)
        fill(shm2 + i * PG, PG, 9);
    munmap(shm2, PG);
    shm2 += PG;

    /* A file mapped private (one page copied on write) and shared, then unlinked. */
    char gpath[4096];
    snprintf(gpath, sizeof gpath, "%s/maps.ghost", sv_out);
    int gfd = open(gpath, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (gfd < 0 || ftruncate(gfd, 4 * PG) < 0)
        die("maps.ghost");
    for (int i = 0; i < 4; i++) {
        fill(page, PG, 20 + i);
        if (pwrite(gfd, page, PG, i * PG) != (ssize_t)PG)
            die("pwrite ghost");
    }
    char *gpriv = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, gfd, 0);
    fill(gpriv + 2 * PG, PG, 30);
    char *gshared = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, 0);
    close(gfd);
    if (unlink(gpath) < 0)
        die("unlink ghost");

    /* A memfd mapped shared, its descriptor kept: one object. */
    int mfd = memfd_create("sv-maps", 0);
    if (mfd < 0 || ftruncate(mfd, 4 * PG) < 0)
        die("memfd");
    char *mem = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    fill(mem, PG, 15);
    /* The same memfd mapped private too, its page 1 copied on write. */
    char *mpriv = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
    fill(mpriv + PG, PG, 17);

    sigset_t old = sv_turn_arm();
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        fill(shm + PG, PG, 10); /* before the checkpoint */
        fill(shm2 + PG, PG, 11);
        kill(getppid(), SIGUSR1);
        sv_turn_wait();
        /* After the restore: the parent's new write is visible here, ours will be there. */
        if (!check(shm + 2 * PG, PG, 12))
            _exit(3);
        fill(gshared + 3 * PG, PG, 31);
        fill(shm + 3 * PG, PG, 13);
        _exit(0);
    }
    sv_turn_wait();
    sigprocmask(SIG_SETMASK, &old, NULL);

    if (sv_read_file("/proc/self/maps", maps_before, sizeof maps_before) < 0)
        die("reading maps");
    sv_ready(NAME);
    sv_wait_go();
    if (sv_read_file("/proc/self/maps", maps_after, sizeof maps_after) < 0)
        die("reading maps");

    SV_CHECK(check(anon, 16 * PG, 1), "private anonymous contents");
    for (int i = 0; i < 4; i++)
        SV_CHECK(check(fpriv + i * PG, PG, i == 1 ? 2 : 102 + i), "private file mapping page %d", i);
    SV_CHECK(check(fro, PG, 106) && check(fro + PG, PG, 107), "read-only file mapping");
    for (int i = 0; i < 4; i++)
        SV_CHECK(check(fshared + i * PG, PG, i == 1 ? 3 : 100 + i), "shared file mapping page %d", i);
    if (pread(fd, page, PG, PG) == (ssize_t)PG)
        SV_CHECK(check(page, PG, 3), "the shared file mapping's write is not in the file");
    fill(fshared + 2 * PG, PG, 14);
    if (pread(fd, page, PG, 2 * PG) == (ssize_t)PG)
        SV_CHECK(check(page, PG, 14), "a write through the restored shared file mapping is not in the file");
    SV_CHECK(check(ro, 4 * PG, 4), "read-only anonymous contents");
    mprotect(none, 4 * PG, PROT_READ);
    SV_CHECK(check(none, 4 * PG, 5), "PROT_NONE contents");
    SV_CHECK(check(gd + PG, 3 * PG, 6), "growsdown contents");
    for (size_t i = 0; i < BIG; i += 256 * PG)
        if (!check(big + i, PG, 7 + i / (256 * PG))) {
            SV_CHECK(0, "big mapping page %zu", i / PG);
            break;
        }
    SV_CHECK(check(shm, PG, 8) && check(shm + PG, PG, 10), "shared anonymous: the writes before the checkpoint");
    SV_CHECK(check(shm2, PG, 9) && check(shm2 + PG, PG, 11) && check(shm2 + 2 * PG, PG, 9),
             "shared anonymous at an offset");
    for (int i = 0; i < 4; i++)
        SV_CHECK(check(gpriv + i * PG, PG, i == 2 ? 30 : 20 + i), "unlinked file, private mapping, page %d", i);
    for (int i = 0; i < 3; i++)
        SV_CHECK(check(gshared + i * PG, PG, 20 + i), "unlinked file, shared mapping, page %d", i);
    SV_CHECK(check(mem, PG, 15), "memfd mapping contents");
    SV_CHECK(check(mpriv, PG, 15) && check(mpriv + PG, PG, 17), "private memfd mapping contents");
    fill(page, PG, 18);
    SV_CHECK(pwrite(mfd, page, PG, 2 * PG) == (ssize_t)PG && check(mpriv + 2 * PG, PG, 18),
             "the private memfd mapping does not see the memfd's pages");
    fill(mem + PG, PG, 16);
    if (pread(mfd, page, PG, PG) == (ssize_t)PG)
        SV_CHECK(check(page, PG, 16), "memfd mapping and descriptor are not one object after the restore");
    fill(shm + 2 * PG, PG, 12);
    kill(child, SIGUSR1);
    int status = -1;
    SV_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
    SV_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "child status %#x (3: the parent's write after the restore is not shared)", status);
    SV_CHECK(check(shm + 3 * PG, PG, 13), "the child's write after the restore is not shared");
    SV_CHECK(check(gshared + 3 * PG, PG, 31), "the child's write to the unlinked file after the restore is not shared");
    SV_CHECK(check(gpriv + 3 * PG, PG, 31), "the private mapping does not see the file's new page");
    compare_maps();
    unlink(path);
    return sv_finish(NAME);
}
