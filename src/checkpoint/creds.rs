//! Credential restore (CHECKPOINT.md §4.4 steps 15-16): the pure plan of raw, per-thread calls
//! that turn a seed's credentials (the restorer's: root, nearly every capability) into the
//! dumped ones, and the refusals decided before anything is cloned. `transplant` injects the
//! steps as the last calls of each task's restore, after everything that needs privilege.
//!
//! Order (reference: CRIU `restore_creds()`, with ambient capabilities added):
//!
//! 1. `setgroups` (needs CAP_SETGID, still held).
//! 2. securebits = SECBIT_NO_SETUID_FIXUP, so the uid changes below keep every capability
//!    (SECBIT_KEEP_CAPS would keep only the permitted set and still clear the effective one).
//! 3. `setresgid` + `setfsgid`, then `setresuid` + `setfsuid` (raw syscalls: per thread).
//! 4. `capset` of the final inheritable set while the bounding set is still the restorer's
//!    (a raised inheritable bit must lie in the bounding set at the time).
//! 5. ambient: clear, then `PR_CAP_AMBIENT_RAISE` each bit (needs it permitted + inheritable,
//!    and must precede a final SECBIT_NO_CAP_AMBIENT_RAISE).
//! 6. `PR_CAPBSET_DROP` every capability outside the dumped bounding set (needs CAP_SETPCAP).
//! 7. the dumped securebits (needs CAP_SETPCAP, so before the final capset).
//! 8. `capset` v3 of the final effective/permitted/inheritable sets (the kernel keeps the
//!    ambient bits, which are a subset of permitted ∩ inheritable).
//! 9. `PR_SET_NO_NEW_PRIVS`, then `PR_SET_DUMPABLE` (a uid change reset it to suid_dumpable).

use super::image::Creds;
use super::procfs;
use super::{CheckpointError, Result};

pub const SECBIT_NOROOT: u32 = 1 << 0;
pub const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
pub const SECBIT_KEEP_CAPS: u32 = 1 << 4;
pub const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
/// The four *_LOCKED bits.
const SECBIT_LOCKS: u32 = (1 << 1) | (1 << 3) | (1 << 5) | (1 << 7);
/// More supplementary groups than fit the injection scratch page (4 KiB of u32) are refused.
pub const MAX_GROUPS: usize = 1024;

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;

const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// "CAP_SYS_RESOURCE" (or "capability 45" past the table).
pub fn cap_name(cap: u32) -> String {
    CAP_NAMES
        .get(cap as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("capability {cap}"))
}

fn cap_list(mask: u64) -> String {
    bits(mask).map(cap_name).collect::<Vec<_>>().join(", ")
}

fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |b| mask & (1u64 << b) != 0)
}

fn has(mask: u64, cap: u32) -> bool {
    mask & (1u64 << cap) != 0
}

/// The credentials a seed starts with: the restoring thread's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    pub securebits: u32,
    /// /proc/sys/kernel/cap_last_cap.
    pub last_cap: u32,
    /// PR_GET_DUMPABLE of the restorer, inherited by the seeds (amber's init is not dumpable
    /// until it execs, so a restore in a container starts from 0).
    pub dumpable: bool,
}

impl Current {
    /// The calling thread's credentials (seeds are forks of this thread).
    pub fn of_self() -> Result<Current> {
        let path = "/proc/thread-self/status";
        let s = procfs::parse_status(&std::fs::read_to_string(path).map_err(super::proc_err(path))?);
        let last = "/proc/sys/kernel/cap_last_cap";
        let last_cap = std::fs::read_to_string(last)
            .map_err(super::proc_err(last))?
            .trim()
            .parse()
            .unwrap_or(40);
        let securebits =
            crate::sys::ptrace::own_securebits().map_err(|e| CheckpointError::Sys("PR_GET_SECUREBITS", e))?;
        Ok(Current {
            uid: s.uid,
            gid: s.gid,
            groups: s.groups,
            cap_inh: s.cap_inh,
            cap_prm: s.cap_prm,
            cap_eff: s.cap_eff,
            cap_bnd: s.cap_bnd,
            cap_amb: s.cap_amb,
            no_new_privs: s.no_new_privs,
            securebits,
            last_cap,
            dumpable: nix::sys::prctl::get_dumpable().map_err(|e| CheckpointError::Sys("PR_GET_DUMPABLE", e.into()))?,
        })
    }
}

/// One injected call of the credential restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredStep {
    SetGroups(Vec<u32>),
    SetSecurebits(u32),
    /// real, effective, saved.
    SetResGid([u32; 3]),
    SetFsGid(u32),
    SetResUid([u32; 3]),
    SetFsUid(u32),
    Capset {
        eff: u64,
        prm: u64,
        inh: u64,
    },
    AmbientClearAll,
    AmbientRaise(u32),
    BoundingDrop(u32),
    NoNewPrivs,
    Dumpable(u32),
}

fn refuse(pid: i32, what: String) -> CheckpointError {
    CheckpointError::Restore(format!("pid {pid}: {what}"))
}

/// The steps that turn `have` (a seed's credentials) into `want` (the dumped ones), or a
/// refusal naming the pid and what the restorer lacks. Empty when nothing differs.
pub fn plan(pid: i32, want: &Creds, have: &Current) -> Result<Vec<CredStep>> {
    let all = if have.last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (have.last_cap + 1)) - 1
    };
    let (w_inh, w_prm, w_eff, w_bnd, w_amb) = (
        want.cap_inh & all,
        want.cap_prm & all,
        want.cap_eff & all,
        want.cap_bnd & all,
        want.cap_amb & all,
    );
    // What the kernel can never grant from the restorer's position.
    let lacking = w_bnd & !have.cap_bnd;
    if lacking != 0 {
        return Err(refuse(
            pid,
            format!(
                "its bounding set holds {}, which the restorer's bounding set ({:#x}) lacks; a capability cannot be added back",
                cap_list(lacking),
                have.cap_bnd
            ),
        ));
    }
    let lacking = (w_prm | w_eff | w_amb) & !have.cap_prm;
    if lacking != 0 {
        return Err(refuse(
            pid,
            format!(
                "it holds {}, which the restorer does not have (permitted {:#x}, bounding {:#x})",
                cap_list(lacking),
                have.cap_prm,
                have.cap_bnd
            ),
        ));
    }
    let lacking = w_inh & !(have.cap_inh | have.cap_bnd);
    if lacking != 0 {
        return Err(refuse(
            pid,
            format!(
                "its inheritable set holds {}, outside the restorer's bounding set ({:#x})",
                cap_list(lacking),
                have.cap_bnd
            ),
        ));
    }
    if w_eff & !w_prm != 0 || w_amb & !(w_prm & w_inh) != 0 {
        return Err(CheckpointError::Corrupt(format!(
            "pid {pid}: capability sets are inconsistent (effective {w_eff:#x} or ambient {w_amb:#x} outside permitted {w_prm:#x} / inheritable {w_inh:#x})"
        )));
    }
    if have.no_new_privs && !want.no_new_privs {
        return Err(refuse(
            pid,
            "the restorer runs with no_new_privs, which the task did not have and which cannot be cleared".into(),
        ));
    }
    if want.groups.len() > MAX_GROUPS {
        return Err(refuse(
            pid,
            format!(
                "{} supplementary groups (at most {MAX_GROUPS} are restored)",
                want.groups.len()
            ),
        ));
    }

    let ids_change = want.uid != have.uid || want.gid != have.gid;
    let groups_change = want.groups != have.groups;
    let caps_change = (w_inh, w_prm, w_eff, w_amb) != (have.cap_inh, have.cap_prm, have.cap_eff, have.cap_amb)
        || w_bnd != have.cap_bnd;
    let bits_change = ids_change || caps_change || want.securebits != have.securebits;
    let mut needed = Vec::new();
    if ids_change || groups_change {
        needed.push(CAP_SETGID);
    }
    if ids_change {
        needed.push(CAP_SETUID);
    }
    if bits_change {
        needed.push(CAP_SETPCAP);
    }
    let missing: Vec<String> = needed
        .into_iter()
        .filter(|&c| !has(have.cap_eff, c))
        .map(cap_name)
        .collect();
    if !missing.is_empty() {
        return Err(refuse(
            pid,
            format!(
                "changing credentials to uid {:?} gid {:?} caps {w_eff:#x} needs {} in the restorer's effective set",
                want.uid,
                want.gid,
                missing.join(", ")
            ),
        ));
    }
    if bits_change && have.securebits & SECBIT_LOCKS != 0 {
        return Err(refuse(
            pid,
            format!(
                "the restorer's securebits {:#x} are locked; they cannot be changed to {:#x}",
                have.securebits, want.securebits
            ),
        ));
    }

    let mut steps = Vec::new();
    let mut secbits = have.securebits;
    if groups_change {
        steps.push(CredStep::SetGroups(want.groups.clone()));
    }
    if ids_change {
        if secbits != SECBIT_NO_SETUID_FIXUP {
            secbits = SECBIT_NO_SETUID_FIXUP;
            steps.push(CredStep::SetSecurebits(secbits));
        }
        let (g, u) = (want.gid, want.uid);
        steps.push(CredStep::SetResGid([g[0], g[1], g[2]]));
        if g[3] != g[1] {
            steps.push(CredStep::SetFsGid(g[3]));
        }
        steps.push(CredStep::SetResUid([u[0], u[1], u[2]]));
        if u[3] != u[1] {
            steps.push(CredStep::SetFsUid(u[3]));
        }
    }
    let (eff, prm) = (have.cap_eff, have.cap_prm);
    let mut inh = have.cap_inh;
    if w_inh != inh {
        inh = w_inh;
        steps.push(CredStep::Capset { eff, prm, inh });
    }
    if w_amb != have.cap_amb {
        if secbits & SECBIT_NO_CAP_AMBIENT_RAISE != 0 && w_amb != 0 {
            secbits &= !SECBIT_NO_CAP_AMBIENT_RAISE;
            steps.push(CredStep::SetSecurebits(secbits));
        }
        if have.cap_amb != 0 {
            steps.push(CredStep::AmbientClearAll);
        }
        steps.extend(bits(w_amb).map(CredStep::AmbientRaise));
    }
    steps.extend(
        bits(have.cap_bnd & !w_bnd)
            .filter(|&c| c <= have.last_cap)
            .map(CredStep::BoundingDrop),
    );
    if secbits != want.securebits {
        steps.push(CredStep::SetSecurebits(want.securebits));
    }
    if (w_eff, w_prm, w_inh) != (eff, prm, inh) {
        steps.push(CredStep::Capset {
            eff: w_eff,
            prm: w_prm,
            inh: w_inh,
        });
    }
    if want.no_new_privs && !have.no_new_privs {
        steps.push(CredStep::NoNewPrivs);
    }
    // 2 (suid_dumpable) cannot be set with PR_SET_DUMPABLE; a uid change already leaves the
    // task at the sysctl's value, which is what such a task had.
    if let Some(d @ (0 | 1)) = want.dumpable {
        if (d == 1) != have.dumpable || ids_change {
            steps.push(CredStep::Dumpable(d));
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = 0x1ff_ffff_ffff;
    const NO_SYS_RESOURCE: u64 = ALL & !(1 << 24);
    /// runc's default: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    const RUNC: u64 = 0x2000_0420;

    fn root() -> Current {
        Current {
            cap_prm: NO_SYS_RESOURCE,
            cap_eff: NO_SYS_RESOURCE,
            cap_bnd: NO_SYS_RESOURCE,
            last_cap: 40,
            dumpable: true,
            ..Default::default()
        }
    }

    fn same_as(c: &Current) -> Creds {
        Creds {
            uid: c.uid,
            gid: c.gid,
            groups: c.groups.clone(),
            cap_inh: c.cap_inh,
            cap_prm: c.cap_prm,
            cap_eff: c.cap_eff,
            cap_bnd: c.cap_bnd,
            cap_amb: c.cap_amb,
            no_new_privs: c.no_new_privs,
            securebits: c.securebits,
            dumpable: None,
        }
    }

    fn pos(steps: &[CredStep], f: impl Fn(&CredStep) -> bool) -> usize {
        steps
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("missing step in {steps:?}"))
    }

    #[test]
    fn unchanged_credentials_need_nothing() {
        let have = root();
        assert_eq!(plan(1, &same_as(&have), &have).unwrap(), vec![]);
        let mut want = same_as(&have);
        want.dumpable = Some(1);
        assert_eq!(plan(1, &want, &have).unwrap(), vec![], "dumpable 1 is already so");
        // A non-dumpable restorer (amber's init before exec) must make it dumpable again.
        let not_dumpable = Current {
            dumpable: false,
            ..root()
        };
        assert_eq!(plan(1, &want, &not_dumpable).unwrap(), vec![CredStep::Dumpable(1)]);
        want.dumpable = Some(0);
        assert_eq!(plan(1, &want, &have).unwrap(), vec![CredStep::Dumpable(0)]);
    }

    #[test]
    fn runc_like_non_root_task_in_criu_order() {
        let have = root();
        let want = Creds {
            uid: [1000, 1000, 1000, 1000],
            gid: [1000, 1001, 1000, 1001],
            groups: vec![20, 1000],
            cap_inh: RUNC,
            cap_prm: RUNC,
            cap_eff: RUNC,
            cap_bnd: RUNC,
            cap_amb: RUNC,
            no_new_privs: true,
            securebits: SECBIT_NOROOT | SECBIT_NO_CAP_AMBIENT_RAISE,
            dumpable: Some(1),
        };
        let steps = plan(7, &want, &have).unwrap();
        let groups = pos(&steps, |s| matches!(s, CredStep::SetGroups(g) if g == &[20, 1000]));
        let fixup = pos(&steps, |s| *s == CredStep::SetSecurebits(SECBIT_NO_SETUID_FIXUP));
        let resgid = pos(&steps, |s| *s == CredStep::SetResGid([1000, 1001, 1000]));
        let resuid = pos(&steps, |s| *s == CredStep::SetResUid([1000, 1000, 1000]));
        let inh = pos(&steps, |s| {
            *s == CredStep::Capset {
                eff: NO_SYS_RESOURCE,
                prm: NO_SYS_RESOURCE,
                inh: RUNC,
            }
        });
        let first_raise = pos(&steps, |s| matches!(s, CredStep::AmbientRaise(_)));
        let first_drop = pos(&steps, |s| matches!(s, CredStep::BoundingDrop(_)));
        let final_bits = pos(&steps, |s| *s == CredStep::SetSecurebits(want.securebits));
        let capset = pos(&steps, |s| {
            *s == CredStep::Capset {
                eff: RUNC,
                prm: RUNC,
                inh: RUNC,
            }
        });
        let nnp = pos(&steps, |s| *s == CredStep::NoNewPrivs);
        let dumpable = pos(&steps, |s| *s == CredStep::Dumpable(1));
        let order = [
            groups,
            fixup,
            resgid,
            resuid,
            inh,
            first_raise,
            first_drop,
            final_bits,
            capset,
            nnp,
            dumpable,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}: {steps:#?}");
        // fsgid differs from egid? no: g[3] == g[1], so no setfsgid; nor setfsuid.
        assert!(!steps
            .iter()
            .any(|s| matches!(s, CredStep::SetFsGid(_) | CredStep::SetFsUid(_))));
        let raised: Vec<u32> = steps
            .iter()
            .filter_map(|s| match s {
                CredStep::AmbientRaise(c) => Some(*c),
                _ => None,
            })
            .collect();
        assert_eq!(raised, vec![5, 10, 29]);
        let dropped: Vec<u32> = steps
            .iter()
            .filter_map(|s| match s {
                CredStep::BoundingDrop(c) => Some(*c),
                _ => None,
            })
            .collect();
        assert_eq!(dropped.len(), 40 - 3, "every capability but the three and SYS_RESOURCE");
        assert!(!dropped.contains(&24) && !dropped.contains(&5) && dropped.contains(&21));
        assert_eq!(steps.last(), Some(&CredStep::Dumpable(1)));
    }

    #[test]
    fn fs_ids_are_set_after_the_res_ids() {
        let have = root();
        let mut want = same_as(&have);
        want.uid = [0, 0, 0, 33];
        want.gid = [5, 5, 5, 6];
        let steps = plan(2, &want, &have).unwrap();
        assert_eq!(
            steps,
            vec![
                CredStep::SetSecurebits(SECBIT_NO_SETUID_FIXUP),
                CredStep::SetResGid([5, 5, 5]),
                CredStep::SetFsGid(6),
                CredStep::SetResUid([0, 0, 0]),
                CredStep::SetFsUid(33),
                CredStep::SetSecurebits(0),
            ]
        );
    }

    #[test]
    fn missing_capabilities_are_refused_by_name() {
        let have = root();
        let mut want = same_as(&have);
        want.cap_bnd = ALL;
        let e = plan(42, &want, &have).unwrap_err().to_string();
        assert!(
            e.contains("pid 42") && e.contains("CAP_SYS_RESOURCE") && e.contains("bounding"),
            "{e}"
        );
        let mut want = same_as(&have);
        want.cap_prm = RUNC | (1 << 24);
        want.cap_eff = RUNC;
        let e = plan(42, &want, &have).unwrap_err().to_string();
        assert!(e.contains("pid 42") && e.contains("CAP_SYS_RESOURCE"), "{e}");
        let mut want = same_as(&have);
        want.cap_inh = 1 << 24;
        let e = plan(42, &want, &have).unwrap_err().to_string();
        assert!(e.contains("CAP_SYS_RESOURCE") && e.contains("inheritable"), "{e}");

        // An unprivileged restorer cannot change ids.
        let mut plain = Current {
            uid: [1000; 4],
            gid: [1000; 4],
            last_cap: 40,
            cap_bnd: NO_SYS_RESOURCE,
            ..Default::default()
        };
        let mut want = same_as(&plain);
        want.uid = [1001; 4];
        let e = plan(3, &want, &plain).unwrap_err().to_string();
        assert!(e.contains("CAP_SETUID") && e.contains("CAP_SETGID"), "{e}");
        // ...but may restore its own credentials, and no_new_privs cannot be cleared.
        plain.no_new_privs = true;
        let mut want = same_as(&plain);
        assert_eq!(plan(3, &want, &plain).unwrap(), vec![]);
        want.no_new_privs = false;
        let e = plan(3, &want, &plain).unwrap_err().to_string();
        assert!(e.contains("no_new_privs"), "{e}");
    }

    #[test]
    fn inconsistent_sets_and_too_many_groups_are_refused() {
        let have = root();
        let mut want = same_as(&have);
        want.cap_eff = RUNC;
        want.cap_prm = 0;
        assert!(matches!(plan(1, &want, &have), Err(CheckpointError::Corrupt(_))));
        let mut want = same_as(&have);
        want.groups = (0..MAX_GROUPS as u32 + 1).collect();
        assert!(plan(1, &want, &have)
            .unwrap_err()
            .to_string()
            .contains("supplementary groups"));
    }

    #[test]
    fn ambient_is_cleared_before_raising() {
        let mut have = root();
        have.cap_inh = RUNC;
        have.cap_amb = 1 << 5;
        let mut want = same_as(&have);
        want.cap_amb = 1 << 10;
        let steps = plan(1, &want, &have).unwrap();
        assert_eq!(steps, vec![CredStep::AmbientClearAll, CredStep::AmbientRaise(10)]);
    }
}
