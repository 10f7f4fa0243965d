//! Native checkpoint/restore (CHECKPOINT.md), step 1: trees of single-threaded processes,
//! restored at their exact pids without CRIU, at every level of pid namespaces nested inside
//! the container (CHECKPOINT.md §2.4: `pidtree`, `pidns`).
//!
//! - dump: seize + interrupt every task, read /proc and ptrace register sets, a handful of
//!   read-only syscalls injected through a `syscall` instruction of the task's own vdso
//!   (sigactions, brk, tid address, altstack, itimers), memory through pagemap + /proc/pid/mem;
//!   descriptors and shared memory objects (`files`: files, ghost files, directories, devices,
//!   pipes and FIFOs with their data, memfds, eventfd, signalfd, timerfd, epoll with its
//!   registrations, inotify watches, file locks, unix sockets (`sockets`: pairs with their queues, listeners,
//!   bound and unbound sockets; TCP listeners, idle TCP and UDP sockets), MAP_SHARED memory; shared open file descriptions
//!   found with kcmp); then write a checksummed image (`image`) and detach (leave running) or
//!   kill.
//! - restore: `image::load` verifies every checksum and the host record; seeds (forks of the
//!   restorer running ordinary Rust, `seed`) are cloned top-down at exact pids by their real
//!   parents (inheriting every file object, created once by the restorer before the first
//!   clone, `files::build`), dup3 their fds into place, set cwd, rlimits, sigactions and
//!   premap + fill their memory (shared mappings map the same objects again); then the
//!   restorer seizes each seed and transplants the address space through a stub page
//!   (`transplant`), changes its credentials last (`creds`: groups, uids/gids, capability
//!   sets, securebits, no_new_privs, dumpable), sets the final registers at the stub's last
//!   syscall-exit-stop and detaches.
//!
//! API for the CLI: [`dump::dump_tree`] / [`dump::dump_cgroup`] (`amber checkpoint`),
//! [`restore::restore`] (`amber restore`), [`image::inspect_json`] (`checkpoint-inspect`).

pub mod creds;
pub mod dump;
mod dump_task;
mod files;
pub mod host;
pub mod image;
mod pidns;
pub mod pidtree;
pub mod plan;
pub mod procfs;
pub mod pstree;
mod relocate;
mod remote;
pub mod restore;
mod seed;
mod signals;
mod sockets;
mod transplant;

#[cfg(test)]
mod tests_nested;
#[cfg(test)]
mod tests_root;

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("image file {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} already holds a checkpoint image (manifest.json exists)")]
    ImageExists(PathBuf),
    #[error("encoding {0}: {1}")]
    Encode(String, #[source] serde_json::Error),
    #[error("corrupt image: {0}")]
    Corrupt(String),
    #[error("image made on an incompatible host: {0}")]
    Incompatible(String),
    #[error("reading {path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}: {1}")]
    Sys(&'static str, #[source] io::Error),
    #[error("cannot checkpoint pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("ptrace {op} on pid {pid}: {source}")]
    Ptrace {
        pid: i32,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: injected {syscall} failed with errno {errno}")]
    Injected {
        pid: i32,
        syscall: &'static str,
        errno: i64,
    },
    #[error("pid {pid} stopped unexpectedly ({what})")]
    UnexpectedStop { pid: i32, what: String },
    #[error("restore seed for pid {pid}: {msg}")]
    Seed { pid: i32, msg: String },
    #[error("restore: {0}")]
    Restore(String),
    #[error("fault injected at {0} (AMBER_FAULT)")]
    Fault(&'static str),
    #[error(transparent)]
    Spawn(#[from] crate::spawn::SpawnError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// An error, and a failure to undo what was done before it (the container may not be back
    /// as it was: this names what is left).
    #[error("{error}; undoing it also failed: {cleanup}")]
    Cleanup {
        error: Box<CheckpointError>,
        cleanup: Box<CheckpointError>,
    },
    #[error("{command} needs {missing} (amber has {has})")]
    MissingCapability {
        command: &'static str,
        missing: String,
        has: String,
    },
}

/// Fault injection for the cleanup tests (as CRIU's CRIU_FAULT): `AMBER_FAULT=<point>[,...]`
/// makes the named step fail. Points: `restore-after-clone` (every seed exists),
/// `restore-mid-transplant` (the root and, if there is one, the next task are transplanted and
/// seized, the others are seeds), `restore-after-transplant` (every task is transplanted and
/// still seized, none released), `restore-load-state` (the dumped registers of every task but
/// the last are loaded, none released),
/// `dump-query` (inside the first task queried at dump, its scratch page mapped) and
/// `dump-query-return` (that task at its last injected syscall-exit-stop, before it is put back).
pub(crate) fn fault(point: &'static str) -> Result<()> {
    match std::env::var("AMBER_FAULT") {
        Ok(v) if v.split(',').any(|p| p == point) => Err(CheckpointError::Fault(point)),
        _ => Ok(()),
    }
}

/// What `checkpoint` and `restore` need from amber's own effective set, checked before
/// anything is frozen or made: CAP_SYS_PTRACE to seize the tasks (or the seeds), and
/// CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (map_files and kcmp at dump; set_tid, the exe link
/// and PR_SET_MM_MAP at restore).
pub fn require_capabilities(command: &'static str) -> Result<()> {
    use caps::CapSet;
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    missing_capabilities(command, &effective)
}

fn missing_capabilities(command: &'static str, effective: &caps::CapsHashSet) -> Result<()> {
    use caps::Capability::{CAP_CHECKPOINT_RESTORE, CAP_SYS_ADMIN, CAP_SYS_PTRACE};
    let mut missing = Vec::new();
    if !effective.contains(&CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE (to seize the container's processes)".to_string());
    }
    if !effective.contains(&CAP_SYS_ADMIN) && !effective.contains(&CAP_CHECKPOINT_RESTORE) {
        missing.push(
            "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (to read and rebuild pids, mappings and descriptors)".to_string(),
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut has: Vec<String> = effective.iter().map(|c| c.to_string()).collect();
    has.sort();
    Err(CheckpointError::MissingCapability {
        command,
        missing: missing.join(" and "),
        has: if has.is_empty() { "none".into() } else { has.join(", ") },
    })
}

pub type Result<T> = std::result::Result<T, CheckpointError>;

/// `result`, with the failure of the cleanup that followed it reported too (alone if `result`
/// succeeded).
pub(crate) fn and_cleanup<T>(result: Result<T>, cleanup: Result<()>) -> Result<T> {
    match (result, cleanup) {
        (Err(error), Err(cleanup)) => Err(CheckpointError::Cleanup {
            error: Box::new(error),
            cleanup: Box::new(cleanup),
        }),
        (result, Ok(())) => result,
        (Ok(_), Err(cleanup)) => Err(cleanup),
    }
}

pub(crate) fn ptrace_err(pid: i32, op: &'static str) -> impl FnOnce(nix::Error) -> CheckpointError {
    move |e| CheckpointError::Ptrace {
        pid,
        op,
        source: e.into(),
    }
}

pub(crate) fn proc_err(path: &str) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Proc {
        path: path.to_string(),
        source,
    }
}

#[cfg(test)]
mod caps_tests {
    use super::*;
    use caps::Capability::*;

    #[test]
    fn missing_capabilities_are_named() {
        let set = |c: &[caps::Capability]| c.iter().copied().collect::<caps::CapsHashSet>();
        assert!(missing_capabilities("checkpoint", &set(&[CAP_SYS_PTRACE, CAP_SYS_ADMIN])).is_ok());
        assert!(missing_capabilities("restore", &set(&[CAP_SYS_PTRACE, CAP_CHECKPOINT_RESTORE])).is_ok());
        let e = missing_capabilities("checkpoint", &set(&[CAP_SYS_ADMIN]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("checkpoint needs CAP_SYS_PTRACE"), "{e}");
        assert!(!e.contains("CAP_CHECKPOINT_RESTORE"), "{e}");
        let e = missing_capabilities("restore", &set(&[CAP_SYS_PTRACE]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE"), "{e}");
        let e = missing_capabilities("restore", &set(&[])).unwrap_err().to_string();
        assert!(e.contains("CAP_SYS_PTRACE") && e.contains("amber has none"), "{e}");
    }
}
