/* Step 16: nested pid namespaces survive checkpoint/restore, at every level (no CRIU can).
 *
 * The main program M (container level) builds:
 *   M ── A  unshare(CLONE_NEWPID) then fork: A stays in the container's namespace, its
 *        │  pid_for_children is N1
 *        │  └─ B  pid 1 of N1; forks C, then unshare(CLONE_NEWPID) and forks D
 *        │       ├─ C  pid 2 of N1
 *        │       └─ D  pid 1 of N2 (three levels: container, N1, N2)
 *        │            └─ E  pid 2 of N2
 *   ├─ F  M did setns(N1) (through /proc/<B>/ns/pid), fork, setns back: F lives in N1, its
 *   │     parent M is invisible there (getppid() == 0)
 *   ├─ G  setns(N1) and fork, like `nsenter -p` (G keeps pid_for_children = N1)
 *   │    └─ H  in N1
 *   └─ U  unshare(CLONE_NEWPID) and no fork yet: its next child will be pid 1 of a new namespace
 * Every process records its getpid(), getppid() and NSpid line (/proc here is the container's
 * pid namespace's, so NSpid reads from the container's level down) and writes them to
 * /out/nested_pidns.<role>.pre. After the restore M signals each one; each checks its own
 * identity and forks once to check where its children are born now (its pid_for_children),
 * then writes /out/nested_pidns.<role>.post. M also compares, from the container's /proc, every
 * process's NSpid, parent and pid_for_children relations, and writes the result. */
#include "survival.h"

#include <sched.h>
#include <sys/wait.h>

#define NAME "nested_pidns"
#define NROLES 10

struct rec {
    pid_t pid, ppid;
    char nspid[256];
};

static void snap(struct rec *r)
{
    memset(r, 0, sizeof *r);
    r->pid = getpid();
    r->ppid = getppid();
    if (sv_nspid(0, r->nspid, sizeof r->nspid) < 0)
        snprintf(r->nspid, sizeof r->nspid, "<no NSpid: %s>", strerror(errno));
}

static int fields(const char *s)
{
    int n = 0;
    for (const char *p = s; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        n++;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
    return n;
}

static int last_field(const char *s)
{
    const char *p = s + strlen(s);
    while (p > s && p[-1] != ' ' && p[-1] != '\t')
        p--;
    return atoi(p);
}

/* Fork a child that exits with the number of levels of its own NSpid. */
static int child_levels(void)
{
    pid_t c = fork();
    if (c < 0)
        return -errno;
    if (c == 0) {
        char l[256];
        _exit(sv_nspid(0, l, sizeof l) < 0 ? 99 : fields(l));
    }
    int st;
    while (waitpid(c, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1000;
}

static void role_file(char *buf, size_t size, const char *role, const char *kind)
{
    snprintf(buf, size, NAME ".%s.%s", role, kind);
}

/* Every process but M ends here: report, wait for the go, check, report again, stay. */
static void member(const char *role, int levels, int last, int ppid_zero, int born_levels)
{
    struct rec r, now;
    char file[128], buf[512];
    snap(&r);
    sv_arm();
    role_file(file, sizeof file, role, "pre");
    int n = snprintf(buf, sizeof buf, "%s\n", r.nspid);
    if (sv_write_file(file, buf, (size_t)n) < 0)
        _exit(2);
    sv_wait_go();
    snap(&now);
    SV_CHECK(now.pid == r.pid, "%s: getpid() %d, was %d", role, now.pid, r.pid);
    SV_CHECK(now.ppid == r.ppid, "%s: getppid() %d, was %d", role, now.ppid, r.ppid);
    SV_CHECK(!strcmp(now.nspid, r.nspid), "%s: NSpid '%s', was '%s'", role, now.nspid, r.nspid);
    SV_CHECK(fields(now.nspid) == levels, "%s: NSpid '%s' has not %d levels", role, now.nspid, levels);
    SV_CHECK(last_field(now.nspid) == last || last == 0, "%s: innermost pid in '%s' is not %d", role,
             now.nspid, last);
    SV_CHECK(!ppid_zero || now.ppid == 0, "%s: getppid() %d, its parent is outside its namespace", role,
             now.ppid);
    int born = child_levels();
    SV_CHECK(born == born_levels, "%s: a new child has %d pid levels, expected %d", role, born, born_levels);
    role_file(file, sizeof file, role, "post");
    if (sv_failures == 0)
        n = snprintf(buf, sizeof buf, "PASS\n");
    else
        n = snprintf(buf, sizeof buf, "FAIL: %s\n", sv_first_failure);
    sv_write_file(file, buf, (size_t)n);
    for (;;)
        pause();
}

static const char *roles[NROLES] = {"m", "a", "b", "c", "d", "e", "f", "g", "h", "u"};

/* Set up in its own child and return; the child never returns. */
static pid_t spawn_role(void (*fn)(void))
{
    pid_t p = fork();
    if (p == 0) {
        /* nothing but stdio: M's namespace fds are not for the members (nor dumpable) */
        for (int fd = 3; fd < 64; fd++)
            close(fd);
        fn();
        _exit(3);
    }
    return p;
}

static void role_e(void) { member("e", 3, 2, 0, 3); }
static void role_d(void)
{
    spawn_role(role_e);
    member("d", 3, 1, 1, 3);
}
static void role_c(void) { member("c", 2, 2, 0, 2); }
static void role_b(void)
{
    spawn_role(role_c);
    if (unshare(CLONE_NEWPID) < 0) {
        sv_log("b: unshare: %s", strerror(errno));
        _exit(4);
    }
    spawn_role(role_d);
    member("b", 2, 1, 1, 3); /* its next child is born in N2 */
}
static void role_a(void)
{
    if (unshare(CLONE_NEWPID) < 0) {
        sv_log("a: unshare: %s", strerror(errno));
        _exit(4);
    }
    spawn_role(role_b);
    member("a", 1, 0, 0, 2); /* its next child is born in N1 */
}
static void role_f(void) { member("f", 2, 0, 1, 2); }
static void role_h(void) { member("h", 2, 0, 1, 2); }

static void role_u(void)
{
    if (unshare(CLONE_NEWPID) < 0) {
        sv_log("u: unshare: %s", strerror(errno));
        _exit(4);
    }
    member("u", 1, 0, 0, 2); /* its first child is the init of the namespace it unshared */
}

static pid_t pid_of_b;
static void role_g(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid_of_b);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) {
        sv_log("g: setns %s: %s", path, strerror(errno));
        _exit(4);
    }
    close(fd);
    spawn_role(role_h);
    member("g", 1, 0, 0, 2); /* like nsenter -p: stays with pid_for_children = N1 */
}

/* The container-level pid of a role (first field of its pre file), 0 if unknown. */
static pid_t role_pid(int i, char *nspid, size_t size)
{
    char path[4096], buf[512];
    snprintf(path, sizeof path, "%s/" NAME ".%s.pre", sv_out, roles[i]);
    if (sv_read_file(path, buf, sizeof buf) < 0)
        return 0;
    buf[strcspn(buf, "\n")] = '\0';
    if (nspid)
        snprintf(nspid, size, "%s", buf);
    return atoi(buf);
}

static pid_t status_ppid(pid_t pid)
{
    char path[64], st[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (sv_read_file(path, st, sizeof st) < 0)
        return -1;
    char *l = strstr(st, "\nPPid:");
    return l ? atoi(l + 6) : -1;
}

static void ns_link(pid_t pid, const char *kind, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, kind);
    ssize_t n = readlink(path, buf, size - 1);
    /* ENOENT: pid_for_children with no init yet (U) */
    if (n < 0 && errno != ENOENT)
        sv_log("readlink %s: %s", path, strerror(errno));
    buf[n < 0 ? 0 : n] = '\0';
}

struct view {
    pid_t pid[NROLES];
    char nspid[NROLES][256];
    pid_t ppid[NROLES];
    /* for each role, the role whose pid namespace is its pid_for_children (-1: none) */
    int born_in[NROLES];
};

/* Everything M sees of the tree from the container's /proc. */
static void observe(struct view *v)
{
    char pfc[NROLES][64], own[NROLES][64];
    memset(v, 0, sizeof *v);
    for (int i = 0; i < NROLES; i++) {
        v->pid[i] = i == 0 ? getpid() : role_pid(i, NULL, 0);
        if (sv_nspid(v->pid[i], v->nspid[i], sizeof v->nspid[i]) < 0)
            snprintf(v->nspid[i], sizeof v->nspid[i], "<gone>");
        v->ppid[i] = status_ppid(v->pid[i]);
        ns_link(v->pid[i], "pid_for_children", pfc[i], sizeof pfc[i]);
        ns_link(v->pid[i], "pid", own[i], sizeof own[i]);
    }
    for (int i = 0; i < NROLES; i++) {
        v->born_in[i] = -1;
        for (int j = 0; j < NROLES; j++)
            if (pfc[i][0] && !strcmp(pfc[i], own[j])) {
                v->born_in[i] = j;
                break;
            }
    }
}

static int all_files(const char *kind, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 10) {
        int n = 0;
        for (int i = 1; i < NROLES; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/" NAME ".%s.%s", sv_out, roles[i], kind);
            n += access(path, F_OK) == 0;
        }
        if (n == NROLES - 1)
            return 1;
        usleep(10000);
    }
    return 0;
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    struct rec me, now;
    snap(&me);

    pid_t a = spawn_role(role_a);
    /* B is A's only child; wait for it to report so /proc/<B> exists. */
    for (int t = 0; t < 2000 && (pid_of_b = role_pid(2, NULL, 0)) == 0; t++)
        usleep(5000);
    if (pid_of_b == 0) {
        sv_fail(NAME, "B (pid 1 of N1) never reported (A is %d)", (int)a);
        return 1;
    }
    /* F: setns into N1, fork, and back to our own namespace. */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid_of_b);
    int n1 = open(path, O_RDONLY | O_CLOEXEC);
    int self = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (n1 < 0 || self < 0 || setns(n1, CLONE_NEWPID) < 0) {
        sv_fail(NAME, "setns %s: %s", path, strerror(errno));
        return 1;
    }
    spawn_role(role_f);
    if (setns(self, CLONE_NEWPID) < 0) {
        sv_fail(NAME, "setns back: %s", strerror(errno));
        return 1;
    }
    close(n1);
    close(self);
    spawn_role(role_g);
    spawn_role(role_u);
    if (!all_files("pre", 10000)) {
        sv_fail(NAME, "not every process of the nested tree reported");
        return 1;
    }
    struct view before, after;
    observe(&before);
    char extra[4096];
    int off = 0;
    for (int i = 0; i < NROLES; i++)
        off += snprintf(extra + off, sizeof extra - (size_t)off, "%s %s\n", roles[i], before.nspid[i]);
    sv_log("before:\n%s", extra);
    sv_ready_extra(NAME, extra);
    sv_wait_go();

    snap(&now);
    SV_CHECK(now.pid == me.pid && now.ppid == me.ppid, "m: pid/ppid %d/%d, were %d/%d", now.pid, now.ppid,
             me.pid, me.ppid);
    SV_CHECK(!strcmp(now.nspid, me.nspid), "m: NSpid '%s', was '%s'", now.nspid, me.nspid);
    SV_CHECK(child_levels() == fields(me.nspid), "m: a new child is not born in its own namespace");
    observe(&after);
    for (int i = 0; i < NROLES; i++) {
        SV_CHECK(!strcmp(after.nspid[i], before.nspid[i]), "%s: NSpid '%s', was '%s'", roles[i],
                 after.nspid[i], before.nspid[i]);
        SV_CHECK(after.ppid[i] == before.ppid[i], "%s: parent %d, was %d", roles[i], after.ppid[i],
                 before.ppid[i]);
        SV_CHECK(after.born_in[i] == before.born_in[i], "%s: children born in %s's namespace, were in %s's",
                 roles[i], after.born_in[i] < 0 ? "?" : roles[after.born_in[i]],
                 before.born_in[i] < 0 ? "?" : roles[before.born_in[i]]);
    }
    /* the shape itself, so that a tree flattened before the dump cannot pass */
    SV_CHECK(before.born_in[1] == 2 && before.born_in[2] == 4 && before.born_in[7] == 2 && before.born_in[0] == 0,
             "pid_for_children before: a->%d b->%d g->%d m->%d", before.born_in[1], before.born_in[2],
             before.born_in[7], before.born_in[0]);
    SV_CHECK(fields(before.nspid[4]) == fields(me.nspid) + 2, "d: '%s' is not two levels below '%s'",
             before.nspid[4], me.nspid);
    for (int i = 1; i < NROLES; i++)
        if (kill(after.pid[i], SIGUSR2) < 0)
            sv_failf(__LINE__, "kill(%s=%d): %s", roles[i], (int)after.pid[i], strerror(errno));
    if (!all_files("post", 10000))
        sv_failf(__LINE__, "not every process of the nested tree reported after the restore");
    for (int i = 1; i < NROLES; i++) {
        char p[4096], res[1200];
        snprintf(p, sizeof p, "%s/" NAME ".%s.post", sv_out, roles[i]);
        if (sv_read_file(p, res, sizeof res) >= 0 && strncmp(res, "PASS", 4))
            sv_failf(__LINE__, "%s reports %s", roles[i], res);
    }
    /* Done: B's death ends N1 and N2; then A, G and U. */
    kill(after.pid[2], SIGKILL);
    kill(after.pid[1], SIGKILL);
    kill(after.pid[7], SIGKILL);
    kill(after.pid[9], SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    return sv_finish(NAME);
}
