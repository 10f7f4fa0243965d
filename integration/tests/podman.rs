//! podman 4.x (+ conmon) driving the runtime under test (`podman --runtime <runtime>`), as in
//! `shared/docs/ENGINE-CONTRACT.md` §1.
//!
//! Every test builds its own private podman world in `/tmp/amber-it-pm.XXXXXX`: a
//! `containers.conf` given through `CONTAINERS_CONF` (the runtime listed in
//! `runtime_supports_json`, cgroupfs, file events and locks, `default_ulimits` at or below
//! the hard limits, since the machine has no CAP_SYS_RESOURCE), a `storage.conf` with private
//! graph/run roots (overlay, or vfs when overlay does not work), and an image imported from a
//! tar of the shared test rootfs. Containers run with `--network none` under a private cgroup
//! parent `/amber-it-pm-<pid>-<n>`. The teardown removes every container and image, checks
//! that the runtime left no process, mount, state dir or container cgroup behind, and deletes
//! everything (also when the test failed). Nothing under /etc/containers or
//! /var/lib/containers is touched: `podman import` runs in a private mount namespace with a
//! tmpfs over /var/lib, because c/image otherwise creates /var/lib/containers/cache.
//!
//! The suite skips (printing why) only when podman cannot be installed.
//! `AMBER_ENGINE_TRACE=1` puts a logging wrapper between podman and the runtime and prints
//! the runtime argv podman sent when a test fails.
//!
//!   cargo test -p amber-integration --test podman
//!   AMBER_RUNTIME=/usr/sbin/runc cargo test -p amber-integration --test podman

use amber_integration::engines::{self, say};
use amber_integration::{facts, is_amber, run_captured, runtime, wait_for, wait_for_timeout, Output};
use serde_json::Value;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const IMAGE: &str = "localhost/amber-it-busybox:latest";

/// podman lowers its own RLIMIT_NPROC to 32768 at start-up (seen with strace: podman 4.3.1
/// `setrlimit(RLIMIT_NPROC, 32768)`), so conmon and the runtime cannot set a higher one.
const PODMAN_NPROC_CAP: u64 = 32768;
const PODMAN_NOFILE_CAP: u64 = 1048576;

struct Podman {
    dir: TempDir,
    /// The runtime podman is pointed at (the logging wrapper with AMBER_ENGINE_TRACE=1).
    rt: PathBuf,
    /// The runtime under test itself.
    real_rt: PathBuf,
    cgroup_parent: String,
    driver: String,
    trace_log: Option<PathBuf>,
}

impl Podman {
    /// A private podman world with the test image, or `None` when podman cannot be had.
    fn new() -> Option<Self> {
        if let Err(why) = engines::ensure_installed(&["podman", "conmon", "script", "unshare"]) {
            say(&format!("SKIP podman suite: {why}"));
            return None;
        }
        engines::sweep_stale("amber-it-pm");
        static N: AtomicUsize = AtomicUsize::new(0);
        let real_rt = runtime();
        assert!(
            real_rt.is_file(),
            "runtime {} not found: cargo build -p amber",
            real_rt.display()
        );
        let dir = engines::private_dir("amber-it-pm");
        let cgroup_parent = format!(
            "/amber-it-pm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        engines::note_cgroup(dir.path(), &cgroup_parent);
        let trace_log = engines::trace_enabled().then(|| dir.path().join("runtime-argv.log"));
        let rt = match &trace_log {
            Some(log) => engines::logging_wrapper(&dir.path().join("wrap"), &real_rt, log),
            None => real_rt.clone(),
        };
        let driver = std::env::var("AMBER_PODMAN_STORAGE_DRIVER").unwrap_or_else(|_| "overlay".into());
        let mut p = Podman {
            dir,
            rt,
            real_rt,
            cgroup_parent,
            driver,
            trace_log,
        };
        p.write_config();
        let tar = p.path("rootfs.tar");
        engines::rootfs_tar(&tar);
        let mut out = p.import(&tar);
        if !out.ok() && p.driver == "overlay" {
            say(&format!(
                "podman: overlay storage failed ({}), using vfs",
                out.stderr.trim()
            ));
            p.driver = "vfs".into();
            let _ = fs::remove_dir_all(p.path("graph"));
            let _ = fs::remove_dir_all(p.path("run"));
            p.write_config();
            out = p.import(&tar);
        }
        out.assert_ok();
        let _ = fs::remove_file(&tar);
        Some(p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write_config(&self) {
        let d = self.dir.path().display();
        let nofile = engines::hard_limit("nofile").min(PODMAN_NOFILE_CAP);
        let nproc = engines::hard_limit("nproc").min(PODMAN_NPROC_CAP);
        let name = self.rt.file_name().unwrap().to_string_lossy().into_owned();
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
netns = "none"
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{d}/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
lock_type = "file"
tmp_dir = "{d}/tmp"
static_dir = "{d}/graph/libpod"
volume_path = "{d}/volumes"
runtime = "{name}"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "youki", "{name}"]

[engine.runtimes]
{name} = ["{rt}"]
"#,
            rt = self.rt.display()
        );
        fs::write(self.path("containers.conf"), conf).expect("write containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"{}\"\ngraphroot = \"{d}/graph\"\nrunroot = \"{d}/run\"\n",
            self.driver
        );
        fs::write(self.path("storage.conf"), storage).expect("write storage.conf");
        fs::write(self.path("registries.conf"), "unqualified-search-registries = []\n").expect("registries.conf");
    }

    /// `podman <private globals> args...` (not run).
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_rt(&self.rt, args)
    }

    /// `podman --runtime <rt> <private globals> args...` (not run).
    fn cmd_rt(&self, rt: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env_remove("NOTIFY_SOCKET")
            .arg("--runtime")
            .arg(rt)
            .arg("--root")
            .arg(self.path("graph"))
            .arg("--runroot")
            .arg(self.path("run"))
            .args(["--storage-driver", &self.driver])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args(args);
        c
    }

    /// `podman import` in a private mount namespace with a tmpfs over /var/lib, so that
    /// c/image's blob-info cache (always /var/lib/containers/cache for root in podman 4.3)
    /// lands in a throwaway tmpfs.
    fn import(&self, tar: &Path) -> Output {
        let inner = self.cmd(&["import", "--change", "CMD=/bin/sh", &tar.to_string_lossy(), IMAGE]);
        let mut line = String::from("mount -t tmpfs -o size=16m,mode=755 amber-it-varlib /var/lib && exec");
        line.push(' ');
        line.push_str(&engines::shell_quote(&inner.get_program().to_string_lossy()));
        for a in inner.get_args() {
            line.push(' ');
            line.push_str(&engines::shell_quote(&a.to_string_lossy()));
        }
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &line]);
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        run_captured(c, &[])
    }

    fn podman(&self, args: &[&str]) -> Output {
        run_captured(self.cmd(args), &[])
    }

    /// Run podman, require exit 0, return its trimmed stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(out.ok(), "expected success: {out}{}", self.trace());
        out.stdout.trim().to_string()
    }

    /// `run <private run flags> <flags...> IMAGE <cmd...>`.
    fn run_args<'a>(&'a self, flags: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["run", "--network", "none", "--cgroup-parent", &self.cgroup_parent];
        v.extend_from_slice(flags);
        v.push(IMAGE);
        v.extend_from_slice(cmd);
        v
    }

    /// `podman run` (not checked).
    fn run(&self, flags: &[&str], cmd: &[&str]) -> Output {
        self.podman(&self.run_args(flags, cmd))
    }

    /// `podman run -d`: the container id.
    #[track_caller]
    fn run_d(&self, script: &str) -> String {
        let id = self.ok(&self.run_args(&["-d"], &["sh", "-c", script]));
        assert_eq!(id.len(), 64, "podman run -d printed no id: {id:?}");
        id
    }

    /// A detached container running `script` after it printed `ready` (so traps are set).
    #[track_caller]
    fn run_ready(&self, script: &str) -> String {
        let id = self.run_d(&format!("{script}; echo ready; while :; do sleep 0.1; done"));
        self.wait_log(&id, "ready");
        id
    }

    #[track_caller]
    fn wait_log(&self, id: &str, needle: &str) -> String {
        let mut last = String::new();
        wait_for(&format!("podman logs {id} to show {needle:?}"), || {
            let out = self.podman(&["logs", id]);
            last = out.all();
            last.contains(needle)
        });
        last
    }

    #[track_caller]
    fn inspect(&self, id: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, id])
    }

    #[track_caller]
    fn status(&self, id: &str) -> String {
        self.inspect(id, "{{.State.Status}}")
    }

    #[track_caller]
    fn wait_status(&self, id: &str, want: &str) {
        let mut last = String::new();
        wait_for(&format!("container {id} to be {want}"), || {
            last = self.status(id);
            last == want
        });
    }

    #[track_caller]
    fn pid(&self, id: &str) -> i32 {
        let pid: i32 = self.inspect(id, "{{.State.Pid}}").parse().expect("numeric pid");
        assert!(pid > 0, "container {id} has no pid");
        pid
    }

    /// The runtime's default state dir for a container (podman passes no `--root`).
    fn runtime_state_dir(&self, id: &str) -> PathBuf {
        let name = self.real_rt.file_name().unwrap().to_string_lossy().into_owned();
        Path::new("/run").join(name).join(id)
    }

    /// Everything the runtime keeps for `id` is gone: state dir, container cgroup, init
    /// process, rootfs mount.
    #[track_caller]
    fn assert_gone(&self, id: &str, pid: Option<i32>) {
        let sd = self.runtime_state_dir(id);
        wait_for(&format!("{} to be removed", sd.display()), || !sd.exists());
        let cg = format!("{}/libpod-{id}", self.cgroup_parent);
        wait_for(&format!("cgroup {cg} to be removed"), || {
            engines::cgroup_dirs(&cg).is_empty()
        });
        if let Some(pid) = pid {
            wait_for(&format!("container init {pid} to exit"), || !engines::pid_alive(pid));
        }
        let mounts: Vec<_> = engines::mounts()
            .into_iter()
            .filter(|(m, _, _)| m.to_string_lossy().contains(id))
            .collect();
        assert!(mounts.is_empty(), "mounts of container {id} left: {mounts:?}");
    }

    /// The runtime argv log (AMBER_ENGINE_TRACE=1), for failure messages.
    fn trace(&self) -> String {
        match &self.trace_log {
            Some(log) => format!(
                "\n--- runtime argv sent by podman ---\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ),
            None => String::new(),
        }
    }

    fn teardown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let q = |args: &[&str]| engines::run_quiet(self.cmd(args), Duration::from_secs(60));
        let ids: Vec<String> = q(&["ps", "-aq", "--no-trunc"])
            .map(|o| {
                o.stdout
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        match q(&["rm", "--all", "--force", "--time", "0"]) {
            Some(o) if o.ok() => {}
            other => problems.push(format!("podman rm -af failed: {other:?}")),
        }
        let _ = q(&["rmi", "--all", "--force"]);
        let d = self.dir.path().to_string_lossy().into_owned();
        // conmon and the `podman container cleanup` it spawns finish by themselves
        let left = engines::wait_procs_gone(&d, Duration::from_secs(10));
        if !left.is_empty() {
            problems.push(format!("processes left after podman rm -af: {left:?}"));
            engines::kill_procs_mentioning(&d);
        }
        for id in &ids {
            let sd = self.runtime_state_dir(id);
            if sd.exists() {
                problems.push(format!("runtime state {} left behind", sd.display()));
                let mut c = Command::new(&self.real_rt);
                c.args(["delete", "--force", id]);
                let _ = engines::run_quiet(c, Duration::from_secs(15));
                let _ = fs::remove_dir_all(&sd);
            }
            let cg = format!("{}/libpod-{id}", self.cgroup_parent);
            for dir in engines::cgroup_dirs(&cg) {
                problems.push(format!("container cgroup {} left behind", dir.display()));
            }
        }
        // podman's storage may keep its own overlay home mounted; container mounts are bugs
        for m in engines::umount_under(self.dir.path()) {
            let home = self.path(&format!("graph/{}", self.driver));
            if m != home {
                problems.push(format!("mount {} left behind", m.display()));
            }
        }
        // podman's own conmon cgroup lives below the parent too
        engines::remove_cgroups(&self.cgroup_parent);
        problems
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let problems = self.teardown();
        engines::finish_teardown("podman", self.trace_log.is_some(), &self.trace(), problems);
    }
}

/// Set up the podman world or return from the test (skip) when podman cannot be installed.
macro_rules! podman_or_skip {
    () => {
        match Podman::new() {
            Some(p) => p,
            None => return,
        }
    };
}

use engines::crlf;

// ---------------------------------------------------------------------------------
// run

#[test]
fn run_attached_exit_code_and_streams() {
    let p = podman_or_skip!();
    let out = p.run(&["--rm"], &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42"]);
    assert_eq!(out.code, Some(42), "{out}{}", p.trace());
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    // a successful create/start must print nothing: the runtime's stdio is the container's
    let out = p.run(&["--rm"], &["true"]);
    assert!(out.ok(), "{out}{}", p.trace());
    assert_eq!(out.stdout, "", "runtime noise in the container's stdout: {out}");
    assert_eq!(out.stderr, "", "runtime noise in the container's stderr: {out}");
}

#[test]
fn run_detached_logs_and_inspect() {
    let p = podman_or_skip!();
    let id = p.run_d("echo line-out; echo line-err >&2; exec sleep 1000");
    let logs = p.wait_log(&id, "line-err");
    assert!(logs.contains("line-out"), "{logs}");
    assert_eq!(p.status(&id), "running");
    let pid = p.pid(&id);
    // the pid podman got (from the runtime's pid file) is the container's init, in its cgroup
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read init cgroup");
    assert!(
        cg.contains(&format!("libpod-{id}")),
        "init {pid} not in the container cgroup:\n{cg}"
    );
    assert!(p.runtime_state_dir(&id).exists(), "no runtime state for {id}");
    let ps = p.ok(&["ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}"]);
    assert!(ps.contains(&format!("{id} Up")), "{ps}");
    p.ok(&["rm", "-f", "-t", "0", &id]);
    p.assert_gone(&id, Some(pid));
}

#[test]
fn run_interactive_stdin() {
    let p = podman_or_skip!();
    let out = engines::run_with_stdin(
        p.cmd(&p.run_args(&["-i", "--rm"], &["sh", "-c", "tr a-z A-Z; echo done"])),
        b"hello\nworld\n",
    );
    assert!(out.ok(), "{out}{}", p.trace());
    assert_eq!(out.stdout, "HELLO\nWORLD\ndone\n", "{out}");
}

#[test]
fn run_tty() {
    let p = podman_or_skip!();
    let cmd = p.cmd(&p.run_args(
        &["--rm", "-t"],
        &["sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty; exit 3"],
    ));
    let out = run_captured(engines::on_tty(&cmd), &[]);
    let text = crlf(&out.stdout);
    assert_eq!(out.code, Some(3), "{out}{}", p.trace());
    assert!(text.contains("/dev/pts/0"), "{out}");
    assert!(text.contains("both-tty"), "{out}");
}

#[test]
fn run_preserve_fds() {
    let p = podman_or_skip!();
    let file = p.path("preserved.txt");
    fs::write(&file, "preserved-content\n").unwrap();
    let f = fs::File::open(&file).unwrap();
    let cmd = p.cmd(&p.run_args(
        &["--rm", "--preserve-fds", "1"],
        &["sh", "-c", "cat <&3; readlink /proc/self/fd/3"],
    ));
    let out = run_captured(cmd, &[f.as_raw_fd()]);
    assert!(out.ok(), "{out}{}", p.trace());
    assert!(out.stdout.starts_with("preserved-content\n"), "{out}");
}

#[test]
fn run_missing_command_exits_127() {
    let p = podman_or_skip!();
    let out = p.run(&["--rm", "--name", "amber-it-missing"], &["nonexistent-cmd"]);
    assert_eq!(out.code, Some(127), "{out}{}", p.trace());
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    assert!(out.stderr.contains("nonexistent-cmd"), "{out}");
    let all = p.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!all.contains("amber-it-missing"), "--rm container left: {all}");
}

/// conmon passes `--log-format=json --log <run>/oci-log` because the runtime's name is in
/// `runtime_supports_json`; podman reads that file (one JSON object) on failure.
#[test]
fn json_error_log_reaches_podman() {
    let p = podman_or_skip!();
    let id = p.ok(&[
        "create",
        "--network",
        "none",
        "--cgroup-parent",
        &p.cgroup_parent,
        IMAGE,
        "nonexistent-cmd",
    ]);
    let out = p.podman(&["start", &id]);
    assert!(!out.ok(), "start of a missing command succeeded: {out}");
    let log = p.path(&format!("run/{}-containers/{id}/userdata/oci-log", p.driver));
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}{}", log.display(), p.trace()));
    // podman json.Unmarshal's the whole file: exactly one object (one line) must be there
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("oci-log is not exactly one JSON object ({e}):\n{text}"));
    assert_eq!(v["level"], "error", "{text}");
    let msg = v["msg"].as_str().expect("msg is a string");
    assert!(msg.contains("executable file not found in $PATH"), "{text}");
    assert!(
        out.stderr.contains(msg),
        "podman did not show the runtime's JSON message {msg:?}: {out}"
    );
    assert!(
        amber_integration::is_rfc3339(v["time"].as_str().unwrap_or("")),
        "time: {text}"
    );
    // a failed create leaves nothing in the runtime
    assert!(!p.runtime_state_dir(&id).exists(), "state left after a failed create");
    p.ok(&["rm", &id]);
}

/// An rlimit above what the runtime may set: the runtime's "operation not permitted"
/// becomes podman's exit 126 "OCI permission denied".
#[test]
fn run_permission_error_exits_126() {
    let p = podman_or_skip!();
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1048576);
    let too_high = format!("nofile={0}:{0}", nr_open + 1);
    let nproc = format!("nproc={0}:{0}", engines::hard_limit("nproc").min(PODMAN_NPROC_CAP));
    let out = p.run(&["--rm", "--ulimit", &too_high, "--ulimit", &nproc], &["true"]);
    assert_eq!(out.code, Some(126), "{out}{}", p.trace());
    let lower = out.stderr.to_lowercase();
    assert!(
        lower.contains("operation not permitted") || lower.contains("permission denied"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------
// exec

#[test]
fn exec_variants() {
    let p = podman_or_skip!();
    let id = p.run_ready("true");
    // plain, exit code
    let out = p.podman(&["exec", &id, "sh", "-c", "echo in-exec; exit 7"]);
    assert_eq!(out.code, Some(7), "{out}{}", p.trace());
    assert_eq!(out.stdout, "in-exec\n");
    // --user and --env
    let out = p.ok(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "FOO=bar",
        &id,
        "sh",
        "-c",
        "echo $FOO $(id -u) $(id -g)",
    ]);
    assert_eq!(out, "bar 1000 1000");
    // -i: stdin piped
    let out = engines::run_with_stdin(p.cmd(&["exec", "-i", &id, "sh", "-c", "tr a-z A-Z"]), b"piped\n");
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, "PIPED\n");
    // -t on a terminal
    let cmd = p.cmd(&[
        "exec",
        "-t",
        &id,
        "sh",
        "-c",
        "tty; test -t 0 && test -t 1 && echo both-tty",
    ]);
    let out = run_captured(engines::on_tty(&cmd), &[]);
    assert!(out.ok(), "{out}{}", p.trace());
    let text = crlf(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{out}");
    assert!(text.contains("both-tty"), "{out}");
    // -d: returns at once, the process runs on
    let out = p.ok(&["exec", "-d", &id, "sh", "-c", "sleep 0.3; echo detached > /tmp/exec-d"]);
    assert!(!out.is_empty(), "exec -d printed no session id");
    wait_for("the detached exec to write its file", || {
        p.podman(&["exec", &id, "cat", "/tmp/exec-d"]).stdout == "detached\n"
    });
    // missing executable: 127 with the runtime's message
    let out = p.podman(&["exec", &id, "nonexistent-exec"]);
    assert_eq!(out.code, Some(127), "{out}{}", p.trace());
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    assert_eq!(p.status(&id), "running");
}

// ---------------------------------------------------------------------------------
// signals and stop

#[test]
fn stop_falls_back_to_sigkill() {
    let p = podman_or_skip!();
    let id = p.run_ready("trap '' TERM");
    let pid = p.pid(&id);
    let t0 = Instant::now();
    p.ok(&["stop", "-t", "2", &id]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "stop returned after {took:?}, before its timeout"
    );
    assert_eq!(p.status(&id), "exited");
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "137");
    wait_for("init to be gone", || !engines::pid_alive(pid));
    p.ok(&["rm", &id]);
    p.assert_gone(&id, Some(pid));
}

#[test]
fn stop_graceful() {
    let p = podman_or_skip!();
    let id = p.run_ready("trap 'echo got-term; exit 0' TERM");
    let t0 = Instant::now();
    p.ok(&["stop", "-t", "20", &id]);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "SIGTERM did not stop the container"
    );
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "0");
    assert!(p.ok(&["logs", &id]).contains("got-term"));
    // a stopped container starts again (podman deletes and re-creates it in the runtime)
    p.ok(&["start", &id]);
    p.wait_status(&id, "running");
    p.ok(&["restart", "-t", "20", &id]);
    p.wait_status(&id, "running");
    p.ok(&["rm", "-f", "-t", "0", &id]);
    p.assert_gone(&id, None);
}

#[test]
fn kill_usr1_reaches_the_trap() {
    let p = podman_or_skip!();
    let id = p.run_ready("trap 'echo usr1 > /tmp/usr1' USR1");
    p.ok(&["kill", "-s", "USR1", &id]);
    wait_for("the USR1 trap to write /tmp/usr1", || {
        p.podman(&["exec", &id, "cat", "/tmp/usr1"]).stdout == "usr1\n"
    });
    assert_eq!(p.status(&id), "running");
    // default podman kill is SIGKILL
    let pid = p.pid(&id);
    p.ok(&["kill", &id]);
    p.wait_status(&id, "exited");
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "137");
    p.ok(&["rm", &id]);
    p.assert_gone(&id, Some(pid));
}

// ---------------------------------------------------------------------------------
// pause, update, top

#[test]
fn pause_unpause() {
    let p = podman_or_skip!();
    let id = p.run_d("i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done");
    let pid = p.pid(&id);
    p.ok(&["pause", &id]);
    assert_eq!(p.status(&id), "paused");
    if engines::cgroup_v1_has("freezer") {
        let f = engines::cgroup_dir_of(pid, "freezer")
            .expect("freezer cgroup")
            .join("freezer.state");
        assert_eq!(fs::read_to_string(&f).unwrap().trim(), "FROZEN", "{}", f.display());
    } else {
        let f = engines::cgroup_dir_of(pid, "")
            .expect("v2 cgroup")
            .join("cgroup.freeze");
        assert_eq!(fs::read_to_string(&f).unwrap().trim(), "1", "{}", f.display());
    }
    // podman refuses to exec into a paused container by itself; the state must stick
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.status(&id), "paused");
    p.ok(&["unpause", &id]);
    assert_eq!(p.status(&id), "running");
    let first = p.ok(&["exec", &id, "cat", "/tmp/count"]);
    wait_for("the counter to move after unpause", || {
        p.podman(&["exec", &id, "cat", "/tmp/count"]).stdout.trim() != first
    });
}

#[test]
fn update_cpu_shares_and_memory() {
    let p = podman_or_skip!();
    let id = p.run_ready("true");
    let pid = p.pid(&id);
    p.ok(&["update", "--cpu-shares", "512", "--memory", "64m", &id]);
    if engines::cgroup_v1_has("cpu") && engines::cgroup_v1_has("memory") {
        let cpu = engines::cgroup_dir_of(pid, "cpu").expect("cpu cgroup");
        let mem = engines::cgroup_dir_of(pid, "memory").expect("memory cgroup");
        assert!(cpu.to_string_lossy().contains(&id), "{}", cpu.display());
        assert_eq!(fs::read_to_string(cpu.join("cpu.shares")).unwrap().trim(), "512");
        assert_eq!(
            fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap().trim(),
            (64u64 << 20).to_string()
        );
    } else {
        let cg = engines::cgroup_dir_of(pid, "").expect("v2 cgroup");
        // runc's shares -> weight conversion: 1 + ((512 - 2) * 9999) / 262142 = 20
        assert_eq!(fs::read_to_string(cg.join("cpu.weight")).unwrap().trim(), "20");
        assert_eq!(
            fs::read_to_string(cg.join("memory.max")).unwrap().trim(),
            (64u64 << 20).to_string()
        );
    }
    // (podman 4.3 does not reflect an update in `inspect`: HostConfig.CpuShares stays 0)
    assert_eq!(p.status(&id), "running");
}

#[test]
fn top_lists_container_processes() {
    let p = podman_or_skip!();
    let id = p.run_d("sleep 1000 & exec sleep 1001");
    wait_for("both sleeps to run", || {
        let out = p.podman(&["top", &id, "pid", "args"]);
        out.ok() && out.stdout.contains("sleep 1000") && out.stdout.contains("sleep 1001")
    });
    let out = p.ok(&["top", &id]);
    assert!(out.contains("sleep 1001"), "{out}");
}

// ---------------------------------------------------------------------------------
// rm -f

#[test]
fn rm_force_running() {
    let p = podman_or_skip!();
    // pid 1 without a handler ignores SIGTERM: podman waits 1 s, then SIGKILL
    let id = p.run_d("exec sleep 1000");
    let pid = p.pid(&id);
    let merged = p.inspect(&id, "{{.GraphDriver.Data.MergedDir}}");
    p.ok(&["rm", "-f", "-t", "1", &id]);
    p.assert_gone(&id, Some(pid));
    if merged.starts_with('/') {
        assert!(
            !engines::mounts().iter().any(|(m, _, _)| m == Path::new(&merged)),
            "rootfs {merged} still mounted"
        );
    }
}

#[test]
fn rm_force_paused() {
    let p = podman_or_skip!();
    let id = p.run_d("exec sleep 1000");
    let pid = p.pid(&id);
    p.ok(&["pause", &id]);
    assert_eq!(p.status(&id), "paused");
    let t0 = Instant::now();
    p.ok(&["rm", "-f", &id]);
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "rm -f of a paused container waited for a stop timeout"
    );
    p.assert_gone(&id, Some(pid));
}

/// Many containers at once, then `rm -af`: nothing may be left (the teardown checks too).
#[test]
fn several_containers_then_rm_all() {
    let p = podman_or_skip!();
    let ids: Vec<String> = (0..3)
        .map(|i| p.run_d(&format!("echo c{i}; exec sleep 1000")))
        .collect();
    let pids: Vec<i32> = ids.iter().map(|id| p.pid(id)).collect();
    let running = p.ok(&["ps", "-q", "--no-trunc"]);
    for id in &ids {
        assert!(running.contains(id.as_str()), "{id} not running: {running}");
    }
    p.ok(&["rm", "-af", "-t", "0"]);
    for (id, pid) in ids.iter().zip(pids) {
        p.assert_gone(id, Some(pid));
    }
    wait_for_timeout("conmon processes to exit", Duration::from_secs(10), || {
        engines::procs_mentioning(&format!("{}/", p.dir.path().display()))
            .iter()
            .all(|(_, c)| !c.contains("conmon"))
    });
    if is_amber() {
        // nothing of these containers left in amber's default state root
        for id in &ids {
            assert!(!p.runtime_state_dir(id).exists());
        }
    }
}

// ---------------------------------------------------------------------------------
// the spec podman generates, applied by runc and by the runtime under test

/// Run [`facts::SCRIPT`] in a podman container with `flags`, once with runc (the reference)
/// and once with the runtime under test, and compare what the container saw.
fn compare_with_runc(p: &Podman, flags: &[&str]) {
    let Some(runc) = engines::which("runc") else {
        say("podman: no runc installed, spec comparison skipped");
        return;
    };
    let mut outputs = Vec::new();
    for (rt, name) in [
        (runc.as_path(), "amber-it-facts-ref"),
        (p.rt.as_path(), "amber-it-facts-tst"),
    ] {
        let mut args = p.run_args(&[], &[]);
        args.pop(); // IMAGE goes after the flags
        args.extend_from_slice(&["--rm", "--name", name]);
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", facts::SCRIPT]);
        let out = run_captured(p.cmd_rt(rt, &args), &[]);
        assert!(out.ok(), "facts under {}: {out}{}", rt.display(), p.trace());
        let mut text = facts::normalize(&out.stdout, &[name, &p.cgroup_parent]);
        if is_amber() && rt == p.rt.as_path() {
            // Deliberate: on cgroup v1 amber remounts the tmpfs at /sys/fs/cgroup read-only
            // when the cgroup mount is `ro` (src/rootfs/mod.rs mount_cgroup); runc 1.1.5
            // leaves that tmpfs rw (only the hierarchy binds are ro).
            text = text.replace(
                "/sys/fs/cgroup ro,nosuid,nodev,noexec,relatime tmpfs ro,mode=755",
                "/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime tmpfs rw,mode=755",
            );
        }
        outputs.push(text);
    }
    if let Some(d) = facts::diff(&outputs[0], &outputs[1]) {
        panic!(
            "podman {flags:?}: the container sees something else under {} than under runc \
             (- runc only, + {} only):\n{d}\n--- full output under {} ---\n{}",
            p.real_rt.display(),
            p.real_rt.display(),
            p.real_rt.display(),
            outputs[1]
        );
    }
}

#[test]
fn spec_default_matches_runc() {
    let p = podman_or_skip!();
    compare_with_runc(&p, &[]);
}

#[test]
fn spec_options_match_runc() {
    let p = podman_or_skip!();
    compare_with_runc(
        &p,
        &[
            "--user",
            "1000:1000",
            "--group-add",
            "1001",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_BIND_SERVICE",
            "--security-opt",
            "no-new-privileges",
            "--workdir",
            "/tmp",
            "--env",
            "FOO=bar",
            "--memory",
            "64m",
            "--pids-limit",
            "100",
            "--shm-size",
            "1m",
            "--hostname",
            "facts",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--oom-score-adj",
            "100",
            "--device",
            "/dev/null:/dev/xnull",
        ],
    );
}

#[test]
fn spec_privileged_matches_runc() {
    let p = podman_or_skip!();
    compare_with_runc(&p, &["--privileged"]);
}

/// `--read-only`: podman adds tmpfs mounts on /run, /tmp and /var/tmp with the runc
/// extension option `tmpcopyup`.
#[test]
fn run_read_only() {
    let p = podman_or_skip!();
    let out = p.run(
        &["--rm", "--read-only"],
        &[
            "sh",
            "-c",
            "touch /tmp/ok /run/ok /var/tmp/ok && echo writable; touch /etc/nope 2>/dev/null || echo root-ro",
        ],
    );
    assert!(out.ok(), "{out}{}", p.trace());
    assert_eq!(out.stdout, "writable\nroot-ro\n", "{out}");
}

/// `--tmpfs DIR` (podman adds `tmpcopyup`): the tmpfs starts with a copy of what the image
/// has in DIR.
#[test]
fn run_tmpfs_copyup() {
    let p = podman_or_skip!();
    let out = p.run(
        &["--rm", "--tmpfs", "/usr/bin:size=8m"],
        &[
            "sh",
            "-c",
            "grep -c ' /usr/bin .* tmpfs ' /proc/self/mountinfo; ls /usr/bin | grep -cx env",
        ],
    );
    assert!(out.ok(), "{out}{}", p.trace());
    assert_eq!(out.stdout, "1\n1\n", "tmpfs not mounted or not copied up: {out}");
}

/// With `--log-level debug` podman asks for no JSON log: the error must reach podman through
/// the runtime's plain stderr (conmon's fallback). `--runtime-flag debug` adds the global
/// `--debug` to create and start.
#[test]
fn stderr_error_path_and_debug_flag() {
    let p = podman_or_skip!();
    let mut args = vec!["--log-level", "debug"];
    args.extend(p.run_args(&["--rm"], &["nonexistent-cmd"]));
    let out = p.podman(&args);
    assert_eq!(out.code, Some(127), "{out}{}", p.trace());
    assert!(out.stderr.contains("executable file not found in $PATH"), "{out}");
    let mut args = vec!["--runtime-flag", "debug"];
    args.extend(p.run_args(&["--rm"], &["echo", "hi"]));
    let out = p.podman(&args);
    assert!(out.ok(), "{out}{}", p.trace());
    assert_eq!(out.stdout, "hi\n", "{out}");
}

// ---------------------------------------------------------------------------------
// checkpoint / restore

/// The last number a counting container wrote to its log.
fn last_count(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no count in log: {log:?}"))
}

#[test]
fn checkpoint_restore_counter_continues() {
    if !is_amber() {
        say("SKIP checkpoint_restore_counter_continues: needs amber (runc needs a working CRIU)");
        return;
    }
    let p = podman_or_skip!();
    // the engine refuses seccomp filters at dump for now ("uses seccomp (v1)"), and
    // podman's default profile installs one
    let script = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";
    let id = p.ok(&p.run_args(&["-d", "--security-opt", "seccomp=unconfined"], &["sh", "-c", script]));
    assert_eq!(id.len(), 64, "podman run -d printed no id: {id:?}");
    p.wait_log(&id, "\n5\n");
    let pid = p.pid(&id);
    p.ok(&["container", "checkpoint", &id]);
    assert_eq!(p.status(&id), "exited");
    wait_for(&format!("container init {pid} to exit"), || !engines::pid_alive(pid));
    let stopped = last_count(&p.podman(&["logs", &id]).stdout);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        last_count(&p.podman(&["logs", &id]).stdout),
        stopped,
        "counter moved while checkpointed"
    );
    p.ok(&["container", "restore", &id]);
    assert_eq!(p.status(&id), "running");
    let want = format!("\n{}\n", stopped + 3);
    let log = p.wait_log(&id, &want);
    let ones = log.lines().filter(|l| l.trim() == "1").count();
    assert_eq!(ones, 1, "counter restarted after restore: {log}");
    let rpid = p.pid(&id);
    p.ok(&["rm", "--force", "--time", "0", &id]);
    p.assert_gone(&id, Some(rpid));
}

#[test]
fn checkpoint_leave_running_then_restore_after_stop() {
    if !is_amber() {
        say("SKIP checkpoint_leave_running_then_restore_after_stop: needs amber (runc needs a working CRIU)");
        return;
    }
    let p = podman_or_skip!();
    let script = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";
    let id = p.ok(&p.run_args(&["-d", "--security-opt", "seccomp=unconfined"], &["sh", "-c", script]));
    p.wait_log(&id, "\n5\n");
    let pid = p.pid(&id);
    p.ok(&["container", "checkpoint", "--leave-running", &id]);
    assert_eq!(p.status(&id), "running");
    assert_eq!(p.pid(&id), pid, "--leave-running replaced the container init");
    let at = last_count(&p.podman(&["logs", &id]).stdout);
    p.wait_log(&id, &format!("\n{}\n", at + 3));
    p.ok(&["stop", "--time", "0", &id]);
    p.wait_status(&id, "exited");
    p.ok(&["container", "restore", &id]);
    assert_eq!(p.status(&id), "running");
    // the restored counter resumes near the checkpoint: the number after it appears twice
    let again = format!("\n{}\n", at + 2);
    let mut log = String::new();
    wait_for(
        "the restored counter to repeat the numbers after the checkpoint",
        || {
            log = p.podman(&["logs", &id]).stdout;
            log.matches(&again).count() >= 2
        },
    );
    assert_eq!(
        log.lines().filter(|l| l.trim() == "1").count(),
        1,
        "counter restarted: {log}"
    );
    let rpid = p.pid(&id);
    p.ok(&["rm", "--force", "--time", "0", &id]);
    p.assert_gone(&id, Some(rpid));
}
