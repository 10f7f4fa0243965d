//! Pure planning: syscall-restart fix-up of dumped registers, the tree (pids relative to the
//! container's pid namespace), and the restore layout of each task (set_tid, sessions, premap
//! addresses, which seed mappings to unmap). Everything here is data in, data out.

use std::collections::BTreeMap;

use super::image::{PidNs, Regs, TaskImage, Tree, TreeEntry, Vma, VmaKind};
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

/// The namespaces of one task as the dumper read them (nsfs inodes of /proc/<pid>/ns/*).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskNs {
    pub pid: u64,
    pub pid_for_children: u64,
    /// Every other kind the kernel shows ("mnt", "net", "user", "time_for_children", ...):
    /// each must be the root's (for "time_for_children": the root's "time").
    pub other: Vec<(String, u64)>,
}

/// Namespace kinds v1 cannot nest: the runtime re-creates only the container's own.
fn nested_ns_what(kind: &str) -> &'static str {
    match kind {
        "user" => "a nested user namespace",
        "time" | "time_for_children" => "a nested time namespace",
        "mnt" => "a mount namespace other than the container's",
        "net" => "a network namespace other than the container's",
        "ipc" => "an ipc namespace other than the container's",
        "uts" => "a uts namespace other than the container's",
        "cgroup" => "a cgroup namespace other than the container's",
        _ => "a namespace other than the container's",
    }
}

/// Build the tree from the host-view status and namespaces of every task. The root is the one
/// task whose parent is not dumped; its pid namespace is the container's (level 0), and each
/// task keeps its NSpid vector from that level down. `ns_parent` maps a pid namespace to its
/// parent (NS_GET_PARENT) for every namespace in `ns`.
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
    let nsof = |host: i32| {
        ns.get(&host)
            .ok_or_else(|| unsupported(host, "its namespaces were not read".into()))
    };
    let level = statuses[&root_host].nspid.len().saturating_sub(1);
    let root_ns = nsof(root_host)?;
    let container_ns = root_ns.pid;

    // Namespaces the runtime cannot re-create per task: each must be the root's.
    for &host in statuses.keys() {
        for (kind, ino) in &nsof(host)?.other {
            let want = if kind == "time_for_children" {
                "time"
            } else {
                kind.as_str()
            };
            let Some((_, root_ino)) = root_ns.other.iter().find(|(k, _)| k == want) else {
                continue;
            };
            if ino != root_ino {
                return Err(unsupported(
                    host,
                    format!(
                        "is in {} ({kind}:[{ino}], the container's init pid {root_host} has {want}:[{root_ino}]); v1 cannot restore it",
                        nested_ns_what(kind)
                    ),
                ));
            }
        }
    }

    // Pid vectors from the container's level down.
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

    // The pid namespaces, with their level, parent and init.
    let mut spaces: BTreeMap<u64, PidNs> = BTreeMap::new();
    for (&host, v) in &rel {
        let id = nsof(host)?.pid;
        let lvl = v.len() - 1;
        if (lvl == 0) != (id == container_ns) {
            return Err(unsupported(
                host,
                format!("NSpid {v:?} does not match its pid namespace pid:[{id}]"),
            ));
        }
        let e = spaces.entry(id).or_insert(PidNs {
            id,
            level: lvl,
            parent: None,
            init: None,
        });
        if e.level != lvl {
            return Err(unsupported(
                host,
                format!("pid namespace pid:[{id}] seen at levels {} and {lvl}", e.level),
            ));
        }
        if v[lvl] == 1 {
            e.init = Some(v[0]);
        }
    }
    for (&id, space) in spaces.iter_mut().filter(|(_, s)| s.level > 0) {
        let member = rel.iter().find(|(h, _)| ns[h].pid == id).map(|(h, _)| *h).unwrap_or(0);
        if space.init.is_none() {
            return Err(unsupported(
                member,
                format!(
                    "lives in pid namespace pid:[{id}] (level {} below the container's) whose init is not in the dump",
                    space.level
                ),
            ));
        }
        space.parent = Some(
            *ns_parent
                .get(&id)
                .ok_or_else(|| unsupported(member, format!("the parent of pid namespace pid:[{id}] is unknown")))?,
        );
    }
    // A parent must sit one level up and be in the tree.
    let levels: BTreeMap<u64, usize> = spaces.iter().map(|(id, s)| (*id, s.level)).collect();
    for s in spaces.values().filter(|s| s.level > 0) {
        let parent = s.parent.unwrap_or(0);
        if levels.get(&parent) != Some(&(s.level - 1)) {
            return Err(unsupported(
                s.init.unwrap_or(0),
                format!(
                    "pid namespace pid:[{}] has parent pid:[{parent}], which no dumped task lives in at level {}",
                    s.id,
                    s.level - 1
                ),
            ));
        }
    }

    // pid_for_children: a namespace of the tree, or a new empty one right below the task's.
    let mut pending = BTreeMap::new();
    for (&host, v) in &rel {
        let n = nsof(host)?;
        if n.pid_for_children == 0 || n.pid_for_children == n.pid {
            continue;
        }
        let target = n.pid_for_children;
        if !spaces.contains_key(&target) {
            if ns_parent.get(&target) != Some(&n.pid) {
                return Err(unsupported(
                    host,
                    format!(
                        "its children would be born in pid namespace pid:[{target}], which has no process in the dump and is not a child of its own"
                    ),
                ));
            }
            pending.insert(
                target,
                PidNs {
                    id: target,
                    level: v.len(),
                    parent: Some(n.pid),
                    init: None,
                },
            );
        } else if !is_ancestor_or_same(&spaces, n.pid, target) {
            return Err(unsupported(
                host,
                format!("its children would be born in pid namespace pid:[{target}], not below its own"),
            ));
        }
    }
    spaces.extend(pending);

    let at = |host: i32| rel[&host][0];
    let mut tasks = Vec::new();
    for (&host, s) in statuses {
        let v = &rel[&host];
        let n = nsof(host)?;
        let ppid = if host == root_host {
            0
        } else {
            let parent_ns = nsof(s.ppid)?.pid;
            if !is_ancestor_or_same(&spaces, parent_ns, n.pid) {
                return Err(unsupported(
                    host,
                    format!(
                        "its parent {} lives in pid namespace pid:[{parent_ns}], neither its own pid:[{}] nor an ancestor",
                        s.ppid, n.pid
                    ),
                ));
            }
            at(s.ppid)
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
        root: at(root_host),
        host_levels: level,
        tasks,
        pid_namespaces,
    };
    check_sessions(&tree)?;
    Ok(tree)
}

/// Whether `ancestor` is `ns` or one of its ancestors in the tree's namespaces.
fn is_ancestor_or_same(spaces: &BTreeMap<u64, PidNs>, ancestor: u64, ns: u64) -> bool {
    let mut cur = Some(ns);
    while let Some(id) = cur {
        if id == ancestor {
            return true;
        }
        cur = spaces.get(&id).and_then(|s| s.parent);
    }
    false
}

/// How a task is cloned by its parent (restore, R1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClonePlan {
    /// clone3 set_tid, innermost level first, up to the container's level.
    pub set_tid: Vec<i32>,
    /// CLONE_NEWPID: the task is the init of a namespace created with it.
    pub new_pidns: bool,
    /// Before cloning, the parent enters (setns CLONE_NEWPID) the pid namespace of the process
    /// with this pid *in the parent's own namespace* (the init of the namespace to enter), and
    /// goes back to its own afterwards.
    pub enter: Option<i32>,
    /// The level of the namespace entered (0 when none): the parent clones children that need
    /// no setns first, then the others by this level, so each init it waits for is already
    /// cloned or being cloned by a seed that waits only for shallower ones.
    pub enter_level: usize,
}

/// Where a restored task's later children are born (its pid_for_children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildrenNs {
    Own,
    /// setns into the namespace whose init has this pid in the task's own namespace.
    Enter(i32),
    /// unshare(CLONE_NEWPID): a namespace that has no process yet.
    Unshare,
}

/// The pid plan of one task: how it is cloned, the order of its children, and its final
/// pid_for_children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidPlan {
    pub clone: ClonePlan,
    pub children: Vec<i32>,
    pub children_ns: ChildrenNs,
}

/// Plan every task's clone3 from the tree (CHECKPOINT.md §2.4): set_tid is its NSpid vector
/// innermost first; the init of a nested namespace is cloned with CLONE_NEWPID; a task whose
/// parent lives in an ancestor namespace (the parent had done setns or unshare) is cloned
/// after the parent entered the right namespace. Refuses trees the kernel could not rebuild.
pub fn plan_pids(tree: &Tree) -> Result<BTreeMap<i32, PidPlan>, CheckpointError> {
    let corrupt = |pid: i32, what: String| CheckpointError::Corrupt(format!("tree.json: pid {pid}: {what}"));
    let container = tree
        .pid_namespaces
        .iter()
        .find(|s| s.level == 0)
        .map(|s| s.id)
        .unwrap_or(0);
    let ns_of = |t: &TreeEntry| if t.pid_ns == 0 { container } else { t.pid_ns };
    let spaces: BTreeMap<u64, PidNs> = tree.pid_namespaces.iter().map(|s| (s.id, s.clone())).collect();
    let by_pid: BTreeMap<i32, &TreeEntry> = tree.tasks.iter().map(|t| (t.pid, t)).collect();
    let level_of = |id: u64| spaces.get(&id).map(|s| s.level).unwrap_or(0);

    // Each task's vector must fit its namespace, and pids must be unique per namespace.
    let mut seen: BTreeMap<(u64, i32), i32> = BTreeMap::new();
    for t in &tree.tasks {
        let v = t.levels();
        let id = ns_of(t);
        if v[0] != t.pid || v.len() != level_of(id) + 1 || v.iter().any(|&p| p <= 0) {
            return Err(corrupt(t.pid, format!("NSpid {v:?} does not fit pid namespace {id}")));
        }
        // Walk up the namespaces: the pid at each level is unique in that namespace.
        let mut cur = Some(id);
        for &p in v.iter().rev() {
            let ns = cur.unwrap_or(container);
            if let Some(other) = seen.insert((ns, p), t.pid) {
                return Err(corrupt(
                    t.pid,
                    format!("pid {p} of namespace {ns} is also pid {other}'s"),
                ));
            }
            cur = spaces.get(&ns).and_then(|s| s.parent);
        }
    }
    // The init (container-level pid) of each nested namespace.
    let init_of = |id: u64, pid: i32| -> Result<&TreeEntry, CheckpointError> {
        spaces
            .get(&id)
            .and_then(|s| s.init)
            .and_then(|i| by_pid.get(&i).copied())
            .ok_or_else(|| corrupt(pid, format!("pid namespace {id} has no init in the image")))
    };
    // pid of `target`'s init seen from a task at `level`.
    let init_seen_at = |target: u64, level: usize, pid: i32| -> Result<i32, CheckpointError> {
        let init = init_of(target, pid)?;
        init.levels()
            .get(level)
            .copied()
            .ok_or_else(|| corrupt(pid, format!("pid namespace {target} is not below level {level}")))
    };
    let below = |ancestor: u64, ns: u64| {
        let mut cur = spaces.get(&ns).and_then(|s| s.parent);
        while let Some(id) = cur {
            if id == ancestor {
                return true;
            }
            cur = spaces.get(&id).and_then(|s| s.parent);
        }
        false
    };

    let mut out = BTreeMap::new();
    for t in &tree.tasks {
        let v = t.levels();
        let own = ns_of(t);
        let mut clone = ClonePlan {
            set_tid: v.iter().rev().copied().collect(),
            new_pidns: false,
            enter: None,
            enter_level: 0,
        };
        if let Some(parent) = by_pid.get(&t.ppid).filter(|_| t.pid != tree.root) {
            let pns = ns_of(parent);
            let plevel = level_of(pns);
            let is_init = own != pns && v.last() == Some(&1);
            // The namespace the parent must clone from: the new one's parent for an init.
            let target = if is_init {
                spaces.get(&own).and_then(|s| s.parent).unwrap_or(container)
            } else {
                own
            };
            if own != pns && !below(pns, own) {
                return Err(corrupt(
                    t.pid,
                    format!("its parent {} is not in its pid namespace or an ancestor", t.ppid),
                ));
            }
            clone.new_pidns = is_init;
            if target != pns {
                if !below(pns, target) {
                    return Err(corrupt(
                        t.pid,
                        format!("pid namespace {target} is not below its parent's"),
                    ));
                }
                clone.enter = Some(init_seen_at(target, plevel, t.pid)?);
                clone.enter_level = level_of(target);
            }
        }
        let level = level_of(own);
        let children_ns = match t.pid_ns_for_children {
            None => ChildrenNs::Own,
            Some(id) if id == own => ChildrenNs::Own,
            Some(id) => match spaces.get(&id) {
                Some(s) if s.init.is_none() && s.parent == Some(own) => ChildrenNs::Unshare,
                Some(_) if below(own, id) => ChildrenNs::Enter(init_seen_at(id, level, t.pid)?),
                _ => {
                    return Err(corrupt(
                        t.pid,
                        format!("its children's pid namespace {id} is not below its own"),
                    ))
                }
            },
        };
        out.insert(
            t.pid,
            PidPlan {
                clone,
                children: vec![],
                children_ns,
            },
        );
    }
    for t in &tree.tasks {
        if t.pid == tree.root || !by_pid.contains_key(&t.ppid) {
            continue;
        }
        if let Some(p) = out.get_mut(&t.ppid) {
            p.children.push(t.pid);
        }
    }
    let keys: BTreeMap<i32, (usize, i32)> = out.iter().map(|(p, x)| (*p, (x.clone.enter_level, *p))).collect();
    for p in out.values_mut() {
        p.children.sort_by_key(|c| keys[c]);
    }
    Ok(out)
}

/// v1 sessions and groups: each task leads its own or shares its parent's (the root's may be
/// led from outside, and is then inherited from the restorer).
pub fn check_sessions(tree: &Tree) -> Result<(), CheckpointError> {
    let by_pid: BTreeMap<i32, &TreeEntry> = tree.tasks.iter().map(|t| (t.pid, t)).collect();
    for t in &tree.tasks {
        let Some(parent) = by_pid.get(&t.ppid) else { continue };
        if t.sid != t.pid && t.sid != parent.sid {
            return Err(CheckpointError::Unsupported {
                pid: t.host_pid,
                what: format!("session {} is neither its own nor its parent's (v1)", t.sid),
            });
        }
        if t.pgid != t.pid && t.pgid != parent.pgid {
            return Err(CheckpointError::Unsupported {
                pid: t.host_pid,
                what: format!("process group {} is neither its own nor its parent's (v1)", t.pgid),
            });
        }
    }
    Ok(())
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

    const C: u64 = 100;

    fn ns_of(pid: u64) -> TaskNs {
        TaskNs {
            pid,
            pid_for_children: pid,
            other: vec![
                ("mnt".into(), 10),
                ("user".into(), 11),
                ("time".into(), 12),
                ("time_for_children".into(), 12),
            ],
        }
    }

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
        assert!(flat(&s).unwrap_err().to_string().contains("session 7"));
    }

    /// Status with per-level session/group vectors (host view, outermost first).
    fn stn(ppid: i32, nspid: &[i32], sid: &[i32]) -> Status {
        Status {
            ppid,
            nspid: nspid.to_vec(),
            nspgid: sid.to_vec(),
            nssid: sid.to_vec(),
            ..Default::default()
        }
    }

    /// Container ns C (100) with root 500 = pid 1; N1 (101) below it, N2 (102) below N1, N3
    /// (103) below N1; host pid -> container pid: 50x -> 5..12.
    fn nested() -> (BTreeMap<i32, Status>, BTreeMap<i32, TaskNs>, BTreeMap<u64, u64>) {
        let mut s = BTreeMap::new();
        let mut n = BTreeMap::new();
        let one = [500, 1];
        let two = [500, 1, 0];
        let three = [500, 1, 0, 0];
        s.insert(500, stn(400, &[500, 1], &one));
        n.insert(500, ns_of(C));
        s.insert(501, stn(500, &[501, 5], &one)); // a shell
        n.insert(
            501,
            TaskNs {
                pid_for_children: 101,
                ..ns_of(C)
            },
        ); // did setns(N1)
        s.insert(502, stn(501, &[502, 6, 1], &two)); // unshare -p -f: init of N1
        n.insert(502, ns_of(101));
        s.insert(503, stn(502, &[503, 7, 2], &two));
        n.insert(503, ns_of(101));
        s.insert(504, stn(503, &[504, 8, 3, 1], &three)); // init of N2
        n.insert(504, ns_of(102));
        s.insert(505, stn(504, &[505, 9, 4, 2], &three));
        n.insert(
            505,
            TaskNs {
                pid_for_children: 104,
                ..ns_of(102)
            },
        ); // unshared, no fork yet
        s.insert(506, stn(501, &[506, 10, 5], &two)); // setns'ed child of the shell
        n.insert(506, ns_of(101));
        s.insert(507, stn(500, &[507, 11, 6, 3], &three)); // root entered N2 and forked
        n.insert(507, ns_of(102));
        s.insert(508, stn(500, &[508, 12, 7, 1], &three)); // root entered N1, then CLONE_NEWPID
        n.insert(508, ns_of(103));
        let parents = [(101, C), (102, 101), (103, 101), (104, 102)].into_iter().collect();
        (s, n, parents)
    }

    #[test]
    fn nested_pid_namespaces_are_planned_level_by_level() {
        let (s, n, parents) = nested();
        let t = build_tree(&s, &n, &parents).unwrap();
        let e = |pid: i32| t.tasks.iter().find(|t| t.pid == pid).unwrap();
        assert_eq!(e(9).nspid, vec![9, 4, 2]);
        assert_eq!(e(9).nssid, vec![1, 0, 0]);
        assert_eq!((e(9).sid, e(9).pgid, e(9).ppid), (1, 1, 8));
        assert_eq!(e(9).pid_ns_for_children, Some(104));
        assert_eq!(e(5).pid_ns_for_children, Some(101));
        assert_eq!(e(12).pid_ns, 103);
        let ids: Vec<(u64, usize, Option<u64>, Option<i32>)> = t
            .pid_namespaces
            .iter()
            .map(|s| (s.id, s.level, s.parent, s.init))
            .collect();
        assert_eq!(
            ids,
            vec![
                (C, 0, None, Some(1)),
                (101, 1, Some(C), Some(6)),
                (102, 2, Some(101), Some(8)),
                (103, 2, Some(101), Some(12)),
                (104, 3, Some(102), None),
            ]
        );

        let p = plan_pids(&t).unwrap();
        let clone = |pid: i32| p[&pid].clone.clone();
        let plain = |set_tid: &[i32]| ClonePlan {
            set_tid: set_tid.to_vec(),
            new_pidns: false,
            enter: None,
            enter_level: 0,
        };
        assert_eq!(clone(5), plain(&[5]));
        assert_eq!(clone(7), plain(&[2, 7]), "same namespace as its parent");
        assert_eq!(clone(9), plain(&[2, 4, 9]));
        assert_eq!(
            clone(6),
            ClonePlan {
                new_pidns: true,
                ..plain(&[1, 6])
            },
            "init of N1, from the container's namespace"
        );
        assert_eq!(
            clone(8),
            ClonePlan {
                new_pidns: true,
                ..plain(&[1, 3, 8])
            },
            "init of N2, from N1"
        );
        // The shell enters N1 through its init (pid 6 in the shell's namespace).
        assert_eq!(
            clone(10),
            ClonePlan {
                enter: Some(6),
                enter_level: 1,
                ..plain(&[5, 10])
            }
        );
        // The root enters N2 (its init is 8 at the root's level) two levels down.
        assert_eq!(
            clone(11),
            ClonePlan {
                enter: Some(8),
                enter_level: 2,
                ..plain(&[3, 6, 11])
            }
        );
        // N3's init: the root enters N1, then clones with CLONE_NEWPID.
        assert_eq!(
            clone(12),
            ClonePlan {
                new_pidns: true,
                enter: Some(6),
                enter_level: 1,
                ..plain(&[1, 7, 12])
            }
        );
        // Children needing no setns first, then by the level entered.
        assert_eq!(p[&1].children, vec![5, 12, 11]);
        assert_eq!(p[&5].children, vec![6, 10]);
        assert_eq!(p[&5].children_ns, ChildrenNs::Enter(6));
        assert_eq!(p[&9].children_ns, ChildrenNs::Unshare);
        assert_eq!(p[&1].children_ns, ChildrenNs::Own);
        // Every set_tid starts at the innermost level and ends at the container's pid.
        for t in &t.tasks {
            let st = &p[&t.pid].clone.set_tid;
            assert_eq!((st.last(), st.len()), (Some(&t.pid), t.nspid.len()));
        }
    }

    #[test]
    fn nested_pid_namespace_refusals() {
        // Init of N2 missing (its other members are kept).
        let (mut s, mut n, parents) = nested();
        s.get_mut(&505).unwrap().ppid = 500;
        s.remove(&504);
        n.remove(&504);
        let e = build_tree(&s, &n, &parents).unwrap_err().to_string();
        assert!(e.contains("whose init is not in the dump"), "{e}");
        assert!(e.starts_with("cannot checkpoint pid 50"), "{e}");

        // A parent in a deeper namespace than its child (impossible by fork, but refused).
        let (mut s, n, parents) = nested();
        s.get_mut(&506).unwrap().ppid = 505;
        let e = build_tree(&s, &n, &parents).unwrap_err().to_string();
        assert!(e.contains("pid 506") && e.contains("neither its own"), "{e}");

        // A nested user namespace and a nested time namespace, naming the pid and the kind.
        for (kind, what) in [
            ("user", "nested user namespace"),
            ("time_for_children", "nested time namespace"),
            ("mnt", "mount namespace"),
        ] {
            let (s, mut n, parents) = nested();
            let t = n.get_mut(&503).unwrap();
            t.other.iter_mut().find(|(k, _)| k == kind).unwrap().1 = 77;
            let e = build_tree(&s, &n, &parents).unwrap_err().to_string();
            assert!(
                e.contains("pid 503") && e.contains(what) && e.contains(&format!("{kind}:[77]")),
                "{e}"
            );
        }

        // A task outside the container's pid namespace.
        let (mut s, n, parents) = nested();
        s.get_mut(&503).unwrap().nspid = vec![503];
        let e = build_tree(&s, &n, &parents).unwrap_err().to_string();
        assert!(e.contains("outside the container's pid namespace"), "{e}");

        // pid_for_children in a namespace that is not a child of its own.
        let (s, mut n, mut parents) = nested();
        n.get_mut(&505).unwrap().pid_for_children = 105;
        parents.insert(105, 101);
        let e = build_tree(&s, &n, &parents).unwrap_err().to_string();
        assert!(e.contains("pid 505") && e.contains("pid:[105]"), "{e}");
    }

    #[test]
    fn images_without_namespaces_plan_one_level() {
        // A format 1.1 tree: no vectors, no namespaces.
        let entry = |pid, ppid| TreeEntry {
            pid,
            ppid,
            pgid: 1,
            sid: 1,
            ..Default::default()
        };
        let t = Tree {
            root: 1,
            host_levels: 1,
            tasks: vec![entry(1, 0), entry(7, 1), entry(9, 7)],
            ..Default::default()
        };
        let p = plan_pids(&t).unwrap();
        assert_eq!(p[&9].clone.set_tid, vec![9]);
        assert!(!p[&9].clone.new_pidns && p[&9].clone.enter.is_none());
        assert_eq!((p[&1].children.clone(), p[&7].children.clone()), (vec![7], vec![9]));
        assert_eq!(p[&7].children_ns, ChildrenNs::Own);
    }

    #[test]
    fn corrupt_pid_plans_are_refused() {
        let (s, n, parents) = nested();
        let good = build_tree(&s, &n, &parents).unwrap();
        // Two tasks with pid 2 in N1.
        let mut t = good.clone();
        t.tasks.iter_mut().find(|t| t.pid == 10).unwrap().nspid = vec![10, 2];
        let e = plan_pids(&t).unwrap_err().to_string();
        assert!(e.contains("pid 2 of namespace 101"), "{e}");
        // A vector that does not fit its namespace's level.
        let mut t = good.clone();
        t.tasks.iter_mut().find(|t| t.pid == 10).unwrap().nspid = vec![10];
        assert!(plan_pids(&t).unwrap_err().to_string().contains("does not fit"));
        // An init that is not in the image.
        let mut t = good;
        t.pid_namespaces.iter_mut().find(|s| s.id == 102).unwrap().init = Some(99);
        assert!(plan_pids(&t).unwrap_err().to_string().contains("no init"));
    }

    fn vma(start: u64, end: u64, kind: VmaKind) -> Vma {
        Vma {
            start,
            end,
            perms: "rw-p".into(),
            offset: 0,
            kind,
            name: String::new(),
            vmflags: vec![],
            file: None,
            shmem: None,
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
