//! Manager::stats against the host's real cgroups, as root: a cgroup with a sleeping child in
//! it must report at least one pid and some memory. Skips with a message when not root or when
//! the host has no cgroup filesystem. A Drop guard kills the child and removes the cgroup even
//! when an assertion fails halfway.

use std::path::Path;
use std::process::{Child, Command};

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

#[test]
fn real_cgroup_stats() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping real_cgroup_stats: {why}");
        return;
    }
    let id = format!("amber-stattest-{}", std::process::id());
    let mgr = Manager::new(None, &id, false).unwrap();
    let mut guard = Cleanup {
        mgr: mgr.clone(),
        children: Vec::new(),
    };
    mgr.create().unwrap();
    // sh touches some memory of its own (stack, heap, page tables) once it runs in the cgroup;
    // the read makes sure it has run after being moved.
    let mut child = Command::new("sh")
        .args(["-c", "read _; exec sleep 1000"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let pid = child.id() as i32;
    guard.children.push(child);
    mgr.add_task(pid).unwrap();
    {
        use std::io::Write;
        let mut stdin = stdin;
        stdin.write_all(b"go\n").unwrap();
    }
    // Wait until the exec'd sleep is in place (memory charged at exec is in the cgroup).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| !p.to_string_lossy().contains("sleep"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let st = mgr.stats().unwrap();
    eprintln!("{}", serde_json::to_string(&Event::stats(&id, &st)).unwrap());
    assert!(st.pids.current >= 1, "pids: {:?}", st.pids);
    assert!(st.memory.usage.usage > 0, "memory: {:?}", st.memory.usage);
    assert!(st.memory.usage.limit > 0, "memory: {:?}", st.memory.usage);
    assert!(!st.memory.raw.is_empty());
    if mgr.is_v2() {
        assert!(st.memory.raw.contains_key("anon"));
    } else {
        assert!(st.memory.raw.contains_key("rss"));
        assert!(!st.cpu.usage.percpu.is_empty(), "{:?}", st.cpu.usage);
        assert!(!st.cpuset.cpus.is_empty(), "{:?}", st.cpuset);
    }
    assert!(st.cpu.usage.total > 0, "{:?}", st.cpu.usage);

    for c in &mut guard.children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    guard.children.clear();
    mgr.destroy().unwrap();
    // Gone: every file missing, zero stats, no error.
    assert_eq!(mgr.stats().unwrap(), Stats::default());
}
