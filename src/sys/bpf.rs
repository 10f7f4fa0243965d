//! bpf(2), only the commands a cgroup device filter needs: load a program, attach it to a cgroup,
//! list and inspect what is attached, detach. Neither nix nor rustix wrap bpf(2).
//!
//! Each command takes its own prefix of the kernel's `union bpf_attr`, passed with that prefix's
//! size. The structs below have no implicit padding: the kernel refuses an attr whose bytes past
//! the fields it knows are not zero, and padding bytes are not guaranteed to be.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to one cgroup; all of them must allow an access.
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// Program names are at most 15 bytes plus the NUL.
pub const BPF_OBJ_NAME_LEN: usize = 16;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

/// `bpf_attr` for BPF_PROG_LOAD, up to expected_attach_type (Linux 4.17).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf_attr` for BPF_PROG_ATTACH and BPF_PROG_DETACH, up to replace_bpf_fd (Linux 5.6; zero
/// means "none" and older kernels accept the extra zero bytes).
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `bpf_attr` for BPF_PROG_QUERY, up to prog_cnt and the kernel's own 32-bit hole after it.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    hole: u32,
}

/// `bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to its name (Linux 4.15). Every pointer field stays 0 so the kernel
/// copies no instructions or map ids out.
#[repr(C)]
#[derive(Default)]
struct ProgInfoRaw {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; BPF_OBJ_NAME_LEN],
}

/// What amber reads about a loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    pub prog_type: u32,
    pub id: u32,
    pub name: String,
}

/// The raw syscall.
///
/// # Safety
/// `attr` must point to `size` readable and writable bytes laid out as the `bpf_attr` prefix
/// `cmd` expects, and every pointer inside it must be valid for what the kernel does with it
/// for the duration of the call.
unsafe fn bpf(cmd: libc::c_long, attr: *mut libc::c_void, size: usize) -> io::Result<libc::c_long> {
    // SAFETY: the caller upholds this function's contract on attr and the pointers it holds.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // A valid descriptor is never negative.
    fd.as_raw_fd() as u32
}

/// BPF_PROG_LOAD. `insns` are `struct bpf_insn`s in memory order (8 bytes each, native endian),
/// `name` is truncated to 15 bytes (letters, digits, '_' and '.' only, or the kernel refuses it).
/// With a non-empty `log`, the verifier writes its report there (log_level 1), NUL-terminated;
/// a log too small for the report makes the load fail with ENOSPC.
pub fn prog_load(prog_type: u32, insns: &[u64], license: &CStr, name: &str, log: &mut [u8]) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let n = name.len().min(BPF_OBJ_NAME_LEN - 1);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    if !log.is_empty() {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: attr is a fully initialised, padding-free BPF_PROG_LOAD prefix; insns, license and
    // log (with the sizes given) are live borrows that outlive the call, and the kernel writes only
    // into log, at most log_size bytes.
    let ret = unsafe {
        bpf(
            BPF_PROG_LOAD,
            &mut attr as *mut ProgLoadAttr as *mut libc::c_void,
            std::mem::size_of::<ProgLoadAttr>(),
        )?
    };
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

fn attach_cmd(cmd: libc::c_long, mut attr: AttachAttr) -> io::Result<()> {
    // SAFETY: attr is a fully initialised, padding-free BPF_PROG_ATTACH/DETACH prefix holding only
    // integers (descriptors, types, flags); the kernel reads it and writes nothing back.
    unsafe {
        bpf(
            cmd,
            &mut attr as *mut AttachAttr as *mut libc::c_void,
            std::mem::size_of::<AttachAttr>(),
        )?
    };
    Ok(())
}

/// BPF_PROG_ATTACH `prog` to the cgroup directory `cgroup` (opened O_RDONLY|O_DIRECTORY).
pub fn prog_attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32, flags: u32) -> io::Result<()> {
    attach_cmd(
        BPF_PROG_ATTACH,
        AttachAttr {
            target_fd: fd_u32(cgroup),
            attach_bpf_fd: fd_u32(prog),
            attach_type,
            attach_flags: flags,
            ..Default::default()
        },
    )
}

/// BPF_PROG_DETACH `prog` from `cgroup` (with BPF_F_ALLOW_MULTI the program must be named).
pub fn prog_detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32) -> io::Result<()> {
    attach_cmd(
        BPF_PROG_DETACH,
        AttachAttr {
            target_fd: fd_u32(cgroup),
            attach_bpf_fd: fd_u32(prog),
            attach_type,
            ..Default::default()
        },
    )
}

/// BPF_PROG_QUERY: ids of the programs attached to `cgroup` itself with `attach_type` (not the
/// ones inherited from its ancestors), in the order the kernel runs them.
pub fn prog_query(cgroup: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    // 64 is the kernel's limit of programs per cgroup and attach type; ENOSPC (the list grew
    // meanwhile) reports the real count, so retry with that.
    let mut ids = vec![0u32; 64];
    for _ in 0..10 {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        // SAFETY: attr is a fully initialised, padding-free BPF_PROG_QUERY prefix; prog_ids points
        // to prog_cnt writable u32s in `ids`, which outlives the call.
        let ret = unsafe {
            bpf(
                BPF_PROG_QUERY,
                &mut attr as *mut QueryAttr as *mut libc::c_void,
                std::mem::size_of::<QueryAttr>(),
            )
        };
        match ret {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0u32; (attr.prog_cnt as usize).max(ids.len() * 2)];
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOSPC))
}

/// BPF_PROG_GET_FD_BY_ID: a descriptor for a loaded program.
pub fn prog_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: attr is a fully initialised, padding-free BPF_PROG_GET_FD_BY_ID prefix holding only
    // integers.
    let ret = unsafe {
        bpf(
            BPF_PROG_GET_FD_BY_ID,
            &mut attr as *mut GetFdAttr as *mut libc::c_void,
            std::mem::size_of::<GetFdAttr>(),
        )?
    };
    // SAFETY: a successful BPF_PROG_GET_FD_BY_ID returns a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// BPF_OBJ_GET_INFO_BY_FD on a program: its type, id and name.
pub fn prog_info(prog: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let mut info = ProgInfoRaw::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(prog),
        info_len: std::mem::size_of::<ProgInfoRaw>() as u32,
        info: &mut info as *mut ProgInfoRaw as u64,
    };
    // SAFETY: attr is a fully initialised, padding-free BPF_OBJ_GET_INFO_BY_FD prefix; info points
    // to info_len writable bytes (a ProgInfoRaw that outlives the call) whose pointer fields are
    // all 0, so the kernel writes nothing anywhere else.
    unsafe {
        bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr as *mut libc::c_void,
            std::mem::size_of::<InfoAttr>(),
        )?
    };
    let len = info.name.iter().position(|b| *b == 0).unwrap_or(info.name.len());
    Ok(ProgInfo {
        prog_type: info.prog_type,
        id: info.id,
        name: String::from_utf8_lossy(&info.name[..len]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel() {
        // Offsets from include/uapi/linux/bpf.h; a wrong size would shift every later field.
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 20);
        assert_eq!(std::mem::size_of::<QueryAttr>(), 32);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::size_of::<GetFdAttr>(), 12);
        assert_eq!(std::mem::size_of::<InfoAttr>(), 16);
        assert_eq!(std::mem::offset_of!(ProgInfoRaw, created_by_uid), 48);
        assert_eq!(std::mem::offset_of!(ProgInfoRaw, name), 64);
        assert_eq!(std::mem::size_of::<ProgInfoRaw>(), 80);
    }
}
