//! /dev inside the container: the default device nodes every runtime provides, the standard
//! symlinks, and `linux.devices`. In a user namespace mknod is not allowed, so the host's node is
//! bind-mounted instead (as runc does).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::path::{self, Kind};
use super::RootfsPlan;
use crate::init::{at, InitError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

const DEFAULTS: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

/// The nodes to create: the defaults when /dev is ours (a tmpfs from the config), then the
/// config's own, which override a default at the same path.
pub fn plan(dev_is_tmpfs: bool, config: &[LinuxDevice]) -> Vec<DeviceNode> {
    let mut out: Vec<DeviceNode> = Vec::new();
    if dev_is_tmpfs {
        for (p, major, minor) in DEFAULTS {
            out.push(DeviceNode {
                path: PathBuf::from(p),
                kind: SFlag::S_IFCHR,
                major: *major,
                minor: *minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            });
        }
    }
    for d in config {
        // /dev/ptmx is always the symlink to the container's devpts (runtime-spec, runc):
        // engines list the host's node for privileged containers, which must not replace it.
        if d.path() == Path::new("/dev/ptmx") {
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let node = DeviceNode {
            path: d.path().clone(),
            kind,
            major: d.major().max(0) as u64,
            minor: d.minor().max(0) as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        out.retain(|n| n.path != node.path);
        out.push(node);
    }
    out
}

pub fn create(plan: &RootfsPlan, root: &OwnedFd) -> Result<(), InitError> {
    for node in &plan.devices {
        create_node(root, node, plan.user_ns)?;
    }
    if plan.dev_is_tmpfs {
        for (to, link) in SYMLINKS {
            let rel = path::clean(Path::new(link));
            let dir = path::open_or_create(root, rel.parent().unwrap_or(Path::new("")), Kind::Dir)
                .map_err(at(format!("creating {link}")))?;
            let name = rel.file_name().unwrap_or_default();
            match nix::unistd::symlinkat(*to, Some(dir.as_raw_fd()), name) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(InitError::step(format!("creating symlink {link}"), e)),
            }
        }
    }
    Ok(())
}

fn create_node(root: &OwnedFd, node: &DeviceNode, user_ns: bool) -> Result<(), InitError> {
    let step = || format!("creating device {}", node.path.display());
    let rel = path::clean(&node.path);
    let parent = path::open_or_create(root, rel.parent().unwrap_or(Path::new("")), Kind::Dir).map_err(at(step()))?;
    let name = rel.file_name().unwrap_or_default();
    if user_ns {
        // mknod is refused in a user namespace: bind the host's node over an empty file.
        let target = path::open_or_create(root, &node.path, Kind::File).map_err(at(step()))?;
        return mount(
            Some(&node.path),
            &path::fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(at(step()));
    }
    let _ = nix::unistd::unlinkat(Some(parent.as_raw_fd()), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    nix::sys::stat::mknodat(
        Some(parent.as_raw_fd()),
        name,
        node.kind,
        Mode::from_bits_truncate(node.mode),
        makedev(node.major, node.minor),
    )
    .map_err(at(step()))?;
    // mknod is subject to the umask; set the exact mode and owner afterwards.
    nix::sys::stat::fchmodat(
        Some(parent.as_raw_fd()),
        name,
        Mode::from_bits_truncate(node.mode),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == nix::errno::Errno::EOPNOTSUPP {
            Ok(())
        } else {
            Err(e)
        }
    })
    .map_err(at(step()))?;
    nix::unistd::fchownat(
        Some(parent.as_raw_fd()),
        name,
        Some(nix::unistd::Uid::from_raw(node.uid)),
        Some(nix::unistd::Gid::from_raw(node.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(at(step()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_only_with_private_dev() {
        assert!(plan(false, &[]).is_empty());
        let p = plan(true, &[]);
        assert_eq!(p.len(), 6);
        assert!(p
            .iter()
            .any(|n| n.path == Path::new("/dev/null") && n.major == 1 && n.minor == 3));
    }

    #[test]
    fn ptmx_stays_a_symlink() {
        let d: LinuxDevice =
            serde_json::from_str(r#"{"path":"/dev/ptmx","type":"c","major":5,"minor":2,"fileMode":438}"#).unwrap();
        assert!(plan(true, &[d]).iter().all(|n| n.path != Path::new("/dev/ptmx")));
    }

    #[test]
    fn config_devices_override_defaults() {
        let d: LinuxDevice = serde_json::from_str(
            r#"{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":420,"uid":5,"gid":6}"#,
        )
        .unwrap();
        let p = plan(true, &[d]);
        assert_eq!(p.len(), 6);
        let null = p.iter().find(|n| n.path == Path::new("/dev/null")).unwrap();
        assert_eq!((null.mode, null.uid, null.gid), (0o644, 5, 6));
    }
}
