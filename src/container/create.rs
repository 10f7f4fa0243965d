//! `create`: config → state dir → cgroup → clone3 → init waiting on the exec fifo. Anything made
//! on the way is undone by `Undo` if a later step fails.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::hooks::{self, HookState};
use super::state::{self, State, StateDir, OCI_VERSION};
use super::{validate_id, Error, Global};
use crate::cgroups::Manager;
use crate::init::{self, FromChild, InitContext, ToChild};
use crate::rootfs::CgroupMounts;
use crate::spawn::{self, channel, JoinNs, SpawnPlan};
use crate::sys;

/// Config annotation carrying `--init-pid` for engines that only pass config.json.
pub const INIT_PID_ANNOTATION: &str = "run.amber.init-pid";

#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Where to send the init's pidfd once created (runc 1.2's --pidfd-socket).
    pub pidfd_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    /// Exact pids for the init: amber's pid namespace first, then each ancestor outward.
    pub init_pid: Vec<i32>,
    /// `run` in the foreground: amber itself holds the terminal when there is no console socket.
    pub foreground: bool,
    /// Keep the caller's session keyring instead of joining a new one.
    pub no_new_keyring: bool,
    /// `restore`: rebuild the checkpoint image in this directory instead of running
    /// process.args; the container comes up running.
    pub restore: Option<PathBuf>,
}

/// A created container, as `run` needs it to go on.
pub struct Created {
    pub dir: StateDir,
    pub state: State,
    pub pidfd: OwnedFd,
    /// The pty master when amber proxies the terminal itself (`run -t` in the foreground).
    pub console_master: Option<OwnedFd>,
}

/// Undo what a failed create made, in reverse order.
struct Undo<'a> {
    dir: Option<StateDir>,
    cgroup: Option<&'a Manager>,
    pidfd: Option<OwnedFd>,
    pid: i32,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(fd) = &self.pidfd {
            let _ = sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(fd), libc::SIGKILL);
            // It is our child until we exit: reap it so the cgroup empties.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
        if let Some(cg) = self.cgroup {
            if let Ok(pids) = cg.pids() {
                for p in pids {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
                }
            }
            let _ = cg.destroy();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

pub fn create(g: &Global, opts: &CreateOpts) -> Result<Created, Error> {
    validate_id(&opts.id)?;
    // A corrupt or foreign image is refused before anything is made.
    if let Some(image) = &opts.restore {
        crate::checkpoint::image::verify(image)?;
    }
    let bundle = absolute(&opts.bundle)?;
    let spec = crate::spec::load_bundle(&bundle)?;
    let rootfs = resolve_rootfs(&spec, &bundle)?;
    let annotations = spec.annotations().clone().unwrap_or_default().into_iter().collect();
    let set_tid = init_pids(opts, &spec)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let cgroups = Manager::new(
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        &opts.id,
        g.systemd_cgroup,
    )?;

    let seccomp = match linux.seccomp() {
        Some(s) => Some(crate::security::seccomp::plan(s)?),
        None => None,
    };
    if let Some(p) = &seccomp {
        if !p.skipped.is_empty() {
            crate::logging::debug(&format!("seccomp: skipping syscalls unknown here: {:?}", p.skipped));
        }
    }
    let ns = namespaces(&spec)?;
    let new_pid_ns = ns.new_flags & sys::CLONE_NEWPID != 0;
    // Refuse pids the kernel would refuse before anything is made (naming level and pid).
    let set_tid = full_set_tid(&set_tid, new_pid_ns)?;
    if !set_tid.is_empty() {
        let levels = spawn::tid::levels_for_child(new_pid_ns);
        spawn::check_set_tid(&set_tid, new_pid_ns, &levels).map_err(spawn::SpawnError::from)?;
    }

    let dir = StateDir::create(&g.root, &opts.id)?;
    let mut undo = Undo {
        dir: Some(dir),
        cgroup: None,
        pidfd: None,
        pid: 0,
    };
    let dir_path = undo.dir.as_ref().map(|d| d.path.clone()).unwrap_or_default();

    cgroups.create()?;
    undo.cgroup = Some(&cgroups);
    // Always: without linux.resources the container still gets the default device rules
    // (deny all, then the standard nodes), as runc applies them.
    cgroups.apply_resources(&linux.resources().clone().unwrap_or_default())?;
    // A restored container is running at once: no exec fifo to wait on.
    let fifo = match opts.restore {
        Some(_) => None,
        None => Some(make_exec_fifo(&dir_path)?),
    };
    let restore = match &opts.restore {
        Some(image) => Some(init::RestoreInit {
            image: std::fs::File::open(image)
                .map_err(|e| Error::io("opening checkpoint image", image, e))?
                .into(),
            new_pid_ns,
        }),
        None => None,
    };
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let (console, console_ours) = console_endpoints(opts.console_socket.as_deref(), terminal, opts.foreground)?;
    let cgroup_fd = cgroups.open_v2_dir()?;
    let joins_user_ns = ns.joins.iter().any(|j| j.kind == CloneFlags::CLONE_NEWUSER);
    let mut clone_flags = ns.new_flags;
    // Restoring: the init rebuilds the tree, whose root is the one to get the pid namespace.
    if opts.restore.is_some() {
        clone_flags &= !sys::CLONE_NEWPID;
    }
    // Without CLONE_INTO_CGROUP the child is moved into its cgroup after the clone, so its
    // cgroup namespace must be made afterwards, by the init itself.
    let unshare_cgroup = cgroup_fd.is_none() && clone_flags & sys::CLONE_NEWCGROUP != 0;
    if unshare_cgroup {
        clone_flags &= !sys::CLONE_NEWCGROUP;
    }
    let time_offsets = (clone_flags & sys::CLONE_NEWTIME != 0).then(|| time_offsets(&spec));
    clone_flags &= !sys::CLONE_NEWTIME;
    let plan = SpawnPlan {
        new_namespaces: clone_flags,
        set_tid,
        cgroup_fd: cgroup_fd.as_ref().map(|f| f.as_raw_fd()),
        joins: ns.joins,
        time_offsets,
    };
    let (parent_ch, child_ch) = channel::pair()?;
    let hook_state = HookState {
        oci_version: OCI_VERSION.into(),
        id: opts.id.clone(),
        status: "creating".into(),
        pid: None,
        bundle: bundle.clone(),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
    };
    let cgroup_mounts = CgroupMounts {
        v2: cgroups.is_v2(),
        v2_dir: cgroups.v2_dir().map(Path::to_path_buf),
        v1: cgroups.v1_container_mounts(),
        symlinks: cgroups.v1_symlinks(),
    };
    let ctx = InitContext {
        spec: &spec,
        rootfs: rootfs.clone(),
        channel: child_ch,
        fifo,
        new_namespaces: ns.new_flags,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        console,
        hook_state: hook_state.clone(),
        cgroup_mounts,
        unshare_cgroup,
        seccomp: seccomp.as_ref(),
        in_user_ns: ns.new_flags & sys::CLONE_NEWUSER != 0 || joins_user_ns,
        new_keyring: !opts.no_new_keyring,
        restore,
    };
    let spawned = spawn::spawn(&plan, move || init::container_init(ctx))?;
    let pid = spawned.pid;
    undo.pid = pid;
    undo.pidfd = Some(spawned.pidfd);

    if cgroup_fd.is_none() {
        cgroups.add_task(pid)?;
    }
    if ns.new_flags & sys::CLONE_NEWUSER != 0 {
        write_id_maps(&spec, pid)?;
    }
    parent_ch.send(&ToChild::Go { pid })?;
    let mut restored = None;
    loop {
        match parent_ch.recv::<FromChild>("the container init to get ready")? {
            FromChild::NeedHooks => {
                let st = HookState {
                    pid: Some(pid),
                    ..hook_state.clone()
                };
                let h = spec.hooks().clone().unwrap_or_default();
                #[allow(deprecated)]
                hooks::run_all("prestart", h.prestart().as_deref().unwrap_or(&[]), &st)?;
                hooks::run_all("createRuntime", h.create_runtime().as_deref().unwrap_or(&[]), &st)?;
                parent_ch.send(&ToChild::Resume)?;
            }
            FromChild::Ready => break,
            FromChild::Restored { root_pid, pids } => {
                restored = Some((root_pid, pids));
                break;
            }
            FromChild::Error(e) => return Err(Error::Init(e)),
        }
    }
    // Restored: the init (our child) leaves once the tree runs; its root is the container's
    // init from now on, with its own pidfd.
    let pid = match &restored {
        Some((root_pid, _)) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            undo.pidfd = Some(
                sys::pidfd_open(*root_pid)
                    .map_err(|e| Error::io("opening the restored init", Path::new("pidfd"), e))?,
            );
            undo.pid = *root_pid;
            *root_pid
        }
        None => pid,
    };

    let console_master = match &console_ours {
        Some(sock) => Some(super::tty::recv_master(sock).map_err(Error::TtyMaster)?),
        None => None,
    };
    let (_, start_time) = state::proc_stat(pid).ok_or(Error::Init(init::InitError::step(
        "container init",
        "exited before it was ready",
    )))?;
    let h = spec.hooks().clone().unwrap_or_default();
    let st = State {
        id: opts.id.clone(),
        init_pid: pid,
        init_start_time: start_time,
        bundle,
        rootfs,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        owner: String::new(),
        annotations,
        cgroup: cgroups.state(),
        own_pid_ns: new_pid_ns,
        poststart: h.poststart().clone().unwrap_or_default(),
        poststop: h.poststop().clone().unwrap_or_default(),
    };
    let dir = undo.dir.as_ref().expect("state dir is set until create succeeds");
    dir.save(&st)?;
    if let Some(p) = &opts.pid_file {
        state::write_pid_file(p, pid)?;
    }
    if let (Some(sock), Some(fd)) = (&opts.pidfd_socket, &undo.pidfd) {
        super::send_pidfd(sock, std::os::fd::AsFd::as_fd(fd))?;
    }
    let pidfd = undo.pidfd.take().expect("pidfd is set after spawn");
    let dir = undo.dir.take().expect("state dir is set until create succeeds");
    undo.cgroup = None;
    Ok(Created {
        dir,
        state: st,
        pidfd,
        console_master,
    })
}

/// Where the pty master goes: the caller's console socket, or (foreground only) a socketpair
/// whose other end amber keeps to proxy the terminal itself. Returns (child's end, our end).
pub fn console_endpoints(
    socket: Option<&Path>,
    terminal: bool,
    foreground: bool,
) -> Result<(Option<UnixStream>, Option<UnixStream>), Error> {
    match (socket, terminal) {
        // runc's rule: a console socket only makes sense for a detached process with a tty.
        (Some(_), _) if !terminal || foreground => Err(Error::ConsoleSocketUnused),
        (Some(p), _) => {
            let s = UnixStream::connect(p).map_err(|e| Error::io("connecting to console socket", p, e))?;
            Ok((Some(s), None))
        }
        (None, true) if foreground => {
            let (child, ours) =
                UnixStream::pair().map_err(|e| Error::io("creating console socketpair", Path::new("socketpair"), e))?;
            Ok((Some(child), Some(ours)))
        }
        (None, true) => Err(Error::TtyDetached),
        (None, false) => Ok((None, None)),
    }
}

/// linux.timeOffsets as (clock, seconds, nanoseconds) lines for /proc/self/timens_offsets.
fn time_offsets(spec: &Spec) -> Vec<(String, i64, u32)> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut v: Vec<_> = offsets
        .into_iter()
        .map(|(clock, o)| (clock, o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
        .collect();
    v.sort();
    v
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::io("resolving bundle path", p, e))
}

fn resolve_rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf, Error> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    let full = bundle.join(root);
    let canon = std::fs::canonicalize(&full).map_err(|e| Error::io("resolving rootfs", &full, e))?;
    if !canon.is_dir() {
        return Err(Error::io(
            "resolving rootfs",
            &full,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    Ok(canon)
}

fn init_pids(opts: &CreateOpts, spec: &Spec) -> Result<Vec<i32>, Error> {
    if !opts.init_pid.is_empty() {
        return Ok(opts.init_pid.clone());
    }
    match spec.annotations().as_ref().and_then(|a| a.get(INIT_PID_ANNOTATION)) {
        Some(v) => spawn::tid::parse_init_pids(v).map_err(Error::InitPid),
        None => Ok(Vec::new()),
    }
}

/// `--init-pid` names amber's level outward; with a new pid namespace the innermost level
/// (the container's own) is pid 1.
///
/// The kernel takes no "any pid" entry inside the array: trailing 0s (outer levels left to the
/// kernel) are dropped, and a 0 below a given pid cannot be expressed, so it is refused.
fn full_set_tid(init_pid: &[i32], new_pid_ns: bool) -> Result<Vec<i32>, Error> {
    let given = match init_pid.iter().rposition(|&p| p != 0) {
        Some(last) => &init_pid[..=last],
        None => {
            return Ok(if new_pid_ns && !init_pid.is_empty() {
                vec![1]
            } else {
                Vec::new()
            })
        }
    };
    if let Some(level) = given.iter().position(|&p| p == 0) {
        return Err(Error::InitPid(format!(
            "level {level} is 0 (kernel's choice) but an outer level is given: clone3 can only leave the outermost levels to the kernel"
        )));
    }
    let mut v = Vec::with_capacity(given.len() + 1);
    if new_pid_ns {
        v.push(1);
    }
    v.extend_from_slice(given);
    Ok(v)
}

fn make_exec_fifo(dir: &Path) -> Result<OwnedFd, Error> {
    let path = dir.join(state::FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::io("creating exec fifo", &path, e.into()))?;
    // mkfifo honours the umask: set the mode explicitly so a non-root container user (who
    // opens it after dropping privileges) can still write it.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io("setting exec fifo mode", &path, e))?;
    // O_PATH: the init reopens it for writing through /proc/self/fd after pivot_root.
    let fd = nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("opening exec fifo", &path, e.into()))?;
    Ok(sys::own_fresh_fd(fd))
}

struct Namespaces {
    new_flags: u64,
    joins: Vec<JoinNs>,
}

fn ns_flag(t: LinuxNamespaceType) -> (u64, CloneFlags) {
    use LinuxNamespaceType::*;
    let f = match t {
        Mount => sys::CLONE_NEWNS,
        Cgroup => sys::CLONE_NEWCGROUP,
        Uts => sys::CLONE_NEWUTS,
        Ipc => sys::CLONE_NEWIPC,
        User => sys::CLONE_NEWUSER,
        Pid => sys::CLONE_NEWPID,
        Network => sys::CLONE_NEWNET,
        Time => sys::CLONE_NEWTIME,
    };
    // from_bits_retain: nix has no name for CLONE_NEWTIME, which must not be dropped.
    (f, CloneFlags::from_bits_retain(f as i32))
}

/// Namespaces to create (one clone3 flag each) and to join (opened now, user namespace first).
fn namespaces(spec: &Spec) -> Result<Namespaces, Error> {
    let mut new_flags = 0;
    let mut joins = Vec::new();
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in list {
        let (flag, kind) = ns_flag(ns.typ());
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                let f = std::fs::File::open(p).map_err(|e| Error::io("opening namespace", p, e))?;
                joins.push(JoinNs {
                    kind,
                    path: p.clone(),
                    fd: f.into(),
                });
            }
            _ => new_flags |= flag,
        }
    }
    joins.sort_by_key(|j| j.kind != CloneFlags::CLONE_NEWUSER);
    Ok(Namespaces { new_flags, joins })
}

fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), Error> {
    let linux = spec.linux().clone().unwrap_or_default();
    let fmt = |maps: Vec<(u32, u32, u32)>| {
        maps.iter()
            .map(|(c, h, s)| format!("{c} {h} {s}\n"))
            .collect::<String>()
    };
    let uid = fmt(linux
        .uid_mappings()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect());
    let gid = fmt(linux
        .gid_mappings()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect());
    let write = |file: &'static str, text: &str| {
        std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|source| Error::IdMap { pid, file, source })
    };
    if !uid.is_empty() {
        write("uid_map", &uid)?;
    }
    if !gid.is_empty() {
        write("gid_map", &gid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_tid_gets_pid_one_for_a_new_namespace() {
        assert_eq!(full_set_tid(&[], true).unwrap(), Vec::<i32>::new());
        assert_eq!(full_set_tid(&[4242], true).unwrap(), vec![1, 4242]);
        // trailing 0s leave the outer levels to the kernel
        assert_eq!(full_set_tid(&[4242, 0], false).unwrap(), vec![4242]);
        assert_eq!(full_set_tid(&[0], true).unwrap(), vec![1]);
        assert_eq!(full_set_tid(&[0], false).unwrap(), Vec::<i32>::new());
        // a 0 below a given level cannot be expressed
        let e = full_set_tid(&[0, 4242], true).unwrap_err();
        assert!(e.to_string().contains("level 0"), "{e}");
    }

    #[test]
    fn namespaces_split_into_new_and_joined() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/self/ns/net"},{"type":"user","path":"/proc/self/ns/user"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        let ns = namespaces(&spec).unwrap();
        assert_eq!(ns.new_flags, sys::CLONE_NEWPID | sys::CLONE_NEWNS);
        assert_eq!(ns.joins.len(), 2);
        assert_eq!(
            ns.joins[0].kind,
            CloneFlags::CLONE_NEWUSER,
            "user namespace is joined first"
        );
    }
}
