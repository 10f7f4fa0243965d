//! Find the cgroup hierarchies from /proc/self/mountinfo.
//!
//! mountinfo, not a fixed list of directories, is the truth: distributions differ in how they name
//! co-mounted hierarchies ("cpu,cpuacct" vs "cpuacct,cpu", with or without "cpu" symlinks), and a
//! hybrid host has both v1 controllers and a cgroup2 mount.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// How the host mounts its cgroups.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified) with few or no controllers.
    Hybrid,
    /// Pure cgroup v2: one unified hierarchy.
    V2,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupMode::V1 => "cgroup v1",
            CgroupMode::Hybrid => "cgroup v1 (hybrid)",
            CgroupMode::V2 => "cgroup v2",
        })
    }
}

/// One mounted v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Mount {
    /// The hierarchy's controllers as the kernel lists them, joined by ",": "cpu,cpuacct",
    /// "memory", "name=systemd".
    pub key: String,
    /// Where it is mounted, already joined onto the filesystem root the manager was given.
    pub mount_point: PathBuf,
}

impl V1Mount {
    /// The controllers this hierarchy carries ("name=systemd" counts as one).
    pub fn controllers(&self) -> impl Iterator<Item = &str> {
        self.key.split(',')
    }
}

/// Every cgroup hierarchy the host has mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchies {
    pub mode: CgroupMode,
    pub v1: Vec<V1Mount>,
    /// The cgroup2 mount point: the whole tree on pure v2, the "unified" mount on hybrid.
    pub v2: Option<PathBuf>,
}

/// v1 controllers the kernel knows. Anything else in the super options ("rw", "xattr",
/// "release_agent=...", "clone_children", "noprefix") is a mount option, not a controller.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "io",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Named v1 hierarchies we manage. Other named hierarchies (name=openrc, name=elogind) belong to
/// someone else's process tracking, so a container is not placed in them (runc does the same).
const V1_NAMED: &[&str] = &["name=systemd"];

/// Parse mountinfo text into the host's hierarchies, joining mount points onto `fs_root`.
pub fn parse(text: &str, fs_root: &Path) -> Result<Hierarchies, CgroupError> {
    let mut v1: Vec<V1Mount> = Vec::new();
    let mut v2_mounts: Vec<PathBuf> = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = parse_line(line).ok_or(CgroupError::ParseMountinfo {
            line: idx + 1,
            text: line.to_string(),
        })?;
        let mount_point = join_root(fs_root, &entry.mount_point);
        match entry.fstype {
            "cgroup2" => v2_mounts.push(mount_point),
            "cgroup" => {
                let key = hierarchy_key(entry.super_opts);
                // The same hierarchy can be mounted twice (bind mounts); the first one wins.
                if !key.is_empty() && !v1.iter().any(|m| m.key == key) {
                    v1.push(V1Mount { key, mount_point });
                }
            }
            _ => {}
        }
    }
    let has_v1_controllers = v1.iter().any(|m| m.controllers().any(|c| !c.starts_with("name=")));
    // Prefer the cgroup2 mount at /sys/fs/cgroup itself: that is the tree on a pure v2 host even
    // when it is also bind-mounted elsewhere.
    let canonical = join_root(fs_root, "/sys/fs/cgroup");
    let v2 = v2_mounts
        .iter()
        .find(|p| **p == canonical)
        .or(v2_mounts.first())
        .cloned();
    let mode = match (has_v1_controllers, v2.is_some()) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V1,
        (false, true) => CgroupMode::V2,
        (false, false) => return Err(CgroupError::NoCgroupFs),
    };
    if mode == CgroupMode::V2 {
        // A stray name=systemd v1 mount next to a pure v2 tree is not a hierarchy we manage.
        v1.clear();
    }
    Ok(Hierarchies { mode, v1, v2 })
}

struct Entry<'a> {
    mount_point: String,
    fstype: &'a str,
    super_opts: &'a str,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// fields before " - " are id, parent, dev, root, mount point, options, optional tags.
fn parse_line(line: &str) -> Option<Entry<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    let super_opts = right.next().unwrap_or("");
    Some(Entry {
        mount_point: unescape(mount_point),
        fstype,
        super_opts,
    })
}

/// The kernel escapes space, tab, newline and backslash in mountinfo paths as \ooo octal.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let digits = bytes.get(i + 1..i + 4);
            if let Some(d) = digits.filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b))) {
                let value = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hierarchy_key(super_opts: &str) -> String {
    super_opts
        .split(',')
        .filter(|o| V1_CONTROLLERS.contains(o) || V1_NAMED.contains(o))
        .collect::<Vec<_>>()
        .join(",")
}

/// Re-root an absolute path from mountinfo under `fs_root` (a test directory, or "/").
pub fn join_root(fs_root: &Path, abs: &str) -> PathBuf {
    fs_root.join(abs.trim_start_matches('/'))
}

/// mountinfo texts shared by the tests of this module and of the manager.
#[cfg(test)]
pub mod fixtures {
    /// The cgroup lines of /proc/self/mountinfo on the development machine (Linux 6.18, hybrid:
    /// every v1 controller in its own hierarchy, cgroup2 at unified holding only hugetlb).
    pub const HYBRID_THIS_MACHINE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd-style hybrid host (Debian 10 / Ubuntu 20.04): co-mounted cpu,cpuacct and
    /// net_cls,net_prio with optional tags, mount options mixed into the super options.
    pub const HYBRID_COMOUNTED: &str = "\
25 18 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpuset,clone_children
34 25 0:32 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
";

    /// A pure v2 host, with the tree also bind-mounted somewhere else first.
    pub const PURE_V2: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
29 22 0:26 / /mnt/cg rw shared:5 - cgroup2 cgroup2 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn hybrid_this_machine() {
        let h = parse(HYBRID_THIS_MACHINE, Path::new("/")).unwrap();
        assert_eq!(h.mode, CgroupMode::Hybrid);
        let keys: Vec<&str> = h.v1.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "name=systemd"
            ]
        );
        assert_eq!(h.v1[8].mount_point, Path::new("/sys/fs/cgroup/systemd"));
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn hybrid_comounted_keeps_kernel_order_and_drops_options() {
        let h = parse(HYBRID_COMOUNTED, Path::new("/root")).unwrap();
        assert_eq!(h.mode, CgroupMode::Hybrid);
        let cpu = h.v1.iter().find(|m| m.key == "cpu,cpuacct").unwrap();
        assert_eq!(cpu.mount_point, Path::new("/root/sys/fs/cgroup/cpu,cpuacct"));
        assert!(h.v1.iter().any(|m| m.key == "cpuset"), "clone_children is an option");
        assert!(h.v1.iter().any(|m| m.key == "name=systemd"), "xattr is an option");
        assert!(h.v1.iter().any(|m| m.key == "net_cls,net_prio"));
    }

    #[test]
    fn pure_v2_prefers_sys_fs_cgroup() {
        let h = parse(PURE_V2, Path::new("/")).unwrap();
        assert_eq!(h.mode, CgroupMode::V2);
        assert!(h.v1.is_empty());
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn legacy_v1_without_cgroup2() {
        let text: String = HYBRID_THIS_MACHINE
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        let h = parse(&text, Path::new("/")).unwrap();
        assert_eq!(h.mode, CgroupMode::V1);
        assert_eq!(h.v2, None);
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let err = parse("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", Path::new("/")).unwrap_err();
        assert!(matches!(err, CgroupError::NoCgroupFs));
    }

    #[test]
    fn malformed_line_names_its_number() {
        let err = parse("22 1 8:1 / / rw - ext4 /dev/sda1 rw\ngarbage\n", Path::new("/")).unwrap_err();
        assert!(matches!(err, CgroupError::ParseMountinfo { line: 2, .. }), "{err}");
    }

    #[test]
    fn duplicate_hierarchy_first_wins() {
        let text = "\
1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
2 0 0:1 / /other/memory rw - cgroup cgroup rw,memory
";
        let h = parse(text, Path::new("/")).unwrap();
        assert_eq!(h.v1.len(), 1);
        assert_eq!(h.v1[0].mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn octal_escapes_in_mount_points() {
        assert_eq!(unescape(r"/mnt/a\040b\134c"), r"/mnt/a b\c");
        assert_eq!(unescape(r"/mnt/tail\04"), r"/mnt/tail\04");
    }
}
