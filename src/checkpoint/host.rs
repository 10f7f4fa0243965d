//! The host record: what a restored process silently depends on (kernel, CPU state layout,
//! vdso), recorded at dump and compared before anything is cloned at restore.

use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::image::to_hex;
use super::procfs::parse_smaps;
use super::CheckpointError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct XsaveRecord {
    /// CPUID.(EAX=0xD,ECX=0):EDX:EAX, the XCR0 bits this CPU supports.
    pub xcr0_supported: u64,
    /// CPUID.(EAX=0xD,ECX=0):EBX, the XSAVE size for the features enabled in XCR0.
    pub size_enabled: u32,
    /// Size of the NT_X86_XSTATE area of the dumped tasks (0 when not known yet).
    pub ptrace_size: u32,
    /// XCR0 as saved in the tasks' xstate (software-reserved bytes 464..472); 0 when not known.
    pub xcr0: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VdsoVma {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VdsoRecord {
    /// [vvar], [vvar_vclock], [vdso] in address order, with sizes.
    pub layout: Vec<VdsoVma>,
    /// SHA-256 of the [vdso] text.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostRecord {
    pub kernel_release: String,
    pub arch: String,
    pub page_size: u64,
    pub xsave: XsaveRecord,
    pub vdso: VdsoRecord,
}

fn cpuid_xsave() -> (u64, u32) {
    let r = std::arch::x86_64::__cpuid_count(0xd, 0);
    (((r.edx as u64) << 32) | r.eax as u64, r.ebx)
}

/// The vdso record of the calling process (every process on one kernel has the same vdso).
pub fn own_vdso() -> Result<VdsoRecord, CheckpointError> {
    let path = "/proc/self/maps";
    let maps = std::fs::read_to_string(path).map_err(|source| CheckpointError::Proc {
        path: path.into(),
        source,
    })?;
    let vmas = parse_smaps(&maps);
    let layout = vmas
        .iter()
        .filter(|v| matches!(v.name.as_str(), "[vvar]" | "[vvar_vclock]" | "[vdso]"))
        .map(|v| VdsoVma {
            name: v.name.clone(),
            size: v.end - v.start,
        })
        .collect();
    let mut sha256 = String::new();
    if let Some(v) = vmas.iter().find(|v| v.name == "[vdso]") {
        let mem = std::fs::File::open("/proc/self/mem").map_err(|source| CheckpointError::Proc {
            path: "/proc/self/mem".into(),
            source,
        })?;
        let mut text = vec![0u8; (v.end - v.start) as usize];
        mem.read_exact_at(&mut text, v.start)
            .map_err(|source| CheckpointError::Proc {
                path: "/proc/self/mem ([vdso])".into(),
                source,
            })?;
        sha256 = to_hex(&Sha256::digest(&text));
    }
    Ok(VdsoRecord { layout, sha256 })
}

impl HostRecord {
    pub fn current() -> Result<HostRecord, CheckpointError> {
        let uts = nix::sys::utsname::uname().map_err(|e| CheckpointError::Sys("uname", e.into()))?;
        let (xcr0_supported, size_enabled) = cpuid_xsave();
        Ok(HostRecord {
            kernel_release: uts.release().to_string_lossy().into_owned(),
            arch: std::env::consts::ARCH.to_string(),
            page_size: nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .unwrap_or(4096) as u64,
            xsave: XsaveRecord {
                xcr0_supported,
                size_enabled,
                ptrace_size: 0,
                xcr0: 0,
            },
            vdso: own_vdso()?,
        })
    }
}

/// Refuse an image whose host record this host cannot honour; lists every mismatch.
pub fn check_compatible(image: &HostRecord, host: &HostRecord) -> Result<(), CheckpointError> {
    let mut why = Vec::new();
    if image.arch != host.arch {
        why.push(format!("architecture {} (host {})", image.arch, host.arch));
    }
    if image.page_size != host.page_size {
        why.push(format!("page size {} (host {})", image.page_size, host.page_size));
    }
    if image.kernel_release != host.kernel_release {
        // v1 restores the vdso by re-creating the host's at the dumped address; that is only
        // right for the very same kernel build (a vdso proxy is future work).
        why.push(format!(
            "kernel {} (host {}); v1 restores only on the kernel it was dumped on",
            image.kernel_release, host.kernel_release
        ));
    }
    if image.vdso.layout != host.vdso.layout || image.vdso.sha256 != host.vdso.sha256 {
        why.push(format!(
            "vdso {:?} sha256 {} (host {:?} sha256 {})",
            image.vdso.layout, image.vdso.sha256, host.vdso.layout, host.vdso.sha256
        ));
    }
    let x = &image.xsave;
    if x.xcr0 & !host.xsave.xcr0_supported != 0 {
        why.push(format!(
            "XSAVE features {:#x} not supported by this CPU ({:#x})",
            x.xcr0, host.xsave.xcr0_supported
        ));
    }
    if x.size_enabled != host.xsave.size_enabled || x.xcr0_supported != host.xsave.xcr0_supported {
        why.push(format!(
            "XSAVE layout: size {} / features {:#x} (host {} / {:#x})",
            x.size_enabled, x.xcr0_supported, host.xsave.size_enabled, host.xsave.xcr0_supported
        ));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Incompatible(why.join("; ")))
    }
}

/// XCR0 as the kernel stored it in an xstate area (fxsave software-reserved bytes, offset 464).
pub fn xstate_xcr0(xstate: &[u8]) -> u64 {
    xstate
        .get(464..472)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_host_is_compatible_with_itself() {
        let h = HostRecord::current().unwrap();
        assert_eq!(h.arch, "x86_64");
        assert!(h.vdso.layout.iter().any(|v| v.name == "[vdso]"));
        check_compatible(&h, &h).unwrap();
    }

    #[test]
    fn mismatches_are_named() {
        let h = HostRecord::current().unwrap();
        let mut img = h.clone();
        img.kernel_release = "5.10.0-old".into();
        img.xsave.xcr0 = 1 << 17; // AMX tile data
        let e = check_compatible(&img, &h).unwrap_err().to_string();
        assert!(e.contains("kernel 5.10.0-old"), "{e}");
        assert!(e.contains("XSAVE features 0x20000"), "{e}");
    }
}
