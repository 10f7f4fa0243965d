//! The namespaces of the dumped tasks, read from the host's /proc: the nsfs inode of each
//! /proc/<pid>/ns/* link, and the parent of every pid namespace seen (NS_GET_PARENT), for
//! `plan::build_tree` to place each task in the container's pid-namespace tree.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::pidtree::TaskNs;
use super::{CheckpointError, Result};

/// Synthetic ids (minus the host pid) of pid namespaces not populated yet; nsfs inodes are
/// 32-bit.
const UNPOPULATED: u64 = u64::MAX;

/// Kinds compared with the container init's (pid and pid_for_children are planned instead).
const OTHER_KINDS: [&str; 8] = [
    "mnt",
    "net",
    "ipc",
    "uts",
    "user",
    "cgroup",
    "time",
    "time_for_children",
];

fn ino(path: &str) -> Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.ino())),
        // A kernel without this namespace kind.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(super::proc_err(path)(e)),
    }
}

/// Every task's namespaces, and the parent of each pid namespace (and pid_for_children) that
/// is not the container's own (the root's).
pub fn read(pids: &[i32], root: i32) -> Result<(BTreeMap<i32, TaskNs>, BTreeMap<u64, u64>)> {
    let mut tasks = BTreeMap::new();
    let mut parents = BTreeMap::new();
    let container = ino(&format!("/proc/{root}/ns/pid"))?.unwrap_or(0);
    for &pid in pids {
        let pid_ns = ino(&format!("/proc/{pid}/ns/pid"))?.unwrap_or(0);
        let pfc_path = format!("/proc/{pid}/ns/pid_for_children");
        let for_children = match ino(&pfc_path)? {
            Some(i) => i,
            // The kernel hides a namespace that has no init yet: the task did
            // unshare(CLONE_NEWPID) and has not forked since. Such a namespace is always a child
            // of the task's own (unshare refuses otherwise, and setns needs an fd to it): name
            // it by a synthetic id no inode can have.
            None if std::fs::symlink_metadata(&pfc_path).is_ok() => {
                let id = UNPOPULATED - pid as u64;
                parents.insert(id, pid_ns);
                id
            }
            None => pid_ns, // a kernel without pid_for_children
        };
        let mut other = Vec::new();
        for kind in OTHER_KINDS {
            if let Some(i) = ino(&format!("/proc/{pid}/ns/{kind}"))? {
                other.push((kind.to_string(), i));
            }
        }
        for (ns, link) in [(pid_ns, "pid"), (for_children, "pid_for_children")] {
            if ns != container && !parents.contains_key(&ns) {
                parents.insert(ns, parent_of(pid, link)?);
            }
        }
        tasks.insert(
            pid,
            TaskNs {
                pid: pid_ns,
                pid_for_children: for_children,
                other,
            },
        );
    }
    Ok((tasks, parents))
}

fn parent_of(pid: i32, link: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/{link}");
    let ns = std::fs::File::open(&path).map_err(super::proc_err(&path))?;
    let parent = crate::sys::ns_ioctl(ns.as_fd(), crate::sys::NS_GET_PARENT)
        .map_err(|e| CheckpointError::Sys("NS_GET_PARENT", e))?;
    let meta = std::fs::File::from(parent)
        .metadata()
        .map_err(|e| CheckpointError::Sys("fstat of a pid namespace", e))?;
    Ok(meta.ino())
}
