//! The container's filesystem view: propagation, the rootfs bind, config mounts (resolved safely
//! inside the root), /dev, pivot_root, masked and readonly paths. Built as a plan from the config
//! by pure code, applied by `prepare` (before the pre-start hooks) and `finish` (after them).

pub mod devices;
pub mod options;
pub mod path;

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::init::{at, InitError};
use options::MountOptions;
use path::Kind;

/// How to present cgroups at a `cgroup` mount.
#[derive(Debug, Clone, Default)]
pub struct CgroupMounts {
    /// Pure v2 host: mount cgroup2 itself.
    pub v2: bool,
    /// The container's cgroup2 directory (bound when cgroup2 cannot be mounted).
    pub v2_dir: Option<PathBuf>,
    /// v1: (directory name under /sys/fs/cgroup, host directory of the container's cgroup).
    pub v1: Vec<(String, PathBuf)>,
    /// v1 co-mount aliases, e.g. ("cpu", "cpu,cpuacct").
    pub symlinks: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cgroup,
    Regular,
}

#[derive(Debug, Clone)]
pub struct MountOp {
    pub kind: MountKind,
    pub source: Option<PathBuf>,
    pub destination: PathBuf,
    pub fstype: Option<String>,
    pub options: MountOptions,
}

#[derive(Debug, Clone)]
pub struct RootfsPlan {
    pub rootfs: PathBuf,
    pub root_propagation: MsFlags,
    pub final_propagation: Option<MsFlags>,
    pub mounts: Vec<MountOp>,
    pub dev_is_tmpfs: bool,
    pub devices: Vec<devices::DeviceNode>,
    pub user_ns: bool,
    pub no_pivot: bool,
    pub readonly: bool,
    pub masked: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub cgroups: CgroupMounts,
}

impl RootfsPlan {
    pub fn from_spec(
        spec: &Spec,
        rootfs: &Path,
        no_pivot: bool,
        user_ns: bool,
        cgroups: &CgroupMounts,
    ) -> Result<Self, InitError> {
        let linux = spec.linux().clone().unwrap_or_default();
        let final_propagation = match linux.rootfs_propagation() {
            Some(p) => Some(
                options::propagation_flag(p)
                    .ok_or_else(|| InitError::step("linux.rootfsPropagation", format!("unknown value {p:?}")))?,
            ),
            None => None,
        };
        // The root mount is made a slave by default so nothing we mount propagates to the host,
        // while host mounts still reach the container (runc's default).
        let root_propagation = match final_propagation {
            Some(p) if p.contains(MsFlags::MS_PRIVATE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        };
        let mut mounts = Vec::new();
        let mut dev_is_tmpfs = false;
        for m in spec.mounts().clone().unwrap_or_default() {
            let opts = options::parse(&m.options().clone().unwrap_or_default());
            let fstype = m.typ().clone();
            let kind = if opts.bind || fstype.as_deref() == Some("bind") {
                MountKind::Bind
            } else if fstype.as_deref() == Some("cgroup") || fstype.as_deref() == Some("cgroup2") {
                MountKind::Cgroup
            } else {
                MountKind::Regular
            };
            let destination = Path::new("/").join(path::clean(m.destination()));
            if destination == Path::new("/dev") && kind == MountKind::Regular {
                dev_is_tmpfs = true;
            }
            mounts.push(MountOp {
                kind,
                source: m.source().clone(),
                destination,
                fstype,
                options: opts,
            });
        }
        let devices = devices::plan(dev_is_tmpfs, linux.devices().as_deref().unwrap_or(&[]));
        Ok(RootfsPlan {
            rootfs: rootfs.to_path_buf(),
            root_propagation,
            final_propagation,
            mounts,
            dev_is_tmpfs,
            devices,
            user_ns,
            no_pivot,
            readonly: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            masked: linux
                .masked_paths()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            readonly_paths: linux
                .readonly_paths()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            cgroups: cgroups.clone(),
        })
    }
}

/// Before the pre-start hooks: propagation, the rootfs bind, every mount, /dev.
pub fn prepare(plan: &RootfsPlan) -> Result<(), InitError> {
    mount(None::<&str>, "/", None::<&str>, plan.root_propagation, None::<&str>)
        .map_err(at("making / a slave mount"))?;
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(at(format!("bind-mounting rootfs {}", plan.rootfs.display())))?;
    let root = path::open_root(&plan.rootfs).map_err(at(format!("opening rootfs {}", plan.rootfs.display())))?;
    for m in &plan.mounts {
        mount_one(plan, &root, m)?;
    }
    devices::create(plan, &root)?;
    Ok(())
}

fn mount_one(plan: &RootfsPlan, root: &std::os::fd::OwnedFd, m: &MountOp) -> Result<(), InitError> {
    let step = || {
        format!(
            "mounting {:?} to rootfs at {:?}",
            m.source.as_deref().unwrap_or(Path::new("none")),
            m.destination
        )
    };
    match m.kind {
        MountKind::Bind => {
            let source = m
                .source
                .clone()
                .ok_or_else(|| InitError::step(step(), "bind mount without a source"))?;
            let kind = if source.is_dir() { Kind::Dir } else { Kind::File };
            let target = path::open_or_create(root, &m.destination, kind).map_err(at(step()))?;
            let target = path::fd_path(&target);
            let mut flags = MsFlags::MS_BIND;
            if m.options.recursive_bind {
                flags |= MsFlags::MS_REC;
            }
            mount(Some(&source), &target, None::<&str>, flags, None::<&str>).map_err(at(step()))?;
            // The fd still names the directory under the new mount: reopen to reach the mount.
            let target_fd = path::open_or_create(root, &m.destination, kind).map_err(at(step()))?;
            let target = path::fd_path(&target_fd);
            // Bind mounts ignore other flags on the first call: remount to apply them.
            let extra = m.options.flags & !(MsFlags::MS_REMOUNT);
            if !extra.is_empty() {
                let keep = locked_flags(&target);
                mount(
                    None::<&str>,
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | keep,
                    None::<&str>,
                )
                .map_err(at(format!("{} (remount)", step())))?;
            }
            apply_propagation(&target, &m.options.propagation).map_err(at(step()))?;
        }
        MountKind::Cgroup => mount_cgroup(plan, root, m)?,
        MountKind::Regular => {
            let fstype = m.fstype.clone().unwrap_or_else(|| "none".into());
            // runc keeps the mode of an existing directory a tmpfs is mounted over (so /tmp
            // stays 1777 whatever mode= says); engines and images rely on that.
            let prior_mode = (fstype == "tmpfs")
                .then(|| path::existing_mode(root, &m.destination))
                .flatten();
            let target_fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(step()))?;
            let target = path::fd_path(&target_fd);
            if fstype == "proc" && !std::fs::metadata(&target).map(|md| md.is_dir()).unwrap_or(false) {
                return Err(InitError::step(step(), "proc can only be mounted on a directory"));
            }
            let data = m.options.data.join(",");
            let data = (!data.is_empty()).then_some(data);
            let source = m.source.clone().unwrap_or_else(|| PathBuf::from(&fstype));
            let res = mount(
                Some(&source),
                &target,
                Some(fstype.as_str()),
                m.options.flags,
                data.as_deref(),
            );
            match res {
                Ok(()) => {}
                // sysfs needs a network namespace of our own; without one, bind the host's (runc does).
                Err(nix::errno::Errno::EPERM) if fstype == "sysfs" => {
                    mount(
                        Some("/sys"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None::<&str>,
                    )
                    .map_err(at(step()))?;
                    let fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(step()))?;
                    mount(
                        None::<&str>,
                        &path::fd_path(&fd),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | m.options.flags,
                        None::<&str>,
                    )
                    .map_err(at(step()))?;
                }
                Err(e) => return Err(InitError::step(step(), e.desc().to_lowercase())),
            }
            if m.options.tmpcopyup && fstype == "tmpfs" {
                // `target_fd` still names the directory under the new tmpfs: copy what it held up.
                let fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(step()))?;
                copy_tree(&target, &path::fd_path(&fd)).map_err(at(format!("{} (tmpcopyup)", step())))?;
            }
            if let Some(mode) = prior_mode {
                let fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(step()))?;
                std::fs::set_permissions(path::fd_path(&fd), std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .map_err(at(step()))?;
            }
            if !m.options.propagation.is_empty() {
                let fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(step()))?;
                apply_propagation(&path::fd_path(&fd), &m.options.propagation).map_err(at(step()))?;
            }
        }
    }
    Ok(())
}

fn mount_cgroup(plan: &RootfsPlan, root: &std::os::fd::OwnedFd, m: &MountOp) -> Result<(), InitError> {
    let step = format!("mounting cgroups at {:?}", m.destination);
    let target_fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(&step))?;
    let target = path::fd_path(&target_fd);
    let flags = m.options.flags;
    if plan.cgroups.v2 {
        return match mount(Some("cgroup"), &target, Some("cgroup2"), flags, None::<&str>) {
            Ok(()) => Ok(()),
            // Without a cgroup namespace of its own the container may not mount cgroup2 (EBUSY
            // or EPERM): bind its own cgroup directory instead, as runc does.
            Err(nix::errno::Errno::EBUSY | nix::errno::Errno::EPERM) if plan.cgroups.v2_dir.is_some() => {
                let dir = plan.cgroups.v2_dir.as_deref().expect("checked above");
                mount(
                    Some(dir),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(at(&step))?;
                let fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(&step))?;
                mount(
                    None::<&str>,
                    &path::fd_path(&fd),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                    None::<&str>,
                )
                .map_err(at(step))
            }
            Err(e) => Err(InitError::step(step, e)),
        };
    }
    // v1: a tmpfs holding a bind of the container's own directory in each hierarchy.
    let rw = flags & !MsFlags::MS_RDONLY;
    mount(Some("tmpfs"), &target, Some("tmpfs"), rw, Some("mode=755")).map_err(at(&step))?;
    for (name, host_dir) in &plan.cgroups.v1 {
        let dest = m.destination.join(name);
        let fd = path::open_or_create(root, &dest, Kind::Dir).map_err(at(&step))?;
        let t = path::fd_path(&fd);
        mount(
            Some(host_dir),
            &t,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(at(format!("{step}: {name}")))?;
        let fd = path::open_or_create(root, &dest, Kind::Dir).map_err(at(&step))?;
        let t = path::fd_path(&fd);
        mount(
            None::<&str>,
            &t,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
        .map_err(at(format!("{step}: {name} (remount)")))?;
    }
    // Reopen: the first fd names the directory under the tmpfs, not the tmpfs.
    let target_fd = path::open_or_create(root, &m.destination, Kind::Dir).map_err(at(&step))?;
    let target = path::fd_path(&target_fd);
    let dir = std::fs::File::open(&target).map_err(at(&step))?;
    for (link, to) in &plan.cgroups.symlinks {
        let _ = nix::unistd::symlinkat(to.as_str(), Some(std::os::fd::AsRawFd::as_raw_fd(&dir)), link.as_str());
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_REMOUNT | flags,
            Some("mode=755"),
        )
        .map_err(at(format!("{step} (read-only remount)")))?;
    }
    Ok(())
}

/// Copy a directory tree (files, directories, symlinks) keeping modes and owners; used for
/// `tmpcopyup`. Device nodes, fifos and sockets are skipped, as runc's copy does.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            continue;
        }
        let _ = std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()));
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

fn apply_propagation(target: &Path, props: &[MsFlags]) -> nix::Result<()> {
    for p in props {
        mount(None::<&str>, target, None::<&str>, *p, None::<&str>)?;
    }
    Ok(())
}

/// Flags of the mount at `target` that a remount must keep (in a user namespace the kernel
/// refuses to clear nosuid/nodev/noexec/ro inherited from a more privileged mount).
fn locked_flags(target: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(st) = statvfs(target) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// After the pre-start hooks: switch root.
pub fn finish(plan: &RootfsPlan) -> Result<(), InitError> {
    nix::unistd::chdir(&plan.rootfs).map_err(at("chdir to rootfs"))?;
    if plan.no_pivot {
        mount(Some(&plan.rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(at("moving rootfs to /"))?;
        nix::unistd::chroot(".").map_err(at("chroot"))?;
    } else {
        // pivot_root(".", ".") stacks the old root on top of the new one. An fd of the old
        // root taken before lets us step into exactly that mount to make it a slave (so the
        // unmount never reaches the host) and detach it; "." would be the new root, whose
        // mounts' own propagation settings must survive.
        let old_root = std::fs::File::open("/").map_err(at("opening the old root"))?;
        nix::unistd::pivot_root(".", ".").map_err(at("pivot_root"))?;
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&old_root)).map_err(at("entering the old root"))?;
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(at("making the old root a slave"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(at("unmounting the old root"))?;
    }
    nix::unistd::chdir("/").map_err(at("chdir /"))?;
    Ok(())
}

/// After sysctls are written (they go through /proc/sys, which is about to become read-only):
/// masked and readonly paths, the read-only root, the final propagation.
pub fn lockdown(plan: &RootfsPlan) -> Result<(), InitError> {
    for p in &plan.masked {
        mask_path(p)?;
    }
    for p in &plan.readonly_paths {
        readonly_path(p)?;
    }
    if plan.readonly {
        let keep = locked_flags(Path::new("/"));
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .map_err(at("remounting / read-only"))?;
    }
    if let Some(p) = plan.final_propagation {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>).map_err(at("setting rootfs propagation"))?;
    }
    Ok(())
}

/// Replace /proc by a procfs of the calling process's pid namespace, masks and read-only paths
/// under it included. A restore builds the mounts before the tree's pid namespace exists; a
/// process inside that namespace calls this once the tree runs.
pub fn remount_proc(plan: &RootfsPlan) -> Result<(), InitError> {
    let Some(m) = plan
        .mounts
        .iter()
        .find(|m| m.destination == Path::new("/proc") && m.fstype.as_deref() == Some("proc"))
    else {
        return Ok(());
    };
    umount2("/proc", MntFlags::MNT_DETACH).map_err(at("unmounting the restorer's /proc"))?;
    let data = m.options.data.join(",");
    let data = (!data.is_empty()).then_some(data);
    mount(Some("proc"), "/proc", Some("proc"), m.options.flags, data.as_deref()).map_err(at("mounting /proc"))?;
    for p in plan.masked.iter().filter(|p| p.starts_with("/proc")) {
        mask_path(p)?;
    }
    for p in plan.readonly_paths.iter().filter(|p| p.starts_with("/proc")) {
        readonly_path(p)?;
    }
    Ok(())
}

fn mask_path(p: &Path) -> Result<(), InitError> {
    let md = match std::fs::metadata(p) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(InitError::step(format!("masking {}", p.display()), e)),
    };
    let res = if md.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
    } else {
        mount(Some("/dev/null"), p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    res.map_err(at(format!("masking {}", p.display())))
}

fn readonly_path(p: &Path) -> Result<(), InitError> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(InitError::step(format!("making {} read-only", p.display()), e)),
    }
    let keep = locked_flags(p);
    mount(
        None::<&str>,
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | keep,
        None::<&str>,
    )
    .map_err(at(format!("making {} read-only", p.display())))
}
