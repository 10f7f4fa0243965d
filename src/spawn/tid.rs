//! Checks for `clone3(set_tid)` made before cloning, so a refusal names the level and the pid in
//! words instead of a bare EINVAL/EEXIST/EPERM from the kernel. The check itself is pure; what it
//! needs to know about each level is gathered from /proc by `levels_for_child`.

use std::collections::BTreeSet;

/// Whether a pid is in use at one level.
#[derive(Debug, Clone)]
pub enum Taken {
    /// amber cannot see this level: the kernel decides.
    Unknown,
    /// A given set (a namespace about to be created is empty).
    Set(BTreeSet<i32>),
    /// amber's own namespace: look at /proc/<pid>, which resolves for threads too (their tids
    /// share the pid space but are not listed by readdir).
    Proc,
}

impl Taken {
    fn contains(&self, pid: i32) -> bool {
        match self {
            Taken::Unknown => false,
            Taken::Set(s) => s.contains(&pid),
            Taken::Proc => std::path::Path::new(&format!("/proc/{pid}")).exists(),
        }
    }
}

/// What amber knows about one pid-namespace level of the child, innermost (level 0) first.
#[derive(Debug, Clone)]
pub struct PidLevel {
    /// Human description: "the container's new pid namespace", "amber's pid namespace", ...
    pub name: String,
    /// Pids must be below this (the kernel's pid_max for that namespace); None when unknown.
    pub pid_max: Option<i32>,
    /// How to tell whether a pid is in use at this level.
    pub taken: Taken,
    /// Whether amber holds CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the user namespace owning
    /// this pid namespace; None when it cannot tell (the kernel decides).
    pub may_set: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetTidError {
    #[error("{len} pids were given but the new process has only {visible} pid namespace level(s) visible to amber")]
    TooLong { len: usize, visible: usize },
    #[error("level 0 ({name}): a new pid namespace starts at pid 1, not {pid}")]
    NewNsNotOne { name: String, pid: i32 },
    #[error("level {level} ({name}): pid {pid} is not a valid pid")]
    Negative { level: usize, name: String, pid: i32 },
    #[error("level {level} ({name}): pid {pid} is not below that namespace's pid_max ({max})")]
    AboveMax {
        level: usize,
        name: String,
        pid: i32,
        max: i32,
    },
    #[error("level {level} ({name}): pid {pid} is already in use")]
    InUse { level: usize, name: String, pid: i32 },
    #[error("level {level} ({name}): setting pid {pid} needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the user namespace that owns it")]
    NoCapability { level: usize, name: String, pid: i32 },
}

/// Refuse what the kernel would refuse, level by level (0 = innermost).
pub fn check_set_tid(set_tid: &[i32], new_pidns: bool, levels: &[PidLevel]) -> Result<(), SetTidError> {
    if set_tid.len() > levels.len() {
        return Err(SetTidError::TooLong {
            len: set_tid.len(),
            visible: levels.len(),
        });
    }
    for (level, (&pid, info)) in set_tid.iter().zip(levels).enumerate() {
        let name = info.name.clone();
        if pid == 0 {
            continue; // the kernel picks this level's pid
        }
        if pid < 0 {
            return Err(SetTidError::Negative { level, name, pid });
        }
        if level == 0 && new_pidns && pid != 1 {
            return Err(SetTidError::NewNsNotOne { name, pid });
        }
        if let Some(max) = info.pid_max {
            if pid >= max {
                return Err(SetTidError::AboveMax { level, name, pid, max });
            }
        }
        if info.taken.contains(pid) {
            return Err(SetTidError::InUse { level, name, pid });
        }
        if info.may_set == Some(false) {
            return Err(SetTidError::NoCapability { level, name, pid });
        }
    }
    Ok(())
}

/// The levels a child would have: its own new namespace (if any), amber's, then every ancestor.
pub fn levels_for_child(new_pidns: bool) -> Vec<PidLevel> {
    let depth = own_pidns_depth();
    let has_cap = has_cr_capability();
    let in_initial_userns = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false);
    // The kernel checks the capability in the user namespace that owns each pid namespace: for
    // our own, that is ours only if our pid namespace was created in our user namespace.
    let may_set = has_cap && (in_initial_userns || own_pidns_owned_by_own_userns().unwrap_or(true));
    // Above our own level we can only tell when we hold the capability in the initial user
    // namespace, which owns or is an ancestor of every owner; otherwise the kernel decides.
    let above = if in_initial_userns { Some(has_cap) } else { None };
    let mut levels = Vec::new();
    if new_pidns {
        levels.push(PidLevel {
            name: "the container's new pid namespace".into(),
            pid_max: read_pid_max(),
            taken: Taken::Set(BTreeSet::new()),
            may_set: Some(true),
        });
    }
    levels.push(PidLevel {
        name: "amber's pid namespace".into(),
        pid_max: read_pid_max(),
        taken: Taken::Proc,
        may_set: Some(may_set),
    });
    // When amber cannot see how deep it is, the levels above the ones it can see are left to
    // the kernel (up to its nesting limit of 32).
    let shown = if depth.exact { depth.levels } else { MAX_PID_NS_LEVEL };
    for i in 1..=shown {
        levels.push(PidLevel {
            name: format!("ancestor pid namespace {i} level(s) above amber's"),
            pid_max: None,
            taken: Taken::Unknown,
            may_set: above,
        });
    }
    levels
}

/// Whether the user namespace owning our pid namespace is our own user namespace.
fn own_pidns_owned_by_own_userns() -> Option<bool> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let pidns = std::fs::File::open("/proc/self/ns/pid").ok()?;
    let owner = crate::sys::ns_ioctl(pidns.as_fd(), crate::sys::NS_GET_USERNS).ok()?;
    let owner = std::fs::File::from(owner).metadata().ok()?;
    let ours = std::fs::metadata("/proc/self/ns/user").ok()?;
    Some((owner.dev(), owner.ino()) == (ours.dev(), ours.ino()))
}

/// The kernel's limit on pid namespace nesting.
pub const MAX_PID_NS_LEVEL: usize = 32;

/// The inode of the initial pid namespace (PROC_PID_INIT_INO), the same on every Linux host.
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// How many pid namespaces lie above ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub levels: usize,
    /// False when /proc belongs to a namespace below the host's, so NSpid (which starts at the
    /// procfs's namespace) may not show every ancestor.
    pub exact: bool,
}

pub fn own_pidns_depth() -> Depth {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino()).unwrap_or(0);
    if ino == INIT_PID_NS_INO {
        return Depth { levels: 0, exact: true };
    }
    let shown = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("NSpid:"))
                .map(|l| l.split_whitespace().count().saturating_sub(2))
        })
        .unwrap_or(0);
    Depth {
        levels: shown.max(1),
        exact: false,
    }
}

fn read_pid_max() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn has_cr_capability() -> bool {
    use caps::{CapSet, Capability};
    let has = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    has(Capability::CAP_SYS_ADMIN) || has(Capability::CAP_CHECKPOINT_RESTORE)
}

/// Parse `--init-pid 4242[,0,...]`: the pid in amber's namespace first, then each ancestor.
pub fn parse_init_pids(text: &str) -> Result<Vec<i32>, String> {
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<i32>()
                .map_err(|_| format!("invalid pid {p:?} in {text:?}: expected PID[,PID...]"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(name: &str, max: i32, taken: &[i32], may: bool) -> PidLevel {
        PidLevel {
            name: name.into(),
            pid_max: Some(max),
            taken: Taken::Set(taken.iter().copied().collect()),
            may_set: Some(may),
        }
    }

    #[test]
    fn accepts_free_pids() {
        let l = [level("new", 100, &[], true), level("host", 100, &[1, 5], true)];
        assert_eq!(check_set_tid(&[1, 42], true, &l), Ok(()));
        assert_eq!(check_set_tid(&[0, 0], true, &l), Ok(()));
        assert_eq!(check_set_tid(&[], true, &l), Ok(()));
    }

    #[test]
    fn refuses_too_long() {
        let l = [level("host", 100, &[], true)];
        let e = check_set_tid(&[1, 2], false, &l).unwrap_err();
        assert_eq!(e, SetTidError::TooLong { len: 2, visible: 1 });
        assert!(e.to_string().contains("2 pids"));
    }

    #[test]
    fn refuses_new_ns_not_one() {
        let l = [level("new", 100, &[], true), level("host", 100, &[], true)];
        let e = check_set_tid(&[7, 42], true, &l).unwrap_err();
        assert!(e.to_string().contains("level 0"), "{e}");
        assert!(e.to_string().contains("not 7"), "{e}");
    }

    #[test]
    fn refuses_taken_pid_naming_level() {
        let l = [level("new", 100, &[], true), level("host", 100, &[42], true)];
        let e = check_set_tid(&[1, 42], true, &l).unwrap_err();
        assert_eq!(e.to_string(), "level 1 (host): pid 42 is already in use");
    }

    #[test]
    fn refuses_above_pid_max() {
        let l = [level("host", 100, &[], true)];
        let e = check_set_tid(&[100], false, &l).unwrap_err();
        assert!(matches!(
            e,
            SetTidError::AboveMax {
                level: 0,
                pid: 100,
                max: 100,
                ..
            }
        ));
    }

    #[test]
    fn refuses_missing_capability() {
        let l = [level("new", 100, &[], true), level("host", 100, &[], false)];
        let e = check_set_tid(&[1, 50], true, &l).unwrap_err();
        assert!(matches!(e, SetTidError::NoCapability { level: 1, pid: 50, .. }));
        assert!(e.to_string().contains("CAP_CHECKPOINT_RESTORE"));
        // A level left to the kernel needs no capability.
        assert_eq!(check_set_tid(&[1, 0], true, &l), Ok(()));
    }

    #[test]
    fn refuses_negative() {
        let l = [level("host", 100, &[], true)];
        assert!(matches!(
            check_set_tid(&[-3], false, &l),
            Err(SetTidError::Negative { pid: -3, .. })
        ));
    }

    #[test]
    fn unknown_levels_are_left_to_the_kernel() {
        let l = [
            level("host", 100, &[], true),
            PidLevel {
                name: "above".into(),
                pid_max: None,
                taken: Taken::Unknown,
                may_set: None,
            },
        ];
        assert_eq!(check_set_tid(&[5, 99999], false, &l), Ok(()));
    }

    #[test]
    fn proc_lookup_sees_our_own_pid_and_threads() {
        let me = std::process::id() as i32;
        assert!(Taken::Proc.contains(me));
        let tid = nix::unistd::gettid().as_raw();
        assert!(Taken::Proc.contains(tid));
        assert!(!Taken::Proc.contains(i32::MAX));
    }

    #[test]
    fn parses_init_pid_lists() {
        assert_eq!(parse_init_pids("4242"), Ok(vec![4242]));
        assert_eq!(parse_init_pids("10,0,7"), Ok(vec![10, 0, 7]));
        assert!(parse_init_pids("x").unwrap_err().contains("invalid pid"));
    }
}
