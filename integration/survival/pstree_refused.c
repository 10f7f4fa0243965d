/* A tree amber cannot restore yet (a refusal test, not a survival program): the program (a
 * subreaper) forks A, A calls setsid() and forks B, B forks C and exits, so C comes to the
 * program while still in A's session; then A becomes a subreaper itself. A helper in A's
 * session (cloned by A) would now leave C to A, not to the program: the checkpoint must refuse
 * it naming C and session A, and leave everything running. After SIGUSR2 the program checks
 * that A and C are alive, not traced and not stopped, and tells the harness C's pid and A's (in
 * the ready file: "<pid>\n<C> <A>\n"). */
#include "survival.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#define NAME "pstree_refused"

static int healthy(pid_t pid)
{
    char path[64], st[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (sv_read_file(path, st, sizeof st) < 0)
        return 0;
    return strstr(st, "\nTracerPid:\t0\n") && !strstr(st, "\nState:\tT") && !strstr(st, "\nState:\tZ");
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int p[2];
    if (pipe(p) < 0)
        return 2;
    pid_t a = fork();
    if (a == 0) {
        close(p[0]);
        setsid();
        pid_t b = fork();
        if (b == 0) {
            pid_t c = fork();
            if (c == 0) {
                closefrom(3);
                for (;;)
                    pause();
            }
            if (write(p[1], &c, sizeof c) != sizeof c)
                _exit(3);
            _exit(0);
        }
        waitpid(b, NULL, 0); /* C has come to the program by now */
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        char done = 'x';
        if (write(p[1], &done, 1) != 1)
            _exit(3);
        close(p[1]);
        for (;;)
            pause();
    }
    close(p[1]);
    pid_t c;
    char done;
    if (read(p[0], &c, sizeof c) != sizeof c || read(p[0], &done, 1) != 1) /* C, then A is a subreaper */
        return 2;
    close(p[0]);
    while (getsid(c) != a || getpgid(c) != a)
        usleep(1000);
    /* wait until C is ours */
    for (int i = 0; i < 5000; i++) {
        char path[64], st[4096];
        snprintf(path, sizeof path, "/proc/%d/status", (int)c);
        if (sv_read_file(path, st, sizeof st) > 0) {
            char want[64];
            snprintf(want, sizeof want, "\nPPid:\t%d\n", (int)getpid());
            if (strstr(st, want))
                break;
        }
        usleep(1000);
    }
    char extra[64];
    snprintf(extra, sizeof extra, "%d %d\n", (int)c, (int)a);
    sv_ready_extra(NAME, extra);
    sv_wait_go();
    SV_CHECK(healthy(a), "A (%d) is not running untraced", (int)a);
    SV_CHECK(healthy(c), "C (%d) is not running untraced", (int)c);
    SV_CHECK(getsid(c) == a, "C's session %d, not %d", (int)getsid(c), (int)a);
    kill(a, SIGKILL);
    kill(c, SIGKILL);
    waitpid(a, NULL, 0);
    waitpid(c, NULL, 0);
    return sv_finish(NAME);
}
