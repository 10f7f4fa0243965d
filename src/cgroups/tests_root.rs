//! Against the host's real cgroups, as root: create /amber-cgtest-<pid>, put a sleeping child in
//! it, freeze, limit, kill, destroy. Skips with a message when not root or when the host has no
//! writable cgroups. A Drop guard cleans up even when an assertion fails halfway.

use std::fs;
use std::process::{Child, Command};

use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

use super::*;

/// Thaws, kills and reaps the children, then removes the cgroups, whatever state the test died in.
struct Cleanup {
    mgr: Manager,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // v1 frozen tasks do not die from SIGKILL until thawed.
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
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    if mountinfo::parse(&text, Path::new("/")).is_err() {
        return Some("no cgroup filesystem mounted".to_string());
    }
    None
}

fn read_value(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

#[test]
fn real_cgroup_lifecycle() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping real_cgroup_lifecycle: {why}");
        return;
    }
    let id = format!("amber-cgtest-{}", std::process::id());
    let mgr = Manager::new(None, &id, false).unwrap();
    let mut guard = Cleanup {
        mgr: mgr.clone(),
        children: Vec::new(),
    };
    mgr.create().unwrap();
    let dirs: Vec<PathBuf> = mgr.dirs().map(Path::to_path_buf).collect();
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert!(d.is_dir(), "{} created", d.display());
    }

    // One child in the container's cgroup, one in a sub-cgroup of the first hierarchy.
    guard.children.push(Command::new("sleep").arg("1000").spawn().unwrap());
    guard.children.push(Command::new("sleep").arg("1000").spawn().unwrap());
    let pid1 = guard.children[0].id() as i32;
    let pid2 = guard.children[1].id() as i32;
    mgr.add_task(pid1).unwrap();
    mgr.add_task(pid2).unwrap();
    let sub = dirs[0].join("sub");
    fs::create_dir(&sub).unwrap();
    if let Some(cpuset) = mgr.v1_dir("cpuset").filter(|d| **d == *dirs[0]) {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            fs::write(sub.join(f), read_value(cpuset, f)).unwrap();
        }
    }
    fs::write(sub.join("cgroup.procs"), pid2.to_string()).unwrap();
    assert_eq!(
        fs::read_to_string(sub.join("cgroup.procs")).unwrap().trim(),
        pid2.to_string()
    );
    let mut want = vec![pid1, pid2];
    want.sort();
    assert_eq!(mgr.pids().unwrap(), want, "sub-cgroups included");

    assert!(!mgr.is_frozen().unwrap());
    mgr.freeze().unwrap();
    assert!(mgr.is_frozen().unwrap());
    mgr.thaw().unwrap();
    assert!(!mgr.is_frozen().unwrap());

    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .memory(LinuxMemoryBuilder::default().limit(64 << 20).build().unwrap())
        .build()
        .unwrap();
    mgr.apply_resources(&res).unwrap();
    if mgr.is_v2() {
        let d = mgr.v2_dir().unwrap();
        assert_eq!(read_value(d, "pids.max"), "10");
        assert_eq!(read_value(d, "memory.max"), (64u64 << 20).to_string());
    } else {
        assert_eq!(read_value(mgr.v1_dir("pids").unwrap(), "pids.max"), "10");
        let mem = mgr.v1_dir("memory").unwrap();
        assert_eq!(read_value(mem, "memory.limit_in_bytes"), (64u64 << 20).to_string());
        let devices = read_value(mgr.v1_dir("devices").unwrap(), "devices.list");
        assert!(devices.contains("c 1:3 rwm"), "default rules applied: {devices}");
        assert!(!devices.contains("a *:* rwm"), "deny-all applied: {devices}");
    }

    // destroy with live tasks fails (EBUSY, retried, reported) and leaves them in place.
    let err = mgr.destroy().unwrap_err();
    assert!(matches!(err, CgroupError::Remove { .. }), "{err}");
    assert!(err.to_string().contains(&id), "{err}");

    for c in &mut guard.children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    guard.children.clear();
    mgr.destroy().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
    assert!(mgr.pids().unwrap().is_empty());
}
