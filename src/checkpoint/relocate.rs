//! Paths in a container task's image are made relative to the task's root. The dump reads
//! /proc from the host, so it sees `<rootfs>/bin/busybox`; the restore runs inside the
//! container's (new) root, possibly another bundle's, where the same file is `/bin/busybox`.
//! Stdio fds pointing outside the root (files the caller handed over, like conmon's logs) become
//! external objects that the restore caller supplies again, as runc does with CRIU (pipes and
//! terminals among the root task's fds 0-2 already are, `files::external_stdio`). Every path an
//! fd was opened at (files, directories, devices, FIFOs, ghost files) is made relative too.

use super::image::{FdKind, TaskImage};
use super::{CheckpointError, Result};

/// `path` as seen from inside `root`, or None when it lies outside.
pub fn inside(root: &str, path: &str) -> Option<String> {
    if root == "/" {
        return Some(path.to_string());
    }
    let root = root.trim_end_matches('/');
    if path == root {
        return Some("/".into());
    }
    path.strip_prefix(root)
        .filter(|rest| rest.starts_with('/'))
        .map(str::to_string)
}

/// Mount ids of the mount namespace `host_pid` lives in.
fn mount_ids(host_pid: i32) -> std::collections::BTreeSet<u64> {
    std::fs::read_to_string(format!("/proc/{host_pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The mount id an fd of `host_pid` is on (fdinfo's mnt_id).
fn fd_mount(host_pid: i32, fd: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{host_pid}/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:")?.trim().parse().ok())
}

/// Stdio on a mount the task's mount namespace does not have was handed in from outside (the
/// caller's log file or terminal): the restore caller supplies it again.
fn externalize_stdio(task: &mut TaskImage, host_pid: i32) {
    let mounts = mount_ids(host_pid);
    for f in task.fds.iter_mut().filter(|f| f.fd <= 2) {
        if let FdKind::Regular { path, .. } = &f.kind {
            if fd_mount(host_pid, f.fd).is_some_and(|m| !mounts.contains(&m)) {
                f.kind = FdKind::External { key: path.clone() };
            }
        }
    }
}

/// Rewrite every path of `task` relative to its root, then make the root "/".
pub fn relativize(task: &mut TaskImage, host_pid: i32) -> Result<()> {
    externalize_stdio(task, host_pid);
    let root = task.root.clone();
    if root == "/" {
        return Ok(());
    }
    let pid = task.pid;
    let outside = |what: &str, path: &str| CheckpointError::Unsupported {
        pid,
        what: format!("{what} {path} is outside the container's root {root}"),
    };
    task.exe = inside(&root, &task.exe).ok_or_else(|| outside("executable", &task.exe))?;
    task.cwd = inside(&root, &task.cwd).ok_or_else(|| outside("working directory", &task.cwd))?;
    for v in task.vmas.iter_mut().filter(|v| v.file.is_some()) {
        v.name = inside(&root, &v.name).ok_or_else(|| outside("mapped file", &v.name))?;
        if let Some(g) = v.ghost.as_mut() {
            g.path = inside(&root, &g.path).ok_or_else(|| outside("mapped file", &g.path))?;
        }
    }
    for f in task.fds.iter_mut() {
        if let FdKind::Inotify { watches } = &mut f.kind {
            for w in watches.iter_mut() {
                w.path = inside(&root, &w.path).ok_or_else(|| outside(&format!("fd {} watch", f.fd), &w.path))?;
            }
            continue;
        }
        let regular = matches!(f.kind, FdKind::Regular { .. });
        let Some(path) = f.kind.path_mut() else { continue };
        match inside(&root, path) {
            Some(p) => *path = p,
            // The container's stdio, opened by whoever created it: handed over again.
            None if f.fd <= 2 && regular => {
                let key = path.clone();
                f.kind = FdKind::External { key };
            }
            None => return Err(outside(&format!("fd {}", f.fd), &path.clone())),
        }
    }
    task.root = "/".into();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inside;

    #[test]
    fn paths_inside_and_outside_the_root() {
        assert_eq!(inside("/r/rootfs", "/r/rootfs/bin/sh").as_deref(), Some("/bin/sh"));
        assert_eq!(inside("/r/rootfs/", "/r/rootfs").as_deref(), Some("/"));
        assert_eq!(inside("/r/rootfs", "/r/rootfs2/x"), None);
        assert_eq!(inside("/r/rootfs", "/tmp/log"), None);
        assert_eq!(inside("/", "/tmp/log").as_deref(), Some("/tmp/log"));
    }
}
