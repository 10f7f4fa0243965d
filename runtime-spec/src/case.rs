//! One container under test ([`Case`]) and what all tests share ([`Env`]).
//!
//! A case owns a temporary directory holding its bundle (`bundle/config.json`, `bundle/rs/`
//! with the helper, bind-mounted read-only at `/rs`), its own runtime `--root` (`state/`), a
//! scratch dir shared with the container when asked (`out/`, at `/out`) and the files that
//! receive the container's stdout/stderr. Dropping a case runs `delete --force`, then checks
//! that nothing was left behind (state dir, cgroup, mount, process), records what was and
//! removes it.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tempfile::TempDir;

use crate::exec::{self, Output, CMD_TIMEOUT};
use crate::report::Report;

/// Which runtime runs: selects the known-failure markers that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Amber,
    Runc,
    Other,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    pub path: PathBuf,
    pub name: String,
    pub kind: Kind,
}

impl Runtime {
    /// `amber` (the repo's debug build), `runc` (from PATH) or a path. A path is amber when its
    /// file name or the first line of `--version` says so.
    pub fn resolve(arg: &str, repo: &Path) -> Result<Runtime, String> {
        let path = match arg {
            "amber" => repo.join("target/debug/amber"),
            "runc" => which("runc").ok_or("runc not found in PATH")?,
            p if p.contains('/') => PathBuf::from(p),
            p => which(p).ok_or(format!("{p} not found in PATH"))?,
        };
        if !path.is_file() {
            return Err(format!("runtime {} not found", path.display()));
        }
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let version = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let first = version.lines().next().unwrap_or("").to_string();
        let kind = if file.contains("amber") || first.contains("amber") {
            Kind::Amber
        } else if file.contains("runc") || first.contains("runc") {
            Kind::Runc
        } else {
            Kind::Other
        };
        let name = match kind {
            Kind::Amber => "amber".to_string(),
            Kind::Runc => "runc".to_string(),
            Kind::Other => file,
        };
        Ok(Runtime { path, name, kind })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(|d| Path::new(d).join(name)))
        .find(|p| p.is_file())
}

/// Facts shared by every test of one run.
pub struct Env {
    pub rt: Runtime,
    /// The static helper binary (copied into each bundle).
    pub helper: PathBuf,
    /// The busybox rootfs copy with `/rs`, `/out` and the test symlinks.
    pub rootfs: PathBuf,
    /// The harness's own namespaces (the host's): type -> inode.
    pub host_ns: BTreeMap<String, u64>,
}

impl Env {
    pub fn new(rt: Runtime, helper: PathBuf, rootfs: PathBuf) -> Env {
        let mut host_ns = BTreeMap::new();
        for t in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
            if let Some(ino) = ns_inode(&format!("/proc/self/ns/{t}")) {
                host_ns.insert(t.to_string(), ino);
            }
        }
        Env {
            rt,
            helper,
            rootfs,
            host_ns,
        }
    }

    pub fn host_ns(&self, t: &str) -> u64 {
        self.host_ns.get(t).copied().unwrap_or(0)
    }

    /// `<runtime> args...` without a `--root` (for `features`, `--version`...).
    pub fn runtime_cmd(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.rt.path);
        cmd.args(args);
        exec::run(cmd, CMD_TIMEOUT)
    }
}

/// The inode number of a namespace link ("net:[4026531840]").
pub fn ns_inode(link: &str) -> Option<u64> {
    let t = fs::read_link(link).ok()?;
    let t = t.to_string_lossy();
    let start = t.find('[')? + 1;
    let end = t.find(']')?;
    t[start..end].parse().ok()
}

/// Collects what the cases of one test left behind.
#[derive(Default)]
pub struct Leftovers(pub RefCell<Vec<String>>);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique container id (also the cgroup name): `amber-rs-<pid>-<n>`.
pub fn unique_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("amber-rs-{}-{n}", std::process::id())
}

/// The config every test starts from: `runc spec` (1.1.5) with a read-only absolute rootfs, no
/// terminal, a cgroup namespace, the helper bound at `/rs` and `cgroupsPath` `/<id>`.
pub fn base_config(env: &Env, id: &str, helper_dir: &Path) -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/rs/report"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
                "HOME=/root"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": env.rootfs.to_string_lossy(), "readonly": true },
        "hostname": "rs",
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
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
            { "destination": "/rs", "type": "bind", "source": helper_dir.to_string_lossy(),
              "options": ["rbind", "ro", "nosuid", "nodev"] }
        ],
        "linux": {
            "cgroupsPath": format!("/{id}"),
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
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

/// A container under test.
pub struct Case<'a> {
    pub env: &'a Env,
    left: &'a Leftovers,
    pub id: String,
    dir: TempDir,
    pub config: Value,
    /// Raw text written instead of `config` (invalid fixtures).
    pub raw_config: Option<String>,
    pids: RefCell<Vec<i32>>,
    created: RefCell<bool>,
}

impl<'a> Case<'a> {
    pub fn new(env: &'a Env, left: &'a Leftovers) -> Result<Case<'a>, String> {
        let id = unique_id();
        let dir = tempfile::Builder::new()
            .prefix("amber-rs-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let d = dir.path();
        for sub in ["bundle/rs", "state", "out"] {
            fs::create_dir_all(d.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        // The container may run as any uid: let it reach /out and the helper.
        for sub in ["", "bundle", "bundle/rs"] {
            set_mode(&d.join(sub), 0o755);
        }
        set_mode(&d.join("out"), 0o777);
        fs::copy(&env.helper, d.join("bundle/rs/report")).map_err(|e| format!("copying the helper: {e}"))?;
        let config = base_config(env, &id, &d.join("bundle/rs"));
        Ok(Case {
            env,
            left,
            id,
            dir,
            config,
            raw_config: None,
            pids: RefCell::new(Vec::new()),
            created: RefCell::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir().join("bundle")
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// Host side of `/out` (see [`Case::share_out`]).
    pub fn out(&self) -> PathBuf {
        self.dir().join("out")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir().join("pid")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.dir().join("stdout")
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.stdout_path()).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir().join("stderr")).unwrap_or_default()
    }

    // ---- config editing

    /// Set the value at a JSON pointer, creating objects on the way.
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

    /// Append to the array at a JSON pointer (created if missing).
    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        if !self.config.pointer(pointer).is_some_and(Value::is_array) {
            self.set(pointer, json!([]));
        }
        if let Some(a) = self.config.pointer_mut(pointer).and_then(Value::as_array_mut) {
            a.push(value);
        }
        self
    }

    pub fn mount(&mut self, dest: &str, typ: &str, source: &str, options: &[&str]) -> &mut Self {
        self.push(
            "/mounts",
            json!({ "destination": dest, "type": typ, "source": source, "options": options }),
        )
    }

    pub fn remove_mount(&mut self, dest: &str) -> &mut Self {
        if let Some(a) = self.config["mounts"].as_array_mut() {
            a.retain(|m| m["destination"] != dest);
        }
        self
    }

    pub fn namespace(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(typ);
        let v = match path {
            Some(p) => json!({ "type": typ, "path": p }),
            None => json!({ "type": typ }),
        };
        self.push("/linux/namespaces", v)
    }

    pub fn remove_namespace(&mut self, typ: &str) -> &mut Self {
        if let Some(a) = self.config["linux"]["namespaces"].as_array_mut() {
            a.retain(|n| n["type"] != typ);
        }
        self
    }

    /// Bind the case's `out/` read-write at `/out` in the container.
    pub fn share_out(&mut self) -> &mut Self {
        let src = self.out().to_string_lossy().into_owned();
        self.mount("/out", "bind", &src, &["rbind", "rw"])
    }

    /// process.args = the helper with these flags.
    pub fn helper_args(&mut self, args: &[&str]) -> &mut Self {
        let mut v = vec!["/rs/report".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        self.set("/process/args", json!(v))
    }

    pub fn write_config(&self) -> Result<(), String> {
        let text = match &self.raw_config {
            Some(t) => t.clone(),
            None => serde_json::to_string_pretty(&self.config).map_err(|e| e.to_string())?,
        };
        fs::write(self.bundle().join("config.json"), text).map_err(|e| format!("writing config.json: {e}"))
    }

    // ---- runtime commands

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.env.rt.path);
        cmd.arg("--root").arg(self.root()).args(args);
        cmd
    }

    /// `<runtime> --root R args...`, output captured.
    pub fn rt(&self, args: &[&str]) -> Output {
        let out = exec::run(self.cmd(args), CMD_TIMEOUT);
        self.note_pid_file();
        out
    }

    /// Run with the container's console files as stdout/stderr (appended).
    fn rt_console(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = self.cmd(args);
        let what = exec::describe(&cmd);
        let open = |p: PathBuf| OpenOptions::new().create(true).append(true).open(p);
        let (o, e) = match (open(self.stdout_path()), open(self.dir().join("stderr"))) {
            (Ok(o), Ok(e)) => (o, e),
            _ => {
                return Output {
                    cmd: what,
                    code: None,
                    signal: None,
                    timed_out: false,
                    stdout: String::new(),
                    stderr: "cannot open console files".into(),
                }
            }
        };
        cmd.stdin(Stdio::null()).stdout(o).stderr(e);
        *self.created.borrow_mut() = true;
        let st = match cmd.spawn() {
            Ok(mut child) => {
                drop(cmd);
                exec::wait_bounded(&mut child, timeout)
            }
            Err(e) => {
                return Output {
                    cmd: what,
                    code: None,
                    signal: None,
                    timed_out: false,
                    stdout: String::new(),
                    stderr: format!("cannot spawn: {e}"),
                }
            }
        };
        self.note_pid_file();
        Output {
            cmd: what,
            code: st.and_then(|s| s.code()),
            signal: st.and_then(|s| s.signal()),
            timed_out: st.is_none(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }

    /// Write config.json and run `run --bundle B --pid-file P ID` in the foreground.
    pub fn run(&self) -> Output {
        if let Err(e) = self.write_config() {
            return config_error(e);
        }
        let b = self.bundle().to_string_lossy().into_owned();
        let p = self.pid_file().to_string_lossy().into_owned();
        self.rt_console(&["run", "--bundle", &b, "--pid-file", &p, &self.id], CMD_TIMEOUT)
    }

    /// Write config.json and run `create --bundle B --pid-file P [extra] ID`.
    pub fn create_with(&self, extra: &[&str]) -> Output {
        if let Err(e) = self.write_config() {
            return config_error(e);
        }
        let b = self.bundle().to_string_lossy().into_owned();
        let p = self.pid_file().to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", &b, "--pid-file", &p];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.rt_console(&args, CMD_TIMEOUT)
    }

    pub fn create(&self) -> Output {
        self.create_with(&[])
    }

    pub fn start(&self) -> Output {
        self.rt(&["start", &self.id])
    }

    pub fn kill(&self, sig: &str) -> Output {
        self.rt(&["kill", &self.id, sig])
    }

    pub fn delete(&self) -> Output {
        self.rt(&["delete", &self.id])
    }

    /// Parsed `state`, or the failed command.
    pub fn state(&self) -> Result<Value, String> {
        let out = self.rt(&["state", &self.id]);
        out.check()?;
        let v: Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("state is not JSON ({e}): {}", out.stdout))?;
        if let Some(pid) = v["pid"].as_i64().filter(|p| *p > 0) {
            self.note_pid(pid as i32);
        }
        Ok(v)
    }

    pub fn status(&self) -> Option<String> {
        self.state().ok().and_then(|v| v["status"].as_str().map(str::to_string))
    }

    /// Wait (bounded) until `state` says `status`.
    pub fn wait_status(&self, status: &str) -> Result<(), String> {
        let mut last = None;
        if exec::wait_for(Duration::from_secs(10), || {
            last = self.status();
            last.as_deref() == Some(status)
        }) {
            Ok(())
        } else {
            Err(format!("container never reached status {status:?} (last: {last:?})"))
        }
    }

    /// Wait until the container's stdout holds a complete line containing `needle`.
    pub fn wait_stdout(&self, needle: &str) -> Result<String, String> {
        let mut last = String::new();
        if exec::wait_for(Duration::from_secs(10), || {
            last = self.stdout();
            last.lines().any(|l| l.contains(needle)) && last.ends_with('\n')
        }) {
            Ok(last)
        } else {
            Err(format!("container stdout never showed {needle:?}: {:?}", clip(&last)))
        }
    }

    /// The first line of the container's stdout as a report.
    pub fn stdout_report(&self) -> Result<Report, String> {
        let out = self.stdout();
        let line = out.lines().find(|l| l.starts_with('{')).ok_or_else(|| {
            format!(
                "the helper printed no report; stdout: {:?}; stderr: {:?}",
                clip(&out),
                clip(&self.stderr())
            )
        })?;
        Report::parse(line)
    }

    /// Run the container (process.args as set, normally the helper) in the foreground;
    /// require success and return the helper's report.
    pub fn probe(&self) -> Result<Report, String> {
        let out = self.run();
        if !out.ok() {
            return Err(format!("run failed: {out}"));
        }
        self.stdout_report()
    }

    /// The init pid written to the pid file.
    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn note_pid_file(&self) {
        if let Some(p) = self.pid() {
            self.note_pid(p);
        }
    }

    pub fn note_pid(&self, pid: i32) {
        let mut pids = self.pids.borrow_mut();
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }

    /// What this case left behind; each thing found is also removed.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        // state dir
        let sd = self.root().join(&self.id);
        if sd.exists() {
            found.push(format!("state dir {}", sd.display()));
        }
        // processes (pid files are read before the dir goes; a pid is ours only while its
        // cgroup names the container, which guards against pid reuse)
        for &pid in self.pids.borrow().iter() {
            let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if cg.contains(&self.id) && !is_zombie(pid) {
                found.push(format!("process {pid}"));
                // SAFETY: plain kill(2) of a process inside this test's cgroup.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        // cgroups
        for dir in cgroup_dirs(&self.id) {
            found.push(format!("cgroup {}", dir.display()));
            remove_cgroup(&dir);
        }
        // mounts naming the case directory
        let d = self.dir().to_string_lossy().into_owned();
        if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
            for l in mi.lines() {
                if let Some(mp) = l.split(' ').nth(4) {
                    if mp.starts_with(&d) {
                        found.push(format!("mount {mp}"));
                        let _ = Command::new("umount").arg("-l").arg(mp).stderr(Stdio::null()).status();
                    }
                }
            }
        }
        found
    }
}

fn config_error(e: String) -> Output {
    Output {
        cmd: "write config".into(),
        code: None,
        signal: None,
        timed_out: false,
        stdout: String::new(),
        stderr: e,
    }
}

impl Drop for Case<'_> {
    fn drop(&mut self) {
        if *self.created.borrow() {
            let _ = self.rt(&["delete", "--force", &self.id]);
        }
        let found = self.leftovers();
        if !found.is_empty() {
            self.left.0.borrow_mut().push(format!(
                "{} ({}) left behind: {}",
                self.id,
                self.env.rt.name,
                found.join(", ")
            ));
        }
    }
}

pub fn clip(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut cut = 600;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode));
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].trim().chars().next()))
        .is_none_or(|c| c == 'Z' || c == 'X')
}

/// Directories named `name` anywhere in the first levels below /sys/fs/cgroup.
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, name: &str, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy() == name {
                out.push(p);
            } else if depth > 0 {
                walk(&p, depth - 1, name, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 4, name, &mut out);
    out
}

fn remove_cgroup(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
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
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        std::thread::sleep(Duration::from_millis(20));
    }
}
