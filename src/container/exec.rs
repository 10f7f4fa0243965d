//! `exec`: run another process in a running container. It joins every namespace of the init
//! that differs from ours (through the init's pidfd: `setns(pidfd, flags)` joins them all at
//! once and cannot hit a recycled pid), goes into the container's cgroup, gets the same process
//! treatment as the init, and execs. Success is observed as the close-on-exec sync channel closing
//! without an error message, so `exec --detach` returns only once the process really exec'd.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec, User};

use super::state::{self, StateDir, Status};
use super::{Error, Global, StatusError};
use crate::cgroups::Manager;
use crate::init::{self, ExecContext, FromChild, ToChild};
use crate::spawn::channel::{self, ChannelError};
use crate::spawn::{self, JoinNs, SpawnPlan};

#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub id: String,
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
    pub cgroup: Option<String>,
}

/// The namespace files under /proc/<pid>/ns and their clone flags, user first (the kernel
/// needs the user namespace joined before the others it owns).
const NAMESPACES: &[(&str, u64)] = &[
    ("user", crate::sys::CLONE_NEWUSER),
    ("mnt", crate::sys::CLONE_NEWNS),
    ("pid", crate::sys::CLONE_NEWPID),
    ("net", crate::sys::CLONE_NEWNET),
    ("ipc", crate::sys::CLONE_NEWIPC),
    ("uts", crate::sys::CLONE_NEWUTS),
    ("cgroup", crate::sys::CLONE_NEWCGROUP),
    ("time", crate::sys::CLONE_NEWTIME),
];

pub fn exec(g: &Global, opts: &ExecOpts) -> Result<i32, Error> {
    let dir = StateDir::open(&g.root, &opts.id)?;
    let st = dir.load()?;
    match st.status(&dir.path) {
        Status::Stopped => return Err(Error::Status(StatusError::ExecStopped)),
        Status::Paused if !opts.ignore_paused => return Err(Error::Status(StatusError::ExecPaused)),
        _ => {}
    }
    let config = crate::spec::load_bundle(&st.bundle)?;
    let process = build_process(&config, opts)?;
    // exec'd processes get the container's filter, as runc does.
    let seccomp = match config.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::security::seccomp::plan(s)?),
        None => None,
    };
    let pidfd = crate::sys::pidfd_open(st.init_pid).map_err(|source| Error::Signal {
        id: opts.id.clone(),
        sig: 0,
        source,
    })?;
    if !state::process_alive(st.init_pid, st.init_start_time) {
        return Err(Error::Status(StatusError::ExecStopped));
    }
    let flags = namespaces_to_join(st.init_pid)?;
    let cgroups = match &opts.cgroup {
        Some(sub) => Manager::from_state(&st.cgroup).sub_cgroup(sub)?,
        None => Manager::from_state(&st.cgroup),
    };
    let cgroup_fd = cgroups.open_v2_dir()?;
    let terminal = process.terminal().unwrap_or(false);
    let (console, console_ours) =
        super::create::console_endpoints(opts.console_socket.as_deref(), terminal, !opts.detach)?;
    let joins = if flags == 0 {
        Vec::new()
    } else {
        vec![JoinNs {
            kind: CloneFlags::from_bits_retain(flags as i32),
            path: PathBuf::from(format!("/proc/{}/ns", st.init_pid)),
            fd: pidfd
                .try_clone()
                .map_err(|e| Error::io("duplicating pidfd", Path::new("pidfd"), e))?,
        }]
    };
    // Release the lock now: a long-running exec must not block kill/delete of the container.
    drop(dir);
    let plan = SpawnPlan {
        new_namespaces: 0,
        set_tid: Vec::new(),
        cgroup_fd: cgroup_fd.as_ref().map(|f| f.as_raw_fd()),
        joins,
        time_offsets: None,
    };
    // Foreground: block the signals we forward before the process exists (none may be lost or
    // kill amber in between).
    let sfd = match opts.detach {
        true => None,
        false => Some(
            super::ops::forwarding_signalfd()
                .map_err(|e| Error::io("creating signalfd", Path::new("signalfd"), e.into()))?,
        ),
    };
    let (parent_ch, child_ch) = channel::pair()?;
    let ctx = ExecContext {
        in_user_ns: flags & crate::sys::CLONE_NEWUSER != 0,
        process: &process,
        seccomp: seccomp.as_ref(),
        hook_state: super::hooks::HookState {
            oci_version: state::OCI_VERSION.into(),
            id: opts.id.clone(),
            status: "running".into(),
            pid: None,
            bundle: st.bundle.clone(),
            annotations: st.annotations.clone(),
        },
        channel: child_ch,
        preserve_fds: opts.preserve_fds,
        console,
    };
    let spawned = spawn::spawn(&plan, move || init::exec_process(ctx)).map_err(|e| exec_failed(e.into()))?;
    let kill = |spawned: &spawn::Spawned| {
        let _ = crate::sys::pidfd_send_signal(spawned.pidfd.as_fd(), libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
    };
    if cgroup_fd.is_none() {
        if let Err(e) = cgroups.add_task(spawned.pid) {
            kill(&spawned);
            return Err(exec_failed(e.into()));
        }
    }
    let outcome = parent_ch
        .send(&ToChild::Go { pid: spawned.pid })
        .and_then(|_| parent_ch.recv::<FromChild>("the process to exec"));
    match outcome {
        // The channel is close-on-exec: closing without a message means execve succeeded.
        Err(ChannelError::Closed { .. }) => {}
        Ok(FromChild::Error(e)) => {
            kill(&spawned);
            return Err(exec_failed(Error::Init(e)));
        }
        Ok(other) => {
            kill(&spawned);
            return Err(exec_failed(Error::Init(init::InitError::step(
                "exec",
                format!("unexpected message {other:?}"),
            ))));
        }
        Err(e) => {
            kill(&spawned);
            return Err(exec_failed(e.into()));
        }
    }
    let master = match &console_ours {
        Some(sock) => Some(super::tty::recv_master(sock).map_err(Error::TtyMaster)?),
        None => None,
    };
    if let Some(p) = &opts.pid_file {
        state::write_pid_file(p, spawned.pid)?;
    }
    if let Some(sock) = &opts.pidfd_socket {
        super::send_pidfd(sock, spawned.pidfd.as_fd())?;
    }
    match sfd {
        None => Ok(0),
        Some(sfd) => Ok(super::ops::wait_forwarding(&spawned.pidfd, spawned.pid, master, &sfd)),
    }
}

fn exec_failed(e: Error) -> Error {
    Error::ExecFailed(Box::new(e))
}

/// The namespaces of `pid` that differ from ours, as clone flags.
fn namespaces_to_join(pid: i32) -> Result<u64, Error> {
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = Path::new("/proc").join(pid.to_string()).join("ns").join(name);
        let ours = Path::new("/proc/self/ns").join(name);
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue; // a namespace kind this kernel lacks
        };
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            flags |= flag;
        }
    }
    Ok(flags)
}

/// The process to run: `--process FILE` as given, or the container's own process with the
/// command line's overrides (runc's rules).
pub fn build_process(config: &Spec, opts: &ExecOpts) -> Result<Process, Error> {
    if let Some(file) = &opts.process_file {
        // conmon sends --tty along with --process: the file's terminal field wins.
        return Ok(crate::spec::load_process(file)?);
    }
    if opts.args.is_empty() {
        return Err(Error::ExecArgs);
    }
    let mut p = config.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &opts.env {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &opts.user {
        let (uid, gid) = parse_user(u)?;
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_umask(p.user().umask());
        p.set_user(user);
    }
    if !opts.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(opts.additional_gids.clone()));
        p.set_user(user);
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !opts.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_else(empty_caps);
        for name in &opts.caps {
            let c = parse_cap(name)?;
            let with = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(c);
                Some(s)
            };
            caps.set_bounding(with(caps.bounding()));
            caps.set_effective(with(caps.effective()));
            caps.set_permitted(with(caps.permitted()));
            caps.set_inheritable(with(caps.inheritable()));
            caps.set_ambient(with(caps.ambient()));
        }
        p.set_capabilities(Some(caps));
    }
    crate::spec::validate_process(&p, Path::new("exec arguments"))?;
    Ok(p)
}

fn empty_caps() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(None);
    c.set_effective(None);
    c.set_permitted(None);
    c.set_inheritable(None);
    c.set_ambient(None);
    c
}

fn parse_cap(name: &str) -> Result<Capability, Error> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    serde_json::from_value(serde_json::Value::String(full.clone())).map_err(|_| Error::BadCapability(name.to_string()))
}

/// `--user uid[:gid]` (numeric, as runc requires for exec).
fn parse_user(text: &str) -> Result<(u32, u32), Error> {
    let bad = || Error::BadUser(text.to_string());
    let (u, g) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = u.parse().map_err(|_| bad())?;
    let gid = match g {
        Some(g) => g.parse().map_err(|_| bad())?,
        None => 0,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Spec {
        serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"env":["PATH=/bin","A=1"],"user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn overrides_apply_on_the_container_process() {
        let opts = ExecOpts {
            args: vec!["ls".into(), "-l".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:1001".into()),
            additional_gids: vec![5],
            caps: vec!["net_admin".into()],
            no_new_privs: true,
            tty: true,
            ..Default::default()
        };
        let p = build_process(&config(), &opts).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["ls", "-l"]);
        assert_eq!(p.env().as_ref().unwrap(), &["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[5]);
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.terminal(), Some(true));
        let caps = p.capabilities().as_ref().unwrap();
        assert!(caps.effective().as_ref().unwrap().contains(&Capability::NetAdmin));
        assert!(caps.effective().as_ref().unwrap().contains(&Capability::Kill));
    }

    #[test]
    fn refuses_empty_args_and_bad_values() {
        assert!(matches!(
            build_process(&config(), &ExecOpts::default()),
            Err(Error::ExecArgs)
        ));
        let bad_user = ExecOpts {
            args: vec!["sh".into()],
            user: Some("bob".into()),
            ..Default::default()
        };
        assert!(matches!(build_process(&config(), &bad_user), Err(Error::BadUser(_))));
        let bad_cap = ExecOpts {
            args: vec!["sh".into()],
            caps: vec!["CAP_NOPE".into()],
            ..Default::default()
        };
        assert!(matches!(
            build_process(&config(), &bad_cap),
            Err(Error::BadCapability(_))
        ));
    }

    #[test]
    fn own_namespaces_need_no_join() {
        assert_eq!(namespaces_to_join(std::process::id() as i32).unwrap(), 0);
    }
}
