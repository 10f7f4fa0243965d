//! Collect one seized, interrupted, single-threaded task: /proc, ptrace register sets, memory,
//! fds, and the few values only the task itself can tell (injected read-only syscalls).

use std::collections::BTreeSet;
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};

use nix::sys::uio::{process_vm_readv, RemoteIoVec};

use super::image::{
    AltStack, Creds, FileIdentity, GhostFile, Itimer, MmFields, PagemapEntry, PendingSignal, Rlimit, Rseq, SigAction,
    StreamFile, TaskImage, Vma, VmaKind,
};
use super::plan::{fixup_restart, PAGE};
use super::procfs::{self, SmapsVma, Status};
use super::remote::{self, Remote};
use super::{proc_err, CheckpointError, Result};
use crate::sys::ptrace as sp;

/// What one task contributes to the image besides its pages (streamed later by
/// [`write_pages`], so that no page is held in memory).
pub struct Collected {
    pub task: TaskImage,
    /// (st_dev, st_ino) of the object behind each of `task.fds` (for `files::link_objects`).
    pub fd_objects: Vec<(u64, u64)>,
}

fn read(path: String) -> Result<String> {
    std::fs::read_to_string(&path).map_err(proc_err(&path))
}

fn link(path: String) -> Result<String> {
    std::fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(proc_err(&path))
}

fn unsupported(pid: i32, what: impl Into<String>) -> CheckpointError {
    CheckpointError::Unsupported { pid, what: what.into() }
}

/// Refusals that need only /proc, checked before the task is seized (zombies are not seized:
/// the dump records them from /proc alone).
pub fn precheck(pid: i32, s: &Status) -> Result<()> {
    if s.state == 'Z' || s.state == 'X' {
        return Err(unsupported(pid, "exited while being dumped"));
    }
    if s.threads != 1 {
        return Err(unsupported(
            pid,
            format!("has {} threads (v1 dumps single-threaded processes)", s.threads),
        ));
    }
    if s.tracer_pid != 0 {
        return Err(unsupported(pid, format!("is already traced by pid {}", s.tracer_pid)));
    }
    if s.seccomp != 0 {
        return Err(unsupported(pid, "uses seccomp (v1)"));
    }
    if s.x86_thread_features.split_whitespace().any(|f| f == "shstk") {
        return Err(unsupported(pid, "uses a shadow stack"));
    }
    let timers = std::fs::read_to_string(format!("/proc/{pid}/timers")).unwrap_or_default();
    if !timers.trim().is_empty() {
        return Err(unsupported(pid, "has POSIX timers (v1)"));
    }
    Ok(())
}

/// `external`: the container's stdio pipes (`files::external_stdio`).
pub fn collect(pid: i32, external: &BTreeSet<String>) -> Result<Collected> {
    let mut status = procfs::parse_status(&read(format!("/proc/{pid}/status"))?);
    if status.tracer_pid == nix::unistd::gettid().as_raw() {
        status.tracer_pid = 0; // that's us
    }
    precheck(pid, &status)?;
    let sigmask = sp::get_sigmask(pid).map_err(|source| CheckpointError::Ptrace {
        pid,
        op: "GETSIGMASK",
        source,
    })?;
    let smaps = procfs::parse_smaps(&read(format!("/proc/{pid}/smaps"))?);
    let vmas = classify_vmas(pid, &smaps)?;
    let found = super::files::collect_fds(pid, external)?;
    let fd_objects = found.iter().map(|f| f.object).collect();
    let fds = found.into_iter().map(|f| f.fd).collect();
    let stat = procfs::parse_stat_mm(&read(format!("/proc/{pid}/stat"))?)
        .ok_or_else(|| unsupported(pid, "unreadable /proc/<pid>/stat"))?;
    let auxv_path = format!("/proc/{pid}/auxv");
    let auxv = procfs::parse_auxv(&std::fs::read(&auxv_path).map_err(proc_err(&auxv_path))?);

    let raw_regs = remote::getregs(pid)?;
    let xstate = sp::get_xstate(pid).map_err(|source| CheckpointError::Ptrace {
        pid,
        op: "GETREGSET NT_X86_XSTATE",
        source,
    })?;
    let rseq = sp::get_rseq_configuration(pid)
        .ok()
        .filter(|c| c.rseq_abi_pointer != 0)
        .map(|c| Rseq {
            ptr: c.rseq_abi_pointer,
            len: c.rseq_abi_size,
            sig: c.signature,
        });
    let robust_list = sp::get_robust_list(pid).unwrap_or((0, 0));
    let inside = query_inside(pid, &vmas, raw_regs, sigmask)?;
    // After the queries: a timer that expired meanwhile has its signal queued by now.
    let status = procfs::parse_status(&read(format!("/proc/{pid}/status"))?);
    let pending = collect_pending(pid, &status)?;

    let mut regs = raw_regs.into();
    fixup_restart(&mut regs);
    let mut rlimits = Vec::new();
    for resource in 0..16 {
        if let Ok((soft, hard)) = sp::get_prlimit(pid, resource) {
            rlimits.push(Rlimit { resource, soft, hard });
        }
    }
    let personality = u64::from_str_radix(read(format!("/proc/{pid}/personality"))?.trim(), 16).unwrap_or(0);
    let task = TaskImage {
        pid: 0, // set by the caller from the tree
        host_nspid: status.nspid.clone(),
        comm: read(format!("/proc/{pid}/comm"))?.trim_end_matches('\n').to_string(),
        exe: link(format!("/proc/{pid}/exe"))?,
        cwd: link(format!("/proc/{pid}/cwd"))?,
        root: link(format!("/proc/{pid}/root"))?,
        umask: status.umask,
        personality,
        nice: stat.nice,
        creds: Creds {
            uid: status.uid,
            gid: status.gid,
            groups: status.groups.clone(),
            cap_inh: status.cap_inh,
            cap_prm: status.cap_prm,
            cap_eff: status.cap_eff,
            cap_bnd: status.cap_bnd,
            cap_amb: status.cap_amb,
            no_new_privs: status.no_new_privs,
            securebits: inside.securebits,
            dumpable: Some(inside.dumpable),
        },
        rlimits,
        sigmask,
        sigactions: inside.sigactions,
        altstack: inside.altstack,
        regs,
        xstate: super::image::to_hex(&xstate),
        rseq,
        robust_list,
        tid_address: inside.tid_address,
        mm: MmFields {
            start_code: stat.start_code,
            end_code: stat.end_code,
            start_data: stat.start_data,
            end_data: stat.end_data,
            start_brk: stat.start_brk,
            brk: inside.brk,
            start_stack: stat.start_stack,
            arg_start: stat.arg_start,
            arg_end: stat.arg_end,
            env_start: stat.env_start,
            env_end: stat.env_end,
        },
        auxv,
        vmas,
        fds,
        pending,
        itimers: inside.itimers,
        stop_signal: None, // set by the caller, which saw the stop
        child_subreaper: inside.child_subreaper,
        pdeathsig: inside.pdeathsig,
    };
    Ok(Collected { task, fd_objects })
}

fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Every queued signal, thread queue then process queue, each in queue order, with its siginfo
/// (PTRACE_PEEKSIGINFO). A standard signal that is pending without a queue entry (the kernel
/// could not allocate one) is recorded as a plain kill() from nobody.
fn collect_pending(pid: i32, status: &Status) -> Result<Vec<PendingSignal>> {
    let mut out = Vec::new();
    for (shared, mask) in [(false, status.sig_pnd), (true, status.shd_pnd)] {
        if mask & sig_bit(libc::SIGKILL) != 0 {
            return Err(unsupported(pid, "is being killed (SIGKILL pending)"));
        }
        let queue = sp::peek_siginfo(pid, shared).map_err(|source| CheckpointError::Ptrace {
            pid,
            op: if shared { "PEEKSIGINFO (shared)" } else { "PEEKSIGINFO" },
            source,
        })?;
        let mut seen = 0u64;
        for info in &queue {
            let signo = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
            if !(1..=64).contains(&signo) {
                return Err(unsupported(pid, format!("queued siginfo with signal number {signo}")));
            }
            seen |= sig_bit(signo);
            out.push(PendingSignal {
                shared,
                signo,
                siginfo: super::image::to_hex(info),
            });
        }
        for signo in (1..32).filter(|&s| mask & !seen & sig_bit(s) != 0) {
            let mut info = [0u8; sp::SIGINFO_SIZE];
            info[..4].copy_from_slice(&signo.to_ne_bytes());
            out.push(PendingSignal {
                shared,
                signo,
                siginfo: super::image::to_hex(&info),
            });
        }
    }
    Ok(out)
}

const REFUSED_VMFLAGS: [(&str, &str); 7] = [
    ("ht", "hugetlb"),
    ("io", "I/O memory"),
    ("pf", "PFN mapping"),
    ("ss", "shadow stack"),
    ("dp", "droppable memory"),
    ("um", "userfaultfd"),
    ("uw", "userfaultfd-wp"),
];

pub fn classify_vmas(pid: i32, smaps: &[SmapsVma]) -> Result<Vec<Vma>> {
    let mut out = Vec::new();
    for v in smaps {
        let what = |msg: &str| {
            unsupported(
                pid,
                format!("mapping {:x}-{:x} {} {:?}: {msg}", v.start, v.end, v.perms, v.name),
            )
        };
        let kind = match v.name.as_str() {
            "[vsyscall]" => VmaKind::Vsyscall,
            "[vvar]" => VmaKind::Vvar,
            "[vvar_vclock]" => VmaKind::VvarVclock,
            "[vdso]" => VmaKind::Vdso,
            _ if v.shared() => shared_kind(pid, v).map_err(|m| what(&m))?,
            "" | "[heap]" | "[stack]" => VmaKind::Anon,
            n if n.starts_with("[anon:") => VmaKind::Anon,
            n if n.starts_with('/') && !n.ends_with(" (deleted)") => VmaKind::FilePrivate,
            // A file unlinked since it was mapped (not memfd or SysV, "/dev/zero" is shared).
            n if n.starts_with('/') && !n.starts_with("/memfd:") && !n.starts_with("/SYSV") => VmaKind::FilePrivate,
            // A memfd mapped privately: the memfd is a shared memory object (`shmem`).
            n if n.starts_with("/memfd:") && n.ends_with(" (deleted)") => VmaKind::FilePrivate,
            _ => return Err(what("unsupported kind of mapping")),
        };
        let special = matches!(
            kind,
            VmaKind::Vsyscall | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vdso
        );
        for (flag, name) in REFUSED_VMFLAGS {
            if !special && v.has_flag(flag) {
                return Err(what(&format!("{name} is not supported")));
            }
        }
        if v.fields.get("ProtectionKey").is_some_and(|k| k != "0") {
            return Err(what("memory protection keys are not supported in v1"));
        }
        let memfd = v.name.starts_with("/memfd:");
        let shmem = (kind == VmaKind::Shmem || (kind == VmaKind::FilePrivate && memfd)).then_some(v.inode);
        let mut ghost = None;
        let file = if matches!(kind, VmaKind::FilePrivate | VmaKind::FileShared) && shmem.is_none() {
            let path = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
            let m = std::fs::metadata(&path).map_err(proc_err(&path))?;
            if let Some(orig) = v.name.strip_suffix(" (deleted)") {
                if !m.is_file() {
                    return Err(what("a deleted mapped file that is not a regular file"));
                }
                if m.size() > super::files::GHOST_MAX {
                    return Err(what(&format!(
                        "deleted mapped file of {} bytes (copied into the image up to {})",
                        m.size(),
                        super::files::GHOST_MAX
                    )));
                }
                ghost = Some(GhostFile {
                    id: 0, // numbered by files::link_objects
                    path: orig.to_string(),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: m.size(),
                });
            }
            Some(FileIdentity {
                size: m.size(),
                mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                ino: m.ino(),
            })
        } else {
            None
        };
        out.push(Vma {
            start: v.start,
            end: v.end,
            perms: v.perms.clone(),
            offset: v.offset,
            kind,
            name: v.name.clone(),
            vmflags: v.vmflags.clone(),
            file,
            shmem,
            ghost,
        });
    }
    Ok(out)
}

/// A MAP_SHARED mapping: shared anonymous memory (one object per shmem inode, dumped once by
/// `files::link_objects`) or a regular file mapped again at restore; the rest is refused.
fn shared_kind(pid: i32, v: &SmapsVma) -> std::result::Result<VmaKind, String> {
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
    let name = v.name.as_str();
    if name == "/dev/zero (deleted)" {
        // MAP_SHARED|MAP_ANONYMOUS, or a shared mapping of /dev/zero (the same thing).
        return Ok(VmaKind::Shmem);
    }
    if name.starts_with("/SYSV") {
        return Err("SysV shared memory is not supported yet".into());
    }
    if name.starts_with("/memfd:") && name.ends_with(" (deleted)") {
        return Ok(VmaKind::Shmem);
    }
    if !name.starts_with('/') {
        return Err("unsupported kind of shared mapping".into());
    }
    let m = std::fs::metadata(&path).map_err(|e| format!("{path}: {e}"))?;
    if m.file_type().is_char_device() || m.file_type().is_block_device() {
        return Err("shared mappings of devices are not supported".into());
    }
    if !m.is_file() {
        return Err("shared mapping of something that is not a regular file".into());
    }
    Ok(VmaKind::FileShared)
}

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Pages read per batch: one pagemap read, one process_vm_readv (at most this many iovecs,
/// below IOV_MAX) and one pwritev. 1 MiB stays in the caches between the read, the zero-page
/// check, the digest and the write.
const BATCH_PAGES: u64 = 256;
/// Batches in flight, and the threads that write them: copying into the page cache (fresh
/// memory) is the dominant cost of a dump; two writers use both CPUs of a small machine while
/// the reading thread goes on.
const BUFFERS: usize = 4;
const WRITERS: usize = 2;

/// One batch for a writer: `ranges` of `buf` go, in order, at offset `at` of the page file.
struct Job {
    buf: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    at: u64,
}

/// Stream the pages of `vmas` that the image must hold (CHECKPOINT.md §5.2: present or swapped;
/// for private file mappings only the COWed, anonymous ones; all-zero anonymous pages are left
/// out, they read back as zero) to `out`, in address order; returns the page file's pagemap.
/// Readable mappings are read with process_vm_readv, a batch at a time; unreadable ones
/// (PROT_NONE, execute-only), which process_vm_readv refuses, through /proc/<pid>/mem. This
/// thread reads, checks for zero pages and digests (in file order); writer threads put each
/// batch at its offset of the file.
pub fn write_pages(pid: i32, vmas: &[Vma], out: &mut StreamFile) -> Result<Vec<PagemapEntry>> {
    let (file, path) = out.writer()?;
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        let _ = free_tx.send(vec![0u8; (BATCH_PAGES * PAGE) as usize]);
    }
    let (work_tx, work_rx) = std::sync::mpsc::channel::<Job>();
    let work_rx = std::sync::Mutex::new(work_rx);
    let failed: std::sync::Mutex<Option<CheckpointError>> = std::sync::Mutex::new(None);
    let read = std::thread::scope(|scope| {
        for _ in 0..WRITERS {
            let free_tx = free_tx.clone();
            let (file, path, work_rx, failed) = (&file, &path, &work_rx, &failed);
            scope.spawn(move || loop {
                let job = match work_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => break,
                };
                let Ok(job) = job else { break };
                let slices: Vec<IoSlice<'_>> = job.ranges.iter().map(|&(a, b)| IoSlice::new(&job.buf[a..b])).collect();
                if let Err(e) = super::image::write_all_at(file, path, &slices, job.at) {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                }
                drop(slices);
                let _ = free_tx.send(job.buf);
            });
        }
        let read = read_pages(pid, vmas, out, &free_rx, &work_tx, &failed);
        drop(work_tx); // the writers finish what is queued, then leave
        read
    });
    let entries = read?;
    match failed.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(entries),
    }
}

/// Pagemap words read per pread: 256 MiB of address space, so that a huge sparse reservation
/// (a PROT_NONE arena, a sanitizer's shadow) costs few system calls.
const PAGEMAP_WINDOW: u64 = 65536;

/// The dumping thread: walk the pagemap of each VMA, gather wanted pages into batches of at
/// most `BATCH_PAGES`, read each batch, drop zero pages, digest and hand it to the writers.
fn read_pages(
    pid: i32,
    vmas: &[Vma],
    out: &mut StreamFile,
    free: &std::sync::mpsc::Receiver<Vec<u8>>,
    work: &std::sync::mpsc::Sender<Job>,
    failed: &std::sync::Mutex<Option<CheckpointError>>,
) -> Result<Vec<PagemapEntry>> {
    let pm_path = format!("/proc/{pid}/pagemap");
    let pagemap = std::fs::File::open(&pm_path).map_err(proc_err(&pm_path))?;
    let mut batch = Batch {
        pid,
        mem_path: format!("/proc/{pid}/mem"),
        mem: None,
        entries: Vec::new(),
        runs: Vec::new(),
        pages: 0,
    };
    let mut raw = vec![0u8; (PAGEMAP_WINDOW * 8) as usize];
    for v in vmas
        .iter()
        .filter(|v| matches!(v.kind, VmaKind::Anon | VmaKind::FilePrivate))
    {
        let vma_entries = batch.entries.len(); // entries never span two VMAs
        let mut window = v.start;
        while window < v.end {
            let n = ((v.end - window) / PAGE).min(PAGEMAP_WINDOW) as usize;
            let raw = &mut raw[..n * 8];
            pagemap
                .read_exact_at(raw, window / PAGE * 8)
                .map_err(proc_err(&pm_path))?;
            for (i, w) in raw.chunks_exact(8).enumerate() {
                let word = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
                let wanted =
                    word & (PM_PRESENT | PM_SWAP) != 0 && !(v.kind == VmaKind::FilePrivate && word & PM_FILE != 0);
                if !wanted {
                    continue;
                }
                let addr = window + i as u64 * PAGE;
                match batch.runs.last_mut() {
                    Some((start, len)) if *start + *len as u64 * PAGE == addr => *len += 1,
                    _ => batch.runs.push((addr, 1)),
                }
                batch.pages += 1;
                if batch.pages == BATCH_PAGES as usize && !batch.flush(v, vma_entries, out, free, work, failed)? {
                    return Ok(batch.entries);
                }
            }
            window += n as u64 * PAGE;
        }
        if !batch.flush(v, vma_entries, out, free, work, failed)? {
            return Ok(batch.entries);
        }
    }
    Ok(batch.entries)
}

/// Wanted pages gathered for one read (all in one VMA), and what was found so far.
struct Batch {
    pid: i32,
    mem_path: String,
    mem: Option<std::fs::File>,
    entries: Vec<PagemapEntry>,
    /// (address, pages), in address order.
    runs: Vec<(u64, usize)>,
    pages: usize,
}

impl Batch {
    /// Read the gathered runs of `v` into a free buffer, keep the pages that are not all zero
    /// (anonymous memory only: a zero page of a private file mapping differs from the file's),
    /// extend the pagemap (merging only with entries of this VMA, from `vma_entries` on),
    /// account the kept bytes in `out` and queue them for the writers. False when a writer
    /// failed (the caller stops; the error is reported by `write_pages`).
    fn flush(
        &mut self,
        v: &Vma,
        vma_entries: usize,
        out: &mut StreamFile,
        free: &std::sync::mpsc::Receiver<Vec<u8>>,
        work: &std::sync::mpsc::Sender<Job>,
        failed: &std::sync::Mutex<Option<CheckpointError>>,
    ) -> Result<bool> {
        if self.runs.is_empty() {
            return Ok(true);
        }
        if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
            return Ok(false);
        }
        let broken = || CheckpointError::Sys("page writers", std::io::ErrorKind::BrokenPipe.into());
        let mut buf = free.recv().map_err(|_| broken())?;
        let total = self.pages * PAGE as usize;
        let data = &mut buf[..total];
        let mut done = 0usize;
        if v.prot() & libc::PROT_READ != 0 {
            let remote: Vec<RemoteIoVec> = self
                .runs
                .iter()
                .map(|&(addr, len)| RemoteIoVec {
                    base: addr as usize,
                    len: len * PAGE as usize,
                })
                .collect();
            // A short read (a page that went away, or a fault) is finished below.
            done = process_vm_readv(
                nix::unistd::Pid::from_raw(self.pid),
                &mut [IoSliceMut::new(data)],
                &remote,
            )
            .unwrap_or(0);
        }
        if done < total {
            let mem = match &mut self.mem {
                Some(m) => m,
                None => self
                    .mem
                    .insert(std::fs::File::open(&self.mem_path).map_err(proc_err(&self.mem_path))?),
            };
            let mut off = 0usize;
            for &(addr, len) in &self.runs {
                let bytes = len * PAGE as usize;
                if off + bytes > done {
                    let skip = done.saturating_sub(off);
                    let at = addr + skip as u64;
                    mem.read_exact_at(&mut data[off + skip..off + bytes], at)
                        .map_err(|e| CheckpointError::Proc {
                            path: format!("{} at {at:#x}", self.mem_path),
                            source: e,
                        })?;
                }
                off += bytes;
            }
        }
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(self.runs.len());
        let mut off = 0usize;
        for &(addr, len) in &self.runs {
            let mut start: Option<usize> = None; // page index where the current kept run began
            for p in 0..=len {
                let keep = p < len && {
                    let page = &data[off + p * PAGE as usize..off + (p + 1) * PAGE as usize];
                    v.kind != VmaKind::Anon || !is_zero(page)
                };
                match (keep, start) {
                    (true, None) => start = Some(p),
                    (false, Some(s)) => {
                        ranges.push((off + s * PAGE as usize, off + p * PAGE as usize));
                        let vaddr = addr + s as u64 * PAGE;
                        let nr = (p - s) as u64;
                        let mergeable = self.entries.len() > vma_entries;
                        match self.entries.last_mut() {
                            Some(e) if mergeable && e.vaddr + e.nr_pages * PAGE == vaddr => e.nr_pages += nr,
                            _ => self.entries.push(PagemapEntry { vaddr, nr_pages: nr }),
                        }
                        start = None;
                    }
                    _ => {}
                }
            }
            off += len * PAGE as usize;
        }
        let slices: Vec<IoSlice<'_>> = ranges.iter().map(|&(a, b)| IoSlice::new(&buf[a..b])).collect();
        let at = out.append(&slices);
        drop(slices);
        work.send(Job { buf, ranges, at }).map_err(|_| broken())?;
        self.runs.clear();
        self.pages = 0;
        Ok(true)
    }
}

/// All bytes zero; stops at the first non-zero 64-byte block (the usual case for a dirty page).
fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(64).all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

struct Inside {
    sigactions: Vec<SigAction>,
    brk: u64,
    tid_address: u64,
    altstack: AltStack,
    securebits: u32,
    dumpable: u32,
    itimers: Vec<Itimer>,
    child_subreaper: bool,
    pdeathsig: i32,
}

/// Find a `syscall` instruction (0f 05) in the task's vdso, our injection point at dump.
fn find_syscall_insn(pid: i32, vmas: &[Vma]) -> Result<u64> {
    let vdso = vmas
        .iter()
        .find(|v| v.kind == VmaKind::Vdso)
        .ok_or_else(|| unsupported(pid, "has no [vdso] to inject through"))?;
    let mem = Remote::new(pid, 0)?;
    let text = mem.read(vdso.start, vdso.len() as usize)?;
    text.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|off| vdso.start + off as u64)
        .ok_or_else(|| unsupported(pid, "no syscall instruction in [vdso]"))
}

/// Ask the task what only it knows, with every signal blocked, then put it back exactly as it
/// was: registers restored at a PTRACE_EVENT_STOP (not at a syscall-exit-stop), so that the
/// kernel's restart of an interrupted system call still happens when the task resumes.
fn query_inside(pid: i32, vmas: &[Vma], orig: libc::user_regs_struct, mask: u64) -> Result<Inside> {
    let remote = Remote::new(pid, find_syscall_insn(pid, vmas)?)?;
    let setmask = |m| {
        sp::set_sigmask(pid, m).map_err(|source| CheckpointError::Ptrace {
            pid,
            op: "SETSIGMASK",
            source,
        })
    };
    setmask(!0)?;
    let result = run_queries(&remote, &orig);
    // Back to an interrupt stop, then the original registers and mask: both are attempted
    // whatever failed before (a task must never be let go at our syscall instruction with every
    // signal blocked), and the first error is reported.
    let back = super::fault("dump-query-return")
        .and_then(|()| remote::interrupt(pid))
        .and_then(|()| {
            nix::sys::ptrace::cont(nix::unistd::Pid::from_raw(pid), None).map_err(super::ptrace_err(pid, "CONT"))
        })
        .and_then(|()| remote::wait_interrupted(pid));
    let regs = remote::setregs(pid, orig);
    let masked = setmask(mask);
    let inside = result?;
    back?;
    regs?;
    masked?;
    Ok(inside)
}

fn run_queries(r: &Remote, base: &libc::user_regs_struct) -> Result<Inside> {
    let scratch = r.call(
        base,
        "mmap",
        libc::SYS_mmap,
        &[
            0,
            PAGE,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )? as u64;
    let result: Result<Inside> = (|| {
        super::fault("dump-query")?;
        let mut sigactions = Vec::new();
        for sig in 1..=64i32 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            r.call(
                base,
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                &[sig as u64, 0, scratch, 8],
            )?;
            let w = remote::words(&r.read(scratch, 32)?);
            sigactions.push(SigAction {
                signo: sig,
                handler: w[0],
                flags: w[1],
                restorer: w[2],
                mask: w[3],
            });
        }
        let brk = r.call(base, "brk", libc::SYS_brk, &[0])? as u64;
        const PR_GET_TID_ADDRESS: u64 = 40;
        r.call(
            base,
            "prctl(PR_GET_TID_ADDRESS)",
            libc::SYS_prctl,
            &[PR_GET_TID_ADDRESS, scratch],
        )?;
        let tid_address = remote::words(&r.read(scratch, 8)?)[0];
        r.call(base, "sigaltstack", libc::SYS_sigaltstack, &[0, scratch])?;
        let w = remote::words(&r.read(scratch, 24)?);
        let altstack = AltStack {
            sp: w[0],
            flags: w[1] as i32,
            size: w[2],
        };
        const PR_GET_DUMPABLE: u64 = 3;
        const PR_GET_SECUREBITS: u64 = 27;
        let dumpable = r.call(base, "prctl(PR_GET_DUMPABLE)", libc::SYS_prctl, &[PR_GET_DUMPABLE])? as u32;
        let securebits = r.call(base, "prctl(PR_GET_SECUREBITS)", libc::SYS_prctl, &[PR_GET_SECUREBITS])? as u32;
        // struct itimerval { it_interval, it_value } of timevals; only armed timers matter.
        let mut itimers = Vec::new();
        for which in 0..3 {
            r.call(base, "getitimer", libc::SYS_getitimer, &[which as u64, scratch])?;
            let w = remote::words(&r.read(scratch, 32)?);
            let value_us = w[2] * 1_000_000 + w[3];
            if value_us != 0 {
                itimers.push(Itimer {
                    which,
                    interval_us: w[0] * 1_000_000 + w[1],
                    value_us,
                });
            }
        }
        const PR_GET_PDEATHSIG: u64 = 2;
        const PR_GET_CHILD_SUBREAPER: u64 = 37;
        r.call(
            base,
            "prctl(PR_GET_PDEATHSIG)",
            libc::SYS_prctl,
            &[PR_GET_PDEATHSIG, scratch],
        )?;
        let pdeathsig = i32::from_ne_bytes(r.read(scratch, 4)?.try_into().unwrap_or_default());
        let args = [PR_GET_CHILD_SUBREAPER, scratch];
        r.call(base, "prctl(PR_GET_CHILD_SUBREAPER)", libc::SYS_prctl, &args)?;
        let child_subreaper = r.read(scratch, 4)? != [0, 0, 0, 0];
        Ok(Inside {
            sigactions,
            brk,
            tid_address,
            altstack,
            securebits,
            dumpable,
            itimers,
            child_subreaper,
            pdeathsig,
        })
    })();
    // Unmapped whether or not a query failed; a query's error comes first.
    let unmapped = r.call(base, "munmap", libc::SYS_munmap, &[scratch, PAGE]);
    let inside = result?;
    unmapped?;
    Ok(inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::seedmem;
    use std::os::fd::AsFd;

    /// Map `pages` pages somewhere free (MAP_FIXED_NOREPLACE probing), `rw`.
    fn map_somewhere(pages: u64) -> u64 {
        let mut addr = 0x6100_0000_0000u64 + (std::process::id() as u64 % 4096) * (1 << 24);
        loop {
            match seedmem::mmap_fixed(
                addr,
                pages * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                None,
                0,
            ) {
                Ok(()) => return addr,
                Err(_) => addr += 1 << 32,
            }
        }
    }

    fn vma(start: u64, pages: u64, perms: &str) -> Vma {
        Vma {
            perms: perms.into(),
            ..Vma::test_anon(start, start + pages * PAGE)
        }
    }

    /// Present, zero, absent, unreadable and adjacent mappings, read from this very process.
    #[test]
    fn pages_are_streamed_with_holes_for_zero_and_absent_pages() {
        let t = tempfile::tempdir().unwrap();
        let pattern = |i: u64| -> Vec<u8> {
            let mut p = vec![0u8; PAGE as usize];
            match i {
                1 => {}                        // all zero: left out
                2 => p[PAGE as usize - 1] = 7, // zero but for its last byte: kept
                _ => p.iter_mut().enumerate().for_each(|(j, b)| *b = (i as u8) ^ (j as u8)),
            }
            p
        };
        let src = t.path().join("src");
        std::fs::write(&src, (0..8).flat_map(pattern).collect::<Vec<u8>>()).unwrap();
        let src = std::fs::File::open(&src).unwrap();
        // a: 6 pages, pages 0-3 filled from the pattern (page 1 zero), 4-5 never touched.
        let a = map_somewhere(6);
        seedmem::pread_into(src.as_fd(), a, 4 * PAGE, 0).unwrap();
        // b: 2 pages filled (patterns 4, 5) then made PROT_NONE (process_vm_readv refuses it);
        // c right after b, rw, pattern 6: a separate VMA whose entry must not merge with b's.
        let b = map_somewhere(3);
        seedmem::pread_into(src.as_fd(), b, 3 * PAGE, 4 * PAGE).unwrap();
        seedmem::mprotect(b, 2 * PAGE, libc::PROT_NONE).unwrap();
        let c = b + 2 * PAGE;
        let vmas = [vma(a, 6, "rw-p"), vma(b, 2, "---p"), vma(c, 1, "rw-p")];

        let mut w = crate::checkpoint::image::ImageWriter::create(&t.path().join("img")).unwrap();
        let mut out = w.stream("task/1.pages").unwrap();
        let me = std::process::id() as i32;
        let entries = write_pages(me, &vmas, &mut out).unwrap();
        assert_eq!(out.size(), 6 * PAGE);
        w.close(out).unwrap();
        let want = |vaddr, nr_pages| PagemapEntry { vaddr, nr_pages };
        assert_eq!(entries, vec![want(a, 1), want(a + 2 * PAGE, 2), want(b, 2), want(c, 1)]);
        let data = std::fs::read(t.path().join("img/task/1.pages")).unwrap();
        let expect: Vec<u8> = [0, 2, 3, 4, 5, 6].into_iter().flat_map(pattern).collect();
        assert!(data == expect, "page file contents differ");
        let _ = seedmem::mprotect(b, 2 * PAGE, libc::PROT_READ);
    }

    /// A large sparse mapping: runs across pagemap windows and batches come out as single
    /// entries, untouched address space costs nothing.
    #[test]
    fn sparse_mappings_across_windows_and_batches() {
        let t = tempfile::tempdir().unwrap();
        let pages = 4 * PAGEMAP_WINDOW; // 1 GiB of address space, mostly never touched
        let mut addr = 0x6300_0000_0000u64 + (std::process::id() as u64 % 1024) * (1 << 32);
        loop {
            let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE;
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            if seedmem::mmap_fixed(addr, pages * PAGE, rw, flags, None, 0).is_ok() {
                break;
            }
            addr += 1 << 36;
        }
        let runs = [
            (0, 1),
            (PAGEMAP_WINDOW - 1, 2),
            (100_000, 300),
            (3 * PAGEMAP_WINDOW + 5, 1),
        ];
        let src = t.path().join("src");
        std::fs::write(&src, vec![0x5au8; 300 * PAGE as usize]).unwrap();
        let src = std::fs::File::open(&src).unwrap();
        for &(first, n) in &runs {
            seedmem::pread_into(src.as_fd(), addr + first * PAGE, n * PAGE, 0).unwrap();
        }
        let mut w = crate::checkpoint::image::ImageWriter::create(&t.path().join("img")).unwrap();
        let mut out = w.stream("task/1.pages").unwrap();
        let entries = write_pages(std::process::id() as i32, &[vma(addr, pages, "rw-p")], &mut out).unwrap();
        assert_eq!(out.size(), 304 * PAGE);
        let want: Vec<PagemapEntry> = runs
            .iter()
            .map(|&(first, n)| PagemapEntry {
                vaddr: addr + first * PAGE,
                nr_pages: n,
            })
            .collect();
        assert_eq!(entries, want);
    }

    /// Many more batches than buffers: the writers put each at its offset, the digest is of
    /// the file in order.
    #[test]
    fn large_regions_go_through_the_writer_pool_in_order() {
        let t = tempfile::tempdir().unwrap();
        let pages = 10 * BATCH_PAGES + 3;
        let data: Vec<u8> = (0..pages * PAGE / 8)
            .flat_map(|i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).to_ne_bytes())
            .collect();
        let src = t.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let d = map_somewhere(pages);
        seedmem::pread_into(std::fs::File::open(&src).unwrap().as_fd(), d, pages * PAGE, 0).unwrap();
        let mut w = crate::checkpoint::image::ImageWriter::create(&t.path().join("img")).unwrap();
        let mut out = w.stream("task/1.pages").unwrap();
        let entries = write_pages(std::process::id() as i32, &[vma(d, pages, "rw-p")], &mut out).unwrap();
        w.close(out).unwrap();
        assert_eq!(
            entries,
            vec![PagemapEntry {
                vaddr: d,
                nr_pages: pages
            }]
        );
        assert!(std::fs::read(t.path().join("img/task/1.pages")).unwrap() == data);
        w.finish(crate::checkpoint::host::HostRecord::current().unwrap())
            .unwrap();
        let img = t.path().join("img");
        let manifest = serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
        crate::checkpoint::image::verify_files(&img, &manifest).expect("the digest computed in order matches the file");
    }
}
