//! containerd (`io.containerd.runc.v2` shim, via go-runc) driving the runtime under test with
//! `ctr run --runc-binary <runtime>`, as in `shared/docs/ENGINE-CONTRACT.md` §2.
//!
//! Every test starts its own containerd in `/tmp/amber-it-ctd.XXXXXX` from a generated
//! config.toml (private `root`, `state`, gRPC/ttrpc sockets; CRI, opt, tracing and the
//! snapshotters that need more disabled), imports an OCI archive of the shared test rootfs
//! that the harness builds by hand, and runs containers in a private namespace
//! `amber-it-ctd-<pid>-<n>` (so their cgroups are `/<ns>/<id>`) with a private runc root
//! (`--runc-root`) and FIFO dir. The teardown deletes every task and container, checks that
//! the runtime left no state dir, cgroup, mount or process behind, stops the daemon and
//! removes everything, also when the test failed.
//!
//! containerd's shims put their sockets in /run/containerd/s whatever the config says (and
//! the shim's cleanup path may create /run/containerd/runc/<ns>), so the tests run one at a
//! time and remove those directories again when they are empty.
//!
//! The suite skips (printing why) only when containerd cannot be installed.
//! `AMBER_ENGINE_TRACE=1` puts a logging wrapper between the shim and the runtime and prints
//! the runtime argv when a test fails.
//!
//!   cargo test -p amber-integration --test containerd
//!   AMBER_RUNTIME=/usr/sbin/runc cargo test -p amber-integration --test containerd

use amber_integration::engines::{self, say};
use amber_integration::{facts, is_amber, run_captured, runtime, wait_for, Output};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const IMAGE: &str = "localhost/amber-it-busybox:latest";

struct Containerd {
    dir: TempDir,
    ns: String,
    /// What the shim is told to run (the logging wrapper with AMBER_ENGINE_TRACE=1).
    rt: PathBuf,
    /// The runtime under test itself.
    real_rt: PathBuf,
    trace_log: Option<PathBuf>,
    daemon: Option<Child>,
    exec_ids: AtomicUsize,
    /// Held for the test's lifetime (dropped last): one containerd test at a time.
    _serial: MutexGuard<'static, ()>,
}

impl Containerd {
    fn new() -> Option<Self> {
        if let Err(why) = engines::ensure_installed(&["containerd", "ctr", "containerd-shim-runc-v2", "script"]) {
            say(&format!("SKIP containerd suite: {why}"));
            return None;
        }
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        engines::sweep_stale("amber-it-ctd");
        static N: AtomicUsize = AtomicUsize::new(0);
        let real_rt = runtime();
        assert!(
            real_rt.is_file(),
            "runtime {} not found: cargo build -p amber",
            real_rt.display()
        );
        let dir = engines::private_dir("amber-it-ctd");
        let ns = format!(
            "amber-it-ctd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        engines::note_cgroup(dir.path(), &format!("/{ns}"));
        let trace_log = engines::trace_enabled().then(|| dir.path().join("runtime-argv.log"));
        let rt = match &trace_log {
            Some(log) => engines::logging_wrapper(&dir.path().join("wrap"), &real_rt, log),
            None => real_rt.clone(),
        };
        let mut c = Containerd {
            dir,
            ns,
            rt,
            real_rt,
            trace_log,
            daemon: None,
            exec_ids: AtomicUsize::new(0),
            _serial: serial,
        };
        c.start_daemon();
        let archive = c.path("image.tar");
        engines::oci_archive(&archive, IMAGE);
        c.ok(&["image", "import", &archive.to_string_lossy()]);
        let _ = fs::remove_file(&archive);
        Some(c)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn sock(&self) -> PathBuf {
        self.path("ctd.sock")
    }

    fn start_daemon(&mut self) {
        let d = self.dir.path().display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]

[grpc]
  address = "{d}/ctd.sock"

[ttrpc]
  address = "{d}/ctd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"#
        );
        let cfg = self.path("config.toml");
        fs::write(&cfg, config).expect("write config.toml");
        let log = fs::File::create(self.path("containerd.log")).expect("containerd.log");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&cfg)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.daemon = Some(cmd.spawn().expect("spawn containerd"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.sock().exists() && self.ctr_out(&["version"]).ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                panic!("containerd exited ({st}):\n{}", self.daemon_log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn daemon_log(&self) -> String {
        let text = fs::read_to_string(self.path("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `ctr --address <sock> --namespace <ns> args...` (not run).
    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.sock())
            .args(["--namespace", &self.ns])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .args(args);
        c
    }

    fn ctr_out(&self, args: &[&str]) -> Output {
        run_captured(self.ctr(args), &[])
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr_out(args);
        assert!(out.ok(), "expected success: {out}{}", self.trace());
        out.stdout.trim().to_string()
    }

    /// `run --runtime io.containerd.runc.v2 --runc-binary RT --runc-root R --fifo-dir F
    /// <flags...> IMAGE <id> <cmd...>`.
    fn run_args(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        self.run_args_rt(&self.rt, flags, id, cmd)
    }

    fn run_args_rt(&self, rt: &Path, flags: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            rt.to_string_lossy().into_owned(),
            "--runc-root".into(),
            self.path("runc").to_string_lossy().into_owned(),
            "--fifo-dir".into(),
            self.path("fifo").to_string_lossy().into_owned(),
        ];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.push(IMAGE.into());
        v.push(id.into());
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    }

    fn run_cmd(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Command {
        let args = self.run_args(flags, id, cmd);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs)
    }

    fn run(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Output {
        run_captured(self.run_cmd(flags, id, cmd), &[])
    }

    fn log_file(&self, id: &str) -> PathBuf {
        self.path(&format!("{id}.log"))
    }

    /// `ctr run -d` of `sh -c script`, stdout and stderr to a log file; returns the init pid
    /// once `ready` was printed (the script's traps are then set).
    #[track_caller]
    fn run_ready(&self, id: &str, script: &str) -> i32 {
        let log = format!("file://{}", self.log_file(id).display());
        let script = format!("{script}; echo ready; while :; do sleep 0.1; done");
        let out = self.run(&["-d", "--log-uri", &log], id, &["sh", "-c", &script]);
        assert!(out.ok(), "{out}{}", self.trace());
        let log = self.log_file(id);
        wait_for(&format!("{id} to print ready"), || {
            fs::read_to_string(&log).unwrap_or_default().contains("ready")
        });
        let (pid, status) = self.task(id).expect("task listed");
        assert_eq!(status, "RUNNING");
        pid
    }

    /// (pid, status) from `ctr task ls`.
    fn task(&self, id: &str) -> Option<(i32, String)> {
        let out = self.ok(&["task", "ls"]);
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
        })
    }

    #[track_caller]
    fn wait_task_status(&self, id: &str, want: &str) {
        let mut last = None;
        wait_for(&format!("task {id} to be {want}"), || {
            last = self.task(id).map(|t| t.1);
            last.as_deref() == Some(want)
        });
    }

    fn exec_args(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let n = self.exec_ids.fetch_add(1, Ordering::SeqCst);
        let mut v: Vec<String> = vec![
            "task".into(),
            "exec".into(),
            "--fifo-dir".into(),
            self.path("fifo").to_string_lossy().into_owned(),
            "--exec-id".into(),
            format!("exec{n}"),
        ];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.push(id.into());
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    }

    fn exec_cmd(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Command {
        let args = self.exec_args(flags, id, cmd);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs)
    }

    fn exec(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Output {
        run_captured(self.exec_cmd(flags, id, cmd), &[])
    }

    fn runtime_state_dir(&self, id: &str) -> PathBuf {
        self.path(&format!("runc/{}/{id}", self.ns))
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.path(&format!("state/io.containerd.runtime.v2.task/{}/{id}", self.ns))
    }

    /// The runtime and the shim kept nothing of `id`: state dir, cgroup, mounts, processes.
    #[track_caller]
    fn assert_gone(&self, id: &str, pids: &[i32]) {
        let sd = self.runtime_state_dir(id);
        wait_for(&format!("{} to be removed", sd.display()), || !sd.exists());
        let cg = format!("/{}/{id}", self.ns);
        wait_for(&format!("cgroup {cg} to be removed"), || {
            engines::cgroup_dirs(&cg).is_empty()
        });
        for &pid in pids {
            wait_for(&format!("process {pid} to exit"), || !engines::pid_alive(pid));
        }
        let td = self.task_dir(id);
        let m = engines::mounts_under(&td);
        assert!(m.is_empty(), "mounts left in {}: {m:?}", td.display());
    }

    /// Remove a stopped task and its container; check that nothing is left.
    #[track_caller]
    fn delete(&self, id: &str, pids: &[i32]) {
        self.ok(&["task", "delete", id]);
        self.ok(&["container", "delete", id]);
        self.assert_gone(id, pids);
    }

    fn trace(&self) -> String {
        match &self.trace_log {
            Some(log) => format!(
                "\n--- runtime argv sent by the shim ---\n{}",
                fs::read_to_string(log).unwrap_or_default()
            ),
            None => String::new(),
        }
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let d = self.dir.path().to_string_lossy().into_owned();
        let q = |args: &[&str]| engines::run_quiet(self.ctr(args), Duration::from_secs(30));
        let mut ids = Vec::new();
        if self.daemon.is_some() {
            ids = q(&["container", "ls", "-q"])
                .map(|o| {
                    o.stdout
                        .lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            for id in &ids {
                let _ = q(&["task", "delete", "--force", id]);
                if let Some(o) = q(&["container", "delete", id]) {
                    if !o.ok() {
                        problems.push(format!("ctr container delete {id}: {o}"));
                    }
                }
            }
            let _ = q(&["image", "rm", IMAGE]);
        }
        for id in &ids {
            let sd = self.runtime_state_dir(id);
            if sd.exists() {
                problems.push(format!("runtime state {} left behind", sd.display()));
                let mut c = Command::new(&self.real_rt);
                c.arg("--root").arg(self.path(&format!("runc/{}", self.ns)));
                c.args(["delete", "--force", id]);
                let _ = engines::run_quiet(c, Duration::from_secs(15));
            }
            for cg in engines::cgroup_dirs(&format!("/{}/{id}", self.ns)) {
                problems.push(format!("container cgroup {} left behind", cg.display()));
            }
        }
        if let Some(mut daemon) = self.daemon.take() {
            // SAFETY: kill(2) of the daemon we spawned.
            unsafe {
                libc::kill(daemon.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        // shims exit once their task is deleted
        let left = engines::wait_procs_gone(&d, Duration::from_secs(5));
        if !left.is_empty() {
            problems.push(format!("processes left behind: {left:?}"));
            engines::kill_procs_mentioning(&d);
        }
        for m in engines::umount_under(self.dir.path()) {
            problems.push(format!("mount {} left behind", m.display()));
        }
        engines::remove_cgroups(&format!("/{}", self.ns));
        // The shim's own cleanup (`containerd-shim-runc-v2 delete`) runs the runtime with the
        // default root /run/containerd/runc/<ns> when it cannot read the task's options, and
        // the runtime creates that directory; shim sockets go to /run/containerd/s.
        let default_root = Path::new("/run/containerd/runc").join(&self.ns);
        if let Ok(rd) = fs::read_dir(&default_root) {
            let left: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !left.is_empty() {
                problems.push(format!("runtime state in {}: {left:?}", default_root.display()));
            }
            let _ = fs::remove_dir_all(&default_root);
        }
        // Only empty directories go, so a system containerd's are safe.
        for d in ["/run/containerd/runc", "/run/containerd/s", "/run/containerd"] {
            let _ = fs::remove_dir(d);
        }
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let problems = self.teardown();
        engines::finish_teardown("containerd", self.trace_log.is_some(), &self.trace(), problems);
    }
}

macro_rules! containerd_or_skip {
    () => {
        match Containerd::new() {
            Some(c) => c,
            None => return,
        }
    };
}

use engines::crlf;

/// `ctr task ps` pids.
fn task_pids(c: &Containerd, id: &str) -> Vec<i32> {
    c.ok(&["task", "ps", id])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------

#[test]
fn run_foreground_exit_code_and_streams() {
    let c = containerd_or_skip!();
    let out = c.run(
        &["--rm"],
        "fg",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42"],
    );
    assert_eq!(out.code, Some(42), "{out}{}", c.trace());
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    c.assert_gone("fg", &[]);
    // a successful create/start prints nothing into the container's streams
    let out = c.run(&["--rm"], "quiet", &["true"]);
    assert!(out.ok(), "{out}{}", c.trace());
    assert_eq!(out.stdout, "", "runtime noise in the container's stdout: {out}");
    assert_eq!(out.stderr, "", "runtime noise in the container's stderr: {out}");
    assert_eq!(c.ok(&["container", "ls", "-q"]), "");
}

#[test]
fn run_detached_ps_kill_delete() {
    let c = containerd_or_skip!();
    let pid = c.run_ready("d1", "trap 'echo got-term; exit 3' TERM; sleep 1000 & :");
    let init_cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        init_cg.contains(&format!("/{}/d1", c.ns)),
        "init not in /<ns>/d1:\n{init_cg}"
    );
    assert!(c.runtime_state_dir("d1").exists());
    // `ps --format json` through the shim: the init and its background sleep
    let pids = task_pids(&c, "d1");
    assert!(pids.contains(&pid), "task ps {pids:?} lacks init {pid}");
    assert!(pids.len() >= 2, "task ps {pids:?} lacks the background sleep");
    // default signal SIGTERM, trapped
    c.ok(&["task", "kill", "d1"]);
    c.wait_task_status("d1", "STOPPED");
    assert!(fs::read_to_string(c.log_file("d1")).unwrap().contains("got-term"));
    // the background sleep is killed with the pid namespace
    c.delete("d1", &pids);
}

#[test]
fn run_tty() {
    let c = containerd_or_skip!();
    let cmd = c.run_cmd(
        &["--rm", "-t"],
        "tty",
        &["sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty; exit 3"],
    );
    let out = run_captured(engines::on_tty(&cmd), &[]);
    let text = crlf(&out.stdout);
    assert_eq!(out.code, Some(3), "{out}{}", c.trace());
    assert!(text.contains("/dev/pts/0"), "{out}");
    assert!(text.contains("both-tty"), "{out}");
    c.assert_gone("tty", &[]);
}

#[test]
fn exec_variants() {
    let c = containerd_or_skip!();
    let pid = c.run_ready("ex", "true");
    let out = c.exec(&[], "ex", &["sh", "-c", "echo in-exec; exit 7"]);
    assert_eq!(out.code, Some(7), "{out}{}", c.trace());
    assert_eq!(out.stdout, "in-exec\n");
    let out = c.exec(&["--user", "1000"], "ex", &["sh", "-c", "echo $(id -u) $(id -g)"]);
    assert!(out.ok(), "{out}{}", c.trace());
    assert_eq!(out.stdout, "1000 1000\n");
    let out = engines::run_with_stdin(c.exec_cmd(&[], "ex", &["sh", "-c", "tr a-z A-Z"]), b"piped\n");
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, "PIPED\n");
    let cmd = c.exec_cmd(
        &["-t"],
        "ex",
        &["sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty"],
    );
    let out = run_captured(engines::on_tty(&cmd), &[]);
    assert!(out.ok(), "{out}{}", c.trace());
    let text = crlf(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{out}");
    assert!(text.contains("both-tty"), "{out}");
    // -d; the file goes to a tmpfs (/dev/shm): on this kernel a file created on the overlay
    // rootfs after an exec as another user fails with ENOENT, with runc too
    let out = c.exec(&["-d"], "ex", &["sh", "-c", "echo detached > /dev/shm/exec-d"]);
    assert!(out.ok(), "{out}{}", c.trace());
    wait_for("the detached exec to write its file", || {
        c.exec(&[], "ex", &["cat", "/dev/shm/exec-d"]).stdout == "detached\n"
    });
    // a missing executable fails the exec with the runtime's message
    let out = c.exec(&[], "ex", &["nonexistent-exec"]);
    assert!(!out.ok(), "{out}");
    assert!(
        out.stderr.contains("executable file not found in $PATH"),
        "{out}{}",
        c.trace()
    );
    assert_eq!(c.task("ex").map(|t| t.1).as_deref(), Some("RUNNING"));
    c.ok(&["task", "kill", "-s", "SIGKILL", "ex"]);
    c.wait_task_status("ex", "STOPPED");
    c.delete("ex", &[pid]);
}

#[test]
fn kill_usr1_reaches_the_trap() {
    let c = containerd_or_skip!();
    let pid = c.run_ready("k", "trap 'echo usr1 > /dev/shm/usr1' USR1");
    c.ok(&["task", "kill", "-s", "SIGUSR1", "k"]);
    wait_for("the USR1 trap to write its file", || {
        c.exec(&[], "k", &["cat", "/dev/shm/usr1"]).stdout == "usr1\n"
    });
    assert_eq!(c.task("k").map(|t| t.1).as_deref(), Some("RUNNING"));
    c.ok(&["task", "kill", "-s", "9", "k"]);
    c.wait_task_status("k", "STOPPED");
    c.delete("k", &[pid]);
}

#[test]
fn pause_resume_and_kill_paused() {
    let c = containerd_or_skip!();
    let pid = c.run_ready("p", "true");
    let freezer = engines::cgroup_v1_has("freezer").then(|| {
        engines::cgroup_dir_of(pid, "freezer")
            .expect("freezer cgroup")
            .join("freezer.state")
    });
    c.ok(&["task", "pause", "p"]);
    c.wait_task_status("p", "PAUSED");
    if let Some(f) = &freezer {
        assert_eq!(fs::read_to_string(f).unwrap().trim(), "FROZEN");
    }
    c.ok(&["task", "resume", "p"]);
    c.wait_task_status("p", "RUNNING");
    if let Some(f) = &freezer {
        assert_eq!(fs::read_to_string(f).unwrap().trim(), "THAWED");
    }
    let out = c.exec(&[], "p", &["echo", "alive"]);
    assert_eq!(out.stdout, "alive\n", "{out}");
    // SIGKILL must take effect on a frozen container
    c.ok(&["task", "pause", "p"]);
    c.wait_task_status("p", "PAUSED");
    c.ok(&["task", "kill", "-s", "SIGKILL", "p"]);
    c.wait_task_status("p", "STOPPED");
    c.delete("p", &[pid]);
}

#[test]
fn delete_force_running() {
    let c = containerd_or_skip!();
    let pid = c.run_ready("f", "true");
    c.ok(&["task", "delete", "--force", "f"]);
    c.ok(&["container", "delete", "f"]);
    c.assert_gone("f", &[pid]);
}

/// The shim has IO set, so the only way it learns the runtime's error is the last
/// `"level":"error"` line of `<bundle>/log.json`.
#[test]
fn create_error_shows_runtime_message() {
    let c = containerd_or_skip!();
    let out = c.run(&["--rm"], "bad", &["nonexistent-cmd"]);
    assert!(!out.ok(), "{out}");
    assert!(out.stderr.contains("OCI runtime create failed"), "{out}{}", c.trace());
    assert!(
        out.stderr.contains("executable file not found in $PATH"),
        "containerd did not get the runtime's message: {out}{}",
        c.trace()
    );
    assert!(out.stderr.contains("nonexistent-cmd"), "{out}");
    c.assert_gone("bad", &[]);
    assert_eq!(c.ok(&["container", "ls", "-q"]), "");
}

/// Without a private pid namespace the shim follows the init's exit with
/// `kill --all <id> 9`, which must reach every process of the container.
#[test]
fn host_pid_namespace_kill_all() {
    let c = containerd_or_skip!();
    let ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    let log = format!("file://{}", c.log_file("h").display());
    let out = c.run(
        &["-d", "--log-uri", &log, "--with-ns", &ns],
        "h",
        &["sh", "-c", "sleep 1001 & echo ready; exec sleep 1002"],
    );
    assert!(out.ok(), "{out}{}", c.trace());
    let mut pids = Vec::new();
    wait_for("both sleeps to run", || {
        pids = task_pids(&c, "h");
        pids.len() >= 2
    });
    // host pids, so they are visible here
    for &p in &pids {
        assert!(engines::pid_alive(p), "{p} not visible in the host pid namespace");
    }
    c.ok(&["task", "kill", "-s", "SIGKILL", "h"]);
    c.wait_task_status("h", "STOPPED");
    c.delete("h", &pids);
}

// ---------------------------------------------------------------------------------
// the spec ctr generates, applied by runc and by the runtime under test

/// Run [`facts::SCRIPT`] with `ctr run --rm <flags>`, once with runc (the reference) and once
/// with the runtime under test, and compare what the container saw.
fn compare_with_runc(c: &Containerd, flags: &[&str]) {
    let Some(runc) = engines::which("runc") else {
        say("containerd: no runc installed, spec comparison skipped");
        return;
    };
    let mut outputs = Vec::new();
    for (rt, id) in [(runc.as_path(), "facts-ref"), (c.rt.as_path(), "facts-tst")] {
        let mut all = vec!["--rm"];
        all.extend_from_slice(flags);
        let args = c.run_args_rt(rt, &all, id, &["sh", "-c", facts::SCRIPT]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut out = run_captured(c.ctr(&refs), &[]);
        // KNOWN ISSUE (open): under heavy load `ctr run --rm` once returned success with an
        // empty stdout for amber (seen 1 time in ~20 full runs, not reproduced alone). Retry
        // once, loudly, so the comparison itself stays strict.
        if out.ok() && out.stdout.trim().is_empty() {
            eprintln!(
                "containerd: empty output from `ctr run` under {}, retrying once",
                rt.display()
            );
            c.assert_gone(id, &[]);
            out = run_captured(c.ctr(&refs), &[]);
        }
        assert!(out.ok(), "facts under {}: {out}{}", rt.display(), c.trace());
        let mut text = facts::normalize(&out.stdout, &[id, &c.ns]);
        if is_amber() && rt == c.rt.as_path() {
            // Deliberate: amber remounts the v1 cgroup tmpfs read-only for a `ro` cgroup
            // mount; runc 1.1.5 leaves it rw (see tests/podman.rs).
            text = text.replace(
                "/sys/fs/cgroup ro,nosuid,nodev,noexec,relatime tmpfs ro,mode=755",
                "/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime tmpfs rw,mode=755",
            );
        }
        outputs.push(text);
        c.assert_gone(id, &[]);
    }
    if let Some(d) = facts::diff(&outputs[0], &outputs[1]) {
        panic!(
            "ctr run {flags:?}: the container sees something else under {} than under runc \
             (- runc only, + {} only):\n{d}\n--- full output under {} ---\n{}",
            c.real_rt.display(),
            c.real_rt.display(),
            c.real_rt.display(),
            outputs[1]
        );
    }
}

#[test]
fn spec_default_matches_runc() {
    let c = containerd_or_skip!();
    compare_with_runc(&c, &[]);
}

#[test]
fn spec_options_match_runc() {
    let c = containerd_or_skip!();
    compare_with_runc(
        &c,
        &[
            "--read-only",
            "--seccomp",
            "--cap-drop",
            "CAP_NET_RAW",
            "--cap-add",
            "CAP_SYS_ADMIN",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "--memory-limit",
            "67108864",
            "--cpu-shares",
            "512",
            "--mount",
            "type=tmpfs,src=tmpfs,dst=/run,options=size=1m:mode=1777",
            "--no-pivot",
        ],
    );
}

#[test]
fn spec_privileged_matches_runc() {
    let c = containerd_or_skip!();
    compare_with_runc(&c, &["--privileged"]);
}

#[test]
fn spec_user_namespace_matches_runc() {
    let c = containerd_or_skip!();
    compare_with_runc(&c, &["--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"]);
}
