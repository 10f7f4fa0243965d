//! Container operations: each command is one function here that reads as a list of named steps.
//! This module orchestrates (spec → state → cgroup → spawn → init) and never calls libc itself.

pub mod checkpoint;
pub mod create;
pub mod events;
pub mod exec;
pub mod hooks;
pub mod ops;
pub mod signal;
pub mod state;
pub mod tty;
pub mod update;

use std::path::{Path, PathBuf};

use crate::cgroups::CgroupError;
use crate::init::InitError;
use crate::spawn::channel::ChannelError;
use crate::spawn::SpawnError;
use crate::spec::SpecError;

/// Settings every command shares (global flags).
#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Exe(#[from] crate::security::exe::ExeError),
    #[error(transparent)]
    Seccomp(#[from] crate::security::seccomp::SeccompError),
    #[error("unable to start container process: {0}")]
    Spawn(#[from] SpawnError),
    #[error("unable to start container process: {}", init_text(.0))]
    Init(InitError),
    #[error("unable to start container process: {0}")]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error("unable to start container process: {0}")]
    StartFailed(String),
    #[error("container does not exist: {0}")]
    NotExist(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error(
        "invalid container id {0:?}: ids may use letters, digits, '_', '+', '-', '.', and must not be '.' or '..'"
    )]
    BadId(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt state file {}: {reason}", path.display())]
    CorruptState { path: PathBuf, reason: String },
    #[error("{0}")]
    Status(StatusError),
    #[error("invalid signal {0:?}")]
    BadSignal(String),
    #[error("sending signal {sig} to container {id}: {source}")]
    Signal {
        id: String,
        sig: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: init {pid} did not exit within {secs}s after SIGKILL")]
    KillTimeout { id: String, pid: i32, secs: u64 },
    #[error("invalid --init-pid: {0}")]
    InitPid(String),
    #[error("configuring the user namespace of pid {pid}: writing {file}: {source}")]
    IdMap {
        pid: i32,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("exec failed: {0}")]
    ExecFailed(Box<Error>),
    #[error("invalid --interval {0:?}: expected a duration like 5s or 500ms")]
    BadInterval(String),
    #[error("update: {0}")]
    BadUpdate(String),
    #[error("cannot allocate tty if amber will detach without setting console socket")]
    TtyDetached,
    #[error("cannot use console socket if amber will not detach or allocate tty")]
    ConsoleSocketUnused,
    #[error("receiving the pty master from the container: {0}")]
    TtyMaster(#[source] std::io::Error),
    #[error("exec args cannot be empty")]
    ExecArgs,
    #[error("invalid --user {0:?}: expected UID[:GID] (numeric)")]
    BadUser(String),
    #[error("unknown capability {0:?}")]
    BadCapability(String),
}

/// Refusals that depend on the container's status, worded as runc words them (engines match on
/// "container not running" and "does not exist").
#[derive(Debug)]
pub enum StatusError {
    NotRunning,
    StartStopped,
    StartRunning,
    DeleteNotStopped { id: String, status: state::Status },
    NotCreated(state::Status),
    NotPaused,
    AlreadyPaused,
    ExecStopped,
    ExecPaused,
    CannotCheckpoint(state::Status),
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusError::NotRunning => f.write_str("container not running"),
            StatusError::StartStopped => f.write_str("cannot start a container that has stopped"),
            StatusError::StartRunning => f.write_str("cannot start an already running container"),
            StatusError::DeleteNotStopped { id, status } => {
                write!(f, "cannot delete container {id} that is not stopped: {status}")
            }
            StatusError::NotCreated(s) => write!(f, "container is not in created state: {s}"),
            StatusError::NotPaused => f.write_str("container not paused"),
            StatusError::AlreadyPaused => f.write_str("container already paused"),
            StatusError::ExecStopped => f.write_str("cannot exec in a stopped container"),
            StatusError::CannotCheckpoint(s) => write!(f, "Container cannot be checkpointed in {s} state"),
            StatusError::ExecPaused => {
                f.write_str("cannot exec in a paused container (use --ignore-paused to override)")
            }
        }
    }
}

fn init_text(e: &InitError) -> String {
    match e {
        InitError::Step { .. } => format!("error during container init: {e}"),
        _ => e.to_string(),
    }
}

/// `--pidfd-socket` (runc 1.2+): hand the new process's pidfd to the caller's socket, in one
/// sendmsg with exactly one SCM_RIGHTS fd, like the console socket.
pub fn send_pidfd(socket: &Path, pidfd: std::os::fd::BorrowedFd<'_>) -> Result<(), Error> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let sock = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| Error::io("connecting to pidfd socket", socket, e))?;
    let fds = [pidfd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"pidfd")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::io("sending the pidfd", socket, e.into()))?;
    Ok(())
}

impl Error {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// runc's id rule: `^[\w+-\.]+$`, and not "." or "..".
pub fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["a", "abc-1.2_3+x", "0123456789abcdef"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_errors_read_like_runc() {
        let e = Error::Init(InitError::NotFound("nope".into()));
        assert_eq!(
            e.to_string(),
            "unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        let e = Error::Init(InitError::step(
            "error setting rlimits for ready process",
            "operation not permitted",
        ));
        assert!(e
            .to_string()
            .contains("error during container init: error setting rlimits"));
    }
}
