/* Shared helpers for survival programs (zdtm style, CHECKPOINT.md section 6).
 *
 * A program sets up its state, calls sv_ready(), waits in sv_wait_go() for SIGUSR2 (sent by the
 * harness, integration/src/survival.rs, after checkpoint -> kill -> restore), checks its state
 * against what it recorded before and reports with sv_pass()/sv_fail() or SV_CHECK + sv_finish().
 *
 *   int main(int argc, char **argv) {
 *       sv_init(argc, argv);                  // argv[1] = the output dir (default /out)
 *       ... record state ...
 *       sv_ready("name");                     // /out/name.ready = getpid(), SIGUSR2 armed
 *       sv_wait_go();                         // returns once SIGUSR2 arrived
 *       SV_CHECK(x == y, "x %d != y %d", x, y);
 *       return sv_finish("name");             // /out/name.result = "PASS\n" or "FAIL: ...\n"
 *   }
 *
 * Files are written atomically (a temp file in the same dir, then rename), so the harness never
 * reads half a file. Header-only: every function is static.
 */
#ifndef AMBER_SURVIVAL_H
#define AMBER_SURVIVAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Every helper is static; a program uses only some of them. */
#define SV_FN static __attribute__((unused))

/* The output dir (argv[1], or /out). */
static const char *sv_out = "/out";
/* Set by the SIGUSR2 handler. Programs that spin instead of sleeping poll this. */
static volatile sig_atomic_t sv_go;
/* The first failure recorded by SV_CHECK / sv_failf (empty: none). */
static char sv_first_failure[1024];
static int sv_failures;

SV_FN void sv_init(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '\0')
        sv_out = argv[1];
}

/* Log to stderr (the container's console file, shown by the harness on failure). */
__attribute__((format(printf, 1, 2))) SV_FN void sv_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    dprintf(2, "survival[%d]: %s\n", (int)getpid(), buf);
}

/* Write `len` bytes to <out>/<file> atomically (temp file + rename). Returns 0 or -1. */
SV_FN int sv_write_file(const char *file, const char *data, size_t len)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", sv_out, file);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%d", sv_out, file, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        sv_log("open %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sv_log("write %s: %s", tmp, strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 && errno != EINVAL)
        sv_log("fsync %s: %s", tmp, strerror(errno));
    close(fd);
    if (rename(tmp, path) < 0) {
        sv_log("rename %s -> %s: %s", tmp, path, strerror(errno));
        return -1;
    }
    return 0;
}

SV_FN void sv_on_usr2(int sig)
{
    (void)sig;
    sv_go = 1;
}

/* Install the SIGUSR2 handler and block SIGUSR2 (sv_wait_go unblocks it atomically). */
SV_FN void sv_arm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sv_on_usr2;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR2, &sa, NULL) < 0) {
        sv_log("sigaction(SIGUSR2): %s", strerror(errno));
        exit(2);
    }
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
}

/* Unblock SIGUSR2 (for programs that spin on sv_go instead of calling sv_wait_go). */
SV_FN void sv_unblock_go(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

/* Arm SIGUSR2, then write <out>/<name>.ready: first line getpid() (the pid in the container's
 * pid namespace; the harness signals that process), then `extra` if not NULL. */
SV_FN void sv_ready_extra(const char *name, const char *extra)
{
    char file[256], buf[4096];
    sv_arm();
    snprintf(file, sizeof file, "%s.ready", name);
    int n = snprintf(buf, sizeof buf, "%d\n%s", (int)getpid(), extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof buf)
        n = (int)strlen(buf);
    if (sv_write_file(file, buf, (size_t)n) < 0)
        exit(2);
}

SV_FN void sv_ready(const char *name)
{
    sv_ready_extra(name, NULL);
}

/* Block until SIGUSR2 has arrived (sigsuspend loop: spurious wakeups, EINTR and a checkpoint in
 * the middle are all fine). Leaves SIGUSR2 blocked. */
SV_FN void sv_wait_go(void)
{
    sigset_t wait;
    sigprocmask(SIG_BLOCK, NULL, &wait);
    sigdelset(&wait, SIGUSR2);
    while (!sv_go)
        sigsuspend(&wait);
}

/* Record a failure (the first one is reported; all are logged). */
__attribute__((format(printf, 2, 3))) SV_FN void sv_failf(int line, const char *fmt, ...)
{
    char buf[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sv_log("FAIL (line %d): %s", line, buf);
    if (sv_failures++ == 0)
        snprintf(sv_first_failure, sizeof sv_first_failure, "line %d: %s", line, buf);
}

/* SV_CHECK(cond, fmt, ...): record a failure naming the line when cond is false. */
#define SV_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            sv_failf(__LINE__, __VA_ARGS__);                                                       \
    } while (0)

SV_FN void sv_pass(const char *name)
{
    char file[256];
    snprintf(file, sizeof file, "%s.result", name);
    if (sv_write_file(file, "PASS\n", 5) < 0)
        exit(2);
}

__attribute__((format(printf, 2, 3))) SV_FN void sv_fail(const char *name, const char *fmt, ...)
{
    char file[256], msg[1200], buf[1300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(file, sizeof file, "%s.result", name);
    int n = snprintf(buf, sizeof buf, "FAIL: %s\n", msg);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = (int)strlen(buf);
    sv_log("FAIL: %s", msg);
    if (sv_write_file(file, buf, (size_t)n) < 0)
        exit(2);
}

/* Write the result from the SV_CHECKs so far (PASS if none failed); returns the exit code (0:
 * the result was written, whatever it says). */
SV_FN int sv_finish(const char *name)
{
    if (sv_failures == 0)
        sv_pass(name);
    else
        sv_fail(name, "%s (%d failure%s)", sv_first_failure, sv_failures, sv_failures == 1 ? "" : "s");
    return 0;
}

/* Setup failed (errno says how): report `what` as the result of `name` and exit 1. Programs
 * wrap it as `#define die(what) sv_die(NAME, what)`. */
__attribute__((noreturn)) SV_FN void sv_die(const char *name, const char *what)
{
    sv_fail(name, "setup: %s: %s", what, strerror(errno));
    exit(1);
}

/* Put a descriptor just made at exactly `want` (dup2, close the old one); fd < 0: the setup
 * failed making it (`what`, e.g. "open"). */
SV_FN void sv_place(const char *name, int fd, int want, const char *what)
{
    if (fd < 0)
        sv_die(name, what);
    if (fd != want) {
        if (dup2(fd, want) < 0)
            sv_die(name, "dup2");
        close(fd);
    }
}

/* A parent and the child it forks take turns, each waking the other with SIGUSR1.
 * sv_turn_arm(), before the fork (the child inherits both), installs the handler and blocks
 * SIGUSR1 so that a wake-up sent before the wait is not lost; it returns the mask as it was, for
 * the parent to put back once the child is set up. Set by the SIGUSR1 handler: */
static volatile sig_atomic_t sv_turn;

SV_FN void sv_on_usr1(int sig)
{
    (void)sig;
    sv_turn = 1;
}

SV_FN sigset_t sv_turn_arm(void)
{
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, &old);
    signal(SIGUSR1, sv_on_usr1);
    return old;
}

/* Wait until SIGUSR1 has arrived (unblocked only while waiting). */
SV_FN void sv_turn_wait(void)
{
    sigset_t w;
    sigprocmask(SIG_BLOCK, NULL, &w);
    sigdelset(&w, SIGUSR1);
    while (!sv_turn)
        sigsuspend(&w);
}

/* Read a whole file into buf (NUL-terminated); returns the length or -1. */
SV_FN ssize_t sv_read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off + 1 < size) {
        ssize_t n = read(fd, buf + off, size - 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    buf[off] = '\0';
    return (ssize_t)off;
}

/* The value of the NSpid line of /proc/<pid>/status ("12 1"), pid 0 = self. Returns 0 or -1. */
SV_FN int sv_nspid(pid_t pid, char *buf, size_t size)
{
    char path[64], st[8192];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/status");
    else
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (sv_read_file(path, st, sizeof st) < 0)
        return -1;
    char *l = strstr(st, "\nNSpid:");
    if (!l)
        return -1;
    l += 7;
    while (*l == ' ' || *l == '\t')
        l++;
    size_t n = strcspn(l, "\n");
    if (n + 1 > size)
        return -1;
    memcpy(buf, l, n);
    buf[n] = '\0';
    return 0;
}

#endif
