//! Safe resolution of paths inside the container root. Every mount target is opened with
//! openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) relative to an fd of the root, and the mount
//! is made on `/proc/self/fd/N` of that fd: a symlink planted in the rootfs (or swapped in while
//! we work, CVE-2021-30465) can never send a mount outside the root.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::Mode;

use crate::sys;

const RESOLVE: u64 = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;

/// Normalise a container path into its components below the root ("/a/../b" → "b").
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Dir,
    File,
}

/// Open (O_PATH) `path` inside `root`, creating missing directories (and the last component as
/// `kind`) without ever resolving outside the root.
pub fn open_or_create(root: &OwnedFd, path: &Path, kind: Kind) -> io::Result<OwnedFd> {
    let rel = clean(path);
    if rel.as_os_str().is_empty() {
        return sys::openat2(root.as_fd(), Path::new("."), libc::O_PATH | libc::O_DIRECTORY, RESOLVE);
    }
    let comps: Vec<_> = rel.components().collect();
    let mut so_far = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let parent = so_far.clone();
        so_far.push(c);
        match sys::openat2(root.as_fd(), &so_far, libc::O_PATH, RESOLVE) {
            Ok(fd) if last => return Ok(fd),
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let dir = if parent.as_os_str().is_empty() {
                    sys::openat2(root.as_fd(), Path::new("."), libc::O_PATH | libc::O_DIRECTORY, RESOLVE)?
                } else {
                    sys::openat2(root.as_fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, RESOLVE)?
                };
                if last && kind == Kind::File {
                    let f = nix::fcntl::openat(
                        Some(dir.as_raw_fd()),
                        c.as_os_str(),
                        nix::fcntl::OFlag::O_CREAT
                            | nix::fcntl::OFlag::O_WRONLY
                            | nix::fcntl::OFlag::O_CLOEXEC
                            | nix::fcntl::OFlag::O_NOFOLLOW,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map_err(io::Error::from)?;
                    let _ = nix::unistd::close(f);
                } else {
                    match nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), c.as_os_str(), Mode::from_bits_truncate(0o755))
                    {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let fd = sys::openat2(root.as_fd(), &so_far, libc::O_PATH, RESOLVE)?;
                if last {
                    return Ok(fd);
                }
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its last component")
}

/// Permission bits of `path` inside `root` if it already exists (resolved inside the root).
pub fn existing_mode(root: &OwnedFd, path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let fd = sys::openat2(root.as_fd(), &clean(path), libc::O_PATH, RESOLVE).ok()?;
    std::fs::metadata(fd_path(&fd))
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// The `/proc/self/fd/N` path through which mount(2) reaches exactly the object `fd` names.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Open the root itself.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let f = std::fs::File::open(root)?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_stays_below_root() {
        assert_eq!(clean(Path::new("/a/../../b/./c")), PathBuf::from("b/c"));
        assert_eq!(clean(Path::new("../../etc")), PathBuf::from("etc"));
        assert_eq!(clean(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn symlinks_resolve_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // An absolute symlink and a ..-laden one, both pointing "outside".
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        let rfd = open_root(&root).unwrap();
        for link in ["abs/x/y", "up/z"] {
            let fd = open_or_create(&rfd, Path::new(link), Kind::Dir).unwrap();
            let real = std::fs::read_link(fd_path(&fd)).unwrap();
            assert!(real.starts_with(&root), "{link} resolved to {real:?}");
        }
        let f = open_or_create(&rfd, Path::new("/etc/hosts"), Kind::File).unwrap();
        let real = std::fs::read_link(fd_path(&f)).unwrap();
        assert_eq!(real, root.join("etc/hosts"));
    }
}
