//! The container init: runs in the freshly cloned child, inside the new namespaces, and turns the
//! config into the process the user asked for. It reports every failure to the parent as a
//! structured `InitError` over the sync channel, then waits on `exec.fifo` until `start`.
//!
//! Protocol (child ⇢ parent):
//! ```text
//!   parent                               child (init)
//!   clone3 ─────────────────────────────▶ wait Go
//!   cgroup, uid/gid maps, Go ───────────▶ hostname, mounts (before pivot_root)
//!                          ◀───────────── NeedHooks       (only if prestart/createRuntime hooks)
//!   run prestart+createRuntime, Resume ─▶ createContainer hooks, pivot_root, sysctl, rlimits,
//!                                         user, caps, lookup of args[0]
//!                          ◀───────────── Ready  (or Error at any point)
//!   write state + pid file, exit          open exec.fifo for writing (blocks until `start`)
//!                                         startContainer hooks, execve
//! ```

pub mod process;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::container::hooks;
use crate::rootfs;
use crate::security::seccomp::{self, SeccompPlan};
use crate::spawn::channel::Channel;

#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// Carries the child's pid as the runtime sees it (the child may only know its own
    /// namespace's view), for the seccomp agent's state.
    Go {
        pid: i32,
    },
    Resume,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromChild {
    NeedHooks,
    Ready,
    /// `restore`: the tree is rebuilt and running; the root's pid as the runtime sees it, and
    /// every restored pid (container namespace -> runtime's namespace).
    Restored {
        root_pid: i32,
        pids: Vec<(i32, i32)>,
    },
    Error(InitError),
}

/// A failure inside the container init, carried to the parent as a value.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error, PartialEq, Eq)]
pub enum InitError {
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: \"{cmd}\": {detail}")]
    Exec { cmd: String, detail: String },
    #[error("{step}: {detail}")]
    Step { step: String, detail: String },
}

impl InitError {
    pub fn step(step: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        InitError::Step {
            step: step.into(),
            detail: detail.to_string(),
        }
    }
}

/// Shorthand for `.map_err(at("mounting /proc"))`.
pub fn at<E: std::fmt::Display>(step: impl Into<String>) -> impl FnOnce(E) -> InitError {
    let step = step.into();
    move |e| InitError::step(step, e)
}

/// Everything the init needs. It is a copy of the parent's values (clone3 without CLONE_VM), so
/// nothing is serialised to cross into the child.
pub struct InitContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: PathBuf,
    pub channel: Channel,
    /// O_PATH descriptor of `<state>/exec.fifo`; None for a process that runs at once (exec).
    pub fifo: Option<OwnedFd>,
    pub new_namespaces: u64,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub console: Option<UnixStream>,
    /// State JSON given to hooks on stdin; the pid is filled in by the init itself.
    pub hook_state: hooks::HookState,
    pub cgroup_mounts: rootfs::CgroupMounts,
    /// Unshare the cgroup namespace after the parent put us in our cgroup (v1: we are cloned
    /// outside it, and the namespace root is the cgroup at creation time).
    pub unshare_cgroup: bool,
    pub seccomp: Option<&'a SeccompPlan>,
    /// The container has a user namespace (new or joined): mknod is not allowed there.
    pub in_user_ns: bool,
    /// Join a new session keyring named after the container (unless --no-new-keyring).
    pub new_keyring: bool,
    /// `restore`: instead of running process.args, rebuild the checkpointed tree here, inside
    /// the container's namespaces and root.
    pub restore: Option<RestoreInit>,
}

pub struct RestoreInit {
    /// The image directory, opened before pivot_root (reached again through /proc/self/fd).
    pub image: OwnedFd,
    /// The tree had its own pid namespace (the config's): its root is pid 1 of a new one.
    pub new_pid_ns: bool,
}

/// Entry point in the child; returns the exit code only on failure (success ends in execve).
pub fn container_init(ctx: InitContext<'_>) -> i32 {
    crate::sys::reset_signals();
    // Nothing in the container may open our /proc/<pid> files (fds, mem, exe) or ptrace us while
    // we still hold the runtime's descriptors or run unfiltered; execve makes the user process
    // dumpable again. In a user namespace /proc/self would then belong to the host's root and
    // the init could not write its own oom_score_adj, so that case keeps the default.
    if !ctx.in_user_ns {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    let mut keep = vec![ctx.channel.as_fd().as_raw_fd()];
    keep.extend(ctx.fifo.as_ref().map(|f| f.as_raw_fd()));
    keep.extend(ctx.console.as_ref().map(|c| c.as_raw_fd()));
    keep.extend(ctx.restore.as_ref().map(|r| r.image.as_raw_fd()));
    close_inherited(ctx.preserve_fds, &keep);
    let err = match run(&ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = ctx.channel.send(&FromChild::Error(err));
    1
}

pub enum Never {}

/// CVE-2024-21626 and friends: the runtime's own descriptors (state lock, log file, whatever
/// amber inherited) must not be reachable from the container while the init waits for `start`.
/// Keeps 0-2, the preserved fds 3..3+N and the ones the init still needs.
fn close_inherited(preserve_fds: u32, keep: &[i32]) {
    let first_free = 3 + preserve_fds as i32;
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd >= first_free && !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

fn run(ctx: &InitContext<'_>) -> Result<Never, InitError> {
    let host_pid = match ctx.channel.recv("the go-ahead").map_err(at("waiting for the parent"))? {
        ToChild::Go { pid } => pid,
        other => {
            return Err(InitError::step(
                "waiting for the parent",
                format!("unexpected {other:?}"),
            ))
        }
    };
    let spec = ctx.spec;
    if ctx.unshare_cgroup {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(at("unsharing the cgroup namespace"))?;
    }
    let user_ns = ctx.in_user_ns;
    if user_ns {
        // Become root of the new user namespace before anything that needs privilege there.
        process::become_root().map_err(at("switching to uid 0 in the new user namespace"))?;
    }
    let _ = nix::unistd::setsid();
    if ctx.new_keyring {
        // As runc: keys of the caller's session must not be visible in the container. Kernels
        // without keyrings (ENOSYS) and user namespaces that forbid it (EACCES/EPERM) go on.
        let name = format!("_ses.{}", ctx.hook_state.id);
        if let Err(e) = crate::sys::join_session_keyring(&name) {
            if !matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EACCES | libc::EPERM | libc::EDQUOT)
            ) {
                return Err(InitError::step("joining a new session keyring", e));
            }
        }
    }
    if let Some(h) = spec.hostname() {
        if !h.is_empty() {
            nix::unistd::sethostname(h).map_err(at(format!("sethostname {h:?}")))?;
        }
    }
    if let Some(d) = spec.domainname() {
        if !d.is_empty() {
            crate::sys::setdomainname(d).map_err(at(format!("setdomainname {d:?}")))?;
        }
    }

    let mut pid_state = ctx.hook_state.clone();
    // Hooks get the pid as the runtime sees it, even those that run in the container.
    pid_state.pid = Some(host_pid);
    let plan = rootfs::RootfsPlan::from_spec(spec, &ctx.rootfs, ctx.no_pivot, user_ns, &ctx.cgroup_mounts)?;
    rootfs::prepare(&plan)?;
    if hooks::has_pre_create_hooks(spec) {
        ctx.channel
            .send(&FromChild::NeedHooks)
            .map_err(at("asking for prestart hooks"))?;
        let _: ToChild = ctx
            .channel
            .recv("hook completion")
            .map_err(at("waiting for prestart hooks"))?;
    }
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.create_container().clone()) {
        hooks::run_all("createContainer", &h, &pid_state).map_err(at("running createContainer hook"))?;
    }
    rootfs::finish(&plan)?;
    process::apply_sysctl(spec)?;
    rootfs::lockdown(&plan)?;
    if let Some(r) = &ctx.restore {
        restore_tree(ctx, r, &plan)?;
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::step("process", "config has no process to run"))?;
    let console = match (&ctx.console, process::wants_terminal(process)) {
        (Some(sock), true) => Some(process::setup_console(sock, true, process)?),
        _ => None,
    };
    let mut proc_ = process::Prepared::new(process, ctx.preserve_fds, console)?;
    process::apply_personality(spec)?;
    proc_.apply_before_user()?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    let mut agent_state = ctx.hook_state.clone();
    agent_state.pid = Some(host_pid);
    agent_state.status = "creating".into();
    // Without no_new_privs the filter needs CAP_SYS_ADMIN to load: before the caps go (runc's
    // order). With it, as late as possible: right before execve.
    if let (Some(plan), false) = (ctx.seccomp, nnp) {
        load_seccomp(plan, &agent_state)?;
    }
    proc_.apply_user()?;
    // With no_new_privs the filter goes on right after the user switch and before we report
    // ready: an init waiting for `start` must not be an unfiltered process in the container.
    if let (Some(plan), true) = (ctx.seccomp, nnp) {
        load_seccomp(plan, &agent_state)?;
    }

    ctx.channel.send(&FromChild::Ready).map_err(at("reporting ready"))?;

    // Held open (close-on-exec) until execve: `start` reads our byte, then waits for the end
    // of file that our exec causes before it runs poststart hooks.
    let mut started = match &ctx.fifo {
        Some(fifo) => Some(wait_for_start(fifo)?),
        None => None,
    };
    let result = (|| {
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.start_container().clone()) {
            pid_state.status = "created".into();
            hooks::run_all("startContainer", &h, &pid_state).map_err(at("running startContainer hook"))?;
        }
        proc_.exec()
    })();
    // `create` is gone by now: `start` is the one waiting, on the fifo. Tell it why.
    if let (Err(e), Some(f)) = (&result, started.as_mut()) {
        use std::io::Write;
        let _ = f.write_all(e.to_string().as_bytes());
    }
    result
}

/// Rebuild the checkpointed tree as our children (the engine clones the root into the tree's
/// own pid namespace), tell the parent, and leave: the root is reparented to the caller's
/// subreaper, as a created container's init would be.
fn restore_tree(ctx: &InitContext<'_>, r: &RestoreInit, plan: &rootfs::RootfsPlan) -> Result<Never, InitError> {
    use crate::checkpoint::restore::{restore, PidNamespace, RestoreOptions};
    // Through our own pid (not "self"): the seeds reach the image while they rearrange their
    // own descriptors, and we stay alive until they are done.
    let dir = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), r.image.as_raw_fd()));
    let opts = RestoreOptions {
        pid_ns: if r.new_pid_ns {
            PidNamespace::New
        } else {
            PidNamespace::Current
        },
        external_fds: Default::default(),
        cgroup_fd: None, // we are in the container's cgroups already: the tree inherits them
    };
    let restored = restore(&dir, &opts).map_err(at("restoring the checkpoint"))?;
    if r.new_pid_ns {
        // /proc was mounted for our pid namespace: give the container one of its own, from a
        // short-lived process inside the tree's namespace.
        nix::sched::setns(restored.root_pidfd.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(at("entering the restored pid namespace"))?;
        let plan_none = crate::spawn::SpawnPlan {
            new_namespaces: 0,
            set_tid: Vec::new(),
            cgroup_fd: None,
            joins: Vec::new(),
            time_offsets: None,
        };
        let helper = crate::spawn::spawn(&plan_none, || match rootfs::remount_proc(plan) {
            Ok(()) => 0,
            Err(_) => 1,
        })
        .map_err(at("starting the /proc helper"))?;
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper.pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => {}
            other => {
                return Err(InitError::step(
                    "remounting /proc for the restored tree",
                    format!("{other:?}"),
                ))
            }
        }
    }
    let pids = restored.pids.iter().map(|(a, b)| (*a, *b)).collect();
    ctx.channel
        .send(&FromChild::Restored {
            root_pid: restored.root_pid,
            pids,
        })
        .map_err(at("reporting the restored tree"))?;
    crate::sys::exit_now(0)
}

/// Load the filter; with SCMP_ACT_NOTIFY, connect to the agent first (the filter may block
/// connect) and hand it the listener fd with the container state.
fn load_seccomp(plan: &SeccompPlan, state: &hooks::HookState) -> Result<(), InitError> {
    let json = serde_json::to_vec(state).map_err(at("encoding the seccomp agent's state"))?;
    let agent = match &plan.notify {
        Some(l) => Some(seccomp::NotifySocket::connect(l, &json).map_err(at("connecting to the seccomp agent"))?),
        None => None,
    };
    let fd = seccomp::load(plan).map_err(at("loading the seccomp filter"))?;
    if let (Some(agent), Some(fd)) = (agent, fd) {
        agent
            .send(std::os::fd::AsFd::as_fd(&fd))
            .map_err(at("sending the seccomp fd to the agent"))?;
    }
    Ok(())
}

/// Block until `start` opens the fifo for reading, then tell it we are going.
fn wait_for_start(fifo: &OwnedFd) -> Result<std::fs::File, InitError> {
    use std::io::Write;
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(at("opening exec fifo for writing"))?;
    f.write_all(b"0").map_err(at("writing exec fifo"))?;
    Ok(f)
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<CString, InitError> {
    CString::new(s).map_err(|_| InitError::step(what, "contains a NUL byte"))
}

/// What an `exec`'d process needs; it is already inside the container's namespaces.
pub struct ExecContext<'a> {
    pub process: &'a oci_spec::runtime::Process,
    pub seccomp: Option<&'a SeccompPlan>,
    pub hook_state: hooks::HookState,
    pub channel: Channel,
    pub preserve_fds: u32,
    pub console: Option<UnixStream>,
    /// The container has its own user namespace (see `container_init` on dumpable).
    pub in_user_ns: bool,
}

/// Entry point of an exec'd process. Success is execve: the parent sees the close-on-exec
/// channel close without a message. Failure is reported as an `InitError`.
pub fn exec_process(ctx: ExecContext<'_>) -> i32 {
    crate::sys::reset_signals();
    if !ctx.in_user_ns {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    let mut keep = vec![ctx.channel.as_fd().as_raw_fd()];
    keep.extend(ctx.console.as_ref().map(|c| c.as_raw_fd()));
    close_inherited(ctx.preserve_fds, &keep);
    let err = match run_exec(&ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = ctx.channel.send(&FromChild::Error(err));
    1
}

fn run_exec(ctx: &ExecContext<'_>) -> Result<Never, InitError> {
    let host_pid = match ctx.channel.recv("the go-ahead").map_err(at("waiting for the parent"))? {
        ToChild::Go { pid } => pid,
        other => {
            return Err(InitError::step(
                "waiting for the parent",
                format!("unexpected {other:?}"),
            ))
        }
    };
    let _ = nix::unistd::setsid();
    let console = match (&ctx.console, process::wants_terminal(ctx.process)) {
        (Some(sock), true) => Some(process::setup_console(sock, false, ctx.process)?),
        _ => None,
    };
    let mut proc_ = process::Prepared::new(ctx.process, ctx.preserve_fds, console)?;
    proc_.apply_before_user()?;
    let nnp = ctx.process.no_new_privileges().unwrap_or(false);
    let mut state = ctx.hook_state.clone();
    state.pid = Some(host_pid);
    if let (Some(plan), false) = (ctx.seccomp, nnp) {
        load_seccomp(plan, &state)?;
    }
    proc_.apply_user()?;
    if let (Some(plan), true) = (ctx.seccomp, nnp) {
        load_seccomp(plan, &state)?;
    }
    proc_.exec()
}
