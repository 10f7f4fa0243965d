/* A refusal test, not a survival program: the program (the init) forks NKIDS workers, and the
 * last one (the highest pid, so the dump seizes and interrupts every other task before it gets
 * there) starts a second thread, which v1 refuses. A checkpoint is then refused after tasks were
 * seized; each must be let go from its interrupt stop. After SIGUSR2 the program checks that it
 * and every worker are alive, not traced and not stopped, and that each worker still answers on
 * its pipe. The ready file's second line is the threaded worker's pid. With argv[2] "nothreads"
 * no worker starts a thread (a dump that fails otherwise, e.g. by AMBER_FAULT), and each process's
 * blocked signals and mappings must also be as they were. */
#include "survival.h"

#include <poll.h>
#include <pthread.h>
#include <sys/wait.h>

#define NAME "threads_refused"
#define NKIDS 4

static void *idle(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static int healthy(pid_t pid)
{
    char path[64], st[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (sv_read_file(path, st, sizeof st) < 0)
        return 0;
    return strstr(st, "\nTracerPid:\t0\n") && !strstr(st, "\nState:\tT") && !strstr(st, "\nState:\tt") &&
           !strstr(st, "\nState:\tZ");
}

/* The blocked-signal mask of `pid` (SigBlk), or ~0 if unreadable. */
static unsigned long long sigblk(pid_t pid)
{
    char path[64], st[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (sv_read_file(path, st, sizeof st) < 0)
        return ~0ULL;
    const char *t = strstr(st, "\nSigBlk:\t");
    return t ? strtoull(t + 9, NULL, 16) : ~0ULL;
}

static void maps(pid_t pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    if (sv_read_file(path, buf, len) < 0)
        buf[0] = '\0';
}

static int threads(pid_t pid)
{
    char path[64], st[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (sv_read_file(path, st, sizeof st) < 0)
        return 0;
    const char *t = strstr(st, "\nThreads:\t");
    return t ? atoi(t + 10) : 0;
}

/* A worker answers each byte on `in` with the byte + 1 on `out`. */
static void worker(int in, int out, int threaded)
{
    pthread_t t;
    if (threaded && pthread_create(&t, NULL, idle, NULL) != 0)
        _exit(3);
    unsigned char b;
    while (read(in, &b, 1) == 1) {
        b++;
        if (write(out, &b, 1) != 1)
            _exit(4);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    int threaded = !(argc > 2 && !strcmp(argv[2], "nothreads"));
    static char before[NKIDS + 1][16384], after[16384];
    pid_t kids[NKIDS];
    int to[NKIDS][2], from[NKIDS][2];
    for (int i = 0; i < NKIDS; i++) {
        if (pipe(to[i]) < 0 || pipe(from[i]) < 0)
            return 2;
        kids[i] = fork();
        if (kids[i] < 0)
            return 2;
        if (kids[i] == 0)
            worker(to[i][0], from[i][1], threaded && i == NKIDS - 1);
        close(to[i][0]);
        close(from[i][1]);
    }
    pid_t last = kids[NKIDS - 1];
    for (int i = 0; threaded && i < 5000 && threads(last) < 2; i++)
        usleep(1000);
    if (threaded && threads(last) < 2)
        return 2;
    char extra[32];
    snprintf(extra, sizeof extra, "%d\n", (int)last);
    sv_ready_extra(NAME, extra);
    unsigned long long mask = sigblk(getpid());
    for (int i = 0; i < NKIDS; i++)
        maps(kids[i], before[i], sizeof before[i]);
    maps(getpid(), before[NKIDS], sizeof before[NKIDS]);
    sv_wait_go();
    maps(getpid(), after, sizeof after);
    SV_CHECK(!strcmp(before[NKIDS], after), "the init's mappings changed:\n%s\nnow:\n%s", before[NKIDS], after);
    SV_CHECK(sigblk(getpid()) == mask, "the init blocks %llx, not %llx", sigblk(getpid()), mask);
    SV_CHECK(healthy(getpid()), "the init is traced or stopped");
    for (int i = 0; i < NKIDS; i++) {
        SV_CHECK(healthy(kids[i]), "worker %d (%d) is not running untraced", i, (int)kids[i]);
        SV_CHECK(sigblk(kids[i]) == 0, "worker %d blocks %llx", i, sigblk(kids[i]));
        maps(kids[i], after, sizeof after);
        SV_CHECK(!strcmp(before[i], after), "worker %d's mappings changed:\n%s\nnow:\n%s", i, before[i], after);
        unsigned char b = (unsigned char)(10 * i), r = 0;
        struct pollfd p = {.fd = from[i][0], .events = POLLIN};
        int ok = write(to[i][1], &b, 1) == 1 && poll(&p, 1, 5000) == 1 && read(from[i][0], &r, 1) == 1;
        SV_CHECK(ok && r == b + 1, "worker %d (%d) does not answer on its pipe", i, (int)kids[i]);
    }
    for (int i = 0; i < NKIDS; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    return sv_finish(NAME);
}
