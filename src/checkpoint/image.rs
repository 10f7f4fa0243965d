//! The image format (CHECKPOINT.md §5), version 1.4 (1.1 added `Creds::securebits` and
//! `Creds::dumpable`; a 1.0 image reads as securebits 0 and an unknown dumpable flag; 1.2 added
//! nested pid namespaces: `TreeEntry::{nspid, nspgid, nssid, pid_ns, pid_ns_for_children}` and
//! `Tree::pid_namespaces`; an older image reads as one level, the container's; 1.3 made the
//! per-file digest XXH3-128 instead of SHA-256, so that a 1 GiB page file is checksummed at
//! memory speed while it is written and again before a restore; older images still verify
//! with their SHA-256; 1.4 added open file descriptions shared between descriptors
//! (`Fd::desc`), more kinds of fds, shared mappings and the object files below; 1.5 added
//! zombies, pending signals, interval timers, the stop signal, subreaper and pdeathsig, all
//! empty in older images):
//!
//! ```text
//! <dir>/manifest.json            format, engine, created, host record, files [{name, size, xxh3_128, xxh3_128_chunks}]
//! <dir>/tree.json                root pid, tasks (container-level pid, ppid, pgid, sid, NSpid
//!                                vectors from the container's level down), pid namespaces
//! <dir>/task/<pid>.json          everything about one process but its memory contents
//! <dir>/task/<pid>.pagemap.json  [{vaddr, nr_pages}] in page-file order
//! <dir>/task/<pid>.pages         raw 4 KiB pages
//! <dir>/files/pipe-<ino>.data    bytes buffered in a pipe or FIFO (only when there are some)
//! <dir>/files/ghost-<id>.data    contents of a file that was unlinked while open
//! <dir>/shmem/<id>.json          a shared anonymous memory object: size + pagemap (offsets)
//! <dir>/shmem/<id>.pages         its non-zero pages
//! ```
//!
//! The manifest is written last (by rename), so a directory without one is an unfinished dump.
//! Page files are streamed ([`ImageWriter::stream`]): the dump never holds a whole page file,
//! and the digest is computed on each run as it is written, for the whole file and for each
//! 16 MiB chunk of a larger one (`xxh3_128_chunks`: verified on two CPUs; a reader that does
//! not know them checks the whole-file digest). The digest guards against
//! corruption and truncation, not against a forger (who could rewrite the manifest as well).
//! `verify` reads every file listed and compares size and digest before a single process is
//! created; `load` returns the decoded image only after `verify` passed.

use std::collections::BTreeMap;
use std::io::{IoSlice, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::Xxh3;

use super::host::HostRecord;
use super::CheckpointError;

pub const FORMAT_MAJOR: u32 = 1;
pub const FORMAT_MINOR: u32 = 5;
pub const MANIFEST: &str = "manifest.json";
pub const TREE: &str = "tree.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FormatVersion {
    pub major: u32,
    pub minor: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// XXH3-128 of the contents, hex (format 1.3 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3_128: Option<String>,
    /// SHA-256 of the contents, hex (formats 1.0 to 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// XXH3-128 of each [`CHUNK`] bytes, hex, for files larger than one chunk: lets a reader
    /// verify a large page file on several CPUs. Optional: `xxh3_128` covers the whole file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xxh3_128_chunks: Vec<String>,
}

/// The chunk size of [`FileEntry::xxh3_128_chunks`].
pub const CHUNK: u64 = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: FormatVersion,
    pub engine: String,
    pub created: String,
    pub host: HostRecord,
    pub files: Vec<FileEntry>,
}

/// The process tree. Pids are those of the container's pid namespace (the namespace of the
/// root task); the host pids at dump time are kept for diagnostics only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tree {
    pub root: i32,
    /// How many pid-namespace levels lay above the container's, as seen by the dumper.
    pub host_levels: usize,
    pub tasks: Vec<TreeEntry>,
    /// Every pid namespace of the tree, the container's first (format 1.2; empty in older
    /// images, which have one level).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pid_namespaces: Vec<PidNs>,
    /// Exited, unreaped children (format 1.5): restored as processes that die the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zombies: Vec<ZombieEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ZombieEntry {
    #[serde(flatten)]
    pub entry: TreeEntry,
    /// The wait status its parent will read: exit code << 8, or the killing signal.
    pub status: i32,
}

/// One pid namespace of the tree. Ids are the nsfs inodes at dump time: they only name the
/// namespace inside the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PidNs {
    pub id: u64,
    /// 0 = the container's namespace, 1 = a namespace created inside it, ...
    pub level: usize,
    /// None for the container's namespace.
    pub parent: Option<u64>,
    /// Container-level pid of its init (pid 1 there); None for a namespace no task lives in yet
    /// (created by `unshare(CLONE_NEWPID)`, only someone's pid_for_children) and for the
    /// container's namespace when its init is outside the image.
    pub init: Option<i32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TreeEntry {
    pub pid: i32,
    /// 0 for the root (its parent is outside the image).
    pub ppid: i32,
    /// 0 when the leader is outside the container's pid namespace.
    pub pgid: i32,
    pub sid: i32,
    pub host_pid: i32,
    /// NSpid from the container's level down to the task's own namespace (`nspid[0] == pid`,
    /// the last is the innermost pid), as /proc/<pid>/status shows it inside the container.
    /// Format 1.2; empty in older images, meaning `[pid]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nspid: Vec<i32>,
    /// NSpgid / NSsid over the same levels (0 where the leader is not visible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nspgid: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nssid: Vec<i32>,
    /// Its pid namespace (a `PidNs::id`); 0 in older images (the container's).
    #[serde(default)]
    pub pid_ns: u64,
    /// Where its next child would be born, when that is not `pid_ns` (after `setns` or
    /// `unshare(CLONE_NEWPID)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns_for_children: Option<u64>,
}

impl TreeEntry {
    /// The pid vector from the container's level down (`[pid]` for pre-1.2 images).
    pub fn levels(&self) -> Vec<i32> {
        if self.nspid.is_empty() {
            vec![self.pid]
        } else {
            self.nspid.clone()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// Credentials of one task (per thread in general; v1 tasks have one thread).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Creds {
    /// real, effective, saved, fs.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// PR_GET_SECUREBITS (format 1.1; 0 in older images).
    #[serde(default)]
    pub securebits: u32,
    /// PR_GET_DUMPABLE: 0, 1 or 2 (suid_dumpable); None when not recorded (format 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumpable: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigAction {
    pub signo: i32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rseq {
    pub ptr: u64,
    pub len: u32,
    pub sig: u32,
}

/// The mm_struct fields PR_SET_MM_MAP restores.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VmaKind {
    /// Private anonymous memory (incl. [heap], [stack]); content in the page file.
    Anon,
    /// Private file mapping; only pages written since (COWed) are in the page file.
    FilePrivate,
    /// MAP_SHARED file mapping: the file is mapped again, its pages live in the file.
    FileShared,
    /// MAP_SHARED anonymous memory (shmem, "/dev/zero (deleted)") or memfd: one object per
    /// `Vma::shmem` id, mapped by every VMA and task that shared it; pages in shmem/<id>.pages.
    Shmem,
    /// A read-only shared file mapping as format 1.3 wrote it: restored as `FileShared`.
    FileSharedRo,
    Vvar,
    VvarVclock,
    Vdso,
    /// The fixed legacy page; nothing to restore.
    Vsyscall,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// smaps permission string ("r-xp").
    pub perms: String,
    pub offset: u64,
    pub kind: VmaKind,
    /// File path or pseudo name ("[heap]", "[stack]"), empty for anonymous memory.
    pub name: String,
    pub vmflags: Vec<String>,
    /// For file mappings: size, mtime (ns) and inode of the file at dump time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileIdentity>,
    /// For `Shmem`, and a memfd mapped privately (`FilePrivate`): the shared memory object's id
    /// (its inode number at dump; format 1.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shmem: Option<u64>,
    /// For a mapping of a file unlinked since (named "<path> (deleted)"): the file, copied into
    /// the image and created, mapped and unlinked again at restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ghost: Option<GhostFile>,
}

/// A file unlinked while mapped: its contents are in files/ghost-<id>.data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GhostFile {
    pub id: u32,
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

impl Vma {
    /// An anonymous `rw-p` mapping of `[start, end)` with nothing else set (tests).
    #[cfg(test)]
    pub(crate) fn test_anon(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            perms: "rw-p".into(),
            offset: 0,
            kind: VmaKind::Anon,
            name: String::new(),
            vmflags: vec![],
            file: None,
            shmem: None,
            ghost: None,
        }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// PROT_* bits from the permission string.
    pub fn prot(&self) -> i32 {
        let b = self.perms.as_bytes();
        let mut p = 0;
        if b.first() == Some(&b'r') {
            p |= libc::PROT_READ;
        }
        if b.get(1) == Some(&b'w') {
            p |= libc::PROT_WRITE;
        }
        if b.get(2) == Some(&b'x') {
            p |= libc::PROT_EXEC;
        }
        p
    }
    pub fn growsdown(&self) -> bool {
        self.vmflags.iter().any(|f| f == "gd")
    }
    /// MAP_SHARED (the file or shmem object is mapped again, nothing is copied into it).
    pub fn is_shared(&self) -> bool {
        matches!(self.kind, VmaKind::FileShared | VmaKind::FileSharedRo | VmaKind::Shmem)
    }
    /// The mapping may be made writable (smaps "mw"): a shared file must be opened O_RDWR.
    pub fn may_write(&self) -> bool {
        self.vmflags.iter().any(|f| f == "mw")
    }
}

/// A shared anonymous memory object (shmem/<id>.json); its pages are in shmem/<id>.pages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShmemObject {
    pub id: u64,
    /// Size of the object (i_size of the shmem file) in bytes.
    pub size: u64,
    /// Non-zero pages: `vaddr` is the byte offset in the object.
    pub pagemap: Vec<PagemapEntry>,
    /// A memfd: its name (without "/memfd:") and seals (F_GET_SEALS); None for anonymous
    /// shared memory ("/dev/zero (deleted)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memfd: Option<String>,
    #[serde(default)]
    pub seals: u32,
}

pub fn shmem_json(id: u64) -> String {
    format!("shmem/{id}.json")
}
pub fn shmem_pages(id: u64) -> String {
    format!("shmem/{id}.pages")
}
pub fn pipe_data(ino: u64) -> String {
    format!("files/pipe-{ino}.data")
}
pub fn socket_data(ino: u64) -> String {
    format!("files/sock-{ino}.data")
}
pub fn ghost_data(id: u32) -> String {
    format!("files/ghost-{id}.data")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileIdentity {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

/// One open descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FdKind {
    /// /dev/null, reopened with the same flags.
    DevNull,
    /// A regular file, reopened by path (never truncated) at the same offset.
    Regular { path: String, pos: u64 },
    /// A pipe or terminal passed in from outside (stdio): the restorer supplies a descriptor
    /// for `key` ("pipe:[123]", "/dev/pts/0").
    External { key: String },
    /// A directory (O_DIRECTORY), reopened by path at the same offset.
    Directory { path: String, pos: u64 },
    /// A character device that is not a terminal (/dev/zero, /dev/urandom, ...), reopened by
    /// path; the restore checks the node still has device number `rdev`.
    Device { path: String, rdev: u64 },
    /// A regular file unlinked while open ("ghost"): its contents are in files/ghost-<id>.data;
    /// the restore creates it again (at `path` when that name is free), opens it, unlinks it.
    Ghost {
        id: u32,
        path: String,
        pos: u64,
        /// st_mode permission bits, owner and size at dump.
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
    },
    /// One end of a pipe that is not the container's stdio (the end is in `Fd::flags`).
    /// `data` bytes were buffered in it (files/pipe-<ino>.data); `size` is F_GETPIPE_SZ.
    Pipe { ino: u64, size: u32, data: u64 },
    /// A memfd: the shared memory object `id` (shmem/<id>.json, also mapped by any VMA with
    /// that `Vma::shmem`), opened again at offset `pos`.
    Memfd { id: u64, pos: u64 },
    /// An eventfd: its counter and EFD_SEMAPHORE.
    EventFd { count: u64, semaphore: bool },
    /// A signalfd: the (kernel, 64-bit) mask of the signals it reads.
    SignalFd { mask: u64 },
    /// A timerfd: clock, remaining time and interval (ns; 0: disarmed), expirations not read
    /// yet. Armed again, relative, when the restored tree is about to run.
    TimerFd {
        clock: i32,
        value_ns: u64,
        interval_ns: u64,
        ticks: u64,
    },
    /// An epoll instance and its registrations, each added again by the task that registered
    /// it, through the same descriptor number.
    Epoll { targets: Vec<EpollTarget> },
    /// A unix socket: a socket pair end (`peer`: the other end's inode, u64::MAX when that end
    /// was closed), a listening (`backlog`) or bound (`name`: a path, "@..." abstract) socket,
    /// or an unbound one. `queue`: lengths of the messages waiting to be read (one entry for a
    /// stream socket), their bytes in files/sock-<ino>.data; `shutdown`: RCV 1 | SEND 2;
    /// `file`: mode, owner and group of a path name's socket file.
    Unix {
        ino: u64,
        sock_type: i32,
        name: String,
        peer: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backlog: Option<u32>,
        shutdown: u8,
        queue: Vec<u32>,
        /// Descriptors in flight with each message of `queue` (open file descriptions, `Fd::desc`
        /// of descriptors some task also holds); empty: none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        queue_fds: Vec<Vec<u32>>,
        passcred: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<(u32, u32, u32)>,
    },
    /// A TCP socket that listens (no connection waiting) or is not connected, or a UDP socket
    /// (bound, connected or not, nothing queued): made again with its address and options.
    Inet {
        ino: u64,
        /// libc::AF_INET or AF_INET6.
        family: i32,
        /// "tcp" or "udp".
        proto: String,
        /// Local address ("0.0.0.0:8080", "[::]:0"); port 0: not bound.
        local: String,
        /// The address a UDP socket is connected to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backlog: Option<u32>,
        /// SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_BROADCAST, IPV6_V6ONLY, TCP_NODELAY.
        options: Vec<String>,
    },
    /// An inotify instance and its watches (queued events are not kept).
    Inotify { watches: Vec<InotifyWatch> },
    /// A FIFO (named pipe) opened by path; buffered data and size as for `Pipe`.
    Fifo {
        path: String,
        ino: u64,
        size: u32,
        data: u64,
    },
}

/// One inotify watch: descriptor, mask and the watched path (found from the file handle).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InotifyWatch {
    pub wd: i32,
    pub mask: u32,
    pub path: String,
}

/// One registration of an epoll instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpollTarget {
    /// The target descriptor number in task `pid` (the key epoll knows it by).
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    /// Container-level pid of a task holding both the epoll instance and `tfd`.
    pub pid: i32,
}

impl FdKind {
    /// The path a descriptor was opened at, for the kinds opened by path.
    pub fn path_mut(&mut self) -> Option<&mut String> {
        match self {
            FdKind::Regular { path, .. }
            | FdKind::Directory { path, .. }
            | FdKind::Device { path, .. }
            | FdKind::Ghost { path, .. }
            | FdKind::Fifo { path, .. } => Some(path),
            FdKind::DevNull
            | FdKind::External { .. }
            | FdKind::Pipe { .. }
            | FdKind::Memfd { .. }
            | FdKind::EventFd { .. }
            | FdKind::SignalFd { .. }
            | FdKind::TimerFd { .. }
            | FdKind::Epoll { .. }
            | FdKind::Unix { .. }
            | FdKind::Inotify { .. }
            | FdKind::Inet { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fd {
    pub fd: i32,
    /// open(2) flags from fdinfo (incl. O_CLOEXEC).
    pub flags: u32,
    #[serde(flatten)]
    pub kind: FdKind,
    /// The open file description (format 1.4): descriptors with the same non-zero `desc`, in
    /// one task or several, share one description (offset, status flags) and are restored as
    /// one. 0: a description of its own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub desc: u32,
    /// Locks held through this description (the same list on every descriptor sharing it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<FileLock>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// flock(2): belongs to the open file description.
    Flock,
    /// fcntl F_SETLK: belongs to the process `FileLock::pid`.
    Posix,
    /// fcntl F_OFD_SETLK: belongs to the open file description.
    Ofd,
}

/// A file lock as /proc/<pid>/fdinfo shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileLock {
    pub kind: LockKind,
    pub write: bool,
    pub start: u64,
    /// Bytes from `start`; 0: to the end of the file, whatever its size.
    pub len: u64,
    /// For POSIX locks: the owner's container-level pid (0 otherwise).
    pub pid: i32,
}

/// One queued signal (format 1.5), in queue order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingSignal {
    /// The process-wide queue (kill, sigqueue) rather than the thread's own (tgkill).
    pub shared: bool,
    pub signo: i32,
    /// The raw 128-byte siginfo_t, hex (si_code, si_pid, si_uid, si_value ... as queued).
    pub siginfo: String,
}

/// An armed interval timer (format 1.5): ITIMER_REAL 0, VIRTUAL 1, PROF 2; microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Itimer {
    pub which: i32,
    pub interval_us: u64,
    pub value_us: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// Everything about one single-threaded process except its page contents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskImage {
    pub pid: i32,
    /// NSpid at dump time, host view, outermost first.
    pub host_nspid: Vec<i32>,
    pub comm: String,
    pub exe: String,
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub personality: u64,
    /// The nice value (0 in images written before it was recorded).
    #[serde(default)]
    pub nice: i32,
    pub creds: Creds,
    pub rlimits: Vec<Rlimit>,
    pub sigmask: u64,
    pub sigactions: Vec<SigAction>,
    pub altstack: AltStack,
    /// Registers with the interrupted-syscall restart already applied (CHECKPOINT.md §1.4).
    pub regs: Regs,
    /// The raw NT_X86_XSTATE area, hex.
    pub xstate: String,
    pub rseq: Option<Rseq>,
    pub robust_list: (u64, u64),
    pub tid_address: u64,
    pub mm: MmFields,
    pub auxv: Vec<u64>,
    pub vmas: Vec<Vma>,
    pub fds: Vec<Fd>,
    /// Queued signals, thread queue and process queue (format 1.5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingSignal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub itimers: Vec<Itimer>,
    /// In a group stop by this signal at dump time (format 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// PR_SET_CHILD_SUBREAPER (format 1.5).
    #[serde(default)]
    pub child_subreaper: bool,
    /// PR_SET_PDEATHSIG, 0 for none (format 1.5).
    #[serde(default)]
    pub pdeathsig: i32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PagemapEntry {
    pub vaddr: u64,
    pub nr_pages: u64,
}

pub fn task_json(pid: i32) -> String {
    format!("task/{pid}.json")
}
pub fn task_pagemap(pid: i32) -> String {
    format!("task/{pid}.pagemap.json")
}
pub fn task_pages(pid: i32) -> String {
    format!("task/{pid}.pages")
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn xxh3_hex(h: &Xxh3) -> String {
    format!("{:032x}", h.digest128())
}

/// Writes image files into a directory, remembering size and digest of each for the manifest.
pub struct ImageWriter {
    dir: PathBuf,
    files: Vec<FileEntry>,
    /// Every file created, finished or not (what `abandon` removes).
    created: Vec<String>,
    /// The directories `create` made (`dir` and any missing ancestor), parents first: what
    /// `abandon` removes when they are left empty.
    made: Vec<PathBuf>,
}

/// `create_dir_all`, returning the directories it made, parents first (none if `dir` existed).
pub fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut made: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
        .map(Path::to_path_buf)
        .collect();
    made.reverse();
    std::fs::create_dir_all(dir)?;
    Ok(made)
}

/// Remove the directories [`create_dirs`] made, deepest first, those left empty only; best effort.
pub fn remove_made_dirs(made: &[PathBuf]) {
    for d in made.iter().rev() {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
    }
}

/// One image file being written piece by piece (a page file): digested as it goes.
pub struct StreamFile {
    name: String,
    path: PathBuf,
    file: std::fs::File,
    hasher: Xxh3,
    size: u64,
    /// The digest of the current chunk, and those of the chunks before.
    chunk: Xxh3,
    chunks: Vec<String>,
}

impl StreamFile {
    /// Append `bufs` in order (one writev where the kernel takes it all).
    pub fn write_all_vectored(&mut self, bufs: &[IoSlice<'_>]) -> Result<(), CheckpointError> {
        let at = self.append(bufs);
        write_all_at(&self.file, &self.path, bufs, at)
    }

    /// Account for `bufs` as the next bytes of the file (size and digest, in order) and return
    /// the offset they belong at; the caller writes them there with [`write_all_at`], from any
    /// thread, through [`StreamFile::writer`].
    pub fn append(&mut self, bufs: &[IoSlice<'_>]) -> u64 {
        let at = self.size;
        for b in bufs {
            self.hasher.update(b);
            let mut rest: &[u8] = b;
            while !rest.is_empty() {
                let room = (CHUNK - self.size % CHUNK) as usize;
                let (now, later) = rest.split_at(room.min(rest.len()));
                self.chunk.update(now);
                self.size += now.len() as u64;
                if self.size.is_multiple_of(CHUNK) {
                    self.chunks.push(xxh3_hex(&self.chunk));
                    self.chunk.reset();
                }
                rest = later;
            }
        }
        at
    }

    /// Another descriptor of the file and its path, for writer threads.
    pub fn writer(&self) -> Result<(std::fs::File, PathBuf), CheckpointError> {
        let file = self.file.try_clone().map_err(|source| CheckpointError::Image {
            path: self.path.clone(),
            source,
        })?;
        Ok((file, self.path.clone()))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

/// pwritev `bufs` at `offset` of `file` (`path` for errors), resuming after short writes.
pub fn write_all_at(
    file: &std::fs::File,
    path: &Path,
    bufs: &[IoSlice<'_>],
    offset: u64,
) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Image {
        path: path.to_path_buf(),
        source,
    };
    let mut offset = offset;
    let mut i = 0; // first slice not fully written
    let mut skip = 0; // bytes of bufs[i] already written
    while i < bufs.len() {
        if skip == bufs[i].len() {
            i += 1;
            skip = 0;
            continue;
        }
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity((bufs.len() - i).min(1024));
        iov.push(IoSlice::new(&bufs[i][skip..]));
        iov.extend(bufs[i + 1..].iter().take(1023).map(|b| IoSlice::new(b)));
        let mut n = match nix::sys::uio::pwritev(file, &iov, offset as i64) {
            Ok(0) => return Err(io(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io(e.into())),
        };
        offset += n as u64;
        while n > 0 {
            let left = bufs[i].len() - skip;
            if n >= left {
                n -= left;
                i += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

impl ImageWriter {
    pub fn create(dir: &Path) -> Result<ImageWriter, CheckpointError> {
        let io = |source| CheckpointError::Image {
            path: dir.to_path_buf(),
            source,
        };
        let made = create_dirs(dir).map_err(io)?;
        let writer = ImageWriter {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            created: Vec::new(),
            made,
        };
        if dir.join(MANIFEST).exists() {
            return Err(CheckpointError::ImageExists(dir.to_path_buf()));
        }
        if let Err(e) = std::fs::create_dir_all(dir.join("task")) {
            writer.abandon();
            return Err(io(e));
        }
        Ok(writer)
    }

    pub fn write_bytes(&mut self, name: &str, data: &[u8]) -> Result<(), CheckpointError> {
        let mut s = self.stream(name)?;
        s.write_all_vectored(&[IoSlice::new(data)])?;
        self.close(s)
    }

    pub fn write_json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), CheckpointError> {
        let data = serde_json::to_vec_pretty(value).map_err(|e| CheckpointError::Encode(name.to_string(), e))?;
        self.write_bytes(name, &data)
    }

    /// Start writing `name` piece by piece; [`ImageWriter::close`] records it.
    pub fn stream(&mut self, name: &str) -> Result<StreamFile, CheckpointError> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| CheckpointError::Image {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let file = std::fs::File::create(&path).map_err(|source| CheckpointError::Image {
            path: path.clone(),
            source,
        })?;
        self.created.push(name.to_string());
        Ok(StreamFile {
            name: name.to_string(),
            path,
            file,
            hasher: Xxh3::new(),
            size: 0,
            chunk: Xxh3::new(),
            chunks: Vec::new(),
        })
    }

    pub fn close(&mut self, s: StreamFile) -> Result<(), CheckpointError> {
        let mut chunks = s.chunks;
        if !s.size.is_multiple_of(CHUNK) {
            chunks.push(xxh3_hex(&s.chunk));
        }
        if chunks.len() < 2 {
            chunks.clear(); // one chunk is the whole file
        }
        self.files.push(FileEntry {
            name: s.name,
            size: s.size,
            xxh3_128: Some(xxh3_hex(&s.hasher)),
            sha256: None,
            xxh3_128_chunks: chunks,
        });
        Ok(())
    }

    /// Remove what was written so far (a dump that failed half-way); best effort.
    pub fn abandon(self) {
        let mut dirs = vec![self.dir.join("task")];
        for name in &self.created {
            let path = self.dir.join(name);
            let _ = std::fs::remove_file(&path);
            dirs.extend(
                path.ancestors()
                    .skip(1)
                    .take_while(|d| *d != self.dir)
                    .map(Path::to_path_buf),
            );
        }
        // Deepest first; only the ones left empty go.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.dedup();
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
        remove_made_dirs(&self.made);
    }

    /// Write the manifest last, atomically (on failure, remove what was written).
    pub fn finish(self, host: HostRecord) -> Result<(), CheckpointError> {
        let dir = self.dir.clone();
        let created = self.created.clone();
        let made = self.made.clone();
        self.write_manifest(host).inspect_err(|_| {
            let _ = std::fs::remove_file(dir.join(".manifest.json.tmp"));
            ImageWriter {
                dir,
                files: Vec::new(),
                created,
                made,
            }
            .abandon();
        })
    }

    fn write_manifest(self, host: HostRecord) -> Result<(), CheckpointError> {
        let manifest = Manifest {
            format: FormatVersion {
                major: FORMAT_MAJOR,
                minor: FORMAT_MINOR,
            },
            engine: format!("amber {}", env!("CARGO_PKG_VERSION")),
            created: chrono::Utc::now().to_rfc3339(),
            host,
            files: self.files,
        };
        let data = serde_json::to_vec_pretty(&manifest).map_err(|e| CheckpointError::Encode(MANIFEST.into(), e))?;
        let tmp = self.dir.join(".manifest.json.tmp");
        let path = self.dir.join(MANIFEST);
        std::fs::write(&tmp, data).map_err(|source| CheckpointError::Image {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| CheckpointError::Image { path, source })
    }
}

/// A decoded image (after `verify`).
#[derive(Debug, Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tree: Tree,
    pub tasks: BTreeMap<i32, TaskImage>,
    pub pagemaps: BTreeMap<i32, Vec<PagemapEntry>>,
}

impl Image {
    pub fn pages_path(&self, pid: i32) -> PathBuf {
        self.dir.join(task_pages(pid))
    }

    /// The path of an object file the manifest lists with `size` bytes (so `verify` checked
    /// its digest).
    pub fn object_path(&self, name: &str, size: u64) -> Result<PathBuf, CheckpointError> {
        match self.manifest.files.iter().find(|f| f.name == name) {
            Some(f) if f.size == size => Ok(self.dir.join(name)),
            Some(f) => Err(CheckpointError::Corrupt(format!(
                "{name}: {} bytes, the image describes {size}",
                f.size
            ))),
            None => Err(CheckpointError::Corrupt(format!("the manifest does not list {name}"))),
        }
    }

    /// A shared memory object and the path of its page file.
    pub fn shmem(&self, id: u64) -> Result<(ShmemObject, PathBuf), CheckpointError> {
        let name = shmem_json(id);
        if !self.manifest.files.iter().any(|f| f.name == name) {
            return Err(CheckpointError::Corrupt(format!("the manifest does not list {name}")));
        }
        let obj: ShmemObject = read_json(&self.dir, &name)?;
        let outside = || CheckpointError::Corrupt(format!("{name}: pages outside the object"));
        let end = obj.size.div_ceil(4096).checked_mul(4096).ok_or_else(outside)?;
        let mut bytes = 0u64;
        for e in &obj.pagemap {
            let (_, len) = entry_range(e).ok_or_else(outside)?;
            if e.vaddr.checked_add(len).is_none_or(|to| to > end) {
                return Err(outside());
            }
            bytes = bytes.checked_add(len).ok_or_else(outside)?;
        }
        if obj.id != id {
            return Err(outside());
        }
        let pages = self.object_path(&shmem_pages(id), bytes)?;
        Ok((obj, pages))
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest, CheckpointError> {
    let path = dir.join(MANIFEST);
    let data = std::fs::read(&path).map_err(|source| CheckpointError::Image {
        path: path.clone(),
        source,
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&data).map_err(|e| CheckpointError::Corrupt(format!("{}: {e}", path.display())))?;
    if manifest.format.major != FORMAT_MAJOR {
        return Err(CheckpointError::Corrupt(format!(
            "{}: image format {}.{} is not readable by this amber (format {FORMAT_MAJOR}.x)",
            path.display(),
            manifest.format.major,
            manifest.format.minor
        )));
    }
    Ok(manifest)
}

/// The digest a manifest entry names: (algorithm, expected hex).
fn expected_digest(entry: &FileEntry) -> Result<(&'static str, &str), CheckpointError> {
    match (&entry.xxh3_128, &entry.sha256) {
        (Some(d), _) => Ok(("XXH3-128", d)),
        (None, Some(d)) => Ok(("SHA-256", d)),
        (None, None) => Err(CheckpointError::Corrupt(format!(
            "the manifest gives no checksum for {}",
            entry.name
        ))),
    }
}

/// What identifies one version of a file: device, inode, size, mtime and ctime (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

/// Files this process, or the process it was forked from, has verified: (identity when it was
/// read, its digest). `amber restore` verifies the image before it makes anything, then the
/// restorer, a fork of it, loads the same image: a file that has not changed since (same
/// inode, size, mtime and ctime) is not read and digested a second time.
static VERIFIED: std::sync::Mutex<Vec<(FileStamp, String)>> = std::sync::Mutex::new(Vec::new());

/// Size, digest (hex) and identity of a file, read in 128 KiB pieces (they stay in the cache
/// between the copy and the digest).
fn digest_file(path: &Path, algorithm: &str) -> std::io::Result<(u64, String, FileStamp)> {
    let mut f = std::fs::File::open(path)?;
    let stamp = FileStamp::of(&f.metadata()?);
    let mut buf = vec![0u8; 128 << 10];
    let mut size = 0u64;
    let mut sha = (algorithm == "SHA-256").then(Sha256::new);
    let mut xxh = Xxh3::new();
    loop {
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        size += n as u64;
        match &mut sha {
            Some(h) => h.update(&buf[..n]),
            None => xxh.update(&buf[..n]),
        }
    }
    Ok(match sha {
        Some(h) => (size, to_hex(&h.finalize()), stamp),
        None => (size, xxh3_hex(&xxh), stamp),
    })
}

/// Check every file of the manifest (presence, size, digest) and that the image was made on a
/// compatible host. Nothing is decoded beyond the manifest.
pub fn verify(dir: &Path) -> Result<Manifest, CheckpointError> {
    let manifest = read_manifest(dir)?;
    verify_files(dir, &manifest)?;
    super::host::check_compatible(&manifest.host, &HostRecord::current()?)?;
    Ok(manifest)
}

/// The checksum half of `verify` (no host check), for `inspect` and tests.
pub fn verify_files(dir: &Path, manifest: &Manifest) -> Result<(), CheckpointError> {
    for entry in &manifest.files {
        if entry.name.contains("..") || entry.name.starts_with('/') {
            return Err(CheckpointError::Corrupt(format!(
                "manifest lists a path outside the image: {}",
                entry.name
            )));
        }
        let path = dir.join(&entry.name);
        let (algorithm, expected) = expected_digest(entry)?;
        let known = |stamp: &FileStamp| {
            VERIFIED
                .lock()
                .is_ok_and(|v| v.iter().any(|(s, d)| s == stamp && d.eq_ignore_ascii_case(expected)))
        };
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == entry.size && known(&FileStamp::of(&m))) {
            continue;
        }
        if !entry.xxh3_128_chunks.is_empty() && entry.xxh3_128.is_some() {
            let stamp = verify_chunks(&path, entry)?;
            if let Ok(mut v) = VERIFIED.lock() {
                v.push((stamp, expected.to_string()));
            }
            continue;
        }
        let (size, digest, stamp) = digest_file(&path, algorithm).map_err(|source| CheckpointError::Image {
            path: path.clone(),
            source,
        })?;
        if size != entry.size {
            return Err(CheckpointError::Corrupt(format!(
                "{}: {size} bytes, the manifest says {} (truncated or extended)",
                path.display(),
                entry.size
            )));
        }
        if !digest.eq_ignore_ascii_case(expected) {
            return Err(CheckpointError::Corrupt(format!(
                "{}: checksum mismatch, {algorithm} {digest} where the manifest has {expected}",
                path.display(),
            )));
        }
        if let Ok(mut v) = VERIFIED.lock() {
            v.push((stamp, digest));
        }
    }
    Ok(())
}

/// Verify a file by its chunk digests, on two threads (even and odd chunks); returns its
/// identity. The chunks cover the whole file, so this is as strong as the whole-file digest.
fn verify_chunks(path: &Path, entry: &FileEntry) -> Result<FileStamp, CheckpointError> {
    use std::os::unix::fs::FileExt;
    let io = |source| CheckpointError::Image {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let stamp = FileStamp::of(&file.metadata().map_err(io)?);
    if stamp.size != entry.size {
        return Err(CheckpointError::Corrupt(format!(
            "{}: {} bytes, the manifest says {} (truncated or extended)",
            path.display(),
            stamp.size,
            entry.size
        )));
    }
    if entry.xxh3_128_chunks.len() as u64 != entry.size.div_ceil(CHUNK) {
        return Err(CheckpointError::Corrupt(format!(
            "{}: the manifest lists {} chunk checksums for {} bytes",
            entry.name,
            entry.xxh3_128_chunks.len(),
            entry.size
        )));
    }
    let check = |first: usize| -> Result<(), CheckpointError> {
        let mut buf = vec![0u8; 128 << 10];
        for (i, expected) in entry.xxh3_128_chunks.iter().enumerate().skip(first).step_by(2) {
            let start = i as u64 * CHUNK;
            let end = (start + CHUNK).min(entry.size);
            let mut h = Xxh3::new();
            let mut at = start;
            while at < end {
                let n = ((end - at) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], at).map_err(io)?;
                h.update(&buf[..n]);
                at += n as u64;
            }
            let digest = xxh3_hex(&h);
            if !digest.eq_ignore_ascii_case(expected) {
                return Err(CheckpointError::Corrupt(format!(
                    "{}: checksum mismatch, XXH3-128 of bytes {start:#x}-{end:#x} is {digest}, the manifest has {}",
                    path.display(),
                    expected
                )));
            }
        }
        Ok(())
    };
    let (even, odd) = std::thread::scope(|s| {
        let odd = s.spawn(|| check(1));
        (check(0), odd.join())
    });
    even?;
    odd.unwrap_or_else(|_| {
        Err(CheckpointError::Corrupt(format!(
            "{}: verifier thread failed",
            entry.name
        )))
    })?;
    Ok(stamp)
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T, CheckpointError> {
    let path = dir.join(name);
    let data = std::fs::read(&path).map_err(|source| CheckpointError::Image {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|e| CheckpointError::Corrupt(format!("{}: {e}", path.display())))
}

/// Decode an image whose files were already checked (by `verify` or `verify_files`).
fn decode(dir: &Path, manifest: Manifest) -> Result<Image, CheckpointError> {
    let listed = |name: &str| manifest.files.iter().any(|f| f.name == name);
    let need = |name: String| -> Result<String, CheckpointError> {
        if listed(&name) {
            Ok(name)
        } else {
            Err(CheckpointError::Corrupt(format!("the manifest does not list {name}")))
        }
    };
    let tree: Tree = read_json(dir, &need(TREE.into())?)?;
    let mut tasks = BTreeMap::new();
    let mut pagemaps = BTreeMap::new();
    for t in &tree.tasks {
        let task: TaskImage = read_json(dir, &need(task_json(t.pid))?)?;
        let pagemap: Vec<PagemapEntry> = read_json(dir, &need(task_pagemap(t.pid))?)?;
        let pages = need(task_pages(t.pid))?;
        let size = manifest
            .files
            .iter()
            .find(|f| f.name == pages)
            .map(|f| f.size)
            .unwrap_or(0);
        check_task(&task_json(t.pid), &task)?;
        let want = check_pagemap(&task_pagemap(t.pid), &task, &pagemap)?;
        if size != want {
            return Err(CheckpointError::Corrupt(format!(
                "{pages}: {size} bytes but its pagemap describes {want}"
            )));
        }
        tasks.insert(t.pid, task);
        pagemaps.insert(t.pid, pagemap);
    }
    Ok(Image {
        dir: dir.to_path_buf(),
        manifest,
        tree,
        tasks,
        pagemaps,
    })
}

/// (start, bytes) of a pagemap entry, `None` if the byte count overflows.
fn entry_range(e: &PagemapEntry) -> Option<(u64, u64)> {
    Some((e.vaddr, e.nr_pages.checked_mul(4096)?))
}

/// Every pagemap entry must lie inside one private VMA of its task (the only memory filled from
/// the page file); returns the bytes the pagemap describes.
fn check_pagemap(name: &str, task: &TaskImage, pagemap: &[PagemapEntry]) -> Result<u64, CheckpointError> {
    let mut total = 0u64;
    for (i, e) in pagemap.iter().enumerate() {
        let corrupt = |what: &str| {
            CheckpointError::Corrupt(format!(
                "{name}: entry {i} (vaddr {:#x}, {} pages) {what}",
                e.vaddr, e.nr_pages
            ))
        };
        let (start, len) = entry_range(e).ok_or_else(|| corrupt("overflows"))?;
        let end = start.checked_add(len).ok_or_else(|| corrupt("overflows"))?;
        if start % 4096 != 0 {
            return Err(corrupt("is not page-aligned"));
        }
        let inside = task
            .vmas
            .iter()
            .filter(|v| matches!(v.kind, VmaKind::Anon | VmaKind::FilePrivate))
            .any(|v| v.start <= start && end <= v.end);
        if !inside {
            return Err(corrupt("is not inside one private mapping"));
        }
        total = total.checked_add(len).ok_or_else(|| corrupt("overflows"))?;
    }
    Ok(total)
}

/// Values restore uses as shifts or signal numbers, checked before anything is cloned.
fn check_task(name: &str, task: &TaskImage) -> Result<(), CheckpointError> {
    let valid = |sig: i32| (1..=64).contains(&sig);
    if let Some(sig) = task.stop_signal.filter(|&s| !valid(s)) {
        return Err(CheckpointError::Corrupt(format!(
            "{name}: stop_signal {sig} is not a signal number (1-64)"
        )));
    }
    if let Some((i, p)) = task.pending.iter().enumerate().find(|(_, p)| !valid(p.signo)) {
        return Err(CheckpointError::Corrupt(format!(
            "{name}: pending[{i}].signo {} is not a signal number (1-64)",
            p.signo
        )));
    }
    Ok(())
}

/// `verify` + decode: the only way restore reads an image.
pub fn load(dir: &Path) -> Result<Image, CheckpointError> {
    let manifest = verify(dir)?;
    decode(dir, manifest)
}

/// Load without the host check (inspection of images from elsewhere).
pub fn load_for_inspect(dir: &Path) -> Result<Image, CheckpointError> {
    let manifest = read_manifest(dir)?;
    verify_files(dir, &manifest)?;
    decode(dir, manifest)
}

/// The whole image as one JSON document (for `amber checkpoint-inspect`). Page contents are
/// summarised, not dumped; the xstate is kept as hex.
pub fn inspect_json(dir: &Path) -> Result<serde_json::Value, CheckpointError> {
    let image = load_for_inspect(dir)?;
    let enc = |e| CheckpointError::Encode("inspect".into(), e);
    let mut tasks = Vec::new();
    for (pid, task) in &image.tasks {
        let mut value = serde_json::to_value(task).map_err(enc)?;
        let pagemap = &image.pagemaps[pid];
        value["pagemap"] = serde_json::to_value(pagemap).map_err(enc)?;
        value["pages_bytes"] = (pagemap.iter().map(|e| e.nr_pages).sum::<u64>() * 4096).into();
        tasks.push(value);
    }
    Ok(serde_json::json!({
        "manifest": serde_json::to_value(&image.manifest).map_err(enc)?,
        "tree": serde_json::to_value(&image.tree).map_err(enc)?,
        "tasks": tasks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_task(pid: i32) -> TaskImage {
        TaskImage {
            pid,
            host_nspid: vec![4000 + pid, pid],
            comm: "sh".into(),
            exe: "/bin/busybox".into(),
            cwd: "/".into(),
            root: "/".into(),
            umask: 0o022,
            personality: 0,
            nice: 0,
            creds: Creds::default(),
            rlimits: vec![Rlimit {
                resource: 7,
                soft: 1024,
                hard: 4096,
            }],
            sigmask: 1 << 16,
            sigactions: vec![SigAction {
                signo: 15,
                handler: 0x401000,
                flags: 0x0400_0000,
                restorer: 0x402000,
                mask: 0,
            }],
            altstack: AltStack {
                sp: 0,
                flags: 2,
                size: 0,
            },
            regs: Regs {
                rip: 0x401234,
                ..Default::default()
            },
            xstate: to_hex(&[1, 2, 0xff]),
            rseq: Some(Rseq {
                ptr: 0x5000,
                len: 32,
                sig: 0x53053053,
            }),
            robust_list: (0x6000, 24),
            tid_address: 0x6010,
            mm: MmFields::default(),
            auxv: vec![6, 4096, 0, 0],
            vmas: vec![Vma::test_anon(0x400000, 0x403000)],
            fds: vec![
                Fd {
                    fd: 0,
                    flags: 0o100000,
                    kind: FdKind::DevNull,
                    desc: 1,
                    locks: vec![],
                },
                Fd {
                    fd: 1,
                    flags: 0o100001,
                    kind: FdKind::Regular {
                        path: "/tmp/x".into(),
                        pos: 12,
                    },
                    desc: 2,
                    locks: vec![],
                },
                Fd {
                    fd: 2,
                    flags: 0o1,
                    kind: FdKind::External { key: "pipe:[7]".into() },
                    desc: 0,
                    locks: vec![],
                },
                Fd {
                    fd: 3,
                    flags: 0o4000,
                    kind: FdKind::Pipe {
                        ino: 9,
                        size: 65536,
                        data: 0,
                    },
                    desc: 3,
                    locks: vec![],
                },
            ],
            pending: vec![PendingSignal {
                shared: true,
                signo: 34,
                siginfo: to_hex(&[0x22, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            }],
            itimers: vec![Itimer {
                which: 0,
                interval_us: 0,
                value_us: 1_500_000,
            }],
            stop_signal: Some(19),
            child_subreaper: true,
            pdeathsig: 9,
        }
    }

    fn write_sample(dir: &Path) {
        let mut w = ImageWriter::create(dir).unwrap();
        let task = sample_task(1);
        w.write_json(&task_json(1), &task).unwrap();
        let pagemap = vec![PagemapEntry {
            vaddr: 0x400000,
            nr_pages: 2,
        }];
        w.write_json(&task_pagemap(1), &pagemap).unwrap();
        w.write_bytes(&task_pages(1), &vec![0xab; 8192]).unwrap();
        let tree = Tree {
            root: 1,
            host_levels: 1,
            tasks: vec![TreeEntry {
                pid: 1,
                ppid: 0,
                pgid: 1,
                sid: 1,
                host_pid: 4001,
                ..Default::default()
            }],
            zombies: vec![ZombieEntry {
                entry: TreeEntry {
                    pid: 2,
                    ppid: 1,
                    pgid: 1,
                    sid: 1,
                    host_pid: 4002,
                    ..Default::default()
                },
                status: 3 << 8,
            }],
            ..Default::default()
        };
        w.write_json(TREE, &tree).unwrap();
        w.finish(HostRecord::current().unwrap()).unwrap();
    }

    #[test]
    fn round_trip_and_inspect() {
        let t = tempfile::tempdir().unwrap();
        write_sample(t.path());
        let image = load(t.path()).unwrap();
        assert_eq!(image.tasks[&1], sample_task(1));
        assert_eq!(image.pagemaps[&1][0].nr_pages, 2);
        assert_eq!(image.tree.zombies[0].status, 3 << 8);
        assert_eq!(image.tree.zombies[0].entry.pid, 2);
        assert_eq!(from_hex(&image.tasks[&1].xstate).unwrap(), vec![1, 2, 0xff]);
        let json = inspect_json(t.path()).unwrap();
        assert_eq!(json["tasks"][0]["pages_bytes"], 8192);
        assert_eq!(json["tasks"][0]["fds"][2]["type"], "external");
        assert_eq!(json["tasks"][0]["fds"][3]["type"], "pipe");
        assert_eq!(json["tasks"][0]["fds"][3]["desc"], 3);
        assert!(
            json["tasks"][0]["fds"][2].get("desc").is_none(),
            "no desc: 0 is left out"
        );
        assert_eq!(json["manifest"]["format"]["major"], FORMAT_MAJOR);
        // A second dump into the same directory is refused.
        assert!(matches!(
            ImageWriter::create(t.path()),
            Err(CheckpointError::ImageExists(_))
        ));
    }

    #[test]
    fn tree_entries_of_older_images_have_one_level() {
        // A format 1.1 tree.json: no NSpid vectors, no namespaces.
        let old: Tree = serde_json::from_str(
            r#"{"root":1,"host_levels":1,"tasks":[{"pid":1,"ppid":0,"pgid":1,"sid":1,"host_pid":40}]}"#,
        )
        .unwrap();
        assert_eq!(old.tasks[0].levels(), vec![1]);
        assert_eq!((old.tasks[0].pid_ns, old.pid_namespaces.len()), (0, 0));
        let nested = TreeEntry {
            pid: 7,
            ppid: 1,
            nspid: vec![7, 3, 1],
            nspgid: vec![7, 0, 1],
            nssid: vec![1, 0, 0],
            pid_ns: 99,
            pid_ns_for_children: Some(100),
            ..Default::default()
        };
        let text = serde_json::to_string(&nested).unwrap();
        assert!(text.contains(r#""nspid":[7,3,1]"#), "{text}");
        assert_eq!(serde_json::from_str::<TreeEntry>(&text).unwrap(), nested);
        assert_eq!(nested.levels(), vec![7, 3, 1]);
    }

    #[test]
    fn corruption_is_named() {
        let t = tempfile::tempdir().unwrap();
        write_sample(t.path());
        let pages = t.path().join(task_pages(1));
        let mut data = std::fs::read(&pages).unwrap();
        data[5] ^= 1;
        std::fs::write(&pages, &data).unwrap();
        let e = verify(t.path()).unwrap_err().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("XXH3-128") && e.contains("1.pages"),
            "{e}"
        );
        data.pop();
        std::fs::write(&pages, &data).unwrap();
        let e = verify(t.path()).unwrap_err().to_string();
        assert!(e.contains("8191 bytes") && e.contains("truncated"), "{e}");
        std::fs::remove_file(&pages).unwrap();
        let e = verify(t.path()).unwrap_err().to_string();
        assert!(e.contains("1.pages"), "{e}");
    }

    /// Format 1.0-1.2 images carry SHA-256 digests; they still verify (and fail) with them.
    #[test]
    fn sha256_images_of_format_1_2_still_verify() {
        let t = tempfile::tempdir().unwrap();
        write_sample(t.path());
        let path = t.path().join(MANIFEST);
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["format"]["minor"] = 2.into();
        for f in m["files"].as_array_mut().unwrap() {
            let data = std::fs::read(t.path().join(f["name"].as_str().unwrap())).unwrap();
            let f = f.as_object_mut().unwrap();
            f.remove("xxh3_128");
            f.insert("sha256".into(), to_hex(&Sha256::digest(&data)).into());
        }
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        load(t.path()).expect("a 1.2 image verifies with SHA-256");
        let pages = t.path().join(task_pages(1));
        let mut data = std::fs::read(&pages).unwrap();
        data[4096] ^= 2;
        std::fs::write(&pages, &data).unwrap();
        let e = verify(t.path()).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch, SHA-256"), "{e}");
        // An entry with no digest at all is refused.
        m["files"][0].as_object_mut().unwrap().remove("sha256");
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = verify(t.path()).unwrap_err().to_string();
        assert!(e.contains("no checksum"), "{e}");
    }

    /// A file verified once is not digested again while unchanged (the restorer after the CLI),
    /// but any change right after a verification is caught.
    #[test]
    fn files_changed_after_a_verification_are_verified_again() {
        let t = tempfile::tempdir().unwrap();
        write_sample(t.path());
        let pages = t.path().join(task_pages(1));
        let good = std::fs::read(&pages).unwrap();
        for i in 0..20 {
            verify(t.path()).expect("the sample verifies");
            let mut bad = good.clone();
            bad[i * 100] ^= 1;
            std::fs::write(&pages, &bad).unwrap();
            let e = verify(t.path()).unwrap_err().to_string();
            assert!(e.contains("checksum mismatch"), "round {i}: {e}");
            std::fs::write(&pages, &good).unwrap();
        }
    }

    /// A page file larger than a chunk carries chunk digests (verified on two threads) and the
    /// whole-file digest (for readers that ignore chunks); a change in any chunk is named.
    #[test]
    fn large_files_are_verified_by_chunks() {
        let t = tempfile::tempdir().unwrap();
        let size = 2 * CHUNK + CHUNK / 2 + 4096;
        let data: Vec<u8> = (0..size).map(|i| (i / 4096) as u8 ^ (i as u8)).collect();
        let mut w = ImageWriter::create(t.path()).unwrap();
        let mut s = w.stream("task/9.pages").unwrap();
        // In uneven pieces, so that chunk boundaries fall inside slices.
        for piece in data.chunks(3 * 1024 * 1024 + 4096) {
            s.write_all_vectored(&[IoSlice::new(&piece[..100]), IoSlice::new(&piece[100..])])
                .unwrap();
        }
        w.close(s).unwrap();
        w.finish(HostRecord::current().unwrap()).unwrap();
        let manifest = read_manifest(t.path()).unwrap();
        let entry = &manifest.files[0];
        assert_eq!(entry.xxh3_128_chunks.len(), 3);
        let whole = {
            let mut h = Xxh3::new();
            h.update(&data);
            xxh3_hex(&h)
        };
        assert_eq!(entry.xxh3_128.as_deref(), Some(whole.as_str()));
        verify_files(t.path(), &manifest).expect("verifies by chunks");
        let pages = t.path().join("task/9.pages");
        for at in [CHUNK + 5, 2 * CHUNK + 7] {
            let mut bad = data.clone();
            bad[at as usize] ^= 0x10;
            std::fs::write(&pages, &bad).unwrap();
            let e = verify_files(t.path(), &manifest).unwrap_err().to_string();
            let chunk = at / CHUNK * CHUNK;
            assert!(
                e.contains("checksum mismatch") && e.contains(&format!("bytes {chunk:#x}-")),
                "{e}"
            );
        }
        std::fs::write(&pages, &data[..data.len() - 4096]).unwrap();
        let e = verify_files(t.path(), &manifest).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        // A reader that knows no chunks checks the whole-file digest.
        std::fs::write(&pages, &data).unwrap();
        let mut plain = manifest.clone();
        plain.files[0].xxh3_128_chunks.clear();
        verify_files(t.path(), &plain).expect("verifies whole");
    }

    #[test]
    fn format_and_host_are_checked() {
        let t = tempfile::tempdir().unwrap();
        write_sample(t.path());
        let path = t.path().join(MANIFEST);
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["host"]["kernel_release"] = "2.6.32".into();
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = verify(t.path()).unwrap_err();
        assert!(matches!(e, CheckpointError::Incompatible(_)), "{e}");
        assert!(load_for_inspect(t.path()).is_ok(), "inspect ignores the host");
        m["format"]["major"] = 99.into();
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(verify(t.path())
            .unwrap_err()
            .to_string()
            .contains(&format!("format 99.{FORMAT_MINOR}")));
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(verify(t.path()), Err(CheckpointError::Corrupt(_))));
    }

    /// An image of one task (pid 1) with this task record, pagemap and page file size.
    fn write_one(dir: &Path, task: &TaskImage, pagemap: &[PagemapEntry], pages: usize) {
        let mut w = ImageWriter::create(dir).unwrap();
        w.write_json(&task_json(1), task).unwrap();
        w.write_json(&task_pagemap(1), &pagemap).unwrap();
        w.write_bytes(&task_pages(1), &vec![0; pages]).unwrap();
        let tree = Tree {
            root: 1,
            host_levels: 0,
            tasks: vec![TreeEntry {
                pid: 1,
                ppid: 0,
                pgid: 1,
                sid: 1,
                host_pid: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        w.write_json(TREE, &tree).unwrap();
        w.finish(HostRecord::current().unwrap()).unwrap();
    }

    fn entry(vaddr: u64, nr_pages: u64) -> PagemapEntry {
        PagemapEntry { vaddr, nr_pages }
    }

    #[test]
    fn pagemap_must_match_the_page_file() {
        let t = tempfile::tempdir().unwrap();
        write_one(t.path(), &sample_task(1), &[entry(0x400000, 3)], 4096);
        let e = load(t.path()).unwrap_err().to_string();
        assert!(e.contains("describes 12288"), "{e}");
    }

    /// Page counts and addresses from the image are checked (no overflow) and every entry must
    /// lie inside one private mapping: a corrupt image is refused by `load`, before any clone.
    #[test]
    fn pagemap_entries_lie_inside_one_private_mapping() {
        let refused = |task: &TaskImage, pagemap: &[PagemapEntry], pages: usize| {
            let t = tempfile::tempdir().unwrap();
            write_one(t.path(), task, pagemap, pages);
            match load(t.path()) {
                Err(CheckpointError::Corrupt(m)) => m,
                other => panic!("{pagemap:?} was not refused as corrupt: {other:?}"),
            }
        };
        let task = sample_task(1); // one private anonymous VMA [0x400000, 0x403000)
                                   // The control: the whole VMA, and two entries, load.
        for ok in [vec![entry(0x400000, 3)], vec![entry(0x400000, 1), entry(0x402000, 1)]] {
            let t = tempfile::tempdir().unwrap();
            let bytes = ok.iter().map(|e| e.nr_pages as usize * 4096).sum();
            write_one(t.path(), &task, &ok, bytes);
            load(t.path()).unwrap();
        }
        let m = refused(&task, &[entry(0x400000, u64::MAX / 2)], 4096);
        assert!(
            m.contains("task/1.pagemap.json: entry 0") && m.contains("overflows"),
            "{m}"
        );
        let m = refused(&task, &[entry(u64::MAX - 4095, 1)], 4096);
        assert!(m.contains("overflows"), "{m}");
        // Two entries whose byte counts overflow only when summed.
        let half = (u64::MAX / 4096) / 2 + 1;
        let m = refused(&task, &[entry(0, half), entry(0, half)], 4096);
        assert!(m.contains("task/1.pagemap.json"), "{m}");
        let m = refused(&task, &[entry(0x402000, 2)], 2 * 4096);
        assert!(
            m.contains("entry 0 (vaddr 0x402000, 2 pages) is not inside one private mapping"),
            "{m}"
        );
        let m = refused(&task, &[entry(0x400000, 1), entry(0x3ff000, 1)], 2 * 4096);
        assert!(m.contains("entry 1 (vaddr 0x3ff000"), "{m}");
        let m = refused(&task, &[entry(0x400800, 1)], 4096);
        assert!(m.contains("page-aligned"), "{m}");
        // Inside a mapping, but a shared one (its pages live in the file or shmem object).
        let mut shared = task.clone();
        shared.vmas[0].kind = VmaKind::FileShared;
        let m = refused(&shared, &[entry(0x400000, 1)], 4096);
        assert!(m.contains("is not inside one private mapping"), "{m}");
    }

    /// A stop signal or queued signal number outside 1..=64 (restore shifts by it) is refused
    /// by `load`, naming the file and field.
    #[test]
    fn signal_numbers_are_checked() {
        let refused = |task: &TaskImage| {
            let t = tempfile::tempdir().unwrap();
            write_one(t.path(), task, &[], 0);
            match load(t.path()) {
                Err(CheckpointError::Corrupt(m)) => m,
                other => panic!("not refused as corrupt: {other:?}"),
            }
        };
        let task = sample_task(1);
        // The control: the bounds themselves load.
        for (stop, pending) in [(1, 64), (64, 1)] {
            let mut t = task.clone();
            t.stop_signal = Some(stop);
            t.pending[0].signo = pending;
            let d = tempfile::tempdir().unwrap();
            write_one(d.path(), &t, &[], 0);
            load(d.path()).unwrap();
        }
        for sig in [0, 65, -1, i32::MAX] {
            let mut t = task.clone();
            t.stop_signal = Some(sig);
            let m = refused(&t);
            assert_eq!(
                m,
                format!("task/1.json: stop_signal {sig} is not a signal number (1-64)")
            );
            let mut t = task.clone();
            t.pending.push(PendingSignal {
                shared: false,
                signo: sig,
                siginfo: String::new(),
            });
            let m = refused(&t);
            assert_eq!(
                m,
                format!("task/1.json: pending[1].signo {sig} is not a signal number (1-64)")
            );
        }
    }

    #[test]
    fn abandon_removes_the_directories_create_made_and_only_those() {
        let t = tempfile::tempdir().unwrap();
        // `create` made `a/b/img`: abandon leaves only `t` (which existed) behind.
        let dir = t.path().join("a/b/img");
        let mut w = ImageWriter::create(&dir).unwrap();
        w.write_bytes("task/1/pages.img", b"xyz").unwrap();
        w.write_json(TREE, &1).unwrap();
        assert!(dir.join("task/1/pages.img").exists());
        w.abandon();
        assert!(!t.path().join("a").exists(), "abandon left the directories create made");
        assert!(t.path().exists());
        // An existing directory (with something of the user's in it) stays, with its content.
        let dir = t.path().join("mine");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("note"), b"keep").unwrap();
        let mut w = ImageWriter::create(&dir).unwrap();
        w.write_bytes("task/1/pages.img", b"xyz").unwrap();
        w.abandon();
        assert_eq!(std::fs::read(dir.join("note")).unwrap(), b"keep");
        assert!(!dir.join("task").exists());
        // An existing empty directory is not removed either: only what create made goes.
        let dir = t.path().join("empty");
        std::fs::create_dir(&dir).unwrap();
        ImageWriter::create(&dir).unwrap().abandon();
        assert!(dir.is_dir() && std::fs::read_dir(&dir).unwrap().next().is_none());
    }
}
