/* Step 6: a process tree survives checkpoint/restore with its shape and job-control state:
 * - zombies (one exited with 42, one killed by SIGTERM) that the program reaps after the
 *   restore, getting the same pids and statuses;
 * - a session whose leader exited (setsid + two children, one in its own group; the children
 *   are reparented to the program, a subreaper);
 * - a session whose leader is a zombie (not reaped until after the restore) with a member;
 * - a session whose leader lives on while a grandchild of it came to us (its parent exited);
 * - a process group whose leader exited (one member reparented, one a direct child);
 * - a child with a parent-death signal;
 * - a stopped child (SIGSTOP) that the program finds stopped and SIGCONTs after the restore;
 * - a child forked before its parent's setsid() (it keeps the old session);
 * - the program is a child subreaper, and still works as one after the restore.
 * Each child checks its own pid, ppid, sid, pgid (and pdeathsig) when told to go, and exits 0
 * only if they match; the program checks the statuses. No descriptor other than stdio is open
 * at the checkpoint (setup pipes are closed first). */
#include "survival.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#define NAME "pstree"

static pid_t me, my_sid, my_pgid;

struct ids {
    pid_t pid, ppid, sid, pgid;
    int pdeathsig; /* -1: not checked */
};

static int same_ids(const char *what, const struct ids *w)
{
    int bad = 0, pds = 0;
    struct ids got = {getpid(), getppid(), getsid(0), getpgid(0), -1};
    if (w->pdeathsig >= 0) {
        prctl(PR_GET_PDEATHSIG, &pds, 0, 0, 0);
        got.pdeathsig = pds;
    }
    if (got.pid != w->pid || got.ppid != w->ppid || got.sid != w->sid || got.pgid != w->pgid ||
        got.pdeathsig != w->pdeathsig) {
        sv_log("%s: pid/ppid/sid/pgid/pdeathsig %d/%d/%d/%d/%d, want %d/%d/%d/%d/%d", what, got.pid, got.ppid,
               got.sid, got.pgid, got.pdeathsig, w->pid, w->ppid, w->sid, w->pgid, w->pdeathsig);
        bad = 1;
    }
    return bad;
}

/* A child's life: no descriptors but stdio, wait for SIGUSR2, check its ids, exit 0 or 10. */
static void wait_and_verify(const char *what, struct ids want)
{
    closefrom(3);
    want.pid = getpid();
    sv_arm();
    sv_wait_go();
    _exit(same_ids(what, &want) ? 10 : 0);
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The value of a /proc/<pid>/status field, or "" */
static void status_field(pid_t pid, const char *key, char *out, size_t size)
{
    char path[64], st[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    out[0] = '\0';
    if (sv_read_file(path, st, sizeof st) < 0)
        return;
    char *l = strstr(st, key);
    if (!l)
        return;
    l += strlen(key);
    while (*l == ' ' || *l == '\t')
        l++;
    size_t n = strcspn(l, "\n");
    if (n + 1 > size)
        n = size - 1;
    memcpy(out, l, n);
    out[n] = '\0';
}

static char state_of(pid_t pid)
{
    char s[64];
    status_field(pid, "\nState:", s, sizeof s);
    return s[0];
}

/* Wait (up to 10 s) until `pid` has a SIGUSR2 handler: it is ready to be told to go. */
static int wait_armed(pid_t pid)
{
    for (int i = 0; i < 10000; i++) {
        char cgt[64];
        status_field(pid, "\nSigCgt:", cgt, sizeof cgt);
        if (cgt[0] && (strtoull(cgt, NULL, 16) & (1ULL << (SIGUSR2 - 1))))
            return 0;
        msleep(1);
    }
    sv_log("pid %d never armed SIGUSR2", (int)pid);
    return -1;
}

static void read_full(int fd, void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = read(fd, (char *)buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sv_log("setup pipe: %s", n < 0 ? strerror(errno) : "EOF");
            exit(2);
        }
        off += (size_t)n;
    }
}

/* Reap `pid` and require a normal exit with `code`. */
static void expect_exit(const char *what, pid_t pid, int code)
{
    int st;
    pid_t got = waitpid(pid, &st, 0);
    SV_CHECK(got == pid, "%s: waitpid(%d) = %d (%s)", what, (int)pid, (int)got, strerror(errno));
    if (got == pid)
        SV_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == code, "%s: status %#x, want exit %d", what, st, code);
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    me = getpid();
    my_sid = getsid(0);
    my_pgid = getpgid(0);
    pid_t my_ppid = getppid();
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        sv_fail(NAME, "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
        return 0;
    }
    struct ids common = {0, me, my_sid, my_pgid, -1};

    /* Zombies. */
    pid_t z_exit = fork();
    if (z_exit == 0)
        _exit(42);
    pid_t z_kill = fork();
    if (z_kill == 0) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(1);
    }
    siginfo_t si;
    waitid(P_PID, z_exit, &si, WEXITED | WNOWAIT);
    waitid(P_PID, z_kill, &si, WEXITED | WNOWAIT);

    /* A session whose leader exits: its children come to us (subreaper). */
    int p[2], q[2];
    if (pipe(p) < 0 || pipe(q) < 0)
        return 2;
    pid_t leader = fork();
    if (leader == 0) {
        close(p[0]);
        setsid();
        pid_t kids[2];
        struct ids in_session = {0, me, getpid(), getpid(), -1};
        kids[0] = fork();
        if (kids[0] == 0)
            wait_and_verify("session child", in_session);
        kids[1] = fork();
        if (kids[1] == 0) {
            setpgid(0, 0);
            in_session.pgid = getpid();
            wait_and_verify("session child in its own group", in_session);
        }
        setpgid(kids[1], kids[1]);
        if (write(p[1], kids, sizeof kids) != sizeof kids)
            _exit(3);
        _exit(0);
    }
    pid_t sess_kids[2];
    close(p[1]);
    read_full(p[0], sess_kids, sizeof sess_kids);
    close(p[0]);
    expect_exit("session leader", leader, 0);

    /* A session whose leader stays a zombie, with a member that comes to us. */
    if (pipe(p) < 0)
        return 2;
    pid_t zleader = fork();
    if (zleader == 0) {
        close(p[0]);
        setsid();
        struct ids w = {0, me, getpid(), getpid(), -1};
        pid_t m = fork();
        if (m == 0)
            wait_and_verify("member of a zombie's session", w);
        wait_armed(m);
        if (write(p[1], &m, sizeof m) != sizeof m)
            _exit(3);
        _exit(7);
    }
    close(p[1]);
    pid_t zmember;
    read_full(p[0], &zmember, sizeof zmember);
    close(p[0]);
    waitid(P_PID, zleader, &si, WEXITED | WNOWAIT);

    /* A session whose leader lives on, and a grandchild of it that came to us. */
    if (pipe(p) < 0)
        return 2;
    pid_t lleader = fork();
    if (lleader == 0) {
        close(p[0]);
        setsid();
        struct ids w = {0, me, getpid(), getpid(), -1};
        pid_t mid = fork();
        if (mid == 0) {
            pid_t gc = fork();
            if (gc == 0)
                wait_and_verify("grandchild of a live session leader", w);
            wait_armed(gc);
            if (write(p[1], &gc, sizeof gc) != sizeof gc)
                _exit(3);
            _exit(0);
        }
        close(p[1]);
        int mst;
        waitpid(mid, &mst, 0);
        wait_and_verify("live session leader", w);
    }
    close(p[1]);
    pid_t lgrandchild;
    read_full(p[0], &lgrandchild, sizeof lgrandchild);
    close(p[0]);

    /* A process group whose leader exits: one member forked by the leader, one by us. */
    if (pipe(p) < 0)
        return 2;
    pid_t gleader = fork();
    if (gleader == 0) {
        close(p[0]);
        close(q[1]);
        setpgid(0, 0);
        struct ids member = {0, me, my_sid, getpid(), -1};
        pid_t m = fork();
        if (m == 0)
            wait_and_verify("group member (orphan)", member);
        if (write(p[1], &m, sizeof m) != sizeof m)
            _exit(3);
        char c;
        while (read(q[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    setpgid(gleader, gleader);
    close(p[1]);
    close(q[0]);
    pid_t member1;
    read_full(p[0], &member1, sizeof member1);
    close(p[0]);
    struct ids member = {0, me, my_sid, gleader, -1};
    pid_t member2 = fork();
    if (member2 == 0) {
        setpgid(0, gleader);
        wait_and_verify("group member (child)", member);
    }
    setpgid(member2, gleader);
    wait_armed(member1);
    wait_armed(member2);
    close(q[1]); /* the group leader exits */
    expect_exit("group leader", gleader, 0);

    /* Parent-death signal. */
    pid_t pdeath = fork();
    if (pdeath == 0) {
        prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
        struct ids w = common;
        w.pdeathsig = SIGUSR1;
        wait_and_verify("pdeathsig child", w);
    }

    /* Forked before its parent's setsid(). */
    pid_t born = fork();
    if (born == 0) {
        closefrom(3);
        struct ids w = {0, getpid(), my_sid, my_pgid, -1};
        pid_t grandchild = fork();
        if (grandchild == 0)
            wait_and_verify("child forked before its parent's setsid", w);
        setsid();
        wait_armed(grandchild);
        struct ids self = {getpid(), me, getpid(), getpid(), -1};
        sv_arm();
        sv_wait_go();
        kill(grandchild, SIGUSR2);
        int st, bad = same_ids("parent that called setsid after forking", &self);
        if (waitpid(grandchild, &st, 0) != grandchild || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            sv_log("grandchild forked before setsid: status %#x", st);
            bad = 1;
        }
        _exit(bad ? 10 : 0);
    }

    /* A stopped child. */
    pid_t stopped = fork();
    if (stopped == 0)
        wait_and_verify("stopped child", common);

    pid_t checked[] = {sess_kids[0], sess_kids[1], pdeath, born, stopped, zmember, lleader, lgrandchild};
    for (size_t i = 0; i < sizeof checked / sizeof checked[0]; i++)
        if (wait_armed(checked[i]) < 0)
            return 2;
    kill(stopped, SIGSTOP);
    int st;
    if (waitpid(stopped, &st, WUNTRACED) != stopped || !WIFSTOPPED(st)) {
        sv_fail(NAME, "the child did not stop (status %#x)", st);
        return 0;
    }

    sv_ready(NAME);
    sv_wait_go();

    /* Our own identity and subreaper flag. */
    struct ids self = {me, my_ppid, my_sid, my_pgid, -1};
    SV_CHECK(!same_ids("the program", &self), "the program's pid/ppid/sid/pgid changed");
    int sub = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
    SV_CHECK(sub == 1, "PR_GET_CHILD_SUBREAPER = %d", sub);

    /* The zombies are still zombies, with their pids and statuses. */
    SV_CHECK(state_of(z_exit) == 'Z', "pid %d is in state %c, not a zombie", (int)z_exit, state_of(z_exit));
    SV_CHECK(state_of(z_kill) == 'Z', "pid %d is in state %c, not a zombie", (int)z_kill, state_of(z_kill));
    expect_exit("zombie", z_exit, 42);
    SV_CHECK(state_of(zleader) == 'Z', "the zombie session leader %d is in state %c", (int)zleader,
             state_of(zleader));
    SV_CHECK(getsid(zmember) == zleader, "the zombie's session member is in session %d", (int)getsid(zmember));
    pid_t got = waitpid(z_kill, &st, 0);
    SV_CHECK(got == z_kill && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
             "zombie %d: waitpid = %d, status %#x, want killed by SIGTERM", (int)z_kill, (int)got, st);

    /* The stopped child is stopped; it goes on after SIGCONT. */
    SV_CHECK(state_of(stopped) == 'T', "the stopped child is in state %c", state_of(stopped));
    got = waitpid(stopped, &st, WUNTRACED | WNOHANG);
    SV_CHECK(got == 0 || (got == stopped && WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP),
             "waitpid(WUNTRACED) of the stopped child: %d, status %#x", (int)got, st);
    kill(stopped, SIGCONT);
    got = 0;
    for (int i = 0; i < 5000 && got == 0; i++) {
        got = waitpid(stopped, &st, WCONTINUED | WNOHANG);
        if (got == 0)
            msleep(1);
    }
    SV_CHECK(got == stopped && WIFCONTINUED(st), "waitpid(WCONTINUED): %d, status %#x", (int)got, st);

    /* Every child checks itself. */
    struct {
        const char *what;
        pid_t pid;
    } kids[] = {
        {"session child", sess_kids[0]},
        {"session child in its own group", sess_kids[1]},
        {"group member (orphan)", member1},
        {"group member (child)", member2},
        {"pdeathsig child", pdeath},
        {"born before setsid", born},
        {"stopped child", stopped},
        {"member of a zombie's session", zmember},
        {"live session leader", lleader},
        {"grandchild of a live session leader", lgrandchild},
    };
    for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++) {
        kill(kids[i].pid, SIGUSR2);
        expect_exit(kids[i].what, kids[i].pid, 0);
    }
    expect_exit("zombie session leader", zleader, 7);
    /* The dead leaders' pids are free again, and no helper is left as our child. */
    SV_CHECK(kill(leader, 0) < 0 && errno == ESRCH, "the session leader's pid %d exists", (int)leader);
    SV_CHECK(kill(gleader, 0) < 0 && errno == ESRCH, "the group leader's pid %d exists", (int)gleader);
    got = waitpid(-1, &st, WNOHANG);
    SV_CHECK(got < 0 && errno == ECHILD, "an unexpected child %d (status %#x)", (int)got, st);

    /* Still a subreaper: an orphaned grandchild comes to us. */
    pid_t mid = fork();
    if (mid == 0) {
        pid_t gc = fork();
        if (gc == 0) {
            pid_t parent = getppid();
            for (int i = 0; i < 5000 && getppid() == parent; i++)
                msleep(1);
            _exit(getppid() == me ? 0 : 11);
        }
        _exit(gc > 0 ? 0 : 1);
    }
    expect_exit("intermediate child", mid, 0);
    got = waitpid(-1, &st, 0);
    SV_CHECK(got > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "the orphaned grandchild did not come to us: waitpid = %d, status %#x", (int)got, st);
    return sv_finish(NAME);
}
