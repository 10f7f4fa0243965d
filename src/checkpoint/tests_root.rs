//! As root, end to end: a busybox shell counting into a file (and its `sleep` child) in its own
//! pid namespace is dumped, killed and restored at the same pids; it must keep counting from
//! where it was and still run its TERM trap. Corrupt images must be refused before anything is
//! cloned. The same tree started with reduced credentials (setpriv) gets them back exactly.
//! Skips with a message when not root or without /bin/busybox (or /usr/bin/setpriv).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::dump::{dump_tree, DumpOptions};
use super::restore::{restore, PidNamespace, RestoreOptions};
use super::{image, CheckpointError};
use crate::spawn::{spawn, SpawnPlan};

pub(super) const BUSYBOX: &str = "/bin/busybox";
pub(super) const SCRIPT: &str = "trap 'exit 7' TERM; i=0; while :; do i=$((i+1)); echo $i > count; sleep 0.3; done";

pub(super) fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root");
    }
    if !Path::new(BUSYBOX).exists() {
        return Some("no /bin/busybox");
    }
    None
}

/// The counting shell as pid 1 of a new pid namespace, session leader, stdio on /dev/null,
/// cwd = `dir`. Returns its host pid (a child of this test process).
fn spawn_counter(dir: &Path) -> i32 {
    spawn_script(dir, true, SCRIPT)
}

fn spawn_script(dir: &Path, new_pidns: bool, script: &str) -> i32 {
    spawn_argv(dir, new_pidns, &[BUSYBOX, "sh", "-c", script])
}

fn spawn_argv(dir: &Path, new_pidns: bool, argv: &[&str]) -> i32 {
    spawn_with(
        dir,
        argv,
        &Launch {
            new_pidns,
            ..Launch::default()
        },
    )
}

/// `spawn_counter`, with `fd` (a descriptor of ours) installed as the shell's fd 5.
fn spawn_counter_with_fd5(dir: &Path, fd: &impl std::os::fd::AsRawFd) -> i32 {
    let how = Launch {
        new_pidns: true,
        fd5: Some(fd.as_raw_fd()),
        ..Launch::default()
    };
    spawn_with(dir, &[BUSYBOX, "sh", "-c", SCRIPT], &how)
}

/// How [`spawn_with`] starts a program (always a session leader, stdio on /dev/null).
#[derive(Default)]
pub(super) struct Launch {
    /// As pid 1 of a new pid namespace.
    pub(super) new_pidns: bool,
    /// In a new mount namespace too, with a /proc of its own pid namespace (so that pids in a
    /// script resolve there).
    pub(super) own_proc: bool,
    /// A descriptor of ours, installed as the program's fd 5.
    pub(super) fd5: Option<i32>,
}

/// Start `argv` in `dir` as `how` says. Returns its host pid (a child of this test process).
pub(super) fn spawn_with(dir: &Path, argv: &[&str], how: &Launch) -> i32 {
    let prog = CString::new(argv[0]).unwrap();
    let argv: Vec<CString> = argv.iter().map(|s| CString::new(*s).unwrap()).collect();
    let dir = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let plan = SpawnPlan {
        new_namespaces: if how.new_pidns { crate::sys::CLONE_NEWPID } else { 0 }
            | if how.own_proc { crate::sys::CLONE_NEWNS } else { 0 },
        set_tid: vec![],
        cgroup_fd: None,
        joins: vec![],
        time_offsets: None,
    };
    let (own_proc, fd5) = (how.own_proc, how.fd5);
    let child = spawn(&plan, || {
        use nix::mount::{mount, MsFlags};
        if own_proc {
            let none: Option<&str> = None;
            if mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).is_err()
                || mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), none).is_err()
            {
                return 126;
            }
        }
        let _ = nix::unistd::setsid();
        let null =
            nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, nix::sys::stat::Mode::empty()).unwrap_or(-1);
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null, fd);
        }
        let _ = crate::sys::cloexec_from(3);
        if let Some(fd) = fd5 {
            let _ = nix::unistd::dup2(fd, 5);
        }
        let _ = nix::unistd::chdir(dir.as_c_str());
        let _ = nix::unistd::execv(&prog, &argv);
        127
    })
    .expect("spawning the test program");
    child.pid
}

pub(super) fn count(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("count"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

pub(super) fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn nspid(host: i32) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
    super::procfs::parse_status(&text).nspid
}

pub(super) struct Killer(pub(super) i32);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.0), None);
    }
}

pub(super) fn tempdir(tag: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix(&format!("amber-ckpt-{tag}-"))
        .tempdir()
        .unwrap();
    let work = t.path().join("work");
    let img = t.path().join("image");
    std::fs::create_dir(&work).unwrap();
    (t, work, img)
}

/// [`skip_reason`], said: true (with a message naming `test`) when the test must skip.
pub(super) fn skipped(test: &str) -> bool {
    let why = skip_reason();
    if let Some(why) = why {
        eprintln!("skipping {test}: {why}");
    }
    why.is_some()
}

/// Restore options with no external fds and no cgroup: the tree alone, in `pid_ns`.
pub(super) fn restore_opts(pid_ns: PidNamespace) -> RestoreOptions {
    RestoreOptions {
        pid_ns,
        external_fds: BTreeMap::new(),
        cgroup_fd: None,
    }
}

/// Wait until the counter in `work` reaches `n`.
pub(super) fn wait_counted(work: &Path, n: u64) {
    wait_for(&format!("the counter to reach {n}"), Duration::from_secs(10), || {
        count(work) >= n
    });
}

/// Wait until the restored counter goes on: two counts past `at_dump`.
pub(super) fn wait_counting_on(work: &Path, at_dump: u64) {
    wait_for("the restored counter to go on", Duration::from_secs(10), || {
        count(work) >= at_dump + 2
    });
}

/// A tree whose dump failed keeps running: it counts on in `work`, and then none of `pids()` is
/// traced.
pub(super) fn keeps_running_untraced<I: IntoIterator<Item = i32>>(work: &Path, pids: impl FnOnce() -> I) {
    let after = count(work);
    wait_for("the tree to keep running", Duration::from_secs(10), || {
        count(work) > after
    });
    for pid in pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("TracerPid:\t0"), "pid {pid} detached");
    }
}

/// SIGTERM the (restored) shell `guard` holds and reap it: its TERM trap must run (exit 7).
pub(super) fn term_runs_the_trap(guard: Killer) {
    let pid = Pid::from_raw(guard.0);
    kill(pid, Signal::SIGTERM).unwrap();
    let status = waitpid(pid, None).unwrap();
    std::mem::forget(guard);
    assert_eq!(status, WaitStatus::Exited(pid, 7), "the TERM trap ran");
}

#[test]
fn dump_kill_restore_counter_tree() {
    if skipped("dump_kill_restore_counter_tree") {
        return;
    }
    let (_t, work, img) = tempdir("e2e");
    let pid = spawn_counter(&work);
    let guard = Killer(pid);
    wait_counted(&work, 3);
    // The sleep child exists 0.3 s of every round: dump while it does.
    wait_for("the counter's sleep child", Duration::from_secs(10), || {
        !std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .trim()
            .is_empty()
    });

    let summary = dump_tree(pid, &img, &DumpOptions { leave_running: false }).expect("dump");
    // Killed (and, being our child, reaped) by the dump.
    std::mem::forget(guard);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the dumped tree is gone");
    let dumped: Vec<i32> = summary.tasks.iter().map(|t| t.0).collect();
    assert_eq!(dumped[0], 1);
    assert!(dumped.len() == 2, "sh and its sleep child: {dumped:?}");
    let at_dump = count(&work);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(count(&work), at_dump, "nothing counts while dumped");
    let json = image::inspect_json(&img).unwrap();
    assert_eq!(json["tree"]["root"], 1);

    let restored = restore(&img, &restore_opts(PidNamespace::New)).expect("restore");
    let guard = Killer(restored.root_pid);
    assert_eq!(
        restored.pids.keys().copied().collect::<Vec<_>>(),
        dumped,
        "same pids in the namespace"
    );
    assert_eq!(nspid(restored.root_pid), vec![restored.root_pid, 1]);

    check_maps(restored.pids[&1], &image::load_for_inspect(&img).unwrap().tasks[&1]);

    wait_counting_on(&work, at_dump);
    let now = count(&work);
    assert!(
        now <= at_dump + 10,
        "counting continued from {at_dump}, not from 1 ({now})"
    );

    term_runs_the_trap(guard);
}

#[test]
fn corrupt_images_are_refused_before_cloning() {
    if skipped("corrupt_images_are_refused_before_cloning") {
        return;
    }
    let (_t, work, img) = tempdir("corrupt");
    let pid = spawn_counter(&work);
    let _guard = Killer(pid);
    wait_counted(&work, 2);
    dump_tree(pid, &img, &DumpOptions { leave_running: true }).expect("dump");
    let before = count(&work);
    wait_for("the dumped tree to keep running", Duration::from_secs(10), || {
        count(&work) > before
    });
    image::verify(&img).expect("a fresh image verifies");

    let opts = restore_opts(PidNamespace::New);
    let pages = img.join(image::task_pages(1));
    let mut data = std::fs::read(&pages).unwrap();
    assert!(!data.is_empty());
    data[100] ^= 0x40;
    std::fs::write(&pages, &data).unwrap();
    let err = restore(&img, &opts).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    // restore() calls image::load (which must refuse) before its first clone.
    assert_eq!(image::verify(&img).unwrap_err().to_string(), err.to_string());

    data[100] ^= 0x40;
    data.truncate(data.len() - 4096);
    std::fs::write(&pages, &data).unwrap();
    let err = restore(&img, &opts).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// Every dumped VMA is back at its address with its permissions and name ([heap], [stack],
/// [vdso], file paths); neighbours may have merged.
fn check_maps(host: i32, task: &image::TaskImage) {
    let text = std::fs::read_to_string(format!("/proc/{host}/maps")).unwrap();
    let maps = super::procfs::parse_smaps(&text);
    for v in task.vmas.iter().filter(|v| v.kind != image::VmaKind::Vsyscall) {
        let found = maps
            .iter()
            .any(|m| m.start <= v.start && v.end <= m.end && m.perms == v.perms && m.name == v.name);
        assert!(
            found,
            "{:x}-{:x} {} {:?} not restored; maps:\n{text}",
            v.start, v.end, v.perms, v.name
        );
    }
    let exe = std::fs::read_link(format!("/proc/{host}/exe")).unwrap();
    assert_eq!(exe.to_string_lossy(), task.exe);
    let cmdline = std::fs::read(format!("/proc/{host}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"/bin/busybox\0sh\0-c\0"), "{cmdline:?}");
}

#[test]
fn restore_in_the_current_pid_namespace_at_the_same_pids() {
    if skipped("restore_in_the_current_pid_namespace_at_the_same_pids") {
        return;
    }
    let (_t, work, img) = tempdir("hostns");
    let pid = spawn_script(&work, false, SCRIPT);
    let guard = Killer(pid);
    wait_counted(&work, 2);
    let summary = dump_tree(pid, &img, &DumpOptions { leave_running: false }).expect("dump");
    std::mem::forget(guard);
    let dumped: Vec<i32> = summary.tasks.iter().map(|t| t.0).collect();
    assert_eq!(dumped[0], pid, "in our namespace the container pids are host pids");
    // The sleep child is reaped by init once its parent is gone.
    wait_for("the dumped pids to be free", Duration::from_secs(10), || {
        dumped.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
    let at_dump = count(&work);
    let restored = restore(&img, &restore_opts(PidNamespace::Current)).expect("restore");
    let guard = Killer(restored.root_pid);
    assert_eq!(restored.root_pid, pid);
    assert_eq!(
        restored.pids.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
        summary.tasks
    );
    wait_counting_on(&work, at_dump);
    term_runs_the_trap(guard);
}

/// Restoring where the dumped pids are taken (here: by the original, left running) is refused
/// by the pre-clone checks, naming the pid; the original is not disturbed.
#[test]
fn pids_in_use_are_refused_before_cloning() {
    if skipped("pids_in_use_are_refused_before_cloning") {
        return;
    }
    let (_t, work, img) = tempdir("inuse");
    let pid = spawn_script(&work, false, SCRIPT);
    let guard = Killer(pid);
    wait_counted(&work, 2);
    dump_tree(pid, &img, &DumpOptions { leave_running: true }).expect("dump");
    let err = restore(&img, &restore_opts(PidNamespace::Current))
        .expect_err("restore over running pids")
        .to_string();
    assert!(
        err.contains(&format!("pid {pid} is in use in this pid namespace")),
        "{err}"
    );
    wait_counting_on(&work, count(&work));
    term_runs_the_trap(guard);
}

#[test]
fn unsupported_fds_are_refused_and_the_tree_keeps_running() {
    if skipped("unsupported_fds_are_refused_and_the_tree_keeps_running") {
        return;
    }
    // A unix socket (sockets are not restored yet) and a terminal that is not the tree's
    // stdio (only the container's console is handed over again), each at fd 5.
    let (sock, _peer) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let cases: [(&str, &std::os::fd::OwnedFd, &str); 2] = [
        ("socket", &sock, "fd 5 -> socket:["),
        ("pty", &pty.slave, "a terminal other than the container's console"),
    ];
    for (what, fd, expect) in cases {
        let (_t, work, img) = tempdir(&format!("refuse-{what}"));
        let pid = spawn_counter_with_fd5(&work, fd);
        let _guard = Killer(pid);
        wait_counted(&work, 2);
        let err = dump_tree(pid, &img, &DumpOptions { leave_running: false }).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {pid}")) && text.contains(expect),
            "{what}: {text}"
        );
        assert!(!img.join(image::MANIFEST).exists(), "no image is written");
        keeps_running_untraced(&work, || [pid]);
    }
}

#[test]
fn dump_a_frozen_cgroup_and_restore() {
    if skipped("dump_a_frozen_cgroup_and_restore") {
        return;
    }
    let id = format!("amber-ckpt-test-{}", std::process::id());
    let Ok(mgr) = crate::cgroups::Manager::new(None, &id, false) else {
        eprintln!("skipping dump_a_frozen_cgroup_and_restore: no usable cgroup hierarchy");
        return;
    };
    if let Err(e) = mgr.create() {
        eprintln!("skipping dump_a_frozen_cgroup_and_restore: {e}");
        let _ = mgr.destroy();
        return;
    }
    struct Destroy(crate::cgroups::Manager);
    impl Drop for Destroy {
        fn drop(&mut self) {
            let _ = self.0.thaw();
            for pid in self.0.pids().unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.0.destroy();
        }
    }
    let _cg = Destroy(mgr.clone());
    let (_t, work, img) = tempdir("cgroup");
    let script = format!("trap 'echo usr1 > got' USR1; {SCRIPT}");
    let pid = spawn_script(&work, true, &script);
    let guard = Killer(pid);
    mgr.add_task(pid).unwrap();
    let start = count(&work);
    // Past the sleep that was started before the move: every task is now in the cgroup.
    wait_for("two more counts", Duration::from_secs(10), || count(&work) >= start + 2);
    // A signal that arrives while the container is frozen is pending at dump time: the dump
    // lets the shell take it (its trap must still run after the restore).
    mgr.freeze().unwrap();
    kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
    let summary = super::dump::dump_cgroup(&mgr, &img, &DumpOptions { leave_running: false }).expect("dump");
    assert!(!work.join("got").exists(), "the trap has not run before the dump");
    std::mem::forget(guard);
    assert_eq!(summary.tasks.len(), 2, "{:?}", summary.tasks);
    assert!(!mgr.is_frozen().unwrap(), "the dump thaws the cgroup");
    let at_dump = count(&work);
    let restored = restore(&img, &restore_opts(PidNamespace::New)).expect("restore");
    let guard = Killer(restored.root_pid);
    wait_counting_on(&work, at_dump);
    assert!(work.join("got").exists(), "the USR1 trap ran after the restore");
    term_runs_the_trap(guard);
}

const SETPRIV: &str = "/usr/bin/setpriv";
const CRED_LINES: [&str; 9] = [
    "Uid:",
    "Gid:",
    "Groups:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
    "NoNewPrivs:",
];

/// The credential lines of /proc/<pid>/status.
fn cred_lines(host: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| CRED_LINES.iter().any(|k| l.starts_with(k)))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), CRED_LINES.len(), "{text}");
    lines
}

/// Start the counter under `setpriv <args>`, dump + kill, restore, and check that every
/// restored task has exactly the original credentials (status lines; securebits and dumpable
/// through a second dump of the restored tree) and the tree goes on working.
fn creds_round_trip(tag: &str, setpriv: &[&str], uid: u32, expect: &[&str]) {
    let (t, work, img) = tempdir(tag);
    // The task may lack CAP_DAC_OVERRIDE: let it reach and write its work directory.
    std::fs::set_permissions(t.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    nix::unistd::chown(&work, Some(uid.into()), Some(uid.into())).unwrap();
    let mut argv = vec![SETPRIV];
    argv.extend_from_slice(setpriv);
    argv.extend_from_slice(&[BUSYBOX, "sh", "-c", SCRIPT]);
    let pid = spawn_argv(&work, true, &argv);
    let guard = Killer(pid);
    wait_counted(&work, 2);
    let before = cred_lines(pid);
    for want in expect {
        assert!(before.iter().any(|l| l == want), "setpriv gave {before:?}, not {want}");
    }
    let summary = dump_tree(pid, &img, &DumpOptions { leave_running: false }).expect("dump");
    std::mem::forget(guard);
    assert_eq!(summary.tasks.len(), 2, "{:?}", summary.tasks);
    let dumped = image::load_for_inspect(&img).unwrap();
    assert_eq!(dumped.manifest.format.minor, image::FORMAT_MINOR);
    let at_dump = count(&work);

    let restored = restore(&img, &restore_opts(PidNamespace::New)).expect("restore");
    let guard = Killer(restored.root_pid);
    for (&inner, &host) in &restored.pids {
        assert_eq!(cred_lines(host), before, "pid {inner} (host {host})");
    }
    wait_counting_on(&work, at_dump);

    // Dump the restored tree again (left running): the root's credentials, securebits and
    // dumpable flag included, are those of the first image.
    let img2 = t.path().join("image2");
    dump_tree(restored.root_pid, &img2, &DumpOptions { leave_running: true }).expect("second dump");
    let again = image::load_for_inspect(&img2).unwrap();
    assert_eq!(again.tasks[&1].creds, dumped.tasks[&1].creds);
    assert!(dumped.tasks[&1].creds.dumpable.is_some());
    let now = count(&work);
    wait_for(
        "the tree to keep counting after the second dump",
        Duration::from_secs(10),
        || count(&work) > now,
    );

    term_runs_the_trap(guard);
}

fn setpriv_missing(test: &str) -> bool {
    if skipped(test) {
        return true;
    }
    if !Path::new(SETPRIV).exists() {
        eprintln!("skipping {test}: no {SETPRIV}");
        return true;
    }
    false
}

/// A non-root uid/gid with supplementary groups, runc's three capabilities as inheritable,
/// permitted, effective, bounding and ambient sets, SECBIT_NOROOT and no_new_privs.
#[test]
fn restore_non_root_credentials_with_ambient_caps() {
    if setpriv_missing("restore_non_root_credentials_with_ambient_caps") {
        return;
    }
    let caps = "-all,+kill,+net_bind_service,+audit_write";
    let inh = format!("--inh-caps={caps}");
    let amb = format!("--ambient-caps={caps}");
    let bnd = format!("--bounding-set={caps}");
    let args = [
        "--reuid=1000",
        "--regid=1000",
        "--groups=20,1000,2000",
        inh.as_str(),
        amb.as_str(),
        bnd.as_str(),
        "--securebits=+noroot",
        "--no-new-privs",
    ];
    let expect = [
        "Uid:\t1000\t1000\t1000\t1000",
        "Gid:\t1000\t1000\t1000\t1000",
        "Groups:\t20 1000 2000 ",
        "CapAmb:\t0000000020000420",
        "CapBnd:\t0000000020000420",
        "NoNewPrivs:\t1",
    ];
    creds_round_trip("creds-user", &args, 1000, &expect);
}

/// runc's default for a root container: uid 0, CapPrm = CapEff = CapBnd = 0x20000420, no
/// inheritable or ambient capabilities; here also with differing real/effective gid.
#[test]
fn restore_runc_default_root_credentials() {
    if setpriv_missing("restore_runc_default_root_credentials") {
        return;
    }
    let args = [
        "--bounding-set=-all,+kill,+net_bind_service,+audit_write",
        "--inh-caps=-all",
        "--rgid=1000",
        "--egid=1001",
        "--clear-groups",
        "--no-new-privs",
    ];
    let expect = [
        "Uid:\t0\t0\t0\t0",
        "Gid:\t1000\t1001\t1001\t1001",
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000020000420",
        "CapEff:\t0000000020000420",
        "CapBnd:\t0000000020000420",
        "CapAmb:\t0000000000000000",
    ];
    creds_round_trip("creds-root", &args, 0, &expect);
}

/// An image whose bounding set holds a capability the restorer lacks (CAP_SYS_RESOURCE on
/// hosts like this one) is refused, naming pid and capability, before anything is cloned.
#[test]
fn credentials_beyond_the_restorer_are_refused_before_cloning() {
    if skipped("credentials_beyond_the_restorer_are_refused_before_cloning") {
        return;
    }
    let me = super::creds::Current::of_self().unwrap();
    let Some(cap) = (0..=me.last_cap).find(|c| me.cap_bnd & (1u64 << c) == 0) else {
        eprintln!("skipping credentials_beyond_the_restorer_are_refused_before_cloning: full bounding set");
        return;
    };
    let (t, work, img) = tempdir("creds-refuse");
    let pid = spawn_counter(&work);
    let _guard = Killer(pid);
    wait_counted(&work, 2);
    dump_tree(pid, &img, &DumpOptions { leave_running: true }).expect("dump");

    // Rewrite the image (new checksums) with the capability in the root's bounding set.
    let mut image = image::load_for_inspect(&img).unwrap();
    image.tasks.get_mut(&1).unwrap().creds.cap_bnd |= 1u64 << cap;
    let edited = t.path().join("edited");
    let mut w = image::ImageWriter::create(&edited).unwrap();
    for (pid, task) in &image.tasks {
        w.write_json(&image::task_json(*pid), task).unwrap();
        w.write_json(&image::task_pagemap(*pid), &image.pagemaps[pid]).unwrap();
        w.write_bytes(
            &image::task_pages(*pid),
            &std::fs::read(image.pages_path(*pid)).unwrap(),
        )
        .unwrap();
    }
    w.write_json(image::TREE, &image.tree).unwrap();
    w.finish(image.manifest.host.clone()).unwrap();

    let children_before = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        std::process::id(),
        nix::unistd::gettid()
    ))
    .unwrap_or_default();
    let err = restore(&edited, &restore_opts(PidNamespace::New)).unwrap_err();
    let text = err.to_string();
    let name = super::creds::cap_name(cap);
    assert!(
        text.contains("pid 1") && text.contains(&name) && text.contains("bounding"),
        "{text}"
    );
    let children_after = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        std::process::id(),
        nix::unistd::gettid()
    ))
    .unwrap_or_default();
    assert_eq!(children_before, children_after, "nothing was cloned");
}

/// Host pids of the tasks under `root` whose cmdline is exactly `argv`.
fn find_by_cmdline(root: i32, argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() == want {
            out.push(pid);
        }
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        queue.extend(super::procfs::parse_children(&children));
    }
    out
}

/// The bytes buffered in the pipe or FIFO behind `/proc/<pid>/fd/<fd>` (consumed).
fn drain(pid: i32, fd: i32) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/{pid}/fd/{fd}"))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = f.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn fd_pos(pid: i32, fd: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    super::procfs::parse_fdinfo(&text).0
}

/// A shell pipeline with data in its pipe, a FIFO with data, a file unlinked while open, a
/// directory, /dev/zero and a file whose description the shell shares with its children: all
/// come back, each description once (kcmp), with offsets, data and the pipeline's two ends.
#[test]
fn pipes_ghosts_and_shared_descriptions() {
    if skipped("pipes_ghosts_and_shared_descriptions") {
        return;
    }
    let (_t, work, img) = tempdir("files");
    let script = format!(
        "exec 3<>data; printf 0123456789 >&3; exec 4</dev/zero; exec 6</; \
         exec 7<>ghost; printf ghost-contents >&7; rm ghost; \
         mkfifo fifo; exec 8<>fifo; printf fifo-data >&8; \
         {{ printf pipe-data; exec {BUSYBOX} sleep 1000; }} | {BUSYBOX} sleep 1001 & \
         {SCRIPT}"
    );
    let pid = spawn_script(&work, true, &script);
    let guard = Killer(pid);
    wait_counted(&work, 2);
    wait_for("the pipeline", Duration::from_secs(10), || {
        find_by_cmdline(pid, &[BUSYBOX, "sleep", "1000"]).len() == 1
    });
    dump_tree(pid, &img, &DumpOptions { leave_running: false }).expect("dump");
    std::mem::forget(guard);
    let dumped = image::load_for_inspect(&img).unwrap();
    let root_fds = &dumped.tasks[&1].fds;
    let kind = |fd: i32| root_fds.iter().find(|f| f.fd == fd).map(|f| f.kind.clone());
    assert!(
        matches!(kind(7), Some(image::FdKind::Ghost { size: 14, pos: 14, .. })),
        "{:?}",
        kind(7)
    );
    assert!(
        matches!(kind(8), Some(image::FdKind::Fifo { data: 9, .. })),
        "{:?}",
        kind(8)
    );
    assert!(
        matches!(kind(6), Some(image::FdKind::Directory { .. })),
        "{:?}",
        kind(6)
    );
    assert!(matches!(kind(4), Some(image::FdKind::Device { .. })), "{:?}", kind(4));
    assert!(
        dumped
            .manifest
            .files
            .iter()
            .any(|f| f.name.starts_with("files/pipe-") && f.size == 9),
        "pipe data in the image"
    );
    assert!(!work.join("ghost").exists());

    let restored = restore(&img, &restore_opts(PidNamespace::New)).expect("restore");
    let guard = Killer(restored.root_pid);
    let root = restored.root_pid;
    assert!(!work.join("ghost").exists(), "the ghost file is unlinked again");
    assert_eq!(fd_pos(root, 3), 10);
    let writer = find_by_cmdline(root, &[BUSYBOX, "sleep", "1000"]);
    let reader = find_by_cmdline(root, &[BUSYBOX, "sleep", "1001"]);
    assert_eq!((writer.len(), reader.len()), (1, 1), "the pipeline is back");
    for other in [writer[0], reader[0]] {
        let same = crate::sys::kcmp(root, other, crate::sys::KCMP_FILE, 3, 3).unwrap();
        assert_eq!(same, 0, "fd 3 of {other} shares the shell's description again");
    }
    let ino = |pid: i32, fd: i32| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).unwrap())
    };
    assert_eq!(ino(writer[0], 1), ino(reader[0], 0), "both ends of one pipe");
    assert_eq!(drain(reader[0], 0), "pipe-data");
    assert_eq!(drain(root, 8), "fifo-data");
    let ghost = std::fs::read_link(format!("/proc/{root}/fd/7")).unwrap();
    assert!(ghost.to_string_lossy().ends_with("ghost (deleted)"), "{ghost:?}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{root}/fd/7")).unwrap(),
        "ghost-contents"
    );
    assert_eq!(fd_pos(root, 7), 14);
    assert_eq!(
        std::fs::read_link(format!("/proc/{root}/fd/6")).unwrap(),
        Path::new("/")
    );
    let at_dump = count(&work);
    wait_counting_on(&work, at_dump);
    term_runs_the_trap(guard);
}

/// Kills a whole tree in our pid namespace on drop (descendants first: killing only the root
/// would leave them to init).
struct TreeKiller(i32);
impl Drop for TreeKiller {
    fn drop(&mut self) {
        let mut all = vec![self.0];
        let mut i = 0;
        while i < all.len() {
            let p = all[i];
            let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            all.extend(super::procfs::parse_children(&kids));
            i += 1;
        }
        for p in all.iter().rev() {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        let _ = waitpid(Pid::from_raw(self.0), None);
    }
}

/// Build `integration/survival/<name>.c` (the zdtm-style programs) into `dir`; None without gcc.
fn build_survival(name: &str, dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/survival");
    let bin = dir.join(name);
    let out = std::process::Command::new("gcc")
        .args(["-O2", "-static", "-Wall", "-Werror", "-I"])
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .arg(src.join(format!("{name}.c")))
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "building {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

/// A survival program straight on the engine (no container), in our own pid namespace (its
/// checks read /proc, which is ours): ready -> dump (kill) -> restore at the same pids ->
/// SIGUSR2 -> it must write PASS and exit 0.
fn survive_on_the_engine(name: &str, check_image: fn(&image::Image)) {
    if skipped(&format!("{name} on the engine")) {
        return;
    }
    let (t, work, img) = tempdir(name);
    let Some(bin) = build_survival(name, t.path()) else {
        eprintln!("skipping {name} on the engine: no gcc");
        return;
    };
    let out = work.to_string_lossy().into_owned();
    let pid = spawn_argv(&work, false, &[bin.to_str().unwrap(), &out]);
    let guard = TreeKiller(pid);
    let ready = work.join(format!("{name}.ready"));
    let result = work.join(format!("{name}.result"));
    wait_for("the program to be ready", Duration::from_secs(20), || {
        ready.exists() || result.exists()
    });
    assert!(
        !result.exists(),
        "{}",
        std::fs::read_to_string(&result).unwrap_or_default()
    );
    let summary = dump_tree(pid, &img, &DumpOptions { leave_running: false }).expect("dump");
    std::mem::forget(guard);
    let dumped = image::load_for_inspect(&img).unwrap();
    check_image(&dumped);
    let mut pids: Vec<i32> = summary.tasks.iter().map(|t| t.0).collect();
    pids.extend(dumped.tree.zombies.iter().map(|z| z.entry.pid));
    wait_for("the dumped pids to be free", Duration::from_secs(10), || {
        pids.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
    let restored = restore(&img, &restore_opts(PidNamespace::Current)).expect("restore");
    let guard = TreeKiller(restored.root_pid);
    kill(Pid::from_raw(restored.root_pid), Signal::SIGUSR2).unwrap();
    wait_for("the result", Duration::from_secs(20), || result.exists());
    let text = std::fs::read_to_string(&result).unwrap();
    assert_eq!(text, "PASS\n", "{name} after the restore");
    let status = waitpid(Pid::from_raw(restored.root_pid), None).unwrap();
    std::mem::forget(guard);
    assert_eq!(status, WaitStatus::Exited(Pid::from_raw(restored.root_pid), 0));
}

/// Zombies (one leads a session), a stopped task, a session and a group whose leaders are gone
/// and an orphan in a live leader's session (helpers at restore), a subreaper, a pdeathsig: see
/// integration/survival/pstree.c.
#[test]
fn pstree_survives_on_the_engine() {
    survive_on_the_engine("pstree", |image| {
        let mut statuses: Vec<i32> = image.tree.zombies.iter().map(|z| z.status).collect();
        statuses.sort();
        assert_eq!(statuses, vec![libc::SIGTERM, 7 << 8, 42 << 8], "the three zombies");
        let tasks: Vec<&image::TaskImage> = image.tasks.values().collect();
        assert!(
            tasks.iter().any(|t| t.stop_signal == Some(libc::SIGSTOP)),
            "a stopped task"
        );
        assert!(tasks.iter().any(|t| t.pdeathsig == libc::SIGUSR1), "a pdeathsig");
        assert!(tasks.iter().any(|t| t.child_subreaper), "a subreaper");
        let subreapers = tasks.iter().filter(|t| t.child_subreaper).map(|t| t.pid).collect();
        let plan = super::pstree::plan(&image.tree, &subreapers).unwrap();
        assert_eq!(
            plan.helpers().count(),
            3,
            "a dead session leader, a dead group leader, a live session leader's"
        );
    });
}

/// Handlers, masks, sigaltstack, queued signals with their siginfo, interval timers: see
/// integration/survival/signals.c.
#[test]
fn signals_survive_on_the_engine() {
    survive_on_the_engine("signals", |image| {
        let t = &image.tasks[&image.tree.root];
        let queued: Vec<(bool, i32)> = t.pending.iter().map(|p| (p.shared, p.signo)).collect();
        let rt = libc::SIGRTMIN();
        let want = vec![
            (false, libc::SIGHUP),
            (true, libc::SIGUSR1),
            (true, rt + 1),
            (true, rt + 1),
            (true, rt + 2),
            (true, rt + 3),
        ];
        assert_eq!(queued, want, "the dumped queues");
        assert_eq!(t.itimers.len(), 3, "{:?}", t.itimers);
    });
}

/// A listening TCP socket the tree holds (at fd 5 of the shell) comes back bound to the same
/// address and port, listening: a client connects to it after the restore.
#[test]
fn tcp_listener_comes_back_on_its_port() {
    if skipped("tcp_listener_comes_back_on_its_port") {
        return;
    }
    let (_t, work, img) = tempdir("tcp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pid = spawn_counter_with_fd5(&work, &listener);
    drop(listener);
    let guard = Killer(pid);
    wait_counted(&work, 2);
    dump_tree(pid, &img, &DumpOptions { leave_running: false }).expect("dump");
    std::mem::forget(guard);
    let dumped = image::load_for_inspect(&img).unwrap();
    let fd5 = dumped.tasks[&1].fds.iter().find(|f| f.fd == 5).map(|f| f.kind.clone());
    assert!(
        matches!(&fd5, Some(image::FdKind::Inet { local, backlog: Some(_), .. }) if *local == addr.to_string()),
        "{fd5:?}"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "nobody listens while the tree is dumped"
    );
    let restored = restore(&img, &restore_opts(PidNamespace::New)).expect("restore");
    let guard = Killer(restored.root_pid);
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to the restored listener");
    let link = std::fs::read_link(format!("/proc/{}/fd/5", restored.root_pid)).unwrap();
    assert!(link.to_string_lossy().starts_with("socket:["), "{link:?}");
    drop(guard);
}

/// Unmounts (lazily) on drop.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The image directory fills up while the pages are streamed: the dump fails naming the page
/// file, removes what it wrote (no manifest, no page file) and the tree keeps running, untraced.
#[test]
fn a_full_image_directory_fails_the_dump_and_the_tree_keeps_running() {
    if skipped("a_full_image_directory_fails_the_dump_and_the_tree_keeps_running") {
        return;
    }
    let (t, work, _) = tempdir("enospc");
    let small = t.path().join("small");
    std::fs::create_dir(&small).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mounting a 1 MiB tmpfs");
    let _unmount = Unmount(small.clone());
    // 4 MB of 'a' held in the shell's heap: more pages than the file system takes.
    let script = format!("x=$(head -c 4000000 /dev/zero | tr '\\0' a); {SCRIPT}");
    let pid = spawn_script(&work, true, &script);
    let _guard = Killer(pid);
    wait_counted(&work, 2);
    let img = small.join("image");
    let err = dump_tree(pid, &img, &DumpOptions { leave_running: false }).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("1.pages") && text.contains("No space left on device"),
        "{text}"
    );
    assert!(!img.join(image::MANIFEST).exists(), "no manifest");
    let left = walk(&img);
    assert!(left.is_empty(), "the partial image is removed: {left:?}");
    keeps_running_untraced(&work, || [pid]);
}

/// Every file and directory under `dir` (not `dir` itself).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
