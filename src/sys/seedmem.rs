//! Memory and signal calls made by restore seeds (forks of amber that become restored processes):
//! mapping at fixed addresses that Rust knows nothing about, filling them from an image file, and
//! installing raw kernel sigactions whose handlers point into memory that is not mapped yet.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub const PAGE_SIZE: u64 = 4096;

/// `x86_64: syscall; int3 ...`: the stub page through which a tracer injects system calls.
const STUB_CODE: [u8; 8] = [0x0f, 0x05, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc];

/// mmap(MAP_FIXED_NOREPLACE) at `addr`: fails instead of replacing anything already there.
pub fn mmap_fixed(
    addr: u64,
    len: u64,
    prot: i32,
    flags: i32,
    fd: Option<BorrowedFd<'_>>,
    offset: u64,
) -> io::Result<()> {
    let raw_fd = fd.map(|f| f.as_raw_fd()).unwrap_or(-1);
    let flags = flags | libc::MAP_FIXED_NOREPLACE | if fd.is_none() { libc::MAP_ANONYMOUS } else { 0 };
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory that Rust (or
    // anything else in this process) owns can change under it; the new range is only touched
    // through the raw-address functions below.
    let ret = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            prot,
            flags,
            raw_fd,
            offset as i64,
        )
    };
    if ret == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if ret as u64 != addr {
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
        // SAFETY: we just created this mapping and nothing refers to it.
        unsafe { libc::munmap(ret, len as usize) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    Ok(())
}

pub fn mprotect(addr: u64, len: u64, prot: i32) -> io::Result<()> {
    // SAFETY: only used on ranges created by mmap_fixed, which Rust does not reference.
    let ret = unsafe { libc::mprotect(addr as *mut libc::c_void, len as usize, prot) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Map the two-page injection stub at `addr`: page 0 holds `syscall` and is R-X, page 1 is an
/// RW scratch page for arguments the tracer writes (prctl_mm_map, auxv, stack_t).
pub fn map_stub(addr: u64) -> io::Result<()> {
    mmap_fixed(
        addr,
        2 * PAGE_SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
        None,
        0,
    )?;
    // SAFETY: the first page of the mapping just created is writable and ours alone.
    unsafe { std::ptr::copy_nonoverlapping(STUB_CODE.as_ptr(), addr as *mut u8, STUB_CODE.len()) };
    mprotect(addr, PAGE_SIZE, libc::PROT_READ | libc::PROT_EXEC)
}

/// pread `len` bytes of `fd` at `offset` into raw memory at `addr` (a writable range created by
/// mmap_fixed).
pub fn pread_into(fd: BorrowedFd<'_>, addr: u64, len: u64, offset: u64) -> io::Result<()> {
    preadv_into(fd, &[(addr, len)], offset)
}

/// preadv `fd` from `offset` into the raw ranges `iov` ((addr, len) in writable ranges created
/// by mmap_fixed), in order, as if they were one buffer; at most 1024 ranges (IOV_MAX).
pub fn preadv_into(fd: BorrowedFd<'_>, iov: &[(u64, u64)], offset: u64) -> io::Result<()> {
    let mut vecs: Vec<libc::iovec> = iov
        .iter()
        .map(|&(addr, len)| libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len as usize,
        })
        .collect();
    let mut first = 0usize;
    let mut offset = offset;
    while first < vecs.len() {
        if vecs[first].iov_len == 0 {
            first += 1;
            continue;
        }
        let rest = &vecs[first..];
        // SAFETY: every iovec lies in a writable mapping made by mmap_fixed that no Rust
        // reference covers; preadv writes at most the iovecs' total length there.
        let ret = unsafe {
            libc::preadv(
                fd.as_raw_fd(),
                rest.as_ptr(),
                rest.len().min(1024) as i32,
                offset as i64,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if ret == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "page file shorter than its pagemap",
            ));
        }
        offset += ret as u64;
        let mut n = ret as usize;
        while n > 0 {
            let v = &mut vecs[first];
            let take = n.min(v.iov_len);
            v.iov_base = (v.iov_base as u64 + take as u64) as *mut libc::c_void;
            v.iov_len -= take;
            n -= take;
            if v.iov_len == 0 {
                first += 1;
            }
        }
    }
    Ok(())
}

/// The kernel's `struct sigaction` for rt_sigaction on x86_64.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Install a raw disposition (handler addresses may point at memory mapped later). The caller
/// keeps every signal blocked until the address space behind the handler exists.
pub fn rt_sigaction_set(sig: i32, act: &KernelSigaction) -> io::Result<()> {
    // SAFETY: act is a valid kernel_sigaction that outlives the call; oldact is null; the handler
    // cannot run while the caller has the signal blocked.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            act as *const KernelSigaction,
            std::ptr::null::<KernelSigaction>(),
            8usize,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// MADV_POPULATE_WRITE (Linux 5.14): fault in every page of `[addr, addr+len)` writable, in one
/// call instead of one page fault per page. Returns the error on older kernels (EINVAL).
pub fn populate_write(addr: u64, len: u64) -> io::Result<()> {
    const MADV_POPULATE_WRITE: i32 = 23;
    // SAFETY: only used on ranges created by mmap_fixed (writable, not referenced by Rust);
    // populating changes no contents (fresh anonymous pages read as zero either way).
    let ret = unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, MADV_POPULATE_WRITE) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The VmFlags a restored mapping gets back with madvise, by their smaps names.
pub const MADVISE_FLAGS: [(&str, i32); 6] = [
    ("hg", libc::MADV_HUGEPAGE),
    ("nh", libc::MADV_NOHUGEPAGE),
    ("dd", libc::MADV_DONTDUMP),
    ("dc", libc::MADV_DONTFORK),
    ("wf", libc::MADV_WIPEONFORK),
    ("mg", libc::MADV_MERGEABLE),
];

/// madvise with one of [`MADVISE_FLAGS`] on a range made by mmap_fixed.
pub fn madvise_flag(addr: u64, len: u64, advice: i32) -> io::Result<()> {
    if !MADVISE_FLAGS.iter().any(|&(_, a)| a == advice) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: these advices only set VMA flags (huge pages, core dumps, fork, KSM): no contents
    // change, and the range belongs to a premap that Rust does not reference.
    let ret = unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, advice) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
