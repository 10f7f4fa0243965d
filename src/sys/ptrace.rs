//! ptrace requests and process queries that nix does not wrap, for checkpoint/restore: x86
//! register sets (NT_X86_XSTATE), signal masks, rseq configuration, syscall info, robust lists,
//! rlimits of another process, our own securebits. Plain requests (SEIZE, INTERRUPT, SYSCALL,
//! CONT, DETACH, GETREGS, SETREGS) go through nix in the caller.

use std::io;

pub const PTRACE_GETREGSET: libc::c_uint = 0x4204;
pub const PTRACE_SETREGSET: libc::c_uint = 0x4205;
pub const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
pub const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
pub const PTRACE_GET_SYSCALL_INFO: libc::c_uint = 0x420e;
pub const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
/// ELF note type of the x86 extended state (user ABI, standard format).
pub const NT_X86_XSTATE: libc::c_uint = 0x202;
/// Largest XSAVE area we accept from the kernel (AMX tiles make it ~11 KiB).
const XSTATE_MAX: usize = 16 * 1024;

pub const PTRACE_SYSCALL_INFO_ENTRY: u8 = 1;
pub const PTRACE_SYSCALL_INFO_EXIT: u8 = 2;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The raw XSAVE area of a stopped tracee (standard, non-compacted format).
pub fn get_xstate(pid: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes `buf`, which is writable for iov_len bytes and outlives the call; the
    // kernel shrinks iov_len to the size it wrote.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GETREGSET,
            pid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec,
        )
    };
    check(ret)?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Load an XSAVE area into a stopped tracee (the kernel validates the header).
pub fn set_xstate(pid: i32, xstate: &[u8]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_ptr() as *mut libc::c_void,
        iov_len: xstate.len(),
    };
    // SAFETY: iov describes `xstate`, which the kernel only reads, and outlives the call.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_SETREGSET,
            pid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec,
        )
    };
    check(ret).map(|_| ())
}

/// The blocked-signal mask of a stopped tracee (bit n-1 = signal n).
pub fn get_sigmask(pid: i32) -> io::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: the kernel writes exactly 8 bytes (the size we pass) into `mask`.
    let ret = unsafe { libc::ptrace(PTRACE_GETSIGMASK, pid, 8usize, &mut mask as *mut u64) };
    check(ret).map(|_| mask)
}

pub fn set_sigmask(pid: i32, mask: u64) -> io::Result<()> {
    // SAFETY: the kernel reads exactly 8 bytes (the size we pass) from `mask`.
    let ret = unsafe { libc::ptrace(PTRACE_SETSIGMASK, pid, 8usize, &mask as *const u64) };
    check(ret).map(|_| ())
}

/// `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

pub fn get_rseq_configuration(pid: i32) -> io::Result<RseqConfiguration> {
    let mut conf = RseqConfiguration::default();
    let size = std::mem::size_of::<RseqConfiguration>();
    // SAFETY: the kernel writes at most `size` bytes into `conf`, a repr(C) struct of that size.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            pid,
            size,
            &mut conf as *mut RseqConfiguration,
        )
    };
    check(ret).map(|_| conf)
}

/// The `op` byte of `struct ptrace_syscall_info` (entry, exit, seccomp, none) and, for an
/// exit stop, the return value.
pub fn get_syscall_info_op(pid: i32) -> io::Result<(u8, i64)> {
    // op u8, pad[3], arch u32, instruction_pointer u64, stack_pointer u64, then a union whose
    // exit variant starts with rval s64.
    let mut buf = [0u8; 88];
    // SAFETY: the kernel writes at most buf.len() bytes into `buf`.
    let ret = unsafe { libc::ptrace(PTRACE_GET_SYSCALL_INFO, pid, buf.len(), buf.as_mut_ptr()) };
    check(ret)?;
    let rval = i64::from_ne_bytes(buf[24..32].try_into().unwrap_or_default());
    Ok((buf[0], rval))
}

/// get_robust_list(2) of another thread: (head, len).
pub fn get_robust_list(tid: i32) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: the kernel writes one pointer into `head` and one size_t into `len`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    check(ret).map(|_| (head, len as u64))
}

/// prlimit(2) read of another process: (soft, hard).
pub fn get_prlimit(pid: i32, resource: i32) -> io::Result<(u64, u64)> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: new_limit is null (read only); the kernel writes one rlimit64 into `old`.
    let ret = unsafe { libc::prlimit64(pid, resource as _, std::ptr::null(), &mut old) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((old.rlim_cur, old.rlim_max))
}

/// PR_GET_SECUREBITS of the calling thread (the restorer's, which its seeds inherit).
pub fn own_securebits() -> io::Result<u32> {
    // SAFETY: PR_GET_SECUREBITS takes no pointer arguments; it only returns the bits.
    let ret = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as u32)
}

pub const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
/// Read the process-wide (shared) queue instead of the thread's own.
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// Size of one `siginfo_t` as the kernel copies it out.
pub const SIGINFO_SIZE: usize = 128;

/// `struct ptrace_peeksiginfo_args`.
#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// Every queued siginfo of a stopped tracee, in queue order: its own queue, or with `shared` the
/// thread group's. Each entry is the raw 128-byte `siginfo_t`.
pub fn peek_siginfo(pid: i32, shared: bool) -> io::Result<Vec<[u8; SIGINFO_SIZE]>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; BATCH];
        let args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        // SAFETY: args is a valid ptrace_peeksiginfo_args; the kernel writes at most `nr`
        // siginfo_t (128 bytes each) into `buf`, which holds exactly BATCH of them.
        let ret = unsafe {
            libc::ptrace(
                PTRACE_PEEKSIGINFO,
                pid,
                &args as *const PeekSiginfoArgs,
                buf.as_mut_ptr(),
            )
        };
        let n = check(ret)? as usize;
        out.extend_from_slice(&buf[..n.min(BATCH)]);
        if n < BATCH {
            return Ok(out);
        }
    }
}
