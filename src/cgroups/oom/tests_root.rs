//! The OOM watcher against the host's real cgroups, as root: a memory cgroup limited to 32 MiB,
//! a child that touches 200 MiB and is OOM-killed, and the watcher must say so; then the end of
//! the cgroup must be noticed. Skips with a message when not root or without a memory cgroup. A
//! Drop guard kills the children and removes the cgroup even when an assertion fails halfway.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

use super::super::mountinfo;
use super::*;

struct Cleanup {
    mgr: Manager,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.mgr.thaw();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.mgr.destroy() {
            eprintln!("cleanup: {e}");
        }
    }
}

fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".to_string());
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    if mountinfo::parse(&text, Path::new("/")).is_err() {
        return Some("no cgroup filesystem mounted".to_string());
    }
    None
}

fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::try_from(timeout).unwrap()).unwrap() > 0
}

/// A child held at `read` until it is in the cgroup, then exec'ing `script`.
fn spawn_gated(script: &str) -> (Child, std::process::ChildStdin) {
    let mut child = Command::new("sh")
        .args(["-c", &format!("read _; exec {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// The real interpreter (pyenv puts a shell script first in PATH), or None.
fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

#[test]
fn real_oom_kill_is_reported() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping real_oom_kill_is_reported: {why}");
        return;
    }
    let id = format!("amber-oomtest-{}", std::process::id());
    let mgr = Manager::new(None, &id, false).unwrap();
    if !mgr.is_v2() && mgr.v1_dir("memory").is_none() {
        eprintln!("skipping real_oom_kill_is_reported: no v1 memory controller");
        return;
    }
    let mut guard = Cleanup {
        mgr: mgr.clone(),
        children: Vec::new(),
    };
    mgr.create().unwrap();
    let limit = 32i64 << 20;
    let res = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(limit).swap(limit).build().unwrap())
        .build()
        .unwrap();
    mgr.apply_resources(&res).unwrap();

    let mut watcher = mgr.oom_watcher().unwrap();
    assert!(!watcher.is_finished());
    assert_eq!(watcher.check().unwrap(), 0, "no OOM yet");
    assert!(!readable(watcher.fd(), Duration::ZERO), "quiet before");

    // Allocate and touch 200 MiB: bytes * n writes every page.
    let hog = match python() {
        Some(py) => format!("{py} -c \"b = b'x' * (200 << 20)\""),
        None => "tail /dev/zero".to_string(),
    };
    let (child, mut stdin) = spawn_gated(&hog);
    let pid = child.id() as i32;
    guard.children.push(child);
    mgr.add_task(pid).unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let status = guard.children[0].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    assert!(readable(watcher.fd(), Duration::from_secs(10)), "OOM not signalled");
    let n = watcher.check().unwrap();
    assert!(n >= 1, "OOM events: {n}");
    eprintln!("OOM events reported: {n}");
    assert_eq!(watcher.check().unwrap(), 0, "drained");
    guard.children.clear();

    // The end: v1 signals the eventfd when the cgroup goes; v2 saw "populated 0" already.
    mgr.destroy().unwrap();
    if !watcher.is_finished() {
        assert!(readable(watcher.fd(), Duration::from_secs(10)), "removal not signalled");
        assert_eq!(watcher.check().unwrap(), 0, "removal is not an OOM");
    }
    assert!(watcher.is_finished());
}

/// The cgroup2 mechanism (kernfs POLLPRI through epoll) on whatever cgroup2 tree the host has:
/// on a hybrid host the unified mount has no memory.events, but cgroup.events is there, and the
/// watcher must wake up when the last process leaves.
#[test]
fn v2_watch_sees_the_container_end() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping v2_watch_sees_the_container_end: {why}");
        return;
    }
    let id = format!("amber-oomtest2-{}", std::process::id());
    let mgr = Manager::new(None, &id, false).unwrap();
    let Some(dir) = mgr.v2_dir().map(Path::to_path_buf) else {
        eprintln!("skipping v2_watch_sees_the_container_end: no cgroup2 mount");
        return;
    };
    let mut guard = Cleanup {
        mgr: mgr.clone(),
        children: Vec::new(),
    };
    mgr.create().unwrap();
    let (child, mut stdin) = spawn_gated("sleep 1000");
    let pid = child.id() as i32;
    guard.children.push(child);
    mgr.add_task(pid).unwrap();
    stdin.write_all(b"go\n").unwrap();

    let mut watcher = OomWatcher {
        source: Source::V2(V2Watch::open(&dir).unwrap()),
        finished: false,
    };
    assert_eq!(watcher.check().unwrap(), 0);
    assert!(!watcher.is_finished(), "populated");
    assert!(!readable(watcher.fd(), Duration::from_millis(100)), "quiet");

    guard.children[0].kill().unwrap();
    guard.children[0].wait().unwrap();
    assert!(readable(watcher.fd(), Duration::from_secs(10)), "exit not signalled");
    assert_eq!(watcher.check().unwrap(), 0);
    assert!(watcher.is_finished());
}
