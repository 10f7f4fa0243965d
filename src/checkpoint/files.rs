//! File descriptors and shared memory objects (CHECKPOINT.md §1.6, §1.3 shared mappings).
//!
//! Dump: `collect_fds` classifies each descriptor of one task (regular files, directories,
//! character devices, files unlinked while open, pipes, FIFOs, memfds, eventfd, signalfd,
//! timerfd, epoll, inotify, unix sockets (`sockets`), file locks; the container's stdio is
//! external); `link_objects` then looks at all tasks together: descriptors that share one open
//! file description (kcmp KCMP_FILE) get one `Fd::desc`, and the data of each object is read
//! once, without disturbing it: pipe buffers through tee(2) from a reopened end, ghost file
//! contents, shared anonymous memory through /proc/<pid>/map_files.
//!
//! Restore: `build` creates every object once in the restorer, before the first clone, at
//! descriptors above every task's: the seeds (its forks) inherit them and dup3 each to its
//! number, so descriptions shared before the dump are shared again (offset, status flags).
//! Epoll registrations are added by the seed of the task that made them, through the same
//! descriptor numbers (epoll keys a target by file and number); timerfds are armed and memfds
//! sealed when every seed is ready (`Objects::finish`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::image::{
    self, EpollTarget, Fd, FdKind, FileLock, Image, InotifyWatch, LockKind, PagemapEntry, ShmemObject, TaskImage,
    VmaKind,
};
use super::plan::PAGE;
use super::{proc_err, CheckpointError, Result};

/// Ghost files are copied into the image; larger ones are refused.
pub const GHOST_MAX: u64 = 64 << 20;

/// Status flags F_SETFL can change (the others are fixed at open).
const SETFL_MASK: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME | libc::O_ASYNC;

fn unsupported(pid: i32, what: impl Into<String>) -> CheckpointError {
    CheckpointError::Unsupported { pid, what: what.into() }
}

/// Descriptors that are the container's stdio: the pipes and terminals among the root task's
/// fds 0-2 (what runc and podman hand over and supply again at restore). Any other pipe is
/// rebuilt; any other terminal is refused.
pub fn external_stdio(root_host: i32) -> BTreeSet<String> {
    (0..3)
        .filter_map(|fd| std::fs::read_link(format!("/proc/{root_host}/fd/{fd}")).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("pipe:[") || is_tty(t))
        .collect()
}

fn is_tty(target: &str) -> bool {
    target.starts_with("/dev/pts/") || target.starts_with("/dev/tty") || target == "/dev/console"
}

/// Character devices reopened by path: /dev/null, zero, full, random, urandom (major 1).
fn reopenable_device(rdev: u64) -> bool {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    major == 1 && matches!(minor, 3 | 5 | 7 | 8 | 9)
}

/// The object behind /proc/<pid>/fd/<n> lives on procfs (its paths name pids; its contents
/// are the kernel's).
fn on_procfs(link: &str) -> bool {
    nix::sys::statfs::statfs(link).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

/// One descriptor as found, with the identity of the object behind it (st_dev, st_ino), which
/// `link_objects` uses to find shared descriptions.
pub struct FoundFd {
    pub fd: Fd,
    pub object: (u64, u64),
}

/// Classify every descriptor of `pid`; refuse, naming it, what cannot be restored.
pub fn collect_fds(pid: i32, external: &BTreeSet<String>) -> Result<Vec<FoundFd>> {
    let dir = format!("/proc/{pid}/fd");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(proc_err(&dir))? {
        let entry = entry.map_err(proc_err(&dir))?;
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let link = format!("{dir}/{fd}");
        let target = std::fs::read_link(&link)
            .map_err(proc_err(&link))?
            .to_string_lossy()
            .into_owned();
        let info_path = format!("/proc/{pid}/fdinfo/{fd}");
        let info = std::fs::read_to_string(&info_path).map_err(proc_err(&info_path))?;
        let (pos, flags) = super::procfs::parse_fdinfo(&info);
        let refuse = |why: &str| unsupported(pid, format!("fd {fd} -> {target}: {why}"));
        let locks = parse_locks(&info).map_err(|why| refuse(&why))?;
        if flags as i32 & libc::O_ASYNC != 0 {
            return Err(refuse("signal-driven I/O (O_ASYNC) is not supported yet"));
        }
        let meta = std::fs::metadata(&link).map_err(proc_err(&link))?;
        let object = (meta.dev(), meta.ino());
        let ft = meta.file_type();
        let kind = if target.starts_with("pipe:[") {
            if external.contains(&target) {
                FdKind::External { key: target.clone() }
            } else {
                FdKind::Pipe {
                    ino: meta.ino(),
                    size: 0,
                    data: 0,
                }
            }
        } else if is_tty(&target) {
            if !external.contains(&target) {
                return Err(refuse(
                    "a terminal other than the container's console (the root's stdio) is not supported yet",
                ));
            }
            FdKind::External { key: target.clone() }
        } else if target.starts_with("socket:[") {
            // Described by link_objects from sock_diag.
            FdKind::Unix {
                ino: meta.ino(),
                sock_type: 0,
                name: String::new(),
                peer: 0,
                backlog: None,
                shutdown: 0,
                queue: Vec::new(),
                queue_fds: Vec::new(),
                passcred: false,
                file: None,
            }
        } else if target == "anon_inode:inotify" {
            FdKind::Inotify {
                watches: inotify_watches(pid, &info).map_err(|why| refuse(&why))?,
            }
        } else if let Some(kind) = anon_kind(&target, &info) {
            kind.map_err(|why| refuse(&why))?
        } else if !target.starts_with('/') {
            // socket:[..], anon_inode:[eventfd], anon_inode:[eventpoll], /memfd:..., ...
            return Err(refuse("this kind of descriptor is not supported yet"));
        } else if target.starts_with("/memfd:") && ft.is_file() {
            FdKind::Memfd { id: meta.ino(), pos }
        } else if target.starts_with("/secretmem") {
            return Err(refuse("memfd_secret descriptors cannot be read"));
        } else if target.ends_with(" (deleted)") && !ft.is_file() {
            return Err(refuse("a deleted directory, device or FIFO cannot be opened again"));
        } else if ft.is_char_device() {
            if !reopenable_device(meta.rdev()) {
                return Err(refuse(&format!(
                    "character device {}:{} (only null, zero, full, random and urandom are reopened)",
                    libc::major(meta.rdev()),
                    libc::minor(meta.rdev())
                )));
            }
            FdKind::Device {
                path: target.clone(),
                rdev: meta.rdev(),
            }
        } else if ft.is_fifo() {
            FdKind::Fifo {
                path: target.clone(),
                ino: meta.ino(),
                size: 0,
                data: 0,
            }
        } else if ft.is_dir() {
            FdKind::Directory {
                path: target.clone(),
                pos,
            }
        } else if ft.is_file() && on_procfs(&link) {
            return Err(refuse("files in /proc are not supported yet"));
        } else if ft.is_file() && (meta.nlink() == 0 || target.ends_with(" (deleted)")) {
            // Unlinked (or its name is gone while another link remains): copied.
            if meta.size() > GHOST_MAX {
                return Err(refuse(&format!(
                    "unlinked file of {} bytes (ghost files are copied into the image, up to {GHOST_MAX})",
                    meta.size()
                )));
            }
            FdKind::Ghost {
                id: 0, // numbered by link_objects
                path: target.strip_suffix(" (deleted)").unwrap_or(&target).to_string(),
                pos,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.size(),
            }
        } else if ft.is_file() {
            FdKind::Regular {
                path: target.clone(),
                pos,
            }
        } else {
            return Err(refuse("not a regular file, directory, device, pipe or FIFO"));
        };
        out.push(FoundFd {
            fd: Fd {
                fd,
                flags,
                kind,
                desc: 0,
                locks,
            },
            object,
        });
    }
    out.sort_by_key(|f| f.fd.fd);
    Ok(out)
}

/// The "lock:" lines of fdinfo (POSIX owners as host pids, translated by `link_objects`);
/// waiters ("->") are left out: a task blocked taking a lock asks again after the restore.
fn parse_locks(info: &str) -> std::result::Result<Vec<FileLock>, String> {
    let mut out = Vec::new();
    for l in info.lines().filter_map(|l| l.strip_prefix("lock:")) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.get(1) == Some(&"->") {
            continue;
        }
        // "1: POSIX ADVISORY WRITE 7438 fe:00:11175551 10 14"
        let bad = || format!("unreadable lock line {l:?}");
        let kind = match w.get(1).copied() {
            Some("FLOCK") => LockKind::Flock,
            Some("POSIX") => LockKind::Posix,
            Some("OFDLCK") => LockKind::Ofd,
            Some(other) => return Err(format!("{other} locks (leases, delegations) are not supported yet")),
            None => return Err(bad()),
        };
        if w.get(2) != Some(&"ADVISORY") {
            return Err(format!("a {} lock is not supported", w.get(2).unwrap_or(&"?")));
        }
        let write = match w.get(3).copied() {
            Some("WRITE") => true,
            Some("READ") => false,
            _ => return Err(bad()),
        };
        let pid: i32 = w.get(4).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let start: u64 = w.get(6).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let len = match w.get(7).copied() {
            Some("EOF") => 0,
            Some(end) => end.parse::<u64>().map_err(|_| bad())? - start + 1,
            None => return Err(bad()),
        };
        out.push(FileLock {
            kind,
            write,
            start,
            len,
            pid: if kind == LockKind::Posix { pid } else { 0 },
        });
    }
    Ok(out)
}

/// The watches of an inotify instance, with the path of each watched inode found through its
/// file handle on a mount of its filesystem in `pid`'s mount namespace.
fn inotify_watches(pid: i32, info: &str) -> std::result::Result<Vec<InotifyWatch>, String> {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|e| format!("mountinfo: {e}"))?;
    let mut out = Vec::new();
    for l in info.lines().filter_map(|l| l.strip_prefix("inotify ")) {
        let get = |key: &str| -> Option<&str> {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix(':'))
        };
        let hex = |key: &str| get(key).and_then(|v| u64::from_str_radix(v, 16).ok());
        let bad = || format!("unreadable inotify line {l:?} (no file handle?)");
        let wd = hex("wd").ok_or_else(bad)? as i32;
        let mask = hex("mask").ok_or_else(bad)? as u32;
        let sdev = hex("sdev").ok_or_else(bad)?;
        let htype = hex("fhandle-type").ok_or_else(bad)? as i32;
        let handle = get("f_handle").and_then(image::from_hex).ok_or_else(bad)?;
        let ino = hex("ino").ok_or_else(bad)?;
        let dev = format!("{}:{}", sdev >> 20, sdev & 0xfffff);
        // Through each mount of that filesystem in the task's mount namespace: the path the
        // handle opens at, as the task sees it, kept if it names the watched inode there.
        let mut found = None;
        for m in mountinfo.lines().map(|m| m.split_whitespace().collect::<Vec<_>>()) {
            if m.get(2) != Some(&dev.as_str()) {
                continue;
            }
            let Some(point) = m.get(4) else { continue };
            let Ok(mfd) = File::open(format!("/proc/{pid}/root{point}")) else {
                continue;
            };
            let Ok(fd) = crate::sys::open_by_handle_at(mfd.as_fd(), htype, &handle, libc::O_PATH) else {
                continue;
            };
            let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
                continue;
            };
            let path = path.to_string_lossy().into_owned();
            let seen = std::fs::metadata(format!("/proc/{pid}/root{path}"));
            if !path.ends_with(" (deleted)") && seen.is_ok_and(|s| s.ino() == ino) {
                found = Some(path);
                break;
            }
        }
        let path = found.ok_or_else(|| format!("watch {wd}: the watched inode {ino:#x} is not reachable by path"))?;
        out.push(InotifyWatch { wd, mask, path });
    }
    out.sort_by_key(|w| w.wd);
    Ok(out)
}

/// The value of `key:` in fdinfo text.
fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// "(sec, nsec)" as nanoseconds.
fn timespec_ns(text: &str) -> Option<u64> {
    let (sec, nsec) = text.trim_start_matches('(').trim_end_matches(')').split_once(',')?;
    Some(sec.trim().parse::<u64>().ok()? * 1_000_000_000 + nsec.trim().parse::<u64>().ok()?)
}

/// eventfd, signalfd, timerfd and epoll descriptors, from fdinfo (None: not one of those).
fn anon_kind(target: &str, info: &str) -> Option<std::result::Result<FdKind, String>> {
    let bad = |what: &str| format!("unreadable {what} in fdinfo");
    Some(match target {
        "anon_inode:[eventfd]" => (|| {
            let count = u64::from_str_radix(field(info, "eventfd-count").ok_or(bad("eventfd-count"))?, 16)
                .map_err(|_| bad("eventfd-count"))?;
            let semaphore = field(info, "eventfd-semaphore") == Some("1");
            Ok(FdKind::EventFd { count, semaphore })
        })(),
        "anon_inode:[signalfd]" => field(info, "sigmask")
            .and_then(|m| u64::from_str_radix(m, 16).ok())
            .map(|mask| FdKind::SignalFd { mask })
            .ok_or(bad("sigmask")),
        "anon_inode:[timerfd]" => (|| {
            let clock = field(info, "clockid")
                .and_then(|c| c.parse().ok())
                .ok_or(bad("clockid"))?;
            let ticks = field(info, "ticks").and_then(|c| c.parse().ok()).ok_or(bad("ticks"))?;
            let value_ns = field(info, "it_value").and_then(timespec_ns).ok_or(bad("it_value"))?;
            let interval_ns = field(info, "it_interval")
                .and_then(timespec_ns)
                .ok_or(bad("it_interval"))?;
            if ![libc::CLOCK_REALTIME, libc::CLOCK_MONOTONIC, libc::CLOCK_BOOTTIME].contains(&clock) {
                return Err(format!("timerfd on clock {clock} is not supported yet"));
            }
            Ok(FdKind::TimerFd {
                clock,
                value_ns,
                interval_ns,
                ticks,
            })
        })(),
        "anon_inode:[eventpoll]" => (|| {
            let mut targets = Vec::new();
            for l in info.lines().filter(|l| l.starts_with("tfd:")) {
                let words: Vec<&str> = l.split_whitespace().collect();
                let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1));
                let tfd = after("tfd:").and_then(|v| v.parse().ok()).ok_or(bad("tfd"))?;
                let events = after("events:")
                    .and_then(|v| u32::from_str_radix(v, 16).ok())
                    .ok_or(bad("events"))?;
                let data = after("data:")
                    .and_then(|v| u64::from_str_radix(v, 16).ok())
                    .ok_or(bad("data"))?;
                targets.push(EpollTarget {
                    tfd,
                    events,
                    data,
                    pid: 0, // found by link_objects
                });
            }
            Ok(FdKind::Epoll { targets })
        })(),
        _ => return None,
    })
}

/// What one task contributes to the global pass.
pub struct TaskFds<'a> {
    pub host_pid: i32,
    pub task: &'a mut TaskImage,
    /// (st_dev, st_ino) behind each of `task.fds`, in the same order.
    pub objects: &'a [(u64, u64)],
}

/// Object files for the image, written by `write_objects` while the tasks are still seized.
#[derive(Default)]
pub struct DumpObjects {
    /// (name, contents): pipe data, ghost files.
    blobs: Vec<(String, Vec<u8>)>,
    /// Shared memory objects: (object, a path that opens it: map_files or fd link). Their pages
    /// are streamed to the image by `write_objects`.
    shmem: Vec<(ShmemObject, String)>,
}

/// Number the open file descriptions (kcmp), ghost files and shared memory objects across all
/// tasks, and read the data of each object once.
pub fn link_objects(tasks: &mut [TaskFds<'_>]) -> Result<DumpObjects> {
    // Processes sharing one descriptor table (clone(CLONE_FILES) without CLONE_THREAD) would
    // come back with a table each.
    for (i, a) in tasks.iter().enumerate() {
        for b in &tasks[i + 1..] {
            if crate::sys::kcmp(a.host_pid, b.host_pid, crate::sys::KCMP_FILES, 0, 0).ok() == Some(0) {
                return Err(unsupported(
                    b.host_pid,
                    format!("shares its descriptor table with pid {} (CLONE_FILES)", a.host_pid),
                ));
            }
        }
    }
    // Descriptions: among descriptors of one object, kcmp tells which share a description.
    // Per object: one (host pid, fd, desc) for each description found so far.
    type Representatives = Vec<(i32, i32, u32)>;
    let mut reps: BTreeMap<(u64, u64), Representatives> = BTreeMap::new();
    let mut next_desc = 1u32;
    let mut blobs = Vec::new();
    for t in tasks.iter_mut() {
        for (f, object) in t.task.fds.iter_mut().zip(t.objects) {
            if matches!(f.kind, FdKind::External { .. }) {
                continue;
            }
            let group = reps.entry(*object).or_default();
            let mut found = None;
            for &(pid, fd, desc) in group.iter() {
                let same = crate::sys::kcmp(t.host_pid, pid, crate::sys::KCMP_FILE, f.fd as u64, fd as u64)
                    .map_err(|e| CheckpointError::Sys("kcmp(KCMP_FILE)", e))?;
                if same == 0 {
                    found = Some(desc);
                    break;
                }
            }
            f.desc = match found {
                Some(d) => d,
                None => {
                    let d = next_desc;
                    next_desc += 1;
                    group.push((t.host_pid, f.fd, d));
                    d
                }
            };
        }
    }

    link_sockets(tasks, &mut blobs)?;
    // POSIX lock owners: host pids to the container's.
    let pids: BTreeMap<i32, i32> = tasks.iter().map(|t| (t.host_pid, t.task.pid)).collect();
    for t in tasks.iter_mut() {
        for f in t.task.fds.iter_mut() {
            for l in f.locks.iter_mut().filter(|l| l.kind == LockKind::Posix) {
                l.pid = *pids.get(&l.pid).ok_or_else(|| {
                    unsupported(
                        t.host_pid,
                        format!(
                            "fd {}: a POSIX lock on it is held by pid {}, outside the dump",
                            f.fd, l.pid
                        ),
                    )
                })?;
            }
        }
    }
    // Epoll registrations: a task holding the instance whose descriptor `tfd` is the target.
    let holders: Vec<(i32, i32, i32, u32)> = tasks
        .iter()
        .flat_map(|t| t.task.fds.iter().map(move |f| (t.host_pid, t.task.pid, f.fd, f.desc)))
        .collect();
    for t in tasks.iter_mut() {
        let host = t.host_pid;
        for f in t.task.fds.iter_mut() {
            let desc = f.desc;
            let FdKind::Epoll { targets } = &mut f.kind else {
                continue;
            };
            for target in targets.iter_mut() {
                let registrar = holders
                    .iter()
                    .filter(|h| h.3 == desc && desc != 0)
                    .find(|h| crate::sys::kcmp_epoll_tfd(h.0, target.tfd, h.0, h.2, target.tfd).ok() == Some(0));
                target.pid = match registrar {
                    Some(h) => h.1,
                    None => {
                        return Err(unsupported(
                            host,
                            format!(
                                "epoll fd {}: its target {} is no longer open at that number in any holder",
                                f.fd, target.tfd
                            ),
                        ))
                    }
                };
            }
        }
    }
    // Pipes and FIFOs: size and buffered data, once per pipe.
    let mut pipes: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    // Ghost files: one id per inode.
    let mut ghosts: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    for t in tasks.iter_mut() {
        for (f, object) in t.task.fds.iter_mut().zip(t.objects) {
            let host = t.host_pid;
            match &mut f.kind {
                FdKind::Pipe { ino, size, data } | FdKind::Fifo { ino, size, data, .. } => {
                    let (s, d) = match pipes.get(ino) {
                        Some(&v) => v,
                        None => {
                            let (s, bytes) = read_pipe(host, f.fd)?;
                            if !bytes.is_empty() {
                                blobs.push((image::pipe_data(*ino), bytes.clone()));
                            }
                            pipes.insert(*ino, (s, bytes.len() as u64));
                            (s, bytes.len() as u64)
                        }
                    };
                    if d > 0 && f.flags as i32 & libc::O_DIRECT != 0 {
                        return Err(unsupported(
                            host,
                            format!(
                                "fd {}: a packet-mode (O_DIRECT) pipe with data queued is not supported yet",
                                f.fd
                            ),
                        ));
                    }
                    (*size, *data) = (s, d);
                }
                FdKind::Ghost { id, size, .. } => {
                    let n = ghosts.len() as u32 + 1;
                    *id = match ghosts.get(object) {
                        Some(&g) => g,
                        None => {
                            let path = format!("/proc/{host}/fd/{}", f.fd);
                            let mut bytes = Vec::new();
                            File::open(&path)
                                .and_then(|mut file| file.read_to_end(&mut bytes))
                                .map_err(proc_err(&path))?;
                            if bytes.len() as u64 != *size {
                                return Err(unsupported(
                                    host,
                                    format!("unlinked file of fd {} changed size while dumped", f.fd),
                                ));
                            }
                            blobs.push((image::ghost_data(n), bytes));
                            ghosts.insert(*object, n);
                            n
                        }
                    };
                }
                _ => {}
            }
        }
    }
    // Files unlinked while mapped: one ghost per inode, with those opened.
    for t in tasks.iter_mut() {
        let host = t.host_pid;
        for v in t.task.vmas.iter_mut() {
            let Some(g) = v.ghost.as_mut() else { continue };
            let path = format!("/proc/{host}/map_files/{:x}-{:x}", v.start, v.end);
            let m = std::fs::metadata(&path).map_err(proc_err(&path))?;
            let n = ghosts.len() as u32 + 1;
            g.id = match ghosts.get(&(m.dev(), m.ino())) {
                Some(&id) => id,
                None => {
                    let mut bytes = Vec::new();
                    File::open(&path)
                        .and_then(|mut file| file.read_to_end(&mut bytes))
                        .map_err(proc_err(&path))?;
                    g.size = bytes.len() as u64;
                    blobs.push((image::ghost_data(n), bytes));
                    ghosts.insert((m.dev(), m.ino()), n);
                    n
                }
            };
        }
    }
    // Shared memory (anonymous or memfd): one object per shmem inode, mapped or opened.
    let mut shmem: Vec<(ShmemObject, String)> = Vec::new();
    for t in tasks.iter() {
        let mapped = t.task.vmas.iter().filter(|v| v.shmem.is_some()).filter_map(|v| {
            let path = format!("/proc/{}/map_files/{:x}-{:x}", t.host_pid, v.start, v.end);
            Some((v.shmem?, path, v.name.clone()))
        });
        let opened = t.task.fds.iter().filter_map(|f| match f.kind {
            FdKind::Memfd { id, .. } => {
                let path = format!("/proc/{}/fd/{}", t.host_pid, f.fd);
                let name = std::fs::read_link(&path).ok()?.to_string_lossy().into_owned();
                Some((id, path, name))
            }
            _ => None,
        });
        for (id, path, name) in mapped.chain(opened).collect::<Vec<_>>() {
            if shmem.iter().any(|(o, _)| o.id == id) {
                continue;
            }
            let file = File::open(&path).map_err(proc_err(&path))?;
            let memfd = name
                .strip_prefix("/memfd:")
                .map(|n| n.strip_suffix(" (deleted)").unwrap_or(n).to_string());
            let seals = match &memfd {
                Some(_) => fcntl(file.as_raw_fd(), FcntlArg::F_GET_SEALS).unwrap_or(0) as u32,
                None => 0,
            };
            let obj = ShmemObject {
                id,
                size: file.metadata().map_err(proc_err(&path))?.size(),
                pagemap: Vec::new(),
                memfd,
                seals,
            };
            shmem.push((obj, path));
        }
    }
    Ok(DumpObjects { blobs, shmem })
}

/// Write the objects `link_objects` found: data files, then each shared memory object's
/// non-zero pages (streamed from the object) and its description.
pub fn write_objects(objects: DumpObjects, w: &mut image::ImageWriter) -> Result<()> {
    for (name, data) in &objects.blobs {
        w.write_bytes(name, data)?;
    }
    for (mut obj, path) in objects.shmem {
        let file = File::open(&path).map_err(proc_err(&path))?;
        let mut out = w.stream(&image::shmem_pages(obj.id))?;
        obj.pagemap = stream_shmem(&file, &path, obj.size, &mut out)?;
        w.close(out)?;
        w.write_json(&image::shmem_json(obj.id), &obj)?;
    }
    Ok(())
}

/// Describe every unix socket from sock_diag (in each task's network namespace), refuse what
/// cannot be restored, and read each socket's queue once.
fn link_sockets(tasks: &mut [TaskFds<'_>], blobs: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    use super::sockets::{self, Diag};
    let mut diags: BTreeMap<u64, BTreeMap<u64, Diag>> = BTreeMap::new(); // by netns inode
    let dumped: BTreeSet<u64> = tasks
        .iter()
        .flat_map(|t| t.task.fds.iter())
        .filter_map(|f| match f.kind {
            FdKind::Unix { ino, .. } => Some(ino),
            _ => None,
        })
        .collect();
    // Each socket's queue is read once; every descriptor of it carries the same lengths.
    let mut queued: BTreeMap<u64, (Vec<u32>, Vec<Vec<u32>>)> = BTreeMap::new();
    // Descriptors in flight are matched (kcmp) with a description some task holds.
    let holders: Vec<(i32, i32, u32)> = tasks
        .iter()
        .flat_map(|t| t.task.fds.iter().map(move |f| (t.host_pid, f.fd, f.desc)))
        .filter(|h| h.2 != 0)
        .collect();
    let me = std::process::id() as i32;
    for t in tasks.iter_mut() {
        let host = t.host_pid;
        for f in t.task.fds.iter_mut() {
            let FdKind::Unix { ino, .. } = f.kind else { continue };
            let fd = f.fd;
            let refuse = |what: &str| unsupported(host, format!("fd {fd} -> socket:[{ino}]: {what}"));
            let netns = std::fs::metadata(format!("/proc/{host}/ns/net"))
                .map(|m| m.ino())
                .map_err(|e| CheckpointError::Sys("stat of a netns", e))?;
            let all = match diags.entry(netns) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(sockets::diag(host)?),
            };
            let Some(d) = all.get(&ino) else {
                // Not a unix socket: TCP or UDP, or refused.
                f.kind = sockets::inet(host, fd, ino).map_err(|why| refuse(&why))?;
                continue;
            };
            if !matches!(d.sock_type, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET) {
                return Err(refuse(&format!("unix socket type {}", d.sock_type)));
            }
            if !d.name.is_empty() && !d.name.starts_with('/') && !d.name.starts_with('@') {
                return Err(refuse(&format!("bound to the relative path {:?}", d.name)));
            }
            const ESTABLISHED: u8 = 1;
            let (mut peer, mut backlog, mut read) = (0, None, false);
            if d.state == sockets::TCP_LISTEN {
                if d.pending > 0 {
                    return Err(refuse(&format!("{} connections wait to be accepted", d.pending)));
                }
                backlog = Some(d.wqueue);
            } else if d.peer != 0 || (d.state == ESTABLISHED && d.sock_type != libc::SOCK_DGRAM) {
                // (A bound datagram socket that another connected to is ESTABLISHED too.)
                let peer_diag = all.get(&d.peer);
                let peer_name = peer_diag.map(|p| p.name.as_str()).unwrap_or("");
                peer = if dumped.contains(&d.peer) {
                    d.peer
                } else if d.peer == 0 || peer_diag.is_none() {
                    u64::MAX // the other end is closed
                } else {
                    return Err(refuse(&format!("its peer socket:[{}] is outside the dump", d.peer)));
                };
                if !d.name.is_empty() && !peer_name.is_empty() {
                    return Err(refuse(
                        "a connection between two named unix sockets is not supported yet",
                    ));
                }
                if d.sock_type == libc::SOCK_DGRAM && !(d.name.is_empty() && peer_name.is_empty()) {
                    // A datagram socket connected to a bound one: connected again at restore.
                    if !d.name.is_empty() || peer == u64::MAX || d.rqueue > 0 {
                        return Err(refuse(
                            "this datagram connection to a named socket (bound and connected, to a closed socket, or with datagrams queued) is not supported yet",
                        ));
                    }
                }
                read = true;
            } else if !d.name.is_empty() && d.rqueue > 0 {
                return Err(refuse("datagrams queued on a bound socket are not supported yet"));
            }
            let (mut queue, mut queue_fds) = (Vec::new(), Vec::new());
            if read {
                if let Some(q) = queued.get(&ino) {
                    (queue, queue_fds) = q.clone();
                } else {
                    let msgs = sockets::read_queue(host, fd, d.sock_type == libc::SOCK_STREAM)?;
                    queue = msgs.iter().map(|m| m.0.len() as u32).collect();
                    for (_, fds) in &msgs {
                        let mut descs = Vec::new();
                        for inflight in fds {
                            let raw = inflight.as_raw_fd() as u64;
                            let same = |h: &&(i32, i32, u32)| {
                                crate::sys::kcmp(me, h.0, crate::sys::KCMP_FILE, raw, h.1 as u64).ok() == Some(0)
                            };
                            let desc = holders.iter().find(same).map(|h| h.2).ok_or_else(|| {
                                refuse("a descriptor in flight that no process holds any more is not supported yet")
                            })?;
                            descs.push(desc);
                        }
                        queue_fds.push(descs);
                    }
                    if queue_fds.iter().all(|d| d.is_empty()) {
                        queue_fds.clear();
                    }
                    let bytes: Vec<u8> = msgs.iter().flat_map(|m| m.0.iter().copied()).collect();
                    if !bytes.is_empty() {
                        blobs.push((image::socket_data(ino), bytes));
                    }
                    queued.insert(ino, (queue.clone(), queue_fds.clone()));
                }
            }
            f.kind = FdKind::Unix {
                ino,
                sock_type: d.sock_type,
                name: d.name.clone(),
                peer,
                backlog,
                shutdown: d.shutdown,
                queue,
                queue_fds,
                passcred: sockets::passcred(host, fd)?,
                file: sockets::name_file(&d.name),
            };
        }
    }
    Ok(())
}

/// Size and buffered bytes of the pipe behind `fd` of `pid`, left in place: a reader is
/// opened on the same pipe through /proc, and tee(2) copies the buffers into a private pipe
/// without consuming them.
fn read_pipe(pid: i32, fd: i32) -> Result<(u32, Vec<u8>)> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let src: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(proc_err(&path))?
        .into();
    let size =
        fcntl(src.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).map_err(|e| CheckpointError::Sys("F_GETPIPE_SZ", e.into()))?;
    let queued = crate::sys::fionread(src.as_fd()).map_err(|e| CheckpointError::Sys("FIONREAD on a pipe", e))?;
    if queued == 0 {
        return Ok((size as u32, Vec::new()));
    }
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| CheckpointError::Sys("pipe2", e.into()))?;
    fcntl(w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size)).map_err(|e| CheckpointError::Sys("F_SETPIPE_SZ", e.into()))?;
    let copied =
        crate::sys::tee(src.as_fd(), w.as_fd(), queued).map_err(|e| CheckpointError::Sys("tee from a pipe", e))?;
    if copied != queued {
        return Err(unsupported(
            pid,
            format!("fd {fd}: tee copied {copied} of the {queued} bytes buffered in the pipe"),
        ));
    }
    drop(w);
    let mut bytes = Vec::with_capacity(queued);
    File::from(r)
        .read_to_end(&mut bytes)
        .map_err(|e| CheckpointError::Sys("reading pipe data", e))?;
    Ok((size as u32, bytes))
}

/// Stream the non-zero pages of a shmem file (holes skipped with SEEK_DATA) to `out`; returns
/// their pagemap (`vaddr` = offset in the object).
fn stream_shmem(file: &File, path: &str, size: u64, out: &mut image::StreamFile) -> Result<Vec<PagemapEntry>> {
    const CHUNK: u64 = 64 * PAGE;
    let mut pagemap: Vec<PagemapEntry> = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut off = 0;
    while off < size {
        // Holes read as zeros: skip to the next data.
        off = match nix::unistd::lseek(file.as_raw_fd(), off as i64, nix::unistd::Whence::SeekData) {
            Ok(d) => d as u64 / PAGE * PAGE,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) => off,
        };
        if off >= size {
            break;
        }
        let len = CHUNK.min(size.div_ceil(PAGE) * PAGE - off) as usize;
        let chunk = &mut buf[..len];
        let mut got = 0;
        while got < len {
            match file.read_at(&mut chunk[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(proc_err(path)(e)),
            }
        }
        chunk[got..].fill(0);
        for (i, page) in chunk.chunks(PAGE as usize).enumerate() {
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            out.write_all_vectored(&[std::io::IoSlice::new(page)])?;
            let at = off + i as u64 * PAGE;
            match pagemap.last_mut() {
                Some(e) if e.vaddr + e.nr_pages * PAGE == at => e.nr_pages += 1,
                _ => pagemap.push(PagemapEntry { vaddr: at, nr_pages: 1 }),
            }
        }
        off += len as u64;
    }
    Ok(pagemap)
}

/// The objects of an image, created by the restorer before the first clone.
#[derive(Default)]
pub struct Objects {
    owned: Vec<OwnedFd>,
    /// pid -> image fd -> restorer descriptor (inherited by the seeds) to dup3 there.
    pub fds: BTreeMap<i32, BTreeMap<i32, RawFd>>,
    /// shmem object id -> restorer descriptor of the object.
    pub shmem: BTreeMap<u64, RawFd>,
    /// ghost id -> restorer descriptor of a file unlinked while mapped, created again.
    pub ghosts: BTreeMap<u32, RawFd>,
    /// memfd seals to add once every seed has mapped its memory.
    seals: Vec<(RawFd, u32)>,
    /// timerfds to arm once every seed is ready: (descriptor, value, interval, ticks).
    timers: Vec<(RawFd, u64, u64, u64)>,
}

impl Objects {
    /// Once every seed is ready (holds its descriptors, mapped its memory): add the memfd
    /// seals, then close the restorer's copies (they would keep pipes open behind the tree).
    pub fn finish(self) -> Result<()> {
        for &(fd, seals) in &self.seals {
            let seals = nix::fcntl::SealFlag::from_bits_truncate(seals as i32);
            fcntl(fd, FcntlArg::F_ADD_SEALS(seals))
                .map_err(|e| CheckpointError::Restore(format!("sealing a memfd ({seals:?}): {e}")))?;
        }
        for &(raw, value, interval, ticks) in &self.timers {
            let Some(fd) = self.owned.iter().find(|o| o.as_raw_fd() == raw) else {
                continue;
            };
            crate::sys::timerfd_settime(fd.as_fd(), value, interval)
                .map_err(|e| CheckpointError::Restore(format!("arming a timerfd: {e}")))?;
            if ticks != 0 {
                crate::sys::timerfd_set_ticks(fd.as_fd(), ticks)
                    .map_err(|e| CheckpointError::Restore(format!("TFD_IOC_SET_TICKS({ticks}): {e}")))?;
            }
        }
        Ok(())
    }

    /// Every descriptor the seeds must keep until they installed theirs.
    pub fn all(&self) -> Vec<RawFd> {
        self.owned.iter().map(|f| f.as_raw_fd()).collect()
    }
}

/// Ghost files created for this restore, unlinked when dropped (on success as on failure).
struct Ghosts(BTreeMap<u32, PathBuf>);
impl Drop for Ghosts {
    fn drop(&mut self) {
        for path in self.0.values() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One pipe being rebuilt: the two ends of pipe2 (or the O_RDWR opener of a FIFO).
struct PipeState {
    read: OwnedFd,
    write: Option<OwnedFd>,
    read_used: bool,
    write_used: bool,
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> CheckpointError {
    move |e| CheckpointError::Sys(what, e.into())
}

fn restore_err(pid: i32, f: &Fd, msg: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Restore(format!("pid {pid} fd {}: {msg}", f.fd))
}

/// open(2) flags to reopen a description with: never create or truncate.
fn reopen_flags(flags: u32) -> i32 {
    (flags as i32) & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC) | libc::O_NOCTTY
}

fn open_path(path: &str, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    let mut o = std::fs::OpenOptions::new();
    let acc = flags & libc::O_ACCMODE;
    // std insists on read or write; O_PATH descriptors take neither.
    o.read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(flags & !libc::O_ACCMODE)
        .mode(mode);
    if flags & libc::O_PATH != 0 {
        o.read(true);
    }
    Ok(o.open(path)?.into())
}

/// Create every file object of the image once, at descriptors >= `base`.
pub fn build(image: &Image, base: RawFd) -> Result<Objects> {
    // Room for the objects above `base` (at most one per descriptor and VMA).
    let count: usize = image.tasks.values().map(|t| t.fds.len() + t.vmas.len()).sum();
    let need = base as u64 + count as u64 + 16;
    let (soft, hard) = crate::sys::getrlimit(libc::RLIMIT_NOFILE as i32)
        .map_err(|e| CheckpointError::Sys("getrlimit(RLIMIT_NOFILE)", e))?;
    if soft < need {
        crate::sys::setrlimit(libc::RLIMIT_NOFILE as i32, need.min(hard), hard)
            .map_err(|e| CheckpointError::Sys("raising RLIMIT_NOFILE for the restore", e))?;
    }
    let mut objs = Objects::default();
    let mut ghosts = Ghosts(BTreeMap::new());
    let mut pipes: BTreeMap<u64, PipeState> = BTreeMap::new();
    let mut socks = super::sockets::Made::prepare(image)?;
    let mut descs: BTreeMap<u32, RawFd> = BTreeMap::new();
    let place = |objs: &mut Objects, fd: OwnedFd| -> Result<RawFd> {
        let high =
            fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(base)).map_err(sys("moving a restored descriptor up"))?;
        objs.owned.push(crate::sys::own_fresh_fd(high));
        Ok(high)
    };
    for t in &image.tree.tasks {
        let task = &image.tasks[&t.pid];
        for f in &task.fds {
            if matches!(f.kind, FdKind::External { .. }) {
                continue;
            }
            if let Some(&raw) = descs.get(&f.desc).filter(|_| f.desc != 0) {
                objs.fds.entry(t.pid).or_default().insert(f.fd, raw);
                continue;
            }
            let fd = match f.kind {
                FdKind::Memfd { id, pos } => {
                    let obj = shmem_of(image, &mut objs, id, &place)?;
                    let path = format!("/proc/self/fd/{obj}");
                    let fd = open_path(&path, reopen_flags(f.flags), 0)
                        .map_err(|e| restore_err(t.pid, f, format!("opening memfd {id} again: {e}")))?;
                    nix::unistd::lseek(fd.as_raw_fd(), pos as i64, nix::unistd::Whence::SeekSet)
                        .map_err(|e| restore_err(t.pid, f, format!("seeking memfd {id} to {pos}: {e}")))?;
                    fd
                }
                FdKind::Unix { .. } => {
                    let sock = socks.create(image, t.pid, f)?;
                    set_status(t.pid, f, &sock)?;
                    sock
                }
                FdKind::Inet { .. } => {
                    let sock = super::sockets::create_inet(t.pid, f)?;
                    set_status(t.pid, f, &sock)?;
                    sock
                }
                _ => open_one(image, t.pid, f, &mut ghosts, &mut pipes)?,
            };
            take_locks(fd.as_raw_fd(), t.pid, f, false)?;
            let raw = place(&mut objs, fd)?;
            if let FdKind::TimerFd {
                value_ns,
                interval_ns,
                ticks,
                ..
            } = f.kind
            {
                // An armed timer about to fire shows 0 left: keep it armed.
                let value = if interval_ns != 0 { value_ns.max(1) } else { value_ns };
                objs.timers.push((raw, value, interval_ns, ticks));
            }
            if f.desc != 0 {
                descs.insert(f.desc, raw);
            }
            objs.fds.entry(t.pid).or_default().insert(f.fd, raw);
        }
        for g in task.vmas.iter().filter_map(|v| v.ghost.as_ref()) {
            if objs.ghosts.contains_key(&g.id) {
                continue;
            }
            let at = match ghosts.0.entry(g.id) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let created = create_ghost(image, g.id, &g.path, g.mode, g.uid, g.gid, g.size).map_err(|err| {
                        CheckpointError::Restore(format!(
                            "pid {}: recreating unlinked mapped file {}: {err}",
                            t.pid, g.path
                        ))
                    })?;
                    e.insert(created)
                }
            };
            let fd = open_path(&at.to_string_lossy(), libc::O_RDWR, 0)
                .map_err(|e| CheckpointError::Restore(format!("pid {}: opening {}: {e}", t.pid, at.display())))?;
            let raw = place(&mut objs, fd)?;
            objs.ghosts.insert(g.id, raw);
        }
        for v in task
            .vmas
            .iter()
            .filter(|v| v.kind == VmaKind::Shmem || v.shmem.is_some())
        {
            let id = v
                .shmem
                .ok_or_else(|| CheckpointError::Corrupt(format!("pid {}: shmem VMA without an id", t.pid)))?;
            shmem_of(image, &mut objs, id, &place)?;
        }
    }
    // Socket queues, with descriptors in flight now that every description exists.
    socks.finish(image, &descs)?;
    // Pipe ends nobody holds go now (a reader whose writers are gone sees the data, then EOF);
    // ghost files are unlinked when `ghosts` drops.
    drop(pipes);
    Ok(objs)
}

/// Take the locks of `f` on `fd`: those of the description (flock, OFD; in the restorer,
/// before the seeds inherit it), or with `posix` those its task owns (in the task's seed).
pub fn take_locks(fd: RawFd, pid: i32, f: &Fd, posix: bool) -> Result<()> {
    for l in &f.locks {
        if (l.kind == LockKind::Posix) != posix || (posix && l.pid != pid) {
            continue;
        }
        let what = format!(
            "{:?} {} lock on {}+{}",
            l.kind,
            if l.write { "write" } else { "read" },
            l.start,
            l.len
        );
        let failed = |e: std::io::Error| restore_err(pid, f, format!("taking the {what}: {e}"));
        match l.kind {
            LockKind::Flock => {
                let op = if l.write { libc::LOCK_EX } else { libc::LOCK_SH };
                crate::sys::flock(fd, op | libc::LOCK_NB).map_err(failed)?;
            }
            LockKind::Posix | LockKind::Ofd => {
                let cmd = if l.kind == LockKind::Ofd {
                    libc::F_OFD_SETLK
                } else {
                    libc::F_SETLK
                };
                let ty = if l.write { libc::F_WRLCK } else { libc::F_RDLCK };
                crate::sys::fcntl_lock(fd, cmd, ty, l.start, l.len).map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// The restorer's descriptor of shared memory object `id`, created on first use.
fn shmem_of(
    image: &Image,
    objs: &mut Objects,
    id: u64,
    place: &dyn Fn(&mut Objects, OwnedFd) -> Result<RawFd>,
) -> Result<RawFd> {
    if let Some(&raw) = objs.shmem.get(&id) {
        return Ok(raw);
    }
    let (fd, seals) = shmem_object(image, id)?;
    let raw = place(objs, fd)?;
    objs.shmem.insert(id, raw);
    if seals != 0 {
        objs.seals.push((raw, seals));
    }
    Ok(raw)
}

fn open_one(
    image: &Image,
    pid: i32,
    f: &Fd,
    ghosts: &mut Ghosts,
    pipes: &mut BTreeMap<u64, PipeState>,
) -> Result<OwnedFd> {
    let flags = reopen_flags(f.flags);
    let opening = |path: &str| {
        let path = path.to_string();
        move |e: std::io::Error| restore_err(pid, f, format!("opening {path}: {e}"))
    };
    let seek = |fd: &OwnedFd, pos: u64, path: &str| -> Result<()> {
        if flags & libc::O_PATH == 0 {
            nix::unistd::lseek(fd.as_raw_fd(), pos as i64, nix::unistd::Whence::SeekSet)
                .map_err(|e| restore_err(pid, f, format!("seeking {path} to {pos}: {e}")))?;
        }
        Ok(())
    };
    match &f.kind {
        FdKind::External { key } => Err(restore_err(pid, f, format!("external {key} is not an object"))),
        FdKind::Memfd { id, .. } => Err(restore_err(pid, f, format!("memfd {id} is opened by build"))),
        FdKind::Unix { ino, .. } | FdKind::Inet { ino, .. } => {
            Err(restore_err(pid, f, format!("socket {ino} is made by build")))
        }
        FdKind::EventFd { count, semaphore } => {
            let mut fl = libc::EFD_CLOEXEC | libc::EFD_NONBLOCK;
            if *semaphore {
                fl |= libc::EFD_SEMAPHORE;
            }
            let fd = crate::sys::eventfd(0, fl).map_err(|e| restore_err(pid, f, format!("eventfd: {e}")))?;
            if *count != 0 {
                File::from(fd.try_clone().map_err(|e| restore_err(pid, f, e))?)
                    .write_all(&count.to_ne_bytes())
                    .map_err(|e| restore_err(pid, f, format!("setting the eventfd counter to {count}: {e}")))?;
            }
            set_status(pid, f, &fd)?;
            Ok(fd)
        }
        FdKind::SignalFd { mask } => {
            let fd = crate::sys::signalfd(*mask, libc::SFD_CLOEXEC)
                .map_err(|e| restore_err(pid, f, format!("signalfd({mask:#x}): {e}")))?;
            set_status(pid, f, &fd)?;
            Ok(fd)
        }
        FdKind::TimerFd { clock, .. } => {
            // Armed by Objects::finish, right before the tree runs.
            let fd = crate::sys::timerfd_create(*clock, libc::TFD_CLOEXEC)
                .map_err(|e| restore_err(pid, f, format!("timerfd_create({clock}): {e}")))?;
            set_status(pid, f, &fd)?;
            Ok(fd)
        }
        FdKind::Inotify { watches } => {
            let fd = crate::sys::inotify_init(libc::IN_CLOEXEC)
                .map_err(|e| restore_err(pid, f, format!("inotify_init1: {e}")))?;
            for w in watches {
                let got = crate::sys::inotify_add_watch_at(fd.as_fd(), w.wd, std::path::Path::new(&w.path), w.mask)
                    .map_err(|e| restore_err(pid, f, format!("watching {} (wd {}): {e}", w.path, w.wd)))?;
                if got != w.wd {
                    return Err(restore_err(
                        pid,
                        f,
                        format!("watching {} gave wd {got}, not {} (the same file twice?)", w.path, w.wd),
                    ));
                }
            }
            set_status(pid, f, &fd)?;
            Ok(fd)
        }
        FdKind::Epoll { .. } => {
            // Registrations are added by the seeds (`seed::restore_fds`).
            let fd = crate::sys::epoll_create().map_err(|e| restore_err(pid, f, format!("epoll_create1: {e}")))?;
            set_status(pid, f, &fd)?;
            Ok(fd)
        }
        FdKind::DevNull => open_path("/dev/null", flags, 0).map_err(opening("/dev/null")),
        FdKind::Device { path, rdev } => {
            let fd = open_path(path, flags, 0).map_err(opening(path))?;
            let m = File::from(fd.try_clone().map_err(opening(path))?)
                .metadata()
                .map_err(opening(path))?;
            if !m.file_type().is_char_device() || m.rdev() != *rdev {
                return Err(restore_err(
                    pid,
                    f,
                    format!(
                        "{path} is device {}:{}, the image's was {}:{}",
                        libc::major(m.rdev()),
                        libc::minor(m.rdev()),
                        libc::major(*rdev),
                        libc::minor(*rdev)
                    ),
                ));
            }
            Ok(fd)
        }
        FdKind::Regular { path, pos } | FdKind::Directory { path, pos } => {
            let fd = open_path(path, flags, 0).map_err(opening(path))?;
            seek(&fd, *pos, path)?;
            Ok(fd)
        }
        FdKind::Ghost {
            id,
            path,
            pos,
            mode,
            uid,
            gid,
            size,
        } => {
            if !ghosts.0.contains_key(id) {
                let created = create_ghost(image, *id, path, *mode, *uid, *gid, *size)
                    .map_err(|e| restore_err(pid, f, format!("recreating unlinked file {path}: {e}")))?;
                ghosts.0.insert(*id, created);
            }
            let at = ghosts.0[id].to_string_lossy().into_owned();
            let fd = open_path(&at, flags, 0).map_err(opening(&at))?;
            seek(&fd, *pos, path)?;
            Ok(fd)
        }
        FdKind::Pipe { ino, size, data } => {
            if !pipes.contains_key(ino) {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(sys("pipe2"))?;
                fill_pipe(image, pid, f, &w, *ino, *size, *data)?;
                pipes.insert(
                    *ino,
                    PipeState {
                        read: r,
                        write: Some(w),
                        read_used: false,
                        write_used: false,
                    },
                );
            }
            let p = pipes.get_mut(ino).unwrap_or_else(|| unreachable!());
            let end = match f.flags as i32 & libc::O_ACCMODE {
                libc::O_RDONLY if !p.read_used => {
                    p.read_used = true;
                    Some(p.read.try_clone())
                }
                libc::O_WRONLY if !p.write_used => {
                    p.write_used = true;
                    p.write.as_ref().map(|w| w.try_clone())
                }
                _ => None,
            };
            let fd = match end {
                Some(fd) => fd.map_err(|e| restore_err(pid, f, e))?,
                // Another description of the same pipe: open it again through /proc.
                None => {
                    let via = p.write.as_ref().unwrap_or(&p.read);
                    let path = format!("/proc/self/fd/{}", via.as_raw_fd());
                    open_path(&path, flags | libc::O_NONBLOCK, 0).map_err(opening(&path))?
                }
            };
            fcntl(
                fd.as_raw_fd(),
                FcntlArg::F_SETFL(OFlag::from_bits_truncate(f.flags as i32 & SETFL_MASK)),
            )
            .map_err(|e| restore_err(pid, f, format!("F_SETFL: {e}")))?;
            Ok(fd)
        }
        FdKind::Fifo { path, ino, size, data } => {
            if !pipes.contains_key(ino) {
                // Held O_RDWR so that no open below blocks waiting for a partner.
                let rw = open_path(path, libc::O_RDWR | libc::O_NONBLOCK, 0).map_err(opening(path))?;
                fill_pipe(image, pid, f, &rw, *ino, *size, *data)?;
                pipes.insert(
                    *ino,
                    PipeState {
                        read: rw,
                        write: None,
                        read_used: true,
                        write_used: true,
                    },
                );
            }
            let fd = open_path(path, flags | libc::O_NONBLOCK, 0).map_err(opening(path))?;
            fcntl(
                fd.as_raw_fd(),
                FcntlArg::F_SETFL(OFlag::from_bits_truncate(f.flags as i32 & SETFL_MASK)),
            )
            .map_err(|e| restore_err(pid, f, format!("F_SETFL: {e}")))?;
            Ok(fd)
        }
    }
}

/// The description's status flags (O_NONBLOCK & co.) on a descriptor made by a syscall.
fn set_status(pid: i32, f: &Fd, fd: &OwnedFd) -> Result<()> {
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(f.flags as i32 & SETFL_MASK)),
    )
    .map_err(|e| restore_err(pid, f, format!("F_SETFL: {e}")))?;
    Ok(())
}

/// Set the pipe size, then write the dumped bytes into it (before any task exists).
fn fill_pipe(image: &Image, pid: i32, f: &Fd, w: &OwnedFd, ino: u64, size: u32, data: u64) -> Result<()> {
    let current = fcntl(w.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).map_err(sys("F_GETPIPE_SZ"))?;
    if size != 0 && size as i32 != current {
        fcntl(w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size as i32)).map_err(|e| {
            restore_err(
                pid,
                f,
                format!("F_SETPIPE_SZ({size}) (above /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE): {e}"),
            )
        })?;
    }
    if data == 0 {
        return Ok(());
    }
    let path = image.object_path(&image::pipe_data(ino), data)?;
    let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Image {
        path: path.clone(),
        source,
    })?;
    let mut out = File::from(w.try_clone().map_err(|e| restore_err(pid, f, e))?);
    out.write_all(&bytes)
        .map_err(|e| restore_err(pid, f, format!("refilling pipe {ino} with {data} bytes: {e}")))
}

fn create_ghost(
    image: &Image,
    id: u32,
    path: &str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
) -> std::io::Result<PathBuf> {
    let data = image
        .object_path(&image::ghost_data(id), size)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut candidates = vec![PathBuf::from(path)];
    candidates.extend((0..100).map(|n| PathBuf::from(format!("{path}.amber-ghost-{id}-{n}"))));
    for candidate in candidates {
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let result = (|| {
            std::io::copy(&mut File::open(&data)?, &mut file)?;
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&candidate);
            return Err(e);
        }
        return Ok(candidate);
    }
    Err(std::io::Error::from_raw_os_error(libc::EEXIST))
}

/// One shared memory object with the image's pages in it (a memfd of the same name, or
/// anonymous shared memory), and the seals to add at the end.
fn shmem_object(image: &Image, id: u64) -> Result<(OwnedFd, u32)> {
    let (obj, pages_path) = image.shmem(id)?;
    let made = match &obj.memfd {
        Some(name) => crate::sys::memfd_create(name, libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING),
        None => crate::sys::shmem_object(obj.size, "amber-shmem"),
    };
    let fd = made.map_err(|e| {
        CheckpointError::Restore(format!("creating shared memory object {id} of {} bytes: {e}", obj.size))
    })?;
    let file = File::from(fd);
    let pages = File::open(&pages_path).map_err(|source| CheckpointError::Image {
        path: pages_path.clone(),
        source,
    })?;
    let fill = |e: std::io::Error| CheckpointError::Restore(format!("filling shared memory object {id}: {e}"));
    let mut buf = Vec::new();
    let mut off = 0u64;
    for e in &obj.pagemap {
        let len = (e.nr_pages * PAGE) as usize;
        buf.resize(len, 0);
        pages
            .read_exact_at(&mut buf, off)
            .map_err(|source| CheckpointError::Image {
                path: pages_path.clone(),
                source,
            })?;
        file.write_all_at(&buf, e.vaddr).map_err(fill)?;
        off += len as u64;
    }
    // The last page may reach beyond the object's size.
    file.set_len(obj.size).map_err(fill)?;
    Ok((file.into(), obj.seals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines() {
        let info = "pos:\t0\nflags:\t0100002\nlock:\t1: POSIX  ADVISORY  WRITE 7438 fe:00:11175551 10 14\n\
                    lock:\t2: POSIX  ADVISORY  READ 7438 fe:00:11175551 100 EOF\n\
                    lock:\t3: -> FLOCK  ADVISORY  WRITE 7439 fe:00:11175551 0 EOF\n\
                    lock:\t4: OFDLCK ADVISORY  WRITE -1 fe:00:11175552 0 0\n";
        let locks = parse_locks(info).unwrap();
        assert_eq!(locks.len(), 3, "the waiter is left out: {locks:?}");
        assert_eq!(
            locks[0],
            FileLock {
                kind: LockKind::Posix,
                write: true,
                start: 10,
                len: 5,
                pid: 7438
            }
        );
        assert_eq!((locks[1].start, locks[1].len, locks[1].write), (100, 0, false));
        assert_eq!((locks[2].kind, locks[2].len, locks[2].pid), (LockKind::Ofd, 1, 0));
        let lease = "lock:\t1: LEASE  ACTIVE    READ 7440 fe:00:1 0 EOF\n";
        assert!(parse_locks(lease).unwrap_err().contains("LEASE"));
        assert!(parse_locks("lock:\t1: POSIX ADVISORY WRITE x").is_err());
    }

    #[test]
    fn event_fdinfo() {
        let ev = "pos:\t0\nflags:\t04002\neventfd-count:                1f\neventfd-id: 1\neventfd-semaphore: 1\n";
        assert_eq!(
            anon_kind("anon_inode:[eventfd]", ev).unwrap().unwrap(),
            FdKind::EventFd {
                count: 31,
                semaphore: true
            }
        );
        let sig = "sigmask:\t0000000000010200\n";
        assert_eq!(
            anon_kind("anon_inode:[signalfd]", sig).unwrap().unwrap(),
            FdKind::SignalFd { mask: 0x10200 }
        );
        let timer = "clockid: 1\nticks: 3\nsettime flags: 00\nit_value: (99, 999989935)\nit_interval: (1, 500)\n";
        assert_eq!(
            anon_kind("anon_inode:[timerfd]", timer).unwrap().unwrap(),
            FdKind::TimerFd {
                clock: 1,
                value_ns: 99_999_989_935,
                interval_ns: 1_000_000_500,
                ticks: 3
            }
        );
        let bad_clock = timer.replace("clockid: 1", "clockid: 11");
        assert!(anon_kind("anon_inode:[timerfd]", &bad_clock).unwrap().is_err());
        let epoll = "tfd:        3 events: 80000019 data:             1234  pos:0 ino:11 sdev:10\n\
                     tfd:        5 events:       1c data:               63  pos:0 ino:11 sdev:10\n";
        let FdKind::Epoll { targets } = anon_kind("anon_inode:[eventpoll]", epoll).unwrap().unwrap() else {
            panic!("not epoll")
        };
        assert_eq!(
            targets.iter().map(|t| (t.tfd, t.events, t.data)).collect::<Vec<_>>(),
            vec![(3, 0x8000_0019, 0x1234), (5, 0x1c, 0x63)]
        );
        assert!(anon_kind("anon_inode:[io_uring]", "").is_none());
        assert!(anon_kind("anon_inode:[eventfd]", "eventfd-count: zz\n")
            .unwrap()
            .is_err());
    }
}
