//! Pure planning of how the restored tree is cloned so that every task, zombie, session and
//! process group comes back (CHECKPOINT.md §2.1, CRIU's `prepare_pstree_ids()`, adapted to
//! clone3): who clones whom, before or after whose setsid(), and which helpers must exist for
//! a while because a session or process group outlived its leader.
//!
//! Rules, for a task or zombie T whose real parent is P:
//! - T leads its session (sid == pid): P clones it, T calls setsid().
//! - T is in P's session: P clones it after P's own setsid().
//! - T is in the session P was born into and P leads its own (P forked T, then setsid()): P
//!   clones T *before* its setsid() (CRIU's `born_sid`, one level).
//! - T's session leader is dead: a helper with the leader's pid is cloned by P, calls setsid()
//!   and clones T with CLONE_PARENT (so T's parent is still P), then exits and P reaps it before
//!   the tree resumes. A zombie leader does the same before it dies.
//! - T's session leader L is alive elsewhere and T was reparented to P, the reaper L's orphans
//!   go to (L itself or its nearest subreaper ancestor, else the namespace's init): a helper with
//!   a free pid, cloned by L, clones T and exits, so that T is reparented to P again (CRIU's
//!   helper for a live leader). Subreapers are set in the seeds before anything is cloned.
//! - Process groups: every task and zombie joins its group itself with setpgid(), retrying until
//!   the leader has made it; after cloning its own children when the leader is one of its
//!   descendants. A group whose leader is dead gets a helper with the leader's pid, cloned by
//!   the group's first live member.
//!
//! Anything else (a session led by a task alive elsewhere whose orphans would not go to P, a
//! dead session whose members have different parents, a group outside the container's pid
//! namespace that is not inherited) is refused at dump, naming the pid and the object.

use std::collections::{BTreeMap, BTreeSet};

use super::image::{Tree, TreeEntry};
use super::CheckpointError;

/// What a restored process does once cloned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A live task: seeded, then transplanted.
    Task,
    /// Dies with this wait status (exit code << 8, or the killing signal) and stays unreaped.
    Zombie { status: i32 },
    /// Exists only to lead a session or group while the tree is built; reaped by its parent.
    Helper,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub pid: i32,
    pub kind: NodeKind,
    /// clone3 set_tid, innermost level first.
    pub set_tid: Vec<i32>,
    /// Call setsid() first.
    pub setsid: bool,
    /// setpgid(0, pgid) unless already in it; None: keep the inherited group.
    pub pgid: Option<i32>,
    /// Join the group only after cloning the children (its leader is a descendant).
    pub pgid_after_children: bool,
    /// Cloned before setsid() (they stay in the session this node was born into).
    pub before_setsid: Vec<i32>,
    /// Cloned after setsid().
    pub children: Vec<i32>,
    /// Clone `children` with CLONE_PARENT (a helper or zombie leader cloning for its parent).
    pub clone_parent: bool,
    /// Children (helpers, zombies, incl. CLONE_PARENT ones) that must have exited before this
    /// node reports ready.
    pub await_exit: Vec<i32>,
    /// Helper children the restorer reaps (injected wait4) once every seed is ready.
    pub reap: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreePlan {
    pub root: i32,
    pub nodes: BTreeMap<i32, Node>,
}

impl TreePlan {
    /// Nodes of one kind, by pid.
    pub fn helpers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| n.kind == NodeKind::Helper)
    }
}

fn refuse(pid: i32, what: String) -> CheckpointError {
    CheckpointError::Unsupported { pid, what }
}

struct Entry<'a> {
    e: &'a TreeEntry,
    zombie: Option<i32>,
}

/// Plan the restore of `tree` (tasks and zombies; `subreapers`: the tasks that are child
/// subreapers). Called at dump (to refuse early) and at restore (to act). Errors name the
/// dump-time host pid.
pub fn plan(tree: &Tree, subreapers: &BTreeSet<i32>) -> Result<TreePlan, CheckpointError> {
    let mut all: BTreeMap<i32, Entry> = BTreeMap::new();
    for t in &tree.tasks {
        all.insert(t.pid, Entry { e: t, zombie: None });
    }
    for z in &tree.zombies {
        all.insert(
            z.entry.pid,
            Entry {
                e: &z.entry,
                zombie: Some(z.status),
            },
        );
    }
    let host = |pid: i32| all.get(&pid).map(|x| x.e.host_pid).unwrap_or(pid);
    let mut nodes: BTreeMap<i32, Node> = BTreeMap::new();
    for (pid, x) in &all {
        if *pid == tree.root && x.zombie.is_some() {
            return Err(refuse(x.e.host_pid, "the root task is a zombie".into()));
        }
        if *pid != tree.root {
            match all.get(&x.e.ppid) {
                Some(p) if p.zombie.is_none() => {}
                _ => {
                    return Err(refuse(
                        x.e.host_pid,
                        format!("its parent {} is not a live task of the dump", x.e.ppid),
                    ))
                }
            }
        }
        nodes.insert(
            *pid,
            Node {
                pid: *pid,
                kind: match x.zombie {
                    Some(status) => NodeKind::Zombie { status },
                    None => NodeKind::Task,
                },
                set_tid: x.e.levels().into_iter().rev().collect(),
                setsid: x.e.sid == *pid,
                pgid: None,
                pgid_after_children: false,
                before_setsid: vec![],
                children: vec![],
                clone_parent: false,
                await_exit: vec![],
                reap: vec![],
            },
        );
    }

    // Sessions, top-down: `born[pid]` is the session a node is in right after its clone.
    let mut born: BTreeMap<i32, i32> = BTreeMap::new();
    let root = all
        .get(&tree.root)
        .ok_or_else(|| CheckpointError::Corrupt(format!("the tree's root {} is not in it", tree.root)))?;
    born.insert(tree.root, root.e.sid);
    // Dead session leader -> (helper's parent, members it clones).
    let mut dead_sessions: BTreeMap<i32, (i32, Vec<i32>)> = BTreeMap::new();
    // (live session leader, reaper) -> members a helper under the leader clones.
    let mut live_sessions: BTreeMap<(i32, i32), Vec<i32>> = BTreeMap::new();
    // Where the orphans of `start`'s children go: `start` or its nearest subreaper ancestor, or
    // the init of the container's pid namespace (the root when it is pid 1).
    let reaper_of = |start: i32| -> Option<i32> {
        let mut cur = start;
        for _ in 0..all.len() {
            if subreapers.contains(&cur) || (cur == tree.root && cur == 1) {
                return Some(cur);
            }
            if cur == tree.root {
                return None;
            }
            cur = all.get(&cur)?.e.ppid;
        }
        None
    };
    let mut queue = vec![tree.root];
    while let Some(p) = queue.pop() {
        let pe = all[&p].e;
        let kids: Vec<i32> = all
            .values()
            .filter(|c| c.e.ppid == p && c.e.pid != tree.root)
            .map(|c| c.e.pid)
            .collect();
        for c in kids {
            let ce = all[&c].e;
            let sid = ce.sid;
            if sid == c || sid == pe.sid {
                nodes.get_mut(&p).unwrap().children.push(c);
                born.insert(c, pe.sid);
            } else if pe.sid == p && sid == born[&p] {
                nodes.get_mut(&p).unwrap().before_setsid.push(c);
                born.insert(c, born[&p]);
            } else if sid != 0 && !all.contains_key(&sid) {
                let (parent, members) = dead_sessions.entry(sid).or_insert((p, vec![]));
                if *parent != p {
                    return Err(refuse(
                        ce.host_pid,
                        format!(
                            "session {sid} (its leader is gone) has members with different parents ({} and {p}); not restorable yet",
                            *parent
                        ),
                    ));
                }
                members.push(c);
                born.insert(c, sid);
            } else if let Some(z) = all
                .get(&sid)
                .filter(|z| z.zombie.is_some() && z.e.ppid == p && z.e.sid == sid)
            {
                let zpid = z.e.pid;
                let n = nodes.get_mut(&zpid).unwrap();
                n.children.push(c);
                n.clone_parent = true;
                born.insert(c, sid);
            } else if all
                .get(&sid)
                .is_some_and(|l| l.zombie.is_none() && l.e.sid == sid && l.e.levels().len() == 1)
                && ce.levels().len() == 1
                && reaper_of(sid) == Some(p)
            {
                live_sessions.entry((sid, p)).or_default().push(c);
                born.insert(c, sid);
            } else {
                return Err(refuse(
                    ce.host_pid,
                    format!(
                        "session {sid} is neither its own, its parent {p}'s (session {}), one the parent left by setsid(), nor one whose leader's orphans go to {p}; not restorable yet",
                        pe.sid
                    ),
                ));
            }
            queue.push(c);
        }
    }
    // A helper gets only the leader's container-level pid: its cloner must live there too.
    let nested = |pid: i32| all.get(&pid).is_some_and(|x| x.e.levels().len() > 1);
    for (sid, (parent, members)) in &dead_sessions {
        if nested(*parent) {
            return Err(refuse(
                host(members[0]),
                format!("session {sid} lost its leader inside a nested pid namespace; not restorable yet"),
            ));
        }
        nodes.insert(
            *sid,
            Node {
                pid: *sid,
                kind: NodeKind::Helper,
                set_tid: vec![*sid],
                setsid: true,
                pgid: None,
                pgid_after_children: false,
                before_setsid: vec![],
                children: members.clone(),
                clone_parent: true,
                await_exit: vec![],
                reap: vec![],
            },
        );
        let p = nodes.get_mut(parent).unwrap();
        p.children.push(*sid);
        p.await_exit.push(*sid);
        p.reap.push(*sid);
    }
    // Every zombie is awaited (never reaped) by its real parent, whoever cloned it.
    for (pid, x) in &all {
        if x.zombie.is_some() {
            nodes.get_mut(&x.e.ppid).unwrap().await_exit.push(*pid);
        }
    }

    // Process groups.
    let mut dead_groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (pid, x) in &all {
        let g = x.e.pgid;
        if x.e.sid == *pid {
            if g != *pid {
                return Err(CheckpointError::Corrupt(format!(
                    "pid {pid} leads session {pid} but is in group {g}"
                )));
            }
            continue; // setsid() made the group
        }
        if g == 0 {
            // Led from outside the container's pid namespace: only inheritable from the root.
            let inherited = *pid == tree.root || all.get(&x.e.ppid).is_some_and(|p| p.e.pgid == 0);
            if !inherited {
                return Err(refuse(
                    x.e.host_pid,
                    "its process group is led from outside the container's pid namespace and not inherited".into(),
                ));
            }
            continue;
        }
        if *pid == tree.root && g != *pid {
            // The root's group, when not its own, is the restorer's (as before).
            continue;
        }
        if !all.contains_key(&g) && !dead_sessions.contains_key(&g) {
            dead_groups.entry(g).or_default().push(*pid);
        }
        // setpgid() takes the group as the task sees it: the innermost level of its vector (0:
        // led from outside its own pid namespace, so only inherited).
        let inner = x.e.nspgid.last().copied().unwrap_or(g);
        if inner != 0 {
            nodes.get_mut(pid).unwrap().pgid = Some(inner);
        }
    }
    for (g, members) in &dead_groups {
        // Cloned by the first live member, which is in the group's session.
        let Some(&m) = members.iter().find(|m| all[*m].zombie.is_none()) else {
            return Err(refuse(
                host(members[0]),
                format!("process group {g} has only zombies left; not restorable yet"),
            ));
        };
        if nested(m) {
            return Err(refuse(
                host(m),
                format!("process group {g} lost its leader inside a nested pid namespace; not restorable yet"),
            ));
        }
        nodes.insert(
            *g,
            Node {
                pid: *g,
                kind: NodeKind::Helper,
                set_tid: vec![*g],
                setsid: false,
                pgid: Some(*g),
                pgid_after_children: false,
                before_setsid: vec![],
                children: vec![],
                clone_parent: false,
                await_exit: vec![],
                reap: vec![],
            },
        );
        let n = nodes.get_mut(&m).unwrap();
        n.children.insert(0, *g);
        n.await_exit.push(*g);
        n.reap.push(*g);
    }
    // Helpers for live session leaders take free pids above every other node's.
    let first_free = nodes.keys().max().copied().unwrap_or(1) + 1;
    for (h, ((leader, _), members)) in (first_free..).zip(&live_sessions) {
        nodes.insert(
            h,
            Node {
                pid: h,
                kind: NodeKind::Helper,
                set_tid: vec![h],
                setsid: false,
                pgid: None,
                pgid_after_children: false,
                before_setsid: vec![],
                children: members.clone(),
                clone_parent: false,
                await_exit: vec![],
                reap: vec![],
            },
        );
        let l = nodes.get_mut(leader).unwrap();
        l.children.push(h);
        l.await_exit.push(h);
        l.reap.push(h);
    }
    // Join after cloning when the leader is a descendant (through the cloning links).
    let cloner: BTreeMap<i32, i32> = nodes
        .values()
        .flat_map(|n| n.before_setsid.iter().chain(&n.children).map(move |c| (*c, n.pid)))
        .collect();
    let descends = |mut d: i32, a: i32| {
        let mut seen = BTreeSet::new();
        while let Some(&up) = cloner.get(&d) {
            if up == a {
                return true;
            }
            if !seen.insert(up) {
                break;
            }
            d = up;
        }
        false
    };
    let group_of = |n: &Node| all.get(&n.pid).map(|x| x.e.pgid).or(n.pgid);
    let after: Vec<i32> = nodes
        .values()
        .filter(|n| n.pgid.is_some())
        .filter(|n| group_of(n).is_some_and(|g| g != n.pid && descends(g, n.pid)))
        .map(|n| n.pid)
        .collect();
    for pid in after {
        nodes.get_mut(&pid).unwrap().pgid_after_children = true;
    }
    // Deterministic clone order: helpers first (leaders before members), then by pid.
    for n in nodes.values_mut() {
        n.children
            .sort_by_key(|c| (!dead_groups.contains_key(c) && !dead_sessions.contains_key(c), *c));
        n.before_setsid.sort();
        n.await_exit.sort();
        n.await_exit.dedup();
    }
    Ok(TreePlan { root: tree.root, nodes })
}

#[cfg(test)]
mod tests {
    use super::super::image::ZombieEntry;
    use super::*;

    fn e(pid: i32, ppid: i32, pgid: i32, sid: i32) -> TreeEntry {
        TreeEntry {
            pid,
            ppid,
            pgid,
            sid,
            host_pid: 1000 + pid,
            ..Default::default()
        }
    }

    fn tree(tasks: Vec<TreeEntry>, zombies: Vec<(TreeEntry, i32)>) -> Tree {
        Tree {
            root: 1,
            host_levels: 1,
            tasks,
            zombies: zombies
                .into_iter()
                .map(|(entry, status)| ZombieEntry { entry, status })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn plain_tree_and_own_groups() {
        let t = tree(vec![e(1, 0, 1, 1), e(5, 1, 5, 1), e(6, 5, 5, 1), e(7, 1, 1, 1)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&1].children, vec![5, 7]);
        assert!(p.nodes[&1].setsid);
        assert_eq!(p.nodes[&5].pgid, Some(5));
        assert!(!p.nodes[&5].pgid_after_children);
        assert_eq!(p.nodes[&6].pgid, Some(5));
        assert_eq!(p.nodes[&7].pgid, Some(1));
        assert_eq!(p.helpers().count(), 0);
    }

    #[test]
    fn zombies_are_cloned_by_their_parent_and_awaited() {
        let t = tree(vec![e(1, 0, 1, 1)], vec![(e(3, 1, 1, 1), 7 << 8)]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&1].children, vec![3]);
        assert_eq!(p.nodes[&3].kind, NodeKind::Zombie { status: 7 << 8 });
        assert_eq!(p.nodes[&1].await_exit, vec![3], "the parent waits for it to die");
        assert!(p.nodes[&1].reap.is_empty(), "and never reaps it");
    }

    #[test]
    fn dead_session_leader_gets_a_helper_that_clones_for_the_parent() {
        // 4 did setsid, forked 8 and 9 (8 made its own group), and exited: 8 and 9 are init's.
        let t = tree(vec![e(1, 0, 1, 1), e(8, 1, 8, 4), e(9, 1, 4, 4)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        let h = &p.nodes[&4];
        assert_eq!(h.kind, NodeKind::Helper);
        assert!(h.setsid && h.clone_parent);
        assert_eq!(h.children, vec![8, 9]);
        assert_eq!(p.nodes[&1].children, vec![4]);
        assert_eq!(p.nodes[&1].reap, vec![4]);
        assert_eq!(p.nodes[&9].pgid, Some(4));
        assert_eq!(p.nodes[&8].pgid, Some(8));
    }

    #[test]
    fn dead_group_leader_gets_a_helper_under_the_first_member() {
        // Group 6's leader exited; 7 and 9 remain in it (children of 1).
        let t = tree(vec![e(1, 0, 1, 1), e(7, 1, 6, 1), e(9, 1, 6, 1)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&6].kind, NodeKind::Helper);
        assert_eq!(p.nodes[&6].pgid, Some(6));
        assert_eq!(p.nodes[&7].children, vec![6]);
        assert_eq!(p.nodes[&7].reap, vec![6]);
        assert!(p.nodes[&7].pgid_after_children, "its leader is its own child");
        assert!(!p.nodes[&9].pgid_after_children);
    }

    #[test]
    fn born_sid_one_level_is_cloned_before_setsid() {
        // 5 (in session 1) forked 6, then called setsid().
        let t = tree(vec![e(1, 0, 1, 1), e(5, 1, 5, 5), e(6, 5, 1, 1)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&5].before_setsid, vec![6]);
        assert!(p.nodes[&5].children.is_empty());
    }

    #[test]
    fn zombie_session_leader_clones_its_members() {
        let t = tree(vec![e(1, 0, 1, 1), e(8, 1, 4, 4)], vec![(e(4, 1, 4, 4), 0)]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        assert_eq!(p.nodes[&4].children, vec![8]);
        assert!(p.nodes[&4].clone_parent);
        assert_eq!(p.nodes[&1].children, vec![4]);
        assert_eq!(p.nodes[&1].await_exit, vec![4]);
    }

    #[test]
    fn live_session_leader_gets_a_helper_whose_orphans_go_to_the_reaper() {
        // 1 (init) -> 4 (setsid) -> 5 -> 6; 5 exited: 6 went to 1, still in session 4.
        let t = tree(vec![e(1, 0, 1, 1), e(4, 1, 4, 4), e(6, 1, 4, 4)], vec![]);
        let p = plan(&t, &BTreeSet::new()).unwrap();
        let h = &p.nodes[&7];
        assert_eq!(h.kind, NodeKind::Helper);
        assert!(!h.setsid && !h.clone_parent);
        assert_eq!(h.children, vec![6]);
        assert_eq!(
            (p.nodes[&4].children.clone(), p.nodes[&4].reap.clone()),
            (vec![7], vec![7])
        );
        // With 4 a subreaper its orphans would go to 4, not 1: refused.
        let err = plan(&t, &BTreeSet::from([4])).unwrap_err().to_string();
        assert!(err.contains("pid 1006") && err.contains("session 4"), "{err}");
        // A subreaper between: 1 -> 2 (subreaper) -> 4 (setsid) ... 6 went to 2.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 1, 1), e(4, 2, 4, 4), e(6, 2, 4, 4)], vec![]);
        let p = plan(&t, &BTreeSet::from([2])).unwrap();
        assert_eq!(p.nodes[&7].children, vec![6]);
        assert!(
            plan(&t, &BTreeSet::new()).is_err(),
            "without the subreaper 6 would go to 1"
        );
    }

    #[test]
    fn refusals_name_the_pid_and_the_object() {
        // Session 5 led by a live task whose orphans go to 1, not to 6's parent 2.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 1, 1), e(5, 1, 5, 5), e(6, 2, 5, 5)], vec![]);
        let err = plan(&t, &BTreeSet::new()).unwrap_err().to_string();
        assert!(err.contains("pid 1006") && err.contains("session 5"), "{err}");
        // A dead session whose members have different parents.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 1, 1), e(8, 1, 4, 4), e(9, 2, 4, 4)], vec![]);
        let err = plan(&t, &BTreeSet::new()).unwrap_err().to_string();
        assert!(err.contains("session 4") && err.contains("different parents"), "{err}");
        // An outside group that is not inherited.
        let t = tree(vec![e(1, 0, 1, 1), e(2, 1, 0, 1)], vec![]);
        let err = plan(&t, &BTreeSet::new()).unwrap_err().to_string();
        assert!(err.contains("pid 1002") && err.contains("outside"), "{err}");
    }
}
