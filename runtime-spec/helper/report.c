/*
 * report: the probe that runs as the process of every runtime-spec test container.
 *
 * Built static (gcc -static -O2) so it runs on any rootfs. It prints ONE JSON object on
 * stdout describing what the process sees: ids, capabilities, rlimits, namespaces, mounts,
 * cgroups and so on, plus the results of the probes asked for on the command line:
 *
 *   --path P          lstat P (type, mode, owner, rdev, size, symlink target)
 *   --read P          read up to 4 KiB of P
 *   --ls D            list directory D
 *   --open P:MODE     open(2) P with MODE r, w or rw, report errno, close (nothing is written)
 *   --create D        create and remove the file D/.rs-probe-PID (write access to a directory)
 *   --syscall N[:A]   call syscall N (getppid, getpid, personality, uname, sethostname,
 *                     mknod) with first argument A; report return value and errno. Done first,
 *                     before anything else, so a seccomp kill leaves no report at all.
 *   --sleep N         after the report, sleep N seconds (keeps a container running)
 *   --wait-signal     after the report, wait for any catchable signal and print
 *                     {"signal":N} on a line of its own, then exit 0
 *   --exit N          exit with status N after the report
 *
 * Strings are escaped for JSON; bytes >= 0x80 are emitted as \u00XX (latin-1), so the output
 * is always valid JSON whatever the container holds.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- JSON writer */

static int need_comma;

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if there is none. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned min;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) { len = 2; min = 0x80; }
    else if (p[0] >= 0xe0 && p[0] <= 0xef) { len = 3; min = 0x800; }
    else if (p[0] >= 0xf0 && p[0] <= 0xf4) { len = 4; min = 0x10000; }
    else return 0;
    if (len > n)
        return 0;
    unsigned cp = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void jstrn(const char *s, size_t n);

static void jstr(const char *s)
{
    jstrn(s, strlen(s));
}

/* A string of known length (may hold NUL bytes): valid UTF-8 passes through, control
 * characters and invalid bytes are escaped (an invalid byte as \u00XX, its latin-1 reading). */
static void jstrn(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        size_t l;
        if (c == '"' || c == '\\') {
            putchar('\\');
            putchar(c);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c == '\t') {
            fputs("\\t", stdout);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
        } else if (c < 0x80) {
            putchar(c);
        } else if ((l = utf8_len(p + i, n - i)) > 0) {
            fwrite(p + i, 1, l, stdout);
            i += l - 1;
        } else {
            printf("\\u%04x", c);
        }
    }
    putchar('"');
}

static void sep(void)
{
    if (need_comma)
        putchar(',');
    need_comma = 1;
}

static void key(const char *k)
{
    sep();
    jstr(k);
    putchar(':');
    need_comma = 0;
}

static void obj_begin(void) { putchar('{'); need_comma = 0; }
static void obj_end(void) { putchar('}'); need_comma = 1; }
static void arr_begin(void) { putchar('['); need_comma = 0; }
static void arr_end(void) { putchar(']'); need_comma = 1; }

static void kstr(const char *k, const char *v)
{
    key(k);
    if (v)
        jstr(v);
    else
        fputs("null", stdout);
    need_comma = 1;
}

static void kint(const char *k, long long v)
{
    key(k);
    printf("%lld", v);
    need_comma = 1;
}

static void kuint(const char *k, unsigned long long v)
{
    key(k);
    printf("%llu", v);
    need_comma = 1;
}

static void vstr(const char *v) { sep(); jstr(v); }
static void vint(long long v) { sep(); printf("%lld", v); }
static void vuint(unsigned long long v) { sep(); printf("%llu", v); }

/* ---------------------------------------------------------------- helpers */

/* Read a whole (small) file; returns malloc'd NUL-terminated text or NULL (errno set). */
static char *slurp(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max)
                break;
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb)
                break;
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static const char *status_text;

/* Value of a "Key:\tvalue" line of /proc/self/status (copied into buf). */
static const char *status_field(const char *name, char *buf, size_t size)
{
    if (!status_text)
        return NULL;
    size_t nl = strlen(name);
    const char *p = status_text;
    while (p && *p) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strchr(v, '\n');
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= size)
                n = size - 1;
            memcpy(buf, v, n);
            buf[n] = 0;
            return buf;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

/* An array of the whitespace-separated integers of a status field. */
static void status_ints(const char *k, const char *field)
{
    char buf[512];
    key(k);
    arr_begin();
    if (status_field(field, buf, sizeof buf)) {
        char *save = NULL;
        for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
            vint(strtoll(t, NULL, 10));
    }
    arr_end();
}

static void status_str(const char *k, const char *field)
{
    char buf[512];
    kstr(k, status_field(field, buf, sizeof buf));
}

static void status_num(const char *k, const char *field, int base)
{
    char buf[128];
    if (status_field(field, buf, sizeof buf))
        kint(k, strtoll(buf, NULL, base));
    else
        kstr(k, NULL);
}

/* A text file as an array of its lines. */
static void file_lines(const char *k, const char *path)
{
    key(k);
    char *t = slurp(path, 1 << 20, NULL);
    if (!t) {
        fputs("null", stdout);
        need_comma = 1;
        return;
    }
    arr_begin();
    char *save = NULL;
    for (char *l = strtok_r(t, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        vstr(l);
    arr_end();
    free(t);
}

static void file_text(const char *k, const char *path)
{
    char *t = slurp(path, 1 << 16, NULL);
    if (t) {
        size_t n = strlen(t);
        while (n && (t[n - 1] == '\n' || t[n - 1] == ' '))
            t[--n] = 0;
    }
    kstr(k, t);
    free(t);
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

static void mounts(void)
{
    key("mounts");
    char *t = slurp("/proc/self/mountinfo", 1 << 22, NULL);
    if (!t) {
        fputs("null", stdout);
        need_comma = 1;
        return;
    }
    arr_begin();
    char *save = NULL;
    for (char *l = strtok_r(t, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source super */
        char *f[6] = {0};
        char *s2 = NULL;
        char *tok = strtok_r(l, " ", &s2);
        int i = 0;
        for (; tok && i < 6; i++) {
            f[i] = tok;
            if (i < 5)
                tok = strtok_r(NULL, " ", &s2);
        }
        if (i < 6)
            continue;
        char optional[512] = "";
        char *fstype = NULL, *source = NULL, *super = NULL;
        for (tok = strtok_r(NULL, " ", &s2); tok; tok = strtok_r(NULL, " ", &s2)) {
            if (strcmp(tok, "-") == 0) {
                fstype = strtok_r(NULL, " ", &s2);
                source = strtok_r(NULL, " ", &s2);
                super = strtok_r(NULL, " ", &s2);
                break;
            }
            if (optional[0])
                strncat(optional, " ", sizeof optional - strlen(optional) - 1);
            strncat(optional, tok, sizeof optional - strlen(optional) - 1);
        }
        for (int j = 3; j <= 4; j++)
            unescape(f[j]);
        if (source)
            unescape(source);
        sep();
        obj_begin();
        kint("id", strtoll(f[0], NULL, 10));
        kint("parent", strtoll(f[1], NULL, 10));
        kstr("dev", f[2]);
        kstr("root", f[3]);
        kstr("mountpoint", f[4]);
        kstr("opts", f[5]);
        kstr("optional", optional);
        kstr("fstype", fstype);
        kstr("source", source);
        kstr("super", super);
        obj_end();
    }
    arr_end();
    free(t);
}

static void namespaces(void)
{
    static const char *names[] = {"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children",
                                  "time", "time_for_children", "user", "uts"};
    key("ns");
    obj_begin();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[64], link[128];
        snprintf(path, sizeof path, "/proc/self/ns/%s", names[i]);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n < 0) {
            kstr(names[i], NULL);
            continue;
        }
        link[n] = 0;
        /* "net:[4026531840]" -> 4026531840 */
        char *b = strchr(link, '[');
        kuint(names[i], b ? strtoull(b + 1, NULL, 10) : 0);
    }
    obj_end();
}

static void rlimits(void)
{
    static const struct {
        const char *name;
        int res;
    } rl[] = {
        {"RLIMIT_CPU", RLIMIT_CPU},         {"RLIMIT_FSIZE", RLIMIT_FSIZE},
        {"RLIMIT_DATA", RLIMIT_DATA},       {"RLIMIT_STACK", RLIMIT_STACK},
        {"RLIMIT_CORE", RLIMIT_CORE},       {"RLIMIT_RSS", RLIMIT_RSS},
        {"RLIMIT_NPROC", RLIMIT_NPROC},     {"RLIMIT_NOFILE", RLIMIT_NOFILE},
        {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_AS", RLIMIT_AS},
        {"RLIMIT_LOCKS", RLIMIT_LOCKS},     {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
        {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
        {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},   {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    };
    key("rlimits");
    obj_begin();
    for (size_t i = 0; i < sizeof rl / sizeof rl[0]; i++) {
        struct rlimit l;
        if (getrlimit(rl[i].res, &l) != 0)
            continue;
        key(rl[i].name);
        arr_begin();
        vuint((unsigned long long)l.rlim_cur);
        vuint((unsigned long long)l.rlim_max);
        arr_end();
    }
    obj_end();
}

static const char *type_name(mode_t m)
{
    if (S_ISREG(m)) return "file";
    if (S_ISDIR(m)) return "dir";
    if (S_ISCHR(m)) return "chr";
    if (S_ISBLK(m)) return "blk";
    if (S_ISFIFO(m)) return "fifo";
    if (S_ISLNK(m)) return "symlink";
    if (S_ISSOCK(m)) return "socket";
    return "other";
}

static void probe_path(const char *p)
{
    struct stat st;
    key(p);
    obj_begin();
    if (lstat(p, &st) != 0) {
        kint("errno", errno);
        obj_end();
        return;
    }
    kint("errno", 0);
    kstr("type", type_name(st.st_mode));
    kint("mode", st.st_mode & 07777);
    kint("uid", st.st_uid);
    kint("gid", st.st_gid);
    kint("size", st.st_size);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        key("rdev");
        arr_begin();
        vint(major(st.st_rdev));
        vint(minor(st.st_rdev));
        arr_end();
    }
    if (S_ISLNK(st.st_mode)) {
        char t[PATH_MAX];
        ssize_t n = readlink(p, t, sizeof t - 1);
        if (n >= 0) {
            t[n] = 0;
            kstr("target", t);
        }
    }
    obj_end();
}

static void probe_read(const char *p)
{
    key(p);
    obj_begin();
    size_t n = 0;
    char *t = slurp(p, 4096, &n);
    if (!t) {
        kint("errno", errno);
    } else {
        kint("errno", 0);
        key("data");
        jstrn(t, n);
        need_comma = 1;
        free(t);
    }
    obj_end();
}

static void probe_ls(const char *p)
{
    key(p);
    obj_begin();
    DIR *d = opendir(p);
    if (!d) {
        kint("errno", errno);
        obj_end();
        return;
    }
    kint("errno", 0);
    key("entries");
    arr_begin();
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            vstr(e->d_name);
    }
    arr_end();
    closedir(d);
    obj_end();
}

static void probe_open(const char *spec)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", spec);
    char *colon = strrchr(path, ':');
    int flags = O_RDONLY;
    if (colon) {
        *colon = 0;
        const char *m = colon + 1;
        if (strcmp(m, "w") == 0)
            flags = O_WRONLY;
        else if (strcmp(m, "rw") == 0)
            flags = O_RDWR;
    }
    /* O_NONBLOCK: opening a fifo or a tty must not hang */
    int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    key(spec);
    obj_begin();
    kint("errno", fd < 0 ? errno : 0);
    obj_end();
    if (fd >= 0)
        close(fd);
}

static void probe_create(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/.rs-probe-%d", dir, (int)getpid());
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    key(dir);
    obj_begin();
    kint("errno", fd < 0 ? errno : 0);
    obj_end();
    if (fd >= 0) {
        close(fd);
        unlink(p);
    }
}

/* ---------------------------------------------------------------- syscalls */

struct sysres {
    char spec[128];
    long ret;
    int err;
};

static struct sysres sysres[16];
static int nsysres;

static void do_syscall(const char *spec)
{
    struct sysres *r = &sysres[nsysres++];
    snprintf(r->spec, sizeof r->spec, "%s", spec);
    char name[64];
    snprintf(name, sizeof name, "%s", spec);
    unsigned long arg = 0;
    int has_arg = 0;
    char *c = strchr(name, ':');
    if (c) {
        *c = 0;
        arg = strtoul(c + 1, NULL, 0);
        has_arg = 1;
    }
    struct utsname u;
    errno = 0;
    if (strcmp(name, "getppid") == 0)
        r->ret = syscall(SYS_getppid);
    else if (strcmp(name, "getpid") == 0)
        r->ret = syscall(SYS_getpid);
    else if (strcmp(name, "personality") == 0)
        r->ret = syscall(SYS_personality, has_arg ? arg : 0xffffffffUL);
    else if (strcmp(name, "uname") == 0)
        r->ret = syscall(SYS_uname, &u);
    else if (strcmp(name, "sethostname") == 0)
        r->ret = syscall(SYS_sethostname, "rs-probe", (size_t)8);
    else if (strcmp(name, "mknod") == 0)
        r->ret = syscall(SYS_mknodat, AT_FDCWD, "/nonexistent-dir/x", S_IFIFO | 0600, 0);
    else {
        r->ret = -1;
        errno = ENOSYS;
    }
    r->err = r->ret < 0 ? errno : 0;
}

/* ---------------------------------------------------------------- main */

static volatile sig_atomic_t got_signal;
static void on_signal(int s) { got_signal = s; }

#define MAXP 64
struct list {
    const char *v[MAXP];
    int n;
};

static void push(struct list *l, const char *v)
{
    if (l->n < MAXP)
        l->v[l->n++] = v;
}

static double clock_secs(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct list paths = {0}, reads = {0}, lss = {0}, opens = {0}, creates = {0};
    long sleep_secs = 0;
    int wait_signal = 0, exit_code = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--wait-signal") == 0) {
            wait_signal = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "report: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--path") == 0) push(&paths, v);
        else if (strcmp(a, "--read") == 0) push(&reads, v);
        else if (strcmp(a, "--ls") == 0) push(&lss, v);
        else if (strcmp(a, "--open") == 0) push(&opens, v);
        else if (strcmp(a, "--create") == 0) push(&creates, v);
        else if (strcmp(a, "--syscall") == 0) {
            if (nsysres < 16)
                do_syscall(v);
        } else if (strcmp(a, "--sleep") == 0) sleep_secs = strtol(v, NULL, 10);
        else if (strcmp(a, "--exit") == 0) exit_code = (int)strtol(v, NULL, 10);
        else {
            fprintf(stderr, "report: unknown flag %s\n", a);
            return 2;
        }
    }

    if (wait_signal) {
        /* install handlers before reporting, so a signal sent right after the report is seen */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        for (int s = 1; s < 32; s++)
            if (s != SIGKILL && s != SIGSTOP)
                sigaction(s, &sa, NULL);
        /* blocked until sigsuspend, which unblocks atomically: no signal can slip past */
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
    }

    size_t slen;
    char *st = slurp("/proc/self/status", 1 << 16, &slen);
    status_text = st;

    obj_begin();
    key("argv");
    arr_begin();
    for (int i = 0; i < argc; i++)
        vstr(argv[i]);
    arr_end();
    kint("pid", getpid());
    kint("ppid", getppid());
    status_ints("nspid", "NSpid");
    status_ints("nstgid", "NStgid");
    status_ints("uid", "Uid");
    status_ints("gid", "Gid");
    key("groups");
    arr_begin();
    {
        gid_t g[256];
        int n = getgroups(256, g);
        for (int i = 0; i < n; i++)
            vint(g[i]);
    }
    arr_end();
    key("caps");
    obj_begin();
    status_str("inh", "CapInh");
    status_str("prm", "CapPrm");
    status_str("eff", "CapEff");
    status_str("bnd", "CapBnd");
    status_str("amb", "CapAmb");
    obj_end();
    kint("no_new_privs", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    status_num("seccomp", "Seccomp", 10);
    status_num("seccomp_filters", "Seccomp_filters", 10);
    status_num("umask", "Umask", 8);
    {
        char cwd[PATH_MAX];
        kstr("cwd", getcwd(cwd, sizeof cwd));
    }
    key("env");
    arr_begin();
    for (char **e = environ; e && *e; e++)
        vstr(*e);
    arr_end();
    {
        struct utsname u;
        uname(&u);
        key("uname");
        obj_begin();
        kstr("nodename", u.nodename);
        kstr("domainname", u.domainname);
        kstr("machine", u.machine);
        kstr("sysname", u.sysname);
        obj_end();
    }
    kint("personality", personality(0xffffffff));
    file_text("oom_score_adj", "/proc/self/oom_score_adj");
    {
        key("sched");
        obj_begin();
        kint("policy", sched_getscheduler(0));
        errno = 0;
        kint("nice", getpriority(PRIO_PROCESS, 0));
        /* ioprio_get(IOPRIO_WHO_PROCESS, 0) */
        kint("ioprio", syscall(SYS_ioprio_get, 1, 0));
        obj_end();
    }
    {
        key("clocks");
        obj_begin();
        key("monotonic");
        printf("%.3f", clock_secs(CLOCK_MONOTONIC));
        need_comma = 1;
        key("boottime");
        printf("%.3f", clock_secs(CLOCK_BOOTTIME));
        need_comma = 1;
        obj_end();
    }
    rlimits();
    namespaces();
    file_text("uid_map", "/proc/self/uid_map");
    file_text("gid_map", "/proc/self/gid_map");
    file_text("setgroups", "/proc/self/setgroups");
    file_lines("cgroup", "/proc/self/cgroup");
    {
        key("tty");
        arr_begin();
        for (int fd = 0; fd < 3; fd++)
            vint(isatty(fd));
        arr_end();
    }
    {
        key("fds");
        obj_begin();
        DIR *d = opendir("/proc/self/fd");
        int self = d ? dirfd(d) : -1;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == self)
                continue;
            char p[300], t[PATH_MAX];
            snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
            ssize_t n = readlink(p, t, sizeof t - 1);
            t[n < 0 ? 0 : n] = 0;
            kstr(e->d_name, t);
        }
        if (d)
            closedir(d);
        obj_end();
    }
    mounts();
    key("paths");
    obj_begin();
    for (int i = 0; i < paths.n; i++)
        probe_path(paths.v[i]);
    obj_end();
    key("reads");
    obj_begin();
    for (int i = 0; i < reads.n; i++)
        probe_read(reads.v[i]);
    obj_end();
    key("ls");
    obj_begin();
    for (int i = 0; i < lss.n; i++)
        probe_ls(lss.v[i]);
    obj_end();
    key("open");
    obj_begin();
    for (int i = 0; i < opens.n; i++)
        probe_open(opens.v[i]);
    obj_end();
    key("create");
    obj_begin();
    for (int i = 0; i < creates.n; i++)
        probe_create(creates.v[i]);
    obj_end();
    key("syscalls");
    obj_begin();
    for (int i = 0; i < nsysres; i++) {
        key(sysres[i].spec);
        obj_begin();
        kint("ret", sysres[i].ret);
        kint("errno", sysres[i].err);
        obj_end();
    }
    obj_end();
    obj_end();
    putchar('\n');
    fflush(stdout);
    free(st);

    if (wait_signal) {
        sigset_t none;
        sigemptyset(&none);
        while (!got_signal)
            sigsuspend(&none);
        printf("{\"signal\":%d}\n", (int)got_signal);
        fflush(stdout);
        return 0;
    }
    if (sleep_secs > 0) {
        struct timespec ts = {sleep_secs, 0};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return exit_code;
}
