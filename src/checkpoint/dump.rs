//! `amber checkpoint`: seize a tree, collect it, refuse what v1 cannot restore (before writing
//! anything, leaving the tasks running), write the image, then resume or kill the tasks.

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
use super::plan::build_tree;
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

/// Dump the tree rooted at `root` (a host pid), found by walking /proc children. Tasks created
/// while seizing are picked up by walking again until nothing new appears.
pub fn dump_tree(root: i32, dir: &Path, opts: &DumpOptions) -> Result<DumpSummary> {
    let stopped = Instant::now();
    let mut seized: Vec<i32> = Vec::new();
    let result = (|| {
        loop {
            let pids = walk_tree(root)?;
            let new: Vec<i32> = pids.into_iter().filter(|p| !seized.contains(p)).collect();
            if new.is_empty() {
                break;
            }
            for pid in new {
                seize_one(pid)?;
                seized.push(pid);
            }
        }
        Ok(())
    })();
    finish_seized(&seized, result, dir, opts, stopped)
}

/// Dump every task of a container's cgroup: freeze it so nothing forks while the tasks are
/// seized, seize + interrupt all, thaw (the interrupts then stop every task), collect.
pub fn dump_cgroup(cgroup: &crate::cgroups::Manager, dir: &Path, opts: &DumpOptions) -> Result<DumpSummary> {
    let stopped = Instant::now();
    cgroup.freeze()?;
    let mut seized = Vec::new();
    let result = (|| {
        for pid in cgroup.pids()? {
            check_before_seize(pid)?;
            remote::seize(pid)?;
            seized.push(pid);
            remote::interrupt(pid)?;
        }
        Ok(())
    })();
    let thawed = cgroup.thaw();
    let result = result.and_then(|()| {
        for &pid in &seized {
            check_stop(pid, remote::wait_interrupted(pid)?)?;
            settle_signals(pid)?;
        }
        Ok(thawed?)
    });
    finish_seized(&seized, result, dir, opts, stopped)
}

/// Dump a set of tasks the caller already stopped from running away (e.g. a frozen cgroup it
/// will thaw itself): they are seized and interrupted one by one.
pub fn dump_pids(pids: &[i32], dir: &Path, opts: &DumpOptions) -> Result<DumpSummary> {
    let stopped = Instant::now();
    let mut seized = Vec::new();
    let result = (|| {
        for &pid in pids {
            seize_one(pid)?;
            seized.push(pid);
        }
        Ok(())
    })();
    finish_seized(&seized, result, dir, opts, stopped)
}

fn walk_tree(root: i32) -> Result<Vec<i32>> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        let path = format!("/proc/{pid}/task/{pid}/children");
        let text = std::fs::read_to_string(&path).map_err(super::proc_err(&path))?;
        out.extend(procfs::parse_children(&text));
        i += 1;
    }
    Ok(out)
}

fn check_before_seize(pid: i32) -> Result<()> {
    let path = format!("/proc/{pid}/status");
    let status = procfs::parse_status(&std::fs::read_to_string(&path).map_err(super::proc_err(&path))?);
    dump_task::precheck(pid, &status)
}

fn seize_one(pid: i32) -> Result<()> {
    check_before_seize(pid)?;
    remote::seize(pid)?;
    remote::interrupt(pid)?;
    check_stop(pid, remote::wait_interrupted(pid)?)?;
    settle_signals(pid)
}

fn check_stop(pid: i32, sig: Signal) -> Result<()> {
    if sig != Signal::SIGTRAP {
        return Err(CheckpointError::Unsupported {
            pid,
            what: format!("is stopped by {sig} (v1 does not dump stopped tasks)"),
        });
    }
    Ok(())
}

/// v1 does not queue signals again at restore, so let the task take every pending signal it
/// has not blocked before the dump: resumed from the interrupt stop, it dequeues the signal
/// (a signal-delivery-stop), which is delivered with a new interrupt pending, so the task stops
/// again right after its handler frame is set up. As if the signal had come a moment earlier.
fn settle_signals(pid: i32) -> Result<()> {
    for _ in 0..16 {
        let path = format!("/proc/{pid}/status");
        let status = procfs::parse_status(&std::fs::read_to_string(&path).map_err(super::proc_err(&path))?);
        let blocked = crate::sys::ptrace::get_sigmask(pid).map_err(|source| CheckpointError::Ptrace {
            pid,
            op: "GETSIGMASK",
            source,
        })?;
        if (status.sig_pnd | status.shd_pnd) & !blocked == 0 {
            return Ok(());
        }
        ptrace::cont(Pid::from_raw(pid), None).map_err(super::ptrace_err(pid, "CONT"))?;
        match remote::wait_stop_timeout(pid, std::time::Duration::from_millis(200))? {
            Some(remote::Stop::Signal(sig)) => {
                remote::interrupt(pid)?;
                ptrace::cont(Pid::from_raw(pid), sig).map_err(super::ptrace_err(pid, "CONT"))?;
                check_stop(pid, remote::wait_interrupted(pid)?)?;
            }
            Some(remote::Stop::Event(sig)) => check_stop(pid, sig)?,
            // Nothing was dequeued after all: stop it again.
            _ => {
                remote::interrupt(pid)?;
                check_stop(pid, remote::wait_interrupted(pid)?)?;
            }
        }
    }
    Ok(()) // collect() refuses what is still pending
}

/// Collect and write; on any error detach everything (the tasks keep running) and report it.
/// With --leave-running the tasks are let go as soon as their pages are in the image: the
/// metadata and the manifest are written while they run.
fn finish_seized(
    seized: &[i32],
    seized_ok: Result<()>,
    dir: &Path,
    opts: &DumpOptions,
    stopped: Instant,
) -> Result<DumpSummary> {
    let mut released: Option<Instant> = None;
    let mut release = || {
        if opts.leave_running {
            detach_all(seized);
            released = Some(Instant::now());
        }
    };
    let result = seized_ok.and_then(|()| collect_and_write(seized, dir, &mut release));
    match &result {
        Ok(_) if !opts.leave_running => kill_all(seized),
        _ => detach_all(seized),
    }
    let released = released.unwrap_or_else(Instant::now);
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

fn detach_all(pids: &[i32]) {
    for &pid in pids {
        // ESRCH for tasks that were killed or died: nothing left to do.
        let _ = ptrace::detach(Pid::from_raw(pid), None);
    }
}

/// Collect every task (all refusals happen here, before the image directory is touched), then
/// stream each task's pages to the image; `release` is called as soon as nothing more is read
/// from the tasks, then the metadata and, last, the manifest are written.
fn collect_and_write(pids: &[i32], dir: &Path, release: &mut dyn FnMut()) -> Result<DumpSummary> {
    let started = Instant::now();
    let mut statuses = BTreeMap::new();
    for &pid in pids {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).map_err(super::proc_err(&path))?;
        statuses.insert(pid, procfs::parse_status(&text));
    }
    let root = statuses
        .iter()
        .find(|(_, s)| !statuses.contains_key(&s.ppid))
        .map(|(p, _)| *p)
        .unwrap_or(0);
    let (namespaces, ns_parents) = super::pidns::read(pids, root)?;
    let tree = build_tree(&statuses, &namespaces, &ns_parents)?;
    let mut collected: Vec<(i32, Collected)> = Vec::new();
    let root_host = tree.tasks.iter().find(|t| t.pid == tree.root).map_or(0, |t| t.host_pid);
    let external = files::external_stdio(root_host);
    for entry in &tree.tasks {
        let mut c = dump_task::collect(entry.host_pid, &external)?;
        c.task.pid = entry.pid;
        collected.push((entry.host_pid, c));
    }
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
