//! Seed code: runs in each freshly cloned process of a restore (a fork of the restorer, so it
//! has the whole decoded image in memory), builds everything that ordinary code can build from
//! inside (children at exact pids, session, fds, cwd, umask, comm, premapped and filled memory,
//! sigactions, rlimits), reports ready and blocks until the restorer seizes it. Zombies and
//! helpers (`pstree`) are seeds too: they make their session or group, clone what they must,
//! and die.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, RawFd};

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::stat::Mode;
use nix::unistd::{close, dup3};

use super::image::{FdKind, Image, TaskImage, Vma, VmaKind};
use super::pidtree::{ChildrenNs, ClonePlan};
use super::plan::{Layout, PAGE};
use super::pstree::{Node, NodeKind, TreePlan};
use crate::spawn::{spawn, SpawnPlan};
use crate::sys::seedmem::{self, KernelSigaction};

/// What a seed must do, beyond the image itself (its place in the tree of sessions, groups,
/// zombies and helpers: `SeedCtx::tree`).
#[derive(Debug, Clone)]
pub struct TaskPlan {
    /// How the parent clones it: set_tid (innermost level first), CLONE_NEWPID, the pid
    /// namespace the parent enters first.
    pub clone: ClonePlan,
    /// Where its later children are born, set after its own children exist.
    pub children_ns: ChildrenNs,
    /// Helper children the restorer reaps in this task before it resumes.
    pub reap: Vec<i32>,
    pub layout: Layout,
    /// First descriptor above every image descriptor: seed-only descriptors live at or above
    /// it and are closed with one close_range before the task resumes.
    pub helper_base: i32,
    /// image fd -> the restorer's descriptor (inherited by the seed) to install there.
    pub externals: BTreeMap<i32, RawFd>,
    /// image fd -> the restorer's file object (`files::build`, above every helper_base).
    pub objects: BTreeMap<i32, RawFd>,
    /// shmem object id -> the restorer's descriptor of it.
    pub shmem: BTreeMap<u64, RawFd>,
    /// ghost id -> the restorer's descriptor of a file unlinked while mapped, made again.
    pub ghosts: BTreeMap<u32, RawFd>,
    /// Every object descriptor of the restore: kept until the transplant's close_range, since
    /// children may still need theirs.
    pub keep: Vec<RawFd>,
    /// Injected last by the restorer (`transplant::prepare`); the seed keeps the restorer's.
    pub creds: Vec<super::creds::CredStep>,
}

pub struct SeedCtx<'a> {
    pub image: &'a Image,
    pub plans: &'a BTreeMap<i32, TaskPlan>,
    pub tree: &'a TreePlan,
    pub ready_w: RawFd,
    pub hold_r: RawFd,
}

type SeedResult<T> = std::result::Result<T, String>;

fn errno(what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// The seed's main: never returns while the restore goes well (the restorer takes it over).
pub fn run(ctx: &SeedCtx, pid: i32) -> i32 {
    // No handler may run in a seed from here on: the image's handlers point into memory that
    // only exists after the transplant, and the restorer's handlers into memory that won't.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
    let mut fds = Helpers {
        ready_w: ctx.ready_w,
        hold_r: ctx.hold_r,
    };
    let node = &ctx.tree.nodes[&pid];
    let msg = match node.kind {
        NodeKind::Task => match setup(ctx, pid, &mut fds) {
            Ok(exe_fd) => format!("R {pid} {exe_fd}\n"),
            Err(e) => format!("E {pid} {}\n", e.replace('\n', " ")),
        },
        // Helpers and zombies report only failures; success is their death.
        _ => match build(ctx, node) {
            Ok(()) => die(node),
            Err(e) => format!("E {pid} {}\n", e.replace('\n', " ")),
        },
    };
    report(fds.ready_w, &msg);
    if !msg.starts_with('R') {
        return 1;
    }
    let mut buf = [0u8; 1];
    loop {
        match nix::unistd::read(fds.hold_r, &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            // The restorer went away without taking us over.
            _ => return 1,
        }
    }
}

struct Helpers {
    ready_w: RawFd,
    hold_r: RawFd,
}

fn setup(ctx: &SeedCtx, pid: i32, helpers: &mut Helpers) -> SeedResult<i32> {
    let plan = &ctx.plans[&pid];
    let task = &ctx.image.tasks[&pid];
    build(ctx, &ctx.tree.nodes[&pid])?;
    set_children_ns(plan)?;
    restore_fds(task, plan, helpers)?;
    if task.root != "/" {
        nix::unistd::chroot(task.root.as_str()).map_err(errno(format!("chroot {}", task.root)))?;
    }
    nix::unistd::chdir(task.cwd.as_str()).map_err(errno(format!("chdir {}", task.cwd)))?;
    nix::sys::stat::umask(Mode::from_bits_truncate(task.umask));
    if task.personality != 0 {
        crate::sys::personality(task.personality).map_err(|e| format!("personality: {e}"))?;
    }
    if crate::sys::getpriority().map_err(|e| format!("getpriority: {e}"))? != task.nice {
        crate::sys::setpriority(task.nice).map_err(|e| format!("setpriority({}): {e}", task.nice))?;
    }
    let comm = CString::new(task.comm.clone()).map_err(|_| "comm contains NUL".to_string())?;
    nix::sys::prctl::set_name(&comm).map_err(errno("PR_SET_NAME"))?;
    seedmem::map_stub(plan.layout.stub).map_err(|e| format!("mapping the stub at {:#x}: {e}", plan.layout.stub))?;
    premap(ctx.image, task, plan, helpers.ready_w)?;
    let exe = open(task.exe.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(errno(format!("opening exe {}", task.exe)))?;
    let exe_fd = move_above(exe, plan.helper_base)?;
    take_posix_locks(task, plan)?;
    // SIGCHLD is set by the restorer once the zombie and helper children are dead (an ignored
    // SIGCHLD would have them reaped by the kernel).
    for a in task.sigactions.iter().filter(|a| a.signo != libc::SIGCHLD) {
        let act = KernelSigaction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        };
        seedmem::rt_sigaction_set(a.signo, &act).map_err(|e| format!("rt_sigaction({}): {e}", a.signo))?;
    }
    // Last: limits may be lower than what the steps above needed.
    for l in &task.rlimits {
        let (soft, hard) = crate::sys::getrlimit(l.resource).map_err(|e| format!("getrlimit {}: {e}", l.resource))?;
        if (soft, hard) != (l.soft, l.hard) {
            crate::sys::setrlimit(l.resource, l.soft, l.hard).map_err(|e| {
                format!(
                    "setrlimit({}, {}, {}) (restorer has hard {hard}; raising a hard limit needs CAP_SYS_RESOURCE): {e}",
                    l.resource, l.soft, l.hard
                )
            })?;
        }
    }
    Ok(exe_fd)
}

fn report(ready_w: RawFd, msg: &str) {
    // One write of at most PIPE_BUF bytes is atomic, so reports of several seeds never mix.
    let bytes = &msg.as_bytes()[..msg.len().min(4000)];
    let ready = crate::sys::own_fresh_fd(ready_w);
    let _ = nix::unistd::write(&ready, bytes);
    drop(ready);
}

/// The node's place in the tree: children born before its setsid(), the session, its process
/// group (before or after its children, whichever way the leader comes to exist), the other
/// children, then wait until the children that must die (zombies, helpers) are dead.
fn build(ctx: &SeedCtx, node: &Node) -> SeedResult<()> {
    // A subreaper from the start: a helper's orphans must find their reaper (`pstree`).
    if ctx.image.tasks.get(&node.pid).is_some_and(|t| t.child_subreaper) {
        nix::sys::prctl::set_child_subreaper(true).map_err(errno("PR_SET_CHILD_SUBREAPER"))?;
    }
    clone_all(ctx, &node.before_setsid, 0)?;
    if node.setsid {
        nix::unistd::setsid().map_err(errno("setsid"))?;
    }
    if let Some(g) = node.pgid.filter(|_| !node.pgid_after_children) {
        join_group(g)?;
    }
    let flags = if node.clone_parent { crate::sys::CLONE_PARENT } else { 0 };
    clone_all(ctx, &node.children, flags)?;
    if let Some(g) = node.pgid.filter(|_| node.pgid_after_children) {
        join_group(g)?;
    }
    for &child in &node.await_exit {
        await_exit(child)?;
    }
    Ok(())
}

/// Clone children at their exact pids: helpers first (they make the groups and sessions the
/// others join), then by the level of the pid namespace entered (`plan::plan_pids`: each init
/// waited for is already cloned or being cloned by a seed that waits only for shallower ones).
/// A child living in a nested pid namespace this seed is not in (the original parent had done
/// setns or unshare before forking it) is cloned after entering that namespace through its
/// init, then this seed goes back to its own.
fn clone_all(ctx: &SeedCtx, children: &[i32], flags: u64) -> SeedResult<()> {
    let key = |c: &i32| match ctx.plans.get(c) {
        Some(p) => (1, p.clone.enter_level, *c),
        None if ctx.tree.nodes[c].kind == NodeKind::Helper => (0, 0, *c),
        None => (1, 0, *c),
    };
    let mut order = children.to_vec();
    order.sort_by_key(key);
    let mut own = None;
    for child in order {
        let node = &ctx.tree.nodes[&child];
        let cp = match ctx.plans.get(&child) {
            Some(plan) => plan.clone.clone(),
            None => ClonePlan {
                set_tid: node.set_tid.clone(),
                new_pidns: false,
                enter: None,
                enter_level: 0,
            },
        };
        if let Some(init) = cp.enter {
            if own.is_none() {
                own = Some(
                    crate::sys::pidfd_open(nix::unistd::getpid().as_raw())
                        .map_err(|e| format!("pidfd_open(self): {e}"))?,
                );
            }
            enter_pidns_of(init).map_err(|e| format!("cloning pid {child}: {e}"))?;
        }
        let new_pidns = if cp.new_pidns { crate::sys::CLONE_NEWPID } else { 0 };
        let spawn_plan = SpawnPlan {
            new_namespaces: new_pidns | flags,
            set_tid: cp.set_tid.clone(),
            cgroup_fd: None,
            joins: vec![],
            time_offsets: None,
        };
        let spawned = spawn(&spawn_plan, || run(ctx, child));
        if let (Some(_), Some(own)) = (cp.enter, &own) {
            nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(errno("going back to its own pid namespace"))?;
        }
        spawned.map_err(|e| format!("cloning pid {child}: {e}"))?;
    }
    Ok(())
}

/// Last, after its children exist: the pid_for_children it was dumped with.
fn set_children_ns(plan: &TaskPlan) -> SeedResult<()> {
    match plan.children_ns {
        ChildrenNs::Own => Ok(()),
        ChildrenNs::Enter(init) => enter_pidns_of(init).map_err(|e| format!("restoring pid_for_children: {e}")),
        ChildrenNs::Unshare => nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(errno("unshare(CLONE_NEWPID) for pid_for_children")),
    }
}

/// How long a seed waits for another seed to make a process group or to die.
const TREE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// setpgid(0, g), retrying while the group's leader (made by another seed) does not have it yet.
fn join_group(g: i32) -> SeedResult<()> {
    let me = nix::unistd::Pid::from_raw(0);
    let start = std::time::Instant::now();
    loop {
        if nix::unistd::getpgid(None).map(|p| p.as_raw()) == Ok(g) {
            return Ok(());
        }
        match nix::unistd::setpgid(me, nix::unistd::Pid::from_raw(g)) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EPERM) if start.elapsed() < TREE_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => return Err(format!("setpgid(0, {g}): {e}")),
        }
    }
}

/// Wait until a child (possibly not cloned yet: a helper clones it for us) has exited, without
/// reaping it.
fn await_exit(child: i32) -> SeedResult<()> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
    let start = std::time::Instant::now();
    loop {
        match waitid(Id::Pid(nix::unistd::Pid::from_raw(child)), flags) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(()),
            Ok(_) | Err(nix::errno::Errno::ECHILD) if start.elapsed() < TREE_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            other => return Err(format!("waiting for child {child} to exit: {other:?}")),
        }
    }
}

/// A helper exits 0; a zombie dies as it died: exit code, or its signal (without a core dump:
/// the wait status then lacks the core flag).
fn die(node: &Node) -> ! {
    let NodeKind::Zombie { status } = node.kind else {
        crate::sys::exit_now(0)
    };
    let sig = status & 0x7f;
    if sig != 0 {
        let _ = nix::sys::prctl::set_dumpable(false);
        let dfl = KernelSigaction::default();
        let _ = seedmem::rt_sigaction_set(sig, &dfl);
        if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
            let mut set = SigSet::empty();
            set.add(s);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), s);
        }
    }
    crate::sys::exit_now((status >> 8) & 0xff)
}

/// setns(CLONE_NEWPID) into the pid namespace of `init` (a pid in our own namespace), waiting
/// for another seed to clone it: plan_pids orders children so that it never waits for a seed
/// that waits for us.
fn enter_pidns_of(init: i32) -> SeedResult<()> {
    let start = std::time::Instant::now();
    let fd = loop {
        match crate::sys::pidfd_open(init) {
            Ok(fd) => break fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) && start.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(format!("the init of the pid namespace to enter (pid {init}): {e}")),
        }
    };
    nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(errno(format!("setns into the pid namespace of pid {init}")))
}

fn move_above(fd: RawFd, base: i32) -> SeedResult<RawFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(base)).map_err(errno(format!("moving fd {fd} above {base}")))?;
    let _ = close(fd);
    Ok(new)
}

/// Make the fd table exactly the image's, plus helpers at >= helper_base.
fn restore_fds(task: &TaskImage, plan: &TaskPlan, helpers: &mut Helpers) -> SeedResult<()> {
    let dup_above = |fd: RawFd| {
        fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(plan.helper_base)).map_err(errno(format!("duplicating fd {fd}")))
    };
    helpers.ready_w = dup_above(helpers.ready_w)?;
    helpers.hold_r = dup_above(helpers.hold_r)?;
    let mut sources = BTreeMap::new();
    for (&target, &src) in &plan.externals {
        sources.insert(target, dup_above(src)?);
    }
    let keep: Vec<RawFd> = [helpers.ready_w, helpers.hold_r]
        .into_iter()
        .chain(sources.values().copied())
        .chain(plan.keep.iter().copied())
        .collect();
    let open_now: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("listing /proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open_now.into_iter().filter(|fd| !keep.contains(fd)) {
        let _ = close(fd);
    }
    for f in &task.fds {
        let flags = OFlag::from_bits_truncate(f.flags as i32);
        // Every source lives at or above helper_base, above every image descriptor.
        let src = match &f.kind {
            FdKind::External { key } => sources
                .get(&f.fd)
                .ok_or_else(|| format!("fd {}: no descriptor supplied for external {key}", f.fd))?,
            _ => plan
                .objects
                .get(&f.fd)
                .ok_or_else(|| format!("fd {}: the restorer did not create its file", f.fd))?,
        };
        let cloexec = flags.contains(OFlag::O_CLOEXEC);
        dup3(*src, f.fd, if cloexec { OFlag::O_CLOEXEC } else { OFlag::empty() })
            .map_err(errno(format!("installing fd {}", f.fd)))?;
    }
    // The epoll registrations this task made, through its own descriptor numbers (epoll knows
    // a target by file and number), once per instance.
    let mut done = std::collections::BTreeSet::new();
    for f in &task.fds {
        let FdKind::Epoll { targets } = &f.kind else { continue };
        if f.desc != 0 && !done.insert(f.desc) {
            continue;
        }
        for t in targets.iter().filter(|t| t.pid == task.pid) {
            crate::sys::epoll_add(f.fd, t.tfd, t.events, t.data).map_err(|e| {
                format!(
                    "epoll fd {}: adding target fd {} (events {:#x}): {e}",
                    f.fd, t.tfd, t.events
                )
            })?;
        }
    }
    Ok(())
}

/// Runs of at least this many pages are populated with one madvise before they are read.
const POPULATE_MIN_PAGES: u64 = 16;

/// Tasks with at least this much page data are filled by two: the seed fills the first half of
/// its page file and the restorer, told by an `M <pid>` report once the premaps exist, the
/// second half through process_vm_writev, in parallel (faulting in fresh memory dominates a
/// restore, and there are two CPUs).
const SHARED_FILL_MIN: u64 = 64 << 20;

/// Offset of the page file from which the restorer fills (the file size: the seed fills it all).
fn fill_split(total: u64) -> u64 {
    if total >= SHARED_FILL_MIN {
        total / 2 / PAGE * PAGE
    } else {
        total
    }
}

/// Where the page file of `task` goes in its seed: (file offset, premap address, bytes) per
/// pagemap entry, in file order.
fn fill_targets(image: &Image, task: &TaskImage, layout: &Layout) -> Vec<(u64, u64, u64)> {
    let pagemap = &image.pagemaps[&task.pid];
    let premapped: Vec<(&Vma, u64)> = layout
        .premaps
        .iter()
        .map(|&(i, addr)| (&task.vmas[i], addr))
        .filter(|(v, _)| !v.is_shared())
        .collect();
    let mut out = Vec::with_capacity(pagemap.len());
    let mut off = 0;
    for e in pagemap {
        let len = e.nr_pages * PAGE;
        if let Some((v, addr)) = premapped.iter().find(|(v, _)| e.vaddr >= v.start && e.vaddr < v.end) {
            out.push((off, addr + (e.vaddr - v.start), len));
        }
        off += len;
    }
    out
}

/// The part of `targets` in [from, to) of the file.
fn clip(targets: &[(u64, u64, u64)], from: u64, to: u64) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
    targets.iter().filter_map(move |&(off, dst, len)| {
        let (a, b) = (off.max(from), (off + len).min(to));
        (a < b).then(|| (a, dst + (a - off), b - a))
    })
}

/// Read consecutive bytes of the page file from `off` into the ranges of `batch`, one preadv.
fn fill(pages: &std::fs::File, batch: &[(u64, u64)], off: u64, path: &std::path::Path) -> SeedResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    seedmem::preadv_into(pages.as_fd(), batch, off).map_err(|err| {
        let len: u64 = batch.iter().map(|b| b.1).sum();
        format!(
            "filling {} range(s) from {:#x} ({len:#x} bytes at offset {off:#x}) from {}: {err}",
            batch.len(),
            batch[0].0,
            path.display()
        )
    })
}

/// Map every VMA of the image in the layout's premap area and fill the private ones from the
/// page file (runs that follow each other in the file with one preadv; a large file shared
/// with the restorer, see [`SHARED_FILL_MIN`]); the transplant later moves each into place
/// with one mremap.
fn premap(image: &Image, task: &TaskImage, plan: &TaskPlan, ready_w: RawFd) -> SeedResult<()> {
    let layout = &plan.layout;
    for &(i, addr) in &layout.premaps {
        let v = &task.vmas[i];
        let mut flags = libc::MAP_PRIVATE;
        if v.growsdown() {
            flags |= libc::MAP_GROWSDOWN;
        }
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let what = |e: std::io::Error| format!("premapping {:x}-{:x} {:?} at {addr:#x}: {e}", v.start, v.end, v.name);
        if v.is_shared() {
            // The same file or shmem object again, at its final protection; nothing to fill.
            let file = shared_object(v, plan).map_err(what)?;
            seedmem::mmap_fixed(addr, v.len(), v.prot(), libc::MAP_SHARED, Some(file.as_fd()), v.offset)
                .map_err(what)?;
        } else if v.kind == VmaKind::FilePrivate {
            let file = mapped_file(v, plan).map_err(what)?;
            seedmem::mmap_fixed(addr, v.len(), rw, flags, Some(file.as_fd()), v.offset).map_err(what)?;
        } else {
            seedmem::mmap_fixed(addr, v.len(), rw, flags, None, 0).map_err(what)?;
        }
        // VmFlags set with madvise (huge pages first: the fill below then gets them).
        for &(name, advice) in &seedmem::MADVISE_FLAGS {
            if v.vmflags.iter().any(|f| f == name) {
                seedmem::madvise_flag(addr, v.len(), advice)
                    .map_err(|e| format!("madvise {name} on {:x}-{:x} {:?}: {e}", v.start, v.end, v.name))?;
            }
        }
    }
    let pages_path = image.pages_path(task.pid);
    let pages = std::fs::File::open(&pages_path).map_err(|e| format!("opening {}: {e}", pages_path.display()))?;
    let targets = fill_targets(image, task, layout);
    let total: u64 = image.pagemaps[&task.pid].iter().map(|e| e.nr_pages * PAGE).sum();
    let split = fill_split(total);
    if split < total {
        // Everything is mapped: the restorer may write its half now.
        let w = nix::unistd::dup(ready_w).map_err(errno("dup of the report pipe"))?;
        let w = crate::sys::own_fresh_fd(w);
        let msg = format!("M {}\n", task.pid);
        nix::unistd::write(&w, msg.as_bytes()).map_err(errno("reporting the premaps"))?;
    }
    let mut batch: Vec<(u64, u64)> = Vec::new();
    let (mut batch_off, mut batch_len) = (0, 0);
    for (file_off, dst, len) in clip(&targets, 0, split) {
        if len >= POPULATE_MIN_PAGES * PAGE {
            // One call faults the run in instead of one fault per page during the read
            // (an older kernel says EINVAL: the read faults them in as before).
            let _ = seedmem::populate_write(dst, len);
        }
        if batch.len() == 1024 || batch_off + batch_len != file_off {
            fill(&pages, &batch, batch_off, &pages_path)?;
            batch.clear();
            (batch_off, batch_len) = (file_off, 0);
        }
        batch.push((dst, len));
        batch_len += len;
    }
    fill(&pages, &batch, batch_off, &pages_path)
}

/// The restorer's half of a shared fill (`M <pid>` report): the page file from the split on,
/// read 1 MiB at a time and written into the seed (host pid `host`) with process_vm_writev.
pub fn fill_from_restorer(
    image: &Image,
    task: &TaskImage,
    layout: &Layout,
    host: i32,
) -> crate::checkpoint::Result<()> {
    use crate::checkpoint::CheckpointError;
    use std::os::unix::fs::FileExt;
    let targets = fill_targets(image, task, layout);
    let total: u64 = image.pagemaps[&task.pid].iter().map(|e| e.nr_pages * PAGE).sum();
    let path = image.pages_path(task.pid);
    let file = std::fs::File::open(&path).map_err(|source| CheckpointError::Image {
        path: path.clone(),
        source,
    })?;
    let mut buf = vec![0u8; 1 << 20];
    for (off, dst, len) in clip(&targets, fill_split(total), total) {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], off + done)
                .map_err(|source| CheckpointError::Image {
                    path: path.clone(),
                    source,
                })?;
            let remote = [nix::sys::uio::RemoteIoVec {
                base: (dst + done) as usize,
                len: n,
            }];
            let wrote = nix::sys::uio::process_vm_writev(
                nix::unistd::Pid::from_raw(host),
                &[std::io::IoSlice::new(&buf[..n])],
                &remote,
            )
            .map_err(|e| CheckpointError::Seed {
                pid: task.pid,
                msg: format!("filling {:#x}+{n:#x} with process_vm_writev: {e}", dst + done),
            })?;
            if wrote != n {
                return Err(CheckpointError::Seed {
                    pid: task.pid,
                    msg: format!(
                        "filling {:#x}+{n:#x}: process_vm_writev wrote {wrote} bytes",
                        dst + done
                    ),
                });
            }
            done += n as u64;
        }
    }
    Ok(())
}

/// What a shared VMA maps: the restorer's shmem object, or its file opened again (for writing
/// when the mapping may be made writable).
fn shared_object(v: &Vma, plan: &TaskPlan) -> std::io::Result<std::os::fd::OwnedFd> {
    if v.kind == VmaKind::Shmem {
        let raw = v
            .shmem
            .and_then(|id| plan.shmem.get(&id))
            .ok_or_else(|| std::io::Error::other("no shared memory object"))?;
        let fd = nix::unistd::dup(*raw)?;
        return Ok(crate::sys::own_fresh_fd(fd));
    }
    if v.ghost.is_some() {
        return mapped_file(v, plan);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(v.may_write())
        .open(&v.name)?;
    Ok(file.into())
}

/// The file a private (or a ghost's shared) mapping maps: opened by path, or the restorer's
/// descriptor of a file that was unlinked while mapped, or of a memfd.
fn mapped_file(v: &Vma, plan: &TaskPlan) -> std::io::Result<std::os::fd::OwnedFd> {
    if let Some(id) = v.shmem {
        // A memfd mapped privately: the restorer's memfd.
        let raw = plan
            .shmem
            .get(&id)
            .ok_or_else(|| std::io::Error::other("no shared memory object"))?;
        return Ok(crate::sys::own_fresh_fd(nix::unistd::dup(*raw)?));
    }
    match &v.ghost {
        Some(g) => {
            let raw = plan
                .ghosts
                .get(&g.id)
                .ok_or_else(|| std::io::Error::other("the restorer did not make the unlinked file again"))?;
            Ok(crate::sys::own_fresh_fd(nix::unistd::dup(*raw)?))
        }
        None => Ok(std::fs::File::open(&v.name)?.into()),
    }
}

/// POSIX locks belong to the process and go away with its first close of any descriptor of the
/// file: taken once nothing is left to close but the helpers (premap opened and closed its
/// files already), after the restorer's objects are closed here.
fn take_posix_locks(task: &TaskImage, plan: &TaskPlan) -> SeedResult<()> {
    if !task.fds.iter().any(|f| f.locks.iter().any(|l| l.pid == task.pid)) {
        return Ok(());
    }
    for &fd in &plan.keep {
        let _ = close(fd);
    }
    let mut done = std::collections::BTreeSet::new();
    for f in &task.fds {
        if f.desc != 0 && !done.insert(f.desc) {
            continue;
        }
        super::files::take_locks(f.fd, task.pid, f, true).map_err(|e| e.to_string())?;
    }
    Ok(())
}
