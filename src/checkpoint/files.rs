//! File descriptors and shared memory objects (CHECKPOINT.md §1.6, §1.3 shared mappings).
//!
//! Dump: `collect_fds` classifies each descriptor of one task (regular files, directories,
//! character devices, files unlinked while open, pipes, FIFOs; the container's stdio is
//! external); `link_objects` then looks at all tasks together: descriptors that share one open
//! file description (kcmp KCMP_FILE) get one `Fd::desc`, and the data of each object is read
//! once, without disturbing it: pipe buffers through tee(2) from a reopened end, ghost file
//! contents, shared anonymous memory through /proc/<pid>/map_files.
//!
//! Restore: `build` creates every object once in the restorer, before the first clone, at
//! descriptors above every task's: the seeds (its forks) inherit them and dup3 each to its
//! number, so descriptions shared before the dump are shared again (offset, status flags).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::image::{self, Fd, FdKind, Image, PagemapEntry, ShmemObject, TaskImage, VmaKind};
use super::plan::PAGE;
use super::{proc_err, CheckpointError, Result};

/// Ghost files are copied into the image; larger ones are refused.
pub const GHOST_MAX: u64 = 64 << 20;

/// Status flags F_SETFL can change (the others are fixed at open).
const SETFL_MASK: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME | libc::O_ASYNC;

fn unsupported(pid: i32, what: impl Into<String>) -> CheckpointError {
    CheckpointError::Unsupported { pid, what: what.into() }
}

/// Descriptors that are the container's stdio: the pipes among the root task's fds 0-2 (what
/// runc and podman hand over and supply again at restore). Any other pipe is rebuilt.
pub fn external_stdio(root_host: i32) -> BTreeSet<String> {
    (0..3)
        .filter_map(|fd| std::fs::read_link(format!("/proc/{root_host}/fd/{fd}")).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("pipe:["))
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
        if info.lines().any(|l| l.starts_with("lock:")) {
            return Err(refuse("file locks are not supported yet"));
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
            FdKind::External { key: target.clone() }
        } else if !target.starts_with('/') {
            // socket:[..], anon_inode:[eventfd], anon_inode:[eventpoll], /memfd:..., ...
            return Err(refuse("this kind of descriptor is not supported yet"));
        } else if target.starts_with("/memfd:") {
            return Err(refuse("memfd descriptors are not supported yet"));
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
            },
            object,
        });
    }
    out.sort_by_key(|f| f.fd.fd);
    Ok(out)
}

/// What one task contributes to the global pass.
pub struct TaskFds<'a> {
    pub host_pid: i32,
    pub task: &'a mut TaskImage,
    /// (st_dev, st_ino) behind each of `task.fds`, in the same order.
    pub objects: &'a [(u64, u64)],
}

/// Object files for the image (name, contents).
pub type Blobs = Vec<(String, Vec<u8>)>;

/// Number the open file descriptions (kcmp), ghost files and shared memory objects across all
/// tasks, and read the data of each object once.
pub fn link_objects(tasks: &mut [TaskFds<'_>]) -> Result<Blobs> {
    // Descriptions: among descriptors of one object, kcmp tells which share a description.
    // Per object: one (host pid, fd, desc) for each description found so far.
    type Representatives = Vec<(i32, i32, u32)>;
    let mut reps: BTreeMap<(u64, u64), Representatives> = BTreeMap::new();
    let mut next_desc = 1u32;
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

    let mut blobs = Blobs::new();
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
    // Shared anonymous memory: one object per shmem inode.
    let mut shmem: BTreeSet<u64> = BTreeSet::new();
    for t in tasks.iter() {
        for v in t.task.vmas.iter().filter(|v| v.kind == VmaKind::Shmem) {
            let Some(id) = v.shmem else { continue };
            if shmem.insert(id) {
                let (obj, pages) = read_shmem(t.host_pid, v.start, v.end, id)?;
                blobs.push((
                    image::shmem_json(id),
                    serde_json::to_vec_pretty(&obj).unwrap_or_default(),
                ));
                blobs.push((image::shmem_pages(id), pages));
            }
        }
    }
    Ok(blobs)
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

/// The non-zero pages of the shmem object mapped at [start, end) in `pid`.
fn read_shmem(pid: i32, start: u64, end: u64, id: u64) -> Result<(ShmemObject, Vec<u8>)> {
    let path = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
    let file = File::open(&path).map_err(proc_err(&path))?;
    let size = file.metadata().map_err(proc_err(&path))?.size();
    let mut pagemap: Vec<PagemapEntry> = Vec::new();
    let mut pages = Vec::new();
    let mut page = vec![0u8; PAGE as usize];
    let mut off = 0;
    while off < size {
        // Holes read as zeros: skip to the next data.
        let data = match nix::unistd::lseek(file.as_raw_fd(), off as i64, nix::unistd::Whence::SeekData) {
            Ok(d) => d as u64 / PAGE * PAGE,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) => off,
        };
        off = data;
        if off >= size {
            break;
        }
        let n = file.read_at(&mut page, off).map_err(proc_err(&path))?;
        if n > 0 && page[..n].iter().any(|&b| b != 0) {
            page[n..].fill(0);
            pages.extend_from_slice(&page);
            match pagemap.last_mut() {
                Some(e) if e.vaddr + e.nr_pages * PAGE == off => e.nr_pages += 1,
                _ => pagemap.push(PagemapEntry {
                    vaddr: off,
                    nr_pages: 1,
                }),
            }
        }
        off += PAGE;
    }
    Ok((ShmemObject { id, size, pagemap }, pages))
}

/// The objects of an image, created by the restorer before the first clone.
#[derive(Default)]
pub struct Objects {
    owned: Vec<OwnedFd>,
    /// pid -> image fd -> restorer descriptor (inherited by the seeds) to dup3 there.
    pub fds: BTreeMap<i32, BTreeMap<i32, RawFd>>,
    /// shmem object id -> restorer descriptor of the object.
    pub shmem: BTreeMap<u64, RawFd>,
}

impl Objects {
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
    let mut objs = Objects::default();
    let mut ghosts = Ghosts(BTreeMap::new());
    let mut pipes: BTreeMap<u64, PipeState> = BTreeMap::new();
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
            let fd = open_one(image, t.pid, f, &mut ghosts, &mut pipes)?;
            let raw = place(&mut objs, fd)?;
            if f.desc != 0 {
                descs.insert(f.desc, raw);
            }
            objs.fds.entry(t.pid).or_default().insert(f.fd, raw);
        }
        for v in task.vmas.iter().filter(|v| v.kind == VmaKind::Shmem) {
            let id = v
                .shmem
                .ok_or_else(|| CheckpointError::Corrupt(format!("pid {}: shmem VMA without an id", t.pid)))?;
            if objs.shmem.contains_key(&id) {
                continue;
            }
            let fd = shmem_object(image, id)?;
            let raw = place(&mut objs, fd)?;
            objs.shmem.insert(id, raw);
        }
    }
    // Pipe ends nobody holds go now (a reader whose writers are gone sees the data, then EOF);
    // ghost files are unlinked when `ghosts` drops.
    drop(pipes);
    Ok(objs)
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

/// One shared anonymous memory object with the image's pages in it.
fn shmem_object(image: &Image, id: u64) -> Result<OwnedFd> {
    let (obj, pages_path) = image.shmem(id)?;
    let fd = crate::sys::shmem_object(obj.size, "amber-shmem").map_err(|e| {
        CheckpointError::Restore(format!("creating shared memory object {id} of {} bytes: {e}", obj.size))
    })?;
    let file = File::from(fd);
    let pages = File::open(&pages_path).map_err(|source| CheckpointError::Image {
        path: pages_path.clone(),
        source,
    })?;
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
        file.write_all_at(&buf, e.vaddr)
            .map_err(|e| CheckpointError::Restore(format!("filling shared memory object {id}: {e}")))?;
        off += len as u64;
    }
    Ok(file.into())
}
