/* Step 5 (signals): dispositions, masks, the alternate stack, queued signals and interval
 * timers survive checkpoint/restore.
 * - SA_SIGINFO handlers with their flags and masks (one on the alternate stack);
 * - blocked and pending at the checkpoint: SIGHUP for this thread (tgkill), SIGUSR1 sent twice
 *   (a standard signal is pending once), SIGRTMIN+1 queued twice with values 11 and 12,
 *   SIGRTMIN+2 with value 21 (on the alternate stack), and SIGRTMIN+3 with value 33 from a child
 *   (its pid must come back in si_pid): after the restore they are unblocked and must arrive in
 *   the kernel's order with their si_code, si_pid and si_value;
 * - ITIMER_REAL (2 s, then every 250 ms) keeps ticking after the restore; ITIMER_VIRTUAL
 *   (100 s) has kept its remaining time; ITIMER_PROF (200 ms of CPU) fires when we spin after
 *   the restore (we sleep before, so it cannot fire before the checkpoint). */
#include "survival.h"

#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#define NAME "signals"
#define RT1 (SIGRTMIN + 1)
#define RT2 (SIGRTMIN + 2)
#define RT3 (SIGRTMIN + 3)

struct got {
    int signo, code, value;
    pid_t pid;
    int on_altstack;
};
static struct got seen[32];
static volatile int nseen;
static volatile sig_atomic_t alarms, profs;
static double first_alarm;
static char altstack[65536] __attribute__((aligned(16)));

static void on_queued(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char here;
    if (nseen < 32) {
        seen[nseen].signo = sig;
        seen[nseen].code = si->si_code;
        seen[nseen].value = si->si_value.sival_int;
        seen[nseen].pid = si->si_pid;
        seen[nseen].on_altstack = &here >= altstack && &here < altstack + sizeof altstack;
        nseen++;
    }
}

static double now(void);

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    if (alarms++ == 0)
        first_alarm = now();
}

static void on_prof(int sig)
{
    (void)sig;
    profs++;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long us(struct timeval tv)
{
    return tv.tv_sec * 1000000L + tv.tv_usec;
}

static sigset_t queued_set(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGHUP);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, RT1);
    sigaddset(&s, RT2);
    sigaddset(&s, RT3);
    return s;
}

static int install(int sig, void (*fn)(int, siginfo_t *, void *), int flags, struct sigaction *out)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    /* one at a time: each handler returns before the next signal is taken */
    sa.sa_mask = queued_set();
    sigaddset(&sa.sa_mask, SIGPROF);
    *out = sa;
    return sigaction(sig, &sa, NULL);
}

static int same_action(int sig, const struct sigaction *want)
{
    struct sigaction cur;
    sigaction(sig, NULL, &cur);
    /* the kernel adds SA_RESTORER (glibc's trampoline): compare what we set */
    int flags_mask = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER | SA_RESETHAND;
    if (cur.sa_sigaction != want->sa_sigaction || (cur.sa_flags & flags_mask) != (want->sa_flags & flags_mask))
        return 0;
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&cur.sa_mask, s) != sigismember(&want->sa_mask, s))
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    sv_init(argc, argv);
    pid_t me = getpid();

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        sv_fail(NAME, "sigaltstack: %s", strerror(errno));
        return 0;
    }
    struct sigaction acts[5];
    int sigs[5] = {SIGHUP, SIGUSR1, RT1, RT2, RT3};
    for (int i = 0; i < 5; i++)
        install(sigs[i], on_queued, sigs[i] == RT2 ? SA_ONSTACK : SA_RESTART, &acts[i]);
    struct sigaction alarm_act;
    install(SIGALRM, on_alarm, SA_RESTART, &alarm_act);
    signal(SIGPROF, on_prof);

    /* Block the queued signals (and a few more, to check the mask), then queue them. */
    sigset_t block = queued_set();
    sigaddset(&block, SIGWINCH);
    sigaddset(&block, SIGRTMAX);
    sigprocmask(SIG_BLOCK, &block, NULL);
    syscall(SYS_tgkill, me, me, SIGHUP);
    kill(me, SIGUSR1);
    kill(me, SIGUSR1);
    union sigval v;
    v.sival_int = 11;
    sigqueue(me, RT1, v);
    v.sival_int = 12;
    sigqueue(me, RT1, v);
    v.sival_int = 21;
    sigqueue(me, RT2, v);
    pid_t child = fork();
    if (child == 0) {
        union sigval cv = {.sival_int = 33};
        _exit(sigqueue(getppid(), RT3, cv) == 0 ? 0 : 1);
    }
    int st;
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        sv_fail(NAME, "the child could not queue RT3 (status %#x)", st);
        return 0;
    }
    sigset_t pending_before;
    sigpending(&pending_before);

    /* Interval timers. */
    struct itimerval real = {.it_interval = {0, 250000}, .it_value = {2, 0}};
    struct itimerval virt = {.it_interval = {0, 0}, .it_value = {100, 0}};
    struct itimerval prof = {.it_interval = {0, 0}, .it_value = {0, 200000}};
    setitimer(ITIMER_REAL, &real, NULL);
    setitimer(ITIMER_VIRTUAL, &virt, NULL);
    setitimer(ITIMER_PROF, &prof, NULL);
    double armed = now();

    sv_ready(NAME); /* blocks SIGUSR2 */
    sigset_t mask_before;
    sigprocmask(SIG_BLOCK, NULL, &mask_before);
    sv_wait_go();
    int p0 = profs;

    /* Dispositions, mask, alternate stack. */
    for (int i = 0; i < 5; i++)
        SV_CHECK(same_action(sigs[i], &acts[i]), "the action of signal %d changed", sigs[i]);
    SV_CHECK(same_action(SIGALRM, &alarm_act), "the action of SIGALRM changed");
    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    for (int s = 1; s < NSIG; s++)
        SV_CHECK(sigismember(&mask, s) == sigismember(&mask_before, s), "signal %d: blocked %d, was %d", s,
                 sigismember(&mask, s), sigismember(&mask_before, s));
    stack_t cur;
    sigaltstack(NULL, &cur);
    SV_CHECK(cur.ss_sp == altstack && cur.ss_size == sizeof altstack && cur.ss_flags == 0,
             "sigaltstack: sp %p size %zu flags %d", cur.ss_sp, cur.ss_size, cur.ss_flags);

    /* Still pending, and nothing has been delivered yet. */
    sigset_t pending;
    sigpending(&pending);
    for (int s = 1; s < NSIG; s++)
        SV_CHECK(sigismember(&pending, s) == sigismember(&pending_before, s), "signal %d: pending %d, was %d", s,
                 sigismember(&pending, s), sigismember(&pending_before, s));
    SV_CHECK(nseen == 0, "%d queued signals were delivered while blocked", nseen);

    /* Unblock: each arrives once, in the kernel's order (the thread's queue first, then the
     * process's, lowest number first, FIFO within a real-time signal). */
    sigset_t q = queued_set();
    sigprocmask(SIG_UNBLOCK, &q, NULL);
    struct got want[] = {
        {SIGHUP, SI_TKILL, 0, me, 0},  {SIGUSR1, SI_USER, 0, me, 0}, {RT1, SI_QUEUE, 11, me, 0},
        {RT1, SI_QUEUE, 12, me, 0},    {RT2, SI_QUEUE, 21, me, 1},   {RT3, SI_QUEUE, 33, child, 0},
    };
    int nwant = sizeof want / sizeof want[0];
    SV_CHECK(nseen == nwant, "%d signals arrived, want %d", nseen, nwant);
    for (int i = 0; i < nseen && i < nwant; i++) {
        struct got *g = &seen[i], *w = &want[i];
        int check_value = w->code == SI_QUEUE;
        SV_CHECK(g->signo == w->signo && g->code == w->code && g->pid == w->pid &&
                     (!check_value || g->value == w->value) && g->on_altstack == w->on_altstack,
                 "arrival %d: signal %d code %d pid %d value %d altstack %d; want %d %d %d %d %d", i, g->signo,
                 g->code, (int)g->pid, g->value, g->on_altstack, w->signo, w->code, (int)w->pid, w->value,
                 w->on_altstack);
    }

    /* Timers: the virtual one kept its remaining time (we used little CPU; it counts in ticks,
     * so it may read a few ms above what was set). */
    struct itimerval t;
    getitimer(ITIMER_VIRTUAL, &t);
    SV_CHECK(us(t.it_value) > 90000000L && us(t.it_value) <= 100010000L && us(t.it_interval) == 0,
             "ITIMER_VIRTUAL: value %ld us interval %ld us", us(t.it_value), us(t.it_interval));
    getitimer(ITIMER_REAL, &t);
    SV_CHECK(us(t.it_interval) == 250000, "ITIMER_REAL interval %ld us", us(t.it_interval));
    SV_CHECK(us(t.it_value) > 0 && us(t.it_value) <= 2000000L, "ITIMER_REAL value %ld us", us(t.it_value));
    /* The real one ticks on: two more alarms within 5 s (its first expiry was 2 s after arming,
     * and downtime does not count). */
    int a0 = alarms;
    double start = now();
    while (alarms < a0 + 2 && now() - start < 5)
        usleep(10000);
    SV_CHECK(alarms >= a0 + 2, "ITIMER_REAL: %d alarms in 5 s after the restore", alarms - a0);
    SV_CHECK(first_alarm - armed >= 1.99, "the first alarm came %.3f s after arming, not 2 s", first_alarm - armed);
    /* The profiling one had not fired (we slept) and fires once we spin. */
    SV_CHECK(p0 == 0, "ITIMER_PROF fired before the restore");
    start = now();
    volatile unsigned long spin = 0;
    while (profs == 0 && now() - start < 5)
        spin++;
    SV_CHECK(profs == 1, "ITIMER_PROF fired %d times after spinning %.2f s", profs, now() - start);
    return sv_finish(NAME);
}
