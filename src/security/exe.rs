//! CVE-2019-5736: a container process must never be able to overwrite (or re-execute) the host's
//! amber binary through /proc/<pid>/exe of an amber process that entered the container. Before
//! any command that puts amber code inside a container (create, run, exec), amber re-executes
//! itself from a sealed memfd copy: /proc/self/exe then names an anonymous, write-sealed file,
//! never the binary on the host.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("sealing amber's executable (CVE-2019-5736 protection): {step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("sealing amber's executable (CVE-2019-5736 protection): re-executing from the sealed copy: {0}")]
    Exec(#[source] nix::Error),
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> ExeError {
    move |source| ExeError::Io { step, source }
}

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// Whether the running executable is already a write-sealed memfd.
pub fn running_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    is_sealed(&exe)
}

fn is_sealed(f: &File) -> bool {
    fcntl(f.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .map(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
        .unwrap_or(false)
}

/// A sealed in-memory copy of the running executable.
pub fn sealed_copy() -> Result<OwnedFd, ExeError> {
    let mut exe = File::open("/proc/self/exe").map_err(io("opening /proc/self/exe"))?;
    let memfd = memfd_create(
        c"amber",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| ExeError::Io {
        step: "memfd_create",
        source: e.into(),
    })?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy).map_err(io("copying the executable"))?;
    fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS)).map_err(|e| ExeError::Io {
        step: "adding seals",
        source: e.into(),
    })?;
    Ok(copy.into())
}

/// Re-execute from a sealed copy unless already running from one. Returns only when nothing
/// needed doing; on success the process image is replaced.
pub fn ensure_sealed(args: &[String]) -> Result<(), ExeError> {
    if running_sealed() {
        return Ok(());
    }
    let fd = sealed_copy()?;
    let argv: Vec<CString> = args.iter().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            use std::os::unix::ffi::OsStrExt;
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let err = nix::unistd::fexecve(fd.as_raw_fd(), &argv, &envp).unwrap_err();
    Err(ExeError::Exec(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copy_refuses_writes() {
        use std::io::Write;
        let fd = sealed_copy().unwrap();
        let mut f = File::from(fd);
        assert!(is_sealed(&f));
        assert!(f.write_all(b"overwrite").is_err(), "a sealed copy must not be writable");
        assert!(f.set_len(0).is_err(), "a sealed copy must not shrink");
        // The test binary itself is a plain file, not a sealed memfd.
        assert!(!running_sealed());
    }
}
