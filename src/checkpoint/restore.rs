//! `amber restore`: verify the image, check what this host and namespace can honour, clone the
//! seeds top-down at their exact pids, transplant each, then release them all together.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::creds;
use super::files;
use super::image::{self, FdKind, Image, VmaKind};
use super::pidtree::plan_pids;
use super::plan::plan_layout;
use super::procfs;
use super::seed::{self, SeedCtx, TaskPlan};
use super::transplant;
use super::{CheckpointError, Result};
use crate::spawn::{spawn, SpawnPlan};

/// Where the restored tree's pids live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidNamespace {
    /// A new pid namespace whose init is the root task (which must have been pid 1).
    New,
    /// The restorer's own pid namespace, at the dumped pids (which must be free).
    Current,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub pid_ns: PidNamespace,
    /// Descriptors for the image's external objects (key: "pipe:[123]", "/dev/pts/0" as
    /// recorded). Unmapped external fds 0-2 fall back to the restorer's own fd of that number.
    pub external_fds: BTreeMap<String, RawFd>,
    /// cgroup v2 directory to clone the root seed into (CLONE_INTO_CGROUP); its children inherit
    /// it. On v1 the caller moves every pid of [`Restored::pids`] itself.
    pub cgroup_fd: Option<RawFd>,
}

/// The restored tree, running.
#[derive(Debug)]
pub struct Restored {
    /// The root task, a child of the caller (reap it with waitpid).
    pub root_pid: i32,
    pub root_pidfd: OwnedFd,
    /// pid in the container's namespace -> pid in the caller's namespace.
    pub pids: BTreeMap<i32, i32>,
}

/// Restore the image in `dir`. Call it from a single-threaded process (seeds are forks that
/// run Rust code, CHECKPOINT.md §4.2.11) that is in the mount namespace the image's paths
/// resolve in; the root task becomes the caller's child.
pub fn restore(dir: &Path, opts: &RestoreOptions) -> Result<Restored> {
    let image = image::load(dir)?; // every checksum and the host record, before any clone
    let subreapers = image
        .tasks
        .values()
        .filter(|t| t.child_subreaper)
        .map(|t| t.pid)
        .collect();
    let tree = super::pstree::plan(&image.tree, &subreapers)?;
    check_restorable(&image, &tree, opts)?;
    let mut plans = plan_tasks(&image, &tree, opts)?;
    // Every file and shared memory object once, above every task's descriptors; the seeds
    // inherit them and dup3 theirs into place.
    let base = plans.values().map(|p| p.helper_base).max().unwrap_or(3);
    let objects = files::build(&image, base)?;
    let keep = objects.all();
    for (pid, plan) in plans.iter_mut() {
        plan.objects = objects.fds.get(pid).cloned().unwrap_or_default();
        plan.shmem = objects.shmem.clone();
        plan.ghosts = objects.ghosts.clone();
        plan.keep = keep.clone();
    }
    let (ready_r, ready_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    let ctx = SeedCtx {
        image: &image,
        plans: &plans,
        tree: &tree,
        ready_w: ready_w.as_raw_fd(),
        hold_r: hold_r.as_raw_fd(),
    };
    let root_id = image.tree.root;
    let root_plan = SpawnPlan {
        new_namespaces: if opts.pid_ns == PidNamespace::New {
            crate::sys::CLONE_NEWPID
        } else {
            0
        },
        set_tid: plans[&root_id].clone.set_tid.clone(),
        cgroup_fd: opts.cgroup_fd,
        joins: vec![],
        time_offsets: None,
    };
    let root = spawn(&root_plan, || seed::run(&ctx, root_id))?;
    drop(ready_w);
    drop(hold_r);
    let result = take_over(&image, &plans, root.pid, ready_r, objects);
    match result {
        Ok(pids) => {
            drop(hold_w);
            Ok(Restored {
                root_pid: root.pid,
                root_pidfd: root.pidfd,
                pids,
            })
        }
        Err(e) => {
            kill_all(root.pid, &root.pidfd);
            Err(e)
        }
    }
}

/// Wait for every seed, seize and transplant each, then release them all.
fn take_over(
    image: &Image,
    plans: &BTreeMap<i32, TaskPlan>,
    root_host: i32,
    ready_r: OwnedFd,
    objects: files::Objects,
) -> Result<BTreeMap<i32, i32>> {
    let exe_fds = wait_ready(ready_r, image, plans, root_host)?;
    super::fault("restore-after-clone")?;
    // Every seed holds its descriptors and mapped its memory now.
    objects.finish()?;
    let hosts = resolve_host_pids(root_host)?;
    let mut pids = BTreeMap::new();
    for t in &image.tree.tasks {
        let (host, levels) = hosts
            .get(&t.pid)
            .ok_or_else(|| CheckpointError::Restore(format!("seed for pid {} not found under {root_host}", t.pid)))?;
        // Every level the kernel gave must be the dumped one (set_tid asked for all of them).
        if *levels != t.levels() {
            return Err(CheckpointError::Restore(format!(
                "pid {} was restored with NSpid {levels:?}, the image has {:?}",
                t.pid,
                t.levels()
            )));
        }
        pids.insert(t.pid, *host);
    }
    // The mid-transplant fault: once a task other than the root is prepared (seized), if any.
    let mid = usize::from(image.tree.tasks.len() > 1);
    for (i, t) in image.tree.tasks.iter().enumerate() {
        transplant::prepare(pids[&t.pid], &image.tasks[&t.pid], &plans[&t.pid], exe_fds[&t.pid])?;
        if i == mid {
            super::fault("restore-mid-transplant")?;
        }
    }
    super::fault("restore-after-transplant")?;
    // Global barrier: nothing runs until every task is complete. First every step that can
    // fail (registers, xstate, mask) for all tasks, then the release: no task runs restored
    // code while another may still fail.
    let last = image.tree.tasks.len() - 1;
    for (i, t) in image.tree.tasks.iter().enumerate() {
        if i == last {
            super::fault("restore-load-state")?; // as if the last task's SETREGS failed
        }
        transplant::load_state(pids[&t.pid], &image.tasks[&t.pid])?;
    }
    for t in &image.tree.tasks {
        transplant::queue_stop(pids[&t.pid], &image.tasks[&t.pid])?;
    }
    for t in &image.tree.tasks {
        transplant::release(pids[&t.pid])?;
    }
    Ok(pids)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| CheckpointError::Sys("pipe2", e.into()))
}

/// Read "R <pid> <exe_fd>" / "E <pid> <message>" lines until every seed is ready.
/// `M <pid>` asks the restorer to fill its half of that seed's memory (`seed::premap`).
fn wait_ready(
    ready_r: OwnedFd,
    image: &Image,
    plans: &BTreeMap<i32, TaskPlan>,
    root_host: i32,
) -> Result<BTreeMap<i32, i32>> {
    let n = plans.len();
    let mut file = std::fs::File::from(ready_r);
    let mut text = String::new();
    let mut exe_fds = BTreeMap::new();
    let mut buf = [0u8; 4096];
    while exe_fds.len() < n {
        let got = file
            .read(&mut buf)
            .map_err(|e| CheckpointError::Sys("reading seed reports", e))?;
        if got == 0 {
            return Err(CheckpointError::Restore(format!(
                "seeds exited before all were ready ({} of {n})",
                exe_fds.len()
            )));
        }
        text.push_str(&String::from_utf8_lossy(&buf[..got]));
        while let Some(nl) = text.find('\n') {
            let line: String = text.drain(..=nl).collect();
            let mut parts = line.trim_end().splitn(3, ' ');
            let (kind, pid, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
            let pid: i32 = pid.and_then(|p| p.parse().ok()).unwrap_or(0);
            match kind {
                Some("R") => {
                    exe_fds.insert(pid, rest.parse().unwrap_or(-1));
                }
                Some("M") => {
                    let (Some(task), Some(plan)) = (image.tasks.get(&pid), plans.get(&pid)) else {
                        return Err(CheckpointError::Restore(format!("report from unknown seed {pid}")));
                    };
                    let host = resolve_host_pids(root_host)?
                        .get(&pid)
                        .map(|h| h.0)
                        .ok_or_else(|| CheckpointError::Restore(format!("seed for pid {pid} not found")))?;
                    seed::fill_from_restorer(image, task, &plan.layout, host)?;
                }
                _ => {
                    return Err(CheckpointError::Seed {
                        pid,
                        msg: rest.to_string(),
                    })
                }
            }
        }
    }
    Ok(exe_fds)
}

/// Map container-level pids to the restorer's view by walking the tree under the root, with
/// each task's NSpid from the container's level (the root's innermost) down.
fn resolve_host_pids(root: i32) -> Result<BTreeMap<i32, (i32, Vec<i32>)>> {
    let read = |pid: i32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        procfs::parse_status(&status).nspid
    };
    let level = read(root).len().saturating_sub(1);
    let mut out = BTreeMap::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let nspid = read(pid);
        if let Some(rel) = nspid.get(level..).filter(|r| !r.is_empty()) {
            out.insert(rel[0], (pid, rel.to_vec()));
        }
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        queue.extend(procfs::parse_children(&children));
    }
    Ok(out)
}

/// How long `kill_all` waits for one killed task before it gives up on it.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kill the whole restored tree and reap what this process must reap. Seeds that were
/// prepared are still seized by us: each is reaped here (as its tracer, `__WALL`) before the
/// root, since a pid-namespace init that is being killed waits for its children, and cannot
/// reap a child traced from outside the namespace until the tracer lets it go.
fn kill_all(root: i32, pidfd: &OwnedFd) {
    // The pids first: once killed, the tree under the root is gone from /proc.
    let pids: Vec<i32> = resolve_host_pids(root)
        .map(|m| m.values().map(|(pid, _)| *pid).filter(|&p| p != root).collect())
        .unwrap_or_default();
    for &pid in &pids {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    // In a new pid namespace, killing its init kills everything in it.
    let _ = crate::sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(pidfd), libc::SIGKILL);
    for &pid in &pids {
        // ECHILD for a task we never seized (the namespace's init or its parent reaps it).
        reap_bounded(pid);
    }
    reap_bounded(root);
}

/// waitpid(`pid`, __WALL) until it exited, is not ours to wait for, or `KILL_WAIT` passed
/// (then a last try to detach it, so that its parent can reap it).
fn reap_bounded(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(_) if Instant::now() >= deadline => {
                let _ = nix::sys::ptrace::detach(Pid::from_raw(pid), None);
                return;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// What v1 needs from this host beyond the host record: unchanged mapped files, the same vdso
/// layout, and free pids. (Credentials are checked by `plan_tasks`, also before any clone.)
fn check_restorable(image: &Image, tree: &super::pstree::TreePlan, opts: &RestoreOptions) -> Result<()> {
    for (pid, t) in &image.tasks {
        for v in t.vmas.iter().filter(|v| {
            matches!(
                v.kind,
                VmaKind::FilePrivate | VmaKind::FileShared | VmaKind::FileSharedRo
            )
        }) {
            let Some(id) = v.file.as_ref().filter(|_| v.ghost.is_none()) else {
                continue; // (a ghost is made again from the image)
            };
            let m = std::fs::metadata(&v.name)
                .map_err(|e| CheckpointError::Restore(format!("pid {pid}: mapped file {}: {e}", v.name)))?;
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            if m.size() != id.size || mtime != id.mtime_ns {
                return Err(CheckpointError::Incompatible(format!(
                    "pid {pid}: mapped file {} changed since the dump (size {} -> {}, mtime {} -> {mtime})",
                    v.name,
                    id.size,
                    m.size(),
                    id.mtime_ns
                )));
            }
        }
        let vdso = t
            .vmas
            .iter()
            .filter(|v| matches!(v.kind, VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vdso));
        let layout: Vec<(String, u64)> = vdso.map(|v| (v.name.clone(), v.len())).collect();
        let host: Vec<(String, u64)> = image
            .manifest
            .host
            .vdso
            .layout
            .iter()
            .map(|v| (v.name.clone(), v.size))
            .collect();
        if layout != host {
            return Err(CheckpointError::Incompatible(format!(
                "pid {pid}: vdso layout {layout:?} is not this kernel's {host:?}"
            )));
        }
    }
    // Every level's pid must be below pid_max (nested namespaces inherit the restorer's). Pids
    // in nested namespaces cannot be in use: the restore creates those namespaces; the
    // container's level is checked below, and duplicates inside the image by plan_pids.
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(i32::MAX);
    for t in &image.tree.tasks {
        if let Some(p) = t.levels().into_iter().find(|&p| p >= pid_max) {
            return Err(CheckpointError::Restore(format!(
                "pid {} (NSpid {:?}): pid {p} is not below this pid namespace's pid_max {pid_max}",
                t.pid,
                t.levels()
            )));
        }
    }
    match opts.pid_ns {
        PidNamespace::New if image.tree.root != 1 => Err(CheckpointError::Restore(format!(
            "the root task was pid {}; only a tree whose root is pid 1 can be restored into a new pid namespace",
            image.tree.root
        ))),
        PidNamespace::Current => {
            // Tasks, zombies and the helpers of dead session and group leaders.
            for pid in tree.nodes.keys() {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(CheckpointError::Restore(format!(
                        "pid {pid} is in use in this pid namespace"
                    )));
                }
            }
            Ok(())
        }
        PidNamespace::New => Ok(()),
    }
}

/// Per task: set_tid, helpers to reap, premap layout, external fd sources, and the
/// credential steps (refusing credentials this restorer cannot give).
fn plan_tasks(image: &Image, tree: &super::pstree::TreePlan, opts: &RestoreOptions) -> Result<BTreeMap<i32, TaskPlan>> {
    let me = creds::Current::of_self()?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(super::proc_err("/proc/self/maps"))?;
    let occupied: Vec<(u64, u64)> = procfs::parse_smaps(&maps).iter().map(|v| (v.start, v.end)).collect();
    let mut pid_plans = plan_pids(&image.tree)?;
    let mut plans = BTreeMap::new();
    let root_stdio: BTreeMap<String, RawFd> = image
        .tasks
        .get(&image.tree.root)
        .map(|t| t.fds.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|f| f.fd <= 2)
        .filter_map(|f| match &f.kind {
            FdKind::External { key } => Some((key.clone(), f.fd)),
            _ => None,
        })
        .collect();
    for t in &image.tree.tasks {
        let pid_plan = pid_plans
            .remove(&t.pid)
            .ok_or_else(|| CheckpointError::Corrupt(format!("tree.json: no plan for pid {}", t.pid)))?;
        let task = &image.tasks[&t.pid];
        let mut externals = BTreeMap::new();
        for f in &task.fds {
            if let FdKind::External { key } = &f.kind {
                let src = match opts.external_fds.get(key) {
                    Some(&fd) => fd,
                    // The root's stdio (perhaps inherited by a descendant at another number).
                    None if root_stdio.contains_key(key) => root_stdio[key],
                    None if f.fd <= 2 => f.fd,
                    None => {
                        return Err(CheckpointError::Restore(format!(
                            "pid {} fd {}: no descriptor given for external {key}",
                            t.pid, f.fd
                        )))
                    }
                };
                externals.insert(f.fd, src);
            }
        }
        plans.insert(
            t.pid,
            TaskPlan {
                clone: pid_plan.clone,
                children_ns: pid_plan.children_ns,
                reap: tree.nodes[&t.pid].reap.clone(),
                layout: plan_layout(task, &occupied)?,
                helper_base: task.fds.iter().map(|f| f.fd + 1).max().unwrap_or(3).max(3),
                externals,
                objects: BTreeMap::new(),
                shmem: BTreeMap::new(),
                ghosts: BTreeMap::new(),
                keep: Vec::new(),
                creds: creds::plan(t.pid, &task.creds, &me)?,
            },
        );
        check_rlimits(t.pid, &task.rlimits, me.cap_eff)?;
    }
    Ok(plans)
}

const RLIMIT_NAMES: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// A hard limit above the restorer's own needs CAP_SYS_RESOURCE (which this kind of host may
/// not grant): refuse it here, before any clone, rather than in a seed.
fn check_rlimits(pid: i32, limits: &[image::Rlimit], cap_eff: u64) -> Result<()> {
    const CAP_SYS_RESOURCE: u32 = 24;
    if cap_eff & (1 << CAP_SYS_RESOURCE) != 0 {
        return Ok(());
    }
    for l in limits {
        let (_, own_hard) = crate::sys::getrlimit(l.resource).map_err(|e| CheckpointError::Sys("getrlimit", e))?;
        if l.hard > own_hard {
            let name = RLIMIT_NAMES.get(l.resource as usize).copied().unwrap_or("rlimit");
            let show = |v: u64| {
                if v == u64::MAX {
                    "unlimited".to_string()
                } else {
                    v.to_string()
                }
            };
            return Err(CheckpointError::Restore(format!(
                "pid {pid}: {name} hard limit {} is above the restorer's {} (raising a hard limit needs CAP_SYS_RESOURCE)",
                show(l.hard),
                show(own_hard)
            )));
        }
    }
    Ok(())
}
