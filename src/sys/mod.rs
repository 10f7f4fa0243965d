//! The only module with `unsafe`: thin wrappers around the syscalls that neither nix nor std wrap
//! (clone3 with set_tid, pidfd_*, openat2, close_range, setdomainname, TIOCSCTTY, personality,
//! setrlimit by raw resource number). Every block carries a `// SAFETY:` line; everything above
//! this module is safe Rust.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub mod bpf;
pub mod ptrace;
pub mod seedmem;

pub const CLONE_PIDFD: u64 = 0x0000_1000;
pub const CLONE_PARENT: u64 = 0x0000_8000;
pub const CLONE_NEWTIME: u64 = 0x0000_0080;
pub const CLONE_NEWNS: u64 = 0x0002_0000;
pub const CLONE_NEWCGROUP: u64 = 0x0200_0000;
pub const CLONE_NEWUTS: u64 = 0x0400_0000;
pub const CLONE_NEWIPC: u64 = 0x0800_0000;
pub const CLONE_NEWUSER: u64 = 0x1000_0000;
pub const CLONE_NEWPID: u64 = 0x2000_0000;
pub const CLONE_NEWNET: u64 = 0x4000_0000;
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default, Debug)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What `clone3` returned, seen from each side.
pub enum Forked {
    /// In the parent: the child's pid (in the caller's pid namespace) and its pidfd.
    Parent { pid: i32, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// `clone3()` without a new stack: the child continues on a copy of the caller's stack, like
/// fork(2). `set_tid` is innermost level first. The caller must be single-threaded.
pub fn clone3(flags: u64, set_tid: &[i32], cgroup: Option<RawFd>) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | CLONE_PIDFD | if cgroup.is_some() { CLONE_INTO_CGROUP } else { 0 },
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        // With CLONE_PARENT the kernel takes the exit signal from the caller and refuses any
        // other value.
        exit_signal: if flags & CLONE_PARENT != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        ..Default::default()
    };
    if !set_tid.is_empty() {
        args.set_tid = set_tid.as_ptr() as u64;
        args.set_tid_size = set_tid.len() as u64;
    }
    if let Some(fd) = cgroup {
        args.cgroup = fd as u64;
    }
    // SAFETY: args points to a valid, fully initialised clone_args that outlives the call; with
    // stack == 0 the child runs on a copy-on-write copy of our stack exactly as after fork(), and
    // the caller guarantees the process is single-threaded so no lock is held by a lost thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            // SAFETY: with CLONE_PIDFD the kernel stored a fresh pidfd that nobody else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Leave the process now, without running destructors or atexit handlers (used by forked
/// children whose parent still owns every resource they copied).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; on success the fd is new and ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ret is a freshly opened descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number and null siginfo; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): used to resolve paths inside a container root without ever leaving it
/// (CVE-2021-30465: symlinks in the rootfs must not redirect mounts onto the host).
pub fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let cpath = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: cpath is a valid NUL-terminated string and how a valid open_how; both outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            cpath.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

pub const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// Mark every fd from `first` up as close-on-exec (CVE-2024-21626: no runtime fd may reach the
/// container's process).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: integer-only syscall; CLOSE_RANGE_CLOEXEC closes nothing, it only sets FD_CLOEXEC.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr() as *const libc::c_char, name.len()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make `fd` (a pty slave) the controlling terminal of the calling session leader.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument; fd is a valid open descriptor.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn personality(persona: u64) -> io::Result<()> {
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling process's nice value.
pub fn getpriority() -> io::Result<i32> {
    // getpriority(2) may legitimately return -1: errno tells.
    nix::errno::Errno::clear();
    // SAFETY: integer-only syscall on the calling process.
    let ret = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if ret == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// Set the calling process's nice value.
pub fn setpriority(nice: i32) -> io::Result<()> {
    // SAFETY: integer-only syscall on the calling process.
    let ret = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// setrlimit by raw resource number (the OCI names map straight onto RLIMIT_* numbers).
pub fn setrlimit(resource: i32, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: lim is a valid rlimit that outlives the call.
    let ret = unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &lim) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn getrlimit(resource: i32) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid, writable rlimit that outlives the call.
    let ret = unsafe { libc::getrlimit(resource as libc::__rlimit_resource_t, &mut lim) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Reset every signal disposition to default and unblock all signals (a forked child inherits the
/// runtime's handlers and mask; the container must start clean).
pub fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL installs no Rust handler; invalid numbers just fail with EINVAL.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&empty), None);
}

fn cstr(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Take ownership of a descriptor that just arrived through SCM_RIGHTS.
pub fn own_received_fd(raw: RawFd) -> OwnedFd {
    // SAFETY: a descriptor received with SCM_RIGHTS is newly installed in our table and nothing
    // else refers to it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Take ownership of a descriptor nix just opened and returned as a raw number.
pub fn own_fresh_fd(raw: RawFd) -> OwnedFd {
    // SAFETY: the caller passes a descriptor it just opened and has not shared.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

pub const NS_GET_USERNS: u64 = 0xb701;
pub const NS_GET_PARENT: u64 = 0xb702;

/// The nsfs ioctls that return a new namespace fd (NS_GET_USERNS, NS_GET_PARENT).
pub fn ns_ioctl(ns: BorrowedFd<'_>, request: u64) -> io::Result<OwnedFd> {
    // SAFETY: these ioctls take no argument and return a new descriptor or -1.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), request as _) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a freshly returned descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// Window size of a terminal (TIOCGWINSZ).
pub fn get_winsize(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the valid, writable struct we pass.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ws)
}

/// Set the window size of a terminal (TIOCSWINSZ).
pub fn set_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from the valid struct we pass.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1, 56 bytes).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

/// sched_setattr(2) on the calling thread.
pub fn sched_setattr(attr: &SchedAttr) -> io::Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: a is a valid, initialised sched_attr with its size field set; it outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ioprio_set(IOPRIO_WHO_PROCESS, self, (class << 13) | level).
pub fn ioprio_set(class: u32, level: u32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: i32 = 1;
    let value = (class << 13) | (level & 0x1fff);
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a fresh session keyring, so the container does not
/// share the runtime caller's keys.
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let cname = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in keyring name"))?;
    // SAFETY: cname is a valid NUL-terminated string that outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, cname.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub const KCMP_FILE: i32 = 0;
pub const KCMP_FILES: i32 = 2;

/// kcmp(2): orders two kernel objects of two processes; 0 means they are the same object.
/// With KCMP_FILE, `a` and `b` are descriptors of `pid1` and `pid2`: 0 means one open file
/// description (dup, fork, SCM_RIGHTS), not merely one inode.
pub fn kcmp(pid1: i32, pid2: i32, kind: i32, a: u64, b: u64) -> io::Result<i32> {
    // SAFETY: integer-only syscall; the kernel reads no memory of ours for KCMP_FILE.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, a, b) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i32)
}

/// FIONREAD: bytes waiting in a pipe (or socket, tty).
pub fn fionread(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the valid, writable integer we pass.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A new shared anonymous memory object (what mmap(MAP_SHARED|MAP_ANONYMOUS) creates, named
/// "/dev/zero (deleted)" in /proc/<pid>/maps) of `size` bytes, as a descriptor: mapped once
/// here, reopened through /proc/self/map_files (needs CAP_SYS_ADMIN) and unmapped again. Where
/// map_files is not open to us, a memfd ("/memfd:<name> (deleted)") of that size instead.
pub fn shmem_object(size: u64, memfd_name: &str) -> io::Result<OwnedFd> {
    // SAFETY: a fresh mapping at an address the kernel picks; nothing else refers to it, and it
    // is unmapped below before anyone could.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = addr as u64;
    let path = format!("/proc/self/map_files/{:x}-{:x}", start, start + size);
    let opened = std::fs::OpenOptions::new().read(true).write(true).open(&path);
    // SAFETY: the mapping made above, which no Rust reference covers.
    unsafe { libc::munmap(addr, size as usize) };
    match opened {
        Ok(f) => Ok(f.into()),
        Err(_) => {
            let fd = memfd_create(memfd_name, libc::MFD_CLOEXEC)?;
            std::fs::File::from(fd.try_clone()?).set_len(size)?;
            Ok(fd)
        }
    }
}

/// memfd_create(2).
pub fn memfd_create(name: &str, flags: u32) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: name is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// tee(2) with SPLICE_F_NONBLOCK: duplicate up to `len` bytes buffered in pipe `from` into pipe
/// `to` without consuming them.
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: integer-only syscall on two valid descriptors.
    let ret = unsafe { libc::tee(from.as_raw_fd(), to.as_raw_fd(), len, libc::SPLICE_F_NONBLOCK) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

pub const KCMP_EPOLL_TFD: i32 = 7;

/// kcmp(KCMP_EPOLL_TFD): is descriptor `fd` of `pid1` the file registered in epoll instance
/// `epfd` of `pid2` under target descriptor `tfd`? (0: yes.)
pub fn kcmp_epoll_tfd(pid1: i32, fd: i32, pid2: i32, epfd: i32, tfd: i32) -> io::Result<i32> {
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff: 0,
    };
    // SAFETY: slot is a valid kcmp_epoll_slot that outlives the call; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1,
            pid2,
            KCMP_EPOLL_TFD,
            fd as u64,
            &slot as *const Slot as u64,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i32)
}

fn fd_result(ret: libc::c_int) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// eventfd(2).
pub fn eventfd(initval: u32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer-only call.
    fd_result(unsafe { libc::eventfd(initval, flags) })
}

/// signalfd4(-1, mask, flags) with a raw 64-bit kernel signal mask (real-time signals too).
pub fn signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: the mask is 8 valid bytes that outlive the call; the kernel only reads them.
    let ret = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags) };
    fd_result(ret as libc::c_int)
}

/// timerfd_create(2).
pub fn timerfd_create(clock: i32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer-only call.
    fd_result(unsafe { libc::timerfd_create(clock, flags) })
}

/// timerfd_settime(2) with relative times in nanoseconds (0 value: disarmed).
pub fn timerfd_settime(fd: BorrowedFd<'_>, value_ns: u64, interval_ns: u64) -> io::Result<()> {
    let ts = |ns: u64| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts(interval_ns),
        it_value: ts(value_ns),
    };
    // SAFETY: spec is a valid itimerspec that outlives the call; old_value is null.
    let ret = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TFD_IOC_SET_TICKS: the number of expirations a timerfd reports as not yet read.
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> io::Result<()> {
    const TFD_IOC_SET_TICKS: u64 = 0x4008_5400; // _IOW('T', 0, u64)
                                                // SAFETY: the ioctl reads one u64 from the valid value we pass.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS as _, &ticks as *const u64) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// epoll_create1(EPOLL_CLOEXEC).
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: integer-only call.
    fd_result(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// epoll_ctl(EPOLL_CTL_ADD) with raw event bits and data.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: ev is a valid epoll_event that outlives the call.
    let ret = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// flock(2).
pub fn flock(fd: RawFd, op: i32) -> io::Result<()> {
    // SAFETY: integer-only call (a bad descriptor fails with EBADF).
    let ret = unsafe { libc::flock(fd, op) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// fcntl(F_SETLK / F_OFD_SETLK) of `ty` (F_RDLCK, F_WRLCK) on [start, start+len), len 0 = to EOF.
/// Takes a raw descriptor: a POSIX lock goes away with the first close of any descriptor of the
/// file by its owner, so the caller must not dup and close one.
pub fn fcntl_lock(fd: RawFd, cmd: i32, ty: i32, start: u64, len: u64) -> io::Result<()> {
    // SAFETY: an all-zero flock is a valid value (OFD locks require l_pid 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: fl is a valid struct flock that outlives the call.
    let ret = unsafe { libc::fcntl(fd, cmd, &mut fl) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// pidfd_getfd(2): a duplicate of descriptor `fd` of the process behind `pidfd` (the same open
/// file description).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer-only syscall.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    fd_result(ret as libc::c_int)
}

/// getsockopt for an int option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid and writable for the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &mut v as *mut libc::c_int as *mut _,
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// setsockopt for an int option.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: v is a valid int that outlives the call; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &v as *const libc::c_int as *const _,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// open_by_handle_at(2) of a file handle (type and bytes as /proc fdinfo shows them) on the
/// filesystem of `mount`. Needs CAP_DAC_READ_SEARCH.
pub fn open_by_handle_at(mount: BorrowedFd<'_>, handle_type: i32, handle: &[u8], flags: i32) -> io::Result<OwnedFd> {
    // struct file_handle { unsigned int handle_bytes; int handle_type; unsigned char f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: buf holds a complete file_handle of handle.len() bytes that outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_open_by_handle_at, mount.as_raw_fd(), buf.as_ptr(), flags) };
    fd_result(ret as libc::c_int)
}

/// inotify_init1(2).
pub fn inotify_init(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer-only call.
    fd_result(unsafe { libc::inotify_init1(flags) })
}

/// INOTIFY_IOC_SETNEXTWD then inotify_add_watch(2): the watch gets descriptor `wd`.
pub fn inotify_add_watch_at(fd: BorrowedFd<'_>, wd: i32, path: &Path, mask: u32) -> io::Result<i32> {
    const INOTIFY_IOC_SETNEXTWD: u64 = 0x4004_4900; // _IOW('I', 0, __s32)
                                                    // SAFETY: the ioctl takes its integer argument by value.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), INOTIFY_IOC_SETNEXTWD as _, wd as libc::c_long) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let cpath = cstr(path)?;
    // SAFETY: cpath is a valid NUL-terminated string that outlives the call.
    let ret = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cpath.as_ptr(), mask) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// getsockopt into a buffer of `len` bytes (the bytes the kernel filled).
pub fn getsockopt_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut l = len as libc::socklen_t;
    // SAFETY: buf is valid and writable for l bytes; the kernel writes at most l and updates it.
    let ret = unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, buf.as_mut_ptr() as *mut _, &mut l) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(l as usize);
    buf.resize(len, 0);
    Ok(buf)
}

/// The local (or, with `peer`, the remote) address of an IPv4/IPv6 socket; None when not
/// connected (peer) or not an inet address.
pub fn inet_name(fd: RawFd, peer: bool) -> io::Result<Option<std::net::SocketAddr>> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = &mut st as *mut libc::sockaddr_storage as *mut libc::sockaddr;
    // SAFETY: st is valid and writable for len bytes; the kernel writes at most len.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if peer && e.raw_os_error() == Some(libc::ENOTCONN) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(match st.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { *(p as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(std::net::SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { *(p as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    })
}

/// bind(2) (or, with `connect`, connect(2)) to an IPv4/IPv6 address.
pub fn inet_bind_or_connect(fd: RawFd, addr: &std::net::SocketAddr, connect: bool) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(v4) => {
            let a = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { *(&mut st as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) = a };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let a = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { *(&mut st as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) = a };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    let p = &st as *const libc::sockaddr_storage as *const libc::sockaddr;
    // SAFETY: p points to a valid address of len bytes that outlives the call.
    let ret = unsafe {
        if connect {
            libc::connect(fd, p, len as libc::socklen_t)
        } else {
            libc::bind(fd, p, len as libc::socklen_t)
        }
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
