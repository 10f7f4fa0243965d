//! cgroups: placement at cgroupsPath, limits written, removal on delete.

use amber_integration::*;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};

/// The cgroup hierarchies mounted under /sys/fs/cgroup: (controllers, mount dir).
/// On a pure v2 host that is one ("", /sys/fs/cgroup).
fn hierarchies() -> Vec<(String, PathBuf)> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let mut out = Vec::new();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 || !f[1].starts_with("/sys/fs/cgroup") {
            continue;
        }
        match f[2] {
            "cgroup2" => out.push((String::new(), PathBuf::from(f[1]))),
            "cgroup" => {
                let ctrls: Vec<&str> = f[3]
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime" | "clone_children"
                        ) && !o.starts_with("release_agent")
                    })
                    .collect();
                out.push((ctrls.join(","), PathBuf::from(f[1])));
            }
            _ => {}
        }
    }
    out
}

fn cgroup_dirs(cg: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|(_, m)| m.join(cg.trim_start_matches('/')))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn cgroups_path_is_used_and_removed() {
    let cg = format!("/{}", unique_id("cgpath"));
    let mut b = Bundle::sh("sleep 1000");
    b.set("/linux/cgroupsPath", json!(cg));
    let c = Container::new("cgpath", b);
    c.create_ok();
    let pid = c.pid();

    // Read from the host (outside the container's cgroup namespace): every hierarchy
    // line names the configured path.
    let proc_cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let hier = hierarchies();
    let mut checked = 0;
    for line in proc_cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let ctrl_name = ctrls.trim_start_matches("name=");
        if !hier
            .iter()
            .any(|(c, _)| c.split(',').any(|x| x == ctrls || x == ctrl_name) || (c.is_empty() && ctrls.is_empty()))
        {
            continue; // a hierarchy not mounted here
        }
        assert!(path.ends_with(&cg), "{line} not under {cg}:\n{proc_cg}");
        checked += 1;
    }
    assert!(checked > 0, "{proc_cg}");
    let dirs = cgroup_dirs(&cg);
    assert!(!dirs.is_empty());
    for d in &dirs {
        let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|p| p == pid.to_string()),
            "init {pid} not in {}: {procs}",
            d.display()
        );
    }

    c.start_ok();
    c.kill("KILL").assert_ok();
    c.wait_status("stopped");
    c.delete(false).assert_ok();
    let left: Vec<PathBuf> = dirs.into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left after delete: {left:?}");
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn resource_limits_written() {
    let cg = format!("/{}", unique_id("limits"));
    let mut b = Bundle::sh("sleep 1000");
    b.set("/linux/cgroupsPath", json!(cg));
    b.set("/linux/resources/pids", json!({ "limit": 42 }));
    b.set("/linux/resources/memory", json!({ "limit": 64 * 1024 * 1024 }));
    let c = Container::new("limits", b);
    c.create_ok();
    let rel = cg.trim_start_matches('/');
    let v2 = hierarchies()
        .iter()
        .any(|(c, m)| c.is_empty() && m == Path::new("/sys/fs/cgroup"));
    if v2 {
        let d = Path::new("/sys/fs/cgroup").join(rel);
        assert_eq!(read_trim(&d.join("pids.max")), "42");
        assert_eq!(read_trim(&d.join("memory.max")), "67108864");
    } else {
        let pids = Path::new("/sys/fs/cgroup/pids").join(rel);
        assert_eq!(read_trim(&pids.join("pids.max")), "42");
        let mem = Path::new("/sys/fs/cgroup/memory").join(rel);
        assert_eq!(read_trim(&mem.join("memory.limit_in_bytes")), "67108864");
    }
}

#[test]
fn pids_limit_enforced() {
    // An inner shell forks 20 sleeps until fork fails (busybox sh then exits); the
    // outer one counts processes with builtins only (no fork needed) and kills them.
    let mut b = Bundle::sh(
        "sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 100 & done' \
         2>/dev/null; set -- /proc/[0-9]*; echo $#; kill -9 -1",
    );
    b.set("/linux/resources/pids", json!({ "limit": 8 }));
    let c = Container::new("pids-enforced", b);
    let out = c.run_foreground();
    out.assert_ok();
    let n: u32 = out.stdout.trim().parse().unwrap_or(99);
    assert!((2..=8).contains(&n), "pids.max=8 but {n} processes: {out}");
}
