//! OOM notifications for `amber events`: one pollable fd that becomes readable when the kernel's
//! OOM killer acts in the container's memory cgroup, and a count of how many times it did.
//!
//! - cgroup v1 (and hybrid, where memory is a v1 controller): an eventfd registered for
//!   memory.oom_control through cgroup.event_control, as runc does. The kernel adds one to the
//!   eventfd per OOM, and once more when the cgroup is removed.
//! - cgroup v2: memory.events, whose oom/oom_kill counters are compared between reads, plus
//!   cgroup.events, whose "populated 0" says the container has no process left (runc stops
//!   there too). Both files are kept open and registered with EPOLLPRI in an epoll instance,
//!   whose fd is the one handed out: kernfs wakes pollers of an open cgroup file when its content
//!   changes (the same cgroup_file_notify() that raises the inotify IN_MODIFY runc watches), and
//!   re-arms once the file is read again from the start. Poll rather than inotify because nix's
//!   "inotify" feature is not enabled in this crate, and it needs no watch descriptors.

use std::cmp::max;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::fs::write_file;
use super::stats::{is_absent, parse_flat_keyed, Malformed};
use super::{CgroupError, Manager};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_root;

/// Watches the container's memory cgroup for OOM kills. Poll [`OomWatcher::fd`] for
/// readability (POLLIN), then call [`OomWatcher::check`]; stop once
/// [`OomWatcher::is_finished`] says no more events can come (the fd may then stay readable).
pub struct OomWatcher {
    source: Source,
    finished: bool,
}

enum Source {
    V1(V1Watch),
    V2(V2Watch),
}

impl Manager {
    /// Start watching for OOM events. The memory controller's hierarchy decides the mechanism:
    /// v1 where a v1 hierarchy carries memory, else cgroup2.
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        let source = match (self.v1_dir("memory"), self.v2_dir()) {
            (Some(dir), _) if !self.is_v2() => Source::V1(V1Watch::open(dir)?),
            (_, Some(dir)) if self.is_v2() || dir.join("memory.events").exists() => Source::V2(V2Watch::open(dir)?),
            _ => {
                return Err(CgroupError::MissingController {
                    controller: "memory".to_string(),
                    needed_for: "OOM notifications (amber events)".to_string(),
                })
            }
        };
        let finished = match &source {
            Source::V1(_) => false,
            Source::V2(w) => !w.populated,
        };
        Ok(OomWatcher { source, finished })
    }
}

impl OomWatcher {
    /// Readable (POLLIN) when [`OomWatcher::check`] may have something to report.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V1(w) => w.eventfd.as_fd(),
            Source::V2(w) => w.epoll.0.as_fd(),
        }
    }

    /// How many OOM events happened since the last call (or since the watcher was made), without
    /// blocking. Also notices the end: see [`OomWatcher::is_finished`].
    pub fn check(&mut self) -> Result<u64, CgroupError> {
        let (count, finished) = match &mut self.source {
            Source::V1(w) => w.check()?,
            Source::V2(w) => w.check()?,
        };
        self.finished |= finished;
        Ok(count)
    }

    /// True once the cgroup was removed (v1, v2) or has no process left (v2): no OOM can follow,
    /// and `amber events` ends as runc's does.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

// ---------------------------------------------------------------------------------------------
// v1: eventfd + memory.oom_control.

struct V1Watch {
    eventfd: EventFd,
    /// The kernel needs the file only while registering; runc keeps it open as long as the
    /// eventfd, and so do we.
    _oom_control: File,
    oom_control_path: PathBuf,
    event_control: PathBuf,
}

impl V1Watch {
    fn open(dir: &Path) -> Result<V1Watch, CgroupError> {
        let oom_control_path = dir.join("memory.oom_control");
        let read_err = |source: io::Error| CgroupError::Read {
            path: oom_control_path.clone(),
            source,
        };
        let oom_control = File::open(&oom_control_path).map_err(read_err)?;
        // Non-blocking, so that check() can drain it without knowing whether poll said so.
        let eventfd =
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(|e| read_err(e.into()))?;
        let event_control = dir.join("cgroup.event_control");
        let registration = format!("{} {}", eventfd.as_fd().as_raw_fd(), oom_control.as_raw_fd());
        write_file(&event_control, &registration)?;
        Ok(V1Watch {
            eventfd,
            _oom_control: oom_control,
            oom_control_path,
            event_control,
        })
    }

    fn check(&mut self) -> Result<(u64, bool), CgroupError> {
        let signals = match self.eventfd.read() {
            Ok(n) => n,
            Err(Errno::EAGAIN) => 0,
            Err(e) => {
                return Err(CgroupError::Read {
                    path: self.oom_control_path.clone(),
                    source: e.into(),
                })
            }
        };
        // rmdir removes the files first and signals the eventfd once more afterwards (the kernel
        // tells listeners the event is going away): that last signal is not an OOM.
        let removed = matches!(
            std::fs::symlink_metadata(&self.event_control),
            Err(e) if e.kind() == io::ErrorKind::NotFound
        );
        Ok(v1_count(signals, removed))
    }
}

/// (OOM events, finished) from one eventfd read and whether the cgroup is gone.
fn v1_count(signals: u64, removed: bool) -> (u64, bool) {
    if removed {
        (signals.saturating_sub(1), true)
    } else {
        (signals, false)
    }
}

// ---------------------------------------------------------------------------------------------
// v2: memory.events and cgroup.events through epoll.

struct V2Watch {
    epoll: Epoll,
    /// None when the memory controller is not enabled for the cgroup: no cgroup OOM can
    /// happen, but the end of the container is still noticed.
    memory_events: Option<EventsFile>,
    cgroup_events: EventsFile,
    counts: OomCounts,
    populated: bool,
}

impl V2Watch {
    fn open(dir: &Path) -> Result<V2Watch, CgroupError> {
        let cgroup_events_path = dir.join("cgroup.events");
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| CgroupError::Read {
            path: cgroup_events_path.clone(),
            source: e.into(),
        })?;
        let mut cgroup_events = EventsFile::open(cgroup_events_path)?.ok_or_else(|| CgroupError::Read {
            path: dir.join("cgroup.events"),
            source: io::ErrorKind::NotFound.into(),
        })?;
        let mut memory_events = EventsFile::open(dir.join("memory.events"))?;
        // Read before registering: the first read arms the file (until then kernfs reports it
        // as changed), and gives the counts to compare with.
        let counts = match &mut memory_events {
            Some(f) => OomCounts::from_events(&f.read()?.unwrap_or_default()),
            None => OomCounts::default(),
        };
        let populated = is_populated(cgroup_events.read()?.as_ref());
        for (i, f) in [Some(&cgroup_events), memory_events.as_ref()]
            .into_iter()
            .flatten()
            .enumerate()
        {
            epoll
                .add(&f.file, EpollEvent::new(EpollFlags::EPOLLPRI, i as u64))
                .map_err(|e| CgroupError::Read {
                    path: f.path.clone(),
                    source: e.into(),
                })?;
        }
        Ok(V2Watch {
            epoll,
            memory_events,
            cgroup_events,
            counts,
            populated,
        })
    }

    /// Reading both files again is what clears their readiness; epoll is level-triggered, so
    /// nothing else needs draining.
    fn check(&mut self) -> Result<(u64, bool), CgroupError> {
        let mut gone = false;
        let mut new = 0;
        if let Some(f) = &mut self.memory_events {
            match f.read()? {
                Some(map) => {
                    let counts = OomCounts::from_events(&map);
                    new = counts.since(self.counts);
                    self.counts = counts;
                }
                None => gone = true,
            }
        }
        match self.cgroup_events.read()? {
            Some(map) => self.populated = is_populated(Some(&map)),
            None => gone = true,
        }
        Ok((new, gone || !self.populated))
    }
}

/// cgroup.events says "populated 1" while any process is in the cgroup or below it.
fn is_populated(events: Option<&BTreeMap<String, u64>>) -> bool {
    events.is_some_and(|m| m.get("populated") != Some(&0))
}

/// A cgroup2 flat-keyed file kept open, so that it can be polled and re-read.
struct EventsFile {
    path: PathBuf,
    file: File,
}

impl EventsFile {
    /// None when the file does not exist.
    fn open(path: PathBuf) -> Result<Option<EventsFile>, CgroupError> {
        match File::open(&path) {
            Ok(file) => Ok(Some(EventsFile { path, file })),
            Err(e) if is_absent(&e) => Ok(None),
            Err(source) => Err(CgroupError::Read { path, source }),
        }
    }

    /// The current content, from the start; None once the cgroup is gone (ENODEV).
    fn read(&mut self) -> Result<Option<BTreeMap<String, u64>>, CgroupError> {
        let mut text = String::new();
        let res = self.file.rewind().and_then(|()| self.file.read_to_string(&mut text));
        match res {
            Ok(_) => {}
            Err(e) if is_absent(&e) => return Ok(None),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        }
        parse_flat_keyed(&text)
            .map(Some)
            .map_err(|Malformed(content)| CgroupError::Parse {
                path: self.path.clone(),
                content,
            })
    }
}

/// The OOM counters of memory.events: `oom` counts the times the cgroup hit its limit and the
/// OOM killer was invoked, `oom_kill` the processes it killed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct OomCounts {
    oom: u64,
    oom_kill: u64,
}

impl OomCounts {
    fn from_events(events: &BTreeMap<String, u64>) -> OomCounts {
        let get = |k: &str| events.get(k).copied().unwrap_or(0);
        OomCounts {
            oom: get("oom"),
            oom_kill: get("oom_kill"),
        }
    }

    /// New OOM events since `before`: the larger of the two increments, so that one OOM that
    /// killed one process counts once, an OOM that found nothing to kill still counts, and so
    /// do kills without a cgroup OOM (the global OOM killer picking a container process) and
    /// each kill of a group kill (memory.oom.group).
    fn since(self, before: OomCounts) -> u64 {
        max(
            self.oom.saturating_sub(before.oom),
            self.oom_kill.saturating_sub(before.oom_kill),
        )
    }
}
