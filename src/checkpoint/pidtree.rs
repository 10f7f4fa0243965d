//! Pure planning for pid namespaces nested inside the container (CHECKPOINT.md §2.3-2.4).
//!
//! Dump: each task is placed in the container's pid-namespace tree (`namespaces`): every
//! nested namespace must have its init in the dump, sit one level below its parent, and a
//! task's parent must live in the task's namespace or an ancestor; every other namespace kind
//! must be the container init's (`check_same_namespaces`).
//!
//! Restore (`plan_pids`): set_tid is the task's NSpid vector innermost first, down to the
//! container's level (kernel rule: set_tid[0] is the innermost level). The init of a nested
//! namespace is cloned with CLONE_NEWPID (then set_tid[0] must be 1). A task whose parent lives
//! in an ancestor namespace without being its init (the parent had done setns or
//! unshare(CLONE_NEWPID) and forked) is cloned after the parent entered that namespace through
//! its init, which must therefore exist first. Last, each task's pid_for_children is set back.

use std::collections::BTreeMap;

use super::image::{PidNs, Tree, TreeEntry};
use super::CheckpointError;

/// The namespaces of one task as the dumper read them (nsfs inodes of /proc/<pid>/ns/*).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskNs {
    pub pid: u64,
    pub pid_for_children: u64,
    /// Every other kind the kernel shows ("mnt", "net", "user", "time_for_children", ...):
    /// each must be the root's (for "time_for_children": the root's "time").
    pub other: Vec<(String, u64)>,
}

fn unsupported(pid: i32, what: String) -> CheckpointError {
    CheckpointError::Unsupported { pid, what }
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

/// Every kind but pid must be the root's: a nested user or time namespace, or another mount,
/// network, ipc, uts or cgroup namespace, is refused naming the task and the namespace.
pub fn check_same_namespaces(ns: &BTreeMap<i32, TaskNs>, root_host: i32) -> Result<(), CheckpointError> {
    let root = &ns[&root_host];
    for (&host, n) in ns {
        for (kind, ino) in &n.other {
            let want = if kind == "time_for_children" {
                "time"
            } else {
                kind.as_str()
            };
            let Some((_, root_ino)) = root.other.iter().find(|(k, _)| k == want) else {
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
    Ok(())
}

/// The pid namespaces of the dumped tasks, from their NSpid vectors relative to the container
/// (`rel`, by host pid), their namespaces and each namespace's parent (NS_GET_PARENT), plus
/// the namespaces their next children would be born in.
pub fn namespaces(
    rel: &BTreeMap<i32, Vec<i32>>,
    ns: &BTreeMap<i32, TaskNs>,
    ns_parent: &BTreeMap<u64, u64>,
    container: u64,
) -> Result<BTreeMap<u64, PidNs>, CheckpointError> {
    let mut spaces: BTreeMap<u64, PidNs> = BTreeMap::new();
    for (&host, v) in rel {
        let id = ns[&host].pid;
        let level = v.len() - 1;
        if (level == 0) != (id == container) {
            return Err(unsupported(
                host,
                format!("NSpid {v:?} does not match its pid namespace pid:[{id}]"),
            ));
        }
        let e = spaces.entry(id).or_insert(PidNs {
            id,
            level,
            parent: None,
            init: None,
        });
        if e.level != level {
            return Err(unsupported(
                host,
                format!("pid namespace pid:[{id}] seen at levels {} and {level}", e.level),
            ));
        }
        if v[level] == 1 {
            e.init = Some(v[0]);
        }
    }
    for (&id, space) in spaces.iter_mut().filter(|(_, s)| s.level > 0) {
        let member = rel.keys().copied().find(|h| ns[h].pid == id).unwrap_or(0);
        if space.init.is_none() {
            return Err(unsupported(
                member,
                format!(
                    "lives in pid namespace pid:[{id}] (level {} below the container's) whose init is not in the dump",
                    space.level
                ),
            ));
        }
        let parent = ns_parent
            .get(&id)
            .ok_or_else(|| unsupported(member, format!("the parent of pid namespace pid:[{id}] is unknown")))?;
        space.parent = Some(*parent);
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
    add_children_namespaces(&mut spaces, rel, ns, ns_parent)?;
    Ok(spaces)
}

/// The namespaces tasks' next children would be born in (pid_for_children, after setns or
/// unshare): one of the tree's below the task's own, or a new one right below it that has no
/// process yet.
fn add_children_namespaces(
    spaces: &mut BTreeMap<u64, PidNs>,
    rel: &BTreeMap<i32, Vec<i32>>,
    ns: &BTreeMap<i32, TaskNs>,
    ns_parent: &BTreeMap<u64, u64>,
) -> Result<(), CheckpointError> {
    let mut unpopulated = BTreeMap::new();
    for (&host, v) in rel {
        let n = &ns[&host];
        let target = n.pid_for_children;
        if target == 0 || target == n.pid {
            continue;
        }
        if spaces.contains_key(&target) {
            if !is_ancestor_or_same(spaces, n.pid, target) {
                return Err(unsupported(
                    host,
                    format!("its children would be born in pid namespace pid:[{target}], not below its own"),
                ));
            }
        } else if ns_parent.get(&target) == Some(&n.pid) {
            unpopulated.insert(
                target,
                PidNs {
                    id: target,
                    level: v.len(),
                    parent: Some(n.pid),
                    init: None,
                },
            );
        } else {
            return Err(unsupported(
                host,
                format!(
                    "its children would be born in pid namespace pid:[{target}], which has no process in the dump and is not a child of its own"
                ),
            ));
        }
    }
    spaces.extend(unpopulated);
    Ok(())
}

/// Whether `ancestor` is `ns` or one of its ancestors.
pub fn is_ancestor_or_same(spaces: &BTreeMap<u64, PidNs>, ancestor: u64, ns: u64) -> bool {
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
    /// The level of the namespace entered (0 when none). A parent clones the children that need
    /// no setns first, then the others by this level: the creation of an init of level n then
    /// only ever waits for inits of levels below n, so no two seeds wait for each other.
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

fn corrupt(pid: i32, what: String) -> CheckpointError {
    CheckpointError::Corrupt(format!("tree.json: pid {pid}: {what}"))
}

/// The tree's pid namespaces, for planning. Pre-1.2 images have none: every task is in the
/// container's namespace (id 0).
struct Namespaces<'a> {
    spaces: BTreeMap<u64, PidNs>,
    container: u64,
    by_pid: BTreeMap<i32, &'a TreeEntry>,
}

impl<'a> Namespaces<'a> {
    fn new(tree: &'a Tree) -> Self {
        Namespaces {
            spaces: tree.pid_namespaces.iter().map(|s| (s.id, s.clone())).collect(),
            container: tree
                .pid_namespaces
                .iter()
                .find(|s| s.level == 0)
                .map(|s| s.id)
                .unwrap_or(0),
            by_pid: tree.tasks.iter().map(|t| (t.pid, t)).collect(),
        }
    }

    fn of(&self, t: &TreeEntry) -> u64 {
        if t.pid_ns == 0 {
            self.container
        } else {
            t.pid_ns
        }
    }

    fn level(&self, id: u64) -> usize {
        self.spaces.get(&id).map(|s| s.level).unwrap_or(0)
    }

    fn parent(&self, id: u64) -> Option<u64> {
        self.spaces.get(&id).and_then(|s| s.parent)
    }

    /// Whether `ns` is strictly below `ancestor`.
    fn below(&self, ancestor: u64, ns: u64) -> bool {
        ns != ancestor && is_ancestor_or_same(&self.spaces, ancestor, ns)
    }

    /// The pid of `target`'s init as a task at `level` sees it.
    fn init_seen_at(&self, target: u64, level: usize, pid: i32) -> Result<i32, CheckpointError> {
        let init = self
            .spaces
            .get(&target)
            .and_then(|s| s.init)
            .and_then(|i| self.by_pid.get(&i))
            .ok_or_else(|| corrupt(pid, format!("pid namespace {target} has no init in the image")))?;
        init.levels()
            .get(level)
            .copied()
            .ok_or_else(|| corrupt(pid, format!("pid namespace {target} is not below level {level}")))
    }

    /// Each vector must fit its namespace's level, and each pid must be unique in each
    /// namespace it is seen in (the kernel would refuse the second with EEXIST).
    fn check_vectors(&self, tree: &Tree) -> Result<(), CheckpointError> {
        let mut seen: BTreeMap<(u64, i32), i32> = BTreeMap::new();
        for t in &tree.tasks {
            let v = t.levels();
            let id = self.of(t);
            if v[0] != t.pid || v.len() != self.level(id) + 1 || v.iter().any(|&p| p <= 0) {
                return Err(corrupt(t.pid, format!("NSpid {v:?} does not fit pid namespace {id}")));
            }
            let mut cur = Some(id);
            for &p in v.iter().rev() {
                let ns = cur.unwrap_or(self.container);
                if let Some(other) = seen.insert((ns, p), t.pid) {
                    return Err(corrupt(
                        t.pid,
                        format!("pid {p} of namespace {ns} is also pid {other}'s"),
                    ));
                }
                cur = self.parent(ns);
            }
        }
        Ok(())
    }

    fn clone_plan(&self, t: &TreeEntry, root: i32) -> Result<ClonePlan, CheckpointError> {
        let v = t.levels();
        let mut plan = ClonePlan {
            set_tid: v.iter().rev().copied().collect(),
            new_pidns: false,
            enter: None,
            enter_level: 0,
        };
        let Some(parent) = self.by_pid.get(&t.ppid).filter(|_| t.pid != root) else {
            return Ok(plan); // the root: cloned by the restorer
        };
        let (own, theirs) = (self.of(t), self.of(parent));
        if own != theirs && !self.below(theirs, own) {
            return Err(corrupt(
                t.pid,
                format!("its parent {} is not in its pid namespace or an ancestor", t.ppid),
            ));
        }
        plan.new_pidns = own != theirs && v.last() == Some(&1);
        // The namespace the parent clones in: for a new namespace's init, that one's parent.
        let target = if plan.new_pidns {
            self.parent(own).unwrap_or(self.container)
        } else {
            own
        };
        if target != theirs {
            if !self.below(theirs, target) {
                return Err(corrupt(
                    t.pid,
                    format!("pid namespace {target} is not below its parent's"),
                ));
            }
            plan.enter = Some(self.init_seen_at(target, self.level(theirs), t.pid)?);
            plan.enter_level = self.level(target);
        }
        Ok(plan)
    }

    fn children_ns(&self, t: &TreeEntry) -> Result<ChildrenNs, CheckpointError> {
        let own = self.of(t);
        let Some(id) = t.pid_ns_for_children.filter(|&id| id != own) else {
            return Ok(ChildrenNs::Own);
        };
        match self.spaces.get(&id) {
            Some(s) if s.init.is_none() && s.parent == Some(own) => Ok(ChildrenNs::Unshare),
            Some(_) if self.below(own, id) => Ok(ChildrenNs::Enter(self.init_seen_at(id, self.level(own), t.pid)?)),
            _ => Err(corrupt(
                t.pid,
                format!("its children's pid namespace {id} is not below its own"),
            )),
        }
    }
}

/// Plan every task's clone3, the order its parent clones it in, and its pid_for_children.
/// Refuses (as a corrupt image) a tree the kernel could not rebuild.
pub fn plan_pids(tree: &Tree) -> Result<BTreeMap<i32, PidPlan>, CheckpointError> {
    let ns = Namespaces::new(tree);
    ns.check_vectors(tree)?;
    let mut out = BTreeMap::new();
    for t in &tree.tasks {
        let plan = PidPlan {
            clone: ns.clone_plan(t, tree.root)?,
            children: vec![],
            children_ns: ns.children_ns(t)?,
        };
        out.insert(t.pid, plan);
    }
    let order: BTreeMap<i32, (usize, i32)> = out.iter().map(|(p, x)| (*p, (x.clone.enter_level, *p))).collect();
    for t in tree.tasks.iter().filter(|t| t.pid != tree.root) {
        if let Some(p) = out.get_mut(&t.ppid) {
            p.children.push(t.pid);
        }
    }
    for p in out.values_mut() {
        p.children.sort_by_key(|c| order[c]);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::plan::build_tree;
    use super::super::procfs::Status;
    use super::*;

    pub(crate) const C: u64 = 100;

    pub(crate) fn ns_of(pid: u64) -> TaskNs {
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
}
