//! Harness for amber's end-to-end tests.
//!
//! The tests run real containers, as root, against the runtime binary named by
//! `AMBER_RUNTIME` (default `<repo>/target/debug/amber`), so the same suite validates
//! amber and, as a reference, runc. Every test gets its own `--root` state dir and a
//! unique container id, so tests run in parallel; the [`Container`] guard always
//! force-deletes its container on drop and fails the test if the runtime left a
//! process, a cgroup, a state dir or a mount behind.
//!
//! The rootfs (`AMBER_ROOTFS`, default `<repo>/target/rootfs`, built by
//! `scripts/mkrootfs.sh`) is shared by all tests and mounted read-only: a test that
//! needs to write mounts a tmpfs (see [`Bundle::tmpfs`]). Mount destinations must be
//! directories that already exist in the rootfs (`/tmp`, `/run`, `/var`, `/root`...)
//! or lie below such a tmpfs, since runtimes create missing mount points in the rootfs
//! before making it read-only.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub mod survival;

/// Longest any single runtime invocation may take before the test fails:
/// `$AMBER_IT_TIMEOUT` seconds, default 15 (runc needs well under a second; the
/// slowest legitimate case, `delete --force` of a stubborn container, polls for 10 s).
pub fn cmd_timeout() -> Duration {
    static T: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        let secs = std::env::var("AMBER_IT_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(15);
        Duration::from_secs(secs)
    })
}

/// Default bound for [`wait_for`] and friends.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration crate has a parent dir")
        .to_path_buf()
}

/// The runtime under test: `$AMBER_RUNTIME`, or `<repo>/target/debug/amber`.
pub fn runtime() -> PathBuf {
    match std::env::var_os("AMBER_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("target/debug/amber"),
    }
}

/// True when the runtime under test is amber. Used to gate assertions on amber's own
/// wording or on features runc 1.1.5 lacks. `AMBER_IS_AMBER=1|0` forces the answer;
/// otherwise the runtime is amber if its file name or the first line of its
/// `--version` output says "amber" (so a `runc` symlink to amber still counts).
pub fn is_amber() -> bool {
    static IS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS.get_or_init(|| {
        if let Ok(v) = std::env::var("AMBER_IS_AMBER") {
            return matches!(v.as_str(), "1" | "true" | "yes");
        }
        let rt = runtime();
        if rt.file_name().is_some_and(|n| n.to_string_lossy().contains("amber")) {
            return true;
        }
        Command::new(&rt)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("amber"))
            })
            .unwrap_or(false)
    })
}

/// The shared, read-only rootfs: `$AMBER_ROOTFS`, or `<repo>/target/rootfs` (built by
/// `scripts/mkrootfs.sh` once per test process; the script is cached and takes a file
/// lock, so parallel test binaries are safe).
pub fn rootfs() -> PathBuf {
    if let Some(p) = std::env::var_os("AMBER_ROOTFS") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let dest = repo_root().join("target/rootfs");
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let script = repo_root().join("scripts/mkrootfs.sh");
        let status = Command::new("sh")
            .arg(&script)
            .arg(&dest)
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
    });
    dest
}

fn check_runtime() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests run containers and must run as root"
    );
    let rt = runtime();
    assert!(
        rt.is_file(),
        "runtime {} not found: build amber (cargo build) or set AMBER_RUNTIME",
        rt.display()
    );
    rt
}

/// A unique container id: `amber-it-<name>-<pid>-<counter>`.
pub fn unique_id(name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("amber-it-{name}-{}-{n}", std::process::id())
}

// ---------------------------------------------------------------------------------
// Running commands

/// What a finished command left: exit code (or signal) and captured output.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmd: String,
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "expected success: {self}");
        self
    }

    #[track_caller]
    pub fn assert_fail(&self) -> &Self {
        assert!(self.code.is_some() && !self.ok(), "expected a non-zero exit: {self}");
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self}");
        self
    }

    /// stdout and stderr together (for messages that may land on either).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.cmd, self.code, self.signal, self.stdout, self.stderr
        )
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Wait for `child` with a bound; on timeout kill its process group and panic.
/// Runtime commands are spawned as process-group leaders (see [`spawn`]), so a hung
/// runtime and any forked helper that did not leave the group die together.
///
/// After three timeouts in one test binary the runtime is taken to be hung, and later
/// commands get at most 3 s, so a broken runtime fails the suite in minutes, not hours.
fn wait_bounded(child: &mut std::process::Child, what: &str, timeout: Duration) -> ExitStatus {
    static TIMEOUTS: AtomicUsize = AtomicUsize::new(0);
    let timeout = if TIMEOUTS.load(Ordering::Relaxed) >= 3 {
        timeout.min(Duration::from_secs(3))
    } else {
        timeout
    };
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st,
            Ok(None) => {}
            Err(e) => panic!("waiting for `{what}`: {e}"),
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) of the process group this child leads.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            panic!("`{what}` did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Spawn `cmd` as the leader of a new process group (as conmon does with setsid).
fn spawn(mut cmd: Command) -> (std::process::Child, String) {
    cmd.process_group(0);
    let what = describe(&cmd);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning `{what}`: {e}"));
    (child, what)
}

fn read_all(f: &mut File) -> String {
    f.seek(SeekFrom::Start(0)).expect("seek capture file");
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).expect("read capture file");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run `cmd` with stdin = /dev/null and stdout/stderr captured in anonymous files
/// (never pipes: a runtime that leaves a process behind holding a pipe would block
/// the reader forever). `fds` are passed to the child as fds 3, 4, ...
pub fn run_captured(cmd: Command, fds: &[RawFd]) -> Output {
    run_captured_stdin(cmd, fds, Stdio::null())
}

/// [`run_captured`] with `input` as the command's stdin (from a file, not a pipe).
pub fn run_captured_input(cmd: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut f = tempfile::tempfile().expect("stdin file");
    f.write_all(input).expect("write stdin file");
    f.seek(SeekFrom::Start(0)).expect("seek stdin file");
    run_captured_stdin(cmd, &[], Stdio::from(f))
}

fn run_captured_stdin(mut cmd: Command, fds: &[RawFd], stdin: Stdio) -> Output {
    let mut out = tempfile::tempfile().expect("capture file");
    let mut err = tempfile::tempfile().expect("capture file");
    cmd.stdin(stdin)
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"));
    let dups = pass_fds(&mut cmd, fds);
    // dropping the Command inside spawn() closes our copies of the child's stdio
    let (mut child, what) = spawn(cmd);
    drop(dups);
    let st = wait_bounded(&mut child, &what, cmd_timeout());
    Output {
        cmd: what,
        code: st.code(),
        signal: st.signal(),
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
    }
}

/// Arrange for `fds[i]` to be the child's fd `3 + i`, without close-on-exec.
/// Returns the parent's temporary duplicates, to be dropped after the spawn.
fn pass_fds(cmd: &mut Command, fds: &[RawFd]) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if fds.is_empty() {
        return Vec::new();
    }
    // Duplicate the sources far above the target range in the parent (close-on-exec),
    // so the child only has to dup2 them down: no allocation after fork, and no
    // source can be clobbered by an earlier dup2.
    let floor = 100 + fds.len() as RawFd;
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|&fd| {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new fd we then own.
            let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
            assert!(d >= 0, "dup fd {fd}: {}", std::io::Error::last_os_error());
            // SAFETY: d is a fresh, valid fd owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(d) }
        })
        .collect();
    let raw: Vec<RawFd> = high.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure only calls dup2, which is async-signal-safe, and touches
    // no allocator.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &h) in raw.iter().enumerate() {
                if libc::dup2(h, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    high
}

/// `<runtime> args...` with captured output and a time bound.
pub fn rt(args: &[&str]) -> Output {
    let mut cmd = Command::new(check_runtime());
    cmd.args(args);
    run_captured(cmd, &[])
}

// ---------------------------------------------------------------------------------
// Waiting

/// Poll `cond` until it holds; panic with `what` after `timeout`.
#[track_caller]
pub fn wait_for_timeout(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(2);
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

/// Poll `cond` until it holds, for at most [`WAIT_TIMEOUT`].
#[track_caller]
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_for_timeout(what, WAIT_TIMEOUT, cond)
}

/// Wait for a file to exist.
#[track_caller]
pub fn wait_for_file(path: &Path) {
    wait_for(&format!("{} to appear", path.display()), || path.exists())
}

/// Wait for a file to contain `needle`; returns the contents.
#[track_caller]
pub fn wait_for_content(path: &Path, needle: &str) -> String {
    let mut last = String::new();
    wait_for(&format!("{} to contain {needle:?}", path.display()), || {
        last = fs::read_to_string(path).unwrap_or_default();
        last.contains(needle)
    });
    last
}

// ---------------------------------------------------------------------------------
// Small parsers

/// Top-level keys of a JSON object, in document order (serde_json's `Value` sorts
/// them, so order has to be read from the text).
pub fn json_keys_in_order(text: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    struct KeysVisitor;
    impl<'de> Visitor<'de> for KeysVisitor {
        type Value = Keys;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(k);
            }
            Ok(Keys(keys))
        }
    }
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(KeysVisitor)
        }
    }
    serde_json::from_str::<Keys>(text)
        .unwrap_or_else(|e| panic!("not a JSON object ({e}): {text}"))
        .0
}

/// Value of a `Key:\tvalue` line of a /proc/PID/status dump (whitespace-trimmed).
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Is `s` an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`)?
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] | [b'z'] => true,
        [s, h1, h2, b':', m1, m2] if (*s == b'+' || *s == b'-') => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// The namespace link of `pid` ("net:[4026531840]"), "self" allowed.
pub fn ns_link(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn proc_is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.chars().next()
        })
        .is_some_and(|c| c == 'Z' || c == 'X')
}

// ---------------------------------------------------------------------------------
// Bundle

/// The config `runc spec` writes (runc 1.1.5), with the deviations the suite needs:
/// `root.path` is the absolute shared rootfs, `process.terminal` is false, and a
/// cgroup namespace is added (newer `runc spec` versions add it too).
pub fn base_config(rootfs: &Path) -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [
                { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }
            ],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs.to_string_lossy(), "readonly": true },
        "hostname": "runc",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
                { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A bundle directory (a tempdir) plus its config, which tests edit as JSON before
/// the container is created. The config is written when the container is created.
pub struct Bundle {
    dir: TempDir,
    pub config: Value,
    raw: Option<String>,
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

impl Bundle {
    /// A bundle with [`base_config`] on the shared rootfs, running `sh`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("amber-it-bundle.")
            .tempdir()
            .expect("bundle tempdir");
        Bundle {
            dir,
            config: base_config(&rootfs()),
            raw: None,
        }
    }

    /// A bundle whose process is `sh -c script`.
    pub fn sh(script: &str) -> Self {
        let mut b = Self::new();
        b.args(&["sh", "-c", script]);
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> String {
        self.path().to_string_lossy().into_owned()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// `config.process` (an object).
    pub fn process(&mut self) -> &mut Value {
        &mut self.config["process"]
    }

    /// `config.linux` (an object).
    pub fn linux(&mut self) -> &mut Value {
        &mut self.config["linux"]
    }

    /// Set the value at a JSON pointer (`/process/user/umask`), creating objects on
    /// the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        for part in pointer.trim_start_matches('/').split('/') {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(part.to_string())
                .or_insert(Value::Null);
        }
        *cur = value;
        self
    }

    /// Remove the key at a JSON pointer, if present.
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer with a '/'");
        if let Some(obj) = self.config.pointer_mut(parent).and_then(Value::as_object_mut) {
            obj.remove(key);
        }
        self
    }

    pub fn env(&mut self, var: &str) -> &mut Self {
        self.config["process"]["env"]
            .as_array_mut()
            .expect("process.env is an array")
            .push(json!(var));
        self
    }

    pub fn add_mount(&mut self, destination: &str, typ: &str, source: &str, options: &[&str]) -> &mut Self {
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts is an array")
            .push(json!({
                "destination": destination,
                "type": typ,
                "source": source,
                "options": options,
            }));
        self
    }

    /// A writable tmpfs at `destination` (which must exist in the rootfs or lie under
    /// an earlier tmpfs).
    pub fn tmpfs(&mut self, destination: &str) -> &mut Self {
        self.add_mount(
            destination,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777", "size=4m"],
        )
    }

    /// A bind mount of a host path.
    pub fn bind(&mut self, source: &Path, destination: &str, options: &[&str]) -> &mut Self {
        let mut opts = vec!["rbind"];
        opts.extend_from_slice(options);
        self.add_mount(destination, "bind", &source.to_string_lossy(), &opts)
    }

    /// Make a host directory under /tmp visible at the same path in the container
    /// (a tmpfs over the container's /tmp, then a rw bind), e.g. for hooks that run in
    /// the container and write to a host file.
    pub fn share_host_dir(&mut self, host_dir: &Path) -> &mut Self {
        assert!(
            host_dir.starts_with("/tmp/"),
            "share_host_dir needs a dir under /tmp, got {}",
            host_dir.display()
        );
        if !self.config["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["destination"] == "/tmp")
        {
            self.tmpfs("/tmp");
        }
        let dest = host_dir.to_string_lossy().into_owned();
        self.bind(host_dir, &dest, &["rw"])
    }

    fn namespaces(&mut self) -> &mut Vec<Value> {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("linux.namespaces is an array")
    }

    /// Add (or replace) a namespace entry; `path` joins an existing namespace.
    pub fn namespace(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(typ);
        let entry = match path {
            Some(p) => json!({ "type": typ, "path": p }),
            None => json!({ "type": typ }),
        };
        self.namespaces().push(entry);
        self
    }

    pub fn remove_namespace(&mut self, typ: &str) -> &mut Self {
        self.namespaces().retain(|n| n["type"] != typ);
        self
    }

    /// Write this text as config.json instead of the JSON value (for broken configs).
    pub fn set_raw_config(&mut self, text: &str) -> &mut Self {
        self.raw = Some(text.to_string());
        self
    }

    /// Write config.json.
    pub fn write(&self) {
        let text = match &self.raw {
            Some(t) => t.clone(),
            None => serde_json::to_string_pretty(&self.config).expect("serialize config"),
        };
        fs::write(self.config_path(), text).expect("write config.json");
    }

    /// The configured cgroupsPath, if any.
    pub fn cgroups_path(&self) -> Option<String> {
        self.config["linux"]["cgroupsPath"].as_str().map(str::to_string)
    }
}

// ---------------------------------------------------------------------------------
// Container

/// A container under test: its id, its own `--root`, its bundle and the files that
/// receive the container's stdout/stderr. Dropping it force-deletes the container and
/// fails the test if anything was left behind.
pub struct Container {
    pub id: String,
    pub bundle: Bundle,
    root: TempDir,
    work: TempDir,
    pids: RefCell<Vec<(i32, Option<u64>)>>,
}

impl Container {
    /// A new container guard with a unique id derived from `name`. Unless the test set
    /// one, `linux.cgroupsPath` becomes `/<id>`, so the runtime's cgroups sit at a
    /// known, unique place.
    pub fn new(name: &str, mut bundle: Bundle) -> Self {
        let id = unique_id(name);
        if bundle.raw.is_none() && bundle.config["linux"].is_object() && bundle.cgroups_path().is_none() {
            bundle.config["linux"]["cgroupsPath"] = json!(format!("/{id}"));
        }
        let root = tempfile::Builder::new()
            .prefix("amber-it-root.")
            .tempdir()
            .expect("root tempdir");
        let work = tempfile::Builder::new()
            .prefix("amber-it-work.")
            .tempdir()
            .expect("work tempdir");
        Container {
            id,
            bundle,
            root,
            work,
            pids: RefCell::new(Vec::new()),
        }
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn root_str(&self) -> String {
        self.root().to_string_lossy().into_owned()
    }

    /// `<root>/<id>`, the runtime's state dir for this container.
    pub fn state_dir(&self) -> PathBuf {
        self.root().join(&self.id)
    }

    /// A scratch directory private to this test (outside the container).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The pid file passed to `create`/`run`.
    pub fn pid_file(&self) -> PathBuf {
        self.work_dir().join("container.pid")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.work_dir().join("stdout")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.work_dir().join("stderr")
    }

    /// What the container (and the runtime, during create/run) wrote to stdout.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.stdout_path()).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn console(&self, path: PathBuf) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    /// A command `<runtime> --root <root> args...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(check_runtime());
        cmd.arg("--root").arg(self.root()).args(args);
        cmd
    }

    /// Run `<runtime> --root <root> args...` with output captured in private files.
    pub fn rt(&self, args: &[&str]) -> Output {
        run_captured(self.command(args), &[])
    }

    /// Run a command whose stdout/stderr are the container's console files (the
    /// runtime hands its stdio to the container). Returns the command's exit status
    /// and the console contents at that point.
    pub fn run_console(&self, mut cmd: Command, fds: &[RawFd]) -> Output {
        cmd.stdin(Stdio::null())
            .stdout(self.console(self.stdout_path()))
            .stderr(self.console(self.stderr_path()));
        let dups = pass_fds(&mut cmd, fds);
        let (mut child, what) = spawn(cmd);
        drop(dups);
        let st = wait_bounded(&mut child, &what, cmd_timeout());
        let out = Output {
            cmd: what,
            code: st.code(),
            signal: st.signal(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        };
        self.note_pid_file();
        out
    }

    /// Write config.json and run `<global...> create --bundle B --pid-file P <extra...> ID`.
    pub fn create_with(&self, global: &[&str], extra: &[&str]) -> Output {
        self.bundle.write();
        let pid_file = self.pid_file().to_string_lossy().into_owned();
        let bundle = self.bundle.path_str();
        let mut args: Vec<&str> = global.to_vec();
        args.extend(["create", "--bundle", &bundle, "--pid-file", &pid_file]);
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.run_console(self.command(&args), &[])
    }

    /// `create`; the result is not checked (see [`Container::create_ok`]).
    pub fn create(&self) -> Output {
        self.create_with(&[], &[])
    }

    #[track_caller]
    pub fn create_ok(&self) -> &Self {
        self.create().assert_ok();
        self
    }

    pub fn start(&self) -> Output {
        self.rt(&["start", &self.id])
    }

    #[track_caller]
    pub fn start_ok(&self) -> &Self {
        self.start().assert_ok();
        self
    }

    /// Foreground `run --bundle B --pid-file P <extra...> ID`: returns the container's
    /// exit code; stdout/stderr hold what it printed.
    pub fn run_with(&self, extra: &[&str], fds: &[RawFd]) -> Output {
        self.run_console(self.run_command(extra), fds)
    }

    /// Write config.json and build (not spawn) `run --bundle B --pid-file P <extra...> ID`.
    pub fn run_command(&self, extra: &[&str]) -> Command {
        self.bundle.write();
        let pid_file = self.pid_file().to_string_lossy().into_owned();
        let bundle = self.bundle.path_str();
        let mut args = vec!["run", "--bundle", &bundle, "--pid-file", &pid_file];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.command(&args)
    }

    pub fn run_foreground(&self) -> Output {
        self.run_with(&[], &[])
    }

    /// Run in the foreground and require exit 0; returns the container's stdout.
    #[track_caller]
    pub fn run_ok(&self) -> String {
        let out = self.run_foreground();
        out.assert_ok();
        out.stdout
    }

    pub fn state(&self) -> Output {
        let out = self.rt(&["state", &self.id]);
        if out.ok() {
            if let Ok(v) = serde_json::from_str::<Value>(&out.stdout) {
                if let Some(pid) = v["pid"].as_i64().filter(|p| *p > 0) {
                    self.note_pid(pid as i32);
                }
            }
        }
        out
    }

    /// Parsed `state`; panics if `state` fails.
    #[track_caller]
    pub fn state_json(&self) -> Value {
        let out = self.state();
        out.assert_ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state output is not JSON ({e}): {out}"))
    }

    /// `status` from `state`, or None if `state` fails.
    pub fn status(&self) -> Option<String> {
        let out = self.state();
        if !out.ok() {
            return None;
        }
        serde_json::from_str::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string))
    }

    /// The init pid reported by `state`.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let v = self.state_json();
        v["pid"].as_i64().expect("state has a numeric pid") as i32
    }

    /// Wait until `state` reports `status`.
    #[track_caller]
    pub fn wait_status(&self, status: &str) {
        let mut last = None;
        wait_for(&format!("container {} to be {status}", self.id), || {
            last = self.status();
            last.as_deref() == Some(status)
        });
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.rt(&["kill", &self.id, signal])
    }

    pub fn delete(&self, force: bool) -> Output {
        if force {
            self.rt(&["delete", "--force", &self.id])
        } else {
            self.rt(&["delete", &self.id])
        }
    }

    fn note_pid_file(&self) {
        if let Ok(s) = fs::read_to_string(self.pid_file()) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                self.note_pid(pid);
            }
        }
    }

    /// Remember a pid of this container so the drop check can tell whether it is still
    /// alive (matching start time, to be safe against pid reuse).
    pub fn note_pid(&self, pid: i32) {
        let mut pids = self.pids.borrow_mut();
        if pid > 0 && !pids.iter().any(|(p, _)| *p == pid) {
            pids.push((pid, proc_start_time(pid)));
        }
    }

    /// Problems left behind for this container (empty when clean). Also removes them.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        // 1. processes we know of
        for &(pid, start) in self.pids.borrow().iter() {
            if start.is_some() && proc_start_time(pid) == start && !proc_is_zombie(pid) {
                found.push(format!("process {pid} still alive"));
                // SAFETY: plain kill(2) of a pid we verified by start time.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        // 2. cgroup directories
        let mut names = vec![self.id.clone()];
        if let Some(p) = self.bundle.cgroups_path() {
            if let Some(last) = p.trim_end_matches('/').rsplit(['/', ':']).next() {
                if !last.is_empty() && !names.iter().any(|n| n == last) {
                    names.push(last.to_string());
                }
            }
        }
        for dir in find_cgroup_dirs(&names) {
            found.push(format!("cgroup {} left behind", dir.display()));
            remove_cgroup(&dir);
        }
        // 3. state dir
        let sd = self.state_dir();
        if sd.exists() {
            found.push(format!("state dir {} left behind", sd.display()));
            let _ = fs::remove_dir_all(&sd);
        }
        // 4. host mounts naming the container or its bundle
        let bundle = self.bundle.path_str();
        if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
            for l in mi.lines() {
                if l.contains(&self.id) || l.contains(&bundle) {
                    found.push(format!("mount left behind: {l}"));
                }
            }
        }
        found
    }
}

/// Directories anywhere under /sys/fs/cgroup (a few levels deep) named like one of
/// `names`.
pub fn find_cgroup_dirs(names: &[String]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, names: &[String], out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let p = e.path();
            if names.iter().any(|n| e.file_name().to_string_lossy() == n.as_str()) {
                out.push(p);
            } else if depth > 0 {
                walk(&p, depth - 1, names, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 5, names, &mut out);
    out
}

fn remove_cgroup(dir: &Path) {
    // children first
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2) of a process inside the leaked test cgroup.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        // a frozen v1 cgroup must be thawed for SIGKILL to be delivered
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Always: what an engine does on cleanup.
        let del = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.rt(&["delete", "--force", &self.id])
        }));
        let mut problems = Vec::new();
        match del {
            Ok(out) if !out.ok() => problems.push(format!("cleanup delete failed: {out}")),
            Ok(_) => {}
            Err(_) => problems.push("cleanup delete panicked".to_string()),
        }
        problems.extend(self.leftovers());
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("container {} was not cleaned up:\n  {}", self.id, problems.join("\n  "));
        }
    }
}

/// Keep a file open so its fd can be passed with `--preserve-fds`.
pub fn raw_fd(f: &File) -> RawFd {
    f.as_raw_fd()
}

// ---------------------------------------------------------------------------------
// Engines

/// Helpers for the engine suites (`tests/podman.rs`, `tests/containerd.rs`), which drive the
/// runtime under test through real podman and containerd: installing the engines, private
/// directories that a later run sweeps if this one died, finding and removing mounts,
/// cgroups and processes left behind, the test image, and commands fed from stdin or run on
/// a terminal. Nothing here touches system-wide engine state.
pub mod engines {
    use super::{describe, proc_start_time, read_all, remove_cgroup, repo_root, spawn, Output};
    use std::ffi::CString;
    use std::fs;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    use tempfile::TempDir;

    /// Write a line straight to fd 2, past the test harness's output capture, so that a skip
    /// reason shows in `cargo test` output even for a passing test.
    /// The end of an engine world's Drop: teardown problems fail the test, or are only printed
    /// (after the trace of what the engine ran) when the test is already failing.
    pub fn finish_teardown(engine: &str, traced: bool, trace: &str, problems: Vec<String>) {
        if std::thread::panicking() && traced {
            say(&format!("test failed; {}", trace.trim_start()));
        }
        if problems.is_empty() {
            return;
        }
        let msg = format!("{engine} teardown:\n  {}{trace}", problems.join("\n  "));
        if std::thread::panicking() {
            say(&msg);
        } else {
            panic!("{msg}");
        }
    }

    /// Terminal output with \r\n line ends made plain.
    pub fn crlf(s: &str) -> String {
        s.replace("\r\n", "\n")
    }

    pub fn say(msg: &str) {
        let line = format!("{msg}\n");
        // SAFETY: write(2) of a valid buffer to fd 2.
        unsafe {
            libc::write(2, line.as_ptr().cast(), line.len());
        }
    }

    fn is_executable(p: &Path) -> bool {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    /// `prog` in `$PATH` (plus the sbin dirs, which a non-login root environment may lack).
    pub fn which(prog: &str) -> Option<PathBuf> {
        let path = std::env::var("PATH").unwrap_or_default();
        let found = path
            .split(':')
            .chain([
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ])
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(prog))
            .find(|p| is_executable(p));
        found
    }

    /// Make sure all of `progs` are installed, running `scripts/engines-setup.sh` (at most once
    /// per test process) when one is missing. `Err` says why they cannot be had; the suite then
    /// skips, which is the only reason an engine suite may skip.
    pub fn ensure_installed(progs: &[&str]) -> Result<(), String> {
        static SETUP: Mutex<Option<bool>> = Mutex::new(None);
        let missing = || progs.iter().filter(|p| which(p).is_none()).copied().collect::<Vec<_>>();
        if missing().is_empty() {
            return Ok(());
        }
        let mut ran = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        if ran.is_none() {
            let script = repo_root().join("scripts/engines-setup.sh");
            say(&format!(
                "engines: {} missing, running {}",
                missing().join(", "),
                script.display()
            ));
            let st = Command::new("sh")
                .arg(&script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
            *ran = Some(matches!(st, Ok(s) if s.success()));
        }
        let still = missing();
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} not installed, and scripts/engines-setup.sh {}",
                still.join(", "),
                if *ran == Some(true) {
                    "did not install it"
                } else {
                    "failed (no package registry?)"
                }
            ))
        }
    }

    /// The hard limit of `nofile` or `nproc` for this process (`ulimit -Hn` / `ulimit -Hu`).
    pub fn hard_limit(which: &str) -> u64 {
        let res = match which {
            "nofile" => libc::RLIMIT_NOFILE,
            "nproc" => libc::RLIMIT_NPROC,
            other => panic!("hard_limit: unknown resource {other}"),
        };
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) into a valid struct.
        assert_eq!(unsafe { libc::getrlimit(res, &mut r) }, 0, "getrlimit");
        r.rlim_max
    }

    /// Does this process have `cap` (a capability number) in its effective set?
    pub fn has_effective_cap(cap: u32) -> bool {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        super::status_field(&status, "CapEff")
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .is_some_and(|bits| bits & (1u64 << cap) != 0)
    }

    // ------------------------------------------------------------------
    // Private directories, swept when their owner died

    /// A private directory `/tmp/<prefix>.XXXXXX` for one engine environment. It records its
    /// owner (pid and start time) so that [`sweep_stale`] in a later run can clean it up if this
    /// process was killed before its teardown ran. Name `prefix` `amber-it-...` so that
    /// `scripts/check-clean.sh` also notices what is left below it.
    pub fn private_dir(prefix: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}."))
            .tempdir_in("/tmp")
            .expect("private tempdir");
        let me = std::process::id() as i32;
        let start = proc_start_time(me).unwrap_or(0);
        fs::write(dir.path().join("owner"), format!("{me} {start}\n")).expect("write owner file");
        dir
    }

    /// Record a cgroup (relative to the hierarchy roots) that belongs to the environment in
    /// `dir`, for [`sweep_stale`].
    pub fn note_cgroup(dir: &Path, rel: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("cgroups"))
            .expect("open cgroups note");
        writeln!(f, "{rel}").expect("write cgroups note");
    }

    fn owner_alive(dir: &Path) -> bool {
        let Ok(s) = fs::read_to_string(dir.join("owner")) else {
            // being created right now, or not one of ours
            return true;
        };
        let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(pid), Some(start)) => proc_start_time(pid as i32) == Some(start),
            _ => true,
        }
    }

    /// Clean up the environments `/tmp/<prefix>.*` whose owning test process is gone: kill the
    /// processes naming the directory (daemons, shims, conmon), unmount what is mounted below
    /// it, remove the cgroups it noted, and delete it. Returns what was swept.
    pub fn sweep_stale(prefix: &str) -> Vec<PathBuf> {
        let mut swept = Vec::new();
        let Ok(rd) = fs::read_dir("/tmp") else { return swept };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&format!("{prefix}.")) {
                continue;
            }
            let dir = e.path();
            if owner_alive(&dir) {
                continue;
            }
            say(&format!(
                "engines: sweeping {} left by a test run that died",
                dir.display()
            ));
            kill_procs_mentioning(&dir.to_string_lossy());
            umount_under(&dir);
            for rel in fs::read_to_string(dir.join("cgroups")).unwrap_or_default().lines() {
                for cg in cgroup_dirs(rel) {
                    remove_cgroup(&cg);
                }
            }
            let _ = fs::remove_dir_all(&dir);
            swept.push(dir);
        }
        swept
    }

    // ------------------------------------------------------------------
    // Mounts

    fn unescape_mountinfo(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
                out.push(v);
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// (mount point, fstype, super options) of every mount in this process's mount namespace.
    pub fn mounts() -> Vec<(PathBuf, String, String)> {
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        mi.lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mp = pre.split(' ').nth(4)?;
                let mut post = post.split(' ');
                let fstype = post.next()?.to_string();
                let _source = post.next();
                let sopts = post.next().unwrap_or("").to_string();
                Some((PathBuf::from(unescape_mountinfo(mp)), fstype, sopts))
            })
            .collect()
    }

    /// Mount points at or below `dir`, deepest first.
    pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = mounts()
            .into_iter()
            .map(|m| m.0)
            .filter(|p| p.starts_with(dir))
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v.dedup();
        v
    }

    /// Lazily unmount everything at or below `dir`; returns what was mounted there.
    pub fn umount_under(dir: &Path) -> Vec<PathBuf> {
        let found = mounts_under(dir);
        for _ in 0..10 {
            let now = mounts_under(dir);
            if now.is_empty() {
                break;
            }
            for p in now {
                if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
                    // SAFETY: umount2(2) of a NUL-terminated path.
                    unsafe {
                        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                    }
                }
            }
        }
        found
    }

    // ------------------------------------------------------------------
    // Cgroups

    /// `rel` (a cgroup path such as `/amber-it-pm-12-0`) in every mounted cgroup hierarchy
    /// (v1 controllers, named hierarchies, and the v2 tree) where it exists.
    pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
        let rel = rel.trim_start_matches('/');
        let mut out: Vec<PathBuf> = mounts()
            .into_iter()
            .filter(|(_, t, _)| t == "cgroup" || t == "cgroup2")
            .map(|(mp, _, _)| mp.join(rel))
            .filter(|p| p.is_dir())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The cgroup directory of `pid` for a v1 `controller` (e.g. "memory"), or its v2 cgroup
    /// when that controller is not on a v1 hierarchy.
    pub fn cgroup_dir_of(pid: i32, controller: &str) -> Option<PathBuf> {
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let ms = mounts();
        for line in cg.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            if !ctrls.is_empty() && ctrls.split(',').any(|c| c == controller) {
                let mp = ms
                    .iter()
                    .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == controller))?;
                return Some(mp.0.join(path.trim_start_matches('/')));
            }
        }
        let v2 = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
        let mp = ms.iter().find(|(_, t, _)| t == "cgroup2")?;
        Some(mp.0.join(v2.trim_start_matches('/')))
    }

    /// Is the v1 `controller` mounted (false on a pure cgroup v2 host)?
    pub fn cgroup_v1_has(controller: &str) -> bool {
        mounts()
            .iter()
            .any(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == controller))
    }

    /// Directories at and below `dir`, deepest first.
    pub fn cgroup_tree(dir: &Path) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = fs::read_dir(d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), out);
                    }
                }
            }
            out.push(d.to_path_buf());
        }
        let mut out = Vec::new();
        if dir.is_dir() {
            walk(dir, &mut out);
        }
        out
    }

    /// Remove `rel` and everything below it in every hierarchy (killing what is inside).
    pub fn remove_cgroups(rel: &str) {
        for d in cgroup_dirs(rel) {
            remove_cgroup(&d);
        }
    }

    // ------------------------------------------------------------------
    // Processes

    /// (pid, command line) of the live processes whose command line contains `needle`.
    pub fn procs_mentioning(needle: &str) -> Vec<(i32, String)> {
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir("/proc") else { return out };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ").trim_end().to_string();
            if cmdline.contains(needle) {
                out.push((pid, cmdline));
            }
        }
        out
    }

    /// Wait up to `timeout` for the processes naming `needle` to exit by themselves; returns
    /// those still alive then.
    pub fn wait_procs_gone(needle: &str, timeout: Duration) -> Vec<(i32, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = procs_mentioning(needle);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the processes naming `needle` and wait (bounded) for them to go; returns what
    /// was found alive.
    pub fn kill_procs_mentioning(needle: &str) -> Vec<(i32, String)> {
        let found = procs_mentioning(needle);
        for &(pid, _) in &found {
            // SAFETY: kill(2) of a process we just found by its command line.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        wait_procs_gone(needle, Duration::from_secs(5));
        found
    }

    /// Is `pid` alive (and not a zombie)?
    pub fn pid_alive(pid: i32) -> bool {
        pid > 0 && proc_start_time(pid).is_some() && !super::proc_is_zombie(pid)
    }

    // ------------------------------------------------------------------
    // Commands

    /// A bounded run that never panics (for teardown code, which may run while unwinding):
    /// `None` if the command could not be spawned or was killed after `timeout`.
    pub fn run_quiet(mut cmd: Command, timeout: Duration) -> Option<Output> {
        let mut out = tempfile::tempfile().ok()?;
        let mut err = tempfile::tempfile().ok()?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().ok()?)
            .stderr(err.try_clone().ok()?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let what = describe(&cmd);
        let mut child = cmd.spawn().ok()?;
        drop(cmd);
        let deadline = Instant::now() + timeout;
        let st = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    // SAFETY: kill(2) of the process group this child leads.
                    unsafe {
                        libc::kill(-(child.id() as i32), libc::SIGKILL);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        };
        Some(Output {
            cmd: what,
            code: st.code(),
            signal: st.signal(),
            stdout: read_all(&mut out),
            stderr: read_all(&mut err),
        })
    }

    /// Like [`super::run_captured`], with `input` (read to EOF) as the command's stdin.
    pub fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
        let mut inp = tempfile::tempfile().expect("stdin file");
        inp.write_all(input).expect("write stdin file");
        inp.seek(SeekFrom::Start(0)).expect("seek stdin file");
        let mut out = tempfile::tempfile().expect("capture file");
        let mut err = tempfile::tempfile().expect("capture file");
        cmd.stdin(inp)
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"));
        let (mut child, what) = spawn(cmd);
        let st = super::wait_bounded(&mut child, &what, super::cmd_timeout());
        Output {
            cmd: what,
            code: st.code(),
            signal: st.signal(),
            stdout: read_all(&mut out),
            stderr: read_all(&mut err),
        }
    }

    /// Quote `s` for `sh`.
    pub fn shell_quote(s: &str) -> String {
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    }

    /// `cmd` run on a terminal: `script -qec '<cmd>' /dev/null` (util-linux), so the program
    /// gets a pty as stdin/stdout/stderr; `script` exits with the program's status. The
    /// environment and cwd set on `cmd` carry over. Output lines end in CRLF.
    pub fn on_tty(cmd: &Command) -> Command {
        let mut line = shell_quote(&cmd.get_program().to_string_lossy());
        for a in cmd.get_args() {
            line.push(' ');
            line.push_str(&shell_quote(&a.to_string_lossy()));
        }
        let mut t = Command::new("script");
        t.args(["-qec", &line, "/dev/null"]);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => t.env(k, v),
                None => t.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            t.current_dir(d);
        }
        t
    }

    /// A shell script `<dir>/<file name of runtime>` that appends its argv (one line, after
    /// its cwd) to `log` and execs `runtime`. Engines decide JSON logging etc. by the file
    /// name, which the wrapper keeps. Used when `AMBER_ENGINE_TRACE=1`.
    pub fn logging_wrapper(dir: &Path, runtime: &Path, log: &Path) -> PathBuf {
        let name = runtime.file_name().expect("runtime has a file name");
        fs::create_dir_all(dir).expect("wrapper dir");
        let path = dir.join(name);
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"cwd=$(pwd) argv: $*\" >> {}\nexec {} \"$@\"\n",
            shell_quote(&log.to_string_lossy()),
            shell_quote(&runtime.to_string_lossy())
        );
        fs::write(&path, script).expect("write wrapper");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        path
    }

    /// `AMBER_ENGINE_TRACE=1`: put a [`logging_wrapper`] between the engine and the runtime.
    pub fn trace_enabled() -> bool {
        std::env::var("AMBER_ENGINE_TRACE").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
    }

    // ------------------------------------------------------------------
    // Images

    fn sha256_file(p: &Path) -> String {
        let out = Command::new("sha256sum").arg(p).output().expect("run sha256sum");
        assert!(out.status.success(), "sha256sum {} failed", p.display());
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("sha256sum output")
            .to_string()
    }

    /// A tar of the shared test rootfs (for `podman import`), numeric root ownership.
    pub fn rootfs_tar(dest: &Path) {
        let st = Command::new("tar")
            .arg("-C")
            .arg(super::rootfs())
            .args(["--numeric-owner", "--owner=0", "--group=0", "--exclude=./.stamp", "-cf"])
            .arg(dest)
            .arg(".")
            .stdin(Stdio::null())
            .status()
            .expect("run tar");
        assert!(st.success(), "tar of the rootfs failed");
    }

    fn go_arch() -> &'static str {
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        }
    }

    /// An OCI image-layout archive of the shared test rootfs, built by hand (one uncompressed
    /// layer, `Cmd=["/bin/sh"]`), named `name` through the `io.containerd.image.name`
    /// annotation, for `ctr image import`.
    pub fn oci_archive(dest: &Path, name: &str) {
        let work = tempfile::Builder::new()
            .prefix("amber-it-oci.")
            .tempdir()
            .expect("oci tempdir");
        let layout = work.path().join("layout");
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).expect("blobs dir");
        let add_blob = |path: &Path| -> (String, u64) {
            let digest = sha256_file(path);
            let size = fs::metadata(path).expect("blob size").len();
            fs::rename(path, blobs.join(&digest)).expect("move blob");
            (format!("sha256:{digest}"), size)
        };
        let layer = work.path().join("layer.tar");
        rootfs_tar(&layer);
        let (layer_digest, layer_size) = add_blob(&layer);
        let config = serde_json::json!({
            "architecture": go_arch(),
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"]
            },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] }
        });
        let config_path = work.path().join("config.json");
        fs::write(&config_path, config.to_string()).expect("write image config");
        let (config_digest, config_size) = add_blob(&config_path);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size
            }]
        });
        let manifest_path = work.path().join("manifest.json");
        fs::write(&manifest_path, manifest.to_string()).expect("write manifest");
        let (manifest_digest, manifest_size) = add_blob(&manifest_path);
        let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": { "architecture": go_arch(), "os": "linux" },
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag
                }
            }]
        });
        fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
        fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .args(["--numeric-owner", "-cf"])
            .arg(dest)
            .arg(".")
            .stdin(Stdio::null())
            .status()
            .expect("run tar");
        assert!(st.success(), "tar of the OCI layout failed");
    }
}

// ---------------------------------------------------------------------------------
// Background commands and process helpers

/// A command running in the background (its own process group, stdin = /dev/null,
/// stdout/stderr captured in anonymous files), for runtime invocations a test has to
/// act on while they run (`exec --ignore-paused` into a frozen cgroup, an outer
/// `unshare` shell). Dropping it unfinished SIGKILLs its process group.
pub struct Background {
    child: std::process::Child,
    what: String,
    out: File,
    err: File,
    done: Option<Output>,
}

impl Background {
    /// Spawn `cmd` (stdin /dev/null; stdout/stderr captured).
    pub fn spawn(cmd: Command) -> Self {
        Self::spawn_with_fds(cmd, &[])
    }

    /// Like [`Background::spawn`], passing `fds[i]` as the child's fd `3 + i`.
    pub fn spawn_with_fds(mut cmd: Command, fds: &[RawFd]) -> Self {
        let out = tempfile::tempfile().expect("capture file");
        let err = tempfile::tempfile().expect("capture file");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"));
        let dups = pass_fds(&mut cmd, fds);
        let (child, what) = spawn(cmd);
        drop(dups);
        Background {
            child,
            what,
            out,
            err,
            done: None,
        }
    }

    /// The pid of the spawned command (also its process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&mut self) -> String {
        read_all(&mut self.out)
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&mut self) -> String {
        read_all(&mut self.err)
    }

    fn output(&mut self, st: ExitStatus) -> Output {
        Output {
            cmd: self.what.clone(),
            code: st.code(),
            signal: st.signal(),
            stdout: read_all(&mut self.out),
            stderr: read_all(&mut self.err),
        }
    }

    /// The result if it has finished (without waiting).
    pub fn try_finish(&mut self) -> Option<Output> {
        if self.done.is_none() {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                let out = self.output(st);
                self.done = Some(out);
            }
        }
        self.done.clone()
    }

    /// Wait (bounded by [`cmd_timeout`]; on timeout its process group is killed and
    /// the test fails).
    #[track_caller]
    pub fn wait(&mut self) -> Output {
        self.wait_timeout(cmd_timeout())
    }

    #[track_caller]
    pub fn wait_timeout(&mut self, timeout: Duration) -> Output {
        if let Some(o) = &self.done {
            return o.clone();
        }
        let what = self.what.clone();
        let st = wait_bounded(&mut self.child, &what, timeout);
        let out = self.output(st);
        self.done = Some(out.clone());
        out
    }

    /// SIGKILL the process group and reap the leader (no-op when finished).
    pub fn kill(&mut self) {
        if self.done.is_some() {
            return;
        }
        // SAFETY: kill(2) of the process group this child leads (it is unreaped, so
        // the group id cannot have been reused).
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
        }
        let _ = self.child.kill();
        if let Ok(st) = self.child.wait() {
            let out = self.output(st);
            self.done = Some(out);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Is `pid` alive (exists and is not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists() && !proc_is_zombie(pid)
}

/// The namespace links of `pid` ("self" allowed) by type, e.g. `"net" -> "net:[4026531840]"`.
pub fn ns_links(pid: &str) -> std::collections::BTreeMap<String, String> {
    let dir = format!("/proc/{pid}/ns");
    let mut out = std::collections::BTreeMap::new();
    for e in fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(target) = fs::read_link(e.path()) {
            out.insert(name, target.to_string_lossy().into_owned());
        }
    }
    out
}

/// The pids listed in `/proc/<pid>/task/*/children`, i.e. `pid`'s direct children.
pub fn child_pids(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// The `comm` of a process (empty if it is gone).
pub fn proc_comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Compile a small C program with `gcc -static -O1` into `dir/name` (once per call);
/// returns the binary's path. Panics with gcc's output when compilation fails.
pub fn compile_static_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    fs::write(&src, source).expect("write C source");
    let mut cmd = Command::new("gcc");
    cmd.args(["-static", "-O1", "-o"]).arg(&bin).arg(&src);
    let out = run_captured(cmd, &[]);
    assert!(out.ok(), "compiling {name}: {out}");
    bin
}

/// The process environment a container sees, in a form that two runtimes can be compared on
/// (see `tests/podman.rs` and `tests/containerd.rs`, which run it under runc and under the
/// runtime under test through the same engine and compare).
pub mod facts {
    /// A busybox `sh -c` script printing the container's credentials, capabilities, seccomp
    /// and no_new_privs state, env, rlimits, mounts (mount point, per-mount and fs options),
    /// devices, masked paths, cgroup membership and open fds.
    pub const SCRIPT: &str = r###"exec 2>&1
echo "## status"; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters|Uid|Gid|Groups):' /proc/self/status
echo "## id"; id; echo "umask $(umask)"; echo "cwd $(pwd)"
echo "## uid_map"; cat /proc/self/uid_map /proc/self/gid_map
echo "## env"; env | grep -vE '^(HOSTNAME|PWD|SHLVL|_)=' | sort
echo "## limits"; cat /proc/self/limits
echo "## oom_score_adj $(cat /proc/self/oom_score_adj)"
echo "## mounts"; awk '{ s = 0; for (i = 7; i <= NF; i++) if ($i == "-") { s = i; break }; o = $(s+3); if ($5 == "/") o = "-"; print $5, $6, $(s+1), o }' /proc/self/mountinfo | sort
echo "## devices"; for f in /dev/* /dev/pts/ptmx; do [ -c "$f" ] || [ -b "$f" ] && stat -c '%n %A %U %G %t:%T' "$f"; [ -L "$f" ] && echo "$f -> $(readlink "$f")"; done
echo "## masked"; for p in /proc/acpi /proc/asound /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list /proc/timer_stats /proc/sched_debug /proc/scsi /sys/firmware /sys/dev/block; do [ -e "$p" ] && stat -c '%n %F' "$p"; done
echo "## cgroup"; cat /proc/self/cgroup
echo "## fds"; ls /proc/self/fd | wc -l
echo "## sysctl"; cat /proc/sys/net/ipv4/ping_group_range
echo "## hostname $(hostname | wc -c)"
"###;

    /// `text` with each of `names` (container ids, names, cgroup parents) replaced by `<N>`,
    /// and 64-hex ids by `<ID>`, so two runs can be compared.
    pub fn normalize(text: &str, names: &[&str]) -> String {
        let mut t = text.replace("\r\n", "\n");
        let mut names: Vec<&str> = names.iter().copied().filter(|n| !n.is_empty()).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for n in names {
            t = t.replace(n, "<N>");
        }
        // 64-hex container ids
        let b = t.as_bytes();
        let mut out = String::with_capacity(t.len());
        let mut i = 0;
        while i < b.len() {
            if i + 64 <= b.len() && b[i..i + 64].iter().all(|c| c.is_ascii_hexdigit()) {
                out.push_str("<ID>");
                i += 64;
                while i < b.len() && b[i].is_ascii_hexdigit() {
                    i += 1;
                }
            } else {
                let ch = t[i..].chars().next().expect("char");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
        out
    }

    /// Lines only in `reference` and only in `tested` (as sets), or `None` when equal.
    pub fn diff(reference: &str, tested: &str) -> Option<String> {
        let a: Vec<&str> = reference.lines().collect();
        let b: Vec<&str> = tested.lines().collect();
        let only_a: Vec<&str> = a.iter().filter(|l| !b.contains(l)).copied().collect();
        let only_b: Vec<&str> = b.iter().filter(|l| !a.contains(l)).copied().collect();
        if only_a.is_empty() && only_b.is_empty() {
            return None;
        }
        let mut s = String::new();
        for l in only_a {
            s.push_str(&format!("- {l}\n"));
        }
        for l in only_b {
            s.push_str(&format!("+ {l}\n"));
        }
        Some(s)
    }
}

// ---------------------------------------------------------------------------------
// Security tests (tests/security.rs): private rootfs copies, hashes, leftover probes

impl Bundle {
    /// Give this bundle a private copy of the shared rootfs (`cp -a` into `<bundle>/rootfs`)
    /// and point `root.path` at it; returns the copy. For tests that plant symlinks or files
    /// in the rootfs (the shared one must never change). The copy is removed with the bundle.
    pub fn private_rootfs(&mut self) -> PathBuf {
        let dest = self.path().join("rootfs");
        let src = rootfs();
        let mut cmd = Command::new("cp");
        cmd.arg("-a").arg(&src).arg(&dest);
        let out = run_captured(cmd, &[]);
        assert!(out.ok(), "copying the rootfs: {out}");
        self.config["root"]["path"] = json!(dest.to_string_lossy());
        dest
    }
}

/// `sha256sum` of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = run_captured(cmd, &[]);
    assert!(out.ok(), "sha256sum {}: {out}", path.display());
    out.stdout.split_whitespace().next().unwrap_or_default().to_string()
}

/// Live (non-zombie) processes whose initial environment (`/proc/PID/environ`) holds
/// `var=value` exactly. A runtime's helper processes inherit the runtime's environment until
/// they exec the container process, so marking a runtime invocation with a unique variable
/// finds every process it left behind (e.g. after a failed create).
pub fn procs_with_env(var: &str, value: &str) -> Vec<i32> {
    let needle = format!("{var}={value}");
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || proc_is_zombie(pid) {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if raw.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Lines of the test process's (the host's) /proc/self/mountinfo that contain `needle`.
pub fn host_mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}
