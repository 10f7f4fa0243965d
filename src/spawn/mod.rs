//! The clone path. Every process amber creates for a container is born here, with one `clone3()`
//! that creates all requested namespaces, returns a pidfd (all later signals go through it, so a
//! recycled pid can never be hit), places the child in its cgroup on v2 and, when asked, at exact
//! pids (`set_tid`, innermost level first).
//!
//! Joining existing namespaces by path cannot be done by the runtime itself without changing its
//! own namespaces, so when a config joins any, an intermediate process `setns()`es into them and
//! clones the real child with `CLONE_PARENT`: the child is still ours (and later the caller's
//! subreaper's), and the intermediate exits at once.

pub mod channel;
pub mod tid;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::sys;
pub use tid::{check_set_tid, PidLevel, SetTidError, Taken};

/// A namespace to join, opened by the parent before cloning (so a bad path fails early, with the
/// path in the message, and the fd cannot be swapped underneath us).
pub struct JoinNs {
    pub kind: CloneFlags,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// Everything the clone needs, as data.
pub struct SpawnPlan {
    /// CLONE_NEW* flags for the namespaces to create.
    pub new_namespaces: u64,
    /// Exact pids, innermost namespace level first; empty lets the kernel choose.
    pub set_tid: Vec<i32>,
    /// cgroup v2 directory for CLONE_INTO_CGROUP.
    pub cgroup_fd: Option<RawFd>,
    /// Namespaces to join before the clone (user first, as the kernel requires).
    pub joins: Vec<JoinNs>,
    /// A new time namespace with these (clock, seconds, nanoseconds) offsets. Offsets can only
    /// be written before any process enters the namespace, so the intermediate process
    /// unshares it (for its children only), writes them, and clones the child into it.
    pub time_offsets: Option<Vec<(String, i64, u32)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("clone3 failed: {}", explain_clone_errno(.0, .1))]
    Clone(io::Error, String),
    #[error("joining namespace {path}: {source}")]
    Join {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("the namespace-joining helper failed: {0}")]
    Helper(String),
    #[error(transparent)]
    SetTid(#[from] SetTidError),
}

fn explain_clone_errno(err: &io::Error, context: &str) -> String {
    let why = match err.raw_os_error() {
        Some(libc::EEXIST) => "a requested pid is already in use",
        Some(libc::EINVAL) => "the kernel rejected the arguments (set_tid longer than the pid namespace nesting, or a new pid namespace whose innermost pid is not 1)",
        Some(libc::EPERM) => "operation not permitted (setting pids needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the user namespace owning each pid namespace)",
        Some(libc::ENOSPC) => "too many nested namespaces",
        Some(libc::EUSERS) => "too many nested user namespaces",
        _ => "",
    };
    if why.is_empty() {
        format!("{err}{context}")
    } else {
        format!("{why}: {err}{context}")
    }
}

/// The result of a spawn, in the parent.
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

impl SpawnPlan {
    pub fn describe(&self) -> String {
        if self.set_tid.is_empty() {
            String::new()
        } else {
            format!(" (set_tid {:?}, innermost first)", self.set_tid)
        }
    }
}

/// Clone the child described by `plan`; the child runs `child` and exits with its return value.
/// Must be called while the process is single-threaded.
pub fn spawn(plan: &SpawnPlan, child: impl FnOnce() -> i32) -> Result<Spawned, SpawnError> {
    if plan.joins.is_empty() && plan.time_offsets.is_none() {
        return match sys::clone3(plan.new_namespaces, &plan.set_tid, plan.cgroup_fd) {
            Ok(sys::Forked::Child) => sys::exit_now(child()),
            Ok(sys::Forked::Parent { pid, pidfd }) => Ok(Spawned { pid, pidfd }),
            Err(e) => Err(SpawnError::Clone(e, plan.describe())),
        };
    }
    spawn_via_joiner(plan, child)
}

fn spawn_via_joiner(plan: &SpawnPlan, child: impl FnOnce() -> i32) -> Result<Spawned, SpawnError> {
    let (ours, theirs) =
        std::os::unix::net::UnixDatagram::pair().map_err(|e| SpawnError::Helper(format!("socketpair: {e}")))?;
    match sys::clone3(0, &[], None) {
        Err(e) => Err(SpawnError::Clone(e, " (namespace-joining helper)".into())),
        Ok(sys::Forked::Child) => {
            drop(ours);
            match joiner(plan, &theirs) {
                Ok(true) => {
                    drop(theirs);
                    sys::exit_now(child())
                }
                Ok(false) => sys::exit_now(0),
                Err(e) => {
                    let _ = theirs.send(format!("E{e}").as_bytes());
                    sys::exit_now(1)
                }
            }
        }
        Ok(sys::Forked::Parent { pid, pidfd: helper }) => {
            drop(theirs);
            let received = recv_pidfd(&ours);
            // The helper exits right after sending; reap it so it never lingers as a zombie.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            drop(helper);
            received
        }
    }
}

/// Runs in the helper: join every namespace, then clone the real child as our sibling.
/// Returns true in the grandchild (which then runs the container code), false in the helper.
fn joiner(plan: &SpawnPlan, sock: &std::os::unix::net::UnixDatagram) -> Result<bool, SpawnError> {
    // With CLONE_INTO_CGROUP the cgroup namespace is joined by the child after the clone: from
    // inside a cgroup namespace the kernel refuses (ENOENT) to move a task out of a cgroup that
    // lies outside the namespace's root, which the helper's own cgroup does.
    let defer_cgroup = plan.cgroup_fd.is_some();
    let join = |ns: &JoinNs, kind: CloneFlags| {
        nix::sched::setns(ns.fd.as_fd(), kind).map_err(|source| SpawnError::Join {
            path: ns.path.clone(),
            source,
        })
    };
    for ns in &plan.joins {
        let kind = if defer_cgroup {
            ns.kind - CloneFlags::CLONE_NEWCGROUP
        } else {
            ns.kind
        };
        if !kind.is_empty() {
            join(ns, kind)?;
        }
    }
    if let Some(offsets) = &plan.time_offsets {
        enter_new_time_namespace(offsets)?;
    }
    match sys::clone3(plan.new_namespaces | sys::CLONE_PARENT, &plan.set_tid, plan.cgroup_fd) {
        Err(e) => Err(SpawnError::Clone(e, plan.describe())),
        Ok(sys::Forked::Child) => {
            if defer_cgroup {
                for ns in plan
                    .joins
                    .iter()
                    .filter(|ns| ns.kind.contains(CloneFlags::CLONE_NEWCGROUP))
                {
                    // The child cannot report through the helper any more: a failure here ends
                    // it before it runs anything, which its parent sees as a failed spawn.
                    if join(ns, CloneFlags::CLONE_NEWCGROUP).is_err() {
                        sys::exit_now(126);
                    }
                }
            }
            Ok(true)
        }
        Ok(sys::Forked::Parent { pid, pidfd }) => {
            let fds = [pidfd.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            let payload = format!("P{pid}");
            let iov = [io::IoSlice::new(payload.as_bytes())];
            sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
                .map_err(|e| SpawnError::Helper(format!("sending the pidfd: {e}")))?;
            Ok(false)
        }
    }
}

/// unshare(CLONE_NEWTIME) affects only our future children; write the offsets while nothing
/// lives in the namespace yet.
fn enter_new_time_namespace(offsets: &[(String, i64, u32)]) -> Result<(), SpawnError> {
    let flag = CloneFlags::from_bits_retain(sys::CLONE_NEWTIME as i32);
    nix::sched::unshare(flag).map_err(|e| SpawnError::Helper(format!("unsharing the time namespace: {e}")))?;
    let text: String = offsets
        .iter()
        .map(|(clock, s, ns)| format!("{clock} {s} {ns}\n"))
        .collect();
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", text)
            .map_err(|e| SpawnError::Helper(format!("writing /proc/self/timens_offsets: {e}")))?;
    }
    Ok(())
}

fn recv_pidfd(sock: &std::os::unix::net::UnixDatagram) -> Result<Spawned, SpawnError> {
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| SpawnError::Helper(format!("receiving the pidfd: {e}")))?;
    let mut fd = None;
    for c in msg.cmsgs().map_err(|e| SpawnError::Helper(e.to_string()))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            fd = fds.first().copied();
        }
    }
    let n = msg.bytes;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    if let Some(err) = text.strip_prefix('E') {
        return Err(SpawnError::Helper(err.to_string()));
    }
    let pid: i32 = text
        .strip_prefix('P')
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| SpawnError::Helper(format!("the helper exited without a child ({text:?})")))?;
    let raw = fd.ok_or_else(|| SpawnError::Helper("no pidfd received".into()))?;
    Ok(Spawned {
        pid,
        pidfd: sys::own_received_fd(raw),
    })
}
