//! `amber checkpoint`: seize a tree, collect it, refuse what v1 cannot restore (before writing
//! anything, leaving the tasks running), write the image, then resume or kill the tasks.
//! Zombies are recorded from /proc (they cannot be seized); tasks in a group stop are dumped
//! with their stop signal; pending signals are dumped as queued, not delivered.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::dump_task::{self, Collected};
use super::files;
use super::host::{xstate_xcr0, HostRecord};
use super::image::{self, ImageWriter};
use super::plan::{build_tree, check_sessions};
use super::procfs;
use super::remote;
use super::{CheckpointError, Result};

#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Resume the tasks after a successful dump. Otherwise they are killed with SIGKILL, and
    /// those that are the caller's own children are reaped by the dump.
    pub leave_running: bool,
}

/// What was dumped.
#[derive(Debug, Clone)]
pub struct DumpSummary {
    /// (pid in the container's pid namespace, host pid), sorted by the former.
    pub tasks: Vec<(i32, i32)>,
    pub pages: u64,
    /// How long the tasks were kept from running: from the freeze (or the first seize) until
    /// they were let go (--leave-running) or killed.
    pub frozen: Duration,
    /// Of that, collecting everything but the pages, and streaming the pages to the image.
    pub collect: Duration,
    pub write_pages: Duration,
}

/// The tasks a dump holds: seized ones (some in a group stop), and zombies (never seized).
#[derive(Debug, Default)]
struct Seized {
    pids: Vec<i32>,
    /// Seized tasks that were in a group stop, with the signal that stopped them.
    stopped: BTreeMap<i32, i32>,
    zombies: Vec<i32>,
}

impl Seized {
    fn has(&self, pid: i32) -> bool {
        self.pids.contains(&pid) || self.zombies.contains(&pid)
    }

    /// Seize and interrupt one task, or record it as a zombie.
    fn take(&mut self, pid: i32) -> Result<()> {
        if is_zombie(pid)? {
            self.zombies.push(pid);
            return Ok(());
        }
        check_before_seize(pid)?;
        remote::seize(pid)?;
        self.pids.push(pid);
        remote::interrupt(pid)?;
        self.stopped_at(pid, remote::wait_interrupted(pid)?)
    }

    fn stopped_at(&mut self, pid: i32, sig: Signal) -> Result<()> {
        if let Some(stop) = check_stop(pid, sig)? {
            self.stopped.insert(pid, stop);
        }
        Ok(())
    }
}

fn status_of(pid: i32) -> Result<procfs::Status> {
    let path = format!("/proc/{pid}/status");
    Ok(procfs::parse_status(
        &std::fs::read_to_string(&path).map_err(super::proc_err(&path))?,
    ))
}

/// In a group stop (SIGSTOP & co.), frozen or not: a frozen task shows state D, but still waits
/// in do_signal_stop. None when the kernel does not name wait channels ("0").
fn in_group_stop(pid: i32) -> Option<bool> {
    if status_of(pid).is_ok_and(|s| s.state == 'T') {
        return Some(true);
    }
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    let wchan = wchan.trim();
    (!wchan.is_empty() && wchan != "0").then(|| wchan == "do_signal_stop")
}

fn is_zombie(pid: i32) -> Result<bool> {
    Ok(matches!(status_of(pid)?.state, 'Z' | 'X'))
}

/// Dump the tree rooted at `root` (a host pid), found by walking /proc children. Tasks created
/// while seizing are picked up by walking again until nothing new appears.
pub fn dump_tree(root: i32, dir: &Path, opts: &DumpOptions) -> Result<DumpSummary> {
    let stopped = Instant::now();
    let mut seized = Seized::default();
    let result = (|| {
        loop {
            let pids = walk_tree(root)?;
            let new: Vec<i32> = pids.into_iter().filter(|p| !seized.has(*p)).collect();
            if new.is_empty() {
                break;
            }
            for pid in new {
                seized.take(pid)?;
            }
        }
        Ok(())
    })();
    finish_seized(&seized, result, dir, opts, stopped)
}

/// Dump every task of a container's cgroup: freeze it so nothing forks while the tasks are
/// seized, seize + interrupt all, thaw (the interrupts then stop every task), collect. Zombies
/// have left the cgroup: they are found as children of the seized tasks.
pub fn dump_cgroup(cgroup: &crate::cgroups::Manager, dir: &Path, opts: &DumpOptions) -> Result<DumpSummary> {
    // Tasks already in a group stop, seen before the freeze (state T) and, for those stopped
    // meanwhile, by their wchan once frozen (`in_group_stop`).
    let stopped_before: Vec<i32> = cgroup
        .pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|&p| status_of(p).is_ok_and(|s| s.state == 'T'))
        .collect();
    let stopped = Instant::now();
    cgroup.freeze()?;
    let mut seized = Seized::default();
    let mut group_stopped = Vec::new();
    let result = (|| {
        for pid in cgroup.pids()? {
            if is_zombie(pid)? {
                continue; // found below, as a child
            }
            check_before_seize(pid)?;
            // PTRACE_SEIZE of a task in a group stop waits until it has moved to a trap stop,
            // which a frozen task never does: seize those after the thaw (they cannot fork).
            if in_group_stop(pid).unwrap_or_else(|| stopped_before.contains(&pid)) {
                group_stopped.push(pid);
                continue;
            }
            remote::seize(pid)?;
            seized.pids.push(pid);
            remote::interrupt(pid)?;
        }
        Ok(())
    })();
    // The thaw is retried and its failure always reported: a container left frozen is not
    // left running, whatever else went wrong.
    let thawed = thaw(cgroup);
    let result = result.and_then(|()| {
        for pid in seized.pids.clone() {
            let sig = remote::wait_interrupted(pid)?;
            seized.stopped_at(pid, sig)?;
        }
        for pid in group_stopped {
            seized.take(pid)?;
        }
        for pid in seized.pids.clone() {
            for child in children_of(pid)? {
                if !seized.has(child) && is_zombie(child)? {
                    seized.zombies.push(child);
                }
            }
        }
        Ok(())
    });
    // With the container thawed, every task seized (even those never waited for) reaches a
    // ptrace-stop and can be detached.
    let result = super::and_cleanup(result, thawed);
    finish_seized(&seized, result, dir, opts, stopped)
}

fn thaw(cgroup: &crate::cgroups::Manager) -> Result<()> {
    let mut tries = 0;
    loop {
        match cgroup.thaw() {
            Err(_) if tries < 3 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20 << tries));
            }
            other => return Ok(other?),
        }
    }
}

/// Dump a set of tasks the caller already stopped from running away (e.g. a frozen cgroup it
/// will thaw itself): they are seized and interrupted one by one.
pub fn dump_pids(pids: &[i32], dir: &Path, opts: &DumpOptions) -> Result<DumpSummary> {
    let stopped = Instant::now();
    let mut seized = Seized::default();
    let result = (|| {
        for &pid in pids {
            seized.take(pid)?;
        }
        Ok(())
    })();
    finish_seized(&seized, result, dir, opts, stopped)
}

fn children_of(pid: i32) -> Result<Vec<i32>> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(procfs::parse_children(&text)),
        // A zombie has no task directory left to list (and no children).
        Err(_) if is_zombie(pid).unwrap_or(false) => Ok(vec![]),
        Err(e) => Err(super::proc_err(&path)(e)),
    }
}

fn walk_tree(root: i32) -> Result<Vec<i32>> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        out.extend(children_of(pid)?);
        i += 1;
    }
    Ok(out)
}

fn check_before_seize(pid: i32) -> Result<()> {
    dump_task::precheck(pid, &status_of(pid)?)
}

/// The stop a seized task reports: SIGTRAP for our interrupt, or the signal of the group stop
/// it is in (a SEIZEd task in a group stop reports that signal at every trap), recorded so that
/// the restore stops it again. Anything else is unexpected.
fn check_stop(pid: i32, sig: Signal) -> Result<Option<i32>> {
    match sig {
        Signal::SIGTRAP => Ok(None),
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => Ok(Some(sig as i32)),
        _ => Err(CheckpointError::Unsupported {
            pid,
            what: format!("reported an unexpected stop by {sig} when interrupted"),
        }),
    }
}

/// Collect and write; on any error detach everything (the tasks keep running) and report it.
/// With --leave-running the tasks are let go as soon as their pages are in the image: the
/// metadata and the manifest are written while they run.
fn finish_seized(
    seized: &Seized,
    seized_ok: Result<()>,
    dir: &Path,
    opts: &DumpOptions,
    stopped: Instant,
) -> Result<DumpSummary> {
    let mut released: Option<(Instant, Result<()>)> = None;
    let mut release = || {
        if opts.leave_running {
            // A task that was in a group stop stays stopped: detaching reinstates the stop.
            released = Some((Instant::now(), detach_all(&seized.pids)));
        }
    };
    let result = seized_ok.and_then(|()| collect_and_write(seized, dir, &mut release));
    let (released, let_go) = match released {
        Some((at, detached)) => (at, detached),
        None => {
            let at = Instant::now();
            match &result {
                Ok(_) if !opts.leave_running => {
                    kill_all(&seized.pids);
                    (at, Ok(()))
                }
                _ => (at, detach_all(&seized.pids)),
            }
        }
    };
    let result = super::and_cleanup(result, let_go);
    result.map(|mut s| {
        s.frozen = released.duration_since(stopped);
        s
    })
}

/// Kill the dumped tasks while they are still stopped (so they run no further), then wait for
/// each: a dead tracee stays a zombie held by its tracer until the tracer waits for it, and a
/// pid-namespace init cannot finish exiting while one of its children is held. Tasks that are
/// the caller's own children are reaped here.
fn kill_all(pids: &[i32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for &pid in pids.iter().rev() {
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::__WALL)) {
                Ok(nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..)) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// How long the tasks of a failed dump get, together, to reach a ptrace-stop they can be
/// detached from.
const DETACH_WAIT: Duration = Duration::from_secs(5);

/// Let every seized task go. Each must be in a ptrace-stop for PTRACE_DETACH: one seized and
/// interrupted but never waited for (a dump that failed half-way) is waited for, bounded; a task
/// left traced would be killed when amber exits (PTRACE_O_EXITKILL). The first failure is
/// reported, naming the pid; every task is tried.
fn detach_all(pids: &[i32]) -> Result<()> {
    let deadline = Instant::now() + DETACH_WAIT;
    let mut first = None;
    for &pid in pids {
        if let Err(e) = detach(pid, deadline) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn detach(pid: i32, deadline: Instant) -> Result<()> {
    use nix::errno::Errno;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let p = Pid::from_raw(pid);
    let mut deliver = None;
    let mut interrupted = false;
    loop {
        match ptrace::detach(p, deliver) {
            Ok(()) => return Ok(()),
            Err(Errno::ESRCH) => {}
            Err(e) => return Err(super::ptrace_err(pid, "DETACH")(e)),
        }
        // ESRCH: gone, no longer ours, or ours but not in a ptrace-stop (yet).
        if !traced_by_me(pid) {
            return Ok(());
        }
        if !interrupted {
            // Seized but perhaps never interrupted (the dump failed in between): ask for a stop.
            let _ = ptrace::interrupt(p);
            interrupted = true;
        }
        deliver = None;
        match waitpid(p, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            // A signal-delivery-stop: the signal is delivered by the detach, not lost.
            Ok(WaitStatus::Stopped(_, sig)) => deliver = Some(sig),
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    return Err(CheckpointError::UnexpectedStop {
                        pid,
                        what: format!(
                            "still traced: it reached no ptrace-stop to be detached from within {}s \
                             (it is killed when amber exits)",
                            DETACH_WAIT.as_secs()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) => {} // an event or syscall stop: detach from it
            Err(e) => return Err(super::ptrace_err(pid, "waitpid")(e)),
        }
    }
}

/// Whether this thread traces `pid` (TracerPid names the tracing thread); false once it is gone.
fn traced_by_me(pid: i32) -> bool {
    status_of(pid).is_ok_and(|s| s.tracer_pid == nix::unistd::gettid().as_raw())
}

/// Collect every task (all refusals happen here, before the image directory is touched), then
/// stream each task's pages to the image; `release` is called as soon as nothing more is read
/// from the tasks, then the metadata and, last, the manifest are written.
fn collect_and_write(seized: &Seized, dir: &Path, release: &mut dyn FnMut()) -> Result<DumpSummary> {
    let started = Instant::now();
    let mut statuses = BTreeMap::new();
    let pids: Vec<i32> = seized.pids.iter().chain(&seized.zombies).copied().collect();
    for &pid in &pids {
        statuses.insert(pid, status_of(pid)?);
    }
    let root = statuses
        .iter()
        .find(|(_, s)| !statuses.contains_key(&s.ppid))
        .map(|(p, _)| *p)
        .unwrap_or(0);
    let (namespaces, ns_parents) = super::pidns::read(&pids, root)?;
    let mut tree = build_tree(&statuses, &namespaces, &ns_parents)?;
    let (zombies, tasks) = tree
        .tasks
        .into_iter()
        .partition(|t| seized.zombies.contains(&t.host_pid));
    tree.tasks = tasks;
    tree.zombies = zombies
        .into_iter()
        .map(|entry: image::TreeEntry| {
            Ok(image::ZombieEntry {
                status: zombie_status(entry.host_pid)?,
                entry,
            })
        })
        .collect::<Result<_>>()?;
    let mut collected: Vec<(i32, Collected)> = Vec::new();
    let root_host = tree.tasks.iter().find(|t| t.pid == tree.root).map_or(0, |t| t.host_pid);
    let external = files::external_stdio(root_host);
    for entry in &tree.tasks {
        let mut c = dump_task::collect(entry.host_pid, &external)?;
        c.task.pid = entry.pid;
        c.task.stop_signal = seized.stopped.get(&entry.host_pid).copied();
        collected.push((entry.host_pid, c));
    }
    // Sessions and groups need every task's subreaper flag (an injected query).
    let subreapers = collected
        .iter()
        .filter(|(_, c)| c.task.child_subreaper)
        .map(|(_, c)| c.task.pid)
        .collect();
    check_sessions(&tree, &subreapers)?;
    let mut linked: Vec<files::TaskFds> = collected
        .iter_mut()
        .map(|(host_pid, c)| files::TaskFds {
            host_pid: *host_pid,
            task: &mut c.task,
            objects: &c.fd_objects,
        })
        .collect();
    let objects = files::link_objects(&mut linked)?;
    for (host_pid, c) in collected.iter_mut() {
        super::relocate::relativize(&mut c.task, *host_pid)?;
    }
    let collect = started.elapsed();
    // Everything is known and acceptable: only now touch the image directory.
    let mut w = ImageWriter::create(dir)?;
    let written = (|| {
        let mut pagemaps = Vec::new();
        for (host_pid, c) in &collected {
            let mut out = w.stream(&image::task_pages(c.task.pid))?;
            pagemaps.push(dump_task::write_pages(*host_pid, &c.task.vmas, &mut out)?);
            w.close(out)?;
        }
        files::write_objects(objects, &mut w)?;
        Ok(pagemaps)
    })();
    let write_pages = started.elapsed() - collect;
    let written = written.and_then(|pagemaps| {
        release();
        let mut host = HostRecord::current()?;
        if let Some((_, c)) = collected.first() {
            let xstate = image::from_hex(&c.task.xstate).unwrap_or_default();
            host.xsave.ptrace_size = xstate.len() as u32;
            host.xsave.xcr0 = xstate_xcr0(&xstate);
        }
        let mut pages = 0;
        for ((_, c), pagemap) in collected.iter().zip(&pagemaps) {
            let pid = c.task.pid;
            w.write_json(&image::task_json(pid), &c.task)?;
            w.write_json(&image::task_pagemap(pid), pagemap)?;
            pages += pagemap.iter().map(|e| e.nr_pages).sum::<u64>();
        }
        w.write_json(image::TREE, &tree)?;
        Ok((pages, host))
    });
    let pages = match written {
        Ok((pages, host)) => {
            w.finish(host)?;
            pages
        }
        Err(e) => {
            w.abandon();
            return Err(e);
        }
    };
    Ok(DumpSummary {
        tasks: tree.tasks.iter().map(|t| (t.pid, t.host_pid)).collect(),
        pages,
        frozen: Duration::ZERO,
        collect,
        write_pages,
    })
}

/// A zombie's wait status: the exit_code field (52) of /proc/<pid>/stat.
fn zombie_status(pid: i32) -> Result<i32> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(super::proc_err(&path))?;
    procfs::parse_stat_exit_code(&text).ok_or_else(|| CheckpointError::Unsupported {
        pid,
        what: "zombie without a readable exit code in /proc/<pid>/stat".into(),
    })
}
