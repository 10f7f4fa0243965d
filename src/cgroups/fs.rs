//! The few filesystem operations the manager performs on cgroupfs, each turning an io::Error into
//! a CgroupError that names the file (and the value, for writes).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use super::CgroupError;

/// Write `value` into an existing cgroup file. No O_CREAT (a missing file means a missing
/// controller, which must surface as an error, not become a regular file) and no O_TRUNC (cgroupfs
/// parses each write(2) as one complete value).
pub fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    write_raw(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

pub fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

pub fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn mkdir_p(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(|source| CgroupError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Pids listed in one cgroup.procs; a cgroup that vanished meanwhile has none.
pub fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CgroupError::Read { path, source }),
    };
    text.split_whitespace()
        .map(|p| {
            p.parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                content: p.to_string(),
            })
        })
        .collect()
}

/// Every process in `dir` and its sub-cgroups.
pub fn pids_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for d in subtree_dirs(dir)? {
        pids.extend(read_procs(&d)?);
    }
    Ok(pids)
}

/// `dir` and every directory below it, parents before children. Symlinks are not followed, and
/// directories that disappear while we look (cgroups removed concurrently) are skipped.
pub fn subtree_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::ReadDir { path: d, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::ReadDir {
                path: d.clone(),
                source,
            })?;
            // DirEntry::file_type does not follow symlinks: a link can never lead us elsewhere.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// Order for rmdir: deepest first, so each directory is empty of sub-cgroups when its turn
/// comes. Anything not under `root` is dropped: destroy only ever removes the container's tree.
pub fn removal_order(root: &Path, mut dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.retain(|d| d.starts_with(root));
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

/// How often removal is tried before giving up, and the first pause (doubled each time, capped):
/// about a second in all, for processes that are still exiting after SIGKILL.
const REMOVE_ATTEMPTS: u32 = 8;
const REMOVE_FIRST_DELAY: Duration = Duration::from_millis(10);
const REMOVE_MAX_DELAY: Duration = Duration::from_millis(500);

/// rmdir each of `dirs` and its sub-cgroups. On cgroupfs rmdir works on a directory full of
/// control files but fails with EBUSY while tasks remain (or ENOTEMPTY if a sub-cgroup appeared),
/// so those are retried, in rounds over all trees so that the wait is shared; ENOENT is success.
/// Every tree is attempted; the first failure is returned.
pub fn remove_trees(dirs: &[&Path]) -> Result<(), CgroupError> {
    let mut pending: Vec<&Path> = dirs.to_vec();
    let mut first_err = None;
    let mut delay = REMOVE_FIRST_DELAY;
    for attempt in 1..=REMOVE_ATTEMPTS {
        let mut busy = Vec::new();
        for dir in pending {
            let failure = match try_remove_tree(dir) {
                Ok(None) => continue,
                Ok(Some(f)) => f,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let (path, source) = failure;
            let retryable = matches!(source.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY));
            if retryable && attempt < REMOVE_ATTEMPTS {
                busy.push(dir);
            } else {
                first_err.get_or_insert(CgroupError::Remove {
                    path,
                    attempts: attempt,
                    source,
                });
            }
        }
        pending = busy;
        if pending.is_empty() {
            break;
        }
        sleep(delay);
        delay = (delay * 2).min(REMOVE_MAX_DELAY);
    }
    first_err.map_or(Ok(()), Err)
}

/// One pass; returns the first rmdir failure.
fn try_remove_tree(dir: &Path) -> Result<Option<(PathBuf, io::Error)>, CgroupError> {
    for d in removal_order(dir, subtree_dirs(dir)?) {
        match fs::remove_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Ok(Some((d, e))),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_order_is_depth_first_and_confined() {
        let root = Path::new("/cg/memory/ctr");
        let dirs = vec![
            PathBuf::from("/cg/memory/ctr"),
            PathBuf::from("/cg/memory/ctr/a"),
            PathBuf::from("/cg/memory/ctr/a/b"),
            PathBuf::from("/cg/memory/ctr/c"),
            PathBuf::from("/cg/memory/other"),
            PathBuf::from("/cg/memory/ctr-sibling"),
        ];
        let order = removal_order(root, dirs);
        let pos = |p: &str| order.iter().position(|d| d == Path::new(p)).unwrap();
        assert_eq!(order.len(), 4, "{order:?}");
        assert!(pos("/cg/memory/ctr/a/b") < pos("/cg/memory/ctr/a"));
        assert!(pos("/cg/memory/ctr/a") < pos("/cg/memory/ctr"));
        assert!(pos("/cg/memory/ctr/c") < pos("/cg/memory/ctr"));
        assert_eq!(order.last().unwrap(), root);
    }

    #[test]
    fn remove_tree_removes_only_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let ctr = tmp.path().join("ctr");
        fs::create_dir_all(ctr.join("a/b/c")).unwrap();
        fs::create_dir_all(ctr.join("d")).unwrap();
        fs::create_dir_all(tmp.path().join("ctr-sibling")).unwrap();
        let other = tmp.path().join("other/ctr");
        fs::create_dir_all(other.join("x")).unwrap();
        remove_trees(&[&ctr, &other]).unwrap();
        assert!(!ctr.exists() && !other.exists());
        assert!(tmp.path().join("ctr-sibling").exists());
        remove_trees(&[&ctr]).unwrap(); // already gone: success
    }

    #[test]
    fn subtree_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let ctr = tmp.path().join("ctr");
        fs::create_dir_all(ctr.join("a")).unwrap();
        fs::create_dir_all(tmp.path().join("outside/keep")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), ctr.join("link")).unwrap();
        let mut dirs = subtree_dirs(&ctr).unwrap();
        dirs.sort();
        assert_eq!(dirs, [ctr.clone(), ctr.join("a")]);
    }

    #[test]
    fn remove_tree_reports_path_of_non_retryable_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let ctr = tmp.path().join("ctr");
        fs::create_dir_all(ctr.join("sub")).unwrap();
        // On a regular filesystem a file makes rmdir fail with ENOTEMPTY: retried, then reported.
        fs::write(ctr.join("sub/file"), "x").unwrap();
        let err = remove_trees(&[&ctr]).unwrap_err();
        match &err {
            CgroupError::Remove { path, attempts, .. } => {
                assert_eq!(path, &ctr.join("sub"));
                assert_eq!(*attempts, REMOVE_ATTEMPTS);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("sub"), "{err}");
    }

    #[test]
    fn write_never_creates() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("memory.max");
        let err = write_file(&missing, "100").unwrap_err();
        assert!(!missing.exists());
        let msg = err.to_string();
        assert!(msg.contains("memory.max") && msg.contains("100"), "{msg}");
    }

    #[test]
    fn procs_parse_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_procs(tmp.path()).unwrap().is_empty());
        fs::write(tmp.path().join("cgroup.procs"), "12\n34\n").unwrap();
        fs::create_dir(tmp.path().join("child")).unwrap();
        fs::write(tmp.path().join("child/cgroup.procs"), "56\n").unwrap();
        let mut pids = pids_recursive(tmp.path()).unwrap();
        pids.sort();
        assert_eq!(pids, [12, 34, 56]);
        fs::write(tmp.path().join("cgroup.procs"), "12\nzz\n").unwrap();
        assert!(matches!(read_procs(tmp.path()), Err(CgroupError::Parse { .. })));
    }
}
