/* Step 2: a process's identity survives checkpoint/restore: pids, session and group, ids and
 * groups, umask, cwd, cmdline/environ/auxv as the kernel shows them, /proc/self/exe, comm,
 * personality, lowered rlimits, nice value and hostname, and the thread's kernel registrations
 * glibc made at startup (rseq, robust list, clear_child_tid). Everything is recorded before the
 * checkpoint (with a few values changed from their defaults first) and compared after. */
#include "survival.h"

#include <grp.h>
#include <sys/auxv.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#define NAME "identity"
#define COMM "sv:id@42~x"
#define PERSONA (PER_LINUX | UNAME26 | ADDR_NO_RANDOMIZE)

struct file_copy {
    char data[16384];
    ssize_t len;
};

struct ident {
    pid_t pid, ppid, sid, pgid;
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    int ngroups;
    gid_t groups[64];
    mode_t umask;
    char cwd[4096];
    char exe[4096];
    char comm[32], prname[17];
    int persona;
    struct rlimit rl[RLIM_NLIMITS];
    int prio;
    char host[256];
    char nspid[256];
    struct file_copy cmdline, environ, auxv;
    unsigned long aux[64]; /* getauxval(t) for t < 64 */
    char env_var[64];
    long rseq_again;   /* rseq(registered area) again: -1 with EBUSY while registered */
    int rseq_errno;
    void *robust_head; /* get_robust_list */
    size_t robust_len;
    void *tid_address; /* PR_GET_TID_ADDRESS */
};

/* glibc's rseq area of this thread */
static struct rseq *rseq_area(void)
{
    return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

static void snap_file(const char *path, struct file_copy *f)
{
    f->len = sv_read_file(path, f->data, sizeof f->data);
}

static void snap(struct ident *s)
{
    memset(s, 0, sizeof *s);
    s->pid = getpid();
    s->ppid = getppid();
    s->sid = getsid(0);
    s->pgid = getpgid(0);
    getresuid(&s->ruid, &s->euid, &s->suid);
    getresgid(&s->rgid, &s->egid, &s->sgid);
    s->ngroups = getgroups(64, s->groups);
    s->umask = umask(0);
    umask(s->umask);
    if (!getcwd(s->cwd, sizeof s->cwd))
        snprintf(s->cwd, sizeof s->cwd, "<getcwd: %s>", strerror(errno));
    ssize_t n = readlink("/proc/self/exe", s->exe, sizeof s->exe - 1);
    if (n < 0)
        snprintf(s->exe, sizeof s->exe, "<readlink: %s>", strerror(errno));
    sv_read_file("/proc/self/comm", s->comm, sizeof s->comm);
    prctl(PR_GET_NAME, s->prname, 0, 0, 0);
    s->persona = personality(0xffffffff);
    for (int r = 0; r < RLIM_NLIMITS; r++)
        getrlimit(r, &s->rl[r]);
    errno = 0;
    s->prio = getpriority(PRIO_PROCESS, 0);
    gethostname(s->host, sizeof s->host);
    sv_nspid(0, s->nspid, sizeof s->nspid);
    snap_file("/proc/self/cmdline", &s->cmdline);
    snap_file("/proc/self/environ", &s->environ);
    snap_file("/proc/self/auxv", &s->auxv);
    for (int t = 0; t < 64; t++)
        s->aux[t] = getauxval(t);
    errno = 0;
    /* glibc registers sizeof(struct rseq) (32) even when __rseq_size (the used part) is 20 */
    s->rseq_again = __rseq_size ? syscall(SYS_rseq, rseq_area(), sizeof(struct rseq), 0, RSEQ_SIG) : -2;
    s->rseq_errno = errno;
    syscall(SYS_get_robust_list, 0, &s->robust_head, &s->robust_len);
    prctl(PR_GET_TID_ADDRESS, &s->tid_address, 0, 0, 0);
    const char *v = getenv("SV_IDENTITY");
    snprintf(s->env_var, sizeof s->env_var, "%s", v ? v : "<unset>");
}

static void same_file(const char *what, const struct file_copy *a, const struct file_copy *b)
{
    SV_CHECK(a->len > 0, "%s was empty or unreadable before", what);
    SV_CHECK(a->len == b->len, "%s length %zd -> %zd", what, a->len, b->len);
    if (a->len == b->len && a->len > 0) {
        for (ssize_t i = 0; i < a->len; i++) {
            if (a->data[i] != b->data[i]) {
                SV_CHECK(0, "%s differs at byte %zd", what, i);
                break;
            }
        }
    }
}

/* /proc/self/auxv (the kernel's saved copy) against getauxval (libc's copy on the stack). */
static void auxv_agrees(const struct ident *s)
{
    static const unsigned long must_match[] = {AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_ENTRY,
                                               AT_UID, AT_EUID, AT_GID, AT_EGID, AT_RANDOM,
                                               AT_EXECFN, AT_SYSINFO_EHDR, AT_CLKTCK, AT_SECURE};
    const unsigned long *a = (const unsigned long *)s->auxv.data;
    size_t n = (size_t)s->auxv.len / (2 * sizeof(unsigned long));
    for (size_t k = 0; k < sizeof must_match / sizeof must_match[0]; k++) {
        unsigned long t = must_match[k];
        int found = 0;
        for (size_t i = 0; i < n && a[2 * i] != AT_NULL; i++) {
            if (a[2 * i] == t) {
                found = 1;
                SV_CHECK(a[2 * i + 1] == s->aux[t], "auxv type %lu: kernel 0x%lx, libc 0x%lx", t,
                         a[2 * i + 1], s->aux[t]);
            }
        }
        SV_CHECK(found || t == AT_SECURE, "auxv type %lu missing from /proc/self/auxv", t);
    }
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    /* non-default values for what a restore could silently reset */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/identity.cwd", sv_out);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        sv_fail(NAME, "mkdir %s: %s", dir, strerror(errno));
        return 1;
    }
    if (chdir(dir) < 0) {
        sv_fail(NAME, "chdir %s: %s", dir, strerror(errno));
        return 1;
    }
    umask(0246);
    prctl(PR_SET_NAME, COMM, 0, 0, 0);
    if (personality(PERSONA) < 0)
        sv_log("personality: %s", strerror(errno));
    struct rlimit rl = {.rlim_cur = 321, .rlim_max = 654};
    setrlimit(RLIMIT_NOFILE, &rl);
    rl = (struct rlimit){.rlim_cur = 12345, .rlim_max = 23456};
    setrlimit(RLIMIT_CORE, &rl);
    getrlimit(RLIMIT_STACK, &rl);
    rl.rlim_cur = 4 << 20;
    setrlimit(RLIMIT_STACK, &rl);
    rl = (struct rlimit){.rlim_cur = 77, .rlim_max = 88};
    setrlimit(RLIMIT_NPROC, &rl);
    setpriority(PRIO_PROCESS, 0, 7);
    setenv("SV_IDENTITY", "still-here", 1);

    static struct ident before, after;
    snap(&before);
    /* the changes took */
    SV_CHECK(before.umask == 0246, "umask did not take: %o", before.umask);
    SV_CHECK(strncmp(before.comm, COMM, strlen(COMM)) == 0, "comm did not take: %s", before.comm);
    SV_CHECK(before.persona == PERSONA, "personality did not take: 0x%x", before.persona);
    SV_CHECK(before.rl[RLIMIT_NOFILE].rlim_cur == 321, "RLIMIT_NOFILE did not take");
    SV_CHECK(before.prio == 7, "nice did not take: %d", before.prio);
    SV_CHECK(before.auxv.len > 0, "no /proc/self/auxv");
    SV_CHECK(before.rseq_again == -1 && before.rseq_errno == EBUSY,
             "glibc's rseq area is not registered (rseq again: %ld, %s)", before.rseq_again, strerror(before.rseq_errno));
    SV_CHECK(before.robust_head != NULL, "no robust list registered");
    SV_CHECK(before.tid_address != NULL, "no clear_child_tid address");
    auxv_agrees(&before);
    if (sv_failures) {
        sv_finish(NAME);
        return 1;
    }

    sv_ready(NAME);
    sv_wait_go();
    snap(&after);

    SV_CHECK(before.pid == after.pid, "getpid %d -> %d", before.pid, after.pid);
    SV_CHECK(before.ppid == after.ppid, "getppid %d -> %d", before.ppid, after.ppid);
    SV_CHECK(before.sid == after.sid, "getsid %d -> %d", before.sid, after.sid);
    SV_CHECK(before.pgid == after.pgid, "getpgid %d -> %d", before.pgid, after.pgid);
    SV_CHECK(strcmp(before.nspid, after.nspid) == 0, "NSpid '%s' -> '%s'", before.nspid, after.nspid);
    SV_CHECK(before.ruid == after.ruid && before.euid == after.euid && before.suid == after.suid,
             "uids %d/%d/%d -> %d/%d/%d", before.ruid, before.euid, before.suid, after.ruid, after.euid,
             after.suid);
    SV_CHECK(before.rgid == after.rgid && before.egid == after.egid && before.sgid == after.sgid,
             "gids %d/%d/%d -> %d/%d/%d", before.rgid, before.egid, before.sgid, after.rgid, after.egid,
             after.sgid);
    SV_CHECK(before.ngroups == after.ngroups &&
                 memcmp(before.groups, after.groups, sizeof(gid_t) * (size_t)(before.ngroups > 0 ? before.ngroups : 0)) == 0,
             "supplementary groups changed (%d -> %d)", before.ngroups, after.ngroups);
    SV_CHECK(before.umask == after.umask, "umask %o -> %o", before.umask, after.umask);
    SV_CHECK(strcmp(before.cwd, after.cwd) == 0, "cwd '%s' -> '%s'", before.cwd, after.cwd);
    {
        /* the cwd is really that directory: a relative name resolves in it */
        int fd = open("probe", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        char p[4300];
        snprintf(p, sizeof p, "%s/probe", dir);
        struct stat st;
        SV_CHECK(fd >= 0 && stat(p, &st) == 0, "a relative create did not land in %s", dir);
        if (fd >= 0)
            close(fd);
    }
    SV_CHECK(strcmp(before.exe, after.exe) == 0, "/proc/self/exe '%s' -> '%s'", before.exe, after.exe);
    SV_CHECK(strcmp(before.comm, after.comm) == 0, "comm '%s' -> '%s'", before.comm, after.comm);
    SV_CHECK(strcmp(before.prname, after.prname) == 0, "PR_GET_NAME '%s' -> '%s'", before.prname,
             after.prname);
    SV_CHECK(before.persona == after.persona, "personality 0x%x -> 0x%x", before.persona, after.persona);
    {
        struct utsname u;
        uname(&u);
        SV_CHECK(strncmp(u.release, "2.6.", 4) == 0, "UNAME26 personality lost: release %s", u.release);
    }
    for (int r = 0; r < RLIM_NLIMITS; r++)
        SV_CHECK(before.rl[r].rlim_cur == after.rl[r].rlim_cur && before.rl[r].rlim_max == after.rl[r].rlim_max,
                 "rlimit %d %llu/%llu -> %llu/%llu", r, (unsigned long long)before.rl[r].rlim_cur,
                 (unsigned long long)before.rl[r].rlim_max, (unsigned long long)after.rl[r].rlim_cur,
                 (unsigned long long)after.rl[r].rlim_max);
    SV_CHECK(before.prio == after.prio, "nice %d -> %d", before.prio, after.prio);
    SV_CHECK(strcmp(before.host, after.host) == 0, "hostname '%s' -> '%s'", before.host, after.host);
    same_file("/proc/self/cmdline", &before.cmdline, &after.cmdline);
    same_file("/proc/self/environ", &before.environ, &after.environ);
    same_file("/proc/self/auxv", &before.auxv, &after.auxv);
    auxv_agrees(&after);
    for (int t = 0; t < 64; t++)
        SV_CHECK(before.aux[t] == after.aux[t], "getauxval(%d) 0x%lx -> 0x%lx", t, before.aux[t], after.aux[t]);
    SV_CHECK(after.rseq_again == -1 && after.rseq_errno == EBUSY,
             "rseq registration lost: registering glibc's area again gave %ld (%s), expected EBUSY", after.rseq_again,
             strerror(after.rseq_errno));
    {
        /* the kernel updated the area's cpu_id on the way out of the SIGUSR2 handler */
        unsigned cpu = 0;
        syscall(SYS_getcpu, &cpu, NULL, NULL);
        int rcpu = (int)rseq_area()->cpu_id;
        SV_CHECK(rcpu >= 0 && rcpu < 4096, "rseq cpu_id %d", rcpu);
    }
    SV_CHECK(before.robust_head == after.robust_head && before.robust_len == after.robust_len,
             "robust list %p/%zu -> %p/%zu", before.robust_head, before.robust_len, after.robust_head, after.robust_len);
    SV_CHECK(before.tid_address == after.tid_address, "clear_child_tid %p -> %p", before.tid_address,
             after.tid_address);
    SV_CHECK(strcmp(after.env_var, "still-here") == 0, "setenv'd SV_IDENTITY is '%s'", after.env_var);
    /* argv as the program sees it matches /proc/self/cmdline */
    {
        size_t off = 0;
        for (int i = 0; i < argc; i++) {
            size_t l = strlen(argv[i]) + 1;
            SV_CHECK(off + l <= (size_t)after.cmdline.len && memcmp(after.cmdline.data + off, argv[i], l) == 0,
                     "argv[%d] '%s' is not in /proc/self/cmdline", i, argv[i]);
            off += l;
        }
    }
    return sv_finish(NAME);
}
