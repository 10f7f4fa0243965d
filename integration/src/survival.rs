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

fn tmp_name(dest: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let file = dest.file_name().expect("file name").to_string_lossy();
    dest.with_file_name(format!(".{file}.tmp.{}.{n}", std::process::id()))
}

/// Build `integration/survival/<name>.c` into `target/survival/<name>` if the binary is missing
/// or older than the source or `survival.h`; returns the binary. Safe when several test binaries
/// build at once (each builds to its own temp name and renames).
pub fn build(name: &str) -> PathBuf {
    let src = source_dir().join(format!("{name}.c"));
    let header = source_dir().join("survival.h");
    assert!(src.is_file(), "no survival program {}", src.display());
    let dir = build_dir();
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let bin = dir.join(name);
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
    let dir = build_dir();
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let dest = dir.join(file);
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

/// The container's processes: (host pid, NSpid vector from the container's pid ns inwards),
/// sorted by vector. Uses `ps --format json` for the host pids and the init (from `state`) for
/// the container's level.
pub fn container_pids(c: &Container) -> Vec<(i32, Vec<i32>)> {
    let init = c.pid();
    let levels = host_nspid(init).len();
    assert!(levels > 0, "container init {init} has no NSpid");
    let ps = c.rt(&["ps", "--format", "json", &c.id]);
    ps.assert_ok();
    let pids: Vec<i32> =
        serde_json::from_str(ps.stdout.trim()).unwrap_or_else(|e| panic!("ps output is not a JSON array ({e}): {ps}"));
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

fn read_opt(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
}

/// Run `name` in `place`, checkpoint (kill), restore, signal it and require `PASS`.
#[track_caller]
pub fn survive(name: &str, place: Place) {
    survive_with(name, place, &Opts::default())
}

/// [`survive`] with options (extra args, bundle edits, an interpreter for scripts).
#[track_caller]
pub fn survive_with(name: &str, place: Place, opts: &Opts) {
    if !is_amber() {
        eprintln!("skipped: native checkpoint/restore is amber's (runc needs CRIU)");
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
    let out = tempfile::Builder::new()
        .prefix("amber-it-sv-out.")
        .tempdir_in("/tmp")
        .expect("out tempdir");
    let images = tempfile::Builder::new()
        .prefix("amber-it-sv-img.")
        .tempdir_in("/tmp")
        .expect("image tempdir");
    // the container may run as another user: let it write its results
    fs::set_permissions(out.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod out");

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
    let bundle_s = c.bundle.path_str();
    let img = images.path().join("img");
    let work = images.path().join("work");
    let img_s = img.to_string_lossy().into_owned();
    let work_s = work.to_string_lossy().into_owned();
    let result_file = out.path().join(format!("{name}.result"));
    let exit_file = out.path().join(format!("{name}.exit"));
    let logs = || {
        format!(
            "--- result ---\n{}\n--- container stderr ---\n{}\n--- container stdout ---\n{}\n--- dump.log ---\n{}\n--- restore.log ---\n{}",
            read_opt(&result_file),
            c.stderr(),
            c.stdout(),
            read_opt(&work.join("dump.log")),
            read_opt(&work.join("restore.log"))
        )
    };
    let ready_file = out.path().join(format!("{name}.ready"));
    // An early result (the program failed its own setup) is reported as such.
    let early = |what: &str| -> String {
        format!(
            "{what} ({name}, {place:?})\nexit: {}\nstate: {}\n{}",
            read_opt(&exit_file),
            c.rt(&["state", &c.id]),
            logs()
        )
    };

    c.run_console(c.command(&["run", "-d", "--bundle", &bundle_s, &c.id]), &[])
        .assert_ok();
    let deadline = Instant::now() + opts.ready_timeout;
    // complete once the first line is (a program writing it non-atomically, e.g. a shell builtin)
    while !fs::read_to_string(&ready_file).unwrap_or_default().contains('\n') {
        if Instant::now() >= deadline || result_file.exists() || exit_file.exists() {
            panic!("{}", early("the program did not become ready"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = fs::read_to_string(&ready_file).expect("read ready file");
    let target: i32 = ready
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("ready file of {name} does not start with a pid: {ready:?}"));
    let before = container_pids(&c);
    let vectors = |v: &[(i32, Vec<i32>)]| v.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>();
    assert!(
        before.iter().any(|(_, v)| v[0] == target),
        "the ready pid {target} of {name} is not a process of the container: {before:?}"
    );
    if place == Place::Init {
        assert_eq!(target, 1, "{name} as init must be pid 1");
    } else {
        assert!(before.len() >= 3, "deep: expected sh -> sh -> {name}: {before:?}");
    }

    // every process seen must be gone after the checkpoint
    let mut seen = before.clone();
    let before = if opts.tree_changes {
        // the long-lived processes: there at the ready file and still there now
        let now = container_pids(&c);
        seen.extend(now.iter().cloned());
        before.into_iter().filter(|p| now.contains(p)).collect()
    } else {
        before
    };
    assert!(
        before.iter().any(|(_, v)| v[0] == target),
        "{name} ({target}) exited before the checkpoint\n{}",
        logs()
    );
    let starts: Vec<(i32, Option<u64>)> = seen.iter().map(|(p, _)| (*p, proc_start_time(*p))).collect();
    let cp = c.rt(&["checkpoint", "--image-path", &img_s, "--work-path", &work_s, &c.id]);
    assert!(cp.ok(), "checkpoint of {name} ({place:?}) failed: {cp}\n{}", logs());
    // the dumped tree is gone (a zombie waiting for its reaper counts as gone)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
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
            "after checkpoint (kill) of {name}, processes {alive:?} are still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.state().assert_fail();
    assert!(
        !result_file.exists(),
        "{name} wrote its result before it was signalled: {}",
        read_opt(&result_file)
    );

    let restore = c.command(&[
        "restore",
        "-d",
        "--bundle",
        &bundle_s,
        "--image-path",
        &img_s,
        "--work-path",
        &work_s,
        &c.id,
    ]);
    let r = c.run_console(restore, &[]);
    assert!(r.ok(), "restore of {name} ({place:?}) failed: {r}\n{}", logs());
    let st = c.state_json();
    assert_eq!(st["status"], "running", "restored {name}: {st}\n{}", logs());
    let after = container_pids(&c);
    let (got, want) = if opts.tree_changes {
        // the long-lived processes all came back (the others are free to come and go)
        let v = vectors(&after);
        (
            vectors(&before).into_iter().filter(|x| v.contains(x)).collect(),
            vectors(&before),
        )
    } else {
        (vectors(&after), vectors(&before))
    };
    assert_eq!(
        got,
        want,
        "{name} ({place:?}): container-level NSpid vectors changed across checkpoint/restore\n{}",
        logs()
    );
    let host = after
        .iter()
        .find(|(_, v)| v[0] == target)
        .map(|(p, _)| *p)
        .expect("target found above");
    // SAFETY: kill(2) of the restored program, a process of this test's container.
    let rc = unsafe { libc::kill(host, libc::SIGUSR2) };
    assert_eq!(rc, 0, "kill({host}, SIGUSR2): {}", std::io::Error::last_os_error());

    let deadline = Instant::now() + opts.result_timeout;
    while !result_file.exists() {
        // a program that died (or exited without a result) will not write one any more
        let gone = match place {
            Place::Init => c.status().as_deref() != Some("running"),
            Place::Deep => exit_file.exists(),
        };
        if gone {
            std::thread::sleep(Duration::from_millis(100));
            if !result_file.exists() {
                panic!("{}", early("the program ended without a result after SIGUSR2"));
            }
        }
        if Instant::now() >= deadline {
            panic!("{}", early("no result after SIGUSR2"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = fs::read_to_string(&result_file).expect("read result file");
    assert!(
        result.trim_end() == "PASS",
        "{name} ({place:?}) did not survive checkpoint/restore: {}\n{}",
        result.trim_end(),
        logs()
    );
    // and it exits 0 afterwards
    match place {
        Place::Init => {
            wait_for_timeout(&format!("{name} (init) to exit"), Duration::from_secs(10), || {
                c.status().as_deref() != Some("running")
            });
        }
        Place::Deep => {
            wait_for_timeout(&format!("{name} to exit"), Duration::from_secs(10), || {
                exit_file.exists()
            });
            let code = fs::read_to_string(&exit_file).unwrap_or_default();
            assert_eq!(code.trim(), "0", "{name} exited {code:?} after PASS\n{}", logs());
        }
    }
}
