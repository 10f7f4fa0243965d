//! Pure planning: syscall-restart fix-up of dumped registers, the tree (pids relative to the
//! container's pid namespace), and the restore layout of each task (set_tid, sessions, premap
//! addresses, which seed mappings to unmap). Everything here is data in, data out.

use std::collections::BTreeMap;

use super::image::{PidNs, Regs, TaskImage, Tree, TreeEntry, Vma, VmaKind};
use super::pidtree::{self, TaskNs};
use super::procfs::Status;
use super::CheckpointError;

pub const PAGE: u64 = 4096;
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;
const EINTR: i64 = -4;

impl From<libc::user_regs_struct> for Regs {
    fn from(r: libc::user_regs_struct) -> Regs {
        Regs {
            r15: r.r15,
            r14: r.r14,
            r13: r.r13,
            r12: r.r12,
            rbp: r.rbp,
            rbx: r.rbx,
            r11: r.r11,
            r10: r.r10,
            r9: r.r9,
            r8: r.r8,
            rax: r.rax,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            orig_rax: r.orig_rax,
            rip: r.rip,
            cs: r.cs,
            eflags: r.eflags,
            rsp: r.rsp,
            ss: r.ss,
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            ds: r.ds,
            es: r.es,
            fs: r.fs,
            gs: r.gs,
        }
    }
}

impl From<&Regs> for libc::user_regs_struct {
    fn from(r: &Regs) -> libc::user_regs_struct {
        libc::user_regs_struct {
            r15: r.r15,
            r14: r.r14,
            r13: r.r13,
            r12: r.r12,
            rbp: r.rbp,
            rbx: r.rbx,
            r11: r.r11,
            r10: r.r10,
            r9: r.r9,
            r8: r.r8,
            rax: r.rax,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            orig_rax: r.orig_rax,
            rip: r.rip,
            cs: r.cs,
            eflags: r.eflags,
            rsp: r.rsp,
            ss: r.ss,
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            ds: r.ds,
            es: r.es,
            fs: r.fs,
            gs: r.gs,
        }
    }
}

/// A task stopped inside a system call has the kernel's restart code in rax; the kernel would
/// act on it when resuming, but a restored task resumes with `orig_rax = -1`. So apply the
/// restart now, as compel does (`compel/arch/x86/src/lib/infect.c`): re-execute the `syscall`
/// instruction for the ERESTART{SYS,NOINTR,NOHAND} family; report EINTR for a restart block
/// (nanosleep & co. have already written the remaining time, so their callers retry).
pub fn fixup_restart(r: &mut Regs) {
    if (r.orig_rax as i64) < 0 {
        return;
    }
    match r.rax as i64 {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            r.rax = r.orig_rax;
            r.rip -= 2;
        }
        ERESTART_RESTARTBLOCK => r.rax = EINTR as u64,
        _ => {}
    }
}

/// Build the tree from the host-view status and namespaces of every task. The root is the one
/// task whose parent is not dumped; its pid namespace is the container's (level 0), and each
/// task keeps its NSpid vector from that level down (`pidtree`). `ns_parent` maps a pid
/// namespace to its parent (NS_GET_PARENT) for every namespace in `ns` but the root's.
pub fn build_tree(
    statuses: &BTreeMap<i32, Status>,
    ns: &BTreeMap<i32, TaskNs>,
    ns_parent: &BTreeMap<u64, u64>,
) -> Result<Tree, CheckpointError> {
    let unsupported = |pid: i32, what: String| CheckpointError::Unsupported { pid, what };
    let roots: Vec<i32> = statuses
        .iter()
        .filter(|(_, s)| !statuses.contains_key(&s.ppid))
        .map(|(p, _)| *p)
        .collect();
    let [root_host] = roots[..] else {
        return Err(unsupported(
            roots.first().copied().unwrap_or(0),
            format!("the dumped processes must form one tree; roots: {roots:?}"),
        ));
    };
    if let Some(host) = statuses.keys().find(|h| !ns.contains_key(h)) {
        return Err(unsupported(*host, "its namespaces were not read".into()));
    }
    pidtree::check_same_namespaces(ns, root_host)?;
    // Pid vectors from the container's level down.
    let level = statuses[&root_host].nspid.len().saturating_sub(1);
    let mut rel = BTreeMap::new();
    for (&host, s) in statuses {
        if s.nspid.len() <= level {
            return Err(unsupported(
                host,
                format!("is outside the container's pid namespace (NSpid {:?})", s.nspid),
            ));
        }
        rel.insert(host, s.nspid[level..].to_vec());
    }
    let spaces = pidtree::namespaces(&rel, ns, ns_parent, ns[&root_host].pid)?;

    let mut tasks = Vec::new();
    for (&host, s) in statuses {
        let (v, n) = (&rel[&host], &ns[&host]);
        let ppid = if host == root_host {
            0
        } else {
            let parent_ns = ns[&s.ppid].pid;
            if !pidtree::is_ancestor_or_same(&spaces, parent_ns, n.pid) {
                return Err(unsupported(
                    host,
                    format!(
                        "its parent {} lives in pid namespace pid:[{parent_ns}], neither its own pid:[{}] nor an ancestor",
                        s.ppid, n.pid
                    ),
                ));
            }
            rel[&s.ppid][0]
        };
        let cut = |x: &[i32]| x.get(level..).map(<[i32]>::to_vec).unwrap_or_default();
        let (nspgid, nssid) = (cut(&s.nspgid), cut(&s.nssid));
        tasks.push(TreeEntry {
            pid: v[0],
            ppid,
            pgid: nspgid.first().copied().unwrap_or(0),
            sid: nssid.first().copied().unwrap_or(0),
            host_pid: host,
            nspid: v.clone(),
            nspgid,
            nssid,
            pid_ns: n.pid,
            pid_ns_for_children: (n.pid_for_children != 0 && n.pid_for_children != n.pid).then_some(n.pid_for_children),
        });
    }
    tasks.sort_by_key(|t| t.pid);
    let mut pid_namespaces: Vec<PidNs> = spaces.into_values().collect();
    pid_namespaces.sort_by_key(|s| (s.level, s.init.unwrap_or(i32::MAX), s.id));
    let tree = Tree {
        root: rel[&root_host][0],
        host_levels: level,
        tasks,
        pid_namespaces,
        zombies: vec![],
    };
    Ok(tree)
}

/// Sessions and process groups (with helpers for dead leaders, `pstree::plan`): refuse at dump
/// what the restore could not rebuild.
pub fn check_sessions(tree: &Tree, subreapers: &std::collections::BTreeSet<i32>) -> Result<(), CheckpointError> {
    super::pstree::plan(tree, subreapers).map(|_| ())
}

/// Where each dumped VMA is premapped in the seed, and the stub; one per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub stub: u64,
    /// (index into TaskImage::vmas, premap address), for the VMAs `is_restored_memory` names.
    pub premaps: Vec<(usize, u64)>,
    /// The whole area [start, end) the stub and premaps occupy.
    pub area: (u64, u64),
}

/// Gap between premapped areas, so neighbours never merge into one VMA and a growsdown VMA's
/// guard gap never touches another premap.
const PREMAP_GAP: u64 = 2 << 20;

pub fn is_restored_memory(v: &Vma) -> bool {
    matches!(
        v.kind,
        VmaKind::Anon | VmaKind::FilePrivate | VmaKind::FileShared | VmaKind::FileSharedRo | VmaKind::Shmem
    )
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Lay out the stub and premaps in one area that overlaps neither `occupied` (the restorer's
/// own mappings, inherited by every seed) nor any of the task's VMAs.
pub fn plan_layout(task: &TaskImage, occupied: &[(u64, u64)]) -> Result<Layout, CheckpointError> {
    let mut size = 3 * PAGE + PREMAP_GAP;
    for v in task.vmas.iter().filter(|v| is_restored_memory(v)) {
        size += v.len() + PREMAP_GAP;
    }
    let targets: Vec<(u64, u64)> = task.vmas.iter().map(|v| (v.start, v.end)).collect();
    let base = (1u64..0x70)
        .map(|i| i << 40)
        .find(|&b| {
            let area = (b, b + size);
            !occupied.iter().chain(&targets).any(|&r| overlaps(area, r))
        })
        .ok_or_else(|| CheckpointError::Restore(format!("pid {}: no free area of {size} bytes", task.pid)))?;
    let mut cursor = base + 2 * PAGE + PREMAP_GAP;
    let mut premaps = Vec::new();
    for (i, v) in task.vmas.iter().enumerate().filter(|(_, v)| is_restored_memory(v)) {
        premaps.push((i, cursor));
        cursor += v.len() + PREMAP_GAP;
    }
    Ok(Layout {
        stub: base,
        premaps,
        area: (base, base + size),
    })
}

/// The seed's mappings to unmap before the transplant: everything outside the layout area,
/// except [vsyscall] (not a real VMA).
pub fn seed_unmaps(seed_maps: &[super::procfs::SmapsVma], layout: &Layout) -> Vec<(u64, u64)> {
    seed_maps
        .iter()
        .filter(|v| v.name != "[vsyscall]")
        .filter(|v| !(v.start >= layout.area.0 && v.end <= layout.area.1))
        .map(|v| (v.start, v.end))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(ppid: i32, nspid: &[i32], pgid: i32, sid: i32) -> Status {
        Status {
            ppid,
            nspid: nspid.to_vec(),
            nspgid: vec![0, pgid],
            nssid: vec![0, sid],
            ..Default::default()
        }
    }

    #[test]
    fn restart_fixups() {
        let mut r = Regs {
            rax: (-512i64) as u64,
            orig_rax: 61,
            rip: 0x1002,
            ..Default::default()
        };
        fixup_restart(&mut r);
        assert_eq!((r.rax, r.rip), (61, 0x1000));
        let mut r = Regs {
            rax: (-516i64) as u64,
            orig_rax: 230,
            rip: 0x1002,
            ..Default::default()
        };
        fixup_restart(&mut r);
        assert_eq!((r.rax as i64, r.rip), (-4, 0x1002));
        let mut r = Regs {
            rax: (-512i64) as u64,
            orig_rax: u64::MAX,
            rip: 0x1002,
            ..Default::default()
        };
        fixup_restart(&mut r);
        assert_eq!(r.rip, 0x1002, "not in a syscall: untouched");
    }

    use super::super::pidtree::plan_pids;
    use super::super::pidtree::tests::{ns_of, C};

    fn flat(s: &BTreeMap<i32, Status>) -> Result<Tree, CheckpointError> {
        let ns = s.keys().map(|p| (*p, ns_of(C))).collect();
        build_tree(s, &ns, &BTreeMap::new())
    }

    #[test]
    fn tree_in_a_pid_namespace() {
        let mut s = BTreeMap::new();
        s.insert(500, st(400, &[500, 1], 1, 1));
        s.insert(501, st(500, &[501, 7], 1, 1));
        let t = flat(&s).unwrap();
        assert_eq!(t.root, 1);
        assert_eq!(t.host_levels, 1);
        assert_eq!(t.tasks[1].pid, 7);
        assert_eq!(t.tasks[1].ppid, 1);
        assert_eq!(t.tasks[0].ppid, 0);
        assert_eq!(t.tasks[1].nspid, vec![7]);
        assert_eq!(t.pid_namespaces.len(), 1);
        assert_eq!(t.pid_namespaces[0].init, Some(1));
        let plans = plan_pids(&t).unwrap();
        assert_eq!(plans[&1].children, vec![7]);
        assert_eq!(plans[&7].clone.set_tid, vec![7]);
        assert!(!plans[&7].clone.new_pidns && plans[&7].clone.enter.is_none());
    }

    #[test]
    fn tree_refusals() {
        let mut s = BTreeMap::new();
        s.insert(500, st(400, &[500, 1], 1, 1));
        s.insert(600, st(401, &[600, 9], 9, 9));
        assert!(flat(&s).unwrap_err().to_string().contains("one tree"));
        let mut s = BTreeMap::new();
        s.insert(500, st(400, &[500, 1], 1, 1));
        s.insert(501, st(500, &[501, 7], 1, 1));
        s.insert(502, st(501, &[502, 8], 1, 7));
        let tree = flat(&s).unwrap();
        assert!(check_sessions(&tree, &Default::default())
            .unwrap_err()
            .to_string()
            .contains("session 7"));
    }

    fn vma(start: u64, end: u64, kind: VmaKind) -> Vma {
        Vma {
            kind,
            ..Vma::test_anon(start, end)
        }
    }

    #[test]
    fn layout_avoids_everything() {
        let task: TaskImage = serde_json::from_value(serde_json::json!({
            "pid": 1, "host_nspid": [5, 1], "comm": "sh", "exe": "/bin/sh", "cwd": "/", "root": "/",
            "umask": 18, "personality": 0, "creds": Creds::default(), "rlimits": [], "sigmask": 0,
            "sigactions": [], "altstack": {"sp": 0, "flags": 2, "size": 0}, "regs": Regs::default(),
            "xstate": "", "rseq": null, "robust_list": [0, 0], "tid_address": 0, "mm": MmFields::default(),
            "auxv": [], "vmas": [], "fds": []
        }))
        .unwrap();
        let mut task = task;
        task.vmas = vec![
            vma(0x400000, 0x401000, VmaKind::FilePrivate),
            vma(1 << 40, (1 << 40) + 0x5000, VmaKind::Anon),
            vma(0x7fff_0000_0000, 0x7fff_0000_2000, VmaKind::Vdso),
        ];
        let occupied = [(2u64 << 40, (2u64 << 40) + 0x1000)];
        let l = plan_layout(&task, &occupied).unwrap();
        assert_eq!(l.stub, 3 << 40);
        assert_eq!(l.premaps.len(), 2);
        assert_eq!(l.premaps[0], (0, l.stub + 2 * PAGE + PREMAP_GAP));
        assert_eq!(l.premaps[1].1, l.premaps[0].1 + 0x1000 + PREMAP_GAP);
        assert!(l.area.1 > l.premaps[1].1 + 0x5000);

        let maps = super::super::procfs::parse_smaps(&format!(
            "{:x}-{:x} r-xp 00000000 00:00 0 \n{:x}-{:x} rw-p 00000000 00:00 0 \nffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n",
            l.stub,
            l.stub + PAGE,
            0x5555_0000_0000u64,
            0x5555_0000_1000u64
        ));
        assert_eq!(seed_unmaps(&maps, &l), vec![(0x5555_0000_0000, 0x5555_0000_1000)]);
    }

    use super::super::image::{Creds, MmFields};
}
