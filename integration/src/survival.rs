//! Survival programs (zdtm style, CHECKPOINT.md §6): a program sets up state, says it is ready,
//! is checkpointed, killed and restored, then gets SIGUSR2 and checks its state survived.
//!
//! Programs live in `integration/survival/`: `<name>.c` (built with `gcc -O2 -static -Wall
//! -Werror` against `survival.h` into `<repo>/target/survival/`), or any other file `<name>.<ext>`
//! (a script, copied there) run through [`Opts::interpreter`]. The protocol is in `survival.h`:
//! argv[1] is the output dir (`/out`), the program writes `/out/<name>.ready` (first line: its pid
//! in the container; ready once that line is complete), waits for SIGUSR2, then writes `/out/<name>.result` (`PASS` or `FAIL: ...`).
//!
//! [`survive`] runs a program as the container's init ([`Place::Init`]) or as a grandchild of it
//! ([`Place::Deep`]: init sh -> sh -> program), checkpoints the container (kill), checks the old
//! tree is gone, restores it under the same id, checks every process came back at the same
//! container-level pids, signals the program and requires `PASS`.

use crate::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Where the program runs in the container's process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The program is the container's init (pid 1).
    Init,
    /// The program is a grandchild of the init: `sh -c "sh -c 'program; echo $? >exit'; sleep"`.
    Deep,
}

/// How the checkpoint is taken and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// `checkpoint` (the tree is killed), then `restore` under the same id.
    #[default]
    Kill,
    /// `checkpoint --leave-running`: the original goes on and must pass; then the image is
    /// restored as a fresh container (a new id, a copy of the output dir as it was at the
    /// checkpoint), which must pass too.
    LeaveRunningClone,
    /// Kill and restore, then checkpoint (kill) the restored tree and restore it again: state
    /// the engine restores once but would not dump right again shows up here.
    KillTwice,
}

/// Options for [`survive_with`].
pub struct Opts<'a> {
    /// Extra arguments after the output dir.
    pub args: Vec<String>,
    /// Edit the bundle (extra mounts, env, ...) before the container is created.
    pub edit_bundle: Option<&'a dyn Fn(&mut Bundle)>,
    /// Run the program file through this interpreter (`["/usr/bin/bash"]` for `<name>.sh`): the
    /// argv becomes `interpreter... /t/<file> /out args...`. `None`: a C program, `<name>.c`.
    pub interpreter: Option<Vec<String>>,
    /// The program starts and ends children all the time (a shell loop running commands): only
    /// the processes that live from the ready file to the checkpoint must come back at their
    /// pids (others may have come and gone). `false`: the whole tree must come back exactly.
    pub tree_changes: bool,
    /// Kill and restore (default), or leave running and clone.
    pub variant: Variant,
    /// How long the program may take to write its ready file.
    pub ready_timeout: Duration,
    /// How long it may take to write its result after SIGUSR2.
    pub result_timeout: Duration,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            args: Vec::new(),
            edit_bundle: None,
            interpreter: None,
            tree_changes: false,
            variant: Variant::Kill,
            ready_timeout: Duration::from_secs(20),
            result_timeout: Duration::from_secs(20),
        }
    }
}

/// `integration/survival`: the programs' sources and `survival.h`.
pub fn source_dir() -> PathBuf {
    repo_root().join("integration/survival")
}

/// `<repo>/target/survival`: built programs (bound read-only at `/t` in the container).
pub fn build_dir() -> PathBuf {
    repo_root().join("target/survival")
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Hold an exclusive flock on `target/survival/.lock` (threads and test binaries alike), so that
/// a program is built once and never replaced under a test that runs it.
fn build_lock() -> fs::File {
    use std::os::fd::AsRawFd;
    let dir = build_dir();
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let path = dir.join(".lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: flock(2) on a descriptor we own; the lock goes with the File.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}: {}", path.display(), std::io::Error::last_os_error());
    f
}

fn tmp_name(dest: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let file = dest.file_name().expect("file name").to_string_lossy();
    dest.with_file_name(format!(".{file}.tmp.{}.{n}", std::process::id()))
}

/// Build `integration/survival/<name>.c` into `target/survival/<name>` if the binary is missing
/// or older than the source or `survival.h`; returns the binary. Safe when several tests or test
/// binaries build at once (a lock file; the binary is built under a temp name and renamed).
pub fn build(name: &str) -> PathBuf {
    let src = source_dir().join(format!("{name}.c"));
    let header = source_dir().join("survival.h");
    assert!(src.is_file(), "no survival program {}", src.display());
    let _lock = build_lock();
    let bin = build_dir().join(name);
    let newest = mtime(&src).max(mtime(&header));
    if mtime(&bin).is_some_and(|b| Some(b) >= newest) {
        return bin;
    }
    let tmp = tmp_name(&bin);
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-static", "-Wall", "-Werror", "-I"])
        .arg(source_dir())
        .arg("-o")
        .arg(&tmp)
        .arg(&src);
    let out = run_captured(cmd, &[]);
    if !out.ok() {
        let _ = fs::remove_file(&tmp);
        panic!("building survival program {name}: {out}");
    }
    fs::rename(&tmp, &bin).unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), bin.display()));
    bin
}

/// Copy a non-C program `integration/survival/<file>` to `target/survival/<file>` (atomically,
/// when it changed); returns the copy.
pub fn stage(file: &str) -> PathBuf {
    let src = source_dir().join(file);
    assert!(src.is_file(), "no survival program {}", src.display());
    let _lock = build_lock();
    let dest = build_dir().join(file);
    if fs::read(&dest).ok() == fs::read(&src).ok() {
        return dest;
    }
    let tmp = tmp_name(&dest);
    fs::copy(&src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
    dest
}

/// The program file for `name`: `<name>.c` built, else the single `<name>.<ext>` staged.
fn program_file(name: &str, interpreted: bool) -> String {
    if !interpreted {
        build(name);
        return name.to_string();
    }
    let prefix = format!("{name}.");
    let file = fs::read_dir(source_dir())
        .expect("read integration/survival")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with(&prefix) && !f.ends_with(".c"))
        .unwrap_or_else(|| panic!("no script integration/survival/{name}.*"));
    stage(&file);
    file
}

/// `NSpid:` of a host pid, outermost first (empty when gone).
pub fn host_nspid(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("NSpid:"))
                .map(|l| l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect())
        })
        .unwrap_or_default()
}

/// The NSpid length of the container's init (its pid namespace's level, counted from the host)
/// and the host pids of the container's processes (`ps --format json`).
fn ps_levels(c: &Container) -> (usize, Vec<i32>) {
    let init = c.pid();
    let levels = host_nspid(init).len();
    assert!(levels > 0, "container init {init} has no NSpid");
    let ps = c.rt(&["ps", "--format", "json", &c.id]);
    ps.assert_ok();
    let pids: Vec<i32> =
        serde_json::from_str(ps.stdout.trim()).unwrap_or_else(|e| panic!("ps output is not a JSON array ({e}): {ps}"));
    (levels, pids)
}

/// The container's processes: (host pid, NSpid vector from the container's pid ns inwards),
/// sorted by vector. Uses `ps --format json` for the host pids and the init (from `state`) for
/// the container's level.
pub fn container_pids(c: &Container) -> Vec<(i32, Vec<i32>)> {
    let (levels, pids) = ps_levels(c);
    let mut out: Vec<(i32, Vec<i32>)> = pids
        .into_iter()
        .filter(|&p| !proc_is_zombie(p))
        .filter_map(|p| {
            c.note_pid(p);
            let v = host_nspid(p);
            (v.len() >= levels).then(|| (p, v[levels - 1..].to_vec()))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// One process of the container as the harness compares it across checkpoint/restore: all pids
/// relative to the container's pid namespace (0: outside it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Proc {
    /// NSpid from the container's level inwards.
    pub nspid: Vec<i32>,
    /// The parent's pid in the container (0 for the init, whose parent is outside).
    pub ppid: i32,
    /// Process group and session ids in the container (NSpgid/NSsid at its level).
    pub pgid: i32,
    pub sid: i32,
    /// 'Z' (zombie) or 'T' (stopped), '-' for everything else (running, sleeping...).
    pub state: char,
    /// The host pid (not compared).
    pub host: i32,
}

/// `Key:` of a /proc/<pid>/status as numbers.
fn status_nums(status: &str, key: &str) -> Vec<i32> {
    status
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .map(|l| {
            l[key.len() + 1..]
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The container's processes with their place in the tree (see [`Proc`]), sorted by NSpid.
/// Zombies are included; processes that vanish while being read are left out.
pub fn container_tree(c: &Container) -> Vec<Proc> {
    let (levels, pids) = ps_levels(c);
    let at = |v: Vec<i32>| v.get(levels - 1).copied().unwrap_or(0);
    let mut out: Vec<Proc> = pids
        .into_iter()
        .filter_map(|p| {
            c.note_pid(p);
            let st = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let nspid = status_nums(&st, "NSpid");
            if nspid.len() < levels {
                return None;
            }
            let parent = status_nums(&st, "PPid").first().copied().unwrap_or(0);
            let state = status_field(&st, "State")
                .and_then(|s| s.chars().next())
                .filter(|s| matches!(s, 'Z' | 'T'))
                .unwrap_or('-');
            Some(Proc {
                nspid: nspid[levels - 1..].to_vec(),
                ppid: at(host_nspid(parent)),
                pgid: at(status_nums(&st, "NSpgid")),
                sid: at(status_nums(&st, "NSsid")),
                state,
                host: p,
            })
        })
        .collect();
    out.sort();
    out
}

fn read_opt(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
}

/// Whether the runtime under test is amber (native checkpoint/restore); says the test is skipped
/// when it is not (runc needs CRIU, which is not here).
pub fn native_cr() -> bool {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
    }
    is_amber()
}

/// `#[test]` functions that each run [`survive_with`]: one line a test,
/// `name: "program", Place [+ Variant] [, opts];` (the opts default to [`Opts::default`], the
/// variant to theirs), with doc comments and attributes passed on:
///
/// ```ignore
/// survival_tests! {
///     signals_as_init: "signals", Init;
///     signals_deep_clone: "signals", Deep + LeaveRunningClone;
///     /// The checkpoint lands in the middle of the loop.
///     glibc_busy_deep: "glibc", Deep, glibc_opts("busy");
/// }
/// ```
#[macro_export]
macro_rules! survival_tests {
    (@opts) => { $crate::survival::Opts::default() };
    (@opts $opts:expr) => { $opts };
    ($($(#[$meta:meta])* $test:ident: $program:literal, $place:ident $(+ $variant:ident)? $(, $opts:expr)?;)*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $test() {
                let opts = $crate::survival_tests!(@opts $($opts)?);
                $(let opts = $crate::survival::Opts {
                    variant: $crate::survival::Variant::$variant,
                    ..opts
                };)?
                $crate::survival::survive_with($program, $crate::survival::Place::$place, &opts);
            }
        )*
    };
}

/// Run `name` in `place`, checkpoint (kill), restore, signal it and require `PASS`.
#[track_caller]
pub fn survive(name: &str, place: Place) {
    survive_with(name, place, &Opts::default())
}

/// [`survive`] with options (extra args, bundle edits, an interpreter for scripts, the variant).
#[track_caller]
pub fn survive_with(name: &str, place: Place, opts: &Opts) {
    if !native_cr() {
        return;
    }
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "survival program names are [A-Za-z0-9_-]: {name:?}"
    );
    let file = program_file(name, opts.interpreter.is_some());
    let images = tempfile::Builder::new()
        .prefix("amber-it-sv-img.")
        .tempdir_in("/tmp")
        .expect("image tempdir");
    let img = images.path().join("img");
    let work = images.path().join("work");
    let img_s = img.to_string_lossy().into_owned();
    let work_s = work.to_string_lossy().into_owned();
    let run = Run::new(name, &file, place, opts, &work, out_dir());
    run.start();
    let target = run.wait_ready();
    let before = run.tree(target);
    let what = format!("{name} ({place:?}, {:?})", opts.variant);

    match opts.variant {
        Variant::Kill => {
            run.checkpoint_kill(&before.seen, &img_s, &work_s);
            run.restore(&img_s, &work_s);
            run.go(&before, target);
        }
        Variant::KillTwice => {
            run.checkpoint_kill(&before.seen, &img_s, &work_s);
            run.restore(&img_s, &work_s);
            run.check_tree(&before, target);
            let seen: Vec<i32> = container_tree(&run.c).iter().map(|p| p.host).collect();
            let img2 = images.path().join("img2").to_string_lossy().into_owned();
            run.checkpoint_kill(&seen, &img2, &work_s);
            run.restore(&img2, &work_s);
            run.go(&before, target);
        }
        Variant::LeaveRunningClone => {
            let cp = run.c.rt(&[
                "checkpoint",
                "--leave-running",
                "--image-path",
                &img_s,
                "--work-path",
                &work_s,
                &run.c.id,
            ]);
            assert!(
                cp.ok(),
                "checkpoint --leave-running of {what} failed: {cp}\n{}",
                run.logs()
            );
            assert_eq!(
                run.c.status().as_deref(),
                Some("running"),
                "{what}: not running after checkpoint --leave-running\n{}",
                run.logs()
            );
            // the clone gets the output dir as it was at the checkpoint
            let out2 = out_dir();
            let mut cp = Command::new("cp");
            cp.arg("-a")
                .arg(format!("{}/.", run.out.path().display()))
                .arg(out2.path());
            run_captured(cp, &[]).assert_ok();
            // the original goes on untouched: same host processes, and it passes
            run.go(&before, target);
            // a fresh container from the image
            let clone = Run::new(name, &file, place, opts, &work, out2);
            clone.no_result_yet();
            clone.restore(&img_s, &work_s);
            clone.go(&before, target);
        }
    }
}

fn out_dir() -> tempfile::TempDir {
    let out = tempfile::Builder::new()
        .prefix("amber-it-sv-out.")
        .tempdir_in("/tmp")
        .expect("out tempdir");
    // the container may run as another user: let it write its results
    fs::set_permissions(out.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod out");
    out
}

/// A container whose checkpoint the engine must refuse (what it cannot restore is refused at dump,
/// naming the process, and the container is left running), with its output and image dirs.
pub struct Refusal {
    pub c: Container,
    /// Bound read-write at `/out`.
    pub out: tempfile::TempDir,
    images: tempfile::TempDir,
}

impl Refusal {
    /// Run `bundle` as container `id` (`run -d`), with a fresh output dir bound at `/out`.
    pub fn run(id: &str, mut bundle: Bundle) -> Self {
        let out = out_dir();
        let images = tempfile::Builder::new()
            .prefix("amber-it-sv-img.")
            .tempdir_in("/tmp")
            .expect("image tempdir");
        bundle.bind(out.path(), "/out", &["rw"]);
        let c = Container::new(id, bundle);
        c.bundle.write();
        let bundle_s = c.bundle.path_str();
        c.run_console(c.command(&["run", "-d", "--bundle", &bundle_s, &c.id]), &[])
            .assert_ok();
        Refusal { c, out, images }
    }

    /// Build survival program `name`, run `/t/<name> /out args...` as the init of container `id`
    /// and wait for its ready file; returns the run and the ready file's text.
    pub fn program(id: &str, name: &str, args: &[&str]) -> (Self, String) {
        build(name);
        let exe = format!("/t/{name}");
        let mut bundle = Bundle::new();
        bundle.args(&[&[exe.as_str(), "/out"], args].concat());
        bundle.bind(&build_dir(), "/t", &["ro"]);
        let r = Self::run(id, bundle);
        let ready = r.out.path().join(format!("{name}.ready"));
        wait_for_timeout("the program to be ready", Duration::from_secs(20), || {
            fs::read_to_string(&ready).is_ok_and(|s| s.ends_with('\n'))
        });
        let text = fs::read_to_string(&ready).expect("read ready file");
        (r, text)
    }

    /// Where `checkpoint` is told to write the image.
    pub fn img(&self) -> PathBuf {
        self.images.path().join("img")
    }

    /// `checkpoint` (kill) that must be refused: it fails, writes no image and leaves the container
    /// running. Returns its output, for the caller to check what the refusal names.
    pub fn checkpoint_refused(&self) -> Output {
        let img = self.img();
        let cp = self
            .c
            .rt(&["checkpoint", "--image-path", &img.to_string_lossy(), &self.c.id]);
        assert!(
            cp.code.is_some() && !cp.ok(),
            "the checkpoint should have been refused: {cp}"
        );
        assert!(!img.join("manifest.json").exists(), "no image after a refusal");
        assert_eq!(
            self.c.status().as_deref(),
            Some("running"),
            "the container keeps running"
        );
        cp
    }

    /// Signal program `name` (host pid `host`) with SIGUSR2 and require its result to be `PASS`:
    /// its state survived the refused checkpoint.
    pub fn pass_after(&self, name: &str, host: i32) {
        // SAFETY: kill(2) of the program, a process of this test's container.
        let rc = unsafe { libc::kill(host, libc::SIGUSR2) };
        assert_eq!(rc, 0, "kill({host}, SIGUSR2): {}", std::io::Error::last_os_error());
        let result = self.out.path().join(format!("{name}.result"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !result.exists() {
            assert!(
                Instant::now() < deadline,
                "no result after SIGUSR2: {}",
                self.c.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = fs::read_to_string(&result).expect("read result file");
        assert_eq!(
            text.trim_end(),
            "PASS",
            "{name}: state after the refused checkpoint: {text}\n{}",
            self.c.stderr()
        );
    }
}

/// The container's processes at the ready file: `procs` must come back (all of them, or with
/// [`Opts::tree_changes`] the long-lived ones), `seen` must be gone after a checkpoint (kill).
struct Tree {
    procs: Vec<Proc>,
    seen: Vec<i32>,
}

/// A process as compared (without its host pid).
fn strip(p: &Proc) -> Proc {
    Proc { host: 0, ..p.clone() }
}

/// One container running a survival program, with its own output dir.
struct Run<'a> {
    name: &'a str,
    place: Place,
    opts: &'a Opts<'a>,
    c: Container,
    out: tempfile::TempDir,
    work: &'a Path,
}

impl<'a> Run<'a> {
    fn new(
        name: &'a str,
        file: &str,
        place: Place,
        opts: &'a Opts<'a>,
        work: &'a Path,
        out: tempfile::TempDir,
    ) -> Self {
        let mut argv: Vec<String> = opts.interpreter.clone().unwrap_or_default();
        argv.push(format!("/t/{file}"));
        argv.push("/out".into());
        argv.extend(opts.args.iter().cloned());
        let args: Vec<String> = match place {
            Place::Init => argv,
            Place::Deep => {
                // Neither shell may exec away: each runs a command after the program's.
                let outer = format!("/bin/sh -c '\"$@\"; echo $? >/out/{name}.exit' sv \"$@\"; sleep 100000");
                let mut v = vec!["/bin/sh".to_string(), "-c".into(), outer, "sv".into()];
                v.extend(argv);
                v
            }
        };
        let mut bundle = Bundle::new();
        bundle.args(&args.iter().map(String::as_str).collect::<Vec<_>>());
        bundle.bind(&build_dir(), "/t", &["ro"]);
        bundle.bind(out.path(), "/out", &["rw"]);
        if let Some(edit) = opts.edit_bundle {
            edit(&mut bundle);
        }
        let c = Container::new(&format!("sv-{name}"), bundle);
        c.bundle.write();
        Run {
            name,
            place,
            opts,
            c,
            out,
            work,
        }
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.out.path().join(format!("{}.{ext}", self.name))
    }

    fn what(&self) -> String {
        format!(
            "{} ({:?}, {:?}, container {})",
            self.name, self.place, self.opts.variant, self.c.id
        )
    }

    fn logs(&self) -> String {
        format!(
            "--- result ---\n{}\n--- container stderr ---\n{}\n--- container stdout ---\n{}\n--- dump.log ---\n{}\n--- restore.log ---\n{}",
            read_opt(&self.file("result")),
            self.c.stderr(),
            self.c.stdout(),
            read_opt(&self.work.join("dump.log")),
            read_opt(&self.work.join("restore.log"))
        )
    }

    /// A failure message with the program's exit code, the container's state and the logs.
    fn early(&self, what: &str) -> String {
        format!(
            "{what}: {}\nexit: {}\nstate: {}\n{}",
            self.what(),
            read_opt(&self.file("exit")),
            self.c.rt(&["state", &self.c.id]),
            self.logs()
        )
    }

    fn start(&self) {
        let bundle = self.c.bundle.path_str();
        self.c
            .run_console(self.c.command(&["run", "-d", "--bundle", &bundle, &self.c.id]), &[])
            .assert_ok();
    }

    /// Wait for the ready file (complete once its first line is: a program may write it
    /// non-atomically, e.g. with a shell builtin); returns the pid in it.
    fn wait_ready(&self) -> i32 {
        let (ready, result, exit) = (self.file("ready"), self.file("result"), self.file("exit"));
        let deadline = Instant::now() + self.opts.ready_timeout;
        while !fs::read_to_string(&ready).unwrap_or_default().contains('\n') {
            if Instant::now() >= deadline || result.exists() || exit.exists() {
                panic!("{}", self.early("the program did not become ready"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = fs::read_to_string(&ready).expect("read ready file");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("ready file of {} does not start with a pid: {text:?}", self.name))
    }

    /// The tree at the ready file (see [`Tree`]).
    fn tree(&self, target: i32) -> Tree {
        let procs = container_tree(&self.c);
        assert!(
            procs.iter().any(|p| p.nspid[0] == target),
            "the ready pid {target} of {} is not a process of the container: {procs:?}",
            self.what()
        );
        if self.place == Place::Init {
            assert_eq!(target, 1, "{} as init must be pid 1", self.name);
        } else {
            assert!(procs.len() >= 3, "deep: expected sh -> sh -> {}: {procs:?}", self.name);
        }
        let mut seen: Vec<i32> = procs.iter().map(|p| p.host).collect();
        let procs = if self.opts.tree_changes {
            // the long-lived processes: there at the ready file and still there now
            let now = container_tree(&self.c);
            seen.extend(now.iter().map(|p| p.host));
            procs.into_iter().filter(|p| now.contains(p)).collect()
        } else {
            procs
        };
        assert!(
            procs.iter().any(|p| p.nspid[0] == target),
            "{} ({target}) exited before the checkpoint\n{}",
            self.what(),
            self.logs()
        );
        Tree { procs, seen }
    }

    fn no_result_yet(&self) {
        assert!(
            !self.file("result").exists(),
            "{} wrote its result before it was signalled: {}",
            self.what(),
            read_opt(&self.file("result"))
        );
    }

    /// `checkpoint` (kill): the processes `seen` (host pids) are gone afterwards, the container
    /// is gone, the program has not written its result.
    fn checkpoint_kill(&self, seen: &[i32], img: &str, work: &str) {
        let starts: Vec<(i32, Option<u64>)> = seen.iter().map(|&p| (p, proc_start_time(p))).collect();
        let cp = self
            .c
            .rt(&["checkpoint", "--image-path", img, "--work-path", work, &self.c.id]);
        assert!(cp.ok(), "checkpoint of {} failed: {cp}\n{}", self.what(), self.logs());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // a zombie waiting for its reaper counts as gone
            let alive: Vec<i32> = starts
                .iter()
                .filter(|(p, t)| t.is_some() && proc_start_time(*p) == *t && !proc_is_zombie(*p))
                .map(|(p, _)| *p)
                .collect();
            if alive.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after checkpoint (kill) of {}, processes {alive:?} are still alive",
                self.what()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.c.state().assert_fail();
        self.no_result_yet();
    }

    /// `restore -d` the image into this run's container (its id and bundle).
    fn restore(&self, img: &str, work: &str) {
        let bundle = self.c.bundle.path_str();
        let restore = self.c.command(&[
            "restore",
            "-d",
            "--bundle",
            &bundle,
            "--image-path",
            img,
            "--work-path",
            work,
            &self.c.id,
        ]);
        let r = self.c.run_console(restore, &[]);
        assert!(r.ok(), "restore of {} failed: {r}\n{}", self.what(), self.logs());
        let st = self.c.state_json();
        assert_eq!(
            st["status"],
            "running",
            "restored {}: {st}\n{}",
            self.what(),
            self.logs()
        );
    }

    /// Check the tree came back as `before`; returns the host pid of the program.
    fn check_tree(&self, before: &Tree, target: i32) -> i32 {
        let after = container_tree(&self.c);
        let mut want: Vec<Proc> = before.procs.iter().map(strip).collect();
        // with tree_changes, short-lived processes may exit at any time after the restore: every
        // one still there must be as it was, and the program and its ancestors must be there
        let got: Vec<Proc> = after
            .iter()
            .filter(|p| !self.opts.tree_changes || want.iter().any(|w| w.nspid == p.nspid))
            .map(strip)
            .collect();
        if self.opts.tree_changes {
            let mut keep = vec![target];
            while let Some(parent) = want
                .iter()
                .find(|w| w.nspid[0] == *keep.last().unwrap())
                .map(|w| w.ppid)
            {
                if parent == 0 || keep.contains(&parent) {
                    break;
                }
                keep.push(parent);
            }
            want.retain(|w| keep.contains(&w.nspid[0]) || got.iter().any(|g| g.nspid == w.nspid));
        }
        assert_eq!(
            got,
            want,
            "{}: the process tree (container-level NSpid, parent, pgid, sid, Z/T state) changed across checkpoint/restore\n{}",
            self.what(),
            self.logs()
        );
        after
            .iter()
            .find(|p| p.nspid[0] == target)
            .map(|p| p.host)
            .expect("target found above")
    }

    /// Check the tree came back as `before`, signal the program, require PASS and exit 0.
    fn go(&self, before: &Tree, target: i32) {
        let host = self.check_tree(before, target);
        // SAFETY: kill(2) of the program, a process of this test's container.
        let rc = unsafe { libc::kill(host, libc::SIGUSR2) };
        assert_eq!(rc, 0, "kill({host}, SIGUSR2): {}", std::io::Error::last_os_error());

        let (result_file, exit_file) = (self.file("result"), self.file("exit"));
        let deadline = Instant::now() + self.opts.result_timeout;
        while !result_file.exists() {
            // a program that died (or exited without a result) will not write one any more
            let gone = match self.place {
                Place::Init => self.c.status().as_deref() != Some("running"),
                Place::Deep => exit_file.exists(),
            };
            if gone {
                std::thread::sleep(Duration::from_millis(100));
                if !result_file.exists() {
                    panic!("{}", self.early("the program ended without a result after SIGUSR2"));
                }
            }
            if Instant::now() >= deadline {
                panic!("{}", self.early("no result after SIGUSR2"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let result = fs::read_to_string(&result_file).expect("read result file");
        assert!(
            result.trim_end() == "PASS",
            "{} did not survive checkpoint/restore: {}\n{}",
            self.what(),
            result.trim_end(),
            self.logs()
        );
        // and it exits 0 afterwards
        match self.place {
            Place::Init => {
                wait_for_timeout(
                    &format!("{} (init) to exit", self.what()),
                    Duration::from_secs(10),
                    || self.c.status().as_deref() != Some("running"),
                );
            }
            Place::Deep => {
                // The shell's `echo $? >file` creates the file before it writes to it.
                wait_for_timeout(&format!("{} to exit", self.what()), Duration::from_secs(10), || {
                    fs::read_to_string(&exit_file).is_ok_and(|s| s.ends_with('\n'))
                });
                let code = fs::read_to_string(&exit_file).unwrap_or_default();
                assert_eq!(
                    code.trim(),
                    "0",
                    "{} exited {code:?} after PASS\n{}",
                    self.what(),
                    self.logs()
                );
            }
        }
    }
}
