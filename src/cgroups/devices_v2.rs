//! Device access control on cgroup v2. v2 has no devices.allow/devices.deny: the kernel instead
//! runs the eBPF programs of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup (and to its
//! ancestors) on every open and mknod of a device node, and the access goes ahead only when every
//! program returns 1. This module compiles the device rules into such a program (pure:
//! [`build_device_filter`]) and attaches it to the container's cgroup ([`apply_device_filter`]),
//! replacing the one an earlier apply attached. The approach is runc's devicefilter.go and crun's
//! ebpf.c; the code is our own.
//!
//! The rules are the v1 list: a deny-all first, then linux.resources.devices, then amber's
//! default allow rules ([`default_device_rules`]). Their meaning:
//!
//! * Later rules win, one access bit at a time: an open for reading and writing is allowed when
//!   the last rule naming the device with `r` allows it and the last one naming it with `w`
//!   allows it. A bit no rule mentions is denied.
//! * A type `a` rule means every device and every access, whatever numbers and access it carries
//!   (the v1 kernel and runc's device emulator read it so): it resets the list, and the rules
//!   before it stop mattering.
//! * A check with no access bits (the kernel makes one for exec or access(X_OK) on a device node)
//!   passes when the last reset allows or some allow rule after it names the device, as on v1.
//!
//! Where this differs from runc on v2: runc refuses a deny that punches a hole into a wildcard
//! allow ("c *:* rwm" then deny "c 1:3 w", which v1 silently ignores); here it does what it says.
//! And two allow rules with different wildcards ("c 1:* r", "c *:3 w") together allow "rw" on 1:3,
//! where v1 wants a single rule covering both bits.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{fstatfs, CGROUP2_SUPER_MAGIC};
use oci_spec::runtime::LinuxDeviceCgroup;

use super::plan::{default_device_rules, device_rule};
use super::CgroupError;
use crate::sys::{self, bpf};

#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("open cgroup directory {path} for the device filter: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("list the device programs attached to {path} (BPF_PROG_QUERY): {source}")]
    Query { path: PathBuf, source: io::Error },
    #[error("inspect device program {id} attached to {path}: {source}")]
    Inspect { path: PathBuf, id: u32, source: io::Error },
    #[error("load the device filter for {path} ({insns} instructions, BPF_PROG_LOAD): {source}{}", verifier_note(.log))]
    Load {
        path: PathBuf,
        insns: usize,
        source: io::Error,
        /// The end of what the verifier said, when it said anything.
        log: String,
    },
    #[error("attach the device filter to {path} (BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI): {source}")]
    Attach { path: PathBuf, source: io::Error },
    #[error("detach the previous device filter (program {id}) from {path} (BPF_PROG_DETACH): {source}")]
    Detach { path: PathBuf, id: u32, source: io::Error },
}

fn verifier_note(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("; verifier: {}", log.trim())
    }
}

/// Which devices a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Block,
    Char,
}

/// One rule, parsed: the devices it names and what it allows or denies on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    /// None: any major (the OCI -1, the v1 "*").
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// BPF_DEVCG_ACC_* bits.
    pub access: u32,
}

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, where access_type is
// (access << 16) | type.
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
pub const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One eBPF instruction, `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The instruction as the kernel reads it: code, the two 4-bit registers (a C bitfield, so
    /// their order follows the byte order), then off and imm in native byte order.
    pub fn encode(&self) -> u64 {
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0xf)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        u64::from_ne_bytes(b)
    }
}

// The opcodes the filter uses: class | operation | source (K: imm, X: register).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 holds the context on entry and is scratch after the prologue.
const R0: u8 = 0;
const R1: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// The name amber's filters carry, so that a re-apply finds and replaces exactly its own.
pub const PROG_NAME: &str = "amber_devices";
/// Device programs use no GPL-only helpers.
const LICENSE: &CStr = c"Apache";
const VERIFIER_LOG_BYTES: usize = 1 << 16;
const VERIFIER_LOG_LINES: usize = 20;

/// The whole rule list for `devices` (linux.resources.devices): deny-all, the config's rules,
/// amber's defaults, exactly what v1 writes.
pub fn device_rules(devices: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut rules = vec![parse_rule("a *:* rwm", false)?];
    for rule in devices {
        // device_rule() validates and normalises ('u' is 'c', -1 is '*') the same way for v1.
        rules.push(parse_rule(&device_rule(rule)?, rule.allow())?);
    }
    for text in default_device_rules() {
        rules.push(parse_rule(&text, true)?);
    }
    Ok(rules)
}

/// Parse a rule in devices.allow syntax: "c 1:3 rwm", "b 8:* r", "a".
pub fn parse_rule(text: &str, allow: bool) -> Result<DeviceRule, CgroupError> {
    let bad = |reason| CgroupError::DeviceRule {
        rule: text.to_string(),
        reason,
    };
    let mut words = text.split_whitespace();
    let kind = match words.next() {
        // Every device, every access: see the module doc.
        Some("a") => {
            return Ok(DeviceRule {
                allow,
                kind: DeviceKind::All,
                major: None,
                minor: None,
                access: ACC_ALL,
            })
        }
        Some("b") => DeviceKind::Block,
        Some("c") => DeviceKind::Char,
        _ => return Err(bad("type must be a, b or c")),
    };
    let (major, minor) = words
        .next()
        .and_then(|n| n.split_once(':'))
        .ok_or(bad("expected major:minor"))?;
    let number = |n: &str| match n {
        "*" => Ok(None),
        n => n
            .parse::<u32>()
            .map(Some)
            .map_err(|_| bad("major and minor must be * or a number below 2^32")),
    };
    let access = words.next().ok_or(bad("missing access"))?;
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(bad("access must be a non-empty combination of r, w and m")),
        };
    }
    if bits == 0 || words.next().is_some() {
        return Err(bad("expected \"<type> <major>:<minor> <access>\""));
    }
    Ok(DeviceRule {
        allow,
        kind,
        major: number(major)?,
        minor: number(minor)?,
        access: bits,
    })
}

/// The filter for linux.resources.devices: [`device_rules`] compiled by [`build_program`].
pub fn build_device_filter(devices: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, CgroupError> {
    Ok(build_program(&device_rules(devices)?))
}

/// Compile `rules` into a BPF_PROG_TYPE_CGROUP_DEVICE program:
///
/// ```text
///     r2 = device type           (low 16 bits of ctx->access_type)
///     r3 = access bits not yet allowed (high 16 bits)
///     r4 = major, r5 = minor
///   then for each rule, last first:
///     if r2 != type goto next; if r4 != major goto next; if r5 != minor goto next
///     allow: w3 &= ~access; if r3 != 0 goto next; r0 = 1; exit
///     deny:  w1 = w3; w1 &= access; if r1 == 0 goto next; r0 = 0; exit
///   and last: r0 = what the latest `a` rule says (deny without one); exit
/// ```
///
/// Walking back from the last rule, the first rule naming the device with a given bit decides that
/// bit: an allow clears its bits from r3 and lets the access through once nothing is left; a deny
/// that still sees one of its bits in r3 refuses. Rules before the latest `a` rule are dead and
/// not emitted (the verifier also rejects unreachable code), nor are those right after it that
/// repeat its verdict.
pub fn build_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let reset = rules.iter().rposition(|r| r.kind == DeviceKind::All);
    let default_allow = reset.is_some_and(|i| rules[i].allow);
    let live = &rules[reset.map_or(0, |i| i + 1)..];
    // Rules agreeing with the default before any rule that disagrees decide nothing.
    let first = live.iter().position(|r| r.allow != default_allow).unwrap_or(live.len());
    let mut prog = vec![
        insn(LDX_MEM_W, R_TYPE, R1, 0, 0),
        insn(ALU32_AND_K, R_TYPE, 0, 0, 0xffff),
        insn(LDX_MEM_W, R_ACCESS, R1, 0, 0),
        insn(ALU32_RSH_K, R_ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, R_MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, R_MINOR, R1, 8, 0),
    ];
    for rule in live[first..].iter().rev() {
        prog.extend(rule_block(rule));
    }
    prog.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(default_allow)));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The instructions of one (non-`a`) rule. Every jump leaves the block: it goes to the next rule.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Jumps are emitted with off 0 and pointed at the block's end once its length is known.
    let mut block = Vec::new();
    let mut jumps = Vec::new();
    let kind = match rule.kind {
        DeviceKind::Block => Some(DEV_BLOCK),
        DeviceKind::Char => Some(DEV_CHAR),
        // Not reached: `a` rules are resets, handled by build_program.
        DeviceKind::All => None,
    };
    if let Some(kind) = kind {
        jumps.push(block.len());
        block.push(insn(JNE_K, R_TYPE, 0, 0, kind as i32));
    }
    for (reg, value) in [(R_MAJOR, rule.major), (R_MINOR, rule.minor)] {
        let Some(value) = value else {
            continue;
        };
        // A jump's imm is sign-extended to 64 bits while the register holds a zero-extended u32:
        // numbers from 2^31 up are compared through a register loaded with a 32-bit move.
        if let Ok(imm) = i32::try_from(value) {
            jumps.push(block.len());
            block.push(insn(JNE_K, reg, 0, 0, imm));
        } else {
            block.push(insn(ALU32_MOV_K, R1, 0, 0, value as i32));
            jumps.push(block.len());
            block.push(insn(JNE_X, reg, R1, 0, 0));
        }
    }
    if rule.allow {
        block.push(insn(ALU32_AND_K, R_ACCESS, 0, 0, !rule.access as i32));
        jumps.push(block.len());
        block.push(insn(JNE_K, R_ACCESS, 0, 0, 0));
    } else {
        block.push(insn(ALU32_MOV_X, R1, R_ACCESS, 0, 0));
        block.push(insn(ALU32_AND_K, R1, 0, 0, rule.access as i32));
        jumps.push(block.len());
        block.push(insn(JEQ_K, R1, 0, 0, 0));
    }
    block.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(rule.allow)));
    block.push(insn(EXIT, 0, 0, 0, 0));
    let len = block.len();
    for at in jumps {
        // A block is at most 10 instructions long.
        block[at].off = (len - at - 1) as i16;
    }
    block
}

/// Load `program` and attach it to the cgroup v2 directory `dir`, then detach the filters an
/// earlier apply attached there. The new filter is attached first, as runc does: in between both
/// run and the stricter one wins, but there is never a moment without a filter. The program's
/// descriptor is closed on return; the attachment keeps the program alive.
///
/// A directory that is not on a cgroup2 filesystem gets nothing: that is the manager's tempdir
/// seam in unit tests. A real container's directory always is one, since its path comes from a
/// cgroup2 mount in mountinfo.
pub fn apply_device_filter(dir: &Path, program: &[Insn]) -> Result<(), DeviceFilterError> {
    let open_err = |source| DeviceFilterError::Open {
        path: dir.to_path_buf(),
        source,
    };
    let cgroup = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(open_err)?;
    let fs = fstatfs(&cgroup).map_err(|e| open_err(e.into()))?;
    if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
        return Ok(());
    }
    let old = attached_filters(cgroup.as_fd(), dir)?;
    let prog = load(program, dir)?;
    bpf::prog_attach(
        cgroup.as_fd(),
        prog.as_fd(),
        bpf::BPF_CGROUP_DEVICE,
        bpf::BPF_F_ALLOW_MULTI,
    )
    .map_err(|source| DeviceFilterError::Attach {
        path: dir.to_path_buf(),
        source,
    })?;
    for (id, old) in old {
        match bpf::prog_detach(cgroup.as_fd(), old.as_fd(), bpf::BPF_CGROUP_DEVICE) {
            // ENOENT: detached meanwhile by a concurrent apply.
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                return Err(DeviceFilterError::Detach {
                    path: dir.to_path_buf(),
                    id,
                    source: e,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// The device programs attached to the cgroup itself (not inherited) that amber attached,
/// recognised by [`PROG_NAME`], each with a descriptor to detach it by.
fn attached_filters(cgroup: BorrowedFd<'_>, dir: &Path) -> Result<Vec<(u32, OwnedFd)>, DeviceFilterError> {
    let ids = bpf::prog_query(cgroup, bpf::BPF_CGROUP_DEVICE).map_err(|source| DeviceFilterError::Query {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ours = Vec::new();
    for id in ids {
        let inspect = |source| DeviceFilterError::Inspect {
            path: dir.to_path_buf(),
            id,
            source,
        };
        let fd = match bpf::prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            // Gone since the query, or hidden from us by an LSM policy (runc skips those too):
            // either way not one we can or need to replace.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM | libc::EACCES)) => continue,
            Err(e) => return Err(inspect(e)),
        };
        if bpf::prog_info(fd.as_fd()).map_err(inspect)?.name == PROG_NAME {
            ours.push((id, fd));
        }
    }
    Ok(ours)
}

fn load(program: &[Insn], dir: &Path) -> Result<OwnedFd, DeviceFilterError> {
    let raw: Vec<u64> = program.iter().map(Insn::encode).collect();
    let load = |log: &mut [u8]| bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, &raw, LICENSE, PROG_NAME, log);
    let source = match load(&mut []) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    // Before Linux 5.11 a program's memory counts against RLIMIT_MEMLOCK (runc#2167).
    if source.raw_os_error() == Some(libc::EPERM) {
        if let Some(Ok(fd)) = with_memlock_unlimited(|| load(&mut [])) {
            return Ok(fd);
        }
    }
    // Load once more with a log, only to say why.
    let mut log = vec![0u8; VERIFIER_LOG_BYTES];
    let _ = load(&mut log);
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end]);
    // The verifier replays the whole program; the reason for a refusal is at the end.
    let mut tail: Vec<&str> = log.lines().rev().take(VERIFIER_LOG_LINES).collect();
    tail.reverse();
    Err(DeviceFilterError::Load {
        path: dir.to_path_buf(),
        insns: program.len(),
        source,
        log: tail.join("\n"),
    })
}

/// Run `f` with RLIMIT_MEMLOCK lifted, then put the old limit back: this process forks the
/// container, which must get the limits its config asks for, not ours. None when the limit cannot
/// be raised.
fn with_memlock_unlimited<T>(f: impl FnOnce() -> T) -> Option<T> {
    let memlock = libc::RLIMIT_MEMLOCK as i32;
    let (soft, hard) = sys::getrlimit(memlock).ok()?;
    sys::setrlimit(memlock, libc::RLIM_INFINITY, libc::RLIM_INFINITY).ok()?;
    let out = f();
    let _ = sys::setrlimit(memlock, soft, hard);
    Some(out)
}

#[cfg(test)]
mod tests;
